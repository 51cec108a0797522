//! Writes a sample capture to standard output: a legacy hello and one frame of each
//! layout of PROTOCOL.md §4, as the legacy services would send them, plus the relay
//! control frames. Decode it with `torq-decode`:
//!
//! ```text
//! cargo run -q --example capture | cargo run -q --bin torq-decode
//! ```

use std::io::{self, Write};

use torq::protocol::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD")?;
    let now = 1_764_000_000_000_000_000;
    // The hello every legacy publisher sends first: domain 1, source 2, everything else 0.
    let mut capture = vec![0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0];
    capture.extend_from_slice(&[0; 24]);
    let mut buf = vec![0u8; 4096];
    let mut sequence = 0;
    let mut push = |domain: RelayDomain,
                    source: SourceType,
                    crc: Crc,
                    fill: &dyn Fn(&mut FrameBuilder<'_>) -> Result<(), Error>|
     -> Result<(), Error> {
        let mut builder = FrameBuilder::new(&mut buf, domain, source.raw())?;
        fill(&mut builder)?;
        sequence += 1;
        let len = builder.finish(sequence, now + sequence, crc);
        capture.extend_from_slice(&buf[..len]);
        Ok(())
    };

    let trade = Trade {
        asset_id: btc.asset_id,
        price: 9_712_345_000_000,
        volume: 25000000,
        execution_timestamp_ns: now,
        venue: btc.venue,
        asset_type: btc.asset_type,
        side: 0,
    };
    push(RelayDomain::MarketData, SourceType::KrakenCollector, Crc::Compute, &|b| {
        b.payload(&trade).map(drop)
    })?;
    let quote = Quote {
        asset_id: btc.asset_id,
        bid_price: 9_712_000_000_000,
        bid_size: 150_000_000,
        ask_price: 9_712_500_000_000,
        ask_size: 80000000,
        quote_timestamp_ns: now,
        venue: btc.venue,
        asset_type: btc.asset_type,
    };
    push(RelayDomain::MarketData, SourceType::KrakenCollector, Crc::Compute, &|b| {
        b.payload(&quote).map(drop)
    })?;
    push(RelayDomain::MarketData, SourceType::KrakenCollector, Crc::Compute, &|b| {
        let head = OrderBookHead {
            asset_id: btc.asset_id,
            venue: btc.venue,
            asset_type: btc.asset_type,
            snapshot_timestamp_ns: now,
            book_sequence: 1,
            ..Default::default()
        };
        let bids = [Level { price: 9_712_000_000_000, size: 150_000_000, order_count: 3 }];
        let asks = [
            Level { price: 9_712_500_000_000, size: 80000000, order_count: 1 },
            Level { price: 9_713_000_000_000, size: 200_000_000, order_count: 0 },
        ];
        b.tlv_with(3, OrderBook::encoded_len(1, 2), |out| OrderBook::emit(&head, &bids, &asks, out)).map(drop)
    })?;

    let identity =
        SignalIdentity { signal_id: 1, strategy_id: 21, signal_type: 1, confidence: 87, valid_for_ms: 500 };
    let arbitrage = ArbitrageSignal {
        strategy_id: 21,
        signal_id: 1,
        chain_id: 137,
        source_pool: [0x11; 20],
        target_pool: [0x22; 20],
        source_venue: 301,
        target_venue: 302,
        spread_bps: 12,
        net_profit_usd_q8: 4_200_000_000,
        timestamp_ns: now,
        ..Default::default()
    };
    // Legacy signal publishers leave the checksum 0.
    push(RelayDomain::Signal, SourceType::ArbitrageStrategy, Crc::Skip, &|b| {
        b.payload(&identity)?.payload(&arbitrage).map(drop)
    })?;

    let order = OrderRequest {
        order_id: 1001,
        asset_id: btc.asset_id,
        venue: btc.venue,
        asset_type: btc.asset_type,
        side: 0,
        order_type: 1,
        time_in_force: 0,
        price: 9_712_000_000_000,
        quantity: 10000000,
        strategy_id: 21,
    };
    push(RelayDomain::Execution, SourceType::ExecutionEngine, Crc::Compute, &|b| {
        b.payload(&order).map(drop)
    })?;
    push(RelayDomain::Execution, SourceType::ExecutionEngine, Crc::Compute, &|b| {
        b.payload(&OrderStatus { order_id: 1001, filled_quantity: 10000000, status: 2 }).map(drop)
    })?;
    push(RelayDomain::Execution, SourceType::ExecutionEngine, Crc::Compute, &|b| {
        b.payload(&Fill { order_id: 1001, fill_id: 1, price: 9_712_000_000_000, quantity: 10000000 })
            .map(drop)
    })?;
    push(RelayDomain::Execution, SourceType::ExecutionEngine, Crc::Compute, &|b| {
        b.payload(&OrderModify { order_id: 1002, new_price: 9_700_000_000_000, new_quantity: 5000000 })?
            .payload(&OrderCancel { order_id: 1003, reason: 1 })
            .map(drop)
    })?;
    push(RelayDomain::System, SourceType::MetricsCollector, Crc::Compute, &|b| {
        b.payload(&Heartbeat { timestamp_ns: now, frames_sent: 9 }).map(drop)
    })?;

    let subscribe = Subscribe {
        role: Role::Subscribe,
        options: OPTION_NOTICES,
        filters: vec![Filter::TypeRange { lo: 1, hi: 3 }, Filter::Instrument(btc)],
    };
    push(RelayDomain::System, SourceType::Dashboard, Crc::Compute, &|b| {
        b.tlv_with(116, subscribe.encoded_len(), |out| subscribe.emit(out)).map(drop)
    })?;

    io::stdout().lock().write_all(&capture)?;
    Ok(())
}
