//! `torq-perf latency`: one publisher, open loop at fixed rates, through a relay to one
//! subscriber, measured from each frame's *intended* send time.
//!
//! Per rate of `--rates` and per run, the publisher sends `rate × --seconds` frames, frame i
//! due at start + i / rate and stamped with that time however late it goes (a stall delays
//! the frames behind it and is counted for each of them: no coordinated omission). The
//! subscriber records receive time − intended time of every frame after the first
//! `rate × --warmup-s` (the warm-up: connections, caches, the relay's buffers settling), one
//! HDR histogram per second, into an interval log this driver reads back. With
//! `--with-floor` the naive floor runs with the same clients just before each run, on the
//! relay's first core.
//!
//! With `--transport shm` the subscriber takes its frames from the relay's broadcast log in
//! shared memory, waiting as `--shm-idle` says; the floor's subscriber reads its socket, so
//! one floor serves both transports.
//!
//! The report gives the machine and what ran where (the subscriber's transport and idle
//! strategy included), then per run p50 … p99.99 and max, frames delivered against sent,
//! sequence gaps, frames lost to overrun (shared memory) and how late the publisher itself was;
//! then the medians over the runs and the ratios to the floor. `--out DIR` writes per rate
//! `<name>-<rate>.hgrm` (every run's measured frames), `.run<i>.hgrm` (each run), `.hlog` (every
//! second of every run, tagged `run<i>`), the floor's as `<name>-<rate>-floor.*`, and
//! `<name>-<rate>.svg` (see [`plot`]).

pub mod hdr;
pub mod plot;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::clients::Transport;
use crate::machine::{CpuTimes, Machine, Others};
use crate::relay::{Clients, Setup, median, number, run_once};
use hdr::{Logged, NS_PER_US, Summary};

/// `torq-perf latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    setup: Setup,
    /// Rates to measure, frames per second, in order: `10k,100k,1M` (k = 1 000, M = 1 000 000).
    #[arg(long, visible_alias = "rate", value_delimiter = ',', default_value = "10k", value_parser = parse_rate)]
    rates: Vec<f64>,
    /// Seconds the publisher sends at each rate in each run, the warm-up included.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Seconds at the start of each run that are not measured (by sequence: the first
    /// `rate × warmup` frames).
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Write the `.hgrm`, `.hlog` and `.svg` files of each rate into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The files' name: `<name>-<rate>.hgrm` and so on [default: `latency`, or
    /// `latency-shm-<idle>` with `--transport shm`].
    #[arg(long)]
    name: Option<String>,
    /// Print one JSON object on stdout (the human report goes to stderr).
    #[arg(long)]
    json: bool,
}

/// `10k`, `1.5M`, `250000` → frames per second.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix(['k', 'K']) {
        Some(number) => (number, 1e3),
        None => match text.trim().strip_suffix('M') {
            Some(number) => (number, 1e6),
            None => (text.trim(), 1.0),
        },
    };
    let rate =
        number.parse::<f64>().map_err(|_| format!("{text:?}: a rate like 10k, 100k, 1M or 2500"))? * scale;
    if rate.is_finite() && rate > 0.0 { Ok(rate) } else { Err(format!("{text:?}: a rate above 0")) }
}

/// A rate as the files name it: 10k, 100k, 1M, 2500.
pub(crate) fn rate_label(rate: f64) -> String {
    if rate >= 1e6 && (rate / 1e6).fract() == 0.0 {
        format!("{}M", rate / 1e6)
    } else if rate >= 1e3 && (rate / 1e3).fract() == 0.0 {
        format!("{}k", rate / 1e3)
    } else {
        format!("{rate}")
    }
}

/// What one run of one side (the target or the floor) measured.
pub(crate) struct Run {
    pub summary: Summary,
    /// Seconds of the run, from its interval log.
    pub intervals: Vec<Logged>,
    pub base_ns: u64,
    pub sent: u64,
    pub delivered: u64,
    pub gaps: u64,
    pub publisher_rate: f64,
    /// How late the publisher wrote its frames, and how long its writes took (its own JSON).
    pub lateness: Value,
    pub writes: Value,
    /// What other processes used while the run ran.
    pub others: Others,
    /// CPU seconds each process used in the run: those between the clients (the relay), then
    /// the publisher and the subscriber.
    pub cpu_s: Vec<(String, f64)>,
    /// What brought the subscriber its data frames (`socket`, `shm`), and its `shm` report
    /// when it asked for shared memory (idle, granted, overrun_frames, overruns), else null.
    pub transport: String,
    pub shm: Value,
    /// Whether the wait for a quiet machine before the run gave up.
    pub not_quiet: bool,
}

impl Run {
    pub fn json(&self) -> Value {
        let mut value = json!({
            "latency_ns": self.summary,
            "sent": self.sent,
            "delivered": self.delivered,
            "gaps": self.gaps,
            "transport": self.transport,
            "publisher_rate": self.publisher_rate,
            "publisher_lateness_ns": self.lateness,
            "publisher_write_ns": self.writes,
        });
        for (who, seconds) in &self.cpu_s {
            value[format!("{}_cpu_s", who.replace([' ', '-'], "_"))] = json!(seconds);
        }
        value["others_cpu_s"] = json!(self.others.cpu_s);
        value["steal_s"] = json!(self.others.steal_s);
        value["wall_s"] = json!(self.others.wall_s);
        value["started_on_a_busy_machine"] = json!(self.not_quiet);
        if !self.shm.is_null() {
            value["shm"] = self.shm.clone();
        }
        value
    }
}

/// The human report: stdout, or stderr with `--json`.
pub(crate) struct Say {
    pub json: bool,
}

impl Say {
    pub fn line(&self, text: &str) {
        if self.json { eprintln!("{text}") } else { println!("{text}") }
    }
}

pub fn latency(args: &LatencyArgs) -> Result<(), String> {
    let setup = &args.setup;
    setup.check()?;
    if !(args.warmup_s >= 0.0 && args.seconds > args.warmup_s) {
        return Err(format!("--seconds {} must exceed --warmup-s {}", args.seconds, args.warmup_s));
    }
    let say = Say { json: args.json };
    let machine = Machine::describe();
    say.line(&machine.to_string());
    say.line(&setup.placement_line(1));
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    }
    let floor = setup.with_floor.then(|| setup.floor());
    let name = args.name.clone().unwrap_or_else(|| match setup.transport {
        Transport::Socket => "latency".to_string(),
        Transport::Shm => format!("latency-shm-{}", setup.shm_idle.name()),
    });
    let mut rates = Vec::new();
    for &rate in &args.rates {
        let scenario = format!("{name}-{}", rate_label(rate));
        let frames = (rate * args.seconds).ceil() as u64;
        let warmup = (rate * args.warmup_s).floor() as u64;
        say.line(&format!(
            "{scenario}: {} → 1 subscriber over {}, {frames} frames of {} B at {rate} frames/s, open loop; the first {warmup} ({} s) are warm-up; {} run(s)",
            setup.target,
            setup.transport_label(),
            setup.size,
            args.warmup_s,
            setup.runs
        ));
        let (mut target_runs, mut floor_runs) = (Vec::new(), Vec::new());
        for run in 1..=setup.runs {
            let progress = |side: &str| format!("{scenario} run {run}/{}{side}", setup.runs);
            if let Some(floor) = &floor {
                let measured = measure(floor, rate, frames, warmup, &progress(", floor"))
                    .map_err(|e| format!("floor: {e}"))?;
                say.line(&run_line(&format!("run {run}, floor"), &measured));
                floor_runs.push(measured);
            }
            let measured = measure(setup, rate, frames, warmup, &progress(""))?;
            say.line(&run_line(&format!("run {run}"), &measured));
            if let Some(floor) = floor_runs.last() {
                say.line(&format!(
                    "  to the floor: {}",
                    to_floor_line(&compare(&measured.summary, &floor.summary))
                ));
            }
            target_runs.push(measured);
        }
        let target_median = median_summary(&target_runs);
        say.line(&format!(
            "{scenario}, median of {} runs (µs): {}",
            setup.runs,
            figures_line(&target_median)
        ));
        let mut entry = json!({
            "rate": rate,
            "scenario": scenario,
            "transport": setup.transport.name(),
            "frames": frames,
            "warmup_frames": warmup,
            "target": {"runs": target_runs.iter().map(Run::json).collect::<Vec<_>>(), "median_ns": target_median},
        });
        if !floor_runs.is_empty() {
            let floor_median = median_summary(&floor_runs);
            say.line(&format!(
                "{scenario}, floor, median of {} runs (µs): {}",
                setup.runs,
                figures_line(&floor_median)
            ));
            let ratios: Vec<Value> =
                target_runs.iter().zip(&floor_runs).map(|(t, f)| compare(&t.summary, &f.summary)).collect();
            let to_floor = median_comparison(&ratios);
            say.line(&format!("{scenario}, median to the floor: {}", to_floor_line(&to_floor)));
            entry["floor"] = json!({"runs": floor_runs.iter().map(Run::json).collect::<Vec<_>>(), "median_ns": floor_median});
            entry["to_floor"] = json!({"median": to_floor, "runs": ratios});
        }
        if let Some(out) = &args.out {
            let mut sides = vec![Side { name: scenario.clone(), runs: &target_runs, label: label(setup) }];
            if !floor_runs.is_empty() {
                sides.push(Side {
                    name: format!("{scenario}-floor"),
                    runs: &floor_runs,
                    label: "floor (naive relay)".to_string(),
                });
            }
            let files = Files {
                out,
                svg: &scenario,
                rate,
                size: setup.size,
                tool: "torq-perf latency",
                placement: setup.placement_line(1),
                title: format!(
                    "one hop at {} frames/s, {} B frames, {} run(s) — {}",
                    rate_label(rate),
                    setup.size,
                    target_runs.len(),
                    label(setup)
                ),
            }
            .write(&sides)?;
            say.line(&format!("{scenario}: wrote {}", files.join(", ")));
            entry["files"] = json!(files);
        }
        rates.push(entry);
    }
    if args.json {
        let report = json!({
            "machine": machine,
            "load_at_end": crate::machine::load(),
            "placement": setup.placement(1),
            "transport": setup.transport.name(),
            "shm_idle": (setup.transport == Transport::Shm).then(|| setup.shm_idle.name()),
            "seconds": args.seconds,
            "warmup_s": args.warmup_s,
            "runs": setup.runs,
            "frame_bytes": setup.size,
            "rates": rates,
        });
        println!("{report}");
    }
    Ok(())
}

/// One run of `setup` at `rate`: the clients' reports and the subscriber's interval log.
fn measure(setup: &Setup, rate: f64, frames: u64, warmup: u64, label: &str) -> Result<Run, String> {
    let not_quiet = !setup.wait_quiet(label);
    let mut run = measure_with(label, warmup, |subscriber_args, on_progress| {
        let clients = Clients { subscribers: 1, frames, rate: Some(rate), subscriber_args, on_progress };
        let outcome = run_once(setup, clients)?;
        let subscriber = outcome.subscribers.into_iter().next().unwrap_or_default();
        let between = vec![("relay".to_string(), outcome.relay_cpu_s.unwrap_or(f64::NAN))];
        Ok(Hop { publisher: outcome.publisher, subscriber, cpu_s: between })
    })?;
    run.not_quiet = not_quiet;
    Ok(run)
}

/// The reports of one open-loop hop: the publisher's and the subscriber's JSON, and the CPU
/// seconds of the processes between them (named).
pub(crate) struct Hop {
    pub publisher: Value,
    pub subscriber: Value,
    pub cpu_s: Vec<(String, f64)>,
}

/// One latency run: `run` starts the clients with the arguments the subscriber needs (warm-up,
/// interval log, progress lines) and the callback for its progress lines, and returns their
/// reports; the subscriber's interval log is read back, the CPU others used is measured around
/// it, and a progress line is drawn on stderr under `label`.
pub(crate) fn measure_with(
    label: &str,
    warmup: u64,
    run: impl FnOnce(Vec<String>, &mut dyn FnMut(&Value)) -> Result<Hop, String>,
) -> Result<Run, String> {
    let dir = crate::relay::fresh_dir()?;
    crate::reaper::register_dir(&dir);
    let hlog = dir.join("subscriber.hlog");
    let cpu = CpuTimes::now();
    let terminal = std::io::stderr().is_terminal();
    let mut on_progress = |value: &Value| {
        let p = &value["progress"];
        let line = format!(
            "{label}: second {} measured, {} frames in, that second p99.9 {} µs, max {} µs",
            p["second"],
            p["frames"],
            plot::format_us(number(p, "p99_9") / NS_PER_US),
            plot::format_us(number(p, "max") / NS_PER_US),
        );
        if terminal { eprint!("\r\x1b[K{line}") } else { eprintln!("{line}") }
    };
    let subscriber_args = vec![
        "--warmup-frames".into(),
        warmup.to_string(),
        "--hlog".into(),
        hlog.display().to_string(),
        "--progress".into(),
    ];
    let outcome = run(subscriber_args, &mut on_progress);
    let others = cpu.others();
    if terminal {
        eprint!("\r\x1b[K");
    }
    let text = std::fs::read(&hlog);
    _ = std::fs::remove_dir_all(&dir);
    crate::reaper::forget_dir(&dir);
    let hop = outcome?;
    let text = text.map_err(|e| format!("the subscriber's interval log {}: {e}", hlog.display()))?;
    let (base_ns, intervals) = hdr::read_interval_log(&text)?;
    let (publisher, subscriber) = (&hop.publisher, &hop.subscriber);
    let mut cpu_s = hop.cpu_s.clone();
    cpu_s.push(("publisher".to_string(), number(publisher, "cpu_s")));
    cpu_s.push(("subscriber".to_string(), number(subscriber, "cpu_s")));
    Ok(Run {
        summary: Summary::of(&hdr::total(intervals.iter().map(|i| &i.histogram))),
        intervals,
        base_ns,
        sent: number(publisher, "frames") as u64,
        delivered: number(subscriber, "frames") as u64,
        gaps: number(subscriber, "gaps") as u64,
        transport: subscriber["transport"].as_str().unwrap_or("socket").to_string(),
        shm: subscriber["shm"].clone(),
        publisher_rate: number(publisher, "rate"),
        lateness: publisher["lateness_ns"].clone(),
        writes: publisher["write_ns"].clone(),
        others,
        cpu_s,
        not_quiet: false,
    })
}

fn us(ns: u64) -> String {
    plot::format_us(ns as f64 / NS_PER_US)
}

pub(crate) fn figures_line(summary: &Summary) -> String {
    let figures: Vec<String> =
        summary.figures().iter().map(|(name, ns)| format!("{name} {}", us(*ns))).collect();
    figures.join(", ")
}

pub(crate) fn run_line(label: &str, run: &Run) -> String {
    let late = |field: &str| us(number(&run.lateness, field) as u64);
    let cpu: Vec<String> = run.cpu_s.iter().map(|(who, seconds)| format!("{who} {seconds:.2}")).collect();
    format!(
        "{label} (µs): {}; delivered {} of {} sent ({} measured), gaps {}{}; publisher late p50 {}, p99.9 {}, max {}, write p50 {}; CPU s: {}; {}{}",
        figures_line(&run.summary),
        run.delivered,
        run.sent,
        run.summary.count,
        run.gaps,
        crate::relay::shm_note(&run.shm),
        late("p50"),
        late("p99_9"),
        late("max"),
        us(number(&run.writes, "p50") as u64),
        cpu.join(", "),
        run.others,
        if run.not_quiet { " (started busy)" } else { "" },
    )
}

/// The target against the floor of the same run: ratios and differences (µs) at p50, p99,
/// p99.9 and max.
pub(crate) fn compare(target: &Summary, floor: &Summary) -> Value {
    let mut comparison = serde_json::Map::new();
    for ((name, t), (_, f)) in target.figures().iter().zip(floor.figures()) {
        if matches!(*name, "p50" | "p99" | "p99.9" | "max") {
            let key = name.replace('.', "_");
            comparison.insert(format!("{key}_ratio"), json!(*t as f64 / f as f64));
            comparison.insert(format!("{key}_excess_us"), json!((*t as f64 - f as f64) / NS_PER_US));
        }
    }
    Value::Object(comparison)
}

pub(crate) fn median_comparison(runs: &[Value]) -> Value {
    let Some(Value::Object(first)) = runs.first() else { return json!({}) };
    let medians = first
        .keys()
        .map(|key| {
            let mut values: Vec<f64> = runs.iter().map(|run| number(run, key)).collect();
            (key.clone(), json!(median(&mut values)))
        })
        .collect();
    Value::Object(medians)
}

pub(crate) fn to_floor_line(comparison: &Value) -> String {
    let n = |key: &str| number(comparison, key);
    format!(
        "p50 {:.2}x ({:+.1} µs), p99 {:.2}x, p99.9 {:.2}x ({:+.1} µs), max {:.2}x",
        n("p50_ratio"),
        n("p50_excess_us"),
        n("p99_ratio"),
        n("p99_9_ratio"),
        n("p99_9_excess_us"),
        n("max_ratio"),
    )
}

/// Each figure's median over the runs (figure by figure).
pub(crate) fn median_summary(runs: &[Run]) -> Summary {
    let column = |figure: fn(&Summary) -> u64| {
        let mut values: Vec<f64> = runs.iter().map(|run| figure(&run.summary) as f64).collect();
        median(&mut values) as u64
    };
    let mut means: Vec<f64> = runs.iter().map(|run| run.summary.mean).collect();
    Summary {
        count: column(|s| s.count),
        p50: column(|s| s.p50),
        p90: column(|s| s.p90),
        p99: column(|s| s.p99),
        p99_9: column(|s| s.p99_9),
        p99_99: column(|s| s.p99_99),
        max: column(|s| s.max),
        mean: median(&mut means),
    }
}

/// One side of a rate's files: `<name>.hgrm`, `<name>.run<i>.hgrm`, `<name>.hlog`, and a
/// series of the plot under `label`.
pub(crate) struct Side<'a> {
    pub name: String,
    pub runs: &'a [Run],
    pub label: String,
}

/// Where and how the files of one rate are written.
pub(crate) struct Files<'a> {
    pub out: &'a Path,
    /// The plot is `<svg>.svg`.
    pub svg: &'a str,
    pub rate: f64,
    pub size: usize,
    /// The command, in the interval logs' comment (`torq-perf latency`).
    pub tool: &'a str,
    /// What ran where, in the interval logs' comment.
    pub placement: String,
    /// The plot's title.
    pub title: String,
}

impl Files<'_> {
    /// Writes every side's files and one plot of them all; returns the files' names.
    pub fn write(&self, sides: &[Side<'_>]) -> Result<Vec<String>, String> {
        let Files { out, svg, rate, size, tool, placement, title } = self;
        let mut files = Vec::new();
        let mut totals = Vec::new();
        for Side { name, runs, label: side_label } in sides {
            let mut write =
                |file: String, write: &dyn Fn(&mut std::io::BufWriter<std::fs::File>) -> Result<(), String>| {
                    let path = out.join(&file);
                    let mut writer = std::io::BufWriter::new(
                        std::fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?,
                    );
                    write(&mut writer)?;
                    std::io::Write::flush(&mut writer).map_err(|e| format!("write {}: {e}", path.display()))?;
                    files.push(file);
                    Ok::<(), String>(())
                };
            let hgrm = |histogram: Histogram<u64>| {
                move |w: &mut std::io::BufWriter<std::fs::File>| {
                    hdr::write_percentile_distribution(w, &histogram).map_err(|e| e.to_string())
                }
            };
            let total = hdr::total(runs.iter().flat_map(|run| run.intervals.iter().map(|i| &i.histogram)));
            write(format!("{name}.hgrm"), &hgrm(total.clone()))?;
            for (i, run) in runs.iter().enumerate() {
                write(
                    format!("{name}.run{}.hgrm", i + 1),
                    &hgrm(hdr::total(run.intervals.iter().map(|i| &i.histogram))),
                )?;
            }
            let base_ns = runs.first().map_or(0, |run| run.base_ns);
            let logged: Vec<Logged> = runs
                .iter()
                .enumerate()
                .flat_map(|(i, run)| {
                    let offset = run.base_ns.saturating_sub(base_ns) as f64 / 1e9;
                    run.intervals.iter().map(move |interval| Logged {
                        tag: Some(format!("run{}", i + 1)),
                        start_s: offset + interval.start_s,
                        histogram: interval.histogram.clone(),
                    })
                })
                .collect();
            let comment = format!(
                "{tool} {side_label}: {rate} frames/s of {size} B, receive time - intended send time in ns (max column in µs); {placement}"
            );
            write(format!("{name}.hlog"), &|w| {
                hdr::write_interval_log(w, base_ns, std::slice::from_ref(&comment), &logged)
            })?;
            let mut per_second = Vec::new();
            for run in runs.iter() {
                let offset = per_second.len() as f64;
                per_second.extend(run.intervals.iter().map(|i| plot::Second {
                    start_s: offset + i.start_s,
                    p99_9_ns: i.histogram.value_at_quantile(0.999),
                    max_ns: i.histogram.max(),
                    count: i.histogram.len(),
                }));
            }
            totals.push((side_label.clone(), total, per_second));
        }
        let series: Vec<plot::Series<'_>> = totals
            .iter()
            .map(|(label, total, per_second)| plot::Series {
                label: label.clone(),
                histogram: total,
                per_second: per_second.clone(),
            })
            .collect();
        plot::draw(&out.join(format!("{svg}.svg")), title, &series)?;
        files.push(format!("{svg}.svg"));
        Ok(files)
    }
}

/// A short name for the target: `floor (naive relay)` or the binary with its cores and idle,
/// and the subscriber's transport (`shm, reader idle spin`) when it is not the socket.
fn label(setup: &Setup) -> String {
    if setup.target == "naive" {
        return "floor (naive relay)".to_string();
    }
    let binary =
        Path::new(&setup.target).file_name().map_or(setup.target.clone(), |n| n.to_string_lossy().into());
    let transport = match setup.transport {
        Transport::Socket => String::new(),
        Transport::Shm => format!(", shm, reader idle {}", setup.shm_idle.name()),
    };
    format!(
        "{binary} --cores {} --idle {}{transport}",
        setup.relay_cores,
        setup.idle.as_deref().unwrap_or("block")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_k_and_m() {
        assert_eq!(parse_rate("10k"), Ok(10_000.0));
        assert_eq!(parse_rate("1M"), Ok(1_000_000.0));
        assert_eq!(parse_rate("2.5k"), Ok(2_500.0));
        assert_eq!(parse_rate("750"), Ok(750.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!([10_000.0, 100_000.0, 1e6, 2_500.0].map(rate_label), ["10k", "100k", "1M", "2500"]);
    }

    #[test]
    fn the_comparison_to_the_floor_is_per_figure() {
        let target = Summary { p50: 12_000, p99: 30_000, p99_9: 60_000, max: 100_000, ..Summary::default() };
        let floor = Summary { p50: 10_000, p99: 30_000, p99_9: 40_000, max: 200_000, ..Summary::default() };
        let comparison = compare(&target, &floor);
        assert_eq!(number(&comparison, "p50_ratio"), 1.2);
        assert_eq!(number(&comparison, "p50_excess_us"), 2.0);
        assert_eq!(number(&comparison, "p99_9_ratio"), 1.5);
        assert_eq!(number(&comparison, "max_excess_us"), -100.0);
        let other = compare(&floor, &floor);
        let third = compare(&Summary { p50: 20_000, ..target }, &floor);
        let medians = median_comparison(&[comparison, other, third]);
        assert_eq!(number(&medians, "p50_ratio"), 1.2, "the middle of 1.0, 1.2 and 2.0");
    }
}
