//! The bridge's counters: a stats line in the log and Prometheus text on `--metrics`
//! ([`BridgeCollector`], rendered by `torq::metrics` as the relays' are).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use torq::metrics::{Collector, DOMAIN_LABEL, DescriptorEncoder, Kind, domain_value, family};
use torq::protocol::RelayDomain;

/// Counters of one bridge, shared by its threads and tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames read from the local relay for export.
    pub exported_in: AtomicU64,
    /// Frames published to NATS (execution: acknowledged by JetStream).
    pub exported_out: AtomicU64,
    /// Bridged frames the relay forwarded, never exported again.
    pub export_skipped_bridged: AtomicU64,
    /// Frames received from NATS for import.
    pub imported_in: AtomicU64,
    /// Frames written to the local relay.
    pub imported_out: AtomicU64,
    /// Frames dropped by the bridge (market data and signals only: a full queue, or NATS
    /// refusing a publish).
    pub dropped: AtomicU64,
    /// Frames the relay dropped before the bridge could read them (notice 4).
    pub relay_dropped: AtomicU64,
    /// Messages from NATS that are not one whole frame the relay takes (skipped).
    pub invalid: AtomicU64,
    /// Frames missing on import: sequence gaps per (node, source) — dropped by the exporting
    /// relay or bridge, or lost by NATS.
    pub lost: AtomicU64,
    /// Execution frames JetStream delivered again, or copies of frames already imported, that
    /// the bridge skipped.
    pub duplicates_skipped: AtomicU64,
    /// Frames the local relay rejected on import (skipped; they take no other frame with them).
    pub rejected: AtomicU64,
    /// Frames written to a relay connection that was lost before the relay confirmed them.
    pub in_doubt: AtomicU64,
    /// Connections made again to the local relay.
    pub relay_reconnects: AtomicU64,
    /// Connections made again to NATS.
    pub nats_reconnects: AtomicU64,
    /// Execution publishes sent again after a failure (de-duplicated by the server).
    pub republished: AtomicU64,
    /// Nanoseconds from a frame's timestamp to its import into the local relay (the last frame
    /// of the last batch written whose timestamp can be right: [`plausible_lag`]).
    pub lag_ns: AtomicU64,
    /// When the bridge started (ns since the Unix epoch) and how old a frame may be: the bounds
    /// of [`plausible_lag`].
    started_ns: u64,
    max_age: Duration,
}

/// How far in the future a frame's timestamp may be (the hosts' clocks differ a little): its
/// lag counts as 0.
pub const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// The lag of a frame stamped `timestamp_ns` and imported at `now_ns`, or `None` when that
/// timestamp cannot be right: more than [`CLOCK_SKEW`] in the future, or older than the bridge's
/// start (`started_ns`) by more than `max_age` (the execution stream keeps nothing older; market
/// data and signals have no stream, and are not kept that long either). A publisher's clock that
/// is off, or a timestamp of 0, would otherwise set `lag_seconds` to any value (1.8e9 s was seen).
pub fn plausible_lag(now_ns: u64, timestamp_ns: u64, started_ns: u64, max_age: Duration) -> Option<u64> {
    let skew = u64::try_from(CLOCK_SKEW.as_nanos()).unwrap_or(u64::MAX);
    let max_age = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
    let in_future = timestamp_ns > now_ns.saturating_add(skew);
    let too_old = timestamp_ns < started_ns.saturating_sub(max_age);
    (!in_future && !too_old).then(|| now_ns.saturating_sub(timestamp_ns))
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A counter's name, help and value, in the order they are shown.
type Line<'a> = (&'static str, &'static str, &'a AtomicU64);

impl Metrics {
    /// The counters of a bridge started at `started_ns` whose frames are at most `max_age` old.
    pub fn new(started_ns: u64, max_age: Duration) -> Metrics {
        Metrics { started_ns, max_age, ..Metrics::default() }
    }

    /// Sets `lag_seconds` from the timestamp of a frame imported at `now_ns`, unless that
    /// timestamp cannot be right ([`plausible_lag`]): then the gauge keeps its value.
    pub fn record_lag(&self, now_ns: u64, timestamp_ns: u64) {
        match plausible_lag(now_ns, timestamp_ns, self.started_ns, self.max_age) {
            Some(lag) => self.lag_ns.store(lag, Relaxed),
            None => log::debug!(
                "import: a frame stamped {timestamp_ns} ns (now {now_ns}) is from the future or older than \
                 --max-age: lag_seconds not set from it (is its publisher's clock wrong?)"
            ),
        }
    }

    fn lines(&self) -> [Line<'_>; 16] {
        [
            ("exported_in_total", "Frames read from the local relay for export", &self.exported_in),
            (
                "exported_out_total",
                "Frames published to NATS (execution: stored by JetStream)",
                &self.exported_out,
            ),
            (
                "export_skipped_bridged_total",
                "Bridged frames never exported again",
                &self.export_skipped_bridged,
            ),
            ("imported_in_total", "Frames received from NATS", &self.imported_in),
            ("imported_out_total", "Frames written to the local relay", &self.imported_out),
            ("dropped_total", "Frames the bridge dropped (market data, signals)", &self.dropped),
            ("relay_dropped_total", "Frames the relay dropped for the exporting bridge", &self.relay_dropped),
            ("invalid_total", "Messages from NATS that are not one whole frame (skipped)", &self.invalid),
            (
                "lost_total",
                "Frames missing on import (sequence gaps per node and source): dropped on the exporting host or lost by NATS",
                &self.lost,
            ),
            (
                "duplicates_skipped_total",
                "Execution frames delivered again and skipped",
                &self.duplicates_skipped,
            ),
            ("rejected_total", "Frames the local relay rejected on import (skipped)", &self.rejected),
            (
                "in_doubt_total",
                "Frames written to a relay connection lost before the relay confirmed them",
                &self.in_doubt,
            ),
            ("relay_reconnects_total", "Connections made again to the local relay", &self.relay_reconnects),
            ("nats_reconnects_total", "Connections made again to NATS", &self.nats_reconnects),
            ("republished_total", "Execution publishes sent again after a failure", &self.republished),
            (
                "lag_seconds",
                "From a frame's timestamp to its import (the last frame stamped at most 1 s ahead and within max_age of the start)",
                &self.lag_ns,
            ),
        ]
    }

    /// One log line with every counter that is not zero.
    pub fn stats_line(&self) -> String {
        let mut out = String::from("stats:");
        for (name, _, value) in self.lines() {
            let value = value.load(Relaxed);
            if value == 0 {
                continue;
            }
            if name == "lag_seconds" {
                let _ = write!(out, " lag_us={}", value / 1000);
            } else {
                let _ = write!(out, " {}={value}", name.trim_end_matches("_total"));
            }
        }
        out
    }
}

/// The bridge's counters as a Prometheus collector: a family per counter (`torq_bridge_…_total`)
/// and the gauge `torq_bridge_lag_seconds`, each labelled `node` and `domain` (the label and
/// values of the relays' series: `market_data`, `signal`, `execution`), read at each scrape.
#[derive(Debug)]
pub struct BridgeCollector {
    metrics: Arc<Metrics>,
    node: String,
    domain: &'static str,
}

impl BridgeCollector {
    /// The collector of the bridge of `node` and `domain` counting in `metrics`.
    pub fn new(metrics: Arc<Metrics>, node: &str, domain: RelayDomain) -> BridgeCollector {
        BridgeCollector { metrics, node: node.to_string(), domain: domain_value(domain) }
    }
}

impl Collector for BridgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let labels = [("node", self.node.as_str()), (DOMAIN_LABEL, self.domain)];
        for (name, help, value) in self.metrics.lines() {
            let value = value.load(Relaxed);
            match name.strip_suffix("_total") {
                Some(counter) => {
                    let name = format!("torq_bridge_{counter}");
                    family(&mut encoder, &name, help, Kind::Counter, [(labels, value)])?;
                }
                // lag_seconds, kept in nanoseconds.
                None => {
                    let name = format!("torq_bridge_{name}");
                    family(&mut encoder, &name, help, Kind::Gauge, [(labels, value as f64 / 1e9)])?;
                }
            }
        }
        Ok(())
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_labelled() {
        let metrics = Arc::new(Metrics::default());
        add(&metrics.dropped, 3);
        metrics.lag_ns.store(1_500_000, Relaxed);
        let collector = BridgeCollector::new(Arc::clone(&metrics), "a", RelayDomain::MarketData);
        let text = torq::metrics::Exposition::new(collector).render();
        assert!(text.contains("torq_bridge_dropped_total{node=\"a\",domain=\"market_data\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE torq_bridge_dropped_total counter\n"), "{text}");
        assert!(
            text.contains("torq_bridge_lag_seconds{node=\"a\",domain=\"market_data\"} 0.0015\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE torq_bridge_lag_seconds gauge\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 16);
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 16);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 16);
        assert_eq!(metrics.stats_line(), "stats: dropped=3 lag_us=1500");
    }

    #[test]
    fn a_lag_is_taken_only_from_a_timestamp_that_can_be_right() {
        const S: u64 = 1_000_000_000;
        let (started, now, day) = (1_700_000_000 * S, 1_700_000_100 * S, Duration::from_secs(86_400));
        assert_eq!(plausible_lag(now, now - 3 * S, started, day), Some(3 * S));
        assert_eq!(plausible_lag(now, now, started, day), Some(0));
        // A little ahead: another host's clock. Lag 0, not a wrap-around.
        assert_eq!(plausible_lag(now, now + S / 2, started, day), Some(0));
        assert_eq!(plausible_lag(now, now + S, started, day), Some(0));
        assert_eq!(plausible_lag(now, now + S + 1, started, day), None, "beyond the skew");
        assert_eq!(plausible_lag(now, u64::MAX, started, day), None);
        // Old, within max_age of the start: a backlog the stream still held.
        let oldest = started - 86_400 * S;
        assert_eq!(plausible_lag(now, oldest, started, day), Some(now - oldest));
        assert_eq!(plausible_lag(now, oldest - 1, started, day), None, "older than max_age before the start");
        assert_eq!(plausible_lag(now, 0, started, day), None, "timestamp 0");
        // Bounds that do not fit in u64 nanoseconds, and a start near the epoch, take everything past.
        assert_eq!(plausible_lag(now, 0, started, Duration::from_secs(u64::MAX)), Some(now));
        assert_eq!(plausible_lag(now, 0, 5, day), Some(now));

        let metrics = Metrics::new(started, day);
        metrics.record_lag(now, now - 2 * S);
        metrics.record_lag(now, 0);
        metrics.record_lag(now, now + 3600 * S);
        assert_eq!(metrics.lag_ns.load(Relaxed), 2 * S, "the implausible ones left the gauge alone");
    }
}
