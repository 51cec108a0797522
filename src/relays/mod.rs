//! The relays: the generic engine `Relay<L: RelayLogic>` and the three domain logics.

mod config;
mod config_file;
mod logic;

pub use config::{ConfigError, Cores, EngineConfig, MIN_MESSAGE_SIZE, RelayConfig};

pub use logic::{ExecutionLogic, Levels, MarketDataLogic, Policy, RelayLogic, SignalLogic};
