//! `relay_dev all` as the demo's child: started in a process group of its own (a Ctrl-C at the
//! terminal reaches the demo only, which stops the desk before the relays), its log read on a
//! thread of the demo's so nothing it writes lands in the live view, and the stats line it logs
//! each second per relay turned into that relay's own counters.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The relays' names in their log, in the demo's order: market data, signal, execution.
pub const NAMES: [&str; 3] = ["market-data", "signal", "execution"];
/// Lines of the relays' log kept for a failed start.
const TAIL: usize = 40;
/// Warnings and errors held while the view owns the terminal.
const HELD: usize = 200;

/// One relay's own counters, as its last stats line gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data frames it accepted.
    pub frames_in: u64,
    /// Frames it queued to subscribers.
    pub frames_out: u64,
    /// Frames it dropped for slow subscribers or lost with a disconnected one.
    pub dropped: u64,
    /// Frames it rejected.
    pub rejected: u64,
}

/// What the relays' log said.
#[derive(Debug, Default)]
struct Log {
    counters: Mutex<[Option<Counters>; 3]>,
    /// Warnings and errors not shown yet (the view owns the terminal).
    held: Mutex<Vec<String>>,
    /// The last lines other than stats, for a failed start.
    tail: Mutex<VecDeque<String>>,
    /// Hold warnings and errors rather than pass them to stderr now.
    hold: bool,
}

impl Log {
    fn take(&self, line: String) {
        let (prefix, message) = line.split_once("] ").unwrap_or(("", line.as_str()));
        for (index, name) in NAMES.iter().enumerate() {
            if let Some(stats) = message.strip_prefix(name).and_then(|m| m.strip_prefix(": ")) {
                if let (Some(counters), Ok(mut all)) = (parse_stats(stats), self.counters.lock()) {
                    all[index] = Some(counters);
                }
                return;
            }
        }
        let serious = prefix.contains(" WARN") || prefix.contains(" ERROR");
        if serious && !self.hold {
            eprintln!("{line}");
        } else if serious
            && let Ok(mut held) = self.held.lock()
            && held.len() < HELD
        {
            held.push(line.clone());
        }
        if let Ok(mut tail) = self.tail.lock() {
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// The counters of a stats line (`in 5 frames 200 B, out 5 frames 200 B, dropped 0,
/// rejected 0, …`, as `Metrics::stats_line` writes it after the relay's name).
fn parse_stats(stats: &str) -> Option<Counters> {
    let number = |label: &str| -> Option<u64> {
        let at = stats.find(label)? + label.len();
        stats[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some(Counters {
        frames_in: number("in ")?,
        frames_out: number("out ")?,
        dropped: number("dropped ")?,
        rejected: number("rejected ")?,
    })
}

/// The running relays.
#[derive(Debug)]
pub struct Relays {
    child: Child,
    log: Arc<Log>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Relays {
    /// Starts `relay_dev all` with its sockets in `dir` and a stats line each second; holds
    /// its warnings for later when `hold` (the view owns the terminal).
    ///
    /// # Errors
    ///
    /// When `relay_dev` cannot be started.
    pub fn start(relay_dev: &Path, dir: &Path, hold: bool) -> io::Result<Relays> {
        let mut child = Command::new(relay_dev)
            .arg("all")
            .arg("--socket-dir")
            .arg(dir)
            .args(["--metrics-interval", "1", "-l", "info"])
            .env_remove("RUST_LOG") // the stats lines are at info
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let log = Arc::new(Log { hold, ..Log::default() });
        let reader = child.stderr.take().map(|stderr| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.take(line);
                }
            })
        });
        Ok(Relays { child, log, reader, status: None })
    }

    /// Whether the relays are still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Each relay's counters from its last stats line (`None` until it logged one).
    pub fn counters(&self) -> [Option<Counters>; 3] {
        self.log.counters.lock().map(|c| *c).unwrap_or_default()
    }

    /// The warnings and errors held back, once.
    pub fn take_held(&self) -> Vec<String> {
        self.log.held.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default()
    }

    /// The last lines of their log.
    pub fn tail(&self) -> Vec<String> {
        self.log.tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }

    /// Stops them as an operator would, with SIGTERM: they stop reading, flush what they read
    /// (5 s at most) and exit. Waits for that (killing them after `patience`) and for the
    /// end of their log, whose last stats lines are their totals.
    pub fn stop(&mut self, patience: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            if self.running() {
                let pid = rustix::process::Pid::from_child(&self.child);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let until = Instant::now() + patience;
            self.status = loop {
                match self.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                    _ => {
                        let _ = self.child.kill();
                        break self.child.wait().ok();
                    }
                }
            };
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.status
    }
}

impl Drop for Relays {
    /// The relays never outlive the demo that started them, whatever path it leaves by.
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The socket files `relay_dev all` makes in `dir`, in the demo's order.
pub fn sockets(dir: &Path) -> [PathBuf; 3] {
    ["market_data.sock", "signals.sock", "execution.sock"].map(|name| dir.join(name))
}

/// Accepted frames in the execution relay's audit trail (`<dir>/execution.audit`).
pub fn audited(dir: &Path) -> Option<u64> {
    let file = std::fs::File::open(dir.join("execution.audit")).ok()?;
    let mut accepted = 0;
    for line in BufReader::new(file).lines() {
        if line.ok()?.contains(" accepted ") {
            accepted += 1;
        }
    }
    Some(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_line_gives_the_relay_s_counters() {
        let log = Log::default();
        log.take(
            "[2025-01-01T00:00:00Z INFO  torq::runtime] execution: in 12 frames 480 B, out 24 frames \
             960 B, dropped 1, rejected 3, protocol errors 0, slow disconnects 0, pauses 0, connections 4 \
             (total 4, refused 0), queue high-water 960 B checksum_missing=3"
                .to_string(),
        );
        let counters = Counters { frames_in: 12, frames_out: 24, dropped: 1, rejected: 3 };
        assert_eq!(*log.counters.lock().unwrap(), [None, None, Some(counters)]);
        assert!(log.tail.lock().unwrap().is_empty(), "stats lines are not kept");
    }

    #[test]
    fn warnings_are_held_while_the_view_owns_the_terminal() {
        let log = Log { hold: true, ..Log::default() };
        log.take("[2025-01-01T00:00:00Z WARN  torq::reactor] a warning".to_string());
        log.take("[2025-01-01T00:00:00Z INFO  torq::runtime] listening".to_string());
        assert_eq!(log.held.lock().unwrap().len(), 1);
        assert_eq!(log.tail.lock().unwrap().len(), 2);
    }
}
