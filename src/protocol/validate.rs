//! Validation of a framed frame: the checks of PROTOCOL.md §6 that do not need state.
//!
//! The framer ([`super::frame`]) has already checked magic, version and size; validation
//! decides what the frame is and whether it is accepted, without changing its length, so
//! a relay can skip a rejected frame and go on. The sequence check needs per-connection
//! state and lives in the relay.

use super::control::control_tlv;
use super::crc::checksum;
use super::error::Error;
use super::header::{HEADER_SIZE, Header, RelayDomain};
use super::registry::{self, RELAY_NOTICE, SUBSCRIBE};
use super::tlv;

/// How a relay treats checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumLevel {
    /// Not checked.
    #[default]
    Off,
    /// A non-zero checksum must match (`checksum_mismatch`).
    Verify,
    /// As `Verify`, and a zero checksum is refused unless the computed CRC is itself 0
    /// (`checksum_missing`).
    Required,
}

/// The stateless checks a relay applies to data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// The relay's domain: data frames must carry it or System.
    pub domain: RelayDomain,
    /// The checksum level.
    pub checksum: ChecksumLevel,
    /// Refuse TLV types that are not registered, even inside an allowed range.
    pub strict_types: bool,
}

impl Checks {
    /// Framing, domain and TLV checks only (the MarketData defaults).
    pub const fn new(domain: RelayDomain) -> Self {
        Checks { domain, checksum: ChecksumLevel::Off, strict_types: false }
    }
}

/// What an accepted frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `payload_size` 0: makes a legacy client a publisher; never forwarded.
    Hello,
    /// Domain System and a single Subscribe (116) or RelayNotice (117) TLV; consumed by
    /// the relay. The value still has to be parsed.
    Control {
        /// 116 or 117.
        tlv_type: u8,
    },
    /// Everything else: forwarded to subscribers.
    Data,
}

/// Classifies and checks one whole frame, as returned by the framer, in the order of
/// PROTOCOL.md §1: domain, TLV walk, checksum.
///
/// # Errors
///
/// The first failed check: [`Error::WrongDomain`], a `Tlv…` error,
/// [`Error::TlvTypeNotAllowed`], [`Error::TlvUnknownType`], [`Error::MisplacedControl`],
/// [`Error::ChecksumMismatch`] or [`Error::ChecksumMissing`].
#[inline]
pub fn validate(frame: &[u8], checks: &Checks) -> Result<FrameKind, Error> {
    let (Some(header), Some(payload)) = (Header::view(frame), frame.get(HEADER_SIZE..)) else {
        return Err(Error::TlvTruncated { offset: 0 });
    };
    if payload.is_empty() {
        return Ok(FrameKind::Hello);
    }
    if let Some(tlv_type) = control_type(header, payload) {
        verify_checksum(frame, header, ChecksumLevel::Verify)?;
        return Ok(FrameKind::Control { tlv_type });
    }
    let domain = header.domain_byte();
    if domain != checks.domain.raw() && domain != RelayDomain::System.raw() {
        return Err(Error::WrongDomain { found: domain, expected: checks.domain });
    }
    for tlv in tlv::tlvs(payload) {
        let tlv = tlv?;
        let (offset, tlv_type) = (tlv.offset, tlv.tlv_type);
        if tlv_type == SUBSCRIBE || tlv_type == RELAY_NOTICE {
            return Err(Error::MisplacedControl { offset, tlv_type });
        }
        let entry = registry::entry(tlv_type);
        if !entry.allowed_on(checks.domain) {
            return Err(Error::TlvTypeNotAllowed { offset, tlv_type, domain: checks.domain });
        }
        if checks.strict_types && !entry.is_registered() {
            return Err(Error::TlvUnknownType { offset, tlv_type });
        }
    }
    verify_checksum(frame, header, checks.checksum)?;
    Ok(FrameKind::Data)
}

/// The control type when the frame is a control frame: domain System and one TLV of type
/// 116 or 117 filling the payload ([`control_tlv`]).
#[inline]
fn control_type(header: &Header, payload: &[u8]) -> Option<u8> {
    if header.domain_byte() != RelayDomain::System.raw() {
        return None;
    }
    control_tlv(payload).map(|tlv| tlv.tlv_type)
}

#[inline]
fn verify_checksum(frame: &[u8], header: &Header, level: ChecksumLevel) -> Result<(), Error> {
    let found = header.checksum();
    match level {
        ChecksumLevel::Off => Ok(()),
        ChecksumLevel::Verify if found == 0 => Ok(()),
        ChecksumLevel::Verify | ChecksumLevel::Required => {
            let computed = checksum(frame);
            if found == computed {
                Ok(())
            } else if found == 0 {
                Err(Error::ChecksumMissing { computed })
            } else {
                Err(Error::ChecksumMismatch { found, computed })
            }
        }
    }
}
