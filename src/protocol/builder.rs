//! Writing frames into a caller's buffer, without allocating.

use super::crc::checksum;
use super::error::Error;
use super::header::{HEADER_SIZE, Header, MAGIC, RelayDomain, VERSION};
use super::payload::Payload;

/// Whether [`FrameBuilder::finish`] computes the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    /// Compute CRC-32/ISO-HDLC into the header.
    Compute,
    /// Leave the checksum 0 ("not computed").
    Skip,
}

/// Builds one frame in a caller's buffer: header, then TLVs, then [`FrameBuilder::finish`].
///
/// Values over 255 bytes use the extended TLV form, shorter ones the standard form.
///
/// # Examples
///
/// ```
/// use torq::protocol::{Crc, FrameBuilder, RelayDomain, Trade, frame, Framing};
/// let mut buf = [0u8; 128];
/// let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, 1)?;
/// builder.payload(&Trade { price: 100, ..Trade::default() })?;
/// let len = builder.finish(7, 1_700_000_000_000_000_000, Crc::Compute);
/// assert_eq!(len, 74);
/// assert_eq!(frame(&buf[..len], 131_072), Ok(Framing::Frame(74)));
/// # Ok::<(), torq::protocol::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FrameBuilder<'a> {
    /// Starts a frame of `domain` from `source` (flags 0).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `buf` cannot hold a header.
    #[inline]
    pub fn new(buf: &'a mut [u8], domain: RelayDomain, source: u8) -> Result<Self, Error> {
        let available = buf.len();
        let Some(header) = buf.first_chunk_mut::<HEADER_SIZE>() else {
            return Err(Error::BufferTooSmall { needed: HEADER_SIZE, available });
        };
        header[..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&[domain.raw(), VERSION, source, 0]);
        Ok(FrameBuilder { buf, len: HEADER_SIZE })
    }

    /// Appends a TLV of `len` value bytes written by `write`.
    ///
    /// # Errors
    ///
    /// [`Error::TlvInvalidType`] for type 0 or 255, [`Error::ValueTooLong`] over 65535
    /// bytes, [`Error::BufferTooSmall`] when the buffer is full; the frame is unchanged.
    #[inline]
    pub fn tlv_with<T>(
        &mut self,
        tlv_type: u8,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if tlv_type == 0 || tlv_type == 255 {
            let offset = (self.len - HEADER_SIZE) as u32;
            return Err(Error::TlvInvalidType { offset, tlv_type });
        }
        let extended = len > 255;
        let head = if extended { 5 } else { 2 };
        if len > usize::from(u16::MAX) || self.len - HEADER_SIZE + head + len > u32::MAX as usize {
            return Err(Error::ValueTooLong { len });
        }
        let needed = self.len + head + len;
        let available = self.buf.len();
        let Some(out) = self.buf.get_mut(self.len..needed) else {
            return Err(Error::BufferTooSmall { needed, available });
        };
        let (tag, value) = out.split_at_mut(head);
        if extended {
            let [lo, hi] = (len as u16).to_le_bytes();
            tag.copy_from_slice(&[255, 0, tlv_type, lo, hi]);
        } else {
            tag.copy_from_slice(&[tlv_type, len as u8]);
        }
        let written = write(value)?;
        self.len = needed;
        Ok(written)
    }

    /// Appends a TLV with these value bytes.
    ///
    /// # Errors
    ///
    /// As [`FrameBuilder::tlv_with`].
    #[inline]
    pub fn tlv(&mut self, tlv_type: u8, value: &[u8]) -> Result<&mut Self, Error> {
        self.tlv_with(tlv_type, value.len(), |out| {
            out.copy_from_slice(value);
            Ok(())
        })?;
        Ok(self)
    }

    /// Appends a fixed layout under its own type number.
    ///
    /// # Errors
    ///
    /// As [`FrameBuilder::tlv_with`].
    #[inline]
    pub fn payload<P: Payload>(&mut self, value: &P) -> Result<&mut Self, Error> {
        self.payload_as(P::TYPE, value)
    }

    /// Appends a fixed layout under another type number (a Quote as QuoteUpdate 17, say).
    ///
    /// # Errors
    ///
    /// As [`FrameBuilder::tlv_with`].
    #[inline]
    pub fn payload_as<P: Payload>(&mut self, tlv_type: u8, value: &P) -> Result<&mut Self, Error> {
        self.tlv_with(tlv_type, P::SIZE, |out| value.emit(out))?;
        Ok(self)
    }

    /// Fills sequence, timestamp, `payload_size` and the checksum; returns the frame length.
    #[inline]
    pub fn finish(self, sequence: u64, timestamp: u64, crc: Crc) -> usize {
        let payload_size = (self.len - HEADER_SIZE) as u32;
        let frame = &mut self.buf[..self.len];
        if let Some(header) = Header::view_mut(frame) {
            header.set_sequence(sequence);
            header.set_timestamp(timestamp);
            header.set_payload_size(payload_size);
            header.set_checksum(0);
        }
        if crc == Crc::Compute {
            let crc = checksum(frame);
            frame[28..32].copy_from_slice(&crc.to_le_bytes());
        }
        self.len
    }
}
