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
//! - `batch`, `context`, `sink`, `throttle`: leaf modules the others share.
//!
//! Nothing here touches a socket, a clock or a thread: time is an argument ([`Now`]) and a
//! connection's way out is any [`Sink`], which answers what became of the bytes offered.
//!
//! # The call contract
//!
//! A driver (the reactor, or the in-memory simulation of the tests) owns the sockets, the clock
//! and the audit file, and calls a [`Shard`] in this order:
//!
//! 1. [`RelayContext::expect`] for the shard a new connection goes to, then [`Shard::insert`].
//! 2. On readable, if [`Shard::may_read`]: fill [`Connection::read_buffer`], then
//!    [`Shard::intake`]. Then, on a relay that audits, append what [`Shard::poll_audit`] gives
//!    to that relay's audit file and answer [`Shard::audit_written`] or
//!    [`Shard::audit_failed`], until it gives nothing: an intake is forwarded, confirmed and
//!    closed only once its records are written, and while they cannot be the relay fails
//!    closed (its connections may not be read; the write is asked for again a second later).
//! 3. On writable: [`Shard::flush`]. On a message from another shard: [`Shard::handle`].
//!    Every 100 ms or so: [`Shard::tick`], then the audit writes of step 2 again. To stop: [`Shard::begin_stop`], then flush until
//!    [`Shard::flushed`] or the deadline, then [`Shard::report_undelivered`].
//! 4. After every call: drain [`Shard::poll_event`] (reads to do, interest changes, closed
//!    sockets) and [`Shard::poll_message`] (to other shards).
//!
//! # Glossary
//!
//! - *relay*: one domain's service (MarketData, Signal, Execution); [`RelayContext`] is one
//!   relay as the shards see it, and a relay *index* names it in a process serving several.
//! - *shard*: one reactor's part of the core; *reactor*: the thread and event loop that drives
//!   it.
//! - *intake*: what one read of one connection produced; *settle*: carrying it out once its
//!   audit records are written; *trail*: the intakes waiting for that.
//! - *batch*: the accepted frames of one intake, shared by every subscriber that takes them;
//!   *run*: consecutive frames of a batch that one subscriber takes.
//! - *outbox*: one connection's queue; *sink*: its way out.
//! - *interest*: whether a shard holds a subscriber of a relay, so batches go there.

pub(crate) mod audit;
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
mod trail;

#[cfg(test)]
mod tests;

pub use crate::config::{
    ConfigError, Cores, DomainDefaults, EngineConfig, Idle, Levels, MIN_MESSAGE_SIZE, Policy, RelayConfig,
};
pub(crate) use connection::{CloseReason, Now};
pub use context::{LOG_SHARD, Peer, RelayContext};
pub use logic::{AnyLogic, ExecutionLogic, MarketDataLogic, RelayLogic, SignalLogic};
pub use metrics::{Metrics, RelaysCollector};
pub use reason::Reason;
pub(crate) use shard::{Event, Msg, Shard, ShardConfig};
pub(crate) use sink::{Sink, Wrote};
pub(crate) use throttle::Throttle;
