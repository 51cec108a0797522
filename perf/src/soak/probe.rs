//! What a soak samples once a second: the relay process's resident memory, open file
//! descriptors and threads (from `/proc`), and its counters and queue depths (from its
//! Prometheus endpoint).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The relays of `relay_dev all`, as their log names them; the `domain` label of their
/// metrics is the same with `_` for `-` ([`domain`]).
pub const RELAYS: [&str; 3] = ["market-data", "signal", "execution"];

/// The `domain` label of a relay's metrics (`market-data` → `market_data`).
pub fn domain(relay: &str) -> String {
    relay.replace('-', "_")
}

/// The process's resources at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    /// Resident set size (`VmRSS`), bytes.
    pub rss: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
    /// Threads (`Threads`).
    pub threads: u64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/fd`.
pub fn process(pid: u32) -> Result<Process, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    let fd_dir = format!("/proc/{pid}/fd");
    let fds = std::fs::read_dir(&fd_dir).map_err(|e| format!("read {fd_dir}: {e}"))?.count() as u64;
    Ok(Process { rss: field("VmRSS")? * 1024, fds, threads: field("Threads")? })
}

/// One scrape of the metrics endpoint: `name{labels}` → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// A relay's metric `torq_relay_<name>`, e.g. `relay("frames_in_total", "market-data")`;
    /// 0 when absent.
    pub fn relay(&self, name: &str, relay: &str) -> u64 {
        let key = format!("torq_relay_{name}{{domain=\"{}\"}}", domain(relay));
        self.0.get(&key).copied().unwrap_or(0.0) as u64
    }

    /// The sum of a labelled family over its other labels, for one relay (e.g. every reason
    /// of `rejected_frames_total`).
    pub fn relay_sum(&self, name: &str, relay: &str) -> u64 {
        let prefix = format!("torq_relay_{name}{{domain=\"{}\",", domain(relay));
        self.0.iter().filter(|(key, _)| key.starts_with(&prefix)).map(|(_, v)| *v).sum::<f64>() as u64
    }

    /// The sum of a family over all its labels (`torq_bridge_dropped_total`: one bridge's);
    /// 0 when absent.
    pub fn family(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.0.iter().filter(|(key, _)| *key == name || key.starts_with(&prefix)).map(|(_, v)| *v).sum()
    }

    /// Parses Prometheus text: one `name{labels} value` per line, `#` lines skipped.
    pub fn parse(text: &str) -> Scrape {
        let values = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_string(), value.trim().parse().ok()?))
            })
            .collect();
        Scrape(values)
    }
}

/// `GET /metrics` over HTTP/1.0, bounded by `timeout` per step.
pub fn scrape(addr: SocketAddr, timeout: Duration) -> Result<Scrape, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("metrics {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut response = String::new();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut response))
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("metrics {addr}: no body"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("metrics {addr}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(Scrape::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = process(std::process::id()).unwrap();
        assert!(me.rss > 0 && me.fds >= 3 && me.threads >= 1, "{me:?}");
        assert!(process(u32::MAX).is_err());
    }

    #[test]
    fn parses_prometheus_text() {
        let scrape = Scrape::parse(
            "torq_relay_queued_bytes{domain=\"signal\"} 4096\n\
             # a comment\n\
             torq_relay_frames_in_total{domain=\"market_data\"} 9\n\
             torq_relay_rejected_frames_total{domain=\"execution\",reason=\"checksum_mismatch\"} 2\n\
             torq_relay_rejected_frames_total{domain=\"execution\",reason=\"sequence_replay\"} 3\n\
             torq_relay_rejected_frames_total{domain=\"signal\",reason=\"sequence_replay\"} 7\n",
        );
        assert_eq!(scrape.relay("queued_bytes", "signal"), 4096);
        assert_eq!(scrape.relay("queued_bytes", "execution"), 0);
        assert_eq!(scrape.relay("frames_in_total", "market-data"), 9);
        assert_eq!(scrape.relay_sum("rejected_frames_total", "execution"), 5);
        assert_eq!(scrape.family("torq_relay_rejected_frames_total"), 12.0);
        assert_eq!(scrape.family("torq_relay_queued_bytes"), 4096.0);
        assert_eq!(scrape.family("torq_relay_queued"), 0.0, "a whole name, not a prefix");
    }
}
