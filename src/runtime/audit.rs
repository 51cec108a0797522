//! The audit file (PROTOCOL.md §6 "The audit trail"): opened for appending and locked
//! exclusively at start, so a second relay naming the same file refuses to start; synced to
//! disk at the configured interval by a small thread. The reactors append the records
//! themselves, before they deliver the frames the records describe.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use log::error;
use rustix::fs::{FlockOperation, flock};

/// Opens `path` for appending and takes an exclusive lock on it.
///
/// # Errors
///
/// When the file cannot be opened, or another process holds its lock.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::other(
            "it is locked by another process (is another relay running with this audit file?)",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The thread that syncs audit files to disk.
#[derive(Debug)]
pub(crate) struct Syncer {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Syncs each file at its interval (a zero interval: every 10 ms).
    pub(crate) fn start(files: Vec<(Arc<File>, Duration)>) -> io::Result<Syncer> {
        let (stop, stopped) = bounded::<()>(0);
        let tick = files.iter().map(|(_, every)| *every).min().unwrap_or(Duration::from_secs(1));
        let tick = tick.max(Duration::from_millis(10));
        let thread = std::thread::Builder::new().name("audit-sync".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                sync(&files);
            }
            sync(&files);
        })?;
        Ok(Syncer { stop, thread })
    }

    /// Syncs once more and stops.
    pub(crate) fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn sync(files: &[(Arc<File>, Duration)]) {
    for (file, _) in files {
        if let Err(e) = file.sync_data() {
            error!("audit: cannot sync the audit file to disk: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_file() {
        let path = std::env::temp_dir().join(format!("torq-audit-lock-{}.log", std::process::id()));
        let first = open(&path).unwrap();
        let second = open(&path).unwrap_err();
        assert!(second.to_string().contains("locked by another process"), "{second}");
        drop(first);
        assert!(open(&path).is_ok(), "the lock goes with the file");
        std::fs::remove_file(&path).unwrap();
    }
}
