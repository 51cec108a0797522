//! Shared-memory delivery (PROTOCOL.md §7) over real processes: readers get every frame
//! byte-identical and in order whatever their idle strategy, filters hold, an overrun reader
//! reports exactly what it lost, the descriptor a reader gets cannot write the log, a relay
//! restart makes readers reconnect, and `--shm off` and Execution fall back to the socket.

mod util;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::time::Duration;

use torq::client::{
    Event, Idle, Notice, Publisher, PublisherOptions, Reconnect, Subscriber, SubscriberOptions,
};
use torq::protocol::{Filter, OPTION_SHM, RelayDomain, Role, Subscribe};
use util::*;

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");
const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");

/// The data frames' bytes a subscriber receives until `count` arrived; other events are
/// returned beside them.
fn receive(subscriber: &mut Subscriber, count: usize) -> (Vec<Vec<u8>>, Vec<String>) {
    let (mut frames, mut other) = (Vec::new(), Vec::new());
    while frames.len() < count {
        match subscriber.recv_timeout(WAIT).unwrap() {
            Some(Event::Frame(frame)) => frames.push(frame.bytes().to_vec()),
            Some(event) => other.push(format!("{event:?}")),
            None => panic!("only {} of {count} frames arrived ({other:?})", frames.len()),
        }
    }
    (frames, other)
}

/// Publishes `count` frames of type `tlv_type` from `source`, sequences from 1.
fn publish(relay: &Relay, domain: RelayDomain, source: u8, count: u64, tlv_type: u8) {
    let options = PublisherOptions::new(domain, source);
    let mut publisher = Publisher::connect(&relay.socket, options).unwrap();
    for i in 0..count {
        publisher.publish(|frame| frame.tlv(tlv_type, &i.to_le_bytes()).map(|_| ())).unwrap();
    }
    publisher.flush().unwrap();
    publisher.settle(WAIT).unwrap();
}

#[test]
fn readers_get_every_frame_byte_identical_and_in_order_whatever_their_idle_strategy() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut socket = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut readers: Vec<Subscriber> = [Idle::Spin, Idle::Backoff, Idle::Block]
        .into_iter()
        .map(|idle| Subscriber::connect(&relay.socket, SubscriberOptions::new().shm(idle)).unwrap())
        .collect();
    assert!(readers.iter().all(Subscriber::shared_memory) && !socket.shared_memory());
    let filter = Filter::TypeRange { lo: 201, hi: 201 };
    let mut filtered =
        Subscriber::connect(&relay.socket, SubscriberOptions::new().filter(filter).shm(Idle::Spin)).unwrap();
    let count = 20_000;
    std::thread::scope(|s| {
        s.spawn(|| publish(&relay, RelayDomain::MarketData, 4, count, 200));
        s.spawn(|| publish(&relay, RelayDomain::MarketData, 5, 100, 201));
    });
    let (by_socket, _) = receive(&mut socket, count as usize + 100);
    for reader in &mut readers {
        let (by_log, other) = receive(reader, count as usize + 100);
        assert!(other.is_empty(), "{other:?}");
        let from = |frames: &[Vec<u8>], source: u8| -> Vec<Vec<u8>> {
            frames.iter().filter(|f| f[6] == source).cloned().collect()
        };
        // Each publisher's frames in its order, the same bytes as over the socket.
        assert_eq!(from(&by_log, 4), from(&by_socket, 4));
        assert_eq!(from(&by_log, 5), from(&by_socket, 5));
    }
    let (only, _) = receive(&mut filtered, 100);
    assert!(only.iter().all(|f| f[6] == 5), "the filter holds");
}

#[test]
fn an_overrun_reader_reports_exactly_what_it_lost_and_the_rest_arrives() {
    let relay = Relay::start(MARKET_DATA, &["--shm-bytes", "1048576"]);
    let mut reader = Subscriber::connect(&relay.socket, SubscriberOptions::new().shm(Idle::Block)).unwrap();
    // 25 000 frames of 48 bytes (64 in the log): one and a half rings, not read meanwhile
    // (within the index's two rings of such records, so the first lost sequence is known).
    let count = 25_000u64;
    publish(&relay, RelayDomain::MarketData, 4, count, 200);
    let mut lost = None;
    let mut sequences = Vec::new();
    while sequences.last() != Some(&count) {
        match subscriber_event(&mut reader) {
            Event::Notice(Notice::Dropped { first_sequence, count }) => {
                assert!(lost.is_none(), "one overrun");
                lost = Some((first_sequence, count));
            }
            Event::Frame(frame) => sequences.push(frame.header().sequence()),
            Event::Gap { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let (first, dropped) = lost.expect("the reader was overrun");
    assert_eq!(first, 1, "nothing was read: the first frame is the first lost");
    assert_eq!(sequences, (dropped + 1..=count).collect::<Vec<_>>(), "exactly the rest, in order");
}

fn subscriber_event(subscriber: &mut Subscriber) -> Event<torq::client::Frame<'_>> {
    subscriber.recv_timeout(WAIT).unwrap().expect("an event")
}

#[test]
fn the_descriptor_a_reader_gets_is_read_only_and_the_log_sealed() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut client = relay.connect();
    let subscribe = Subscribe { role: Role::Subscribe, options: OPTION_SHM, filters: vec![] };
    client.send(&subscribe_frame(&subscribe));
    let stream = &client.stream;
    let mut buf = vec![0; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    assert!(got.bytes > 0);
    let text = notice_of(&buf[..got.bytes]).expect("notice 1").2;
    assert!(text.contains(" shm=") && !text.contains(" shm=0"), "{text}");
    let fd = control
        .drain()
        .find_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .expect("the log's descriptor with notice 1");
    let mode = rustix::fs::fcntl_getfl(&fd).unwrap() & rustix::fs::OFlags::ACCMODE;
    assert_eq!(mode, rustix::fs::OFlags::RDONLY);
    assert!(rustix::io::write(&fd, b"x").is_err());
    assert!(rustix::fs::ftruncate(&fd, 0).is_err(), "sealed against resizing");
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let reopened =
        rustix::fs::open(path.as_str(), rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty()).unwrap();
    assert!(rustix::io::write(&reopened, b"x").is_err(), "nor through a descriptor reopened read-write");
    let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::FUTURE_WRITE | rustix::fs::SealFlags::SEAL));
}

#[test]
fn a_relay_restart_makes_readers_reconnect_to_the_new_log() {
    let mut relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.clone();
    let options = SubscriberOptions::new()
        .shm(Idle::Block)
        .reconnect(Reconnect { initial: Duration::from_millis(5), ..Reconnect::default() });
    let mut reader = Subscriber::connect(&socket, options).unwrap();
    publish(&relay, RelayDomain::MarketData, 4, 3, 200);
    assert_eq!(receive(&mut reader, 3).0.len(), 3);
    assert_eq!(relay.terminate().code(), Some(0));
    let restarted = std::thread::spawn({
        let socket = socket.clone();
        move || {
            std::thread::sleep(Duration::from_millis(200));
            let args = ["--socket", socket.to_str().unwrap(), "--cores", "none:1"];
            Relay::spawn(MARKET_DATA, &args, socket.clone(), temp_dir("shm-restart"))
        }
    });
    loop {
        match subscriber_event(&mut reader) {
            Event::Reconnected { .. } => break,
            Event::Notice(Notice::Stopping) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let second = restarted.join().unwrap();
    publish(&second, RelayDomain::MarketData, 4, 2, 200);
    let (frames, _) = receive(&mut reader, 2);
    assert_eq!(frames.len(), 2, "through the new relay's log");
}

#[test]
fn shm_off_and_execution_deliver_over_the_socket() {
    for (binary, args, domain) in [
        (MARKET_DATA, &["--shm", "off"][..], RelayDomain::MarketData),
        (EXECUTION, &[][..], RelayDomain::Execution),
    ] {
        let relay = Relay::start(binary, args);
        let mut reader =
            Subscriber::connect(&relay.socket, SubscriberOptions::new().shm(Idle::Spin)).unwrap();
        let tlv = if domain == RelayDomain::Execution { 40 } else { 200 };
        let options = PublisherOptions::new(domain, 20);
        let mut publisher = Publisher::connect(&relay.socket, options).unwrap();
        publisher.publish(|frame| frame.tlv(tlv, &[1; 48]).map(|_| ())).unwrap();
        publisher.flush().unwrap();
        let (frames, _) = receive(&mut reader, 1);
        assert_eq!(frames.len(), 1, "{binary}: over the socket");
    }
}

#[test]
fn the_metrics_show_readers_frames_bytes_and_wakeups() {
    let relay = Relay::start(MARKET_DATA, &["--metrics-addr", "127.0.0.1:0"]);
    let mut reader = Subscriber::connect(&relay.socket, SubscriberOptions::new().shm(Idle::Block)).unwrap();
    publish(&relay, RelayDomain::MarketData, 4, 100, 200);
    assert_eq!(receive(&mut reader, 100).0.len(), 100);
    let text = scrape(relay.metrics_addr());
    let domain = "{domain=\"market_data\"}";
    let value =
        |name: &str| sample(&text, &format!("{name}{domain}")).unwrap_or_else(|| panic!("{name}: {text}"));
    assert_eq!(value("torq_relay_shm_readers"), 1.0);
    assert_eq!(value("torq_relay_shm_frames_total"), 100.0);
    assert!(value("torq_relay_shm_written_bytes_total") >= 100.0 * 64.0);
    let wakeups = value("torq_relay_shm_wakeups_total");
    assert!((1.0..=100.0).contains(&wakeups), "at most one a batch: {wakeups}");
    drop(reader);
    let start = std::time::Instant::now();
    while sample(&scrape(relay.metrics_addr()), &format!("torq_relay_shm_readers{domain}")) != Some(0.0) {
        assert!(start.elapsed() < WAIT, "the reader's close is counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}
