//! The TLV type registry of PROTOCOL.md §3: numbers, names, size rules and ranges.

use super::RelayDomain;

/// The length rule of a registered type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// Exactly this many bytes.
    Fixed(u16),
    /// From `.0` to `.1` bytes inclusive.
    Bounded(u16, u16),
    /// Any length.
    Variable,
    /// `32 + 24 * (bid_count + ask_count)` with the counts @12 and @14, at most 2729 levels.
    OrderBook,
    /// `4 + 16 * n` with `n` @2, at most 64.
    Subscribe,
}

/// A registered TLV type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type number.
    pub number: u8,
    /// The name, as in PROTOCOL.md.
    pub name: &'static str,
    /// The length rule.
    pub size: SizeRule,
}

/// The ranges of type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeRange {
    /// 0 and 255: never a TLV type.
    Invalid,
    /// 1..=19.
    MarketData,
    /// 20..=39.
    Signal,
    /// 40..=59.
    Execution,
    /// 60..=79: Signal (portfolio and risk), also allowed on Execution.
    PortfolioRisk,
    /// 80..=99: System (compliance and audit).
    Compliance,
    /// 100..=119: System (infrastructure), including the relay control types.
    Infrastructure,
    /// 120..=199: rejected by relays.
    Reserved,
    /// 200..=254.
    Vendor,
}

impl TypeRange {
    /// The range a type number belongs to.
    pub const fn of(tlv_type: u8) -> TypeRange {
        match tlv_type {
            0 | 255 => TypeRange::Invalid,
            1..=19 => TypeRange::MarketData,
            20..=39 => TypeRange::Signal,
            40..=59 => TypeRange::Execution,
            60..=79 => TypeRange::PortfolioRisk,
            80..=99 => TypeRange::Compliance,
            100..=119 => TypeRange::Infrastructure,
            120..=199 => TypeRange::Reserved,
            200..=254 => TypeRange::Vendor,
        }
    }
}

/// Whether a relay of `domain` forwards TLVs of this type: its own ranges, 80..=119 and
/// 200..=254 (Execution also 60..=79; a System relay only the shared ranges).
pub const fn allowed_on(domain: RelayDomain, tlv_type: u8) -> bool {
    matches!(
        (TypeRange::of(tlv_type), domain),
        (TypeRange::Compliance | TypeRange::Infrastructure | TypeRange::Vendor, _)
            | (TypeRange::MarketData, RelayDomain::MarketData)
            | (TypeRange::Signal | TypeRange::PortfolioRisk, RelayDomain::Signal)
            | (TypeRange::Execution | TypeRange::PortfolioRisk, RelayDomain::Execution)
    )
}

/// Subscribe (relay control, client → relay).
pub const SUBSCRIBE: u8 = 116;
/// RelayNotice (relay control, relay → client).
pub const RELAY_NOTICE: u8 = 117;
/// Heartbeat.
pub const HEARTBEAT: u8 = 100;

use SizeRule::{Bounded as B, Fixed as F, Variable as V};

const fn t(number: u8, name: &'static str, size: SizeRule) -> TypeInfo {
    TypeInfo { number, name, size }
}

/// Every registered type, in numeric order.
pub const REGISTERED: &[TypeInfo] = &[
    t(1, "Trade", F(40)),
    t(2, "Quote", F(56)),
    t(3, "OrderBook", SizeRule::OrderBook),
    t(4, "InstrumentMeta", V),
    t(5, "L2Snapshot", V),
    t(6, "L2Delta", V),
    t(7, "L2Reset", V),
    t(8, "PriceUpdate", V),
    t(9, "VolumeUpdate", V),
    t(10, "PoolLiquidity", B(20, 300)),
    t(11, "PoolSwap", B(60, 208)),
    t(12, "PoolMint", B(50, 208)),
    t(13, "PoolBurn", B(50, 208)),
    t(14, "PoolTick", B(30, 120)),
    t(15, "PoolState", B(60, 200)),
    t(16, "PoolSync", B(40, 160)),
    t(17, "QuoteUpdate", F(56)),
    t(18, "GasPrice", F(32)),
    t(19, "StateInvalidationReason", F(1)),
    t(20, "SignalIdentity", F(16)),
    t(21, "AssetCorrelation", F(24)),
    t(22, "Economics", F(32)),
    t(23, "ExecutionAddresses", F(84)),
    t(24, "VenueMetadata", F(12)),
    t(25, "StateReference", F(24)),
    t(26, "ExecutionControl", F(16)),
    t(27, "PoolAddresses", F(44)),
    t(28, "MEVBundle", F(40)),
    t(29, "TertiaryVenue", F(24)),
    t(30, "RiskParameters", B(24, 512)),
    t(31, "PerformanceMetrics", B(32, 1024)),
    t(32, "ArbitrageSignal", F(170)),
    t(40, "OrderRequest", F(48)),
    t(41, "OrderStatus", F(24)),
    t(42, "Fill", F(32)),
    t(43, "OrderCancel", F(16)),
    t(44, "OrderModify", F(24)),
    t(45, "ExecutionReport", F(48)),
    t(46, "Portfolio", B(32, 2048)),
    t(47, "Position", B(24, 512)),
    t(48, "Balance", B(16, 256)),
    t(49, "TradeConfirmation", B(32, 256)),
    t(60, "RiskDecision", F(32)),
    t(61, "PositionUpdate", B(40, 512)),
    t(62, "RiskAlert", B(24, 256)),
    t(63, "CollateralUpdate", F(48)),
    t(64, "ExposureReport", B(32, 1024)),
    t(65, "PortfolioEvent", B(32, 512)),
    t(66, "RiskThreshold", F(40)),
    t(67, "FlashLoanResult", B(48, 256)),
    t(68, "PostTradeAnalytics", B(64, 512)),
    t(69, "PositionQuery", F(32)),
    t(70, "RiskMetrics", B(48, 1024)),
    t(71, "CircuitBreaker", F(24)),
    t(72, "StrategyRegistration", B(32, 256)),
    t(80, "ComplianceCheck", B(32, 512)),
    t(81, "AuditTrail", B(48, 2048)),
    t(82, "RegulatoryReport", B(64, 4096)),
    t(83, "TradeBreakdown", B(48, 1024)),
    t(84, "SettlementInstruction", B(40, 512)),
    t(85, "ClearingReport", B(32, 512)),
    t(86, "MarginCall", F(48)),
    t(87, "CustodyEvent", B(40, 256)),
    t(88, "VenueConnectivity", F(32)),
    t(89, "CrossVenueSpread", F(40)),
    t(90, "ArbitrageExecution", B(48, 256)),
    t(100, "Heartbeat", F(16)),
    t(101, "Snapshot", B(32, 1024)),
    t(102, "Error", B(16, 512)),
    t(103, "ConfigUpdate", B(20, 2048)),
    t(104, "ServiceDiscovery", B(24, 512)),
    t(105, "ResourceUsage", F(64)),
    t(106, "StateInvalidation", B(16, 512)),
    t(107, "SystemHealth", F(48)),
    t(108, "TraceContext", B(32, 256)),
    t(110, "RecoveryRequest", F(24)),
    t(111, "RecoveryResponse", B(20, 1024)),
    t(112, "SequenceSync", B(16, 256)),
    t(SUBSCRIBE, "Subscribe", SizeRule::Subscribe),
    t(RELAY_NOTICE, "RelayNotice", B(12, 512)),
];

/// Every type number's entry, packed so a TLV costs one lookup.
static ENTRIES: [Entry; 256] = {
    let mut table = [Entry::UNREGISTERED; 256];
    let mut number = 0;
    while number < 256 {
        let mut allowed = 0;
        let mut domain = 0;
        while domain < RelayDomain::ALL.len() {
            if allowed_on(RelayDomain::ALL[domain], number as u8) {
                allowed |= 1 << domain;
            }
            domain += 1;
        }
        table[number].allowed = allowed;
        number += 1;
    }
    let mut i = 0;
    while i < REGISTERED.len() {
        let info = REGISTERED[i];
        let entry = &mut table[info.number as usize];
        assert!(entry.registered == 0, "a type is registered twice");
        assert!(!matches!(TypeRange::of(info.number), TypeRange::Invalid | TypeRange::Reserved));
        entry.registered = i as u8 + 1;
        (entry.min, entry.max, entry.exact, entry.formula) = match info.size {
            SizeRule::Fixed(n) => (n, n, true, Formula::None),
            SizeRule::Bounded(min, max) => (min, max, false, Formula::None),
            SizeRule::Variable => (0, u16::MAX, false, Formula::None),
            SizeRule::OrderBook => (32, (32 + 24 * MAX_BOOK_LEVELS) as u16, true, Formula::OrderBook),
            SizeRule::Subscribe => (4, (4 + 16 * MAX_FILTERS) as u16, true, Formula::Subscribe),
        };
        i += 1;
    }
    table
};

/// What the walker and validation need of a type number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Shortest length allowed.
    min: u16,
    /// Longest length allowed.
    max: u16,
    /// A length outside `min..=max` is a mismatch (fixed sizes and formulas), not out of bounds.
    exact: bool,
    /// A formula that must also hold.
    formula: Formula,
    /// Bit `d` is set when the type is allowed on the relay of domain `d`.
    allowed: u8,
    /// Index in [`REGISTERED`] plus one; 0 when the number is not registered.
    registered: u8,
}

#[derive(Debug, Clone, Copy)]
enum Formula {
    None,
    OrderBook,
    Subscribe,
}

impl Entry {
    const UNREGISTERED: Entry =
        Entry { min: 0, max: u16::MAX, exact: false, formula: Formula::None, allowed: 0, registered: 0 };

    /// Checks a value's length against the type's size rule.
    #[inline(always)]
    pub(crate) fn check(&self, value: &[u8]) -> Result<(), SizeFault> {
        let len = value.len();
        if len < usize::from(self.min) || len > usize::from(self.max) {
            return Err(if self.exact {
                SizeFault::Mismatch
            } else {
                SizeFault::OutOfBounds(self.min, self.max)
            });
        }
        let ok = match self.formula {
            Formula::None => true,
            Formula::OrderBook => order_book_levels(value).is_some(),
            Formula::Subscribe => len == 4 + 16 * usize::from(u16::from_le_bytes([value[2], value[3]])),
        };
        if ok { Ok(()) } else { Err(SizeFault::Mismatch) }
    }

    /// Whether the type is allowed on a relay of `domain`.
    #[inline(always)]
    pub(crate) fn allowed_on(&self, domain: RelayDomain) -> bool {
        self.allowed & (1 << domain.raw()) != 0
    }

    /// Whether the type is registered.
    #[inline(always)]
    pub(crate) fn is_registered(&self) -> bool {
        self.registered != 0
    }
}

/// The entry of a type number.
#[inline(always)]
pub(crate) fn entry(tlv_type: u8) -> &'static Entry {
    &ENTRIES[usize::from(tlv_type)]
}

/// The registered type with this number.
#[inline]
pub fn lookup(tlv_type: u8) -> Option<&'static TypeInfo> {
    let index = entry(tlv_type).registered;
    if index == 0 { None } else { REGISTERED.get(usize::from(index) - 1) }
}

/// The name of a registered type.
pub fn name(tlv_type: u8) -> Option<&'static str> {
    lookup(tlv_type).map(|info| info.name)
}

/// Largest OrderBook level count (the value must fit a u16 length).
pub const MAX_BOOK_LEVELS: usize = 2729;
/// Largest Subscribe filter count.
pub const MAX_FILTERS: usize = 64;

/// Why a length breaks a size rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SizeFault {
    Mismatch,
    OutOfBounds(u16, u16),
}

/// `(bid_count, ask_count)` of an OrderBook value whose length meets its formula.
#[inline]
pub(crate) fn order_book_levels(value: &[u8]) -> Option<(u16, u16)> {
    let counts = value.get(12..16)?;
    let bids = u16::from_le_bytes([counts[0], counts[1]]);
    let asks = u16::from_le_bytes([counts[2], counts[3]]);
    let levels = usize::from(bids) + usize::from(asks);
    (levels <= MAX_BOOK_LEVELS && value.len() == 32 + 24 * levels).then_some((bids, asks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_every_number_of_section_3() {
        assert_eq!(REGISTERED.len(), 80);
        assert_eq!(name(2), Some("Quote"));
        assert_eq!(lookup(40).unwrap().size, SizeRule::Fixed(48));
        assert_eq!(lookup(82).unwrap().size, SizeRule::Bounded(64, 4096));
        assert_eq!(lookup(11).unwrap().size, SizeRule::Bounded(60, 208));
        assert_eq!(lookup(33), None);
        assert_eq!(lookup(109), None);
        assert_eq!(entry(2).check(&[0; 56]), Ok(()));
        assert_eq!(entry(2).check(&[0; 55]), Err(SizeFault::Mismatch));
        assert_eq!(entry(11).check(&[0; 209]), Err(SizeFault::OutOfBounds(60, 208)));
        assert_eq!(entry(116).check(&[1, 0, 1, 0]), Err(SizeFault::Mismatch));
        assert_eq!(entry(116).check(&[1, 0, 0, 0]), Ok(()));
        assert_eq!(entry(200).check(&[0; 1000]), Ok(()));
        for number in 0..=255u8 {
            for domain in RelayDomain::ALL {
                assert_eq!(entry(number).allowed_on(*domain), allowed_on(*domain, number));
            }
        }
        let mut last = 0;
        for info in REGISTERED {
            assert!(info.number > last, "{} out of order", info.number);
            last = info.number;
        }
    }

    #[test]
    fn allowed_types_per_domain() {
        use RelayDomain::*;
        let allowed = |d, t| allowed_on(d, t);
        assert!(allowed(MarketData, 1) && !allowed(MarketData, 20) && !allowed(MarketData, 60));
        assert!(allowed(Signal, 32) && allowed(Signal, 65) && !allowed(Signal, 40));
        assert!(allowed(Execution, 40) && allowed(Execution, 60) && !allowed(Execution, 1));
        for d in [MarketData, Signal, Execution, System] {
            assert!(allowed(d, 80) && allowed(d, 119) && allowed(d, 200) && allowed(d, 254));
            assert!(!allowed(d, 120) && !allowed(d, 199) && !allowed(d, 0) && !allowed(d, 255));
        }
        assert!(!allowed(System, 1));
    }

    #[test]
    fn order_book_rule_reads_the_level_counts() {
        let mut book = vec![0u8; 32 + 24 * 3];
        book[12] = 2;
        book[14] = 1;
        assert_eq!(entry(3).check(&book), Ok(()));
        book[14] = 2;
        assert_eq!(entry(3).check(&book), Err(SizeFault::Mismatch));
        // The legacy 2456-byte book: a multiple of 24 after 32, but its counts say otherwise.
        let legacy = vec![0u8; 2456];
        assert_eq!(entry(3).check(&legacy), Err(SizeFault::Mismatch));
        assert_eq!(entry(3).check(&[0; 15]), Err(SizeFault::Mismatch));
    }
}
