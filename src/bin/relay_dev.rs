//! `relay_dev <market-data|signal|execution|all>`: relays for development; `all` runs the
//! three domains in one process on one set of reactors.

use std::process::ExitCode;

use clap::Parser;
use torq::cli::DevArgs;
use torq::runtime::{StartError, exit_code, run_any};

fn main() -> ExitCode {
    exit_code(start(&DevArgs::parse()))
}

/// The file, if any, is read first: its `[logging]` table says how to log the rest.
fn start(args: &DevArgs) -> Result<i32, StartError> {
    let file = args.load()?;
    args.start_logging(file.as_ref())?;
    let (engine, relays) = args.resolve(file.as_ref())?;
    run_any(engine, relays)
}
