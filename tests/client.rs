//! The client library against running relays, over real sockets.

mod util;

use std::time::Duration;

use torq::client::{
    Error, Event, Notice, OwnedEvent, Publisher, PublisherOptions, Reconnect, Settlement, Subscriber,
    SubscriberOptions,
};
use torq::protocol::{Crc, Filter, Header, Payload, RelayDomain, Trade};
use util::*;

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");
const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");
const SIGNAL: &str = env!("CARGO_BIN_EXE_signal_relay");
const SECOND: Duration = Duration::from_secs(1);

fn trade(price: i64) -> Trade {
    Trade { asset_id: 7, price, volume: 1, venue: 101, asset_type: 51, ..Trade::default() }
}

/// The data frames (sequence, bytes) a subscriber receives until `count` arrived.
fn receive(subscriber: &mut Subscriber, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut frames = Vec::new();
    while frames.len() < count {
        match subscriber.recv_timeout(WAIT).unwrap() {
            Some(Event::Frame(frame)) => frames.push((frame.header().sequence(), frame.bytes().to_vec())),
            Some(other) => panic!("expected a frame, got {other:?}"),
            None => panic!("only {} of {count} frames arrived", frames.len()),
        }
    }
    frames
}

#[test]
fn published_frames_arrive_whole_and_in_order() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let options = PublisherOptions::new(RelayDomain::MarketData, 4);
    let mut publisher = Publisher::connect(&relay.socket, options).unwrap();
    for price in 1..=5000 {
        let sequence = publisher.publish(|frame| frame.payload(&trade(price)).map(|_| ())).unwrap();
        assert_eq!(sequence, price as u64);
    }
    publisher.flush().unwrap();
    let frames = receive(&mut subscriber, 5000);
    for (i, (sequence, bytes)) in frames.iter().enumerate() {
        assert_eq!(*sequence, i as u64 + 1);
        let header = Header::view(bytes).unwrap();
        assert_eq!((header.source(), header.domain()), (4, Some(RelayDomain::MarketData)));
        let value = torq::protocol::tlvs(&bytes[32..]).next().unwrap().unwrap();
        assert_eq!(Trade::parse(value.value).unwrap(), trade(i as i64 + 1));
    }
}

#[test]
fn execution_frames_carry_the_checksum_it_requires() {
    let dir = temp_dir("client-exec");
    let audit = dir.join("audit.log");
    let relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::Execution, 20)).unwrap();
    for i in 0..100u8 {
        publisher.publish(|frame| frame.tlv(200, &[i; 40]).map(|_| ())).unwrap();
    }
    publisher.flush().unwrap();
    let sequences: Vec<u64> = receive(&mut subscriber, 100).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bridged_frames_are_marked_in_the_send_buffer_with_their_checksum_made_again() {
    // The Signal relay verifies checksums: a frame marked without its checksum made again
    // would be rejected, and the subscriber would miss it.
    let relay = Relay::start(SIGNAL, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::Signal, 7)).unwrap();
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|sequence| {
            build(RelayDomain::Signal, 7, sequence, &[(200, &[sequence as u8; 24])], Crc::Compute)
        })
        .collect();
    // One frame alone, then two back to back in one call.
    publisher.offer_bridged(&frames[0]).unwrap();
    publisher.offer_bridged(&[frames[1].clone(), frames[2].clone()].concat()).unwrap();
    publisher.flush().unwrap();
    let received = receive(&mut subscriber, 3);
    for ((sequence, bytes), sent) in received.iter().zip(&frames) {
        let mut expected = sent.clone();
        torq::protocol::mark_bridged(&mut expected).unwrap();
        assert!(Header::view(bytes).unwrap().is_bridged(), "frame {sequence}");
        assert_eq!(bytes, &expected, "frame {sequence}: its bytes but for the flag and the checksum");
        assert_ne!(Header::view(bytes).unwrap().checksum(), Header::view(sent).unwrap().checksum());
    }
    // What is not whole frames is refused, and nothing of it is sent.
    assert!(matches!(publisher.offer_bridged(&frames[0][..40]), Err(Error::Frame(_))));
}

#[test]
fn notices_gaps_and_filters_are_typed_events() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let only_source_9 = SubscriberOptions::new().filter(Filter::Source(9));
    let mut filtered = Subscriber::connect(&relay.socket, only_source_9).unwrap();
    // A publisher that also asked for notices: its rejected frame comes back as a notice.
    let own = SubscriberOptions::new().role(torq::protocol::Role::PublishSubscribe);
    let mut both = Subscriber::connect(&relay.socket, own).unwrap();
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::MarketData, 9)).unwrap();
    // Sequences 1, 2, 5 as they are (a replay), then one of the Signal domain.
    for sequence in [1, 2, 5] {
        publisher
            .offer_verbatim(&build(RelayDomain::MarketData, 9, sequence, &[(200, b"x")], Crc::Skip))
            .unwrap();
    }
    publisher.flush().unwrap();
    let mut events = Vec::new();
    while events.len() < 4 {
        events.push(filtered.recv_timeout(WAIT).unwrap().expect("an event").to_owned());
    }
    let sequence_of_frame = |e: &OwnedEvent| match e {
        OwnedEvent::Frame(bytes) => Header::view(bytes).unwrap().sequence(),
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(sequence_of_frame(&events[0]), 1);
    assert_eq!(sequence_of_frame(&events[1]), 2);
    assert_eq!(events[2], OwnedEvent::Gap { source: 9, expected: 3, received: 5 });
    assert_eq!(sequence_of_frame(&events[3]), 5);
    // `both` sends a frame of the wrong domain (through a second handle on its connection):
    // rejected, and told so.
    let wrong = build(RelayDomain::Signal, 9, 1, &[(200, b"x")], Crc::Skip);
    let fd = std::os::fd::AsFd::as_fd(&both).try_clone_to_owned().unwrap();
    std::io::Write::write_all(&mut std::os::unix::net::UnixStream::from(fd), &wrong).unwrap();
    loop {
        match both.recv_timeout(WAIT).unwrap().expect("the rejection notice") {
            Event::Notice(Notice::Rejected { sequence, reason }) => {
                assert_eq!(sequence, 1);
                assert!(reason.starts_with("wrong_domain"), "{reason}");
                break;
            }
            Event::Frame(_) | Event::Gap { .. } | Event::Restarted { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_publisher_that_starts_again_at_1_is_a_restart_not_a_gap() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let publish = |count: u64| {
        let mut publisher =
            Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::MarketData, 2)).unwrap();
        for price in 1..=count {
            publisher.publish(|frame| frame.payload(&trade(price as i64)).map(|_| ())).unwrap();
        }
        publisher.flush().unwrap();
        assert_eq!(publisher.settle(WAIT).unwrap().accepted, count);
    };
    publish(1000);
    assert_eq!(receive(&mut subscriber, 1000).last().unwrap().0, 1000);
    // The publisher's process restarts: a new connection counts from 1 again.
    publish(3);
    assert_eq!(
        subscriber.recv_timeout(WAIT).unwrap().expect("an event").to_owned(),
        OwnedEvent::Restarted { source: 2, expected: 1001, received: 1 }
    );
    let after: Vec<u64> = receive(&mut subscriber, 3).iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(after, [1, 2, 3], "nothing reported between the frames of the new run");
}

#[test]
fn a_legacy_subscriber_given_a_filter_is_refused_naming_the_problem() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let options = SubscriberOptions::legacy().filter(Filter::Source(9));
    let error = Subscriber::connect(&relay.socket, options).unwrap_err();
    assert!(matches!(error, Error::Legacy { asked: "filters", .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(relay.socket.to_str().unwrap()) && text.contains("takes no filters"), "{text}");
}

#[test]
fn a_subscriber_reconnects_and_says_so() {
    let mut relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.clone();
    let options = SubscriberOptions::new()
        .reconnect(Reconnect { initial: Duration::from_millis(5), ..Reconnect::default() });
    let mut subscriber = Subscriber::connect(&socket, options).unwrap();
    assert_eq!(relay.terminate().code(), Some(0));
    // Notice 5 first, then the connection goes.
    let mut stopping = false;
    let restarted = std::thread::spawn({
        let socket = socket.clone();
        move || {
            std::thread::sleep(Duration::from_millis(200));
            let args = ["--socket", socket.to_str().unwrap(), "--cores", "none:1"];
            Relay::spawn(MARKET_DATA, &args, socket.clone(), temp_dir("client-restart"))
        }
    });
    let attempts = loop {
        match subscriber.recv_timeout(WAIT).unwrap().expect("an event") {
            Event::Notice(Notice::Stopping) => stopping = true,
            Event::Reconnected { attempts } => break attempts,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(stopping, "notice 5 came before the connection went");
    assert!(attempts >= 1);
    let second = restarted.join().unwrap();
    let mut publisher =
        Publisher::connect(&second.socket, PublisherOptions::new(RelayDomain::MarketData, 4)).unwrap();
    publisher.publish(|frame| frame.payload(&trade(1)).map(|_| ())).unwrap();
    publisher.flush().unwrap();
    assert_eq!(receive(&mut subscriber, 1)[0].0, 1);
}

#[test]
fn back_pressure_is_visible() {
    // A "relay" that accepts and never reads (nor acknowledges: a legacy publisher).
    let dir = temp_dir("client-full");
    let path = dir.join("full.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let options = PublisherOptions::new(RelayDomain::MarketData, 4).send_buffer(64 << 10).confirm(false);
    let mut publisher = Publisher::connect(&path, options).unwrap();
    let (_peer, _) = listener.accept().unwrap();
    let mut published = 0u64;
    let error = loop {
        match publisher.try_publish(|frame| frame.tlv(200, &[0; 1000]).map(|_| ())) {
            Ok(_) => published += 1,
            Err(e) => break e,
        }
        assert!(published < 1_000_000, "the socket never filled");
    };
    assert!(matches!(error, Error::WouldBlock), "{error}");
    assert!(publisher.pending() > 0);
    let timed_out = publisher.flush_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(timed_out, Error::TimedOut(_)), "{timed_out}");
}

#[test]
fn a_relay_that_is_not_there_is_named() {
    let error = Subscriber::connect("/nonexistent/torq.sock", SubscriberOptions::new()).unwrap_err();
    assert!(matches!(error, Error::Connect { .. }));
    assert!(error.to_string().contains("/nonexistent/torq.sock"), "{error}");
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::legacy()).unwrap();
    relay.stop();
    let closed = loop {
        match subscriber.recv_timeout(SECOND) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(closed, Error::Closed { .. }), "{closed}");
}

/// The path of an example binary (cargo builds the examples before the integration tests).
fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join(name)
}

#[test]
fn the_examples_publish_and_subscribe() {
    use std::io::BufRead;
    let relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.to_str().unwrap();
    let mut subscriber = std::process::Command::new(example("subscriber"))
        .arg(socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says so once the relay has acknowledged its Subscribe.
    let mut said = std::io::BufReader::new(subscriber.stderr.take().unwrap()).lines();
    let line = said.next().expect("a line").unwrap();
    assert!(line.starts_with("subscribed to "), "{line}");
    let mut publisher = std::process::Command::new(example("publisher"))
        .arg(socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(subscriber.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    let second = lines.next().expect("a line").unwrap();
    let _ = (publisher.kill(), subscriber.kill(), publisher.wait(), subscriber.wait());
    assert!(first.starts_with("#1 price 9700000000000 "), "{first}");
    assert!(second.starts_with("#2 price 9700000000001 "), "{second}");
}

/// An order (OrderRequest, 48 bytes) from source 20 as it is, for `offer_verbatim`.
fn order(sequence: u64, crc: Crc) -> Vec<u8> {
    build(RelayDomain::Execution, 20, sequence, &[(40, &[sequence as u8; 48])], crc)
}

#[test]
fn a_rejected_frame_is_named_and_the_frames_behind_it_still_arrive() {
    let dir = temp_dir("client-confirm");
    let audit = dir.join("audit.log");
    let relay = Relay::start(EXECUTION, &["--audit-file", audit.to_str().unwrap()]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::Execution, 20)).unwrap();
    assert_eq!(publisher.max_message_size(), Some(131_072));
    // Order 1 without its checksum (`checksum_missing` on Execution), then a valid one, then
    // order 2 again (`sequence_replay`), then 100 valid ones.
    publisher.offer_verbatim(&order(1, Crc::Skip)).unwrap();
    publisher.offer_verbatim(&order(2, Crc::Compute)).unwrap();
    publisher.offer_verbatim(&order(2, Crc::Compute)).unwrap();
    for sequence in 3..=102 {
        publisher.offer_verbatim(&order(sequence, Crc::Compute)).unwrap();
    }
    let settled = publisher.settle(WAIT).unwrap();
    assert_eq!(settled, Settlement { sent: 103, accepted: 101, rejected: 2 });
    assert_eq!(settled.unsettled(), 0);
    let first = publisher.take_rejection().unwrap();
    assert_eq!((first.frame, first.sequence, first.reason.as_str()), (1, 1, "checksum_missing"));
    let second = publisher.take_rejection().unwrap();
    assert_eq!((second.frame, second.sequence, second.reason.as_str()), (3, 2, "sequence_replay"));
    assert_eq!((publisher.take_rejection(), publisher.unnamed_rejections()), (None, 0));
    // Nothing behind a rejection was lost.
    let sequences: Vec<u64> = receive(&mut subscriber, 101).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sequences, (2..=102).collect::<Vec<_>>());
    // On Execution the confirmation comes after the audit records: every frame it counted is
    // in the trail by the time it arrived.
    let trail = std::fs::read_to_string(&audit).unwrap();
    let own = format!("pid={} ", std::process::id());
    let accepted = trail.lines().filter(|l| l.contains(&own) && l.contains(" accepted ")).count();
    let rejected = trail.lines().filter(|l| l.contains(&own) && l.contains(" rejected ")).count();
    assert_eq!((accepted, rejected), (101, 2), "{trail}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_unaudited_is_confirmed() {
    // /dev/full takes the lock and fails every write: the relay fails closed.
    let relay = Relay::start(EXECUTION, &["--audit-file", "/dev/full"]);
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::Execution, 20)).unwrap();
    for _ in 0..10 {
        publisher.publish(|frame| frame.tlv(40, &[1; 48]).map(|_| ())).unwrap();
    }
    let error = publisher.settle(Duration::from_millis(700)).unwrap_err();
    assert!(matches!(error, Error::TimedOut(_)), "{error}");
    assert_eq!(publisher.settlement(), Settlement { sent: 10, accepted: 0, rejected: 0 });
}

#[test]
fn what_the_relay_cannot_take_is_refused_before_it_is_sent() {
    let relay = Relay::start(MARKET_DATA, &["--max-message-size", "2000"]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut publisher =
        Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::MarketData, 4)).unwrap();
    assert_eq!(publisher.max_message_size(), Some(2000));
    let big = publisher.publish(|frame| frame.tlv(200, &[0; 3000]).map(|_| ())).unwrap_err();
    assert!(
        matches!(big, Error::Frame(torq::protocol::Error::FrameTooLarge { size: 3037, max: 2000 })),
        "{big}"
    );
    let big = build(RelayDomain::MarketData, 4, 9, &[(200, &[0; 3000])], Crc::Skip);
    assert!(matches!(publisher.offer_verbatim(&big), Err(Error::Frame(_))));
    // A Subscribe would replace the publisher's own subscription: refused.
    let subscribe = torq::client::subscribe_frame(
        &torq::protocol::Subscribe { role: torq::protocol::Role::Subscribe, options: 0, filters: vec![] },
        0,
    )
    .unwrap();
    assert!(matches!(publisher.offer_verbatim(&subscribe), Err(Error::ControlFrame(116))));
    // None of it was sent or counted; what comes next goes through.
    publisher.publish(|frame| frame.payload(&trade(5)).map(|_| ())).unwrap();
    assert_eq!(publisher.settle(WAIT).unwrap(), Settlement { sent: 1, accepted: 1, rejected: 0 });
    assert_eq!(receive(&mut subscriber, 1)[0].0, 1);
}

#[test]
fn a_legacy_publisher_is_closed_at_its_first_rejected_order() {
    let relay = Relay::start(EXECUTION, &[]);
    let options = PublisherOptions::new(RelayDomain::Execution, 20).confirm(false);
    let mut publisher = Publisher::connect(&relay.socket, options).unwrap();
    publisher.offer_verbatim(&order(1, Crc::Skip)).unwrap();
    publisher.flush().unwrap();
    // The relay closes the connection: writing on fails (polled until WAIT), and nothing was
    // ever confirmed.
    let start = std::time::Instant::now();
    let closed = (2..).find_map(|sequence| {
        std::thread::sleep(Duration::from_millis(1));
        let sent = publisher.offer_verbatim(&order(sequence, Crc::Compute)).and_then(|()| publisher.flush());
        sent.err().or_else(|| (start.elapsed() > WAIT).then_some(Error::TimedOut(WAIT)))
    });
    assert!(matches!(closed, Some(Error::Closed { .. })), "{closed:?}");
    assert_eq!(publisher.settlement().accepted, 0);
}
