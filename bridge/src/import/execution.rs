//! The execution import: a durable JetStream consumer per imported node, its cursor, the
//! high-water marks of its exporters, the fair share of import places among streams, and the
//! audit-trail check after a kill.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use log::{debug, error, info, warn};
use tokio::sync::mpsc;
use torq::protocol::Header;

use super::{BATCH, Delivery, IDLE_IMPORT, Incoming, MAX_EXPORTERS, importable};
use crate::audit::{self, Key};
use crate::config::{Config, valid_node};
use crate::error::{BridgeError, Fatal};
use crate::metrics::{Metrics, add};
use crate::shutdown::Shutdown;
use crate::state::{Cursor, InDoubt};
use crate::subject::{MAX_NODES, parse_message_id, stream_name};

/// Acknowledges what the writer has written (acknowledging the last of a batch acknowledges
/// all before it: the consumers acknowledge `All`).
pub async fn acknowledge(mut acks: mpsc::UnboundedReceiver<jetstream::Message>) {
    while let Some(message) = acks.recv().await {
        if let Err(e) = message.ack().await {
            debug!("import: acknowledgement not sent ({e}); the frames come again and are skipped");
        }
    }
}

/// What every execution import task holds: JetStream, the settings and counters, the queue to
/// the thread that writes into the relay (it ends when every import task has dropped its
/// sender), where to report what stops the bridge, and the stop signal.
#[derive(Debug, Clone)]
pub struct Importer {
    /// JetStream.
    pub js: jetstream::Context,
    /// The settings.
    pub config: Arc<Config>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// To the writing thread.
    pub frames: mpsc::Sender<Incoming>,
    /// What stops the bridge.
    pub fatal: Fatal,
    /// The stop signal: an import task ends at it, dropping what it was doing (what was
    /// delivered and not written is not acknowledged, and comes again).
    pub shutdown: Shutdown,
}

/// An execution import running: its node, its task, and when it last had a frame.
struct Slot {
    node: String,
    task: tokio::task::JoinHandle<()>,
    /// Milliseconds since `epoch` at its last frame.
    active: Arc<AtomicU64>,
}

/// An import's clock of activity: an epoch, and milliseconds since it at its last frame.
type Activity = (Instant, Arc<AtomicU64>);

impl Importer {
    /// Imports node `from`'s execution stream (see [`Importer::import_node`]) until the stop
    /// signal.
    pub async fn node(self, from: String) {
        let shutdown = self.shutdown.clone();
        shutdown.until_stopped(self.import_node(from, None)).await;
    }

    /// Imports every other node's execution stream (see [`Importer::import_all`]) until the
    /// stop signal.
    pub async fn all(self) {
        let shutdown = self.shutdown.clone();
        shutdown.until_stopped(self.import_all()).await;
    }

    /// Imports every other node's execution stream, and the streams of nodes that appear
    /// later. At most [`MAX_NODES`] at once: past that, an import idle for [`IDLE_IMPORT`]
    /// gives its place to a stream waiting for one (its frames stay in its stream until its
    /// turn comes again), so streams invented by others never lock a real node out. Names that
    /// cannot be a node's are skipped and counted, never fatal.
    async fn import_all(self) {
        let (config, metrics) = (&self.config, &self.metrics);
        let epoch = Instant::now();
        let mut slots: Vec<Slot> = Vec::new();
        // Names already reported (bounded: a flood of names is reported once a minute at most).
        let mut reported: HashSet<String> = HashSet::new();
        let mut last_report = None::<Instant>;
        loop {
            slots.retain(|slot| !slot.task.is_finished());
            let mut names = self.js.stream_names();
            while let Some(name) = names.next().await {
                let Ok(name) = name else { break };
                let Some(node) = name.strip_prefix("TORQ_").and_then(|n| n.strip_suffix("_EXECUTION")) else {
                    continue;
                };
                if node == config.node || slots.iter().any(|s| s.node == node) {
                    continue;
                }
                let mut report = |why: &str| {
                    if reported.len() < 1024 && reported.insert(name.clone()) {
                        add(&metrics.invalid, 1);
                        if last_report.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60)) {
                            last_report = Some(Instant::now());
                            warn!("import: stream {name:.80} not imported: {why}");
                        }
                    }
                };
                if !valid_node(node) {
                    report("its node name is not 1-64 letters, digits, '-' or '_'");
                    continue;
                }
                if slots.len() >= MAX_NODES {
                    let Some(at) = idlest(&slots, epoch) else {
                        report(&format!(
                            "{MAX_NODES} streams are being imported and none is idle; it waits its turn"
                        ));
                        continue;
                    };
                    let slot = slots.swap_remove(at);
                    info!("import: node {}'s stream idle; its place goes to node {node}", slot.node);
                    slot.task.abort();
                }
                reported.remove(&name);
                let active = Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64));
                let import = self.clone().import_node(node.to_string(), Some((epoch, Arc::clone(&active))));
                let task = tokio::spawn(self.shutdown.clone().until_stopped(import));
                slots.push(Slot { node: node.to_string(), task, active });
            }
            if self.frames.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Imports node `from`'s execution stream, in order, each frame once; `activity` is set at
    /// every frame.
    async fn import_node(self, from: String, activity: Option<Activity>) {
        let cursor = match Cursor::open(&self.config.state_dir, &self.config.node, &from) {
            Ok(cursor) => Arc::new(Mutex::new(cursor)),
            // Without its cursor an import could write frames twice: the bridge stops.
            Err(source) => {
                let _ = self.fatal.send(BridgeError::Cursor { node: from, source });
                return;
            }
        };
        let stream = self.stream_of(&from).await;
        let mut place = Place::resume(&self.config, from, stream, cursor, &self.metrics).await;
        place.activity = activity;
        let (from, stream_name) = (place.from.clone(), stream_name(&place.from));
        let durable = format!("import-{}", self.config.node);
        loop {
            let mut messages = match consume(&place.stream, &durable, place.handed + 1, self.config.queue)
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    warn!("import: cannot consume node {from}'s stream {stream_name} ({e}); trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            info!("import: node {from}'s stream {stream_name} from stream sequence {}", place.handed + 1);
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        debug!("import: node {from}: {e}");
                        continue;
                    }
                };
                match place.take(message, &self).await {
                    Taken::Handed | Taken::Skipped => {}
                    Taken::Ahead => break,
                    Taken::WriterGone => return,
                }
            }
        }
    }

    /// Node `from`'s execution stream, waited for as long as it takes.
    async fn stream_of(&self, from: &str) -> jetstream::stream::Stream {
        let stream_name = stream_name(from);
        let mut waited = false;
        loop {
            match self.js.get_stream(&stream_name).await {
                Ok(stream) => return stream,
                Err(e) => {
                    if !waited {
                        info!("import: waiting for node {from}'s stream {stream_name} ({e})");
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// The slot idle for [`IDLE_IMPORT`] or more the longest, if any.
fn idlest(slots: &[Slot], epoch: Instant) -> Option<usize> {
    let now = epoch.elapsed().as_millis() as u64;
    slots
        .iter()
        .enumerate()
        .min_by_key(|(_, slot)| slot.active.load(Relaxed))
        .filter(|(_, slot)| now.saturating_sub(slot.active.load(Relaxed)) >= IDLE_IMPORT.as_millis() as u64)
        .map(|(at, _)| at)
}

/// High-water marks of one node's exporters: the last count imported per exporter.
#[derive(Debug, Default)]
struct Exporters {
    /// (exporter, count), most recent last.
    marks: Vec<(u64, u64)>,
}

impl Exporters {
    /// Whether the frame `count` of `exporter` is new (and records it): a count at or below
    /// the exporter's mark is a copy of a frame already imported.
    fn admit(&mut self, exporter: u64, count: u64) -> bool {
        match self.marks.iter().position(|(e, _)| *e == exporter) {
            Some(at) if self.marks[at].1 >= count => false,
            Some(at) => {
                self.marks.remove(at);
                self.marks.push((exporter, count));
                true
            }
            None => {
                if self.marks.len() >= MAX_EXPORTERS {
                    self.marks.remove(0);
                }
                self.marks.push((exporter, count));
                true
            }
        }
    }
}

/// The exporter and its count of a stream message of `node` (its message id).
fn exporter_of(headers: Option<&async_nats::HeaderMap>, node: &str) -> Option<(u64, u64)> {
    let id = headers?.get("Nats-Msg-Id")?;
    parse_message_id(id.as_str(), node)
}

/// Where the import of one node's stream stands.
struct Place {
    /// The node.
    from: String,
    stream: jetstream::stream::Stream,
    cursor: Arc<Mutex<Cursor>>,
    /// The stream sequence of the last frame handed to the writer (or skipped).
    handed: u64,
    /// The exporters' marks: a copy of a frame imported, or of one before it, is skipped.
    exporters: Exporters,
    /// Of the frames a killed bridge was writing, those the relay holds already.
    in_relay: HashSet<u64>,
    activity: Option<Activity>,
    last_skip_log: Option<Instant>,
}

/// What became of a message.
enum Taken {
    /// Handed to the writer.
    Handed,
    /// Not handed: a redelivery (acknowledged again), or a message without its place.
    Skipped,
    /// Past the frame due: the consumer moved on without us; ask again from the frame due.
    Ahead,
    /// The writer is gone (the bridge stops).
    WriterGone,
}

impl Place {
    /// Where to resume: after what the cursor says reached the relay, or after what the
    /// durable consumer had acknowledged (a cursor lost with its directory), or at the
    /// stream's first frame; with the exporter of the last frame imported, and the frames the
    /// relay holds already of those a killed bridge was writing.
    async fn resume(
        config: &Config,
        from: String,
        stream: jetstream::stream::Stream,
        cursor: Arc<Mutex<Cursor>>,
        metrics: &Metrics,
    ) -> Place {
        let recorded = cursor.lock().expect("cursor lock").delivered();
        let durable = format!("import-{}", config.node);
        let acknowledged = match stream.get_consumer::<pull::Config>(&durable).await {
            Ok(mut consumer) => consumer.info().await.map_or(0, |info| info.ack_floor.stream_sequence),
            Err(_) => 0,
        };
        let handed = recorded.max(acknowledged);
        let mut exporters = Exporters::default();
        if handed > 0
            && let Ok(last) = stream.get_raw_message(handed).await
            && let Some((exporter, count)) = exporter_of(Some(&last.headers), &from)
        {
            exporters.admit(exporter, count);
        }
        let in_doubt = cursor.lock().expect("cursor lock").in_doubt();
        let in_relay = match in_doubt {
            Some(doubt) if doubt.after == handed => settle(&stream, config, &from, doubt, metrics).await,
            _ => HashSet::new(),
        };
        Place { from, stream, cursor, handed, exporters, in_relay, activity: None, last_skip_log: None }
    }

    /// Takes one message of the stream: a redelivery is acknowledged again, a frame past the
    /// one due (after what expired from the stream, counted lost) asks again, the frame due
    /// goes to the writer, marked to be skipped when it is not to be written.
    async fn take(&mut self, message: jetstream::Message, importer: &Importer) -> Taken {
        let (from, metrics) = (&self.from, &*importer.metrics);
        let Ok(sequence) = message.info().map(|info| info.stream_sequence) else { return Taken::Skipped };
        if sequence <= self.handed {
            add(&metrics.duplicates_skipped, 1);
            let _ = message.ack().await;
            return Taken::Skipped;
        }
        if sequence > self.handed + 1 {
            let first =
                self.stream.get_info().await.map_or(self.handed + 1, |info| info.state.first_sequence);
            if first > self.handed + 1 {
                error!(
                    "import: node {from}'s frames at stream sequences {}..{} expired from the stream before they \
                     were imported (raise --max-age)",
                    self.handed + 1,
                    first - 1
                );
                add(&metrics.lost, first - self.handed - 1);
                self.handed = first - 1;
            }
            if sequence > self.handed + 1 {
                warn!(
                    "import: node {from}: JetStream sent {sequence} where {} was due; asking again",
                    self.handed + 1
                );
                return Taken::Ahead;
            }
        }
        self.handed = sequence;
        add(&metrics.imported_in, 1);
        if let Some((epoch, active)) = &self.activity {
            active.store(epoch.elapsed().as_millis() as u64, Relaxed);
        }
        let skip = self.skip(&message, sequence, &importer.config, metrics);
        let (frame, cursor) = (message.payload.clone(), Arc::clone(&self.cursor));
        let incoming = Incoming { frame, jetstream: Some(Delivery { message, sequence, cursor, skip }) };
        match importer.frames.send(incoming).await {
            Ok(()) => Taken::Handed,
            Err(_) => Taken::WriterGone,
        }
    }

    /// Whether the frame at `sequence` is not to be written (only recorded and acknowledged,
    /// in order): what the relay holds already, a copy of a frame imported, what no exporter of
    /// the node sent, and what the relay would refuse. Each but the first is counted and
    /// logged (at most once a second).
    fn skip(
        &mut self,
        message: &jetstream::Message,
        sequence: u64,
        config: &Config,
        metrics: &Metrics,
    ) -> bool {
        if self.in_relay.contains(&sequence) {
            return true;
        }
        let skip = match exporter_of(message.headers.as_ref(), &self.from) {
            None => Some((&metrics.invalid, "its message id is not one an exporter of the node writes")),
            Some((exporter, count)) if !self.exporters.admit(exporter, count) => {
                Some((&metrics.duplicates_skipped, "a copy of a frame already imported"))
            }
            Some(_) => match importable(&message.payload, config.max_message_size, config.domain) {
                Ok(_) => None,
                Err(_) => Some((&metrics.invalid, "not a frame the relay takes")),
            },
        };
        let Some((counter, why)) = skip else { return false };
        add(counter, 1);
        if self.last_skip_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.last_skip_log = Some(Instant::now());
            warn!("import: node {}: stream sequence {sequence} skipped: {why}", self.from);
        }
        true
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
    queue: usize,
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
            // At most `--queue` frames delivered and not yet acknowledged: what a relay that
            // pauses the import holds back stays in the stream.
            max_ack_pending: i64::try_from(queue.min(65_536)).unwrap_or(65_536),
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_a_frame_already_imported_is_not_admitted() {
        let mut exporters = Exporters::default();
        assert!(exporters.admit(7, 1));
        assert!(exporters.admit(7, 2));
        assert!(!exporters.admit(7, 2), "the same frame again");
        assert!(!exporters.admit(7, 1), "an older one");
        assert!(exporters.admit(8, 1), "another exporter (a restart) counts from 1");
        assert!(!exporters.admit(7, 2), "the first exporter's mark is kept");
        for exporter in 100..100 + MAX_EXPORTERS as u64 {
            assert!(exporters.admit(exporter, 5));
        }
        assert_eq!(exporters.marks.len(), MAX_EXPORTERS, "bounded");
    }
}
