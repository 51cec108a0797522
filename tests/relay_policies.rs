//! Slow-consumer policies, heartbeats, limits, allow-lists, socket paths, stop and the other
//! binaries, over real Unix sockets, each relay with two reactors. Every wait is bounded; where
//! a scenario needs a subscriber to keep up, it reads in lockstep with the publisher instead of
//! relying on timing.

mod util;

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use torq::protocol::{
    Crc, Header, Heartbeat, OPTION_HEARTBEATS, OPTION_NOTICES, RelayDomain, Role, Subscribe, Tlv, Value, tlvs,
};
use util::*;

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");
const SIGNAL: &str = env!("CARGO_BIN_EXE_signal_relay");
const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");
const RELAY: &str = env!("CARGO_BIN_EXE_relay");
const RELAY_DEV: &str = env!("CARGO_BIN_EXE_relay_dev");

/// Flags for a small queue: two frames of the smallest allowed maximum size.
const SMALL_QUEUE: [&str; 4] = ["--max-message-size", "1065", "--queue-bytes", "2130"];

fn subscribe(role: Role, options: u8) -> Subscribe {
    Subscribe { role, options, filters: vec![] }
}

/// A data frame of `domain` routed by a vendor TLV (allowed on every relay), `size` bytes.
fn data_frame(domain: RelayDomain, source: u8, sequence: u64, size: usize) -> Vec<u8> {
    let pad = vec![sequence as u8; size - 34];
    build(domain, source, sequence, &[(200, &pad)], Crc::Compute)
}

fn exec_frame(source: u8, sequence: u64, size: usize) -> Vec<u8> {
    data_frame(RelayDomain::Execution, source, sequence, size)
}

/// A connection that asked for notices and role `role`, acknowledged (so it is registered).
fn client(relay: &Relay, role: Role) -> Client {
    let mut client = relay.connect();
    client.subscribe(&subscribe(role, OPTION_NOTICES));
    client
}

/// The data frames (notices left out) of `frames`.
fn data_only(frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.into_iter().filter(|f| notice_of(f).is_none()).collect()
}

/// The number after `label` in the last stats line of `relay` (e.g. `dropped 12,`).
fn stat(log: &str, relay: &str, label: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("{relay}: in ")) && l.contains(label))
        .unwrap_or_else(|| panic!("no stats line for {relay} in the log:\n{log}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {label:?} in {line}"))
}

/// The numbers of a log line containing `needle`, in order.
fn numbers_of_line(log: &str, needle: &str) -> Vec<u64> {
    let line = log.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"));
    let tail = &line[line.find(needle).unwrap()..];
    tail.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect()
}

/// Asserts that `frames` are exactly the frames `1..=n` built by `make`, in order.
fn assert_consecutive(frames: &[Vec<u8>], n: u64, make: impl Fn(u64) -> Vec<u8>, who: &str) {
    assert_eq!(frames.len() as u64, n, "{who}: frame count");
    for (i, frame) in frames.iter().enumerate() {
        let sequence = i as u64 + 1;
        assert!(
            *frame == make(sequence),
            "{who}: frame {i} is sequence {} not {sequence}",
            sequence_of(frame)
        );
    }
}

/// Reads `n` data frames from `stream` a little at a time, pausing now and then: a slow but
/// steady reader. Frames are returned whole; the pacing is load, not synchronisation.
fn read_slowly(mut stream: UnixStream, n: usize) -> Vec<Vec<u8>> {
    let mut reader = torq::client::FrameReader::new(1 << 20);
    let mut frames = Vec::with_capacity(n);
    let mut chunk = [0u8; 256];
    let mut reads = 0u64;
    while frames.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the relay closed the slow reader after {} frames", frames.len()),
            Ok(got) => {
                reader.spare()[..got].copy_from_slice(&chunk[..got]);
                reader.filled(got);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                panic!("the slow reader got no data within the wait after {} frames: {e}", frames.len())
            }
        }
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(frame.bytes().to_vec());
        }
        reads += 1;
        if reads.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    frames
}

#[test]
fn drop_policy_skips_frames_for_the_slow_subscriber_only() {
    let mut relay = Relay::start(MARKET_DATA, &SMALL_QUEUE);
    let mut slow = client(&relay, Role::Subscribe);
    let mut fast = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    // The fast subscriber reads in lockstep, two frames (2000 B, within its 2130 B queue) at a
    // time, so it never falls behind whatever the scheduling; any drop on it shows as a notice
    // or a missing frame.
    let mut publish = |range: std::ops::RangeInclusive<u64>| {
        for first in range.step_by(2) {
            let frames = [md_frame(1, first, 1000), md_frame(1, first + 1, 1000)];
            publisher.send(&frames.concat());
            for frame in &frames {
                let got = fast.frame();
                assert!(
                    got == *frame,
                    "fast: {:?} instead of sequence {}",
                    notice_of(&got),
                    sequence_of(frame)
                );
            }
        }
    };
    // 5 MB, far beyond the slow subscriber's socket buffer and queue: most of it is dropped.
    const N1: u64 = 5000;
    publish(1..=N1);
    let mut slow_view = SlowView::default();
    // The slow subscriber asks again and reads up to the acknowledgement: everything queued
    // to it before is then written, so it has room again...
    slow.send(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_NOTICES)));
    while !slow_view.read(&mut slow) {}
    // ... and the next frames reach it, after a gap.
    const N: u64 = N1 + 20;
    publish(N1 + 1..=N);
    // Every frame is either delivered (in order) or counted in a `dropped=` notice.
    while slow_view.delivered.len() as u64 + slow_view.notified < N {
        assert!(!slow_view.read(&mut slow), "a second acknowledgement");
    }
    let SlowView { delivered, notified, notices, .. } = slow_view;
    assert_eq!(delivered.len() as u64 + notified, N, "delivered + counted as dropped");
    assert!(!notices.is_empty(), "no notice 4");
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "the slow subscriber's frames are out of order");
    assert_eq!(delivered.first(), Some(&1));
    assert!(delivered.ends_with(&(N1 + 1..=N).collect::<Vec<_>>()), "the frames after it drained");
    assert!(delivered.windows(2).any(|w| w[1] > w[0] + 1), "no gap");
    for first_dropped in &notices {
        assert!(
            (1..=N).contains(first_dropped) && delivered.binary_search(first_dropped).is_err(),
            "notice 4 names sequence {first_dropped}, which was delivered"
        );
    }
    assert_eq!(relay.terminate().code(), Some(0));
    let log = relay.log();
    assert_eq!(stat(&log, "market-data", "dropped "), notified, "the stats line counts every dropped frame");
}

#[test]
fn drop_policy_counts_every_frame_of_batches_larger_than_the_queue() {
    let mut relay = Relay::start(MARKET_DATA, &SMALL_QUEUE);
    let mut slow = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    // 100 writes of 40 frames of 100 B: each read holds several times the 2130 B queue, so
    // runs overflow it in the middle and the rest of each run is dropped whole.
    const N1: u64 = 4000;
    for first in (1..=N1).step_by(40) {
        publisher.send(&(first..first + 40).flat_map(|i| md_frame(1, i, 100)).collect::<Vec<u8>>());
    }
    // Read up to the acknowledgement of a second Subscribe, then one more frame after it.
    slow.send(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_NOTICES)));
    let mut view = SlowView { size: 100, ..SlowView::default() };
    while !view.read(&mut slow) {}
    publisher.send(&md_frame(1, N1 + 1, 100));
    while view.delivered.len() as u64 + view.notified < N1 + 1 {
        assert!(!view.read(&mut slow), "a second acknowledgement");
    }
    assert_eq!(view.delivered.len() as u64 + view.notified, N1 + 1, "delivered + counted as dropped");
    assert!(view.notified > 0 && view.delivered.ends_with(&[N1 + 1]), "{} dropped", view.notified);
    assert!(view.delivered.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(relay.terminate().code(), Some(0));
    assert_eq!(stat(&relay.log(), "market-data", "dropped "), view.notified);
}

/// What a drop-policy subscriber has seen.
#[derive(Default)]
struct SlowView {
    /// Size of every published frame (1000 B when left 0).
    size: usize,
    delivered: Vec<u64>,
    notified: u64,
    notices: Vec<u64>,
}

impl SlowView {
    /// Reads one frame; returns whether it was the Subscribe acknowledgement (notice 1).
    fn read(&mut self, slow: &mut Client) -> bool {
        let frame = slow.frame();
        match notice_of(&frame) {
            Some((1, ..)) => return true,
            Some((4, first_dropped, text)) => {
                let count = text
                    .strip_prefix("dropped=")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("notice 4 text {text:?}"));
                assert!(count > 0);
                self.notified += count;
                self.notices.push(first_dropped);
            }
            Some(other) => panic!("unexpected notice {other:?}"),
            None => {
                let sequence = sequence_of(&frame);
                assert_eq!(frame, md_frame(1, sequence, if self.size == 0 { 1000 } else { self.size }));
                self.delivered.push(sequence);
            }
        }
        false
    }
}

#[test]
fn disconnect_policy_closes_the_slow_subscriber() {
    let cases: [(&str, RelayDomain, &[&str], &str); 2] = [
        (MARKET_DATA, RelayDomain::MarketData, &["--slow-consumer", "disconnect"], "market-data"),
        (SIGNAL, RelayDomain::Signal, &[], "signal"),
    ];
    for (binary, domain, policy, name) in cases {
        let args: Vec<&str> = SMALL_QUEUE.iter().copied().chain(policy.iter().copied()).collect();
        let mut relay = Relay::start(binary, &args);
        let mut slow = client(&relay, Role::Subscribe);
        let mut fast = client(&relay, Role::Subscribe);
        let mut publisher = client(&relay, Role::Publish);
        const N: u64 = 5000;
        let make = |sequence| data_frame(domain, 1, sequence, 1000);
        for first in (1..=N).step_by(2) {
            let frames = [make(first), make(first + 1)];
            publisher.send(&frames.concat());
            for frame in &frames {
                let got = fast.frame();
                assert!(
                    got == *frame,
                    "{name} fast: {:?} instead of {}",
                    notice_of(&got),
                    sequence_of(frame)
                );
            }
        }
        // The slow one was closed: it reads what its socket held, a prefix without gaps.
        let got = data_only(slow.until_closed());
        assert!(!got.is_empty() && (got.len() as u64) < N, "{name}: {} frames", got.len());
        assert_consecutive(&got, got.len() as u64, make, name);
        assert_eq!(relay.terminate().code(), Some(0));
        let log = relay.log();
        assert!(log.contains("disconnected as a slow consumer"), "{name}: {log}");
        assert_eq!(stat(&log, name, "slow disconnects "), 1, "{name}");
    }
}

#[test]
fn block_policy_is_lossless_for_a_slow_reader() {
    let audit = temp_dir("audit").join("audit.log");
    let mut args = SMALL_QUEUE.to_vec();
    args.extend(["--audit-file", audit.to_str().unwrap()]);
    let mut relay = Relay::start(EXECUTION, &args);
    let slow = client(&relay, Role::Subscribe);
    let mut fast = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    const N: u64 = 20_000;
    let slow_reader = std::thread::spawn(move || read_slowly(slow.stream, N as usize));
    let fast_reader = std::thread::spawn(move || (0..N).map(|_| fast.frame()).collect::<Vec<_>>());
    let frames: Vec<u8> = (1..=N).flat_map(|i| exec_frame(20, i, 100)).collect();
    publisher.send(&frames);
    let slow_got = slow_reader.join().expect("the slow reader got every frame");
    let fast_got = fast_reader.join().expect("the fast reader got every frame");
    assert_consecutive(&slow_got, N, |i| exec_frame(20, i, 100), "slow");
    assert_consecutive(&fast_got, N, |i| exec_frame(20, i, 100), "fast");
    assert_eq!(relay.terminate().code(), Some(0));
    let log = relay.log();
    assert_eq!(stat(&log, "execution", "dropped "), 0);
    assert_eq!(stat(&log, "execution", "slow disconnects "), 0);
    eprintln!("block: publishers paused {} times", stat(&log, "execution", "pauses "));
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

/// An execution relay from a file: small queue, short stall timeout and flush deadline.
fn execution_config(extra_engine: &str) -> String {
    format!(
        "[relay]\ndomain = \"execution\"\nqueue_bytes = 2130\naudit_file = \"@DIR@/audit.log\"\n\
         [transport]\npath = \"@SOCKET@\"\n[validation]\nmax_message_size = 1065\n\
         [engine]\ncores = \"none:2\"\n{extra_engine}\n"
    )
}

#[test]
fn stalled_reader_under_block_is_disconnected_and_publishing_resumes() {
    let mut relay = Relay::start_config(RELAY, &execution_config("stall_timeout_ms = 300"));
    let mut stalled = client(&relay, Role::Subscribe);
    let mut fast = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    // The fast subscriber reads in lockstep, two frames (2000 B, within its queue) at a time,
    // so publishers are never paused on its account: only the stalled one holds them, until it
    // is cut off after the stall timeout. 3 MB fill its socket and queue many times over.
    const N: u64 = 3000;
    let mut publish = |range: std::ops::RangeInclusive<u64>| {
        for first in range.step_by(2) {
            let frames = [exec_frame(20, first, 1000), exec_frame(20, first + 1, 1000)];
            publisher.send(&frames.concat());
            for frame in &frames {
                let got = fast.frame();
                assert!(got == *frame, "fast: {:?} instead of {}", notice_of(&got), sequence_of(frame));
            }
        }
    };
    publish(1..=N);
    let got = data_only(stalled.until_closed());
    let k = got.len() as u64;
    assert!(k < N, "the stalled subscriber got all {N} frames");
    assert_consecutive(&got, k, |i| exec_frame(20, i, 1000), "stalled");
    let log = relay.wait_log("stalled for", 1);
    // "connection C stalled for 300ms: disconnected, L frames lost (sequences A..=B)"
    let numbers = numbers_of_line(&log, "stalled for ");
    let [_, lost, first, last] = numbers[..] else { panic!("{log}") };
    assert!(lost > 0 && last <= N, "{log}");
    assert_eq!(lost, last - first + 1, "{log}");
    // The reported range covers the frames it did not get (see the report: it may also
    // include frames of a partly written run that were delivered).
    assert!(first <= k + 1 && k < last, "frames {k}+1.. lost, reported {first}..={last}:\n{log}");
    // Frames published after the stall was resolved still flow.
    publish(N + 1..=N + 100);
    assert_eq!(relay.terminate().code(), Some(0));
}

#[test]
fn publish_and_subscribe_on_one_connection_under_block() {
    let audit = temp_dir("audit").join("audit.log");
    let mut args = SMALL_QUEUE.to_vec();
    args.extend(["--audit-file", audit.to_str().unwrap()]);
    let mut relay = Relay::start(EXECUTION, &args);
    let mut watcher = client(&relay, Role::Subscribe);
    let both = client(&relay, Role::PublishSubscribe);
    let mut other = client(&relay, Role::Publish);
    const N: u64 = 10_000;
    // `both` reads on its own thread while it writes; `other` publishes to it meanwhile.
    let mut both_reader = both.try_clone();
    let reading = std::thread::spawn(move || (0..N).map(|_| both_reader.frame()).collect::<Vec<_>>());
    let mut both_writer = both;
    let writing = std::thread::spawn(move || {
        both_writer.send(&(1..=N).flat_map(|i| exec_frame(2, i, 200)).collect::<Vec<u8>>());
        both_writer
    });
    let other_writing = std::thread::spawn(move || {
        other.send(&(1..=N).flat_map(|i| exec_frame(1, i, 200)).collect::<Vec<u8>>());
        other
    });
    let mut last = [0u64; 3];
    for _ in 0..2 * N {
        let frame = watcher.frame();
        let source = usize::from(source_of(&frame));
        assert!(source == 1 || source == 2, "{:?}", notice_of(&frame));
        assert_eq!(sequence_of(&frame), last[source] + 1, "source {source} out of order");
        assert_eq!(frame, exec_frame(source as u8, last[source] + 1, 200));
        last[source] += 1;
    }
    let _both = writing.join().expect("the role-2 client wrote everything");
    let _other = other_writing.join().expect("the other publisher wrote everything");
    let got = reading.join().expect("the role-2 client read everything");
    assert_consecutive(&got, N, |i| exec_frame(1, i, 200), "role 2 (never its own frames)");
    assert_eq!(relay.terminate().code(), Some(0));
    let _ = std::fs::remove_dir_all(audit.parent().unwrap());
}

#[test]
fn heartbeats_only_to_who_asked() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut legacy = subscribers_with_probe(&relay);
    let start = Instant::now();
    let mut sub = relay.connect();
    sub.send(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_HEARTBEATS)));
    let heartbeat = |frame: &[u8]| -> Option<Heartbeat> {
        let tlv: Tlv<'_> = tlvs(&frame[32..]).next()?.ok()?;
        match tlv.decode().ok()? {
            Value::Heartbeat(h) => Some(h),
            _ => None,
        }
    };
    let first = sub.frame();
    let elapsed = start.elapsed();
    let header = Header::view(&first).unwrap();
    assert_eq!((header.domain(), header.source()), (Some(RelayDomain::System), 80));
    assert_ne!(header.checksum(), 0);
    let beat = heartbeat(&first).expect("a Heartbeat TLV");
    assert_eq!(beat.frames_sent, 0);
    assert!(elapsed >= Duration::from_secs(1), "a heartbeat after only {elapsed:?} of silence");
    assert!(elapsed < Duration::from_secs(3), "the first heartbeat took {elapsed:?}");
    // A data frame, then the next heartbeat counts it.
    let data = md_frame(5, 1, 64);
    relay.connect().send(&data);
    loop {
        let frame = sub.frame();
        if heartbeat(&frame).is_none() {
            assert_eq!(frame, data);
            break;
        }
    }
    let after = Instant::now();
    let next = sub.frame();
    assert_eq!(heartbeat(&next).map(|h| h.frames_sent), Some(1));
    assert!(after.elapsed() < Duration::from_secs(3));
    // The legacy subscriber, connected before all this, got the data frame and no heartbeat.
    assert_eq!(legacy.frame(), data);
}

/// A legacy subscriber, registered (see `subscribers` in tests/relay.rs).
fn subscribers_with_probe(relay: &Relay) -> Client {
    let legacy = relay.connect();
    let mut probe = relay.connect();
    probe.subscribe(&subscribe(Role::Publish, OPTION_NOTICES));
    legacy
}

#[test]
fn max_connections_closes_the_connections_beyond() {
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = \"market_data\"\n[transport]\npath = \"@SOCKET@\"\n\
         [performance]\nmax_connections = 3\n[engine]\ncores = \"none:2\"\n",
    );
    // The readiness probe connected once and closed: wait until the relay has seen that.
    relay.wait_log("closed: peer closed", 1);
    let mut a = client(&relay, Role::Subscribe);
    let b = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    let mut over = relay.connect();
    assert!(over.until_closed().is_empty(), "a fourth connection got frames");
    relay.wait_log("max_connections 3 reached", 1);
    let first = md_frame(1, 1, 64);
    publisher.send(&first);
    assert_eq!(a.frame(), first);
    // Once one closes, a new connection is accepted again.
    drop(b);
    relay.wait_log("closed: peer closed", 2);
    // (The relay may still hand `first` to it: the batch can reach the other reactor after
    // `a` got it. Anything else before the acknowledgement and `second` is wrong.)
    let mut e = relay.connect();
    e.send(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_NOTICES)));
    let next = |e: &mut Client| loop {
        let frame = e.frame();
        if frame != first {
            return frame;
        }
    };
    assert_eq!(notice_of(&next(&mut e)).map(|n| n.0), Some(1), "the acknowledgement");
    let second = md_frame(1, 2, 64);
    publisher.send(&second);
    assert_eq!(a.frame(), second);
    assert_eq!(next(&mut e), second);
    assert_eq!(relay.terminate().code(), Some(0));
    assert_eq!(stat(&relay.log(), "market-data", "refused "), 1);
}

#[test]
fn connect_allow_list_refuses_other_uids() {
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = 1\nconnect_uids = [12345]\n[transport]\npath = \"@SOCKET@\"\n\
         [engine]\ncores = \"none:2\"\n",
    );
    let mut client = relay.connect();
    // The relay may close it before this arrives (a broken pipe then): either way, nothing.
    let _ = client.stream.write_all(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_NOTICES)));
    assert!(client.until_closed().is_empty(), "uid 0 is not in connect_uids");
    // One line: the readiness probe was refused first, and refusals are logged once a second.
    let log = relay.wait_log("outside the connect allow-list", 1);
    assert!(log.contains("uid=0"), "{log}");
    assert_eq!(relay.terminate().code(), Some(0));
}

#[test]
fn publisher_allow_list_denies_data_frames() {
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = 3\npublisher_uids = [12345]\naudit_file = \"@DIR@/audit.log\"\n\
         [transport]\npath = \"@SOCKET@\"\n[engine]\ncores = \"none:2\"\n",
    );
    let mut watcher = client(&relay, Role::Subscribe);
    // With notices: notice 6 naming the frame, then the connection is closed.
    let mut publisher = client(&relay, Role::Publish);
    let order = build(RelayDomain::Execution, 20, 7, &[(43, &[1; 16])], Crc::Compute);
    publisher.send(&order);
    let got = publisher.until_closed();
    assert_eq!(got.len(), 1, "one notice then the end");
    let (code, sequence, text) = notice_of(&got[0]).expect("a notice");
    assert_eq!((code, sequence), (6, 7));
    assert!(text.starts_with("not_allowed"), "{text}");
    // Without notices (a legacy publisher): closed, nothing sent.
    let mut legacy = relay.connect();
    legacy.send(&build(RelayDomain::Execution, 21, 1, &[(43, &[2; 16])], Crc::Compute));
    assert!(legacy.until_closed().is_empty());
    // Nothing was forwarded.
    assert_eq!(relay.terminate().code(), Some(0));
    let rest = watcher.until_closed();
    assert!(rest.iter().all(|f| notice_of(f).map(|n| n.0) == Some(5)), "the watcher got data");
    assert_eq!(stat(&relay.log(), "execution", ": in "), 0);
}

/// Runs `binary --socket path` directly; returns (exit code, stderr), bounded.
fn run_to_exit(binary: &str, socket: &Path) -> (Option<i32>, String) {
    exit_of(binary, &["--socket", socket.to_str().unwrap(), "--cores", "none:2"], socket.parent().unwrap())
}

/// Runs `binary args…` to its exit, its stderr in a file of `dir` (removed after);
/// returns (exit code, stderr), bounded.
fn exit_of(binary: &str, args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let err = dir.join(format!("stderr-{}", std::process::id()));
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child);
    let stderr = std::fs::read_to_string(&err).unwrap();
    std::fs::remove_file(&err).unwrap();
    (status.code(), stderr)
}

/// Reactors pinned to a core that is not there (or not this process's to run on) used to run
/// unpinned after a warning: a deployment that pins asked for something it cannot have. It is
/// a configuration error (exit 2) naming the flag or key and the core, before any socket.
#[test]
fn pinning_to_a_core_that_is_not_there_exits_2_before_binding() {
    let dir = temp_dir("cores");
    let socket = dir.join("run").join("relay.sock");
    let socket_arg = socket.to_str().unwrap();
    let (code, stderr) = exit_of(MARKET_DATA, &["--cores", "9999", "--socket", socket_arg], &dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--cores") && stderr.contains("9999"), "{stderr}");
    assert!(!socket.parent().unwrap().exists(), "nothing was made for the socket");

    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        format!("[relay]\ndomain = 3\n[transport]\npath = {socket_arg:?}\n[engine]\ncores = [9999]\n"),
    )
    .unwrap();
    let (code, stderr) = exit_of(RELAY, &["--config", file.to_str().unwrap()], &dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("engine.cores") && stderr.contains("9999"), "{stderr}");
    assert!(!socket.parent().unwrap().exists(), "nothing was made for the socket");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn socket_path_cases_at_the_binary_level() {
    // A regular file: refused, named, left alone.
    let dir = temp_dir("sockpath");
    let path = dir.join("relay.sock");
    std::fs::write(&path, b"not a socket").unwrap();
    let started = Instant::now();
    let (code, stderr) = run_to_exit(MARKET_DATA, &path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    std::fs::remove_dir_all(&dir).unwrap();

    // A second relay on a running relay's socket: refused; the first keeps working.
    let relay = Relay::start(MARKET_DATA, &[]);
    let (code, stderr) = run_to_exit(MARKET_DATA, &relay.socket);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(relay.socket.to_str().unwrap()), "{stderr}");
    let mut sub = subscribers_with_probe(&relay);
    let frame = md_frame(1, 1, 64);
    relay.connect().send(&frame);
    assert_eq!(sub.frame(), frame);
    drop(relay);

    // A stale socket file (its listener gone) is replaced.
    let dir = temp_dir("stale");
    let socket = dir.join("relay.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists() && UnixStream::connect(&socket).is_err());
    let socket_arg = socket.to_str().unwrap().to_string();
    let mut relay =
        Relay::spawn(MARKET_DATA, &["--socket", &socket_arg, "--cores", "none:2"], socket.clone(), dir);
    let mut sub = subscribers_with_probe(&relay);
    let frame = md_frame(1, 1, 64);
    relay.connect().send(&frame);
    assert_eq!(sub.frame(), frame);
    assert_eq!(relay.terminate().code(), Some(0));
    assert!(!socket.exists(), "the relay removes its socket at stop");
}

#[test]
fn sigterm_with_a_stuck_subscriber_reports_the_loss_and_exits_3() {
    let mut relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = \"execution\"\naudit_file = \"@DIR@/audit.log\"\n[transport]\npath = \"@SOCKET@\"\n\
         [engine]\ncores = \"none:2\"\nflush_deadline_ms = 300\n",
    );
    let mut stuck = client(&relay, Role::Subscribe);
    let mut publisher = client(&relay, Role::Publish);
    const N: u64 = 10_000; // 1 MB: beyond the socket buffer, within the 16 MiB queue
    publisher.send(&(1..=N).flat_map(|i| exec_frame(20, i, 100)).collect::<Vec<u8>>());
    // Acknowledged: the relay has read everything before it.
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES));
    let started = Instant::now();
    assert_eq!(relay.terminate().code(), Some(3), "{}", relay.log());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let log = relay.log();
    // "stop deadline passed with F frames undelivered to connection C (pid=… uid=… gid=…), sequences A..=B"
    let line =
        log.lines().find(|l| l.contains("stop deadline passed with")).unwrap_or_else(|| panic!("{log}"));
    let count: u64 = numbers_of_line(line, "stop deadline passed with ")[0];
    let range = numbers_of_line(line, "sequences ");
    let (first, last) = (range[0], range[1]);
    let got = data_only(stuck.until_closed());
    let k = got.len() as u64;
    assert_consecutive(&got, k, |i| exec_frame(20, i, 100), "stuck");
    assert_eq!(last, N, "{line}");
    assert_eq!(count, last - first + 1, "{line}");
    assert!(first <= k + 1 && k < last, "frames {k}+1.. undelivered, reported {first}..={last}: {line}");
}

#[test]
fn relay_dev_all_serves_three_domains() {
    let dir = temp_dir("dev");
    let sockets = dir.join("sockets");
    let market = sockets.join("market_data.sock");
    // `all -s DIR`, the legacy command line (`--socket-dir DIR` now), still works.
    let mut relay =
        Relay::spawn(RELAY_DEV, &["all", "-s", sockets.to_str().unwrap(), "-v"], market.clone(), dir.clone());
    let domains = [
        (RelayDomain::MarketData, "market_data.sock"),
        (RelayDomain::Signal, "signals.sock"),
        (RelayDomain::Execution, "execution.sock"),
    ];
    let mut subs = Vec::new();
    for (_, file) in domains {
        relay.wait_socket(&sockets.join(file));
        let mut sub = Client::connect(&sockets.join(file));
        sub.subscribe(&subscribe(Role::Subscribe, OPTION_NOTICES));
        subs.push(sub);
    }
    let frames: Vec<Vec<u8>> = domains.iter().map(|(domain, _)| data_frame(*domain, 7, 1, 100)).collect();
    for ((_, file), frame) in domains.iter().zip(&frames) {
        let mut publisher = Client::connect(&sockets.join(file));
        publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES));
        publisher.send(frame);
        // Its acknowledgement follows the frame: the relay has read it.
        publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES));
    }
    assert_eq!(relay.terminate().code(), Some(0), "{}", relay.log());
    for ((sub, frame), (_, file)) in subs.iter_mut().zip(&frames).zip(domains) {
        assert_eq!(data_only(sub.until_closed()), vec![frame.clone()], "{file}");
    }
    assert!(dir.join("sockets").join("execution.audit").exists());
}

#[test]
fn example_config_file_works_end_to_end() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join("market_data.toml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(text.contains("path = \"/tmp/torq/market_data.sock\"") && text.contains("cores = \"none\""));
    let text = text
        .replace("path = \"/tmp/torq/market_data.sock\"", "path = \"@SOCKET@\"")
        .replace("cores = \"none\"", "cores = \"none:2\"");
    let mut relay = Relay::start_config(RELAY, &text);
    let mut sub = client(&relay, Role::Subscribe);
    let frame = md_frame(1, 1, 100);
    relay.connect().send(&frame);
    assert_eq!(sub.frame(), frame);
    assert_eq!(relay.terminate().code(), Some(0));
    assert!(relay.log().contains("market-data: listening on"));
}

#[test]
fn a_read_batch_larger_than_the_queue_still_reaches_an_empty_queue() {
    // 100 frames of 1000 B arrive in one read (~100 KB, far above the 2130-byte queue): each
    // frame fits an empty queue, so none may be dropped or disconnected for the batch size.
    for policy in ["drop", "disconnect"] {
        let mut args = SMALL_QUEUE.to_vec();
        args.extend(["--slow-consumer", policy]);
        let mut relay = Relay::start(MARKET_DATA, &args);
        let mut sub = client(&relay, Role::Subscribe);
        let mut publisher = client(&relay, Role::Publish);
        let frames: Vec<u8> = (1..=100).flat_map(|i| md_frame(1, i, 1000)).collect();
        let reader = std::thread::spawn(move || data_only(sub.until_closed()));
        publisher.send(&frames);
        publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES));
        assert_eq!(relay.terminate().code(), Some(0));
        let got = reader.join().unwrap();
        assert_consecutive(&got, 100, |i| md_frame(1, i, 1000), policy);
    }
}
