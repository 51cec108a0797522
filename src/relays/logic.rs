//! The per-domain decision point: [`RelayLogic`] and its implementations.
//!
//! The engine, the reactors and the relay core are generic over the logic and call it with
//! static dispatch on the per-frame path. What differs between domains is code here: the
//! checks a domain applies, what it audits, how it routes, what a stop that leaves frames
//! undelivered means, and its defaults. [`AnyLogic`] runs the three domains on one set of
//! reactors (`relay_dev all`).

use crate::config::{DomainDefaults, Levels, Policy, RelayConfig};
use crate::protocol::{self, ChecksumLevel, FrameKind, RelayDomain, RoutingKey, SourceType, Subscribe};

/// One domain's decisions. A relay built with a logic serves that logic's domain only.
///
/// The provided methods are the rules every domain shares; a domain overrides what it does
/// differently. A new domain is one small type that implements [`RelayLogic::defaults`].
pub trait RelayLogic: Send + Sync + 'static {
    /// The domain's defaults, its domain among them.
    fn defaults(&self) -> DomainDefaults;

    /// The domain this logic serves: the one its defaults name, so it is stated once.
    #[inline]
    fn domain(&self) -> RelayDomain {
        self.defaults().domain
    }

    /// The checks of a whole frame after framing (PROTOCOL.md §6 "Checks by level"): the
    /// domain rule, then the TLV and checksum levels of `levels`.
    ///
    /// # Errors
    ///
    /// The protocol error that rejects the frame.
    #[inline]
    fn check(&self, frame: &[u8], levels: &Levels) -> Result<FrameKind, protocol::Error> {
        let checks = protocol::Checks {
            domain: self.domain(),
            checksum: levels.checksum,
            strict_types: levels.strict_types,
        };
        protocol::validate(frame, &checks)
    }

    /// Whether frames of this relay are audited (the `audit` level).
    #[inline]
    fn audits(&self, levels: &Levels) -> bool {
        levels.audit
    }

    /// Whether sequences must rise per (connection, source) (the `sequence` level).
    #[inline]
    fn enforces_sequences(&self, levels: &Levels) -> bool {
        levels.sequence
    }

    /// Whether a rejected frame closes its connection: `close_on_reject` for a connection
    /// that asked for no notices (it would never learn of the rejection otherwise).
    #[inline]
    fn closes_on_reject(&self, levels: &Levels, notices: bool) -> bool {
        levels.close_on_reject && !notices
    }

    /// Whether frames left undelivered when a stop's flush deadline passes are a failure
    /// (exit status 3): a domain whose default policy is `block` (lossless), whatever policy a
    /// configuration chose.
    fn lossless(&self) -> bool {
        self.defaults().policy == Policy::Block
    }

    /// Whether this domain offers shared-memory delivery (PROTOCOL.md §7) when configured
    /// to: every domain but Execution in this version, whose subscribers keep the lossless
    /// socket path (a log never waits, so it cannot promise `block`).
    fn offers_shm(&self) -> bool {
        true
    }

    /// Whether a peer of uid `uid` may publish data frames (the publisher allow-list).
    #[inline]
    fn may_publish(&self, config: &RelayConfig, uid: u32) -> bool {
        config.publisher_uids.as_ref().is_none_or(|uids| uids.contains(&uid))
    }

    /// Whether an accepted data frame, of routing key `key` from `source`, goes to a
    /// subscription with filters: the routing key rule of PROTOCOL.md §6, shared by every
    /// domain.
    #[inline]
    fn routes(&self, subscription: &Subscribe, key: &RoutingKey, source: u8) -> bool {
        subscription.wants(key, source)
    }
}

/// MarketData: very high rate, framing/domain/TLV checks, drops for a slow consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarketDataLogic;

impl RelayLogic for MarketDataLogic {
    #[inline]
    fn defaults(&self) -> DomainDefaults {
        DomainDefaults {
            domain: RelayDomain::MarketData,
            source: SourceType::MarketDataRelay,
            name: "market-data",
            socket: "/tmp/torq/market_data.sock",
            levels: Levels {
                checksum: ChecksumLevel::Off,
                sequence: false,
                audit: false,
                close_on_reject: false,
                strict_types: false,
            },
            policy: Policy::Drop,
            queue_bytes: 4 << 20,
        }
    }
}

/// Signal: checksummed, disconnects a slow consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalLogic;

impl RelayLogic for SignalLogic {
    #[inline]
    fn defaults(&self) -> DomainDefaults {
        let market_data = MarketDataLogic.defaults();
        DomainDefaults {
            domain: RelayDomain::Signal,
            source: SourceType::SignalRelay,
            name: "signal",
            socket: "/tmp/torq/signals.sock",
            levels: Levels { checksum: ChecksumLevel::Verify, ..market_data.levels },
            policy: Policy::Disconnect,
            queue_bytes: 4 << 20,
        }
    }
}

/// Execution: orders and fills — checksums required, sequences checked, audited, lossless.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecutionLogic;

impl RelayLogic for ExecutionLogic {
    #[inline]
    fn defaults(&self) -> DomainDefaults {
        DomainDefaults {
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
        }
    }

    fn offers_shm(&self) -> bool {
        false
    }
}

/// Any of the three domains: `relay_dev all` and `relay --config` choose the domain at run
/// time and run its logic through this enum (one `match` per call, still no `dyn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyLogic {
    /// [`MarketDataLogic`].
    MarketData,
    /// [`SignalLogic`].
    Signal,
    /// [`ExecutionLogic`].
    Execution,
}

impl AnyLogic {
    /// The logic of a domain; `None` for System, which has no relay of its own.
    pub const fn for_domain(domain: RelayDomain) -> Option<AnyLogic> {
        match domain {
            RelayDomain::MarketData => Some(AnyLogic::MarketData),
            RelayDomain::Signal => Some(AnyLogic::Signal),
            RelayDomain::Execution => Some(AnyLogic::Execution),
            RelayDomain::System => None,
        }
    }
}

/// Calls the same method on whichever logic `self` is.
macro_rules! any {
    ($self:expr, $logic:ident => $call:expr) => {
        match $self {
            AnyLogic::MarketData => {
                let $logic = MarketDataLogic;
                $call
            }
            AnyLogic::Signal => {
                let $logic = SignalLogic;
                $call
            }
            AnyLogic::Execution => {
                let $logic = ExecutionLogic;
                $call
            }
        }
    };
}

impl RelayLogic for AnyLogic {
    fn defaults(&self) -> DomainDefaults {
        any!(self, l => l.defaults())
    }

    #[inline]
    fn check(&self, frame: &[u8], levels: &Levels) -> Result<FrameKind, protocol::Error> {
        any!(self, l => l.check(frame, levels))
    }

    #[inline]
    fn audits(&self, levels: &Levels) -> bool {
        any!(self, l => l.audits(levels))
    }

    #[inline]
    fn routes(&self, subscription: &Subscribe, key: &RoutingKey, source: u8) -> bool {
        any!(self, l => l.routes(subscription, key, source))
    }

    fn offers_shm(&self) -> bool {
        any!(self, l => l.offers_shm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_logic_serves_its_own_domain() {
        for domain in [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution] {
            let logic = AnyLogic::for_domain(domain).unwrap();
            assert_eq!(logic.domain(), domain);
            assert_eq!(logic.defaults().domain, domain);
        }
        assert_eq!(AnyLogic::for_domain(RelayDomain::System), None);
        assert!(ExecutionLogic.lossless() && !MarketDataLogic.lossless() && !SignalLogic.lossless());
        assert!(AnyLogic::Execution.lossless() && !AnyLogic::MarketData.lossless());
        assert_eq!(AnyLogic::Execution.defaults(), ExecutionLogic.defaults());
        assert!(MarketDataLogic.offers_shm() && SignalLogic.offers_shm() && !ExecutionLogic.offers_shm());
        assert!(!AnyLogic::Execution.offers_shm() && AnyLogic::Signal.offers_shm());
    }
}
