//! `torq-bridge`: carries one relay's frames to and from the relays of other hosts over NATS.
//! See `torq-bridge --help` and the README's "Across hosts".
//!
//! [`run`] starts the bridge in steps, each of which a signal or an error stops; then it waits
//! for the reason to stop ([`Cause`]) and stops it in the way of [`shutdown`]: one signal to
//! every task, then each group of tasks waited for with its bound, in the order its work flows.

mod audit;
mod config;
mod error;
mod export;
mod import;
mod metrics;
mod metrics_http;
mod nats;
mod presence;
mod shutdown;
mod state;
mod subject;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use log::{error, info, warn};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use config::{Args, Config, Domain, Import, LogLevel};
use error::{BridgeError, Fatal};
use metrics::Metrics;
use nats::Nats;
use shutdown::{Shutdown, Stop, Tasks};

/// How long the export's reader may take, after the stop signal, to hand to NATS what it read
/// from the relay.
const READ_WITHIN: Duration = Duration::from_secs(2);
/// How long JetStream may take, once the reader is gone, to store the execution frames the
/// export handed to it.
const STORE_WITHIN: Duration = Duration::from_secs(5);
/// How long the import may take to write what it holds into the relay.
const WRITE_WITHIN: Duration = Duration::from_secs(5);
/// How long the rest may take (each of them ends at the signal).
const REST_WITHIN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    match Args::parse().resolve().map_err(BridgeError::from).and_then(start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logged once; on stderr too, where a mistake in the settings (logging not yet
            // started) is said only there.
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Starts logging and the runtime, and runs the bridge until it stops.
fn start(config: Config) -> Result<(), BridgeError> {
    start_logging(config.log_level);
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(BridgeError::Runtime)?;
    let result = runtime.block_on(run(Arc::new(config)));
    // Threads left behind by the bounded stop (a reader or writer still waiting for its relay)
    // must not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Logs to stderr at `level` (`RUST_LOG` still refines it).
fn start_logging(level: LogLevel) {
    let _ = env_logger::Builder::new().filter_level(level.filter()).parse_default_env().try_init();
}

/// Runs until SIGINT or SIGTERM, or an error that stops the bridge.
async fn run(config: Arc<Config>) -> Result<(), BridgeError> {
    let (fatal, failures) = mpsc::unbounded_channel();
    let mut cause = Cause::new(failures);
    let mut bridge = Bridge::connect(config, fatal).await?;
    bridge.serve_metrics().await?;
    // Nothing is exported or imported before NATS says that no other bridge of this node and
    // domain runs (the check waits for NATS; a signal stops the wait).
    if cause.before(bridge.claim()).await?.is_none() {
        return Ok(());
    }
    if let Some(filters) = bridge.config.export.clone() {
        if bridge.config.domain == Domain::Execution
            // Nothing was exported yet: nothing to wait for.
            && cause.before(export::create_stream(&bridge.nats, &bridge.config)).await?.is_none()
        {
            return Ok(());
        }
        bridge.start_export(filters);
    }
    if let Some(import) = bridge.config.import.clone() {
        bridge.start_import(&import).await?;
    }
    bridge.log_stats();
    let failure = cause.next().await;
    bridge.stop().await;
    failure.map_or(Ok(()), Err)
}

/// Why the bridge stops: SIGINT or SIGTERM, or an error a task reported.
struct Cause {
    /// `None` when the handlers cannot be installed (no signal is waited for then).
    signals: Option<(Signal, Signal)>,
    failures: mpsc::UnboundedReceiver<BridgeError>,
}

impl Cause {
    /// Installs the signal handlers; the errors come through `failures`.
    fn new(failures: mpsc::UnboundedReceiver<BridgeError>) -> Cause {
        let signals = signal(SignalKind::interrupt()).ok().zip(signal(SignalKind::terminate()).ok());
        Cause { signals, failures }
    }

    /// Waits for a reason to stop: `None` for a signal, else the error.
    async fn next(&mut self) -> Option<BridgeError> {
        let Cause { signals, failures } = self;
        let signalled = async {
            match signals {
                Some((interrupt, terminate)) => tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = signalled => None,
            Some(error) = failures.recv() => Some(error),
        }
    }

    /// Runs `step` unless a reason to stop comes first: `Ok(None)` for a signal.
    ///
    /// # Errors
    ///
    /// The step's error, or the one a task reported meanwhile.
    async fn before<T>(
        &mut self,
        step: impl Future<Output = Result<T, BridgeError>>,
    ) -> Result<Option<T>, BridgeError> {
        tokio::select! {
            result = step => result.map(Some),
            failure = self.next() => failure.map_or(Ok(None), Err),
        }
    }
}

/// A running bridge: its settings and counters, its NATS connection, the stop signal, and its
/// tasks in the groups they stop in.
struct Bridge {
    config: Arc<Config>,
    /// When it started, in nanoseconds since the Unix epoch.
    started_ns: u64,
    metrics: Arc<Metrics>,
    nats: Nats,
    fatal: Fatal,
    stop: Stop,
    shutdown: Shutdown,
    /// The export's reader: stops reading at the signal and hands over what it read, within
    /// [`READ_WITHIN`], or is aborted (its queue to the JetStream publisher closes with it).
    readers: Tasks,
    /// The execution export's JetStream publisher: ends once the reader is gone and JetStream
    /// has stored what it holds, within [`STORE_WITHIN`].
    publishers: Tasks,
    /// The import: its NATS tasks end at the signal, then the thread writing into the relay
    /// writes what it holds, within [`WRITE_WITHIN`].
    importers: Tasks,
    /// The rest, which ends at the signal: the metrics endpoint, the check for another bridge,
    /// the stats lines, the `max_payload` check, the acknowledgements.
    rest: Tasks,
}

impl Bridge {
    /// Connects to NATS (in the background: it returns at once) as `config` says.
    async fn connect(config: Arc<Config>, fatal: Fatal) -> Result<Bridge, BridgeError> {
        let started_ns = metrics::now_ns();
        let metrics = Arc::new(Metrics::new(started_ns, config.max_age));
        let nats = Nats::connect(&config, &metrics, &fatal).await?;
        let (stop, shutdown) = shutdown::channel();
        let (readers, publishers, importers, rest) = (Tasks::new(), Tasks::new(), Tasks::new(), Tasks::new());
        Ok(Bridge {
            config,
            started_ns,
            metrics,
            nats,
            fatal,
            stop,
            shutdown,
            readers,
            publishers,
            importers,
            rest,
        })
    }

    /// Serves the metrics on `--metrics-addr`, if given.
    async fn serve_metrics(&mut self) -> Result<(), BridgeError> {
        let Some(addr) = self.config.metrics_addr else { return Ok(()) };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| BridgeError::MetricsBind { addr, source })?;
        // The port taken, when --metrics-addr asked for port 0.
        let bound = listener.local_addr().map_err(|source| BridgeError::MetricsAddress { addr, source })?;
        let collector = metrics::BridgeCollector::new(
            Arc::clone(&self.metrics),
            &self.config.node,
            self.config.domain.relay(),
        );
        let exposition = Arc::new(torq::metrics::Exposition::new(collector));
        self.rest.spawn(self.shutdown.clone().until_stopped(metrics_http::serve(listener, exposition)));
        info!("metrics on http://{bound}/metrics");
        Ok(())
    }

    /// Waits for NATS, then until no other bridge of this node and domain runs (see
    /// [`presence`]).
    fn claim(&mut self) -> impl Future<Output = Result<(), BridgeError>> + '_ {
        let me = presence::Identity::of_this_process(self.started_ns);
        let (client, fatal, shutdown) = (self.nats.client.clone(), self.fatal.clone(), self.shutdown.clone());
        presence::claim(client, &self.config, me, fatal, shutdown, &mut self.rest)
    }

    /// Starts the export: the reader, and for execution the publisher to this node's stream
    /// (made already).
    fn start_export(&mut self, filters: Vec<torq::protocol::Filter>) {
        let config = &self.config;
        let route = if config.domain == Domain::Execution {
            let (sender, receiver) = mpsc::channel(config.queue);
            let (js, metrics) = (self.nats.jetstream.clone(), Arc::clone(&self.metrics));
            self.publishers.spawn(export::publish_jetstream(js, receiver, metrics, config.queue.min(4096)));
            export::Route::JetStream(sender)
        } else {
            export::Route::Core(self.nats.client.clone())
        };
        let (metrics, shutdown, fatal) =
            (Arc::clone(&self.metrics), self.shutdown.clone(), self.fatal.clone());
        self.readers.spawn(export::export(Arc::clone(config), filters, metrics, route, shutdown, fatal));
        info!("exporting {} from {} as node {}", config.domain.token(), config.socket.display(), config.node);
    }

    /// Starts the import of `import`'s nodes, and the check of the server's `max_payload`.
    async fn start_import(&mut self, import: &Import) -> Result<(), BridgeError> {
        let nodes: Vec<Option<String>> = match import {
            Import::All => vec![None],
            Import::Nodes(nodes) => nodes.iter().cloned().map(Some).collect(),
        };
        if self.config.domain == Domain::Execution {
            self.start_execution_import(nodes)?;
        } else {
            self.start_core_import(nodes).await?;
        }
        let config = &self.config;
        info!("importing {} into {} as node {}", config.domain.token(), config.socket.display(), config.node);
        let check = check_max_payload(self.nats.client.clone(), Arc::clone(config));
        self.rest.spawn(self.shutdown.clone().until_stopped(check));
        Ok(())
    }

    /// Execution: a task per node's stream (or one for them all) hands frames to the thread
    /// that writes them into the relay, which hands the acknowledgements to a task of their own.
    fn start_execution_import(&mut self, nodes: Vec<Option<String>>) -> Result<(), BridgeError> {
        let (sender, receiver) = mpsc::channel(self.config.queue);
        let (ack_sender, ack_receiver) = mpsc::unbounded_channel();
        import::spawn_writer(&self.config, Arc::clone(&self.metrics), receiver, ack_sender, &self.importers)
            .map_err(BridgeError::ImportThread)?;
        self.rest.spawn(self.shutdown.clone().until_stopped(import::acknowledge(ack_receiver)));
        let importer = import::Importer {
            js: self.nats.jetstream.clone(),
            config: Arc::clone(&self.config),
            metrics: Arc::clone(&self.metrics),
            frames: sender,
            fatal: self.fatal.clone(),
            shutdown: self.shutdown.clone(),
        };
        for node in nodes {
            match node {
                None => self.importers.spawn(importer.clone().all()),
                Some(node) => self.importers.spawn(importer.clone().node(node)),
            }
        }
        Ok(())
    }

    /// Market data and signals: a core subscription per node (or one for them all), read by
    /// the thread that writes into the relay.
    async fn start_core_import(&mut self, nodes: Vec<Option<String>>) -> Result<(), BridgeError> {
        let mut subscriptions = Vec::new();
        for node in nodes {
            let subject = subject::import_subject(node.as_deref(), self.config.domain);
            let subscription = self
                .nats
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|source| BridgeError::Subscribe { subject: subject.clone(), source })?;
            info!("import: subscribed to {subject}");
            subscriptions.push(subscription);
        }
        let (metrics, shutdown) = (Arc::clone(&self.metrics), self.shutdown.clone());
        import::spawn_core(&self.config, metrics, subscriptions, shutdown, &self.importers)
            .map_err(BridgeError::ImportThread)
    }

    /// Logs the stats line every `--metrics-interval` (unless 0).
    fn log_stats(&mut self) {
        if self.config.metrics_interval.is_zero() {
            return;
        }
        let (metrics, every) = (Arc::clone(&self.metrics), self.config.metrics_interval);
        let lines = async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                info!("{}", metrics.stats_line());
            }
        };
        self.rest.spawn(self.shutdown.clone().until_stopped(lines));
    }

    /// Gives the stop signal, then waits for each group of tasks with its bound, then for
    /// NATS to take what it was handed (see [`Nats::flush_at_stop`]).
    async fn stop(self) {
        info!("stopping");
        let Bridge { metrics, nats, stop, readers, publishers, importers, rest, .. } = self;
        // The check for another bridge stops answering at once, so that a bridge started to
        // replace this one runs while this one stops.
        stop.now();
        // A reader handing over what it read to a NATS server that does not read, or a writer
        // on a relay that pauses it, is left behind. A reader still waiting for its relay ends
        // at once (it read nothing).
        if let Err(late) = readers.finish(READ_WITHIN).await {
            late.abort();
            warn!("stopped with frames read from the relay not yet handed to NATS");
        }
        if publishers.finish(STORE_WITHIN).await.is_err() {
            warn!("stopped with execution frames not yet stored by JetStream");
        }
        let _ = importers.finish(WRITE_WITHIN).await;
        let _ = rest.finish(REST_WITHIN).await;
        nats.flush_at_stop(&metrics).await;
        info!("{}", metrics.stats_line());
    }
}

/// Once connected, says when what the NATS server lets through could make the import hold
/// more than this host's memory (see [`max_payload_warning`]).
async fn check_max_payload(client: async_nats::Client, config: Arc<Config>) {
    while client.connection_state() != async_nats::connection::State::Connected {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let max_payload = client.server_info().max_payload;
    if let Some(warning) = max_payload_warning(max_payload, &config, &host_memory()) {
        warn!("{warning}");
    }
}

/// What the import may be made to hold before it is worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Memory {
    bytes: u64,
    /// How the bound was found, for the warning.
    what: String,
}

/// This host's memory (`MemTotal` of /proc/meminfo), or 1 GiB where it cannot be read.
fn host_memory() -> Memory {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    match total_kib {
        Some(kib) => Memory { bytes: kib * 1024, what: format!("this host's memory ({})", mib(kib * 1024)) },
        None => Memory { bytes: 1 << 30, what: "1 GiB (this host's memory is unknown)".into() },
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// A warning when the NATS server's `max_payload` lets anyone who may publish on NATS make the
/// import hold more than `memory`: only an importing bridge holds messages (`--queue` of them
/// per core subscription, one per `--import` node or one for `all`; `--queue` in all for
/// execution), each as large as the server allows, so a `max_payload` above the relay's frames
/// (`--max-message-size`) is worth acting on only when that product is too much. It says what
/// to set: the server's `max_payload` to the frames' size, or a `--queue` that fits.
fn max_payload_warning(max_payload: usize, config: &Config, memory: &Memory) -> Option<String> {
    let import = config.import.as_ref()?;
    if max_payload <= config.max_message_size {
        return None;
    }
    let subscriptions = match (config.domain, import) {
        (Domain::Execution, _) | (_, Import::All) => 1,
        (_, Import::Nodes(nodes)) => nodes.len().max(1),
    };
    let held = |payload: usize| (config.queue as u64) * (payload as u64) * (subscriptions as u64);
    let worst = held(max_payload);
    if worst <= memory.bytes {
        return None;
    }
    let per = if subscriptions == 1 { String::new() } else { format!(" × {subscriptions} subscriptions") };
    let fits = memory.bytes / (max_payload as u64 * subscriptions as u64);
    let fix = if held(config.max_message_size) <= memory.bytes {
        format!(
            "set `max_payload: {}` in the NATS server's configuration (the relay's frames are at most \
             --max-message-size {} bytes), or lower --queue to {fits} or less",
            config.max_message_size, config.max_message_size
        )
    } else {
        format!("lower --queue to {fits} or less")
    };
    Some(format!(
        "anyone who may publish on NATS can make this importing bridge hold {} (--queue {} messages{per} × the \
         server's max_payload of {max_payload} bytes), more than {}: {fix}",
        mib(worst),
        config.queue,
        memory.what
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_max_payload_is_named_only_when_it_lets_the_import_hold_too_much() {
        let config = |extra: &[&str]| {
            let base = ["torq-bridge", "--socket", "/r.sock", "--domain", "market-data", "--node", "b"];
            Args::parse_from(base.iter().chain(extra)).resolve().unwrap()
        };
        let gib = |n: u64| Memory { bytes: n << 30, what: format!("{n} GiB") };
        let importing = config(&["--import", "a", "--max-message-size", "131072", "--queue", "1024"]);
        // Debian's default max_payload (1 MiB) × 1024 messages = 1 GiB: within 2 GiB, said
        // nothing; beyond half a GiB, said with the numbers and both fixes.
        assert_eq!(max_payload_warning(1 << 20, &importing, &gib(2)), None);
        let half = Memory { bytes: 512 << 20, what: "512 MiB".into() };
        let warning = max_payload_warning(1 << 20, &importing, &half).expect("1 GiB is over 512 MiB");
        assert!(warning.contains("hold 1024 MiB") && warning.contains("more than 512 MiB"), "{warning}");
        assert!(warning.contains("`max_payload: 131072`"), "{warning}");
        assert!(warning.contains("lower --queue to 512 or less"), "{warning}");
        // Frames no larger than the relay's: nothing to act on, whatever the memory.
        assert_eq!(max_payload_warning(131_072, &importing, &half), None);
        assert_eq!(max_payload_warning(4096, &importing, &half), None);
        // An export-only bridge holds nothing.
        let exporting = config(&["--export", "--queue", "65536"]);
        assert_eq!(max_payload_warning(64 << 20, &exporting, &half), None);
        // Two nodes: two subscriptions of --queue each.
        let two = config(&["--import", "a", "--import", "c", "--queue", "1024"]);
        let warning = max_payload_warning(1 << 20, &two, &gib(1)).expect("2 GiB is over 1 GiB");
        assert!(warning.contains("hold 2048 MiB") && warning.contains("× 2 subscriptions"), "{warning}");
        // When even frames of the relay's size are too many, only --queue helps.
        let huge = config(&["--import", "a", "--queue", "65536"]);
        let warning = max_payload_warning(1 << 20, &huge, &gib(4)).expect("64 GiB is over 4 GiB");
        assert!(warning.contains("hold 65536 MiB") && !warning.contains("`max_payload"), "{warning}");
        assert!(warning.contains("lower --queue to 4096 or less"), "{warning}");
    }

    #[test]
    fn the_host_memory_is_read() {
        let memory = host_memory();
        // Linux, where the bridge runs, has /proc/meminfo: the fallback is not taken.
        assert!(memory.bytes >= 64 << 20, "{memory:?}");
        assert!(memory.what.starts_with("this host's memory ("), "{memory:?}");
    }
}
