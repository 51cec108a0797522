//! What a relay process runs with: the engine settings and one [`RelayConfig`] per domain,
//! resolved from the domain defaults, a configuration file and command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{RelayDomain, SourceType};

use super::logic::{DomainDefaults, Levels, Policy};

/// The smallest allowed `max_message_size`: the largest Subscribe frame (32 + 5 + 1028).
pub const MIN_MESSAGE_SIZE: usize = 1065;

/// A configuration that cannot run, naming the setting, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value outside what is allowed.
    #[error("{setting} = {value}: {allowed}")]
    Invalid {
        /// The key or flag, e.g. `performance.max_connections` or `--queue-bytes`.
        setting: String,
        /// The value given.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
    /// A key that is neither a legacy key nor one of ours.
    #[error("{file}: unknown key `{key}` (see config/*.toml for every accepted key)")]
    UnknownKey {
        /// The file.
        file: String,
        /// The dotted key.
        key: String,
    },
    /// The file cannot be read or is not TOML.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What went wrong.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] from displayable parts.
    pub fn invalid(setting: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        ConfigError::Invalid { setting: setting.into(), value: value.to_string(), allowed: allowed.into() }
    }
}

/// Which cores the reactors run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    /// One reactor per listed core, each pinned to it.
    Pinned(Vec<usize>),
    /// This many reactors, not pinned (`--cores none` means one per available core).
    Unpinned(usize),
}

impl Cores {
    /// Number of reactors.
    pub fn count(&self) -> usize {
        match self {
            Cores::Pinned(list) => list.len(),
            Cores::Unpinned(count) => *count,
        }
    }
}

/// One domain's relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The domain.
    pub domain: RelayDomain,
    /// The relay's source byte in its notices.
    pub source: SourceType,
    /// Name used in logs and metrics.
    pub name: String,
    /// The socket path.
    pub socket: PathBuf,
    /// Mode of the socket file (default 0o660).
    pub socket_mode: u32,
    /// Mode of the parent directory when the relay creates it (default 0o750).
    pub parent_mode: u32,
    /// Check levels.
    pub levels: Levels,
    /// Slow-consumer policy.
    pub policy: Policy,
    /// Subscriber queue bound in bytes (≥ 2 × `max_message_size`).
    pub queue_bytes: usize,
    /// Largest whole frame accepted (≥ 1065).
    pub max_message_size: usize,
    /// Audit file; required when `levels.audit` is on.
    pub audit_file: Option<PathBuf>,
    /// How often the audit file is fsynced.
    pub audit_fsync: Duration,
    /// Peer uids allowed to connect (`None` = anyone who can open the socket).
    pub connect_uids: Option<Vec<u32>>,
    /// Peer gids allowed to connect (`None` = any).
    pub connect_gids: Option<Vec<u32>>,
    /// Peer uids allowed to publish data frames (`None` = any connected peer).
    pub publisher_uids: Option<Vec<u32>>,
}

impl RelayConfig {
    /// A domain's relay with its defaults (PROTOCOL.md §6 "Defaults").
    pub fn new(defaults: &DomainDefaults) -> Self {
        RelayConfig {
            domain: defaults.domain,
            source: defaults.source,
            name: defaults.name.to_string(),
            socket: PathBuf::from(defaults.socket),
            socket_mode: 0o660,
            parent_mode: 0o750,
            levels: defaults.levels,
            policy: defaults.policy,
            queue_bytes: defaults.queue_bytes,
            max_message_size: 131_072,
            audit_file: None,
            audit_fsync: Duration::from_secs(1),
            connect_uids: None,
            connect_gids: None,
            publisher_uids: None,
        }
    }

    /// Checks the rules a configuration must meet.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size < MIN_MESSAGE_SIZE || self.max_message_size > u32::MAX as usize {
            return Err(ConfigError::invalid(
                "max_message_size",
                self.max_message_size,
                format!("at least {MIN_MESSAGE_SIZE} (the largest Subscribe frame) and at most {}", u32::MAX),
            ));
        }
        if self.queue_bytes < 2 * self.max_message_size {
            return Err(ConfigError::invalid(
                "queue_bytes",
                self.queue_bytes,
                format!("at least 2 x max_message_size = {}", 2 * self.max_message_size),
            ));
        }
        if self.levels.audit && self.audit_file.is_none() {
            return Err(ConfigError::invalid(
                "audit_file",
                "(none)",
                "an audit file is required when the audit level is on (--audit-file PATH)",
            ));
        }
        if self.socket_mode & !0o777 != 0 || self.parent_mode & !0o777 != 0 {
            return Err(ConfigError::invalid(
                "socket_mode",
                format!("{:o}/{:o}", self.socket_mode, self.parent_mode),
                "permission bits only (0 to 0777)",
            ));
        }
        Ok(())
    }
}

/// Settings shared by every relay of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Reactor threads and their cores.
    pub cores: Cores,
    /// Bytes read from one connection per loop turn (default 256 KiB).
    pub read_budget: usize,
    /// Connections beyond this are accepted, logged, counted and closed (default 1024).
    pub max_connections: usize,
    /// Publishers paused on a subscriber's account this long within twice the window mark it
    /// stalled (default 5 s).
    pub stall_timeout: Duration,
    /// How long a stop waits for queued frames to be flushed (default 5 s).
    pub flush_deadline: Duration,
    /// A stats line this often (`None`: never).
    pub metrics_interval: Option<Duration>,
    /// Prometheus text served here (loopback only).
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cores: Cores::Unpinned(1),
            read_budget: 256 << 10,
            max_connections: 1024,
            stall_timeout: Duration::from_secs(5),
            flush_deadline: Duration::from_secs(5),
            metrics_interval: None,
            metrics_addr: None,
        }
    }
}

impl EngineConfig {
    /// Checks the rules the engine settings must meet.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the first broken rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cores.count() == 0 || self.cores.count() > 256 {
            return Err(ConfigError::invalid("cores", self.cores.count(), "1 to 256 reactors"));
        }
        if self.read_budget < 4096 {
            return Err(ConfigError::invalid("read_budget", self.read_budget, "at least 4096 bytes"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid("max_connections", 0, "at least 1"));
        }
        if let Some(addr) = self.metrics_addr
            && !addr.ip().is_loopback()
        {
            return Err(ConfigError::invalid(
                "metrics_addr",
                addr,
                "a loopback address, e.g. 127.0.0.1:9100",
            ));
        }
        Ok(())
    }
}
