//! Counters of one relay, shared by its reactors (relaxed atomics, bumped per batch or per
//! event, never a lock), and their two renderings: the stats line and Prometheus text
//! ([`RelaysCollector`], which reads them at each scrape).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::reason::{Reason, token_at};
use crate::metrics::{Collector, DOMAIN_LABEL, DescriptorEncoder, Kind, domain_value, family};
use crate::protocol::RelayDomain;

/// The counters of one relay.
#[derive(Debug)]
pub struct Metrics {
    /// The relay's name (`market-data`, `signal`, `execution`, or its file's `relay.name`),
    /// which its stats line starts with.
    pub name: String,
    /// Its domain, which labels its Prometheus series ([`domain_value`]).
    pub domain: RelayDomain,
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
    /// Shared-memory readers attached now (PROTOCOL.md §7).
    pub shm_readers: AtomicU64,
    /// Frames written to the broadcast log.
    pub shm_frames: AtomicU64,
    /// Ring bytes written to the broadcast log (the frames with their record heads and
    /// padding).
    pub shm_bytes: AtomicU64,
    /// Times the broadcast log wrapped to its start.
    pub shm_wraps: AtomicU64,
    /// Wake-ups sent to readers asleep on the log (one system call each, at most one per
    /// reactor turn that wrote it).
    pub shm_wakeups: AtomicU64,
}

impl Metrics {
    /// Zeroed counters of the relay `name` of `domain`.
    pub fn new(name: &str, domain: RelayDomain) -> Self {
        let zero = AtomicU64::default;
        Metrics {
            name: name.to_string(),
            domain,
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
            shm_readers: zero(),
            shm_frames: zero(),
            shm_bytes: zero(),
            shm_wraps: zero(),
            shm_wakeups: zero(),
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
}

/// A family of one counter of every relay: its name (without `_total` for a counter), help,
/// kind and field.
type Field = (&'static str, &'static str, Kind, fn(&Metrics) -> &AtomicU64);

/// Every family with one sample per relay, in the order shown; `torq_relay_rejected_frames_total`
/// (one sample per relay and reason) comes last.
const FIELDS: [Field; 21] = [
    ("torq_relay_frames_in", "Data frames accepted from publishers", Kind::Counter, |m| &m.frames_in),
    ("torq_relay_in_bytes", "Bytes of the data frames accepted from publishers", Kind::Counter, |m| {
        &m.bytes_in
    }),
    (
        "torq_relay_frames_out",
        "Frames queued to subscribers (one per frame per subscriber)",
        Kind::Counter,
        |m| &m.frames_out,
    ),
    ("torq_relay_out_bytes", "Bytes written to subscribers", Kind::Counter, |m| &m.bytes_out),
    (
        "torq_relay_dropped_frames",
        "Frames skipped for slow subscribers (drop) or lost with a disconnected one",
        Kind::Counter,
        |m| &m.dropped_frames,
    ),
    ("torq_relay_protocol_errors", "Connections closed for a protocol error", Kind::Counter, |m| {
        &m.protocol_errors
    }),
    (
        "torq_relay_slow_disconnects",
        "Subscribers disconnected as slow (disconnect) or stalled (block)",
        Kind::Counter,
        |m| &m.slow_disconnects,
    ),
    ("torq_relay_pauses", "Times a publisher was paused for a full subscriber queue", Kind::Counter, |m| {
        &m.pauses
    }),
    ("torq_relay_connections_open", "Connections open now", Kind::Gauge, |m| &m.connections),
    ("torq_relay_connections_accepted", "Connections accepted", Kind::Counter, |m| &m.connections_total),
    (
        "torq_relay_connections_refused",
        "Connections refused (over max_connections or outside the allow-lists)",
        Kind::Counter,
        |m| &m.connections_refused,
    ),
    (
        "torq_relay_queue_high_water_bytes",
        "Largest subscriber queue seen since the start",
        Kind::Gauge,
        |m| &m.queue_high_water,
    ),
    ("torq_relay_queued_bytes", "Bytes queued to subscribers now, all queues together", Kind::Gauge, |m| {
        &m.queued_bytes
    }),
    (
        "torq_relay_hellos_repeated",
        "Hellos after a connection's first (counted, not audited)",
        Kind::Counter,
        |m| &m.hellos_repeated,
    ),
    ("torq_relay_audit_write_errors", "Failed attempts to write audit records", Kind::Counter, |m| {
        &m.audit_write_errors
    }),
    (
        "torq_relay_audit_failing",
        "1 while the audit trail cannot be written and the relay has stopped reading (fails closed), else 0",
        Kind::Gauge,
        |m| &m.audit_failing,
    ),
    ("torq_relay_shm_readers", "Shared-memory readers attached now", Kind::Gauge, |m| &m.shm_readers),
    ("torq_relay_shm_frames", "Frames written to the shared-memory broadcast log", Kind::Counter, |m| {
        &m.shm_frames
    }),
    (
        "torq_relay_shm_written_bytes",
        "Ring bytes written to the broadcast log (frames, record heads, padding)",
        Kind::Counter,
        |m| &m.shm_bytes,
    ),
    ("torq_relay_shm_wraps", "Times the broadcast log wrapped to its start", Kind::Counter, |m| &m.shm_wraps),
    (
        "torq_relay_shm_wakeups",
        "Wake-ups sent to readers asleep on the broadcast log (at most one per reactor turn that wrote it)",
        Kind::Counter,
        |m| &m.shm_wakeups,
    ),
];

/// The relays of one process as one Prometheus collector: each family once, with one sample
/// per relay labelled `domain` (`market_data`, `signal`, `execution`), the counters read at
/// each scrape (relaxed loads: the frame path takes no lock for them).
#[derive(Debug, Clone)]
pub struct RelaysCollector(pub Vec<Arc<Metrics>>);

impl Collector for RelaysCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let relays = &self.0;
        for (name, help, kind, field) in FIELDS {
            let samples =
                relays.iter().map(|m| ([(DOMAIN_LABEL, domain_value(m.domain))], field(m).load(Relaxed)));
            family(&mut encoder, name, help, kind, samples)?;
        }
        let rejected = relays.iter().flat_map(|m| {
            m.rejected.iter().enumerate().map(|(reason, count)| {
                ([(DOMAIN_LABEL, domain_value(m.domain)), ("reason", token_at(reason))], count.load(Relaxed))
            })
        });
        family(
            &mut encoder,
            "torq_relay_rejected_frames",
            "Frames rejected (skipped, counted, named), by reason",
            Kind::Counter,
            rejected,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Exposition;

    #[test]
    fn every_family_once_with_a_sample_per_relay() {
        let relays: Vec<_> = [("market-data", RelayDomain::MarketData), ("orders", RelayDomain::Execution)]
            .map(|(name, domain)| Arc::new(Metrics::new(name, domain)))
            .into();
        relays[0].frames_in.fetch_add(7, Relaxed);
        relays[1].queued_bytes.store(4096, Relaxed);
        relays[1].rejected[Reason::SequenceReplay.index()].fetch_add(2, Relaxed);
        let text = Exposition::new(RelaysCollector(relays)).render();
        for line in [
            "torq_relay_frames_in_total{domain=\"market_data\"} 7\n",
            "torq_relay_frames_in_total{domain=\"execution\"} 0\n",
            "torq_relay_queued_bytes{domain=\"execution\"} 4096\n",
            "torq_relay_rejected_frames_total{domain=\"execution\",reason=\"sequence_replay\"} 2\n",
            "# TYPE torq_relay_connections_open gauge\n",
            "# TYPE torq_relay_connections_accepted_total counter\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!((types.len(), helps), (FIELDS.len() + 1, FIELDS.len() + 1), "{text}");
        for family in &types {
            let (name, kind) = family.split_once(' ').unwrap();
            assert_eq!(name.ends_with("_total"), kind == "counter", "{family}");
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name} twice");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 2 * FIELDS.len() + 2 * Reason::COUNT);
    }
}
