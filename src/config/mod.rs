//! What a relay process runs with: the engine settings and one [`RelayConfig`] per domain.
//!
//! A relay's settings are resolved in one order: the domain's defaults ([`DomainDefaults`],
//! [`RelayConfig::new`]), then a configuration file ([`ConfigFile::apply`]), then command-line
//! flags, then [`RelayConfig::finish`], which fills in the defaults that depend on other
//! settings and validates the result.
//!
//! This module depends on [`crate::protocol`] only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{ChecksumLevel, RelayDomain, SourceType};

mod file;

pub use file::{ConfigFile, Logging};

/// The smallest allowed `max_message_size`: the largest Subscribe frame (32 + 5 + 1028).
pub const MIN_MESSAGE_SIZE: usize = 1065;

/// The bounds of a buffer size (the read budget, the socket buffers): at least 4 KiB, at most
/// 256 MiB, so that a typo cannot make every connection ask for gigabytes.
pub const BUFFER_SIZES: std::ops::RangeInclusive<usize> = 4096..=(256 << 20);

/// A configuration that cannot run, naming the setting, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value outside what is allowed.
    #[error("{}{setting} = {value}: {allowed}", in_file(file.as_deref()))]
    Invalid {
        /// The configuration file that set the value, when a file did.
        file: Option<String>,
        /// The dotted key or flag, e.g. `performance.max_connections` or `--queue-bytes`.
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

fn in_file(file: Option<&str>) -> String {
    file.map(|file| format!("{file}: ")).unwrap_or_default()
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] from displayable parts, not tied to a file.
    pub fn invalid(setting: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: None,
            setting: setting.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// Renames the setting of an [`ConfigError::Invalid`] by `names` (setting → key or flag).
    pub(crate) fn renamed(self, names: &[(&str, &str)]) -> Self {
        match self {
            ConfigError::Invalid { file, setting, value, allowed } => {
                let setting = names
                    .iter()
                    .find(|(from, _)| *from == setting)
                    .map_or(setting, |(_, to)| (*to).to_string());
                ConfigError::Invalid { file, setting, value, allowed }
            }
            other => other,
        }
    }
}

/// What a relay does with a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Skip the frame for that subscriber and count it (`dropped_frames_total`).
    Drop,
    /// Close the subscriber.
    Disconnect,
    /// Pause the publishers whose frames route to the full queue until it drains (lossless).
    Block,
}

impl Policy {
    /// The name used on the command line and in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::Drop => "drop",
            Policy::Disconnect => "disconnect",
            Policy::Block => "block",
        }
    }

    /// Parses `drop`, `disconnect` or `block`.
    pub fn from_name(name: &str) -> Option<Policy> {
        [Policy::Drop, Policy::Disconnect, Policy::Block].into_iter().find(|p| p.name() == name)
    }
}

/// What a reactor does when it has nothing to do (after Aeron's idle strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    /// Wait in the poll until an event or a wake-up (the least CPU).
    #[default]
    Block,
    /// Never sleep: poll with a zero timeout and look at the inbox again (the lowest latency;
    /// a whole core per reactor — pin it).
    Spin,
    /// Spin a while, then yield the core a while, then wait in the poll.
    Backoff,
}

impl Idle {
    /// The name used on the command line and in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Idle::Block => "block",
            Idle::Spin => "spin",
            Idle::Backoff => "backoff",
        }
    }
}

impl core::fmt::Display for Idle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::fmt::Display for Policy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The check levels of PROTOCOL.md §6 beyond framing and domain, which always apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// Checksum verification.
    pub checksum: ChecksumLevel,
    /// Per (connection, source) sequence must increase (`sequence_replay`).
    pub sequence: bool,
    /// Every accepted and rejected frame gets an audit record.
    pub audit: bool,
    /// A connection without notices is closed after its first rejected frame.
    pub close_on_reject: bool,
    /// Unregistered TLV types are rejected (`tlv_unknown_type`).
    pub strict_types: bool,
}

/// The defaults of one domain's relay, as its logic states them (PROTOCOL.md §6 "Defaults").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainDefaults {
    /// The relay's domain.
    pub domain: RelayDomain,
    /// The relay's own source byte in the notices it sends.
    pub source: SourceType,
    /// The name used in logs, metrics and `relay_dev`.
    pub name: &'static str,
    /// The socket path.
    pub socket: &'static str,
    /// The check levels.
    pub levels: Levels,
    /// The slow-consumer policy.
    pub policy: Policy,
    /// The subscriber queue bound, in bytes.
    pub queue_bytes: usize,
}

impl DomainDefaults {
    /// The file name of the default socket, e.g. `execution.sock`.
    pub fn socket_file_name(&self) -> &Path {
        Path::new(Path::new(self.socket).file_name().unwrap_or(self.socket.as_ref()))
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

/// What `cores` takes, for messages.
const CORES_ALLOWED: &str = "\"none\" (one unpinned reactor per available core), \"none:N\" (N unpinned \
                             reactors, 1 to 256) or a list of distinct core numbers, e.g. 0,1 (one reactor \
                             pinned to each)";

impl Cores {
    /// One unpinned reactor per available core (at most 256): `--cores none`.
    pub fn available() -> Cores {
        Cores::Unpinned(std::thread::available_parallelism().map_or(1, |n| n.get()).min(256))
    }

    /// Parses `none` ([`Cores::available`]), `none:N` (`N` unpinned reactors) or a
    /// comma-separated list of distinct core numbers (one reactor pinned to each).
    ///
    /// # Errors
    ///
    /// What is allowed, for an empty list, a duplicate or junk.
    pub fn parse(text: &str) -> Result<Cores, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("none") {
            return Ok(Cores::available());
        }
        if let Some(count) = trimmed.strip_prefix("none:") {
            return match count.trim().parse::<usize>() {
                Ok(count) if (1..=256).contains(&count) => Ok(Cores::Unpinned(count)),
                _ => Err(CORES_ALLOWED.to_string()),
            };
        }
        let list = trimmed
            .split(',')
            .map(|part| part.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CORES_ALLOWED.to_string())?;
        Cores::pinned(list)
    }

    /// One reactor pinned to each listed core.
    ///
    /// # Errors
    ///
    /// What is allowed, for an empty or too long list or a duplicate.
    pub fn pinned(list: Vec<usize>) -> Result<Cores, String> {
        if list.is_empty() || list.len() > 256 {
            return Err(format!("1 to 256 cores: {CORES_ALLOWED}"));
        }
        if let Some(core) =
            list.iter().enumerate().find_map(|(i, core)| list[..i].contains(core).then_some(core))
        {
            return Err(format!("distinct core numbers (core {core} is listed twice)"));
        }
        Ok(Cores::Pinned(list))
    }

    /// The cores this process may run on, in increasing order: its affinity mask, which a
    /// cgroup's cpuset and `taskset` narrow. `None` when the system does not say.
    pub fn usable() -> Option<Vec<usize>> {
        let mut cores: Vec<usize> = core_affinity::get_core_ids()?.into_iter().map(|core| core.id).collect();
        cores.sort_unstable();
        (!cores.is_empty()).then_some(cores)
    }

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
    /// Ring bytes of the broadcast log for shared-memory delivery (PROTOCOL.md §7), a power
    /// of two from 1 MiB to 4 GiB, at least 4 × (`max_message_size` + 16) (the default grows
    /// to that); 0 turns it off. Domains that offer none ignore it.
    pub shm_bytes: u64,
}

/// The broadcast log's ring by default: 64 MiB, about half a million frames of 128 bytes (a
/// second of a publisher at 500 000 frames/s), plus a quarter for its index.
pub const DEFAULT_SHM_BYTES: u64 = 64 << 20;

impl RelayConfig {
    /// A domain's relay with every setting at its default (PROTOCOL.md §6 "Defaults").
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
            shm_bytes: DEFAULT_SHM_BYTES,
        }
    }

    /// Finishes a relay's settings once the defaults, the file and the flags were applied:
    /// the defaults that depend on other settings, each logged at info, then [`validate`].
    ///
    /// - With the audit level on and no audit file, the audit file is
    ///   `<socket dir>/<socket stem>.audit`, e.g. `/tmp/torq/execution.audit`.
    /// - A queue bound left at its default (`queue_bytes_set` false) grows to
    ///   2 × `max_message_size` when that is larger (PROTOCOL.md §6 "Defaults"); a bound that
    ///   was set must be large enough.
    ///
    /// # Errors
    ///
    /// As [`validate`], naming the settings by their names here (`queue_bytes`, …).
    ///
    /// [`validate`]: RelayConfig::validate
    pub fn finish(&mut self, defaults: &DomainDefaults, queue_bytes_set: bool) -> Result<(), ConfigError> {
        if self.levels.audit && self.audit_file.is_none() {
            let dir = self.socket.parent().unwrap_or(Path::new(""));
            let file = dir.join(defaults.socket_file_name().with_extension("audit"));
            log::info!("{}: auditing to {} (no audit file was set)", self.name, file.display());
            self.audit_file = Some(file);
        }
        let least = self.max_message_size.saturating_mul(2);
        if !queue_bytes_set && self.queue_bytes < least {
            log::info!(
                "{}: queue_bytes grows from {} to {least}, 2 x max_message_size",
                self.name,
                self.queue_bytes
            );
            self.queue_bytes = least;
        }
        let ring = (4 * (16 + self.max_message_size.next_multiple_of(16)) as u64).next_power_of_two();
        if self.shm_bytes == DEFAULT_SHM_BYTES && ring > self.shm_bytes {
            log::info!(
                "{}: shm_bytes grows from {} to {ring}, to hold 4 frames of max_message_size",
                self.name,
                self.shm_bytes
            );
            self.shm_bytes = ring;
        }
        self.validate()
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
        let record = (16 + self.max_message_size.next_multiple_of(16)) as u64;
        let shm = crate::shm::MIN_CAPACITY..=crate::shm::MAX_CAPACITY;
        if self.shm_bytes != 0
            && (!self.shm_bytes.is_power_of_two()
                || !shm.contains(&self.shm_bytes)
                || self.shm_bytes < 4 * record)
        {
            return Err(ConfigError::invalid(
                "shm_bytes",
                self.shm_bytes,
                format!(
                    "the broadcast log's ring: a power of two from 1 MiB to 4 GiB and at least 4 x \
                     (max_message_size + 16) = {}, or 0 (off), e.g. 67108864",
                    4 * record
                ),
            ));
        }
        if self.levels.audit && self.audit_file.is_none() {
            return Err(ConfigError::invalid(
                "audit_file",
                "(none)",
                "an audit file is required when the audit level is on (--audit-file PATH)",
            ));
        }
        for (setting, mode) in [("socket_mode", self.socket_mode), ("parent_mode", self.parent_mode)] {
            if mode & !0o777 != 0 || mode & 0o002 != 0 {
                return Err(ConfigError::invalid(
                    setting,
                    format!("{mode:04o}"),
                    "permission bits (0 to 0777) without the others-write bit: anyone could \
                     replace the socket (e.g. 0660 for the socket, 0750 for its directory)",
                ));
            }
        }
        Ok(())
    }
}

/// Settings shared by every relay of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Reactor threads and their cores.
    pub cores: Cores,
    /// Bytes read from one connection per loop turn (default 256 KiB; `performance.buffer_size`).
    pub read_budget: usize,
    /// The send and receive buffer sizes (`SO_SNDBUF`, `SO_RCVBUF`) asked for every accepted
    /// connection; `None` leaves the kernel's default (`transport.buffer_size`).
    pub socket_buffer: Option<usize>,
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
    /// What an idle reactor does (default: block).
    pub idle: Idle,
}

/// One unpinned reactor per available core (`--cores none`) and the defaults of
/// PROTOCOL.md §6.
impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cores: Cores::available(),
            read_budget: 256 << 10,
            socket_buffer: None,
            max_connections: 1024,
            stall_timeout: Duration::from_secs(5),
            flush_deadline: Duration::from_secs(5),
            metrics_interval: None,
            metrics_addr: None,
            idle: Idle::Block,
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
        if !BUFFER_SIZES.contains(&self.read_budget) {
            return Err(ConfigError::invalid(
                "read_budget",
                self.read_budget,
                format!(
                    "bytes read from one connection per loop turn: {} to {} (256 MiB)",
                    BUFFER_SIZES.start(),
                    BUFFER_SIZES.end()
                ),
            ));
        }
        if let Some(size) = self.socket_buffer
            && !BUFFER_SIZES.contains(&size)
        {
            return Err(ConfigError::invalid(
                "socket_buffer",
                size,
                format!(
                    "the send and receive buffer size of every connection (SO_SNDBUF, SO_RCVBUF) in \
                     bytes: {} to {} (256 MiB); leave it out for the kernel's default",
                    BUFFER_SIZES.start(),
                    BUFFER_SIZES.end()
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid("max_connections", 0, "at least 1"));
        }
        if self.stall_timeout.is_zero() {
            return Err(ConfigError::invalid("stall_timeout", "0", "at least 1 ms"));
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

    /// Checks that every core the reactors are pinned to is one of `usable` (the cores the
    /// process may run on, [`Cores::usable`]): a relay asked to pin must not run unpinned.
    /// Unpinned reactors are not checked.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `cores`, the list, the cores missing from `usable` and
    /// those in it.
    pub fn check_cores(&self, usable: &[usize]) -> Result<(), ConfigError> {
        let Cores::Pinned(list) = &self.cores else { return Ok(()) };
        let missing: Vec<usize> = list.iter().copied().filter(|core| !usable.contains(core)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let missing = match missing.as_slice() {
            [core] => format!("core {core} does not exist or this process may not run on it"),
            more => format!("cores {} do not exist or this process may not run on them", join(more)),
        };
        Err(ConfigError::invalid(
            "cores",
            join(list),
            format!(
                "{missing}; it may run on {}: pin to those only, or leave the reactors unpinned \
                 with \"none\"",
                match usable {
                    [core] => format!("core {core} only"),
                    _ => format!("cores {} ({} cores)", ranges(usable), usable.len()),
                }
            ),
        ))
    }

    /// [`EngineConfig::check_cores`] against the cores this process may run on now
    /// ([`Cores::usable`]); nothing to check when the system does not say.
    ///
    /// # Errors
    ///
    /// As [`EngineConfig::check_cores`].
    pub fn check_cores_here(&self) -> Result<(), ConfigError> {
        match (&self.cores, Cores::usable()) {
            (Cores::Pinned(_), Some(usable)) => self.check_cores(&usable),
            _ => Ok(()),
        }
    }
}

/// `0,3,4`.
fn join(cores: &[usize]) -> String {
    cores.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Sorted core numbers as ranges: `0-3,6,8-9`.
fn ranges(cores: &[usize]) -> String {
    let mut out = Vec::new();
    let mut rest = cores.iter().copied().peekable();
    while let Some(first) = rest.next() {
        let mut last = first;
        while rest.next_if(|&next| next == last + 1).is_some() {
            last += 1;
        }
        out.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audited domain whose default socket is not where the relay puts it.
    const AUDITED: DomainDefaults = DomainDefaults {
        domain: RelayDomain::Execution,
        source: SourceType::ExecutionRelay,
        name: "execution",
        socket: "/tmp/torq/execution.sock",
        levels: Levels {
            checksum: ChecksumLevel::Required,
            sequence: true,
            audit: true,
            close_on_reject: true,
            strict_types: false,
        },
        policy: Policy::Block,
        queue_bytes: 16 << 20,
    };

    fn finished(
        change: impl FnOnce(&mut RelayConfig),
        queue_bytes_set: bool,
    ) -> Result<RelayConfig, ConfigError> {
        let mut relay = RelayConfig::new(&AUDITED);
        change(&mut relay);
        relay.finish(&AUDITED, queue_bytes_set).map(|()| relay)
    }

    #[test]
    fn the_default_audit_file_is_beside_the_socket() {
        let relay = finished(|r| r.socket = PathBuf::from("/srv/t/relay.sock"), false).unwrap();
        assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/srv/t/execution.audit")));
        let relay = finished(|r| r.audit_file = Some(PathBuf::from("/var/a.audit")), false).unwrap();
        assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/var/a.audit")));
        let relay = finished(|r| r.levels.audit = false, false).unwrap();
        assert_eq!(relay.audit_file, None);
    }

    #[test]
    fn a_queue_bound_left_at_its_default_grows_with_the_message_size() {
        let relay = finished(|r| r.max_message_size = 16 << 20, false).unwrap();
        assert_eq!(relay.queue_bytes, 32 << 20);
        let relay = finished(|r| r.max_message_size = 1 << 20, false).unwrap();
        assert_eq!(relay.queue_bytes, 16 << 20);
        // A bound that was set is never changed: too small is an error.
        let error = finished(|r| r.max_message_size = 16 << 20, true).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { setting, .. } if setting == "queue_bytes"),
            "{error}"
        );
        let relay = finished(|r| r.queue_bytes = 1 << 20, true).unwrap();
        assert_eq!(relay.queue_bytes, 1 << 20);
    }

    fn pinned(list: &[usize]) -> EngineConfig {
        EngineConfig { cores: Cores::Pinned(list.to_vec()), ..EngineConfig::default() }
    }

    #[test]
    fn pinned_cores_must_be_cores_the_process_may_run_on() {
        let two = [0, 1];
        assert_eq!(pinned(&[0, 1]).check_cores(&two), Ok(()));
        assert_eq!(pinned(&[1]).check_cores(&two), Ok(()));
        assert_eq!(EngineConfig { cores: Cores::Unpinned(64), ..pinned(&[]) }.check_cores(&two), Ok(()));

        let error = pinned(&[9]).check_cores(&two).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cores = 9: core 9 does not exist or this process may not run on it; it may run on cores \
             0-1 (2 cores): pin to those only, or leave the reactors unpinned with \"none\""
        );
        // Every missing core is named; the usable ones as ranges (an affinity mask has gaps).
        let error = pinned(&[2, 0, 9, 4]).check_cores(&[0, 1, 2, 5, 7, 8]).unwrap_err();
        let ConfigError::Invalid { setting, value, allowed, .. } = error else { panic!("{error:?}") };
        assert_eq!((setting.as_str(), value.as_str()), ("cores", "2,0,9,4"));
        assert!(
            allowed.starts_with(
                "cores 9,4 do not exist or this process may not run on them; it may run on cores \
                 0-2,5,7-8 (6 cores)"
            ),
            "{allowed}"
        );
        let error = pinned(&[0]).check_cores(&[3]).unwrap_err();
        assert!(error.to_string().contains("it may run on core 3 only:"), "{error}");
    }

    /// This process may run on at least one core, and pinning to all of them is accepted.
    #[test]
    fn the_usable_cores_are_the_affinity_mask() {
        let usable = Cores::usable().expect("Linux says which cores a process may run on");
        assert!(usable.windows(2).all(|w| w[0] < w[1]), "{usable:?}");
        assert_eq!(pinned(&usable).check_cores_here(), Ok(()));
        let beyond = usable.last().unwrap() + 1;
        assert!(pinned(&[beyond]).check_cores_here().is_err());
    }

    #[test]
    fn finish_validates() {
        let error = finished(|r| r.max_message_size = MIN_MESSAGE_SIZE - 1, false).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { file: None, setting, .. } if setting == "max_message_size")
        );
        assert!(error.to_string().starts_with("max_message_size = 1064: "), "{error}");
    }
}
