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
use crate::metrics::{Metrics, add};
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

/// An execution import running: its node, its task, and when it last had a frame.
struct Slot {
    node: String,
    task: tokio::task::JoinHandle<()>,
    /// Milliseconds since `epoch` at its last frame.
    active: Arc<AtomicU64>,
}

/// Imports every other node's execution stream, and the streams of nodes that appear later.
/// At most [`MAX_NODES`] at once: past that, an import idle for [`IDLE_IMPORT`] gives its place
/// to a stream waiting for one (its frames stay in its stream until its turn comes again), so
/// streams invented by others never lock a real node out. Names that cannot be a node's are
/// skipped and counted, never fatal.
pub async fn import_all_jetstream(
    js: jetstream::Context,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
    fatal: mpsc::UnboundedSender<String>,
) {
    let epoch = Instant::now();
    let mut slots: Vec<Slot> = Vec::new();
    // Names already reported (bounded: a flood of names is reported once a minute at most).
    let mut reported: HashSet<String> = HashSet::new();
    let mut last_report = None::<Instant>;
    loop {
        slots.retain(|slot| !slot.task.is_finished());
        let mut names = js.stream_names();
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
                let now = epoch.elapsed().as_millis() as u64;
                let idlest = slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, slot)| slot.active.load(Relaxed))
                    .filter(|(_, slot)| {
                        now.saturating_sub(slot.active.load(Relaxed)) >= IDLE_IMPORT.as_millis() as u64
                    })
                    .map(|(at, _)| at);
                let Some(at) = idlest else {
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
            let task = tokio::spawn(import_jetstream(
                js.clone(),
                Arc::clone(&config),
                node.to_string(),
                Arc::clone(&metrics),
                frames.clone(),
                fatal.clone(),
                Some((epoch, Arc::clone(&active))),
            ));
            slots.push(Slot { node: node.to_string(), task, active });
        }
        if frames.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
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

/// Imports node `from`'s execution stream, in order, each frame once; `activity` (an epoch
/// and a clock) is set at every frame.
pub async fn import_jetstream(
    js: jetstream::Context,
    config: Arc<Config>,
    from: String,
    metrics: Arc<Metrics>,
    frames: mpsc::Sender<Incoming>,
    fatal: mpsc::UnboundedSender<String>,
    activity: Option<(Instant, Arc<AtomicU64>)>,
) {
    let cursor = match Cursor::open(&config.state_dir, &config.node, &from) {
        Ok(cursor) => Arc::new(Mutex::new(cursor)),
        // Without its cursor an import could write frames twice: the bridge stops.
        Err(e) => {
            let _ = fatal.send(format!("import: cannot keep the import cursor of node {from}: {e}"));
            return;
        }
    };
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
    // The exporter of the last frame imported: a copy of it or of one before it is skipped.
    let mut exporters = Exporters::default();
    if handed > 0
        && let Ok(last) = stream.get_raw_message(handed).await
        && let Some((exporter, count)) = exporter_of(Some(&last.headers), &from)
    {
        exporters.admit(exporter, count);
    }
    let in_doubt = cursor.lock().expect("cursor lock").in_doubt();
    let in_relay = match in_doubt {
        Some(doubt) if doubt.after == handed => settle(&stream, &config, &from, doubt, &metrics).await,
        _ => HashSet::new(),
    };
    let mut last_skip_log = None::<Instant>;
    loop {
        let mut messages = match consume(&stream, &durable, handed + 1, config.queue).await {
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
            if let Some((epoch, active)) = &activity {
                active.store(epoch.elapsed().as_millis() as u64, Relaxed);
            }
            // Not written (only recorded and acknowledged, in order): what the relay holds
            // already, a copy of a frame imported, what no exporter of `from` sent, and what
            // the relay would refuse.
            let skip = if in_relay.contains(&sequence) {
                None
            } else {
                match exporter_of(message.headers.as_ref(), &from) {
                    None => {
                        Some((&metrics.invalid, "its message id is not one an exporter of the node writes"))
                    }
                    Some((exporter, count)) if !exporters.admit(exporter, count) => {
                        Some((&metrics.duplicates_skipped, "a copy of a frame already imported"))
                    }
                    Some(_) => match importable(&message.payload, config.max_message_size, config.domain) {
                        Ok(_) => None,
                        Err(_) => Some((&metrics.invalid, "not a frame the relay takes")),
                    },
                }
            };
            if let Some((counter, why)) = skip {
                add(counter, 1);
                if last_skip_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    last_skip_log = Some(Instant::now());
                    warn!("import: node {from}: stream sequence {sequence} skipped: {why}");
                }
            }
            let frame = message.payload.clone();
            let skip = skip.is_some() || in_relay.contains(&sequence);
            let cursor = Arc::clone(&cursor);
            let incoming = Incoming { frame, jetstream: Some(Delivery { message, sequence, cursor, skip }) };
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
