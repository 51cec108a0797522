//! Frames as the publisher queues them: stamped in place with the next sequence of their
//! source, the time and the checksum, or marked bridged, or left as they are.

use crate::protocol::{Header, checksum};

/// What [`Publisher::offer_inner`] does to the frames it queues.
#[derive(Debug, Clone, Copy)]
pub(super) enum Queued {
    /// Nothing: their bytes as they are.
    Verbatim,
    /// The next sequence of their source, this timestamp, the checksum as the options say.
    Stamped(u64),
    /// Flags bit 0 set, the checksum computed again when there is one.
    Bridged,
}

/// The frames with a payload among whole frames back to back.
pub(super) fn data_frames_in(frames: &[u8]) -> u64 {
    let (mut at, mut count) = (0, 0);
    while let Some(header) = frames.get(at..).and_then(Header::view) {
        count += u64::from(header.payload_size() > 0);
        at += header.frame_len() as usize;
    }
    count
}

/// Stamps whole frames in place: the next sequence of each one's source, `timestamp`, and the
/// checksum (computed, or 0); returns the last sequence. `None` when `frames` is not one or
/// more whole frames: then no sequence is used (the headers before the fault stay stamped).
#[inline]
pub(super) fn stamp(frames: &mut [u8], sequences: &mut [u64; 256], timestamp: u64, crc: bool) -> Option<u64> {
    let (mut start, mut sequence) = (0, None);
    // A run of frames of the first one's size and source (a batch built from one template) is
    // stamped at a fixed stride, each frame checked as it comes: finding the next frame does
    // not wait for the load of the length of the one before, as in the walk below.
    if let Some(first) = Header::view(frames) {
        let (len, source) = (first.frame_len() as usize, first.source());
        let mut next = sequences[usize::from(source)];
        for frame in frames.chunks_exact_mut(len) {
            let header = Header::view_mut(frame).unwrap_or_else(|| unreachable!("a frame holds a header"));
            if header.frame_len() != len as u64 || header.source() != source {
                break;
            }
            next += 1;
            header.set_sequence(next);
            header.set_timestamp(timestamp);
            header.set_checksum(0);
            if crc {
                let sum = checksum(frame);
                frame[28..32].copy_from_slice(&sum.to_le_bytes());
            }
            start += len;
        }
        if start > 0 {
            sequences[usize::from(source)] = next;
            sequence = Some(next);
        }
    }
    // The rest, frame by frame.
    while start < frames.len() {
        let rest = &mut frames[start..];
        let available = rest.len() as u64;
        let Some(header) = Header::view_mut(rest).filter(|header| header.frame_len() <= available) else {
            unstamp(&frames[..start], sequences);
            return None;
        };
        let len = header.frame_len() as usize;
        let slot = &mut sequences[usize::from(header.source())];
        *slot += 1;
        header.set_sequence(*slot);
        header.set_timestamp(timestamp);
        header.set_checksum(0);
        sequence = Some(*slot);
        if crc {
            let frame = &mut frames[start..start + len];
            let sum = checksum(frame);
            frame[28..32].copy_from_slice(&sum.to_le_bytes());
        }
        start += len;
    }
    sequence
}

/// Gives back the sequences [`stamp`] took for `frames` (whole frames).
#[cold]
fn unstamp(frames: &[u8], sequences: &mut [u64; 256]) {
    let mut start = 0;
    while let Some(header) = frames.get(start..).and_then(Header::view) {
        sequences[usize::from(header.source())] -= 1;
        start += header.frame_len() as usize;
    }
}

/// The start of the frame holding byte `at` of `frames` (whole frames back to back).
pub(super) fn frame_start(frames: &[u8], at: usize) -> usize {
    let mut start = 0;
    while let Some(header) = frames.get(start..).and_then(Header::view) {
        let end = start + header.frame_len() as usize;
        if end > at {
            return start;
        }
        start = end;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Checks, ChecksumLevel, Crc, FrameBuilder, FrameKind, RelayDomain, validate};

    fn frame(source: u8, tlv_len: usize) -> Vec<u8> {
        let mut buf = vec![0; 64 + tlv_len];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::Signal, source).unwrap();
        builder.tlv(200, &vec![7; tlv_len]).unwrap();
        // Whatever the caller left in sequence, timestamp and checksum is overwritten.
        let len = builder.finish(99, 99, Crc::Skip);
        buf.truncate(len);
        buf[28..32].copy_from_slice(&[0xAB; 4]);
        buf
    }

    #[test]
    fn stamp_counts_per_source_and_writes_time_and_checksum() {
        let sources = [3, 3, 5, 3, 5];
        let mut batch: Vec<u8> = sources.iter().enumerate().flat_map(|(i, &s)| frame(s, 10 + i)).collect();
        let mut sequences = [0; 256];
        sequences[5] = 40;
        for crc in [false, true] {
            let before = sequences;
            assert_eq!(stamp(&mut batch, &mut sequences, 1234, crc), Some(before[5] + 2));
            assert_eq!((sequences[3], sequences[5]), (before[3] + 3, before[5] + 2));
            let (mut at, mut due) = (0, before);
            for &source in &sources {
                let header = Header::view(&batch[at..]).unwrap();
                due[usize::from(source)] += 1;
                assert_eq!((header.sequence(), header.timestamp()), (due[usize::from(source)], 1234));
                let len = header.frame_len() as usize;
                let checksum = header.checksum();
                if crc {
                    let checks =
                        Checks { checksum: ChecksumLevel::Verify, ..Checks::new(RelayDomain::Signal) };
                    assert_eq!(validate(&batch[at..at + len], &checks), Ok(FrameKind::Data));
                    assert_ne!(checksum, 0);
                } else {
                    assert_eq!(checksum, 0);
                }
                at += len;
            }
        }
    }

    #[test]
    fn stamp_goes_on_frame_by_frame_after_a_run_of_one_template() {
        let mut batch: Vec<u8> =
            [frame(3, 10), frame(3, 10), frame(3, 10), frame(5, 10), frame(3, 10), frame(3, 12)].concat();
        let mut sequences = [0; 256];
        assert_eq!(stamp(&mut batch, &mut sequences, 8, false), Some(5));
        let stamped: Vec<(u8, u64)> = (0..6)
            .map(|i| Header::view(&batch[i * 44..]).unwrap())
            .map(|header| (header.source(), header.sequence()))
            .collect();
        assert_eq!(stamped, [(3, 1), (3, 2), (3, 3), (5, 1), (3, 4), (3, 5)]);
        assert_eq!((sequences[3], sequences[5]), (5, 1));
    }

    #[test]
    fn stamp_refuses_what_is_not_whole_frames_and_uses_no_sequence() {
        let whole: Vec<u8> = [frame(3, 10), frame(5, 20), frame(3, 30)].concat();
        let mut sequences = [0; 256];
        sequences[3] = 7;
        for cut in [0, 1, 31, 32, 50, whole.len() - 1] {
            let mut batch = whole[..cut].to_vec();
            assert_eq!(stamp(&mut batch, &mut sequences, 1, false), None, "cut at {cut}");
            assert_eq!((sequences[3], sequences[5]), (7, 0), "cut at {cut}");
        }
        let mut batch = whole.clone();
        batch.push(0);
        assert_eq!(stamp(&mut batch, &mut sequences, 1, false), None);
        assert_eq!((sequences[3], sequences[5]), (7, 0));
        let mut batch = whole;
        assert_eq!(stamp(&mut batch, &mut sequences, 1, false), Some(9));
        // A run of one template cut short.
        let template = frame(3, 10);
        let mut batch = template.repeat(4);
        batch.truncate(3 * template.len() - 1);
        assert_eq!(stamp(&mut batch, &mut sequences, 1, false), None);
        assert_eq!((sequences[3], sequences[5]), (9, 1));
    }
}
