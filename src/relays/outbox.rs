//! One connection's outbound queue, sans-IO: slices of shared batches and the relay's own
//! frames (notices, heartbeats), bounded in bytes, written to any [`Sink`].
//!
//! The queue is charged the whole shared buffer its first slice of a batch keeps alive; a
//! small part of a large buffer is copied instead so it does not pin it. A run of frames that
//! does not fit meets the slow-consumer [`Policy`]: `drop` skips whole frames, `disconnect`
//! closes, `block` queues it anyway and pauses its publisher until the queue drains to half
//! its bound. Time is an argument.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::{Crc, FrameBuilder, Header, Heartbeat, RelayDomain, RelayNotice, notice, registry};

use super::batch::{Batch, PublisherId, Run};
use super::sink::{Sink, Wrote};
use super::{Metrics, RelayConfig};
use crate::config::Policy;

/// Notices queued to one connection beyond which rejections and drops are merged into counts.
pub(crate) const MAX_PENDING_NOTICES: usize = 16;
/// The most slices one vectored write takes.
const MAX_SLICES: usize = 64;

/// What an entry of the queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Data frames of a batch, this many.
    Frames(u32),
    /// A RelayNotice; `confirm` for notice 7, of which at most one is pending; `log` for
    /// notice 1 granting the broadcast log, whose descriptor goes with its first byte.
    Notice { confirm: bool, log: bool },
    /// A Heartbeat.
    Heartbeat,
}

#[derive(Debug)]
struct Entry {
    data: Bytes,
    /// Bytes counted against the queue bound for this entry.
    charge: usize,
    kind: Kind,
}

/// A RelayNotice to send (PROTOCOL.md §6), before it is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// The code (`notice::SUBSCRIBED` …).
    pub(crate) code: u16,
    /// The sequence of the frame concerned, else 0.
    pub(crate) sequence: u64,
    /// The text.
    pub(crate) text: String,
}

/// Data frames queued and not wholly written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Undelivered {
    /// How many.
    pub frames: u64,
    /// The sequence of the first.
    pub first: u64,
    /// The sequence of the last.
    pub last: u64,
}

/// What offering a batch's runs to a queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Offer {
    /// The batch's publisher was paused on this queue's account (it was not already).
    pub(crate) paused: bool,
    /// The queue is full under `disconnect`: close the connection as a slow consumer.
    pub(crate) slow: bool,
    /// Writing failed: the peer stopped reading.
    pub(crate) write_failed: bool,
}

/// The socket can no longer be written to (the peer stopped reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteFailed;

/// A time publishers were paused on this queue's account; `end` is `None` while they still
/// are.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: Instant,
    end: Option<Instant>,
}

/// One connection's outbound queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    entries: VecDeque<Entry>,
    /// Bytes of the front entry already written.
    written: usize,
    /// Sum of the charges of the queued entries.
    charged: usize,
    /// The part of `charged` counted in the relay's `queued_bytes` gauge.
    reported: usize,
    notices: usize,
    /// Rejections and drops merged into counts while too many notices were queued.
    merged_rejects: u64,
    merged_drops: u64,
    /// Frames dropped since the last notice 4, and the first dropped sequence.
    drops: u64,
    first_drop: u64,
    notice_sequence: u64,
    /// Notices 7 queued: at most one not yet started, and one being written.
    confirms: u8,
    /// The counts of a notice 7 that found no room among the pending notices.
    confirm_owed: Option<(u64, u64)>,
    /// Publishers paused on this queue's account.
    paused: Vec<PublisherId>,
    /// When publishers were paused on this queue's account, within the last two stall
    /// windows.
    pause_spans: VecDeque<Span>,
    /// The peer stopped reading: nothing more is queued.
    dead: bool,
    /// A notice did not fit (see [`Outbox::overflowed`]).
    overflowed: bool,
    last_sent: Instant,
    frames_sent: u64,
}

impl Outbox {
    pub(crate) fn new(now: Instant) -> Self {
        Outbox {
            entries: VecDeque::new(),
            written: 0,
            charged: 0,
            reported: 0,
            notices: 0,
            merged_rejects: 0,
            merged_drops: 0,
            drops: 0,
            first_drop: 0,
            notice_sequence: 0,
            confirms: 0,
            confirm_owed: None,
            paused: Vec::new(),
            pause_spans: VecDeque::new(),
            dead: false,
            overflowed: false,
            last_sent: now,
            frames_sent: 0,
        }
    }

    /// Nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Notices queued and not wholly written.
    #[cfg(test)]
    pub(crate) fn notices_pending(&self) -> usize {
        self.notices
    }

    /// Bytes counted against the bound.
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// Brings the relay's `queued_bytes` gauge up to date with this queue's charge: one
    /// atomic operation when it changed, called once per batch, write or close, never per
    /// frame.
    pub(crate) fn report_charge(&mut self, metrics: &Metrics) {
        if self.charged > self.reported {
            metrics.queued_bytes.fetch_add((self.charged - self.reported) as u64, Relaxed);
        } else if self.charged < self.reported {
            metrics.queued_bytes.fetch_sub((self.reported - self.charged) as u64, Relaxed);
        }
        self.reported = self.charged;
    }

    /// Takes this queue's charge out of the relay's `queued_bytes` gauge, for a connection
    /// being closed.
    pub(crate) fn withdraw_charge(&mut self, metrics: &Metrics) {
        metrics.queued_bytes.fetch_sub(self.reported as u64, Relaxed);
        self.reported = 0;
    }

    /// The peer stopped reading.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead
    }

    /// Publishers paused on this queue's account.
    pub(crate) fn paused_publishers(&self) -> &[PublisherId] {
        &self.paused
    }

    /// Queues the runs of `batch` a subscriber takes, applying the relay's slow-consumer policy
    /// to what does not fit within its queue bound; drains to `socket` first when the queue is
    /// full.
    pub(crate) fn offer(
        &mut self,
        batch: &Batch,
        runs: &[Run],
        config: &RelayConfig,
        socket: &mut impl Sink,
        now: Instant,
        metrics: &Metrics,
    ) -> Offer {
        let (policy, bound) = (config.policy, config.queue_bytes);
        let mut offer = Offer::default();
        let mut charged = false;
        for &Run { start, end, frames } in runs {
            // The first slice of the batch is charged the whole shared buffer it keeps alive; a
            // small part of a large buffer is copied instead so it does not pin it.
            let whole = if charged { 0 } else { batch.alloc };
            let copy = (end - start) * 8 < batch.alloc;
            let charge = if copy { end - start } else { whole };
            if self.charged + charge > bound
                && !self.entries.is_empty()
                && self.write_to(socket, now, metrics).is_err()
            {
                // The kernel's socket buffer is the first place to drain to.
                offer.write_failed = true;
                return offer;
            }
            if self.charged + charge <= bound {
                charged |= !copy;
                self.push_frames(batch.bytes.slice(start..end), copy, charge, frames, metrics);
                continue;
            }
            if policy == Policy::Block {
                if !self.paused.contains(&batch.publisher) {
                    self.paused.push(batch.publisher);
                    if self.pause_spans.back().is_none_or(|s| s.end.is_some()) {
                        self.pause_spans.push_back(Span { start: now, end: None });
                    }
                    metrics.pauses.fetch_add(1, Relaxed);
                    offer.paused = true;
                }
                charged |= !copy;
                self.push_frames(batch.bytes.slice(start..end), copy, charge, frames, metrics);
                continue;
            }
            // The run does not fit: drain the queue to the socket, queue (copied) the whole
            // frames that fit in the room left, and go on while the socket takes everything;
            // once it is full too, the policy acts on the rest of the run. One write and one
            // copy per pass, not per frame: a slow consumer must not make dropping costly.
            let frame_len = |offset: usize| {
                batch
                    .bytes
                    .get(offset..end)
                    .and_then(Header::view)
                    .map_or(end - offset, |h| h.frame_len() as usize)
            };
            let mut offset = start;
            while offset < end {
                if self.write_to(socket, now, metrics).is_err() {
                    offer.write_failed = true;
                    return offer;
                }
                // The socket took the whole queue: at least one frame fits the empty queue
                // (queue_bytes >= 2 x max_message_size), so every pass makes progress.
                let drained = self.entries.is_empty();
                let mut room = bound.saturating_sub(self.charged);
                let (mut fit, mut fit_frames) = (offset, 0);
                while fit < end {
                    let len = frame_len(fit);
                    if len > room {
                        break;
                    }
                    (room, fit, fit_frames) = (room - len, fit + len, fit_frames + 1);
                }
                if fit > offset {
                    self.push_frames(batch.bytes.slice(offset..fit), true, fit - offset, fit_frames, metrics);
                    offset = fit;
                }
                if !drained {
                    break;
                }
            }
            if offset < end {
                if policy == Policy::Drop {
                    let mut dropped = 0;
                    if self.drops == 0 {
                        self.first_drop = sequence_at(&batch.bytes, offset);
                    }
                    while offset < end {
                        offset += frame_len(offset);
                        dropped += 1;
                    }
                    metrics.dropped_frames.fetch_add(dropped, Relaxed);
                    self.drops += dropped;
                } else {
                    offer.slow = true;
                    return offer;
                }
            }
        }
        offer
    }

    /// Queues data frames: `data` is a slice of a shared batch, copied when `copy`.
    fn push_frames(&mut self, data: Bytes, copy: bool, charge: usize, frames: u32, metrics: &Metrics) {
        let data = if copy { Bytes::copy_from_slice(&data) } else { data };
        self.charged += charge;
        self.frames_sent += u64::from(frames);
        metrics.frames_out.fetch_add(u64::from(frames), Relaxed);
        self.entries.push_back(Entry { data, charge, kind: Kind::Frames(frames) });
    }

    /// Queues a RelayNotice from `source` (the relay's SourceType), charged against the queue
    /// bound. At most [`MAX_PENDING_NOTICES`] are pending: beyond that, rejections and drops
    /// are merged into counts, and any other notice overflows the queue (the connection is to
    /// be closed as a slow consumer, see [`Outbox::overflowed`]).
    pub(crate) fn notice(&mut self, notice: &Notice, source: u8, unix_ns: u64) {
        if self.dead {
            return;
        }
        if self.notices >= MAX_PENDING_NOTICES {
            match notice.code {
                notice::REJECTED => self.merged_rejects += 1,
                notice::DROPPED => self.merged_drops += 1,
                _ => self.overflowed = true,
            }
            return;
        }
        self.push_notice(notice, false, false, source, unix_ns);
    }

    /// Queues notice 7 with a publisher's counts (PROTOCOL.md §6): a pending one not yet
    /// started is taken back, so at most one is pending and the newer count comes after the
    /// rejections it counts. When [`MAX_PENDING_NOTICES`] are pending the count is owed
    /// until one is written ([`Outbox::confirm_owed`]); it never overflows the queue.
    pub(crate) fn confirm(&mut self, accepted: u64, rejected: u64, source: u8, unix_ns: u64) {
        if self.dead {
            return;
        }
        if self.confirms > 0 {
            let started = |index: usize| index == 0 && self.written > 0;
            let pending =
                self.entries.iter().rposition(|e| matches!(e.kind, Kind::Notice { confirm: true, .. }));
            if let Some(index) = pending.filter(|&index| !started(index))
                && let Some(entry) = self.entries.remove(index)
            {
                self.charged -= entry.charge;
                self.notices -= 1;
                self.confirms -= 1;
            }
        }
        if self.notices >= MAX_PENDING_NOTICES {
            self.confirm_owed = Some((accepted, rejected));
            return;
        }
        self.confirm_owed = None;
        let text = format!("accepted={accepted} rejected={rejected}");
        self.push_notice(
            &Notice { code: notice::ACCEPTED, sequence: accepted, text },
            true,
            false,
            source,
            unix_ns,
        );
    }

    /// Queues the notice 7 owed since the pending notices left no room, once there is room.
    pub(crate) fn confirm_owed(&mut self, source: u8, unix_ns: u64) {
        if let Some((accepted, rejected)) = self.confirm_owed
            && self.has_notice_room()
        {
            self.confirm(accepted, rejected, source, unix_ns);
        }
    }

    /// Queues notice 1 granting the broadcast log: written alone, the log's descriptor with
    /// its first byte ([`Sink::write_with_log`]). Counted as any notice.
    pub(crate) fn notice_with_log(&mut self, notice: &Notice, source: u8, unix_ns: u64) {
        if self.dead {
            return;
        }
        if self.notices >= MAX_PENDING_NOTICES {
            self.overflowed = true;
            return;
        }
        self.push_notice(notice, false, true, source, unix_ns);
    }

    fn push_notice(&mut self, notice: &Notice, confirm: bool, log: bool, source: u8, unix_ns: u64) {
        self.notice_sequence += 1;
        let value = RelayNotice { code: notice.code, sequence: notice.sequence, text: &notice.text };
        let mut out = [0u8; 32 + 4 + RelayNotice::MAX_LEN];
        let Ok(mut builder) = FrameBuilder::new(&mut out, RelayDomain::System, source) else { return };
        let Ok(len) = value.emit(&mut [0u8; RelayNotice::MAX_LEN]) else { return };
        if builder.tlv_with(registry::RELAY_NOTICE, len, |dst| value.emit(dst)).is_err() {
            return;
        }
        let len = builder.finish(self.notice_sequence, unix_ns, Crc::Compute);
        self.notices += 1;
        self.confirms += u8::from(confirm);
        self.charged += len;
        self.entries.push_back(Entry {
            data: Bytes::copy_from_slice(&out[..len]),
            charge: len,
            kind: Kind::Notice { confirm, log },
        });
    }

    /// Fewer than [`MAX_PENDING_NOTICES`] notices are pending.
    pub(crate) fn has_notice_room(&self) -> bool {
        self.notices < MAX_PENDING_NOTICES
    }

    /// A notice came while [`MAX_PENDING_NOTICES`] were pending and could not be merged: the
    /// peer does not read what it asks for.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Queues a Heartbeat from `source` when heartbeats are due: nothing queued and nothing
    /// sent for a second.
    pub(crate) fn heartbeat_if_due(&mut self, source: u8, now: Instant, unix_ns: u64) {
        if self.dead
            || !self.entries.is_empty()
            || now.duration_since(self.last_sent) < Duration::from_secs(1)
        {
            return;
        }
        self.last_sent = now;
        let mut out = [0u8; 64];
        let Ok(mut builder) = FrameBuilder::new(&mut out, RelayDomain::System, source) else { return };
        let beat = Heartbeat { timestamp_ns: unix_ns, frames_sent: self.frames_sent };
        if builder.payload(&beat).is_err() {
            return;
        }
        let len = builder.finish(0, unix_ns, Crc::Compute);
        self.charged += len;
        self.entries.push_back(Entry {
            data: Bytes::copy_from_slice(&out[..len]),
            charge: len,
            kind: Kind::Heartbeat,
        });
    }

    /// The drop notice owed since the last one (frames dropped, first dropped sequence), when
    /// there is room for it.
    pub(crate) fn take_drops(&mut self) -> Option<Notice> {
        if self.drops == 0 || !self.has_notice_room() {
            return None;
        }
        let notice = Notice {
            code: notice::DROPPED,
            sequence: self.first_drop,
            text: format!("dropped={}", self.drops),
        };
        (self.drops, self.first_drop) = (0, 0);
        Some(notice)
    }

    /// The merged counts owed, once every queued notice was written.
    pub(crate) fn take_merged(&mut self) -> Option<Notice> {
        if self.notices > 0 || (self.merged_rejects == 0 && self.merged_drops == 0) {
            return None;
        }
        let code = if self.merged_rejects > 0 { notice::REJECTED } else { notice::DROPPED };
        let text = format!("merged rejected={} dropped={}", self.merged_rejects, self.merged_drops);
        (self.merged_rejects, self.merged_drops) = (0, 0);
        Some(Notice { code, sequence: 0, text })
    }

    /// Writes as much of the queue as `socket` takes, with vectored writes.
    ///
    /// # Errors
    ///
    /// [`WriteFailed`] when the peer can no longer be written to; the queue is then emptied
    /// and nothing more is queued.
    pub(crate) fn write_to(
        &mut self,
        socket: &mut impl Sink,
        now: Instant,
        metrics: &Metrics,
    ) -> Result<(), WriteFailed> {
        while !self.entries.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            // Notice 1 granting the log goes alone, the log's descriptor with its first byte.
            let attach = self.written == 0
                && self.entries.front().is_some_and(|e| matches!(e.kind, Kind::Notice { log: true, .. }));
            let entries = if attach { 1 } else { MAX_SLICES };
            for (slice, entry) in slices.iter_mut().zip(&self.entries).take(entries) {
                let skip = if count == 0 { self.written } else { 0 };
                *slice = IoSlice::new(&entry.data[skip..]);
                count += 1;
            }
            let wrote =
                if attach { socket.write_with_log(&slices[..count]) } else { socket.write(&slices[..count]) };
            match wrote {
                Wrote::Bytes(0) | Wrote::Gone => return self.fail(),
                Wrote::Bytes(n) => {
                    metrics.bytes_out.fetch_add(n as u64, Relaxed);
                    self.last_sent = now;
                    self.consume(n);
                }
                Wrote::Full => return Ok(()),
            }
        }
        Ok(())
    }

    /// Takes `n` written bytes off the front of the queue.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.entries.front() else { break };
            let left = front.data.len() - self.written;
            if n < left {
                self.written += n;
                break;
            }
            n -= left;
            self.written = 0;
            if let Some(done) = self.entries.pop_front() {
                self.charged -= done.charge;
                if let Kind::Notice { confirm, .. } = done.kind {
                    self.notices -= 1;
                    self.confirms -= u8::from(confirm);
                }
            }
        }
    }

    fn fail(&mut self) -> Result<(), WriteFailed> {
        self.dead = true;
        self.entries.clear();
        (self.charged, self.written, self.notices, self.confirms) = (0, 0, 0, 0);
        Err(WriteFailed)
    }

    /// The publishers to resume: all of them once the queue has drained to half `bound`.
    pub(crate) fn release(&mut self, bound: usize, now: Instant) -> Vec<PublisherId> {
        if self.paused.is_empty() || (self.charged > bound / 2 && !self.dead) {
            return Vec::new();
        }
        if let Some(span @ Span { end: None, .. }) = self.pause_spans.back_mut() {
            span.end = Some(now);
        }
        std::mem::take(&mut self.paused)
    }

    /// Whether publishers have been paused on this queue's account for `stall` in total
    /// within the last `2 × stall` (PROTOCOL.md §6); forgets older pauses.
    pub(crate) fn stalled(&mut self, now: Instant, stall: Duration) -> bool {
        let window_start = now.checked_sub(2 * stall).unwrap_or(now);
        while self.pause_spans.front().is_some_and(|s| s.end.is_some_and(|end| end <= window_start)) {
            self.pause_spans.pop_front();
        }
        paused_since(&self.pause_spans, window_start, now) >= stall
    }

    /// Data frames queued and not wholly written; frames of the front entry already written
    /// in full are not counted.
    pub(crate) fn undelivered(&self) -> Undelivered {
        let mut out = Undelivered::default();
        let mut first = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if !matches!(entry.kind, Kind::Frames(_)) {
                continue;
            }
            let done = if i == 0 { self.written } else { 0 };
            let mut offset = 0;
            while let Some(header) = entry.data.get(offset..).and_then(Header::view) {
                let end = offset + header.frame_len() as usize;
                if end > done {
                    out.frames += 1;
                    first.get_or_insert(header.sequence());
                    out.last = header.sequence();
                }
                offset = end;
            }
        }
        out.first = first.unwrap_or(0);
        out
    }
}

/// Total time covered by pause spans (open ones end `now`) after `since`.
fn paused_since(spans: &VecDeque<Span>, since: Instant, now: Instant) -> Duration {
    spans.iter().map(|s| s.end.unwrap_or(now).saturating_duration_since(s.start.max(since))).sum()
}

/// The sequence of the frame at `offset`.
fn sequence_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..).and_then(Header::view).map_or(0, Header::sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_add_up_within_the_window_only() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut spans = VecDeque::new();
        spans.push_back(Span { start: at(0), end: Some(at(300)) });
        spans.push_back(Span { start: at(500), end: Some(at(700)) });
        spans.push_back(Span { start: at(900), end: None });
        // Window from 100 ms: 200 (of the first) + 200 + 100 (open until 1000).
        assert_eq!(paused_since(&spans, at(100), at(1000)), Duration::from_millis(500));
        // Window from 800: only the open interval, 200.
        assert_eq!(paused_since(&spans, at(800), at(1100)), Duration::from_millis(200));
    }
}
