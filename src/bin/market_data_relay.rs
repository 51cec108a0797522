//! `market_data_relay`: the drop-in market data relay, configured by flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use torq::cli::{DomainArgs, start_logging};
use torq::relays::MarketDataLogic;
use torq::runtime::{Relay, StartError, exit_code};

fn main() -> ExitCode {
    exit_code(start(&DomainArgs::parse()))
}

fn start(args: &DomainArgs) -> Result<i32, StartError> {
    start_logging(Some(args.log_level), false, None)?;
    let (engine, config) = args.resolve::<MarketDataLogic>()?;
    Relay::<MarketDataLogic>::new(engine, config).run()
}
