//! One name per idea across the binaries of this crate: every `--help` names a flag and its
//! value as the others do (the relay socket `--socket <PATH>`, `--metrics-addr <ADDR>`,
//! `-l, --log-level <LEVEL>`, seconds as `<SECONDS>`, sizes as `<BYTES>`, a directory of
//! sockets `--socket-dir <DIR>`), and the former spellings kept for existing command lines are
//! shown as aliases. torq-bridge and torq-perf check theirs in their own crates
//! (`bridge/src/config.rs`, `perf/src/main.rs`).

use std::collections::BTreeMap;
use std::process::Command;

const BINARIES: [(&str, &str); 11] = [
    ("market_data_relay", env!("CARGO_BIN_EXE_market_data_relay")),
    ("signal_relay", env!("CARGO_BIN_EXE_signal_relay")),
    ("execution_relay", env!("CARGO_BIN_EXE_execution_relay")),
    ("relay", env!("CARGO_BIN_EXE_relay")),
    ("relay_dev", env!("CARGO_BIN_EXE_relay_dev")),
    ("torq-tap", env!("CARGO_BIN_EXE_torq-tap")),
    ("torq-record", env!("CARGO_BIN_EXE_torq-record")),
    ("torq-replay", env!("CARGO_BIN_EXE_torq-replay")),
    ("torq-pub", env!("CARGO_BIN_EXE_torq-pub")),
    ("torq-decode", env!("CARGO_BIN_EXE_torq-decode")),
    ("torq-demo", env!("CARGO_BIN_EXE_torq-demo")),
];

fn help(binary: &str) -> String {
    let output = Command::new(binary).arg("--help").output().unwrap();
    assert!(output.status.success(), "{binary} --help: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The lines defining flags, as clap writes them after `Options:` (`  -l, --log-level <LEVEL>`,
/// indented at most 6 columns; their descriptions are indented further).
fn flag_lines(help: &str) -> Vec<&str> {
    let options = help.find("\nOptions:").expect("an Options: section");
    help[options..]
        .lines()
        .filter(|line| line.len() - line.trim_start().len() <= 6 && line.trim_start().starts_with('-'))
        .map(str::trim_start)
        .collect()
}

/// The flags a help defines, each with its value name (empty for a switch).
fn flags(help: &str) -> Vec<(String, String)> {
    flag_lines(help)
        .into_iter()
        .filter_map(|line| {
            let spec = line.split("  ").next().unwrap_or(line);
            let long = spec.split([' ', ',']).find(|word| word.starts_with("--"))?;
            let value = spec.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(v, _)| v);
            Some((long.to_string(), value.unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn every_help_uses_the_chosen_names() {
    let helps: Vec<(&str, String)> = BINARIES.iter().map(|(name, binary)| (*name, help(binary))).collect();
    let of = |name: &str| &helps.iter().find(|(n, _)| *n == name).unwrap().1;
    let says = |name: &str, texts: &[&str]| {
        for text in texts {
            assert!(of(name).contains(text), "{name} --help has no {text:?}:\n{}", of(name));
        }
    };
    for relay in ["market_data_relay", "signal_relay", "execution_relay"] {
        says(
            relay,
            &[
                "--socket <PATH>",
                "--metrics-addr <ADDR>",
                "--metrics-interval <SECONDS>",
                "-l, --log-level <LEVEL>",
                "--max-message-size <BYTES>",
                "--queue-bytes <BYTES>",
                "--audit-file <FILE>",
            ],
        );
    }
    says("relay", &["-c, --config <FILE>", "-l, --log-level <LEVEL>"]);
    says(
        "relay_dev",
        &[
            "-s, --socket <PATH>",
            "--socket-dir <DIR>",
            "--metrics-addr <ADDR>",
            "--metrics-interval <SECONDS>",
            "-l, --log-level <LEVEL>",
            "-c, --config <FILE>",
        ],
    );
    for tool in ["torq-tap", "torq-record", "torq-replay", "torq-pub"] {
        says(tool, &["--socket <PATH>"]);
    }
    for tool in ["torq-tap", "torq-record"] {
        says(tool, &["--max-message-size <BYTES>"]);
    }
    says("torq-record", &["--duration <SECONDS>", "-o, --output <FILE>"]);
    says("torq-replay", &["--max-gap <SECONDS>", "--confirm-timeout <SECONDS>"]);
    says("torq-pub", &["--confirm-timeout <SECONDS>"]);
    // The demo's directory is relay_dev's --socket-dir; --dir, its former name, still works.
    says("torq-demo", &["--socket-dir <DIR>", "[alias: --dir]", "--seconds <SECONDS>"]);

    // Across binaries: a flag has one value name, and none of the former names is a flag.
    let mut values: BTreeMap<String, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
    for (name, text) in &helps {
        for (flag, value) in flags(text) {
            values.entry(flag).or_default().entry(value).or_default().push(name);
        }
    }
    for (flag, by_value) in &values {
        assert_eq!(by_value.len(), 1, "{flag} has several value names: {by_value:?}");
    }
    assert!(values.len() >= 25, "the flags were not read from the helps: {values:?}");
    for former in ["--relay", "--metrics", "--dir", "--url"] {
        assert!(!values.contains_key(former), "{former} is a flag of {:?}", values[former]);
    }
    for (name, text) in &helps {
        for wrong in ["<LOG_LEVEL>", "<SECS>", "<N>"] {
            let lines: Vec<&str> = flag_lines(text).into_iter().filter(|l| l.contains(wrong)).collect();
            // `<N>` stays for counts (--count N, --source N); sizes and levels have names.
            let lines: Vec<&&str> = lines
                .iter()
                .filter(|l| wrong != "<N>" || l.contains("size") || l.contains("bytes"))
                .collect();
            assert!(lines.is_empty(), "{name}: {lines:?}");
        }
    }
}
