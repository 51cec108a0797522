//! A market-data subscriber on the client library: Kraken trades, with the relay's
//! notices, sequence gaps and reconnections as they come.
//!
//! ```sh
//! cargo run --example subscriber -- /tmp/torq/market_data.sock
//! ```

use std::time::Duration;

use torq::client::{Event, Notice, Reconnect, Subscriber, SubscriberOptions};
use torq::protocol::{Filter, Payload, Trade, VenueId, tlvs};

fn main() -> Result<(), torq::client::Error> {
    let socket = std::env::args().nth(1).unwrap_or_else(|| "/tmp/torq/market_data.sock".into());
    let options = SubscriberOptions::new()
        .filter(Filter::TypeRangeVenue { lo: Trade::TYPE, hi: Trade::TYPE, venue: VenueId::Kraken.raw() })
        .reconnect(Reconnect::default());
    let mut subscriber = Subscriber::connect(&socket, options)?;
    eprintln!("subscribed to {socket}");
    loop {
        match subscriber.recv_timeout(Duration::from_secs(5))? {
            Some(Event::Frame(frame)) => {
                let first = tlvs(frame.payload()).next().and_then(Result::ok);
                if let Some(trade) = first.and_then(|tlv| Trade::parse(tlv.value).ok()) {
                    println!("#{} price {} volume {}", frame.header().sequence(), trade.price, trade.volume);
                }
            }
            Some(Event::Notice(Notice::Dropped { first_sequence, count })) => {
                eprintln!("the relay dropped {count} frames from sequence {first_sequence}: too slow");
            }
            Some(Event::Notice(notice)) => eprintln!("relay: {notice:?}"),
            Some(Event::Gap { source, expected, received }) => {
                eprintln!("gap from source {source}: expected {expected}, got {received}");
            }
            Some(Event::Restarted { source, expected, received }) => {
                eprintln!("source {source} started again at {received} (expected {expected})");
            }
            Some(Event::Reconnected { attempts }) => eprintln!("reconnected after {attempts} attempts"),
            None => eprintln!("nothing for 5 s"),
        }
    }
}
