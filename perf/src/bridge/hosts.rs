//! The processes of `torq-perf bridge`, started once for the whole scenario: a NATS server
//! (JetStream on, a temporary store), two "hosts" — a relay each, in a directory of its own —
//! and their bridges (host a `--export`, host b `--import a`), each with its log in the
//! scenario's directory. [`Cluster::start`] returns once a probe frame published on host a's
//! relay has reached a subscriber of host b's; dropping the cluster stops everything.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use torq::client::{Event, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use torq::protocol::RelayDomain;

use crate::clients::Domain;
use crate::reaper;
use crate::relay::{fresh_dir, stop, wait_for_socket};
use crate::soak::probe::{Scrape, scrape};

/// How long a process may take to come up, and the first frame to cross.
const START: Duration = Duration::from_secs(10);
const FIRST_CROSSING: Duration = Duration::from_secs(30);
/// The probe frames' source (the measured publishers use their domain's usual source).
const PROBE_SOURCE: u8 = 90;

/// The programs the scenario runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub relay: PathBuf,
    pub bridge: PathBuf,
    pub nats_server: PathBuf,
}

impl Binaries {
    /// The domain's relay and `torq-bridge` in `dir` (by default the directory of this
    /// `torq-perf`), `nats-server` as given or from `PATH`, `/usr/sbin`, `/usr/local/bin`.
    ///
    /// # Errors
    ///
    /// Naming what is missing and how to get it.
    pub fn find(domain: Domain, dir: Option<&Path>, nats_server: Option<&Path>) -> Result<Binaries, String> {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => crate::relay::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let program = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} not found: build the workspace's binaries first (cargo build --release --workspace --bins), \
                     or name their directory with --bin-dir",
                    path.display()
                ))
            }
        };
        let relay = program(relay_binary(domain))?;
        let bridge = program("torq-bridge")?;
        let nats_server = match nats_server {
            Some(path) if path.is_file() => path.to_path_buf(),
            Some(path) => return Err(format!("--nats-server {}: no such file", path.display())),
            None => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
                    .map(|dir| dir.join("nats-server"))
                    .find(|candidate| candidate.is_file())
                    .ok_or(
                        "nats-server not found in PATH, /usr/sbin or /usr/local/bin: the scenario runs a \
                         real NATS server; install it (apt-get install nats-server) or give --nats-server PATH",
                    )?
            }
        };
        Ok(Binaries { relay, bridge, nats_server })
    }
}

/// The relay binary of a domain.
fn relay_binary(domain: Domain) -> &'static str {
    match domain {
        Domain::MarketData => "market_data_relay",
        Domain::Signal => "signal_relay",
        Domain::Execution => "execution_relay",
    }
}

/// The socket file of a domain's relay, in a host's directory (the names of `relay_dev all`).
fn socket_name(domain: Domain) -> &'static str {
    match domain {
        Domain::MarketData => "market_data.sock",
        Domain::Signal => "signals.sock",
        Domain::Execution => "execution.sock",
    }
}

/// The domain's token in the bridge's subjects (`torq.<node>.<token>.<type>.<source>`).
pub fn subject_token(domain: Domain) -> &'static str {
    match domain {
        Domain::MarketData => "market_data",
        Domain::Signal => "signal",
        Domain::Execution => "execution",
    }
}

fn relay_domain(domain: Domain) -> RelayDomain {
    match domain {
        Domain::MarketData => RelayDomain::MarketData,
        Domain::Signal => RelayDomain::Signal,
        Domain::Execution => RelayDomain::Execution,
    }
}

/// Where the scenario's processes run: a core number or `none` each.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Relay a's and relay b's `--cores`.
    pub relay_cores: [String; 2],
    /// Both relays' `--idle`, when given.
    pub idle: Option<String>,
    pub nats: String,
    /// The exporting and the importing bridge.
    pub bridges: [String; 2],
    pub publisher: String,
    pub subscriber: String,
}

impl Placement {
    /// What runs where, in one line.
    pub fn line(&self, binaries: &Binaries) -> String {
        let name = |path: &Path| path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
        format!(
            "placement: nats-server on core {}; relays a and b ({} --cores {} and {} --idle {}); torq-bridge a \
             (export) on core {}, b (import) on core {}; publishers on core {}, subscribers on core {} (the \
             floor's clients too)",
            self.nats,
            name(&binaries.relay),
            self.relay_cores[0],
            self.relay_cores[1],
            self.idle.as_deref().unwrap_or("(default)"),
            self.bridges[0],
            self.bridges[1],
            self.publisher,
            self.subscriber,
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "nats_server_core": self.nats,
            "relay_cores": self.relay_cores,
            "relay_idle": self.idle.as_deref().unwrap_or("(the relay's default)"),
            "bridge_cores": self.bridges,
            "publisher_core": self.publisher,
            "subscriber_core": self.subscriber,
        })
    }
}

/// A process of the cluster, with its log file.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with its output in `log`, on `core` (`none`: unpinned). A program
    /// without a core flag is pinned by inheritance: this thread takes the core for the
    /// moment of the spawn (the child keeps the mask, every thread it starts too), then gets
    /// its own mask back.
    fn spawn(name: &'static str, mut command: Command, log: PathBuf, core: &str) -> Result<Proc, String> {
        let file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let output = file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        command.stdin(Stdio::null()).stdout(output).stderr(file);
        let mask = pin_for_spawn(core)?;
        let spawned = command.spawn();
        if let Some(mask) = mask {
            _ = rustix::thread::sched_setaffinity(None, &mask);
        }
        let child = spawned.map_err(|e| format!("start {name} ({:?}): {e}", command.get_program()))?;
        reaper::register(child.id());
        Ok(Proc { name, child, log })
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("--- {} ({}):\n{tail}", self.name, self.log.display())
    }

    /// An error if it has exited.
    fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("{} exited ({status})\n{}", self.name, self.tail())),
            _ => Ok(()),
        }
    }
}

/// Pins this thread to `core` for a spawn; returns the mask to restore.
fn pin_for_spawn(core: &str) -> Result<Option<rustix::thread::CpuSet>, String> {
    if core == "none" {
        return Ok(None);
    }
    let number: usize = core.parse().map_err(|_| format!("core {core:?}: a core number or none"))?;
    let mask = rustix::thread::sched_getaffinity(None).map_err(|e| format!("read the CPU mask: {e}"))?;
    let mut only = rustix::thread::CpuSet::new();
    only.set(number);
    rustix::thread::sched_setaffinity(None, &only).map_err(|e| format!("core {core}: {e}"))?;
    Ok(Some(mask))
}

/// A free loopback TCP port (free when asked: the server that takes it binds it again).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("find a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("find a free port: {e}"))
}

/// What the scenario starts: the settings [`Cluster::start`] needs.
#[derive(Debug)]
pub struct Spec<'a> {
    pub domain: Domain,
    pub binaries: &'a Binaries,
    pub placement: &'a Placement,
    /// More arguments for both bridges.
    pub bridge_args: &'a [String],
    /// Keep the directory (logs) when the cluster stops.
    pub keep: bool,
}

/// The running processes: nats-server, relay a, relay b, bridge a, bridge b.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    keep: bool,
    procs: Vec<Proc>,
    /// The NATS server's URL.
    pub url: String,
    /// The relays' sockets, host a's and host b's.
    pub sockets: [PathBuf; 2],
    /// The bridges' metrics endpoints.
    pub metrics: [SocketAddr; 2],
    /// How long the first probe took to cross, from the start of the bridges.
    pub first_crossing: Duration,
}

/// CPU seconds each process of the cluster has used so far.
pub type Cpu = Vec<(&'static str, f64)>;

impl Cluster {
    /// Starts every process and waits until a frame crosses from host a to host b.
    ///
    /// # Errors
    ///
    /// When a process cannot start, exits, or nothing crosses within 30 s; the message ends
    /// with the last lines of the logs concerned (the directory is kept).
    pub fn start(spec: &Spec<'_>) -> Result<Cluster, String> {
        let dir = fresh_dir()?;
        if !spec.keep {
            reaper::register_dir(&dir);
        }
        let mut cluster = Cluster {
            dir: dir.clone(),
            keep: spec.keep,
            procs: Vec::new(),
            url: String::new(),
            sockets: [
                dir.join("a").join(socket_name(spec.domain)),
                dir.join("b").join(socket_name(spec.domain)),
            ],
            metrics: [SocketAddr::from(([127, 0, 0, 1], 0)); 2],
            first_crossing: Duration::ZERO,
        };
        match cluster.start_processes(spec) {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.keep = true;
                Err(format!("{e}\n(the logs are kept in {})", cluster.dir.display()))
            }
        }
    }

    fn start_processes(&mut self, spec: &Spec<'_>) -> Result<(), String> {
        let (binaries, placement) = (spec.binaries, spec.placement);
        let port = free_port()?;
        self.url = format!("nats://127.0.0.1:{port}");
        let mut nats = Command::new(&binaries.nats_server);
        nats.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(self.dir.join("nats-store"));
        self.procs.push(Proc::spawn("nats-server", nats, self.dir.join("nats-server.log"), &placement.nats)?);
        let deadline = Instant::now() + START;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            self.procs[0].check_running()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "nats-server did not listen on port {port} within 10 s\n{}",
                    self.procs[0].tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }

        for (i, name) in ["relay a", "relay b"].into_iter().enumerate() {
            let socket = &self.sockets[i];
            let host = socket.parent().expect("in the host's directory");
            std::fs::create_dir_all(host).map_err(|e| format!("create {}: {e}", host.display()))?;
            let mut relay = Command::new(&binaries.relay);
            relay.arg("--socket").arg(socket).args(["--cores", &placement.relay_cores[i], "-l", "warn"]);
            if let Some(idle) = &placement.idle {
                relay.args(["--idle", idle]);
            }
            self.procs.push(Proc::spawn(name, relay, host.join("relay.log"), "none")?);
            let proc = self.procs.last_mut().expect("pushed");
            wait_for_socket(socket, &mut proc.child, Instant::now() + START)
                .map_err(|e| format!("{name}: {e}\n{}", proc.tail()))?;
        }

        let started = Instant::now();
        let roles: [(&'static str, &[&str]); 2] =
            [("bridge a", &["--export"]), ("bridge b", &["--import", "a"])];
        for (i, (name, role)) in roles.into_iter().enumerate() {
            self.metrics[i] = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let host = self.sockets[i].parent().expect("in the host's directory");
            let mut bridge = Command::new(&binaries.bridge);
            bridge.arg("--socket").arg(&self.sockets[i]);
            bridge.args(["--domain", spec.domain.name(), "--node", ["a", "b"][i], "--nats", &self.url]);
            bridge.args(role).args([
                "--metrics-addr",
                &self.metrics[i].to_string(),
                "--metrics-interval",
                "1",
            ]);
            bridge.args(spec.bridge_args);
            self.procs.push(Proc::spawn(name, bridge, host.join("bridge.log"), &placement.bridges[i])?);
        }
        for i in 0..2 {
            let deadline = Instant::now() + START;
            while scrape(self.metrics[i], Duration::from_millis(500)).is_err() {
                self.procs[3 + i].check_running()?;
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{} served no metrics on {} within 10 s\n{}",
                        self.procs[3 + i].name,
                        self.metrics[i],
                        self.procs[3 + i].tail()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.probe(spec.domain)?;
        self.first_crossing = started.elapsed();
        Ok(())
    }

    /// Publishes probe frames on host a's relay (one each 100 ms) until one reaches a
    /// subscriber of host b's, then reads 300 ms more so no probe is left on the way.
    fn probe(&mut self, domain: Domain) -> Result<(), String> {
        let domain = relay_domain(domain);
        let connect = |e: torq::client::Error| format!("probe: {e}");
        let mut on_b = Subscriber::connect(&self.sockets[1], SubscriberOptions::new()).map_err(connect)?;
        let mut on_a = Publisher::connect(&self.sockets[0], PublisherOptions::new(domain, PROBE_SOURCE))
            .map_err(connect)?;
        let deadline = Instant::now() + FIRST_CROSSING;
        let mut crossed = false;
        while !crossed {
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.procs[3..].iter().map(Proc::tail).collect();
                return Err(format!(
                    "no probe frame crossed from relay a to relay b within {} s\n{}",
                    FIRST_CROSSING.as_secs(),
                    logs.join("\n")
                ));
            }
            for proc in &mut self.procs {
                proc.check_running()?;
            }
            on_a.publish(|frame| frame.tlv(200, &[7; 94]).map(|_| ())).map_err(connect)?;
            on_a.flush().map_err(connect)?;
            let until = Instant::now() + Duration::from_millis(100);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Some(Event::Frame(frame)) = on_b.recv_timeout(left).map_err(connect)? {
                    crossed |= frame.header().source() == PROBE_SOURCE;
                }
            }
        }
        let until = Instant::now() + Duration::from_millis(300);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            on_b.recv_timeout(left).map_err(connect)?;
        }
        Ok(())
    }

    /// Every process's pid and name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.name, p.child.id())).collect()
    }

    /// CPU seconds each process has used so far.
    pub fn cpu(&self) -> Cpu {
        self.procs
            .iter()
            .map(|p| (p.name, crate::machine::process_cpu_s(p.child.id()).unwrap_or(f64::NAN)))
            .collect()
    }

    /// An error naming the first process that has exited, with its log's last lines (read
    /// from `/proc`: an exited child stays there, a zombie, until it is waited for).
    pub fn check(&self) -> Result<(), String> {
        for proc in &self.procs {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", proc.child.id())).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            if matches!(state, None | Some("Z" | "X")) {
                return Err(format!(
                    "{} (pid {}) has exited\n{}\n(the logs are in {})",
                    proc.name,
                    proc.child.id(),
                    proc.tail(),
                    self.dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Both bridges' counters now.
    pub fn counters(&self) -> Result<[Scrape; 2], String> {
        Ok([
            scrape(self.metrics[0], Duration::from_secs(2))?,
            scrape(self.metrics[1], Duration::from_secs(2))?,
        ])
    }

    /// Stops the processes, the bridges first (SIGTERM, SIGKILL after 10 s); returns the
    /// ones that did not exit 0 (nats-server exits 1 on SIGTERM by design: it only must have
    /// run until then), with their logs' last lines.
    pub fn stop(mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for proc in self.procs.iter_mut().rev() {
            let running = matches!(proc.child.try_wait(), Ok(None));
            let status = stop(&mut proc.child, true);
            reaper::forget(proc.child.id());
            let stopped =
                if proc.name == "nats-server" { running } else { status.is_some_and(|s| s.success()) };
            if !stopped {
                failures.push(format!("{} exited with {status:?}\n{}", proc.name, proc.tail()));
            }
        }
        if !failures.is_empty() {
            self.keep = true;
        }
        failures
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for proc in self.procs.iter_mut().rev() {
            if matches!(proc.child.try_wait(), Ok(None)) {
                _ = proc.child.kill();
            }
            _ = proc.child.wait();
            reaper::forget(proc.child.id());
        }
        reaper::forget_dir(&self.dir);
        if !self.keep {
            _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
