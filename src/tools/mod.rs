//! The parts the live tools share (`torq-decode`, `torq-tap`, `torq-record`, `torq-replay`,
//! `torq-pub`); they depend on [`protocol`](crate::protocol) and [`client`](crate::client)
//! only.
//!
//! - [`decode`]: a frame → its JSON line (the schema of `torq-decode`), and `torq-decode`
//!   itself over a raw capture or a recording.
//! - [`encode`]: a JSON line in that schema → the frame it describes (`torq-pub`).
//! - [`pcapng`]: recordings: the writer of `torq-record` and the reader of the others.
//! - [`capture`]: a file opened as a raw capture or a recording, by its first bytes.
//! - [`args`]: the subscription filter flags.
//! - [`live`]: subscribing and receiving until a count, a deadline or a signal.
//! - [`settle`]: what the sending tools say of their frames: rejections by input, counts.

pub mod args;
pub mod capture;
pub mod decode;
pub mod encode;
pub mod live;
pub mod pcapng;
pub mod settle;
