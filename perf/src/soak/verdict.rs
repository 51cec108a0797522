//! The soak's verdict: the samples, the clients' counts and the relay's last scrape judged
//! into failures, a table and a JSON object.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::load::{DOMAINS, Load, Tracks};
use super::probe::{RELAYS, Scrape};
use super::trend::{self, Trend};
use super::{Report, Sample, SoakArgs, bytes, resources, si};

/// Everything the verdict is made of.
pub(super) struct Facts<'a> {
    pub(super) args: &'a SoakArgs,
    pub(super) seed: u64,
    pub(super) run: Duration,
    pub(super) samples: &'a [Sample],
    pub(super) load: &'a Load,
    pub(super) ledger: &'a [(u64, u64)],
    pub(super) received: &'a [(&'static str, Result<Tracks, String>)],
    pub(super) last: Option<&'a Scrape>,
    pub(super) status: String,
    pub(super) exited_cleanly: bool,
    pub(super) drained_in: Duration,
    pub(super) log_counts: [usize; 2],
}

/// What one whole-run subscriber got of the ledger.
#[derive(Debug, Default, Serialize)]
pub(super) struct Lossless {
    subscriber: &'static str,
    received: u64,
    missing: u64,
    disordered: u64,
    /// Sequences beyond what the publisher said it wrote, or from an unknown publisher.
    unexpected: u64,
    /// The first publisher with a missing frame: (id, first missing sequence).
    first_missing: Option<(u64, u64)>,
    error: Option<String>,
}

impl Facts<'_> {
    pub(super) fn report(&self) -> Report {
        let mut failures = Vec::new();
        let run_s = self.run.as_secs_f64();
        let mut table = String::new();
        let mut resources_json = serde_json::Map::new();
        let _ = writeln!(
            table,
            "\nsoak: {run_s:.0} s, {} samples, seed {}; rates (frames/s): market data {}, signal {}, execution {}",
            self.samples.len(),
            self.seed,
            si(self.args.md_rate),
            si(self.args.signal_rate),
            si(self.args.execution_rate)
        );
        let _ = writeln!(
            table,
            "\n{:<26} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}  verdict",
            "resource", "start", "end", "max", "mid ⅓", "last ⅓", "fit growth", "allowed"
        );
        for resource in resources() {
            let series: Vec<(f64, f64)> =
                self.samples.iter().filter_map(|s| Some((s.t, resource.series.of(s)?))).collect();
            let show = |v: f64| if resource.bytes { bytes(v) } else { format!("{v:.0}") };
            match trend::judge(&series, run_s, resource.tolerance) {
                Some(trend) => {
                    let verdict = if trend.rising { "RISING" } else { "flat" };
                    let _ = writeln!(
                        table,
                        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}  {verdict}",
                        resource.label,
                        show(trend.start),
                        show(trend.end),
                        show(trend.max),
                        show(trend.middle_median),
                        show(trend.last_median),
                        signed(trend.fit, &show),
                        show(trend.allowed),
                    );
                    if trend.rising {
                        failures.push(rising(&resource.name, &trend, &show, run_s));
                    }
                    resources_json.insert(
                        resource.key.clone(),
                        json!({ "trend": trend, "tolerance": resource.tolerance, "samples": series.len() }),
                    );
                }
                None => {
                    let _ =
                        writeln!(table, "{:<26} too few samples ({}) to judge", resource.label, series.len());
                    failures.push(format!(
                        "{}: too few samples ({}) to judge a trend",
                        resource.name,
                        series.len()
                    ));
                    resources_json
                        .insert(resource.key.clone(), json!({ "trend": null, "samples": series.len() }));
                }
            }
        }

        let _ = writeln!(
            table,
            "(mid ⅓, last ⅓: medians of the middle and last thirds of the run; fit growth: the least-squares \
             slope after the first 20 % times the time it spans; RISING when both last ⅓ − mid ⅓ and the fit \
             growth exceed allowed)"
        );

        // The relays' own counters, at the end of the load.
        let empty = Scrape::default();
        let last = self.last.unwrap_or(&empty);
        let _ = writeln!(
            table,
            "\n{:<12} {:>12} {:>12} {:>11} {:>9} {:>9} {:>10} {:>12}",
            "relay",
            "frames in",
            "frames out",
            "dropped",
            "rejected",
            "protocol",
            "slow disc.",
            "connections"
        );
        let mut relays_json = serde_json::Map::new();
        for relay in RELAYS {
            let counters = json!({
                "frames_in": last.relay("frames_in_total", relay),
                "frames_out": last.relay("frames_out_total", relay),
                "dropped": last.relay("dropped_frames_total", relay),
                "rejected": last.relay_sum("rejected_frames_total", relay),
                "protocol_errors": last.relay("protocol_errors_total", relay),
                "slow_disconnects": last.relay("slow_disconnects_total", relay),
                "connections_total": last.relay("connections_accepted_total", relay),
            });
            let n = |key: &str| counters[key].as_u64().unwrap_or(0);
            let _ = writeln!(
                table,
                "{relay:<12} {:>12} {:>12} {:>11} {:>9} {:>9} {:>10} {:>12}",
                n("frames_in"),
                n("frames_out"),
                n("dropped"),
                n("rejected"),
                n("protocol_errors"),
                n("slow_disconnects"),
                n("connections_total")
            );
            relays_json.insert(relay.to_string(), counters);
        }
        if self.last.is_none() {
            failures.push("the metrics endpoint did not answer after the load".to_string());
        }

        // The clients.
        let _ = writeln!(
            table,
            "\n{:<12} {:>18} {:>12} {:>12} {:>13} {:>11} {:>6}",
            "clients", "sessions (abrupt)", "published", "received", "relay dropped", "disordered", "gaps"
        );
        let mut clients_json = serde_json::Map::new();
        for (domain, counts) in DOMAINS.iter().zip(&self.load.counts) {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
            let (sessions, aborted) = (get(&counts.sessions), get(&counts.aborted));
            let (disordered, gaps) = (get(&counts.disordered), get(&counts.gaps));
            let _ = writeln!(
                table,
                "{:<12} {:>18} {:>12} {:>12} {:>13} {:>11} {:>6}",
                domain.name(),
                format!("{sessions} ({aborted})"),
                get(&counts.published),
                get(&counts.received),
                get(&counts.relay_dropped),
                disordered,
                gaps
            );
            if disordered > 0 {
                failures.push(format!(
                    "{} subscribers received {disordered} frames out of their publisher's order",
                    domain.name()
                ));
            }
            if gaps > 0 {
                failures.push(format!(
                    "execution subscribers that churned missed {gaps} frames between two they received"
                ));
            }
            clients_json.insert(
                domain.name().to_string(),
                json!({
                    "sessions": sessions, "abrupt": aborted, "published": get(&counts.published),
                    "received": get(&counts.received), "relay_dropped": get(&counts.relay_dropped),
                    "disordered": disordered, "gaps": gaps,
                }),
            );
        }
        let (killed, flashes, errors) =
            (self.load.killed.load(Relaxed), self.load.flashes.load(Relaxed), self.load.errors.load(Relaxed));
        let first_errors = self.load.first_errors();
        let _ = writeln!(
            table,
            "client processes killed (SIGKILL): {killed}; connections opened and closed at once: {flashes}; \
             client errors: {errors}"
        );
        for error in &first_errors {
            let _ = writeln!(table, "  client error: {error}");
        }
        if errors > 0 {
            failures.push(format!(
                "{errors} client errors (first: {})",
                first_errors.first().map_or("?", String::as_str)
            ));
        }

        // Lossless.
        let expected: u64 = self.ledger.iter().map(|(_, frames)| frames).sum();
        let _ = writeln!(
            table,
            "\nexecution, lossless: {} publisher sessions wrote {expected} whole frames; \
             the whole-run subscribers had them {:.1} s after the load stopped",
            self.ledger.len(),
            self.drained_in.as_secs_f64()
        );
        let lossless: Vec<Lossless> =
            self.received.iter().map(|(kind, result)| lossless(kind, result, self.ledger)).collect();
        for l in &lossless {
            let _ = writeln!(
                table,
                "  whole-run subscriber {:<22} received {:>9}, missing {}, disordered {}, unexpected {}{}",
                l.subscriber,
                l.received,
                l.missing,
                l.disordered,
                l.unexpected,
                l.error.as_ref().map_or(String::new(), |e| format!(", error: {e}"))
            );
            if let Some(error) = &l.error {
                failures.push(error.clone());
            }
            if l.missing > 0 {
                let (id, sequence) = l.first_missing.unwrap_or_default();
                failures.push(format!(
                    "{} execution frames missing at the whole-run {} subscriber (first: publisher {id}, sequence {sequence})",
                    l.missing, l.subscriber
                ));
            }
            if l.disordered > 0 || l.unexpected > 0 {
                failures.push(format!(
                    "the whole-run {} subscriber received {} execution frames out of order or twice and {} unexpected",
                    l.subscriber, l.disordered, l.unexpected
                ));
            }
        }
        if expected == 0 {
            failures.push("no execution frame was published: the lossless check saw nothing".to_string());
        }

        let _ = writeln!(
            table,
            "\nrelay exit: {}; its log: {} warnings, {} errors",
            self.status, self.log_counts[0], self.log_counts[1]
        );
        if !self.exited_cleanly {
            failures.push(format!("the relay's exit on SIGTERM: {} (expected 0)", self.status));
        }
        let _ = writeln!(
            table,
            "verdict: {}",
            if failures.is_empty() { "PASS".to_string() } else { format!("FAIL: {}", failures.join("; ")) }
        );

        let json = json!({
            "verdict": if failures.is_empty() { "pass" } else { "fail" },
            "failures": failures,
            "seconds": run_s,
            "seed": self.seed,
            "samples": self.samples.len(),
            "rates": { "market-data": self.args.md_rate, "signal": self.args.signal_rate, "execution": self.args.execution_rate },
            "resources": resources_json,
            "relays": relays_json,
            "clients": clients_json,
            "processes_killed": killed,
            "flash_connections": flashes,
            "client_errors": errors,
            "first_client_errors": first_errors,
            "execution": {
                "publisher_sessions": self.ledger.len(),
                "published": expected,
                "whole_run": lossless,
                "drained_s": self.drained_in.as_secs_f64(),
            },
            "relay_exit": self.status,
            "relay_log": { "warnings": self.log_counts[0], "errors": self.log_counts[1] },
        });
        Report { table, json, failures }
    }
}

fn signed(value: f64, show: &dyn Fn(f64) -> String) -> String {
    if value < 0.0 { format!("-{}", show(-value)) } else { format!("+{}", show(value)) }
}

/// The failure message of a rising series: the resource, its trend and the tolerance.
pub(super) fn rising(name: &str, trend: &Trend, show: &dyn Fn(f64) -> String, run_s: f64) -> String {
    format!(
        "{name} trends upward: median {} in the middle third of the run, {} in the last third ({}); \
         least squares {}/min ({} over the last {:.0} s); allowed {}",
        show(trend.middle_median),
        show(trend.last_median),
        signed(trend.step, show),
        signed(trend.slope_per_min, show),
        signed(trend.fit, show),
        run_s * (1.0 - trend::WARM_UP),
        show(trend.allowed)
    )
}

/// Compares what a whole-run subscriber received with what each publisher wrote.
pub(super) fn lossless(
    subscriber: &'static str,
    result: &Result<Tracks, String>,
    ledger: &[(u64, u64)],
) -> Lossless {
    let mut l = Lossless { subscriber, ..Lossless::default() };
    let tracks = match result {
        Ok(tracks) => tracks,
        Err(e) => {
            l.error = Some(e.clone());
            return l;
        }
    };
    for &(id, written) in ledger {
        let track = tracks.get(&id).copied().unwrap_or_default();
        let missing = track.gaps + written.saturating_sub(track.last);
        if missing > 0 && l.first_missing.is_none() {
            // With no gap inside, the first missing frame is the one after the last received.
            let first = if track.gaps > 0 { 0 } else { track.last + 1 };
            l.first_missing = Some((id, first));
        }
        l.missing += missing;
        l.received += track.frames;
        l.disordered += track.disordered;
        l.unexpected += track.last.saturating_sub(written);
    }
    let known: std::collections::HashSet<u64> = ledger.iter().map(|(id, _)| *id).collect();
    l.unexpected += tracks.iter().filter(|(id, _)| !known.contains(id)).map(|(_, t)| t.frames).sum::<u64>();
    l
}

#[cfg(test)]
mod tests {
    use super::super::Tolerance;
    use super::super::load::Track;
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn lossless_compares_each_publisher_with_the_ledger() {
        let ledger = [(1, 10), (2, 5), (3, 4)];
        let track = |last, frames, gaps| Track { last, frames, gaps, disordered: 0 };
        let tracks: HashMap<u64, Track> =
            [(1, track(10, 10, 0)), (2, track(3, 3, 0)), (9, track(2, 2, 0))].into();
        let l = lossless("legacy", &Ok(tracks), &ledger);
        // Publisher 2 lost 4 and 5; publisher 3 never arrived; publisher 9 is unknown.
        assert_eq!((l.received, l.missing, l.unexpected), (13, 2 + 4, 2));
        assert_eq!(l.first_missing, Some((2, 4)));
        let everything: HashMap<u64, Track> = ledger.iter().map(|&(id, n)| (id, track(n, n, 0))).collect();
        let l = lossless("legacy", &Ok(everything), &ledger);
        assert_eq!((l.received, l.missing, l.unexpected, l.first_missing), (19, 0, 0, None));
        let l = lossless("legacy", &Err("gone".into()), &ledger);
        assert_eq!(l.error.as_deref(), Some("gone"));
    }

    #[test]
    fn a_rising_message_names_the_resource_and_its_trend() {
        let series: Vec<(f64, f64)> = (0..=60).map(|t| (t as f64, 100.0 + t as f64)).collect();
        let trend = trend::judge(&series, 60.0, Tolerance { absolute: 4.0, relative: 0.0 }).unwrap();
        assert!(trend.rising);
        let message = rising("open file descriptors", &trend, &|v| format!("{v:.0}"), 60.0);
        assert!(message.starts_with("open file descriptors trends upward: median 130 in the middle third"));
        assert!(message.contains("+60/min"), "{message}");
    }
}
