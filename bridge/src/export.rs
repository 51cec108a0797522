//! Export: a thread reads the local relay through the client library (the relay stays
//! synchronous, the bridge's tokio side never blocks it), hands each frame not already bridged
//! to the NATS side through a bounded queue, and a task publishes it.
//!
//! Market data and signals: when the queue is full the reader drops and counts, so a slow NATS
//! never stalls the relay. Execution: the reader waits (the relay pauses its publishers, as for
//! any slow lossless subscriber), and the publisher keeps every frame until JetStream has
//! stored it, sending again in order after a failure (the message id de-duplicates).

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use log::{debug, error, info, warn};
use tokio::sync::mpsc;
use torq::client::{Event, Frame, Notice, Reconnect, Subscriber, SubscriberOptions};
use torq::protocol::{Filter, RelayDomain};

use crate::config::{Config, Domain};
use crate::metrics::{Metrics, add};
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
    /// Market data and signals: straight to the NATS client's queue, from the reader's thread
    /// (one hand-off fewer). When the client's queue (`--queue`) is full the reader waits, so
    /// the relay drops for it as for any slow subscriber (notice 4, `relay_dropped`).
    Core(async_nats::Client),
    /// Execution: to the task that publishes to JetStream in order.
    JetStream(mpsc::Sender<Outgoing>),
}

impl Route {
    fn is_closed(&self) -> bool {
        match self {
            Route::Core(_) => false,
            Route::JetStream(out) => out.is_closed(),
        }
    }
}

/// Starts the thread that reads the local relay; it ends when `stop` is set or the NATS side
/// is gone.
pub fn spawn_reader(
    config: &Config,
    filters: Vec<Filter>,
    metrics: Arc<Metrics>,
    out: Route,
    stop: Arc<AtomicBool>,
    fatal: mpsc::UnboundedSender<String>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (relay, node, domain) = (config.relay.clone(), config.node.clone(), config.domain);
    let options = filters
        .into_iter()
        .fold(SubscriberOptions::new().reconnect(Reconnect::default()), SubscriberOptions::filter);
    std::thread::Builder::new().name("export-relay".into()).spawn(move || {
        let reconnect = Reconnect::default();
        while !stop.load(Ordering::Relaxed) && !out.is_closed() {
            let mut told = false;
            let subscriber = reconnect.run(|| {
                if stop.load(Ordering::Relaxed) {
                    return Err(torq::client::Error::Closed { path: relay.clone() });
                }
                Subscriber::connect(&relay, options.clone()).inspect_err(|e| {
                    if !std::mem::replace(&mut told, true) {
                        warn!("export: waiting for the relay: {e}");
                    }
                })
            });
            let Ok((mut subscriber, attempts)) = subscriber else { return };
            if attempts > 1 {
                add(&metrics.relay_reconnects, 1);
            }
            info!("export: subscribed to the relay at {}", relay.display());
            match read(&mut subscriber, &node, domain, &metrics, &out, &stop) {
                Ok(()) => {}
                Err(Stopped::Relay(e)) => {
                    error!("export: {e}; connecting again");
                    add(&metrics.relay_reconnects, 1);
                }
                Err(Stopped::WrongRelay(other)) => {
                    let _ = fatal.send(format!(
                        "the relay at {} forwards {other:?} frames, not {}: --relay or --domain is wrong (nothing \
                         was exported)",
                        relay.display(),
                        domain.token()
                    ));
                    return;
                }
            }
        }
    })
}

/// Why the reader stopped reading a relay connection.
enum Stopped {
    /// The connection failed.
    Relay(torq::client::Error),
    /// The relay forwards frames of another domain (the first such frame's).
    WrongRelay(RelayDomain),
}

/// Reads frames until `stop`, the NATS side going away, or an error: each wake-up hands every
/// buffered event to [`Exporter::event`] in one pass.
fn read(
    subscriber: &mut Subscriber,
    node: &str,
    domain: Domain,
    metrics: &Metrics,
    out: &Route,
    stop: &AtomicBool,
) -> Result<(), Stopped> {
    let mut exporter =
        Exporter { node, domain, metrics, out, subjects: HashMap::new(), closed: false, wrong_relay: None };
    while !stop.load(Ordering::Relaxed) && !exporter.closed {
        if !subscriber.wait(Duration::from_millis(100)).map_err(Stopped::Relay)? {
            if out.is_closed() {
                return Ok(());
            }
            continue;
        }
        subscriber.poll(|event| exporter.event(event), 4096).map_err(Stopped::Relay)?;
        if let Some(other) = exporter.wrong_relay {
            return Err(Stopped::WrongRelay(other));
        }
    }
    Ok(())
}

/// What the reader needs per event.
struct Exporter<'a> {
    node: &'a str,
    domain: Domain,
    metrics: &'a Metrics,
    out: &'a Route,
    /// Subjects made once per (first TLV type, source).
    subjects: HashMap<(u8, u8), Subject>,
    /// The NATS side is gone.
    closed: bool,
    /// A frame of this other domain came: the relay is not this bridge's (nothing more is
    /// exported).
    wrong_relay: Option<RelayDomain>,
}

impl Exporter<'_> {
    fn event(&mut self, event: Event<Frame<'_>>) {
        let metrics = self.metrics;
        match event {
            Event::Frame(frame) => self.frame(&frame),
            Event::Notice(Notice::Dropped { count, .. }) => add(&metrics.relay_dropped, count),
            Event::Notice(Notice::Merged { dropped, .. }) => add(&metrics.relay_dropped, dropped),
            Event::Notice(Notice::Stopping) => info!("export: the local relay is stopping"),
            Event::Notice(notice) => debug!("export: notice from the relay: {notice:?}"),
            Event::Reconnected { attempts } => {
                add(&metrics.relay_reconnects, 1);
                warn!(
                    "export: connected to the relay again after {attempts} attempt(s); what it forwarded \
                     meanwhile was not exported"
                );
            }
            Event::Gap { .. } => {}
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
            add(&self.metrics.export_skipped_bridged, 1);
            return;
        }
        add(&self.metrics.exported_in, 1);
        let (node, domain) = (self.node, self.domain);
        let key = (first_type(frame.bytes()), header.source());
        let subject = self
            .subjects
            .entry(key)
            .or_insert_with(|| Subject::from(export_subject(node, domain, frame.bytes())))
            .clone();
        match self.out {
            Route::JetStream(out) => {
                let id = Some(message_id(node, header));
                let outgoing = Outgoing { subject, id, frame: Bytes::copy_from_slice(frame.bytes()) };
                self.closed |= out.blocking_send(outgoing).is_err();
            }
            Route::Core(client) => {
                let published = futures::executor::block_on(
                    client.publish(subject, Bytes::copy_from_slice(frame.bytes())),
                );
                match published {
                    Ok(()) => add(&self.metrics.exported_out, 1),
                    Err(e) => {
                        add(&self.metrics.dropped, 1);
                        debug!("export: publish failed: {e}");
                    }
                }
            }
        }
    }
}

/// Creates (or finds) this node's execution stream.
///
/// # Errors
///
/// When JetStream refuses (not enabled on the server, or a stream of that name with other
/// settings).
pub async fn ensure_stream(js: &jetstream::Context, config: &Config) -> Result<(), async_nats::Error> {
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
