//! `relay --config FILE`: a relay configured by a TOML file (legacy keys accepted).

use std::process::ExitCode;

use clap::Parser;
use torq::relays::RelayArgs;
use torq::runtime::{StartError, exit_code, init_logging, run_any};

fn main() -> ExitCode {
    let args = RelayArgs::parse();
    init_logging(args.log_level.filter(), args.json_logs);
    exit_code(args.resolve().map_err(StartError::from).and_then(|(engine, relays)| run_any(engine, relays)))
}
