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
    let first = Relay::start(EXECUTION, &["--audit-file", "/tmp/torq-it-shared-audit.log"]);
    let dir = temp_dir("second");
    let socket = dir.join("second.sock");
    let mut second = std::process::Command::new(EXECUTION)
        .args(["--socket", socket.to_str().unwrap(), "--audit-file", "/tmp/torq-it-shared-audit.log"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut second).code(), Some(1), "the second relay must refuse to start");
    let mut stderr = String::new();
    second.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("/tmp/torq-it-shared-audit.log"), "the error names the file: {stderr}");
    drop(first);
    let _ = std::fs::remove_file("/tmp/torq-it-shared-audit.log");
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
