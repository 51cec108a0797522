//! The README's main command (`torq-demo`) and the metrics endpoint, end to end.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

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

/// `GET path` over HTTP/1.1 on a new connection to `addr`: the whole answer, or `None` when
/// nothing listens there.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    Some(answer)
}

#[test]
fn prometheus_text_on_the_metrics_address() {
    // Port 0: the relay takes a free port and logs it (a port picked here and closed could be
    // taken by anyone before the relay binds it).
    let relay = Relay::start(env!("CARGO_BIN_EXE_market_data_relay"), &["--metrics-addr", "127.0.0.1:0"]);
    let addr = relay.metrics_addr();
    assert_ne!(addr.port(), 0, "the bound port is logged");
    let mut sub = relay.connect();
    sub.subscribe(&torq::protocol::Subscribe {
        role: torq::protocol::Role::Subscribe,
        options: torq::protocol::OPTION_NOTICES,
        filters: vec![],
    });
    let frame = md_frame(1, 1, 100);
    relay.connect().send(&frame);
    assert_eq!(sub.frame(), frame);
    // Bound before the relay logs it, so the first try is answered.
    let answer = get(addr, "/metrics").unwrap_or_else(|| panic!("no metrics endpoint on {addr}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    let other = get(addr, "/").unwrap();
    assert!(other.starts_with("HTTP/1.1 404") && other.contains("/metrics"), "{other}");
    let text = promtool::body(&answer);
    assert!(text.contains("torq_relay_frames_in_total{domain=\"market_data\"} 1\n"), "{text}");
    assert!(
        text.contains(
            "torq_relay_rejected_frames_total{domain=\"market_data\",reason=\"checksum_mismatch\"} 0\n"
        ),
        "{text}"
    );
    promtool::assert_promtool_accepts(text);
}

#[test]
fn promtool_accepts_the_three_relays_of_relay_dev_all_on_one_endpoint() {
    let dir = temp_dir("promtool");
    let sockets = dir.join("sockets");
    let args = ["all", "-s", sockets.to_str().unwrap(), "--metrics-addr", "127.0.0.1:0", "-l", "debug"];
    let relay = Relay::spawn(env!("CARGO_BIN_EXE_relay_dev"), &args, sockets.join("execution.sock"), dir);
    // Something to count: a market-data frame, published and delivered.
    let mut publisher = Client::connect(&sockets.join("market_data.sock"));
    let mut sub = Client::connect(&sockets.join("market_data.sock"));
    sub.subscribe(&torq::protocol::Subscribe {
        role: torq::protocol::Role::Subscribe,
        options: torq::protocol::OPTION_NOTICES,
        filters: vec![],
    });
    let frame = md_frame(1, 1, 100);
    publisher.send(&frame);
    assert_eq!(sub.frame(), frame);
    let answer = get(relay.metrics_addr(), "/metrics").expect("the metrics endpoint answers");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let text = promtool::body(&answer);
    promtool::assert_promtool_accepts(text);

    // Each family once, with one sample per relay, labelled as the bridge labels its own.
    let families = promtool::families(text);
    assert!(families.len() >= 17, "{text}");
    for (index, (name, kind)) in families.iter().enumerate() {
        assert!(name.starts_with("torq_relay_"), "{name}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} is a {kind}");
        assert!(!families[..index].iter().any(|(other, _)| other == name), "{name} twice:\n{text}");
        for domain in ["market_data", "signal", "execution"] {
            let labelled = format!("{name}{{domain=\"{domain}\"");
            assert!(text.lines().any(|l| l.starts_with(&labelled)), "no {labelled} in\n{text}");
        }
    }
    let names = promtool::sample_names(text);
    assert!(names.iter().all(|n| families.iter().any(|(f, _)| f == n)), "a sample of no family:\n{text}");
    assert!(text.contains("torq_relay_frames_in_total{domain=\"market_data\"} 1\n"), "{text}");
    assert!(text.contains("torq_relay_frames_out_total{domain=\"market_data\"} 1\n"), "{text}");
}

#[test]
fn the_promtool_check_fails_on_what_the_relays_used_to_serve() {
    // The text of the relays before HELP and TYPE (untyped, one group per relay), a family
    // repeated, a counter without `_total`: each must fail the check the tests above rely on.
    let complaints = [
        "torq_frames_in_total{relay=\"market-data\"} 0\ntorq_frames_in_total{relay=\"signal\"} 0\n",
        "# HELP a_total x\n# TYPE a_total counter\na_total{d=\"1\"} 1\n\
         # HELP a_total x\n# TYPE a_total counter\na_total{d=\"2\"} 1\n",
        "# HELP a x\n# TYPE a counter\na{d=\"1\"} 1\n",
    ];
    for text in complaints {
        let checked = std::panic::catch_unwind(|| promtool::assert_promtool_accepts(text));
        assert!(checked.is_err(), "promtool took:\n{text}");
    }
    promtool::assert_promtool_accepts("# HELP a_total x\n# TYPE a_total counter\na_total{d=\"1\"} 1\n");
}
