//! Cross-module tests: legacy fixtures, validation reasons and properties over random input.

use proptest::prelude::*;

use super::payload::tests::golden_trade;
use super::*;

const MAX: usize = 131_072;

fn build(domain: RelayDomain, tlvs: &[(u8, Vec<u8>)], crc: Crc) -> Vec<u8> {
    let mut buf = vec![0; 32 + tlvs.iter().map(|(_, v)| 5 + v.len()).sum::<usize>()];
    let mut builder = FrameBuilder::new(&mut buf, domain, SourceType::TestClient.raw()).unwrap();
    for (tlv_type, value) in tlvs {
        builder.tlv(*tlv_type, value).unwrap();
    }
    let len = builder.finish(42, 1_000, crc);
    buf.truncate(len);
    buf
}

fn checks(domain: RelayDomain, checksum: ChecksumLevel) -> Checks {
    Checks { domain, checksum, strict_types: false }
}

/// A market-data Trade frame as a legacy Kraken collector writes it: domain 0, source 3,
/// checksum computed.
fn legacy_trade_frame() -> Vec<u8> {
    let (_, value) = golden_trade();
    let mut frame = vec![
        0xEF, 0xBE, 0xAD, 0xDE, 0, 1, 3, 0, // magic, domain 0, version 1, source 3, flags
        5, 0, 0, 0, 0, 0, 0, 0, // sequence 5
        0x00, 0x00, 0xE8, 0x89, 0x04, 0x23, 0xC7, 0x8A, // timestamp
        42, 0, 0, 0, 0, 0, 0, 0, // payload_size 42, checksum filled below
        1, 40, // Trade, standard form
    ];
    frame.extend_from_slice(&value);
    let crc = crc32fast::hash(&[&frame[..28], &frame[32..]].concat());
    frame[28..32].copy_from_slice(&crc.to_le_bytes());
    frame
}

#[test]
fn legacy_trade_frame_decodes() {
    let frame = legacy_trade_frame();
    assert_eq!(super::frame(&frame, MAX), Ok(Framing::Frame(74)));
    let checks = checks(RelayDomain::MarketData, ChecksumLevel::Required);
    assert_eq!(validate(&frame, &checks), Ok(FrameKind::Data));
    let header = Header::view(&frame).unwrap();
    assert_eq!((header.domain(), header.source(), header.sequence()), (Some(RelayDomain::MarketData), 3, 5));
    assert_eq!(header.timestamp(), 0x8AC7_2304_89E8_0000);
    let (trade, _) = golden_trade();
    let tlv = tlvs(&frame[32..]).next().unwrap().unwrap();
    assert_eq!(tlv.decode(), Ok(Value::Trade(trade)));
    assert_eq!(routing_key(&frame[32..]).unwrap().instrument, Some(trade.instrument()));

    // Our builder writes the same bytes.
    let mut buf = [0u8; 74];
    let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, 3).unwrap();
    builder.payload(&trade).unwrap();
    assert_eq!(builder.finish(5, 0x8AC7_2304_89E8_0000, Crc::Compute), 74);
    assert_eq!(buf.to_vec(), frame);
}

#[test]
fn legacy_hello_is_a_hello_on_every_relay() {
    let hello: [u8; 32] = [
        0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];
    assert_eq!(super::frame(&hello, 1065), Ok(Framing::Frame(32)));
    for domain in [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution] {
        assert_eq!(validate(&hello, &checks(domain, ChecksumLevel::Required)), Ok(FrameKind::Hello));
    }
}

#[test]
fn legacy_signal_frame_with_zero_checksum() {
    let identity =
        SignalIdentity { signal_id: 9, strategy_id: 21, signal_type: 1, confidence: 80, valid_for_ms: 500 };
    let mut value = [0; 16];
    identity.emit(&mut value).unwrap();
    let mut frame = vec![
        0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 0,
        0, 0, 0, 20, 16,
    ];
    frame.extend_from_slice(&value);
    assert_eq!(validate(&frame, &checks(RelayDomain::Signal, ChecksumLevel::Verify)), Ok(FrameKind::Data));
    assert_eq!(
        validate(&frame, &checks(RelayDomain::Signal, ChecksumLevel::Required)).map_err(|e| e.reason()),
        Err("checksum_missing")
    );
    assert_eq!(tlvs(&frame[32..]).next().unwrap().unwrap().decode(), Ok(Value::SignalIdentity(identity)));
}

#[test]
fn every_validation_reason() {
    let md = checks(RelayDomain::MarketData, ChecksumLevel::Verify);
    let reason = |frame: &[u8], checks: &Checks| validate(frame, checks).map_err(|e| e.reason());

    let signal = build(RelayDomain::Signal, &[(200, vec![1])], Crc::Compute);
    assert_eq!(reason(&signal, &md), Err("wrong_domain"));
    let mut bad_domain = signal.clone();
    bad_domain[4] = 9;
    assert_eq!(reason(&bad_domain, &md), Err("wrong_domain"));
    let system = build(RelayDomain::System, &[(100, vec![0; 16])], Crc::Compute);
    assert_eq!(reason(&system, &md), Ok(FrameKind::Data));

    let wrong_type = build(RelayDomain::MarketData, &[(200, vec![]), (40, vec![0; 48])], Crc::Skip);
    assert_eq!(
        validate(&wrong_type, &md),
        Err(Error::TlvTypeNotAllowed { offset: 2, tlv_type: 40, domain: RelayDomain::MarketData })
    );
    assert_eq!(
        reason(&build(RelayDomain::MarketData, &[(150, vec![])], Crc::Skip), &md),
        Err("tlv_type_not_allowed")
    );
    let unknown = build(RelayDomain::MarketData, &[(33 - 14, vec![0; 1]), (119, vec![])], Crc::Skip);
    assert_eq!(reason(&unknown, &md), Ok(FrameKind::Data));
    let strict = Checks { strict_types: true, ..md };
    assert_eq!(reason(&unknown, &strict), Err("tlv_unknown_type"));

    let misplaced =
        build(RelayDomain::MarketData, &[(1, golden_trade().1.to_vec()), (116, vec![1, 0, 0, 0])], Crc::Skip);
    assert_eq!(reason(&misplaced, &md), Err("misplaced_control"));
    let two_controls =
        build(RelayDomain::System, &[(116, vec![1, 0, 0, 0]), (116, vec![1, 0, 0, 0])], Crc::Skip);
    assert_eq!(reason(&two_controls, &md), Err("misplaced_control"));

    let mut corrupt = build(RelayDomain::MarketData, &[(1, golden_trade().1.to_vec())], Crc::Compute);
    corrupt[40] ^= 1;
    assert_eq!(reason(&corrupt, &md), Err("checksum_mismatch"));
    assert_eq!(reason(&corrupt, &checks(RelayDomain::MarketData, ChecksumLevel::Off)), Ok(FrameKind::Data));

    let mut truncated = build(RelayDomain::MarketData, &[(200, vec![1, 2])], Crc::Skip);
    truncated[33] = 3;
    assert_eq!(reason(&truncated, &md), Err("tlv_truncated"));
}

#[test]
fn control_frames_are_recognised_and_only_checksummed() {
    let subscribe = build(RelayDomain::System, &[(116, vec![1, 0, 0, 0])], Crc::Skip);
    let exec = checks(RelayDomain::Execution, ChecksumLevel::Required);
    assert_eq!(validate(&subscribe, &exec), Ok(FrameKind::Control { tlv_type: 116 }));
    // A malformed Subscribe is still a control frame: its parse is the protocol error.
    let malformed = build(RelayDomain::System, &[(116, vec![9, 0, 0, 0])], Crc::Compute);
    assert_eq!(validate(&malformed, &exec), Ok(FrameKind::Control { tlv_type: 116 }));
    let mut corrupt = malformed.clone();
    corrupt[33 + 1] = 1;
    assert_eq!(validate(&corrupt, &exec).map_err(|e| e.reason()), Err("checksum_mismatch"));
    // On another domain it is a misplaced control TLV.
    let elsewhere = build(RelayDomain::Execution, &[(116, vec![1, 0, 0, 0])], Crc::Compute);
    assert_eq!(validate(&elsewhere, &exec).map_err(|e| e.reason()), Err("misplaced_control"));
}

#[test]
fn builder_uses_extended_form_exactly_above_255() {
    let frame = build(RelayDomain::MarketData, &[(200, vec![7; 255]), (201, vec![8; 256])], Crc::Skip);
    assert_eq!(frame.len(), 32 + 2 + 255 + 5 + 256);
    assert_eq!(&frame[32..34], &[200, 255]);
    assert_eq!(&frame[32 + 257..32 + 262], &[255, 0, 201, 0, 1]);
    let walked: Vec<_> = tlvs(&frame[32..]).map(|t| t.unwrap().extended).collect();
    assert_eq!(walked, vec![false, true]);
}

#[test]
fn builder_errors_leave_the_frame_unchanged() {
    let mut buf = [0u8; 40];
    let mut builder = FrameBuilder::new(&mut buf, RelayDomain::Signal, 1).unwrap();
    assert_eq!(builder.tlv(0, &[]).err().map(|e| e.reason()), Some("tlv_invalid_type"));
    assert_eq!(builder.tlv(255, &[]).err().map(|e| e.reason()), Some("tlv_invalid_type"));
    assert_eq!(builder.tlv(200, &[0; 7]).err(), Some(Error::BufferTooSmall { needed: 41, available: 40 }));
    assert_eq!(builder.tlv(200, &vec![0; 65536]).err(), Some(Error::ValueTooLong { len: 65536 }));
    builder.tlv(200, &[1; 6]).unwrap();
    assert_eq!(builder.finish(1, 2, Crc::Skip), 40);
    assert_eq!(Header::view(&buf).unwrap().payload_size(), 8);
    assert_eq!(Header::view(&buf).unwrap().checksum(), 0);
    assert!(FrameBuilder::new(&mut [0u8; 31], RelayDomain::Signal, 1).is_err());
}

/// Random TLVs that a builder accepts: vendor types of any length, and registered fixed
/// layouts with random contents.
fn arb_tlv() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        (200u8..=254, proptest::collection::vec(any::<u8>(), 0..600)),
        proptest::collection::vec(any::<u8>(), 40).prop_map(|v| (1, v)),
        proptest::collection::vec(any::<u8>(), 56).prop_map(|v| (17, v)),
        proptest::collection::vec(any::<u8>(), 16).prop_map(|v| (100, v)),
        (0usize..4, 0usize..4, any::<[u8; 8]>()).prop_map(|(bids, asks, id)| {
            let mut v = vec![0; 32 + 24 * (bids + asks)];
            v[..8].copy_from_slice(&id);
            v[12] = bids as u8;
            v[14] = asks as u8;
            (3, v)
        }),
    ]
}

proptest! {
    #[test]
    fn build_frame_validate_round_trip(
        tlv_list in proptest::collection::vec(arb_tlv(), 1..8),
        sequence in any::<u64>(),
        timestamp in any::<u64>(),
        source in any::<u8>(),
        crc in any::<bool>(),
    ) {
        let mut buf = vec![0; 32 + 8 * 605];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, source).unwrap();
        for (tlv_type, value) in &tlv_list {
            builder.tlv(*tlv_type, value).unwrap();
        }
        let crc = if crc { Crc::Compute } else { Crc::Skip };
        let len = builder.finish(sequence, timestamp, crc);
        prop_assert_eq!(super::frame(&buf[..len + 3], MAX), Ok(Framing::Frame(len)));
        let level = if crc == Crc::Compute { ChecksumLevel::Required } else { ChecksumLevel::Verify };
        prop_assert_eq!(validate(&buf[..len], &checks(RelayDomain::MarketData, level)), Ok(FrameKind::Data));
        let header = Header::view(&buf).unwrap();
        prop_assert_eq!((header.sequence(), header.timestamp(), header.source()), (sequence, timestamp, source));
        let walked: Vec<(u8, Vec<u8>)> = tlvs(&buf[32..len]).map(|t| {
            let t = t.unwrap();
            (t.tlv_type, t.value.to_vec())
        }).collect();
        prop_assert_eq!(&walked, &tlv_list);
        for tlv in tlvs(&buf[32..len]) {
            prop_assert!(tlv.unwrap().decode().is_ok());
        }
        let key = routing_key(&buf[32..len]).unwrap();
        prop_assert_eq!(key.tlv_type, tlv_list[0].0);
        prop_assert_eq!(key.instrument.is_some(), matches!(tlv_list[0].0, 1 | 3 | 17));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), max in 0usize..500) {
        let _ = super::frame(&bytes, max);
        for domain in [RelayDomain::MarketData, RelayDomain::Execution, RelayDomain::System] {
            let _ = validate(&bytes, &Checks { domain, checksum: ChecksumLevel::Required, strict_types: true });
        }
        for tlv in tlvs(&bytes).flatten() {
            let _ = tlv.decode();
        }
        let _ = routing_key(&bytes);
        let _ = Subscribe::parse(&bytes);
        let _ = RelayNotice::parse(&bytes);
        let _ = OrderBook::parse(&bytes).map(|b| (b.bids().count(), b.asks().count()));
    }

    #[test]
    fn arbitrary_frames_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300), domain in 0u8..6) {
        let mut frame = legacy_trade_frame()[..32].to_vec();
        frame[4] = domain;
        frame[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        prop_assert_eq!(super::frame(&frame, MAX), Ok(Framing::Frame(frame.len())));
        let _ = validate(&frame, &checks(RelayDomain::Signal, ChecksumLevel::Verify));
        // Walking always ends, and an error is the last item.
        let items: Vec<_> = tlvs(&payload).collect();
        prop_assert!(items.iter().rev().skip(1).all(|t| t.is_ok()));
    }

    #[test]
    fn subscribe_round_trips(
        role in 0u8..3,
        options in 0u8..4,
        filters in proptest::collection::vec((1u8..=5, any::<u8>(), any::<u8>(), any::<u16>(), any::<u8>(), any::<u64>()), 0..=64),
    ) {
        let filters: Vec<Filter> = filters.into_iter().map(|(kind, a, b, venue, asset_type, asset_id)| {
            let (lo, hi) = (a.min(b), a.max(b));
            match kind {
                1 => Filter::TypeRange { lo, hi },
                2 => Filter::Source(a),
                3 => Filter::Instrument(InstrumentId { asset_id, venue, asset_type, reserved: 0 }),
                4 => Filter::Venue(venue),
                _ => Filter::TypeRangeVenue { lo, hi, venue },
            }
        }).collect();
        let role = [Role::Publish, Role::Subscribe, Role::PublishSubscribe][usize::from(role)];
        let subscribe = Subscribe { role, options, filters };
        let mut out = vec![0; 1028];
        let len = subscribe.emit(&mut out).unwrap();
        prop_assert_eq!(Subscribe::parse(&out[..len]), Ok(subscribe));
    }

    #[test]
    fn instrument_keys_round_trip(asset_id in any::<u64>(), venue in any::<u16>(), asset_type in any::<u8>(), reserved in any::<u8>()) {
        let id = InstrumentId { asset_id, venue, asset_type, reserved };
        prop_assert_eq!(InstrumentId::from_key(id.key()), id);
        prop_assert_eq!(InstrumentId::read(&id.to_bytes()), id);
    }
}
