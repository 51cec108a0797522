//! `torq-perf latency` and its clients over real processes: a stalled publisher is measured
//! from when its frames were due (no coordinated omission), and the scenario reports the
//! machine, the placement and every figure, and writes its `.hgrm`, `.hlog` and `.svg` files.

mod util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TORQ_PERF: &str = env!("CARGO_BIN_EXE_torq-perf");

fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "{} never accepted", socket.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

#[test]
fn a_stalled_publisher_is_measured_from_when_its_frames_were_due() {
    let dir = util::temp_dir("stall");
    let socket = dir.join("relay.sock");
    let mut relay = Command::new(TORQ_PERF).arg("naive-relay").arg("--socket").arg(&socket).spawn().unwrap();
    wait_for_socket(&socket);
    let hlog = dir.join("subscriber.hlog");
    let mut subscriber = Command::new(TORQ_PERF)
        .args(["subscribe", "--frames", "3000", "--latency", "--idle-ms", "5000", "--socket"])
        .arg(&socket)
        .arg("--hlog")
        .arg(&hlog)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(subscriber.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // 3000 frames at 2000/s: 1.5 s. The publisher is stopped for 300 ms in the middle; the
    // 600 frames due meanwhile go late, each measured from when it should have gone.
    let publisher = Command::new(TORQ_PERF)
        .args(["publish", "--frames", "3000", "--rate", "2000", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(publisher.id(), "-STOP");
    std::thread::sleep(Duration::from_millis(300));
    signal(publisher.id(), "-CONT");
    let published = publisher.wait_with_output().unwrap();
    assert!(published.status.success());
    let published: Value = serde_json::from_slice(&published.stdout).unwrap();
    let report: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(subscriber.wait().unwrap().success());
    assert!(relay.wait().unwrap().success(), "the naive relay exits with its publisher");

    assert_eq!((report["frames"].as_u64(), report["gaps"].as_u64()), (Some(3000), Some(0)), "{report}");
    let latency = &report["latency_ns"];
    let ms = |field: &str| latency[field].as_f64().unwrap() / 1e6;
    assert_eq!(latency["count"], 3000);
    assert!(ms("max") >= 250.0, "the frame due as the stall began waited it out: {latency}");
    // 600 of 3000 frames were delayed by 0–300 ms: more than 10 % by over 100 ms.
    assert!(ms("p90") >= 50.0, "a stall is counted for every frame behind it: {latency}");
    assert!(ms("p50") < 50.0, "the frames before and after it were on time: {latency}");
    // The publisher saw it too: it wrote those frames late.
    let late = &published["lateness_ns"];
    assert!(late["max"].as_f64().unwrap() / 1e6 >= 250.0, "{published}");

    // One histogram per second of receive time, 3000 frames in all.
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.starts_with("#[Histogram log format version 1.3]\n"), "{log}");
    assert!(log.contains("#[BaseTime: "), "{log}");
    let intervals: Vec<&str> = log.lines().filter(|l| !l.starts_with('#')).collect();
    assert!((1..=3).contains(&intervals.len()), "{log}");
    let max_ms = intervals.iter().map(|l| l.split(',').nth(2).unwrap().parse::<f64>().unwrap() / 1e3);
    assert!(max_ms.fold(0.0, f64::max) >= 250.0, "the max column is in µs: {log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The data lines of a `.hgrm` file: (value µs, percentile, total count).
fn distribution(text: &str) -> Vec<(f64, f64, u64)> {
    text.lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn the_scenario_reports_every_figure_against_the_floor_and_writes_its_files() {
    let relay = util::library_binary("market_data_relay");
    let out = util::temp_dir("latency-out");
    let output = Command::new(TORQ_PERF)
        .args(["latency", "--with-floor", "--target"])
        .arg(&relay)
        .args(["--relay-cores", "0", "--client-cores", "1,0", "--rates", "2k,4k", "--seconds", "1"])
        .args(["--warmup-s", "0.25", "--runs", "1", "--json", "--out"])
        .arg(&out)
        .args(["--", "-l", "warn"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // The human report went to stderr, with the machine and the placement first.
    assert!(stderr.starts_with("machine: "), "{stderr}");
    assert!(stderr.contains("publisher on core 1; subscriber(s) on core 0"), "{stderr}");

    let machine = &report["machine"];
    for field in ["cpu", "kernel", "clocksource"] {
        assert!(!machine[field].as_str().unwrap().is_empty(), "{machine}");
    }
    assert!(machine["cores"].as_u64().unwrap() >= 1);
    let placement = &report["placement"];
    assert_eq!(placement["relay"]["cores"], "0");
    assert_eq!(
        (placement["floor_core"].as_str(), placement["publisher_core"].as_str()),
        (Some("0"), Some("1"))
    );
    assert_eq!(placement["subscriber_cores"][0], "0");

    let rates = report["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 2);
    for (entry, (rate, name)) in rates.iter().zip([(2000, "latency-2k"), (4000, "latency-4k")]) {
        assert_eq!((entry["rate"].as_f64(), entry["scenario"].as_str()), (Some(rate as f64), Some(name)));
        for side in ["target", "floor"] {
            let run = &entry[side]["runs"][0];
            assert_eq!(run["sent"], rate, "{side}: {run}");
            assert_eq!(run["delivered"], rate, "{side}: {run}");
            assert_eq!(run["gaps"], 0, "{side}: {run}");
            let latency = &run["latency_ns"];
            assert_eq!(latency["count"], rate - rate / 4, "the warm-up is not measured: {latency}");
            let figures: Vec<u64> = ["p50", "p90", "p99", "p99_9", "p99_99", "max"]
                .iter()
                .map(|f| latency[f].as_u64().unwrap())
                .collect();
            assert!(figures[0] > 0 && figures.windows(2).all(|w| w[0] <= w[1]), "{latency}");
            assert!(run["publisher_lateness_ns"]["p50"].as_u64().is_some(), "{run}");
            assert!(run["publisher_write_ns"]["count"].as_u64().unwrap() > 0, "{run}");
            for who in ["relay", "publisher", "subscriber"] {
                assert!(run[format!("{who}_cpu_s")].as_f64().is_some_and(|s| s >= 0.0), "{who}: {run}");
            }
        }
        assert!(entry["to_floor"]["median"]["p50_ratio"].as_f64().unwrap() > 0.0, "{entry}");

        let file = |suffix: &str| out.join(format!("{name}{suffix}"));
        for suffix in
            [".hgrm", ".run1.hgrm", ".hlog", "-floor.hgrm", "-floor.run1.hgrm", "-floor.hlog", ".svg"]
        {
            assert!(file(suffix).exists(), "{}", file(suffix).display());
        }
        let hgrm = std::fs::read_to_string(file(".hgrm")).unwrap();
        assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{hgrm}");
        let lines = distribution(&hgrm);
        let last = lines.last().unwrap();
        assert_eq!((last.1, last.2), (1.0, rate - rate / 4), "{hgrm}");
        let max_us = entry["target"]["runs"][0]["latency_ns"]["max"].as_f64().unwrap() / 1e3;
        assert!((last.0 - max_us).abs() <= 0.001 * max_us + 0.001, "{} µs against {max_us}", last.0);
        let hlog = std::fs::read_to_string(file(".hlog")).unwrap();
        assert!(hlog.lines().any(|l| l.starts_with("Tag=run1,0.000,1.000,")), "{hlog}");
        let svg = std::fs::read_to_string(file(".svg")).unwrap();
        assert!(
            svg.contains("floor (naive relay)") && svg.contains("market_data_relay"),
            "both on one chart"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn over_shared_memory_the_report_says_the_transport_and_counts_overruns() {
    let relay = util::library_binary("market_data_relay");
    let output = Command::new(TORQ_PERF)
        .args(["latency", "--with-floor", "--target"])
        .arg(&relay)
        .args(["--transport", "shm", "--shm-idle", "backoff", "--rates", "2k", "--seconds", "1"])
        .args(["--warmup-s", "0.25", "--runs", "1", "--json", "--", "-l", "warn"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(stderr.contains("(reading the shared-memory log, idle backoff)"), "{stderr}");
    assert!(stderr.contains("shm (idle backoff): lost to overrun 0 in 0 overrun(s)"), "{stderr}");
    assert_eq!((report["transport"].as_str(), report["shm_idle"].as_str()), (Some("shm"), Some("backoff")));
    assert_eq!(
        (report["placement"]["transport"].as_str(), report["placement"]["shm_idle"].as_str()),
        (Some("shm"), Some("backoff"))
    );
    let entry = &report["rates"][0];
    assert_eq!(entry["scenario"], "latency-shm-backoff-2k", "the files say the transport");
    let run = &entry["target"]["runs"][0];
    assert_eq!((run["sent"].as_u64(), run["delivered"].as_u64()), (Some(2000), Some(2000)), "{run}");
    assert_eq!(run["transport"], "shm", "the relay granted its log: {run}");
    let shm = &run["shm"];
    assert_eq!((shm["granted"].as_bool(), shm["idle"].as_str()), (Some(true), Some("backoff")), "{run}");
    assert_eq!((shm["overrun_frames"].as_u64(), shm["overruns"].as_u64()), (Some(0), Some(0)), "{run}");
    // The floor is the same for both transports: its subscriber reads its socket.
    let floor = &entry["floor"]["runs"][0];
    assert_eq!((floor["transport"].as_str(), floor.get("shm")), (Some("socket"), None), "{floor}");

    let refused = Command::new(TORQ_PERF)
        .args(["latency", "--target", "naive", "--transport", "shm", "--rates", "2k", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the floor (naive) has no shared memory"));
}
