//! The bridge's metrics endpoint and the Grafana dashboard, on real processes: promtool takes
//! the bridge's scrape as it takes the relays', idle connections never hold off a scrape, the
//! endpoint stays on loopback, and every series the dashboard queries is in a real scrape.

#[path = "../../tests/util/promtool.rs"]
mod promtool;
mod util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use torq::protocol::RelayDomain::MarketData;
use util::*;

/// A relay_dev host serving its metrics, NATS, and a bridge exporting the host's market data
/// with `--metrics 127.0.0.1:0`, once the bridge has published `frames` frames.
struct Exporting {
    host: Host,
    bridge: Proc,
    _nats: Nats,
}

impl Exporting {
    fn start(tag: &str, frames: usize) -> Exporting {
        let dir = temp_dir(tag);
        let nats = Nats::start(&dir);
        let host = Host::start_with_metrics(&format!("{tag}-host"));
        let bridge =
            host.bridge(MarketData, "a", &nats.url(), &["--export", "--metrics-addr", "127.0.0.1:0"]);
        let address = metrics_addr(&bridge);
        let mut publisher = host.publisher(MarketData, 7);
        let start = Instant::now();
        // The export subscribes once NATS says no other bridge of node a runs: publish until
        // frames cross, then the counted ones.
        while value(&scrape(&address), "torq_bridge_exported_out_total") == 0 {
            assert!(start.elapsed() < WAIT, "nothing exported: {}", bridge.log());
            publish(&mut publisher, 1);
            std::thread::sleep(Duration::from_millis(50));
        }
        let before = value(&scrape(&address), "torq_bridge_exported_out_total");
        publish(&mut publisher, frames);
        while value(&scrape(&address), "torq_bridge_exported_out_total") < before + frames as u64 {
            assert!(start.elapsed() < WAIT, "not every frame exported: {}", bridge.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Exporting { host, bridge, _nats: nats }
    }
}

/// The value of the one sample of `name` in Prometheus text (0 when absent).
fn value(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn promtool_accepts_the_bridge_scrape_labelled_as_the_relays() {
    let exporting = Exporting::start("promtool", 10);
    let answer = scrape(&metrics_addr(&exporting.bridge));
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    let text = promtool::body(&answer);
    promtool::assert_promtool_accepts(text);

    let families = promtool::families(text);
    assert_eq!(families.len(), 16, "{text}");
    for (index, (name, kind)) in families.iter().enumerate() {
        assert!(name.starts_with("torq_bridge_"), "{name}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        assert!(!families[..index].iter().any(|(other, _)| other == name), "{name} twice:\n{text}");
        // The relays' label and value for the domain (theirs: domain="market_data").
        let labelled = format!("{name}{{node=\"a\",domain=\"market_data\"}} ");
        assert!(text.contains(&labelled), "no {labelled} in\n{text}");
    }
    assert!(value(text, "torq_bridge_exported_out_total") >= 10, "{text}");
    let relays = promtool::body(&scrape(&exporting.host.metrics_addr())).to_string();
    assert!(relays.contains("torq_relay_frames_out_total{domain=\"market_data\"} "), "{relays}");
}

#[test]
fn a_scrape_is_answered_within_2_s_whatever_500_idle_connections_do() {
    // No NATS needed: the endpoint serves from the start.
    let dir = temp_dir("idle");
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let absent = dir.join("absent.sock");
    let extra = ["--export", "--metrics-addr", "127.0.0.1:0"];
    let bridge =
        Bridge { socket: &absent, domain: MarketData, node: "a", nats: &nowhere, extra: &extra, env: &[] }
            .spawn(&dir);
    let address = metrics_addr(&bridge);
    scrape(&address);
    let descriptors = || std::fs::read_dir(format!("/proc/{}/fd", bridge.child.id())).unwrap().count();
    let before = descriptors();
    // Connections that never complete a request: every other one sends half a request line.
    let idle: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut stream =
                TcpStream::connect(&address).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            if i % 2 == 1 {
                // The bridge may have closed it already, to make room: a failure is fine.
                let _ = stream.write_all(b"GET /metr");
            }
            stream
        })
        .collect();
    // One at a time, a second each, these held a scrape off for minutes.
    let start = Instant::now();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    let elapsed = start.elapsed();
    assert!(
        read.is_ok() && elapsed < Duration::from_secs(2),
        "a scrape took {elapsed:?} ({read:?}): {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let length = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap();
    assert_eq!(body.len(), length.parse::<usize>().unwrap(), "a partial answer: {answer}");
    assert!(body.contains("torq_bridge_exported_in_total{"), "{body}");
    // At most 64 connections held, whatever clients do (one more while it is being accepted,
    // and the sockets of the bridge's own tries to reach the relay and NATS, which come and go).
    let during = descriptors();
    assert!(during <= before + 64 + 3, "descriptors {before} -> {during}");
    drop(idle);
}

#[test]
fn a_metrics_address_off_loopback_exits_2_naming_the_flag() {
    let dir = temp_dir("off-loopback");
    let output = Command::new(env!("CARGO_BIN_EXE_torq-bridge"))
        .args(["--relay", dir.join("r.sock").to_str().unwrap(), "--domain", "market-data", "--node", "a"])
        .args(["--export", "--metrics-addr", "0.0.0.0:9101"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--metrics-addr") && stderr.contains("0.0.0.0:9101") && stderr.contains("loopback"),
        "{stderr}"
    );
}

/// The `torq_…` metric names in a PromQL expression (a name is followed by `{`, `[`, `)`, a
/// space or the end; label names and values never start with `torq_` here).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("torq_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// Every string under a key `expr` (the panels' queries) or `query` (the variables') in `value`.
fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(text) if key == "expr" || key == "query" => {
                        out.push(text.clone())
                    }
                    other => queries(other, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn every_series_the_grafana_dashboard_queries_is_in_a_real_scrape() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/grafana/torq.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let panels = dashboard["panels"].as_array().expect("a dashboard has panels");
    assert!(dashboard["title"].is_string() && !panels.is_empty(), "{}", path.display());
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("no targets: {panel}"));
        assert!(
            !targets.is_empty()
                && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("torq_"))),
            "a panel without a torq query: {panel}"
        );
    }
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    let exporting = Exporting::start("dashboard", 3);
    let relays = scrape(&exporting.host.metrics_addr());
    let bridge = scrape(&metrics_addr(&exporting.bridge));
    let scraped: BTreeSet<String> = promtool::sample_names(promtool::body(&relays))
        .into_iter()
        .chain(promtool::sample_names(promtool::body(&bridge)))
        .collect();
    let missing: Vec<&String> = used.difference(&scraped).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which no scrape has:\n{relays}\n{bridge}"
    );
    // What the dashboard is for: the relays' traffic, losses, queues, connections and audit,
    // and the bridges'.
    for name in [
        "torq_relay_frames_in_total",
        "torq_relay_frames_out_total",
        "torq_relay_dropped_frames_total",
        "torq_relay_rejected_frames_total",
        "torq_relay_queued_bytes",
        "torq_relay_connections_open",
        "torq_relay_audit_failing",
        "torq_bridge_exported_out_total",
        "torq_bridge_imported_out_total",
        "torq_bridge_lost_total",
        "torq_bridge_lag_seconds",
    ] {
        assert!(used.contains(name), "the dashboard shows no {name}");
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names("sum by (domain) (rate(torq_relay_frames_in_total{domain=~\"$domain\"}[5m])) / torq_x"),
        ["torq_relay_frames_in_total", "torq_x"]
    );
    assert!(metric_names("label_values(up, job)").is_empty());
}
