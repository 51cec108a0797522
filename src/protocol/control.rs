//! Relay control values of PROTOCOL.md §6 — Subscribe (116) and RelayNotice (117) — and the
//! routing key that subscription filters look at.

use super::error::{Error, SubscribeError};
use super::header::{HEADER_SIZE, Header};
use super::ids::InstrumentId;
use super::payload::{OrderRequest, Payload, Quote, Trade};
use super::registry::{self, MAX_FILTERS};
use super::tlv::{self, Tlv};

/// What a connection does, from its Subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// 0: publishes, receives no data.
    Publish,
    /// 1: receives data; a data frame it sends is rejected (`not_publisher`).
    Subscribe,
    /// 2: both.
    PublishSubscribe,
}

impl Role {
    /// Whether this role may send data frames.
    pub const fn publishes(self) -> bool {
        matches!(self, Role::Publish | Role::PublishSubscribe)
    }
    /// Whether this role receives data frames.
    pub const fn subscribes(self) -> bool {
        matches!(self, Role::Subscribe | Role::PublishSubscribe)
    }
    const fn raw(self) -> u8 {
        match self {
            Role::Publish => 0,
            Role::Subscribe => 1,
            Role::PublishSubscribe => 2,
        }
    }
}

/// Subscribe option bit 0: send me RelayNotice frames.
pub const OPTION_NOTICES: u8 = 0b01;
/// Subscribe option bit 1: send me a Heartbeat after each idle second.
pub const OPTION_HEARTBEATS: u8 = 0b10;
/// Subscribe option bit 2: confirm what I publish with notice 7 (implies notices).
pub const OPTION_CONFIRM: u8 = 0b100;
/// Subscribe option bit 3: deliver my data frames through shared memory (PROTOCOL.md §7;
/// implies notices).
pub const OPTION_SHM: u8 = 0b1000;
/// Every option bit of version 1; bits 4–7 must be 0.
pub const OPTIONS_KNOWN: u8 = OPTION_NOTICES | OPTION_HEARTBEATS | OPTION_CONFIRM | OPTION_SHM;

/// One subscription filter (16 bytes on the wire). Filters are OR-ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Kind 1: the routing TLV's type is in `lo..=hi`.
    TypeRange {
        /// Low bound.
        lo: u8,
        /// High bound (inclusive).
        hi: u8,
    },
    /// Kind 2: the header's source byte.
    Source(u8),
    /// Kind 3: the routing TLV's instrument, exactly (its reserved byte must be 0).
    Instrument(InstrumentId),
    /// Kind 4: the routing TLV's instrument venue.
    Venue(u16),
    /// Kind 5: type range and venue together.
    TypeRangeVenue {
        /// Low bound.
        lo: u8,
        /// High bound (inclusive).
        hi: u8,
        /// Venue.
        venue: u16,
    },
}

impl Filter {
    /// Whether a frame with this routing key and source passes the filter.
    #[inline]
    pub fn matches(&self, key: &RoutingKey, source: u8) -> bool {
        match *self {
            Filter::TypeRange { lo, hi } => (lo..=hi).contains(&key.tlv_type),
            Filter::Source(wanted) => source == wanted,
            Filter::Instrument(wanted) => key.instrument == Some(wanted),
            Filter::Venue(venue) => key.instrument.is_some_and(|i| i.venue == venue),
            Filter::TypeRangeVenue { lo, hi, venue } => {
                (lo..=hi).contains(&key.tlv_type) && key.instrument.is_some_and(|i| i.venue == venue)
            }
        }
    }

    fn parse(index: u8, raw: &[u8; 16]) -> Result<Filter, SubscribeError> {
        let u16_at = |at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
        let (filter, used): (Filter, &[usize]) = match raw[0] {
            1 => (Filter::TypeRange { lo: raw[1], hi: raw[2] }, &[1, 2]),
            2 => (Filter::Source(raw[1]), &[1]),
            3 => {
                let mut asset = [0; 8];
                asset.copy_from_slice(&raw[8..16]);
                let instrument = InstrumentId {
                    venue: u16_at(2),
                    asset_type: raw[4],
                    // Frames never carry a non-zero reserved instrument byte into a routing
                    // key, so a filter asking for one could never match: @5 must be 0.
                    reserved: 0,
                    asset_id: u64::from_le_bytes(asset),
                };
                (Filter::Instrument(instrument), &[2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15])
            }
            4 => (Filter::Venue(u16_at(2)), &[2, 3]),
            5 => (Filter::TypeRangeVenue { lo: raw[1], hi: raw[2], venue: u16_at(4) }, &[1, 2, 4, 5]),
            kind => return Err(SubscribeError::FilterKind { index, kind }),
        };
        if let Some(offset) = (1..16).find(|at| raw[*at] != 0 && !used.contains(at)) {
            return Err(SubscribeError::UnusedByte { index, offset: offset as u8 });
        }
        match filter {
            Filter::TypeRange { lo, hi } | Filter::TypeRangeVenue { lo, hi, .. } if lo > hi => {
                Err(SubscribeError::TypeRange { index, lo, hi })
            }
            _ => Ok(filter),
        }
    }

    fn emit(&self) -> [u8; 16] {
        let mut raw = [0; 16];
        match *self {
            Filter::TypeRange { lo, hi } => raw[..3].copy_from_slice(&[1, lo, hi]),
            Filter::Source(source) => raw[..2].copy_from_slice(&[2, source]),
            Filter::Instrument(i) => {
                raw[0] = 3;
                raw[2..4].copy_from_slice(&i.venue.to_le_bytes());
                raw[4] = i.asset_type;
                raw[5] = i.reserved;
                raw[8..16].copy_from_slice(&i.asset_id.to_le_bytes());
            }
            Filter::Venue(venue) => {
                raw[0] = 4;
                raw[2..4].copy_from_slice(&venue.to_le_bytes());
            }
            Filter::TypeRangeVenue { lo, hi, venue } => {
                raw[..3].copy_from_slice(&[5, lo, hi]);
                raw[4..6].copy_from_slice(&venue.to_le_bytes());
            }
        }
        raw
    }
}

/// A Subscribe (116) value: `role u8 @0; options u8 @1; n u16 @2; n filters of 16 bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The role asked for.
    pub role: Role,
    /// Option bits ([`OPTION_NOTICES`], [`OPTION_HEARTBEATS`], [`OPTION_CONFIRM`], [`OPTION_SHM`]).
    pub options: u8,
    /// The filters (at most 64); none means every data frame.
    pub filters: Vec<Filter>,
}

impl Subscribe {
    /// Parses and fully validates a Subscribe value.
    ///
    /// # Errors
    ///
    /// [`Error::Subscribe`] naming the first broken rule.
    pub fn parse(value: &[u8]) -> Result<Subscribe, Error> {
        Self::parse_inner(value).map_err(Error::Subscribe)
    }

    fn parse_inner(value: &[u8]) -> Result<Subscribe, SubscribeError> {
        let Some((&[role, options, lo, hi], rest)) = value.split_first_chunk::<4>() else {
            return Err(SubscribeError::TooShort(value.len()));
        };
        let count = u16::from_le_bytes([lo, hi]);
        if usize::from(count) > MAX_FILTERS {
            return Err(SubscribeError::TooManyFilters(count));
        }
        if rest.len() != 16 * usize::from(count) {
            return Err(SubscribeError::Length { len: value.len(), count });
        }
        let role = match role {
            0 => Role::Publish,
            1 => Role::Subscribe,
            2 => Role::PublishSubscribe,
            other => return Err(SubscribeError::Role(other)),
        };
        if options & !OPTIONS_KNOWN != 0 {
            return Err(SubscribeError::Options(options));
        }
        let (chunks, _) = rest.as_chunks::<16>();
        let filters = chunks
            .iter()
            .enumerate()
            .map(|(index, raw)| Filter::parse(index as u8, raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Subscribe { role, options, filters })
    }

    /// Whether the connection gets RelayNotices: asked for, or implied by confirmation or
    /// shared-memory delivery.
    pub fn notices(&self) -> bool {
        self.options & (OPTION_NOTICES | OPTION_CONFIRM | OPTION_SHM) != 0
    }

    /// Bytes of the value.
    pub fn encoded_len(&self) -> usize {
        4 + 16 * self.filters.len()
    }

    /// Writes the value into `out`, returning the bytes written.
    ///
    /// # Errors
    ///
    /// [`Error::ValueTooLong`] over 64 filters; [`Error::BufferTooSmall`] when `out` is short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        let len = self.encoded_len();
        if self.filters.len() > MAX_FILTERS {
            return Err(Error::ValueTooLong { len });
        }
        let available = out.len();
        let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, available })?;
        out[0] = self.role.raw();
        out[1] = self.options;
        out[2..4].copy_from_slice(&(self.filters.len() as u16).to_le_bytes());
        for (raw, filter) in out[4..].chunks_exact_mut(16).zip(&self.filters) {
            raw.copy_from_slice(&filter.emit());
        }
        Ok(len)
    }

    /// Whether a data frame with this routing key and source is wanted (no filter = all).
    #[inline]
    pub fn wants(&self, key: &RoutingKey, source: u8) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.matches(key, source))
    }

    /// Whether a whole frame passes the filters: the routing key rule of PROTOCOL.md §6, read
    /// from the frame's header (source) and first TLV only when there are filters.
    pub fn wants_frame(&self, frame: &[u8]) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let source = Header::view(frame).map_or(0, Header::source);
        let payload = frame.get(HEADER_SIZE..).unwrap_or_default();
        let key = routing_key(payload).unwrap_or(RoutingKey { tlv_type: 0, instrument: None });
        self.wants(&key, source)
    }
}

/// The one TLV of a control frame's payload: a Subscribe (116) or RelayNotice (117), in either
/// form, filling the payload; `None` for any other payload.
///
/// The TLV is read without the walker's size rule, which [`tlvs`](super::tlvs) applies: the
/// control values check their own length, and a Subscribe of 65 filters or of a length that
/// is not `4 + 16 * n` must be refused by [`Subscribe::parse`] naming that rule, not be
/// mistaken for an empty value. [`validate`](super::validate) classifies a System frame as
/// [`FrameKind::Control`](super::FrameKind::Control) exactly when this returns `Some`.
///
/// # Examples
///
/// ```
/// use torq::protocol::{Subscribe, control_tlv};
/// // A Subscribe TLV announcing 65 filters (1044 bytes, over the walker's 1028).
/// let mut payload = vec![255, 0, 116, 0x14, 0x04, 1, 0, 65, 0];
/// payload.resize(5 + 1044, 0);
/// let tlv = control_tlv(&payload).unwrap();
/// let error = Subscribe::parse(tlv.value).unwrap_err();
/// assert_eq!(error.to_string(), "malformed Subscribe: 65 filters, at most 64 are allowed");
/// assert!(control_tlv(&[116, 4, 1, 0, 0, 0, 200, 0]).is_none()); // not alone
/// ```
#[inline]
pub fn control_tlv(payload: &[u8]) -> Option<Tlv<'_>> {
    let first = tlv::first(payload)?;
    let whole = (if first.extended { 5 } else { 2 }) + first.value.len() == payload.len();
    (whole && matches!(first.tlv_type, registry::SUBSCRIBE | registry::RELAY_NOTICE)).then_some(first)
}

/// RelayNotice codes.
pub mod notice {
    /// Subscribed; the text describes the relay's settings.
    pub const SUBSCRIBED: u16 = 1;
    /// A frame was rejected; the text starts with the reason token.
    pub const REJECTED: u16 = 2;
    /// Protocol error; the connection is closed next.
    pub const PROTOCOL_ERROR: u16 = 3;
    /// Frames dropped as a slow consumer; sequence = first dropped, text `dropped=<n>`.
    pub const DROPPED: u16 = 4;
    /// The relay is stopping.
    pub const STOPPING: u16 = 5;
    /// Access denied.
    pub const ACCESS_DENIED: u16 = 6;
    /// What this connection published was accepted (Subscribe option bit 2); sequence = data
    /// frames accepted since it connected, text `accepted=<n> rejected=<m>`.
    pub const ACCEPTED: u16 = 7;
}

/// A RelayNotice (117) value: `code u16 @0; reserved u16 @2; sequence u64 @4; text @12..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayNotice<'a> {
    /// The code ([`notice`]).
    pub code: u16,
    /// The sequence of the frame concerned, else 0.
    pub sequence: u64,
    /// UTF-8 text.
    pub text: &'a str,
}

impl<'a> RelayNotice<'a> {
    /// Longest value (the registry bound).
    pub const MAX_LEN: usize = 512;

    /// Reads a notice value.
    ///
    /// # Errors
    ///
    /// [`Error::TlvSizeOutOfBounds`] outside 12..=512 bytes, [`Error::NoticeText`] when the
    /// text is not UTF-8.
    pub fn parse(value: &'a [u8]) -> Result<Self, Error> {
        let len = value.len();
        if !(12..=Self::MAX_LEN).contains(&len) {
            return Err(Error::TlvSizeOutOfBounds {
                offset: 0,
                tlv_type: registry::RELAY_NOTICE,
                len: len.min(usize::from(u16::MAX)) as u16,
                min: 12,
                max: Self::MAX_LEN as u16,
            });
        }
        let mut sequence = [0; 8];
        sequence.copy_from_slice(&value[4..12]);
        Ok(RelayNotice {
            code: u16::from_le_bytes([value[0], value[1]]),
            sequence: u64::from_le_bytes(sequence),
            text: core::str::from_utf8(&value[12..]).map_err(|_| Error::NoticeText)?,
        })
    }

    /// Writes the value into `out`, cutting the text at a character boundary so the value
    /// stays within 512 bytes. Returns the bytes written.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `out` is short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut text_len = self.text.len().min(Self::MAX_LEN - 12);
        while !self.text.is_char_boundary(text_len) {
            text_len -= 1;
        }
        let len = 12 + text_len;
        let available = out.len();
        let out = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len, available })?;
        out[..2].copy_from_slice(&self.code.to_le_bytes());
        out[2..4].fill(0);
        out[4..12].copy_from_slice(&self.sequence.to_le_bytes());
        out[12..].copy_from_slice(&self.text.as_bytes()[..text_len]);
        Ok(len)
    }
}

/// What subscription filters look at: the first TLV of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingKey {
    /// The first TLV's type.
    pub tlv_type: u8,
    /// Its instrument, when it is a Trade, Quote, QuoteUpdate, OrderBook or OrderRequest whose
    /// length meets its size rule.
    pub instrument: Option<InstrumentId>,
}

/// The routing key of a payload; `None` when the payload does not start with a whole TLV.
///
/// # Examples
///
/// ```
/// use torq::protocol::routing_key;
/// let key = routing_key(&[200, 1, 0]).unwrap();
/// assert_eq!((key.tlv_type, key.instrument), (200, None));
/// ```
#[inline]
pub fn routing_key(payload: &[u8]) -> Option<RoutingKey> {
    let first = tlv::first(payload)?;
    let value = first.value;
    let at = |asset: usize, venue: usize, asset_type: usize| {
        let mut id = [0; 8];
        id.copy_from_slice(&value[asset..asset + 8]);
        Some(InstrumentId {
            asset_id: u64::from_le_bytes(id),
            venue: u16::from_le_bytes([value[venue], value[venue + 1]]),
            asset_type: value[asset_type],
            reserved: 0,
        })
    };
    let instrument = match first.tlv_type {
        1 if value.len() == Trade::SIZE => at(0, 32, 34),
        2 | 17 if value.len() == Quote::SIZE => at(0, 48, 50),
        3 if registry::order_book_levels(value).is_some() => at(0, 8, 10),
        40 if value.len() == OrderRequest::SIZE => at(8, 16, 18),
        _ => None,
    };
    Some(RoutingKey { tlv_type: first.tlv_type, instrument })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::payload::tests::golden_trade;

    fn subscribe_bytes(role: u8, options: u8, filters: &[[u8; 16]]) -> Vec<u8> {
        let mut out = vec![role, options];
        out.extend_from_slice(&(filters.len() as u16).to_le_bytes());
        for f in filters {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn subscribe_golden_round_trip() {
        let btc = InstrumentId { asset_id: 0x4254_4300_0000_0000, venue: 101, asset_type: 51, reserved: 0 };
        let sub = Subscribe {
            role: Role::PublishSubscribe,
            options: OPTION_NOTICES | OPTION_HEARTBEATS,
            filters: vec![
                Filter::TypeRange { lo: 1, hi: 3 },
                Filter::Source(4),
                Filter::Instrument(btc),
                Filter::Venue(102),
                Filter::TypeRangeVenue { lo: 2, hi: 2, venue: 0x0201 },
            ],
        };
        let golden = subscribe_bytes(
            2,
            3,
            &[
                [1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [3, 0, 101, 0, 51, 0, 0, 0, 0, 0, 0, 0, 0, 0x43, 0x54, 0x42],
                [4, 0, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                [5, 2, 2, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ],
        );
        let mut out = vec![0; sub.encoded_len()];
        assert_eq!(sub.emit(&mut out), Ok(84));
        assert_eq!(out, golden);
        assert_eq!(Subscribe::parse(&golden), Ok(sub));
    }

    #[test]
    fn every_subscribe_rule_is_enforced() {
        use SubscribeError::*;
        let zero = [0u8; 16];
        let bad = |bytes: &[u8]| match Subscribe::parse(bytes) {
            Err(Error::Subscribe(e)) => e,
            other => panic!("{bytes:?} gave {other:?}"),
        };
        assert_eq!(bad(&[1, 0, 0]), TooShort(3));
        assert_eq!(bad(&[]), TooShort(0));
        assert_eq!(bad(&[1, 0, 1, 0]), Length { len: 4, count: 1 });
        assert_eq!(bad(&[1, 0, 65, 0]), TooManyFilters(65));
        assert_eq!(bad(&subscribe_bytes(3, 0, &[])), Role(3));
        assert_eq!(bad(&subscribe_bytes(1, 0x10, &[])), Options(0x10));
        assert_eq!(bad(&subscribe_bytes(1, 0x8F, &[])), Options(0x8F));
        // Bits 0-3 (notices, heartbeats, confirm, shared memory) are all known.
        assert!(Subscribe::parse(&subscribe_bytes(1, 0x0F, &[])).is_ok());
        assert_eq!(bad(&subscribe_bytes(1, 0, &[zero])), FilterKind { index: 0, kind: 0 });
        let mut range = zero;
        range[..3].copy_from_slice(&[1, 5, 4]);
        assert_eq!(bad(&subscribe_bytes(1, 0, &[range])), TypeRange { index: 0, lo: 5, hi: 4 });
        range[..3].copy_from_slice(&[5, 5, 4]);
        assert_eq!(bad(&subscribe_bytes(1, 0, &[range])), TypeRange { index: 0, lo: 5, hi: 4 });
        let mut source = zero;
        source[..2].copy_from_slice(&[2, 9]);
        source[15] = 1;
        assert_eq!(bad(&subscribe_bytes(1, 0, &[source, source])), UnusedByte { index: 0, offset: 15 });
        let mut instrument = zero;
        instrument[0] = 3;
        instrument[6] = 1;
        assert_eq!(bad(&subscribe_bytes(1, 0, &[instrument])), UnusedByte { index: 0, offset: 6 });
        instrument[6] = 0;
        instrument[5] = 1;
        assert_eq!(bad(&subscribe_bytes(1, 0, &[instrument])), UnusedByte { index: 0, offset: 5 });
        let max = subscribe_bytes(0, 1, &vec![[4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; 64]);
        assert_eq!(Subscribe::parse(&max).unwrap().filters.len(), 64);
        assert_eq!(Subscribe::parse(&[1, 0, 0, 0]).unwrap().role, super::Role::Subscribe);
    }

    /// A Subscribe of 65 filters used to be reported as "length 0 is not 4 + 16 * 0": the relay
    /// read the control TLV through the walker, whose size rule refused it, and parsed an empty
    /// value instead. The message must name the real count and length.
    #[test]
    fn subscribe_errors_name_the_real_count_and_length() {
        let message = |payload: &[u8]| {
            let tlv = control_tlv(payload).expect("a control payload");
            assert_eq!(tlv.tlv_type, 116);
            Subscribe::parse(tlv.value).unwrap_err().to_string()
        };
        let venue = [4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // 65 filters, 1044 bytes: extended form FF 00 74 14 04.
        let mut payload = vec![255, 0, 116, 0x14, 0x04];
        payload.extend_from_slice(&subscribe_bytes(1, 0, &[venue; 65]));
        assert_eq!(payload.len(), 5 + 1044);
        assert_eq!(message(&payload), "malformed Subscribe: 65 filters, at most 64 are allowed");
        // The walker refuses the same TLV by its size rule, without a Subscribe reason.
        assert_eq!(
            tlv::tlvs(&payload).next(),
            Some(Err(Error::TlvSizeMismatch { offset: 0, tlv_type: 116, len: 1044 }))
        );
        // 65 filters announced, one present.
        let mut payload = vec![116, 20];
        payload.extend_from_slice(&subscribe_bytes(1, 0, &[venue]));
        payload[4] = 65;
        assert_eq!(message(&payload), "malformed Subscribe: 65 filters, at most 64 are allowed");
        // Two filters announced, one present; one announced, two present.
        payload[4] = 2;
        assert_eq!(message(&payload), "malformed Subscribe: length 20 is not 4 + 16 * 2");
        let mut payload = vec![116, 36];
        payload.extend_from_slice(&subscribe_bytes(1, 0, &[venue, venue]));
        payload[4] = 1;
        assert_eq!(message(&payload), "malformed Subscribe: length 36 is not 4 + 16 * 1");
        assert_eq!(
            message(&[116, 3, 1, 0, 0]),
            "malformed Subscribe: length 3 is shorter than the 4 bytes of role, options and filter count"
        );
        // 64 filters, 1028 bytes, is the largest Subscribe.
        let mut payload = vec![255, 0, 116, 0x04, 0x04];
        payload.extend_from_slice(&subscribe_bytes(1, 0, &[venue; 64]));
        assert_eq!(Subscribe::parse(control_tlv(&payload).unwrap().value).unwrap().filters.len(), 64);
    }

    #[test]
    fn control_tlv_is_one_whole_116_or_117() {
        assert_eq!(control_tlv(&[116, 4, 1, 0, 0, 0]).map(|t| t.value), Some(&[1u8, 0, 0, 0][..]));
        assert_eq!(control_tlv(&[255, 0, 117, 1, 0, 9]).map(|t| (t.tlv_type, t.extended)), Some((117, true)));
        assert_eq!(control_tlv(&[116, 4, 1, 0, 0, 0, 100, 0]), None); // another TLV follows
        assert_eq!(control_tlv(&[116, 5, 1, 0, 0, 0]), None); // truncated
        assert_eq!(control_tlv(&[100, 0]), None);
        assert_eq!(control_tlv(&[]), None);
    }

    #[test]
    fn routing_key_reads_instruments_at_section_4_offsets() {
        let (trade, bytes) = golden_trade();
        let mut payload = vec![1, 40];
        payload.extend_from_slice(&bytes);
        payload.extend_from_slice(&[200, 0]);
        let key = routing_key(&payload).unwrap();
        assert_eq!(key, RoutingKey { tlv_type: 1, instrument: Some(trade.instrument()) });

        let mut order = [0u8; 48];
        order[8] = 7;
        order[16] = 101;
        order[18] = 51;
        order[19] = 1; // side: never part of the instrument
        let mut payload = vec![255, 0, 40, 48, 0];
        payload.extend_from_slice(&order);
        let key = routing_key(&payload).unwrap();
        assert_eq!(
            key.instrument,
            Some(InstrumentId { asset_id: 7, venue: 101, asset_type: 51, reserved: 0 })
        );

        // A Trade of the wrong length routes by type only.
        assert_eq!(routing_key(&[1, 1, 0]), Some(RoutingKey { tlv_type: 1, instrument: None }));
        assert_eq!(routing_key(&[1, 5, 0]), None);
    }

    #[test]
    fn filters_match_as_specified() {
        let btc = InstrumentId { asset_id: 1, venue: 101, asset_type: 51, reserved: 0 };
        let trade = RoutingKey { tlv_type: 1, instrument: Some(btc) };
        let vendor = RoutingKey { tlv_type: 200, instrument: None };
        assert!(Filter::TypeRange { lo: 1, hi: 3 }.matches(&trade, 0));
        assert!(!Filter::TypeRange { lo: 2, hi: 3 }.matches(&trade, 0));
        assert!(Filter::Source(7).matches(&vendor, 7) && !Filter::Source(7).matches(&vendor, 8));
        assert!(Filter::Instrument(btc).matches(&trade, 0));
        assert!(!Filter::Instrument(InstrumentId { venue: 102, ..btc }).matches(&trade, 0));
        assert!(Filter::Venue(101).matches(&trade, 0) && !Filter::Venue(101).matches(&vendor, 0));
        assert!(Filter::TypeRangeVenue { lo: 1, hi: 1, venue: 101 }.matches(&trade, 0));
        assert!(!Filter::TypeRangeVenue { lo: 2, hi: 9, venue: 101 }.matches(&trade, 0));
        let all = Subscribe { role: Role::Subscribe, options: 0, filters: vec![] };
        assert!(all.wants(&vendor, 0));
        let some = Subscribe { filters: vec![Filter::Venue(5), Filter::Source(3)], ..all };
        assert!(some.wants(&vendor, 3) && !some.wants(&vendor, 4));
    }

    #[test]
    fn notice_golden_round_trip_and_text_cut() {
        let notice = RelayNotice { code: notice::REJECTED, sequence: 0x0102, text: "checksum_mismatch" };
        let mut out = [0u8; 512];
        let len = notice.emit(&mut out).unwrap();
        let mut golden = vec![2, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0];
        golden.extend_from_slice(b"checksum_mismatch");
        assert_eq!(&out[..len], &golden[..]);
        assert_eq!(RelayNotice::parse(&golden), Ok(notice));
        let long = "é".repeat(400);
        let len = RelayNotice { code: 1, sequence: 0, text: &long }.emit(&mut out).unwrap();
        assert_eq!(len, 512);
        assert_eq!(RelayNotice::parse(&out[..len]).unwrap().text.len(), 500);
        assert_eq!(RelayNotice::parse(&out[..11]).unwrap_err().reason(), "tlv_size_out_of_bounds");
        golden.push(0xFF);
        assert_eq!(RelayNotice::parse(&golden), Err(Error::NoticeText));
    }
}
