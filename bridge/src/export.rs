//! Export: a task reads the local relay through the client library, without ever waiting in a
//! read (the relay stays synchronous, the bridge's runtime never blocks on it), and hands each
//! frame not already bridged to NATS.
//!
//! Market data and signals: into the NATS client's bounded queue; when it is full the reader
//! waits, so the relay drops for it and counts, and a slow NATS never stalls the relay.
//! Execution: through a bounded queue to a task that keeps every frame until JetStream has
//! stored it, sending again in order after a failure (the message id de-duplicates); while it
//! is full the reader waits and the relay pauses its publishers, as for any slow lossless
//! subscriber.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use log::{debug, error, info, warn};
use tokio::io::Interest;
use tokio::sync::mpsc;
use torq::client::{Event, Frame, Notice, Reconnect, Subscriber, SubscriberOptions};
use torq::protocol::{Filter, RelayDomain};

use crate::config::{Config, Domain};
use crate::error::{BridgeError, Fatal};
use crate::metrics::{Metrics, add};
use crate::nats::Nats;
use crate::shutdown::Shutdown;
use crate::subject::{export_subject, first_type, message_id, stream_name};

/// A frame on its way to NATS.
#[derive(Debug)]
pub struct Outgoing {
    subject: Subject,
    /// The JetStream message id (execution only).
    id: Option<String>,
    frame: Bytes,
}

/// Where the reader sends frames.
#[derive(Debug, Clone)]
pub enum Route {
    /// Market data and signals: straight to the NATS client's queue, from the reading task.
    /// When the client's queue (`--queue`) is full the reader waits, so the relay drops for it
    /// as for any slow subscriber (notice 4, `relay_dropped`).
    Core(async_nats::Client),
    /// Execution: to the task that publishes to JetStream in order.
    JetStream(mpsc::Sender<Outgoing>),
}

/// Reads the local relay and hands its frames to NATS until the stop signal (what was read is
/// handed over first) or the NATS side is gone; a relay of another domain is reported through
/// `fatal`, which stops the bridge.
///
/// One task on the bridge's runtime, woken by the relay socket's readiness: a frame wakes one
/// thread of the bridge, which queues it in the NATS client, whose connection task then writes
/// it from the same thread (a reading thread of its own cost one more wake-up per frame).
/// Reading never blocks the runtime: `Subscriber::poll` reads without waiting.
pub async fn export(
    config: Arc<Config>,
    filters: Vec<Filter>,
    metrics: Arc<Metrics>,
    out: Route,
    mut shutdown: Shutdown,
    fatal: Fatal,
) {
    // No reconnection inside the subscriber (it would wait on the runtime): this loop does it.
    let options = filters.into_iter().fold(SubscriberOptions::new(), SubscriberOptions::filter);
    let mut exporter = Exporter {
        node: &config.node,
        domain: config.domain,
        jetstream: matches!(out, Route::JetStream(_)),
        instance: instance_id(),
        exported: 0,
        subjects: HashMap::new(),
        ready: Vec::new(),
        copies: BytesMut::new(),
        counts: Counts::default(),
        wrong_relay: None,
    };
    let mut connected_before = false;
    loop {
        let (relay, options, stopped) = (config.socket.clone(), options.clone(), shutdown.clone());
        // With the back-off of `Reconnect::default()`, until connected or stopped.
        let connecting = tokio::task::spawn_blocking(move || {
            let back_off = Reconnect::default();
            let (mut wait, mut attempts) = (back_off.initial, 0u32);
            while !stopped.is_stopped() {
                attempts += 1;
                match Subscriber::connect(&relay, options.clone()) {
                    Ok(subscriber) => return Some((subscriber, attempts)),
                    Err(e) if attempts == 1 => warn!("export: waiting for the relay: {e}"),
                    Err(e) => debug!("export: connection attempt {attempts} failed: {e}; next in {wait:?}"),
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(back_off.max);
            }
            None
        });
        // A stop ends the wait for a relay at once: nothing was read, nothing is to be handed
        // over (the blocking attempts see the stop within a second and end).
        let connected = tokio::select! {
            connected = connecting => connected,
            () = shutdown.stopped() => return,
        };
        let Ok(Some((subscriber, attempts))) = connected else { return };
        if attempts > 1 || connected_before {
            add(&metrics.relay_reconnects, 1);
        }
        if connected_before {
            warn!("export: connected to the relay again; what it forwarded meanwhile was not exported");
        }
        connected_before = true;
        info!("export: subscribed to the relay at {}", config.socket.display());
        match read(subscriber, &config.socket, &mut exporter, &metrics, &out, &mut shutdown).await {
            Ok(()) => return,
            Err(Stopped::Relay(e)) => error!("export: {e}; connecting again"),
            Err(Stopped::WrongRelay(found)) => {
                let (socket, domain) = (config.socket.clone(), config.domain.token());
                let _ = fatal.send(BridgeError::WrongRelay { socket, found, domain });
                return;
            }
        }
    }
}

/// Why the reader stopped reading a relay connection.
enum Stopped {
    /// The connection failed.
    Relay(torq::client::Error),
    /// The relay forwards frames of another domain (the first such frame's).
    WrongRelay(RelayDomain),
}

/// Reads one relay connection until the stop signal or the NATS side is gone (`Ok`) or it fails: each
/// time the socket is readable, every buffered event goes to [`Exporter::event`] in one pass,
/// then the frames it kept to NATS.
async fn read(
    mut subscriber: Subscriber,
    path: &Path,
    exporter: &mut Exporter<'_>,
    metrics: &Metrics,
    out: &Route,
    shutdown: &mut Shutdown,
) -> Result<(), Stopped> {
    let io = |source| Stopped::Relay(torq::client::Error::Io { path: path.to_path_buf(), source });
    // The runtime watches a second descriptor of the subscriber's socket. Non-blocking, as the
    // runtime wants, for the subscriber too (they share the open socket): here it only reads
    // without waiting.
    let watched = std::os::unix::net::UnixStream::from(subscriber.as_fd().try_clone_to_owned().map_err(io)?);
    watched.set_nonblocking(true).map_err(io)?;
    let socket = tokio::net::UnixStream::from_std(watched).map_err(io)?;
    loop {
        tokio::select! {
            readable = socket.readable() => readable.map_err(io)?,
            () = shutdown.stopped() => return Ok(()),
        }
        // Nothing handled means nothing buffered and the socket empty: `WouldBlock` tells the
        // runtime to wait for the next readiness.
        let polled = socket.try_io(Interest::READABLE, || {
            match subscriber.poll(|event| exporter.event(event), 4096) {
                Ok(0) => Err(std::io::ErrorKind::WouldBlock.into()),
                handled => Ok(handled),
            }
        });
        match polled {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Stopped::Relay(e)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io(e)),
        }
        exporter.counts.add_to(metrics);
        if let Some(other) = exporter.wrong_relay {
            return Err(Stopped::WrongRelay(other));
        }
        for outgoing in exporter.ready.drain(..) {
            match out {
                Route::Core(client) => match client.publish(outgoing.subject, outgoing.frame).await {
                    Ok(()) => add(&metrics.exported_out, 1),
                    Err(e) => {
                        add(&metrics.dropped, 1);
                        debug!("export: publish failed: {e}");
                    }
                },
                Route::JetStream(sender) => {
                    if sender.send(outgoing).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The bytes of one allocation for frames on their way to NATS (an allocation per frame cost
/// a `malloc` and a `free` per frame).
const COPIES: usize = 64 * 1024;

/// Counters of one pass, added to the shared ones once.
#[derive(Default)]
struct Counts {
    exported_in: u64,
    skipped_bridged: u64,
    relay_dropped: u64,
}

impl Counts {
    fn add_to(&mut self, metrics: &Metrics) {
        let Counts { exported_in, skipped_bridged, relay_dropped } = std::mem::take(self);
        add(&metrics.exported_in, exported_in);
        add(&metrics.export_skipped_bridged, skipped_bridged);
        add(&metrics.relay_dropped, relay_dropped);
    }
}

/// What the reader needs per event.
struct Exporter<'a> {
    node: &'a str,
    domain: Domain,
    /// Execution: each frame with its JetStream message id.
    jetstream: bool,
    /// This exporter, in its message ids (drawn at start).
    instance: u64,
    /// Frames given a message id so far.
    exported: u64,
    /// Subjects made once per (first TLV type, source).
    subjects: HashMap<(u8, u8), Subject>,
    /// The frames of this pass, for NATS.
    ready: Vec<Outgoing>,
    /// Where frames are copied for NATS, many to an allocation: each frame's `Bytes` shares
    /// it, and it is freed once NATS has written them all.
    copies: BytesMut,
    counts: Counts,
    /// A frame of this other domain came: the relay is not this bridge's (nothing more is
    /// exported).
    wrong_relay: Option<RelayDomain>,
}

impl Exporter<'_> {
    fn event(&mut self, event: Event<Frame<'_>>) {
        match event {
            Event::Frame(frame) => self.frame(&frame),
            Event::Notice(Notice::Dropped { count, .. }) => self.counts.relay_dropped += count,
            Event::Notice(Notice::Merged { dropped, .. }) => self.counts.relay_dropped += dropped,
            Event::Notice(Notice::Stopping) => info!("export: the local relay is stopping"),
            Event::Notice(notice) => debug!("export: notice from the relay: {notice:?}"),
            // Reconnections are the caller's (the subscriber has none of its own).
            Event::Reconnected { .. } | Event::Gap { .. } | Event::Restarted { .. } => {}
        }
    }

    fn frame(&mut self, frame: &Frame<'_>) {
        let header = frame.header();
        if self.wrong_relay.is_some() {
            return;
        }
        if let Some(other) =
            header.domain().filter(|d| *d != self.domain.relay() && *d != RelayDomain::System)
        {
            self.wrong_relay = Some(other);
            return;
        }
        if header.is_bridged() {
            self.counts.skipped_bridged += 1;
            return;
        }
        self.counts.exported_in += 1;
        let (node, domain) = (self.node, self.domain);
        let key = (first_type(frame.bytes()), header.source());
        let subject = self
            .subjects
            .entry(key)
            .or_insert_with(|| Subject::from(export_subject(node, domain, frame.bytes())))
            .clone();
        let id = self.jetstream.then(|| {
            self.exported += 1;
            message_id(node, self.instance, self.exported)
        });
        let bytes = frame.bytes();
        if self.copies.capacity() < bytes.len() {
            self.copies.reserve(COPIES.max(bytes.len()));
        }
        self.copies.extend_from_slice(bytes);
        self.ready.push(Outgoing { subject, id, frame: self.copies.split().freeze() });
    }
}

/// An exporter's instance id: unique across its starts and hosts with overwhelming odds (the
/// standard library's per-process random keys, the time and the pid, hashed).
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Creates (or finds) this node's execution stream, trying once a second for 30 s: JetStream
/// may still be electing a leader at start.
///
/// # Errors
///
/// [`BridgeError::StreamRefused`] at once when the server's permissions refuse it (no retry
/// changes that), [`BridgeError::StreamTimeout`] after 30 tries.
pub async fn create_stream(nats: &Nats, config: &Config) -> Result<(), BridgeError> {
    let stream = stream_name(&config.node);
    let mut tries = 0;
    while let Err(source) = ensure_stream(&nats.jetstream, config).await {
        if let Some(refusal) = nats.take_violation().filter(|refusal| refusal.contains(&stream)) {
            let (login, node) = (config.login.describe(), config.node.clone());
            return Err(BridgeError::StreamRefused { login, stream, refusal, node });
        }
        tries += 1;
        if tries == 30 {
            let (urls, login) = (config.nats.join(","), config.login.describe());
            return Err(BridgeError::StreamTimeout { stream, urls, login, source });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Creates (or finds) this node's execution stream.
///
/// # Errors
///
/// When JetStream refuses (not enabled on the server, or a stream of that name with other
/// settings).
async fn ensure_stream(js: &jetstream::Context, config: &Config) -> Result<(), async_nats::Error> {
    let name = stream_name(&config.node);
    js.get_or_create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("torq.{}.{}.>", config.node, Domain::Execution.token())],
        storage: jetstream::stream::StorageType::File,
        num_replicas: config.replicas,
        max_age: config.max_age,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    info!("export: JetStream stream {name} ready ({} replica(s))", config.replicas);
    Ok(())
}

/// Publishes execution frames to JetStream, at most `window` waiting for their acknowledgement,
/// in order: each publish expects the previous frame's id to be the stream's last, so a frame
/// lost with a connection makes the ones after it fail too, and all are sent again from the
/// first unacknowledged one (those already stored come back as duplicates). Publishes are
/// handed to the client one after the other, here, so they leave in the order of the relay.
pub async fn publish_jetstream(
    js: jetstream::Context,
    mut frames: mpsc::Receiver<Outgoing>,
    metrics: Arc<Metrics>,
    window: usize,
) {
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut acks = FuturesOrdered::new();
    let mut open = true;
    let mut failed = false;
    let mut backoff = Duration::from_millis(20);
    while open || !pending.is_empty() {
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            add(&metrics.republished, pending.len() as u64);
            acks = FuturesOrdered::new();
            failed = false;
            let mut previous = None;
            for outgoing in &pending {
                match send(&js, outgoing, previous).await {
                    Ok(ack) => acks.push_back(ack.into_future()),
                    Err(e) => {
                        debug!("export: sending again failed: {e}");
                        failed = true;
                        break;
                    }
                }
                previous = outgoing.id.as_deref();
            }
            continue;
        }
        tokio::select! {
            biased;
            Some(result) = acks.next(), if !acks.is_empty() => match result {
                Ok(_) => {
                    pending.pop_front();
                    add(&metrics.exported_out, 1);
                    backoff = Duration::from_millis(20);
                }
                Err(e) => {
                    warn!("export: JetStream did not store a frame ({e}); sending {} again from it", pending.len());
                    failed = true;
                }
            },
            next = frames.recv(), if open && pending.len() < window => match next {
                Some(outgoing) => {
                    // The first frame after a start, a pause or a failure expects nothing.
                    let previous = if acks.is_empty() { None } else { pending.back().and_then(|p| p.id.as_deref()) };
                    match send(&js, &outgoing, previous).await {
                        Ok(ack) => acks.push_back(ack.into_future()),
                        Err(e) => {
                            warn!("export: cannot publish to JetStream ({e}); sending {} again", pending.len() + 1);
                            failed = true;
                        }
                    }
                    pending.push_back(outgoing);
                }
                None => open = false,
            },
        }
    }
}

/// Hands one publish to the client, with its id, expecting `previous` as the stream's last
/// message id; the acknowledgement comes later.
async fn send(
    js: &jetstream::Context,
    outgoing: &Outgoing,
    previous: Option<&str>,
) -> Result<PublishAckFuture, jetstream::context::PublishError> {
    let mut message = PublishMessage::build().payload(outgoing.frame.clone());
    if let Some(id) = &outgoing.id {
        message = message.message_id(id);
    }
    if let Some(previous) = previous {
        message = message.expected_last_message_id(previous);
    }
    js.send_publish(outgoing.subject.clone(), message).await
}
