//! Why a frame was rejected or a connection closed: the tokens of metrics, audit and notices.

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

impl Reason {
    /// The snake-case token.
    pub fn token(&self) -> &'static str {
        match self {
            Reason::Frame(e) => e.reason(),
            Reason::NotPublisher => "not_publisher",
            Reason::NotAllowed => "not_allowed",
            Reason::SequenceReplay => "sequence_replay",
            Reason::NoticeFromClient => "notice_from_client",
        }
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

/// Every token a reason can have, for the per-reason counters.
pub(crate) const TOKENS: &[&str] = &[
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
    "not_publisher",
    "not_allowed",
    "sequence_replay",
    "notice_from_client",
];

/// Index of a token in [`TOKENS`].
pub(crate) fn index(token: &str) -> usize {
    TOKENS.iter().position(|t| *t == token).unwrap_or(0)
}
