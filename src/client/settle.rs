//! What became of a publisher's frames, sans-IO: the relay's notices in, counts and named
//! rejections out (PROTOCOL.md §6, options bit 2, notices 2 and 7).

use std::collections::VecDeque;

use super::Notice;

/// Rejections kept until the caller takes them; beyond, they are only counted.
const MAX_KEPT: usize = 4096;

/// What became of the data frames a publisher sent, as the relay said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Data frames sent (hellos and Subscribes are not data frames).
    pub sent: u64,
    /// Accepted by the relay (on Execution: audited, and delivered to every subscriber that
    /// stays connected and reads).
    pub accepted: u64,
    /// Rejected by the relay; each is named by a [`Rejection`] unless the relay merged it.
    pub rejected: u64,
}

impl Settlement {
    /// Frames the relay has not said anything about yet — or never will: those written to a
    /// connection that was lost before the relay confirmed them.
    pub fn unsettled(&self) -> u64 {
        self.sent.saturating_sub(self.accepted + self.rejected)
    }
}

/// A frame the relay rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Which of the publisher's data frames it was: 1 for the first it sent, counted over
    /// every connection ([`Settlement::sent`] counts alike).
    pub frame: u64,
    /// The frame's sequence.
    pub sequence: u64,
    /// The reason token, as in the relay's metrics and audit trail (`checksum_missing`, …).
    pub reason: String,
    /// The relay's words: the reason token, then what it says of the frame.
    pub text: String,
}

/// The counts of one publisher over its connections, kept from the relay's notices.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Of connections lost: what was sent, accepted and rejected there.
    earlier: Settlement,
    /// Of the current connection.
    current: Settlement,
    rejections: VecDeque<Rejection>,
    /// Rejections the relay merged into a count (more than 16 notices were waiting), or that
    /// found [`MAX_KEPT`] rejections not yet taken.
    unnamed: u64,
    /// Notice 3 or 6: the relay closes the connection next.
    refused: Option<String>,
}

impl Ledger {
    /// The counts over every connection.
    pub(super) fn settlement(&self) -> Settlement {
        Settlement {
            sent: self.earlier.sent + self.current.sent,
            accepted: self.earlier.accepted + self.current.accepted,
            rejected: self.earlier.rejected + self.current.rejected,
        }
    }

    /// Whether the relay has said what became of every frame sent on this connection.
    pub(super) fn settled(&self) -> bool {
        self.current.unsettled() == 0
    }

    /// `frames` more data frames were queued.
    pub(super) fn sent(&mut self, frames: u64) {
        self.current.sent += frames;
    }

    /// `frames` queued were taken back before being written.
    pub(super) fn unsent(&mut self, frames: u64) {
        self.current.sent -= frames.min(self.current.sent);
    }

    /// The connection was lost; `resent` of its frames were not wholly written and go to the
    /// next one. The others stay as the relay last counted them.
    pub(super) fn reconnected(&mut self, resent: u64) {
        let resent = resent.min(self.current.sent);
        self.earlier.sent += self.current.sent - resent;
        self.earlier.accepted += self.current.accepted;
        self.earlier.rejected += self.current.rejected;
        self.current = Settlement { sent: resent, ..Settlement::default() };
        self.refused = None;
    }

    /// Takes in a notice from the relay.
    pub(super) fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Accepted { accepted, rejected } => {
                // Counts only grow: a stale notice says nothing new.
                self.current.accepted = self.current.accepted.max(accepted);
                self.current.rejected = self.current.rejected.max(rejected);
            }
            Notice::Rejected { sequence, reason } | Notice::AccessDenied { sequence, text: reason } => {
                let frame = reason.split([' ', ':']).nth(1).and_then(|word| word.strip_prefix("frame="));
                let Some(frame) = frame.and_then(|n| n.parse::<u64>().ok()) else {
                    self.unnamed += 1;
                    return;
                };
                if self.rejections.len() >= MAX_KEPT {
                    self.unnamed += 1;
                    return;
                }
                // The text without the frame number, which `frame` says.
                let token = reason.split([' ', ':']).next().unwrap_or_default().to_string();
                let rest = reason.get(token.len()..).unwrap_or_default();
                let rest = rest.trim_start().split_once([' ', ':']).map_or("", |(_, after)| after);
                let text = if rest.is_empty() { token.clone() } else { format!("{token}:{rest}") };
                let frame = self.earlier.sent + frame;
                self.rejections.push_back(Rejection { frame, sequence, reason: token, text });
            }
            Notice::Merged { rejected, .. } => self.unnamed += rejected,
            Notice::ProtocolError { text, .. } => self.refused = Some(text),
            _ => {}
        }
    }

    /// The oldest rejection not yet taken.
    pub(super) fn take_rejection(&mut self) -> Option<Rejection> {
        self.rejections.pop_front()
    }

    /// Rejections the relay counted without naming the frame.
    pub(super) fn unnamed(&self) -> u64 {
        self.unnamed
    }

    /// What the relay said when it refused the connection (notice 3).
    pub(super) fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(sequence: u64, text: &str) -> Notice {
        Notice::Rejected { sequence, reason: text.to_string() }
    }

    #[test]
    fn counts_and_named_rejections() {
        let mut ledger = Ledger::default();
        ledger.sent(4);
        assert!(!ledger.settled());
        ledger.notice(rejected(3, "checksum_missing frame=3: checksum is 0"));
        ledger.notice(Notice::Accepted { accepted: 3, rejected: 1 });
        assert!(ledger.settled());
        assert_eq!(ledger.settlement(), Settlement { sent: 4, accepted: 3, rejected: 1 });
        let rejection = ledger.take_rejection().unwrap();
        assert_eq!((rejection.frame, rejection.sequence), (3, 3));
        assert_eq!(rejection.reason, "checksum_missing");
        assert_eq!(rejection.text, "checksum_missing: checksum is 0");
        assert_eq!(ledger.take_rejection(), None);
    }

    #[test]
    fn a_stale_count_changes_nothing() {
        let mut ledger = Ledger::default();
        ledger.sent(10);
        ledger.notice(Notice::Accepted { accepted: 9, rejected: 1 });
        ledger.notice(Notice::Accepted { accepted: 5, rejected: 0 });
        assert_eq!(ledger.settlement(), Settlement { sent: 10, accepted: 9, rejected: 1 });
    }

    #[test]
    fn frames_are_numbered_over_connections_and_the_lost_ones_stay_unsettled() {
        let mut ledger = Ledger::default();
        ledger.sent(10);
        ledger.notice(Notice::Accepted { accepted: 6, rejected: 0 });
        // Lost with 2 frames not wholly written: they go to the next connection; 2 stay in
        // doubt.
        ledger.reconnected(2);
        ledger.sent(1);
        ledger.notice(rejected(7, "tlv_truncated frame=2: …"));
        ledger.notice(Notice::Accepted { accepted: 2, rejected: 1 });
        assert!(ledger.settled());
        let settlement = ledger.settlement();
        assert_eq!(settlement, Settlement { sent: 11, accepted: 8, rejected: 1 });
        assert_eq!(settlement.unsettled(), 2);
        assert_eq!(ledger.take_rejection().unwrap().frame, 10);
    }

    #[test]
    fn merged_and_unnumbered_rejections_are_counted_unnamed() {
        let mut ledger = Ledger::default();
        ledger.notice(Notice::Merged { rejected: 4, dropped: 0 });
        ledger.notice(rejected(2, "checksum_missing: no frame number"));
        assert_eq!(ledger.unnamed(), 5);
        assert_eq!(ledger.take_rejection(), None);
    }

    #[test]
    fn rejections_not_taken_are_bounded() {
        let mut ledger = Ledger::default();
        for frame in 1..=(MAX_KEPT as u64 + 3) {
            ledger.notice(rejected(frame, &format!("checksum_missing frame={frame}")));
        }
        assert_eq!(ledger.rejections.len(), MAX_KEPT);
        assert_eq!(ledger.unnamed(), 3);
    }
}
