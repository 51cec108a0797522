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
//! connection's way out is any [`Sink`], which answers what became of the bytes offered.

pub mod audit;
mod batch;
mod connection;
mod context;
mod logic;
mod metrics;
pub(crate) mod outbox;
mod reason;
mod session;
mod shard;
mod sink;
mod throttle;

#[cfg(test)]
mod tests;

pub use crate::config::{
    ConfigError, Cores, DomainDefaults, EngineConfig, Idle, Levels, MIN_MESSAGE_SIZE, Policy, RelayConfig,
};
pub use batch::{Batch, FrameSpan, PublisherId};
pub use connection::{CloseReason, Connection, Intake, Now};
pub use context::{Peer, RelayContext};
pub use logic::{AnyLogic, ExecutionLogic, MarketDataLogic, RelayLogic, SignalLogic};
pub use metrics::Metrics;
pub use outbox::Undelivered;
pub use reason::Reason;
pub use shard::{Event, Msg, Shard, ShardConfig};
pub use sink::{Sink, Wrote};
pub(crate) use throttle::Throttle;
