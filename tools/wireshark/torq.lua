-- torq.lua: a Wireshark dissector for Torq Protocol V2, the wire format of PROTOCOL.md §1–§6
-- (a 32-byte header and a TLV payload; the project README says where that document is).
--
-- It dissects the recordings of `torq-record` (pcapng, LINKTYPE_USER0 = DLT 147, one packet
-- per read, so a packet holds one or several whole frames back to back) as `torq-decode`
-- decodes them: the header (checksum verified), every TLV of either form with its registry
-- name, the payload layouts of §4 and the control values of §6, and torq-decode's error
-- tokens and messages as expert info (field torq.error holds a frame's first error token).
--
--   tshark -X lua_script:tools/wireshark/torq.lua -r orders.pcapng -V
--   wireshark -X lua_script:tools/wireshark/torq.lua orders.pcapng
--
-- or copy this file into the personal Lua plugins folder that `tshark -G folders` names
-- ("Personal Lua Plugins": ~/.local/lib/wireshark/plugins since Wireshark 2.5). Lua 5.2, as
-- Wireshark embeds it; tests/wireshark.rs checks it with tshark 4.0 against torq-decode,
-- frame by frame and field by field.
--
-- Field values are the raw wire numbers (what torq-decode prints, and what display filters
-- compare: torq.trade.price > 4500000000000); the tree shows prices and sizes (i64 × 1e8) as
-- exact decimals, nanosecond timestamps as UTC times, and names for domains, sources, venues,
-- asset types and codes.

local torq = Proto("torq", "Torq Protocol V2")

---------------------------------------------------------------------------------------------
-- Names (PROTOCOL.md §1, §3, §5, §6)

local DOMAINS = { [0] = "MarketData", [1] = "Signal", [2] = "Execution", [3] = "System" }

local SOURCES = {
    [0] = "Unknown", [1] = "BinanceCollector", [2] = "CoinbaseCollector", [3] = "KrakenCollector",
    [4] = "PolygonCollector", [5] = "GeminiCollector", [10] = "ArbitrageStrategy",
    [11] = "MarketMaker", [12] = "TrendFollower", [15] = "StateManager", [20] = "ExecutionEngine",
    [21] = "PortfolioManager", [22] = "RiskManager", [30] = "Dashboard", [31] = "MetricsCollector",
    [80] = "MarketDataRelay", [81] = "SignalRelay", [82] = "ExecutionRelay", [99] = "TestClient",
}

local VENUES = {
    [0] = "Generic", [1] = "NYSE", [2] = "NASDAQ", [3] = "LSE", [4] = "TSE", [5] = "HKEX",
    [100] = "Binance", [101] = "Kraken", [102] = "Coinbase", [103] = "Huobi", [104] = "OKEx",
    [105] = "FTX", [106] = "Bybit", [107] = "KuCoin", [108] = "Gemini",
    [200] = "Ethereum", [201] = "Bitcoin", [202] = "Polygon", [203] = "BinanceSmartChain",
    [204] = "Avalanche", [205] = "Fantom", [206] = "Arbitrum", [207] = "Optimism", [208] = "Solana",
    [209] = "Cardano", [210] = "Polkadot", [211] = "Cosmos",
    [300] = "UniswapV2", [301] = "UniswapV3", [302] = "SushiSwap", [303] = "Curve",
    [304] = "Balancer", [305] = "Aave", [306] = "Compound", [307] = "MakerDAO", [308] = "Yearn",
    [309] = "Synthetix", [310] = "DYdX",
    [400] = "QuickSwap", [401] = "SushiSwapPolygon", [402] = "CurvePolygon", [403] = "AavePolygon",
    [404] = "BalancerPolygon", [500] = "PancakeSwap", [501] = "VenusProtocol",
    [600] = "UniswapV3Arbitrum", [601] = "SushiSwapArbitrum", [602] = "CurveArbitrum",
    [700] = "Deribit", [701] = "BybitDerivatives", [702] = "OpynProtocol", [703] = "Hegic",
    [800] = "COMEX", [801] = "CME", [802] = "ICE", [803] = "ForexCom",
    [65000] = "TestVenue", [65001] = "MockExchange",
}

local ASSET_TYPES = {
    [1] = "Stock", [2] = "Bond", [3] = "ETF", [4] = "Commodity", [5] = "Currency", [6] = "Index",
    [50] = "Token", [51] = "Coin", [52] = "NFT", [53] = "StableCoin", [54] = "WrappedToken",
    [100] = "Pool", [101] = "LPToken", [102] = "YieldToken", [103] = "SyntheticAsset",
    [104] = "DerivativeToken", [105] = "GovernanceToken",
    [150] = "Option", [151] = "Future", [152] = "Swap", [153] = "Forward", [154] = "CDS",
    [200] = "StructuredNote", [201] = "ConvertibleBond", [250] = "TestAsset", [251] = "MockAsset",
}

local SIDES = { [0] = "buy", [1] = "sell" }
local ORDER_TYPES = { [0] = "market", [1] = "limit" }
local TIME_IN_FORCE = { [0] = "GTC", [1] = "IOC", [2] = "FOK" }
local ORDER_STATUS = { [0] = "new", [1] = "partially filled", [2] = "filled", [3] = "cancelled", [4] = "rejected" }
local ROLES = { [0] = "publish only", [1] = "subscribe", [2] = "publish and subscribe" }
local FILTER_KINDS = {
    [1] = "type range", [2] = "source", [3] = "instrument", [4] = "venue", [5] = "type range and venue",
}
local NOTICE_CODES = {
    [1] = "subscribed", [2] = "frame rejected", [3] = "protocol error", [4] = "frames dropped",
    [5] = "relay stopping", [6] = "access denied", [7] = "accepted",
}
local CHECKSUM_STATUS = { [0] = "Bad", [1] = "Good", [2] = "Unverified (0: not computed)" }

-- The registry of §3: number → name and size rule. Rules: { "F", n } fixed, { "B", min, max }
-- bounded, { "V" } variable, { "OB" } OrderBook, { "SUB" } Subscribe.
local F, B, V = "F", "B", "V"
local REGISTRY = {
    [1] = { "Trade", F, 40 }, [2] = { "Quote", F, 56 }, [3] = { "OrderBook", "OB" },
    [4] = { "InstrumentMeta", V }, [5] = { "L2Snapshot", V }, [6] = { "L2Delta", V },
    [7] = { "L2Reset", V }, [8] = { "PriceUpdate", V }, [9] = { "VolumeUpdate", V },
    [10] = { "PoolLiquidity", B, 20, 300 }, [11] = { "PoolSwap", B, 60, 208 },
    [12] = { "PoolMint", B, 50, 208 }, [13] = { "PoolBurn", B, 50, 208 },
    [14] = { "PoolTick", B, 30, 120 }, [15] = { "PoolState", B, 60, 200 },
    [16] = { "PoolSync", B, 40, 160 }, [17] = { "QuoteUpdate", F, 56 }, [18] = { "GasPrice", F, 32 },
    [19] = { "StateInvalidationReason", F, 1 },
    [20] = { "SignalIdentity", F, 16 }, [21] = { "AssetCorrelation", F, 24 },
    [22] = { "Economics", F, 32 }, [23] = { "ExecutionAddresses", F, 84 },
    [24] = { "VenueMetadata", F, 12 }, [25] = { "StateReference", F, 24 },
    [26] = { "ExecutionControl", F, 16 }, [27] = { "PoolAddresses", F, 44 },
    [28] = { "MEVBundle", F, 40 }, [29] = { "TertiaryVenue", F, 24 },
    [30] = { "RiskParameters", B, 24, 512 }, [31] = { "PerformanceMetrics", B, 32, 1024 },
    [32] = { "ArbitrageSignal", F, 170 },
    [40] = { "OrderRequest", F, 48 }, [41] = { "OrderStatus", F, 24 }, [42] = { "Fill", F, 32 },
    [43] = { "OrderCancel", F, 16 }, [44] = { "OrderModify", F, 24 },
    [45] = { "ExecutionReport", F, 48 }, [46] = { "Portfolio", B, 32, 2048 },
    [47] = { "Position", B, 24, 512 }, [48] = { "Balance", B, 16, 256 },
    [49] = { "TradeConfirmation", B, 32, 256 },
    [60] = { "RiskDecision", F, 32 }, [61] = { "PositionUpdate", B, 40, 512 },
    [62] = { "RiskAlert", B, 24, 256 }, [63] = { "CollateralUpdate", F, 48 },
    [64] = { "ExposureReport", B, 32, 1024 }, [65] = { "PortfolioEvent", B, 32, 512 },
    [66] = { "RiskThreshold", F, 40 }, [67] = { "FlashLoanResult", B, 48, 256 },
    [68] = { "PostTradeAnalytics", B, 64, 512 }, [69] = { "PositionQuery", F, 32 },
    [70] = { "RiskMetrics", B, 48, 1024 }, [71] = { "CircuitBreaker", F, 24 },
    [72] = { "StrategyRegistration", B, 32, 256 },
    [80] = { "ComplianceCheck", B, 32, 512 }, [81] = { "AuditTrail", B, 48, 2048 },
    [82] = { "RegulatoryReport", B, 64, 4096 }, [83] = { "TradeBreakdown", B, 48, 1024 },
    [84] = { "SettlementInstruction", B, 40, 512 }, [85] = { "ClearingReport", B, 32, 512 },
    [86] = { "MarginCall", F, 48 }, [87] = { "CustodyEvent", B, 40, 256 },
    [88] = { "VenueConnectivity", F, 32 }, [89] = { "CrossVenueSpread", F, 40 },
    [90] = { "ArbitrageExecution", B, 48, 256 },
    [100] = { "Heartbeat", F, 16 }, [101] = { "Snapshot", B, 32, 1024 },
    [102] = { "Error", B, 16, 512 }, [103] = { "ConfigUpdate", B, 20, 2048 },
    [104] = { "ServiceDiscovery", B, 24, 512 }, [105] = { "ResourceUsage", F, 64 },
    [106] = { "StateInvalidation", B, 16, 512 }, [107] = { "SystemHealth", F, 48 },
    [108] = { "TraceContext", B, 32, 256 }, [110] = { "RecoveryRequest", F, 24 },
    [111] = { "RecoveryResponse", B, 20, 1024 }, [112] = { "SequenceSync", B, 16, 256 },
    [116] = { "Subscribe", "SUB" }, [117] = { "RelayNotice", B, 12, 512 },
}

local TYPE_NAMES = {}
for number, entry in pairs(REGISTRY) do
    TYPE_NAMES[number] = entry[1]
end

local function range_name(t)
    if t == 0 or t == 255 then return "invalid"
    elseif t <= 19 then return "MarketData"
    elseif t <= 39 then return "Signal"
    elseif t <= 59 then return "Execution"
    elseif t <= 79 then return "Signal (portfolio and risk)"
    elseif t <= 99 then return "System (compliance and audit)"
    elseif t <= 119 then return "System (infrastructure)"
    elseif t <= 199 then return "reserved"
    else return "vendor" end
end

local MAX_BOOK_LEVELS = 2729
local MAX_FILTERS = 64

---------------------------------------------------------------------------------------------
-- Payload layouts (§4) and control values (§6), field by field at their offsets, named as
-- torq-decode names them. Kinds: u8, u16, u32, u64, q8 (i64 × 1e8), addr (20 bytes).
-- Hints: venue, asset_type, side, order_type, tif, status, ts (ns since the epoch), asset.

local LAYOUTS = {
    trade = {
        { "asset_id", 0, "u64", "asset" }, { "price", 8, "q8" }, { "volume", 16, "q8" },
        { "execution_timestamp_ns", 24, "u64", "ts" }, { "venue", 32, "u16", "venue" },
        { "asset_type", 34, "u8", "asset_type" }, { "side", 36, "u8", "side" },
    },
    quote = {
        { "asset_id", 0, "u64", "asset" }, { "bid_price", 8, "q8" }, { "bid_size", 16, "q8" },
        { "ask_price", 24, "q8" }, { "ask_size", 32, "q8" }, { "quote_timestamp_ns", 40, "u64", "ts" },
        { "venue", 48, "u16", "venue" }, { "asset_type", 50, "u8", "asset_type" },
    },
    order_book = {
        { "asset_id", 0, "u64", "asset" }, { "venue", 8, "u16", "venue" },
        { "asset_type", 10, "u8", "asset_type" }, { "bid_count", 12, "u16" }, { "ask_count", 14, "u16" },
        { "snapshot_timestamp_ns", 16, "u64", "ts" }, { "book_sequence", 24, "u64" },
    },
    ["order_book.bid"] = { { "price", 0, "q8" }, { "size", 8, "q8" }, { "order_count", 16, "u32" } },
    ["order_book.ask"] = { { "price", 0, "q8" }, { "size", 8, "q8" }, { "order_count", 16, "u32" } },
    signal_identity = {
        { "signal_id", 0, "u64" }, { "strategy_id", 8, "u16" }, { "signal_type", 10, "u8" },
        { "confidence", 11, "u8" }, { "valid_for_ms", 12, "u32" },
    },
    arbitrage_signal = {
        { "strategy_id", 0, "u16" }, { "signal_id", 2, "u64" }, { "chain_id", 10, "u32" },
        { "source_pool", 14, "addr" }, { "target_pool", 34, "addr" },
        { "source_venue", 54, "u16", "venue" }, { "target_venue", 56, "u16", "venue" },
        { "token_in", 58, "addr" }, { "token_out", 78, "addr" },
        { "expected_profit_usd_q8", 98, "q8" }, { "required_capital_usd_q8", 106, "q8" },
        { "spread_bps", 114, "u16" }, { "dex_fees_usd_q8", 116, "q8" }, { "gas_cost_usd_q8", 124, "q8" },
        { "slippage_usd_q8", 132, "q8" }, { "net_profit_usd_q8", 140, "q8" },
        { "slippage_tolerance_bps", 148, "u16" }, { "max_gas_price_gwei", 150, "u32" },
        { "valid_until", 154, "u32", "unix_s" }, { "priority", 158, "u16" }, { "timestamp_ns", 162, "u64", "ts" },
    },
    order_request = {
        { "order_id", 0, "u64" }, { "asset_id", 8, "u64", "asset" }, { "venue", 16, "u16", "venue" },
        { "asset_type", 18, "u8", "asset_type" }, { "side", 19, "u8", "side" },
        { "order_type", 20, "u8", "order_type" }, { "time_in_force", 21, "u8", "tif" },
        { "price", 24, "q8" }, { "quantity", 32, "q8" }, { "strategy_id", 40, "u16" },
    },
    order_status = { { "order_id", 0, "u64" }, { "filled_quantity", 8, "q8" }, { "status", 16, "u8", "status" } },
    fill = { { "order_id", 0, "u64" }, { "fill_id", 8, "u64" }, { "price", 16, "q8" }, { "quantity", 24, "q8" } },
    order_cancel = { { "order_id", 0, "u64" }, { "reason", 8, "u8" } },
    order_modify = { { "order_id", 0, "u64" }, { "new_price", 8, "q8" }, { "new_quantity", 16, "q8" } },
    heartbeat = { { "timestamp_ns", 0, "u64", "ts" }, { "frames_sent", 8, "u64" } },
}

-- TLV type → layout (fixed layouts only; OrderBook, Subscribe and RelayNotice are special).
local LAYOUT_OF = {
    [1] = "trade", [2] = "quote", [17] = "quote", [20] = "signal_identity", [32] = "arbitrage_signal",
    [40] = "order_request", [41] = "order_status", [42] = "fill", [43] = "order_cancel",
    [44] = "order_modify", [100] = "heartbeat",
}

local NAMES_OF_HINT = {
    venue = VENUES, asset_type = ASSET_TYPES, side = SIDES, order_type = ORDER_TYPES,
    tif = TIME_IN_FORCE, status = ORDER_STATUS,
}

---------------------------------------------------------------------------------------------
-- Fields

local f = {
    magic = ProtoField.uint32("torq.magic", "magic", base.HEX),
    relay_domain = ProtoField.uint8("torq.relay_domain", "relay_domain", base.DEC, DOMAINS),
    version = ProtoField.uint8("torq.version", "version", base.DEC),
    source = ProtoField.uint8("torq.source", "source", base.DEC, SOURCES),
    flags = ProtoField.uint8("torq.flags", "flags", base.HEX),
    bridged = ProtoField.bool("torq.flags.bridged", "bridged", 8,
        { "entered this host through a bridge", "not bridged" }, 0x01),
    flags_undefined = ProtoField.uint8("torq.flags.undefined", "undefined bits", base.HEX, nil, 0xFE),
    sequence = ProtoField.uint64("torq.sequence", "sequence", base.DEC),
    timestamp = ProtoField.uint64("torq.timestamp", "timestamp", base.DEC, nil, nil,
        "Nanoseconds since the Unix epoch, set by the publisher"),
    time = ProtoField.absolute_time("torq.timestamp.time", "time", base.UTC,
        "The header timestamp as a time"),
    payload_size = ProtoField.uint32("torq.payload_size", "payload_size", base.DEC),
    checksum = ProtoField.uint32("torq.checksum", "checksum", base.HEX, nil, nil,
        "CRC-32/ISO-HDLC over header bytes 0..28 then the payload; 0 = not computed"),
    checksum_computed = ProtoField.uint32("torq.checksum.computed", "computed checksum", base.HEX),
    checksum_status = ProtoField.uint8("torq.checksum.status", "checksum status", base.DEC, CHECKSUM_STATUS),
    error = ProtoField.string("torq.error", "error", base.ASCII,
        "torq-decode's error token for this frame (the first error found)"),
    tlv = ProtoField.none("torq.tlv", "TLV"),
    tlv_marker = ProtoField.uint8("torq.tlv.extended_marker", "extended form marker", base.DEC),
    tlv_reserved = ProtoField.uint8("torq.tlv.reserved", "reserved", base.DEC),
    tlv_type = ProtoField.uint8("torq.tlv.type", "type", base.DEC, TYPE_NAMES),
    tlv_name = ProtoField.string("torq.tlv.name", "name", base.ASCII, "The registry name of the type"),
    tlv_length = ProtoField.uint16("torq.tlv.length", "length", base.DEC),
    tlv_extended = ProtoField.bool("torq.tlv.extended", "extended form"),
    tlv_value = ProtoField.bytes("torq.tlv.value", "value"),
    tlv_value_error = ProtoField.string("torq.tlv.value_error", "value_error", base.ASCII),
    -- Subscribe (116)
    sub_role = ProtoField.uint8("torq.subscribe.role", "role", base.DEC, ROLES),
    sub_options = ProtoField.uint8("torq.subscribe.options", "options", base.HEX),
    sub_opt_notices = ProtoField.bool("torq.subscribe.options.notices", "send me RelayNotice frames", 8, nil, 0x01),
    sub_opt_heartbeats = ProtoField.bool("torq.subscribe.options.heartbeats", "send me Heartbeats when idle", 8, nil, 0x02),
    sub_opt_confirm = ProtoField.bool("torq.subscribe.options.confirm", "confirm what I publish", 8, nil, 0x04),
    sub_opt_shm = ProtoField.bool("torq.subscribe.options.shm", "deliver through shared memory", 8, nil, 0x08),
    sub_opt_reserved = ProtoField.uint8("torq.subscribe.options.reserved", "reserved bits (must be 0)", base.HEX, nil, 0xF0),
    sub_n = ProtoField.uint16("torq.subscribe.n", "n", base.DEC),
    sub_filter = ProtoField.none("torq.subscribe.filter", "filter"),
    flt_kind = ProtoField.uint8("torq.subscribe.filter.kind", "kind", base.DEC, FILTER_KINDS),
    flt_lo = ProtoField.uint8("torq.subscribe.filter.lo", "lo", base.DEC),
    flt_hi = ProtoField.uint8("torq.subscribe.filter.hi", "hi", base.DEC),
    flt_source = ProtoField.uint8("torq.subscribe.filter.source", "source", base.DEC, SOURCES),
    flt_venue = ProtoField.uint16("torq.subscribe.filter.venue", "venue", base.DEC, VENUES),
    flt_asset_type = ProtoField.uint8("torq.subscribe.filter.asset_type", "asset_type", base.DEC, ASSET_TYPES),
    flt_reserved = ProtoField.uint8("torq.subscribe.filter.reserved", "reserved", base.DEC),
    flt_asset_id = ProtoField.uint64("torq.subscribe.filter.asset_id", "asset_id", base.HEX),
    -- RelayNotice (117)
    notice_code = ProtoField.uint16("torq.relay_notice.code", "code", base.DEC, NOTICE_CODES),
    notice_sequence = ProtoField.uint64("torq.relay_notice.sequence", "sequence", base.DEC),
    notice_text = ProtoField.string("torq.relay_notice.text", "text", base.UNICODE),
    -- OrderBook (3) level containers
    book_bid = ProtoField.none("torq.order_book.bid", "bid"),
    book_ask = ProtoField.none("torq.order_book.ask", "ask"),
}

-- One field per layout field: torq.<layout>.<name>.
local LAYOUT_FIELDS = {}
for layout, specs in pairs(LAYOUTS) do
    LAYOUT_FIELDS[layout] = {}
    for _, spec in ipairs(specs) do
        local name, kind, hint = spec[1], spec[3], spec[4]
        local abbr = "torq." .. layout .. "." .. name
        local field
        if kind == "u8" then
            field = ProtoField.uint8(abbr, name, base.DEC, NAMES_OF_HINT[hint])
        elseif kind == "u16" then
            field = ProtoField.uint16(abbr, name, base.DEC, NAMES_OF_HINT[hint])
        elseif kind == "u32" then
            field = ProtoField.uint32(abbr, name, base.DEC)
        elseif kind == "u64" then
            field = ProtoField.uint64(abbr, name, hint == "asset" and base.HEX or base.DEC)
        elseif kind == "q8" then
            field = ProtoField.int64(abbr, name, base.DEC, nil, nil,
                "Fixed point: the raw i64 is the value × 1e8 (filters compare the raw integer)")
        elseif kind == "addr" then
            field = ProtoField.bytes(abbr, name, base.NONE)
        end
        LAYOUT_FIELDS[layout][name] = field
        f[abbr] = field
    end
end

local fields = {}
for _, field in pairs(f) do
    fields[#fields + 1] = field
end
torq.fields = fields

---------------------------------------------------------------------------------------------
-- Expert info: one per torq-decode error token, plus the checksum and value errors.

local ERROR_TOKENS = {
    "bad_magic", "unsupported_version", "truncated_frame", "bad_domain", "tlv_invalid_type",
    "tlv_truncated", "tlv_reserved_nonzero", "tlv_size_mismatch", "tlv_size_out_of_bounds",
}
local ex = {}
local experts = {}
for _, token in ipairs(ERROR_TOKENS) do
    local group = (token == "truncated_frame" or token == "tlv_truncated") and expert.group.MALFORMED
        or expert.group.PROTOCOL
    ex[token] = ProtoExpert.new("torq." .. token, token, group, expert.severity.ERROR)
    experts[#experts + 1] = ex[token]
end
ex.checksum_mismatch = ProtoExpert.new("torq.checksum_mismatch", "checksum_mismatch",
    expert.group.CHECKSUM, expert.severity.ERROR)
ex.bad_subscribe = ProtoExpert.new("torq.bad_subscribe", "bad_subscribe", expert.group.PROTOCOL, expert.severity.ERROR)
ex.bad_notice = ProtoExpert.new("torq.bad_notice", "bad_notice", expert.group.PROTOCOL, expert.severity.ERROR)
ex.undefined_flags = ProtoExpert.new("torq.undefined_flags", "flags bits 1-7 are undefined",
    expert.group.PROTOCOL, expert.severity.NOTE)
experts[#experts + 1] = ex.checksum_mismatch
experts[#experts + 1] = ex.bad_subscribe
experts[#experts + 1] = ex.bad_notice
experts[#experts + 1] = ex.undefined_flags
torq.experts = experts

---------------------------------------------------------------------------------------------
-- Helpers

-- An i64 × 1e8 as an exact decimal: "45000.00000000", "-0.00000005".
local function decimal(raw)
    local s = tostring(raw)
    local sign = ""
    if s:sub(1, 1) == "-" then
        sign, s = "-", s:sub(2)
    end
    if #s < 9 then
        s = string.rep("0", 9 - #s) .. s
    end
    return sign .. s:sub(1, -9) .. "." .. s:sub(-8)
end

-- A count of nanoseconds since the epoch (UInt64) as "2023-11-14 22:13:20.123456789 UTC".
local function ns_time(ns)
    local s = tostring(ns)
    if #s < 10 then
        s = string.rep("0", 10 - #s) .. s
    end
    local secs = tonumber(s:sub(1, -10))
    return os.date("!%Y-%m-%d %H:%M:%S", secs) .. "." .. s:sub(-9) .. " UTC", secs, tonumber(s:sub(-9))
end

-- The symbol packed in an asset id (§5): its bytes from the most significant down (the last
-- on the wire), stopping at the first zero byte; nil unless 1–8 printable bytes.
local function symbol(tvb, off)
    local chars = {}
    for i = 7, 0, -1 do
        local b = tvb(off + i, 1):uint()
        if b == 0 then break end
        if b < 0x21 or b > 0x7E then return nil end
        chars[#chars + 1] = string.char(b)
    end
    if #chars == 0 then return nil end
    return table.concat(chars)
end

-- CRC-32/ISO-HDLC (reflected 0xEDB88320, init and final xor 0xFFFFFFFF).
local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if bit32.band(c, 1) == 1 then
            c = bit32.bxor(0xEDB88320, bit32.rshift(c, 1))
        else
            c = bit32.rshift(c, 1)
        end
    end
    CRC_TABLE[i] = c
end

local function crc_update(crc, bytes)
    local band, bxor, rshift = bit32.band, bit32.bxor, bit32.rshift
    for i = 1, #bytes, 4096 do
        local chunk = { bytes:byte(i, math.min(i + 4095, #bytes)) }
        for j = 1, #chunk do
            crc = bxor(rshift(crc, 8), CRC_TABLE[band(bxor(crc, chunk[j]), 0xFF)])
        end
    end
    return crc
end

-- The checksum of a whole frame at tvb offset `off`: header bytes 0..28, then the payload.
local function frame_checksum(tvb, off, len)
    local crc = crc_update(0xFFFFFFFF, tvb:raw(off, 28))
    if len > 32 then
        crc = crc_update(crc, tvb:raw(off + 32, len - 32))
    end
    return bit32.bxor(crc, 0xFFFFFFFF)
end

-- Whether a Lua string is UTF-8 as Rust's str::from_utf8 accepts it.
local function valid_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local need, lo, hi = 0, 0x80, 0xBF
        if c < 0x80 then
            need = 0
        elseif c >= 0xC2 and c <= 0xDF then
            need = 1
        elseif c == 0xE0 then
            need, lo = 2, 0xA0
        elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then
            need = 2
        elseif c == 0xED then
            need, hi = 2, 0x9F
        elseif c == 0xF0 then
            need, lo = 3, 0x90
        elseif c >= 0xF1 and c <= 0xF3 then
            need = 3
        elseif c == 0xF4 then
            need, hi = 3, 0x8F
        else
            return false
        end
        if i + need > n then return false end
        for k = 1, need do
            local b = s:byte(i + k)
            if k == 1 then
                if b < lo or b > hi then return false end
            elseif b < 0x80 or b > 0xBF then
                return false
            end
        end
        i = i + need + 1
    end
    return true
end

local function hex_bytes(tvb, off, len)
    local raw = tvb:raw(off, len)
    return "0x" .. (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Adds one layout field read at `off` under `tree`.
local function add_layout_field(tree, field, spec, tvb, off)
    local name, kind, hint = spec[1], spec[3], spec[4]
    if kind == "u8" or kind == "u16" or kind == "u32" then
        local size = (kind == "u8" and 1) or (kind == "u16" and 2) or 4
        local range = tvb(off, size)
        local item = tree:add_le(field, range)
        if hint == "unix_s" then
            item:append_text(" (" .. os.date("!%Y-%m-%d %H:%M:%S", range:le_uint()) .. " UTC)")
        end
    elseif kind == "u64" then
        local range = tvb(off, 8)
        local value = range:le_uint64()
        local item = tree:add(field, range, value)
        if hint == "ts" then
            item:append_text(" (" .. ns_time(value) .. ")")
        elseif hint == "asset" then
            local sym = symbol(tvb, off)
            if sym then item:append_text(" (\"" .. sym .. "\")") end
        end
    elseif kind == "q8" then
        local range = tvb(off, 8)
        local value = range:le_int64()
        tree:add(field, range, value):set_text(name .. ": " .. decimal(value) .. " (raw " .. tostring(value) .. ")")
    elseif kind == "addr" then
        local range = tvb(off, 20)
        tree:add(field, range):set_text(name .. ": " .. hex_bytes(tvb, off, 20))
    end
end

local function add_layout(tree, layout, tvb, off)
    for _, spec in ipairs(LAYOUTS[layout]) do
        add_layout_field(tree, LAYOUT_FIELDS[layout][spec[1]], spec, tvb, off + spec[2])
    end
end

---------------------------------------------------------------------------------------------
-- Values

local function dissect_order_book(tree, tvb, off, len)
    add_layout(tree, "order_book", tvb, off)
    local bids = tvb(off + 12, 2):le_uint()
    local asks = tvb(off + 14, 2):le_uint()
    for i = 0, bids + asks - 1 do
        local at = off + 32 + 24 * i
        local is_bid = i < bids
        local side = is_bid and "bid" or "ask"
        local index = is_bid and i or i - bids
        local level = tree:add(is_bid and f.book_bid or f.book_ask, tvb(at, 24))
        level:set_text(string.format("%s %d: %s @ %s (%d orders)", side, index,
            decimal(tvb(at + 8, 8):le_int64()), decimal(tvb(at, 8):le_int64()), tvb(at + 16, 4):le_uint()))
        add_layout(level, "order_book." .. side, tvb, at)
    end
end

-- The unused bytes of each filter kind (§6): every byte but these must be 0.
local FILTER_USED = {
    [1] = { [1] = true, [2] = true }, [2] = { [1] = true },
    [3] = { [2] = true, [3] = true, [4] = true, [8] = true, [9] = true, [10] = true, [11] = true,
        [12] = true, [13] = true, [14] = true, [15] = true },
    [4] = { [2] = true, [3] = true }, [5] = { [1] = true, [2] = true, [4] = true, [5] = true },
}

-- Subscribe (116): the walker has checked 4 + 16·n with n ≤ 64. Returns the first broken
-- rule as Subscribe::parse words it, or nil.
local function dissect_subscribe(tree, tvb, off, len)
    local problem
    local role = tvb(off, 1):uint()
    local options = tvb(off + 1, 1):uint()
    local n = tvb(off + 2, 2):le_uint()
    tree:add(f.sub_role, tvb(off, 1))
    local opt = tree:add(f.sub_options, tvb(off + 1, 1))
    for _, bit in ipairs({ f.sub_opt_notices, f.sub_opt_heartbeats, f.sub_opt_confirm, f.sub_opt_shm, f.sub_opt_reserved }) do
        opt:add(bit, tvb(off + 1, 1))
    end
    tree:add_le(f.sub_n, tvb(off + 2, 2))
    if role > 2 then
        problem = string.format("role %d is not 0 (publish), 1 (subscribe) or 2 (both)", role)
    elseif bit32.band(options, 0xF0) ~= 0 then
        problem = string.format("options 0x%02x set reserved bits (only bit 0 notices, 1 heartbeats, "
            .. "2 confirm and 3 shared memory exist)", options)
    end
    for index = 0, n - 1 do
        local at = off + 4 + 16 * index
        local kind = tvb(at, 1):uint()
        local item = tree:add(f.sub_filter, tvb(at, 16))
        item:set_text(string.format("filter %d: %s", index, FILTER_KINDS[kind] or ("kind " .. kind)))
        item:add(f.flt_kind, tvb(at, 1))
        local lo, hi = tvb(at + 1, 1):uint(), tvb(at + 2, 1):uint()
        if kind == 1 or kind == 5 then
            item:add(f.flt_lo, tvb(at + 1, 1))
            item:add(f.flt_hi, tvb(at + 2, 1))
            item:append_text(string.format(" %d..=%d", lo, hi))
        end
        if kind == 2 then
            item:add(f.flt_source, tvb(at + 1, 1))
            item:append_text(" " .. tvb(at + 1, 1):uint())
        elseif kind == 3 then
            item:add_le(f.flt_venue, tvb(at + 2, 2))
            item:add(f.flt_asset_type, tvb(at + 4, 1))
            item:add(f.flt_reserved, tvb(at + 5, 1))
            local asset = item:add(f.flt_asset_id, tvb(at + 8, 8), tvb(at + 8, 8):le_uint64())
            local sym = symbol(tvb, at + 8)
            if sym then
                asset:append_text(" (\"" .. sym .. "\")")
                item:append_text(" " .. sym)
            end
        elseif kind == 4 then
            item:add_le(f.flt_venue, tvb(at + 2, 2))
        elseif kind == 5 then
            item:add_le(f.flt_venue, tvb(at + 4, 2))
        end
        if not problem then
            if not FILTER_USED[kind] then
                problem = string.format("filter %d has kind %d, expected 1..=5", index, kind)
            else
                for byte = 1, 15 do
                    if tvb(at + byte, 1):uint() ~= 0 and not FILTER_USED[kind][byte] then
                        problem = string.format("filter %d has non-zero unused byte at offset %d", index, byte)
                        break
                    end
                end
                if not problem and (kind == 1 or kind == 5) and lo > hi then
                    problem = string.format("filter %d has an empty type range %d..=%d", index, lo, hi)
                end
            end
        end
    end
    if problem then
        return "malformed Subscribe: " .. problem
    end
end

-- RelayNotice (117): the walker has checked 12..=512 bytes.
local function dissect_notice(tree, tvb, off, len)
    tree:add_le(f.notice_code, tvb(off, 2))
    tree:add(f.notice_sequence, tvb(off + 4, 8), tvb(off + 4, 8):le_uint64())
    local text = tvb:raw(off + 12, len - 12)
    if not valid_utf8(text) then
        return "RelayNotice text is not valid UTF-8"
    end
    local range = len > 12 and tvb(off + 12, len - 12) or tvb(off + 12, 0)
    -- A Wireshark string ends at its first NUL: NUL bytes, valid UTF-8, are shown as \0.
    local shown, nuls = text:gsub("\0", "\\0")
    local item = tree:add(f.notice_text, range, shown)
    if nuls > 0 then
        item:append_text(string.format(" (%d NUL bytes shown as \\0)", nuls))
    end
end

---------------------------------------------------------------------------------------------
-- Frames

-- The size rule of §3 for a TLV value at `off` (Entry::check): nil, "mismatch" or
-- "out_of_bounds" with the bounds.
local function size_fault(tvb, tlv_type, off, len)
    local entry = REGISTRY[tlv_type]
    if not entry then return nil end
    local rule = entry[2]
    local min, max, exact
    if rule == F then
        min, max, exact = entry[3], entry[3], true
    elseif rule == B then
        min, max, exact = entry[3], entry[4], false
    elseif rule == V then
        return nil
    elseif rule == "OB" then
        min, max, exact = 32, 32 + 24 * MAX_BOOK_LEVELS, true
    else
        min, max, exact = 4, 4 + 16 * MAX_FILTERS, true
    end
    if len < min or len > max then
        if exact then return "mismatch" end
        return "out_of_bounds", min, max
    end
    if rule == "OB" then
        local levels = tvb(off + 12, 2):le_uint() + tvb(off + 14, 2):le_uint()
        if levels > MAX_BOOK_LEVELS or len ~= 32 + 24 * levels then return "mismatch" end
    elseif rule == "SUB" then
        if len ~= 4 + 16 * tvb(off + 2, 2):le_uint() then return "mismatch" end
    end
    return nil
end

-- Records an error on `item`: the torq.error field (first error of the frame only) and the
-- expert info with torq-decode's message.
local function report(state, item, token, message)
    if not state.error then
        state.error = token
        state.message = message
        state.root:add(f.error, token):set_generated()
    end
    item:add_proto_expert_info(ex[token], message)
end

-- Walks the payload of the frame at `off` (§2). Returns the TLVs' names for the summary.
local function dissect_tlvs(tvb, tree, state, off, size)
    local base_off = off + 32
    local pos = 0
    local names = {}
    while pos < size do
        local at = base_off + pos
        local rest = size - pos
        local lead = tvb(at, 1):uint()
        local item = tree:add(f.tlv, tvb(at, rest))
        local fail = function(token, message)
            item:set_text(string.format("TLV at payload offset %d: %s", pos, token))
            report(state, item, token, message)
        end
        local tlv_type, len, head, extended
        if lead == 255 then
            if rest < 5 then
                item:add(f.tlv_marker, tvb(at, 1))
                fail("tlv_truncated", string.format("TLV at payload offset %d runs past the end of the payload", pos))
                return names
            end
            item:add(f.tlv_marker, tvb(at, 1))
            item:add(f.tlv_reserved, tvb(at + 1, 1))
            local reserved = tvb(at + 1, 1):uint()
            if reserved ~= 0 then
                fail("tlv_reserved_nonzero", string.format(
                    "extended TLV at payload offset %d has reserved byte %d, which must be 0", pos, reserved))
                return names
            end
            tlv_type, len, head, extended = tvb(at + 2, 1):uint(), tvb(at + 3, 2):le_uint(), 5, true
            item:add(f.tlv_type, tvb(at + 2, 1))
            item:add(f.tlv_length, tvb(at + 3, 2), len)
        else
            if rest < 2 then
                item:add(f.tlv_type, tvb(at, 1))
                fail("tlv_truncated", string.format("TLV at payload offset %d runs past the end of the payload", pos))
                return names
            end
            tlv_type, len, head, extended = lead, tvb(at + 1, 1):uint(), 2, false
            item:add(f.tlv_type, tvb(at, 1))
            item:add(f.tlv_length, tvb(at + 1, 1), len)
        end
        if tlv_type == 0 or tlv_type == 255 then
            fail("tlv_invalid_type", string.format(
                "TLV at payload offset %d has invalid type %d (types are 1..=254)", pos, tlv_type))
            return names
        end
        local name = TYPE_NAMES[tlv_type]
        if name then
            item:add(f.tlv_name, name):set_generated()
        end
        item:add(f.tlv_extended, extended):set_generated()
        if head + len > rest then
            fail("tlv_truncated", string.format("TLV at payload offset %d runs past the end of the payload", pos))
            return names
        end
        item:set_len(head + len)
        local value_off = at + head
        local fault, min, max = size_fault(tvb, tlv_type, value_off, len)
        item:set_text(string.format("TLV %d %s, %d bytes%s", tlv_type, name or ("(" .. range_name(tlv_type) .. ")"),
            len, extended and " (extended form)" or ""))
        if fault == "mismatch" then
            report(state, item, "tlv_size_mismatch", string.format(
                "TLV type %d at payload offset %d has length %d, which breaks its size rule", tlv_type, pos, len))
            return names
        elseif fault == "out_of_bounds" then
            report(state, item, "tlv_size_out_of_bounds", string.format(
                "TLV type %d at payload offset %d has length %d, outside its bounds %d..=%d", tlv_type, pos, len, min, max))
            return names
        end
        names[#names + 1] = name or tostring(tlv_type)
        local value_error, error_token
        if LAYOUT_OF[tlv_type] then
            add_layout(item, LAYOUT_OF[tlv_type], tvb, value_off)
        elseif tlv_type == 3 then
            dissect_order_book(item, tvb, value_off, len)
        elseif tlv_type == 116 then
            value_error, error_token = dissect_subscribe(item, tvb, value_off, len), "bad_subscribe"
        elseif tlv_type == 117 then
            value_error, error_token = dissect_notice(item, tvb, value_off, len), "bad_notice"
        elseif len > 0 then
            item:add(f.tlv_value, tvb(value_off, len))
        end
        if value_error then
            item:add(f.tlv_value_error, value_error):set_generated()
            item:add_proto_expert_info(ex[error_token], value_error)
        end
        pos = pos + head + len
    end
    return names
end

-- One whole frame of `len` bytes at `off`. Returns a summary for the Info column.
local function dissect_frame(tvb, tree, off, len, index)
    local root = tree:add(torq, tvb(off, len))
    local state = { root = root }
    local domain = tvb(off + 4, 1):uint()
    local sequence = tvb(off + 8, 8):le_uint64()
    local timestamp = tvb(off + 16, 8):le_uint64()
    local size = tvb(off + 24, 4):le_uint()
    local found = tvb(off + 28, 4):le_uint()

    root:add_le(f.magic, tvb(off, 4))
    root:add(f.relay_domain, tvb(off + 4, 1))
    root:add(f.version, tvb(off + 5, 1))
    root:add(f.source, tvb(off + 6, 1))
    local flags = root:add(f.flags, tvb(off + 7, 1))
    flags:add(f.bridged, tvb(off + 7, 1))
    flags:add(f.flags_undefined, tvb(off + 7, 1))
    if bit32.band(tvb(off + 7, 1):uint(), 0xFE) ~= 0 then
        flags:add_proto_expert_info(ex.undefined_flags)
    end
    root:add(f.sequence, tvb(off + 8, 8), sequence)
    local ts = root:add(f.timestamp, tvb(off + 16, 8), timestamp)
    local text, secs, nsecs = ns_time(timestamp)
    ts:append_text(" (" .. text .. ")")
    root:add(f.time, tvb(off + 16, 8), NSTime(secs, nsecs)):set_generated()
    root:add_le(f.payload_size, tvb(off + 24, 4))

    local checksum = root:add_le(f.checksum, tvb(off + 28, 4))
    local computed = frame_checksum(tvb, off, len)
    local status
    if found == 0 then
        status = 2
        checksum:append_text(" [not computed]")
    elseif computed == found then
        status = 1
        checksum:append_text(" [correct]")
    else
        status = 0
        checksum:append_text(string.format(" [incorrect, should be 0x%08x]", computed))
        checksum:add_proto_expert_info(ex.checksum_mismatch, string.format(
            "checksum 0x%08x does not match the computed CRC-32 0x%08x", found, computed))
    end
    checksum:add(f.checksum_computed, tvb(off + 28, 4), computed):set_generated()
    checksum:add(f.checksum_status, tvb(off + 28, 4), status):set_generated()

    if domain >= 4 then
        report(state, root, "bad_domain", string.format(
            "relay_domain byte %d is invalid: 0 MarketData, 1 Signal, 2 Execution, 3 System", domain))
    end
    local names = dissect_tlvs(tvb, root, state, off, size)

    local what
    if size == 0 then
        what = "hello"
    elseif #names == 0 then
        what = "?"
    else
        what = table.concat(names, ",")
    end
    local summary = string.format("%s %s seq=%s", DOMAINS[domain] or ("domain " .. domain), what, tostring(sequence))
    if bit32.band(tvb(off + 7, 1):uint(), 1) == 1 then
        summary = summary .. " bridged"
    end
    if status == 0 then
        summary = summary .. " [checksum_mismatch]"
    end
    if state.error then
        summary = summary .. " [" .. state.error .. "]"
    end
    root:set_text(string.format("Torq Protocol V2%s, %s", index > 1 and (" (frame " .. index .. ")") or "", summary))
    return summary
end

-- Bytes at `off` that cannot be framed (RawFrames::next_frame): bad magic or version, or a
-- frame cut short. Shows what is there, reports it; nothing after it is framed.
local function dissect_broken(tvb, tree, off, token, message)
    local root = tree:add(torq, tvb(off))
    root:set_text("Torq Protocol V2, [" .. token .. "] " .. message)
    local rest = tvb:len() - off
    if rest >= 4 then root:add_le(f.magic, tvb(off, 4)) end
    if rest >= 5 then root:add(f.relay_domain, tvb(off + 4, 1)) end
    if rest >= 6 then root:add(f.version, tvb(off + 5, 1)) end
    if rest >= 32 then
        root:add(f.source, tvb(off + 6, 1))
        root:add(f.flags, tvb(off + 7, 1))
        root:add(f.sequence, tvb(off + 8, 8), tvb(off + 8, 8):le_uint64())
        root:add(f.timestamp, tvb(off + 16, 8), tvb(off + 16, 8):le_uint64())
        root:add_le(f.payload_size, tvb(off + 24, 4))
        root:add_le(f.checksum, tvb(off + 28, 4))
    end
    report({ root = root }, root, token, message)
    return "[" .. token .. "]"
end

local MAGIC = "\239\190\173\222" -- EF BE AD DE

function torq.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "TORQ"
    local total = tvb:len()
    local off = 0
    local index = 0
    local summaries = {}
    while off < total do
        index = index + 1
        local rest = total - off
        local present = math.min(rest, 4)
        local head = tvb:raw(off, present)
        if head ~= MAGIC:sub(1, present) then
            local found = head .. string.rep("\0", 4 - present)
            local magic = found:byte(1) + 256 * (found:byte(2) + 256 * (found:byte(3) + 256 * found:byte(4)))
            summaries[#summaries + 1] = dissect_broken(tvb, tree, off, "bad_magic", string.format(
                "bad magic 0x%08x: expected 0xdeadbeef, this is not a Protocol V2 stream", magic))
            break
        end
        if rest >= 6 and tvb(off + 5, 1):uint() ~= 1 then
            summaries[#summaries + 1] = dissect_broken(tvb, tree, off, "unsupported_version", string.format(
                "unsupported protocol version %d: only version 1 is supported", tvb(off + 5, 1):uint()))
            break
        end
        if rest < 32 then
            summaries[#summaries + 1] = dissect_broken(tvb, tree, off, "truncated_frame",
                string.format("the stream ends %d bytes into a 32-byte header", rest))
            break
        end
        local size = tvb(off + 24, 4):le_uint()
        if rest - 32 < size then
            summaries[#summaries + 1] = dissect_broken(tvb, tree, off, "truncated_frame", string.format(
                "the stream ends %d bytes into a payload of %d bytes", rest - 32, size))
            break
        end
        summaries[#summaries + 1] = dissect_frame(tvb, tree, off, 32 + size, index)
        off = off + 32 + size
    end
    pinfo.cols.info = table.concat(summaries, " | ")
    return total
end

-- Recordings: pcapng with LINKTYPE_USER0 (DLT 147), which Wireshark reads as WTAP_ENCAP_USER0.
-- This takes the place of the "DLT User" dissector for that link type only (user DLTs
-- 148–162 keep their Preferences → Protocols → DLT_USER table).
local wtap_user0 = (wtap_encaps or wtap).USER0
DissectorTable.get("wtap_encap"):add(wtap_user0, torq)
