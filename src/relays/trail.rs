//! The audit trail as the core keeps it (PROTOCOL.md §6, audit): an intake of a relay that
//! audits waits here, its records rendered as lines of the audit file, until the driver has
//! written them; only then is it settled (forwarded, confirmed). When a write fails the relay
//! fails closed: the intake stays here unforwarded, no connection of its relay is read (on any
//! shard: the failure is in the relay's shared metrics), the error is logged once a second,
//! and the write is asked for again a second later until it succeeds.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::error;

use super::connection::Intake;
use super::context::RelayContext;
use super::throttle::Throttle;

/// How long after a failed write the next is asked for.
const RETRY: Duration = Duration::from_secs(1);

/// One intake waiting for its records to be written.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) token: usize,
    pub(crate) relay: usize,
    /// The records, as lines of the audit file.
    lines: Vec<u8>,
    /// Bytes of `lines` already written.
    written: usize,
    pub(crate) intake: Intake,
}

/// One shard's intakes waiting for the audit trail, in order.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    held: VecDeque<Held>,
    /// After a failed write, none is asked for before this.
    retry_at: Option<Instant>,
    log: Throttle,
    /// A line buffer kept for the next intake.
    spare: Vec<u8>,
}

impl Trail {
    /// Keeps `intake` (its records taken out and rendered) until they are written.
    pub(crate) fn hold<L>(
        &mut self,
        token: usize,
        relay: usize,
        context: &RelayContext<L>,
        mut intake: Intake,
    ) {
        let mut lines = std::mem::take(&mut self.spare);
        lines.clear();
        for record in intake.records.drain(..) {
            // Writing into a Vec cannot fail.
            let _ = write!(lines, "{}", record.line(&context.config.name));
        }
        self.held.push_back(Held { token, relay, lines, written: 0, intake });
    }

    /// The bytes to append next to relay `.0`'s audit file, unless a failed write is waiting
    /// for its retry.
    pub(crate) fn due(&self, now: Instant) -> Option<(usize, &[u8])> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.held.front().map(|h| (h.relay, &h.lines[h.written..]))
    }

    /// `n` bytes of what [`Trail::due`] gave were written; gives back the intake once all of
    /// its records are.
    pub(crate) fn written(&mut self, n: usize) -> Option<Held> {
        self.retry_at = None;
        let front = self.held.front_mut()?;
        front.written = (front.written + n).min(front.lines.len());
        if front.written < front.lines.len() {
            return None;
        }
        let mut held = self.held.pop_front()?;
        self.spare = std::mem::take(&mut held.lines);
        Some(held)
    }

    /// The write of what [`Trail::due`] gave failed: the relay fails closed.
    pub(crate) fn failed<L>(&mut self, context: &RelayContext<L>, error: &dyn fmt::Display, now: Instant) {
        let metrics = &context.metrics;
        metrics.audit_write_errors.fetch_add(1, Relaxed);
        metrics.audit_failing.store(1, Relaxed);
        self.retry_at = Some(now + RETRY);
        if self.log.ready(now) {
            error!(
                "{}: cannot write the audit file: {error}; frames are not forwarded and connections \
                 not read until it can be written (retried every second)",
                context.config.name
            );
        }
    }

    /// Whether connections of relay `relay` must not be read: its trail failed, on this shard
    /// or another, or this shard holds records of it not written yet.
    pub(crate) fn failing<L>(&self, relay: usize, context: &RelayContext<L>) -> bool {
        context.metrics.audit_failing.load(Relaxed) != 0 || self.held.iter().any(|h| h.relay == relay)
    }

    /// Nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Accepted frames held (never forwarded, if the relay stops now).
    pub(crate) fn held_frames(&self) -> usize {
        self.held.iter().filter_map(|h| h.intake.batch.as_ref()).map(|b| b.frames.len()).sum()
    }
}
