//! The local execution relay's audit trail (PROTOCOL.md §6), read to settle frames in doubt: a
//! bridge killed between writing a batch into the relay and recording it left frames that the
//! relay may have accepted. The relay writes a record of every frame it accepts before it
//! forwards it, with the writer's pid; the restarted bridge skips the frames the records show.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// The most of the file's end read to find the records since a time.
const MAX_WINDOW: u64 = 256 << 20;

/// A frame as the audit trail names it: source, sequence, length.
pub type Key = (u8, u64, u32);

/// One audit line's time, pid, whether it is an accepted frame, and its key.
fn parse(line: &str) -> Option<(u64, i32, bool, Key)> {
    let mut words = line.split_ascii_whitespace();
    let time = words.next()?.parse().ok()?;
    let _relay = words.next()?;
    let _conn = words.next()?;
    let pid = words.next()?.strip_prefix("pid=")?.parse().ok()?;
    let _uid = words.next()?;
    let accepted = words.next()? == "accepted";
    let source = words.next()?.strip_prefix("source=")?.parse().ok()?;
    let sequence = words.next()?.strip_prefix("sequence=")?.parse().ok()?;
    let len = words.next()?.strip_prefix("len=")?.parse().ok()?;
    Some((time, pid, accepted, (source, sequence, len)))
}

/// The frames the relay accepted from process `pid` at or after `since_ns`, reading the file
/// from its end back to the first record older than a second before `since_ns` (at most its
/// last 256 MiB).
///
/// # Errors
///
/// When the file cannot be read.
pub fn accepted_since(path: &Path, pid: i32, since_ns: u64) -> io::Result<HashSet<Key>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let horizon = since_ns.saturating_sub(1_000_000_000);
    let mut window = 1u64 << 20;
    let text = loop {
        let start = size.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((size - start) as usize);
        file.by_ref().take(size - start).read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // The first whole line of the window (the one before it may be cut).
        let first = if start == 0 { text.lines().next() } else { text.lines().nth(1) };
        // Bounded: a file whose lines do not parse (not an audit file) is read no further than
        // its last 256 MiB.
        if start == 0
            || window >= MAX_WINDOW
            || first.and_then(parse).is_some_and(|(time, ..)| time < horizon)
        {
            break text;
        }
        window *= 2;
    };
    Ok(text
        .lines()
        .filter_map(parse)
        .filter(|&(time, from, accepted, _)| accepted && from == pid && time >= since_ns)
        .map(|(.., key)| key)
        .collect())
}

/// Waits until the relay has audited every frame of `wanted`, or until what it has audited from
/// `pid` stops changing for a second (it has read all the dead connection held; under
/// back-pressure the relay reads it later, so at most 10 s); returns the frames of `wanted` it
/// accepted.
///
/// # Errors
///
/// When the audit file cannot be read.
pub async fn settle(path: &Path, pid: i32, since_ns: u64, wanted: &HashSet<Key>) -> io::Result<HashSet<Key>> {
    let start = Instant::now();
    let mut last_change = Instant::now();
    let mut found = HashSet::new();
    loop {
        let now: HashSet<Key> = accepted_since(path, pid, since_ns)?.intersection(wanted).copied().collect();
        if now.len() != found.len() {
            last_change = Instant::now();
            found = now;
        }
        if found.len() == wanted.len()
            || last_change.elapsed() >= Duration::from_secs(1)
            || start.elapsed() >= Duration::from_secs(10)
        {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_process_since_a_time() {
        let dir = std::env::temp_dir().join(format!("torq-bridge-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("execution.audit");
        let mut text = String::new();
        // Far in the past, then the lines that matter, with the relay's other records mixed in.
        for i in 0..40_000u64 {
            text += &format!(
                "{} execution conn=1 pid=7 uid=0 accepted source=4 sequence={i} len=128\n",
                1_000 + i
            );
        }
        text += "5000000000 execution conn=2 pid=9 uid=0 hello source=0 sequence=0 len=32\n";
        text += "5000000001 execution conn=2 pid=9 uid=0 accepted source=4 sequence=1 len=128\n";
        text += "5000000002 execution conn=2 pid=9 uid=0 rejected source=4 sequence=2 len=128 reason=sequence_replay\n";
        text += "5000000003 execution conn=3 pid=8 uid=0 accepted source=4 sequence=3 len=128\n";
        text += "4999999999 execution conn=2 pid=9 uid=0 accepted source=5 sequence=1 len=64\n";
        text += "5000000004 execution conn=2 pid=9 uid=0 accepted source=4 sequence=4 len=1";
        std::fs::write(&path, text).unwrap();
        let found = accepted_since(&path, 9, 5_000_000_000).unwrap();
        assert_eq!(found, HashSet::from([(4, 1, 128), (4, 4, 1)]));
        assert!(accepted_since(&dir.join("missing"), 9, 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
