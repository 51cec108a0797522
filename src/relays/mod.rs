//! The relays: the generic engine [`Relay<L: RelayLogic>`](Relay) and the three domain
//! logics. The engine holds everything the domains share — validation levels, roles,
//! routing, slow-consumer policies, notices, heartbeats, metrics, audit and stop; a logic is
//! a handful of constants.

pub(crate) mod audit;
mod config;
mod config_file;
mod engine;
mod logic;
mod metrics;
mod reason;
pub(crate) mod session;

pub use config::{ConfigError, Cores, EngineConfig, MIN_MESSAGE_SIZE, RelayConfig};
pub use config_file::{
    DevArgs, DevTarget, DomainArgs, LogLevel, RelayArgs, cores_from_str, defaults_for, load_file,
};
pub use engine::{Relay, StartError, exit_code, init_logging, run};
pub use logic::{ExecutionLogic, Levels, MarketDataLogic, Policy, RelayLogic, SignalLogic};
pub use metrics::Metrics;
pub use reason::Reason;
pub(crate) use reason::index as reason_index;
