//! `torq-perf throughput`, and the runs `torq-perf latency` (`perf/src/latency/`) is made of:
//! run a relay (the naive floor or a relay binary), subscriber processes and one publisher
//! process over a fresh socket, and report what the subscribers received.
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
//! they wait for the relay's acknowledgement of a Subscribe instead, as they do with
//! `--transport shm`, where they take their data frames from the relay's broadcast log in
//! shared memory (PROTOCOL.md §7) and wait on it as `--shm-idle` says. The floor's subscribers
//! always read their sockets: the floor is the same for both transports.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;

use crate::clients::{Domain, ShmIdle, Transport};

/// What to run and how: shared by `throughput` and `latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct Setup {
    /// `naive` (the floor: `torq-perf naive-relay`) or the path of a relay binary, started as
    /// `<binary> --socket <tmp path> --cores <--relay-cores> --slow-consumer <--slow-consumer>
    /// [ARGS after --]`.
    #[arg(long, value_name = "naive|RELAY-BINARY", default_value = "naive")]
    pub target: String,
    /// The relay's cores, passed as `--cores` (`none`, `none:2`, `0`, `0,1`); the naive relay
    /// (the floor too, with `--with-floor`) pins itself to the first core of a list.
    #[arg(long, value_name = "LIST|none|none:N", visible_alias = "cores", default_value = "none")]
    pub relay_cores: String,
    /// What the relay's idle reactors do, passed as `--idle` (`block`, `spin`, `backoff`) to a
    /// relay binary, never to the floor; the relay's own default when absent.
    #[arg(long, value_name = "STRATEGY")]
    pub idle: Option<String>,
    /// Slow-consumer policy passed to a relay binary as its `--slow-consumer` (`block`,
    /// `drop`, `disconnect`).
    #[arg(long, value_name = "POLICY", visible_alias = "policy", default_value = "block")]
    slow_consumer: String,
    /// Cores for the clients, `none` or a list: the publisher takes the first, subscriber i
    /// the (i+1)-th, wrapping around.
    #[arg(long, default_value = "none")]
    pub client_cores: String,
    /// Domain of the published frames.
    #[arg(long, value_enum, default_value_t = Domain::MarketData)]
    domain: Domain,
    /// Publish frames with their checksum computed.
    #[arg(long, visible_alias = "crc")]
    checksum: bool,
    /// Bytes per frame.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Subscribers send a Subscribe and count as ready once the relay acknowledges it (notice
    /// 1); by default they are legacy subscribers, ready once connected.
    #[arg(long)]
    ack: bool,
    /// Where the subscribers take their data frames: `socket`, or `shm`, the relay's broadcast
    /// log in shared memory (they send a Subscribe asking for it and are ready once it is
    /// acknowledged). The floor's subscribers read their sockets either way.
    #[arg(long, value_enum, default_value_t = Transport::Socket)]
    pub transport: Transport,
    /// With `--transport shm`: how the subscribers wait on the log, passed as their
    /// `--shm-idle`: `spin` (poll; a core each), `backoff` (poll, yield, then sleep) or
    /// `block` (sleep until the relay wakes them).
    #[arg(long, value_enum, default_value_t = ShmIdle::Spin)]
    pub shm_idle: ShmIdle,
    /// Repeat the whole scenario this many times; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// A subscriber stops after this long without a byte (once frames have arrived).
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Before each run (the floor's too), wait up to this many seconds until other processes
    /// have used less than 5 % of a core for a whole second (a shared machine); 0: don't wait.
    /// Each run reports the CPU others used while it ran either way.
    #[arg(long, default_value_t = 0)]
    pub wait_quiet_s: u64,
    /// Run the naive floor (same clients, on the first of `--cores` when that is a list,
    /// unpinned otherwise) just before each run of the target and report each run's ratio to
    /// it, then the median ratio: both see the same machine conditions, which on a shared
    /// machine move more than the difference measured.
    #[arg(long)]
    pub with_floor: bool,
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

impl Setup {
    /// The naive floor with the same clients, on the relay's first core when it is pinned.
    pub fn floor(&self) -> Setup {
        Setup {
            target: "naive".to_string(),
            idle: None,
            transport: Transport::Socket,
            with_floor: false,
            relay_args: Vec::new(),
            ..self.clone()
        }
    }

    /// Waits for a quiet machine as `--wait-quiet-s` says; false when it gave up waiting.
    pub fn wait_quiet(&self, label: &str) -> bool {
        if self.wait_quiet_s == 0 {
            return true;
        }
        let limit = Duration::from_secs(self.wait_quiet_s);
        let (others, gave_up) = crate::machine::wait_quiet(limit, 0.05);
        if gave_up {
            eprintln!(
                "{label}: the machine is still busy after {} s ({others}); running anyway",
                self.wait_quiet_s
            );
        }
        !gave_up
    }

    /// The core the floor runs on (`none` when unpinned).
    fn floor_core(&self) -> &str {
        self.relay_cores.split(',').next().filter(|core| !core.starts_with("none")).unwrap_or("none")
    }

    /// Refuses what cannot run: shared memory from the floor, which offers none.
    pub fn check(&self) -> Result<(), String> {
        if self.target == "naive" && self.transport == Transport::Shm {
            return Err("--transport shm needs a relay binary as --target: the floor (naive) has no shared \
                 memory (with --with-floor, the floor's subscribers read their sockets)"
                .to_string());
        }
        Ok(())
    }

    /// How the subscribers take their data frames, for a report: `socket`, or `shm (idle
    /// spin)`.
    pub fn transport_label(&self) -> String {
        match self.transport {
            Transport::Socket => "socket".to_string(),
            Transport::Shm => format!("shm (idle {})", self.shm_idle.name()),
        }
    }

    /// The client cores, `--client-cores` split.
    fn client_core(&self, i: usize) -> &str {
        let cores: Vec<&str> = self.client_cores.split(',').collect();
        cores[i % cores.len()]
    }

    /// What runs where, for a report: the relay (or floor), the publisher, the subscribers.
    pub fn placement(&self, subscribers: usize) -> serde_json::Value {
        let relay = if self.target == "naive" {
            serde_json::json!({"binary": "torq-perf naive-relay", "core": self.floor_core()})
        } else {
            serde_json::json!({"binary": self.target, "cores": self.relay_cores,
                "idle": self.idle.as_deref().unwrap_or("(the relay's default)"), "args": self.relay_args})
        };
        let mut placement = serde_json::json!({
            "relay": relay,
            "publisher_core": self.client_core(0),
            "subscriber_cores": (0..subscribers).map(|i| self.client_core(i + 1)).collect::<Vec<_>>(),
            "transport": self.transport.name(),
        });
        if self.transport == Transport::Shm {
            placement["shm_idle"] = self.shm_idle.name().into();
        }
        if self.with_floor {
            placement["floor_core"] = self.floor_core().into();
        }
        placement
    }

    /// [`Setup::placement`] as one line.
    pub fn placement_line(&self, subscribers: usize) -> String {
        let relay = if self.target == "naive" {
            format!("the floor (torq-perf naive-relay) on core {}", self.floor_core())
        } else {
            format!(
                "{} --cores {} --idle {} {}",
                self.target,
                self.relay_cores,
                self.idle.as_deref().unwrap_or("(default)"),
                self.relay_args.join(" ")
            )
        };
        let subscribers: Vec<&str> = (0..subscribers).map(|i| self.client_core(i + 1)).collect();
        let floor = if self.with_floor {
            format!("; the floor on core {} (its subscribers read their sockets)", self.floor_core())
        } else {
            String::new()
        };
        let reading = match self.transport {
            Transport::Socket => "reading their sockets".to_string(),
            Transport::Shm => {
                format!("reading the shared-memory log, idle {}", self.shm_idle.name())
            }
        };
        format!(
            "placement: relay {}{floor}; publisher on core {}; subscriber(s) on core {} ({reading})",
            relay.trim_end(),
            self.client_core(0),
            subscribers.join(",")
        )
    }
}

/// What one throughput run measured (frames/s).
struct Rates {
    aggregate: f64,
    slowest: f64,
    publisher: f64,
}

/// The JSON lines of one run.
pub struct Outcome {
    pub publisher: Value,
    pub subscribers: Vec<Value>,
    /// CPU seconds the relay used in the run (read just before it was stopped).
    pub relay_cpu_s: Option<f64>,
}

/// The clients of one run.
pub struct Clients<'a> {
    pub subscribers: usize,
    pub frames: u64,
    /// Frames per second (open loop), or as fast as possible; subscribers record latency
    /// when set.
    pub rate: Option<f64>,
    /// More arguments for every subscriber.
    pub subscriber_args: Vec<String>,
    /// Called with each `{"progress":…}` line a subscriber prints.
    pub on_progress: &'a mut dyn FnMut(&Value),
}

pub fn throughput(args: &ThroughputArgs) -> Result<(), String> {
    let setup = &args.setup;
    setup.check()?;
    let floor = setup.with_floor.then(|| setup.floor());
    let (mut aggregates, mut slowest, mut publishers, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!("{}", crate::machine::Machine::describe());
    println!("{}", setup.placement_line(args.subscribers));
    println!(
        "{} → {} subscriber(s) over {}, {} frames of {} B",
        setup.target,
        args.subscribers,
        setup.transport_label(),
        args.frames,
        setup.size
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
    let clients = Clients {
        subscribers: args.subscribers,
        frames: args.frames,
        rate: None,
        subscriber_args: Vec::new(),
        on_progress: &mut |_| {},
    };
    setup.wait_quiet(label);
    let cpu = crate::machine::CpuTimes::now();
    let outcome = run_once(setup, clients)?;
    let others = cpu.others();
    let sent = number(&outcome.publisher, "frames");
    let publisher = number(&outcome.publisher, "rate");
    let mut received = 0.0;
    let mut longest = 0.0f64;
    let mut slowest = f64::NAN;
    println!("{label}: publisher {} frames/s; {others}", mega(publisher));
    for (i, subscriber) in outcome.subscribers.iter().enumerate() {
        let (frames, rate) = (number(subscriber, "frames"), number(subscriber, "rate"));
        received += frames;
        longest = longest.max(number(subscriber, "elapsed_s"));
        slowest = slowest.min(rate);
        println!(
            "  subscriber {i}: {} frames/s, received {frames}, dropped {}, gaps {}, end {}{}",
            mega(rate),
            sent - frames,
            number(subscriber, "gaps"),
            subscriber["end"].as_str().unwrap_or("?"),
            shm_note(&subscriber["shm"]),
        );
    }
    let aggregate = if longest > 0.0 { received / longest } else { 0.0 };
    println!("  aggregate: {} frames/s delivered", mega(aggregate));
    Ok(Rates { aggregate, slowest, publisher })
}

/// The `shm` report of a subscriber that asked for shared memory, for a report line: the
/// frames it lost to overrun, or that the relay answered `shm=0` (its frames came over the
/// socket); empty for a socket subscriber (`shm` null).
pub fn shm_note(shm: &Value) -> String {
    if shm.is_null() {
        return String::new();
    }
    if shm["granted"] == true {
        format!(
            "; shm (idle {}): lost to overrun {} in {} overrun(s)",
            shm["idle"].as_str().unwrap_or("?"),
            number(shm, "overrun_frames"),
            number(shm, "overruns")
        )
    } else {
        "; shm asked, NOT granted (the relay answered shm=0): frames came over the socket".to_string()
    }
}

pub fn number(value: &Value, field: &str) -> f64 {
    value[field].as_f64().unwrap_or(f64::NAN)
}

fn mega(rate: f64) -> String {
    format!("{:.2} M", rate / 1e6)
}

pub fn median(values: &mut [f64]) -> f64 {
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

/// The relay of one run and its directory; dropping it stops the relay if it still runs and
/// removes the directory.
struct Run {
    dir: PathBuf,
    relay: Option<Child>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(child) = &mut self.relay {
            if matches!(child.try_wait(), Ok(None)) {
                _ = child.kill();
            }
            _ = child.wait();
        }
        _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Child processes killed (SIGKILL) and reaped when dropped, unless they exited already.
#[derive(Debug, Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Waits (at most `limit`) for every child to exit, then kills those that did not.
    pub fn finish(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for child in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                _ = child.kill();
            }
            _ = child.wait();
            crate::reaper::forget(child.id());
        }
    }
}

pub fn run_once(setup: &Setup, clients: Clients<'_>) -> Result<Outcome, String> {
    let Clients { subscribers, frames, rate, subscriber_args, on_progress } = clients;
    let deadline = Instant::now() + Duration::from_secs(setup.timeout_s);
    let dir = fresh_dir()?;
    let socket = dir.join("relay.sock");
    let mut run = Run { dir, relay: None };
    let relay = run.relay.insert(start_relay(setup, &socket)?);
    wait_for_socket(&socket, relay, Instant::now() + Duration::from_secs(10))?;

    let core = |i: usize| setup.client_core(i);
    let common = |command: &mut Command, core: &str| {
        command.arg("--socket").arg(&socket).args(["--frames", &frames.to_string(), "--core", core]);
    };
    let mut subscriber_commands = Vec::new();
    for i in 0..subscribers {
        let mut command = Command::new(current_exe()?);
        command.arg("subscribe").args(["--idle-ms", &setup.idle_ms.to_string()]);
        common(&mut command, core(i + 1));
        command.args(rate.map(|_| "--latency")).args(setup.ack.then_some("--ack"));
        if setup.transport == Transport::Shm {
            command.args(["--transport", "shm", "--shm-idle", setup.shm_idle.name()]);
        }
        command.args(&subscriber_args);
        subscriber_commands.push(command);
    }
    let mut publisher = Command::new(current_exe()?);
    publisher.arg("publish").args(["--size", &setup.size.to_string()]);
    publisher.args(["--domain", setup.domain.name()]);
    common(&mut publisher, core(0));
    publisher.args(setup.checksum.then_some("--checksum"));
    if let Some(rate) = rate {
        publisher.args(["--rate", &rate.to_string()]);
    }
    let reports = run_clients(ClientProcesses {
        subscribers: subscriber_commands,
        publisher,
        idle_ms: setup.idle_ms,
        deadline,
        timeout_s: setup.timeout_s,
        on_progress,
        // The subscribers still running have seen no end of stream: stop the relay.
        end_streams: &mut || _ = stop(relay, true),
    })?;
    // The naive relay exits by itself once the publisher has gone; a relay binary is told to.
    let relay = run.relay.as_mut().expect("started");
    let relay_cpu_s = crate::machine::process_cpu_s(relay.id());
    let status = stop(relay, setup.target != "naive");
    if !status.is_some_and(|status| status.success()) {
        eprintln!("torq-perf: the relay exited with {status:?}");
    }
    Ok(Outcome { publisher: reports.publisher, subscribers: reports.subscribers, relay_cpu_s })
}

/// The client processes of one measurement: subscribers that print `ready` and then one JSON
/// report (and `{"progress":…}` lines), and a publisher started once they are all ready.
pub struct ClientProcesses<'a> {
    pub subscribers: Vec<Command>,
    pub publisher: Command,
    /// The subscribers' idle time: once the publisher has reported, they have this long (and
    /// 10 s more) to report before their streams are ended.
    pub idle_ms: u64,
    /// When the whole measurement gives up.
    pub deadline: Instant,
    /// The deadline as the user gave it (`--timeout-s`), for the error.
    pub timeout_s: u64,
    /// Called with each `{"progress":…}` line a subscriber prints.
    pub on_progress: &'a mut dyn FnMut(&Value),
    /// Called once when subscribers are overdue: ends their streams (stops the relay they
    /// read), so they report what they have.
    pub end_streams: &'a mut dyn FnMut(),
}

/// The JSON reports of a measurement's clients.
pub struct Reports {
    pub publisher: Value,
    pub subscribers: Vec<Value>,
}

/// Runs the clients of one measurement and collects their reports; every wait is bounded and
/// the clients are killed if anything fails.
pub fn run_clients(processes: ClientProcesses<'_>) -> Result<Reports, String> {
    let ClientProcesses { subscribers, publisher, idle_ms, deadline, timeout_s, on_progress, end_streams } =
        processes;
    let mut children = Children::default();
    let (lines, received) = crossbeam_channel::unbounded();
    let count = subscribers.len();
    for (i, command) in subscribers.into_iter().enumerate() {
        children.0.push(spawn(command, Who::Subscriber(i), &lines)?);
    }
    for _ in 0..count {
        match next_line(&received, deadline.min(Instant::now() + Duration::from_secs(10)))? {
            Some((Who::Subscriber(_), Some(line))) if line == "ready" => {}
            Some((who, line)) => return Err(format!("{who:?} said {line:?} instead of `ready`")),
            None => return Err("the subscribers were not ready within 10 s".to_string()),
        }
    }
    children.0.push(spawn(publisher, Who::Publisher, &lines)?);
    drop(lines);

    let mut publisher = None;
    let mut results = vec![None; count];
    let mut stop_at = deadline;
    let mut streams_ended = false;
    while publisher.is_none() || results.iter().any(Option::is_none) {
        let Some((who, output)) = next_line(&received, stop_at)? else {
            if publisher.is_none() || streams_ended || Instant::now() >= deadline {
                return Err(format!("run timed out (--timeout-s {timeout_s})"));
            }
            streams_ended = true;
            stop_at = deadline.min(Instant::now() + Duration::from_secs(20));
            end_streams();
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
        if value.get("progress").is_some() {
            on_progress(&value);
            continue;
        }
        match who {
            Who::Publisher => {
                publisher = Some(value);
                let grace = Duration::from_millis(idle_ms) + Duration::from_secs(10);
                stop_at = deadline.min(Instant::now() + grace);
            }
            Who::Subscriber(i) => results[i] = Some(value),
        }
    }
    // Each has reported: let them exit (their CPU time then counts as this process's children).
    children.finish(Duration::from_secs(5));
    Ok(Reports {
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
        command.arg("naive-relay").args(["--core", setup.floor_core()]);
        command
    } else {
        let mut command = Command::new(&setup.target);
        command.args(["--cores", &setup.relay_cores, "--slow-consumer", &setup.slow_consumer]);
        if let Some(idle) = &setup.idle {
            command.args(["--idle", idle]);
        }
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
    crate::reaper::register(child.id());
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
