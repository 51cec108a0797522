//! Configuration files (TOML, legacy keys accepted) and the command-line flags of the relay
//! binaries, both resolved into an [`EngineConfig`] and [`RelayConfig`]s.
//!
//! One file configures one domain. The legacy tables load unchanged; Torq's own keys sit in
//! `[relay]` (per-relay settings), `[validation]` (check levels) and `[engine]` (settings of the
//! whole process):
//!
//! | table | legacy keys | new keys |
//! |---|---|---|
//! | `[relay]` | `domain` (required), `name`, `description` | `slow_consumer`, `queue_bytes`, `socket_mode`, `parent_mode`, `connect_uids`, `connect_gids`, `publisher_uids`, `audit_file`, `audit_fsync_ms` |
//! | `[transport]` | `mode` (only `"unix_socket"`), `path`, `address`*, `port`*, `use_topology`* | |
//! | `[validation]` | `checksum`, `audit`, `strict`, `max_message_size` | `sequence`, `close_on_reject` |
//! | `[performance]` | `buffer_size`, `max_connections`, `batch_size`*, `target_throughput`*, `monitoring`* | |
//! | `[engine]` | | `cores`, `stall_timeout_ms`, `flush_deadline_ms`, `metrics_interval`, `metrics_addr` |
//! | `[topics]`* | anything | |
//!
//! Keys marked * are accepted and logged as ignored. `config/*.toml` documents every key with
//! its default. A key that is neither legacy nor ours is [`ConfigError::UnknownKey`]; a value of
//! the wrong type or range is [`ConfigError::Invalid`] naming the dotted key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use toml::{Table, Value};

use crate::protocol::{ChecksumLevel, RelayDomain};

use super::config::{ConfigError, Cores, EngineConfig, RelayConfig};
use super::logic::{AnyLogic, MarketDataLogic, Policy, RelayLogic};
#[cfg(test)]
use super::logic::{ExecutionLogic, SignalLogic};

/// Where `relay_dev all` puts its sockets unless `-s DIR` says otherwise.
const DEV_DIR: &str = "/tmp/torq_dev/";

const DOMAIN_ALLOWED: &str = "1 (market data), 2 (signal), 3 (execution), or \"market_data\", \"signal\", \
                              \"execution\"";
const POLICY_ALLOWED: &str = "\"drop\", \"disconnect\" or \"block\"";
const CORES_ALLOWED: &str = "\"none\" (one unpinned reactor per available core), \"none:N\" (N unpinned \
                             reactors, 1 to 256) or a list of distinct core numbers, e.g. 0,1 (one reactor \
                             pinned to each)";

/// Setting names of [`RelayConfig::validate`] and [`EngineConfig::validate`] → file keys.
const FILE_KEYS: &[(&str, &str)] = &[
    ("max_message_size", "validation.max_message_size"),
    ("queue_bytes", "relay.queue_bytes"),
    ("audit_file", "relay.audit_file"),
    ("socket_mode", "relay.socket_mode"),
    ("cores", "engine.cores"),
    ("read_budget", "performance.buffer_size"),
    ("max_connections", "performance.max_connections"),
    ("metrics_addr", "engine.metrics_addr"),
];

/// Setting names of [`RelayConfig::validate`] and [`EngineConfig::validate`] → flags.
const FLAGS: &[(&str, &str)] = &[
    ("max_message_size", "--max-message-size"),
    ("queue_bytes", "--queue-bytes"),
    ("audit_file", "--audit-file"),
    ("cores", "--cores"),
    ("metrics_addr", "--metrics-addr"),
];

/// The defaults of a domain ([`RelayConfig::defaults`] for its logic).
///
/// # Errors
///
/// [`ConfigError::Invalid`] for [`RelayDomain::System`], which has no relay of its own.
pub fn defaults_for(domain: RelayDomain) -> Result<RelayConfig, ConfigError> {
    match domain {
        RelayDomain::MarketData | RelayDomain::Signal | RelayDomain::Execution => Ok(RelayConfig::new(
            &AnyLogic::for_domain(domain).map_or(MarketDataLogic.defaults(), |l| l.defaults()),
        )),
        RelayDomain::System => Err(ConfigError::invalid(
            "domain",
            domain,
            "market data, signal or execution (every relay forwards System frames)",
        )),
    }
}

/// Parses `--cores`: `none` (one unpinned reactor per available core), `none:N` (`N` unpinned
/// reactors) or a comma-separated list of distinct core numbers (one reactor pinned to each).
///
/// # Errors
///
/// [`ConfigError::Invalid`] naming `--cores` for an empty list, a duplicate or junk.
pub fn cores_from_str(s: &str) -> Result<Cores, ConfigError> {
    parse_cores(s, "--cores")
}

/// Reads a configuration file: one `[relay]` domain per file, legacy tables and keys accepted.
///
/// Starts from the domain's defaults, applies the file and validates the result. When the
/// audit level is on and the file names no audit file, the audit file is `<stem>.audit` beside
/// the socket (e.g. `/tmp/torq/execution.audit`), with a warning: legacy files predate the
/// setting. Ignored legacy keys are logged at info.
///
/// # Errors
///
/// [`ConfigError::File`] if the file cannot be read or is not TOML, [`ConfigError::UnknownKey`]
/// for a key that is neither legacy nor ours, [`ConfigError::Invalid`] naming the dotted key
/// of a wrong or inconsistent value.
pub fn load_file(path: &Path) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
    let file = path.display().to_string();
    let (engine, relay) = parse_file(&read(path)?, &file)?;
    let relay = finish_file(&file, relay)?;
    engine.validate().map_err(|e| rename(e, FILE_KEYS))?;
    Ok((engine, vec![relay]))
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
    /// reactors; a list like `0,1` = one reactor pinned to each core
    #[arg(long, value_name = "LIST|none|none:N", default_value = "none")]
    pub cores: String,
    /// What to do with a subscriber whose queue is full [default: the domain's: drop for market
    /// data, disconnect for signal, block for execution]
    #[arg(long, value_name = "POLICY", value_parser = ["drop", "disconnect", "block"])]
    pub slow_consumer: Option<String>,
    /// Subscriber queue bound in bytes, at least 2 × max message size [default: 4194304;
    /// 16777216 for execution]
    #[arg(long, value_name = "N")]
    pub queue_bytes: Option<usize>,
    /// Largest frame accepted in bytes, header included, at least 1065 [default: 131072]
    #[arg(long, value_name = "N")]
    pub max_message_size: Option<usize>,
    /// Audit file when the audit level is on (the execution default); without it the relay
    /// audits to `<socket dir>/execution.audit`
    #[arg(long, value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
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
    /// The flags applied over the defaults of `L`, validated.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the flag, the value and what is allowed.
    pub fn resolve<L: RelayLogic + Default>(&self) -> Result<(EngineConfig, RelayConfig), ConfigError> {
        let mut relay = RelayConfig::new(&L::default().defaults());
        let mut engine = EngineConfig { cores: cores_from_str(&self.cores)?, ..EngineConfig::default() };
        if let Some(socket) = &self.socket {
            relay.socket = nonempty_path(socket, "--socket")?;
        }
        if let Some(name) = &self.slow_consumer {
            relay.policy = Policy::from_name(name)
                .ok_or_else(|| ConfigError::invalid("--slow-consumer", name, POLICY_ALLOWED))?;
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
        engine.metrics_interval = interval(self.metrics_interval);
        engine.metrics_addr = self.metrics_addr;
        if let Some(file) = default_audit_file(&relay) {
            log::info!("{}: auditing to {} (set --audit-file to choose)", relay.name, file.display());
            relay.audit_file = Some(file);
        }
        relay.validate().map_err(|e| rename(e, FLAGS))?;
        engine.validate().map_err(|e| rename(e, FLAGS))?;
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
    /// Log level
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Log JSON lines instead of text
    #[arg(long)]
    pub json_logs: bool,
}

impl RelayArgs {
    /// The configuration file, loaded with [`load_file`].
    ///
    /// # Errors
    ///
    /// As [`load_file`].
    pub fn resolve(&self) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
        load_file(&self.config)
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
    /// Log level [default: info]
    #[arg(short = 'l', long, value_name = "LEVEL", value_enum, conflicts_with = "verbose")]
    pub log_level: Option<LogLevel>,
    /// Log at debug level
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Socket path; with `all`, the directory of the three sockets (market_data.sock,
    /// signals.sock, execution.sock) [default: the domain's; /tmp/torq_dev/ with `all`]
    #[arg(short = 's', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Seconds between stats lines in the log; 0 = off
    #[arg(long, value_name = "SECONDS")]
    pub metrics_interval: Option<u64>,
}

impl DevArgs {
    /// The log level: `debug` with `-v`, else `-l`, else `info`.
    pub fn level(&self) -> LogLevel {
        if self.verbose { LogLevel::Debug } else { self.log_level.unwrap_or(LogLevel::Info) }
    }

    /// The relays to run. A single domain comes from the configuration file if given, else
    /// from the domain's defaults, with `-s` replacing the socket; `all` is the three domains'
    /// defaults with their sockets in the `-s` directory. A relay whose audit level is on and
    /// that has no audit file gets `<socket dir>/<stem>.audit` (e.g. `execution.audit`), so
    /// `relay_dev all` runs out of the box.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the flag or file key, as [`load_file`] for the file.
    pub fn resolve(&self) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
        let (mut engine, mut relays) = match self.target.domain() {
            Some(domain) => {
                let (engine, mut relay) = match &self.config {
                    Some(path) => {
                        let file = path.display().to_string();
                        let (engine, relay) = parse_file(&read(path)?, &file)?;
                        if relay.domain != domain {
                            return Err(ConfigError::invalid(
                                "--config",
                                file,
                                format!(
                                    "a {domain} configuration (the file's relay.domain is {})",
                                    relay.domain
                                ),
                            ));
                        }
                        (engine, relay)
                    }
                    None => (default_engine(), defaults_for(domain)?),
                };
                if let Some(socket) = &self.socket {
                    relay.socket = nonempty_path(socket, "--socket")?;
                }
                (engine, vec![relay])
            }
            None => {
                if let Some(path) = &self.config {
                    return Err(ConfigError::invalid(
                        "--config",
                        path.display(),
                        "a single domain: `all` runs the three domains' defaults (one file configures one domain)",
                    ));
                }
                let dir = match &self.socket {
                    Some(dir) => nonempty_path(dir, "--socket")?,
                    None => PathBuf::from(DEV_DIR),
                };
                let mut relays = Vec::with_capacity(3);
                for domain in [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution] {
                    let mut relay = defaults_for(domain)?;
                    relay.socket = dir.join(socket_file_name(&relay));
                    relays.push(relay);
                }
                (default_engine(), relays)
            }
        };
        if let Some(seconds) = self.metrics_interval {
            engine.metrics_interval = interval(seconds);
        }
        for relay in &mut relays {
            if let Some(file) = default_audit_file(relay) {
                log::info!("{}: audit file {}", relay.name, file.display());
                relay.audit_file = Some(file);
            }
            relay.validate().map_err(|e| rename(e, FILE_KEYS))?;
        }
        engine.validate().map_err(|e| rename(e, FILE_KEYS))?;
        Ok((engine, relays))
    }
}

/// Settings before any file or flag: one unpinned reactor per available core (`--cores none`).
fn default_engine() -> EngineConfig {
    EngineConfig { cores: Cores::Unpinned(available_cores()), ..EngineConfig::default() }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(256)
}

fn interval(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// The file name of the domain's default socket: `market_data.sock`, `signals.sock`,
/// `execution.sock`.
fn socket_file_name(relay: &RelayConfig) -> PathBuf {
    let defaults = defaults_for(relay.domain).unwrap_or_else(|_| relay.clone());
    defaults.socket.file_name().map_or_else(|| PathBuf::from(format!("{}.sock", relay.name)), PathBuf::from)
}

/// `<socket dir>/<stem>.audit` when the audit level is on and no audit file is set.
fn default_audit_file(relay: &RelayConfig) -> Option<PathBuf> {
    if !relay.levels.audit || relay.audit_file.is_some() {
        return None;
    }
    let dir = relay.socket.parent().unwrap_or(Path::new(""));
    Some(dir.join(socket_file_name(relay).with_extension("audit")))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        file: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })
}

/// Renames the setting of a `validate` error to the key or flag the user wrote.
fn rename(error: ConfigError, names: &[(&str, &str)]) -> ConfigError {
    match error {
        ConfigError::Invalid { setting, value, allowed } => {
            let setting =
                names.iter().find(|(from, _)| *from == setting).map_or(setting, |(_, to)| (*to).to_string());
            ConfigError::Invalid { setting, value, allowed }
        }
        other => other,
    }
}

fn parse_cores(text: &str, setting: &str) -> Result<Cores, ConfigError> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("none") {
        return Ok(Cores::Unpinned(available_cores()));
    }
    if let Some(count) = trimmed.strip_prefix("none:") {
        return match count.trim().parse::<usize>() {
            Ok(count) if (1..=256).contains(&count) => Ok(Cores::Unpinned(count)),
            _ => Err(ConfigError::invalid(setting, format!("{text:?}"), CORES_ALLOWED)),
        };
    }
    let list = trimmed
        .split(',')
        .map(|part| part.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ConfigError::invalid(setting, format!("{text:?}"), CORES_ALLOWED))?;
    pinned(list, setting, &format!("{text:?}"))
}

fn pinned(list: Vec<usize>, setting: &str, shown: &str) -> Result<Cores, ConfigError> {
    if list.is_empty() || list.len() > 256 {
        return Err(ConfigError::invalid(setting, shown, format!("1 to 256 cores: {CORES_ALLOWED}")));
    }
    for (i, core) in list.iter().enumerate() {
        if list[..i].contains(core) {
            return Err(ConfigError::invalid(
                setting,
                shown,
                format!("distinct core numbers (core {core} is listed twice)"),
            ));
        }
    }
    Ok(Cores::Pinned(list))
}

fn nonempty_path(path: &Path, setting: &str) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::invalid(setting, "\"\"", "a non-empty path"));
    }
    Ok(path.to_path_buf())
}

/// The tables a file may have.
const TABLES: &[&str] = &["relay", "transport", "validation", "performance", "engine", "topics"];

/// One table of a file being read, for precise messages.
struct Section<'a> {
    file: &'a str,
    name: &'static str,
    table: &'a Table,
}

impl<'a> Section<'a> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    fn unknown(&self, key: &str) -> ConfigError {
        ConfigError::UnknownKey { file: self.file.to_string(), key: self.key(key) }
    }

    fn ignored(&self, key: &str, why: &str) {
        log::info!("{}: {} is ignored: {why}", self.file, self.key(key));
    }

    fn wrong(&self, key: &str, value: &Value, allowed: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.key(key), value, allowed)
    }

    fn bool(&self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        value.as_bool().ok_or_else(|| self.wrong(key, value, "true or false"))
    }

    fn str(&self, key: &str, value: &'a Value) -> Result<&'a str, ConfigError> {
        match value.as_str() {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.wrong(key, value, "a non-empty string")),
        }
    }

    fn integer(&self, key: &str, value: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
        value
            .as_integer()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.wrong(key, value, format!("an integer from {min} to {max}")))
    }

    fn size(&self, key: &str, value: &Value) -> Result<usize, ConfigError> {
        let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX).min(i64::MAX.unsigned_abs());
        let size = self.integer(key, value, 0, max)?;
        usize::try_from(size).map_err(|_| self.wrong(key, value, format!("an integer from 0 to {max}")))
    }

    fn millis(&self, key: &str, value: &Value, min: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.integer(key, value, min, 24 * 3600 * 1000)?))
    }

    fn mode(&self, key: &str, value: &Value) -> Result<u32, ConfigError> {
        const ALLOWED: &str = "permission bits 0 to 0777: a string of octal digits like \"0660\", or an \
                               octal integer like 0o660";
        let mode = match value {
            Value::String(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                u32::from_str_radix(digits, 8).ok().filter(|_| !digits.is_empty() && !digits.starts_with('+'))
            }
            Value::Integer(n) => u32::try_from(*n).ok(),
            _ => None,
        };
        mode.filter(|m| m & !0o777 == 0).ok_or_else(|| self.wrong(key, value, ALLOWED))
    }

    fn ids(&self, key: &str, value: &Value) -> Result<Vec<u32>, ConfigError> {
        const ALLOWED: &str =
            "a non-empty array of ids from 0 to 4294967295 (leave the key out to allow any)";
        let list = value
            .as_array()
            .filter(|list| !list.is_empty())
            .ok_or_else(|| self.wrong(key, value, ALLOWED))?;
        list.iter()
            .map(|id| id.as_integer().and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.wrong(key, value, ALLOWED))
    }
}

/// Reads a file's text: the domain first (it chooses the defaults), then every table. The
/// result is not validated yet.
fn parse_file(text: &str, file: &str) -> Result<(EngineConfig, RelayConfig), ConfigError> {
    let root: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File { file: file.to_string(), message: e.to_string() })?;
    for (name, value) in &root {
        if !TABLES.contains(&name.as_str()) {
            return Err(ConfigError::UnknownKey { file: file.to_string(), key: name.clone() });
        }
        if !value.is_table() {
            return Err(ConfigError::invalid(name.as_str(), value, format!("a table: [{name}]")));
        }
    }
    let empty = Table::new();
    let section = |name: &'static str| Section {
        file,
        name,
        table: root.get(name).and_then(Value::as_table).unwrap_or(&empty),
    };

    let relay_section = section("relay");
    let domain = match relay_section.table.get("domain") {
        Some(value) => {
            domain_from_value(value).ok_or_else(|| relay_section.wrong("domain", value, DOMAIN_ALLOWED))?
        }
        None => return Err(ConfigError::invalid("relay.domain", "(missing)", DOMAIN_ALLOWED)),
    };
    let mut relay = defaults_for(domain)?;
    let mut engine = default_engine();
    apply_relay(&relay_section, &mut relay)?;
    apply_transport(&section("transport"), &mut relay)?;
    apply_validation(&section("validation"), &mut relay)?;
    apply_performance(&section("performance"), &mut engine)?;
    apply_engine(&section("engine"), &mut engine)?;
    if root.contains_key("topics") {
        log::info!(
            "{file}: [topics] is ignored: subscribers choose what they receive with a Subscribe frame"
        );
    }
    Ok((engine, relay))
}

/// Defaults the audit file of a file's relay (legacy files predate the key) and validates it.
fn finish_file(file: &str, mut relay: RelayConfig) -> Result<RelayConfig, ConfigError> {
    if let Some(audit_file) = default_audit_file(&relay) {
        log::warn!(
            "{file}: the audit level is on and relay.audit_file is not set; auditing to {}",
            audit_file.display()
        );
        relay.audit_file = Some(audit_file);
    }
    relay.validate().map_err(|e| rename(e, FILE_KEYS))?;
    Ok(relay)
}

/// `1`/`2`/`3` as legacy files write them, or a name.
fn domain_from_value(value: &Value) -> Option<RelayDomain> {
    match value {
        Value::Integer(1) => Some(RelayDomain::MarketData),
        Value::Integer(2) => Some(RelayDomain::Signal),
        Value::Integer(3) => Some(RelayDomain::Execution),
        Value::String(name) => match name.to_ascii_lowercase().as_str() {
            "market_data" | "market-data" | "marketdata" => Some(RelayDomain::MarketData),
            "signal" | "signals" => Some(RelayDomain::Signal),
            "execution" => Some(RelayDomain::Execution),
            _ => None,
        },
        _ => None,
    }
}

fn apply_relay(s: &Section<'_>, relay: &mut RelayConfig) -> Result<(), ConfigError> {
    for (key, value) in s.table {
        match key.as_str() {
            "domain" | "description" => {}
            "name" => relay.name = s.str(key, value)?.to_string(),
            "slow_consumer" => {
                relay.policy = value
                    .as_str()
                    .and_then(Policy::from_name)
                    .ok_or_else(|| s.wrong(key, value, POLICY_ALLOWED))?;
            }
            "queue_bytes" => relay.queue_bytes = s.size(key, value)?,
            "socket_mode" => relay.socket_mode = s.mode(key, value)?,
            "parent_mode" => relay.parent_mode = s.mode(key, value)?,
            "connect_uids" => relay.connect_uids = Some(s.ids(key, value)?),
            "connect_gids" => relay.connect_gids = Some(s.ids(key, value)?),
            "publisher_uids" => relay.publisher_uids = Some(s.ids(key, value)?),
            "audit_file" => relay.audit_file = Some(PathBuf::from(s.str(key, value)?)),
            "audit_fsync_ms" => relay.audit_fsync = s.millis(key, value, 0)?,
            _ => return Err(s.unknown(key)),
        }
    }
    Ok(())
}

fn apply_transport(s: &Section<'_>, relay: &mut RelayConfig) -> Result<(), ConfigError> {
    for (key, value) in s.table {
        match key.as_str() {
            "mode" => {
                if value.as_str() != Some("unix_socket") {
                    return Err(s.wrong(
                        key,
                        value,
                        "only \"unix_socket\" (the relay serves Unix stream sockets)",
                    ));
                }
            }
            "path" => relay.socket = PathBuf::from(s.str(key, value)?),
            "address" | "port" => s.ignored(key, "the relay serves Unix sockets only"),
            "use_topology" => {
                if s.bool(key, value)? {
                    s.ignored(key, "the socket is transport.path");
                }
            }
            _ => return Err(s.unknown(key)),
        }
    }
    Ok(())
}

fn apply_validation(s: &Section<'_>, relay: &mut RelayConfig) -> Result<(), ConfigError> {
    let mut strict = None;
    for (key, value) in s.table {
        match key.as_str() {
            "checksum" => {
                relay.levels.checksum = match value {
                    Value::Boolean(true) => ChecksumLevel::Verify,
                    Value::Boolean(false) => ChecksumLevel::Off,
                    Value::String(level) if level == "off" => ChecksumLevel::Off,
                    Value::String(level) if level == "verify" => ChecksumLevel::Verify,
                    Value::String(level) if level == "required" => ChecksumLevel::Required,
                    _ => {
                        return Err(s.wrong(
                            key,
                            value,
                            "true (verify), false (off), or \"off\", \"verify\", \"required\"",
                        ));
                    }
                };
            }
            "strict" => strict = Some(s.bool(key, value)?),
            "audit" => relay.levels.audit = s.bool(key, value)?,
            "sequence" => relay.levels.sequence = s.bool(key, value)?,
            "close_on_reject" => relay.levels.close_on_reject = s.bool(key, value)?,
            "max_message_size" => relay.max_message_size = s.size(key, value)?,
            _ => return Err(s.unknown(key)),
        }
    }
    // Applied after `checksum`, whatever the order of the keys.
    if let Some(strict) = strict {
        relay.levels.strict_types = strict;
        if strict {
            relay.levels.checksum = ChecksumLevel::Required;
        }
    }
    Ok(())
}

fn apply_performance(s: &Section<'_>, engine: &mut EngineConfig) -> Result<(), ConfigError> {
    for (key, value) in s.table {
        match key.as_str() {
            "buffer_size" => engine.read_budget = s.size(key, value)?,
            "max_connections" => engine.max_connections = s.size(key, value)?,
            "batch_size" => s.ignored(key, "batching is adaptive"),
            "target_throughput" | "monitoring" => s.ignored(key, "not used by this relay"),
            _ => return Err(s.unknown(key)),
        }
    }
    Ok(())
}

fn apply_engine(s: &Section<'_>, engine: &mut EngineConfig) -> Result<(), ConfigError> {
    for (key, value) in s.table {
        match key.as_str() {
            "cores" => {
                let setting = s.key(key);
                engine.cores = match value {
                    Value::String(text) => parse_cores(text, &setting)?,
                    Value::Array(list) => {
                        let cores = list
                            .iter()
                            .map(|core| core.as_integer().and_then(|n| usize::try_from(n).ok()))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| s.wrong(key, value, CORES_ALLOWED))?;
                        pinned(cores, &setting, &value.to_string())?
                    }
                    _ => return Err(s.wrong(key, value, CORES_ALLOWED)),
                };
            }
            "stall_timeout_ms" => engine.stall_timeout = s.millis(key, value, 1)?,
            "flush_deadline_ms" => engine.flush_deadline = s.millis(key, value, 0)?,
            "metrics_interval" => engine.metrics_interval = interval(s.integer(key, value, 0, 24 * 3600)?),
            "metrics_addr" => {
                let addr = value.as_str().and_then(|text| text.parse::<SocketAddr>().ok());
                engine.metrics_addr = Some(addr.ok_or_else(|| {
                    s.wrong(key, value, "a loopback address and port, e.g. \"127.0.0.1:9100\"")
                })?);
            }
            _ => return Err(s.unknown(key)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Writes `text` to a fresh file under the temp directory, loads it and removes it.
    fn load(text: &str) -> Result<(EngineConfig, RelayConfig), ConfigError> {
        let path = temp_file(text);
        let result = load_file(&path);
        std::fs::remove_file(&path).unwrap();
        result.map(|(engine, mut relays)| {
            assert_eq!(relays.len(), 1);
            (engine, relays.remove(0))
        })
    }

    fn temp_file(text: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("torq-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
    }

    /// The setting named by an `Invalid` error.
    fn setting(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("not Invalid: {other:?}"),
        }
    }

    const MINIMAL: &str = "[relay]\ndomain = 1\n";

    #[test]
    fn examples_load_as_the_domain_defaults() {
        for (file, domain, socket, policy) in [
            ("market_data.toml", RelayDomain::MarketData, "/tmp/torq/market_data.sock", Policy::Drop),
            ("signal.toml", RelayDomain::Signal, "/tmp/torq/signals.sock", Policy::Disconnect),
            ("execution.toml", RelayDomain::Execution, "/tmp/torq/execution.sock", Policy::Block),
        ] {
            let (engine, relays) = load_file(&example(file)).unwrap();
            let [relay] = relays.as_slice() else { panic!("{file}: one relay expected") };
            assert_eq!(
                (relay.domain, relay.socket.as_path(), relay.policy),
                (domain, Path::new(socket), policy)
            );
            // The examples spell out every default.
            let mut expected = defaults_for(domain).unwrap();
            if domain == RelayDomain::Execution {
                expected.audit_file = Some(PathBuf::from("/tmp/torq/execution.audit"));
            }
            assert_eq!(*relay, expected, "{file}");
            assert_eq!(engine, default_engine(), "{file}");
        }
    }

    #[test]
    fn legacy_only_file_loads() {
        let (engine, relay) = load(
            r#"
            [relay]
            domain = 3
            name = "execution_relay"
            description = "legacy execution relay"

            [transport]
            mode = "unix_socket"
            path = "/tmp/legacy/execution.sock"
            address = "127.0.0.1"
            port = 9003
            use_topology = true

            [validation]
            checksum = true
            audit = true
            strict = true
            max_message_size = 65536

            [performance]
            buffer_size = 65536
            max_connections = 100
            batch_size = 64
            target_throughput = 100000
            monitoring = true

            [topics]
            default = "execution"
            available = ["orders", "fills"]
            [topics.routing]
            orders = 3
            "#,
        )
        .unwrap();
        assert_eq!(relay.domain, RelayDomain::Execution);
        assert_eq!(relay.name, "execution_relay");
        assert_eq!(relay.socket, Path::new("/tmp/legacy/execution.sock"));
        assert_eq!(relay.levels.checksum, ChecksumLevel::Required);
        assert!(relay.levels.strict_types && relay.levels.audit);
        assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/tmp/legacy/execution.audit")));
        assert_eq!(relay.max_message_size, 65536);
        assert_eq!(relay.policy, Policy::Block);
        assert_eq!((engine.read_budget, engine.max_connections), (65536, 100));
    }

    #[test]
    fn domains_by_number_and_name() {
        for (value, domain) in [
            ("1", RelayDomain::MarketData),
            ("2", RelayDomain::Signal),
            ("3", RelayDomain::Execution),
            ("\"market_data\"", RelayDomain::MarketData),
            ("\"market-data\"", RelayDomain::MarketData),
            ("\"MarketData\"", RelayDomain::MarketData),
            ("\"signals\"", RelayDomain::Signal),
            ("\"signal\"", RelayDomain::Signal),
            ("\"execution\"", RelayDomain::Execution),
        ] {
            let (_, relay) = load(&format!("[relay]\ndomain = {value}\n")).unwrap();
            assert_eq!(relay.domain, domain, "{value}");
        }
        for value in ["0", "4", "\"system\"", "true"] {
            let error = load(&format!("[relay]\ndomain = {value}\n")).unwrap_err();
            assert_eq!(setting(error), "relay.domain", "{value}");
        }
        assert_eq!(setting(load("[transport]\nmode = \"unix_socket\"\n").unwrap_err()), "relay.domain");
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("[relay]\ndomain = 1\ncolour = \"red\"\n", "relay.colour"),
            ("[relay]\ndomain = 1\n[performance]\nturbo = true\n", "performance.turbo"),
            ("[relay]\ndomain = 1\n[engine]\nqueue_bytes = 1\n", "engine.queue_bytes"),
            ("[relay]\ndomain = 1\n[network]\nx = 1\n", "network"),
            ("verbose = true\n[relay]\ndomain = 1\n", "verbose"),
        ] {
            match load(text).unwrap_err() {
                ConfigError::UnknownKey { file, key: named } => {
                    assert!(file.ends_with(".toml"), "{file}");
                    assert_eq!(named, key);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn only_unix_sockets() {
        let error = load("[relay]\ndomain = 2\n[transport]\nmode = \"tcp\"\n").unwrap_err();
        assert!(matches!(&error, ConfigError::Invalid { setting, value, allowed }
            if setting == "transport.mode" && value == "\"tcp\"" && allowed.contains("unix_socket")));
        assert_eq!(
            error.to_string(),
            "transport.mode = \"tcp\": only \"unix_socket\" (the relay serves Unix stream sockets)"
        );
    }

    #[test]
    fn sizes_are_checked() {
        let error = load("[relay]\ndomain = 1\nqueue_bytes = 200000\n").unwrap_err();
        assert_eq!(setting(error), "relay.queue_bytes");
        let error = load("[relay]\ndomain = 1\n[validation]\nmax_message_size = 1000\n").unwrap_err();
        assert_eq!(setting(error), "validation.max_message_size");
        let (_, relay) = load("[relay]\ndomain = 1\n[validation]\nmax_message_size = 1065\n").unwrap();
        assert_eq!(relay.max_message_size, 1065);
        let error = load("[relay]\ndomain = 1\n[performance]\nbuffer_size = 100\n").unwrap_err();
        assert_eq!(setting(error), "performance.buffer_size");
        let error = load("[relay]\ndomain = 1\n[performance]\nmax_connections = 0\n").unwrap_err();
        assert_eq!(setting(error), "performance.max_connections");
    }

    #[test]
    fn wrong_types_name_the_key() {
        for (extra, key) in [
            ("[relay]\nqueue_bytes = \"big\"", "relay.queue_bytes"),
            ("[relay]\nqueue_bytes = -1", "relay.queue_bytes"),
            ("[relay]\nslow_consumer = \"queue\"", "relay.slow_consumer"),
            ("[relay]\nsocket_mode = \"0999\"", "relay.socket_mode"),
            ("[relay]\nsocket_mode = 0o1777", "relay.socket_mode"),
            ("[relay]\nparent_mode = true", "relay.parent_mode"),
            ("[relay]\nconnect_uids = [-1]", "relay.connect_uids"),
            ("[relay]\npublisher_uids = []", "relay.publisher_uids"),
            ("[relay]\naudit_file = \"\"", "relay.audit_file"),
            ("[relay]\nname = 7", "relay.name"),
            ("[transport]\npath = 1", "transport.path"),
            ("[transport]\nuse_topology = \"yes\"", "transport.use_topology"),
            ("[validation]\nchecksum = 1", "validation.checksum"),
            ("[validation]\nstrict = \"yes\"", "validation.strict"),
            ("[engine]\ncores = [0, 0]", "engine.cores"),
            ("[engine]\ncores = \"0,x\"", "engine.cores"),
            ("[engine]\ncores = []", "engine.cores"),
            ("[engine]\ncores = 2", "engine.cores"),
            ("[engine]\nstall_timeout_ms = 0", "engine.stall_timeout_ms"),
            ("[engine]\nmetrics_interval = 1.5", "engine.metrics_interval"),
            ("[engine]\nmetrics_addr = \"localhost\"", "engine.metrics_addr"),
            ("[engine]\nmetrics_addr = \"0.0.0.0:9100\"", "engine.metrics_addr"),
            ("relay = 1", "relay"),
        ] {
            // `[relay]` comes first in the text; a second `[relay]` header would be a TOML error.
            let text = match extra.strip_prefix("[relay]\n") {
                Some(rest) => format!("[relay]\ndomain = 1\n{rest}\n"),
                None if extra.starts_with('[') => format!("{MINIMAL}{extra}\n"),
                None => format!("{extra}\n"),
            };
            assert_eq!(setting(load(&text).unwrap_err()), key, "{text}");
        }
    }

    #[test]
    fn new_keys_apply() {
        let (engine, relay) = load(
            r#"
            [relay]
            domain = "signal"
            slow_consumer = "block"
            queue_bytes = 1048576
            socket_mode = "0600"
            parent_mode = 0o700
            connect_uids = [1000, 1001]
            connect_gids = [100]
            publisher_uids = [1000]
            audit_file = "/var/tmp/signal.audit"
            audit_fsync_ms = 250

            [validation]
            audit = true
            sequence = true
            close_on_reject = true
            checksum = "off"

            [engine]
            cores = [2, 3]
            stall_timeout_ms = 1500
            flush_deadline_ms = 0
            metrics_interval = 10
            metrics_addr = "127.0.0.1:9100"
            "#,
        )
        .unwrap();
        assert_eq!((relay.policy, relay.queue_bytes), (Policy::Block, 1 << 20));
        assert_eq!((relay.socket_mode, relay.parent_mode), (0o600, 0o700));
        assert_eq!(relay.connect_uids, Some(vec![1000, 1001]));
        assert_eq!(relay.connect_gids, Some(vec![100]));
        assert_eq!(relay.publisher_uids, Some(vec![1000]));
        assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/var/tmp/signal.audit")));
        assert_eq!(relay.audit_fsync, Duration::from_millis(250));
        assert_eq!(
            relay.levels,
            super::super::Levels {
                checksum: ChecksumLevel::Off,
                sequence: true,
                audit: true,
                close_on_reject: true,
                strict_types: false
            }
        );
        assert_eq!(engine.cores, Cores::Pinned(vec![2, 3]));
        assert_eq!(
            (engine.stall_timeout, engine.flush_deadline),
            (Duration::from_millis(1500), Duration::ZERO)
        );
        assert_eq!(engine.metrics_interval, Some(Duration::from_secs(10)));
        assert_eq!(engine.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));

        let (engine, _) =
            load("[relay]\ndomain = 1\n[engine]\ncores = \"0, 1\"\nmetrics_interval = 0\n").unwrap();
        assert_eq!((engine.cores, engine.metrics_interval), (Cores::Pinned(vec![0, 1]), None));
    }

    #[test]
    fn strict_wins_over_checksum_in_any_order() {
        for validation in ["checksum = false\nstrict = true", "strict = true\nchecksum = false"] {
            let (_, relay) = load(&format!("{MINIMAL}[validation]\n{validation}\n")).unwrap();
            assert_eq!(relay.levels.checksum, ChecksumLevel::Required);
            assert!(relay.levels.strict_types);
        }
        let (_, relay) = load(&format!("{MINIMAL}[validation]\nchecksum = true\nstrict = false\n")).unwrap();
        assert_eq!((relay.levels.checksum, relay.levels.strict_types), (ChecksumLevel::Verify, false));
    }

    #[test]
    fn unreadable_or_malformed_files() {
        let missing = std::env::temp_dir().join(format!("torq-config-{}-missing.toml", std::process::id()));
        assert!(matches!(load_file(&missing), Err(ConfigError::File { .. })));
        assert!(matches!(load("[relay\ndomain = 1\n"), Err(ConfigError::File { .. })));
    }

    #[test]
    fn cores_flag() {
        assert!(matches!(cores_from_str("none").unwrap(), Cores::Unpinned(n) if n >= 1));
        assert_eq!(cores_from_str("0,1").unwrap(), Cores::Pinned(vec![0, 1]));
        assert_eq!(cores_from_str(" 3 , 2 ").unwrap(), Cores::Pinned(vec![3, 2]));
        assert_eq!(cores_from_str("none:2").unwrap(), Cores::Unpinned(2));
        for bad in
            ["", "0,0", "1,2,1", "a", "1,,2", "-1", "1;2", "0,1,", "all", "none:0", "none:257", "none:x"]
        {
            assert_eq!(setting(cores_from_str(bad).unwrap_err()), "--cores", "{bad:?}");
        }
    }

    #[test]
    fn domain_flags() {
        let args = DomainArgs::try_parse_from(["market_data_relay"]).unwrap();
        let (engine, relay) = args.resolve::<MarketDataLogic>().unwrap();
        assert_eq!(relay, RelayConfig::new(&MarketDataLogic.defaults()));
        assert_eq!(engine, default_engine());
        assert_eq!(args.log_level, LogLevel::Info);

        let args = DomainArgs::try_parse_from([
            "signal_relay",
            "--slow-consumer",
            "block",
            "--socket",
            "/tmp/x/s.sock",
            "--cores",
            "0,1",
            "--queue-bytes",
            "1000000",
            "--max-message-size",
            "2000",
            "--metrics-interval",
            "5",
            "--metrics-addr",
            "127.0.0.1:9101",
            "-l",
            "debug",
        ])
        .unwrap();
        let (engine, relay) = args.resolve::<SignalLogic>().unwrap();
        assert_eq!((relay.domain, relay.policy), (RelayDomain::Signal, Policy::Block));
        assert_eq!(relay.socket, Path::new("/tmp/x/s.sock"));
        assert_eq!((relay.queue_bytes, relay.max_message_size), (1_000_000, 2000));
        assert_eq!(engine.cores, Cores::Pinned(vec![0, 1]));
        assert_eq!(engine.metrics_interval, Some(Duration::from_secs(5)));
        assert_eq!(engine.metrics_addr, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(args.log_level.filter(), log::LevelFilter::Debug);

        let resolve = |flags: &[&str]| {
            DomainArgs::try_parse_from(std::iter::once("relay").chain(flags.iter().copied()))
                .unwrap()
                .resolve::<MarketDataLogic>()
        };
        assert_eq!(setting(resolve(&["--queue-bytes", "1000"]).unwrap_err()), "--queue-bytes");
        assert_eq!(setting(resolve(&["--max-message-size", "1000"]).unwrap_err()), "--max-message-size");
        assert_eq!(setting(resolve(&["--cores", "1,1"]).unwrap_err()), "--cores");
        assert_eq!(setting(resolve(&["--metrics-addr", "10.0.0.1:9100"]).unwrap_err()), "--metrics-addr");
        assert!(DomainArgs::try_parse_from(["relay", "--slow-consumer", "queue"]).is_err());

        // Execution audits by default: without --audit-file it audits beside its socket.
        let args = DomainArgs::try_parse_from(["execution_relay"]).unwrap();
        let (_, relay) = args.resolve::<ExecutionLogic>().unwrap();
        assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/tmp/torq/execution.audit")));
        let args = DomainArgs::try_parse_from(["execution_relay", "--audit-file", "/tmp/e.audit"]).unwrap();
        assert_eq!(args.resolve::<ExecutionLogic>().unwrap().1.policy, Policy::Block);
    }

    #[test]
    fn relay_flags() {
        let args = RelayArgs::try_parse_from(["relay", "-c", "x.toml", "-l", "warn", "--json-logs"]).unwrap();
        assert_eq!(
            (args.config.as_path(), args.log_level, args.json_logs),
            (Path::new("x.toml"), LogLevel::Warn, true)
        );
        assert!(RelayArgs::try_parse_from(["relay"]).is_err());
        let args = RelayArgs::try_parse_from(["relay", "--config", example("signal.toml").to_str().unwrap()])
            .unwrap();
        assert_eq!(args.resolve().unwrap().1[0].domain, RelayDomain::Signal);
    }

    #[test]
    fn dev_all_runs_three_relays_in_one_directory() {
        let (engine, relays) = DevArgs::try_parse_from(["relay_dev", "all"]).unwrap().resolve().unwrap();
        let sockets: Vec<_> = relays.iter().map(|r| (r.domain, r.socket.clone())).collect();
        assert_eq!(
            sockets,
            [
                (RelayDomain::MarketData, PathBuf::from("/tmp/torq_dev/market_data.sock")),
                (RelayDomain::Signal, PathBuf::from("/tmp/torq_dev/signals.sock")),
                (RelayDomain::Execution, PathBuf::from("/tmp/torq_dev/execution.sock")),
            ]
        );
        assert_eq!(relays[2].audit_file.as_deref(), Some(Path::new("/tmp/torq_dev/execution.audit")));
        assert_eq!((relays[0].audit_file.as_ref(), relays[1].audit_file.as_ref()), (None, None));
        assert_eq!(engine.metrics_interval, None);

        let args =
            DevArgs::try_parse_from(["relay_dev", "all", "-s", "/run/t", "--metrics-interval", "2", "-v"])
                .unwrap();
        let (engine, relays) = args.resolve().unwrap();
        assert_eq!(relays[1].socket, Path::new("/run/t/signals.sock"));
        assert_eq!(relays[2].audit_file.as_deref(), Some(Path::new("/run/t/execution.audit")));
        assert_eq!(engine.metrics_interval, Some(Duration::from_secs(2)));
        assert_eq!(args.level(), LogLevel::Debug);

        let args = DevArgs::try_parse_from(["relay_dev", "all", "-c", "x.toml"]).unwrap();
        assert_eq!(setting(args.resolve().unwrap_err()), "--config");
    }

    #[test]
    fn dev_single_domain() {
        let args = DevArgs::try_parse_from(["relay_dev", "execution", "-s", "/tmp/d/e.sock"]).unwrap();
        let (_, relays) = args.resolve().unwrap();
        assert_eq!(relays.len(), 1);
        assert_eq!(relays[0].socket, Path::new("/tmp/d/e.sock"));
        assert_eq!(relays[0].audit_file.as_deref(), Some(Path::new("/tmp/d/execution.audit")));
        assert_eq!(args.level(), LogLevel::Info);

        let args = DevArgs::try_parse_from(["relay_dev", "market_data", "-l", "trace"]).unwrap();
        let (_, relays) = args.resolve().unwrap();
        assert_eq!(relays, [RelayConfig::new(&MarketDataLogic.defaults())]);
        assert_eq!(args.level(), LogLevel::Trace);

        // A file for the named domain, its socket replaced by -s.
        let signal = example("signal.toml");
        let args = DevArgs::try_parse_from([
            "relay_dev",
            "signal",
            "-c",
            signal.to_str().unwrap(),
            "-s",
            "/tmp/s.sock",
        ])
        .unwrap();
        let (_, relays) = args.resolve().unwrap();
        assert_eq!(
            (relays[0].domain, relays[0].socket.as_path()),
            (RelayDomain::Signal, Path::new("/tmp/s.sock"))
        );

        // A file for another domain.
        let args =
            DevArgs::try_parse_from(["relay_dev", "execution", "-c", signal.to_str().unwrap()]).unwrap();
        assert_eq!(setting(args.resolve().unwrap_err()), "--config");

        assert!(DevArgs::try_parse_from(["relay_dev", "signal", "-v", "-l", "warn"]).is_err());
        assert!(DevArgs::try_parse_from(["relay_dev", "system"]).is_err());
    }

    #[test]
    fn flag_definitions_are_consistent() {
        use clap::CommandFactory;
        DomainArgs::command().debug_assert();
        RelayArgs::command().debug_assert();
        DevArgs::command().debug_assert();
    }

    #[test]
    fn system_has_no_defaults() {
        assert!(defaults_for(RelayDomain::System).is_err());
    }
}
