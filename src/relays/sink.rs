//! Where the core's output goes: the one narrow trait a driver implements for each connection.
//! The core never sees an `io::Error`: the driver answers what became of the bytes offered.

use std::io::IoSlice;

/// What a [`Sink`] did with the bytes offered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// It took this many bytes from the front (0 means the peer is gone, as for `write`).
    Bytes(usize),
    /// It takes nothing more now; the driver calls [`Shard::flush`](super::Shard::flush) once
    /// it may again (the socket became writable).
    Full,
    /// The peer can no longer be written to: the queue is dropped and nothing more is queued.
    Gone,
}

/// One connection's way out, as the core sees it. The reactor implements it for a
/// non-blocking Unix socket (interrupted calls retried, `WouldBlock` as [`Wrote::Full`], any
/// other error as [`Wrote::Gone`]); the in-memory simulation for a pipe of bounded capacity.
pub(crate) trait Sink {
    /// Offers `bufs`, in order; takes a prefix of their bytes.
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> Wrote;

    /// As [`Sink::write`], with the relay's broadcast log (PROTOCOL.md §7: its read-only
    /// descriptor, SCM_RIGHTS) going with the first byte taken. Called once per connection
    /// granted the log, for its notice 1.
    fn write_with_log(&mut self, bufs: &[IoSlice<'_>]) -> Wrote;
}
