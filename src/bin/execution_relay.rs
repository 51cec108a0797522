//! `execution_relay`: the drop-in execution relay, configured by flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use torq::relays::{DomainArgs, ExecutionLogic};
use torq::runtime::{Relay, StartError, exit_code, init_logging};

fn main() -> ExitCode {
    let args = DomainArgs::parse();
    init_logging(args.log_level.filter(), false);
    exit_code(
        args.resolve::<ExecutionLogic>()
            .map_err(StartError::from)
            .and_then(|(engine, config)| Relay::<ExecutionLogic>::new(engine, config).run()),
    )
}
