//! The relays over real Unix sockets, each with two reactors so the cross-reactor path runs.

mod util;

use torq::protocol::{
    Crc, Filter, InstrumentId, OPTION_NOTICES, Payload, RelayDomain, Role, Subscribe, Trade,
};
use util::*;

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");
const SIGNAL: &str = env!("CARGO_BIN_EXE_signal_relay");
const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");
const RELAY: &str = env!("CARGO_BIN_EXE_relay");

fn subscribe(role: Role, options: u8, filters: Vec<Filter>) -> Subscribe {
    Subscribe { role, options, filters }
}

/// Connects `n` legacy subscribers and makes sure the relay has registered them (a
/// subscriber with notices acknowledges through the same reactors).
fn subscribers(relay: &Relay, n: usize) -> Vec<Client> {
    let clients: Vec<Client> = (0..n).map(|_| relay.connect()).collect();
    // A notice-asking probe connection: once its Subscribe is acknowledged, every earlier
    // connection has been accepted (reactor 0 accepts in order) and handed to its reactor.
    let mut probe = relay.connect();
    probe.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    clients
}

#[test]
fn fan_out_coalesced_and_split_at_every_byte() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subs = subscribers(&relay, 3);
    let mut publisher = relay.connect();
    publisher.send(&LEGACY_HELLO);
    let frames: Vec<Vec<u8>> = (1..=60).map(|i| md_frame(1, i, 34 + (i as usize * 37) % 400)).collect();
    // The first 30 coalesced into one write, the rest a byte at a time.
    publisher.send(&frames[..30].concat());
    for byte in frames[30..].concat() {
        publisher.send(&[byte]);
    }
    for sub in &mut subs {
        for expected in &frames {
            assert_eq!(&sub.frame(), expected);
        }
    }
}

#[test]
fn a_small_read_budget_keeps_every_byte() {
    // A 4 KiB read budget: bursts fill the read buffer, which is then handed on whole with a
    // partial frame moved to a new one, and frames larger than the budget take several reads.
    let relay = Relay::start_config(
        RELAY,
        "[relay]\ndomain = \"market_data\"\nslow_consumer = \"block\"\nqueue_bytes = 8388608\n\
         [transport]\npath = \"@SOCKET@\"\n[performance]\nbuffer_size = 4096\n\
         [engine]\ncores = \"none:2\"\n",
    );
    let mut subs = subscribers(&relay, 2);
    let mut publisher = relay.connect();
    publisher.send(&LEGACY_HELLO);
    let frames: Vec<Vec<u8>> = (1..=400).map(|i| md_frame(1, i, 34 + (i as usize * 997) % 9000)).collect();
    let burst = frames.concat();
    let writer = std::thread::spawn(move || {
        publisher.send(&burst);
        publisher
    });
    for sub in &mut subs {
        for expected in &frames {
            assert_eq!(&sub.frame(), expected);
        }
    }
    drop(writer.join().unwrap());
}

#[test]
fn an_idle_publisher_gives_back_its_read_buffer_and_goes_on() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subs = subscribers(&relay, 1);
    let mut publisher = relay.connect();
    publisher.send(&LEGACY_HELLO);
    let frames: Vec<Vec<u8>> = (1..=4).map(|i| md_frame(1, i, 200)).collect();
    publisher.send(&frames[..2].concat());
    // Released after a second without a read (logged at debug); the next read allocates anew.
    relay.wait_log("read buffer of", 2); // the probe of `subscribers`, then the publisher
    publisher.send(&frames[2..].concat());
    for expected in &frames {
        assert_eq!(&subs[0].frame(), expected);
    }
}

#[test]
fn order_per_publisher_across_reactors() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subs = subscribers(&relay, 4);
    let mut publishers: Vec<Client> = (0..3).map(|_| relay.connect()).collect();
    for (source, publisher) in publishers.iter_mut().enumerate() {
        publisher.send(&LEGACY_HELLO);
        let burst: Vec<u8> = (1..=500).flat_map(|i| md_frame(source as u8 + 1, i, 128)).collect();
        publisher.send(&burst);
    }
    for sub in &mut subs {
        let mut last = [0u64; 4];
        for _ in 0..1500 {
            let frame = sub.frame();
            let source = usize::from(source_of(&frame));
            let sequence = sequence_of(&frame);
            assert_eq!(sequence, last[source] + 1, "source {source} out of order");
            last[source] = sequence;
        }
        assert_eq!(&last[1..], &[500, 500, 500]);
    }
}

#[test]
fn every_idle_strategy_relays_in_order_and_stops() {
    for idle in ["block", "spin", "backoff"] {
        let relay = Relay::start(MARKET_DATA, &["--idle", idle]);
        let mut subs = subscribers(&relay, 2);
        let mut publisher = relay.connect();
        publisher.send(&LEGACY_HELLO);
        publisher.send(&(1..=2000).flat_map(|i| md_frame(1, i, 128)).collect::<Vec<u8>>());
        for sub in &mut subs {
            for i in 1..=2000 {
                assert_eq!(sequence_of(&sub.frame()), i, "--idle {idle}");
            }
        }
        assert_eq!(relay.stop().code(), Some(0), "--idle {idle}");
    }
}

#[test]
fn legacy_hello_makes_a_publisher_on_every_relay() {
    for (binary, args) in
        [(MARKET_DATA, &[][..]), (SIGNAL, &[][..]), (EXECUTION, &["--audit-file", "/dev/null"][..])]
    {
        let relay = Relay::start(binary, args);
        let mut watcher = relay.connect();
        watcher.subscribe(&subscribe(Role::Subscribe, OPTION_NOTICES, vec![]));
        let data = |source, sequence| match binary {
            b if b == MARKET_DATA => md_frame(source, sequence, 64),
            _ => build(RelayDomain::System, source, sequence, &[(100, &[0; 16])], Crc::Compute),
        };
        // The exact legacy hello, then a frame on the same connection: the watcher's first
        // frame is that frame, so the hello was consumed, not forwarded.
        let mut legacy = relay.connect();
        let first = data(2, 1);
        legacy.send(&[&LEGACY_HELLO[..], &first].concat());
        assert_eq!(watcher.frame(), first, "{binary}");
        // The legacy connection is a publisher now: another publisher's frame reaches the
        // watcher but not it (it sees only the end of the stream when the relay stops).
        let marker = data(7, 1);
        relay.connect().send(&marker);
        assert_eq!(watcher.frame(), marker, "{binary}");
        assert_eq!(relay.stop().code(), Some(0), "{binary}");
        assert!(legacy.until_closed().is_empty(), "{binary}: a publisher received frames");
    }
}

#[test]
fn never_echo_to_the_sender() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut both = relay.connect();
    both.subscribe(&subscribe(Role::PublishSubscribe, OPTION_NOTICES, vec![]));
    let mut other = subscribers(&relay, 1).remove(0);
    let frame = md_frame(3, 1, 100);
    both.send(&frame);
    // A Subscribe right after: its acknowledgement is the next thing `both` receives.
    both.subscribe(&subscribe(Role::PublishSubscribe, OPTION_NOTICES, vec![]));
    assert_eq!(other.frame(), frame);
    // Frames from others still reach it.
    let mut publisher = relay.connect();
    let second = md_frame(4, 1, 100);
    publisher.send(&second);
    assert_eq!(both.frame(), second);
}

#[test]
fn bad_magic_closes_only_that_publisher() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut sub = subscribers(&relay, 1).remove(0);
    let mut bad = relay.connect();
    bad.send(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n");
    assert!(bad.until_closed().is_empty());
    let mut good = relay.connect();
    let frame = md_frame(1, 1, 80);
    good.send(&frame);
    assert_eq!(sub.frame(), frame);
}

#[test]
fn oversized_payload_size_is_a_protocol_error() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut client = relay.connect();
    client.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let mut header = md_frame(1, 1, 64)[..32].to_vec();
    header[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    client.send(&header);
    let (code, _, text) = client.notice();
    assert_eq!(code, 3);
    assert!(text.starts_with("frame_too_large"), "{text}");
    assert!(client.until_closed().is_empty());
}

#[test]
fn rejections_keep_the_connection_and_name_the_reason() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut sub = subscribers(&relay, 1).remove(0);
    let mut publisher = relay.connect();
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (build(RelayDomain::Signal, 1, 1, &[(200, b"x")], Crc::Compute), "wrong_domain"),
        (build(RelayDomain::MarketData, 1, 2, &[(40, &[0; 48])], Crc::Compute), "tlv_type_not_allowed"),
        (build(RelayDomain::MarketData, 1, 3, &[(150, b"x")], Crc::Compute), "tlv_type_not_allowed"),
        (build(RelayDomain::MarketData, 1, 4, &[(1, &[0; 39])], Crc::Compute), "tlv_size_mismatch"),
        (
            build(RelayDomain::MarketData, 1, 5, &[(200, b"x"), (116, &[1, 0, 0, 0])], Crc::Compute),
            "misplaced_control",
        ),
    ];
    for (frame, reason) in &cases {
        publisher.send(frame);
        let (code, sequence, text) = publisher.notice();
        assert_eq!((code, sequence), (2, sequence_of(frame)));
        assert!(text.starts_with(reason), "{text} should start with {reason}");
    }
    let good = md_frame(1, 6, 64);
    publisher.send(&good);
    assert_eq!(sub.frame(), good, "only the good frame is forwarded, after the rejected ones");
}

#[test]
fn checksum_levels() {
    // Signal: a zero checksum passes, a wrong one is rejected.
    let relay = Relay::start(SIGNAL, &[]);
    let mut sub = subscribers(&relay, 1).remove(0);
    let mut publisher = relay.connect();
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let mut wrong = build(RelayDomain::Signal, 10, 1, &[(20, &[0; 16])], Crc::Compute);
    wrong[40] ^= 1;
    publisher.send(&wrong);
    assert!(publisher.notice().2.starts_with("checksum_mismatch"));
    let zero = build(RelayDomain::Signal, 10, 2, &[(20, &[0; 16])], Crc::Skip);
    publisher.send(&zero);
    assert_eq!(sub.frame(), zero);

    // Execution: a zero checksum is refused, and without notices the connection is closed.
    let audit = temp_dir("audit").join("audit.log");
    let relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut publisher = relay.connect();
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let order = build(RelayDomain::Execution, 20, 1, &[(43, &[0; 16])], Crc::Skip);
    publisher.send(&order);
    assert!(publisher.notice().2.starts_with("checksum_missing"));
    let mut legacy = relay.connect();
    legacy.send(&order);
    assert!(legacy.until_closed().is_empty(), "close_on_reject closes a connection without notices");
    drop(relay);
}

#[test]
fn sequence_replay_on_execution() {
    let audit = temp_dir("audit").join("audit.log");
    let relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut sub = subscribers(&relay, 1).remove(0);
    let mut publisher = relay.connect();
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let first = build(RelayDomain::Execution, 20, 5, &[(43, &[1; 16])], Crc::Compute);
    let replay = build(RelayDomain::Execution, 20, 5, &[(43, &[2; 16])], Crc::Compute);
    let next = build(RelayDomain::Execution, 20, 6, &[(43, &[3; 16])], Crc::Compute);
    publisher.send(&[first.clone(), replay, next.clone()].concat());
    let (code, sequence, text) = publisher.notice();
    assert_eq!((code, sequence), (2, 5));
    assert!(text.starts_with("sequence_replay"));
    assert_eq!(sub.frame(), first);
    assert_eq!(sub.frame(), next);
    assert_eq!(relay.stop().code(), Some(0));
    let log = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains(" accepted ")).count(), 2, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("reason=sequence_replay")).count(), 1, "{log}");
}

#[test]
fn every_filter_kind_and_a_malformed_subscribe() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let btc = InstrumentId { asset_id: 0x4254_4300_0000_0000, venue: 101, asset_type: 51, reserved: 0 };
    let eth = InstrumentId { asset_id: 0x4554_4800_0000_0000, venue: 102, asset_type: 51, reserved: 0 };
    let trade = |id: InstrumentId, source: u8, sequence: u64| {
        let mut value = [0u8; 40];
        Trade { asset_id: id.asset_id, venue: id.venue, asset_type: id.asset_type, ..Trade::default() }
            .emit(&mut value)
            .unwrap();
        build(RelayDomain::MarketData, source, sequence, &[(1, &value)], Crc::Compute)
    };
    let filters = [
        Filter::TypeRange { lo: 200, hi: 210 },
        Filter::Source(9),
        Filter::Instrument(btc),
        Filter::Venue(102),
        Filter::TypeRangeVenue { lo: 1, hi: 1, venue: 101 },
    ];
    let mut subs: Vec<Client> = filters
        .iter()
        .map(|f| {
            let mut c = relay.connect();
            c.subscribe(&subscribe(Role::Subscribe, OPTION_NOTICES, vec![*f]));
            c
        })
        .collect();
    let frames = [md_frame(1, 1, 64), trade(btc, 2, 2), trade(eth, 9, 3), trade(eth, 3, 4)];
    let mut publisher = relay.connect();
    publisher.send(&frames.concat());
    // Then a marker every filter takes: a vendor frame from source 9 on venue... each gets
    // its expected frames followed by nothing else before the stop.
    let expected: [&[usize]; 5] = [&[0], &[2], &[1], &[2, 3], &[1]];
    drop(publisher);
    assert_eq!(relay.stop().code(), Some(0));
    for ((sub, wanted), filter) in subs.iter_mut().zip(expected).zip(filters) {
        let got = sub.until_closed();
        let got: Vec<Vec<u8>> = got.into_iter().filter(|f| notice_of(f).is_none()).collect();
        let want: Vec<Vec<u8>> = wanted.iter().map(|i| frames[*i].clone()).collect();
        assert_eq!(got, want, "{filter:?}");
    }

    let relay = Relay::start(MARKET_DATA, &[]);
    let mut bad = relay.connect();
    // Role 7, no notices asked: notice 3 is sent anyway, then the connection is closed.
    bad.send(&build(RelayDomain::System, 1, 0, &[(116, &[7, 0, 0, 0])], Crc::Compute));
    let frames = bad.until_closed();
    assert_eq!(frames.len(), 1);
    assert_eq!(notice_of(&frames[0]).map(|n| n.0), Some(3));
}

#[test]
fn subscribe_replaced_while_frames_are_in_flight() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut sub = relay.connect();
    sub.subscribe(&subscribe(Role::Subscribe, OPTION_NOTICES, vec![Filter::Source(1)]));
    let mut one = relay.connect();
    let mut two = relay.connect();
    one.send(&(1..=200).flat_map(|i| md_frame(1, i, 100)).collect::<Vec<u8>>());
    sub.send(&subscribe_frame(&subscribe(Role::Subscribe, OPTION_NOTICES, vec![Filter::Source(2)])));
    // Until the acknowledgement only source 1 arrives; after it only source 2.
    loop {
        let frame = sub.frame();
        if let Some((code, ..)) = notice_of(&frame) {
            assert_eq!(code, 1);
            break;
        }
        assert_eq!(source_of(&frame), 1);
    }
    one.send(&md_frame(1, 201, 100));
    let from_two = md_frame(2, 1, 100);
    two.send(&from_two);
    assert_eq!(sub.frame(), from_two);
}

#[test]
fn publisher_dying_mid_frame_harms_no_one() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut sub = subscribers(&relay, 1).remove(0);
    let mut dying = relay.connect();
    let whole = md_frame(1, 1, 90);
    let partial = md_frame(1, 2, 90);
    dying.send(&whole);
    dying.send(&partial[..50]);
    drop(dying);
    let mut next = relay.connect();
    let after = md_frame(2, 1, 90);
    next.send(&after);
    // Frames of different publishers have no defined order.
    let mut got = vec![sub.frame(), sub.frame()];
    got.sort();
    let mut want = vec![whole, after];
    want.sort();
    assert_eq!(got, want);
    // The relay saw the end of the dying publisher's stream and closed it.
    relay.wait_log("closed: peer closed", 2);
}

#[test]
fn a_publisher_that_writes_then_closes_is_closed_after_its_frames() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut sub = subscribers(&relay, 1).remove(0);
    // Data and end of stream arrive together: the short read must not hide the close.
    for i in 1..=20 {
        let mut publisher = relay.connect();
        publisher.send(&md_frame(5, i, 64));
    }
    let mut got: Vec<u64> = (0..20).map(|_| sequence_of(&sub.frame())).collect();
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<u64>>());
    // 20 publishers plus the readiness probe and the subscribers() probe.
    relay.wait_log("closed: peer closed", 22);
}

#[test]
fn sigterm_delivers_queued_execution_frames_then_exits_0() {
    let audit = temp_dir("audit").join("audit.log");
    let relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut subs = subscribers(&relay, 2);
    let mut publisher = relay.connect();
    let orders: Vec<Vec<u8>> = (1..=2000)
        .map(|i| build(RelayDomain::Execution, 20, i, &[(43, &[i as u8; 16])], Crc::Compute))
        .collect();
    publisher.send(&orders.concat());
    // The relay has read everything once the publisher's Subscribe is acknowledged.
    publisher.subscribe(&subscribe(Role::Publish, OPTION_NOTICES, vec![]));
    let stopping = std::thread::spawn(move || relay.stop());
    for sub in &mut subs {
        let got = sub.until_closed();
        assert_eq!(got.len(), 2000);
        assert_eq!(got.last().map(|f| sequence_of(f)), Some(2000));
    }
    assert_eq!(stopping.join().unwrap().code(), Some(0));
}

#[test]
fn hundreds_of_connections() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subs = subscribers(&relay, 300);
    let mut publisher = relay.connect();
    let frames: Vec<u8> = (1..=20).flat_map(|i| md_frame(1, i, 128)).collect();
    publisher.send(&frames);
    for sub in &mut subs {
        for i in 1..=20 {
            assert_eq!(sequence_of(&sub.frame()), i);
        }
    }
}
