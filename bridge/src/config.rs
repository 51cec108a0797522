//! What a bridge does, from its flags and its TOML file (flags win); every default is applied in
//! [`Args::resolve`], and every mistake is an error naming the flag or key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use torq::cli::LogLevel;
use torq::protocol::{Filter, RelayDomain};
use torq::tools::args::{FilterArgs, parse_instrument, parse_type_range};

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
        importing node, acknowledged once the frame is written to the local relay.",
    after_help = "Example, one command per host:\n  \
        torq-bridge --relay /tmp/torq/execution.sock --domain execution --node a --nats nats://hub:4222 --export --import b\n  \
        torq-bridge --relay /tmp/torq/execution.sock --domain execution --node b --nats nats://hub:4222 --export --import a"
)]
pub struct Args {
    /// TOML file with the same settings (keys as the long flags, `-` written `_`; `types`,
    /// `sources`, `instruments` and `import` as lists); flags override it.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The local relay's socket.
    #[arg(long, value_name = "PATH")]
    pub relay: Option<PathBuf>,
    /// The local relay's domain.
    #[arg(long, value_enum)]
    pub domain: Option<Domain>,
    /// NATS server URL(s), comma-separated (every server of a cluster, so the bridge can move
    /// when one goes) [default: nats://127.0.0.1:4222].
    #[arg(long, value_name = "URL[,URL]...")]
    pub nats: Option<String>,
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
    pub filters: FilterArgs,
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
    /// Serve Prometheus text on this address (e.g. 127.0.0.1:9101).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Seconds between stats lines in the log; 0 = off [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub metrics_interval: Option<u64>,
    /// Log level [default: the file's log_level, else info].
    #[arg(short = 'l', long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log at debug level.
    #[arg(short = 'v', long)]
    pub verbose: bool,
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
    relay: Option<PathBuf>,
    domain: Option<Domain>,
    nats: Option<String>,
    node: Option<String>,
    #[serde(default)]
    export: bool,
    #[serde(default)]
    import: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    sources: Vec<u8>,
    #[serde(default)]
    instruments: Vec<String>,
    state_dir: Option<PathBuf>,
    audit_file: Option<PathBuf>,
    replicas: Option<usize>,
    max_age: Option<u64>,
    max_message_size: Option<usize>,
    queue: Option<usize>,
    metrics: Option<SocketAddr>,
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

/// A bridge's settings, every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// The local relay's socket.
    pub relay: PathBuf,
    /// The domain.
    pub domain: Domain,
    /// NATS server URLs.
    pub nats: Vec<String>,
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
    pub metrics: Option<SocketAddr>,
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
        let relay = self.relay.clone().or(file.relay).ok_or_else(|| {
            invalid(
                "--relay",
                "missing: give the local relay's socket (e.g. --relay /tmp/torq/execution.sock)",
            )
        })?;
        let domain = self.domain.or(file.domain).ok_or_else(|| {
            invalid("--domain", "missing: give the local relay's domain (market-data, signal or execution)")
        })?;
        let node = self.node.clone().or(file.node).ok_or_else(|| {
            invalid("--node", "missing: name this host in the subjects (e.g. --node ny4-a)")
        })?;
        if !valid_node(&node) {
            return Err(invalid("--node", format!("{node:?}: use 1-64 letters, digits, '-' or '_'")));
        }
        let nats: Vec<String> = self
            .nats
            .clone()
            .or(file.nats)
            .unwrap_or_else(|| DEFAULT_NATS.into())
            .split(',')
            .map(|url| url.trim().to_string())
            .filter(|url| !url.is_empty())
            .collect();
        if nats.is_empty() {
            return Err(invalid("--nats", "no server URL given (e.g. --nats nats://127.0.0.1:4222)"));
        }
        let mut filters = self.filters.clone();
        if filters.types.is_empty() && filters.sources.is_empty() && filters.instruments.is_empty() {
            filters.types = parse_list(&file.types, "types", parse_type_range)?;
            filters.sources = file.sources;
            filters.instruments = parse_list(&file.instruments, "instruments", parse_instrument)?;
        }
        let filters = filters.filters().map_err(|e| invalid("--type/--source/--instrument", e))?;
        let export = (self.export || file.export).then_some(filters);
        let names = if self.imports.is_empty() { file.import } else { self.imports.clone() };
        let import = import(&names, &node)?;
        if export.is_none() && import.is_none() {
            return Err(invalid(
                "--export/--import",
                "the bridge has nothing to do: give --export, --import NODE, or both",
            ));
        }
        let beside =
            relay.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let state_dir = self.state_dir.clone().or(file.state_dir).unwrap_or_else(|| beside.clone());
        let audit_file =
            self.audit_file.clone().or(file.audit_file).unwrap_or_else(|| beside.join("execution.audit"));
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
        let log_level = if self.verbose {
            LogLevel::Debug
        } else {
            match (self.log_level, &file.log_level) {
                (Some(level), _) => level,
                (None, Some(name)) => LogLevel::from_str(name, true).map_err(|_| {
                    invalid("log_level", format!("{name:?}: use error, warn, info, debug or trace"))
                })?,
                (None, None) => LogLevel::Info,
            }
        };
        Ok(Config {
            relay,
            domain,
            nats,
            node,
            export,
            import,
            state_dir,
            audit_file,
            replicas,
            max_age: Duration::from_secs(max_age),
            max_message_size,
            queue,
            metrics: self.metrics.or(file.metrics),
            metrics_interval: Duration::from_secs(
                self.metrics_interval.or(file.metrics_interval).unwrap_or(10),
            ),
            log_level,
        })
    }
}

fn load(path: &Path) -> Result<File, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

fn parse_list(
    items: &[String],
    key: &'static str,
    parse: fn(&str) -> Result<Filter, String>,
) -> Result<Vec<Filter>, ConfigError> {
    items.iter().map(|item| parse(item).map_err(|e| invalid(key, e))).collect()
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
            args(&["--relay", "/run/torq/e.sock", "--domain", "execution", "--node", "a", "--import", "b"])
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
        let base = ["--relay", "/r.sock", "--domain", "signal"];
        assert_eq!(error(&[&base[..], &["--node", "a"]].concat()), "--export/--import");
        assert_eq!(error(&[&base[..], &["--node", "a.b", "--export"]].concat()), "--node");
        assert_eq!(error(&[&base[..], &["--node", "a", "--import", "a"]].concat()), "--import");
        assert_eq!(
            error(&[&base[..], &["--node", "a", "--export", "--replicas", "7"]].concat()),
            "--replicas"
        );
        assert_eq!(error(&["--domain", "signal", "--node", "a", "--export"]), "--relay");
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
    fn the_file_fills_what_the_flags_leave() {
        let dir = std::env::temp_dir().join(format!("torq-bridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        std::fs::write(
            &path,
            "relay = \"/r.sock\"\ndomain = \"market-data\"\nnode = \"x\"\nexport = true\nimport = [\"all\"]\n\
             types = [\"1-3\"]\nnats = \"nats://h1:4222, nats://h2:4222\"\n",
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
}
