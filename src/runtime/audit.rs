//! The audit writer: a thread that appends the core's records to the audit file, fed through
//! a bounded channel. Flushed every 10 ms and at stop; fsynced at the configured interval.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::relays::audit::Record;

/// Batches of records in flight to the writer, at most this many.
const CHANNEL_BATCHES: usize = 1024;

/// The writer thread and the sending side of its channel.
#[derive(Debug)]
pub(crate) struct Audit {
    pub(crate) sender: Sender<Vec<Record>>,
    thread: JoinHandle<io::Result<()>>,
}

impl Audit {
    /// Opens `path` for appending and starts the writer.
    pub(crate) fn start(path: &Path, relay: &str, fsync_every: Duration) -> io::Result<Audit> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (sender, receiver) = bounded(CHANNEL_BATCHES);
        let relay = relay.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("audit-{relay}"))
            .spawn(move || write_records(&receiver, file, &relay, fsync_every))?;
        Ok(Audit { sender, thread })
    }

    /// Closes the channel and waits for every queued record to be written and synced.
    pub(crate) fn finish(self) -> io::Result<()> {
        drop(self.sender);
        self.thread.join().map_err(|_| io::Error::other("the audit writer panicked"))?
    }
}

fn write_records(
    receiver: &Receiver<Vec<Record>>,
    file: File,
    relay: &str,
    fsync_every: Duration,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut last_sync = Instant::now();
    loop {
        match receiver.recv_timeout(Duration::from_millis(10)) {
            Ok(batch) => {
                for record in batch {
                    record.write_line(&mut out, relay)?;
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                out.flush()?;
                return out.get_ref().sync_data();
            }
        }
        out.flush()?;
        if last_sync.elapsed() >= fsync_every {
            out.get_ref().sync_data()?;
            last_sync = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relays::audit::Outcome;

    #[test]
    fn records_reach_the_file_in_order() {
        let path = std::env::temp_dir().join(format!("torq-audit-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let audit = Audit::start(&path, "execution", Duration::from_millis(5)).unwrap();
        let record = |sequence, outcome| Record {
            time_ns: 1,
            connection: 2,
            pid: 3,
            uid: 4,
            outcome,
            source: 20,
            sequence,
            len: 82,
        };
        audit.sender.send(vec![record(1, Outcome::Hello), record(2, Outcome::Accepted)]).unwrap();
        audit.sender.send(vec![record(2, Outcome::Rejected("sequence_replay"))]).unwrap();
        audit.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "1 execution conn=2 pid=3 uid=4 hello source=20 sequence=1 len=82");
        assert!(lines[2].ends_with("rejected source=20 sequence=2 len=82 reason=sequence_replay"));
        std::fs::remove_file(&path).unwrap();
    }
}
