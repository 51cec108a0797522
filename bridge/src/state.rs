//! The execution import's cursor: the stream sequence of the last frame written to the local
//! relay, one small file per imported node, so a bridge started again (after `kill -9` too)
//! skips what JetStream delivers a second time and asks for the rest from the frame after it.
//!
//! The cursor is written (one `pwrite` of a fixed-width line) after the frames are written to
//! the relay and before they are acknowledged. A kill between those two writes is the one
//! window in which a frame can reach the relay twice; see the README's "Across hosts".

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A cursor file, locked while the bridge runs.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    file: File,
    delivered: u64,
}

impl Cursor {
    /// Opens (creating) the cursor of `me` importing `from` in `dir`, locks it, reads it.
    ///
    /// # Errors
    ///
    /// When it cannot be opened, is locked by another bridge, or does not hold a number.
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
        let delivered = match text.trim() {
            "" => 0,
            number => number.parse().map_err(|_| {
                context(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{number:?} is not a stream sequence"),
                ))
            })?,
        };
        Ok(Cursor { path, file, delivered })
    }

    /// The stream sequence of the last frame written to the relay (0: none yet).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Records that every frame up to `sequence` is in the relay.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn advance(&mut self, sequence: u64) -> io::Result<()> {
        self.file
            .write_all_at(format!("{sequence:020}\n").as_bytes(), 0)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.delivered = sequence;
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
        assert_eq!(cursor.delivered(), 0);
        cursor.advance(12_345).unwrap();
        cursor.advance(12_346).unwrap();
        let second = Cursor::open(&dir, "b", "a").unwrap_err();
        assert!(second.to_string().contains("locked by another bridge"), "{second}");
        drop(cursor);
        assert_eq!(Cursor::open(&dir, "b", "a").unwrap().delivered(), 12_346);
        std::fs::write(dir.join("torq-bridge.b.from-c.execution.cursor"), "x\n").unwrap();
        let bad = Cursor::open(&dir, "b", "c").unwrap_err();
        assert!(bad.to_string().contains("is not a stream sequence"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
