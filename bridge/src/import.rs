//! Import: tasks take frames from NATS (core subscriptions for market data and signals, a
//! durable JetStream consumer per imported node for execution) and hand them through a bounded
//! queue to a thread that writes them into the local relay through the client library, with
//! flags bit 0 (bridged) set, one publisher connection per imported node (sequences are per
//! connection and source, PROTOCOL.md §6).
//!
//! Execution frames are delivered strictly in stream order: the thread records the stream
//! sequence of what it has written ([`Cursor`]) before the frames are acknowledged; a frame at
//! or below the cursor is a redelivery and is skipped; a frame past the one due means the
//! consumer moved on without us, and it is made again from the frame due.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;
use log::{debug, error, info, warn};
use tokio::sync::mpsc;
use torq::client::{Publisher, PublisherOptions, Reconnect};
use torq::protocol::{Header, mark_bridged};

use crate::config::{Config, Domain};
use crate::metrics::{Metrics, add};
use crate::state::Cursor;
use crate::subject::{Gaps, import_subject, node_of, stream_name};

/// A frame on its way into the local relay.
#[derive(Debug)]
pub struct Incoming {
    node: Arc<str>,
    frame: Bytes,
    /// Execution: the message (acknowledged once written), its stream sequence and the cursor.
    jetstream: Option<(jetstream::Message, u64, Arc<Mutex<Cursor>>)>,
}

/// Starts the thread that writes imported frames into the local relay; it ends when every
/// sender is gone. Acknowledgements go out through `acks` once the frames are written and
/// the cursor moved.
pub fn spawn_writer(
    config: &Config,
    metrics: Arc<Metrics>,
    mut frames: mpsc::Receiver<Incoming>,
    acks: mpsc::UnboundedSender<jetstream::Message>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (relay, domain) = (config.relay.clone(), config.domain);
    std::thread::Builder::new().name("import-relay".into()).spawn(move || {
        let mut sinks: HashMap<Arc<str>, Sink> = HashMap::new();
        let mut scratch = Vec::new();
        let mut written: Vec<(Arc<Mutex<Cursor>>, u64, jetstream::Message)> = Vec::new();
        while let Some(first) = frames.blocking_recv() {
            let mut next = Some(first);
            let mut count = 0u64;
            // Everything waiting now goes in one batch, then one flush.
            while let Some(incoming) = next {
                scratch.clear();
                scratch.extend_from_slice(&incoming.frame);
                let Some(header) = Header::view(&scratch).copied() else {
                    warn!(
                        "import: a message from node {} is not a frame ({} bytes); skipped",
                        incoming.node,
                        scratch.len()
                    );
                    next = frames.try_recv().ok();
                    continue;
                };
                let _ = mark_bridged(&mut scratch);
                let sink = match sinks.get_mut(&incoming.node) {
                    Some(sink) => sink,
                    None => sinks
                        .entry(Arc::clone(&incoming.node))
                        .or_insert(Sink::connect(&relay, domain, &metrics)),
                };
                if let Err(e) = sink.write(&scratch, &header, &incoming.node, &relay, domain, &metrics) {
                    error!("import: cannot write to the relay at {}: {e}", relay.display());
                }
                if let Some((message, sequence, cursor)) = incoming.jetstream {
                    match written.last_mut() {
                        Some(last) if Arc::ptr_eq(&last.0, &cursor) => *last = (cursor, sequence, message),
                        _ => written.push((cursor, sequence, message)),
                    }
                }
                let lag = torq_now().saturating_sub(header.timestamp());
                metrics.lag_ns.store(lag, std::sync::atomic::Ordering::Relaxed);
                count += 1;
                next = if count < 4096 { frames.try_recv().ok() } else { None };
            }
            for sink in sinks.values_mut() {
                if let Err(e) = sink.publisher.flush() {
                    error!("import: cannot write to the relay at {}: {e}", relay.display());
                }
            }
            add(&metrics.imported_out, count);
            for (cursor, sequence, message) in written.drain(..) {
                let moved = cursor
                    .lock()
                    .map_err(|_| ())
                    .and_then(|mut c| c.advance(sequence).map_err(|e| error!("import: {e}")));
                // Not acknowledged unless recorded: NATS delivers it again, and it is skipped then.
                if moved.is_ok() {
                    let _ = acks.send(message);
                }
            }
        }
        for sink in sinks.values_mut() {
            let _ = sink.publisher.flush();
        }
    })
}

/// The publisher connection of one imported node.
struct Sink {
    publisher: Publisher,
    /// The last sequence written per source on this connection.
    last: Box<[Option<u64>; 256]>,
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
        Sink { publisher, last: Box::new([None; 256]) }
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
        self.publisher.offer_verbatim(frame)
    }
}

fn torq_now() -> u64 {
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

/// Imports market data or signals from core NATS: `node`, or every other node.
pub async fn import_core(
    client: async_nats::Client,
    config: Arc<Config>,
    node: Option<String>,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
) {
    let subject = import_subject(node.as_deref(), config.domain);
    let mut subscription = match client.subscribe(subject.clone()).await {
        Ok(subscription) => subscription,
        Err(e) => {
            error!("import: cannot subscribe to {subject}: {e}");
            return;
        }
    };
    info!("import: subscribed to {subject}");
    let mut gaps = Gaps::default();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    while let Some(message) = subscription.next().await {
        let Some(from) = node_of(&message.subject) else { continue };
        if from == config.node {
            continue;
        }
        let Some(header) = Header::view(&message.payload) else {
            warn!("import: a message on {} is not a frame; skipped", message.subject);
            continue;
        };
        add(&metrics.imported_in, 1);
        add(&metrics.lost, gaps.record(from, header));
        let name = names.entry(from.to_string()).or_insert_with(|| Arc::from(from));
        let incoming = Incoming { node: Arc::clone(name), frame: message.payload, jetstream: None };
        match frames.try_send(incoming) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => add(&metrics.dropped, 1),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Imports every other node's execution stream, and the streams of nodes that appear later.
pub async fn import_all_jetstream(
    js: jetstream::Context,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
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
            started.push(node.to_string());
            tokio::spawn(import_jetstream(
                js.clone(),
                Arc::clone(&config),
                node.to_string(),
                Arc::clone(&metrics),
                frames.clone(),
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
) {
    let cursor = match Cursor::open(&config.state_dir, &config.node, &from) {
        Ok(cursor) => Arc::new(Mutex::new(cursor)),
        Err(e) => {
            error!("import: cannot keep the import cursor of node {from}: {e}; node {from} is not imported");
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
            let incoming = Incoming {
                node: Arc::clone(&node),
                frame,
                jetstream: Some((message, sequence, Arc::clone(&cursor))),
            };
            if frames.send(incoming).await.is_err() {
                return;
            }
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
