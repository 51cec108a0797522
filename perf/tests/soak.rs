//! `torq-perf soak` over real processes: a 6-second soak of `relay_dev all` at low rates
//! (debug binaries) passes with every execution frame delivered, and a relay that does not
//! run fails it.

mod util;

use std::process::Command;

use serde_json::Value;

const TORQ_PERF: &str = env!("CARGO_BIN_EXE_torq-perf");

#[test]
fn a_short_soak_of_the_three_relays_passes() {
    let output = Command::new(TORQ_PERF)
        .args(["soak", "--minutes", "0.1", "--json", "--seed", "7", "--target"])
        .arg(util::library_binary("relay_dev"))
        .args(["--md-rate", "5000", "--signal-rate", "500", "--execution-rate", "1000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["samples"], 7, "one sample a second, 0 to 6 s");
    let resources = report["resources"].as_object().unwrap();
    for key in [
        "rss_bytes",
        "open_fds",
        "threads",
        "queued_bytes_market_data",
        "queued_bytes_signal",
        "queued_bytes_execution",
    ] {
        let trend = &resources[key]["trend"];
        assert_eq!(trend["rising"], false, "{key}: {trend}");
        assert!(trend["max"].as_f64().unwrap() >= trend["start"].as_f64().unwrap(), "{key}: {trend}");
    }
    assert!(resources["rss_bytes"]["trend"]["end"].as_f64().unwrap() > 1e6, "the relay's RSS was read");
    assert!(resources["threads"]["trend"]["end"].as_f64().unwrap() >= 4.0, "reactors, signals, metrics");

    // Every execution frame written whole reached every whole-run subscriber.
    let execution = &report["execution"];
    let published = execution["published"].as_u64().unwrap();
    assert!(published > 1000, "{execution}");
    let whole_run = execution["whole_run"].as_array().unwrap();
    assert_eq!(whole_run.len(), 4);
    for subscriber in whole_run {
        assert_eq!(subscriber["received"].as_u64(), Some(published), "{subscriber}");
        assert_eq!(subscriber["missing"], 0, "{subscriber}");
    }
    for relay in ["market-data", "signal", "execution"] {
        assert!(report["relays"][relay]["frames_in"].as_u64().unwrap() > 0, "{relay}");
        let clients = &report["clients"][relay];
        assert!(clients["sessions"].as_u64().unwrap() >= 2, "{relay}: {clients}");
        assert!(clients["received"].as_u64().unwrap() > 0, "{relay}: {clients}");
    }
    assert!(report["processes_killed"].as_u64().unwrap() >= 2, "{report:#}");
    assert_eq!(report["relay_exit"], "exit status: 0");
}

#[test]
fn a_relay_that_does_not_run_fails_the_soak() {
    let output =
        Command::new(TORQ_PERF).args(["soak", "--minutes", "0.1", "--target", "false"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("soak failed: the relay exited with exit status: 1"), "{stderr}");
    // A failed soak keeps its directory (the relay's log) and says where it is.
    let dir = stdout.split("sockets and log in ").nth(1).and_then(|rest| rest.split(',').next()).unwrap();
    assert!(std::path::Path::new(dir).join("relay.log").exists(), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}
