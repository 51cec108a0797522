//! The audit trail as the reactors write it: each intake's records are appended to the audit
//! file (one write, at least to the page cache) before its frames are forwarded. When a write
//! fails the relay fails closed (PROTOCOL.md §6): the intake's frames are held, unforwarded,
//! its relay's connections are not read, the error is logged once a second and shown in the
//! metrics, and the write is retried every second until it succeeds.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use log::{error, info};

use crate::relays::audit::Record;
use crate::relays::{Intake, Metrics, RelayContext, Throttle};

/// What one intake accepted, held until its audit records are written.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) token: usize,
    pub(super) relay: usize,
    /// The records, as lines of the audit file.
    pub(super) lines: Vec<u8>,
    /// Bytes of `lines` already written.
    pub(super) written: usize,
    /// What the intake judged, its records taken out.
    pub(super) intake: Intake,
}

/// One reactor's writer of the audit files.
#[derive(Debug)]
pub(super) struct AuditWriter {
    /// The audit file of each relay that audits.
    files: Arc<[Option<Arc<File>>]>,
    /// Intakes whose records could not be written yet, in order.
    pub(super) held: VecDeque<Held>,
    /// Connections not read while their relay's audit trail fails.
    pub(super) waiting: Vec<usize>,
    /// A line buffer kept for the next intake.
    spare: Vec<u8>,
    /// Writes of held records are retried once a second, and failures logged once a second.
    attempt: Throttle,
    log: Throttle,
}

impl AuditWriter {
    pub(super) fn new(files: Arc<[Option<Arc<File>>]>) -> Self {
        AuditWriter {
            files,
            held: VecDeque::new(),
            waiting: Vec::new(),
            spare: Vec::new(),
            attempt: Throttle::default(),
            log: Throttle::default(),
        }
    }

    /// Whether connections of `relay` must not be read: its audit trail failed, on this
    /// reactor or another.
    pub(super) fn failing(&self, relay: usize, metrics: &Metrics) -> bool {
        self.files.get(relay).is_some_and(Option::is_some)
            && (metrics.audit_failing.load(Relaxed) != 0 || self.held.iter().any(|h| h.relay == relay))
    }

    /// Appends `records` to `relay`'s audit file; gives `held` back to be released when they
    /// are written, or keeps it when they could not be.
    pub(super) fn append<L>(
        &mut self,
        mut held: Held,
        records: &[Record],
        relay: &RelayContext<L>,
        now: Instant,
    ) -> Option<Held> {
        let Some(file) = self.files.get(held.relay).and_then(Option::as_ref) else { return Some(held) };
        let mut lines = std::mem::take(&mut self.spare);
        lines.clear();
        for record in records {
            // Writing into a Vec cannot fail.
            let _ = write!(lines, "{}", record.line(&relay.config.name));
        }
        held.lines = lines;
        match write_from(file, &held.lines, &mut held.written) {
            Ok(()) => {
                self.spare = std::mem::take(&mut held.lines);
                Some(held)
            }
            Err(e) => {
                self.fail(&relay.config.name, &relay.metrics, &e, now);
                // The next attempt a second from now.
                let _ = self.attempt.ready(now);
                self.held.push_back(held);
                None
            }
        }
    }

    /// Writes held records again, at most once a second; returns the intakes whose records
    /// are now written, in order.
    pub(super) fn retry<L>(&mut self, relays: &[RelayContext<L>], now: Instant) -> Vec<Held> {
        if self.held.is_empty() || !self.attempt.ready(now) {
            return Vec::new();
        }
        let mut done = Vec::new();
        while let Some(front) = self.held.front_mut() {
            let relay = &relays[front.relay];
            let Some(file) = self.files.get(front.relay).and_then(Option::as_ref) else { break };
            if let Err(e) = write_from(file, &front.lines, &mut front.written) {
                self.fail(&relay.config.name, &relay.metrics, &e, now);
                break;
            }
            done.extend(self.held.pop_front());
        }
        if self.held.is_empty() {
            for relay in relays.iter().filter(|r| r.metrics.audit_failing.swap(0, Relaxed) != 0) {
                info!("{}: the audit file takes writes again: reading resumes", relay.config.name);
            }
        }
        done
    }

    fn fail(&mut self, name: &str, metrics: &Metrics, e: &io::Error, now: Instant) {
        metrics.audit_write_errors.fetch_add(1, Relaxed);
        metrics.audit_failing.store(1, Relaxed);
        if self.log.ready(now) {
            error!(
                "{name}: cannot write the audit file: {e}; frames are not forwarded and connections \
                 not read until it can be written (retried every second)"
            );
        }
    }

    /// Logs the frames still held at the end of a stop; true if there are any (they were
    /// accepted and never delivered).
    pub(super) fn report_held(&self) -> bool {
        let frames: usize =
            self.held.iter().filter_map(|h| h.intake.batch.as_ref()).map(|b| b.frames.len()).sum();
        if !self.held.is_empty() {
            error!("{frames} accepted frames were not delivered: their audit records could not be written");
        }
        !self.held.is_empty()
    }
}

/// Writes `bytes[*written..]`, advancing `written` by what was written even when it fails
/// part-way.
fn write_from(mut file: &File, bytes: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < bytes.len() {
        match file.write(&bytes[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
