//! The relay's notices (PROTOCOL.md §6, RelayNotice 117) as typed values.

use crate::protocol::{RelayDomain, RelayNotice, control_tlv, notice, registry};

use super::Frame;

/// A RelayNotice, typed (PROTOCOL.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// 1: the Subscribe took effect; the relay's settings as text.
    Subscribed(String),
    /// 2: a frame this connection sent was rejected; `reason` starts with the reason token.
    Rejected {
        /// The sequence of the frame.
        sequence: u64,
        /// Why.
        reason: String,
    },
    /// 3: a protocol error; the relay closes the connection next.
    ProtocolError {
        /// The sequence of the frame concerned, else 0.
        sequence: u64,
        /// What.
        text: String,
    },
    /// 4: frames for this subscriber were dropped (it did not keep up).
    Dropped {
        /// The sequence of the first dropped frame.
        first_sequence: u64,
        /// How many.
        count: u64,
    },
    /// 2 and 4 merged while too many notices were pending.
    Merged {
        /// Rejections merged.
        rejected: u64,
        /// Drops merged.
        dropped: u64,
    },
    /// 5: the relay is stopping.
    Stopping,
    /// 7: what this connection published was accepted (it asked for confirmation): counts of
    /// its data frames since it connected.
    Accepted {
        /// Accepted.
        accepted: u64,
        /// Rejected.
        rejected: u64,
    },
    /// 6: access denied.
    AccessDenied {
        /// The sequence of the frame concerned.
        sequence: u64,
        /// Why.
        text: String,
    },
    /// A code this library does not know.
    Other {
        /// The code.
        code: u16,
        /// The sequence.
        sequence: u64,
        /// The text.
        text: String,
    },
}

impl Notice {
    fn from_wire(value: &RelayNotice<'_>) -> Notice {
        let (sequence, text) = (value.sequence, value.text.to_string());
        let number = |key: &str| {
            text.split(' ').find_map(|word| word.strip_prefix(key)).and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        match value.code {
            notice::SUBSCRIBED => Notice::Subscribed(text),
            notice::REJECTED | notice::DROPPED if text.starts_with("merged ") => {
                Notice::Merged { rejected: number("rejected="), dropped: number("dropped=") }
            }
            notice::REJECTED => Notice::Rejected { sequence, reason: text },
            notice::PROTOCOL_ERROR => Notice::ProtocolError { sequence, text },
            notice::DROPPED => Notice::Dropped { first_sequence: sequence, count: number("dropped=") },
            notice::STOPPING => Notice::Stopping,
            notice::ACCESS_DENIED => Notice::AccessDenied { sequence, text },
            notice::ACCEPTED => Notice::Accepted { accepted: sequence, rejected: number("rejected=") },
            code => Notice::Other { code, sequence, text },
        }
    }
}

/// The typed notice of a RelayNotice frame.
pub(super) fn notice_of(frame: &Frame<'_>) -> Option<Notice> {
    if frame.header().domain_byte() != RelayDomain::System.raw() {
        return None;
    }
    let tlv = control_tlv(frame.payload()).filter(|t| t.tlv_type == registry::RELAY_NOTICE)?;
    RelayNotice::parse(tlv.value).ok().map(|n| Notice::from_wire(&n))
}
