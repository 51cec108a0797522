//! The 32-byte frame header and the framer.
//!
//! ```text
//!  0      4      5       6      7      8          16          24             28         32
//!  +------+------+-------+------+------+----------+-----------+--------------+----------+
//!  |magic |domain|version|source|flags | sequence | timestamp | payload_size | checksum |
//!  | u32  |  u8  |  u8   |  u8  |  u8  |   u64    |    u64    |     u32      |   u32    |
//!  +------+------+-------+------+------+----------+-----------+--------------+----------+
//! ```
//! All fields are little-endian; the payload (`payload_size` bytes of TLVs) follows.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::Error;
use super::ids::numbered;

/// `0xDEADBEEF`, on the wire `EF BE AD DE`.
pub const MAGIC: u32 = 0xDEAD_BEEF;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Bytes in a header.
pub const HEADER_SIZE: usize = 32;

/// `flags` bit 0, *bridged*: the frame entered this host through a bridge from another host
/// (PROTOCOL.md §3). Set by the importing bridge; a bridge never exports a frame that has it.
pub const FLAG_BRIDGED: u8 = 1;
/// Header bytes covered by the checksum (the checksum field itself is skipped).
pub(super) const CHECKED_HEADER: usize = 28;

numbered! {
    /// The relay domain of a frame (header byte 4), 0-based as every legacy service writes it.
    RelayDomain: u8 { MarketData = 0, Signal = 1, Execution = 2, System = 3 }
}

/// The zero-copy header view: `#[repr(C)]`, alignment 1, little-endian fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    magic: U32,
    relay_domain: u8,
    version: u8,
    source: u8,
    flags: u8,
    sequence: U64,
    timestamp: U64,
    payload_size: U32,
    checksum: U32,
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);

impl Header {
    /// A version-1 header with magic set, flags 0 and checksum 0.
    pub fn new(domain: RelayDomain, source: u8, sequence: u64, timestamp: u64, payload_size: u32) -> Self {
        Header {
            magic: U32::new(MAGIC),
            relay_domain: domain.raw(),
            version: VERSION,
            source,
            flags: 0,
            sequence: U64::new(sequence),
            timestamp: U64::new(timestamp),
            payload_size: U32::new(payload_size),
            checksum: U32::new(0),
        }
    }

    /// Views the first 32 bytes of `bytes` as a header; `None` when fewer are present.
    #[inline]
    pub fn view(bytes: &[u8]) -> Option<&Header> {
        Header::ref_from_prefix(bytes).ok().map(|(header, _)| header)
    }

    /// Mutable view of the first 32 bytes.
    #[inline]
    pub fn view_mut(bytes: &mut [u8]) -> Option<&mut Header> {
        Header::mut_from_prefix(bytes).ok().map(|(header, _)| header)
    }

    /// The magic number.
    pub fn magic(&self) -> u32 {
        self.magic.get()
    }
    /// The raw domain byte.
    pub fn domain_byte(&self) -> u8 {
        self.relay_domain
    }
    /// The domain, if the byte is 0..=3.
    pub fn domain(&self) -> Option<RelayDomain> {
        RelayDomain::from_raw(self.relay_domain)
    }
    /// The version byte.
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The raw source byte ([`super::SourceType`] names the known ones).
    pub fn source(&self) -> u8 {
        self.source
    }
    /// The flags byte ([`FLAG_BRIDGED`] is bit 0; bits 1–7 undefined).
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// Whether [`FLAG_BRIDGED`] is set.
    pub fn is_bridged(&self) -> bool {
        self.flags & FLAG_BRIDGED != 0
    }
    /// The publisher's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence.get()
    }
    /// Nanoseconds since the Unix epoch, as set by the publisher.
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
    /// Bytes of payload after the header.
    pub fn payload_size(&self) -> u32 {
        self.payload_size.get()
    }
    /// The checksum field (0 = not computed).
    pub fn checksum(&self) -> u32 {
        self.checksum.get()
    }
    /// Whole frame length, header included.
    pub fn frame_len(&self) -> u64 {
        HEADER_SIZE as u64 + u64::from(self.payload_size.get())
    }

    /// Sets the domain byte.
    pub fn set_domain(&mut self, domain: RelayDomain) {
        self.relay_domain = domain.raw();
    }
    /// Sets the source byte.
    pub fn set_source(&mut self, source: u8) {
        self.source = source;
    }
    /// Sets the sequence.
    pub fn set_sequence(&mut self, sequence: u64) {
        self.sequence.set(sequence);
    }
    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, timestamp: u64) {
        self.timestamp.set(timestamp);
    }
    /// Sets the payload size.
    pub fn set_payload_size(&mut self, payload_size: u32) {
        self.payload_size.set(payload_size);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u32) {
        self.checksum.set(checksum);
    }

    /// Sets the flags byte (bit 0, [`FLAG_BRIDGED`], is the only one defined).
    pub(super) fn set_flags(&mut self, flags: u8) {
        self.flags = flags;
    }
}

/// The framer's answer for a byte slice that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed: the slice must grow to at least this many bytes (the header
    /// first, then the whole frame).
    Incomplete(usize),
    /// A frame of this many bytes (header included) starts the slice and is wholly present.
    Frame(usize),
}

/// Frames the start of `buf`: the magic, the version and the size (`32 + payload_size` ≤
/// `max_message_size`, decided from the first 28 bytes, before the payload is present).
///
/// # Errors
///
/// [`Error::BadMagic`], [`Error::UnsupportedVersion`] or [`Error::FrameTooLarge`]; all are
/// fatal for the stream ([`Error::is_fatal`]). A wrong magic is reported as soon as the
/// bytes present differ from it.
///
/// # Examples
///
/// ```
/// use torq::protocol::{frame, Framing};
/// assert_eq!(frame(&[0xEF, 0xBE], 1024), Ok(Framing::Incomplete(32)));
/// assert!(frame(&[0x00], 1024).is_err());
/// ```
#[inline]
pub fn frame(buf: &[u8], max_message_size: usize) -> Result<Framing, Error> {
    let Some(head) = buf.first_chunk::<28>() else {
        return frame_short(buf);
    };
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    if head[5] != VERSION {
        return Err(Error::UnsupportedVersion { found: head[5] });
    }
    let payload_size = u32::from_le_bytes([head[24], head[25], head[26], head[27]]);
    let len = HEADER_SIZE as u64 + u64::from(payload_size);
    if len > max_message_size as u64 {
        return Err(Error::FrameTooLarge { size: len, max: max_message_size });
    }
    let len = len as usize;
    if buf.len() < len { Ok(Framing::Incomplete(len)) } else { Ok(Framing::Frame(len)) }
}

/// The framer's answer for fewer than 28 bytes: a magic or version already wrong, or
/// "the header is needed".
#[cold]
fn frame_short(buf: &[u8]) -> Result<Framing, Error> {
    let magic = MAGIC.to_le_bytes();
    let present = buf.len().min(4);
    if buf[..present] != magic[..present] {
        let mut found = [0u8; 4];
        found[..present].copy_from_slice(&buf[..present]);
        return Err(Error::BadMagic { found: u32::from_le_bytes(found) });
    }
    match buf.get(5) {
        Some(&version) if version != VERSION => Err(Error::UnsupportedVersion { found: version }),
        _ => Ok(Framing::Incomplete(HEADER_SIZE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hello legacy publishers send: domain 1, source 2, everything else 0.
    pub(crate) const LEGACY_HELLO: [u8; 32] = [
        0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];

    #[test]
    fn header_golden_bytes() {
        let mut header =
            Header::new(RelayDomain::Execution, 20, 0x0102_0304_0506_0708, 0x1112_1314_1516_1718, 0x40);
        header.set_checksum(0xA1B2_C3D4);
        assert_eq!(
            header.as_bytes(),
            &[
                0xEF, 0xBE, 0xAD, 0xDE, 2, 1, 20, 0, //
                0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, //
                0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, //
                0x40, 0, 0, 0, 0xD4, 0xC3, 0xB2, 0xA1,
            ]
        );
        let view = Header::view(header.as_bytes()).unwrap();
        assert_eq!(view.domain(), Some(RelayDomain::Execution));
        assert_eq!(view.sequence(), 0x0102_0304_0506_0708);
        assert_eq!(view.frame_len(), 32 + 0x40);
    }

    #[test]
    fn legacy_hello_frames_as_an_empty_frame() {
        assert_eq!(frame(&LEGACY_HELLO, 1065), Ok(Framing::Frame(32)));
        let view = Header::view(&LEGACY_HELLO).unwrap();
        assert_eq!((view.domain(), view.source(), view.payload_size()), (Some(RelayDomain::Signal), 2, 0));
    }

    #[test]
    fn framer_answers_incomplete_until_the_frame_is_whole() {
        let mut bytes = LEGACY_HELLO.to_vec();
        bytes[24] = 10;
        bytes.extend_from_slice(&[0; 10]);
        for cut in 0..bytes.len() {
            let expected = if cut < 28 { 32 } else { 42 };
            assert_eq!(frame(&bytes[..cut], 1065), Ok(Framing::Incomplete(expected)), "cut {cut}");
        }
        assert_eq!(frame(&bytes, 1065), Ok(Framing::Frame(42)));
        bytes.push(0xEF);
        assert_eq!(frame(&bytes, 1065), Ok(Framing::Frame(42)));
    }

    #[test]
    fn framer_errors_in_order_magic_version_size() {
        let mut bytes = LEGACY_HELLO;
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            frame(&bytes, 131_072),
            Err(Error::FrameTooLarge { size: 32 + u64::from(u32::MAX), max: 131_072 })
        );
        bytes[5] = 2;
        assert_eq!(frame(&bytes, 131_072), Err(Error::UnsupportedVersion { found: 2 }));
        assert_eq!(frame(&bytes[..6], 131_072), Err(Error::UnsupportedVersion { found: 2 }));
        bytes[1] = 0;
        assert_eq!(frame(&bytes, 131_072), Err(Error::BadMagic { found: 0xDEAD_00EF }));
        assert_eq!(frame(&bytes[..2], 131_072), Err(Error::BadMagic { found: 0x0000_00EF }));
        assert_eq!(frame(&[], 131_072), Ok(Framing::Incomplete(32)));
    }

    #[test]
    fn size_limit_is_inclusive() {
        let mut bytes = LEGACY_HELLO;
        bytes[24..28].copy_from_slice(&(1065u32 - 32).to_le_bytes());
        assert_eq!(frame(&bytes, 1065), Ok(Framing::Incomplete(1065)));
        assert!(frame(&bytes, 1064).is_err());
    }
}
