//! Fuzzes the reader of the shared-memory broadcast log (`torq::shm`): whatever bytes the log
//! holds, `LogReader::attach`, `LogReader::next` and `LogReader::read` never panic or hang, and
//! every frame handed over is whole.
//!
//! The input is a script. Byte 0 picks the log: odd, one made by a real `LogWriter`; even, one
//! forged here in a memory file of our own (no seals) with a valid header. Bytes 1..5 are
//! `max_frame` (u32 LE, reduced to 32..=262 128, the largest a 1 MiB ring takes). Then come
//! operations, one byte each (`op % N`) and their operands, until the input ends (a missing
//! operand byte reads as 0). `next` goes into a buffer of `max_frame()` bytes; `read` (a run of
//! up to `limit` u8 + 1 frames) into one of `max_frame()` + room u24 (reduced to at most
//! 3 × `max_frame()`) bytes. An input makes at most 10 000 calls and copies at most 16 MiB of
//! frames; a reader whose call fails is dropped, as a client drops it.
//!
//! - Real log (`op % 8`): 0 append frames one by one (len u24, origin u8, count u8), 1 `next`
//!   × (u8 + 1), 2 attach again, 3 `close`, 4 `wake`, 5 copy the log into a forged one and go
//!   on with the rest of the script as a forged log (the writer seals its memory file against
//!   writes, so this copy is the only way to corrupt what it wrote without unsafe code),
//!   6 `append_all` (count u8, origin u8, k = 1..=4 lengths u24 used in turn, reduced to
//!   0..max_frame + 64: the writer skips those out of 32..=max_frame), 7 `read` (limit u8,
//!   room u24). The oracle is exact: each frame is the one appended at that index, byte for
//!   byte, with its origin; `Lost` counts frames really skipped and names the first one's
//!   sequence or none; `Empty` and `Closed` come only when the reader has everything; no
//!   call fails.
//! - Forged log (`op % 9`): 0 a header word (which u8: published, intent tail, intent
//!   frames, closed, wake, magic, version, capacity, slots, max frame; then a value), 1 an
//!   index slot (slot u16, position value, sequence value), 2 ring bytes (offset u32, n u8, n
//!   bytes), 3 a record head (offset u32 rounded down to 8, length value, origin u8), 4 append
//!   frames as the writer does, one at a time (len u24, origin u8, count u8), 5 attach
//!   (again), 6 `next` × (u8 + 1), 7 resize the file (the reader is dropped first: shrinking a
//!   mapped file would only show SIGBUS), 8 `read` (limit u8, room u24). A value is a
//!   selector byte and operands: a raw u64, the word's value plus or minus 1..=256, a small
//!   value, plus a u16 of 16-byte records, or near u64::MAX. The oracle: no panic, no hang,
//!   `32 <= len <= max_frame()` for every frame, and a run's frames fit its buffer.
//!
//! A count byte says `count + 1` frames, or `(count & 0x7f) × 256 + 1` when its top bit is
//! set: enough 32-byte frames to lap the 1 MiB ring.
#![no_main]
#![forbid(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};

use libfuzzer_sys::fuzz_target;
use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::io::{pread, pwrite};
use torq::shm::{
    BYTES_PER_SLOT, Copied, HEADER, LogReader, LogWriter, MAGIC, MIN_CAPACITY, Next, RECORD_HEAD, VERSION,
};

// Offsets of the header's words: copies of the private constants `H_MAGIC` … `H_CLOSED` of
// src/shm/mod.rs (layout version 1). Keep them in step with that file.
const H_MAGIC: u64 = 0;
const H_VERSION: u64 = 8;
const H_CAPACITY: u64 = 16;
const H_SLOTS: u64 = 24;
const H_MAX_FRAME: u64 = 32;
const H_PUBLISHED: u64 = 64;
const H_INTENT_TAIL: u64 = 128;
const H_INTENT_FRAMES: u64 = 136;
/// u32 words.
const H_WAKE: u64 = 192;
const H_CLOSED: u64 = 196;

/// Header words op 0 of a forged log writes: (offset, bytes).
const WORDS: [(u64, usize); 10] = [
    (H_PUBLISHED, 8),
    (H_INTENT_TAIL, 8),
    (H_INTENT_FRAMES, 8),
    (H_CLOSED, 4),
    (H_WAKE, 4),
    (H_MAGIC, 8),
    (H_VERSION, 8),
    (H_CAPACITY, 8),
    (H_SLOTS, 8),
    (H_MAX_FRAME, 8),
];

/// Every log here has the smallest ring.
const CAPACITY: u64 = MIN_CAPACITY;
const SLOTS: u64 = CAPACITY / BYTES_PER_SLOT;
/// Where the ring starts, and the log's bytes.
const RING: u64 = HEADER as u64 + SLOTS * 16;
const TOTAL: u64 = RING + CAPACITY;
/// The largest `max_frame` the ring takes: four records of it fill it.
const MAX_FRAME_BOUND: usize = CAPACITY as usize / 4 - RECORD_HEAD;
/// Calls of `next` and `read` per input, and bytes of the frames they hand over (a forged log
/// can hand the same large records over and over: the copies, not the reader, would take the
/// time).
const CALLS: u32 = 10_000;
const COPIED_BYTES: u64 = 16 << 20;
/// Frames and frame bytes appended per input, so that an input stays fast.
const MAX_APPENDS: u64 = 50_000;
const MAX_APPENDED_BYTES: u64 = 4 << 20;
/// The largest file op 7 makes (the header may claim a larger ring, up to what the file holds).
const MAX_FILE: u64 = 64 << 20;

/// The fuzzer's bytes, read front to back; missing bytes read as 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn le(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |v, i| v | u64::from(self.byte()) << (8 * i))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    /// A frame length for a log of `max_frame`: 32..=max_frame.
    fn frame_len(&mut self, max_frame: usize) -> usize {
        32 + self.le(3) as usize % (max_frame - 31)
    }

    /// How many frames an append adds.
    fn count(&mut self) -> u64 {
        let c = u64::from(self.byte());
        if c & 0x80 != 0 { (c & 0x7f) * 256 + 1 } else { c + 1 }
    }

    /// A value for a word that holds `current`.
    fn value(&mut self, current: u64) -> u64 {
        match self.byte() % 6 {
            0 => self.le(8),
            1 => current.wrapping_add(u64::from(self.byte()) + 1),
            2 => current.wrapping_sub(u64::from(self.byte()) + 1),
            3 => u64::from(self.byte()),
            4 => current.wrapping_add(self.le(2) * 16),
            _ => u64::MAX - u64::from(self.byte()),
        }
    }
}

/// What is left of an input's calls (`next`, `read`) and bytes of frames handed over.
struct Budget {
    calls: u32,
    bytes: u64,
}

impl Budget {
    /// Takes one call, if the budget has any left.
    fn take(&mut self) -> bool {
        if self.calls == 0 || self.bytes == 0 {
            return false;
        }
        self.calls -= 1;
        true
    }

    fn copied(&mut self, len: usize) {
        self.bytes = self.bytes.saturating_sub(len as u64);
    }
}

/// Frame `sequence` (1 for the first frame appended) of `len` bytes: its sequence at 8..16
/// (where the writer reads it for the index), its length at 24..28, then a byte that says the
/// sequence, so a torn or misplaced copy shows.
fn fill_frame(frame: &mut Vec<u8>, sequence: u64, len: usize) {
    frame.clear();
    frame.resize(len, body_byte(sequence));
    frame[..32].fill(0);
    frame[8..16].copy_from_slice(&sequence.to_le_bytes());
    frame[24..28].copy_from_slice(&(len as u32).to_le_bytes());
}

fn body_byte(sequence: u64) -> u8 {
    (sequence.wrapping_mul(31) % 255) as u8 + 1
}

/// Whether `bytes` is frame `sequence` as `fill_frame` makes it.
fn is_frame(bytes: &[u8], sequence: u64) -> bool {
    let body = body_byte(sequence);
    bytes[..8] == [0; 8]
        && bytes[8..16] == sequence.to_le_bytes()
        && bytes[16..24] == [0; 8]
        && bytes[24..28] == (bytes.len() as u32).to_le_bytes()
        && bytes[28..32] == [0; 4]
        && bytes[32..].iter().all(|&b| b == body)
}

/// Bytes a record of a `len`-byte frame takes in the ring (as src/shm/mod.rs computes it).
fn record_len(len: usize) -> u64 {
    (RECORD_HEAD + len.next_multiple_of(16)) as u64
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let real = input.byte() & 1 == 1;
    let max_frame = 32 + input.le(4) as usize % (MAX_FRAME_BOUND - 31);
    let mut calls = Budget { calls: CALLS, bytes: COPIED_BYTES };
    if real {
        if let Some(forged) = real_log(&mut input, max_frame, &mut calls) {
            forged_log(&mut input, forged, &mut calls);
        }
    } else {
        forged_log(&mut input, Forged::new(max_frame), &mut calls);
    }
});

/// A reader of a real log, its buffer (room for `read`'s runs), and the index of the frame it
/// must hand over next.
struct Tracked {
    reader: LogReader,
    buf: Vec<u8>,
    copied: Vec<Copied>,
    expect: u64,
}

/// What a real log's writer was given: (length, origin) of every frame it took, by index.
struct Sent {
    frames: Vec<(u32, u8)>,
    bytes: u64,
    closed: bool,
}

impl Sent {
    fn full(&self) -> bool {
        self.frames.len() as u64 >= MAX_APPENDS || self.bytes >= MAX_APPENDED_BYTES
    }
}

/// Runs the script on a log a `LogWriter` makes. Returns the forged copy when the script asks
/// for one (op 5), to go on with.
fn real_log(input: &mut Input<'_>, max_frame: usize, calls: &mut Budget) -> Option<Forged> {
    let mut writer = LogWriter::create("torq-fuzz-shm", CAPACITY, max_frame).expect("a valid size");
    assert_eq!(writer.len() as u64, TOTAL, "the layout this target copies");
    let mut sent = Sent { frames: Vec::new(), bytes: 0, closed: false };
    let mut frame = Vec::new();
    let mut tracked = attach_real(&writer, max_frame);
    while !input.is_empty() {
        match input.byte() % 8 {
            0 => {
                let len = input.frame_len(max_frame);
                let origin = input.byte();
                for _ in 0..input.count() {
                    if sent.full() {
                        break;
                    }
                    fill_frame(&mut frame, sent.frames.len() as u64 + 1, len);
                    writer.append(&frame, u64::from(origin));
                    sent.frames.push((len as u32, origin));
                    sent.bytes += len as u64;
                }
            }
            1 => {
                for _ in 0..=input.byte() {
                    if !calls.take() {
                        break;
                    }
                    check_real(&mut tracked, &sent, max_frame, None, calls);
                }
            }
            2 => tracked = attach_real(&writer, max_frame),
            3 => {
                writer.close();
                sent.closed = true;
            }
            4 => {
                writer.wake();
            }
            5 => return Some(Forged::copy_of(&writer, max_frame)),
            6 => {
                let count = input.count();
                let origin = input.byte();
                let lens: Vec<usize> =
                    (0..=input.byte() % 4).map(|_| input.le(3) as usize % (max_frame + 64)).collect();
                let mut frames = Vec::new();
                for i in 0..count {
                    if sent.full() {
                        break;
                    }
                    let len = lens[i as usize % lens.len()];
                    let mut frame = vec![0; len];
                    if (32..=max_frame).contains(&len) {
                        fill_frame(&mut frame, sent.frames.len() as u64 + 1, len);
                        sent.frames.push((len as u32, origin));
                    }
                    // Skipped or not, the bytes count: the input stays fast.
                    sent.bytes += len as u64;
                    frames.push(frame);
                }
                writer.append_all(frames.iter().map(Vec::as_slice), u64::from(origin));
            }
            _ => {
                let limit = usize::from(input.byte()) + 1;
                let room = input.le(3) as usize % (3 * max_frame + 1);
                if calls.take() {
                    check_real(&mut tracked, &sent, max_frame, Some((limit, room)), calls);
                }
            }
        }
        assert_eq!(writer.written().0, sent.frames.len() as u64, "frames the writer took");
    }
    // Whatever is left: the reader drains the log.
    while calls.take() {
        if let Next::Empty | Next::Closed = check_real(&mut tracked, &sent, max_frame, None, calls) {
            break;
        }
    }
    None
}

fn attach_real(writer: &LogWriter, max_frame: usize) -> Tracked {
    let reader = LogReader::attach(writer.reader_fd()).expect("a reader attaches to a writer's log");
    assert_eq!(reader.max_frame(), max_frame);
    let expect = writer.written().0;
    assert_eq!(reader.position(), expect, "a new reader starts at the next frame published");
    Tracked { buf: vec![0; 4 * max_frame], reader, copied: Vec::new(), expect }
}

/// One `next` (`run` None) or `read` (`run` of limit and room past `max_frame`) on a real log,
/// checked exactly against what was appended.
fn check_real(
    tracked: &mut Tracked,
    sent: &Sent,
    max_frame: usize,
    run: Option<(usize, usize)>,
    calls: &mut Budget,
) -> Next {
    let Tracked { reader, buf, copied, expect } = tracked;
    let written = sent.frames.len() as u64;
    let (limit, room) = run.unwrap_or((1, 0));
    let buf = &mut buf[..max_frame + room];
    let next = match run {
        None => reader.next(buf),
        Some(_) => reader.read(buf, limit, copied),
    };
    let next = next.unwrap_or_else(|e| {
        panic!("a log the writer made is called corrupt at frame {expect} of {written}: {e}")
    });
    match next {
        Next::Frame { len, origin } => {
            assert!(run.is_none(), "read gave {next:?}");
            copied.clear();
            copied.push(Copied { len, origin });
        }
        Next::Frames(n) => {
            assert!(run.is_some(), "next gave {next:?}");
            assert!(
                (1..=limit).contains(&n) && n == copied.len(),
                "{next:?}, limit {limit}, {} copied",
                copied.len()
            );
        }
        Next::Lost { count, first_sequence } => {
            assert!(count >= 1, "Lost of 0 frames at {expect}");
            assert!(
                *expect + count < written,
                "lost {count} from {expect}: it resumes at a frame published ({written})"
            );
            if let Some(first) = first_sequence {
                assert_eq!(first, *expect + 1, "the first lost frame is the one due");
            }
            *expect += count;
        }
        Next::Empty => {
            assert_eq!(*expect, written, "Empty with frames due");
            assert!(!sent.closed, "Empty after close (Closed is due)");
        }
        Next::Closed => {
            assert!(sent.closed, "Closed, the writer has not closed");
            assert_eq!(*expect, written, "Closed with frames due");
        }
    }
    if let Next::Frame { .. } | Next::Frames(_) = next {
        let mut at = 0;
        for &Copied { len, origin } in copied.iter() {
            assert!(*expect < written, "frame {expect} handed over, {written} appended");
            let (sent_len, sent_origin) = sent.frames[*expect as usize];
            assert_eq!(len, sent_len as usize, "length of frame {expect}");
            assert_eq!(origin, u64::from(sent_origin), "origin of frame {expect}");
            assert!(at + len <= buf.len(), "frames past the buffer");
            assert!(is_frame(&buf[at..at + len], *expect + 1), "frame {expect} is not the one appended");
            calls.copied(len);
            at += len;
            *expect += 1;
        }
    }
    assert_eq!(reader.position(), *expect);
    next
}

/// A log in a memory file of our own, written with `pwrite`; its own writer's state (ring bytes
/// and frames written), for appends that follow the writer's protocol.
struct Forged {
    fd: OwnedFd,
    max_frame: usize,
    tail: u64,
    frames: u64,
}

impl Forged {
    fn file() -> OwnedFd {
        let fd = memfd_create("torq-fuzz-shm", MemfdFlags::CLOEXEC).expect("memfd_create");
        ftruncate(&fd, TOTAL).expect("ftruncate");
        fd
    }

    /// A new empty log with a valid header.
    fn new(max_frame: usize) -> Forged {
        let log = Forged { fd: Forged::file(), max_frame, tail: 0, frames: 0 };
        log.set(H_VERSION, VERSION);
        log.set(H_CAPACITY, CAPACITY);
        log.set(H_SLOTS, SLOTS);
        log.set(H_MAX_FRAME, max_frame as u64);
        log.set(H_MAGIC, MAGIC);
        log
    }

    /// A copy of what `writer` wrote: the header page, the index slots and ring bytes it used.
    fn copy_of(writer: &LogWriter, max_frame: usize) -> Forged {
        let (frames, tail, _) = writer.written();
        let log = Forged { fd: Forged::file(), max_frame, tail, frames };
        let from = writer.reader_fd();
        let copy = |at: u64, len: u64| {
            let mut buf = vec![0; len as usize];
            let n = pread(from, &mut buf[..], at).expect("pread of the writer's log");
            assert_eq!(n, buf.len());
            log.write(at, &buf);
        };
        copy(0, HEADER as u64);
        copy(HEADER as u64, frames.min(SLOTS) * 16);
        copy(RING, tail.min(CAPACITY));
        log
    }

    fn word(&self, at: u64) -> u64 {
        let mut bytes = [0; 8];
        // Past the end of the file (after a resize), the word reads as 0.
        let _ = pread(&self.fd, &mut bytes[..], at);
        u64::from_le_bytes(bytes)
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            done += pwrite(&self.fd, &bytes[done..], at + done as u64).expect("pwrite");
        }
    }

    fn set(&self, at: u64, value: u64) {
        self.write(at, &value.to_le_bytes());
    }

    /// Appends a frame as `LogWriter::append` does, in its order: intent, bytes, slot, count.
    fn append(&mut self, frame: &[u8], origin: u64) {
        let rec = record_len(frame.len());
        let offset = self.tail % CAPACITY;
        if offset + rec > CAPACITY {
            let pad = CAPACITY - offset;
            self.set(H_INTENT_TAIL, self.tail + pad);
            self.set(RING + offset, 0);
            self.tail += pad;
        }
        let offset = self.tail % CAPACITY;
        self.set(H_INTENT_TAIL, self.tail + rec);
        self.set(H_INTENT_FRAMES, self.frames + 1);
        self.set(RING + offset, frame.len() as u64);
        self.set(RING + offset + 8, origin);
        let mut body = frame.to_vec();
        body.resize(frame.len().next_multiple_of(8), 0);
        self.write(RING + offset + RECORD_HEAD as u64, &body);
        let slot = HEADER as u64 + (self.frames % SLOTS) * 16;
        self.set(slot, self.tail);
        self.set(slot + 8, u64::from_le_bytes(frame[8..16].try_into().unwrap()));
        self.tail += rec;
        self.frames += 1;
        self.set(H_PUBLISHED, self.frames);
    }
}

/// Runs the rest of the script on a forged log.
fn forged_log(input: &mut Input<'_>, mut log: Forged, calls: &mut Budget) {
    let mut reader = attach_forged(&log);
    let mut frame = Vec::new();
    let (mut appends, mut appended_bytes) = (0u64, 0u64);
    while !input.is_empty() {
        match input.byte() % 9 {
            0 => {
                let (at, bytes) = WORDS[usize::from(input.byte()) % WORDS.len()];
                let value = input.value(log.word(at));
                log.write(at, &value.to_le_bytes()[..bytes]);
            }
            1 => {
                let slot = HEADER as u64 + input.le(2) % SLOTS * 16;
                let pos = input.value(log.word(slot));
                let sequence = input.value(log.word(slot + 8));
                log.set(slot, pos);
                log.set(slot + 8, sequence);
            }
            2 => {
                let at = RING + input.le(4) % CAPACITY;
                let n = usize::from(input.byte());
                let bytes = input.bytes(n).to_vec();
                log.write(at, &bytes);
            }
            3 => {
                let at = RING + ((input.le(4) % CAPACITY) & !7);
                let len = input.value(log.word(at));
                let origin = input.byte();
                log.set(at, len);
                log.set(at + 8, u64::from(origin));
            }
            4 => {
                let len = input.frame_len(log.max_frame);
                let origin = input.byte();
                for _ in 0..input.count() {
                    if appends >= MAX_APPENDS || appended_bytes >= MAX_APPENDED_BYTES {
                        break;
                    }
                    fill_frame(&mut frame, log.frames + 1, len);
                    log.append(&frame, u64::from(origin));
                    appends += 1;
                    appended_bytes += len as u64;
                }
            }
            5 => reader = attach_forged(&log),
            6 => {
                for _ in 0..=input.byte() {
                    if !next_forged(&mut reader, calls, None) {
                        break;
                    }
                }
            }
            8 => {
                let limit = usize::from(input.byte()) + 1;
                let room = input.le(3) as usize;
                next_forged(&mut reader, calls, Some((limit, room)));
            }
            _ => {
                // No reader maps the file while it changes size.
                reader = None;
                let size = match input.byte() % 3 {
                    0 => TOTAL + input.le(2) * 8,
                    1 => TOTAL.saturating_sub(input.le(2) * 8),
                    _ => input.le(4) % MAX_FILE,
                };
                ftruncate(&log.fd, size).expect("ftruncate");
            }
        }
    }
    // Whatever is left: the reader drains the log.
    while next_forged(&mut reader, calls, None) {}
}

/// A reader of the forged log, its buffer (room for `read`'s runs) and the frames a run copied;
/// `None` when attach refuses the log (which is fine).
struct Attached {
    reader: LogReader,
    buf: Vec<u8>,
    copied: Vec<Copied>,
}

fn attach_forged(log: &Forged) -> Option<Attached> {
    let reader = LogReader::attach(log.fd.as_fd()).ok()?;
    // A forged header may claim frames up to a quarter of a ring as large as the file.
    let buf = vec![0; 4 * reader.max_frame()];
    Some(Attached { reader, buf, copied: Vec::new() })
}

/// One `next` (`run` None) or `read` (`run` of limit, and room past `max_frame()` reduced to
/// at most 3 × `max_frame()`) on a forged log, if a reader is attached and the budget allows.
/// Returns whether to go on: false when there is no reader or no budget left, when the log had
/// nothing new, or when the call failed (and then the reader is dropped).
fn next_forged(attached: &mut Option<Attached>, calls: &mut Budget, run: Option<(usize, usize)>) -> bool {
    let Some(Attached { reader, buf, copied }) = attached else { return false };
    if !calls.take() {
        return false;
    }
    let max_frame = reader.max_frame();
    let (limit, room) = run.map_or((1, 0), |(limit, room)| (limit, room % (3 * max_frame + 1)));
    let buf = &mut buf[..max_frame + room];
    let next = match run {
        None => reader.next(buf),
        Some(_) => reader.read(buf, limit, copied),
    };
    let frames = match next {
        Ok(Next::Frame { len, origin }) => {
            assert!(run.is_none(), "read gave {next:?}");
            vec![Copied { len, origin }]
        }
        Ok(Next::Frames(n)) => {
            assert!(run.is_some(), "next gave {next:?}");
            assert!(
                (1..=limit).contains(&n) && n == copied.len(),
                "{next:?}, limit {limit}, {} copied",
                copied.len()
            );
            copied.clone()
        }
        Ok(Next::Lost { .. }) => return true,
        Ok(Next::Empty | Next::Closed) => return false,
        Err(e) => {
            let _ = e.to_string();
            *attached = None;
            return false;
        }
    };
    let mut at = 0;
    for Copied { len, .. } in frames {
        assert!(len >= 32, "a frame of {len} bytes, shorter than a header");
        assert!(len <= max_frame, "a frame of {len} bytes, max_frame {max_frame}");
        at += len;
        assert!(at <= buf.len(), "frames past the buffer of {} bytes", buf.len());
        calls.copied(len);
    }
    true
}
