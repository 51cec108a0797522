//! The codec workloads, shared by `torq-perf codec` and `benches/codec.rs` so both measure
//! exactly the same code.

use std::hint::black_box;

use torq::protocol::{
    Checks, ChecksumLevel, Crc, FrameBuilder, Framing, InstrumentId, Payload, RelayDomain, SourceType, Trade,
    VenueId, frame, tlvs, validate,
};

/// The market data relay's default size limit.
const MAX_MESSAGE_SIZE: usize = 131_072;

/// The Trade every workload carries: a 74-byte frame with one Trade TLV.
pub fn sample_trade() -> Trade {
    Trade {
        asset_id: 0x4254_432F_5553_4400,
        price: 9_712_345_000_000,
        volume: 25_000_000,
        execution_timestamp_ns: 1_764_000_000_000_000_000,
        venue: VenueId::Kraken.raw(),
        asset_type: 51,
        side: 1,
    }
}

/// Builds the Trade frame into `buf` (reused); returns its length.
#[inline]
pub fn construct(buf: &mut [u8], trade: &Trade, sequence: u64, crc: Crc) -> usize {
    let Ok(mut builder) = FrameBuilder::new(buf, RelayDomain::MarketData, SourceType::KrakenCollector.raw())
    else {
        return 0;
    };
    if builder.payload(trade).is_err() {
        return 0;
    }
    builder.finish(sequence, 1_764_000_000_000_000_000 + sequence, crc)
}

/// The checks of the market data relay, with or without the checksum.
pub fn market_data_checks(crc: bool) -> Checks {
    let checksum = if crc { ChecksumLevel::Verify } else { ChecksumLevel::Off };
    Checks { checksum, ..Checks::new(RelayDomain::MarketData) }
}

/// Frames `bytes`, validates the frame as the market data relay would (CRC included when
/// `checks` asks), walks the TLVs and reads the Trade fields; returns a digest of them.
#[inline]
pub fn parse(bytes: &[u8], checks: &Checks) -> Option<i64> {
    let Ok(Framing::Frame(len)) = frame(bytes, MAX_MESSAGE_SIZE) else {
        return None;
    };
    let frame = &bytes[..len];
    validate(frame, checks).ok()?;
    let mut digest = 0;
    for tlv in tlvs(&frame[32..]) {
        let tlv = tlv.ok()?;
        if tlv.tlv_type == Trade::TYPE {
            let trade = Trade::parse(tlv.value).ok()?;
            digest ^=
                trade.price ^ trade.volume ^ trade.asset_id as i64 ^ trade.execution_timestamp_ns as i64;
            digest ^= i64::from(trade.venue) ^ i64::from(trade.asset_type) ^ i64::from(trade.side);
        }
    }
    Some(digest)
}

/// 64 symbols of 1 to 8 bytes.
pub const SYMBOLS: [&str; 64] = [
    "A", "BTC", "ETH", "SOL", "BTC/USD", "ETH/USD", "SOL/USDT", "XRP", "DOGE", "ADA/EUR", "AAPL", "MSFT",
    "GOOGL", "AMZN", "TSLA", "NVDA", "META", "BRK.B", "JPM", "V", "SPY", "QQQ", "IWM", "GLD", "TLT",
    "EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD", "USD/CHF", "EUR/GBP", "NZD/USD", "LINK", "DOT", "AVAX",
    "MATIC", "UNI", "AAVE", "ATOM", "LTC", "BCH", "XLM", "ALGO", "FIL", "NEAR", "APT", "ARB", "OP", "SHIB",
    "PEPE", "BNB/BUSD", "TRX", "ETC", "HBAR", "ICP", "VET", "SAND", "MANA", "AXS", "FTM", "EGLD", "XTZ",
    "EOS", "ZEC",
];

/// One InstrumentId round trip: the coin id of a symbol, its u128 key, the id rebuilt from
/// the key, compared with the original.
#[inline]
pub fn instrument_round_trip(venue: VenueId, symbol: &str) -> bool {
    let Ok(id) = InstrumentId::coin(venue, symbol) else {
        return false;
    };
    let key = black_box(id.key());
    InstrumentId::from_key(key) == id
}

/// The baseline: one `crc32fast::hash` over the 70 CRC'd bytes of the frame.
#[inline]
pub fn crc_only(frame: &[u8]) -> u32 {
    crc32fast::hash(&frame[..70])
}
