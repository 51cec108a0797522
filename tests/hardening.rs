//! Regression tests, over real processes and sockets, for what a hostile or broken local
//! client, a failing disk or a signal could do to the relay (the hardening issue).

mod util;

use std::io::Read;
use std::time::Duration;

use torq::protocol::{Crc, OPTION_NOTICES, RelayDomain, Role, Subscribe};
use util::*;

const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");
const RELAY: &str = env!("CARGO_BIN_EXE_relay");

fn exec_frame(sequence: u64) -> Vec<u8> {
    build(RelayDomain::Execution, 20, sequence, &[(200, &[sequence as u8; 66])], Crc::Compute)
}

fn subscriber(relay: &Relay, role: Role) -> Client {
    let mut client = relay.connect();
    client.subscribe(&Subscribe { role, options: OPTION_NOTICES, filters: vec![] });
    client
}

/// The (source, sequence) of every `accepted` record of an audit file; panics on a torn line.
fn accepted_records(text: &str) -> Vec<(u8, u64)> {
    assert!(text.is_empty() || text.ends_with('\n'), "the audit file ends in a torn line");
    let field = |line: &str, key: &str| -> u64 {
        let at = line.find(key).unwrap_or_else(|| panic!("no {key} in {line:?}")) + key.len();
        line[at..].split(' ').next().unwrap().parse().unwrap()
    };
    text.lines()
        .filter(|l| l.contains(" accepted "))
        .map(|l| (field(l, "source=") as u8, field(l, "sequence=")))
        .collect()
}

#[test]
fn an_audit_file_that_cannot_be_written_fails_closed() {
    // /dev/full takes the open and the lock, and fails every write with ENOSPC.
    let mut relay = Relay::start(EXECUTION, &["--audit-file", "/dev/full"]);
    let mut sub = relay.connect();
    sub.send(&subscribe_frame(&Subscribe { role: Role::Subscribe, options: 0, filters: vec![] }));
    let mut publisher = relay.connect();
    publisher.send(&(1..=100).flat_map(exec_frame).collect::<Vec<u8>>());
    sub.stream.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut got = [0u8; 64];
    let read = sub.stream.read(&mut got);
    assert!(read.is_err(), "a frame was delivered without its audit record: {read:?}");
    // The frames were never delivered: a stop reports them, exit status 3.
    assert_eq!(relay.terminate().code(), Some(3));
}

#[test]
fn two_relays_cannot_share_an_audit_file() {
    let dir = temp_dir("shared-audit");
    let audit = dir.join("audit.log");
    let audit = audit.to_str().unwrap();
    // The first relay's socket is ready only once its audit file is locked.
    let first = Relay::start(EXECUTION, &["--audit-file", audit]);
    let socket = dir.join("second.sock");
    let mut second = std::process::Command::new(EXECUTION)
        .args(["--socket", socket.to_str().unwrap(), "--audit-file", audit])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut second).code(), Some(1), "the second relay must refuse to start");
    let mut stderr = String::new();
    second.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains(audit), "the error names the file: {stderr}");
    assert!(!socket.exists(), "a relay that cannot audit never shows its socket");
    drop(first);
}

/// Publishes `frames` on its own thread, ignoring write errors (the relay may stop or die).
fn publish_in_background(mut publisher: Client, frames: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        for chunk in frames.chunks(64 << 10) {
            if publisher.stream.write_all(chunk).is_err() {
                return;
            }
        }
    })
}

#[test]
fn every_delivered_frame_was_audited_even_after_kill_9() {
    let dir = temp_dir("audit-kill");
    let audit = dir.join("audit.log");
    let mut relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut sub = subscriber(&relay, Role::Subscribe);
    let publisher = subscriber(&relay, Role::Publish);
    let sender = publish_in_background(publisher, (1..=200_000).flat_map(exec_frame).collect());
    let mut delivered = Vec::new();
    while delivered.len() < 20_000 {
        let frame = sub.frame();
        if notice_of(&frame).is_none() {
            delivered.push(sequence_of(&frame));
        }
    }
    relay.child.kill().unwrap(); // SIGKILL, mid-traffic
    relay.child.wait().unwrap();
    for frame in sub.until_closed() {
        if notice_of(&frame).is_none() {
            delivered.push(sequence_of(&frame));
        }
    }
    sender.join().unwrap();
    let records = accepted_records(&std::fs::read_to_string(&audit).unwrap());
    let audited: std::collections::HashSet<u64> =
        records.iter().filter(|(source, _)| *source == 20).map(|(_, s)| *s).collect();
    let unaudited: Vec<u64> = delivered.iter().copied().filter(|s| !audited.contains(s)).collect();
    assert!(
        unaudited.is_empty(),
        "{} delivered frames have no record, e.g. {:?}",
        unaudited.len(),
        &unaudited[..unaudited.len().min(5)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn only_the_first_hello_of_a_connection_is_audited() {
    let dir = temp_dir("audit-hello");
    let audit = dir.join("audit.log");
    let mut relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut client = relay.connect();
    client.send(&LEGACY_HELLO.repeat(1000));
    // Acknowledged: everything before it was read.
    client.subscribe(&Subscribe { role: Role::Publish, options: OPTION_NOTICES, filters: vec![] });
    assert_eq!(relay.terminate().code(), Some(0));
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains(" hello ")).count(), 1, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stop_during_a_stall_reports_the_undelivered_frames() {
    // The stall timeout equals the flush deadline: the subscriber has kept the publisher paused
    // for a while when the stop comes, and the stall rule would have cut it off (losing its
    // frames with exit status 0) inside the flush.
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = \"execution\"\nqueue_bytes = 2130\naudit_file = \"@DIR@/audit.log\"\n\
         [transport]\npath = \"@SOCKET@\"\n[validation]\nmax_message_size = 1065\n\
         [engine]\ncores = \"none:2\"\nstall_timeout_ms = 600\nflush_deadline_ms = 600\n",
    );
    let _stuck = subscriber(&relay, Role::Subscribe);
    let publisher = subscriber(&relay, Role::Publish);
    let sender = publish_in_background(publisher, (1..=5_000).flat_map(exec_frame).collect());
    // Not a synchronisation: the publisher is to stay paused this long before the stop.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(relay.terminate().code(), Some(3), "frames left undelivered make the exit status 3");
    sender.join().unwrap();
}

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");

/// The number of open descriptors and threads of a process.
fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count());
    (count(format!("/proc/{pid}/fd")), count(format!("/proc/{pid}/task")))
}

/// The port of `http://127.0.0.1:PORT/metrics` in the relay's log, once it is there.
fn metrics_port(relay: &Relay) -> u16 {
    relay.metrics_addr().port()
}

/// Waits (bounded) until the relay has started all its threads: the housekeeping thread is
/// the last one started, after the metrics endpoint has logged its port.
fn wait_all_threads(pid: u32) {
    let start = std::time::Instant::now();
    let started = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().any(|task| {
                std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == "housekeeping")
            })
        })
    };
    while !started() {
        assert!(start.elapsed() < WAIT, "the relay never started its housekeeping thread");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Opens `count` connections to the metrics port that never complete a request: every other
/// one sends half a request line, the rest nothing.
fn idle_metrics_connections(port: u16, count: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    (0..count)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect_timeout(&addr, WAIT)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            if i % 2 == 1 {
                // The relay may have closed it already (to make room): a failure is fine.
                let _ = stream.write_all(b"GET /metr");
            }
            stream
        })
        .collect()
}

/// `GET /metrics HTTP/1.0` on a new connection; returns the whole answer, failing the test
/// unless it came within `limit`, whole (its `Content-Length` bytes of body).
fn scrape_within(port: u16, limit: Duration) -> String {
    use std::io::Write;
    let start = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(read.is_ok() && elapsed < limit, "a scrape took {elapsed:?} ({read:?}), got {:?}", text);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let length = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap();
    assert_eq!(body.len(), length.parse::<usize>().unwrap(), "a partial answer: {text}");
    assert!(body.contains("torq_relay_frames_in_total"), "{text}");
    text
}

#[test]
fn a_scrape_is_answered_within_a_second_whatever_idle_connections_do() {
    let relay = Relay::start(MARKET_DATA, &["--metrics-addr", "127.0.0.1:0"]);
    let port = metrics_port(&relay);
    let idle = idle_metrics_connections(port, 500);
    // Within a second by the endpoint's promise; two here, so a loaded machine does not fail
    // the test (one connection at a time with 250 ms each took two minutes).
    scrape_within(port, Duration::from_secs(2));
    drop(idle);
}

#[test]
fn the_metrics_endpoint_holds_at_most_64_connections_whatever_clients_do() {
    let relay = Relay::start(MARKET_DATA, &["--metrics-addr", "127.0.0.1:0"]);
    let port = metrics_port(&relay);
    assert_ne!(port, 0, "the bound port is logged, not port 0");
    assert!(get(port, "/metrics").starts_with("HTTP/1.1 200 OK"));
    wait_all_threads(relay.child.id());
    let before = fds_and_threads(relay.child.id());
    // Connections that never complete a request, far more than the endpoint holds.
    let idle = idle_metrics_connections(port, 500);
    std::thread::sleep(Duration::from_millis(100));
    let during = fds_and_threads(relay.child.id());
    // At most 64 metrics connections (plus, at most, the start's readiness probe, which the
    // relay may not have closed yet); an unbounded server would hold one per idle connection.
    assert!(during.0 <= before.0 + 64 + 1, "descriptors {before:?} -> {during:?}");
    assert_eq!(during.1, before.1, "threads {before:?} -> {during:?}");
    // A real request is answered meanwhile, and stays within the bound.
    let reply = get(port, "/metrics");
    assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.contains("torq_relay_frames_in_total"), "{reply}");
    let after = fds_and_threads(relay.child.id());
    assert!(after.0 <= before.0 + 64 + 1, "descriptors {before:?} -> {after:?}");
    assert_eq!(after.1, before.1, "threads {before:?} -> {after:?}");
    // The relay itself was never short of anything.
    let mut client = relay.connect();
    client.subscribe(&Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: vec![] });
    drop(idle);
}

#[test]
fn a_metrics_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("metrics-in-use");
    let socket = dir.join("relay.sock");
    let mut child = std::process::Command::new(MARKET_DATA)
        .args(["--socket", socket.to_str().unwrap(), "--metrics-addr", &addr])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut child).code(), Some(1));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains(&addr), "the error names {addr}: {stderr}");
    assert!(!socket.exists(), "a relay that could not start leaves no socket");
}

#[test]
fn clients_left_in_the_backlog_by_emfile_are_accepted_later() {
    // 48 descriptors: the relay's own ~20, then clients until accept fails with EMFILE.
    let dir = temp_dir("emfile");
    let socket = dir.join("relay.sock");
    let command = format!("ulimit -n 48 && exec {MARKET_DATA} --socket {} --cores none:1", socket.display());
    let child = std::process::Command::new("bash")
        .args(["-c", &command])
        .stderr(std::fs::File::create(dir.join("relay.log")).unwrap())
        .spawn()
        .unwrap();
    let mut relay = Relay { child, socket: socket.clone(), dir };
    relay.wait_ready();
    let hello = Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: vec![] };
    let mut clients: Vec<Client> = (0..60).map(|_| relay.connect()).collect();
    for client in &mut clients {
        client.send(&subscribe_frame(&hello));
        client.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    }
    // Those accepted answer; the others wait in the backlog.
    let (answered, waiting): (Vec<Client>, Vec<Client>) =
        clients.into_iter().partition(|c| c.try_clone().try_frame().is_ok_and(|f| f.is_some()));
    assert!(!waiting.is_empty(), "the descriptor limit was never reached");
    assert!(!answered.is_empty(), "nobody was accepted");
    // Descriptors come free; no new client connects: the backlog must be taken anyway.
    drop(answered);
    for mut client in waiting {
        client.stream.set_read_timeout(Some(WAIT)).unwrap();
        let (code, _, _) = client.notice();
        assert_eq!(code, 1, "a client left in the backlog was never accepted");
    }
}

#[test]
fn refused_connections_do_not_flood_the_log() {
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = 1\n[transport]\npath = \"@SOCKET@\"\n[performance]\nmax_connections = 2\n\
         [engine]\nmetrics_addr = \"127.0.0.1:0\"\n",
    );
    let port = metrics_port(&relay);
    let mut first = relay.connect();
    first.subscribe(&Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: vec![] });
    // Kept open: one of them may take the place of the readiness probe, and must keep it.
    let _refused: Vec<_> =
        (0..300).map(|_| std::os::unix::net::UnixStream::connect(&relay.socket).unwrap()).collect();
    // Wait (bounded) until the relay has refused every one of them.
    let start = std::time::Instant::now();
    // (The readiness probe of the start may still hold the second place, or not.)
    let refused = || {
        let text = get(port, "/metrics");
        let line = text
            .lines()
            .find(|l| l.starts_with("torq_relay_connections_refused_total{"))
            .unwrap()
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    while refused() < 299 {
        assert!(start.elapsed() < WAIT, "the relay did not refuse 300 connections");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(relay.terminate().code(), Some(0));
    let log = relay.log();
    let lines = log.lines().filter(|l| l.contains("refused: max_connections")).count();
    assert!((1..=5).contains(&lines), "{lines} lines for 300 refused connections:\n{log}");
}

#[test]
fn sighup_stops_the_relay_like_sigterm() {
    let mut relay = Relay::start(MARKET_DATA, &[]);
    use rustix::process::{Pid, Signal, kill_process};
    kill_process(Pid::from_child(&relay.child), Signal::HUP).unwrap();
    assert_eq!(relay.wait_exit().code(), Some(0), "a flushed stop, not a kill");
    assert!(!relay.socket.exists(), "the relay removed its socket");
}

/// Resident memory of a process, in MiB: now (`VmRSS`) or at its peak (`VmHWM`).
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

fn rss_mib(pid: u32) -> u64 {
    memory_mib(pid, "VmRSS:")
}

#[test]
fn memory_is_given_back_after_a_burst_of_slow_subscribers() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let pid = relay.child.id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Slow subscribers: each reads 8 KiB every 20 ms, so its queue fills with copies.
    let readers: Vec<_> = (0..150)
        .map(|_| {
            let mut client = relay.connect();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if client.stream.read(&mut chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    // One publisher (the client library) sends frames of 128 bytes, 1024 at a time, until the
    // relay's queues hold 96 MiB (at most 5 M frames: how fast they fill depends on the machine).
    let options = torq::client::PublisherOptions::new(RelayDomain::MarketData, 1);
    let mut publisher = torq::client::Publisher::connect(&relay.socket, options).unwrap();
    let batch: Vec<u8> = (0..1024).flat_map(|i| md_frame(1, i, 128)).collect();
    for sent in 0..5_000_000 / 1024 {
        publisher.offer(&batch).unwrap();
        if sent % 64 == 63 && memory_mib(pid, "VmHWM:") >= 96 {
            break;
        }
    }
    publisher.flush().unwrap();
    drop(publisher);
    // The high-water mark: the queues may already be draining when the publisher is done.
    let peak = memory_mib(pid, "VmHWM:");
    assert!(peak >= 64, "the burst was too small to show anything: {peak} MiB");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    // Every subscriber has left: within a few seconds the memory is back with the system.
    let start = std::time::Instant::now();
    while rss_mib(pid) > 32.min(peak / 2) {
        assert!(
            start.elapsed() < WAIT,
            "{} MiB still resident after the burst (peak {peak} MiB)",
            rss_mib(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
