//! `torq-perf throughput` and `torq-perf latency`: run a relay (the naive floor or a relay
//! binary), subscriber processes and one publisher process over a fresh socket, and report
//! what the subscribers received.
//!
//! One run: start the relay; wait (bounded) until its socket accepts a connection; start the
//! subscribers and wait for each to print `ready`; run the publisher; collect each process's
//! JSON line; stop the relay (a relay binary gets SIGTERM; the naive relay exits when its
//! publisher has gone; SIGKILL after 10 s). A subscriber stops after all the frames, at end of
//! stream, or after `--idle-ms` without a byte; one still running 10 s after that makes the
//! driver stop the relay, so every wait is bounded.
//!
//! Subscribers print `ready` once connected: connections wait in the listener's queue in the
//! order they were made, so a relay that accepts and registers them in that order (the naive
//! relay does) has every subscriber in place before the publisher's first frame. With `--ack`
//! they wait for the relay's acknowledgement of a Subscribe instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use crate::clients::Domain;

/// What to run and how: shared by `throughput` and `latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct Setup {
    /// `naive` (the floor: `torq-perf naive-relay`) or the path of a relay binary, started as
    /// `<binary> --socket <tmp path> --cores <cores> --slow-consumer <policy> [ARGS after --]`.
    #[arg(long, default_value = "naive")]
    target: String,
    /// The relay's cores, passed as `--cores` (`none`, `none:2`, `0`, `0,1`); the naive relay
    /// pins itself to the first core of a list.
    #[arg(long, default_value = "none")]
    cores: String,
    /// Slow-consumer policy passed to a relay binary (`block`, `drop`, `disconnect`).
    #[arg(long, default_value = "block")]
    policy: String,
    /// Cores for the clients, `none` or a list: the publisher takes the first, subscriber i
    /// the (i+1)-th, wrapping around.
    #[arg(long, default_value = "none")]
    client_cores: String,
    /// Domain of the published frames.
    #[arg(long, value_enum, default_value_t = Domain::MarketData)]
    domain: Domain,
    /// Publish frames with their checksum computed.
    #[arg(long)]
    crc: bool,
    /// Bytes per frame.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Subscribers send a Subscribe and count as ready once the relay acknowledges it (notice
    /// 1); by default they are legacy subscribers, ready once connected.
    #[arg(long)]
    ack: bool,
    /// Repeat the whole scenario this many times; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// A subscriber stops after this long without a byte (once frames have arrived).
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Run the naive floor (same clients, `--cores none`) just before each run of the target
    /// and report each run's ratio to it, then the median ratio: both see the same machine
    /// conditions, which on a shared machine move more than the difference measured.
    #[arg(long)]
    with_floor: bool,
    /// Further arguments for the relay binary (after `--`); `{dir}` stands for the run's fresh
    /// temporary directory (e.g. `-- --audit-file {dir}/audit.log -l warn`).
    #[arg(last = true)]
    relay_args: Vec<String>,
}

/// `torq-perf throughput`.
#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    setup: Setup,
    /// Subscriber processes (0 measures the publisher against the relay alone).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Frames the publisher sends, as fast as it can.
    #[arg(long, default_value_t = 5_000_000)]
    frames: u64,
}

/// `torq-perf latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    setup: Setup,
    /// Frames per second the publisher sends, one at a time.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Frames the publisher sends.
    #[arg(long, default_value_t = 50_000)]
    frames: u64,
}

impl Setup {
    /// The naive floor with the same clients.
    fn floor(&self) -> Setup {
        Setup {
            target: "naive".to_string(),
            cores: "none".to_string(),
            with_floor: false,
            relay_args: Vec::new(),
            ..self.clone()
        }
    }
}

/// What one throughput run measured (frames/s).
struct Rates {
    aggregate: f64,
    slowest: f64,
    publisher: f64,
}

/// The JSON lines of one run.
struct Outcome {
    publisher: Value,
    subscribers: Vec<Value>,
}

pub fn throughput(args: &ThroughputArgs) -> Result<(), String> {
    let setup = &args.setup;
    let floor = setup.with_floor.then(|| setup.floor());
    let (mut aggregates, mut slowest, mut publishers, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!(
        "{} → {} subscriber(s), {} frames of {} B",
        setup.target, args.subscribers, args.frames, setup.size
    );
    for run in 1..=setup.runs {
        let floor_rates = match &floor {
            Some(floor) => Some(
                throughput_run(floor, args, &format!("run {run}, floor"))
                    .map_err(|e| format!("floor: {e}"))?,
            ),
            None => None,
        };
        let rates = throughput_run(setup, args, &format!("run {run}"))?;
        if let Some(floor_rates) = floor_rates {
            let ratio = rates.aggregate / floor_rates.aggregate;
            println!("  ratio to the floor: {ratio:.3}");
            ratios.push(ratio);
        }
        aggregates.push(rates.aggregate);
        slowest.push(rates.slowest);
        publishers.push(rates.publisher);
    }
    println!(
        "median of {} runs: aggregate {} frames/s, slowest subscriber {} frames/s, publisher {} frames/s",
        setup.runs,
        mega(median(&mut aggregates)),
        mega(median(&mut slowest)),
        mega(median(&mut publishers)),
    );
    if !ratios.is_empty() {
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!("median ratio to the floor: {:.3} (runs: {})", median(&mut ratios), shown.join(", "));
    }
    Ok(())
}

/// One throughput run of `setup`, printed under `label`.
fn throughput_run(setup: &Setup, args: &ThroughputArgs, label: &str) -> Result<Rates, String> {
    let outcome = run_once(setup, args.subscribers, args.frames, None)?;
    let sent = number(&outcome.publisher, "frames");
    let publisher = number(&outcome.publisher, "rate");
    let mut received = 0.0;
    let mut longest = 0.0f64;
    let mut slowest = f64::NAN;
    println!("{label}: publisher {} frames/s", mega(publisher));
    for (i, subscriber) in outcome.subscribers.iter().enumerate() {
        let (frames, rate) = (number(subscriber, "frames"), number(subscriber, "rate"));
        received += frames;
        longest = longest.max(number(subscriber, "elapsed_s"));
        slowest = slowest.min(rate);
        println!(
            "  subscriber {i}: {} frames/s, received {frames}, dropped {}, gaps {}, end {}",
            mega(rate),
            sent - frames,
            number(subscriber, "gaps"),
            subscriber["end"].as_str().unwrap_or("?"),
        );
    }
    let aggregate = if longest > 0.0 { received / longest } else { 0.0 };
    println!("  aggregate: {} frames/s delivered", mega(aggregate));
    Ok(Rates { aggregate, slowest, publisher })
}

pub fn latency(args: &LatencyArgs) -> Result<(), String> {
    const FIELDS: [&str; 5] = ["p50", "p90", "p99", "p99_9", "max"];
    let setup = &args.setup;
    let floor = setup.with_floor.then(|| setup.floor());
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); FIELDS.len()];
    let (mut p50_ratios, mut p50_excess, mut tail_ratios) = (Vec::new(), Vec::new(), Vec::new());
    println!("{} → 1 subscriber, {} frames at {} frames/s (µs)", setup.target, args.frames, args.rate);
    let percentiles = |setup: &Setup, label: &str| -> Result<Vec<f64>, String> {
        let outcome = run_once(setup, 1, args.frames, Some(args.rate))?;
        let subscriber = &outcome.subscribers[0];
        let latency = &subscriber["latency_ns"];
        let values: Vec<f64> = FIELDS.iter().map(|field| number(latency, field) / 1e3).collect();
        let shown: Vec<String> = FIELDS.iter().zip(&values).map(|(f, v)| format!("{f} {v:.1}")).collect();
        let dropped = number(&outcome.publisher, "frames") - number(subscriber, "frames");
        println!("{label}: {} (dropped {dropped})", shown.join(", "));
        Ok(values)
    };
    for run in 1..=setup.runs {
        let floor_values = match &floor {
            Some(floor) => {
                Some(percentiles(floor, &format!("run {run}, floor")).map_err(|e| format!("floor: {e}"))?)
            }
            None => None,
        };
        let values = percentiles(setup, &format!("run {run}"))?;
        if let Some(floor_values) = floor_values {
            p50_ratios.push(values[0] / floor_values[0]);
            p50_excess.push(values[0] - floor_values[0]);
            tail_ratios.push(values[3] / floor_values[3]);
            println!(
                "  to the floor: p50 {:.2}x ({:+.1} µs), p99.9 {:.2}x",
                values[0] / floor_values[0],
                values[0] - floor_values[0],
                values[3] / floor_values[3]
            );
        }
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    let shown: Vec<String> =
        FIELDS.iter().zip(&mut columns).map(|(f, column)| format!("{f} {:.1}", median(column))).collect();
    println!("median of {} runs (µs): {}", setup.runs, shown.join(", "));
    if !p50_ratios.is_empty() {
        println!(
            "median to the floor: p50 {:.2}x ({:+.1} µs), p99.9 {:.2}x",
            median(&mut p50_ratios),
            median(&mut p50_excess),
            median(&mut tail_ratios)
        );
    }
    Ok(())
}

fn number(value: &Value, field: &str) -> f64 {
    value[field].as_f64().unwrap_or(f64::NAN)
}

fn mega(rate: f64) -> String {
    format!("{:.2} M", rate / 1e6)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Which process a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Publisher,
    Subscriber(usize),
}

/// A line of a client's output, `None` when it closed its output.
type Line = (Who, Option<String>);

/// The processes of one run; dropping it stops whatever still runs and removes the directory.
struct Run {
    dir: PathBuf,
    relay: Option<Child>,
    clients: Vec<Child>,
}

impl Drop for Run {
    fn drop(&mut self) {
        for child in self.clients.iter_mut().chain(&mut self.relay) {
            if matches!(child.try_wait(), Ok(None)) {
                _ = child.kill();
            }
            _ = child.wait();
        }
        _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_once(setup: &Setup, subscribers: usize, frames: u64, rate: Option<f64>) -> Result<Outcome, String> {
    let deadline = Instant::now() + Duration::from_secs(setup.timeout_s);
    let dir = fresh_dir()?;
    let socket = dir.join("relay.sock");
    let mut run = Run { dir, relay: None, clients: Vec::new() };
    let relay = run.relay.insert(start_relay(setup, &socket)?);
    wait_for_socket(&socket, relay, Instant::now() + Duration::from_secs(10))?;

    let (lines, received) = crossbeam_channel::unbounded();
    let client_cores: Vec<&str> = setup.client_cores.split(',').collect();
    let core = |i: usize| client_cores[i % client_cores.len()];
    let common = |command: &mut Command, core: &str| {
        command.arg("--socket").arg(&socket).args(["--frames", &frames.to_string(), "--core", core]);
    };
    for i in 0..subscribers {
        let mut command = Command::new(current_exe()?);
        command.arg("subscribe").args(["--idle-ms", &setup.idle_ms.to_string()]);
        common(&mut command, core(i + 1));
        command.args(rate.map(|_| "--latency")).args(setup.ack.then_some("--ack"));
        run.clients.push(spawn(command, Who::Subscriber(i), &lines)?);
    }
    for _ in 0..subscribers {
        match next_line(&received, deadline.min(Instant::now() + Duration::from_secs(10)))? {
            Some((Who::Subscriber(_), Some(line))) if line == "ready" => {}
            Some((who, line)) => return Err(format!("{who:?} said {line:?} instead of `ready`")),
            None => return Err("the subscribers were not ready within 10 s".to_string()),
        }
    }

    let mut command = Command::new(current_exe()?);
    command.arg("publish").args(["--size", &setup.size.to_string()]);
    command.args(["--domain", setup.domain.name()]);
    common(&mut command, core(0));
    command.args(setup.crc.then_some("--crc"));
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    run.clients.push(spawn(command, Who::Publisher, &lines)?);
    drop(lines);

    let mut publisher = None;
    let mut results = vec![None; subscribers];
    let mut stop_at = deadline;
    let mut relay_stopped = false;
    while publisher.is_none() || results.iter().any(Option::is_none) {
        let Some((who, output)) = next_line(&received, stop_at)? else {
            if publisher.is_none() || relay_stopped || Instant::now() >= deadline {
                return Err(format!("run timed out (--timeout-s {})", setup.timeout_s));
            }
            // The subscribers still running have seen no end of stream: stop the relay.
            relay_stopped = true;
            stop_at = deadline.min(Instant::now() + Duration::from_secs(20));
            stop(run.relay.as_mut().expect("started"), true);
            continue;
        };
        let reported = match who {
            Who::Publisher => publisher.is_some(),
            Who::Subscriber(i) => results[i].is_some(),
        };
        let line = match output {
            Some(line) => line,
            None if reported => continue,
            None => return Err(format!("{who:?} exited without its report")),
        };
        let value: Value =
            serde_json::from_str(&line).map_err(|e| format!("{who:?} printed {line:?}: {e}"))?;
        match who {
            Who::Publisher => {
                publisher = Some(value);
                let grace = Duration::from_millis(setup.idle_ms) + Duration::from_secs(10);
                stop_at = deadline.min(Instant::now() + grace);
            }
            Who::Subscriber(i) => results[i] = Some(value),
        }
    }
    // The naive relay exits by itself once the publisher has gone; a relay binary is told to.
    let status = stop(run.relay.as_mut().expect("started"), setup.target != "naive");
    if !status.is_some_and(|status| status.success()) {
        eprintln!("torq-perf: the relay exited with {status:?}");
    }
    Ok(Outcome {
        publisher: publisher.unwrap_or_default(),
        subscribers: results.into_iter().flatten().collect(),
    })
}

pub(crate) fn current_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("where is torq-perf: {e}"))
}

/// A new, empty directory under the system's temp directory.
pub(crate) fn fresh_dir() -> Result<PathBuf, String> {
    let nanos = crate::clients::epoch_ns();
    let dir = std::env::temp_dir().join(format!("torq-perf-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn start_relay(setup: &Setup, socket: &Path) -> Result<Child, String> {
    let mut command = if setup.target == "naive" {
        let mut command = Command::new(current_exe()?);
        let core = setup.cores.split(',').next().filter(|core| !core.starts_with("none")).unwrap_or("none");
        command.arg("naive-relay").args(["--core", core]);
        command
    } else {
        let mut command = Command::new(&setup.target);
        command.args(["--cores", &setup.cores, "--slow-consumer", &setup.policy]);
        command
    };
    let dir = socket.parent().unwrap_or(Path::new(".")).display().to_string();
    command.arg("--socket").arg(socket).stdin(Stdio::null());
    command.args(setup.relay_args.iter().map(|arg| arg.replace("{dir}", &dir)));
    command.spawn().map_err(|e| format!("start {}: {e}", setup.target))
}

/// Waits until `socket` accepts a connection (the probe connects and closes at once).
pub(crate) fn wait_for_socket(socket: &Path, relay: &mut Child, deadline: Instant) -> Result<(), String> {
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = relay.try_wait() {
            return Err(format!("the relay exited with {status} before accepting connections"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} accepted no connection within 10 s", socket.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a client whose stdout lines go to `lines`, tagged with `who`.
fn spawn(mut command: Command, who: Who, lines: &Sender<Line>) -> Result<Child, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {who:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            _ = lines.send((who, Some(line)));
        }
        _ = lines.send((who, None));
    });
    Ok(child)
}

/// The next line a client printed, or `None` when the deadline passes first.
fn next_line(lines: &Receiver<Line>, deadline: Instant) -> Result<Option<Line>, String> {
    match lines.recv_deadline(deadline) {
        Ok(line) => Ok(Some(line)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err("every client has exited".to_string()),
    }
}

/// SIGTERM when `terminate`, then SIGKILL if the process is still running 10 s later; its
/// exit status.
pub(crate) fn stop(child: &mut Child, terminate: bool) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if terminate {
        _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    _ = child.kill();
    child.wait().ok()
}
