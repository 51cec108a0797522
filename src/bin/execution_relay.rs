//! `execution_relay`: the drop-in execution relay, configured by flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use torq::cli::{DomainArgs, start_logging};
use torq::relays::ExecutionLogic;
use torq::runtime::{Relay, StartError, exit_code};

fn main() -> ExitCode {
    exit_code(start(&DomainArgs::parse()))
}

fn start(args: &DomainArgs) -> Result<i32, StartError> {
    start_logging(Some(args.log_level), false, None)?;
    let (engine, config) = args.resolve::<ExecutionLogic>()?;
    Relay::<ExecutionLogic>::new(engine, config).run()
}
