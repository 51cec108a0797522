//! Import: tasks take frames from NATS (core subscriptions for market data and signals, a
//! durable JetStream consumer per imported node for execution) and hand them to a thread that
//! writes them into the local relay through the client library, with flags bit 0 (bridged)
//! set, on one publisher connection that asks the relay to confirm every frame (PROTOCOL.md
//! §6). Bridged frames are not sequence-checked by the relay (docs/protocol-notes.md), so one
//! connection carries every node and publisher, each in its origin's order.
//!
//! Before a frame is written it is checked as the local relay will check it (framing, domain,
//! TLVs, a non-zero checksum verified — and on Execution required — before it is marked and
//! made again): a control frame, a frame already bridged or one the relay would reject is
//! skipped and counted, never written, so it can take nothing with it. A frame the relay
//! rejects all the same (its configuration is stricter) is counted and skipped too.
//!
//! Execution frames are delivered strictly in stream order and once: the thread records in the
//! [`Cursor`] what it is about to write, writes it, waits until the relay has confirmed it (on
//! Execution: after its audit records), records that it is in, and only then acknowledges; a
//! frame at or below the cursor is a redelivery and is skipped; a frame past the one due means
//! the consumer moved on without us, and it is made again from the frame due. Each frame's
//! message id names its exporter and the exporter's count: a copy of a frame already imported
//! (republished on NATS under another id, or none) is skipped. A bridge started after a kill
//! in the middle asks the relay's audit trail which of the frames being written the relay
//! accepted, and skips those.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use log::{debug, error, warn};
use tokio::sync::mpsc;
use torq::client::{Publisher, PublisherOptions, Reconnect};
use torq::protocol::{Checks, ChecksumLevel, FrameKind, Framing, Header, RelayDomain, frame, validate};

use crate::config::{Config, Domain};
use crate::metrics::{Metrics, add};
use crate::shutdown::{Shutdown, Tasks};
use crate::state::Cursor;
mod execution;

pub use execution::{Importer, acknowledge};

use crate::subject::{Gaps, node_of};

/// The most frames written into the relay between two cursor records.
const BATCH: usize = 4096;
/// How long an execution import may go without a frame before its place goes to a stream
/// waiting for one (past [`MAX_NODES`] streams).
const IDLE_IMPORT: Duration = Duration::from_secs(10);
/// Exporters whose high-water marks one import keeps (a few: one per start of the exporter).
const MAX_EXPORTERS: usize = 64;

/// A frame on its way into the local relay.
#[derive(Debug)]
pub struct Incoming {
    frame: Bytes,
    /// Execution: the message (acknowledged once written), its stream sequence, the cursor, and
    /// whether to write it.
    jetstream: Option<Delivery>,
}

/// An execution frame's place in its stream.
#[derive(Debug)]
struct Delivery {
    message: jetstream::Message,
    sequence: u64,
    cursor: Arc<Mutex<Cursor>>,
    /// Not written, only recorded and acknowledged: the relay holds it already (written by a
    /// bridge killed before recording it), or it is a copy or not a frame to import.
    skip: bool,
}

/// The cursors of one batch and the last delivery of each.
type Written = Vec<(Arc<Mutex<Cursor>>, u64, jetstream::Message)>;

/// Starts, as one of `tasks`, the thread that writes execution frames into the local relay; it
/// ends when every sender is gone (every import task has ended). Per batch: the cursors say
/// what is being written, the frames are written and confirmed by the relay, the cursors say
/// it is in, and the acknowledgements go out through `acks`.
pub fn spawn_writer(
    config: &Config,
    metrics: Arc<Metrics>,
    mut frames: mpsc::Receiver<Incoming>,
    acks: mpsc::UnboundedSender<jetstream::Message>,
    tasks: &Tasks,
) -> std::io::Result<()> {
    let mut writer = Writer::new(config, metrics, Some(acks));
    tasks.spawn_thread("import-relay", move || {
        let mut batch: Vec<Incoming> = Vec::new();
        while frames.blocking_recv_many(&mut batch, BATCH) > 0 {
            writer.write_batch(&mut batch);
        }
        writer.flush();
    })
}

/// Starts, as one of `tasks`, the thread that imports market data or signals: it takes what
/// the NATS subscriptions hold (the client's queue, `--queue` messages; beyond, NATS drops and
/// the gaps count them) and writes it into the local relay, one hand-off from the NATS client
/// to the relay. While the relay cannot be reached it goes on taking messages and drops them
/// (counted), so the NATS client's queue never grows. It ends at the stop signal, having
/// written the batch it holds.
pub fn spawn_core(
    config: &Config,
    metrics: Arc<Metrics>,
    subscriptions: Vec<async_nats::Subscriber>,
    mut shutdown: Shutdown,
    tasks: &Tasks,
) -> std::io::Result<()> {
    let me = config.node.clone();
    let (max_message_size, domain, metrics_in) =
        (config.max_message_size, config.domain, Arc::clone(&metrics));
    let mut writer = Writer::new(config, metrics, None);
    tasks.spawn_thread("import-relay", move || {
        let metrics = metrics_in;
        let mut messages = Merged { subscriptions, next: 0 };
        let mut gaps = Gaps::default();
        let mut batch: Vec<Incoming> = Vec::new();
        let mut stopped = std::pin::pin!(shutdown.stopped());
        while let Either::Left((Some(first), _)) =
            futures::executor::block_on(futures::future::select(messages.next(), stopped.as_mut()))
        {
            let (mut received, mut invalid, mut lost) = (0, 0, 0);
            let mut next = Some(first);
            while let Some(message) = next {
                if let Some(from) = node_of(&message.subject).filter(|from| *from != me) {
                    received += 1;
                    match importable(&message.payload, max_message_size, domain) {
                        Ok(header) => {
                            lost += gaps.record(from, header);
                            batch.push(Incoming { frame: message.payload, jetstream: None });
                        }
                        Err(why) => {
                            invalid += 1;
                            debug!("import: a message on {} skipped: {why}", message.subject);
                        }
                    }
                }
                next = if batch.len() < BATCH { messages.next().now_or_never().flatten() } else { None };
            }
            add(&metrics.imported_in, received);
            add(&metrics.invalid, invalid);
            add(&metrics.lost, lost);
            writer.write_batch(&mut batch);
        }
        writer.flush();
    })
}

/// The messages of several subscriptions, each asked in turn: one poll per message, where
/// `select_all` queues a subscription again after each of its messages (measured: a tenth of
/// the importing thread's time at a million frames a second).
struct Merged<S> {
    subscriptions: Vec<S>,
    /// The subscription asked first next time.
    next: usize,
}

impl<S: futures::Stream + Unpin> futures::Stream for Merged<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut asked = 0;
        while asked < this.subscriptions.len() {
            let at = (this.next + asked) % this.subscriptions.len();
            match this.subscriptions[at].poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => {
                    this.next = (at + 1) % this.subscriptions.len();
                    return Poll::Ready(Some(message));
                }
                // An ended subscription is not asked again.
                Poll::Ready(None) => {
                    this.subscriptions.remove(at);
                    (this.next, asked) = (at, 0);
                }
                Poll::Pending => asked += 1,
            }
        }
        if this.subscriptions.is_empty() { Poll::Ready(None) } else { Poll::Pending }
    }
}

/// Writes batches of imported frames into the local relay, on one connection.
struct Writer {
    relay: PathBuf,
    domain: Domain,
    metrics: Arc<Metrics>,
    /// Execution: acknowledgements go here once the relay has confirmed the frames; the
    /// connection reconnects by itself and every batch waits for its confirmation. Market data
    /// and signals: `None`, and a relay out of reach drops what comes meanwhile.
    acks: Option<mpsc::UnboundedSender<jetstream::Message>>,
    publisher: Option<Publisher>,
    /// When a connection to the relay was last tried (market data and signals).
    last_attempt: Option<Instant>,
    /// The publisher's reconnections, rejections and frames in doubt already counted.
    reconnections: u64,
    unsettled: u64,
    last_rejection_log: Option<Instant>,
    written: Written,
    batches: u64,
    /// Fault injection for the tests: abort after writing this many batches, before recording
    /// them (what a kill -9 at the worst moment does).
    abort_after: Option<u64>,
}

impl Writer {
    fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        acks: Option<mpsc::UnboundedSender<jetstream::Message>>,
    ) -> Writer {
        Writer {
            relay: config.socket.clone(),
            domain: config.domain,
            metrics,
            acks,
            publisher: None,
            last_attempt: None,
            reconnections: 0,
            unsettled: 0,
            last_rejection_log: None,
            written: Vec::new(),
            batches: 0,
            abort_after: std::env::var("TORQ_BRIDGE_ABORT_AFTER_WRITES").ok().and_then(|n| n.parse().ok()),
        }
    }

    /// The connection to the relay: for execution, waited for as long as it takes (JetStream
    /// holds what comes meanwhile); for market data and signals, tried at most once a second.
    fn publisher(&mut self) -> Option<&mut Publisher> {
        if self.publisher.is_none() {
            let lossless = self.acks.is_some();
            if !lossless && self.last_attempt.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            self.last_attempt = Some(Instant::now());
            let options =
                PublisherOptions::new(self.domain.relay(), 0).reconnect(lossless.then(Reconnect::default));
            // Market data and signals: at most once, and the frames were checked as the relay
            // checks them, so the legacy hello (no notice 7 each turn, no read of them per batch);
            // a stricter relay that rejects one closes nothing on these domains. Execution
            // waits for the relay's confirmation of every frame before acknowledging it.
            let options = options.confirm(lossless);
            let relay = &self.relay;
            let mut told = false;
            let mut connect = || {
                Publisher::connect(relay, options.clone()).inspect_err(|e| {
                    if !std::mem::replace(&mut told, true) {
                        warn!("import: waiting for the relay: {e}");
                    }
                })
            };
            let connected = if lossless {
                let (publisher, attempts) =
                    Reconnect::default().run(connect).expect("Reconnect::default() tries for ever");
                if attempts > 1 {
                    add(&self.metrics.relay_reconnects, 1);
                }
                Some(publisher)
            } else {
                connect().ok()
            };
            if connected.is_some() && self.batches > 0 {
                add(&self.metrics.relay_reconnects, 1);
            }
            self.publisher = connected;
            self.reconnections = 0;
            self.unsettled = 0;
        }
        self.publisher.as_mut()
    }

    /// Writes (and empties) one batch.
    fn write_batch(&mut self, batch: &mut Vec<Incoming>) {
        // 1. The cursors say what is being written. Frames skipped (the relay holds them
        // already, or they are not to be written) are recorded as in first, so that a second
        // kill does not take them for this process's.
        let mut intents: Vec<(&Arc<Mutex<Cursor>>, u64)> = Vec::new();
        for delivery in batch.iter().filter_map(|i| i.jetstream.as_ref()) {
            match intents.iter_mut().find(|(cursor, _)| Arc::ptr_eq(cursor, &delivery.cursor)) {
                Some(intent) => intent.1 = delivery.sequence,
                None if delivery.skip => {
                    if let Err(e) = delivery.cursor.lock().expect("cursor lock").advance(delivery.sequence) {
                        error!("import: {e}");
                    }
                }
                None => intents.push((&delivery.cursor, delivery.sequence)),
            }
        }
        for (cursor, upto) in intents {
            if let Err(e) = cursor.lock().expect("cursor lock").begin(upto, now_ns()) {
                error!("import: {e}: a restart could write these frames twice");
            }
        }
        // 2. The frames, then the relay's word on them.
        let (mut count, mut last_timestamp, mut dropped) = (0u64, 0, 0u64);
        let relay = self.relay.clone();
        for incoming in batch.drain(..) {
            if let Some(delivery) = incoming.jetstream {
                let (cursor, sequence) = (delivery.cursor, delivery.sequence);
                match self.written.iter_mut().find(|(c, ..)| Arc::ptr_eq(c, &cursor)) {
                    Some(last) => *last = (cursor, sequence, delivery.message),
                    None => self.written.push((cursor, sequence, delivery.message)),
                }
                if delivery.skip {
                    continue;
                }
            }
            let Some(publisher) = self.publisher() else {
                dropped += 1;
                continue;
            };
            if let Err(e) = publisher.offer_bridged(&incoming.frame) {
                error!("import: cannot write to the relay at {}: {e}", relay.display());
                self.publisher = None;
                dropped += 1;
                continue;
            }
            last_timestamp = Header::view(&incoming.frame).map_or(0, Header::timestamp);
            count += 1;
        }
        self.flush();
        if self.acks.is_some() {
            self.settle();
        }
        self.count_rejections();
        let metrics = &*self.metrics;
        add(&metrics.imported_out, count);
        add(&metrics.dropped, dropped);
        if count > 0 {
            metrics.record_lag(now_ns(), last_timestamp);
        }
        self.batches += 1;
        if self.abort_after == Some(self.batches) {
            std::process::abort();
        }
        // 3. The cursors say it is in; then, and only then, the acknowledgements.
        for (cursor, sequence, message) in self.written.drain(..) {
            match cursor.lock().expect("cursor lock").advance(sequence) {
                Ok(()) => {
                    if let Some(acks) = &self.acks {
                        let _ = acks.send(message);
                    }
                }
                // Not acknowledged: NATS delivers it again, and the cursor decides then.
                Err(e) => error!("import: {e}"),
            }
        }
    }

    /// Waits until the relay has confirmed (accepted or rejected) every frame written, however
    /// long a paused relay takes; frames written to a connection lost before their
    /// confirmation are counted in doubt.
    fn settle(&mut self) {
        let Some(publisher) = self.publisher.as_mut() else { return };
        let waiting = Instant::now();
        let mut told = false;
        loop {
            match publisher.settle(Duration::from_secs(1)) {
                Ok(_) => break,
                Err(torq::client::Error::TimedOut(_)) => {
                    if !told && waiting.elapsed() >= Duration::from_secs(10) {
                        told = true;
                        warn!(
                            "import: the relay at {} has not confirmed {} frames for 10 s (is a subscriber \
                             pausing it?); waiting",
                            self.relay.display(),
                            publisher.settlement().unsettled()
                        );
                    }
                }
                Err(e) => {
                    error!("import: the relay at {}: {e}", self.relay.display());
                    break;
                }
            }
        }
        let unsettled = publisher.settlement().unsettled();
        let new = unsettled.saturating_sub(std::mem::replace(&mut self.unsettled, unsettled));
        if new > 0 {
            add(&self.metrics.in_doubt, new);
            warn!(
                "import: {new} frames were written to a relay connection lost before the relay confirmed them \
                 (the relay's audit trail says which it holds)"
            );
        }
    }

    /// Counts what the relay rejected, and says so at most once a second.
    fn count_rejections(&mut self) {
        let Some(publisher) = self.publisher.as_mut() else { return };
        let mut rejected = 0;
        let mut last = None;
        while let Some(rejection) = publisher.take_rejection() {
            rejected += 1;
            last = Some(rejection);
        }
        add(&self.metrics.rejected, rejected);
        if let Some(rejection) = last
            && self.last_rejection_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.last_rejection_log = Some(Instant::now());
            warn!(
                "import: the relay rejected {rejected} imported frames (skipped), the last: sequence {}: {}",
                rejection.sequence, rejection.text
            );
        }
    }

    /// Writes what the connection holds.
    fn flush(&mut self) {
        let Some(publisher) = self.publisher.as_mut() else { return };
        if let Err(e) = publisher.flush() {
            error!("import: cannot write to the relay at {}: {e}", self.relay.display());
            self.publisher = None;
            return;
        }
        let reconnections = publisher.reconnections();
        let before = std::mem::replace(&mut self.reconnections, reconnections);
        add(&self.metrics.relay_reconnects, reconnections - before);
    }
}

/// Why a message from NATS is not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not exactly one frame the relay can frame (magic, version, size, or more or less than
    /// one frame).
    NotOneFrame,
    /// Of another relay's domain.
    Domain,
    /// A hello, or a Subscribe or RelayNotice control frame: the relay would take it as the
    /// import connection's own.
    Control,
    /// Already bridged: exporters never export one, so it was not exported.
    Bridged,
    /// The local relay would reject it (the reason token and message).
    Rejected(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotOneFrame => f.write_str("not one whole frame within the relay's size"),
            Skip::Domain => f.write_str("a frame of another relay's domain"),
            Skip::Control => f.write_str("a hello or control frame"),
            Skip::Bridged => f.write_str("a frame already bridged"),
            Skip::Rejected(why) => write!(f, "the relay would reject it: {why}"),
        }
    }
}

/// The header of `bytes` when they are exactly one data frame the local relay takes, checked
/// as its domain's relay checks it — framing, domain, TLVs, a non-zero checksum verified (on
/// Execution required) — before the importer marks it bridged and makes its checksum again
/// (which would otherwise give a corrupted frame a valid checksum).
pub fn importable(bytes: &[u8], max_message_size: usize, domain: Domain) -> Result<&Header, Skip> {
    let header = match frame(bytes, max_message_size) {
        Ok(Framing::Frame(len)) if len == bytes.len() => Header::view(bytes).ok_or(Skip::NotOneFrame)?,
        _ => return Err(Skip::NotOneFrame),
    };
    if !matches!(header.domain(), Some(d) if d == domain.relay() || d == RelayDomain::System) {
        return Err(Skip::Domain);
    }
    if header.is_bridged() {
        return Err(Skip::Bridged);
    }
    let checksum = if domain == Domain::Execution { ChecksumLevel::Required } else { ChecksumLevel::Verify };
    match validate(bytes, &Checks { domain: domain.relay(), checksum, strict_types: false }) {
        Ok(FrameKind::Data) => Ok(header),
        Ok(_) => Err(Skip::Control),
        Err(e) => Err(Skip::Rejected(format!("{}: {e}", e.reason()))),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn merged_subscriptions_are_asked_in_turn_until_every_one_ends() {
        use futures::stream::{self, BoxStream};
        let subscriptions: Vec<BoxStream<'static, u32>> = vec![
            stream::iter(vec![1, 2, 3]).boxed(),
            stream::iter(vec![10]).boxed(),
            stream::iter(vec![20, 21]).boxed(),
        ];
        let merged = Merged { subscriptions, next: 0 };
        let order: Vec<u32> = futures::executor::block_on(merged.collect());
        assert_eq!(order, [1, 10, 20, 2, 21, 3], "in turn, an ended one left out");
        // One that waits does not hold back the others.
        let waiting: Vec<BoxStream<'static, u32>> =
            vec![stream::pending().boxed(), stream::iter(vec![5, 6]).boxed()];
        let mut merged = Merged { subscriptions: waiting, next: 0 };
        assert_eq!(merged.next().now_or_never(), Some(Some(5)));
        assert_eq!(merged.next().now_or_never(), Some(Some(6)));
        assert_eq!(merged.next().now_or_never(), None, "pending, not ended");
    }

    /// An execution frame from source 4 with a checksum, as `validate` wants it.
    fn order(sequence: u64, crc: torq::protocol::Crc) -> Vec<u8> {
        let mut buf = vec![0; 128];
        let mut builder = torq::protocol::FrameBuilder::new(&mut buf, RelayDomain::Execution, 4).unwrap();
        builder.tlv(40, &[1; 48]).unwrap();
        let len = builder.finish(sequence, 2, crc);
        buf.truncate(len);
        buf
    }

    #[test]
    fn only_one_frame_the_relay_takes_is_imported() {
        use torq::protocol::Crc;
        let execution = Domain::Execution;
        let one = order(1, Crc::Compute);
        assert_eq!(importable(&one, 1024, execution).map(Header::sequence), Ok(1));
        assert_eq!(importable(&one[..39], 1024, execution).err(), Some(Skip::NotOneFrame), "truncated");
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(importable(&two, 1024, execution).err(), Some(Skip::NotOneFrame), "two frames");
        assert_eq!(importable(&one, 39, execution).err(), Some(Skip::NotOneFrame), "over the relay's size");
        assert_eq!(importable(&[0u8; 40], 1024, execution).err(), Some(Skip::NotOneFrame), "no magic");
        assert_eq!(
            importable(&one, 1024, Domain::Signal).err(),
            Some(Skip::Domain),
            "another relay's domain"
        );
        // What the relay would reject: no checksum on Execution, a TLV of type 0, and a
        // corrupted frame (its checksum is verified before it is made again).
        let unchecked = order(2, Crc::Skip);
        assert!(
            matches!(importable(&unchecked, 1024, execution), Err(Skip::Rejected(r)) if r.starts_with("checksum_missing"))
        );
        assert!(importable(&unchecked, 1024, Domain::Signal).is_err(), "another domain still");
        let mut corrupted = order(3, Crc::Compute);
        corrupted[40] ^= 1;
        assert!(
            matches!(importable(&corrupted, 1024, execution), Err(Skip::Rejected(r)) if r.starts_with("checksum_mismatch"))
        );
        let mut type_zero = one.clone();
        type_zero[32] = 0;
        assert!(importable(&type_zero, 1024, execution).is_err());
        // Control frames, hellos and frames already bridged are never written.
        let subscribe = torq::client::subscribe_frame(
            &torq::protocol::Subscribe {
                role: torq::protocol::Role::PublishSubscribe,
                options: 0,
                filters: vec![],
            },
            0,
        )
        .unwrap();
        assert_eq!(importable(&subscribe, 1024, Domain::MarketData).err(), Some(Skip::Control));
        let hello = Header::new(RelayDomain::Execution, 4, 1, 2, 0);
        assert_eq!(importable(hello.as_bytes(), 1024, execution).err(), Some(Skip::Control));
        let mut bridged = one.clone();
        torq::protocol::mark_bridged(&mut bridged).unwrap();
        assert_eq!(importable(&bridged, 1024, execution).err(), Some(Skip::Bridged));
        // System data frames go to every relay.
        let mut buf = vec![0; 64];
        let mut builder = torq::protocol::FrameBuilder::new(&mut buf, RelayDomain::System, 4).unwrap();
        builder.tlv(100, &[0; 16]).unwrap();
        let len = builder.finish(1, 2, Crc::Compute);
        assert!(importable(&buf[..len], 1024, Domain::Signal).is_ok());
    }
}
