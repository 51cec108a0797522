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
    // `--dir`, the former name of `--socket-dir`: existing command lines keep working.
    let output = Command::new(env!("CARGO_BIN_EXE_torq-demo"))
        .args(["--seconds", "2", "--rate", "20000", "--json", "--dir"])
        .arg(dir.join("sockets"))
        .output()
        .expect("torq-demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Not a terminal: plain lines of at most 80 columns (but the one naming the directory),
    // then the JSON summary.
    assert!(!stdout.contains('\x1b'), "{stdout}");
    let (view, json) = stdout.trim_end().rsplit_once('\n').unwrap_or_else(|| panic!("{stdout}"));
    let dir_name = dir.display().to_string();
    assert!(view.lines().all(|l| l.chars().count() <= 80 || l.contains(&dir_name)), "{view}");
    assert!(view.contains("all arrived complete and in order"), "{view}");
    let summary: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    for relay in ["market-data", "signal", "execution"] {
        let counts = &summary["relays"][relay];
        assert!(
            counts["sent"].as_u64() > Some(0) && counts["received"].as_u64() > Some(0),
            "{relay}: {json}"
        );
        assert_eq!(counts["rejected"], 0, "{relay}: {json}");
    }
    let execution = &summary["execution"];
    let (orders, fills) =
        (execution["orders_sent"].as_u64().unwrap(), execution["fills_sent"].as_u64().unwrap());
    assert!(orders > 0 && fills == orders, "{json}");
    assert_eq!(execution["orders_received"], orders, "{json}");
    assert_eq!(execution["fills_received"], fills, "{json}");
    // The relay confirmed every order and fill to its publisher (notice 7), rejecting none.
    assert_eq!(execution["orders_confirmed"], orders, "{json}");
    assert_eq!(execution["fills_confirmed"], fills, "{json}");
    for check in ["lost", "gaps", "out_of_order", "incomplete", "rejected"] {
        assert_eq!(execution[check], 0, "{check}: {json}");
    }
    assert_eq!(execution["audited"], orders + fills, "every order and fill audited: {json}");
    assert_eq!(summary["nothing_lost"], true, "{json}");
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
