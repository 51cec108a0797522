//! The TLV walker: a zero-allocation iterator over a payload.
//!
//! ```text
//! standard (value ≤ 255 B):   | type u8 (1..=254) | len u8 | value ... |
//! extended (value ≤ 65535 B): | 255 | reserved 0 | type u8 (1..=254) | len u16 | value ... |
//! ```

use super::error::Error;
use super::registry::{self, SizeFault};

/// One TLV of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The type number (1..=254).
    pub tlv_type: u8,
    /// The value bytes.
    pub value: &'a [u8],
    /// Offset of the TLV header inside the payload.
    pub offset: u32,
    /// Whether it was written in the extended form.
    pub extended: bool,
}

/// Iterator over the TLVs of a payload; see [`tlvs`].
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    payload: &'a [u8],
    pos: usize,
}

/// Walks `payload` as back-to-back TLVs of either form.
///
/// Each item is a TLV whose registered size rule (if any) holds, or the first error, after
/// which the iterator ends. It never panics and never allocates.
///
/// # Examples
///
/// ```
/// use torq::protocol::tlvs;
/// let payload = [100, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// let heartbeat = tlvs(&payload).next().unwrap()?;
/// assert_eq!((heartbeat.tlv_type, heartbeat.value.len()), (100, 16));
/// # Ok::<(), torq::protocol::Error>(())
/// ```
pub fn tlvs(payload: &[u8]) -> Tlvs<'_> {
    Tlvs { payload, pos: 0 }
}

impl<'a> Tlvs<'a> {
    /// Reads the TLV at `self.pos` without the size rule.
    #[inline(always)]
    fn read(&self) -> Result<Tlv<'a>, Error> {
        let rest = &self.payload[self.pos..];
        let offset = self.pos as u32;
        let (tlv_type, len, header, extended) = match *rest {
            [255, reserved, tlv_type, lo, hi, ..] => {
                if reserved != 0 {
                    return Err(Error::TlvReservedNonzero { offset, value: reserved });
                }
                (tlv_type, usize::from(u16::from_le_bytes([lo, hi])), 5, true)
            }
            [255, ..] => return Err(Error::TlvTruncated { offset }),
            [tlv_type, len, ..] => (tlv_type, usize::from(len), 2, false),
            _ => return Err(Error::TlvTruncated { offset }),
        };
        if tlv_type == 0 || tlv_type == 255 {
            return Err(Error::TlvInvalidType { offset, tlv_type });
        }
        let value = rest.get(header..header + len).ok_or(Error::TlvTruncated { offset })?;
        Ok(Tlv { tlv_type, value, offset, extended })
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, Error>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.payload.len() {
            return None;
        }
        let item = self.read().and_then(|tlv| {
            check_size(&tlv)?;
            Ok(tlv)
        });
        self.pos = match item {
            Ok(tlv) => self.pos + (if tlv.extended { 5 } else { 2 }) + tlv.value.len(),
            Err(_) => self.payload.len(),
        };
        Some(item)
    }
}

impl core::iter::FusedIterator for Tlvs<'_> {}

/// Checks a TLV against the size rule of its registered type; unregistered types pass.
#[inline(always)]
fn check_size(tlv: &Tlv<'_>) -> Result<(), Error> {
    let len = tlv.value.len() as u16;
    let (offset, tlv_type) = (tlv.offset, tlv.tlv_type);
    registry::entry(tlv_type).check(tlv.value).map_err(|fault| match fault {
        SizeFault::Mismatch => Error::TlvSizeMismatch { offset, tlv_type, len },
        SizeFault::OutOfBounds(min, max) => Error::TlvSizeOutOfBounds { offset, tlv_type, len, min, max },
    })
}

/// The first TLV of a payload, read in wire order without its size rule (the routing key
/// checks what it needs); `None` when the payload does not start with a whole TLV.
#[inline]
pub(crate) fn first(payload: &[u8]) -> Option<Tlv<'_>> {
    if payload.is_empty() {
        return None;
    }
    Tlvs { payload, pos: 0 }.read().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(payload: &[u8]) -> Vec<Result<(u8, usize, bool), Error>> {
        tlvs(payload).map(|r| r.map(|t| (t.tlv_type, t.value.len(), t.extended))).collect()
    }

    #[test]
    fn standard_and_extended_forms_golden_bytes() {
        let mut payload = vec![200, 3, 1, 2, 3];
        payload.extend_from_slice(&[255, 0, 201, 0x2C, 0x01]);
        payload.extend(std::iter::repeat_n(9, 300));
        payload.extend_from_slice(&[255, 0, 202, 2, 0, 7, 7]); // extended form of a short value
        assert_eq!(walk(&payload), vec![Ok((200, 3, false)), Ok((201, 300, true)), Ok((202, 2, true))]);
        let third = tlvs(&payload).nth(2).unwrap().unwrap();
        assert_eq!((third.offset, third.value), (310, &[7u8, 7][..]));
        assert!(walk(&[]).is_empty());
    }

    #[test]
    fn every_walker_error_kind() {
        assert_eq!(walk(&[0, 0]), vec![Err(Error::TlvInvalidType { offset: 0, tlv_type: 0 })]);
        assert_eq!(
            walk(&[200, 0, 255, 0, 255, 0, 0]),
            vec![Ok((200, 0, false)), Err(Error::TlvInvalidType { offset: 2, tlv_type: 255 })]
        );
        assert_eq!(walk(&[255, 0, 0, 0, 0]), vec![Err(Error::TlvInvalidType { offset: 0, tlv_type: 0 })]);
        assert_eq!(walk(&[200]), vec![Err(Error::TlvTruncated { offset: 0 })]);
        assert_eq!(walk(&[200, 2, 1]), vec![Err(Error::TlvTruncated { offset: 0 })]);
        assert_eq!(walk(&[255, 0, 200, 1]), vec![Err(Error::TlvTruncated { offset: 0 })]);
        assert_eq!(walk(&[255, 0, 200, 2, 0, 1]), vec![Err(Error::TlvTruncated { offset: 0 })]);
        assert_eq!(walk(&[255, 1, 200, 0, 0]), vec![Err(Error::TlvReservedNonzero { offset: 0, value: 1 })]);
        let mut trade = vec![1, 39];
        trade.extend_from_slice(&[0; 39]);
        assert_eq!(walk(&trade), vec![Err(Error::TlvSizeMismatch { offset: 0, tlv_type: 1, len: 39 })]);
        let mut swap = vec![11, 59];
        swap.extend_from_slice(&[0; 59]);
        assert_eq!(
            walk(&swap),
            vec![Err(Error::TlvSizeOutOfBounds { offset: 0, tlv_type: 11, len: 59, min: 60, max: 208 })]
        );
    }

    #[test]
    fn unregistered_types_take_any_length() {
        assert_eq!(walk(&[33, 1, 0, 119, 0]), vec![Ok((33, 1, false)), Ok((119, 0, false))]);
    }

    #[test]
    fn first_reads_without_size_rule() {
        assert_eq!(first(&[1, 1, 9]).map(|t| t.value), Some(&[9u8][..]));
        assert_eq!(first(&[1, 2, 9]), None);
        assert_eq!(first(&[]), None);
    }
}
