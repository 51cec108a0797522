//! The relays: the generic engine [`Relay<L: RelayLogic>`](Relay) and the three domain
//! logics. The engine holds everything the domains share — validation levels, roles,
//! routing, slow-consumer policies, notices, heartbeats, metrics, audit and stop; a logic is
//! a handful of constants.

pub(crate) mod audit;
mod engine;
mod logic;
mod metrics;
mod reason;
pub(crate) mod session;

pub use crate::config::{ConfigError, Cores, EngineConfig, Levels, MIN_MESSAGE_SIZE, Policy, RelayConfig};
pub use engine::{Relay, StartError, exit_code, run};
pub use logic::{ExecutionLogic, MarketDataLogic, RelayLogic, SignalLogic};
pub use metrics::Metrics;
pub use reason::Reason;
pub(crate) use reason::index as reason_index;
