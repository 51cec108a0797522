//! Counters of one relay, shared by its reactors (relaxed atomics, bumped per batch or per
//! event, never a lock), and their two renderings: the stats line and Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::reason::{Reason, token_at};

/// The counters of one relay.
#[derive(Debug)]
pub struct Metrics {
    /// The relay's name (`market-data`, `signal`, `execution`).
    pub name: String,
    /// Data frames accepted from publishers.
    pub frames_in: AtomicU64,
    /// Bytes of accepted data frames.
    pub bytes_in: AtomicU64,
    /// Frames queued to subscribers (one per frame per subscriber).
    pub frames_out: AtomicU64,
    /// Bytes written to subscribers.
    pub bytes_out: AtomicU64,
    /// Frames skipped for slow subscribers (`drop`), or lost with a disconnected one.
    pub dropped_frames: AtomicU64,
    /// Rejected frames, by reason (indexed by [`Reason::index`]).
    pub rejected: Vec<AtomicU64>,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Subscribers disconnected as slow (`disconnect`) or stalled (`block`).
    pub slow_disconnects: AtomicU64,
    /// Times a publisher was paused for a full subscriber queue.
    pub pauses: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted in total.
    pub connections_total: AtomicU64,
    /// Connections refused (over `max_connections` or outside the allow-list).
    pub connections_refused: AtomicU64,
    /// Largest subscriber queue seen, in bytes.
    pub queue_high_water: AtomicU64,
    /// Hellos after a connection's first (counted, not audited).
    pub hellos_repeated: AtomicU64,
    /// Audit records that could not be written (each failed attempt counts once).
    pub audit_write_errors: AtomicU64,
    /// 1 while the audit trail cannot be written and the relay has stopped reading (fails
    /// closed), else 0.
    pub audit_failing: AtomicU64,
    /// Bytes queued to subscribers now, all queues together (a gauge, brought up to date per
    /// batch and per write, not per frame).
    pub queued_bytes: AtomicU64,
}

impl Metrics {
    /// Zeroed counters.
    pub fn new(name: &str) -> Self {
        let zero = AtomicU64::default;
        Metrics {
            name: name.to_string(),
            frames_in: zero(),
            bytes_in: zero(),
            frames_out: zero(),
            bytes_out: zero(),
            dropped_frames: zero(),
            rejected: (0..Reason::COUNT).map(|_| zero()).collect(),
            protocol_errors: zero(),
            slow_disconnects: zero(),
            pauses: zero(),
            connections: zero(),
            connections_total: zero(),
            connections_refused: zero(),
            queue_high_water: zero(),
            hellos_repeated: zero(),
            audit_write_errors: zero(),
            audit_failing: zero(),
            queued_bytes: zero(),
        }
    }

    /// Total rejected frames.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// One stats line.
    pub fn stats_line(&self) -> String {
        let mut line = format!(
            "{}: in {} frames {} B, out {} frames {} B, dropped {}, rejected {}, protocol errors {}, \
             slow disconnects {}, pauses {}, connections {} (total {}, refused {}), queue high-water {} B, \
             queued {} B",
            self.name,
            self.frames_in.load(Relaxed),
            self.bytes_in.load(Relaxed),
            self.frames_out.load(Relaxed),
            self.bytes_out.load(Relaxed),
            self.dropped_frames.load(Relaxed),
            self.rejected_total(),
            self.protocol_errors.load(Relaxed),
            self.slow_disconnects.load(Relaxed),
            self.pauses.load(Relaxed),
            self.connections.load(Relaxed),
            self.connections_total.load(Relaxed),
            self.connections_refused.load(Relaxed),
            self.queue_high_water.load(Relaxed),
            self.queued_bytes.load(Relaxed),
        );
        if self.audit_failing.load(Relaxed) != 0 {
            line.push_str(", AUDIT FAILING (not reading publishers)");
        }
        for (index, count) in self.rejected.iter().enumerate() {
            let token = token_at(index);
            let count = count.load(Relaxed);
            if count > 0 {
                let _ = write!(line, " {token}={count}");
            }
        }
        line
    }

    /// Prometheus text exposition of the counters.
    pub fn prometheus(&self, out: &mut String) {
        let relay = &self.name;
        let counters: [(&str, &AtomicU64); 16] = [
            ("frames_in_total", &self.frames_in),
            ("bytes_in_total", &self.bytes_in),
            ("frames_out_total", &self.frames_out),
            ("bytes_out_total", &self.bytes_out),
            ("dropped_frames_total", &self.dropped_frames),
            ("protocol_errors_total", &self.protocol_errors),
            ("slow_disconnects_total", &self.slow_disconnects),
            ("pauses_total", &self.pauses),
            ("connections", &self.connections),
            ("connections_total", &self.connections_total),
            ("connections_refused_total", &self.connections_refused),
            ("queue_high_water_bytes", &self.queue_high_water),
            ("hellos_repeated_total", &self.hellos_repeated),
            ("audit_write_errors_total", &self.audit_write_errors),
            ("audit_failing", &self.audit_failing),
            ("queued_bytes", &self.queued_bytes),
        ];
        for (name, value) in counters {
            let _ = writeln!(out, "torq_{name}{{relay=\"{relay}\"}} {}", value.load(Relaxed));
        }
        for (index, count) in self.rejected.iter().enumerate() {
            let token = token_at(index);
            let _ = writeln!(
                out,
                "torq_rejected_frames_total{{relay=\"{relay}\",reason=\"{token}\"}} {}",
                count.load(Relaxed)
            );
        }
    }
}
