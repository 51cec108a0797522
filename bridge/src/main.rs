//! `torq-bridge`: carries one relay's frames to and from the relays of other hosts over NATS.
//! See `torq-bridge --help` and the README's "Across hosts".

mod audit;
mod config;
mod export;
mod import;
mod metrics;
mod metrics_http;
mod presence;
mod state;
mod subject;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use log::{error, info, warn};
use tokio::sync::mpsc;

use config::{Args, Config, Domain, Import, Login, Tls};
use metrics::{Metrics, add};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = torq::cli::init_logging(config.log_level.filter(), false, None) {
        eprintln!("error: cannot start logging: {e}");
        return ExitCode::from(1);
    }
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the bridge's runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(Arc::new(config)));
    // Threads left behind by the bounded stop (a reader or writer still waiting for its relay)
    // must not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs until SIGINT or SIGTERM.
async fn run(config: Arc<Config>) -> Result<(), String> {
    let started_ns = metrics::now_ns();
    let metrics = Arc::new(Metrics::new(started_ns, config.max_age));
    let urls = config.nats.join(",");
    let servers = config
        .nats
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>().map_err(|e| format!("--nats {url:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // What stops the bridge with an error: NATS refusing its credentials at the first
    // connection, an export reading a relay of another domain, an import cursor held by another
    // bridge, another bridge of this node and domain.
    let (fatal, mut fatal_errors) = mpsc::unbounded_channel::<String>();
    info!("NATS: logging in with {}{}", config.login.describe(), tls_description(&config.tls));
    let events = Arc::clone(&metrics);
    // What the export had handed to the NATS client when the connection was last lost: the
    // stop waits for a NATS out of reach only when more was handed to it since.
    let handed_when_lost = Arc::new(AtomicU64::new(0));
    let lost_at = Arc::clone(&handed_when_lost);
    let connected_once = Arc::new(AtomicBool::new(false));
    // Connection errors repeat at every retry: one warning per 10 s, the rest at debug.
    let last_warning = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    // A refusal of the server's (credentials, permissions) is an error: once per outage for the
    // credentials, once per 10 s for permissions.
    let refused_since_connected = Arc::new(AtomicBool::new(false));
    let last_violation = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    // The server's last refusal of a publish, for the export's set-up to tell why it fails.
    let violation = Arc::new(std::sync::Mutex::new(None::<String>));
    let violated = Arc::clone(&violation);
    let (named, login, to_stop) = (urls.clone(), config.login.describe(), fatal.clone());
    let node_name = config.node.clone();
    let tls_required = config.tls.required;
    let client = login_options(&config)?
        .name(format!("torq-bridge {} {}", config.node, config.domain.token()))
        .retry_on_initial_connect()
        .client_capacity(config.queue)
        .subscription_capacity(config.queue)
        .max_reconnects(None)
        .event_callback(move |event| {
            let (metrics, connected_once) = (Arc::clone(&events), Arc::clone(&connected_once));
            let (last_warning, urls) = (Arc::clone(&last_warning), named.clone());
            let (refused, last_violation) = (Arc::clone(&refused_since_connected), Arc::clone(&last_violation));
            let (login, to_stop, violated) = (login.clone(), to_stop.clone(), Arc::clone(&violated));
            let (node_name, lost_at) = (node_name.clone(), Arc::clone(&lost_at));
            async move {
                match event {
                    async_nats::Event::Connected => {
                        refused.store(false, Ordering::Relaxed);
                        if connected_once.swap(true, Ordering::Relaxed) {
                            add(&metrics.nats_reconnects, 1);
                            info!("connected to NATS again");
                        } else {
                            info!("connected to NATS");
                        }
                    }
                    async_nats::Event::Disconnected => {
                        lost_at.store(metrics.exported_out.load(Ordering::Relaxed), Ordering::Relaxed);
                        warn!("lost the connection to NATS; reconnecting");
                    }
                    async_nats::Event::ClientError(async_nats::ClientError::Other(reason)) if refusal(&reason) => {
                        if !connected_once.load(Ordering::Relaxed) {
                            // Nothing was done yet, and retrying cannot help until someone
                            // changes the credentials or the server: stop, saying so.
                            let _ = to_stop.send(format!(
                                "NATS at {urls} refused to let this bridge in ({reason}) with {login}: give the \
                                 credentials the server's configuration names for this node (its users or \
                                 authorization block)"
                            ));
                        } else if !refused.swap(true, Ordering::Relaxed) {
                            error!(
                                "NATS at {urls} refused to let this bridge in again ({reason}) with {login}; \
                                 trying again with back-off until the credentials or the server's configuration \
                                 are fixed"
                            );
                        } else {
                            log::debug!("NATS refused the credentials again ({reason})");
                        }
                    }
                    async_nats::Event::ServerError(async_nats::ServerError::Other(text))
                        if text.to_lowercase().contains("permissions violation") =>
                    {
                        *violated.lock().expect("violation lock") = Some(text.clone());
                        // Refused its own node's presence subject: these are another node's
                        // credentials, or the server forgot torq-bridge.<node>.>. Nothing was
                        // exported or imported yet; no retry changes it.
                        if text.contains(&format!("\"torq-bridge.{}.", node_name)) {
                            let _ = to_stop.send(format!(
                                "NATS refused {login} the subject of this node's bridges ({text}): the credentials \
                                 are another node's (--node {node_name}?), or the server's configuration must let \
                                 node {node_name}'s user publish and subscribe to torq-bridge.{node_name}.> (see \
                                 config/nats-server.conf)"
                            ));
                        }
                        let text = format!(
                            "NATS refused: {text}; the server's configuration does not let {login} do that (a \
                             node may publish only under its own subjects, torq.<node>.>: see \
                             config/nats-server.conf)"
                        );
                        let mut last = last_violation.lock().expect("violation lock");
                        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                            *last = Some(std::time::Instant::now());
                            error!("{text}");
                        } else {
                            log::debug!("{text}");
                        }
                    }
                    async_nats::Event::ClientError(_) | async_nats::Event::SlowConsumer(_) => {
                        let mut last = last_warning.lock().expect("warning lock");
                        let text = match event {
                            async_nats::Event::SlowConsumer(_) => "the NATS client dropped messages for the import: the \
                                 local relay takes frames more slowly than they come (lost_total counts them)"
                                .to_string(),
                            // The NATS client names no more than the kind of error; a TLS
                            // handshake that fails is an "IO error" to it.
                            other if tls_required => format!(
                                "cannot reach NATS at {urls} over TLS ({other}); trying again (is nats-server \
                                 running there? does --tls-ca hold the CA that signed its certificate, and does \
                                 that certificate name the URL's host? does the server ask for a client \
                                 certificate, --tls-cert and --tls-key?)"
                            ),
                            other => format!("cannot reach NATS at {urls} ({other}); trying again (is nats-server running there?)"),
                        };
                        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                            *last = Some(std::time::Instant::now());
                            warn!("{text}");
                        } else {
                            log::debug!("{text}");
                        }
                    }
                    // The bridge's own stop.
                    async_nats::Event::Closed => log::debug!("NATS: {event}"),
                    other => warn!("NATS: {other}"),
                }
            }
        })
        .connect(servers)
        .await
        .map_err(|e| format!("cannot use the NATS server(s) {urls}: {e}"))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(2 * config.queue.min(4096))
        .backpressure_on_inflight(true)
        .build(client.clone());

    let (stop, stopping) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "cannot serve metrics on {addr}: {e} (choose another --metrics-addr, or port 0 for any free one)"
            )
        })?;
        // The port taken, when --metrics asked for port 0.
        let bound = listener.local_addr().map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let collector =
            metrics::BridgeCollector::new(Arc::clone(&metrics), &config.node, config.domain.relay());
        tokio::spawn(metrics_http::serve(listener, Arc::new(torq::metrics::Exposition::new(collector))));
        info!("metrics on http://{bound}/metrics");
    }
    // Nothing is exported or imported before NATS says that no other bridge of this node and
    // domain runs (the check waits for NATS; a signal stops the wait).
    let mut signalled = std::pin::pin!(wait_for_stop());
    let me = presence::Identity::of_this_process(started_ns);
    let presence = tokio::select! {
        claimed = presence::claim(client.clone(), &config, me, fatal.clone()) => claimed?,
        // NATS refusing the credentials, or this node's presence subject.
        Some(error) = fatal_errors.recv() => return Err(error),
        () = &mut signalled => return Ok(()),
    };
    let mut reader = None;
    let mut exporter = None;
    if let Some(filters) = &config.export {
        let route = if config.domain == Domain::Execution {
            let (sender, receiver) = mpsc::channel(config.queue);
            // Bounded retries: JetStream may still be electing a leader at start. NATS refusing
            // the credentials ends them at once.
            let ensure = async {
                let mut tries = 0;
                while let Err(e) = export::ensure_stream(&js, &config).await {
                    let stream = subject::stream_name(&config.node);
                    // Refused by the server's permissions: no retry changes that.
                    if let Some(refusal) = violation.lock().expect("violation lock").take()
                        && refusal.contains(&stream)
                    {
                        return Err(format!(
                            "NATS refused {} the stream {stream} ({refusal}): the server's configuration must \
                             let node {}'s user create it (see config/nats-server.conf), or --node or the \
                             credentials are another node's",
                            config.login.describe(),
                            config.node
                        ));
                    }
                    tries += 1;
                    if tries == 30 {
                        return Err(format!(
                            "cannot create the stream {} on {urls} within 30 s: {e} (is the server reachable, \
                             with JetStream enabled: nats-server -js? may {} create it?)",
                            subject::stream_name(&config.node),
                            config.login.describe()
                        ));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(())
            };
            tokio::select! {
                result = ensure => result?,
                Some(error) = fatal_errors.recv() => return Err(error),
                // Nothing was exported yet: nothing to wait for.
                () = &mut signalled => return Ok(()),
            }
            exporter = Some(tokio::spawn(export::publish_jetstream(
                js.clone(),
                receiver,
                Arc::clone(&metrics),
                config.queue.min(4096),
            )));
            export::Route::JetStream(sender)
        } else {
            export::Route::Core(client.clone())
        };
        reader = Some(tokio::spawn(export::export(
            Arc::clone(&config),
            filters.clone(),
            Arc::clone(&metrics),
            route,
            stopping,
            fatal.clone(),
        )));
        info!("exporting {} from {} as node {}", config.domain.token(), config.socket.display(), config.node);
    }

    let mut writer = None;
    // Ends the core import's thread, which otherwise waits for NATS messages.
    let (stop_core_import, core_import_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut importers = Vec::new();
    if let Some(import) = &config.import {
        let nodes: Vec<Option<String>> = match import {
            Import::All => vec![None],
            Import::Nodes(nodes) => nodes.iter().cloned().map(Some).collect(),
        };
        if config.domain == Domain::Execution {
            let (sender, receiver) = mpsc::channel(config.queue);
            let (ack_sender, ack_receiver) = mpsc::unbounded_channel();
            writer = Some(
                import::spawn_writer(&config, Arc::clone(&metrics), receiver, ack_sender)
                    .map_err(|e| format!("cannot start the import thread: {e}"))?,
            );
            importers.push(tokio::spawn(import::acknowledge(ack_receiver)));
            for node in nodes {
                let (config, metrics, sender) = (Arc::clone(&config), Arc::clone(&metrics), sender.clone());
                importers.push(match node {
                    None => tokio::spawn(import::import_all_jetstream(
                        js.clone(),
                        config,
                        metrics,
                        sender,
                        fatal.clone(),
                    )),
                    Some(node) => tokio::spawn(import::import_jetstream(
                        js.clone(),
                        config,
                        node,
                        metrics,
                        sender,
                        fatal.clone(),
                        None,
                    )),
                });
            }
        } else {
            let mut subscriptions = Vec::new();
            for node in nodes {
                let subject = subject::import_subject(node.as_deref(), config.domain);
                let subscription = client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
                info!("import: subscribed to {subject}");
                subscriptions.push(subscription);
            }
            writer = Some(
                import::spawn_core(&config, Arc::clone(&metrics), subscriptions, core_import_stopped)
                    .map_err(|e| format!("cannot start the import thread: {e}"))?,
            );
        }
        info!("importing {} into {} as node {}", config.domain.token(), config.socket.display(), config.node);
        tokio::spawn(check_max_payload(client.clone(), Arc::clone(&config)));
    }

    if !config.metrics_interval.is_zero() {
        let (metrics, every) = (Arc::clone(&metrics), config.metrics_interval);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                info!("{}", metrics.stats_line());
            }
        });
    }

    let failure = tokio::select! {
        () = &mut signalled => None,
        Some(error) = fatal_errors.recv() => Some(error),
    };
    info!("stopping");
    // A bridge started to replace this one need not wait for the end of its stop.
    drop(presence);
    let _ = stop.send(true);
    for task in importers {
        task.abort();
    }
    let _ = stop_core_import.send(());
    // Bounded: a reader handing over what it read to a NATS server that does not read, or a
    // writer on a relay that pauses it, is left behind. A reader still waiting for its relay
    // ends at once (it read nothing).
    if let Some(mut reader) = reader
        && tokio::time::timeout(Duration::from_secs(2), &mut reader).await.is_err()
    {
        // Its queue to the JetStream exporter closes with it.
        reader.abort();
        warn!("stopped with frames read from the relay not yet handed to NATS");
    }
    if let Some(exporter) = exporter
        && tokio::time::timeout(Duration::from_secs(5), exporter).await.is_err()
    {
        warn!("stopped with execution frames not yet stored by JetStream");
    }
    if let Some(writer) = writer {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(move || writer.join()))
                .await;
    }
    // Bounded too: a NATS server out of reach never takes what waits. Out of reach with
    // nothing handed to it since, there is nothing to wait for.
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    if !connected && metrics.exported_out.load(Ordering::Relaxed) == handed_when_lost.load(Ordering::Relaxed)
    {
        info!("NATS is out of reach; no frame was handed to it since it went");
    } else if !matches!(tokio::time::timeout(Duration::from_secs(2), client.flush()).await, Ok(Ok(()))) {
        warn!("stopped with messages for NATS not yet written (the server is out of reach)");
    }
    info!("{}", metrics.stats_line());
    failure.map_or(Ok(()), Err)
}

/// The NATS client's options for logging in and TLS.
fn login_options(config: &Config) -> Result<async_nats::ConnectOptions, String> {
    let options = async_nats::ConnectOptions::new();
    let mut options = match &config.login {
        Login::Anonymous => options,
        // Checked at start: a failure here is a file changed since.
        Login::Creds { file, creds } => options
            .credentials(creds.expose())
            .map_err(|e| format!("--nats-creds {}: not a NATS credentials file ({e})", file.display()))?,
        Login::Nkey { seed, .. } => options.nkey(seed.expose().to_string()),
        Login::User { user, password, .. } => {
            options.user_and_password(user.clone(), password.expose().to_string())
        }
        Login::Token { token, .. } => options.token(token.expose().to_string()),
    };
    if let Some(ca) = &config.tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(config.tls.required))
}

/// How the bridge's TLS is set, for the log.
fn tls_description(tls: &Tls) -> String {
    if !tls.required {
        return ", TLS if the server asks for it".into();
    }
    let mut text = ", TLS required".to_string();
    if let Some(ca) = &tls.ca {
        text += &format!(", trusting the CA in {}", ca.display());
    }
    if let Some((cert, _)) = &tls.client {
        text += &format!(", client certificate {}", cert.display());
    }
    text
}

/// Whether the NATS client's connection error is the server refusing the credentials (its
/// "authorization violation"), or the client unable to sign with them.
fn refusal(reason: &str) -> bool {
    [async_nats::ConnectErrorKind::AuthorizationViolation, async_nats::ConnectErrorKind::Authentication]
        .iter()
        .any(|kind| kind.to_string() == reason)
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
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
