//! Import: tasks take frames from NATS (core subscriptions for market data and signals, a
//! durable JetStream consumer per imported node for execution) and hand them through a bounded
//! queue to a thread that writes them into the local relay through the client library, with
//! flags bit 0 (bridged) set, one publisher connection per imported node (sequences are per
//! connection and source, PROTOCOL.md §6).
//!
//! Execution frames are delivered strictly in stream order and once: the thread records in the
//! [`Cursor`] what it is about to write, writes it, records that it is in, and only then
//! acknowledges; a frame at or below the cursor is a redelivery and is skipped; a frame past the
//! one due means the consumer moved on without us, and it is made again from the frame due. A
//! bridge started after a kill in the middle asks the relay's audit trail which of the frames
//! being written the relay accepted, and skips those.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use bytes::Bytes;
use futures::future::Either;
use futures::{FutureExt, StreamExt};
use log::{debug, error, info, warn};
use tokio::sync::mpsc;
use torq::client::{Publisher, PublisherOptions, Reconnect};
use torq::protocol::{Framing, Header, RelayDomain, frame};

use crate::audit::{self, Key};
use crate::config::{Config, Domain};
use crate::metrics::{Metrics, add};
use crate::state::{Cursor, InDoubt};
use crate::subject::{Gaps, MAX_NODES, node_of, stream_name};

/// The most frames written into the relay between two cursor records.
const BATCH: usize = 4096;

/// A frame on its way into the local relay.
#[derive(Debug)]
pub struct Incoming {
    node: Arc<str>,
    frame: Bytes,
    /// Execution: the message (acknowledged once written), its stream sequence, the cursor, and
    /// whether the relay already holds it (written by a bridge killed before recording it).
    jetstream: Option<Delivery>,
}

/// An execution frame's place in its stream.
#[derive(Debug)]
struct Delivery {
    message: jetstream::Message,
    sequence: u64,
    cursor: Arc<Mutex<Cursor>>,
    in_relay: bool,
}

/// The cursors of one batch and the last delivery of each.
type Written = Vec<(Arc<Mutex<Cursor>>, u64, jetstream::Message)>;

/// Starts the thread that writes execution frames into the local relay; it ends when every
/// sender is gone. Per batch: the cursors say what is being written, the frames are written
/// and flushed, the cursors say it is in, and the acknowledgements go out through `acks`.
pub fn spawn_writer(
    config: &Config,
    metrics: Arc<Metrics>,
    mut frames: mpsc::Receiver<Incoming>,
    acks: mpsc::UnboundedSender<jetstream::Message>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut writer = Writer::new(config, metrics, Some(acks));
    std::thread::Builder::new().name("import-relay".into()).spawn(move || {
        let mut batch: Vec<Incoming> = Vec::new();
        while frames.blocking_recv_many(&mut batch, BATCH) > 0 {
            writer.write_batch(&mut batch);
        }
        writer.flush();
    })
}

/// Starts the thread that imports market data or signals: it takes what the NATS subscriptions
/// hold (the client's queue, `--queue` messages; beyond, NATS drops and the gaps count them)
/// and writes it into the local relay, one hand-off from the NATS client to the relay. It ends
/// when `stop` fires (or is dropped), having written the batch it holds.
pub fn spawn_core(
    config: &Config,
    metrics: Arc<Metrics>,
    subscriptions: Vec<async_nats::Subscriber>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let me = config.node.clone();
    let (max_message_size, domain, metrics_in) =
        (config.max_message_size, config.domain, Arc::clone(&metrics));
    let mut writer = Writer::new(config, metrics, None);
    std::thread::Builder::new().name("import-relay".into()).spawn(move || {
        let metrics = metrics_in;
        let mut messages = Merged { subscriptions, next: 0 };
        let mut gaps = Gaps::default();
        let mut told_of_too_many = false;
        let mut batch: Vec<Incoming> = Vec::new();
        while let Either::Left((Some(first), _)) =
            futures::executor::block_on(futures::future::select(messages.next(), &mut stop))
        {
            let (mut received, mut invalid, mut lost) = (0, 0, 0);
            let mut next = Some(first);
            while let Some(message) = next {
                if let Some(from) = node_of(&message.subject).filter(|from| *from != me) {
                    received += 1;
                    match one_frame(&message.payload, max_message_size, domain) {
                        Some(header) => match gaps.record(from, header) {
                            Some((missed, node)) => {
                                lost += missed;
                                batch.push(Incoming { node, frame: message.payload, jetstream: None });
                            }
                            None => {
                                invalid += 1;
                                if !std::mem::replace(&mut told_of_too_many, true) {
                                    warn!(
                                        "import: frames from node {from} skipped: this bridge imports from at most \
                                         {MAX_NODES} nodes (counted as invalid; is someone publishing on NATS as \
                                         many nodes?)"
                                    );
                                }
                            }
                        },
                        None => {
                            invalid += 1;
                            debug!(
                                "import: a message on {} is not one whole frame of this relay's domain; skipped",
                                message.subject
                            );
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

/// Writes batches of imported frames into the local relay.
struct Writer {
    relay: PathBuf,
    domain: Domain,
    max_message_size: usize,
    metrics: Arc<Metrics>,
    acks: Option<mpsc::UnboundedSender<jetstream::Message>>,
    /// One per imported node (a few): found by the node's shared name.
    sinks: Vec<(Arc<str>, Sink)>,
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
            relay: config.relay.clone(),
            domain: config.domain,
            max_message_size: config.max_message_size,
            metrics,
            acks,
            sinks: Vec::new(),
            written: Vec::new(),
            batches: 0,
            abort_after: std::env::var("TORQ_BRIDGE_ABORT_AFTER_WRITES").ok().and_then(|n| n.parse().ok()),
        }
    }

    /// Writes (and empties) one batch.
    fn write_batch(&mut self, batch: &mut Vec<Incoming>) {
        let (relay, domain, metrics) = (&self.relay, self.domain, &*self.metrics);
        // 1. The cursors say what is being written. Frames the relay holds already (a prefix
        // of what a killed bridge was writing) are recorded as in first, so that a second
        // kill does not take them for this process's.
        let mut intents: Vec<(&Arc<Mutex<Cursor>>, u64)> = Vec::new();
        for delivery in batch.iter().filter_map(|i| i.jetstream.as_ref()) {
            match intents.iter_mut().find(|(cursor, _)| Arc::ptr_eq(cursor, &delivery.cursor)) {
                Some(intent) => intent.1 = delivery.sequence,
                None if delivery.in_relay => {
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
        // 2. The frames.
        let (mut count, mut last_timestamp) = (0u64, 0);
        for incoming in batch.drain(..) {
            if let Some(delivery) = incoming.jetstream {
                let (cursor, sequence) = (delivery.cursor, delivery.sequence);
                match self.written.iter_mut().find(|(c, ..)| Arc::ptr_eq(c, &cursor)) {
                    Some(last) => *last = (cursor, sequence, delivery.message),
                    None => self.written.push((cursor, sequence, delivery.message)),
                }
                if delivery.in_relay {
                    continue;
                }
            }
            let Some(header) = one_frame(&incoming.frame, self.max_message_size, domain).copied() else {
                add(&metrics.invalid, 1);
                debug!(
                    "import: a message from node {} is not one whole frame of this relay's domain; skipped",
                    incoming.node
                );
                continue;
            };
            let at = match self
                .sinks
                .iter()
                .position(|(node, _)| Arc::ptr_eq(node, &incoming.node) || *node == incoming.node)
            {
                Some(at) => at,
                None => {
                    self.sinks.push((Arc::clone(&incoming.node), Sink::connect(relay, domain, metrics)));
                    self.sinks.len() - 1
                }
            };
            let sink = &mut self.sinks[at].1;
            if let Err(e) = sink.write(&incoming.frame, &header, &incoming.node, relay, domain, metrics) {
                error!("import: cannot write to the relay at {}: {e}", relay.display());
            }
            last_timestamp = header.timestamp();
            count += 1;
        }
        self.flush();
        let metrics = &*self.metrics;
        add(&metrics.imported_out, count);
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

    /// Writes what every connection holds.
    fn flush(&mut self) {
        for (_, sink) in &mut self.sinks {
            if let Err(e) = sink.publisher.flush() {
                error!("import: cannot write to the relay at {}: {e}", self.relay.display());
            }
            let reconnections = sink.publisher.reconnections();
            let before = std::mem::replace(&mut sink.reconnections, reconnections);
            add(&self.metrics.relay_reconnects, reconnections - before);
        }
    }
}

/// The publisher connection of one imported node.
struct Sink {
    publisher: Publisher,
    /// The last sequence written per source on this connection.
    last: Box<[Option<u64>; 256]>,
    /// The publisher's reconnections already counted.
    reconnections: u64,
}

impl Sink {
    fn connect(relay: &PathBuf, domain: Domain, metrics: &Metrics) -> Sink {
        let mut options = PublisherOptions::new(domain.relay(), 0);
        options.reconnect = Some(Reconnect::default());
        let mut told = false;
        let (publisher, attempts) = Reconnect::default()
            .run(|| {
                Publisher::connect(relay, options.clone()).inspect_err(|e| {
                    if !std::mem::replace(&mut told, true) {
                        warn!("import: waiting for the relay: {e}");
                    }
                })
            })
            .expect("Reconnect::default() tries for ever");
        if attempts > 1 {
            add(&metrics.relay_reconnects, 1);
        }
        Sink { publisher, last: Box::new([None; 256]), reconnections: 0 }
    }

    /// Queues one frame; a source whose sequence goes back (its publisher started again) gets a
    /// new connection, as the relay wants sequences to rise per connection.
    fn write(
        &mut self,
        frame: &[u8],
        header: &Header,
        node: &str,
        relay: &PathBuf,
        domain: Domain,
        metrics: &Metrics,
    ) -> Result<(), torq::client::Error> {
        let source = usize::from(header.source());
        if self.last[source].is_some_and(|last| header.sequence() <= last) {
            info!(
                "import: source {source} of node {node} started its sequences again; a new connection to the relay"
            );
            self.publisher.flush()?;
            *self = Sink::connect(relay, domain, metrics);
        }
        self.last[source] = Some(header.sequence());
        self.publisher.offer_bridged(frame)
    }
}

/// The header of `bytes` when they are exactly one frame the relay takes (magic, version, a
/// size within `max_message_size` that is the message's, the relay's `domain` or System):
/// anything else from NATS is skipped, as the relay would close the connection on it or reject
/// it.
fn one_frame(bytes: &[u8], max_message_size: usize, domain: Domain) -> Option<&Header> {
    match frame(bytes, max_message_size) {
        Ok(Framing::Frame(len)) if len == bytes.len() => Header::view(bytes).filter(
            |header| matches!(header.domain(), Some(d) if d == domain.relay() || d == RelayDomain::System),
        ),
        _ => None,
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Acknowledges what the writer has written (acknowledging the last of a batch acknowledges
/// all before it: the consumers acknowledge `All`).
pub async fn acknowledge(mut acks: mpsc::UnboundedReceiver<jetstream::Message>) {
    while let Some(message) = acks.recv().await {
        if let Err(e) = message.ack().await {
            debug!("import: acknowledgement not sent ({e}); the frames come again and are skipped");
        }
    }
}

/// Imports every other node's execution stream, and the streams of nodes that appear later.
pub async fn import_all_jetstream(
    js: jetstream::Context,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
    fatal: mpsc::UnboundedSender<String>,
) {
    let mut started: Vec<String> = Vec::new();
    loop {
        let mut names = js.stream_names();
        while let Some(name) = names.next().await {
            let Ok(name) = name else { break };
            let Some(node) = name.strip_prefix("TORQ_").and_then(|n| n.strip_suffix("_EXECUTION")) else {
                continue;
            };
            if node == config.node || started.iter().any(|s| s == node) {
                continue;
            }
            if started.len() >= MAX_NODES {
                warn!(
                    "import: stream {name} not imported: this bridge imports from at most {MAX_NODES} nodes"
                );
                continue;
            }
            started.push(node.to_string());
            tokio::spawn(import_jetstream(
                js.clone(),
                Arc::clone(&config),
                node.to_string(),
                Arc::clone(&metrics),
                frames.clone(),
                fatal.clone(),
            ));
        }
        if frames.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Imports node `from`'s execution stream, in order, each frame once.
pub async fn import_jetstream(
    js: jetstream::Context,
    config: Arc<Config>,
    from: String,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
    fatal: mpsc::UnboundedSender<String>,
) {
    let cursor = match Cursor::open(&config.state_dir, &config.node, &from) {
        Ok(cursor) => Arc::new(Mutex::new(cursor)),
        // Without its cursor an import could write frames twice: the bridge stops.
        Err(e) => {
            let _ = fatal.send(format!("import: cannot keep the import cursor of node {from}: {e}"));
            return;
        }
    };
    let node: Arc<str> = Arc::from(from.as_str());
    let durable = format!("import-{}", config.node);
    let stream_name = stream_name(&from);
    let mut waited = false;
    let stream = loop {
        match js.get_stream(&stream_name).await {
            Ok(stream) => break stream,
            Err(e) => {
                if !waited {
                    info!("import: waiting for node {from}'s stream {stream_name} ({e})");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // The frame due: after what the cursor says reached the relay, or after what the durable
    // consumer had acknowledged (a cursor lost with its directory), or the stream's first.
    let recorded = cursor.lock().expect("cursor lock").delivered();
    let acknowledged = match stream.get_consumer::<pull::Config>(&durable).await {
        Ok(mut consumer) => consumer.info().await.map_or(0, |info| info.ack_floor.stream_sequence),
        Err(_) => 0,
    };
    let mut handed = recorded.max(acknowledged);
    let in_doubt = cursor.lock().expect("cursor lock").in_doubt();
    let in_relay = match in_doubt {
        Some(doubt) if doubt.after == handed => settle(&stream, &config, &from, doubt, &metrics).await,
        _ => HashSet::new(),
    };
    loop {
        let mut messages = match consume(&stream, &durable, handed + 1).await {
            Ok(messages) => messages,
            Err(e) => {
                warn!("import: cannot consume node {from}'s stream {stream_name} ({e}); trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        info!("import: node {from}'s stream {stream_name} from stream sequence {}", handed + 1);
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    debug!("import: node {from}: {e}");
                    continue;
                }
            };
            let Ok(sequence) = message.info().map(|info| info.stream_sequence) else { continue };
            if sequence <= handed {
                add(&metrics.duplicates_skipped, 1);
                let _ = message.ack().await;
                continue;
            }
            if sequence > handed + 1 {
                let first = stream.get_info().await.map_or(handed + 1, |info| info.state.first_sequence);
                if first > handed + 1 {
                    error!(
                        "import: node {from}'s frames at stream sequences {}..{} expired from the stream before \
                         they were imported (raise --max-age)",
                        handed + 1,
                        first - 1
                    );
                    add(&metrics.lost, first - handed - 1);
                    handed = first - 1;
                }
                if sequence > handed + 1 {
                    warn!(
                        "import: node {from}: JetStream sent {sequence} where {} was due; asking again",
                        handed + 1
                    );
                    break;
                }
            }
            handed = sequence;
            add(&metrics.imported_in, 1);
            let frame = message.payload.clone();
            let in_relay = in_relay.contains(&sequence);
            let cursor = Arc::clone(&cursor);
            let incoming = Incoming {
                node: Arc::clone(&node),
                frame,
                jetstream: Some(Delivery { message, sequence, cursor, in_relay }),
            };
            if frames.send(incoming).await.is_err() {
                return;
            }
        }
    }
}

/// The stream sequences, among those a killed bridge was writing, that the relay's audit trail
/// shows it accepted from that bridge (they are skipped, the others written).
async fn settle(
    stream: &jetstream::stream::Stream,
    config: &Config,
    from: &str,
    doubt: InDoubt,
    metrics: &Metrics,
) -> HashSet<u64> {
    // A writer writes batches of at most BATCH frames: a wider range is not a cursor it wrote.
    let (first, last) = (doubt.after + 1, doubt.upto.min(doubt.after + BATCH as u64));
    info!(
        "import: node {from}: the last bridge (pid {}) stopped while writing stream sequences {first}..={last}; \
         asking the relay's audit trail {} which of them it holds",
        doubt.pid,
        config.audit_file.display()
    );
    let mut keys: HashMap<Key, u64> = HashMap::new();
    for sequence in first..=last {
        match stream.get_raw_message(sequence).await {
            Ok(message) => {
                if let Some(header) = Header::view(&message.payload) {
                    keys.insert((header.source(), header.sequence(), message.payload.len() as u32), sequence);
                }
            }
            Err(e) => warn!("import: node {from}: stream sequence {sequence}: {e}"),
        }
    }
    let wanted: HashSet<Key> = keys.keys().copied().collect();
    match audit::settle(&config.audit_file, doubt.pid, doubt.since_ns, &wanted).await {
        Ok(found) => {
            let in_relay: HashSet<u64> = found.iter().filter_map(|key| keys.get(key).copied()).collect();
            add(&metrics.duplicates_skipped, in_relay.len() as u64);
            info!(
                "import: node {from}: {} of the {} frames are in the relay already and are skipped",
                in_relay.len(),
                last - first + 1
            );
            in_relay
        }
        Err(e) => {
            error!(
                "import: node {from}: cannot read the relay's audit trail {} ({e}; give --audit-file): the {} \
                 frames are written again, and any the relay already had are duplicated",
                config.audit_file.display(),
                last - first + 1
            );
            HashSet::new()
        }
    }
}

/// (Re)creates the durable consumer at `start` and returns its messages.
async fn consume(
    stream: &jetstream::stream::Stream,
    durable: &str,
    start: u64,
) -> Result<pull::Stream, async_nats::Error> {
    let _ = stream.delete_consumer(durable).await;
    let deliver_policy = if start <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence { start_sequence: start }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.to_string()),
            deliver_policy,
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 65_536,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
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

    #[test]
    fn only_one_whole_frame_within_the_size_is_imported() {
        let header = Header::new(RelayDomain::Execution, 4, 1, 2, 8);
        let one = [header.as_bytes(), &[200, 6, 0, 0, 0, 0, 0, 0]].concat();
        let execution = Domain::Execution;
        assert_eq!(one_frame(&one, 1024, execution).map(Header::sequence), Some(1));
        assert!(one_frame(&one[..39], 1024, execution).is_none(), "truncated");
        assert!(one_frame(&[one.clone(), one.clone()].concat(), 1024, execution).is_none(), "two frames");
        assert!(one_frame(&one, 39, execution).is_none(), "over the relay's size");
        assert!(one_frame(&[0u8; 40], 1024, execution).is_none(), "no magic");
        assert!(one_frame(&one, 1024, Domain::Signal).is_none(), "another relay's domain");
        let system = [Header::new(RelayDomain::System, 4, 1, 2, 8).as_bytes(), &one[32..]].concat();
        assert!(one_frame(&system, 1024, Domain::Signal).is_some(), "System frames go to every relay");
    }
}
