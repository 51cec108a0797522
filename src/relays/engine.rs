//! The generic engine: binds the sockets, starts the reactors (pinned when asked), the audit
//! writers, the stats line and the signal watcher, and runs until SIGINT/SIGTERM.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_channel::bounded;
use log::{debug, error, info, warn};
use mio::{Poll, Waker};

use crate::reactor::socket::{self, SocketError};
use crate::reactor::{Reactor, RelayShared, Shared};

use super::audit::Audit;
use super::{ConfigError, Cores, EngineConfig, Metrics, RelayConfig, RelayLogic};

/// Messages in flight to one reactor, at most.
const INBOX: usize = 4096;

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
    /// The audit file cannot be opened.
    #[error("cannot open the audit file {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// A thread, poll or signal handler could not be set up.
    #[error("cannot start the relay: {0}")]
    Io(#[from] io::Error),
}

/// One domain's relay: the engine with the defaults of `L`.
#[derive(Debug)]
pub struct Relay<L: RelayLogic> {
    engine: EngineConfig,
    config: RelayConfig,
    logic: PhantomData<L>,
}

impl<L: RelayLogic> Relay<L> {
    /// A relay with these settings (start from [`RelayConfig::new`]).
    pub fn new(engine: EngineConfig, config: RelayConfig) -> Self {
        Relay { engine, config, logic: PhantomData }
    }

    /// Runs until SIGINT or SIGTERM; returns the exit status (0, or 3 when Execution frames
    /// were left undelivered at the flush deadline).
    ///
    /// # Errors
    ///
    /// [`StartError`] when the relay cannot start.
    pub fn run(self) -> Result<i32, StartError> {
        run(self.engine, vec![self.config])
    }
}

/// Runs one or more relays (one per domain) on one set of reactors until SIGINT or SIGTERM.
///
/// # Errors
///
/// [`StartError`] when a relay cannot start.
pub fn run(engine: EngineConfig, relays: Vec<RelayConfig>) -> Result<i32, StartError> {
    engine.validate()?;
    for relay in &relays {
        relay.validate()?;
    }
    raise_file_limit(engine.max_connections);
    // Catch SIGINT/SIGTERM before the sockets exist, so a stop is never a kill.
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let mut guards = Vec::new();
    let mut listeners = Vec::new();
    for (index, relay) in relays.iter().enumerate() {
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
    let mut audits = Vec::new();
    let mut shared_relays = Vec::new();
    for relay in relays {
        let audit = match (&relay.audit_file, relay.levels.audit) {
            (Some(path), true) => Some(
                Audit::start(path, &relay.name, relay.audit_fsync)
                    .map_err(|source| StartError::Audit { path: path.display().to_string(), source })?,
            ),
            _ => None,
        };
        let sender = audit.as_ref().map(|a| a.sender.clone());
        audits.extend(audit);
        shared_relays.push(RelayShared {
            metrics: Arc::new(Metrics::new(&relay.name)),
            config: relay,
            audit: sender,
        });
    }

    let count = engine.cores.count();
    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    let mut inboxes = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..count {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), mio::Token(usize::MAX))?));
        polls.push(poll);
        let (sender, receiver) = bounded(INBOX);
        inboxes.push(sender);
        receivers.push(receiver);
    }
    let metrics: Vec<Arc<Metrics>> = shared_relays.iter().map(|r| Arc::clone(&r.metrics)).collect();
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        relays: shared_relays,
        inboxes,
        wakers,
        connections: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        exit_status: AtomicI32::new(0),
        next_connection_id: AtomicU64::new(1),
    });

    let mut reactors = Vec::new();
    for (index, (poll, inbox)) in polls.into_iter().zip(receivers).enumerate() {
        let mut reactor = Reactor::new(index, poll, Arc::clone(&shared), inbox);
        if index == 0 {
            for (listener, relay) in listeners.drain(..) {
                reactor.listen(listener, relay)?;
            }
        }
        let core = match &engine.cores {
            Cores::Pinned(list) => Some(list[index]),
            Cores::Unpinned(_) => None,
        };
        reactors.push(std::thread::Builder::new().name(format!("reactor-{index}")).spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
            {
                warn!("reactor {index}: cannot pin to core {core}; running unpinned");
            }
            reactor.run();
        })?);
    }

    let signal_handle = signals.handle();
    let watcher = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!("signal {signal}: stopping (flush deadline {:?})", shared.engine.flush_deadline);
                shared.request_stop();
            }
        })?
    };
    let (stats_stop, stats_stopped) = bounded::<()>(0);
    let stats = engine.metrics_interval.map(|interval| {
        let metrics = metrics.clone();
        std::thread::spawn(move || {
            while stats_stopped.recv_timeout(interval).is_err_and(|e| e.is_timeout()) {
                for m in &metrics {
                    info!("{}", m.stats_line());
                }
            }
        })
    });
    if let Some(addr) = engine.metrics_addr {
        serve_metrics(addr, metrics.clone(), Arc::clone(&shared))?;
    }

    // Join in the reverse order of spawn.
    for reactor in reactors.into_iter().rev() {
        if reactor.join().is_err() {
            error!("a reactor panicked");
            shared.exit_status.store(1, Relaxed);
        }
    }
    drop(stats_stop);
    if let Some(stats) = stats {
        let _ = stats.join();
    }
    signal_handle.close();
    let _ = watcher.join();
    for m in &metrics {
        info!("{}", m.stats_line());
    }
    let status = shared.exit_status.load(Relaxed);
    drop(shared);
    for audit in audits {
        if let Err(e) = audit.finish() {
            error!("audit: {e}");
        }
    }
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

/// Serves Prometheus text at `/metrics` on a loopback address (tiny_http, on its own thread);
/// any other path is a 404 naming the right one.
fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Vec<Arc<Metrics>>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(io::Error::other)?;
    info!("metrics on http://{addr}/metrics");
    let content_type = tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
        .map_err(|()| io::Error::other("bad Content-Type header"))?;
    std::thread::Builder::new().name("metrics-http".into()).spawn(move || {
        while !shared.stop.load(Relaxed) {
            let request = match server.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(request)) => request,
                Ok(None) => continue,
                Err(e) => {
                    warn!("metrics endpoint {addr} stopped: {e}");
                    return;
                }
            };
            let path = request.url().split('?').next().unwrap_or_default();
            let response = if path == "/metrics" {
                let mut body = String::new();
                for m in &metrics {
                    m.prometheus(&mut body);
                }
                tiny_http::Response::from_string(body).with_header(content_type.clone())
            } else {
                tiny_http::Response::from_string(format!("no {path} here: the metrics are at /metrics\n"))
                    .with_status_code(404)
            };
            if let Err(e) = request.respond(response) {
                debug!("metrics endpoint {addr}: {e}");
            }
        }
    })?;
    Ok(())
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
