//! The relay core, sans-IO, and the domain logics.
//!
//! - [`RelayLogic`] is the per-domain decision point ([`MarketDataLogic`], [`SignalLogic`],
//!   [`ExecutionLogic`], and [`AnyLogic`] for several domains in one process).
//! - `session`: one connection's protocol state — roles, hello, subscription, sequences.
//! - [`Connection`]: a session, its read buffer and the intake of what was read (accepted
//!   frames as one shared [`Batch`], rejections, notices, audit records, a close reason).
//! - `outbox`: one connection's bounded queue and the slow-consumer policies.
//! - [`Shard`]: one reactor's connections, the fan-out, the messages between shards, ticks and
//!   the stop.
//!
//! Nothing here touches a socket, a clock or a thread: time is an argument ([`Now`]) and a
//! socket is any [`std::io::Write`].

pub mod audit;
mod connection;
mod logic;
mod metrics;
pub(crate) mod outbox;
mod reason;
mod session;
mod shard;

#[cfg(test)]
mod tests;

pub use crate::config::{
    ConfigError, Cores, DomainDefaults, EngineConfig, Idle, Levels, MIN_MESSAGE_SIZE, Policy, RelayConfig,
};
pub use connection::{CloseReason, Connection, Intake, Now, Peer};
pub use logic::{AnyLogic, ExecutionLogic, MarketDataLogic, RelayLogic, SignalLogic};
pub use metrics::{Metrics, RelaysCollector};
pub use outbox::Undelivered;
pub use reason::Reason;
pub use shard::{Batch, Event, FrameSpan, Msg, PublisherId, RelayContext, Shard, ShardConfig};
