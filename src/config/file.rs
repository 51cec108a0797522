//! Configuration files: TOML, one domain per file, the legacy relays' tables and keys accepted,
//! read with serde into one struct per table.
//!
//! Reading a file ([`ConfigFile::load`], or [`ConfigFile::parse`] of its text) checks every key
//! and type; applying it ([`ConfigFile::apply`]) is a separate step onto settings that start
//! from the domain's defaults. Torq's own keys sit in `[relay]` (per-relay settings),
//! `[validation]` (check levels), `[shm]` (shared-memory delivery, PROTOCOL.md §7) and
//! `[engine]` (settings of the whole process):
//!
//! | table | legacy keys | new keys |
//! |---|---|---|
//! | `[relay]` | `domain` (required), `name`, `description`*, `max_connections` (as `performance.max_connections`) | `slow_consumer`, `queue_bytes`, `socket_mode`, `parent_mode`, `connect_uids`, `connect_gids`, `publisher_uids`, `audit_file`, `audit_fsync_ms` |
//! | `[transport]` | `mode` (only `"unix_socket"`), `path`, `buffer_size` (`SO_SNDBUF` and `SO_RCVBUF` of every accepted connection), `address`*, `port`*, `use_topology`* | |
//! | `[validation]` | `checksum`, `audit`, `strict`, `max_message_size` | `sequence`, `close_on_reject` |
//! | `[performance]` | `buffer_size` (bytes read from one connection per loop turn), `max_connections`, `batch_size`*, `target_throughput`*, `monitoring`*, `max_latency_ms`* | |
//! | `[shm]` | | `enabled` (`false` turns it off), `bytes` (the broadcast log's ring; MarketData and Signal only) |
//! | `[engine]` | | `cores`, `idle`, `stall_timeout_ms`, `flush_deadline_ms`, `metrics_interval`, `metrics_addr` |
//! | `[logging]` | `level`, `format` (`"json"` or `"text"`), `file` | |
//! | `[topics]`* | anything (e.g. `cleanup_interval_ms`) | |
//!
//! Keys marked * are accepted and logged at info as ignored. `config/*.toml` documents every
//! key with its default. A key that is neither legacy nor ours is [`ConfigError::UnknownKey`]; a
//! value of the wrong type or range is [`ConfigError::Invalid`] naming the file and the dotted
//! key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_path_to_error::Segment;
use toml::Value;

use crate::protocol::{ChecksumLevel, RelayDomain};

use super::{CORES_ALLOWED, ConfigError, Cores, EngineConfig, Policy, RelayConfig};

const DOMAIN_ALLOWED: &str = "1 (market data), 2 (signal), 3 (execution), or \"market_data\", \"signal\", \
                              \"execution\"";

/// A configuration file, read and checked, not yet applied to any settings.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    file: String,
    domain: RelayDomain,
    tables: Tables,
}

/// How to log, from a file's `[logging]` table; `None` where the file does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logging {
    /// `level`: the log level.
    pub level: Option<log::LevelFilter>,
    /// `format`: `"json"` (one JSON object per line) is `true`, `"text"` is `false`.
    pub json: Option<bool>,
    /// `file`: append the log to this file instead of writing it to stderr.
    pub file: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads a configuration file and checks its keys and types ([`ConfigFile::parse`] of its
    /// text, named by its path).
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] if the file cannot be read, otherwise as [`ConfigFile::parse`].
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { file: file.clone(), message: format!("cannot read: {e}") })?;
        Self::parse(&text, &file)
    }

    /// Checks the keys and types of a configuration file's text; `file` names it in errors and
    /// logs ([`ConfigFile::path`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::File`] if the text is not TOML,
    /// [`ConfigError::UnknownKey`] for a key that is neither legacy nor ours,
    /// [`ConfigError::Invalid`] naming the file and the dotted key of a wrong value, or of a
    /// missing `relay.domain`.
    ///
    /// # Examples
    ///
    /// ```
    /// use torq::config::{ConfigError, ConfigFile};
    /// use torq::protocol::RelayDomain;
    /// let file = ConfigFile::parse("[relay]\ndomain = \"signal\"\n", "signal.toml")?;
    /// assert_eq!((file.domain(), file.path()), (RelayDomain::Signal, "signal.toml"));
    /// let error = ConfigFile::parse("[relay]\ndomain = 2\ncolour = 1\n", "signal.toml").unwrap_err();
    /// assert!(error.to_string().starts_with("signal.toml: unknown key `relay.colour`"), "{error}");
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn parse(text: &str, file: &str) -> Result<ConfigFile, ConfigError> {
        let not_toml =
            |e: toml::de::Error| ConfigError::File { file: file.to_string(), message: e.to_string() };
        // The deserializer below reads values lazily, only where a key is read: an integer
        // outside i64 under `[topics]` would pass, and one beside an unknown key would be
        // reported as that key. The whole text must be TOML first.
        text.parse::<toml::Table>().map_err(not_toml)?;
        let deserializer = toml::Deserializer::parse(text).map_err(not_toml)?;
        let tables: Tables =
            serde_path_to_error::deserialize(deserializer).map_err(|e| key_error(file, text, e))?;
        let Some(Domain(domain)) = tables.relay.domain else {
            return Err(in_file(file, ConfigError::invalid("relay.domain", "(missing)", DOMAIN_ALLOWED)));
        };
        Ok(ConfigFile { file: file.to_string(), domain, tables })
    }

    /// The file's domain (`[relay] domain`).
    pub fn domain(&self) -> RelayDomain {
        self.domain
    }

    /// The file's path, as errors and logs name it.
    pub fn path(&self) -> &str {
        &self.file
    }

    /// The `[logging]` table.
    pub fn logging(&self) -> Logging {
        let logging = &self.tables.logging;
        Logging {
            level: logging.level.map(|Level(level)| level),
            json: logging.format.map(|format| format == LogFormat::Json),
            file: logging.file.as_ref().map(|Text(file)| PathBuf::from(file)),
        }
    }

    /// Whether the file sets the queue bound (`[relay] queue_bytes`), for
    /// [`RelayConfig::finish`].
    pub fn sets_queue_bytes(&self) -> bool {
        self.tables.relay.queue_bytes.is_some()
    }

    /// Applies the file's settings over `engine` and `relay` (which start from the defaults of
    /// [`ConfigFile::domain`]); logs each ignored legacy key at info.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when two legacy keys for one setting disagree.
    pub fn apply(&self, engine: &mut EngineConfig, relay: &mut RelayConfig) -> Result<(), ConfigError> {
        let Tables {
            relay: r,
            transport: t,
            validation: v,
            performance: p,
            shm,
            engine: e,
            logging: _,
            topics,
        } = &self.tables;
        if let Some(Text(name)) = &r.name {
            relay.name.clone_from(name);
        }
        if let Some(policy) = r.slow_consumer {
            relay.policy = policy;
        }
        if let Some(bytes) = r.queue_bytes {
            relay.queue_bytes = bytes;
        }
        if let Some(Mode(mode)) = r.socket_mode {
            relay.socket_mode = mode;
        }
        if let Some(Mode(mode)) = r.parent_mode {
            relay.parent_mode = mode;
        }
        for (ids, list) in [
            (&mut relay.connect_uids, &r.connect_uids),
            (&mut relay.connect_gids, &r.connect_gids),
            (&mut relay.publisher_uids, &r.publisher_uids),
        ] {
            if let Some(Ids(list)) = list {
                *ids = Some(list.clone());
            }
        }
        if let Some(Text(file)) = &r.audit_file {
            relay.audit_file = Some(PathBuf::from(file));
        }
        if let Some(ms) = r.audit_fsync_ms {
            relay.audit_fsync = Duration::from_millis(ms);
        }
        if let Some(Text(path)) = &t.path {
            relay.socket = PathBuf::from(path);
        }

        let levels = &mut relay.levels;
        if let Some(Checksum(level)) = v.checksum {
            levels.checksum = level;
        }
        for (level, value) in [
            (&mut levels.audit, v.audit),
            (&mut levels.sequence, v.sequence),
            (&mut levels.close_on_reject, v.close_on_reject),
        ] {
            if let Some(value) = value {
                *level = value;
            }
        }
        // After `checksum`, whatever the order of the keys.
        if let Some(strict) = v.strict {
            levels.strict_types = strict;
            if strict {
                levels.checksum = ChecksumLevel::Required;
            }
        }
        if let Some(size) = v.max_message_size {
            relay.max_message_size = size;
        }
        if let Some(bytes) = shm.bytes {
            relay.shm_bytes = bytes;
        }
        // Off whatever `bytes` says, which is then not checked (as `--shm off`).
        if shm.enabled == Some(false) {
            relay.shm_bytes = 0;
        }

        let pair = |(key, value): (&str, Option<usize>), (other, other_value): (&str, Option<usize>)| match (
            value,
            other_value,
        ) {
            (Some(a), Some(b)) if a != b => Err(in_file(
                &self.file,
                ConfigError::invalid(other, b, format!("the same as {key} = {a}, or leave one of them out")),
            )),
            (a, b) => Ok(a.or(b)),
        };
        // Two settings, as in the legacy relays, whose production files give them different
        // values: the socket buffers of every connection, and the relay's read buffer.
        if let Some(size) = t.buffer_size {
            engine.socket_buffer = Some(size);
        }
        if let Some(budget) = p.buffer_size {
            engine.read_budget = budget;
        }
        if let Some(max) = pair(
            ("performance.max_connections", p.max_connections),
            ("relay.max_connections", r.max_connections),
        )? {
            engine.max_connections = max;
        }
        if let Some(CoreList(cores)) = &e.cores {
            engine.cores = cores.clone();
        }
        if let Some(idle) = e.idle {
            engine.idle = idle;
        }
        if let Some(ms) = e.stall_timeout_ms {
            engine.stall_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = e.flush_deadline_ms {
            engine.flush_deadline = Duration::from_millis(ms);
        }
        if let Some(seconds) = e.metrics_interval {
            engine.metrics_interval = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(addr) = e.metrics_addr {
            engine.metrics_addr = Some(addr);
        }

        const UNIX_ONLY: &str = "the relay serves Unix sockets only";
        const NOT_USED: &str = "not used by this relay";
        for (set, key, why) in [
            (t.address.is_some(), "transport.address", UNIX_ONLY),
            (t.port.is_some(), "transport.port", UNIX_ONLY),
            (t.use_topology == Some(true), "transport.use_topology", "the socket is transport.path"),
            (p.batch_size.is_some(), "performance.batch_size", "batching is adaptive"),
            (p.target_throughput.is_some(), "performance.target_throughput", NOT_USED),
            (p.monitoring.is_some(), "performance.monitoring", NOT_USED),
            (
                p.max_latency_ms.is_some(),
                "performance.max_latency_ms",
                "frames are forwarded as soon as they are read",
            ),
            (topics.is_some(), "[topics]", "subscribers choose what they receive with a Subscribe frame"),
        ] {
            if set {
                log::info!("{}: {key} is ignored: {why}", self.file);
            }
        }
        Ok(())
    }

    /// Names this file and the key it wrote in an error from [`RelayConfig::finish`] or
    /// [`EngineConfig::validate`].
    pub fn rename(&self, error: ConfigError) -> ConfigError {
        let Tables { relay, performance, .. } = &self.tables;
        let max_connections = match (performance.max_connections, relay.max_connections) {
            (None, Some(_)) => "relay.max_connections",
            _ => "performance.max_connections",
        };
        let names = [
            ("max_message_size", "validation.max_message_size"),
            ("queue_bytes", "relay.queue_bytes"),
            ("shm_bytes", "shm.bytes"),
            ("audit_file", "relay.audit_file"),
            ("socket_mode", "relay.socket_mode"),
            ("parent_mode", "relay.parent_mode"),
            ("cores", "engine.cores"),
            ("read_budget", "performance.buffer_size"),
            ("socket_buffer", "transport.buffer_size"),
            ("max_connections", max_connections),
            ("stall_timeout", "engine.stall_timeout_ms"),
            ("metrics_addr", "engine.metrics_addr"),
        ];
        in_file(&self.file, error.renamed(&names))
    }
}

/// Ties an [`ConfigError::Invalid`] to `file`.
fn in_file(file: &str, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { file: None, setting, value, allowed } => {
            ConfigError::Invalid { file: Some(file.to_string()), setting, value, allowed }
        }
        other => other,
    }
}

/// A serde error as the dotted key it is about: unknown, or of the wrong type or value.
fn key_error(file: &str, text: &str, error: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let key = error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(".");
    let error = error.into_inner();
    let message = error.message();
    if message.starts_with("unknown field") {
        return ConfigError::UnknownKey { file: file.to_string(), key };
    }
    let value = error.span().and_then(|span| text.get(span)).unwrap_or("?");
    // serde says "invalid type: string \"big\", expected usize"; the value is shown already.
    let allowed = match message.split_once(", expected ") {
        Some((_, expected)) if message.starts_with("invalid ") => format!("expected {expected}"),
        _ => message.to_string(),
    };
    in_file(file, ConfigError::invalid(key, value, allowed))
}

/// The tables of a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    #[serde(default)]
    relay: RelayTable,
    #[serde(default)]
    transport: TransportTable,
    #[serde(default)]
    validation: ValidationTable,
    #[serde(default)]
    performance: PerformanceTable,
    #[serde(default)]
    shm: ShmTable,
    #[serde(default)]
    engine: EngineTable,
    #[serde(default)]
    logging: LoggingTable,
    topics: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayTable {
    domain: Option<Domain>,
    name: Option<Text>,
    #[allow(dead_code, reason = "free text for people")]
    description: Option<IgnoredAny>,
    max_connections: Option<usize>,
    slow_consumer: Option<Policy>,
    queue_bytes: Option<usize>,
    socket_mode: Option<Mode>,
    parent_mode: Option<Mode>,
    connect_uids: Option<Ids>,
    connect_gids: Option<Ids>,
    publisher_uids: Option<Ids>,
    audit_file: Option<Text>,
    audit_fsync_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportTable {
    #[allow(dead_code, reason = "only \"unix_socket\" reads")]
    mode: Option<UnixSocket>,
    path: Option<Text>,
    buffer_size: Option<usize>,
    address: Option<IgnoredAny>,
    port: Option<IgnoredAny>,
    use_topology: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationTable {
    checksum: Option<Checksum>,
    audit: Option<bool>,
    strict: Option<bool>,
    max_message_size: Option<usize>,
    sequence: Option<bool>,
    close_on_reject: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceTable {
    buffer_size: Option<usize>,
    max_connections: Option<usize>,
    batch_size: Option<IgnoredAny>,
    target_throughput: Option<IgnoredAny>,
    monitoring: Option<IgnoredAny>,
    max_latency_ms: Option<IgnoredAny>,
}

/// `[shm]`: shared-memory delivery. Both keys left out keep the default ring, on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShmTable {
    enabled: Option<bool>,
    bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineTable {
    cores: Option<CoreList>,
    idle: Option<crate::config::Idle>,
    stall_timeout_ms: Option<u64>,
    flush_deadline_ms: Option<u64>,
    metrics_interval: Option<u64>,
    metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingTable {
    level: Option<Level>,
    format: Option<LogFormat>,
    file: Option<Text>,
}

/// `relay.domain`: `1`/`2`/`3` as legacy files write it, or a name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Value")]
struct Domain(RelayDomain);

impl TryFrom<Value> for Domain {
    type Error = &'static str;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let domain = match &value {
            Value::Integer(1) => RelayDomain::MarketData,
            Value::Integer(2) => RelayDomain::Signal,
            Value::Integer(3) => RelayDomain::Execution,
            Value::String(name) => match name.to_ascii_lowercase().as_str() {
                "market_data" | "market-data" | "marketdata" => RelayDomain::MarketData,
                "signal" | "signals" => RelayDomain::Signal,
                "execution" => RelayDomain::Execution,
                _ => return Err(DOMAIN_ALLOWED),
            },
            _ => return Err(DOMAIN_ALLOWED),
        };
        Ok(Domain(domain))
    }
}

/// A non-empty string.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct Text(String);

impl TryFrom<String> for Text {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.is_empty() { Err("a non-empty string") } else { Ok(Text(text)) }
    }
}

/// Permission bits: a string of octal digits or an integer (TOML writes `0o660`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Value")]
struct Mode(u32);

impl TryFrom<Value> for Mode {
    type Error = &'static str;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let mode = match &value {
            Value::String(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                u32::from_str_radix(digits, 8).ok().filter(|_| !digits.is_empty() && !digits.starts_with('+'))
            }
            Value::Integer(n) => u32::try_from(*n).ok(),
            _ => None,
        };
        mode.filter(|m| m & !0o777 == 0).map(Mode).ok_or(
            "permission bits 0 to 0777: a string of octal digits like \"0660\", or an octal integer like 0o660",
        )
    }
}

/// A non-empty list of uids or gids.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Vec<u32>")]
struct Ids(Vec<u32>);

impl TryFrom<Vec<u32>> for Ids {
    type Error = &'static str;

    fn try_from(ids: Vec<u32>) -> Result<Self, Self::Error> {
        if ids.is_empty() {
            Err("a non-empty array of ids from 0 to 4294967295 (leave the key out to allow any)")
        } else {
            Ok(Ids(ids))
        }
    }
}

/// `validation.checksum`: `true` (verify), `false` (off) as legacy files write it, or a level.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Value")]
struct Checksum(ChecksumLevel);

impl TryFrom<Value> for Checksum {
    type Error = &'static str;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Ok(Checksum(match value {
            Value::Boolean(true) => ChecksumLevel::Verify,
            Value::Boolean(false) => ChecksumLevel::Off,
            Value::String(level) if level == "off" => ChecksumLevel::Off,
            Value::String(level) if level == "verify" => ChecksumLevel::Verify,
            Value::String(level) if level == "required" => ChecksumLevel::Required,
            _ => return Err("true (verify), false (off), or \"off\", \"verify\", \"required\""),
        }))
    }
}

/// `transport.mode`: only `"unix_socket"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Value")]
struct UnixSocket;

impl TryFrom<Value> for UnixSocket {
    type Error = &'static str;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value.as_str() {
            Some("unix_socket") => Ok(UnixSocket),
            _ => Err("only \"unix_socket\" (the relay serves Unix stream sockets)"),
        }
    }
}

/// `engine.cores`: a string as `--cores` takes it, or an array of core numbers.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Value")]
struct CoreList(Cores);

impl TryFrom<Value> for CoreList {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let cores = match &value {
            Value::String(text) => Cores::parse(text)?,
            Value::Array(list) => Cores::pinned(
                list.iter()
                    .map(|core| core.as_integer().and_then(|n| usize::try_from(n).ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| CORES_ALLOWED.to_string())?,
            )?,
            _ => return Err(CORES_ALLOWED.to_string()),
        };
        Ok(CoreList(cores))
    }
}

/// `logging.level`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
struct Level(log::LevelFilter);

impl TryFrom<String> for Level {
    type Error = &'static str;

    fn try_from(level: String) -> Result<Self, Self::Error> {
        level.parse().map(Level).map_err(|_| "\"off\", \"error\", \"warn\", \"info\", \"debug\" or \"trace\"")
    }
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Json,
    Text,
}

#[cfg(test)]
mod tests {
    //! The `[shm]` table. The other tables are tested end to end in `cli::tests`.

    use super::*;
    use crate::config::{DEFAULT_SHM_BYTES, DomainDefaults};
    use crate::relays::RelayLogic;

    /// The market-data relay's defaults, as its logic states them.
    fn market_data() -> DomainDefaults {
        crate::relays::MarketDataLogic.defaults()
    }

    /// A market-data file's `[relay]` table followed by `rest`, applied and finished as
    /// `relay --config` does.
    fn resolve(rest: &str) -> Result<RelayConfig, ConfigError> {
        let file = ConfigFile::parse(&format!("[relay]\ndomain = 1\n{rest}"), "shm.toml")?;
        let mut relay = RelayConfig::new(&market_data());
        file.apply(&mut EngineConfig::default(), &mut relay)?;
        relay.finish(&market_data(), file.sets_queue_bytes()).map_err(|e| file.rename(e))?;
        Ok(relay)
    }

    /// The key and value of an `Invalid` error, which must name this file.
    fn invalid(error: ConfigError) -> (String, String) {
        match error {
            ConfigError::Invalid { file: Some(file), setting, value, .. } if file == "shm.toml" => {
                (setting, value)
            }
            other => panic!("not Invalid in shm.toml: {other:?}"),
        }
    }

    #[test]
    fn the_ring_size_is_read() {
        assert_eq!(resolve("[shm]\nbytes = 1048576\n").unwrap().shm_bytes, 1 << 20);
        assert_eq!(resolve("[shm]\nenabled = true\nbytes = 4294967296\n").unwrap().shm_bytes, 1 << 32);
    }

    #[test]
    fn left_out_it_is_on_at_the_default_size() {
        for rest in ["", "[shm]\n", "[shm]\nenabled = true\n"] {
            assert_eq!(resolve(rest).unwrap().shm_bytes, DEFAULT_SHM_BYTES, "{rest:?}");
        }
        // The default grows to hold 4 frames of max_message_size: 4 x (16 MiB + 16) → 128 MiB.
        let relay = resolve("[validation]\nmax_message_size = 16777216\n").unwrap();
        assert_eq!(relay.shm_bytes, 128 << 20);
    }

    #[test]
    fn disabled_is_zero_whatever_the_size() {
        for rest in ["[shm]\nenabled = false\n", "[shm]\nenabled = false\nbytes = 3000000\n"] {
            assert_eq!(resolve(rest).unwrap().shm_bytes, 0, "{rest:?}");
        }
        // The key order does not matter.
        assert_eq!(resolve("[shm]\nbytes = 1048576\nenabled = false\n").unwrap().shm_bytes, 0);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = resolve("[shm]\nsize = 1048576\n").unwrap_err();
        assert_eq!(error, ConfigError::UnknownKey { file: "shm.toml".into(), key: "shm.size".into() });
        assert!(error.to_string().starts_with("shm.toml: unknown key `shm.size`"), "{error}");
    }

    #[test]
    fn a_bad_size_names_shm_bytes() {
        // Not a power of two.
        let error = resolve("[shm]\nbytes = 3000000\n").unwrap_err();
        assert!(error.to_string().starts_with("shm.toml: shm.bytes = 3000000: "), "{error}");
        assert_eq!(invalid(error), ("shm.bytes".into(), "3000000".into()));
        // Outside 1 MiB..=4 GiB.
        for bytes in [1u64 << 19, 1 << 33] {
            let error = resolve(&format!("[shm]\nbytes = {bytes}\n")).unwrap_err();
            assert_eq!(invalid(error), ("shm.bytes".into(), bytes.to_string()));
        }
        // Too small for 4 frames of max_message_size (4 x (262144 + 16) > 1 MiB).
        let error = resolve("[validation]\nmax_message_size = 262144\n[shm]\nbytes = 1048576\n").unwrap_err();
        assert_eq!(invalid(error).0, "shm.bytes");
        // The wrong type.
        for (rest, key) in [
            ("[shm]\nbytes = -1\n", "shm.bytes"),
            ("[shm]\nbytes = \"64MiB\"\n", "shm.bytes"),
            ("[shm]\nenabled = \"no\"\n", "shm.enabled"),
        ] {
            assert_eq!(invalid(resolve(rest).unwrap_err()).0, key, "{rest:?}");
        }
    }
}
