//! Start-up: the command lines of the relay binaries and how they resolve a relay's settings.
//!
//! Every relay is resolved in one order: the domain's defaults ([`RelayLogic::defaults`]), then the
//! configuration file if any ([`ConfigFile::apply`]), then the flags, then
//! [`RelayConfig::finish`] (the defaults that depend on other settings, and validation). Errors
//! name the flag, or the file and its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::config::{
    ConfigError, ConfigFile, Cores, DomainDefaults, EngineConfig, Idle, Policy, RelayConfig,
};
use crate::protocol::RelayDomain;
use crate::relays::{AnyLogic, RelayLogic};

mod logging;

pub use logging::{init_logging, start_logging};

/// Where `relay_dev all` puts its sockets unless `--socket-dir DIR` says otherwise.
const DEV_DIR: &str = "/tmp/torq_dev/";

/// Setting names of [`RelayConfig::finish`] and [`EngineConfig::validate`] → flags.
const FLAGS: &[(&str, &str)] = &[
    ("max_message_size", "--max-message-size"),
    ("queue_bytes", "--queue-bytes"),
    ("audit_file", "--audit-file"),
    ("cores", "--cores"),
    ("metrics_addr", "--metrics-addr"),
    ("shm_bytes", "--shm-bytes"),
];

/// The defaults of a domain: those of its logic.
///
/// # Errors
///
/// [`ConfigError::Invalid`] for [`RelayDomain::System`], which has no relay of its own.
pub fn defaults_for(domain: RelayDomain) -> Result<DomainDefaults, ConfigError> {
    AnyLogic::for_domain(domain).map(|logic| logic.defaults()).ok_or_else(|| {
        ConfigError::invalid(
            "domain",
            domain,
            "market data, signal or execution (every relay forwards System frames)",
        )
    })
}

/// Parses `--cores`: `none` (one unpinned reactor per available core), `none:N` (`N` unpinned
/// reactors) or a comma-separated list of distinct core numbers (one reactor pinned to each).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `--cores` for an empty list, a duplicate or junk.
pub fn cores_from_str(s: &str) -> Result<Cores, ConfigError> {
    Cores::parse(s).map_err(|allowed| ConfigError::invalid("--cores", format!("{s:?}"), allowed))
}

/// A log level, as `--log-level` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors (rejected frames, slow consumers).
    Warn,
    /// Start, stop, connections and configuration notes.
    Info,
    /// Per-connection detail.
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

/// Flags of `market_data_relay`, `signal_relay` and `execution_relay`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(version, about = "Protocol V2 relay for one domain, configured by flags", long_about = None)]
pub struct DomainArgs {
    /// Socket path [default: the domain's: /tmp/torq/market_data.sock, /tmp/torq/signals.sock
    /// or /tmp/torq/execution.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Reactor cores: `none` = one unpinned reactor per available core; `none:N` = N unpinned
    /// reactors; a list like `0,1` = one reactor pinned to each core, which must be a core this
    /// process may run on (else exit 2)
    #[arg(long, value_name = "LIST|none|none:N", default_value = "none")]
    pub cores: String,
    /// What an idle reactor does: `block` waits in the poll; `spin` never sleeps (lowest
    /// latency, a whole core per reactor: pin them with --cores); `backoff` spins a while,
    /// then yields, then waits
    #[arg(long, value_name = "STRATEGY", value_enum, default_value_t = Idle::Block)]
    pub idle: Idle,
    /// What to do with a subscriber whose queue is full [default: the domain's: drop for market
    /// data, disconnect for signal, block for execution]
    #[arg(long, value_name = "POLICY", value_parser = ["drop", "disconnect", "block"])]
    pub slow_consumer: Option<String>,
    /// Subscriber queue bound in bytes, at least 2 × max message size [default: 4194304;
    /// 16777216 for execution; grown to 2 × max message size when that is larger]
    #[arg(long, value_name = "BYTES")]
    pub queue_bytes: Option<usize>,
    /// Largest frame accepted in bytes, header included, at least 1065 [default: 131072]
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Audit file when the audit level is on (the execution default); without it the relay
    /// audits to `<socket dir>/execution.audit`
    #[arg(long, value_name = "FILE")]
    pub audit_file: Option<PathBuf>,
    /// Shared-memory delivery (PROTOCOL.md §7) to subscribers on this host that ask for it:
    /// `on` or `off` (they then receive over their sockets). Execution answers shm=0 always
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub shm: String,
    /// Bytes of the broadcast log's ring: a power of two from 1048576 (1 MiB) to 4294967296,
    /// at least 4 × (max message size + 16) [default: 67108864, 64 MiB, about half a million
    /// frames of 128 bytes; its index adds a quarter]
    #[arg(long, value_name = "BYTES")]
    pub shm_bytes: Option<u64>,
    /// Seconds between stats lines in the log; 0 = off
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub metrics_interval: u64,
    /// Serve Prometheus text at http://ADDR/metrics on this loopback address, e.g. 127.0.0.1:9100
    /// [default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log level
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

impl DomainArgs {
    /// The flags applied over the defaults of `L`, finished and validated; the cores of
    /// `--cores` must be cores this process may run on ([`EngineConfig::check_cores_here`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the flag, the value and what is allowed.
    pub fn resolve<L: RelayLogic + Default>(&self) -> Result<(EngineConfig, RelayConfig), ConfigError> {
        let defaults = L::default().defaults();
        let mut relay = RelayConfig::new(&defaults);
        let mut engine =
            EngineConfig { cores: cores_from_str(&self.cores)?, idle: self.idle, ..EngineConfig::default() };
        if let Some(socket) = &self.socket {
            relay.socket = nonempty_path(socket, "--socket")?;
        }
        if let Some(name) = &self.slow_consumer {
            relay.policy = Policy::from_name(name).ok_or_else(|| {
                ConfigError::invalid("--slow-consumer", name, "\"drop\", \"disconnect\" or \"block\"")
            })?;
        }
        if let Some(bytes) = self.queue_bytes {
            relay.queue_bytes = bytes;
        }
        if let Some(size) = self.max_message_size {
            relay.max_message_size = size;
        }
        if let Some(file) = &self.audit_file {
            relay.audit_file = Some(nonempty_path(file, "--audit-file")?);
        }
        if let Some(bytes) = self.shm_bytes {
            relay.shm_bytes = bytes;
        }
        engine.metrics_interval = interval(self.metrics_interval);
        engine.metrics_addr = self.metrics_addr;
        relay.finish(&defaults, self.queue_bytes.is_some()).map_err(|e| e.renamed(FLAGS))?;
        if self.shm == "off" {
            relay.shm_bytes = 0;
        }
        engine.validate().map_err(|e| e.renamed(FLAGS))?;
        engine.check_cores_here().map_err(|e| e.renamed(FLAGS))?;
        Ok((engine, relay))
    }
}

/// Flags of `relay`, which runs the domain of one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(version, about = "Protocol V2 relay configured by a TOML file", long_about = None)]
pub struct RelayArgs {
    /// Configuration file (TOML; every key is documented in config/*.toml)
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: PathBuf,
    /// Log level [default: the file's logging.level, else info]
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log JSON lines instead of text [default: as the file's logging.format says, else text]
    #[arg(long)]
    pub json_logs: bool,
}

impl RelayArgs {
    /// Reads the configuration file.
    ///
    /// # Errors
    ///
    /// As [`ConfigFile::load`].
    pub fn load(&self) -> Result<ConfigFile, ConfigError> {
        ConfigFile::load(&self.config)
    }

    /// The file's relay: its domain's defaults, the file, finished; the cores of
    /// `engine.cores` must be cores this process may run on
    /// ([`EngineConfig::check_cores_here`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the file and the key.
    pub fn resolve(&self, file: &ConfigFile) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
        let (engine, relay) = resolve_file(file, None)?;
        engine.check_cores_here().map_err(|e| file.rename(e))?;
        Ok((engine, vec![relay]))
    }

    /// Starts logging: `-l` and `--json-logs` win over the file's `[logging]` table.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `logging.file` when it cannot be opened for appending.
    pub fn start_logging(&self, file: &ConfigFile) -> Result<(), ConfigError> {
        start_logging(self.log_level, self.json_logs, Some(file))
    }
}

/// What `relay_dev` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum DevTarget {
    /// The MarketData relay.
    #[value(alias = "market_data")]
    MarketData,
    /// The Signal relay.
    #[value(alias = "signals")]
    Signal,
    /// The Execution relay.
    Execution,
    /// The three relays in one process, their sockets in one directory.
    All,
}

impl DevTarget {
    /// The domain, or `None` for [`DevTarget::All`].
    pub const fn domain(self) -> Option<RelayDomain> {
        match self {
            DevTarget::MarketData => Some(RelayDomain::MarketData),
            DevTarget::Signal => Some(RelayDomain::Signal),
            DevTarget::Execution => Some(RelayDomain::Execution),
            DevTarget::All => None,
        }
    }
}

/// Flags of `relay_dev`, the development runner.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(version, about = "Protocol V2 relays for development", long_about = None)]
pub struct DevArgs {
    /// Which relay to run; `all` runs the three domains with their defaults
    #[arg(value_enum, value_name = "DOMAIN")]
    pub target: DevTarget,
    /// Configuration file for a single domain [default: the domain's defaults]
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level [default: the file's logging.level, else info]
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum, conflicts_with = "verbose")]
    pub log_level: Option<LogLevel>,
    /// Log at debug level
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Socket path of a single domain [default: the domain's]. With `all` it is taken as
    /// --socket-dir, as it always was
    #[arg(short = 's', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory of the sockets, each named as the domain's default (market_data.sock,
    /// signals.sock, execution.sock): the three of `all`, or the one of a single domain
    /// [default: /tmp/torq_dev/ with `all`]
    #[arg(long, value_name = "DIR", conflicts_with = "socket")]
    pub socket_dir: Option<PathBuf>,
    /// Seconds between stats lines in the log; 0 = off
    #[arg(long, value_name = "SECONDS")]
    pub metrics_interval: Option<u64>,
    /// What an idle reactor does: block, spin or backoff (see the domain binaries' --help)
    /// [default: the file's engine.idle, else block]
    #[arg(long, value_name = "STRATEGY", value_enum)]
    pub idle: Option<Idle>,
    /// Serve Prometheus text at http://ADDR/metrics on this loopback address, e.g. 127.0.0.1:9100
    /// (with `all`, the three relays on one endpoint) [default: the file's, else off]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl DevArgs {
    /// The log level the flags ask for: `debug` with `-v`, else `-l`.
    pub fn level(&self) -> Option<LogLevel> {
        if self.verbose { Some(LogLevel::Debug) } else { self.log_level }
    }

    /// Reads the configuration file, if `-c` names one.
    ///
    /// # Errors
    ///
    /// As [`ConfigFile::load`].
    pub fn load(&self) -> Result<Option<ConfigFile>, ConfigError> {
        self.config.as_deref().map(ConfigFile::load).transpose()
    }

    /// Starts logging: the flags win over the file's `[logging]` table.
    ///
    /// # Errors
    ///
    /// As [`RelayArgs::start_logging`].
    pub fn start_logging(&self, file: Option<&ConfigFile>) -> Result<(), ConfigError> {
        start_logging(self.level(), false, file)
    }

    /// The relays to run. A single domain comes from the configuration file if given (see
    /// [`DevArgs::load`]), else from the domain's defaults, with `--socket` replacing the socket
    /// (or `--socket-dir` its directory); `all` is the three domains' defaults with their sockets
    /// in the `--socket-dir` directory (or `--socket`, its legacy spelling). A relay whose
    /// audit level is on and that has no audit file audits to `<socket dir>/<stem>.audit`
    /// (e.g. `execution.audit`), so `relay_dev all` runs out of the box.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the flag or the file's key.
    pub fn resolve(
        &self,
        file: Option<&ConfigFile>,
    ) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
        let socket = self.socket.as_deref().map(|path| nonempty_path(path, "--socket")).transpose()?;
        let socket_dir =
            self.socket_dir.as_deref().map(|path| nonempty_path(path, "--socket-dir")).transpose()?;
        // A single domain's socket: --socket, or its default name in --socket-dir.
        let single = |domain: RelayDomain| -> Result<Option<PathBuf>, ConfigError> {
            match &socket_dir {
                Some(dir) => Ok(Some(dir.join(defaults_for(domain)?.socket_file_name()))),
                None => Ok(socket.clone()),
            }
        };
        let (mut engine, relays) = match (self.target.domain(), file) {
            (Some(domain), Some(file)) if file.domain() != domain => {
                return Err(ConfigError::invalid(
                    "--config",
                    file.path(),
                    format!("a {domain} configuration (the file's relay.domain is {})", file.domain()),
                ));
            }
            (Some(domain), Some(file)) => {
                let (engine, relay) = resolve_file(file, single(domain)?.as_deref())?;
                (engine, vec![relay])
            }
            (Some(domain), None) => {
                let defaults = defaults_for(domain)?;
                let mut relay = RelayConfig::new(&defaults);
                if let Some(socket) = single(domain)? {
                    relay.socket = socket;
                }
                relay.finish(&defaults, false)?;
                (EngineConfig::default(), vec![relay])
            }
            (None, Some(file)) => {
                return Err(ConfigError::invalid(
                    "--config",
                    file.path(),
                    "a single domain: `all` runs the three domains' defaults (one file configures one domain)",
                ));
            }
            (None, None) => {
                let dir = socket_dir.or(socket).unwrap_or_else(|| PathBuf::from(DEV_DIR));
                let mut relays = Vec::with_capacity(3);
                for domain in [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution] {
                    let defaults = defaults_for(domain)?;
                    let mut relay = RelayConfig::new(&defaults);
                    relay.socket = dir.join(defaults.socket_file_name());
                    relay.finish(&defaults, false)?;
                    relays.push(relay);
                }
                (EngineConfig::default(), relays)
            }
        };
        if let Some(idle) = self.idle {
            engine.idle = idle;
        }
        if let Some(seconds) = self.metrics_interval {
            engine.metrics_interval = interval(seconds);
        }
        if let Some(addr) = self.metrics_addr {
            engine.metrics_addr = Some(addr);
        }
        engine.validate().map_err(|e| e.renamed(FLAGS))?;
        // Only a file pins the reactors of relay_dev.
        engine.check_cores_here().map_err(|e| match file {
            Some(file) => file.rename(e),
            None => e,
        })?;
        Ok((engine, relays))
    }
}

/// A file's relay: the defaults of its domain, the file, the `--socket` if any, finished.
fn resolve_file(
    file: &ConfigFile,
    socket: Option<&Path>,
) -> Result<(EngineConfig, RelayConfig), ConfigError> {
    let defaults = defaults_for(file.domain())?;
    let mut relay = RelayConfig::new(&defaults);
    let mut engine = EngineConfig::default();
    file.apply(&mut engine, &mut relay)?;
    if let Some(socket) = socket {
        relay.socket = socket.to_path_buf();
    }
    relay.finish(&defaults, file.sets_queue_bytes()).map_err(|e| file.rename(e))?;
    engine.validate().map_err(|e| file.rename(e))?;
    Ok((engine, relay))
}

fn interval(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

fn nonempty_path(path: &Path, setting: &str) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::invalid(setting, "\"\"", "a non-empty path"));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests;
