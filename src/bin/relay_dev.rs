//! `relay_dev <market-data|signal|execution|all>`: relays for development; `all` runs the
//! three domains in one process on one set of reactors.

use std::process::ExitCode;

use clap::Parser;
use torq::relays::DevArgs;
use torq::runtime::{StartError, exit_code, init_logging, run_any};

fn main() -> ExitCode {
    let args = DevArgs::parse();
    init_logging(args.level().filter(), false);
    exit_code(args.resolve().map_err(StartError::from).and_then(|(engine, relays)| run_any(engine, relays)))
}
