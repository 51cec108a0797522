//! `torq-perf soak`: the three relays of `relay_dev all` under mixed load with churning
//! clients for `--minutes`, the relay process sampled once a second; fails when a resource
//! trends upward or an execution frame is missing.
//!
//! 1. The relay: `<relay> all -s <fresh dir> --metrics-interval 0 --metrics-addr
//!    127.0.0.1:0 -l info`, its log in `<dir>/relay.log`; the driver waits until the three
//!    sockets accept, reads the port the endpoint took from the log (`metrics on
//!    http://ADDR/metrics`) and waits until it answers.
//! 2. Four whole-run execution subscribers connect (legacy, Subscribe, Subscribe with
//!    heartbeats, Subscribe with a type filter) and the driver waits until each is in place:
//!    its Subscribe acknowledged, or (legacy) an untracked probe frame received.
//! 3. The churn starts (`load.rs`): publisher and subscriber threads for every domain, session
//!    after session of 1–5 s, some ending abruptly, and client processes killed with SIGKILL.
//! 4. Every second: `VmRSS` and `Threads` from `/proc/<pid>/status`, the entries of
//!    `/proc/<pid>/fd`, and `torq_relay_queued_bytes` and the counters from `/metrics`; a progress
//!    line every 10 s.
//! 5. At the end the churn stops (publishers close cleanly), the driver waits until the
//!    whole-run subscribers have every frame the execution publishers wrote (at most 30 s),
//!    scrapes the counters a last time and stops the relay with SIGTERM (it must exit 0).
//! 6. The verdict: each sampled series judged by `trend.rs`; every execution frame written
//!    whole must have reached every whole-run subscriber, in order, once; no subscriber saw a
//!    publisher's frames out of order; execution subscribers that churned saw no gap; no
//!    client error. A summary table (or `--json`), and exit status 1 naming each failure.

use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay::{current_exe, fresh_dir, stop, wait_for_socket};

mod load;
pub(crate) mod probe;
mod rng;
mod trend;
mod verdict;

use load::{Load, WHOLE_RUN, WholeRun};
use probe::{Process, RELAYS, Scrape};
use trend::Tolerance;
use verdict::Facts;

const MIB: f64 = 1024.0 * 1024.0;
/// Socket file names of `relay_dev all`, in the order of [`DOMAINS`].
const SOCKETS: [&str; 3] = ["market_data.sock", "signals.sock", "execution.sock"];
/// How long the relay may take to start, and the subscribers to be in place.
const START: Duration = Duration::from_secs(10);
/// How long the whole-run subscribers may take to receive the last frames.
const DRAIN: Duration = Duration::from_secs(30);

/// `torq-perf soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Length of the run in minutes; fractions allowed (0.1 = 6 s).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// The relay binary, run as `RELAY-BINARY all --socket-dir DIR --metrics-interval 0
    /// --metrics-addr ADDR` [default: relay_dev next to torq-perf]
    #[arg(long, value_name = "RELAY-BINARY", visible_alias = "relay")]
    target: Option<PathBuf>,
    /// Market-data frames per second, all publisher threads together (two threads).
    #[arg(long, default_value_t = 100_000.0)]
    md_rate: f64,
    /// Signal frames per second (one publisher thread).
    #[arg(long, default_value_t = 2_000.0)]
    signal_rate: f64,
    /// Execution frames per second, all publisher threads together (two threads).
    #[arg(long, default_value_t = 4_000.0)]
    execution_rate: f64,
    /// Bytes per frame, header included (at least 84).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seed of the churn's choices (session lengths, kinds of client) [default: the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object at the end instead of the table (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

/// One second's sample.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the churn started.
    t: f64,
    process: Process,
    /// `None` when the endpoint did not answer in time.
    scrape: Option<Scrape>,
}

/// A sampled resource and how much it may grow.
struct Resource {
    key: String,
    /// In the table.
    label: String,
    /// In a failure message.
    name: String,
    bytes: bool,
    tolerance: Tolerance,
    series: Series,
}

/// Which value of a sample a resource is.
#[derive(Debug, Clone, Copy)]
enum Series {
    Rss,
    Fds,
    Threads,
    /// `torq_relay_queued_bytes` of a relay.
    Queued(&'static str),
}

impl Series {
    /// The value in `sample`; `None` for queues when the metrics did not answer.
    fn of(self, sample: &Sample) -> Option<f64> {
        let process = sample.process;
        Some(match self {
            Series::Rss => process.rss as f64,
            Series::Fds => process.fds as f64,
            Series::Threads => process.threads as f64,
            Series::Queued(relay) => sample.scrape.as_ref()?.relay("queued_bytes", relay) as f64,
        })
    }
}

/// The resources judged, with their tolerances (documented in `perf/README.md`).
fn resources() -> Vec<Resource> {
    let mut list = vec![
        Resource {
            key: "rss_bytes".into(),
            label: "resident memory (VmRSS)".into(),
            name: "resident memory (VmRSS)".into(),
            bytes: true,
            tolerance: Tolerance { absolute: 16.0 * MIB, relative: 0.10 },
            series: Series::Rss,
        },
        Resource {
            key: "open_fds".into(),
            label: "open file descriptors".into(),
            name: "open file descriptors".into(),
            bytes: false,
            tolerance: Tolerance { absolute: 16.0, relative: 0.10 },
            series: Series::Fds,
        },
        Resource {
            key: "threads".into(),
            label: "threads".into(),
            name: "threads".into(),
            bytes: false,
            tolerance: Tolerance { absolute: 2.0, relative: 0.0 },
            series: Series::Threads,
        },
    ];
    // Queues: as much growth as the subscribers that may fill their queues can hold (two
    // slow market-data subscribers of 4 MiB, one signal subscriber of 4 MiB, one execution
    // subscriber of 16 MiB): more than that is not a queue filling, it is queues piling up.
    for (relay, bound) in RELAYS.into_iter().zip([8.0 * MIB, 4.0 * MIB, 16.0 * MIB]) {
        list.push(Resource {
            key: format!("queued_bytes_{}", relay.replace('-', "_")),
            label: format!("queued bytes, {relay}"),
            name: format!("bytes queued to {relay} subscribers (torq_relay_queued_bytes)"),
            bytes: true,
            tolerance: Tolerance { absolute: bound, relative: 0.0 },
            series: Series::Queued(relay),
        });
    }
    list
}

/// The relay process; dropping it kills the relay if it still runs, and removes the
/// directory unless `keep`.
struct Session {
    dir: PathBuf,
    relay: Child,
    keep: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.relay.try_wait(), Ok(None)) {
            _ = self.relay.kill();
        }
        _ = self.relay.wait();
        if !self.keep {
            _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Where progress lines go: stdout, or stderr with `--json`.
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

pub fn soak(args: &SoakArgs) -> Result<(), String> {
    if !(args.minutes.is_finite() && args.minutes * 60.0 >= 3.0) {
        return Err(format!("--minutes {}: at least 0.05 (3 s), enough to judge a trend", args.minutes));
    }
    if args.size < 84 {
        return Err(format!("--size {}: at least 84 (an execution frame)", args.size));
    }
    let rates = [args.md_rate, args.signal_rate, args.execution_rate];
    if rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err("--md-rate, --signal-rate, --execution-rate: positive frames per second".to_string());
    }
    let out = Out { json: args.json };
    let exe = current_exe()?;
    let relay = args.target.clone().unwrap_or_else(|| exe.with_file_name("relay_dev"));
    let seed = args.seed.unwrap_or_else(|| crate::clients::epoch_ns() % 1_000_000);
    let run = Duration::from_secs_f64(args.minutes * 60.0);

    let dir = fresh_dir()?;
    let log = File::create(dir.join("relay.log"))
        .map_err(|e| format!("create {}/relay.log: {e}", dir.display()))?;
    let child = Command::new(&relay)
        .arg("all")
        .arg("--socket-dir")
        .arg(&dir)
        .args(["--metrics-interval", "0", "--metrics-addr", "127.0.0.1:0", "-l", "info"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start {}: {e}", relay.display()))?;
    let mut session = Session { dir: dir.clone(), relay: child, keep: true };
    let pid = session.relay.id();
    out.line(&format!(
        "soak: {:.0} s of {} all (pid {pid}), sockets and log in {}, seed {seed}",
        run.as_secs_f64(),
        relay.display(),
        dir.display()
    ));
    let result = drive(args, &out, &mut session, exe, seed, run);
    let verdict = match result {
        Ok(report) => {
            if args.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.table);
            }
            report.failures
        }
        Err(message) => vec![message],
    };
    if verdict.is_empty() {
        session.keep = false;
        return Ok(());
    }
    let log = dir.join("relay.log");
    eprintln!("torq-perf: the relay's log: {} (last lines below); the directory is kept", log.display());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(10)..] {
        eprintln!("  {line}");
    }
    Err(format!("soak failed: {}", verdict.join("; ")))
}

/// The address of the relay's metrics endpoint, from its log line `metrics on
/// http://ADDR/metrics` (written once the port is bound), waiting for it until `deadline`.
fn metrics_addr(log: &std::path::Path, deadline: Instant) -> Result<SocketAddr, String> {
    const LINE: &str = "metrics on http://";
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find(LINE) {
            let addr = text[at + LINE.len()..].split('/').next().unwrap_or_default();
            return addr.parse().map_err(|e| format!("{addr:?} in {}: {e}", log.display()));
        }
        if Instant::now() >= deadline {
            return Err(format!("no \"{LINE}\" line in {} within 10 s", log.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the run found: the text (table or JSON) and the failures.
struct Report {
    table: String,
    json: Value,
    failures: Vec<String>,
}

/// Runs the load against a started relay; `Err` for a run that could not go on.
fn drive(
    args: &SoakArgs,
    out: &Out,
    session: &mut Session,
    exe: PathBuf,
    seed: u64,
    run: Duration,
) -> Result<Report, String> {
    let sockets = SOCKETS.map(|name| session.dir.join(name));
    for socket in &sockets {
        wait_for_socket(socket, &mut session.relay, Instant::now() + START)?;
    }
    let deadline = Instant::now() + START;
    let addr = metrics_addr(&session.dir.join("relay.log"), deadline)?;
    out.line(&format!("soak: metrics on http://{addr}/metrics"));
    while let Err(e) = probe::scrape(addr, Duration::from_secs(1)) {
        if Instant::now() >= deadline {
            return Err(format!("no metrics endpoint within 10 s: {e}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let rates = [args.md_rate, args.signal_rate, args.execution_rate];
    let load = Arc::new(Load::new(sockets, args.size, rates, exe));
    let (ready_tx, ready) = crossbeam_channel::unbounded();
    let whole_run: Vec<WholeRun> = (0..WHOLE_RUN.len())
        .map(|i| WholeRun::start(&load, i, ready_tx.clone()))
        .collect::<Result<_, _>>()?;
    let mut in_place = 0;
    load::probe(
        &load,
        || {
            in_place += ready.try_iter().count();
            in_place == WHOLE_RUN.len()
        },
        Instant::now() + START,
    )?;

    let clients = load::start(&load, seed);
    let started = Instant::now();
    let pid = session.relay.id();
    let mut samples: Vec<Sample> = Vec::new();
    let ticks = run.as_secs_f64().ceil() as u64;
    let mut failure = None;
    for k in 0..=ticks {
        let at = Duration::from_secs(k).min(run);
        if let Some(wait) = (started + at).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let Ok(Some(status)) = session.relay.try_wait() {
            failure = Some(format!("the relay exited during the soak, after {k} s: {status}"));
            break;
        }
        let process = match probe::process(pid) {
            Ok(process) => process,
            Err(e) => {
                failure = Some(format!("the relay process cannot be read after {k} s: {e}"));
                break;
            }
        };
        let scrape = probe::scrape(addr, Duration::from_secs(2)).ok();
        samples.push(Sample { t: at.as_secs_f64(), process, scrape });
        if k > 0 && (k % 10 == 0 || k == ticks) {
            out.line(&progress(&samples, &load, run));
        }
    }
    load.stop();
    for client in clients {
        _ = client.join();
    }
    if let Some(failure) = failure {
        load.finish();
        return Err(failure);
    }

    // Every execution frame written whole must reach every whole-run subscriber.
    let ledger = load.ledger.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let expected: u64 = ledger.iter().map(|(_, frames)| frames).sum();
    let drain_start = Instant::now();
    while whole_run.iter().any(|w| w.tracked.load(Relaxed) < expected) && drain_start.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained_in = drain_start.elapsed();
    let last = probe::scrape(addr, Duration::from_secs(5)).ok();
    let status = stop(&mut session.relay, true);
    load.finish();
    let received: Vec<(&str, Result<_, String>)> =
        whole_run.into_iter().map(|w| (w.kind, w.join())).collect();

    let relay_log = std::fs::read_to_string(session.dir.join("relay.log")).unwrap_or_default();
    let log_counts =
        [" WARN ", " ERROR "].map(|level| relay_log.lines().filter(|l| l.contains(level)).count());
    let facts = Facts {
        args,
        seed,
        run,
        samples: &samples,
        load: &load,
        ledger: &ledger,
        received: &received,
        last: last.as_ref(),
        status: status.map_or("unknown (still running after SIGKILL?)".to_string(), |s| s.to_string()),
        exited_cleanly: status.is_some_and(|s| s.success()),
        drained_in,
        log_counts,
    };
    Ok(facts.report())
}

/// A progress line: the latest sample and the rates over the last 10 s.
fn progress(samples: &[Sample], load: &Load, run: Duration) -> String {
    let now = &samples[samples.len() - 1];
    let before = samples.iter().rev().find(|s| s.t <= now.t - 10.0).unwrap_or(&samples[0]);
    let mut line = format!(
        "[{:>4.0} s/{:.0} s] rss {}, fds {}, threads {}",
        now.t,
        run.as_secs_f64(),
        bytes(now.process.rss as f64),
        now.process.fds,
        now.process.threads
    );
    if let (Some(now_s), Some(before_s)) = (&now.scrape, &before.scrape) {
        let seconds = (now.t - before.t).max(1.0);
        let _ = write!(line, " | queued");
        for relay in RELAYS {
            let _ = write!(line, " {relay} {}", bytes(now_s.relay("queued_bytes", relay) as f64));
        }
        let _ = write!(line, " | in/s");
        for relay in RELAYS {
            let rate = now_s
                .relay("frames_in_total", relay)
                .saturating_sub(before_s.relay("frames_in_total", relay));
            let _ = write!(line, " {relay} {}", si(rate as f64 / seconds));
        }
        let _ = write!(line, " | dropped {}", si(now_s.relay("dropped_frames_total", "market-data") as f64));
    } else {
        line.push_str(" | metrics did not answer");
    }
    let sessions: u64 = load.counts.iter().map(|c| c.sessions.load(Relaxed)).sum();
    let _ = write!(
        line,
        " | sessions {sessions}, killed {}, client errors {}",
        load.killed.load(Relaxed),
        load.errors.load(Relaxed)
    );
    line
}

fn bytes(value: f64) -> String {
    if value >= MIB {
        format!("{:.1} MiB", value / MIB)
    } else if value >= 1024.0 {
        format!("{:.0} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

fn si(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_a_unique_key_and_reads_its_sample() {
        let sample = Sample {
            t: 0.0,
            process: Process { rss: 1, fds: 2, threads: 3 },
            scrape: Some(Scrape::parse("torq_relay_queued_bytes{domain=\"signal\"} 5\n")),
        };
        let list = resources();
        let values: Vec<Option<f64>> = list.iter().map(|r| r.series.of(&sample)).collect();
        assert_eq!(values, [Some(1.0), Some(2.0), Some(3.0), Some(0.0), Some(5.0), Some(0.0)]);
        let keys: std::collections::HashSet<&str> = list.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), list.len());
        let without_metrics = Sample { scrape: None, ..sample };
        assert_eq!(list[4].series.of(&without_metrics), None, "a missed scrape is no sample");
    }
}
