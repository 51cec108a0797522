//! The execution import's cursor: the stream sequence of the last frame written to the local
//! relay, one small file per imported node, so a bridge started again (after `kill -9` too)
//! skips what JetStream delivers a second time and asks for the rest from the frame after it.
//!
//! Before a batch is written to the relay the cursor says which frames are being written, by
//! which process, since when; after, that they are in. A bridge started after a kill in between
//! asks the relay's audit trail which of those frames the relay accepted ([`crate::audit`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A cursor file, locked while the bridge runs. One fixed-width line, written in place with one
/// `pwrite`: `<delivered> <writing> <pid> <since>` — everything up to `delivered` is in the
/// relay; frames up to `writing` were being written by process `pid` from `since` (ns).
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    file: File,
    delivered: u64,
    in_doubt: Option<InDoubt>,
}

/// Frames a bridge was writing into the relay when it stopped: the relay may hold some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDoubt {
    /// The last stream sequence known to be in the relay.
    pub after: u64,
    /// The last stream sequence being written.
    pub upto: u64,
    /// The process that was writing them.
    pub pid: i32,
    /// When it began, in nanoseconds since the Unix epoch.
    pub since_ns: u64,
}

impl Cursor {
    /// Opens (creating) the cursor of `me` importing `from` in `dir`, locks it, reads it.
    ///
    /// # Errors
    ///
    /// When it cannot be opened, is locked by another bridge, or does not hold a cursor.
    pub fn open(dir: &Path, me: &str, from: &str) -> io::Result<Cursor> {
        let path = dir.join(format!("torq-bridge.{me}.from-{from}.execution.cursor"));
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(context)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
            context(if e == rustix::io::Errno::WOULDBLOCK {
                io::Error::other("locked by another bridge (is a bridge with this --node already running?)")
            } else {
                e.into()
            })
        })?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(context)?;
        let numbers: Result<Vec<u64>, _> = text.split_whitespace().map(str::parse).collect();
        let (delivered, in_doubt) = match numbers.as_deref() {
            Ok([]) => (0, None),
            Ok(&[delivered, writing, pid, since_ns]) if writing >= delivered => {
                let pid = i32::try_from(pid).unwrap_or(0);
                (
                    delivered,
                    (writing > delivered).then_some(InDoubt {
                        after: delivered,
                        upto: writing,
                        pid,
                        since_ns,
                    }),
                )
            }
            _ => {
                return Err(context(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{:?} is not a cursor (delivered, writing, pid, since)", text.trim()),
                )));
            }
        };
        Ok(Cursor { path, file, delivered, in_doubt })
    }

    /// The stream sequence of the last frame written to the relay (0: none yet).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// What the last bridge was writing when it stopped, if it stopped while writing.
    pub fn in_doubt(&self) -> Option<InDoubt> {
        self.in_doubt
    }

    /// Records, before they are written, that frames up to `upto` are being written from `now_ns`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn begin(&mut self, upto: u64, now_ns: u64) -> io::Result<()> {
        self.write(self.delivered, upto.max(self.delivered), now_ns)
    }

    /// Records that every frame up to `sequence` is in the relay.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn advance(&mut self, sequence: u64) -> io::Result<()> {
        self.write(sequence, sequence, 0)?;
        self.delivered = sequence;
        Ok(())
    }

    fn write(&mut self, delivered: u64, writing: u64, since_ns: u64) -> io::Result<()> {
        let line = format!("{delivered:020} {writing:020} {:010} {since_ns:020}\n", std::process::id());
        self.file
            .write_all_at(line.as_bytes(), 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.in_doubt = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_restart_and_is_held_by_one_bridge() {
        let dir = std::env::temp_dir().join(format!("torq-bridge-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cursor = Cursor::open(&dir, "b", "a").unwrap();
        assert_eq!((cursor.delivered(), cursor.in_doubt()), (0, None));
        cursor.begin(12_345, 7).unwrap();
        cursor.advance(12_345).unwrap();
        cursor.begin(12_350, 9).unwrap();
        let second = Cursor::open(&dir, "b", "a").unwrap_err();
        assert!(second.to_string().contains("locked by another bridge"), "{second}");
        drop(cursor);
        // Stopped while writing 12_346..=12_350.
        let cursor = Cursor::open(&dir, "b", "a").unwrap();
        assert_eq!(cursor.delivered(), 12_345);
        let pid = std::process::id() as i32;
        assert_eq!(cursor.in_doubt(), Some(InDoubt { after: 12_345, upto: 12_350, pid, since_ns: 9 }));
        std::fs::write(dir.join("torq-bridge.b.from-c.execution.cursor"), "x\n").unwrap();
        let bad = Cursor::open(&dir, "b", "c").unwrap_err();
        assert!(bad.to_string().contains("is not a cursor"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
