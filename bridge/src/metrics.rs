//! The bridge's counters: a stats line in the log and Prometheus text on `--metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// of the last batch written).
    pub lag_ns: AtomicU64,
}

/// A counter's name, help and value, in the order they are shown.
type Line<'a> = (&'static str, &'static str, &'a AtomicU64);

impl Metrics {
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
            ("lag_seconds", "From a frame's timestamp to its import (the last frame)", &self.lag_ns),
        ]
    }

    /// Prometheus text exposition, labelled with the node and domain.
    pub fn prometheus(&self, node: &str, domain: &str) -> String {
        let mut out = String::new();
        for (name, help, value) in self.lines() {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let value = value.load(Relaxed);
            let _ = writeln!(out, "# HELP torq_bridge_{name} {help}\n# TYPE torq_bridge_{name} {kind}");
            if name == "lag_seconds" {
                let _ = writeln!(
                    out,
                    "torq_bridge_{name}{{node=\"{node}\",domain=\"{domain}\"}} {}",
                    value as f64 / 1e9
                );
            } else {
                let _ = writeln!(out, "torq_bridge_{name}{{node=\"{node}\",domain=\"{domain}\"}} {value}");
            }
        }
        out
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

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_labelled() {
        let metrics = Metrics::default();
        add(&metrics.dropped, 3);
        metrics.lag_ns.store(1_500_000, Relaxed);
        let text = metrics.prometheus("a", "market_data");
        assert!(text.contains("torq_bridge_dropped_total{node=\"a\",domain=\"market_data\"} 3\n"), "{text}");
        assert!(
            text.contains("torq_bridge_lag_seconds{node=\"a\",domain=\"market_data\"} 0.0015\n"),
            "{text}"
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 16);
        assert_eq!(metrics.stats_line(), "stats: dropped=3 lag_us=1500");
    }
}
