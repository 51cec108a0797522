//! Process start-up: the generic engine [`Relay<L>`](Relay) binds the sockets (safely, see
//! [`socket`]), raises the open-file limit, starts the audit writers, the reactors (pinned when
//! asked), the stats line, the metrics endpoint and the signal watcher, runs until SIGINT or
//! SIGTERM, and joins them in the reverse order.

mod audit;
mod memory;
mod metrics_http;
pub mod socket;

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use log::{debug, error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::reactor::Reactors;
use crate::relays::{
    AnyLogic, ConfigError, Cores, EngineConfig, Idle, Metrics, RelayConfig, RelayContext, RelayLogic,
};
use crate::shm::LogWriter;

use audit::Syncer;
use memory::Trimmer;
use socket::SocketError;

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket path cannot be used.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The audit file cannot be opened or is locked by another relay.
    #[error("cannot use the audit file {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The metrics address cannot be bound.
    #[error(
        "cannot serve metrics on {addr}: {source} (choose another --metrics-addr, or port 0 for any free one)"
    )]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// A thread, poll or signal handler could not be set up.
    #[error("cannot start the relay: {0}")]
    Io(#[from] io::Error),
}

/// One domain's relay: the engine running logic `L`.
#[derive(Debug)]
pub struct Relay<L: RelayLogic> {
    engine: EngineConfig,
    config: RelayConfig,
    logic: L,
}

impl<L: RelayLogic + Default> Relay<L> {
    /// A relay of `L`'s default logic with these settings (start from `L`'s
    /// [`RelayLogic::defaults`]).
    pub fn new(engine: EngineConfig, config: RelayConfig) -> Self {
        Relay::with_logic(L::default(), engine, config)
    }
}

impl<L: RelayLogic> Relay<L> {
    /// A relay of `logic` with these settings.
    pub fn with_logic(logic: L, engine: EngineConfig, config: RelayConfig) -> Self {
        Relay { engine, config, logic }
    }

    /// Runs until SIGINT or SIGTERM; returns the exit status (0, or 3 when frames of a
    /// lossless relay were left undelivered at the flush deadline).
    ///
    /// # Errors
    ///
    /// [`StartError`] when the relay cannot start, among them a configuration of another
    /// domain than `L`'s.
    pub fn run(self) -> Result<i32, StartError> {
        run(self.engine, vec![(self.logic, self.config)])
    }
}

/// Runs relays of any of the three domains (`relay --config`, `relay_dev`) on one set of
/// reactors until SIGINT or SIGTERM.
///
/// # Errors
///
/// [`StartError`] when a relay cannot start.
pub fn run_any(engine: EngineConfig, relays: Vec<RelayConfig>) -> Result<i32, StartError> {
    let mut logics = Vec::new();
    for config in relays {
        let logic = AnyLogic::for_domain(config.domain).ok_or_else(|| {
            ConfigError::invalid("domain", config.domain, "market data, signal or execution")
        })?;
        logics.push((logic, config));
    }
    run(engine, logics)
}

/// Runs one or more relays (one per domain) on one set of reactors until SIGINT or SIGTERM.
///
/// # Errors
///
/// [`StartError`] when a relay cannot start.
pub fn run<L: RelayLogic>(engine: EngineConfig, relays: Vec<(L, RelayConfig)>) -> Result<i32, StartError> {
    engine.validate()?;
    // Before any socket or file: reactors asked to pin never run unpinned.
    engine.check_cores_here()?;
    for (logic, relay) in &relays {
        relay.validate()?;
        if relay.domain != logic.domain() {
            return Err(ConfigError::invalid(
                "domain",
                relay.domain,
                format!("the {} relay serves {} only", logic.defaults().name, logic.domain()),
            )
            .into());
        }
    }
    raise_file_limit(engine.max_connections);
    if engine.idle != Idle::Block && matches!(engine.cores, Cores::Unpinned(_)) {
        warn!(
            "--idle {}: the reactors are not pinned, so a spinning reactor takes its core from whatever \
             else runs there; pin them with --cores (e.g. --cores 1)",
            engine.idle
        );
    }
    // The audit files are opened (and locked) before any socket exists: a relay that cannot
    // keep its audit trail never shows clients a socket.
    let mut audit_files = Vec::new();
    let mut to_sync = Vec::new();
    for (logic, relay) in &relays {
        // The socket's directory first: the audit file often lives there.
        socket::prepare_parent(&relay.socket, relay.parent_mode)?;
        let file = match (&relay.audit_file, logic.audits(&relay.levels)) {
            (Some(path), true) => Some(Arc::new(
                audit::open(path)
                    .map_err(|source| StartError::Audit { path: path.display().to_string(), source })?,
            )),
            _ => None,
        };
        to_sync.extend(file.as_ref().map(|f| (Arc::clone(f), relay.audit_fsync)));
        audit_files.push(file);
    }
    // Catch SIGINT, SIGTERM and SIGHUP before the sockets exist, so a stop is never a kill.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let mut guards = Vec::new();
    let mut listeners = Vec::new();
    for (index, (_, relay)) in relays.iter().enumerate() {
        let (listener, guard) =
            socket::bind(&relay.socket, relay.socket_mode, relay.parent_mode)?.into_parts();
        info!(
            "{}: listening on {} (policy {}, queue {} B, max message {} B)",
            relay.name,
            relay.socket.display(),
            relay.policy,
            relay.queue_bytes,
            relay.max_message_size
        );
        listeners.push((listener, index));
        guards.push(guard);
    }
    if let Some(size) = engine.socket_buffer {
        info!(
            "socket buffers: {size} B asked (SO_SNDBUF, SO_RCVBUF) for every connection; read budget {} B",
            engine.read_budget
        );
    }
    let logs: Vec<Option<LogWriter>> =
        relays.iter().map(|(logic, relay)| broadcast_log(logic, relay)).collect();
    let mut contexts: Vec<_> =
        relays.into_iter().map(|(logic, relay)| RelayContext::new(logic, relay)).collect();
    for (context, log) in contexts.iter_mut().zip(&logs) {
        context.shm_bytes = log.as_ref().map_or(0, |log| log.len() as u64);
    }
    let syncer = Syncer::start(to_sync)?;
    let metrics: Vec<Arc<Metrics>> = contexts.iter().map(|r| Arc::clone(&r.metrics)).collect();
    let reactors = Reactors::new(&engine, contexts.into(), audit_files, logs)?;
    let shared = reactors.shared();
    // Bound before any reactor runs, so a port in use is a start error, not a half-started relay.
    let metrics_http = match engine.metrics_addr {
        Some(addr) => Some(
            metrics_http::serve(addr, metrics.clone(), Arc::clone(&shared))
                .map_err(|source| StartError::Metrics { addr, source })?
                .1,
        ),
        None => None,
    };
    let mut threads = Vec::new();
    for (index, reactor) in reactors.into_iter().enumerate() {
        let mut reactor = reactor;
        if index == 0 {
            for (listener, relay) in listeners.drain(..) {
                reactor.listen(listener, relay)?;
            }
        }
        let core = match &engine.cores {
            Cores::Pinned(list) => Some(list[index]),
            Cores::Unpinned(_) => None,
        };
        let shared = Arc::clone(&shared);
        threads.push(std::thread::Builder::new().name(format!("reactor-{index}")).spawn(move || {
            // The cores were checked at start-up; one taken away since (a cpuset changed, a
            // core went offline) stops the relay rather than leave it running unpinned.
            if let Some(core) = core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
            {
                error!(
                    "reactor {index}: cannot pin to core {core}, which this process may no longer run \
                     on; stopping (exit status 1)"
                );
                shared.fail(1);
                shared.request_stop();
            }
            reactor.run();
        })?);
    }

    let signal_handle = signals.handle();
    let watcher = {
        let shared = Arc::clone(&shared);
        let deadline = engine.flush_deadline;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!("signal {signal}: stopping (flush deadline {deadline:?})");
                shared.request_stop();
            }
        })?
    };
    // Housekeeping: the stats line every `metrics_interval`, and memory given back after a
    // burst of queued bytes.
    let (housekeeping_stop, stopped) = bounded::<()>(0);
    let housekeeping = {
        let metrics = metrics.clone();
        let interval = engine.metrics_interval;
        std::thread::Builder::new().name("housekeeping".into()).spawn(move || {
            let mut trimmer = Trimmer::default();
            let mut last_stats = Instant::now();
            while stopped.recv_timeout(Duration::from_millis(500)).is_err_and(|e| e.is_timeout()) {
                let queued: u64 = metrics.iter().map(|m| m.queued_bytes.load(Relaxed)).sum();
                if trimmer.observe(queued as usize) {
                    debug!("memory of a burst of queued frames given back to the system");
                }
                if let Some(interval) = interval
                    && last_stats.elapsed() >= interval
                {
                    last_stats = Instant::now();
                    for m in &metrics {
                        info!("{}", m.stats_line());
                    }
                }
            }
        })?
    };

    // Join in the reverse order of spawn.
    for thread in threads.into_iter().rev() {
        if thread.join().is_err() {
            error!("a reactor panicked");
            shared.fail(1);
        }
    }
    drop(housekeeping_stop);
    let _ = housekeeping.join();
    signal_handle.close();
    let _ = watcher.join();
    if let Some(thread) = metrics_http {
        let _ = thread.join();
    }
    for m in &metrics {
        info!("{}", m.stats_line());
    }
    let status = shared.exit_status();
    drop(shared);
    syncer.finish();
    drop(guards); // removes our socket files
    Ok(status)
}

/// Raises the soft open-file limit to the hard one, so `max_connections` connections (plus the
/// listeners, pollers and files) can be open; warns when even the hard limit is too low.
fn raise_file_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum
        && setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, ..limit }).is_err()
    {
        warn!("cannot raise the open-file limit from {:?}", limit.current);
    }
    let now = getrlimit(Resource::Nofile).current;
    if let Some(files) = now
        && files < max_connections as u64 + 64
    {
        warn!(
            "the open-file limit ({files}) is below max_connections ({max_connections}) + 64: raise `ulimit -n`"
        );
    }
}

/// The process exit code of a relay run: its status, 2 for a configuration error, 1 when it
/// could not start. Errors are printed to stderr.
pub fn exit_code(result: Result<i32, StartError>) -> std::process::ExitCode {
    match result {
        Ok(status) => std::process::ExitCode::from(status.clamp(0, 255) as u8),
        Err(StartError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The broadcast log of a relay that offers shared-memory delivery (PROTOCOL.md §7): none when
/// `shm` is off or the domain offers none; when it cannot be made, the error is logged and
/// subscribers that ask are answered `shm=0` (they receive over their sockets).
fn broadcast_log<L: RelayLogic>(logic: &L, relay: &RelayConfig) -> Option<LogWriter> {
    if relay.shm_bytes == 0 || !logic.offers_shm() {
        return None;
    }
    match LogWriter::create(&format!("torq-{}", relay.name), relay.shm_bytes, relay.max_message_size) {
        Ok(log) => {
            info!(
                "{}: shared-memory delivery: a broadcast log of {} B ({} B ring)",
                relay.name,
                log.len(),
                relay.shm_bytes
            );
            Some(log)
        }
        Err(e) => {
            error!("{}: no shared-memory delivery ({e}): subscribers that ask for it get shm=0", relay.name);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relays::{ExecutionLogic, MarketDataLogic};

    #[test]
    fn a_relay_runs_its_own_domain_only() {
        let market_data = RelayConfig::new(&MarketDataLogic.defaults());
        let refused = Relay::<ExecutionLogic>::new(EngineConfig::default(), market_data).run();
        match refused {
            Err(StartError::Config(ConfigError::Invalid { setting, .. })) => assert_eq!(setting, "domain"),
            other => panic!("expected a configuration error naming the domain, got {other:?}"),
        }
    }

    /// `run` itself refuses reactors pinned to a core this process may not run on (for
    /// callers of the library that did not go through `cli`), before it makes any directory,
    /// file or socket.
    #[test]
    fn a_relay_pinned_to_a_core_it_may_not_run_on_does_not_start() {
        let beyond = Cores::usable().unwrap().last().unwrap() + 1;
        let engine = EngineConfig { cores: Cores::Pinned(vec![beyond]), ..EngineConfig::default() };
        let dir = std::env::temp_dir().join(format!("torq-pin-{}", std::process::id()));
        let mut config = RelayConfig::new(&MarketDataLogic.defaults());
        config.socket = dir.join("relay.sock");
        match Relay::<MarketDataLogic>::new(engine, config).run() {
            Err(StartError::Config(ConfigError::Invalid { setting, value, .. })) => {
                assert_eq!((setting.as_str(), value), ("cores", beyond.to_string()));
            }
            other => panic!("expected a configuration error naming the cores, got {other:?}"),
        }
        assert!(!dir.exists(), "nothing is made before the check");
    }
}
