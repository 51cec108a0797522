//! The reactors: pinned mio event loops that own connections, frame in place and fan out.

pub mod socket;
