//! Torq: a thread-per-core relay for Protocol V2 frames over Unix stream sockets.
//!
//! [`protocol`] is the sans-IO wire format of `PROTOCOL.md`: framing, validation, the TLV
//! walker, the type registry, payload layouts, identifiers and the frame builder. [`config`]
//! holds the settings and reads configuration files; [`cli`] is the binaries' start-up.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

pub mod cli;
pub mod config;
pub mod protocol;
pub mod reactor;
pub mod relays;
