//! The per-domain part of a relay: [`RelayLogic`] and its three implementations.
//!
//! A logic is a handful of constants — the domain, the default socket path, the check levels,
//! the slow-consumer policy and the queue bound. Everything the domains share lives in the
//! engine.

use crate::protocol::{ChecksumLevel, RelayDomain, SourceType};

/// What a relay does with a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The small per-domain part of `Relay<L>`.
pub trait RelayLogic: Send + Sync + 'static {
    /// The relay's domain.
    const DOMAIN: RelayDomain;
    /// The relay's own source byte in the notices it sends.
    const SOURCE: SourceType;
    /// The name used in logs, metrics and `relay_dev`.
    const NAME: &'static str;
    /// The default socket path.
    const SOCKET: &'static str;
    /// The default check levels.
    const LEVELS: Levels;
    /// The default slow-consumer policy.
    const POLICY: Policy;
    /// The default subscriber queue bound, in bytes.
    const QUEUE_BYTES: usize;
}

/// MarketData: very high rate, framing/domain/TLV checks, drops for a slow consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarketDataLogic;

impl RelayLogic for MarketDataLogic {
    const DOMAIN: RelayDomain = RelayDomain::MarketData;
    const SOURCE: SourceType = SourceType::MarketDataRelay;
    const NAME: &'static str = "market-data";
    const SOCKET: &'static str = "/tmp/torq/market_data.sock";
    const LEVELS: Levels = Levels {
        checksum: ChecksumLevel::Off,
        sequence: false,
        audit: false,
        close_on_reject: false,
        strict_types: false,
    };
    const POLICY: Policy = Policy::Drop;
    const QUEUE_BYTES: usize = 4 << 20;
}

/// Signal: checksummed, disconnects a slow consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalLogic;

impl RelayLogic for SignalLogic {
    const DOMAIN: RelayDomain = RelayDomain::Signal;
    const SOURCE: SourceType = SourceType::SignalRelay;
    const NAME: &'static str = "signal";
    const SOCKET: &'static str = "/tmp/torq/signals.sock";
    const LEVELS: Levels = Levels { checksum: ChecksumLevel::Verify, ..MarketDataLogic::LEVELS };
    const POLICY: Policy = Policy::Disconnect;
    const QUEUE_BYTES: usize = 4 << 20;
}

/// Execution: orders and fills — checksums required, sequences checked, audited, lossless.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecutionLogic;

impl RelayLogic for ExecutionLogic {
    const DOMAIN: RelayDomain = RelayDomain::Execution;
    const SOURCE: SourceType = SourceType::ExecutionRelay;
    const NAME: &'static str = "execution";
    const SOCKET: &'static str = "/tmp/torq/execution.sock";
    const LEVELS: Levels = Levels {
        checksum: ChecksumLevel::Required,
        sequence: true,
        audit: true,
        close_on_reject: true,
        strict_types: false,
    };
    const POLICY: Policy = Policy::Block;
    const QUEUE_BYTES: usize = 16 << 20;
}
