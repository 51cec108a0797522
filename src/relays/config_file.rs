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
use super::logic::{ExecutionLogic, MarketDataLogic, Policy, RelayLogic, SignalLogic};

/// Where `relay_dev all` puts its sockets unless `-s DIR` says otherwise.
const DEV_DIR: &str = "/tmp/torq_dev/";

const DOMAIN_ALLOWED: &str = "1 (market data), 2 (signal), 3 (execution), or \"market_data\", \"signal\", \
                              \"execution\"";
const POLICY_ALLOWED: &str = "\"drop\", \"disconnect\" or \"block\"";
const CORES_ALLOWED: &str = "\"none\" (one unpinned reactor per available core) or a list of distinct core \
                             numbers, e.g. 0,1 (one reactor pinned to each)";

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
        RelayDomain::MarketData => Ok(RelayConfig::defaults::<MarketDataLogic>()),
        RelayDomain::Signal => Ok(RelayConfig::defaults::<SignalLogic>()),
        RelayDomain::Execution => Ok(RelayConfig::defaults::<ExecutionLogic>()),
        RelayDomain::System => Err(ConfigError::invalid(
            "domain",
            domain,
            "market data, signal or execution (every relay forwards System frames)",
        )),
    }
}

/// Parses `--cores`: `none` (one unpinned reactor per available core) or a comma-separated
/// list of distinct core numbers (one reactor pinned to each).
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
    /// Reactor cores: `none` = one unpinned reactor per available core; a list like `0,1` = one
    /// reactor pinned to each core
    #[arg(long, value_name = "LIST|none", default_value = "none")]
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
    /// Audit file; required when the audit level is on (the execution default)
    #[arg(long, value_name = "PATH")]
    pub audit_file: Option<PathBuf>,
    /// Seconds between stats lines in the log; 0 = off
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub metrics_interval: u64,
    /// Serve Prometheus metrics on this loopback address, e.g. 127.0.0.1:9100 [default: off]
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
    pub fn resolve<L: RelayLogic>(&self) -> Result<(EngineConfig, RelayConfig), ConfigError> {
        let mut relay = RelayConfig::defaults::<L>();
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
