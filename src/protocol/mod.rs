//! Protocol V2, sans-IO: bytes in, bytes out, no sockets, clocks or threads.
//!
//! A frame is a 32-byte [`Header`] and a payload of TLVs. The layers, in the order a
//! reader uses them:
//!
//! 1. [`frame`] finds a frame's length at the start of a byte slice, or says more bytes
//!    are needed, or that the stream is broken (bad magic, version, or size);
//! 2. [`validate`] classifies a whole frame ([`FrameKind`]) and applies a relay's
//!    stateless checks ([`Checks`]);
//! 3. [`tlvs`] walks the payload; [`Tlv::decode`] reads a value as a typed [`Value`];
//!    [`routing_key`] gives what subscription filters match.
//!
//! [`FrameBuilder`] writes frames into a caller's buffer. All errors are [`Error`], but for
//! the text form of subscription filters ([`Filter::parse_type_range`],
//! [`Filter::parse_instrument`], [`Filter::list`]), refused with a [`FilterTextError`].
//!
//! ```
//! use torq::protocol::*;
//! let mut buf = [0u8; 256];
//! let trade = Trade { asset_id: InstrumentId::coin(VenueId::Kraken, "BTC/USD")?.asset_id, price: 45_000_00000000, ..Trade::default() };
//! let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, SourceType::KrakenCollector.raw())?;
//! builder.payload(&trade)?;
//! let len = builder.finish(1, 1_700_000_000_000_000_000, Crc::Compute);
//!
//! let Framing::Frame(len) = frame(&buf[..len], 131_072)? else { unreachable!() };
//! let checks = Checks { checksum: ChecksumLevel::Required, ..Checks::new(RelayDomain::MarketData) };
//! assert_eq!(validate(&buf[..len], &checks)?, FrameKind::Data);
//! let first = tlvs(&buf[32..len]).next().unwrap()?;
//! assert_eq!(first.decode()?, Value::Trade(trade));
//! # Ok::<(), torq::protocol::Error>(())
//! ```

mod builder;
mod control;
mod crc;
mod error;
mod filter_text;
mod header;
mod ids;
mod payload;
pub mod registry;
mod tlv;
mod validate;

pub use builder::{Crc, FrameBuilder};
pub use control::{
    Filter, OPTION_CONFIRM, OPTION_HEARTBEATS, OPTION_NOTICES, OPTION_SHM, OPTIONS_KNOWN, RelayNotice, Role,
    RoutingKey, Subscribe, control_tlv, notice, routing_key,
};
pub use crc::{checksum, mark_bridged};
pub use error::{Error, FilterTextError, SubscribeError, SymbolError};
pub use header::{FLAG_BRIDGED, Framing, HEADER_SIZE, Header, MAGIC, RelayDomain, VERSION, frame};
pub use ids::{AssetType, InstrumentId, SourceType, Symbol, VenueId, symbol_asset_id};
pub use payload::{
    ArbitrageSignal, FieldError, FieldValue, Fill, Heartbeat, Level, OrderBook, OrderBookHead, OrderCancel,
    OrderModify, OrderRequest, OrderStatus, Payload, Quote, SignalIdentity, Trade,
};
pub use tlv::{Tlv, Tlvs, tlvs};
pub use validate::{Checks, ChecksumLevel, FrameKind, validate};

/// A TLV value read as its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the type of the same name
pub enum Value<'a> {
    Trade(Trade),
    Quote(Quote),
    QuoteUpdate(Quote),
    OrderBook(OrderBook<'a>),
    SignalIdentity(SignalIdentity),
    ArbitrageSignal(ArbitrageSignal),
    OrderRequest(OrderRequest),
    OrderStatus(OrderStatus),
    Fill(Fill),
    OrderCancel(OrderCancel),
    OrderModify(OrderModify),
    Heartbeat(Heartbeat),
    Subscribe(Subscribe),
    RelayNotice(RelayNotice<'a>),
    /// Any other type: the raw value.
    Other(&'a [u8]),
}

impl<'a> Tlv<'a> {
    /// Reads the value as its layout (§4 types and the control values of §6).
    ///
    /// # Errors
    ///
    /// The layout's parse error (a length that breaks its rule, a malformed Subscribe, a
    /// RelayNotice that is not UTF-8).
    pub fn decode(&self) -> Result<Value<'a>, Error> {
        let v = self.value;
        Ok(match self.tlv_type {
            1 => Value::Trade(Trade::parse(v)?),
            2 => Value::Quote(Quote::parse(v)?),
            17 => Value::QuoteUpdate(Quote::parse(v)?),
            3 => Value::OrderBook(OrderBook::parse(v)?),
            20 => Value::SignalIdentity(SignalIdentity::parse(v)?),
            32 => Value::ArbitrageSignal(ArbitrageSignal::parse(v)?),
            40 => Value::OrderRequest(OrderRequest::parse(v)?),
            41 => Value::OrderStatus(OrderStatus::parse(v)?),
            42 => Value::Fill(Fill::parse(v)?),
            43 => Value::OrderCancel(OrderCancel::parse(v)?),
            44 => Value::OrderModify(OrderModify::parse(v)?),
            100 => Value::Heartbeat(Heartbeat::parse(v)?),
            registry::SUBSCRIBE => Value::Subscribe(Subscribe::parse(v)?),
            registry::RELAY_NOTICE => Value::RelayNotice(RelayNotice::parse(v)?),
            _ => Value::Other(v),
        })
    }
}

#[cfg(test)]
mod tests;
