//! `market_data_relay`: the drop-in market data relay, configured by flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use torq::relays::{DomainArgs, MarketDataLogic};
use torq::runtime::{Relay, StartError, exit_code, init_logging};

fn main() -> ExitCode {
    let args = DomainArgs::parse();
    init_logging(args.log_level.filter(), false);
    exit_code(
        args.resolve::<MarketDataLogic>()
            .map_err(StartError::from)
            .and_then(|(engine, config)| Relay::<MarketDataLogic>::new(engine, config).run()),
    )
}
