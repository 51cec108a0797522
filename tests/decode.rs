//! `torq-decode` end to end: fixtures in, JSON lines and exit status out.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value as Json, json};
use torq::protocol::*;

/// Runs `torq-decode` on `input` through stdin: the JSON lines and the exit code.
fn decode(input: &[u8]) -> (Vec<Json>, i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_torq-decode"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("torq-decode starts");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // The decoder may stop reading early (bad magic): a broken pipe is fine.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    (lines, output.status.code().unwrap())
}

fn build(domain: RelayDomain, source: u8, tlvs: &[(u8, &[u8])], crc: Crc) -> Vec<u8> {
    let mut buf = vec![0; 64 + tlvs.iter().map(|(_, v)| 5 + v.len()).sum::<usize>()];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    for (tlv_type, value) in tlvs {
        builder.tlv(*tlv_type, value).unwrap();
    }
    let len = builder.finish(7, 1_700_000_000_123_456_789, crc);
    buf.truncate(len);
    buf
}

fn emit<P: Payload>(value: &P) -> Vec<u8> {
    let mut out = vec![0; P::SIZE];
    value.emit(&mut out).unwrap();
    out
}

const LEGACY_HELLO: [u8; 32] = [
    0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
];

#[test]
fn legacy_hello_and_trade() {
    let trade = Trade {
        asset_id: 0x4254_432F_5553_4400,
        price: 4_500_000_000_000,
        volume: 12_345_678,
        execution_timestamp_ns: u64::MAX,
        venue: 101,
        asset_type: 51,
        side: 1,
    };
    let frame = build(RelayDomain::MarketData, 3, &[(1, &emit(&trade))], Crc::Compute);
    let mut stream = LEGACY_HELLO.to_vec();
    stream.extend_from_slice(&frame);
    let (lines, status) = decode(&stream);
    assert_eq!(status, 0);
    assert_eq!(
        lines[0],
        json!({
            "offset": 0, "domain_byte": 1, "version": 1, "source": 2, "flags": 0, "bridged": false, "sequence": 0,
            "timestamp": 0, "payload_size": 0, "checksum": 0, "checksum_ok": null, "tlvs": []
        })
    );
    let crc = checksum(&frame);
    assert_eq!(
        lines[1],
        json!({
            "offset": 32, "domain_byte": 0, "version": 1, "source": 3, "flags": 0, "bridged": false, "sequence": 7,
            "timestamp": 1_700_000_000_123_456_789u64, "payload_size": 42, "checksum": crc, "checksum_ok": true,
            "tlvs": [{"type": 1, "len": 40, "name": "Trade", "value": {
                "asset_id": 0x4254_432F_5553_4400u64, "price": 4_500_000_000_000i64, "volume": 12_345_678,
                "execution_timestamp_ns": u64::MAX, "venue": 101, "asset_type": 51, "side": 1
            }}]
        })
    );
    assert_eq!(lines.len(), 2);
}

#[test]
fn signal_frame_with_zero_checksum_and_byte_arrays() {
    let identity =
        SignalIdentity { signal_id: 1, strategy_id: 2, signal_type: 3, confidence: 90, valid_for_ms: 500 };
    let arbitrage = ArbitrageSignal { source_pool: [0xAB; 20], net_profit_usd_q8: -5, ..Default::default() };
    let frame = build(
        RelayDomain::Signal,
        10,
        &[(20, &emit(&identity)), (32, &emit(&arbitrage)), (210, b"x")],
        Crc::Skip,
    );
    let (lines, status) = decode(&frame);
    assert_eq!(status, 0);
    assert_eq!(lines[0]["checksum_ok"], Json::Null);
    let tlvs = &lines[0]["tlvs"];
    assert_eq!(tlvs[0]["value"]["confidence"], 90);
    assert_eq!(tlvs[1]["name"], "ArbitrageSignal");
    assert_eq!(tlvs[1]["value"]["source_pool"], format!("0x{}", "ab".repeat(20)));
    assert_eq!(tlvs[1]["value"]["net_profit_usd_q8"], -5);
    assert_eq!(tlvs[2], json!({"type": 210, "len": 1}));
}

#[test]
fn order_book_levels_and_control_values() {
    let head = OrderBookHead { asset_id: 9, venue: 102, asset_type: 51, ..Default::default() };
    let mut book = vec![0; OrderBook::encoded_len(1, 2)];
    let bid = Level { price: 100, size: 1, order_count: 3 };
    let ask = Level { price: 101, size: 2, order_count: 0 };
    OrderBook::emit(&head, &[bid], &[ask, ask], &mut book).unwrap();
    let subscribe = Subscribe {
        role: Role::PublishSubscribe,
        options: OPTION_NOTICES,
        filters: vec![Filter::TypeRange { lo: 1, hi: 3 }, Filter::Venue(101)],
    };
    let mut sub = vec![0; subscribe.encoded_len()];
    subscribe.emit(&mut sub).unwrap();
    let mut note = vec![0; 40];
    let len = RelayNotice { code: 1, sequence: 0, text: "version=1" }.emit(&mut note).unwrap();
    let mut stream = build(RelayDomain::MarketData, 1, &[(3, &book)], Crc::Compute);
    stream.extend(build(RelayDomain::System, 99, &[(116, &sub)], Crc::Compute));
    stream.extend(build(RelayDomain::System, 80, &[(117, &note[..len])], Crc::Compute));
    let (lines, status) = decode(&stream);
    assert_eq!(status, 0);
    let value = &lines[0]["tlvs"][0]["value"];
    assert_eq!(value["bid_count"], 1);
    assert_eq!(value["bids"], json!([{"price": 100, "size": 1, "order_count": 3}]));
    assert_eq!(value["asks"][1], json!({"price": 101, "size": 2, "order_count": 0}));
    assert_eq!(
        lines[1]["tlvs"][0]["value"],
        json!({"role": 2, "options": 1, "n": 2, "filters": [{"kind": 1, "lo": 1, "hi": 3}, {"kind": 4, "venue": 101}]})
    );
    assert_eq!(lines[2]["tlvs"][0]["value"], json!({"code": 1, "sequence": 0, "text": "version=1"}));
}

#[test]
fn checksum_mismatch_is_reported_and_fails_the_run() {
    let mut frame = build(RelayDomain::Execution, 20, &[(43, &[0; 16])], Crc::Compute);
    frame[40] ^= 0xFF;
    let (lines, status) = decode(&frame);
    assert_eq!((lines[0]["checksum_ok"].clone(), status), (json!(false), 1));
}

#[test]
fn non_fatal_errors_skip_to_the_next_frame() {
    let good = build(RelayDomain::Signal, 1, &[(200, &[1, 2])], Crc::Skip);
    let mut bad_domain = good.clone();
    bad_domain[4] = 4;
    let cases: [(Vec<u8>, &str); 6] = [
        (bad_domain, "bad_domain"),
        (build(RelayDomain::Signal, 1, &[(200, &[]), (1, &[0; 39])], Crc::Skip), "tlv_size_mismatch"),
        (build(RelayDomain::Signal, 1, &[(11, &[0; 10])], Crc::Skip), "tlv_size_out_of_bounds"),
        (with_payload(&[0, 0]), "tlv_invalid_type"),
        (with_payload(&[200, 3, 0]), "tlv_truncated"),
        (with_payload(&[255, 1, 200, 0, 0]), "tlv_reserved_nonzero"),
    ];
    for (bad, reason) in cases {
        let mut stream = bad.clone();
        stream.extend_from_slice(&good);
        let (lines, status) = decode(&stream);
        assert_eq!(status, 1, "{reason}");
        assert_eq!(lines.len(), 2, "{reason}: {lines:?}");
        assert_eq!(lines[0]["error"], reason);
        assert_eq!(lines[0]["offset"], 0);
        assert!(lines[0]["message"].as_str().unwrap().len() > 10);
        assert_eq!(lines[1]["offset"], bad.len());
        assert_eq!(lines[1]["tlvs"][0]["type"], 200);
    }
}

fn with_payload(payload: &[u8]) -> Vec<u8> {
    let mut frame = LEGACY_HELLO.to_vec();
    frame[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn fatal_errors_stop_decoding() {
    let good = with_payload(&[200, 0]);
    let mut bad_version = good.clone();
    bad_version[5] = 2;
    let mut truncated = good.clone();
    truncated.truncate(33);
    let mut huge = good.clone();
    huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    // (bytes, error, whether a good frame follows: it must not be decoded)
    let cases: [(Vec<u8>, &str, bool); 5] = [
        (b"GET / HTTP/1.1\r\n".to_vec(), "bad_magic", true),
        (bad_version, "unsupported_version", true),
        (truncated, "truncated_frame", false),
        (good[..20].to_vec(), "truncated_frame", false),
        // A 4 GiB payload_size with two bytes behind it: never allocated, just truncated.
        (huge, "truncated_frame", false),
    ];
    for (bad, reason, more) in cases {
        let mut stream = good.clone();
        stream.extend_from_slice(&bad);
        if more {
            stream.extend_from_slice(&good);
        }
        let (lines, status) = decode(&stream);
        assert_eq!(status, 1, "{reason}");
        assert_eq!(lines.len(), 2, "{reason}: {lines:?}");
        assert_eq!(lines[1]["error"], reason);
        assert_eq!(lines[1]["offset"], good.len());
    }
}

#[test]
fn malformed_subscribe_value_is_flagged() {
    let frame = build(RelayDomain::System, 1, &[(116, &[7, 0, 0, 0])], Crc::Skip);
    let (lines, status) = decode(&frame);
    assert_eq!(status, 1);
    assert!(lines[0]["tlvs"][0]["value_error"].as_str().unwrap().contains("role 7"));
}

#[test]
fn reads_a_file_argument_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("torq-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("capture.bin");
    std::fs::write(&path, LEGACY_HELLO).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_torq-decode")).arg(&path).output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 1);
    let output = Command::new(env!("CARGO_BIN_EXE_torq-decode")).arg(dir.join("missing")).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_a_recording_with_offsets_in_bytes_of_frames() {
    let first = build(RelayDomain::MarketData, 3, &[(200, &[1, 2])], Crc::Compute);
    let mut bad = first.clone();
    bad[4] = 9;
    let second = build(RelayDomain::Signal, 10, &[(200, &[3])], Crc::Skip);
    let mut writer = torq::tools::pcapng::Writer::new(Vec::new(), "test", "x").unwrap();
    for (time, frame) in [(1, &first), (2, &bad), (3, &second)] {
        writer.write_packet(time, frame).unwrap();
    }
    // A packet torn short: that packet is reported, the next one is decoded.
    writer.write_packet(4, &first[..20]).unwrap();
    writer.write_packet(5, &second).unwrap();
    let recording = writer.into_inner();
    let (lines, status) = decode(&recording);
    assert_eq!(status, 1);
    let offsets: Vec<u64> = lines.iter().map(|l| l["offset"].as_u64().unwrap()).collect();
    let (a, b, c) = (first.len() as u64, bad.len() as u64, second.len() as u64);
    assert_eq!(offsets, [0, a, a + b, a + b + c, a + b + c + 20]);
    assert_eq!(lines[0]["tlvs"][0]["type"], 200);
    assert_eq!(lines[1]["error"], "bad_domain");
    assert_eq!(lines[2]["source"], 10);
    assert_eq!(lines[3]["error"], "truncated_frame");
    assert_eq!(lines[4]["source"], 10);
    // A recording cut inside its last block ends with bad_recording naming the byte.
    let mut torn = recording.clone();
    torn.truncate(torn.len() - 1);
    let last_block = torn.len() + 1 - (32 + second.len().next_multiple_of(4));
    let (lines, status) = decode(&torn);
    assert_eq!(status, 1);
    let last = lines.last().unwrap();
    assert_eq!(last["error"], "bad_recording");
    assert_eq!(last["offset"], a + b + c + 20);
    assert!(last["message"].as_str().unwrap().contains(&format!("byte {last_block} ")), "{last}");
}
