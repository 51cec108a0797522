//! `torq-perf bridge` over real processes (a NATS server, two relays, two bridges, the clients):
//! every figure against the floor, the loss per hop, the files, nothing left running; and the
//! errors that say what is missing.

mod util;

use std::process::Command;

use serde_json::Value;

const TORQ_PERF: &str = env!("CARGO_BIN_EXE_torq-perf");

/// Processes whose command line names `dir` (the scenario's processes all do: sockets, store).
fn processes_naming(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(command) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let command = String::from_utf8_lossy(&command).replace('\0', " ");
        if command.contains(dir) && !command.contains("cargo") {
            found.push(command);
        }
    }
    found
}

#[test]
fn the_scenario_measures_the_bridge_against_bare_nats_and_cleans_up() {
    util::library_binary("market_data_relay");
    util::workspace_binary("torq-bridge", "torq-bridge");
    let out = util::temp_dir("bridge-out");
    let output = Command::new(TORQ_PERF)
        .args(["bridge", "--rates", "2k", "--seconds", "1", "--warmup-s", "0.25", "--runs", "1"])
        .args(["--throughput-s", "0.5", "--idle-ms", "1000", "--client-cores", "1,0", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(stderr.starts_with("machine: "), "{stderr}");
    assert!(stderr.contains("publishers on core 1, subscribers on core 0"), "{stderr}");
    assert_eq!(report["placement"]["publisher_core"], "1");
    assert_eq!(report["domain"], "market-data");

    let entry = &report["latency"][0];
    assert_eq!(entry["scenario"], "bridge-2k");
    for side in ["bridge", "floor"] {
        let run = &entry[side]["runs"][0];
        assert_eq!(
            (run["sent"].as_u64(), run["delivered"].as_u64()),
            (Some(2000), Some(2000)),
            "{side}: {run}"
        );
        assert_eq!(run["gaps"], 0, "{side}: {run}");
        let latency = &run["latency_ns"];
        assert_eq!(latency["count"], 1500, "the warm-up is not measured: {latency}");
        let figures: Vec<u64> = ["p50", "p90", "p99", "p99_9", "p99_99", "max"]
            .iter()
            .map(|f| latency[f].as_u64().unwrap())
            .collect();
        assert!(figures[0] > 0 && figures.windows(2).all(|w| w[0] <= w[1]), "{latency}");
        assert!(run["nats_server_cpu_s"].as_f64().is_some(), "{side}: {run}");
    }
    let bridged = &entry["bridge"]["runs"][0];
    for who in ["relay_a", "relay_b", "bridge_a", "bridge_b", "publisher", "subscriber"] {
        assert!(bridged[format!("{who}_cpu_s")].as_f64().is_some(), "{who}: {bridged}");
    }
    let hops = &bridged["hops"];
    assert_eq!(
        (hops["exported_out"].as_u64(), hops["imported_out"].as_u64()),
        (Some(2000), Some(2000)),
        "{hops}"
    );
    assert!(entry["to_floor"]["median"]["p50_ratio"].as_f64().unwrap() > 0.0, "{entry}");
    for file in
        ["bridge-2k.hgrm", "bridge-2k.run1.hgrm", "bridge-2k.hlog", "bridge-2k-floor.hgrm", "bridge-2k.svg"]
    {
        assert!(out.join(file).exists(), "{file}");
    }
    let hgrm = std::fs::read_to_string(out.join("bridge-2k-floor.hgrm")).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{hgrm}");
    let svg = std::fs::read_to_string(out.join("bridge-2k.svg")).unwrap();
    assert!(svg.contains("floor (bare NATS hop)") && svg.contains("torq-bridge"), "both on one chart");

    let throughput = &report["throughput"];
    for side in ["bridge", "floor"] {
        let run = &throughput[side]["runs"][0];
        let (sent, received) = (run["sent"].as_u64().unwrap(), run["received"].as_u64().unwrap());
        assert!(sent > 0 && received > 0 && received <= sent, "{side}: {run}");
        assert!(run["rate"].as_f64().unwrap() > 0.0, "{side}: {run}");
    }
    let hops = &throughput["bridge"]["runs"][0]["hops"];
    let count = |key: &str| hops[key].as_u64().unwrap();
    let sent = throughput["bridge"]["runs"][0]["sent"].as_u64().unwrap();
    assert_eq!(count("exported_in") + count("relay_a_dropped"), sent, "every frame read or dropped: {hops}");
    assert!(throughput["ratio"]["median"].as_f64().unwrap() > 0.0, "{throughput}");
    assert!(report["targets"]["p50_met"].is_boolean() && report["targets"]["throughput_met"].is_boolean());

    // The processes' directory is gone, and nothing that used it still runs.
    let started = stderr.lines().find(|l| l.starts_with("started on ")).unwrap();
    let dir = started.rsplit("logs in ").next().unwrap().trim();
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
    assert_eq!(processes_naming(dir), Vec::<String>::new());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn missing_programs_are_named_with_the_fix() {
    let run = |args: &[&str]| {
        let output = Command::new(TORQ_PERF).arg("bridge").args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = run(&["--bin-dir", "/nonexistent"]);
    assert!(missing.contains("/nonexistent/market_data_relay not found"), "{missing}");
    assert!(missing.contains("cargo build --release --workspace --bins"), "{missing}");
    let execution = run(&["--bin-dir", "/nonexistent", "--domain", "execution"]);
    assert!(execution.contains("execution_relay not found"), "{execution}");
    util::library_binary("market_data_relay");
    util::workspace_binary("torq-bridge", "torq-bridge");
    let nats = run(&["--nats-server", "/nonexistent/nats-server"]);
    assert!(nats.contains("--nats-server /nonexistent/nats-server: no such file"), "{nats}");
}
