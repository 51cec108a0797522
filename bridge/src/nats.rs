//! The bridge's NATS connection: logging in (credentials, TLS), what the client reports while
//! the bridge runs (connections lost and made again, refusals, permission violations), and the
//! bounded flush at the stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{ClientError, ConnectErrorKind, Event, ServerError, jetstream};
use log::{debug, error, info, warn};

use crate::config::{Config, Login, Tls};
use crate::error::{BridgeError, Fatal};
use crate::metrics::{Metrics, add};

/// The least time between two warnings (or errors) of the same kind.
const REPEAT_EVERY: Duration = Duration::from_secs(10);

/// The connection, and what its events tell the rest of the bridge.
#[derive(Debug)]
pub struct Nats {
    /// The client.
    pub client: async_nats::Client,
    /// JetStream through it.
    pub jetstream: jetstream::Context,
    /// The server's last refusal of a publish, for the export's set-up to tell why it fails.
    violation: Arc<Mutex<Option<String>>>,
    /// What the export had handed to the NATS client when the connection was last lost: the
    /// stop waits for a NATS out of reach only when more was handed to it since.
    handed_when_lost: Arc<AtomicU64>,
}

impl Nats {
    /// Connects as `config` says, retrying for ever in the background (the client is returned
    /// at once); a refusal of the credentials at the first connection, or of this node's
    /// control subject, is reported through `fatal`.
    ///
    /// # Errors
    ///
    /// A `--nats` URL the client cannot read, a credentials file changed since the start, or
    /// options the client refuses.
    pub async fn connect(
        config: &Config,
        metrics: &Arc<Metrics>,
        fatal: &Fatal,
    ) -> Result<Nats, BridgeError> {
        let urls = config.nats.join(",");
        let servers = config
            .nats
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .map_err(|source| BridgeError::NatsUrl { url: url.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        info!("NATS: logging in with {}{}", config.login.describe(), tls_description(&config.tls));
        let events = Arc::new(Events {
            metrics: Arc::clone(metrics),
            urls: urls.clone(),
            login: config.login.describe(),
            node: config.node.clone(),
            tls_required: config.tls.required,
            fatal: fatal.clone(),
            connected_once: AtomicBool::new(false),
            refused_since_connected: AtomicBool::new(false),
            last_warning: Mutex::new(None),
            last_violation: Mutex::new(None),
            violation: Arc::new(Mutex::new(None)),
            handed_when_lost: Arc::new(AtomicU64::new(0)),
        });
        let (violation, handed_when_lost) =
            (Arc::clone(&events.violation), Arc::clone(&events.handed_when_lost));
        let client = login_options(config)?
            .name(format!("torq-bridge {} {}", config.node, config.domain.token()))
            .retry_on_initial_connect()
            .client_capacity(config.queue)
            .subscription_capacity(config.queue)
            .max_reconnects(None)
            .event_callback(move |event| {
                let events = Arc::clone(&events);
                async move { events.on(event) }
            })
            .connect(servers)
            .await
            .map_err(|source| BridgeError::Connect { urls, source })?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(2 * config.queue.min(4096))
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok(Nats { client, jetstream, violation, handed_when_lost })
    }

    /// The server's last refusal of a publish since the last call, if any.
    pub fn take_violation(&self) -> Option<String> {
        self.violation.lock().expect("violation lock").take()
    }

    /// Waits, at most 2 s, until the client has written what it holds. A NATS server out of
    /// reach never takes what waits: out of reach with nothing handed to it since it went,
    /// there is nothing to wait for.
    pub async fn flush_at_stop(&self, metrics: &Metrics) {
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let handed = metrics.exported_out.load(Ordering::Relaxed);
        if !connected && handed == self.handed_when_lost.load(Ordering::Relaxed) {
            info!("NATS is out of reach; no frame was handed to it since it went");
        } else if !matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await,
            Ok(Ok(()))
        ) {
            warn!("stopped with messages for NATS not yet written (the server is out of reach)");
        }
    }
}

/// What the client's event callback knows and remembers.
struct Events {
    metrics: Arc<Metrics>,
    urls: String,
    /// Who the bridge says it is ([`Login::describe`]).
    login: String,
    node: String,
    tls_required: bool,
    fatal: Fatal,
    connected_once: AtomicBool,
    /// A refusal of the credentials is an error once per outage…
    refused_since_connected: AtomicBool,
    /// …connection errors a warning once per [`REPEAT_EVERY`] (the rest at debug)…
    last_warning: Mutex<Option<Instant>>,
    /// …and a refusal of permissions an error once per [`REPEAT_EVERY`].
    last_violation: Mutex<Option<Instant>>,
    violation: Arc<Mutex<Option<String>>>,
    handed_when_lost: Arc<AtomicU64>,
}

impl Events {
    fn on(&self, event: Event) {
        match event {
            Event::Connected => self.connected(),
            Event::Disconnected => {
                let handed = self.metrics.exported_out.load(Ordering::Relaxed);
                self.handed_when_lost.store(handed, Ordering::Relaxed);
                warn!("lost the connection to NATS; reconnecting");
            }
            Event::ClientError(ClientError::Other(reason)) if refusal(&reason) => self.refused(reason),
            Event::ServerError(ServerError::Other(text))
                if text.to_lowercase().contains("permissions violation") =>
            {
                self.violated(text)
            }
            Event::ClientError(_) | Event::SlowConsumer(_) => self.trouble(&event),
            // The bridge's own stop.
            Event::Closed => debug!("NATS: {event}"),
            other => warn!("NATS: {other}"),
        }
    }

    fn connected(&self) {
        self.refused_since_connected.store(false, Ordering::Relaxed);
        if self.connected_once.swap(true, Ordering::Relaxed) {
            add(&self.metrics.nats_reconnects, 1);
            info!("connected to NATS again");
        } else {
            info!("connected to NATS");
        }
    }

    /// The server refused the credentials.
    fn refused(&self, reason: String) {
        let (urls, login) = (&self.urls, &self.login);
        if !self.connected_once.load(Ordering::Relaxed) {
            // Nothing was done yet, and retrying cannot help until someone changes the
            // credentials or the server: stop, saying so.
            let _ =
                self.fatal.send(BridgeError::Refused { urls: urls.clone(), reason, login: login.clone() });
        } else if !self.refused_since_connected.swap(true, Ordering::Relaxed) {
            error!(
                "NATS at {urls} refused to let this bridge in again ({reason}) with {login}; trying again with \
                 back-off until the credentials or the server's configuration are fixed"
            );
        } else {
            debug!("NATS refused the credentials again ({reason})");
        }
    }

    /// The server refused a publish or a subscription.
    fn violated(&self, text: String) {
        *self.violation.lock().expect("violation lock") = Some(text.clone());
        // Refused its own node's control subject: these are another node's credentials, or the
        // server forgot torq-bridge.<node>.>. Nothing was exported or imported yet; no retry
        // changes it.
        if text.contains(&format!("\"torq-bridge.{}.", self.node)) {
            let _ = self.fatal.send(BridgeError::ControlSubjectRefused {
                login: self.login.clone(),
                text: text.clone(),
                node: self.node.clone(),
            });
        }
        let text = format!(
            "NATS refused: {text}; the server's configuration does not let {} do that (a node may publish \
             only under its own subjects, torq.<node>.>: see config/nats-server.conf)",
            self.login
        );
        if due(&self.last_violation) {
            error!("{text}");
        } else {
            debug!("{text}");
        }
    }

    /// A connection error, or messages the client dropped for the import.
    fn trouble(&self, event: &Event) {
        let urls = &self.urls;
        let text = match event {
            Event::SlowConsumer(_) => {
                "the NATS client dropped messages for the import: the local relay takes \
                                       frames more slowly than they come (lost_total counts them)"
                    .to_string()
            }
            // The NATS client names no more than the kind of error; a TLS handshake that fails
            // is an "IO error" to it.
            other if self.tls_required => format!(
                "cannot reach NATS at {urls} over TLS ({other}); trying again (is nats-server running there? \
                 does --tls-ca hold the CA that signed its certificate, and does that certificate name the \
                 URL's host? does the server ask for a client certificate, --tls-cert and --tls-key?)"
            ),
            other => {
                format!("cannot reach NATS at {urls} ({other}); trying again (is nats-server running there?)")
            }
        };
        if due(&self.last_warning) {
            warn!("{text}");
        } else {
            debug!("{text}");
        }
    }
}

/// Whether [`REPEAT_EVERY`] has passed since `last` (and if so, `last` is now).
fn due(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = last.lock().expect("repeat lock");
    let due = last.is_none_or(|at| at.elapsed() >= REPEAT_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// The NATS client's options for logging in and TLS.
///
/// # Errors
///
/// [`BridgeError::Credentials`] when the `--nats-creds` file, checked at start, changed since.
fn login_options(config: &Config) -> Result<async_nats::ConnectOptions, BridgeError> {
    let options = async_nats::ConnectOptions::new();
    let mut options = match &config.login {
        Login::Anonymous => options,
        // Checked at start: a failure here is a file changed since.
        Login::Creds { file, creds } => options
            .credentials(creds.expose())
            .map_err(|source| BridgeError::Credentials { file: file.clone(), source })?,
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
    [ConnectErrorKind::AuthorizationViolation, ConnectErrorKind::Authentication]
        .iter()
        .any(|kind| kind.to_string() == reason)
}
