//! `signal_relay`: the drop-in signal relay, configured by flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use torq::relays::{DomainArgs, SignalLogic};
use torq::runtime::{Relay, StartError, exit_code, init_logging};

fn main() -> ExitCode {
    let args = DomainArgs::parse();
    init_logging(args.log_level.filter(), false);
    exit_code(
        args.resolve::<SignalLogic>()
            .map_err(StartError::from)
            .and_then(|(engine, config)| Relay::<SignalLogic>::new(engine, config).run()),
    )
}
