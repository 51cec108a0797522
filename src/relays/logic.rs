//! The per-domain part of a relay: [`RelayLogic`] and its three implementations.
//!
//! A logic is a handful of constants — the domain, the default socket path, the check levels,
//! the slow-consumer policy and the queue bound. Everything the domains share lives in the
//! engine.

use crate::config::{Levels, Policy};
use crate::protocol::{ChecksumLevel, RelayDomain, SourceType};

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
