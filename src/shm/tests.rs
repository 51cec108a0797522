//! The log in one process: byte-identical frames in order across wraps, an overrun reader
//! told exactly what it lost, a reader racing the writer never handed a torn frame, a
//! read-only descriptor that cannot be mapped for writing, the stop, and the futex wake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A frame of `len` bytes (at least 40) with `sequence` in its header and bytes that say both,
/// so a torn copy shows.
fn frame(sequence: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0; len];
    f[8..16].copy_from_slice(&sequence.to_le_bytes());
    f[24..28].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(32) {
        *b = (sequence as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

fn intact(bytes: &[u8]) -> bool {
    let sequence = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    bytes == frame(sequence, bytes.len())
}

fn log() -> LogWriter {
    LogWriter::create("torq-test", MIN_CAPACITY, 4096).unwrap()
}

#[test]
fn frames_come_out_byte_identical_and_in_order_across_wraps() {
    let mut writer = log();
    let mut reader = LogReader::attach(writer.reader_fd()).unwrap();
    let mut buf = vec![0; 4096];
    let mut sizes = [40usize, 128, 33, 4096, 1000, 47].iter().copied().cycle();
    for sequence in 1..=5_000u64 {
        let sent = frame(sequence, sizes.next().unwrap());
        writer.append(&sent, sequence % 7);
        match reader.next(&mut buf).unwrap() {
            Next::Frame { len, origin } => {
                assert_eq!(&buf[..len], &sent[..], "frame {sequence}");
                assert_eq!(origin, sequence % 7);
            }
            other => panic!("frame {sequence}: {other:?}"),
        }
    }
    assert_eq!(reader.next(&mut buf).unwrap(), Next::Empty);
    assert!(writer.written().2 > 0, "the ring wrapped");
}

#[test]
fn a_reader_attached_later_starts_at_the_next_frame_published() {
    let mut writer = log();
    for sequence in 1..=10 {
        writer.append(&frame(sequence, 100), 1);
    }
    let mut reader = LogReader::attach(writer.reader_fd()).unwrap();
    let mut buf = vec![0; 4096];
    assert_eq!(reader.next(&mut buf).unwrap(), Next::Empty);
    writer.append(&frame(11, 100), 1);
    assert_eq!(reader.next(&mut buf).unwrap(), Next::Frame { len: 100, origin: 1 });
    assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 11);
}

#[test]
fn an_overrun_reader_is_told_exactly_what_it_lost_and_goes_on_in_order() {
    let mut writer = log();
    let mut reader = LogReader::attach(writer.reader_fd()).unwrap();
    let mut buf = vec![0; 4096];
    // 12 000 records of 144 bytes: 1.6 rings, within the index's 32 768 slots.
    let total = 12_000u64;
    for sequence in 1..=total {
        writer.append(&frame(sequence, 128), 1);
    }
    let Next::Lost { count, first_sequence } = reader.next(&mut buf).unwrap() else { panic!("not overrun") };
    assert_eq!(first_sequence, Some(1), "the first lost frame is named");
    let mut received = Vec::new();
    loop {
        match reader.next(&mut buf).unwrap() {
            Next::Frame { len, .. } => {
                assert!(intact(&buf[..len]));
                received.push(u64::from_le_bytes(buf[8..16].try_into().unwrap()));
            }
            Next::Empty => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received.first(), Some(&(count + 1)), "it resumes right after what it lost");
    assert_eq!(received, (count + 1..=total).collect::<Vec<_>>(), "then every frame, in order");
    assert!(received.len() as u64 * 144 <= MIN_CAPACITY, "no more than the ring holds");
    // Overrun by more than the index holds, the count is still exact; the first sequence is
    // no longer known.
    for sequence in total + 1..=total + 40_000 {
        writer.append(&frame(sequence, 128), 1);
    }
    let Next::Lost { count, first_sequence } = reader.next(&mut buf).unwrap() else { panic!("not overrun") };
    assert_eq!(first_sequence, None);
    let Next::Frame { .. } = reader.next(&mut buf).unwrap() else { panic!("a frame") };
    assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), total + 1 + count);
}

/// The writer flat out on one thread (frames one by one and in batches), a reader on another
/// (one frame at a time, then in runs): whatever the interleaving, every frame handed over is
/// whole, sequences only go up, and what was read plus what was reported lost is everything.
#[test]
fn a_reader_racing_the_writer_is_never_handed_a_torn_frame() {
    for run in [1, 64] {
        let mut writer = log();
        let mut reader = LogReader::attach(writer.reader_fd()).unwrap();
        let total = 200_000u64;
        let done = Arc::new(AtomicBool::new(false));
        let reading = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut buf = vec![0; 64 * 4096];
                let mut copied = Vec::new();
                let (mut read, mut lost, mut last) = (0u64, 0u64, 0u64);
                loop {
                    match reader.read(&mut buf, run, &mut copied).unwrap() {
                        Next::Frames(n) => {
                            assert_eq!(n, copied.len());
                            let mut at = 0;
                            for c in &copied {
                                let frame = &buf[at..at + c.len];
                                assert!(intact(frame), "a torn frame after {read} frames");
                                let sequence = u64::from_le_bytes(frame[8..16].try_into().unwrap());
                                assert_eq!(sequence, last + 1, "in order, gaps only where reported");
                                (last, read, at) = (sequence, read + 1, at + c.len);
                            }
                        }
                        Next::Lost { count, first_sequence } => {
                            if let Some(first) = first_sequence {
                                assert_eq!(first, last + 1, "the first lost frame is the one due");
                            }
                            last += count;
                            lost += count;
                        }
                        Next::Empty if done.load(Ordering::Acquire) && reader.position() == total => break,
                        Next::Empty => std::hint::spin_loop(),
                        other => panic!("{other:?}"),
                    }
                }
                (read, lost)
            })
        };
        let sizes = [40usize, 128, 700, 56, 4096];
        let frames: Vec<Vec<u8>> = (1..=total).map(|s| frame(s, sizes[s as usize % sizes.len()])).collect();
        for (i, chunk) in frames.chunks(1 + run * 3).enumerate() {
            if i % 2 == 0 {
                chunk.iter().for_each(|f| writer.append(f, 1));
            } else {
                writer.append_all(chunk.iter().map(Vec::as_slice), 1);
            }
        }
        done.store(true, Ordering::Release);
        let (read, lost) = reading.join().unwrap();
        assert_eq!(read + lost, total, "runs of {run}");
        assert!(read > 0);
    }
}

#[test]
fn the_readers_descriptor_cannot_write_or_resize_the_log() {
    let writer = log();
    let fd = writer.reader_fd();
    let err = map::Map::new(fd, writer.len(), true).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::ACCESS.raw_os_error()), "{err}");
    assert!(rustix::io::write(fd, b"x").is_err(), "the descriptor is read-only");
    assert!(rustix::fs::ftruncate(fd, 0).is_err(), "and the file sealed against resizing");
    let flags = rustix::fs::fcntl_get_seals(fd).unwrap();
    use rustix::fs::SealFlags;
    assert!(flags.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL));
    // Reopened read-write through /proc, the file still takes no write and no writable
    // mapping.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let reopened = rustix::fs::open(path.as_str(), rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty())
        .expect("reopens");
    assert!(rustix::io::write(&reopened, b"x").is_err(), "a write through a reopened descriptor");
    let err = map::Map::new(&reopened, writer.len(), true).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::PERM.raw_os_error()), "{err}");
}

#[test]
fn a_log_of_another_layout_or_size_is_refused() {
    assert!(matches!(LogWriter::create("t", 3 << 20, 4096), Err(ShmError::Size { .. })));
    assert!(matches!(LogWriter::create("t", MIN_CAPACITY, 1 << 20), Err(ShmError::Size { .. })));
    // A memory file that is not a log.
    let other = rustix::fs::memfd_create("other", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&other, 1 << 16).unwrap();
    assert!(matches!(LogReader::attach(&other), Err(ShmError::Layout(_))));
}

#[test]
fn a_stopped_relay_closes_the_log_after_its_last_frame() {
    let mut writer = log();
    let mut reader = LogReader::attach(writer.reader_fd()).unwrap();
    writer.append(&frame(1, 64), 1);
    writer.close();
    let mut buf = vec![0; 4096];
    assert!(matches!(reader.next(&mut buf).unwrap(), Next::Frame { .. }), "what was published first");
    assert_eq!(reader.next(&mut buf).unwrap(), Next::Closed);
}

#[test]
fn a_sleeping_reader_is_woken_by_the_writer() {
    let mut writer = log();
    let reader = LogReader::attach(writer.reader_fd()).unwrap();
    let seen = reader.wake_word();
    let sleeper = std::thread::spawn(move || {
        let start = Instant::now();
        reader.sleep(seen, Duration::from_secs(30));
        (start.elapsed(), reader.published())
    });
    // Until it sleeps, a wake is not needed; then one wake per publication.
    std::thread::sleep(Duration::from_millis(50));
    writer.append(&frame(1, 64), 1);
    assert!(writer.wake());
    assert!(!writer.wake(), "nothing new: no second system call");
    let (slept, published) = sleeper.join().unwrap();
    assert_eq!(published, 1);
    assert!(slept < Duration::from_secs(30), "woken, not timed out: {slept:?}");
}

/// A log whose header and index lie (what `fuzz/` found): an error at attach, never a panic.
#[test]
fn a_log_that_lies_is_refused_not_a_panic() {
    let forged = |max_frame: u64, slot0: u64, len0: u64| {
        let file = rustix::fs::memfd_create("forged", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let capacity = MIN_CAPACITY;
        let slots = capacity / BYTES_PER_SLOT;
        rustix::fs::ftruncate(&file, HEADER as u64 + slots * 16 + capacity).unwrap();
        let put = |offset: u64, value: u64| {
            rustix::io::pwrite(&file, &value.to_le_bytes(), offset).unwrap();
        };
        put(0, MAGIC);
        put(8, VERSION);
        put(16, capacity);
        put(24, slots);
        put(32, max_frame);
        put(64, 1); // one frame published
        put(HEADER as u64, slot0); // at this position
        put(HEADER as u64 + slots * 16 + slot0 % capacity, len0); // of this length
        LogReader::attach(&file)
    };
    assert!(forged(4096, 0, 100).is_ok(), "a sane forgery attaches");
    assert!(matches!(forged(u64::MAX, 0, 100), Err(ShmError::Layout(_))), "max_frame overflowing");
    assert!(matches!(forged(1 << 62, 0, 100), Err(ShmError::Layout(_))));
    assert!(matches!(forged(4096, 1, 100), Err(ShmError::Layout(_))), "a position off a record boundary");
    assert!(matches!(forged(4096, MIN_CAPACITY - 16, 100), Err(ShmError::Layout(_))), "past the ring's end");
    assert!(matches!(forged(4096, u64::MAX - 15, 100), Err(ShmError::Layout(_))), "at the end of positions");
}
