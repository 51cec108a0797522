use serde_json::json;

use super::*;
use crate::protocol::{Crc, FrameBuilder, OPTION_NOTICES, RelayDomain};
use crate::tools::decode::Render;

fn build(domain: RelayDomain, source: u8, fill: impl FnOnce(&mut FrameBuilder<'_>)) -> Vec<u8> {
    let mut buf = vec![0; 8192];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    fill(&mut builder);
    let len = builder.finish(41, 1_700_000_000_000_000_123, Crc::Compute);
    buf.truncate(len);
    buf
}

/// One frame of every layout, the control values among them.
fn every_layout() -> Vec<Vec<u8>> {
    let head =
        OrderBookHead { asset_id: 9, venue: 102, asset_type: 51, book_sequence: 4, ..Default::default() };
    let bid = Level { price: 100, size: 1, order_count: 3 };
    let mut book = vec![0; OrderBook::encoded_len(1, 2)];
    OrderBook::emit(&head, &[bid], &[bid, bid], &mut book).unwrap();
    let subscribe = Subscribe {
        role: Role::PublishSubscribe,
        options: OPTION_NOTICES,
        filters: vec![
            Filter::TypeRange { lo: 1, hi: 3 },
            Filter::Source(4),
            Filter::Instrument(InstrumentId { asset_id: 5, venue: 6, asset_type: 7, reserved: 0 }),
            Filter::Venue(8),
            Filter::TypeRangeVenue { lo: 40, hi: 44, venue: 9 },
        ],
    };
    let mut sub = vec![0; subscribe.encoded_len()];
    subscribe.emit(&mut sub).unwrap();
    let mut note = vec![0; 64];
    let note_len = RelayNotice { code: 2, sequence: 7, text: "checksum_mismatch x" }.emit(&mut note).unwrap();
    let arbitrage = ArbitrageSignal { source_pool: [0xAB; 20], net_profit_usd_q8: -5, ..Default::default() };
    vec![
        build(RelayDomain::MarketData, 3, |b| {
            b.payload(&Trade { asset_id: u64::MAX, price: -1, side: 1, ..Trade::default() }).unwrap();
            b.payload(&Quote { bid_price: 1, ask_size: 2, ..Quote::default() }).unwrap();
            b.payload_as(17, &Quote { venue: 101, ..Quote::default() }).unwrap();
            b.tlv(3, &book).unwrap();
        }),
        build(RelayDomain::Signal, 10, |b| {
            b.payload(&SignalIdentity { confidence: 90, ..Default::default() }).unwrap();
            b.payload(&arbitrage).unwrap();
        }),
        build(RelayDomain::Execution, 20, |b| {
            b.payload(&OrderRequest { order_id: 1, price: 5, quantity: 6, ..Default::default() }).unwrap();
            b.payload(&OrderStatus { status: 2, ..Default::default() }).unwrap();
            b.payload(&Fill { fill_id: 3, ..Default::default() }).unwrap();
            b.payload(&OrderCancel { reason: 4, ..Default::default() }).unwrap();
            b.payload(&OrderModify { new_price: -9, ..Default::default() }).unwrap();
            b.payload(&Heartbeat { frames_sent: 8, ..Default::default() }).unwrap();
        }),
        build(RelayDomain::System, 99, |b| {
            b.tlv(116, &sub).unwrap();
        }),
        build(RelayDomain::System, 80, |b| {
            b.tlv(117, &note[..note_len]).unwrap();
        }),
    ]
}

#[test]
fn the_decoded_line_rebuilds_the_same_bytes_from_values_alone() {
    let mut encoder = Encoder::new();
    for frame in every_layout() {
        let (line, clean) = Render::default().frame(&frame, 0);
        assert!(clean, "{line}");
        assert_eq!(encoder.frame(&line, 0).unwrap(), frame, "{line}");
    }
}

#[test]
fn hex_rebuilds_any_bytes_even_those_values_cannot_say() {
    let mut frames = every_layout();
    // Reserved bytes set, a vendor TLV, a short value in the extended form, a wrong checksum.
    let mut odd = build(RelayDomain::MarketData, 3, |b| {
        b.payload(&Trade::default()).unwrap();
        b.tlv(200, b"vendor").unwrap();
    });
    odd[32 + 2 + 35] = 0xEE; // Trade's reserved byte
    odd.truncate(odd.len() - 8);
    odd.extend_from_slice(&[255, 0, 200, 6, 0]);
    odd.extend_from_slice(b"vendor");
    let payload_size = (odd.len() - 32) as u32;
    odd[24..28].copy_from_slice(&payload_size.to_le_bytes());
    odd[28..32].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    frames.push(odd);
    // A frame torq-decode cannot decode: an error line with the whole frame.
    let mut bad = every_layout().remove(0);
    bad[4] = 7;
    frames.push(bad);
    let mut encoder = Encoder::new();
    for frame in frames {
        let (line, _) = Render { hex: true, pretty: false }.frame(&frame, 0);
        assert_eq!(encoder.frame(&line, 0).unwrap(), frame, "{line}");
    }
}

#[test]
fn a_hand_written_order_needs_only_a_few_fields() {
    let mut encoder = Encoder::new();
    let line = json!({"domain_byte": 2, "source": 20, "tlvs": [
        {"type": 40, "value": {"order_id": 7, "asset_id": "0x4254432f55534400", "venue": 101, "price": 5}}
    ]});
    let first = encoder.frame(&line, 1_000).unwrap();
    let second = encoder.frame(&line, 2_000).unwrap();
    for (frame, sequence, time) in [(&first, 1, 1_000), (&second, 2, 2_000)] {
        let header = crate::protocol::Header::view(frame).unwrap();
        assert_eq!((header.sequence(), header.timestamp(), header.source()), (sequence, time, 20));
        assert_eq!(header.checksum(), checksum(frame));
        assert_ne!(header.checksum(), 0);
    }
    let order = OrderRequest::parse(&first[34..]).unwrap();
    assert_eq!(
        order,
        OrderRequest {
            order_id: 7,
            asset_id: 0x4254_432F_5553_4400,
            venue: 101,
            price: 5,
            ..Default::default()
        }
    );
    // An explicit sequence, then auto again goes on from it.
    let explicit = json!({"domain_byte": 2, "source": 20, "sequence": 10, "checksum": 0, "tlvs": []});
    let frame = encoder.frame(&explicit, 0).unwrap();
    assert_eq!(crate::protocol::Header::view(&frame).unwrap().checksum(), 0);
    let next = encoder.frame(&line, 0).unwrap();
    assert_eq!(crate::protocol::Header::view(&next).unwrap().sequence(), 11);
    // No sequence after the last one there is.
    let last = json!({"domain_byte": 2, "source": 20, "sequence": u64::MAX, "tlvs": []});
    encoder.frame(&last, 0).unwrap();
    assert_eq!(encoder.frame(&line, 0).unwrap_err().field, "sequence");
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (json!([1]), "line"),
        (json!({"source": 1, "tlvs": []}), "domain_byte"),
        (json!({"domain_byte": 256, "source": 1, "tlvs": []}), "domain_byte"),
        (json!({"domain_byte": 0, "source": 1, "tlvs": [], "colour": 1}), "colour"),
        (json!({"domain_byte": 0, "source": 1, "tlvs": {}}), "tlvs"),
        (json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 0, "hex": ""}]}), "tlvs[0].type"),
        (json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 1}]}), "tlvs[0]"),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 1, "value": {"prce": 1}}]}),
            "tlvs[0].value.prce",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 1, "value": {"venue": 70000}}]}),
            "tlvs[0].value.venue",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 1, "value": {"price": 1.5}}]}),
            "tlvs[0].value.price",
        ),
        (json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 200, "value": {}}]}), "tlvs[0].value"),
        (json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 200, "hex": "0xabc"}]}), "tlvs[0].hex"),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 200, "hex": "ab", "len": 2}]}),
            "tlvs[0].len",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 200, "hex": "ab", "name": "Trade"}]}),
            "tlvs[0].name",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 100, "hex": "00".repeat(16), "value": {"timestamp_ns": 1, "frames_sent": 0}}]}),
            "tlvs[0].value",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 200, "hex": "00".repeat(300), "extended": false}]}),
            "tlvs[0].extended",
        ),
        (json!({"domain_byte": 0, "source": 1, "payload_size": 3, "tlvs": []}), "payload_size"),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 3, "value": {"bid_count": 2, "bids": [{"price": 1}]}}]}),
            "tlvs[0].value.bid_count",
        ),
        (
            json!({"domain_byte": 0, "source": 1, "tlvs": [{"type": 3, "value": {"asks": [{"price": 1, "colour": 2}]}}]}),
            "tlvs[0].value.asks[0].colour",
        ),
        (
            json!({"domain_byte": 3, "source": 1, "tlvs": [{"type": 116, "value": {"role": 3}}]}),
            "tlvs[0].value.role",
        ),
        (
            json!({"domain_byte": 3, "source": 1, "tlvs": [{"type": 116, "value": {"filters": [{"kind": 2, "lo": 1}]}}]}),
            "tlvs[0].value.filters[0].lo",
        ),
        (json!({"offset": 0, "error": "bad_magic", "message": "x"}), "error"),
        (json!({"offset": 0, "error": "bad_domain", "message": "x", "hex": "0xefbeadde"}), "hex"),
        (json!({"domain_byte": 0, "source": 1, "sequence": -1, "tlvs": []}), "sequence"),
    ];
    for (line, field) in cases {
        let error = Encoder::new().frame(&line, 0).unwrap_err();
        assert_eq!(error.field, field, "{line}: {error}");
        assert!(error.problem.len() > 5, "{error}");
    }
}
