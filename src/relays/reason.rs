//! Why a frame was rejected or a connection closed: the tokens of metrics, audit and notices.
//!
//! The counters are indexed by [`Reason::index`]: the errors of the protocol layer first, in
//! the order of [`Error::REASONS`], then the relay's own reasons.

use crate::protocol::Error;

/// A rejection or protocol-error reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A protocol-layer error (framing, domain, TLV, checksum, Subscribe).
    Frame(Error),
    /// A data frame from a connection whose Subscribe made it subscribe-only.
    NotPublisher,
    /// A data frame from a uid outside the publisher allow-list.
    NotAllowed,
    /// A sequence not above the last accepted one of the same (connection, source).
    SequenceReplay,
    /// A client sent a RelayNotice.
    NoticeFromClient,
}

/// The relay's own reason tokens, after those of [`Error::REASONS`].
const RELAY_REASONS: [&str; 4] = ["not_publisher", "not_allowed", "sequence_replay", "notice_from_client"];

impl Reason {
    /// How many reasons there are (one counter each).
    pub const COUNT: usize = Error::REASONS.len() + RELAY_REASONS.len();

    /// The index of this reason's counter, below [`Reason::COUNT`].
    pub const fn index(&self) -> usize {
        let own = Error::REASONS.len();
        match self {
            Reason::Frame(e) => e.index(),
            Reason::NotPublisher => own,
            Reason::NotAllowed => own + 1,
            Reason::SequenceReplay => own + 2,
            Reason::NoticeFromClient => own + 3,
        }
    }

    /// The snake-case token.
    pub const fn token(&self) -> &'static str {
        token_at(self.index())
    }
}

/// The token of the counter at `index` (below [`Reason::COUNT`]).
pub(crate) const fn token_at(index: usize) -> &'static str {
    if index < Error::REASONS.len() {
        Error::REASONS[index]
    } else {
        RELAY_REASONS[index - Error::REASONS.len()]
    }
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reason::Frame(e) => write!(f, "{}: {e}", e.reason()),
            other => f.write_str(other.token()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RelayDomain, SubscribeError, SymbolError};

    /// One of every error of the protocol layer. The match below has no wildcard, so a new
    /// variant does not compile until it is listed here too.
    fn every_error() -> Vec<Error> {
        let all = vec![
            Error::BadMagic { found: 0 },
            Error::UnsupportedVersion { found: 2 },
            Error::FrameTooLarge { size: 1, max: 0 },
            Error::BadDomain { found: 9 },
            Error::WrongDomain { found: 1, expected: RelayDomain::Signal },
            Error::TlvInvalidType { offset: 0, tlv_type: 0 },
            Error::TlvTruncated { offset: 0 },
            Error::TlvReservedNonzero { offset: 0, value: 1 },
            Error::TlvSizeMismatch { offset: 0, tlv_type: 1, len: 0 },
            Error::TlvSizeOutOfBounds { offset: 0, tlv_type: 1, len: 0, min: 1, max: 2 },
            Error::TlvTypeNotAllowed { offset: 0, tlv_type: 1, domain: RelayDomain::Signal },
            Error::TlvUnknownType { offset: 0, tlv_type: 1 },
            Error::MisplacedControl { offset: 0, tlv_type: 116 },
            Error::ChecksumMismatch { found: 1, computed: 2 },
            Error::ChecksumMissing { computed: 1 },
            Error::Subscribe(SubscribeError::Role(9)),
            Error::NoticeText,
            Error::Symbol(SymbolError::Empty),
            Error::BufferTooSmall { needed: 1, available: 0 },
            Error::ValueTooLong { len: 70_000 },
        ];
        for e in &all {
            match e {
                Error::BadMagic { .. }
                | Error::UnsupportedVersion { .. }
                | Error::FrameTooLarge { .. }
                | Error::BadDomain { .. }
                | Error::WrongDomain { .. }
                | Error::TlvInvalidType { .. }
                | Error::TlvTruncated { .. }
                | Error::TlvReservedNonzero { .. }
                | Error::TlvSizeMismatch { .. }
                | Error::TlvSizeOutOfBounds { .. }
                | Error::TlvTypeNotAllowed { .. }
                | Error::TlvUnknownType { .. }
                | Error::MisplacedControl { .. }
                | Error::ChecksumMismatch { .. }
                | Error::ChecksumMissing { .. }
                | Error::Subscribe(_)
                | Error::NoticeText
                | Error::Symbol(_)
                | Error::BufferTooSmall { .. }
                | Error::ValueTooLong { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_reason_has_its_own_counter_and_token() {
        let mut reasons: Vec<Reason> = every_error().into_iter().map(Reason::Frame).collect();
        reasons.extend([
            Reason::NotPublisher,
            Reason::NotAllowed,
            Reason::SequenceReplay,
            Reason::NoticeFromClient,
        ]);
        assert_eq!(reasons.len(), Reason::COUNT);
        let mut seen = [false; Reason::COUNT];
        for reason in &reasons {
            let index = reason.index();
            assert!(!seen[index], "{reason:?} shares counter {index}");
            seen[index] = true;
            assert_eq!(token_at(index), reason.token());
        }
        for reason in reasons.iter().filter_map(|r| if let Reason::Frame(e) = r { Some(e) } else { None }) {
            assert_eq!(Reason::Frame(*reason).token(), reason.reason());
        }
        let mut tokens: Vec<&str> = (0..Reason::COUNT).map(token_at).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), Reason::COUNT, "two counters share a token");
    }
}
