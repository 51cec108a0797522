//! The audit trail's records: one line per frame a relay with the audit level accepted,
//! rejected or consumed. The core builds them; the start-up layer's writer thread appends
//! them to the audit file.

use std::fmt;

/// What happened to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An accepted data frame.
    Accepted,
    /// A rejected frame, with its reason token.
    Rejected(&'static str),
    /// A hello.
    Hello,
    /// A control frame (Subscribe).
    Control,
}

/// One audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// When the frame was judged, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The connection's id.
    pub connection: u64,
    /// The peer's pid (0 when unknown).
    pub pid: i32,
    /// The peer's uid.
    pub uid: u32,
    /// What became of the frame.
    pub outcome: Outcome,
    /// The frame's source.
    pub source: u8,
    /// The frame's sequence.
    pub sequence: u64,
    /// The frame's length.
    pub len: u32,
}

impl Record {
    /// The record as one line of relay `relay`'s audit file, newline included.
    pub(crate) fn line<'a>(&'a self, relay: &'a str) -> Line<'a> {
        Line { record: self, relay }
    }
}

/// A record shown as a line of the audit file ([`Record::line`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    record: &'a Record,
    relay: &'a str,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line { record, relay } = *self;
        let (outcome, reason) = match record.outcome {
            Outcome::Accepted => ("accepted", ""),
            Outcome::Rejected(reason) => ("rejected", reason),
            Outcome::Hello => ("hello", ""),
            Outcome::Control => ("control", ""),
        };
        write!(
            f,
            "{} {relay} conn={} pid={} uid={} {outcome} source={} sequence={} len={}",
            record.time_ns,
            record.connection,
            record.pid,
            record.uid,
            record.source,
            record.sequence,
            record.len
        )?;
        if !reason.is_empty() {
            write!(f, " reason={reason}")?;
        }
        writeln!(f)
    }
}
