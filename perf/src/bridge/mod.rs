//! `torq-perf bridge`: the hop between hosts — publisher → relay a → `torq-bridge --export` →
//! NATS → `torq-bridge --import a` → relay b → subscriber — against its floor, a bare NATS hop
//! (`torq-perf nats-publish` → `nats-server` → `torq-perf nats-subscribe`) measured in the
//! same run, on the same server.
//!
//! The processes ([`hosts`]) start once: a NATS server, two relays, two bridges, and a probe
//! frame that must cross before anything is measured. Then, per rate of `--rates` and per run,
//! the floor's latency and the bridge's, one after the other, open loop as `torq-perf latency`
//! measures one relay (frames stamped with their intended send time, the first `--warmup-s`
//! not measured, HDR histograms per second, `--out DIR` for the `.hgrm`, `.hlog` and `.svg`
//! files); then, per run, the floor's throughput and the bridge's: `--throughput-frames`
//! frames sent as fast as the publisher can, the rate the subscriber received them at, and
//! what was lost where (the bridges' counters, scraped around each run). Each run's bridge
//! figure is compared with the floor's of the same run; the medians of those ratios are
//! judged against the targets (issue 11): p50 at most 2× the bare hop's, throughput at least
//! 0.5× the bare hop's.

pub mod hosts;
mod throughput;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::clients::Domain;
use crate::latency::hdr::{NS_PER_US, Summary};
use crate::latency::{
    Files, Hop, Run, Say, Side, compare, figures_line, measure_with, median_comparison, median_summary,
    parse_rate, rate_label, run_line, to_floor_line,
};
use crate::machine::{Machine, Others};
use crate::relay::{ClientProcesses, current_exe, median, number, run_clients};
use hosts::{Binaries, Cluster, Cpu, Placement, Spec};

/// The subject of the floor's frames (the bridges' subjects start with `torq.`).
const FLOOR_SUBJECT: &str = "perf.floor";
/// The targets of issue 11.
const P50_RATIO_MAX: f64 = 2.0;
const THROUGHPUT_RATIO_MIN: f64 = 0.5;

/// `torq-perf bridge`.
#[derive(Debug, clap::Args)]
pub struct BridgeArgs {
    /// The relays' domain: market data and signals cross over core NATS, execution over
    /// JetStream (the floor is a core NATS hop either way).
    #[arg(long, value_enum, default_value_t = Domain::MarketData)]
    domain: Domain,
    /// Latency: the rates to measure, frames per second, in order (`10k,100k`); `none` skips
    /// the latency runs.
    #[arg(long, visible_alias = "rate", value_delimiter = ',', default_value = "10k", value_parser = parse_rate_or_none)]
    rates: Vec<f64>,
    /// Latency: seconds the publisher sends at each rate in each run, the warm-up included.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Latency: seconds at the start of each run that are not measured (the first
    /// `rate × warmup` frames).
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Throughput: seconds the publisher sends in each run; 0 skips the throughput runs.
    #[arg(long, default_value_t = 3.0)]
    throughput_s: f64,
    /// Throughput: the publisher's rate, open loop (`500k`); as fast as it can when absent.
    #[arg(long, value_parser = parse_rate)]
    throughput_rate: Option<f64>,
    /// Runs of each measurement (the floor's and the bridge's, one after the other); medians
    /// are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Bytes per frame.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Both relays' `--cores` (`none`, `none:1`, `0`, `0,1`), or relay a's and relay b's
    /// separated by `/` (`0/1`).
    #[arg(long, value_name = "LIST|none|none:N", visible_alias = "cores", default_value = "none")]
    relay_cores: String,
    /// Both relays' `--idle` (`block`, `spin`, `backoff`); the relay's default when absent.
    #[arg(long, value_name = "STRATEGY")]
    idle: Option<String>,
    /// The publishers' and the subscribers' cores (the bridge's clients and the floor's alike):
    /// `P,S`, one core for both, or `none`.
    #[arg(long, default_value = "none")]
    client_cores: String,
    /// The exporting and the importing bridge's cores: `A,B`, one core for both, or `none`.
    #[arg(long, default_value = "none")]
    bridge_cores: String,
    /// The NATS server's core, or `none`.
    #[arg(long, default_value = "none")]
    nats_core: String,
    /// The directory of the relay and `torq-bridge` binaries [default: this torq-perf's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The `nats-server` binary [default: from PATH, /usr/sbin or /usr/local/bin].
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// A subscriber stops after this long without a frame (once frames have arrived).
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Before each run (the floor's too), wait up to this many seconds until other processes
    /// have used less than 5 % of a core for a whole second; 0: don't wait.
    #[arg(long, default_value_t = 0)]
    wait_quiet_s: u64,
    /// Write the `.hgrm`, `.hlog` and `.svg` files of each rate into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The files' name: `<name>-<rate>.hgrm`, `<name>-<rate>-floor.hgrm` and so on.
    #[arg(long, default_value = "bridge")]
    name: String,
    /// Print one JSON object on stdout (the human report goes to stderr).
    #[arg(long)]
    json: bool,
    /// In the bridge's latency runs, also measure the way there: a subscriber on relay a (on
    /// bridge a's core) and one on NATS for the export subjects (on bridge b's core), so the
    /// time splits into publisher → relay a, relay a → NATS (bridge a) and NATS → subscriber
    /// (bridge b, relay b). They add load: relay a and NATS then serve two subscribers each.
    #[arg(long)]
    taps: bool,
    /// Keep the directory of the processes' logs (NATS, relays, bridges) and print where it is.
    #[arg(long)]
    keep_logs: bool,
    /// Further arguments for both bridges (after `--`), e.g. `-- --queue 8192`.
    #[arg(last = true)]
    bridge_args: Vec<String>,
}

/// A rate, or `none` (as 0: no latency runs).
fn parse_rate_or_none(text: &str) -> Result<f64, String> {
    if text.trim() == "none" { Ok(0.0) } else { parse_rate(text) }
}

/// `A,B` or one value for both.
fn pair(text: &str, flag: &str) -> Result<[String; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    match parts[..] {
        [one] => Ok([one.to_string(), one.to_string()]),
        [a, b] => Ok([a.to_string(), b.to_string()]),
        _ => Err(format!("{flag} {text}: one core (or none) for both, or two separated by a comma")),
    }
}

/// The bridges' counters over one run (differences of two scrapes).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Hops {
    /// Bridge a: frames read from relay a, frames relay a told it it dropped for it, frames it
    /// dropped (its queue full), frames published to NATS.
    exported_in: u64,
    relay_a_dropped: u64,
    bridge_a_dropped: u64,
    exported_out: u64,
    /// Bridge b: frames received from NATS (published by a and not received: lost in NATS),
    /// frames it counted as lost between hosts (sequence gaps: what relay a and bridge a
    /// dropped too), frames it dropped, frames written to relay b.
    imported_in: u64,
    lost_in_nats: u64,
    gaps_at_b: u64,
    bridge_b_dropped: u64,
    imported_out: u64,
    /// Bridge b's gauge at the end: from the last frame's timestamp to its import, µs.
    last_lag_us: f64,
    /// With `--taps`: the latency measured on relay a and on NATS.
    taps: Option<[Summary; 2]>,
}

impl Hops {
    fn between(before: &[crate::soak::probe::Scrape; 2], after: &[crate::soak::probe::Scrape; 2]) -> Hops {
        let delta = |i: usize, name: &str| {
            let name = format!("torq_bridge_{name}");
            (after[i].family(&name) - before[i].family(&name)).max(0.0) as u64
        };
        let (exported_out, imported_in) = (delta(0, "exported_out_total"), delta(1, "imported_in_total"));
        Hops {
            exported_in: delta(0, "exported_in_total"),
            relay_a_dropped: delta(0, "relay_dropped_total"),
            bridge_a_dropped: delta(0, "dropped_total"),
            exported_out,
            imported_in,
            lost_in_nats: exported_out.saturating_sub(imported_in),
            gaps_at_b: delta(1, "lost_total"),
            bridge_b_dropped: delta(1, "dropped_total"),
            imported_out: delta(1, "imported_out_total"),
            last_lag_us: after[1].family("torq_bridge_lag_seconds") * 1e6,
            taps: None,
        }
    }

    fn line(&self) -> String {
        let taps = match &self.taps {
            Some([on_a, on_nats]) => format!(
                "\n  taps (µs): on relay a p50 {}, p99.9 {}; on NATS p50 {}, p99.9 {}",
                us(on_a.p50),
                us(on_a.p99_9),
                us(on_nats.p50),
                us(on_nats.p99_9)
            ),
            None => String::new(),
        };
        format!(
            "bridge a read {} (relay a dropped {} for it), dropped {}, published {}; bridge b received {} \
             (lost in NATS {}; its lost_total +{}), dropped {}, wrote {} to relay b{taps}",
            self.exported_in,
            self.relay_a_dropped,
            self.bridge_a_dropped,
            self.exported_out,
            self.imported_in,
            self.lost_in_nats,
            self.gaps_at_b,
            self.bridge_b_dropped,
            self.imported_out
        )
    }
}

/// What the scenario measures with: the cluster, the clients' settings, the report.
struct Scenario<'a> {
    args: &'a BridgeArgs,
    cluster: &'a Cluster,
    placement: &'a Placement,
    say: &'a Say,
    /// Frames of the domain need their checksum.
    crc: bool,
}

pub fn bridge(args: &BridgeArgs) -> Result<(), String> {
    let rates: Vec<f64> = args.rates.iter().copied().filter(|rate| *rate > 0.0).collect();
    if rates.is_empty() && args.throughput_s <= 0.0 {
        return Err("nothing to measure: --rates none and --throughput-s 0".to_string());
    }
    let timing_ok = args.warmup_s >= 0.0 && args.seconds > args.warmup_s;
    if !rates.is_empty() && !timing_ok {
        return Err(format!("--seconds {} must exceed --warmup-s {}", args.seconds, args.warmup_s));
    }
    crate::clients::template(args.domain, args.size)?;
    let binaries = Binaries::find(args.domain, args.bin_dir.as_deref(), args.nats_server.as_deref())?;
    let clients = pair(&args.client_cores, "--client-cores")?;
    let placement = Placement {
        relay_cores: match args.relay_cores.split_once('/') {
            Some((a, b)) => [a.to_string(), b.to_string()],
            None => [args.relay_cores.clone(), args.relay_cores.clone()],
        },
        idle: args.idle.clone(),
        nats: args.nats_core.clone(),
        bridges: pair(&args.bridge_cores, "--bridge-cores")?,
        publisher: clients[0].clone(),
        subscriber: clients[1].clone(),
    };
    for core in [&placement.nats, &placement.bridges[0], &placement.bridges[1], &clients[0], &clients[1]] {
        if core != "none" && core.parse::<usize>().is_err() {
            return Err(format!("core {core:?}: a core number or none"));
        }
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    }
    crate::reaper::on_signal()?;
    let say = Say { json: args.json };
    let machine = Machine::describe();
    say.line(&machine.to_string());
    say.line(&placement.line(&binaries));

    let spec = Spec {
        domain: args.domain,
        binaries: &binaries,
        placement: &placement,
        bridge_args: &args.bridge_args,
        keep: args.keep_logs,
    };
    let cluster = Cluster::start(&spec)?;
    let pids: Vec<String> = cluster.pids().iter().map(|(name, pid)| format!("{name} {pid}")).collect();
    say.line(&format!(
        "started on {} ({}); a probe frame crossed {:.2} s after the bridges started; logs in {}",
        cluster.url,
        pids.join(", "),
        cluster.first_crossing.as_secs_f64(),
        cluster.dir.display()
    ));
    let scenario = Scenario {
        args,
        cluster: &cluster,
        placement: &placement,
        say: &say,
        crc: args.domain != Domain::MarketData,
    };
    let measured = scenario.measure_all(&rates);
    let dir = cluster.dir.clone();
    let mut failures = cluster.stop();
    let report = measured?;
    if args.keep_logs {
        say.line(&format!("logs kept in {}", dir.display()));
    }
    if let Some(failure) = failures.pop() {
        return Err(format!("{failure}\n(the logs are kept in {})", dir.display()));
    }
    if args.json {
        let mut report = report;
        report["machine"] = json!(machine);
        report["load_at_end"] = json!(crate::machine::load());
        report["placement"] = placement.json();
        println!("{report}");
    }
    Ok(())
}

impl Scenario<'_> {
    /// Every rate's latency runs, then the throughput runs; the JSON report.
    fn measure_all(&self, rates: &[f64]) -> Result<Value, String> {
        let args = self.args;
        let mut latency = Vec::new();
        for &rate in rates {
            latency.push(self.latency(rate)?);
        }
        let throughput = if args.throughput_s > 0.0 { self.throughput()? } else { Value::Null };
        let mut targets = json!({
            "p50_ratio_max": P50_RATIO_MAX,
            "throughput_ratio_min": THROUGHPUT_RATIO_MIN,
        });
        if let Some(first) = latency.first() {
            let ratio = number(&first["to_floor"]["median"], "p50_ratio");
            targets["p50_ratio"] = json!(ratio);
            targets["p50_rate"] = first["rate"].clone();
            targets["p50_met"] = json!(ratio <= P50_RATIO_MAX);
            self.say.line(&format!(
                "target p50 ≤ {P50_RATIO_MAX}× the bare hop at {}: {ratio:.2}× — {}",
                first["scenario"].as_str().unwrap_or("?"),
                verdict(ratio <= P50_RATIO_MAX, ratio / P50_RATIO_MAX)
            ));
        }
        if !throughput.is_null() {
            let ratio = number(&throughput["ratio"], "median");
            targets["throughput_ratio"] = json!(ratio);
            if args.throughput_rate.is_none() {
                targets["throughput_met"] = json!(ratio >= THROUGHPUT_RATIO_MIN);
                self.say.line(&format!(
                    "target throughput ≥ {THROUGHPUT_RATIO_MIN}× the bare hop: {ratio:.2}× — {}",
                    verdict(ratio >= THROUGHPUT_RATIO_MIN, THROUGHPUT_RATIO_MIN / ratio)
                ));
            } else {
                // Both sides were offered the same rate: the ratio says what the bridge carried of
                // it, not how its capacity compares with the bare hop's.
                targets["throughput_met"] = Value::Null;
                self.say.line(&format!(
                    "throughput at a fixed rate: the bridge carried {ratio:.2}× what the bare hop did (the \
                     target compares both flat out: run without --throughput-rate)"
                ));
            }
        }
        Ok(json!({
            "domain": args.domain.name(),
            "frame_bytes": args.size,
            "runs": args.runs,
            "seconds": args.seconds,
            "warmup_s": args.warmup_s,
            "throughput_s": args.throughput_s,
            "throughput_rate": args.throughput_rate,
            "first_crossing_s": self.cluster.first_crossing.as_secs_f64(),
            "latency": latency,
            "throughput": throughput,
            "targets": targets,
        }))
    }

    /// The latency runs at one rate: floor, then bridge, `--runs` times; medians, ratios, files.
    fn latency(&self, rate: f64) -> Result<Value, String> {
        let (args, say) = (self.args, self.say);
        let scenario = format!("{}-{}", args.name, rate_label(rate));
        let frames = (rate * args.seconds).ceil() as u64;
        let warmup = (rate * args.warmup_s).floor() as u64;
        say.line(&format!(
            "{scenario}: publisher → relay a → bridge a → NATS → bridge b → relay b → subscriber, against \
             publisher → NATS → subscriber; {frames} frames of {} B at {rate} frames/s, open loop; the first \
             {warmup} ({} s) are warm-up; {} run(s)",
            args.size, args.warmup_s, args.runs
        ));
        let (mut bridge_runs, mut floor_runs, mut hops, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=args.runs {
            let label = |side: &str| format!("{scenario} run {run}/{}, {side}", args.runs);
            let floor = self.latency_run(rate, frames, warmup, &label("floor"), false)?.0;
            say.line(&run_line(&format!("run {run}, floor"), &floor));
            let (bridge, hop) = self.latency_run(rate, frames, warmup, &label("bridge"), true)?;
            say.line(&run_line(&format!("run {run}, bridge"), &bridge));
            say.line(&format!("  {}", hop.line()));
            let ratio = compare(&bridge.summary, &floor.summary);
            say.line(&format!("  to the floor: {}", to_floor_line(&ratio)));
            self.cluster.check()?;
            floor_runs.push(floor);
            bridge_runs.push(bridge);
            hops.push(hop);
            ratios.push(ratio);
        }
        let (bridge_median, floor_median) = (median_summary(&bridge_runs), median_summary(&floor_runs));
        let to_floor = median_comparison(&ratios);
        say.line(&format!(
            "{scenario}, bridge, median of {} runs (µs): {}",
            args.runs,
            figures_line(&bridge_median)
        ));
        say.line(&format!(
            "{scenario}, floor, median of {} runs (µs): {}",
            args.runs,
            figures_line(&floor_median)
        ));
        say.line(&format!("{scenario}, median to the floor: {}", to_floor_line(&to_floor)));
        let taps: Vec<[Summary; 2]> = hops.iter().filter_map(|hop| hop.taps).collect();
        if !taps.is_empty() {
            let p50 = |i: usize| median(&mut taps.iter().map(|t| t[i].p50 as f64).collect::<Vec<_>>()) as u64;
            let (on_a, on_nats, on_b) = (p50(0), p50(1), bridge_median.p50);
            say.line(&format!(
                "{scenario}, where the time goes (median p50s, µs): publisher → relay a {}; → bridge a → NATS {} \
                 (+{}); → bridge b → relay b → subscriber {} (+{}); the bare NATS hop {}",
                us(on_a),
                us(on_nats),
                us(on_nats.saturating_sub(on_a)),
                us(on_b),
                us(on_b.saturating_sub(on_nats)),
                us(floor_median.p50)
            ));
        }
        let runs_json = |runs: &[Run]| runs.iter().map(Run::json).collect::<Vec<_>>();
        let mut bridge_json = runs_json(&bridge_runs);
        for (run, hop) in bridge_json.iter_mut().zip(&hops) {
            run["hops"] = json!(hop);
        }
        let mut entry = json!({
            "rate": rate,
            "scenario": scenario,
            "frames": frames,
            "warmup_frames": warmup,
            "bridge": {"runs": bridge_json, "median_ns": bridge_median},
            "floor": {"runs": runs_json(&floor_runs), "median_ns": floor_median},
            "to_floor": {"median": to_floor, "runs": ratios},
        });
        if let Some(out) = &args.out {
            let sides = [
                Side { name: scenario.clone(), runs: &bridge_runs, label: self.bridge_label() },
                Side {
                    name: format!("{scenario}-floor"),
                    runs: &floor_runs,
                    label: "floor (bare NATS hop)".into(),
                },
            ];
            let files = Files {
                out,
                svg: &scenario,
                rate,
                size: args.size,
                tool: "torq-perf bridge",
                placement: self.placement_line(),
                title: format!(
                    "across hosts at {} frames/s, {} B frames, {} run(s) — {}",
                    rate_label(rate),
                    args.size,
                    args.runs,
                    self.bridge_label()
                ),
            }
            .write(&sides)?;
            say.line(&format!("{scenario}: wrote {}", files.join(", ")));
            entry["files"] = json!(files);
        }
        Ok(entry)
    }

    fn bridge_label(&self) -> String {
        format!("bridge ({} --domain {})", "torq-bridge", self.args.domain.name())
    }

    fn placement_line(&self) -> String {
        let p = self.placement;
        format!(
            "nats-server core {}, relays --cores {}/{}, bridges cores {},{}, publisher core {}, subscriber core {}",
            p.nats, p.relay_cores[0], p.relay_cores[1], p.bridges[0], p.bridges[1], p.publisher, p.subscriber
        )
    }

    fn wait_quiet(&self, label: &str) -> bool {
        if self.args.wait_quiet_s == 0 {
            return true;
        }
        let (others, gave_up) = crate::machine::wait_quiet(Duration::from_secs(self.args.wait_quiet_s), 0.05);
        if gave_up {
            eprintln!(
                "{label}: the machine is still busy after {} s ({others}); running anyway",
                self.args.wait_quiet_s
            );
        }
        !gave_up
    }

    /// The subscriber and publisher commands of one side: the bridge's (relay b, relay a) or
    /// the floor's (NATS, NATS).
    fn clients(&self, bridge: bool, frames: u64, rate: Option<f64>) -> Result<(Command, Command), String> {
        let (args, cluster, placement) = (self.args, self.cluster, self.placement);
        let exe = current_exe()?;
        let mut subscriber = Command::new(&exe);
        let mut publisher = Command::new(&exe);
        if bridge {
            subscriber.args(["subscribe", "--ack", "--socket"]).arg(&cluster.sockets[1]);
            publisher.args(["publish", "--socket"]).arg(&cluster.sockets[0]);
        } else {
            subscriber.args(["nats-subscribe", "--nats", &cluster.url, "--subject", FLOOR_SUBJECT]);
            publisher.args(["nats-publish", "--nats", &cluster.url, "--subject", FLOOR_SUBJECT]);
        }
        subscriber.args(["--frames", &frames.to_string(), "--idle-ms", &args.idle_ms.to_string()]);
        subscriber.args(["--core", &placement.subscriber]);
        subscriber.args(rate.map(|_| "--latency"));
        publisher.args(["--frames", &frames.to_string(), "--size", &args.size.to_string()]);
        publisher.args(["--domain", args.domain.name(), "--core", &placement.publisher]);
        publisher.args(self.crc.then_some("--checksum"));
        if let Some(rate) = rate {
            publisher.args(["--rate", &rate.to_string()]);
        }
        Ok((subscriber, publisher))
    }

    /// The CPU the cluster's processes used between two readings: every process for the
    /// bridge, the NATS server alone for the floor.
    fn cpu_between(before: &Cpu, after: &Cpu, bridge: bool) -> Vec<(String, f64)> {
        before
            .iter()
            .zip(after)
            .filter(|((name, _), _)| bridge || *name == "nats-server")
            .map(|((name, b), (_, a))| (name.to_string(), a - b))
            .collect()
    }

    /// One latency run of one side.
    fn latency_run(
        &self,
        rate: f64,
        frames: u64,
        warmup: u64,
        label: &str,
        bridge: bool,
    ) -> Result<(Run, Hops), String> {
        let not_quiet = !self.wait_quiet(label);
        let (cluster, args) = (self.cluster, self.args);
        let counters = if bridge { Some(cluster.counters()?) } else { None };
        let before = cluster.cpu();
        let mut taps = Vec::new();
        let mut run = measure_with(label, warmup, |subscriber_args, on_progress| {
            let (mut subscriber, publisher) = self.clients(bridge, frames, Some(rate))?;
            subscriber.args(subscriber_args);
            let mut subscribers = vec![subscriber];
            if bridge && args.taps {
                subscribers.extend(self.taps(frames, warmup)?);
            }
            let reports = run_clients(ClientProcesses {
                subscribers,
                publisher,
                idle_ms: args.idle_ms,
                deadline: Instant::now() + Duration::from_secs(args.timeout_s),
                timeout_s: args.timeout_s,
                on_progress,
                end_streams: &mut || {},
            })
            .map_err(|e| format!("{label}: {e} (the logs are in {})", cluster.dir.display()))?;
            let cpu_s = Self::cpu_between(&before, &cluster.cpu(), bridge);
            let mut reports_of_subscribers = reports.subscribers.into_iter();
            let subscriber = reports_of_subscribers.next().unwrap_or_default();
            taps.extend(reports_of_subscribers);
            Ok(Hop { publisher: reports.publisher, subscriber, cpu_s })
        })?;
        run.not_quiet = not_quiet;
        discount(&mut run.others, &run.cpu_s[..run.cpu_s.len() - 2]);
        let mut hops = match counters {
            Some(before) => Hops::between(&before, &cluster.counters()?),
            None => Hops::default(),
        };
        if let [on_a, on_nats] = &taps[..] {
            let summary = |report: &Value| {
                serde_json::from_value::<Summary>(report["latency_ns"].clone()).unwrap_or_default()
            };
            hops.taps = Some([summary(on_a), summary(on_nats)]);
        }
        Ok((run, hops))
    }

    /// The subscribers of `--taps`: on relay a, and on NATS for bridge a's subjects, each on the
    /// core of the receiver it stands for (bridge a, bridge b).
    fn taps(&self, frames: u64, warmup: u64) -> Result<[Command; 2], String> {
        let (args, cluster) = (self.args, self.cluster);
        let exe = current_exe()?;
        let mut on_a = Command::new(&exe);
        on_a.args(["subscribe", "--ack", "--socket"]).arg(&cluster.sockets[0]);
        let mut on_nats = Command::new(&exe);
        let subject = format!("torq.a.{}.>", hosts::subject_token(args.domain));
        on_nats.args(["nats-subscribe", "--nats", &cluster.url, "--subject", &subject]);
        for (tap, core) in [&mut on_a, &mut on_nats].into_iter().zip(&self.placement.bridges) {
            tap.args(["--frames", &frames.to_string(), "--idle-ms", &args.idle_ms.to_string()]);
            tap.args(["--core", core, "--latency", "--warmup-frames", &warmup.to_string()]);
        }
        Ok([on_a, on_nats])
    }
}

/// Takes the cluster's own CPU out of what "others" used (the cluster's processes are this
/// driver's children, but not waited for, so the machine's counters show them as others').
fn discount(others: &mut Others, cluster: &[(String, f64)]) {
    let ours: f64 = cluster.iter().map(|(_, seconds)| seconds).filter(|s| s.is_finite()).sum();
    others.cpu_s = (others.cpu_s - ours).max(0.0);
}

fn us(ns: u64) -> String {
    crate::latency::plot::format_us(ns as f64 / NS_PER_US)
}

fn verdict(met: bool, factor: f64) -> String {
    if met { "met".to_string() } else { format!("missed, {factor:.2}× the target") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_one_value_for_both_or_two() {
        assert_eq!(pair("none", "--x").unwrap(), ["none", "none"]);
        assert_eq!(pair("0,1", "--x").unwrap(), ["0", "1"]);
        assert!(pair("0,1,0", "--x").is_err());
        assert_eq!(parse_rate_or_none("none"), Ok(0.0));
        assert_eq!(parse_rate_or_none("10k"), Ok(10_000.0));
    }

    #[test]
    fn hops_are_the_counters_differences() {
        let labels = |node: &str| format!("{{node=\"{node}\",domain=\"market_data\"}}");
        let scrape = |node: &str, counters: &[(&str, f64)]| {
            let text: String = counters
                .iter()
                .map(|(name, value)| format!("torq_bridge_{name}{} {value}\n", labels(node)))
                .collect();
            crate::soak::probe::Scrape::parse(&text)
        };
        let before = [
            scrape("a", &[("exported_in_total", 10.0), ("exported_out_total", 10.0)]),
            scrape("b", &[("imported_in_total", 10.0), ("imported_out_total", 10.0)]),
        ];
        let after = [
            scrape(
                "a",
                &[
                    ("exported_in_total", 110.0),
                    ("relay_dropped_total", 900.0),
                    ("dropped_total", 20.0),
                    ("exported_out_total", 90.0),
                ],
            ),
            scrape(
                "b",
                &[
                    ("imported_in_total", 85.0),
                    ("lost_total", 925.0),
                    ("imported_out_total", 85.0),
                    ("lag_seconds", 0.00025),
                ],
            ),
        ];
        let hops = Hops::between(&before, &after);
        assert_eq!((hops.exported_in, hops.relay_a_dropped, hops.bridge_a_dropped), (100, 900, 20));
        assert_eq!((hops.exported_out, hops.imported_in, hops.lost_in_nats), (80, 75, 5));
        assert_eq!((hops.gaps_at_b, hops.bridge_b_dropped, hops.imported_out), (925, 0, 75));
        assert!((hops.last_lag_us - 250.0).abs() < 1e-6);
        assert!(hops.line().contains("lost in NATS 5"), "{}", hops.line());
    }
}
