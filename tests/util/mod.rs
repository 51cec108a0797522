//! Helpers for the integration tests: relay processes on private sockets, clients, frames.
//! Every wait is bounded; nothing sleeps to synchronise.
#![allow(dead_code, unreachable_pub)]

pub mod promtool;

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use torq::client::FrameReader;
use torq::protocol::{Crc, FrameBuilder, Header, RelayDomain, RelayNotice, Subscribe, Tlv, Value, tlvs};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The legacy hello, byte for byte.
pub const LEGACY_HELLO: [u8; 32] = [
    0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
];

/// A fresh private directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "torq-it-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A relay binary running on a private socket.
pub struct Relay {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Relay {
    /// Starts `binary` (e.g. `env!("CARGO_BIN_EXE_market_data_relay")`) with two unpinned
    /// reactors on a private socket, plus `args`; returns once the socket accepts.
    pub fn start(binary: &str, args: &[&str]) -> Relay {
        let dir = temp_dir("relay");
        let socket = dir.join("relay").join("relay.sock");
        let socket_arg = socket.to_str().expect("temp paths are UTF-8").to_string();
        let mut all = vec!["--socket", &socket_arg, "--cores", "none:2", "--log-level", "debug"];
        all.extend_from_slice(args);
        Relay::spawn(binary, &all, socket.clone(), dir)
    }

    /// Waits (bounded) until the socket accepts a connection.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the relay exited with {status}: {}", self.log());
            }
            assert!(start.elapsed() < WAIT, "the relay did not open {}", self.socket.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// The relay's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("relay.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        sigterm(&self.child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "the relay did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- relay log ---\n{}--- end of relay log ---", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw client connection (tests send hostile bytes through it) with the client library's
/// frame reader.
pub struct Client {
    pub stream: UnixStream,
    reader: FrameReader,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let stream = UnixStream::connect(path).expect("connect to the relay");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Client { stream, reader: FrameReader::new(1 << 20) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the relay");
    }

    /// Sends a Subscribe frame and, when it asked for notices, waits for notice 1.
    pub fn subscribe(&mut self, subscribe: &Subscribe) {
        self.send(&subscribe_frame(subscribe));
        if subscribe.options & torq::protocol::OPTION_NOTICES != 0 {
            let (code, _, text) = self.notice();
            assert_eq!(code, 1, "expected the subscribed notice, got {code}: {text}");
        }
    }

    /// The next whole frame, waiting at most [`WAIT`]; `None` at end of stream.
    pub fn try_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) => return Ok(Some(frame.bytes().to_vec())),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            match self.reader.read_from(&mut self.stream) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next frame; panics on end of stream or timeout.
    pub fn frame(&mut self) -> Vec<u8> {
        self.try_frame().expect("a frame within the wait").expect("a frame before end of stream")
    }

    /// The next frame, which must be a RelayNotice: (code, sequence, text).
    pub fn notice(&mut self) -> (u16, u64, String) {
        let frame = self.frame();
        notice_of(&frame).unwrap_or_else(|| panic!("expected a notice, got {:?}", Header::view(&frame)))
    }

    /// Waits (bounded) until the relay closes this connection; frames before that are returned.
    pub fn until_closed(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            match self.try_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return frames,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return frames,
                Err(e) => panic!("the connection was not closed within the wait: {e}"),
            }
        }
    }
}

/// The (code, sequence, text) of a RelayNotice frame.
pub fn notice_of(frame: &[u8]) -> Option<(u16, u64, String)> {
    let first: Tlv<'_> = tlvs(&frame[32..]).next()?.ok()?;
    match first.decode().ok()? {
        Value::RelayNotice(RelayNotice { code, sequence, text }) => Some((code, sequence, text.to_string())),
        _ => None,
    }
}

/// Builds a frame with these TLVs.
pub fn build(domain: RelayDomain, source: u8, sequence: u64, tlvs: &[(u8, &[u8])], crc: Crc) -> Vec<u8> {
    let mut buf = vec![0; 64 + tlvs.iter().map(|(_, v)| 5 + v.len()).sum::<usize>()];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    for (t, v) in tlvs {
        builder.tlv(*t, v).unwrap();
    }
    let len = builder.finish(sequence, 1_700_000_000_000_000_000 + sequence, crc);
    buf.truncate(len);
    buf
}

/// A market-data frame routed by a vendor TLV, padded to `size` bytes (at least 34).
pub fn md_frame(source: u8, sequence: u64, size: usize) -> Vec<u8> {
    let pad = vec![sequence as u8; size - 34];
    build(RelayDomain::MarketData, source, sequence, &[(200, &pad)], Crc::Compute)
}

/// A Subscribe control frame (the client library's).
pub fn subscribe_frame(subscribe: &Subscribe) -> Vec<u8> {
    torq::client::subscribe_frame(subscribe, 1).unwrap()
}

/// Sequence of a frame.
pub fn sequence_of(frame: &[u8]) -> u64 {
    Header::view(frame).unwrap().sequence()
}

/// Source of a frame.
pub fn source_of(frame: &[u8]) -> u8 {
    Header::view(frame).unwrap().source()
}

// Helpers added for tests/relay_policies.rs.

impl Relay {
    /// Starts `binary` with exactly `args` (nothing added), its stderr in `dir/relay.log`, and
    /// waits (bounded) until `socket` accepts a connection.
    pub fn spawn(binary: &str, args: &[&str], socket: PathBuf, dir: PathBuf) -> Relay {
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("relay.log")).unwrap()))
            .spawn()
            .expect("the relay starts");
        let mut relay = Relay { child, socket, dir };
        relay.wait_ready();
        relay
    }

    /// Starts `relay --config FILE --log-level debug` where FILE is `toml` with `@SOCKET@`
    /// replaced by a private socket path and `@DIR@` by a private directory; returns once the
    /// socket accepts.
    pub fn start_config(binary: &str, toml: &str) -> Relay {
        let dir = temp_dir("relay-config");
        let socket = dir.join("relay").join("relay.sock");
        let text = toml.replace("@SOCKET@", socket.to_str().unwrap()).replace("@DIR@", dir.to_str().unwrap());
        let file = dir.join("relay.toml");
        std::fs::write(&file, text).unwrap();
        let args = ["--config", file.to_str().unwrap(), "--log-level", "debug"];
        Relay::spawn(binary, &args, socket, dir)
    }

    /// Waits (bounded) until `path` accepts a connection too.
    pub fn wait_socket(&mut self, path: &Path) {
        let start = Instant::now();
        while UnixStream::connect(path).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the relay exited with {status}: {}", self.log());
            }
            assert!(start.elapsed() < WAIT, "the relay did not open {}", path.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The address the metrics endpoint is bound to (the free port `--metrics-addr
    /// 127.0.0.1:0` took), from the log line the relay writes once it listens: `metrics on
    /// http://ADDR/metrics`.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        const LINE: &str = "metrics on http://";
        let log = self.wait_log(LINE, 1);
        let at = log.find(LINE).unwrap() + LINE.len();
        let addr = log[at..].split('/').next().unwrap();
        addr.parse().unwrap_or_else(|e| panic!("{addr:?} in the relay's log: {e}"))
    }

    /// Waits (bounded) until the log holds `needle` at least `count` times; returns the log.
    pub fn wait_log(&self, needle: &str, count: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(start.elapsed() < WAIT, "the log did not show {needle:?} {count} times:\n{log}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status; unlike [`Relay::stop`] the relay
    /// (and its log) stays available.
    pub fn terminate(&mut self) -> ExitStatus {
        sigterm(&self.child);
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "the relay did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Client {
    /// A second handle on the same connection (e.g. to read on another thread while this one
    /// writes), with its own frame buffer.
    pub fn try_clone(&self) -> Client {
        let stream = self.stream.try_clone().expect("clone the connection");
        Client { stream, reader: FrameReader::new(1 << 20) }
    }
}

/// Waits (bounded) for a child process to exit.
pub fn wait_child(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() >= WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    use rustix::process::{Pid, Signal, kill_process};
    kill_process(Pid::from_child(child), Signal::TERM).expect("SIGTERM sent");
}

/// The relay's Prometheus text: `GET /metrics` at `addr` (bounded by [`WAIT`]).
pub fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// The value of the sample `series` (name and labels, e.g. `x_total{domain="signal"}`) in
/// Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
