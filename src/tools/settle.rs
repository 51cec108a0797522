//! What the sending tools (`torq-pub`, `torq-replay`) say about their frames: each rejection
//! named by the input it came from (a line, a packet) with the relay's reason, and a closing
//! count of accepted, rejected and unconfirmed frames.

use std::collections::VecDeque;
use std::fmt::{self, Display};
use std::time::Duration;

use crate::client::{Error, Publisher, Settlement};

/// Rejections printed one by one; beyond, only counted.
const MAX_PRINTED: u64 = 100;

/// Where the frames sent came from, until the relay has said what became of them.
#[derive(Debug)]
pub struct Outcomes<P> {
    tool: &'static str,
    /// (frame number, where it came from) of the frames not settled yet, in order.
    pending: VecDeque<(u64, P)>,
    /// Rejections printed, and those only counted past [`MAX_PRINTED`].
    printed: u64,
    unprinted: u64,
    /// Inputs refused before sending (too large for the relay, a control frame).
    refused: u64,
}

impl<P: Display + Clone> Outcomes<P> {
    /// Outcomes of `tool`'s frames (the name starts its messages).
    pub fn new(tool: &'static str) -> Self {
        Outcomes { tool, pending: VecDeque::new(), printed: 0, unprinted: 0, refused: 0 }
    }

    /// A frame was queued on `publisher`, from `place`; hellos are not counted by the relay
    /// and not followed.
    pub fn sent(&mut self, publisher: &Publisher, frame: &[u8], place: P) {
        if frame.len() > crate::protocol::HEADER_SIZE {
            self.pending.push_back((publisher.settlement().sent, place));
        }
    }

    /// An input the publisher refused to send (it says why), counted and printed.
    pub fn refused(&mut self, place: &P, error: &Error) {
        self.refused += 1;
        eprintln!("{}: {place}: not sent: {error}", self.tool);
    }

    /// Prints the rejections the relay has reported, each named by its input, and forgets
    /// the frames it has settled.
    pub fn report(&mut self, publisher: &mut Publisher) {
        while let Some(rejection) = publisher.take_rejection() {
            let place = self
                .pending
                .binary_search_by_key(&rejection.frame, |(frame, _)| *frame)
                .ok()
                .map(|index| self.pending[index].1.clone());
            if self.printed >= MAX_PRINTED {
                self.unprinted += 1;
                continue;
            }
            self.printed += 1;
            let place = place.map_or_else(|| format!("frame {}", rejection.frame), |place| place.to_string());
            eprintln!(
                "{}: {place}: rejected by the relay (sequence {}): {}",
                self.tool, rejection.sequence, rejection.text
            );
        }
        let Settlement { accepted, rejected, .. } = publisher.settlement();
        while self.pending.front().is_some_and(|(frame, _)| *frame <= accepted + rejected) {
            self.pending.pop_front();
        }
    }

    /// Waits (at most `timeout`) until the relay has settled every frame, reports what it
    /// said, and returns the closing counts.
    pub fn finish(&mut self, publisher: Option<&mut Publisher>, timeout: Duration) -> Closing {
        let Some(publisher) = publisher else {
            return Closing {
                settlement: Settlement::default(),
                refused: self.refused,
                error: None,
                unnamed: 0,
            };
        };
        let error = publisher.settle(timeout).err();
        self.report(publisher);
        if self.unprinted > 0 {
            eprintln!("{}: … and {} more rejections", self.tool, self.unprinted);
        }
        Closing {
            settlement: publisher.settlement(),
            refused: self.refused,
            error,
            unnamed: publisher.unnamed_rejections(),
        }
    }
}

/// What the relay said of everything a tool sent.
#[derive(Debug)]
pub struct Closing {
    /// The counts.
    pub settlement: Settlement,
    /// Inputs refused before sending.
    pub refused: u64,
    /// Why the frames are not all settled (a timeout, the relay gone).
    pub error: Option<Error>,
    /// Rejections the relay counted without naming their frames.
    pub unnamed: u64,
}

impl Closing {
    /// Everything sent was accepted and nothing was refused.
    pub fn clean(&self) -> bool {
        let Settlement { sent, accepted, .. } = self.settlement;
        sent == accepted && self.refused == 0 && self.error.is_none()
    }
}

impl Display for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Settlement { sent, accepted, rejected } = self.settlement;
        write!(f, "{sent} frames sent: {accepted} accepted, {rejected} rejected")?;
        let unsettled = self.settlement.unsettled();
        if unsettled > 0 {
            write!(f, ", {unsettled} unconfirmed")?;
        }
        if self.unnamed > 0 {
            write!(f, " ({} rejections not named: the relay merged them)", self.unnamed)?;
        }
        if self.refused > 0 {
            write!(f, "; {} not sent (refused before sending)", self.refused)?;
        }
        if let Some(error) = &self.error {
            write!(f, "; {error}")?;
        }
        Ok(())
    }
}
