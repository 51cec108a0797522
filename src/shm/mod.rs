//! The broadcast log of shared-memory delivery (PROTOCOL.md §7; the layout, version 1, in
//! `docs/shm.md`): one writer (the relay), any number of readers that map it read-only.
//!
//! - A header page: magic, version, sizes, the frames published, the writer's *intent* (how
//!   far it may be writing), a futex word bumped when it wakes sleepers, and whether the
//!   relay has stopped.
//! - An index of `slots` entries: where frame `i` starts and its sequence (slot `i % slots`).
//! - The ring of `capacity` bytes: records of a 16-byte head (frame length, 0 for padding to
//!   the ring's end; the publishing connection's id) and the frame, padded to 16 bytes.
//!
//! The writer never waits. Before it writes bytes or an index slot it raises its intent, and
//! only after it has written them does it publish the frame; a reader copies a record, then
//! checks the intent: a record the writer may have reached while it was being copied is never
//! handed over (the reader has been overrun, and resumes at the oldest frame still whole,
//! counting what it lost).

mod map;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64, fence};
use std::time::Duration;

use map::Map;

/// The layout's magic (`TORQLOG1`, little-endian) and version.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TORQLOG1");
/// The layout version this code writes and reads.
pub const VERSION: u64 = 1;
/// Bytes of the header page.
pub const HEADER: usize = 4096;
/// Bytes of a record's head.
pub const RECORD_HEAD: usize = 16;
/// Bytes of the ring per index slot. The smallest data frame makes a record of 64 bytes, so
/// the index holds the positions of two rings of them: a reader overrun by up to a ring more
/// still learns the first sequence it lost.
pub const BYTES_PER_SLOT: u64 = 32;
/// Tries a reader makes to find a whole frame while the writer laps it, before it calls the
/// log corrupt (a writer that has stopped moving cannot lap anyone).
const RETRIES: u32 = 100_000;
/// The smallest and largest ring.
pub const MIN_CAPACITY: u64 = 1 << 20;
/// The largest ring (4 GiB).
pub const MAX_CAPACITY: u64 = 1 << 32;

// Offsets of the header's words.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_CAPACITY: usize = 16;
const H_SLOTS: usize = 24;
const H_MAX_FRAME: usize = 32;
/// Frames published (whole, readable): written by the writer with Release.
const H_PUBLISHED: usize = 64;
/// How far the writer may be writing: ring bytes and frames (each slot it may be writing).
const H_INTENT_TAIL: usize = 128;
const H_INTENT_FRAMES: usize = 136;
/// The futex word (u32), bumped each time the writer wakes sleepers.
const H_WAKE: usize = 192;
/// 1 once the relay has stopped (u32).
const H_CLOSED: usize = 196;

/// Why a log cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The ring size asked is out of bounds.
    #[error("shm size {asked} bytes: it must be a power of two from {min} to {max}, and at least 4 × max_message_size ({frame})", min = MIN_CAPACITY, max = MAX_CAPACITY)]
    Size {
        /// What was asked.
        asked: u64,
        /// The relay's max_message_size.
        frame: usize,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The descriptor does not hold a log this code understands.
    #[error("not a broadcast log of layout version {VERSION}: {0}")]
    Layout(String),
}

fn io_error(what: &'static str) -> impl FnOnce(io::Error) -> ShmError {
    move |source| ShmError::Io { what, source }
}

/// Bytes a record of a `len`-byte frame takes in the ring.
#[inline]
fn record_len(len: usize) -> u64 {
    (RECORD_HEAD + len.next_multiple_of(16)) as u64
}

/// The ring's sizes, as the header states them.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    capacity: u64,
    slots: u64,
    max_frame: usize,
}

impl Sizes {
    fn ring_offset(&self) -> usize {
        HEADER + self.slots as usize * 16
    }

    fn total(&self) -> usize {
        self.ring_offset() + self.capacity as usize
    }
}

/// Copies `words` into `out` (`out.len()` bytes: whole words, then the first bytes of the last):
/// whole words as single stores, not a copy per word.
#[inline]
fn copy_out(words: &[AtomicU64], out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(8);
    let mut words = words.iter();
    for (chunk, word) in (&mut chunks).zip(&mut words) {
        chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if let Some(word) = words.next() {
        let bytes = word.load(Relaxed).to_le_bytes();
        rest.copy_from_slice(&bytes[..rest.len()]);
    }
}

/// The relay's end: appends frames, wakes sleepers, says when it stops.
#[derive(Debug)]
pub struct LogWriter {
    map: Map,
    sizes: Sizes,
    /// The memory file, read-write; and a read-only descriptor of it for the readers.
    _file: OwnedFd,
    readonly: OwnedFd,
    /// Ring bytes and frames written so far.
    tail: u64,
    frames: u64,
    /// The futex word's value at the last wake.
    woken_at: u64,
    /// Times the ring wrapped.
    wraps: u64,
}

impl LogWriter {
    /// A new log of `capacity` ring bytes for frames up to `max_frame` bytes, in a memory
    /// file named `name`, sealed against resizing.
    ///
    /// # Errors
    ///
    /// [`ShmError::Size`] for a size out of bounds; [`ShmError::Io`] when the memory file
    /// cannot be made, sized, sealed or mapped.
    pub fn create(name: &str, capacity: u64, max_frame: usize) -> Result<LogWriter, ShmError> {
        use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || capacity < 4 * record_len(max_frame)
        {
            return Err(ShmError::Size { asked: capacity, frame: max_frame });
        }
        let sizes = Sizes { capacity, slots: capacity / BYTES_PER_SLOT, max_frame };
        let file = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
            .map_err(|e| io_error("memfd_create")(e.into()))?;
        rustix::fs::ftruncate(&file, sizes.total() as u64).map_err(|e| io_error("ftruncate")(e.into()))?;
        rustix::fs::fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW)
            .map_err(|e| io_error("sealing the log")(e.into()))?;
        let own = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let readonly = rustix::fs::open(own.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_error("opening the log read-only")(e.into()))?;
        let map = Map::new(&file, sizes.total(), true).map_err(io_error("mapping the log"))?;
        // From now on no one can write it but through this mapping: not a reader that reopens
        // its read-only descriptor read-write through /proc (a memory file's inode lets
        // anyone), nor a writable mapping made later.
        rustix::fs::fcntl_add_seals(&file, SealFlags::FUTURE_WRITE | SealFlags::SEAL)
            .map_err(|e| io_error("sealing the log against writes")(e.into()))?;
        map.word(H_VERSION).store(VERSION, Relaxed);
        map.word(H_CAPACITY).store(capacity, Relaxed);
        map.word(H_SLOTS).store(sizes.slots, Relaxed);
        map.word(H_MAX_FRAME).store(max_frame as u64, Relaxed);
        // The magic last: a reader that sees it sees the sizes.
        map.word(H_MAGIC).store(MAGIC, Release);
        Ok(LogWriter { map, sizes, _file: file, readonly, tail: 0, frames: 0, woken_at: 0, wraps: 0 })
    }

    /// The read-only descriptor readers are given.
    pub fn reader_fd(&self) -> BorrowedFd<'_> {
        self.readonly.as_fd()
    }

    /// Bytes of the whole log (header, index and ring): the `shm=` of notice 1.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never empty: a log has a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Frames written so far, ring bytes written so far, and wraps.
    pub fn written(&self) -> (u64, u64, u64) {
        (self.frames, self.tail, self.wraps)
    }

    /// Appends one whole frame published by connection `origin` ([`LogWriter::append_all`]).
    pub fn append(&mut self, frame: &[u8], origin: u64) {
        self.append_all(std::iter::once(frame), origin);
    }

    /// Appends whole frames (from 32 bytes to `max_frame`; others are not the relay's to
    /// accept, and are skipped) published by connection `origin`, and publishes them: the
    /// intent raised once and the frames published once per quarter ring of them, so that
    /// readers see the header's words change once per batch, not per frame.
    pub fn append_all<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]> + Clone, origin: u64) {
        let capacity = self.sizes.capacity;
        let max_frame = self.sizes.max_frame;
        let fits = move |frame: &[u8]| (32..=max_frame).contains(&frame.len());
        let mut rest = frames;
        loop {
            // How many of the frames go in this run (a quarter ring at most), and where it ends.
            let (mut tail, mut count, mut taken) = (self.tail, 0u64, 0usize);
            let limit = self.tail + capacity / 4;
            for frame in rest.clone() {
                if fits(frame) {
                    let rec = record_len(frame.len());
                    let start =
                        if tail % capacity + rec > capacity { tail.next_multiple_of(capacity) } else { tail };
                    if count > 0 && start + rec > limit {
                        break;
                    }
                    (tail, count) = (start + rec, count + 1);
                }
                taken += 1;
            }
            if taken == 0 {
                return;
            }
            self.map.word(H_INTENT_TAIL).store(tail, Relaxed);
            self.map.word(H_INTENT_FRAMES).store(self.frames + count, Relaxed);
            // The intent is visible before any byte it covers changes.
            fence(Release);
            for frame in rest.by_ref().take(taken).filter(|f| fits(f)) {
                self.write_record(frame, origin);
            }
            self.map.word(H_PUBLISHED).store(self.frames, Release);
        }
    }

    /// Writes one record (padding to the ring's end first when it does not fit before it)
    /// and its index slot, under an intent already raised over them.
    #[inline]
    fn write_record(&mut self, frame: &[u8], origin: u64) {
        let Sizes { capacity, slots, .. } = self.sizes;
        let ring = self.sizes.ring_offset();
        let rec = record_len(frame.len());
        if self.tail % capacity + rec > capacity {
            // Pad to the end: the frame goes whole at the ring's start.
            self.map.word(ring + (self.tail % capacity) as usize).store(0, Relaxed);
            self.tail = self.tail.next_multiple_of(capacity);
            self.wraps += 1;
        }
        let words = self.map.words(ring + (self.tail % capacity) as usize, rec as usize / 8);
        words[0].store(frame.len() as u64, Relaxed);
        words[1].store(origin, Relaxed);
        let mut body = words[2..].iter();
        let mut chunks = frame.chunks_exact(8);
        // Chunks first: the zip takes a word only for a chunk it has.
        for (chunk, word) in (&mut chunks).zip(&mut body) {
            word.store(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])), Relaxed);
        }
        let rest = chunks.remainder();
        if let (Some(word), false) = (body.next(), rest.is_empty()) {
            let mut last = [0; 8];
            last[..rest.len()].copy_from_slice(rest);
            word.store(u64::from_le_bytes(last), Relaxed);
        }
        let slot = self.map.words(HEADER + (self.frames % slots) as usize * 16, 2);
        slot[0].store(self.tail, Relaxed);
        slot[1].store(u64::from_le_bytes(frame[8..16].try_into().unwrap_or([0; 8])), Relaxed);
        self.tail += rec;
        self.frames += 1;
    }

    /// Wakes readers asleep on the log if anything was published since the last wake: one
    /// system call, whatever the number of frames. Returns whether it woke.
    pub fn wake(&mut self) -> bool {
        if self.woken_at == self.frames {
            return false;
        }
        self.woken_at = self.frames;
        let word = self.map.word32(H_WAKE);
        word.fetch_add(1, Release);
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), u32::MAX);
        true
    }

    /// Marks the log closed (the relay stops) and wakes every sleeper.
    pub fn close(&mut self) {
        self.map.word32(H_CLOSED).store(1, Release);
        self.woken_at = u64::MAX;
        let word = self.map.word32(H_WAKE);
        word.fetch_add(1, Release);
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), u32::MAX);
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// What [`LogReader::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole frame of `len` bytes, copied to the start of the buffer, published by
    /// connection `origin`.
    Frame {
        /// Its length.
        len: usize,
        /// The id of the connection that published it.
        origin: u64,
    },
    /// Nothing new.
    Empty,
    /// The writer overran this reader: `count` frames were lost, the first of sequence
    /// `first_sequence` (when the index still held it). Reading goes on at the oldest frame
    /// still whole.
    Lost {
        /// Frames lost.
        count: u64,
        /// The sequence of the first lost frame, if known.
        first_sequence: Option<u64>,
    },
    /// The relay has stopped.
    Closed,
    /// [`LogReader::read`]: this many whole frames, back to back in the buffer.
    Frames(usize),
}

/// A frame [`LogReader::read`] copied: its length and the id of the connection that
/// published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Its length.
    pub len: usize,
    /// Its publisher's connection id.
    pub origin: u64,
}

/// A reader's end: maps the log read-only and copies frames out, never a torn one.
#[derive(Debug)]
pub struct LogReader {
    map: Map,
    sizes: Sizes,
    /// The next frame's index and its position in the ring (absolute).
    next: u64,
    cursor: u64,
    /// Frames published, as last read: read again only when the reader has caught up.
    published: u64,
    /// What [`LogReader::next`] copied, kept so that it allocates once.
    one: Vec<Copied>,
}

impl LogReader {
    /// Maps the log behind `fd` (read-only) and starts at the frames published from now on.
    ///
    /// # Errors
    ///
    /// [`ShmError::Io`] when it cannot be mapped; [`ShmError::Layout`] when it is not a log
    /// of this version or its sizes do not hold together.
    pub fn attach(fd: impl AsFd) -> Result<LogReader, ShmError> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error("fstat of the log")(e.into()))?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len < HEADER {
            return Err(ShmError::Layout(format!("{len} bytes, less than a header")));
        }
        let map = Map::new(&fd, len - len % 8, false).map_err(io_error("mapping the log"))?;
        if map.word(H_MAGIC).load(Acquire) != MAGIC {
            return Err(ShmError::Layout("bad magic".into()));
        }
        let version = map.word(H_VERSION).load(Relaxed);
        if version != VERSION {
            return Err(ShmError::Layout(format!("version {version}")));
        }
        let sizes = Sizes {
            capacity: map.word(H_CAPACITY).load(Relaxed),
            slots: map.word(H_SLOTS).load(Relaxed),
            max_frame: usize::try_from(map.word(H_MAX_FRAME).load(Relaxed)).unwrap_or(usize::MAX),
        };
        let sane = sizes.capacity.is_power_of_two()
            && (MIN_CAPACITY..=MAX_CAPACITY).contains(&sizes.capacity)
            && sizes.slots == sizes.capacity / BYTES_PER_SLOT
            && sizes.max_frame >= 32
            // Before record_len: a max_frame near usize::MAX must not overflow it.
            && sizes.max_frame as u64 <= sizes.capacity / 4
            && 4 * record_len(sizes.max_frame) <= sizes.capacity
            && sizes.total() <= map.len();
        if !sane {
            return Err(ShmError::Layout(format!("inconsistent sizes {sizes:?} for {len} bytes")));
        }
        let mut reader =
            LogReader { map, sizes, next: 0, cursor: 0, published: 0, one: Vec::with_capacity(1) };
        reader.start_at_end()?;
        Ok(reader)
    }

    /// The largest frame the log holds.
    pub fn max_frame(&self) -> usize {
        self.sizes.max_frame
    }

    /// Bytes of the whole log.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never empty: a log has a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.map.word(H_PUBLISHED).load(Acquire)
    }

    /// The index of the next frame this reader will hand over.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Whether the relay has stopped.
    pub fn closed(&self) -> bool {
        self.map.word32(H_CLOSED).load(Acquire) != 0
    }

    /// Moves to the end: the next frame is the next one published.
    fn start_at_end(&mut self) -> Result<(), ShmError> {
        for _ in 0..RETRIES {
            let published = self.published();
            if published == 0 {
                (self.next, self.cursor) = (0, 0);
                return Ok(());
            }
            let last = published - 1;
            let (pos, _) = self.slot(last);
            if !pos.is_multiple_of(16) {
                return Err(ShmError::Layout(format!("the index places frame {last} at {pos}")));
            }
            let len = self.map.word(self.ring(pos)).load(Relaxed) as usize;
            fence(Acquire);
            if !self.slot_whole(last) || !self.bytes_whole(pos) {
                // The writer lapped what was read: read again.
                continue;
            }
            if !self.record_fits(pos, len) {
                return Err(ShmError::Layout(format!("the last frame's record says {len} bytes at {pos}")));
            }
            (self.next, self.cursor) = (published, pos.saturating_add(record_len(len)));
            return Ok(());
        }
        Err(ShmError::Layout(format!("no whole last frame after {RETRIES} tries: the log is corrupt")))
    }

    /// Whether a record of a `len`-byte frame at `pos` is one the writer could have made: a
    /// frame's length, whole before the ring's end, at a position that does not overflow.
    #[inline]
    fn record_fits(&self, pos: u64, len: usize) -> bool {
        (32..=self.sizes.max_frame).contains(&len)
            && pos % self.sizes.capacity + record_len(len) <= self.sizes.capacity
            && pos.checked_add(record_len(len)).is_some()
    }

    /// The ring offset (in the mapping) of absolute position `pos`.
    #[inline]
    fn ring(&self, pos: u64) -> usize {
        self.sizes.ring_offset() + (pos % self.sizes.capacity) as usize
    }

    /// Index slot of frame `i`: (position, sequence), to be validated after a fence.
    #[inline]
    fn slot(&self, i: u64) -> (u64, u64) {
        let at = HEADER + (i % self.sizes.slots) as usize * 16;
        (self.map.word(at).load(Relaxed), self.map.word(at + 8).load(Relaxed))
    }

    /// After an Acquire fence: slot of frame `i` was not being rewritten when it was read.
    #[inline]
    fn slot_whole(&self, i: u64) -> bool {
        self.map.word(H_INTENT_FRAMES).load(Relaxed) <= i.saturating_add(self.sizes.slots)
    }

    /// After an Acquire fence: the ring bytes from `pos` (one record) were not being
    /// overwritten when they were read.
    #[inline]
    fn bytes_whole(&self, pos: u64) -> bool {
        self.map.word(H_INTENT_TAIL).load(Relaxed) <= pos.saturating_add(self.sizes.capacity)
    }

    /// Copies the next frame into `buf` (at least [`LogReader::max_frame`] bytes long):
    /// [`LogReader::read`] of one frame.
    ///
    /// # Errors
    ///
    /// As [`LogReader::read`].
    pub fn next(&mut self, buf: &mut [u8]) -> Result<Next, ShmError> {
        let mut copied = std::mem::take(&mut self.one);
        let next = self.read(buf, 1, &mut copied);
        let first = copied.first().copied();
        self.one = copied;
        Ok(match (next?, first) {
            (Next::Frames(_), Some(Copied { len, origin })) => Next::Frame { len, origin },
            (other, _) => other,
        })
    }

    /// Copies up to `limit` whole frames, back to back, into `buf` (at least
    /// [`LogReader::max_frame`] bytes long), their lengths and origins into `copied`:
    /// [`Next::Frames`] with their count. One look at the writer's intent, after the copy,
    /// covers the whole run, so a reader that is behind pays for its frames' bytes and little
    /// more.
    ///
    /// # Errors
    ///
    /// [`ShmError::Layout`] when a record that is whole makes no sense (the log is corrupt), or
    /// `buf` cannot take the largest frame.
    pub fn read(&mut self, buf: &mut [u8], limit: usize, copied: &mut Vec<Copied>) -> Result<Next, ShmError> {
        copied.clear();
        if buf.len() < self.sizes.max_frame {
            return Err(ShmError::Layout(format!(
                "a buffer of {} bytes for frames of {}",
                buf.len(),
                self.sizes.max_frame
            )));
        }
        let (mut next, mut cursor, mut at) = (self.next, self.cursor, 0);
        let (mut corrupt, mut pads) = (None, 0);
        while copied.len() < limit {
            if next >= self.published {
                self.published = self.published();
                if next >= self.published {
                    break;
                }
            }
            let ring = self.ring(cursor);
            let len = self.map.word(ring).load(Relaxed) as usize;
            if len == 0 {
                // Padding to the ring's end; two in a row cannot be.
                pads += 1;
                if pads > 1 {
                    corrupt = Some(0);
                    break;
                }
                match cursor.checked_add(1).and_then(|c| c.checked_next_multiple_of(self.sizes.capacity)) {
                    Some(end) => cursor = end,
                    None => {
                        corrupt = Some(0);
                        break;
                    }
                }
                continue;
            }
            pads = 0;
            if !self.record_fits(cursor, len) {
                corrupt = Some(len);
                break;
            }
            if len > buf.len() - at {
                break;
            }
            let origin = self.map.word(ring + 8).load(Relaxed);
            copy_out(self.map.words(ring + RECORD_HEAD, len.div_ceil(8)), &mut buf[at..at + len]);
            copied.push(Copied { len, origin });
            (at, cursor, next) = (at + len, cursor.saturating_add(record_len(len)), next + 1);
        }
        if copied.is_empty() && corrupt.is_none() {
            // Closed is set after the last frame is published: nothing follows it.
            return Ok(if self.closed() && next >= self.published() { Next::Closed } else { Next::Empty });
        }
        // Whatever was read from `self.cursor` on is whole if the writer had not reached it.
        fence(Acquire);
        if !self.bytes_whole(self.cursor) {
            copied.clear();
            return self.resync();
        }
        if copied.is_empty() {
            let len = corrupt.unwrap_or_default();
            return Err(ShmError::Layout(format!("a record of {len} bytes at {cursor}")));
        }
        (self.next, self.cursor) = (next, cursor);
        Ok(Next::Frames(copied.len()))
    }

    /// After an overrun: moves to the oldest frame still whole with a quarter of the ring to
    /// spare, and says what was lost.
    #[cold]
    fn resync(&mut self) -> Result<Next, ShmError> {
        let lost_from = self.next;
        for _ in 0..RETRIES {
            let published = self.published();
            let (_, first) = self.slot(lost_from);
            // The frames whose slots are still whole, oldest first.
            let mut lo = lost_from.max(published.saturating_sub(self.sizes.slots - 1));
            let mut hi = published;
            let floor = self.map.word(H_INTENT_TAIL).load(Relaxed).saturating_add(self.sizes.capacity / 4);
            let floor = floor.saturating_sub(self.sizes.capacity);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.slot(mid).0 >= floor {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            if lo >= published {
                // A writer never raises its intent more than a quarter ring (and a padding)
                // past what it published, so a frame published is always past the floor.
                return Err(ShmError::Layout(format!(
                    "the writer's intent is past every frame published ({published})"
                )));
            }
            let (pos, _) = self.slot(lo);
            fence(Acquire);
            if !self.slot_whole(lo) || !self.bytes_whole(pos) {
                continue;
            }
            if !pos.is_multiple_of(16) {
                return Err(ShmError::Layout(format!("the index places frame {lo} at {pos}")));
            }
            let first_sequence = self.slot_whole(lost_from).then_some(first);
            (self.next, self.cursor) = (lo, pos);
            return Ok(Next::Lost { count: lo - lost_from, first_sequence });
        }
        Err(ShmError::Layout(format!("no whole frame found after {RETRIES} tries: the log is corrupt")))
    }

    /// The futex word and its value now: sleep on it with [`LogReader::sleep`] after finding
    /// nothing new.
    pub fn wake_word(&self) -> u32 {
        self.map.word32(H_WAKE).load(Acquire)
    }

    /// Sleeps until the writer wakes readers (the futex word moves from `seen`) or `timeout`
    /// passes.
    pub fn sleep(&self, seen: u32, timeout: Duration) {
        let word: &AtomicU32 = self.map.word32(H_WAKE);
        let timeout = rustix::thread::futex::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ =
            rustix::thread::futex::wait(word, rustix::thread::futex::Flags::empty(), seen, Some(&timeout));
    }
}

#[cfg(test)]
mod tests;
