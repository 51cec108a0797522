//! `promtool check metrics` on a scrape: the tests of the relays and of the bridge both use it
//! (the bridge's include this file by its path).
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `promtool` binary; the tests fail, saying how to install it, without it.
pub fn promtool_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .expect(
            "promtool not found in PATH or /usr/bin: the metrics tests check the scrapes with it; \
             install Debian's `prometheus` package (scripts/test-deps does)",
        )
}

/// Fails the test unless `promtool check metrics` takes `text` (a scrape's body) without a
/// word: it exits non-zero on an error and prints its lint complaints (no help text, a counter
/// without `_total`, a non-base unit, ...) one a line, so any line it prints is a failure.
pub fn assert_promtool_accepts(text: &str) {
    let mut child = Command::new(promtool_binary())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said: Vec<String> = [&output.stdout, &output.stderr]
        .iter()
        .flat_map(|bytes| String::from_utf8_lossy(bytes).lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        output.status.success() && said.is_empty(),
        "promtool check metrics: {}, said:\n{}\n--- the scrape ---\n{text}",
        output.status,
        said.join("\n")
    );
}

/// The body of an HTTP answer, after its head.
pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// The families of Prometheus text (`# TYPE` lines): name and type, in order.
pub fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// The metric names of the samples of Prometheus text.
pub fn sample_names(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}
