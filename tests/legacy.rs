//! The legacy relays' production files start `relay --config` unchanged but for their paths,
//! and their `[logging]` table is honoured: JSON lines in the named file.

mod util;

use std::path::Path;

use util::*;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// Starts `relay --config` on `tests/legacy/<name>` with its `/tmp/torq` and `/var/log/torq`
/// paths moved into a private directory, and without flags, so the file's `[logging]` applies.
fn start(name: &str) -> Relay {
    let dir = temp_dir("legacy");
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/legacy").join(name);
    let text = std::fs::read_to_string(legacy).unwrap();
    let run = dir.join("run");
    let log = dir.join("log");
    std::fs::create_dir(&log).unwrap();
    let text =
        text.replace("/tmp/torq", run.to_str().unwrap()).replace("/var/log/torq", log.to_str().unwrap());
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let socket = run.join(match name {
        "market_data.toml" => "market_data.sock",
        "signal.toml" => "signals.sock",
        _ => "execution.sock",
    });
    Relay::spawn(RELAY, &["--config", file.to_str().unwrap()], socket, dir)
}

#[test]
fn the_production_files_start_the_relay_and_it_stops_cleanly() {
    for (name, log_file) in [
        ("market_data.toml", "market_data_relay.log"),
        ("signal.toml", "signal_relay.log"),
        ("execution.toml", "execution_relay.log"),
    ] {
        let mut relay = start(name);
        let mut client = relay.connect();
        client.send(&LEGACY_HELLO);
        let status = relay.terminate();
        assert!(status.success(), "{name}: {status}\n{}", relay.log());

        // The file's [logging]: every line of the named file is a JSON object with a level,
        // and nothing is logged to stderr.
        let log = std::fs::read_to_string(relay.dir.join("log").join(log_file)).unwrap();
        assert!(log.lines().count() >= 2, "{name}: {log}");
        for line in log.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            assert!(value["level"].is_string(), "{name}: {line}");
        }
        assert_eq!(relay.log(), "", "{name}: stderr");
    }
}

#[test]
fn flags_win_over_the_logging_table() {
    let dir = temp_dir("legacy-flags");
    let socket = dir.join("relay.sock");
    let log = dir.join("relay-file.log");
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        format!(
            "[relay]\ndomain = 2\n[transport]\npath = {socket:?}\n\
             [logging]\nlevel = \"error\"\nformat = \"text\"\nfile = {log:?}\n"
        ),
    )
    .unwrap();
    // The file says error and text; -l info and --json-logs log the start as JSON.
    let args = ["--config", file.to_str().unwrap(), "-l", "info", "--json-logs"];
    let mut relay = Relay::spawn(RELAY, &args, socket, dir);
    assert!(relay.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let levels: Vec<String> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["level"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(levels.iter().any(|level| level == "INFO"), "{text}");
}
