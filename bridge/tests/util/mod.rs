//! Real processes for the bridge's tests: NATS servers, `relay_dev all` "hosts", bridges, and
//! clients of the relays through the client library.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torq::client::{Event, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use torq::protocol::RelayDomain;

/// How long anything may take to come up.
pub const WAIT: Duration = Duration::from_secs(30);

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "torq-bridge-it-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process with its log in a file; killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(program: &Path, args: &[String], log: PathBuf) -> Proc {
        Proc::spawn_with(program, args, log, &[])
    }

    pub fn spawn_with(program: &Path, args: &[String], log: PathBuf, env: &[(&str, &str)]) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc { child, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "the process did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address a relay or a bridge serves its metrics on, from the line it logs once the port
/// is bound (`metrics on http://ADDR/metrics`): `--metrics 127.0.0.1:0` takes a free port, with
/// no race with another process for it.
pub fn metrics_addr(proc: &Proc) -> String {
    const LINE: &str = "metrics on http://";
    let start = Instant::now();
    loop {
        let log = proc.log();
        if let Some(at) = log.find(LINE) {
            let addr = log[at + LINE.len()..].split('/').next().unwrap().to_string();
            assert!(!addr.ends_with(":0"), "the bound port is logged, not port 0: {log}");
            return addr;
        }
        assert!(start.elapsed() < WAIT, "no {LINE:?} in the log: {log}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET /metrics` over HTTP/1.1 on a new connection: the whole answer, which must be a 200.
pub fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

/// The `nats-server` binary; the tests need it and fail, saying so, without it.
pub fn nats_server_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .expect(
            "nats-server not found in PATH or /usr/sbin: the bridge's tests run real NATS servers; \
             install it (`apt-get install nats-server`, as .ci/run does)",
        )
}

/// A NATS server with JetStream on a loopback port.
pub struct Nats {
    pub proc: Proc,
    pub port: u16,
    pub args: Vec<String>,
    pub dir: PathBuf,
}

impl Nats {
    /// A single server.
    pub fn start(dir: &Path) -> Nats {
        let port = free_port();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.join("store").display().to_string(),
        ];
        Nats::run(dir, port, args)
    }

    /// A single server without JetStream, with a configuration file of `config` (e.g. users and
    /// their permissions).
    pub fn start_with_config(dir: &Path, config: &str) -> Nats {
        let port = free_port();
        let file = dir.join(format!("nats-{port}.conf"));
        std::fs::write(&file, config).unwrap();
        let args = vec![
            "-c".into(),
            file.display().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        Nats::run(dir, port, args)
    }

    /// Server `index` of a cluster whose route ports are `routes`.
    pub fn cluster_member(dir: &Path, index: usize, client_port: u16, routes: &[u16]) -> Nats {
        let peers: Vec<String> = routes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
            .collect();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            client_port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.join(format!("store-{index}")).display().to_string(),
            "--name".into(),
            format!("n{index}"),
            "--cluster_name".into(),
            "torq".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", routes[index]),
            "--routes".into(),
            peers.join(","),
        ];
        Nats::run(dir, client_port, args)
    }

    /// A server started with `-c FILE`, FILE holding what `config(port, store directory)`
    /// returns.
    pub fn with_config(dir: &Path, config: impl Fn(u16, &Path) -> String) -> Nats {
        let port = free_port();
        let path = dir.join(format!("nats-{port}.conf"));
        std::fs::write(&path, config(port, &dir.join(format!("store-{port}")))).unwrap();
        Nats::run(dir, port, vec!["-c".into(), path.display().to_string()])
    }

    /// The configuration file of a server started [`Nats::with_config`]; [`Nats::restart`]
    /// reads it again.
    pub fn config_file(&self) -> PathBuf {
        assert_eq!(
            self.args.first().map(String::as_str),
            Some("-c"),
            "not started with a configuration file"
        );
        PathBuf::from(&self.args[1])
    }

    fn run(dir: &Path, port: u16, args: Vec<String>) -> Nats {
        let proc = Proc::spawn(&nats_server_binary(), &args, dir.join(format!("nats-{port}.log")));
        let nats = Nats { proc, port, args, dir: dir.to_path_buf() };
        nats.wait_ready();
        nats
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < WAIT, "nats-server did not listen: {}", self.proc.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.proc.terminate();
        self.proc = Proc::spawn(
            &nats_server_binary(),
            &self.args,
            self.dir.join(format!("nats-{}-again.log", self.port)),
        );
        self.wait_ready();
    }
}

/// The repository's sample server configuration, `config/nats-server.conf`.
pub fn sample_nats_config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/nats-server.conf")
}

/// `config/nats-server.conf` as it is but for its port and store directory: what a test runs
/// is the sample operators deploy.
pub fn sample_nats_config(port: u16, store: &Path) -> String {
    let text = std::fs::read_to_string(sample_nats_config_file()).unwrap();
    let replace = |text: String, from: &str, to: &str| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "config/nats-server.conf has no single `{from}` for the tests to rewrite: change the tests with it"
        );
        text.replace(from, to)
    };
    let text = replace(text, "listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{port}"));
    replace(text, "store_dir: \"/var/lib/nats\"", &format!("store_dir: {:?}", store.display().to_string()))
}

/// The password the sample configuration gives node `node`'s user.
pub fn sample_password(node: &str) -> String {
    let text = std::fs::read_to_string(sample_nats_config_file()).unwrap();
    let start = format!("{{ user: {node}, password: \"");
    let line = text
        .lines()
        .find_map(|line| line.trim().strip_prefix(&start))
        .unwrap_or_else(|| panic!("config/nats-server.conf has no `{start}` line"));
    line.split('"').next().unwrap().to_string()
}

/// A file holding `secret` (mode 600), as an operator gives a bridge its password.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The workspace's `target/<profile>` directory (the test binary lives in its `deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// `relay_dev`, built by `cargo test --workspace`; built here when only this crate is tested.
pub fn relay_dev_binary() -> PathBuf {
    let path = target_dir().join("relay_dev");
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status =
            Command::new(cargo).args(["build", "-p", "torq", "--bin", "relay_dev"]).status().unwrap();
        assert!(status.success() && path.is_file(), "cannot build relay_dev for the bridge's tests");
    }
    path
}

/// One "host": `relay_dev all` in a directory of its own.
pub struct Host {
    pub dir: PathBuf,
    pub relay: Proc,
}

impl Host {
    pub fn start(tag: &str) -> Host {
        Host::start_with(tag, &["-l", "warn"])
    }

    /// A host whose relays serve their metrics on a free port ([`Host::metrics_addr`]).
    pub fn start_with_metrics(tag: &str) -> Host {
        Host::start_with(tag, &["-l", "info", "--metrics-addr", "127.0.0.1:0"])
    }

    fn start_with(tag: &str, extra: &[&str]) -> Host {
        let dir = temp_dir(tag);
        let mut args: Vec<String> = vec!["all".into(), "--socket-dir".into(), dir.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let relay = Proc::spawn(&relay_dev_binary(), &args, dir.join("relay.log"));
        let host = Host { dir, relay };
        host.wait_ready();
        host
    }

    /// The relays' metrics endpoint (a host of [`Host::start_with_metrics`]).
    pub fn metrics_addr(&self) -> String {
        metrics_addr(&self.relay)
    }

    /// Stops the relay (SIGTERM) and starts it again on the same sockets.
    pub fn restart_relay(&mut self) {
        self.relay.terminate();
        let args =
            vec!["all".into(), "--socket".into(), self.dir.display().to_string(), "-l".into(), "warn".into()];
        self.relay = Proc::spawn(&relay_dev_binary(), &args, self.dir.join("relay-again.log"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        for domain in [RelayDomain::MarketData, RelayDomain::Execution] {
            while std::os::unix::net::UnixStream::connect(self.socket(domain)).is_err() {
                assert!(start.elapsed() < WAIT, "the relay did not start: {}", self.relay.log());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn socket(&self, domain: RelayDomain) -> PathBuf {
        self.dir.join(match domain {
            RelayDomain::MarketData => "market_data.sock",
            RelayDomain::Signal => "signals.sock",
            _ => "execution.sock",
        })
    }

    /// A bridge for `domain` on this host.
    pub fn bridge(&self, domain: RelayDomain, node: &str, nats: &str, extra: &[&str]) -> Proc {
        self.bridge_with(domain, node, nats, extra, &[])
    }

    /// A bridge with environment variables.
    pub fn bridge_with(
        &self,
        domain: RelayDomain,
        node: &str,
        nats: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        Bridge { socket: &self.socket(domain), domain, node, nats, extra, env }.spawn(&self.dir)
    }

    pub fn publisher(&self, domain: RelayDomain, source: u8) -> Publisher {
        Publisher::connect(self.socket(domain), PublisherOptions::new(domain, source)).unwrap()
    }

    pub fn subscriber(&self, domain: RelayDomain) -> Subscriber {
        Subscriber::connect(self.socket(domain), SubscriberOptions::new()).unwrap()
    }
}

/// Publishes one frame of 128 bytes (a TLV of type 200) and flushes.
pub fn publish(publisher: &mut Publisher, count: usize) {
    for _ in 0..count {
        publisher.publish(|frame| frame.tlv(200, &[7; 94]).map(|_| ())).unwrap();
    }
    publisher.flush().unwrap();
}

/// A received frame: source, sequence, bridged, and the first byte of its first TLV's value
/// (which publisher of a source sent it, where a test marks them).
pub type Seen = (u8, u64, bool, u8);

/// A subscriber of a host's relay reading on a thread of its own (an execution relay pauses
/// the bridge, then disconnects a stalled subscriber, when nobody reads), keeping what it saw.
pub struct Collector {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    pub fn start(host: &Host, domain: RelayDomain) -> Collector {
        let mut subscriber = host.subscriber(domain);
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (into, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(Event::Frame(frame)) = subscriber.recv_timeout(Duration::from_millis(50)).unwrap()
                {
                    let header = frame.header();
                    let marker = frame.payload().get(2).copied().unwrap_or(0);
                    into.lock().unwrap().push((
                        header.source(),
                        header.sequence(),
                        header.is_bridged(),
                        marker,
                    ));
                }
            }
        });
        Collector { seen, stop, thread: Some(thread) }
    }

    /// The frames of `source` seen so far.
    pub fn of(&self, source: u8) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().copied().filter(|seen| seen.0 == source).collect()
    }

    pub fn count(&self, source: u8) -> usize {
        self.seen.lock().unwrap().iter().filter(|seen| seen.0 == source).count()
    }

    /// Waits (bounded) until `count` frames of `source` came, then a little longer for any
    /// that should not come.
    pub fn wait_for(&self, source: u8, count: usize, limit: Duration, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        while self.count(source) < count {
            assert!(
                start.elapsed() < limit,
                "{} of {count} frames of source {source} arrived within {limit:?}\n{}",
                self.count(source),
                logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Publishes probes from `source` until one crosses to this collector.
    pub fn until_bridged(&self, from: &mut Publisher, source: u8, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        let before = self.count(source);
        while self.count(source) == before {
            publish(from, 1);
            assert!(start.elapsed() < WAIT, "no probe crossed within {WAIT:?}\n{}", logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sequences of `source`, asserting they are bridged as `bridged` says.
    pub fn sequences(&self, source: u8, bridged: bool) -> Vec<u64> {
        self.of(source)
            .into_iter()
            .map(|(_, sequence, b, _)| {
                assert_eq!(b, bridged, "source {source} sequence {sequence}: bridged flag");
                sequence
            })
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `torq-bridge` command line: any relay socket, with the tests' logging.
pub struct Bridge<'a> {
    /// The local relay's socket.
    pub socket: &'a Path,
    pub domain: RelayDomain,
    pub node: &'a str,
    pub nats: &'a str,
    pub extra: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Bridge<'_> {
    /// Starts it, its log in `dir`.
    pub fn spawn(&self, dir: &Path) -> Proc {
        let name = match self.domain {
            RelayDomain::MarketData => "market-data",
            RelayDomain::Signal => "signal",
            _ => "execution",
        };
        let fixed = [
            "--domain",
            name,
            "--node",
            self.node,
            "--nats",
            self.nats,
            "-l",
            "debug",
            "--metrics-interval",
            "1",
        ];
        let args: Vec<String> = ["--socket", self.socket.to_str().unwrap()]
            .into_iter()
            .chain(fixed)
            .chain(self.extra.iter().copied())
            .map(String::from)
            .collect();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log =
            dir.join(format!("bridge-{}-{name}-{}.log", self.node, NEXT.fetch_add(1, Ordering::Relaxed)));
        Proc::spawn_with(Path::new(env!("CARGO_BIN_EXE_torq-bridge")), &args, log, self.env)
    }
}
