//! A market-data publisher on the client library: 10 trades a second until stopped.
//!
//! ```sh
//! target/release/market_data_relay &
//! cargo run --example publisher -- /tmp/torq/market_data.sock
//! ```

use std::time::Duration;

use torq::client::{Publisher, PublisherOptions, Reconnect};
use torq::protocol::{RelayDomain, SourceType, Trade, VenueId};

fn main() -> Result<(), torq::client::Error> {
    let socket = std::env::args().nth(1).unwrap_or_else(|| "/tmp/torq/market_data.sock".into());
    // Keep publishing across relay restarts.
    let options = PublisherOptions::new(RelayDomain::MarketData, SourceType::KrakenCollector.raw())
        .reconnect(Reconnect::default());
    let mut publisher = Publisher::connect(&socket, options)?;
    for n in 0.. {
        let trade = Trade {
            asset_id: 0x4254_432F_5553_4400, // "BTC/USD"
            venue: VenueId::Kraken.raw(),
            asset_type: 51,
            price: 9_700_000_000_000 + n,
            volume: 25_000_000,
            side: 1,
            ..Trade::default()
        };
        let sequence = publisher.publish(|frame| frame.payload(&trade).map(|_| ()))?;
        publisher.flush()?;
        println!("trade {sequence} at {}", trade.price);
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
