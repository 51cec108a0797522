//! Payload layouts of PROTOCOL.md §4: plain values with `parse` and `emit`.
//!
//! Every fixed layout is declared once, field by field at its offset, by the `layout!`
//! macro, which writes the reader, the writer and a field visitor (used by `torq-decode`).
//! Reserved and padding bytes are ignored when parsing and written as zero.

use super::error::Error;
use super::ids::InstrumentId;
use super::registry::{self, MAX_BOOK_LEVELS};

/// A field value as the visitor of [`Payload::for_each_field`] sees it: exact and raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// An unsigned integer.
    Unsigned(u64),
    /// A signed integer (prices and sizes are ×1e8, never scaled here).
    Signed(i64),
    /// A byte array (addresses).
    Bytes(&'a [u8]),
}

/// A little-endian field at a fixed offset.
trait Field: Copy {
    const LEN: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(self, bytes: &mut [u8]);
    fn value(&self) -> FieldValue<'_>;
    /// The field's value from a visited one, when it fits.
    fn from_value(value: FieldValue<'_>) -> Option<Self>;
}

macro_rules! int_field {
    ($($ty:ty => $variant:ident),*) => {$(
        impl Field for $ty {
            const LEN: usize = size_of::<$ty>();
            #[inline(always)]
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0; size_of::<$ty>()];
                raw.copy_from_slice(&bytes[..Self::LEN]);
                <$ty>::from_le_bytes(raw)
            }
            #[inline(always)]
            fn write(self, bytes: &mut [u8]) {
                bytes[..Self::LEN].copy_from_slice(&self.to_le_bytes());
            }
            fn value(&self) -> FieldValue<'_> {
                FieldValue::$variant((*self).into())
            }
            fn from_value(value: FieldValue<'_>) -> Option<Self> {
                match value {
                    FieldValue::Unsigned(n) => <$ty>::try_from(n).ok(),
                    FieldValue::Signed(n) => <$ty>::try_from(n).ok(),
                    FieldValue::Bytes(_) => None,
                }
            }
        }
    )*};
}
int_field!(u8 => Unsigned, u16 => Unsigned, u32 => Unsigned, u64 => Unsigned, i64 => Signed);

impl<const N: usize> Field for [u8; N] {
    const LEN: usize = N;
    #[inline(always)]
    fn read(bytes: &[u8]) -> Self {
        let mut raw = [0; N];
        raw.copy_from_slice(&bytes[..N]);
        raw
    }
    #[inline(always)]
    fn write(self, bytes: &mut [u8]) {
        bytes[..N].copy_from_slice(&self);
    }
    fn value(&self) -> FieldValue<'_> {
        FieldValue::Bytes(self)
    }
    fn from_value(value: FieldValue<'_>) -> Option<Self> {
        match value {
            FieldValue::Bytes(bytes) => bytes.try_into().ok(),
            FieldValue::Unsigned(_) | FieldValue::Signed(_) => None,
        }
    }
}

/// Why [`Payload::set_field`] refused a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The layout has no field of that name.
    #[error("the layout has no such field")]
    Unknown,
    /// The value does not fit the field: an integer out of its range, a byte array of
    /// another length, or an integer for a byte array (or the reverse).
    #[error("the value does not fit the field")]
    Mismatch,
}

/// A fixed-size value layout.
pub trait Payload: Sized {
    /// The TLV type number this layout is registered under (Quote's also serves
    /// QuoteUpdate 17; OrderBook's head and levels are parts of type 3).
    const TYPE: u8;
    /// Bytes of the value.
    const SIZE: usize;

    /// Reads a value of exactly [`Payload::SIZE`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TlvSizeMismatch`] (offset 0) for any other length.
    fn parse(value: &[u8]) -> Result<Self, Error>;

    /// Writes the value into the first [`Payload::SIZE`] bytes of `out`, reserved bytes zero.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `out` is shorter.
    fn emit(&self, out: &mut [u8]) -> Result<(), Error>;

    /// Calls `visit` with each field's name (as in PROTOCOL.md §4) and value, in wire order.
    fn for_each_field(&self, visit: &mut dyn FnMut(&'static str, FieldValue<'_>));

    /// Sets the field `name` (as [`Payload::for_each_field`] names it) to `value`: the
    /// visitor's inverse, used to build a value from named fields (`torq-pub`).
    ///
    /// # Errors
    ///
    /// [`FieldError::Unknown`] when the layout has no such field, [`FieldError::Mismatch`]
    /// when the value does not fit it; the value is then unchanged.
    fn set_field(&mut self, name: &str, value: FieldValue<'_>) -> Result<(), FieldError>;
}

macro_rules! layout {
    ($(
        $(#[$meta:meta])*
        $name:ident = type $number:literal, $size:literal bytes {
            $($(#[$field_meta:meta])* $field:ident @ $offset:literal: $ty:ty,)*
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl Payload for $name {
            const TYPE: u8 = $number;
            const SIZE: usize = $size;

            #[inline]
            fn parse(value: &[u8]) -> Result<Self, Error> {
                let Ok::<&[u8; $size], _>(value) = value.try_into() else {
                    return Err(Error::TlvSizeMismatch { offset: 0, tlv_type: $number, len: value.len() as u16 });
                };
                Ok($name { $($field: Field::read(&value[$offset..]),)* })
            }

            #[inline]
            fn emit(&self, out: &mut [u8]) -> Result<(), Error> {
                let available = out.len();
                let Some(out) = out.first_chunk_mut::<$size>() else {
                    return Err(Error::BufferTooSmall { needed: $size, available });
                };
                *out = [0; $size];
                $(Field::write(self.$field, &mut out[$offset..]);)*
                Ok(())
            }

            fn for_each_field(&self, visit: &mut dyn FnMut(&'static str, FieldValue<'_>)) {
                $(visit(stringify!($field), self.$field.value());)*
            }

            fn set_field(&mut self, name: &str, value: FieldValue<'_>) -> Result<(), FieldError> {
                match name {
                    $(stringify!($field) => {
                        self.$field = Field::from_value(value).ok_or(FieldError::Mismatch)?;
                        Ok(())
                    })*
                    _ => Err(FieldError::Unknown),
                }
            }
        }

        const _: () = {
            // Every field lies inside the layout, in order, without overlap.
            let ends: &[(usize, usize)] = &[$(($offset, $offset + <$ty as Field>::LEN)),*];
            let mut i = 0;
            while i < ends.len() {
                assert!(ends[i].1 <= $size);
                assert!(i == 0 || ends[i - 1].1 <= ends[i].0);
                i += 1;
            }
        };
    )*};
}

layout! {
    /// Trade (1), 40 bytes.
    Trade = type 1, 40 bytes {
        /// Instrument asset id.
        asset_id @ 0: u64,
        /// Price ×1e8.
        price @ 8: i64,
        /// Volume ×1e8.
        volume @ 16: i64,
        /// Execution time, ns since the epoch.
        execution_timestamp_ns @ 24: u64,
        /// Instrument venue.
        venue @ 32: u16,
        /// Instrument asset type.
        asset_type @ 34: u8,
        /// 0 buy, 1 sell.
        side @ 36: u8,
    }

    /// Quote (2) and QuoteUpdate (17), 56 bytes.
    Quote = type 2, 56 bytes {
        /// Instrument asset id.
        asset_id @ 0: u64,
        /// Bid price ×1e8.
        bid_price @ 8: i64,
        /// Bid size ×1e8.
        bid_size @ 16: i64,
        /// Ask price ×1e8.
        ask_price @ 24: i64,
        /// Ask size ×1e8.
        ask_size @ 32: i64,
        /// Quote time, ns since the epoch.
        quote_timestamp_ns @ 40: u64,
        /// Instrument venue.
        venue @ 48: u16,
        /// Instrument asset type.
        asset_type @ 50: u8,
    }

    /// The fixed 32-byte head of an OrderBook (3); the levels follow it.
    OrderBookHead = type 3, 32 bytes {
        /// Instrument asset id.
        asset_id @ 0: u64,
        /// Instrument venue.
        venue @ 8: u16,
        /// Instrument asset type.
        asset_type @ 10: u8,
        /// Bid levels that follow.
        bid_count @ 12: u16,
        /// Ask levels after the bids.
        ask_count @ 14: u16,
        /// Snapshot time, ns since the epoch.
        snapshot_timestamp_ns @ 16: u64,
        /// Book sequence.
        book_sequence @ 24: u64,
    }

    /// One OrderBook level, 24 bytes.
    Level = type 3, 24 bytes {
        /// Price ×1e8.
        price @ 0: i64,
        /// Size ×1e8.
        size @ 8: i64,
        /// Orders at this level (0 = unknown).
        order_count @ 16: u32,
    }

    /// SignalIdentity (20), 16 bytes.
    SignalIdentity = type 20, 16 bytes {
        /// Signal id.
        signal_id @ 0: u64,
        /// Strategy id.
        strategy_id @ 8: u16,
        /// Signal type.
        signal_type @ 10: u8,
        /// Confidence 0..=100.
        confidence @ 11: u8,
        /// Validity in milliseconds.
        valid_for_ms @ 12: u32,
    }

    /// ArbitrageSignal (32), 170 bytes (the legacy layout).
    ArbitrageSignal = type 32, 170 bytes {
        /// Strategy id.
        strategy_id @ 0: u16,
        /// Signal id.
        signal_id @ 2: u64,
        /// Chain id.
        chain_id @ 10: u32,
        /// Source pool address.
        source_pool @ 14: [u8; 20],
        /// Target pool address.
        target_pool @ 34: [u8; 20],
        /// Source venue.
        source_venue @ 54: u16,
        /// Target venue.
        target_venue @ 56: u16,
        /// Input token address.
        token_in @ 58: [u8; 20],
        /// Output token address.
        token_out @ 78: [u8; 20],
        /// Expected profit, USD ×1e8.
        expected_profit_usd_q8 @ 98: i64,
        /// Required capital, USD ×1e8.
        required_capital_usd_q8 @ 106: i64,
        /// Spread in basis points.
        spread_bps @ 114: u16,
        /// DEX fees, USD ×1e8.
        dex_fees_usd_q8 @ 116: i64,
        /// Gas cost, USD ×1e8.
        gas_cost_usd_q8 @ 124: i64,
        /// Slippage, USD ×1e8.
        slippage_usd_q8 @ 132: i64,
        /// Net profit, USD ×1e8.
        net_profit_usd_q8 @ 140: i64,
        /// Slippage tolerance in basis points.
        slippage_tolerance_bps @ 148: u16,
        /// Maximum gas price in gwei.
        max_gas_price_gwei @ 150: u32,
        /// Valid until, Unix seconds.
        valid_until @ 154: u32,
        /// Priority.
        priority @ 158: u16,
        /// Signal time, ns since the epoch.
        timestamp_ns @ 162: u64,
    }

    /// OrderRequest (40), 48 bytes.
    OrderRequest = type 40, 48 bytes {
        /// Order id.
        order_id @ 0: u64,
        /// Instrument asset id.
        asset_id @ 8: u64,
        /// Instrument venue.
        venue @ 16: u16,
        /// Instrument asset type.
        asset_type @ 18: u8,
        /// 0 buy, 1 sell.
        side @ 19: u8,
        /// 0 market, 1 limit.
        order_type @ 20: u8,
        /// 0 GTC, 1 IOC, 2 FOK.
        time_in_force @ 21: u8,
        /// Limit price ×1e8.
        price @ 24: i64,
        /// Quantity ×1e8.
        quantity @ 32: i64,
        /// Strategy id.
        strategy_id @ 40: u16,
    }

    /// OrderStatus (41), 24 bytes.
    OrderStatus = type 41, 24 bytes {
        /// Order id.
        order_id @ 0: u64,
        /// Filled quantity ×1e8.
        filled_quantity @ 8: i64,
        /// 0 new, 1 partially filled, 2 filled, 3 cancelled, 4 rejected.
        status @ 16: u8,
    }

    /// Fill (42), 32 bytes.
    Fill = type 42, 32 bytes {
        /// Order id.
        order_id @ 0: u64,
        /// Fill id.
        fill_id @ 8: u64,
        /// Price ×1e8.
        price @ 16: i64,
        /// Quantity ×1e8.
        quantity @ 24: i64,
    }

    /// OrderCancel (43), 16 bytes.
    OrderCancel = type 43, 16 bytes {
        /// Order id.
        order_id @ 0: u64,
        /// Reason code.
        reason @ 8: u8,
    }

    /// OrderModify (44), 24 bytes.
    OrderModify = type 44, 24 bytes {
        /// Order id.
        order_id @ 0: u64,
        /// New price ×1e8.
        new_price @ 8: i64,
        /// New quantity ×1e8.
        new_quantity @ 16: i64,
    }

    /// Heartbeat (100), 16 bytes.
    Heartbeat = type 100, 16 bytes {
        /// Sender time, ns since the epoch.
        timestamp_ns @ 0: u64,
        /// Frames sent so far.
        frames_sent @ 8: u64,
    }
}

impl Trade {
    /// The traded instrument.
    pub fn instrument(&self) -> InstrumentId {
        InstrumentId { asset_id: self.asset_id, venue: self.venue, asset_type: self.asset_type, reserved: 0 }
    }
}

impl Quote {
    /// The quoted instrument.
    pub fn instrument(&self) -> InstrumentId {
        InstrumentId { asset_id: self.asset_id, venue: self.venue, asset_type: self.asset_type, reserved: 0 }
    }
}

impl OrderRequest {
    /// The ordered instrument (byte 19, the side, is never part of it).
    pub fn instrument(&self) -> InstrumentId {
        InstrumentId { asset_id: self.asset_id, venue: self.venue, asset_type: self.asset_type, reserved: 0 }
    }
}

/// An OrderBook (3) value: its head and the levels, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBook<'a> {
    /// The fixed head.
    pub head: OrderBookHead,
    levels: &'a [u8],
}

impl<'a> OrderBook<'a> {
    /// Reads a value of `32 + 24 * (bid_count + ask_count)` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TlvSizeMismatch`] when the length breaks that formula.
    pub fn parse(value: &'a [u8]) -> Result<Self, Error> {
        if registry::order_book_levels(value).is_none() {
            return Err(Error::TlvSizeMismatch { offset: 0, tlv_type: 3, len: value.len() as u16 });
        }
        let (head, levels) = value.split_at(OrderBookHead::SIZE);
        Ok(OrderBook { head: OrderBookHead::parse(head)?, levels })
    }

    /// The bids, best first.
    pub fn bids(&self) -> impl ExactSizeIterator<Item = Level> + 'a {
        let split = usize::from(self.head.bid_count) * Level::SIZE;
        levels(&self.levels[..split])
    }

    /// The asks, best first.
    pub fn asks(&self) -> impl ExactSizeIterator<Item = Level> + 'a {
        let split = usize::from(self.head.bid_count) * Level::SIZE;
        levels(&self.levels[split..])
    }

    /// The instrument of the book.
    pub fn instrument(&self) -> InstrumentId {
        let head = &self.head;
        InstrumentId { asset_id: head.asset_id, venue: head.venue, asset_type: head.asset_type, reserved: 0 }
    }

    /// Bytes of a book with this many levels.
    pub const fn encoded_len(bids: usize, asks: usize) -> usize {
        OrderBookHead::SIZE + Level::SIZE * (bids + asks)
    }

    /// Writes a book into `out`; the counts in `head` are replaced by the slice lengths.
    /// Returns the bytes written.
    ///
    /// # Errors
    ///
    /// [`Error::ValueTooLong`] over 2729 levels; [`Error::BufferTooSmall`] when `out` is short.
    pub fn emit(
        head: &OrderBookHead,
        bids: &[Level],
        asks: &[Level],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let len = Self::encoded_len(bids.len(), asks.len());
        if bids.len() + asks.len() > MAX_BOOK_LEVELS {
            return Err(Error::ValueTooLong { len });
        }
        let available = out.len();
        let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, available })?;
        let head = OrderBookHead { bid_count: bids.len() as u16, ask_count: asks.len() as u16, ..*head };
        let (head_bytes, mut rest) = out.split_at_mut(OrderBookHead::SIZE);
        head.emit(head_bytes)?;
        for level in bids.iter().chain(asks) {
            level.emit(rest)?;
            rest = &mut rest[Level::SIZE..];
        }
        Ok(len)
    }
}

fn levels(bytes: &[u8]) -> impl ExactSizeIterator<Item = Level> + '_ {
    bytes.chunks_exact(Level::SIZE).map(|chunk| Level::parse(chunk).unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Trade whose every field differs, and its golden bytes.
    pub(crate) fn golden_trade() -> (Trade, [u8; 40]) {
        let trade = Trade {
            asset_id: 0x4254_432F_5553_4400,
            price: 4_500_000_000_000,
            volume: -2,
            execution_timestamp_ns: 0x1122_3344_5566_7788,
            venue: 101,
            asset_type: 51,
            side: 1,
        };
        let bytes = [
            0x00, 0x44, 0x53, 0x55, 0x2F, 0x43, 0x54, 0x42, // asset_id
            0x00, 0xC8, 0xE6, 0xBC, 0x17, 0x04, 0x00, 0x00, // price 45000.00000000
            0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // volume -2
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // execution_timestamp_ns
            101, 0, 51, 0, 1, 0, 0, 0, // venue, asset_type, reserved, side, zero
        ];
        (trade, bytes)
    }

    fn round_trip<P: Payload + PartialEq + Default + core::fmt::Debug>(value: P, golden: &[u8]) {
        let mut out = vec![0xAA; P::SIZE];
        value.emit(&mut out).unwrap();
        assert_eq!(out, golden, "{}", core::any::type_name::<P>());
        assert_eq!(P::parse(golden).unwrap(), value);
        assert!(P::parse(&golden[1..]).is_err());
        // Every visited field set by name rebuilds the value.
        let mut rebuilt = P::default();
        value.for_each_field(&mut |name, field| rebuilt.set_field(name, field).unwrap());
        assert_eq!(rebuilt, value, "{}", core::any::type_name::<P>());
    }

    #[test]
    fn set_field_refuses_unknown_names_and_values_that_do_not_fit() {
        let (trade, _) = golden_trade();
        let mut value = trade;
        assert_eq!(value.set_field("prce", FieldValue::Signed(1)), Err(FieldError::Unknown));
        assert_eq!(value.set_field("venue", FieldValue::Unsigned(65_536)), Err(FieldError::Mismatch));
        assert_eq!(value.set_field("venue", FieldValue::Signed(-1)), Err(FieldError::Mismatch));
        assert_eq!(value.set_field("price", FieldValue::Unsigned(u64::MAX)), Err(FieldError::Mismatch));
        assert_eq!(value.set_field("price", FieldValue::Bytes(&[1])), Err(FieldError::Mismatch));
        assert_eq!(value, trade, "a refused value leaves the layout unchanged");
        assert_eq!(value.set_field("price", FieldValue::Unsigned(7)), Ok(()));
        assert_eq!(value.set_field("volume", FieldValue::Signed(-7)), Ok(()));
        assert_eq!((value.price, value.volume), (7, -7));
        let mut arbitrage = ArbitrageSignal::default();
        assert_eq!(arbitrage.set_field("token_in", FieldValue::Bytes(&[1; 19])), Err(FieldError::Mismatch));
        assert_eq!(arbitrage.set_field("token_in", FieldValue::Unsigned(1)), Err(FieldError::Mismatch));
        assert_eq!(arbitrage.set_field("token_in", FieldValue::Bytes(&[1; 20])), Ok(()));
        assert_eq!(arbitrage.token_in, [1; 20]);
    }

    /// Golden bytes: `(offset, little-endian bytes)` pieces on a zeroed value.
    fn golden(size: usize, pieces: &[(usize, &[u8])]) -> Vec<u8> {
        let mut out = vec![0; size];
        for (offset, bytes) in pieces {
            out[*offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        out
    }

    #[test]
    fn trade_golden() {
        let (trade, bytes) = golden_trade();
        round_trip(trade, &bytes);
        let mut noisy = bytes;
        noisy[35] = 9; // reserved
        noisy[39] = 9; // zero padding
        assert_eq!(Trade::parse(&noisy).unwrap(), trade, "reserved bytes are ignored");
    }

    #[test]
    fn quote_golden() {
        let quote = Quote {
            asset_id: 1,
            bid_price: 2,
            bid_size: 3,
            ask_price: -4,
            ask_size: 5,
            quote_timestamp_ns: 6,
            venue: 0x0102,
            asset_type: 7,
        };
        let bytes = golden(
            56,
            &[
                (0, &[1]),
                (8, &[2]),
                (16, &[3]),
                (24, &[0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
                (32, &[5]),
                (40, &[6]),
                (48, &[2, 1, 7]),
            ],
        );
        round_trip(quote, &bytes);
    }

    #[test]
    fn order_book_golden() {
        let head = OrderBookHead {
            asset_id: 0xAB,
            venue: 102,
            asset_type: 51,
            bid_count: 0,
            ask_count: 0,
            snapshot_timestamp_ns: 0x0102,
            book_sequence: 9,
        };
        let bid = Level { price: 100, size: 7, order_count: 3 };
        let asks =
            [Level { price: 101, size: 1, order_count: 0 }, Level { price: 102, size: 2, order_count: 1 }];
        let mut out = [0xAA; 32 + 24 * 3];
        assert_eq!(OrderBook::emit(&head, &[bid], &asks, &mut out), Ok(104));
        let expected = golden(
            104,
            &[
                (0, &[0xAB]),
                (8, &[102, 0, 51, 0, 1, 0, 2, 0, 2, 1]),
                (24, &[9]),
                (32, &[100]),
                (40, &[7]),
                (48, &[3]),
                (56, &[101]),
                (64, &[1]),
                (80, &[102]),
                (88, &[2]),
                (96, &[1]),
            ],
        );
        assert_eq!(out.to_vec(), expected);
        let book = OrderBook::parse(&out).unwrap();
        assert_eq!(book.bids().collect::<Vec<_>>(), vec![bid]);
        assert_eq!(book.asks().collect::<Vec<_>>(), asks.to_vec());
        assert_eq!(book.instrument().venue, 102);
        assert!(OrderBook::parse(&out[..80]).is_err());
        let empty = OrderBook::parse(&[0; 32]).unwrap();
        assert_eq!((empty.bids().len(), empty.asks().len()), (0, 0));
        let too_many = vec![Level::default(); MAX_BOOK_LEVELS + 1];
        assert!(OrderBook::emit(&head, &too_many, &[], &mut vec![0; 70_000]).is_err());
    }

    #[test]
    fn signal_identity_golden() {
        let value = SignalIdentity {
            signal_id: 0x0102,
            strategy_id: 3,
            signal_type: 4,
            confidence: 99,
            valid_for_ms: 0x0A0B,
        };
        round_trip(value, &golden(16, &[(0, &[2, 1]), (8, &[3, 0, 4, 99, 0x0B, 0x0A])]));
    }

    #[test]
    fn arbitrage_signal_golden() {
        let value = ArbitrageSignal {
            strategy_id: 0x0201,
            signal_id: 3,
            chain_id: 137,
            source_pool: [0x11; 20],
            target_pool: [0x22; 20],
            source_venue: 300,
            target_venue: 302,
            token_in: [0x33; 20],
            token_out: [0x44; 20],
            expected_profit_usd_q8: 5,
            required_capital_usd_q8: 6,
            spread_bps: 7,
            dex_fees_usd_q8: 8,
            gas_cost_usd_q8: 9,
            slippage_usd_q8: 10,
            net_profit_usd_q8: -11,
            slippage_tolerance_bps: 12,
            max_gas_price_gwei: 13,
            valid_until: 14,
            priority: 15,
            timestamp_ns: 16,
        };
        let bytes = golden(
            170,
            &[
                (0, &[1, 2, 3]),
                (10, &[137]),
                (14, &[0x11; 20]),
                (34, &[0x22; 20]),
                (54, &[0x2C, 0x01, 0x2E, 0x01]),
                (58, &[0x33; 20]),
                (78, &[0x44; 20]),
                (98, &[5]),
                (106, &[6]),
                (114, &[7]),
                (116, &[8]),
                (124, &[9]),
                (132, &[10]),
                (140, &[0xF5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
                (148, &[12, 0, 13]),
                (154, &[14]),
                (158, &[15]),
                (162, &[16]),
            ],
        );
        round_trip(value, &bytes);
    }

    #[test]
    fn execution_layouts_golden() {
        let order = OrderRequest {
            order_id: 1,
            asset_id: 2,
            venue: 3,
            asset_type: 4,
            side: 1,
            order_type: 1,
            time_in_force: 2,
            price: 5,
            quantity: 6,
            strategy_id: 7,
        };
        round_trip(
            order,
            &golden(
                48,
                &[(0, &[1]), (8, &[2]), (16, &[3, 0, 4, 1, 1, 2]), (24, &[5]), (32, &[6]), (40, &[7])],
            ),
        );
        assert_eq!(order.instrument(), InstrumentId { asset_id: 2, venue: 3, asset_type: 4, reserved: 0 });
        round_trip(
            OrderStatus { order_id: 1, filled_quantity: 2, status: 3 },
            &golden(24, &[(0, &[1]), (8, &[2]), (16, &[3])]),
        );
        round_trip(
            Fill { order_id: 1, fill_id: 2, price: 3, quantity: 4 },
            &golden(32, &[(0, &[1]), (8, &[2]), (16, &[3]), (24, &[4])]),
        );
        round_trip(OrderCancel { order_id: 1, reason: 2 }, &golden(16, &[(0, &[1]), (8, &[2])]));
        round_trip(
            OrderModify { order_id: 1, new_price: 2, new_quantity: 3 },
            &golden(24, &[(0, &[1]), (8, &[2]), (16, &[3])]),
        );
        round_trip(Heartbeat { timestamp_ns: 1, frames_sent: 2 }, &golden(16, &[(0, &[1]), (8, &[2])]));
    }

    #[test]
    fn layout_sizes_match_the_registry() {
        fn rule<P: Payload>() -> registry::SizeRule {
            registry::lookup(P::TYPE).unwrap().size
        }
        use registry::SizeRule::Fixed;
        assert_eq!(rule::<Trade>(), Fixed(Trade::SIZE as u16));
        assert_eq!(rule::<Quote>(), Fixed(Quote::SIZE as u16));
        assert_eq!(registry::lookup(17).unwrap().size, Fixed(Quote::SIZE as u16));
        assert_eq!(rule::<SignalIdentity>(), Fixed(16));
        assert_eq!(rule::<ArbitrageSignal>(), Fixed(170));
        assert_eq!(rule::<OrderRequest>(), Fixed(48));
        assert_eq!(rule::<OrderStatus>(), Fixed(24));
        assert_eq!(rule::<Fill>(), Fixed(32));
        assert_eq!(rule::<OrderCancel>(), Fixed(16));
        assert_eq!(rule::<OrderModify>(), Fixed(24));
        assert_eq!(rule::<Heartbeat>(), Fixed(16));
    }
}
