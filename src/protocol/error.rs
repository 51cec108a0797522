//! The one error type of the protocol layer.

use super::RelayDomain;

/// Everything that can go wrong while framing, validating, walking, parsing or building
/// Protocol V2 bytes.
///
/// The type is small and `Copy`; it never carries I/O errors. [`Error::reason`] gives the
/// stable snake-case token used by `torq-decode`, the relay metrics, the audit and the
/// `RelayNotice` texts. TLV offsets are relative to the start of the payload (byte 32 of
/// the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first four bytes are not `EF BE AD DE`. Fatal for a stream.
    #[error("bad magic 0x{found:08x}: expected 0xdeadbeef, this is not a Protocol V2 stream")]
    BadMagic {
        /// The magic as read (little-endian; bytes not yet received read as zero).
        found: u32,
    },
    /// The version byte is not 1. Fatal for a stream.
    #[error("unsupported protocol version {found}: only version 1 is supported")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// `32 + payload_size` exceeds the configured maximum. Fatal for a stream.
    #[error("frame of {size} bytes exceeds max_message_size of {max} bytes")]
    FrameTooLarge {
        /// The whole frame size the header announces.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The `relay_domain` byte is 4 or more.
    #[error("relay_domain byte {found} is invalid: 0 MarketData, 1 Signal, 2 Execution, 3 System")]
    BadDomain {
        /// The domain byte.
        found: u8,
    },
    /// A data frame's domain is neither the relay's domain nor System.
    #[error("relay_domain byte {found} does not belong on the {expected} relay (only {expected} or System)")]
    WrongDomain {
        /// The domain byte.
        found: u8,
        /// The relay's domain.
        expected: RelayDomain,
    },
    /// TLV type 0, or 255 inside an extended TLV (or a builder asked for such a type).
    #[error("TLV at payload offset {offset} has invalid type {tlv_type} (types are 1..=254)")]
    TlvInvalidType {
        /// Offset of the TLV.
        offset: u32,
        /// The type byte.
        tlv_type: u8,
    },
    /// A TLV header or value runs past the end of the payload.
    #[error("TLV at payload offset {offset} runs past the end of the payload")]
    TlvTruncated {
        /// Offset of the TLV.
        offset: u32,
    },
    /// The reserved byte of an extended TLV is not 0.
    #[error("extended TLV at payload offset {offset} has reserved byte {value}, which must be 0")]
    TlvReservedNonzero {
        /// Offset of the TLV.
        offset: u32,
        /// The reserved byte.
        value: u8,
    },
    /// A fixed-size type, OrderBook or Subscribe whose length breaks its size rule.
    #[error("TLV type {tlv_type} at payload offset {offset} has length {len}, which breaks its size rule")]
    TlvSizeMismatch {
        /// Offset of the TLV.
        offset: u32,
        /// The TLV type.
        tlv_type: u8,
        /// The value length.
        len: u16,
    },
    /// A bounded type whose length is outside its bounds.
    #[error(
        "TLV type {tlv_type} at payload offset {offset} has length {len}, outside its bounds {min}..={max}"
    )]
    TlvSizeOutOfBounds {
        /// Offset of the TLV.
        offset: u32,
        /// The TLV type.
        tlv_type: u8,
        /// The value length.
        len: u16,
        /// Smallest allowed length.
        min: u16,
        /// Largest allowed length.
        max: u16,
    },
    /// The TLV type is not allowed on this relay (another domain's range, or the reserved
    /// range 120..=199).
    #[error("TLV type {tlv_type} at payload offset {offset} is not allowed on the {domain} relay")]
    TlvTypeNotAllowed {
        /// Offset of the TLV.
        offset: u32,
        /// The TLV type.
        tlv_type: u8,
        /// The relay's domain.
        domain: RelayDomain,
    },
    /// Strict validation: the TLV type is inside an allowed range but not registered.
    #[error("TLV type {tlv_type} at payload offset {offset} is not a registered type (strict validation)")]
    TlvUnknownType {
        /// Offset of the TLV.
        offset: u32,
        /// The TLV type.
        tlv_type: u8,
    },
    /// A Subscribe (116) or RelayNotice (117) TLV in a frame that is not a control frame.
    #[error(
        "control TLV {tlv_type} at payload offset {offset} outside a control frame (a control frame has domain 3 and that TLV alone)"
    )]
    MisplacedControl {
        /// Offset of the TLV.
        offset: u32,
        /// The TLV type.
        tlv_type: u8,
    },
    /// A non-zero checksum does not match the CRC of the frame.
    #[error("checksum 0x{found:08x} does not match the computed CRC-32 0x{computed:08x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        found: u32,
        /// The CRC computed over the frame.
        computed: u32,
    },
    /// The checksum is 0 where this relay requires one.
    #[error(
        "checksum is 0 (not computed) but this relay requires checksums; computed CRC-32 is 0x{computed:08x}"
    )]
    ChecksumMissing {
        /// The CRC computed over the frame.
        computed: u32,
    },
    /// A Subscribe value breaks a rule of PROTOCOL.md §6.
    #[error("malformed Subscribe: {0}")]
    Subscribe(SubscribeError),
    /// A RelayNotice value whose text is not UTF-8.
    #[error("RelayNotice text is not valid UTF-8")]
    NoticeText,
    /// A symbol that is empty, longer than 8 bytes or has a byte outside 0x21..=0x7E.
    #[error("invalid symbol: {0}")]
    Symbol(SymbolError),
    /// The caller's buffer is too small for what the builder was asked to write.
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A TLV value longer than 65535 bytes, or a payload longer than `u32::MAX`.
    #[error("value of {len} bytes is too long for a TLV (at most 65535)")]
    ValueTooLong {
        /// The length asked for.
        len: usize,
    },
}

impl Error {
    /// Every reason token, in the order of [`Error::index`]: one counter per kind of error.
    pub const REASONS: [&'static str; 20] = [
        "bad_magic",
        "unsupported_version",
        "frame_too_large",
        "bad_domain",
        "wrong_domain",
        "tlv_invalid_type",
        "tlv_truncated",
        "tlv_reserved_nonzero",
        "tlv_size_mismatch",
        "tlv_size_out_of_bounds",
        "tlv_type_not_allowed",
        "tlv_unknown_type",
        "misplaced_control",
        "checksum_mismatch",
        "checksum_missing",
        "bad_subscribe",
        "bad_notice",
        "bad_symbol",
        "buffer_too_small",
        "value_too_long",
    ];

    /// The position of this kind of error in [`Error::REASONS`] (the index of its counter).
    pub const fn index(&self) -> usize {
        match self {
            Error::BadMagic { .. } => 0,
            Error::UnsupportedVersion { .. } => 1,
            Error::FrameTooLarge { .. } => 2,
            Error::BadDomain { .. } => 3,
            Error::WrongDomain { .. } => 4,
            Error::TlvInvalidType { .. } => 5,
            Error::TlvTruncated { .. } => 6,
            Error::TlvReservedNonzero { .. } => 7,
            Error::TlvSizeMismatch { .. } => 8,
            Error::TlvSizeOutOfBounds { .. } => 9,
            Error::TlvTypeNotAllowed { .. } => 10,
            Error::TlvUnknownType { .. } => 11,
            Error::MisplacedControl { .. } => 12,
            Error::ChecksumMismatch { .. } => 13,
            Error::ChecksumMissing { .. } => 14,
            Error::Subscribe(_) => 15,
            Error::NoticeText => 16,
            Error::Symbol(_) => 17,
            Error::BufferTooSmall { .. } => 18,
            Error::ValueTooLong { .. } => 19,
        }
    }

    /// The stable snake-case token for this error (`bad_magic`, `tlv_truncated`,
    /// `checksum_mismatch`, ...).
    pub const fn reason(&self) -> &'static str {
        Error::REASONS[self.index()]
    }

    /// Whether the stream can no longer be framed after this error (magic, version, size).
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::BadMagic { .. } | Error::UnsupportedVersion { .. } | Error::FrameTooLarge { .. }
        )
    }
}

/// Why a Subscribe (116) value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The value is shorter than its 4-byte head (role, options, filter count).
    #[error("length {0} is shorter than the 4 bytes of role, options and filter count")]
    TooShort(usize),
    /// The value is not `4 + 16·n` bytes for its filter count `n` (at most 64).
    #[error("length {len} is not 4 + 16 * {count}")]
    Length {
        /// The value length.
        len: usize,
        /// The filter count at @2.
        count: u16,
    },
    /// More than 64 filters.
    #[error("{0} filters, at most 64 are allowed")]
    TooManyFilters(u16),
    /// Role is not 0, 1 or 2.
    #[error("role {0} is not 0 (publish), 1 (subscribe) or 2 (both)")]
    Role(u8),
    /// Options bits 4..=7 are set.
    #[error(
        "options 0x{0:02x} set reserved bits (only bit 0 notices, 1 heartbeats, 2 confirm and 3 shared memory exist)"
    )]
    Options(u8),
    /// A filter kind outside 1..=5.
    #[error("filter {index} has kind {kind}, expected 1..=5")]
    FilterKind {
        /// Index of the filter.
        index: u8,
        /// The kind byte.
        kind: u8,
    },
    /// A type-range filter with `lo > hi`.
    #[error("filter {index} has an empty type range {lo}..={hi}")]
    TypeRange {
        /// Index of the filter.
        index: u8,
        /// Low bound.
        lo: u8,
        /// High bound.
        hi: u8,
    },
    /// A byte that must be zero is not.
    #[error("filter {index} has non-zero unused byte at offset {offset}")]
    UnusedByte {
        /// Index of the filter.
        index: u8,
        /// Offset inside the 16-byte filter.
        offset: u8,
    },
}

/// Why a symbol was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// The symbol is empty.
    #[error("the symbol is empty (1 to 8 bytes are allowed)")]
    Empty,
    /// The symbol is longer than 8 bytes.
    #[error("the symbol has {0} bytes (at most 8 are allowed)")]
    TooLong(usize),
    /// A byte outside the printable range 0x21..=0x7E.
    #[error("byte 0x{byte:02x} at index {index} is not printable ASCII 0x21..=0x7e")]
    Byte {
        /// Index of the byte.
        index: u8,
        /// The byte.
        byte: u8,
    },
}

/// Why the text of a subscription filter (`1-3`, `Kraken:Coin:BTC/USD`) was refused, or a list
/// of filters is too long for a Subscribe.
///
/// Unlike [`Error`] it is neither small nor `Copy`: its message quotes the part of the text it
/// refused, for the user who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterTextError {
    /// A bound of a type range is not a number 0..=255 (the part, as given).
    #[error("{0:?} is not a TLV type number (0..=255)")]
    TypeNumber(String),
    /// A type range whose low bound exceeds its high one.
    #[error("{lo}-{hi} is empty: the low type must not exceed the high one")]
    EmptyTypeRange {
        /// Low bound.
        lo: u8,
        /// High bound.
        hi: u8,
    },
    /// An instrument that is not three parts separated by `:` (the text).
    #[error("{0:?} is not VENUE:ASSET:ID (e.g. Kraken:Coin:BTC/USD or 101:51:0x4254432f55534400)")]
    NotInstrument(String),
    /// A venue that is neither a number nor a venue's name.
    #[error("venue {0:?} is neither a number (0..=65535) nor a venue name")]
    Venue(String),
    /// An asset type that is neither a number nor an asset type's name.
    #[error("asset type {0:?} is neither a number (0..=255) nor an asset type name")]
    AssetType(String),
    /// An asset id written `0x…` that is not a 64-bit hex number.
    #[error("asset id {0:?} is not a 64-bit hex number")]
    AssetIdHex(String),
    /// An asset id that is no number and cannot be a symbol.
    #[error("asset id {id:?}: {source}")]
    Symbol {
        /// The id, as given.
        id: String,
        /// Why it is no symbol ([`Error::Symbol`]).
        source: Error,
    },
    /// More filters than the 64 a Subscribe holds.
    #[error("{0} filters given; a subscription holds at most 64")]
    TooMany(usize),
}
