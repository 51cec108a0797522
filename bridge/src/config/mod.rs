//! What a bridge does, from its flags and its TOML file (flags win); every default is applied in
//! [`Args::resolve`], and every mistake is an error naming the flag or key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use torq::protocol::{Filter, RelayDomain};

/// The default NATS server.
pub const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// `torq-bridge`'s flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "torq-bridge",
    version,
    about = "Carries a relay's frames to and from the relays of other hosts through NATS",
    long_about = "Carries a relay's frames to and from the relays of other hosts through NATS.\n\n\
        One bridge per host and domain, each host with its own --node: before exporting or importing \
        anything a bridge asks through NATS (on torq-bridge.<node>.<domain>) whether another bridge of its \
        node and domain runs, on any host, and if one does it stops (exit 1) naming that bridge's host, pid \
        and start. --export publishes every frame the local relay forwards \
        (narrowed by --type/--source/--instrument) on torq.<node>.<domain>.<type>.<source>; \
        --import NODE subscribes to that node's subjects (or every other node's with `all`) and \
        publishes them into the local relay with flags bit 0 (bridged) set. A bridge never exports \
        a bridged frame and never imports its own node, so nothing loops.\n\n\
        Market data and signals cross over core NATS (at most once; frames lost between hosts \
        are counted from sequence gaps). Execution crosses over JetStream: a stream per \
        exporting node (file storage, de-duplicated by message id), a durable consumer per \
        importing node, acknowledged once the frame is written to the local relay.\n\n\
        Without credentials anyone who reaches NATS may publish as any node: log in with one of \
        --nats-creds, --nats-nkey, --nats-user with --nats-password-file, --nats-token-file (secrets \
        are read from files, never logged). With the server configuration config/nats-server.conf, \
        a node's user may publish only as that node.",
    after_help = "Example, one command per host:\n  \
        torq-bridge --socket /tmp/torq/execution.sock --domain execution --node a --nats nats://hub:4222 --export --import b\n  \
        torq-bridge --socket /tmp/torq/execution.sock --domain execution --node b --nats nats://hub:4222 --export --import a"
)]
pub struct Args {
    /// TOML file with the same settings (keys as the long flags, `-` written `_`: `socket`,
    /// `metrics_addr`…; `type`, `source`, `instrument` and `import` as lists; the former keys
    /// `relay`, `metrics`, `types`, `sources` and `instruments` still read); flags override it.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The local relay's socket.
    #[arg(long, value_name = "PATH", visible_alias = "relay")]
    pub socket: Option<PathBuf>,
    /// The local relay's domain.
    #[arg(long, value_enum)]
    pub domain: Option<Domain>,
    /// NATS server URL(s), comma-separated (every server of a cluster, so the bridge can move
    /// when one goes) [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL[,URL]...")]
    pub nats: Option<String>,
    /// Log in to NATS with this credentials file: a user JWT and its nkey seed, as `nsc generate
    /// creds` writes it (decentralized auth: operator, accounts, users).
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub nats_creds: Option<PathBuf>,
    /// Log in to NATS with the nkey seed in FILE (`SU...`, as `nk -gen user` writes it); the
    /// server's configuration names the public key. The seed is never logged.
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub nats_nkey: Option<PathBuf>,
    /// Log in to NATS as this user, with the password in --nats-password-file.
    #[arg(long, value_name = "USER", help_heading = "NATS login (at most one) and TLS")]
    pub nats_user: Option<String>,
    /// The --nats-user's password: the file's content, surrounding white space trimmed (never on
    /// the command line, where `ps` shows it).
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub nats_password_file: Option<PathBuf>,
    /// Log in to NATS with the token in FILE (trimmed).
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub nats_token_file: Option<PathBuf>,
    /// TLS: trust only the CA certificate(s) in this PEM file for the server's certificate (not
    /// the system's); implies --tls-required.
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: present this client certificate (PEM), for a server that verifies clients; needs
    /// --tls-key; implies --tls-required.
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", help_heading = "NATS login (at most one) and TLS")]
    pub tls_key: Option<PathBuf>,
    /// TLS: never talk to NATS in clear, even to a server that does not ask for TLS (a `tls://`
    /// URL, --tls-ca and --tls-cert require it too).
    #[arg(long, help_heading = "NATS login (at most one) and TLS")]
    pub tls_required: bool,
    /// This host's name in the subjects: letters, digits, `-` and `_`.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Publish what the local relay forwards.
    #[arg(long)]
    pub export: bool,
    /// Import another node's frames, or every other node's with `all`. Repeatable.
    #[arg(long = "import", value_name = "NODE|all")]
    pub imports: Vec<String>,
    /// Export only these frames (the subscription filters of PROTOCOL.md §6, as torq-tap takes them).
    #[command(flatten)]
    pub filters: ExportFilters,
    /// Execution import: the directory of the file recording what reached the local relay, so a
    /// restarted bridge skips what NATS delivers again [default: the relay socket's directory].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Execution import: the local relay's audit file, read after a restart to tell which frames
    /// the last bridge wrote before it was stopped [default: execution.audit beside the socket,
    /// the relay's own default].
    #[arg(long, value_name = "FILE")]
    pub audit_file: Option<PathBuf>,
    /// Execution export: replicas of this node's stream when the bridge creates it (3 on a
    /// three-server cluster) [default: 1].
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// Execution export: how long this node's stream keeps frames, in seconds. Import: a frame
    /// stamped longer than this before the bridge started does not set lag_seconds [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub max_age: Option<u64>,
    /// Import: the local relay's max_message_size; a larger message from NATS is skipped
    /// (counted as invalid) [default: 131072, the relays' default].
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Frames waiting for NATS (in the NATS client) and for the local relay. When full, the
    /// exporting bridge stops reading market data and signals (the relay drops for it, as for a
    /// slow subscriber), the NATS client drops them for the importing bridge (the gaps count them),
    /// execution waits
    /// [default: 65536].
    #[arg(long, value_name = "FRAMES")]
    pub queue: Option<usize>,
    /// Serve Prometheus text at http://ADDR/metrics on this loopback address (e.g. 127.0.0.1:9101;
    /// port 0 takes a free port and logs it).
    #[arg(long, value_name = "ADDR", visible_alias = "metrics")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds between stats lines in the log; 0 = off [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub metrics_interval: Option<u64>,
    /// Log level [default: the file's log_level, else info].
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log at debug level.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// A log level, as `--log-level` and the key `log_level` take it (`RUST_LOG` still refines it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only: what stops the bridge, refusals of the server.
    Error,
    /// Warnings and errors (NATS or the relay out of reach, frames skipped).
    Warn,
    /// Start, stop, connections and the stats lines.
    Info,
    /// Detail: every retry, every message skipped.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The matching [`log::LevelFilter`].
    pub const fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// A relay domain, as the flag and the subjects name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// Market data: core NATS, at most once.
    MarketData,
    /// Signals: core NATS, at most once.
    Signal,
    /// Execution: JetStream, lossless and without duplicates.
    Execution,
}

impl Domain {
    /// The subject token.
    pub fn token(self) -> &'static str {
        match self {
            Domain::MarketData => "market_data",
            Domain::Signal => "signal",
            Domain::Execution => "execution",
        }
    }

    /// The protocol's domain.
    pub fn relay(self) -> RelayDomain {
        match self {
            Domain::MarketData => RelayDomain::MarketData,
            Domain::Signal => RelayDomain::Signal,
            Domain::Execution => RelayDomain::Execution,
        }
    }
}

/// The TOML file: the flags' settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(alias = "relay")]
    socket: Option<PathBuf>,
    domain: Option<Domain>,
    nats: Option<String>,
    nats_creds: Option<PathBuf>,
    nats_nkey: Option<PathBuf>,
    nats_user: Option<String>,
    nats_password_file: Option<PathBuf>,
    nats_token_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    tls_required: bool,
    node: Option<String>,
    #[serde(default)]
    export: bool,
    #[serde(default)]
    import: Vec<String>,
    #[serde(default, rename = "type", alias = "types")]
    types: Vec<String>,
    #[serde(default, rename = "source", alias = "sources")]
    sources: Vec<u8>,
    #[serde(default, rename = "instrument", alias = "instruments")]
    instruments: Vec<String>,
    state_dir: Option<PathBuf>,
    audit_file: Option<PathBuf>,
    replicas: Option<usize>,
    max_age: Option<u64>,
    max_message_size: Option<usize>,
    queue: Option<usize>,
    #[serde(alias = "metrics")]
    metrics_addr: Option<SocketAddr>,
    metrics_interval: Option<u64>,
    log_level: Option<String>,
}

/// Which nodes to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Import {
    /// These nodes.
    Nodes(Vec<String>),
    /// Every node but this one.
    All,
}

mod filters;
mod login;

pub use filters::ExportFilters;
use login::loopback;
pub use login::{Login, Tls};

/// A bridge's settings, every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The local relay's socket.
    pub socket: PathBuf,
    /// The domain.
    pub domain: Domain,
    /// NATS server URLs.
    pub nats: Vec<String>,
    /// How the bridge logs in to NATS.
    pub login: Login,
    /// TLS to NATS.
    pub tls: Tls,
    /// What is not wrong but unwise (a secret file others may read), logged once logging starts.
    pub warnings: Vec<String>,
    /// This node.
    pub node: String,
    /// Export filters, when exporting.
    pub export: Option<Vec<Filter>>,
    /// What to import (`None`: nothing).
    pub import: Option<Import>,
    /// Where the execution import keeps its cursor.
    pub state_dir: PathBuf,
    /// The local relay's audit file.
    pub audit_file: PathBuf,
    /// Stream replicas.
    pub replicas: usize,
    /// Stream age limit.
    pub max_age: Duration,
    /// The local relay's largest frame.
    pub max_message_size: usize,
    /// Frames between the two sides.
    pub queue: usize,
    /// Prometheus address.
    pub metrics_addr: Option<SocketAddr>,
    /// Stats line interval (zero: off).
    pub metrics_interval: Duration,
    /// Log level.
    pub log_level: LogLevel,
}

/// A configuration mistake: the flag or key, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a bridge.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words (line, column, key).
        message: String,
    },
    /// A setting is missing or wrong.
    #[error("{setting}: {problem}")]
    Invalid {
        /// `--flag` (or the file key).
        setting: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, problem: problem.into() }
}

/// Whether `name` can be a subject token and a stream name: 1–64 of letters, digits, `-`, `_`.
pub fn valid_node(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Args {
    /// The settings: flags over the file over the defaults, checked.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the flag or key.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => load(path)?,
            None => File::default(),
        };
        let mut warnings = Vec::new();
        let login = self.login(&file, &mut warnings)?;
        let mut tls = self.tls(&file, &mut warnings)?;
        let (socket, domain, node) = self.place(&file)?;
        let nats = self.nats(&file)?;
        tls.required |= nats.iter().any(|url| url.starts_with("tls://"));
        warnings.extend(in_clear(&login, &tls, &nats));
        let (export, import) = self.roles(&file, &node)?;
        let beside =
            socket.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let state_dir =
            self.state_dir.clone().or_else(|| file.state_dir.clone()).unwrap_or_else(|| beside.clone());
        let audit_file = (self.audit_file.clone().or_else(|| file.audit_file.clone()))
            .unwrap_or_else(|| beside.join("execution.audit"));
        let Limits { replicas, max_age, max_message_size, queue } = self.limits(&file)?;
        Ok(Config {
            socket,
            domain,
            nats,
            login,
            tls,
            warnings,
            node,
            export,
            import,
            state_dir,
            audit_file,
            replicas,
            max_age,
            max_message_size,
            queue,
            metrics_addr: self.metrics_addr(&file)?,
            metrics_interval: Duration::from_secs(
                self.metrics_interval.or(file.metrics_interval).unwrap_or(10),
            ),
            log_level: self.log_level(&file)?,
        })
    }

    /// The local relay's socket and domain, and this node's name.
    fn place(&self, file: &File) -> Result<(PathBuf, Domain, String), ConfigError> {
        let socket = self.socket.clone().or_else(|| file.socket.clone()).ok_or_else(|| {
            invalid(
                "--socket",
                "missing: give the local relay's socket (e.g. --socket /tmp/torq/execution.sock)",
            )
        })?;
        let domain = self.domain.or(file.domain).ok_or_else(|| {
            invalid("--domain", "missing: give the local relay's domain (market-data, signal or execution)")
        })?;
        let node = self.node.clone().or_else(|| file.node.clone()).ok_or_else(|| {
            invalid("--node", "missing: name this host in the subjects (e.g. --node ny4-a)")
        })?;
        if !valid_node(&node) {
            return Err(invalid("--node", format!("{node:?}: use 1-64 letters, digits, '-' or '_'")));
        }
        Ok((socket, domain, node))
    }

    /// The NATS server URLs, comma-separated in the flag or the key.
    fn nats(&self, file: &File) -> Result<Vec<String>, ConfigError> {
        let nats: Vec<String> = (self.nats.clone().or_else(|| file.nats.clone()))
            .unwrap_or_else(|| DEFAULT_NATS.into())
            .split(',')
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
            .collect();
        if nats.is_empty() {
            return Err(invalid("--nats", "no server URL given (e.g. --nats nats://127.0.0.1:4222)"));
        }
        Ok(nats)
    }

    /// What the bridge exports (its filters) and imports; at least one of them.
    fn roles(&self, file: &File, node: &str) -> Result<(Option<Vec<Filter>>, Option<Import>), ConfigError> {
        let filters = self.filters.resolve(&file.types, &file.sources, &file.instruments)?;
        let export = (self.export || file.export).then_some(filters);
        let names = if self.imports.is_empty() { &file.import } else { &self.imports };
        let import = import(names, node)?;
        if export.is_none() && import.is_none() {
            return Err(invalid(
                "--export/--import",
                "the bridge has nothing to do: give --export, --import NODE, or both",
            ));
        }
        Ok((export, import))
    }

    /// The stream's replicas and age, the relay's largest frame, the queues' length.
    fn limits(&self, file: &File) -> Result<Limits, ConfigError> {
        let replicas = self.replicas.or(file.replicas).unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            return Err(invalid("--replicas", format!("{replicas}: JetStream keeps 1 to 5 replicas")));
        }
        let max_age = self.max_age.or(file.max_age).unwrap_or(86_400);
        if max_age == 0 {
            return Err(invalid("--max-age", "0 would keep frames for ever; give seconds (default 86400)"));
        }
        let max_message_size = self.max_message_size.or(file.max_message_size).unwrap_or(131_072);
        if max_message_size < 32 {
            return Err(invalid(
                "--max-message-size",
                format!("{max_message_size} bytes cannot hold a header (32)"),
            ));
        }
        let queue = self.queue.or(file.queue).unwrap_or(65_536);
        if queue == 0 {
            return Err(invalid("--queue", "0 frames: give at least 1 (default 65536)"));
        }
        Ok(Limits { replicas, max_age: Duration::from_secs(max_age), max_message_size, queue })
    }

    /// The metrics endpoint's address: loopback only.
    fn metrics_addr(&self, file: &File) -> Result<Option<SocketAddr>, ConfigError> {
        let metrics_addr = self.metrics_addr.or(file.metrics_addr);
        if let Some(addr) = metrics_addr
            && !addr.ip().is_loopback()
        {
            return Err(invalid(
                "--metrics-addr",
                format!(
                    "{addr}: expected a loopback address, e.g. 127.0.0.1:9101 (the endpoint has no \
                     authentication; a scraper on another host reaches it through a proxy or a tunnel)"
                ),
            ));
        }
        Ok(metrics_addr)
    }

    /// `-v` (debug), else `--log-level`, else the key `log_level`, else info.
    fn log_level(&self, file: &File) -> Result<LogLevel, ConfigError> {
        if self.verbose {
            return Ok(LogLevel::Debug);
        }
        match (self.log_level, &file.log_level) {
            (Some(level), _) => Ok(level),
            (None, Some(name)) => LogLevel::from_str(name, true).map_err(|_| {
                invalid("log_level", format!("{name:?}: use error, warn, info, debug or trace"))
            }),
            (None, None) => Ok(LogLevel::Info),
        }
    }
}

/// The limits of [`Args::limits`].
struct Limits {
    replicas: usize,
    max_age: Duration,
    max_message_size: usize,
    queue: usize,
}

/// A warning when a password or token crosses the network in clear (not to a loopback server,
/// without TLS required).
fn in_clear(login: &Login, tls: &Tls, nats: &[String]) -> Option<String> {
    let secret = match login {
        Login::User { .. } => "the NATS password",
        Login::Token { .. } => "the NATS token",
        _ => return None,
    };
    (!tls.required && nats.iter().any(|url| !loopback(url))).then(|| {
        format!(
            "{secret} crosses the network in clear unless the server asks for TLS, which a machine in the \
             middle can deny: give --tls-required (with --tls-ca for a private CA)"
        )
    })
}

fn load(path: &Path) -> Result<File, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

fn import(names: &[String], node: &str) -> Result<Option<Import>, ConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    if names.iter().any(|n| n == "all") {
        return Ok(Some(Import::All));
    }
    let mut nodes = Vec::new();
    for name in names {
        if !valid_node(name) {
            return Err(invalid(
                "--import",
                format!("{name:?}: a node name (letters, digits, '-', '_') or all"),
            ));
        }
        if name == node {
            return Err(invalid(
                "--import",
                format!("{name:?} is this node: a bridge never imports its own frames"),
            ));
        }
        if !nodes.contains(name) {
            nodes.push(name.clone());
        }
    }
    Ok(Some(Import::Nodes(nodes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::parse_from(std::iter::once("torq-bridge").chain(list.iter().copied()))
    }

    #[test]
    fn defaults_and_the_state_beside_the_socket() {
        let config =
            args(&["--socket", "/run/torq/e.sock", "--domain", "execution", "--node", "a", "--import", "b"])
                .resolve()
                .unwrap();
        assert_eq!(config.nats, vec![DEFAULT_NATS.to_string()]);
        assert_eq!(config.state_dir, PathBuf::from("/run/torq"));
        assert_eq!(config.audit_file, PathBuf::from("/run/torq/execution.audit"));
        assert_eq!(config.import, Some(Import::Nodes(vec!["b".into()])));
        assert!(config.export.is_none());
        assert_eq!((config.replicas, config.queue), (1, 65_536));
    }

    #[test]
    fn mistakes_name_the_flag() {
        let error = |list: &[&str]| match args(list).resolve() {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            other => panic!("expected an error for {list:?}: {other:?}"),
        };
        let base = ["--socket", "/r.sock", "--domain", "signal"];
        assert_eq!(error(&[&base[..], &["--node", "a"]].concat()), "--export/--import");
        assert_eq!(error(&[&base[..], &["--node", "a.b", "--export"]].concat()), "--node");
        assert_eq!(error(&[&base[..], &["--node", "a", "--import", "a"]].concat()), "--import");
        assert_eq!(
            error(&[&base[..], &["--node", "a", "--export", "--replicas", "7"]].concat()),
            "--replicas"
        );
        assert_eq!(error(&["--domain", "signal", "--node", "a", "--export"]), "--socket");
        for addr in ["0.0.0.0:9101", "10.0.0.1:9101", "[::]:9101"] {
            assert_eq!(
                error(&[&base[..], &["--node", "a", "--export", "--metrics-addr", addr]].concat()),
                "--metrics-addr"
            );
        }
        for addr in ["127.0.0.1:0", "[::1]:9101"] {
            let config =
                args(&[&base[..], &["--node", "a", "--export", "--metrics-addr", addr]].concat()).resolve();
            assert_eq!(config.unwrap().metrics_addr, Some(addr.parse().unwrap()));
        }
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bridge.toml");
        let config = args(&["-c", path.to_str().unwrap()]).resolve().unwrap();
        assert_eq!((config.domain, config.node.as_str()), (Domain::Execution, "a"));
        assert_eq!(config.import, Some(Import::Nodes(vec!["b".into()])));
        assert_eq!(config.export, Some(vec![]));
        assert_eq!(config.log_level, LogLevel::Info);
    }

    #[test]
    fn every_key_the_example_file_shows_commented_out_is_a_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bridge.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut keys = 0;
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(key, _)| key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) =>
                {
                    keys += 1;
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        assert!(keys >= 14, "{keys} commented-out keys");
        let file: File = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(file.nats_user.as_deref(), Some("a"));
        assert!(file.tls_required);
    }

    #[test]
    fn the_file_fills_what_the_flags_leave() {
        let dir = std::env::temp_dir().join(format!("torq-bridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        std::fs::write(
            &path,
            "socket = \"/r.sock\"\ndomain = \"market-data\"\nnode = \"x\"\nexport = true\nimport = [\"all\"]\n\
             type = [\"1-3\"]\nnats = \"nats://h1:4222, nats://h2:4222\"\n",
        )
        .unwrap();
        let config = args(&["-c", path.to_str().unwrap(), "--node", "y"]).resolve().unwrap();
        assert_eq!(config.node, "y");
        assert_eq!(config.import, Some(Import::All));
        assert_eq!(config.export, Some(vec![Filter::TypeRange { lo: 1, hi: 3 }]));
        assert_eq!(config.nats, vec!["nats://h1:4222".to_string(), "nats://h2:4222".to_string()]);
        std::fs::write(&path, "relays = \"/r.sock\"\n").unwrap();
        let error = args(&["-c", path.to_str().unwrap()]).resolve().unwrap_err().to_string();
        assert!(error.contains("relays"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    /// A fresh directory for files a test writes.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("torq-bridge-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    const BASE: [&str; 7] = ["--socket", "/r.sock", "--domain", "market-data", "--node", "a", "--export"];

    fn with(extra: &[&str]) -> Args {
        args(&[&BASE[..], extra].concat())
    }

    fn problem(extra: &[&str]) -> (&'static str, String) {
        match with(extra).resolve() {
            Err(ConfigError::Invalid { setting, problem }) => (setting, problem),
            other => panic!("expected an error for {extra:?}: {other:?}"),
        }
    }

    #[test]
    fn each_login_reads_its_secret_from_a_file_and_never_shows_it() {
        let dir = scratch("login");
        let password = write(&dir, "password", "  s3cret-pass\n", 0o600);
        let config = with(&["--nats-user", "a", "--nats-password-file", &password]).resolve().unwrap();
        let Login::User { user, password: secret, .. } = &config.login else { panic!("{:?}", config.login) };
        assert_eq!((user.as_str(), secret.expose()), ("a", "s3cret-pass"), "trimmed");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        for shown in [format!("{config:?}"), config.login.describe()] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }

        let token = write(&dir, "token", "t0ken\n", 0o644);
        let config = with(&["--nats-token-file", &token]).resolve().unwrap();
        assert!(matches!(&config.login, Login::Token { token, .. } if token.expose() == "t0ken"));
        // Every user of the machine may read it: said, with the fix.
        assert!(config.warnings.iter().any(|w| w.contains("--nats-token-file") && w.contains("chmod o-r")));

        let pair = nkeys::KeyPair::new_user();
        let seed = write(&dir, "seed", &format!("{}\n", pair.seed().unwrap()), 0o600);
        let config = with(&["--nats-nkey", &seed]).resolve().unwrap();
        let Login::Nkey { public, .. } = &config.login else { panic!("{:?}", config.login) };
        assert_eq!(public, &pair.public_key());
        assert!(config.login.describe().contains(&pair.public_key()));
        assert!(!format!("{config:?}").contains(&pair.seed().unwrap()));

        let creds = format!(
            "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln\n------END NATS USER \
             JWT------\n\n-----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            pair.seed().unwrap()
        );
        let creds = write(&dir, "a.creds", &creds, 0o600);
        assert!(matches!(with(&["--nats-creds", &creds]).resolve().unwrap().login, Login::Creds { .. }));
        assert!(matches!(with(&[]).resolve().unwrap().login, Login::Anonymous));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn login_mistakes_name_the_flags_and_the_fix() {
        let dir = scratch("login-mistakes");
        let password = write(&dir, "password", "p\n", 0o600);
        let token = write(&dir, "token", "t\n", 0o600);
        let empty = write(&dir, "empty", " \n", 0o600);
        let not_seed = write(&dir, "not-seed", "SUNOTASEED\n", 0o600);
        let account = write(&dir, "account-seed", &nkeys::KeyPair::new_account().seed().unwrap(), 0o600);
        let absent = dir.join("absent").display().to_string();

        let (setting, text) =
            problem(&["--nats-user", "a", "--nats-password-file", &password, "--nats-token-file", &token]);
        assert!(
            setting.contains("--nats-user") && text.contains("--nats-user and --nats-token-file given"),
            "{text}"
        );
        let (setting, text) = problem(&["--nats-user", "a"]);
        assert_eq!(setting, "--nats-user");
        assert!(text.contains("needs --nats-password-file") && text.contains("ps"), "{text}");
        assert_eq!(problem(&["--nats-password-file", &password]).0, "--nats-password-file");
        let (setting, text) = problem(&["--nats-user", "a", "--nats-password-file", &absent]);
        assert_eq!(setting, "--nats-password-file");
        assert!(text.contains(&format!("cannot read {absent}")), "{text}");
        let (setting, text) = problem(&["--nats-token-file", &empty]);
        assert_eq!(setting, "--nats-token-file");
        assert!(text.contains("is empty"), "{text}");
        let (setting, text) = problem(&["--nats-nkey", &not_seed]);
        assert_eq!(setting, "--nats-nkey");
        assert!(text.contains("not an nkey seed") && !text.contains("SUNOTASEED"), "{text}");
        assert!(problem(&["--nats-nkey", &account]).1.contains("not a user's"));
        let (setting, text) = problem(&["--nats-creds", &password]);
        assert_eq!(setting, "--nats-creds");
        assert!(text.contains("not a NATS credentials file"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_files_are_checked_and_a_ca_or_a_certificate_requires_tls() {
        let dir = scratch("tls");
        // Not a real certificate: what is checked here is the PEM framing the NATS client reads.
        let pem =
            write(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", 0o644);
        let key =
            write(&dir, "key.pem", "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n", 0o600);
        let garbage = write(&dir, "garbage.pem", "hello\n", 0o644);

        assert_eq!(with(&[]).resolve().unwrap().tls, Tls::default());
        assert!(with(&["--tls-required"]).resolve().unwrap().tls.required);
        let tls = with(&["--tls-ca", &pem]).resolve().unwrap().tls;
        assert_eq!((tls.ca, tls.required), (Some(PathBuf::from(&pem)), true));
        let tls = with(&["--tls-cert", &pem, "--tls-key", &key]).resolve().unwrap().tls;
        assert_eq!((tls.client, tls.required), (Some((PathBuf::from(&pem), PathBuf::from(&key))), true));
        assert!(
            args(&[
                "--socket",
                "/r",
                "--domain",
                "signal",
                "--node",
                "a",
                "--export",
                "--nats",
                "tls://h:4222"
            ])
            .resolve()
            .unwrap()
            .tls
            .required
        );

        assert_eq!(problem(&["--tls-cert", &pem]).0, "--tls-cert");
        assert!(problem(&["--tls-key", &key]).1.contains("needs --tls-cert"));
        let (setting, text) = problem(&["--tls-ca", &garbage]);
        assert_eq!(setting, "--tls-ca");
        assert!(text.contains("holds no certificate"), "{text}");
        let (setting, text) = problem(&["--tls-cert", &pem, "--tls-key", &pem]);
        assert_eq!(setting, "--tls-key");
        assert!(text.contains("holds no private key"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_login_and_tls_come_from_the_file_unless_flags_give_a_login() {
        let dir = scratch("login-file");
        let password = write(&dir, "password", "p\n", 0o600);
        let token = write(&dir, "token", "t\n", 0o600);
        let pem =
            write(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", 0o644);
        let path = write(
            &dir,
            "bridge.toml",
            &format!(
                "socket = \"/r.sock\"\ndomain = \"signal\"\nnode = \"a\"\nexport = true\nnats_user = \"a\"\n\
                 nats_password_file = {password:?}\ntls_ca = {pem:?}\n"
            ),
            0o644,
        );
        let config = args(&["-c", &path]).resolve().unwrap();
        assert!(matches!(&config.login, Login::User { user, .. } if user == "a"));
        assert!(config.tls.required);
        // A login flag replaces the file's login as a whole (no "two ways" error).
        let config = args(&["-c", &path, "--nats-token-file", &token]).resolve().unwrap();
        assert!(matches!(config.login, Login::Token { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_names_of_the_other_binaries_are_in_the_help_and_the_former_ones_still_work() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for name in [
            "--socket <PATH>",
            "[alias: --relay]",
            "--metrics-addr <ADDR>",
            "[alias: --metrics]",
            "--metrics-interval <SECONDS>",
            "-l, --log-level <LEVEL>",
            "--max-message-size <BYTES>",
            "--audit-file <FILE>",
            "-c, --config <FILE>",
            "--socket /tmp/torq/execution.sock",
        ] {
            assert!(help.contains(name), "{name} not in\n{help}");
        }
        for wrong in ["<LOG_LEVEL>", "--relay <", "--metrics <", "torq-bridge --relay"] {
            assert!(!help.contains(wrong), "{wrong} in\n{help}");
        }

        // The flags: the former spellings give the same settings.
        let common = ["--domain", "market-data", "--node", "a", "--export", "--import", "b"];
        let with = |socket: &str, metrics: &str| {
            let list = [socket, "/run/torq/md.sock", metrics, "127.0.0.1:9101"];
            let config = args(&[&list[..], &common[..]].concat()).resolve().unwrap();
            format!("{config:?}")
        };
        let chosen = with("--socket", "--metrics-addr");
        assert!(chosen.contains("socket: \"/run/torq/md.sock\"") && chosen.contains("9101"), "{chosen}");
        assert_eq!(with("--relay", "--metrics"), chosen);
        assert_eq!(with("--relay", "--metrics-addr"), chosen);

        // The file: the former keys read as the new ones.
        let dir = scratch("former-keys");
        let file = |text: &str| {
            let path = write(&dir, "bridge.toml", text, 0o644);
            format!("{:?}", args(&["-c", &path]).resolve().unwrap())
        };
        let rest = "domain = \"market-data\"\nnode = \"a\"\nexport = true\n";
        let new = file(&format!(
            "socket = \"/r.sock\"\nmetrics_addr = \"127.0.0.1:9101\"\ntype = [\"1-3\"]\nsource = [7]\n\
             instrument = [\"Kraken:Coin:BTC/USD\"]\n{rest}"
        ));
        let old = file(&format!(
            "relay = \"/r.sock\"\nmetrics = \"127.0.0.1:9101\"\ntypes = [\"1-3\"]\nsources = [7]\n\
             instruments = [\"Kraken:Coin:BTC/USD\"]\n{rest}"
        ));
        assert_eq!(old, new);
        assert!(new.contains("TypeRange { lo: 1, hi: 3 }") && new.contains("Source(7)"), "{new}");
        // One key given twice, under both names: an error naming it.
        let path = write(&dir, "both.toml", &format!("socket = \"/a\"\nrelay = \"/b\"\n{rest}"), 0o644);
        let error = args(&["-c", &path]).resolve().unwrap_err().to_string();
        assert!(error.contains("socket") && error.contains("both.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_shows_the_login_and_tls_flags() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for flag in [
            "--nats-creds <FILE>",
            "--nats-nkey <FILE>",
            "--nats-user <USER>",
            "--nats-password-file <FILE>",
            "--nats-token-file <FILE>",
            "--tls-ca <FILE>",
            "--tls-cert <FILE>",
            "--tls-key <FILE>",
            "--tls-required",
        ] {
            assert!(help.contains(flag), "{flag} not in\n{help}");
        }
    }
}
