//! The Wireshark dissector `tools/wireshark/torq.lua` against `torq-decode`.
//!
//! One recording (written with the crate's own pcapng writer and frame builder) holds a frame
//! of every layout `torq-decode` prints a value for, both TLV forms, a bridged frame, packets
//! of several frames, a checksum mismatch, every registered type at its smallest and largest
//! length and just outside them, every TLV and framing error, malformed control values, every
//! named source, venue and asset type. `torq-decode --hex` and `tshark -X lua_script:… -T
//! pdml` decode it; every frame must agree: offset, header fields, time, checksum verdict,
//! error token and message, and per TLV its type, length, form, registry name, value error and
//! every value field — the raw number, for prices and sizes the exact decimal the tree shows,
//! for venues, asset types, sources and domains their names — or the bytes of a type without
//! a layout.
//!
//! PDML is the tshark output read here (not `-T json`) because it carries, per item, both the
//! field value (`show`: what display filters compare) and the tree's text (`showname`: the
//! decimals and names), nested frame → TLV → level/filter, with byte positions; tshark's JSON
//! has the values only.
//!
//! tshark is required: the test fails, naming the package, when it is not installed.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value as Json};
use torq::protocol::registry::{self, SizeRule};
use torq::protocol::*;
use torq::tools::pcapng::Writer;

const T0: u64 = 1_700_000_000_123_456_789;

// ---------------------------------------------------------------------------------------------
// Building frames

/// A frame built with [`FrameBuilder`].
fn build(
    domain: RelayDomain,
    source: u8,
    sequence: u64,
    crc: Crc,
    fill: impl FnOnce(&mut FrameBuilder<'_>) -> Result<(), Error>,
) -> Vec<u8> {
    let mut buf = vec![0; 1 << 17];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    fill(&mut builder).unwrap();
    let len = builder.finish(sequence, T0 + sequence, crc);
    buf.truncate(len);
    buf
}

/// A frame of these payload bytes, whatever they hold, with a computed checksum.
fn raw_frame(domain_byte: u8, source: u8, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xEF, 0xBE, 0xAD, 0xDE, domain_byte, 1, source, 0];
    frame.extend_from_slice(&sequence.to_le_bytes());
    frame.extend_from_slice(&(T0 + sequence).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    let crc = checksum(&frame);
    frame[28..32].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// One TLV in the standard form.
fn standard(tlv_type: u8, value: &[u8]) -> Vec<u8> {
    let mut tlv = vec![tlv_type, u8::try_from(value.len()).unwrap()];
    tlv.extend_from_slice(value);
    tlv
}

/// One TLV in the extended form, whatever its length.
fn extended(tlv_type: u8, value: &[u8]) -> Vec<u8> {
    let mut tlv = vec![255, 0, tlv_type];
    tlv.extend_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
    tlv.extend_from_slice(value);
    tlv
}

/// A TLV of `len` bytes of `tlv_type` whose value meets its layout (zeros, but a Subscribe
/// counts its filters and an OrderBook its levels), in the form a builder would choose.
fn tlv_of_len(tlv_type: u8, len: usize) -> Vec<u8> {
    let mut value = vec![0u8; len];
    match tlv_type {
        3 if len >= 32 => {
            let levels = ((len - 32) / 24) as u16;
            value[12..14].copy_from_slice(&levels.to_le_bytes());
        }
        116 if len >= 4 => {
            let filters = ((len - 4) / 16) as u16;
            value[2..4].copy_from_slice(&filters.to_le_bytes());
            for filter in value[4..].chunks_exact_mut(16) {
                filter[0] = 2; // source 0
            }
        }
        _ => {}
    }
    if len > 255 { extended(tlv_type, &value) } else { standard(tlv_type, &value) }
}

fn emit<P: Payload>(value: &P) -> Vec<u8> {
    let mut out = vec![0; P::SIZE];
    value.emit(&mut out).unwrap();
    out
}

fn subscribe_value(role: u8, options: u8, filters: &[[u8; 16]]) -> Vec<u8> {
    let mut value = vec![role, options];
    value.extend_from_slice(&(filters.len() as u16).to_le_bytes());
    for filter in filters {
        value.extend_from_slice(filter);
    }
    value
}

/// The packets of the recording, each one read's bytes: one or several frames.
fn packets() -> Vec<Vec<u8>> {
    let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
    let eth = InstrumentId::coin(VenueId::Coinbase, "ETH/USD").unwrap();
    let md = RelayDomain::MarketData;
    let kraken = SourceType::KrakenCollector.raw();
    let engine = SourceType::ExecutionEngine.raw();
    let mut packets = Vec::new();

    // Market data.
    let trade = Trade {
        asset_id: btc.asset_id,
        price: 4_500_000_000_000,
        volume: 12_345_678,
        execution_timestamp_ns: T0,
        venue: btc.venue,
        asset_type: btc.asset_type,
        side: 1,
    };
    packets.push(build(md, kraken, 1, Crc::Compute, |b| b.payload(&trade).map(drop)));
    let extremes = Trade {
        asset_id: u64::MAX,
        price: i64::MIN,
        volume: i64::MAX,
        execution_timestamp_ns: u64::MAX,
        venue: u16::MAX,
        asset_type: u8::MAX,
        side: 7,
    };
    packets.push(build(md, 200, u64::MAX - T0, Crc::Skip, |b| b.payload(&extremes).map(drop)));
    let quote = Quote {
        asset_id: eth.asset_id,
        bid_price: 345_012_000_000,
        bid_size: 1,
        ask_price: 345_013_000_000,
        ask_size: 99_999_999_999,
        quote_timestamp_ns: T0 - 1,
        venue: eth.venue,
        asset_type: eth.asset_type,
    };
    packets.push(build(md, 2, 2, Crc::Compute, |b| b.payload(&quote).map(drop)));
    let update = Quote { bid_price: -1, ask_price: 0, ..quote };
    packets.push(build(md, 2, 3, Crc::Compute, |b| b.payload_as(17, &update).map(drop)));
    // A book of 12 levels: 320 bytes, so the builder writes it in the extended form.
    let head = OrderBookHead {
        asset_id: btc.asset_id,
        venue: btc.venue,
        asset_type: btc.asset_type,
        bid_count: 3,
        ask_count: 9,
        snapshot_timestamp_ns: T0,
        book_sequence: 77,
    };
    let level = |i: i64| Level {
        price: 4_500_000_000_000 + i * 50_000_000,
        size: i * 1_000_000 + 3,
        order_count: i as u32,
    };
    let bids: Vec<Level> = (0..3).map(|i| level(-i)).collect();
    let asks: Vec<Level> = (1..10).map(level).collect();
    packets.push(build(md, kraken, 4, Crc::Compute, |b| {
        b.tlv_with(3, OrderBook::encoded_len(3, 9), |out| OrderBook::emit(&head, &bids, &asks, out)).map(drop)
    }));

    // Signals.
    let identity = SignalIdentity {
        signal_id: 1 << 40,
        strategy_id: 21,
        signal_type: 3,
        confidence: 87,
        valid_for_ms: 500,
    };
    let arbitrage = ArbitrageSignal {
        strategy_id: 21,
        signal_id: 1 << 40,
        chain_id: 137,
        source_pool: [0x11; 20],
        target_pool: core::array::from_fn(|i| i as u8 * 13),
        source_venue: VenueId::UniswapV3.raw(),
        target_venue: VenueId::QuickSwap.raw(),
        token_in: [0xAB; 20],
        token_out: [0xFE; 20],
        expected_profit_usd_q8: 12_345_678_901,
        required_capital_usd_q8: 1_000_000_000_000,
        spread_bps: 12,
        dex_fees_usd_q8: 300_000_000,
        gas_cost_usd_q8: 25_000_000,
        slippage_usd_q8: 7,
        net_profit_usd_q8: -4_200_000_000,
        slippage_tolerance_bps: 50,
        max_gas_price_gwei: 300,
        valid_until: 1_700_000_030,
        priority: 2,
        timestamp_ns: T0,
    };
    packets.push(build(RelayDomain::Signal, 10, 5, Crc::Compute, |b| {
        b.payload(&identity)?.payload(&arbitrage).map(drop)
    }));

    // Execution.
    let order = OrderRequest {
        order_id: 1001,
        asset_id: btc.asset_id,
        venue: btc.venue,
        asset_type: btc.asset_type,
        side: 1,
        order_type: 1,
        time_in_force: 2,
        price: 4_499_950_000_000,
        quantity: 10_000_000,
        strategy_id: 21,
    };
    let ex = RelayDomain::Execution;
    packets.push(build(ex, engine, 6, Crc::Compute, |b| b.payload(&order).map(drop)));
    let status = OrderStatus { order_id: 1001, filled_quantity: 5_000_000, status: 1 };
    packets.push(build(ex, engine, 7, Crc::Compute, |b| b.payload(&status).map(drop)));
    let fill = Fill { order_id: 1001, fill_id: 9, price: 4_499_950_000_000, quantity: 5_000_000 };
    packets.push(build(ex, engine, 8, Crc::Compute, |b| b.payload(&fill).map(drop)));
    let modify = OrderModify { order_id: 1002, new_price: -5, new_quantity: 100_000_000 };
    let cancel = OrderCancel { order_id: 1003, reason: 4 };
    packets.push(build(ex, engine, 9, Crc::Compute, |b| b.payload(&modify)?.payload(&cancel).map(drop)));
    // Bridged: flags bit 0 set by the importing bridge, checksum computed again.
    let mut bridged = build(ex, engine, 10, Crc::Compute, |b| b.payload(&fill).map(drop));
    mark_bridged(&mut bridged).unwrap();
    packets.push(bridged);
    // A checksum mismatch.
    let mut corrupt = build(ex, engine, 11, Crc::Compute, |b| b.payload(&cancel).map(drop));
    corrupt[42] ^= 0xFF;
    packets.push(corrupt);

    // System and control.
    let heartbeat = Heartbeat { timestamp_ns: T0, frames_sent: 123_456 };
    packets.push(build(RelayDomain::System, 31, 12, Crc::Compute, |b| b.payload(&heartbeat).map(drop)));
    let subscribe = Subscribe {
        role: Role::PublishSubscribe,
        options: OPTION_NOTICES | OPTION_HEARTBEATS | OPTION_CONFIRM | OPTION_SHM,
        filters: vec![
            Filter::TypeRange { lo: 1, hi: 3 },
            Filter::Source(3),
            Filter::Instrument(btc),
            Filter::Venue(102),
            Filter::TypeRangeVenue { lo: 40, hi: 44, venue: 65001 },
        ],
    };
    packets.push(build(RelayDomain::System, 30, 13, Crc::Compute, |b| {
        b.tlv_with(116, subscribe.encoded_len(), |out| subscribe.emit(out)).map(drop)
    }));
    let mut note = vec![0; 512];
    let notice = RelayNotice { code: 2, sequence: 42, text: "checksum_mismatch frame 3 <&> \"quoted\"" };
    let len = notice.emit(&mut note).unwrap();
    packets.push(build(RelayDomain::System, 81, 14, Crc::Compute, |b| b.tlv(117, &note[..len]).map(drop)));

    // Several frames in one read: a legacy hello, a trade, an order status.
    let mut several = raw_frame(1, 2, 0, &[]);
    several[28..32].fill(0);
    several.extend(build(md, kraken, 15, Crc::Compute, |b| b.payload(&trade).map(drop)));
    several.extend(build(ex, engine, 16, Crc::Skip, |b| b.payload(&status).map(drop)));
    packets.push(several);

    // Unregistered types, and a short value in the extended form.
    let mut payload = extended(210, &[1, 2, 3]);
    payload.extend(standard(33, &[9]));
    payload.extend(standard(250, &[]));
    payload.extend(extended(1, &emit(&trade)));
    packets.push(raw_frame(0, 99, 17, &payload));

    // Malformed control values: printed with value_error, the frame still decodes.
    let filter = |bytes: &[(usize, u8)]| {
        let mut raw = [0u8; 16];
        for (at, b) in bytes {
            raw[*at] = *b;
        }
        raw
    };
    let mut payload = Vec::new();
    for value in [
        subscribe_value(3, 0, &[]),
        subscribe_value(1, 0x10, &[]),
        subscribe_value(1, 1, &[filter(&[(0, 2)]), filter(&[(0, 9)])]),
        subscribe_value(1, 1, &[filter(&[(0, 3), (5, 1)])]),
        subscribe_value(1, 1, &[filter(&[(0, 4), (2, 1)]), filter(&[(0, 5), (1, 9), (2, 8)])]),
    ] {
        payload.extend(standard(116, &value));
    }
    let mut bad_text =
        RelayNotice { code: 1, sequence: 0, text: "x" }.emit(&mut note).map(|n| note[..n].to_vec()).unwrap();
    bad_text.extend_from_slice(&[0xC3, 0x28, 0xED, 0xA0, 0x80]);
    payload.extend(standard(117, &bad_text));
    let mut good_text = bad_text[..12].to_vec();
    good_text.extend_from_slice("prix: 3€ — ok 🎉".as_bytes());
    payload.extend(standard(117, &good_text));
    packets.push(raw_frame(3, 30, 18, &payload));
    // Every byte of a filter of every kind set alone: unused bytes, empty ranges, good ones.
    let mut payload = Vec::new();
    for kind in 1..=6u8 {
        for at in 1..16 {
            payload.extend(standard(116, &subscribe_value(1, 0, &[filter(&[(0, kind), (at, 1)])])));
        }
    }
    packets.push(raw_frame(3, 30, 18, &payload));
    // UTF-8 at its edges: overlong forms, surrogates, past U+10FFFF, cut short; and the
    // largest valid sequences of each length.
    let mut payload = Vec::new();
    for text in [
        &[0xC0, 0x80][..],
        &[0xC1, 0xBF],
        &[0xE0, 0x80, 0x80],
        &[0xE0, 0x9F, 0xBF],
        &[0xED, 0xA0, 0x80],
        &[0xED, 0xBF, 0xBF],
        &[0xF0, 0x80, 0x80, 0x80],
        &[0xF0, 0x8F, 0xBF, 0xBF],
        &[0xF4, 0x90, 0x80, 0x80],
        &[0xF5, 0x80, 0x80, 0x80],
        &[0xFF],
        &[0x80],
        &[0xE2, 0x82],
        &[0x41, 0xF0, 0x9F, 0x8E],
        &[0xE2, 0x28, 0xA1],
        // (tshark shows ASCII control characters escaped, so the texts here hold none.)
        &[0x7E, 0xC2, 0x80, 0xDF, 0xBF],
        &[0xE0, 0xA0, 0x80, 0xED, 0x9F, 0xBF, 0xEE, 0x80, 0x80, 0xEF, 0xBF, 0xBF],
        &[0xF0, 0x90, 0x80, 0x80, 0xF4, 0x8F, 0xBF, 0xBF, 0xF3, 0xBF, 0xBF, 0xBF],
    ] {
        payload.extend(standard(117, &[&bad_text[..12], text].concat()));
    }
    packets.push(raw_frame(3, 80, 18, &payload));

    // Every registered type at its smallest and largest length: every name, every bound.
    let (mut smallest, mut largest) = (Vec::new(), Vec::new());
    let mut outside = Vec::new();
    for info in registry::REGISTERED {
        let t = info.number;
        let (min, max) = match info.size {
            SizeRule::Fixed(n) => (usize::from(n), usize::from(n)),
            SizeRule::Bounded(min, max) => (usize::from(min), usize::from(max)),
            SizeRule::Variable => (0, 300),
            SizeRule::OrderBook => (32, 32 + 24 * 5),
            SizeRule::Subscribe => (4, 4 + 16 * registry::MAX_FILTERS),
        };
        smallest.extend(tlv_of_len(t, min));
        largest.extend(tlv_of_len(t, max));
        match info.size {
            SizeRule::Variable => {}
            SizeRule::OrderBook => {
                outside.push(raw_frame(3, 0, 0, &tlv_of_len(t, 31)));
                outside.push(raw_frame(3, 0, 0, &standard(t, &[0; 33])));
                outside.push(raw_frame(3, 0, 0, &standard(t, &[0; 56])));
            }
            SizeRule::Subscribe => {
                outside.push(raw_frame(3, 0, 0, &standard(t, &[0; 3])));
                outside.push(raw_frame(3, 0, 0, &standard(t, &[0; 20])));
                outside.push(raw_frame(3, 0, 0, &extended(t, &subscribe_value(0, 0, &[[2; 16]; 65]))));
            }
            _ => {
                if min > 0 {
                    outside.push(raw_frame(3, 0, 0, &tlv_of_len(t, min - 1)));
                }
                outside.push(raw_frame(3, 0, 0, &tlv_of_len(t, max + 1)));
            }
        }
    }
    packets.push(raw_frame(3, 0, 19, &smallest));
    packets.push(raw_frame(3, 0, 20, &largest));
    let good = build(RelayDomain::System, 31, 21, Crc::Compute, |b| b.payload(&heartbeat).map(drop));
    outside.push(good.clone());
    packets.push(outside.concat());

    // TLV errors, each frame reported and the next decoded.
    let mut errors = Vec::new();
    for payload in [
        standard(0, &[]),
        extended(0, &[]),
        extended(255, &[1]),
        vec![200],
        vec![200, 3, 0],
        vec![255, 0, 200, 1],
        vec![255, 0, 200, 2, 0, 1],
        vec![255, 1, 200, 0, 0],
        [standard(100, &emit(&heartbeat)), vec![0, 0]].concat(),
        [standard(250, &[]), standard(1, &[0; 39])].concat(),
    ] {
        errors.extend(raw_frame(3, 0, 22, &payload));
    }
    let mut bad_domain = good.clone();
    bad_domain[4] = 4;
    errors.extend(bad_domain);
    let mut bad_domain = raw_frame(0, 0, 23, &[0, 0]);
    bad_domain[4] = 200;
    errors.extend(bad_domain);
    errors.extend(good.clone());
    packets.push(errors);

    // Framing errors end their packet, never the recording.
    packets.push(b"GET / HTTP/1.1\r\n".to_vec());
    packets.push([good.clone(), b"xyz".to_vec()].concat());
    packets.push(vec![0xEF, 0x00]);
    packets.push(vec![0xEF, 0xBE, 0xAD, 0xDE, 0, 2]);
    packets.push(vec![0xEF, 0xBE, 0xAD, 0xDE, 0]);
    let mut version = good.clone();
    version[5] = 2;
    packets.push([good.clone(), version].concat());
    packets.push(good[..40].to_vec());
    packets.push([good.clone(), good[..20].to_vec()].concat());
    packets.push(good[..3].to_vec());

    // Every named source (and one that is not), venue and asset type.
    let mut sources = Vec::new();
    for source in SourceType::ALL.iter().map(|s| s.raw()).chain([123]) {
        let mut hello = raw_frame(1, source, 0, &[]);
        hello[28..32].fill(0);
        sources.extend(hello);
    }
    packets.push(sources);
    let mut venues = Vec::new();
    for (i, venue) in VenueId::ALL.iter().enumerate() {
        let asset_type = AssetType::ALL[i % AssetType::ALL.len()].raw();
        venues.extend(standard(1, &emit(&Trade { venue: venue.raw(), asset_type, ..trade })));
    }
    for (i, asset_type) in AssetType::ALL.iter().enumerate() {
        let venue = VenueId::ALL[(i * 7) % VenueId::ALL.len()].raw();
        venues.extend(standard(2, &emit(&Quote { venue, asset_type: asset_type.raw(), ..quote })));
    }
    packets.push(raw_frame(0, kraken, 24, &venues));
    packets
}

// ---------------------------------------------------------------------------------------------
// PDML, as tshark writes it: one element per line, attributes in double quotes.

#[derive(Debug, Default)]
struct Node {
    name: String,
    show: String,
    showname: String,
    pos: usize,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn field(&self, name: &str) -> &Node {
        self.child(name).unwrap_or_else(|| panic!("no {name} under {}: {self:#?}", self.showname))
    }

    /// Every node of the subtree, depth first.
    fn walk<'a>(&'a self, out: &mut Vec<&'a Node>) {
        out.push(self);
        for child in &self.children {
            child.walk(out);
        }
    }

    /// The expert infos of the subtree: (expert field name, message).
    fn experts(&self) -> Vec<(String, String)> {
        let mut nodes = Vec::new();
        self.walk(&mut nodes);
        nodes
            .into_iter()
            .filter(|n| n.name == "_ws.expert")
            .map(|n| {
                let which = n.children.iter().find(|c| !c.name.starts_with("_ws.")).expect("an expert field");
                (which.name.clone(), n.field("_ws.expert.message").show.clone())
            })
            .collect()
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').expect("an entity ends with ;") + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "quot" => '"',
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16)
                } else {
                    entity.strip_prefix('#').expect("a character reference").parse()
                };
                char::from_u32(code.unwrap()).unwrap()
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The attributes of a start tag's text (without `<` and `>`).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim().rsplit(' ').next().unwrap().to_string();
        let value_start = eq + 2;
        let value_end = rest[value_start..].find('"').unwrap() + value_start;
        attrs.push((key, unescape(&rest[value_start..value_end])));
        rest = &rest[value_end + 1..];
    }
    attrs
}

/// The packets of a PDML document, each the list of its protocols.
fn parse_pdml(text: &str) -> Vec<Vec<Node>> {
    let mut packets = Vec::new();
    let mut stack: Vec<Node> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').unwrap() + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match name {
                "packet" => {
                    packets.push(stack.pop().unwrap().children);
                }
                "proto" | "field" => {
                    let node = stack.pop().unwrap();
                    stack.last_mut().unwrap().children.push(node);
                }
                _ => {}
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let element = tag.split([' ', '/']).next().unwrap();
        match element {
            "packet" => stack.push(Node::default()),
            "proto" | "field" => {
                let mut node = Node::default();
                for (key, value) in attributes(tag) {
                    match key.as_str() {
                        "name" => node.name = value,
                        "show" => node.show = value,
                        "showname" => node.showname = value,
                        "pos" => node.pos = value.parse().unwrap(),
                        _ => {}
                    }
                }
                if self_closing {
                    stack.last_mut().unwrap().children.push(node);
                } else {
                    stack.push(node);
                }
            }
            _ => {}
        }
    }
    assert!(stack.is_empty(), "PDML ends inside an element");
    packets
}

// ---------------------------------------------------------------------------------------------
// Running both

fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("torq-wireshark-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    dir
}

fn write_recording(path: &Path, packets: &[Vec<u8>]) {
    let mut writer = Writer::new(Vec::new(), "tests/wireshark.rs", "test").unwrap();
    for (i, packet) in packets.iter().enumerate() {
        writer.write_packet(T0 + i as u64 * 1_000, packet).unwrap();
    }
    std::fs::write(path, writer.into_inner()).unwrap();
}

fn torq_decode(path: &Path) -> Vec<Json> {
    let output = Command::new(env!("CARGO_BIN_EXE_torq-decode")).arg("--hex").arg(path).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "torq-decode reports the broken frames");
    String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `tshark -X lua_script:tools/wireshark/torq.lua -r FILE -T pdml`, with a private home so no
/// installed copy of the plugin (or other personal setting) takes part.
fn tshark_pdml(path: &Path, home: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/wireshark/torq.lua");
    let output = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .arg("-r")
        .arg(path)
        .args(["-T", "pdml"])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run tshark ({e}): this test needs it — install it with `apt-get install tshark` \
                 (Debian's package; .ci/run installs it)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    assert!(!stderr.contains("Lua"), "the dissector did not load or run cleanly: {stderr}");
    String::from_utf8(output.stdout)
        .expect("tshark's PDML is UTF-8 (unless the dissector gave a string field other bytes)")
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// A field's value as a number: decimal, or hex after 0x.
fn number(node: &Node) -> i128 {
    let show = node.show.as_str();
    let parsed = match show.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16),
        None => show.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{} is not a number: {show:?}", node.name))
}

fn json_number(value: &Json) -> i128 {
    value.as_i64().map(i128::from).or(value.as_u64().map(i128::from)).unwrap_or_else(|| panic!("{value}"))
}

/// An i64 × 1e8 as the exact decimal.
fn decimal(raw: i64) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let magnitude = raw.unsigned_abs();
    format!("{sign}{}.{:08}", magnitude / 100_000_000, magnitude % 100_000_000)
}

/// Nanoseconds since the epoch as Wireshark shows a UTC absolute time:
/// `Nov 14, 2023 22:13:20.123456789 UTC`.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {day:>2}, {year} {:02}:{:02}:{:02}.{:09} UTC",
        MONTHS[month as usize - 1],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        ns % 1_000_000_000
    )
}

/// The value fields every layout prints as i64 × 1e8, from the crate's own field visitor.
fn decimal_fields() -> HashSet<&'static str> {
    let mut signed = HashSet::new();
    let mut unsigned = HashSet::new();
    let mut visit = |name: &'static str, value: FieldValue<'_>| {
        if matches!(value, FieldValue::Signed(_)) {
            signed.insert(name);
        } else {
            unsigned.insert(name);
        }
    };
    Trade::default().for_each_field(&mut visit);
    Quote::default().for_each_field(&mut visit);
    OrderBookHead::default().for_each_field(&mut visit);
    Level::default().for_each_field(&mut visit);
    SignalIdentity::default().for_each_field(&mut visit);
    ArbitrageSignal::default().for_each_field(&mut visit);
    OrderRequest::default().for_each_field(&mut visit);
    OrderStatus::default().for_each_field(&mut visit);
    Fill::default().for_each_field(&mut visit);
    OrderCancel::default().for_each_field(&mut visit);
    OrderModify::default().for_each_field(&mut visit);
    Heartbeat::default().for_each_field(&mut visit);
    assert!(signed.is_disjoint(&unsigned), "a field name is signed in one layout and not in another");
    assert!(signed.contains("price") && signed.contains("net_profit_usd_q8"));
    signed
}

/// Compares what tshark shows for one frame (`proto`, at `offset` in the recording's bytes of
/// frames) with torq-decode's line; `what` names the frame in failures.
struct Compare {
    decimals: HashSet<&'static str>,
    /// Every value key compared, to check the recording covers what it claims.
    seen_values: BTreeSet<String>,
}

impl Compare {
    fn frame(&mut self, line: &Json, proto: &Node, offset: u64, what: &str) {
        assert_eq!(line["offset"].as_u64(), Some(offset), "{what}: offset");
        let experts = proto.experts();
        if let Some(error) = line["error"].as_str() {
            assert_eq!(proto.field("torq.error").show, error, "{what}: error token");
            let message = line["message"].as_str().unwrap();
            let expert = format!("torq.{error}");
            assert!(
                experts.iter().any(|(name, text)| *name == expert && text == message),
                "{what}: expert info {expert} saying {message:?}; found {experts:?}"
            );
            return;
        }
        assert!(proto.child("torq.error").is_none(), "{what}: torq-decode found no error, the dissector did");
        assert!(
            experts.iter().all(|(name, _)| matches!(
                name.as_str(),
                "torq.checksum_mismatch" | "torq.bad_subscribe" | "torq.bad_notice"
            )),
            "{what}: unexpected expert infos {experts:?}"
        );
        for (key, field) in [
            ("domain_byte", "torq.relay_domain"),
            ("version", "torq.version"),
            ("source", "torq.source"),
            ("flags", "torq.flags"),
            ("sequence", "torq.sequence"),
            ("timestamp", "torq.timestamp"),
            ("payload_size", "torq.payload_size"),
            ("checksum", "torq.checksum"),
        ] {
            assert_eq!(number(proto.field(field)), json_number(&line[key]), "{what}: {key}");
        }
        let domain = line["domain_byte"].as_u64().unwrap() as u8;
        let domain_name = RelayDomain::ALL.iter().find(|d| d.raw() == domain).unwrap().to_string();
        assert_eq!(
            proto.field("torq.relay_domain").showname,
            format!("relay_domain: {domain_name} ({domain})")
        );
        let source = line["source"].as_u64().unwrap() as u8;
        let source_name = SourceType::from_raw(source).map_or("Unknown", SourceType::name);
        assert_eq!(
            proto.field("torq.source").showname,
            format!("source: {source_name} ({source})"),
            "{what}"
        );
        let bridged = proto.field("torq.flags").field("torq.flags.bridged");
        assert_eq!(bridged.show == "1", line["bridged"].as_bool().unwrap(), "{what}: bridged");
        let timestamp = line["timestamp"].as_u64().unwrap();
        assert_eq!(proto.field("torq.timestamp.time").show, utc(timestamp), "{what}: time");

        let checksum = proto.field("torq.checksum");
        let status = number(checksum.field("torq.checksum.status"));
        let mismatch = experts.iter().any(|(name, _)| name == "torq.checksum_mismatch");
        match line["checksum_ok"].as_bool() {
            None => assert_eq!(status, 2, "{what}: checksum 0 is unverified"),
            Some(true) => assert_eq!(status, 1, "{what}: checksum good"),
            Some(false) => assert_eq!(status, 0, "{what}: checksum bad"),
        }
        assert_eq!(mismatch, line["checksum_ok"] == Json::Bool(false), "{what}: checksum expert info");

        let tlvs: Vec<&Node> = proto.children.iter().filter(|c| c.name == "torq.tlv").collect();
        let expected = line["tlvs"].as_array().unwrap();
        assert_eq!(tlvs.len(), expected.len(), "{what}: TLV count");
        for (i, (tlv, node)) in expected.iter().zip(tlvs).enumerate() {
            self.tlv(tlv, node, &format!("{what}, TLV {i}"));
        }
    }

    fn tlv(&mut self, tlv: &Json, node: &Node, what: &str) {
        let tlv_type = tlv["type"].as_u64().unwrap();
        assert_eq!(number(node.field("torq.tlv.type")) as u64, tlv_type, "{what}: type");
        assert_eq!(Some(number(node.field("torq.tlv.length")) as u64), tlv["len"].as_u64(), "{what}: len");
        match tlv["name"].as_str() {
            Some(name) => {
                assert_eq!(node.field("torq.tlv.name").show, name, "{what}: name");
                assert_eq!(
                    node.field("torq.tlv.type").showname,
                    format!("type: {name} ({tlv_type})"),
                    "{what}"
                );
            }
            None => {
                assert!(node.child("torq.tlv.name").is_none(), "{what}: an unregistered type has no name")
            }
        }
        let extended = tlv["extended"] == true || tlv["len"].as_u64() > Some(255);
        assert_eq!(node.field("torq.tlv.extended").show == "1", extended, "{what}: form");
        let value_error = node.child("torq.tlv.value_error").map(|n| n.show.as_str());
        assert_eq!(value_error, tlv["value_error"].as_str(), "{what}: value_error");
        if value_error.is_some() {
            let token = if tlv_type == 116 { "torq.bad_subscribe" } else { "torq.bad_notice" };
            assert!(
                node.experts().iter().any(|(name, text)| name == token && Some(text.as_str()) == value_error)
            );
            return;
        }
        match tlv.get("value") {
            Some(Json::Object(value)) => self.value(value, node, what),
            Some(other) => panic!("{what}: value {other}"),
            None => {
                assert!(value_fields(node).is_empty(), "{what}: no value fields for a type without a layout");
                // Its bytes, as they are.
                let hex = &tlv["hex"].as_str().unwrap()[2..];
                let shown = node.child("torq.tlv.value").map_or(String::new(), |n| n.show.replace(':', ""));
                assert_eq!(shown, hex, "{what}: value bytes");
            }
        }
    }

    /// Every key of torq-decode's value object against the value fields under `node`, and
    /// no field more.
    fn value(&mut self, value: &Map<String, Json>, node: &Node, what: &str) {
        let fields = value_fields(node);
        let keys: BTreeSet<String> = fields.iter().map(|(key, _)| key.clone()).collect();
        // An empty list (a book side without levels, no filters) has no field to show.
        let expected: BTreeSet<String> = value
            .iter()
            .filter(|(_, v)| v.as_array().is_none_or(|items| !items.is_empty()))
            .map(|(key, _)| key.clone())
            .collect();
        assert_eq!(keys, expected, "{what}: value fields");
        for (key, expected) in value {
            let what = format!("{what}, {key}");
            self.seen_values.insert(key.clone());
            let nodes: Vec<&Node> = fields.iter().filter(|(k, _)| k == key).map(|(_, n)| *n).collect();
            match expected {
                Json::Array(items) => {
                    assert_eq!(nodes.len(), items.len(), "{what}: count");
                    for (i, (item, node)) in items.iter().zip(nodes).enumerate() {
                        self.value(item.as_object().unwrap(), node, &format!("{what}[{i}]"));
                    }
                }
                _ => {
                    assert_eq!(nodes.len(), 1, "{what}: one field");
                    self.leaf(key, expected, nodes[0], &what);
                }
            }
        }
    }

    fn leaf(&self, key: &str, expected: &Json, node: &Node, what: &str) {
        match expected {
            Json::Number(_) => {
                let raw = json_number(expected);
                assert_eq!(number(node), raw, "{what}: value");
                if self.decimals.contains(key) {
                    let raw = i64::try_from(raw).unwrap();
                    assert_eq!(
                        node.showname,
                        format!("{key}: {} (raw {raw})", decimal(raw)),
                        "{what}: decimal"
                    );
                } else if key.ends_with("venue") {
                    let name = VenueId::from_raw(raw as u16).map_or("Unknown", VenueId::name);
                    assert_eq!(node.showname, format!("{key}: {name} ({raw})"), "{what}: venue name");
                } else if key == "asset_type" {
                    let name = AssetType::from_raw(raw as u8).map_or("Unknown", AssetType::name);
                    assert_eq!(node.showname, format!("{key}: {name} ({raw})"), "{what}: asset type name");
                }
            }
            Json::String(text) => match text.strip_prefix("0x") {
                // Byte arrays: torq-decode writes 0x and lowercase hex; the tree shows the same.
                Some(hex) if key != "text" => {
                    assert_eq!(node.show.replace(':', "").to_lowercase(), hex, "{what}: bytes");
                    assert_eq!(node.showname, format!("{key}: {text}"), "{what}: bytes label");
                }
                // A Wireshark string cannot hold a NUL: the dissector shows it as \0.
                _ => assert_eq!(node.show, text.replace('\0', "\\0"), "{what}: text"),
            },
            other => panic!("{what}: unexpected value {other}"),
        }
    }
}

/// The value fields directly under a TLV (or level, or filter) node: (key, node), the key
/// being the field name's last part; level and filter containers under the plural keys
/// torq-decode uses.
fn value_fields(node: &Node) -> Vec<(String, &Node)> {
    node.children
        .iter()
        .filter(|c| c.name.starts_with("torq.") && !c.name.starts_with("torq.tlv"))
        .map(|c| {
            let last = c.name.rsplit('.').next().unwrap();
            let key = match c.name.as_str() {
                "torq.order_book.bid" => "bids",
                "torq.order_book.ask" => "asks",
                "torq.subscribe.filter" => "filters",
                _ => last,
            };
            (key.to_string(), c)
        })
        .collect()
}

/// Every layout torq-decode prints a value for.
const LAYOUTS: [&str; 14] = [
    "Trade",
    "Quote",
    "QuoteUpdate",
    "OrderBook",
    "SignalIdentity",
    "ArbitrageSignal",
    "OrderRequest",
    "OrderStatus",
    "Fill",
    "OrderCancel",
    "OrderModify",
    "Heartbeat",
    "Subscribe",
    "RelayNotice",
];

/// Every error token of a frame line.
const ERRORS: [&str; 9] = [
    "bad_magic",
    "unsupported_version",
    "bad_domain",
    "truncated_frame",
    "tlv_invalid_type",
    "tlv_truncated",
    "tlv_reserved_nonzero",
    "tlv_size_mismatch",
    "tlv_size_out_of_bounds",
];

#[test]
fn the_wireshark_dissector_shows_what_torq_decode_prints() {
    let dir = workdir();
    let file = dir.join("every-layout.pcapng");
    let packets = packets();
    write_recording(&file, &packets);

    let lines = torq_decode(&file);
    let pdml = tshark_pdml(&file, &dir.join("home"));
    let shown = parse_pdml(&pdml);
    assert_eq!(shown.len(), packets.len(), "tshark read every packet");

    // Pair torq-decode's lines with the dissector's frames, packet by packet.
    let mut compare = Compare { decimals: decimal_fields(), seen_values: BTreeSet::new() };
    let mut remaining = lines.iter();
    let mut base = 0u64;
    let mut frames = 0;
    for (p, (protos, bytes)) in shown.iter().zip(&packets).enumerate() {
        for proto in protos.iter().filter(|proto| proto.name == "torq") {
            let what = format!("packet {} at byte {}", p + 1, proto.pos);
            let line =
                remaining.next().unwrap_or_else(|| panic!("{what}: torq-decode printed no line for it"));
            compare.frame(line, proto, base + proto.pos as u64, &what);
            frames += 1;
        }
        base += bytes.len() as u64;
    }
    let left: Vec<&Json> = remaining.collect();
    assert!(left.is_empty(), "frames torq-decode printed and the dissector did not show: {left:?}");

    // The recording covers what it claims.
    let tlvs: Vec<&Json> = lines.iter().flat_map(|l| l["tlvs"].as_array().into_iter().flatten()).collect();
    let names: BTreeSet<&str> =
        tlvs.iter().filter(|t| t.get("value").is_some()).filter_map(|t| t["name"].as_str()).collect();
    let errors: BTreeSet<&str> = lines.iter().filter_map(|l| l["error"].as_str()).collect();
    for layout in LAYOUTS {
        assert!(names.contains(layout), "no {layout} value in the recording");
    }
    for error in ERRORS {
        assert!(errors.contains(error), "no {error} in the recording");
    }
    assert!(lines.iter().any(|l| l["bridged"] == true), "a bridged frame");
    assert!(lines.iter().any(|l| l["checksum_ok"] == false), "a checksum mismatch");
    assert!(tlvs.iter().any(|t| t["extended"] == true), "a short value in the extended form");
    assert!(tlvs.iter().any(|t| t.get("value_error").is_some()), "a malformed control value");
    assert!(
        shown.iter().any(|protos| protos.iter().filter(|p| p.name == "torq").count() > 2),
        "several frames a packet"
    );
    assert!(compare.seen_values.contains("filters") && compare.seen_values.contains("bids"));
    assert!(frames > 200, "{frames} frames compared");
    let _ = std::fs::remove_dir_all(&dir);
}
