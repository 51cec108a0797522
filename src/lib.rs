//! Torq: a thread-per-core relay for Protocol V2 frames over Unix stream sockets.
//!
//! The layers, each depending only on those below it:
//!
//! - [`cli`] — the binaries' flags, logging set-up, and the order in which a relay's settings
//!   are resolved: the domain's defaults, the file, the flags.
//! - [`runtime`] — process start-up: the engine [`Relay<L>`](runtime::Relay), socket-path
//!   safety, signals, the open-file limit, the audit writer, the metrics endpoint, exit status.
//! - [`reactor`] — I/O only: mio event loops that accept, read into the core's buffers, write
//!   what the core queued, and carry messages between threads through bounded inboxes.
//! - [`relays`] — the relay core, sans-IO (sessions, intake, outboxes, the fan-out of one
//!   reactor's shard) and the per-domain [`RelayLogic`](relays::RelayLogic).
//! - [`protocol`] — the wire format of `PROTOCOL.md`, sans-IO: framing, validation, the TLV
//!   walker, the type registry, payload layouts, identifiers and the frame builder.
//!
//! [`shm`] (the broadcast log of shared-memory delivery, PROTOCOL.md §7: its writer for the
//! relay, its reader for the client) depends on nothing else here, and holds the crate's only
//! unsafe code (the mapping).
//!
//! [`config`] (the settings and the TOML file) depends on [`protocol`] only; [`client`] (the
//! library services use to talk to a relay) on [`protocol`] only; [`tools`] (what the live
//! tools share) on [`protocol`] and [`client`]; [`metrics`] (the Prometheus text of the relays
//! and the bridge) on [`protocol`] only.
//!
//! Features: `relay` (the default) builds all of it and the binaries; a service that only
//! talks to a relay depends on `torq = { default-features = false, features = ["client"] }`
//! and builds [`protocol`] and [`client`] with their few dependencies (zerocopy, rustix,
//! crc32fast, crossbeam-channel, thiserror, log).
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

pub mod client;
pub mod protocol;
pub mod shm;

#[cfg(feature = "relay")]
pub mod cli;
#[cfg(feature = "relay")]
pub mod config;
#[cfg(feature = "relay")]
pub mod metrics;
#[cfg(feature = "relay")]
pub(crate) mod reactor;
#[cfg(feature = "relay")]
pub mod relays;
#[cfg(feature = "relay")]
pub mod runtime;
#[cfg(feature = "relay")]
pub mod tools;
