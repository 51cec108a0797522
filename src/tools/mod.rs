//! The parts the live tools share (`torq-decode`, `torq-tap`, `torq-record`, `torq-replay`,
//! `torq-pub`); they depend on [`protocol`](crate::protocol) and [`client`](crate::client)
//! only.
//!
//! - [`decode`]: a frame → its JSON line (the schema of `torq-decode`), and `torq-decode`
//!   itself over a raw capture or a recording.
//! - [`pcapng`]: recordings: the writer of `torq-record` and the reader of the others.
//! - [`capture`]: a file opened as a raw capture or a recording, by its first bytes.

pub mod capture;
pub mod decode;
pub mod pcapng;
