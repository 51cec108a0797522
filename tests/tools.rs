//! The README's main command (`torq-demo`) and the metrics endpoint, end to end.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

#[test]
fn demo_runs_the_three_relays_and_loses_nothing() {
    let dir = temp_dir("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_torq-demo"))
        .args(["--seconds", "1", "--rate", "20000", "--dir"])
        .arg(dir.join("sockets"))
        .output()
        .expect("torq-demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let counts = |label: &str| -> Vec<u64> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line: {stdout}"));
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
    };
    let (sent, received) = (counts("sent:"), counts("received:"));
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|n| *n > 0), "{stdout}");
    assert_eq!(sent, received, "every frame published reached its subscriber");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prometheus_text_on_the_metrics_address() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let relay = Relay::start(env!("CARGO_BIN_EXE_market_data_relay"), &["--metrics-addr", &addr]);
    let mut sub = relay.connect();
    sub.subscribe(&torq::protocol::Subscribe {
        role: torq::protocol::Role::Subscribe,
        options: torq::protocol::OPTION_NOTICES,
        filters: vec![],
    });
    let frame = md_frame(1, 1, 100);
    relay.connect().send(&frame);
    assert_eq!(sub.frame(), frame);
    let start = Instant::now();
    let get = |path: &str| {
        let mut stream = TcpStream::connect(&addr).ok()?;
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        Some(body)
    };
    let body = loop {
        // The endpoint starts with the relay; retry (bounded) until it answers.
        if let Some(body) = get("/metrics") {
            break body;
        }
        assert!(start.elapsed() < WAIT, "no metrics endpoint on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    let other = get("/").unwrap();
    assert!(other.starts_with("HTTP/1.1 404") && other.contains("/metrics"), "{other}");
    assert!(body.contains("torq_frames_in_total{relay=\"market-data\"} 1"), "{body}");
    assert!(
        body.contains("torq_rejected_frames_total{relay=\"market-data\",reason=\"checksum_mismatch\"} 0")
    );
}
