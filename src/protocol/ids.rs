//! Identifiers of PROTOCOL.md §5: [`InstrumentId`] and the numbered enumerations.
//!
//! Accessors on the wire always return raw numbers; these enumerations give names to the
//! numbers that are known, and a value outside a list is never an error.

use super::error::{Error, SymbolError};

/// Declares a `#[repr]` enumeration with `from_raw`, `raw` and `name`.
macro_rules! numbered {
    ($(#[$meta:meta])* $name:ident: $repr:ty { $($variant:ident = $number:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        pub enum $name {
            $(
                #[doc = concat!("`", stringify!($variant), "` = ", stringify!($number))]
                $variant = $number,
            )*
        }

        impl $name {
            /// Every value, in numeric order of declaration.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The value with this number, if it is in the list.
            pub const fn from_raw(raw: $repr) -> Option<Self> {
                match raw {
                    $($number => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The number on the wire.
            pub const fn raw(self) -> $repr {
                self as $repr
            }

            /// The name, as written in PROTOCOL.md.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)*
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use numbered;

numbered! {
    /// Trading venues (u16).
    VenueId: u16 {
        Generic = 0, NYSE = 1, NASDAQ = 2, LSE = 3, TSE = 4, HKEX = 5,
        Binance = 100, Kraken = 101, Coinbase = 102, Huobi = 103, OKEx = 104, FTX = 105,
        Bybit = 106, KuCoin = 107, Gemini = 108,
        Ethereum = 200, Bitcoin = 201, Polygon = 202, BinanceSmartChain = 203, Avalanche = 204,
        Fantom = 205, Arbitrum = 206, Optimism = 207, Solana = 208, Cardano = 209,
        Polkadot = 210, Cosmos = 211,
        UniswapV2 = 300, UniswapV3 = 301, SushiSwap = 302, Curve = 303, Balancer = 304,
        Aave = 305, Compound = 306, MakerDAO = 307, Yearn = 308, Synthetix = 309, DYdX = 310,
        QuickSwap = 400, SushiSwapPolygon = 401, CurvePolygon = 402, AavePolygon = 403,
        BalancerPolygon = 404,
        PancakeSwap = 500, VenusProtocol = 501,
        UniswapV3Arbitrum = 600, SushiSwapArbitrum = 601, CurveArbitrum = 602,
        Deribit = 700, BybitDerivatives = 701, OpynProtocol = 702, Hegic = 703,
        COMEX = 800, CME = 801, ICE = 802, ForexCom = 803,
        TestVenue = 65000, MockExchange = 65001,
    }
}

numbered! {
    /// Asset types (u8).
    AssetType: u8 {
        Stock = 1, Bond = 2, ETF = 3, Commodity = 4, Currency = 5, Index = 6,
        Token = 50, Coin = 51, NFT = 52, StableCoin = 53, WrappedToken = 54,
        Pool = 100, LPToken = 101, YieldToken = 102, SyntheticAsset = 103, DerivativeToken = 104,
        GovernanceToken = 105,
        Option = 150, Future = 151, Swap = 152, Forward = 153, CDS = 154,
        StructuredNote = 200, ConvertibleBond = 201,
        TestAsset = 250, MockAsset = 251,
    }
}

numbered! {
    /// The producer of a frame (header byte 6). Informational, never translated.
    SourceType: u8 {
        Unknown = 0, BinanceCollector = 1, CoinbaseCollector = 2, KrakenCollector = 3,
        PolygonCollector = 4, GeminiCollector = 5,
        ArbitrageStrategy = 10, MarketMaker = 11, TrendFollower = 12, StateManager = 15,
        ExecutionEngine = 20, PortfolioManager = 21, RiskManager = 22,
        Dashboard = 30, MetricsCollector = 31,
        MarketDataRelay = 80, SignalRelay = 81, ExecutionRelay = 82,
        TestClient = 99,
    }
}

/// An instrument: 12 bytes on the wire (asset_id u64 @0, venue u16 @8, asset_type u8 @10,
/// reserved u8 @11).
///
/// [`InstrumentId::key`] is the exact u128 key; [`InstrumentId::from_key`] inverts it.
///
/// ```
/// use torq::protocol::{InstrumentId, VenueId};
/// let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD")?;
/// assert_eq!(btc.asset_id, 0x4254_432F_5553_4400);
/// assert_eq!(InstrumentId::from_key(btc.key()), btc);
/// assert_eq!(btc.symbol().unwrap().as_str(), "BTC/USD");
/// # Ok::<(), torq::protocol::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InstrumentId {
    /// The asset: a symbol packed big-end first, or the first 8 bytes of an EVM address.
    pub asset_id: u64,
    /// The venue number ([`VenueId`] names the known ones).
    pub venue: u16,
    /// The asset type number ([`AssetType`] names the known ones).
    pub asset_type: u8,
    /// Reserved; part of the exact key.
    pub reserved: u8,
}

impl InstrumentId {
    /// Bytes on the wire.
    pub const SIZE: usize = 12;

    /// The exact key `venue << 80 | asset_type << 72 | reserved << 64 | asset_id`.
    pub const fn key(&self) -> u128 {
        (self.venue as u128) << 80
            | (self.asset_type as u128) << 72
            | (self.reserved as u128) << 64
            | self.asset_id as u128
    }

    /// The instrument of an exact key. Bits above 96 are ignored.
    pub const fn from_key(key: u128) -> Self {
        InstrumentId {
            asset_id: key as u64,
            reserved: (key >> 64) as u8,
            asset_type: (key >> 72) as u8,
            venue: (key >> 80) as u16,
        }
    }

    /// An instrument named by a symbol (stocks, bonds, ETFs, coins, currencies).
    ///
    /// # Errors
    ///
    /// [`Error::Symbol`] when the symbol is empty, longer than 8 bytes, or has a byte
    /// outside 0x21..=0x7E.
    #[inline]
    pub fn from_symbol(venue: VenueId, asset_type: AssetType, symbol: &str) -> Result<Self, Error> {
        Ok(InstrumentId {
            asset_id: symbol_asset_id(symbol.as_bytes())?,
            venue: venue.raw(),
            asset_type: asset_type.raw(),
            reserved: 0,
        })
    }

    /// A coin on a venue, e.g. `coin(VenueId::Kraken, "BTC/USD")`.
    ///
    /// # Errors
    ///
    /// As [`InstrumentId::from_symbol`].
    #[inline]
    pub fn coin(venue: VenueId, symbol: &str) -> Result<Self, Error> {
        Self::from_symbol(venue, AssetType::Coin, symbol)
    }

    /// A stock on a venue.
    ///
    /// # Errors
    ///
    /// As [`InstrumentId::from_symbol`].
    pub fn stock(venue: VenueId, symbol: &str) -> Result<Self, Error> {
        Self::from_symbol(venue, AssetType::Stock, symbol)
    }

    /// An EVM token: asset_id is the big-endian u64 of the first 8 address bytes (lossy by
    /// design). Use [`AssetType::Token`], [`AssetType::StableCoin`] or
    /// [`AssetType::WrappedToken`].
    pub const fn evm_token(venue: VenueId, asset_type: AssetType, address: &[u8; 20]) -> Self {
        let [a, b, c, d, e, f, g, h, ..] = *address;
        InstrumentId {
            asset_id: u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            venue: venue.raw(),
            asset_type: asset_type.raw(),
            reserved: 0,
        }
    }

    /// The symbol packed in `asset_id`: its bytes from the most significant down, stopping
    /// at the first zero byte. `None` when that is empty or not printable ASCII (an EVM token
    /// id, say).
    pub fn symbol(&self) -> Option<Symbol> {
        let bytes = self.asset_id.to_be_bytes();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(8);
        if len == 0 || !bytes[..len].iter().all(|b| (0x21..=0x7e).contains(b)) {
            return None;
        }
        Some(Symbol { bytes, len: len as u8 })
    }

    /// Reads the 12-byte wire form.
    pub fn read(bytes: &[u8; 12]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, v0, v1, asset_type, reserved] = *bytes;
        InstrumentId {
            asset_id: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            venue: u16::from_le_bytes([v0, v1]),
            asset_type,
            reserved,
        }
    }

    /// The 12-byte wire form.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut out = [0; 12];
        out[..8].copy_from_slice(&self.asset_id.to_le_bytes());
        out[8..10].copy_from_slice(&self.venue.to_le_bytes());
        out[10] = self.asset_type;
        out[11] = self.reserved;
        out
    }
}

/// A decoded symbol of up to 8 printable ASCII bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    bytes: [u8; 8],
    len: u8,
}

impl Symbol {
    /// The symbol text.
    pub fn as_str(&self) -> &str {
        // Every byte was checked to be printable ASCII, so this cannot fail.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// Packs a symbol of 1..=8 bytes in 0x21..=0x7E from the most significant byte down.
///
/// # Errors
///
/// [`Error::Symbol`] for an empty, long or non-printable symbol.
#[inline]
pub fn symbol_asset_id(symbol: &[u8]) -> Result<u64, Error> {
    let len = symbol.len();
    if len == 0 || len > 8 {
        return Err(Error::Symbol(if len == 0 { SymbolError::Empty } else { SymbolError::TooLong(len) }));
    }
    let word = pack_be(symbol);
    // SWAR range check on all eight lanes at once: a lane is bad when it is below 0x21 or
    // above 0x7e. Lanes past the symbol's length are masked out.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = word & !HIGH;
    let below = !(low7 + (0x80 - 0x21) * ONES) & HIGH; // lane < 0x21 (ignoring its top bit)
    let above = (low7 + ONES) & HIGH; // lane >= 0x7f (ignoring its top bit)
    let mask = u64::MAX << (8 * (8 - len));
    let bad = (below | above | word) & HIGH & mask;
    if bad != 0 {
        let index = bad.leading_zeros() / 8;
        return Err(Error::Symbol(SymbolError::Byte { index: index as u8, byte: symbol[index as usize] }));
    }
    Ok(word)
}

/// The 1..=8 bytes of `bytes` as a big-endian u64 from the most significant byte down,
/// zero-padded; loads overlap instead of copying byte by byte.
#[inline(always)]
fn pack_be(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    debug_assert!((1..=8).contains(&len));
    if len >= 4 {
        // The first four and the last four bytes, overlapping when len < 8.
        let head = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let tail = u32::from_be_bytes([bytes[len - 4], bytes[len - 3], bytes[len - 2], bytes[len - 1]]);
        u64::from(head) << 32 | u64::from(tail) << (64 - 8 * len)
    } else {
        // The first, middle and last bytes cover every length from 1 to 3.
        let at = |i: usize| u64::from(bytes[i]) << (56 - 8 * i);
        at(0) | at(len / 2) | at(len - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_golden_bytes() {
        let id = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
        assert_eq!(id.asset_id, 0x4254_432F_5553_4400);
        assert_eq!(id.to_bytes(), [0x00, 0x44, 0x53, 0x55, 0x2F, 0x43, 0x54, 0x42, 101, 0, 51, 0]);
        assert_eq!(InstrumentId::read(&id.to_bytes()), id);
        assert_eq!(symbol_asset_id(b"A").unwrap(), 0x4100_0000_0000_0000);
        assert_eq!(symbol_asset_id(b"ABCDEFGH").unwrap(), 0x4142_4344_4546_4748);
        assert_eq!(symbol_asset_id(b"!~").unwrap(), 0x217E_0000_0000_0000);
    }

    #[test]
    fn symbol_rule_matches_a_plain_loop_on_every_byte() {
        for len in 1..=8 {
            for byte in 0..=255u8 {
                for index in 0..len {
                    let mut symbol = vec![b'A'; len];
                    symbol[index] = byte;
                    let plain_ok = (0x21..=0x7e).contains(&byte);
                    match symbol_asset_id(&symbol) {
                        Ok(word) => {
                            assert!(plain_ok, "{symbol:?} accepted");
                            assert_eq!(&word.to_be_bytes()[..len], &symbol[..]);
                        }
                        Err(e) => {
                            assert!(!plain_ok, "{symbol:?} refused: {e}");
                            let want = SymbolError::Byte { index: index as u8, byte };
                            assert_eq!(e, Error::Symbol(want));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_symbols_are_errors_not_truncations() {
        assert_eq!(symbol_asset_id(b""), Err(Error::Symbol(SymbolError::Empty)));
        assert_eq!(symbol_asset_id(b"ABCDEFGHI"), Err(Error::Symbol(SymbolError::TooLong(9))));
        assert!(InstrumentId::coin(VenueId::Binance, "BTC USD").is_err());
        assert!(InstrumentId::coin(VenueId::Binance, "é").is_err());
    }

    #[test]
    fn keys_are_exact_and_distinct() {
        let btc = InstrumentId::coin(VenueId::Kraken, "BTC").unwrap();
        let eth = InstrumentId::coin(VenueId::Kraken, "ETH").unwrap();
        assert_ne!(btc.key(), eth.key());
        let odd = InstrumentId { asset_id: u64::MAX, venue: 65535, asset_type: 255, reserved: 7 };
        assert_eq!(odd.key(), (1u128 << 96) - 1 - (0xF8u128 << 64));
        assert_eq!(InstrumentId::from_key(odd.key()), odd);
    }

    #[test]
    fn symbol_decoding_stops_at_first_zero() {
        let id = InstrumentId { asset_id: 0x4142_0043_0000_0000, ..Default::default() };
        assert_eq!(id.symbol().unwrap().as_str(), "AB");
        assert_eq!(InstrumentId::default().symbol(), None);
    }

    #[test]
    fn evm_token_takes_first_eight_address_bytes_big_endian() {
        let mut address = [0u8; 20];
        address[..8].copy_from_slice(&[0xA0, 0xB8, 0x69, 0x91, 0xC6, 0x21, 0x8B, 0x36]);
        address[19] = 0xFF;
        let usdc = InstrumentId::evm_token(VenueId::Ethereum, AssetType::StableCoin, &address);
        assert_eq!(usdc.asset_id, 0xA0B8_6991_C621_8B36);
        assert_eq!(usdc.venue, 200);
        assert_eq!(usdc.asset_type, 53);
    }

    #[test]
    fn enumerations_round_trip() {
        assert_eq!(VenueId::from_raw(65001), Some(VenueId::MockExchange));
        assert_eq!(VenueId::from_raw(6), None);
        assert_eq!(AssetType::from_raw(154).map(AssetType::name), Some("CDS"));
        assert_eq!(SourceType::from_raw(82), Some(SourceType::ExecutionRelay));
        for s in SourceType::ALL {
            assert_eq!(SourceType::from_raw(s.raw()), Some(*s));
        }
        assert_eq!(VenueId::ALL.len(), 58);
        assert_eq!(AssetType::ALL.len(), 26);
    }
}
