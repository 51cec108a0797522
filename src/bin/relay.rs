//! `relay --config FILE`: a relay configured by a TOML file (legacy keys accepted).

use std::process::ExitCode;

use clap::Parser;
use torq::cli::RelayArgs;
use torq::runtime::{StartError, exit_code, run_any};

fn main() -> ExitCode {
    exit_code(start(&RelayArgs::parse()))
}

/// The file is read first: its `[logging]` table says how to log the rest.
fn start(args: &RelayArgs) -> Result<i32, StartError> {
    let file = args.load()?;
    args.start_logging(&file)?;
    let (engine, relays) = args.resolve(&file)?;
    run_any(engine, relays)
}
