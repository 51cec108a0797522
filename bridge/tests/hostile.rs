//! The bridge under a hostile NATS: what anyone with a NATS connection can publish never loses,
//! merges, reorders or duplicates the frames of a real node, nor locks one out. Each test
//! starts `nats-server`, two `relay_dev all` "hosts" and their bridges.

mod util;

use std::time::{Duration, Instant};

use torq::client::Publisher;
use torq::protocol::RelayDomain::{self, Execution, MarketData};
use torq::protocol::{Crc, FrameBuilder, mark_bridged};
use util::*;

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| format!("--- {}\n{}", p.log.display(), p.log())).collect()
}

/// A frame of `domain` from `source` whose first TLV (type `tlv`) starts with `marker`.
fn frame(domain: RelayDomain, source: u8, sequence: u64, tlv: u8, marker: u8, timestamp: u64) -> Vec<u8> {
    let mut buf = vec![0; 256];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    let len = if tlv == 40 { 48 } else { 32 };
    let mut value = vec![marker; len];
    value[1..].fill(sequence as u8);
    builder.tlv(tlv, &value).unwrap();
    let n = builder.finish(sequence, timestamp, Crc::Compute);
    buf.truncate(n);
    buf
}

/// Publishes `payload` on `subject` through a bare NATS protocol connection, with `headers`
/// (HPUB) when there are any: what anyone who may publish on NATS can do.
fn nats_publish(port: u16, subject: &str, headers: &[(&str, &str)], payload: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // INFO
    let mut out = stream;
    let mut message = b"CONNECT {\"verbose\":false,\"headers\":true}\r\n".to_vec();
    if headers.is_empty() {
        message.extend(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
    } else {
        let mut head = String::from("NATS/1.0\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        message
            .extend(format!("HPUB {subject} {} {}\r\n", head.len(), head.len() + payload.len()).as_bytes());
        message.extend(head.as_bytes());
    }
    message.extend(payload);
    message.extend(b"\r\nPING\r\n");
    out.write_all(&message).unwrap();
    while !line.starts_with("PONG") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "NATS closed the connection");
        assert!(!line.starts_with("-ERR"), "NATS refused: {line}");
    }
}

/// Runs `work` against NATS with the client library the bridge uses.
fn with_nats<T>(url: &str, work: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        work(async_nats::jetstream::new(client)).await
    })
}

/// The message id of a frame stored in `stream`.
fn stored_id(url: &str, stream: &str, sequence: u64) -> String {
    with_nats(url, async |js| {
        let stream = js.get_stream(stream).await.unwrap();
        let message = stream.get_raw_message(sequence).await.unwrap();
        message.headers.get("Nats-Msg-Id").unwrap().as_str().to_string()
    })
}

fn counter(text: &str, node: &str, domain: &str, name: &str) -> u64 {
    let line = format!("torq_bridge_{name}{{node=\"{node}\",domain=\"{domain}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Two hosts with an execution bridge each: a exports, b imports a (metrics on `metrics`).
struct Execution2 {
    nats: Nats,
    a: Host,
    b: Host,
    export: Proc,
    import: Proc,
    metrics: String,
}

impl Execution2 {
    fn start(tag: &str) -> Execution2 {
        let dir = temp_dir(tag);
        let nats = Nats::start(&dir);
        let (a, b) = (Host::start(&format!("{tag}-a")), Host::start(&format!("{tag}-b")));
        let export = a.bridge(Execution, "a", &nats.url(), &["--export"]);
        let import =
            b.bridge(Execution, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
        let metrics = metrics_addr(&import);
        Execution2 { nats, a, b, export, import, metrics }
    }

    fn logs(&self) -> String {
        logs(&[&self.export, &self.import])
    }
}

/// Points 1 and 2: frames the relay would reject, and control frames, injected into node a's
/// stream between its real orders, are skipped; none of the orders behind them is lost.
#[test]
fn frames_the_relay_would_reject_take_no_order_with_them() {
    let hosts = Execution2::start("reject");
    let on_b = Collector::start(&hosts.b, Execution);
    on_b.until_bridged(&mut hosts.a.publisher(Execution, 90), 90, &|| hosts.logs());
    let mut orders = hosts.a.publisher(Execution, 4);
    let send = |orders: &mut Publisher, range: std::ops::RangeInclusive<u64>| {
        for sequence in range {
            orders.offer_verbatim(&frame(Execution, 4, sequence, 40, 1, 5)).unwrap();
        }
        orders.flush().unwrap();
    };
    send(&mut orders, 1..=1000);
    // Injected with an id of the form an exporter writes, so only the frame checks stop them:
    // a zero checksum, a TLV of type 0, a Subscribe, and a frame whose checksum is wrong.
    let mut unchecked = frame(Execution, 4, 5000, 40, 9, 5);
    unchecked[28..32].fill(0);
    let mut type_zero = frame(Execution, 4, 5001, 40, 9, 5);
    type_zero[32] = 0;
    let subscribe = torq::client::subscribe_frame(
        &torq::protocol::Subscribe {
            role: torq::protocol::Role::PublishSubscribe,
            options: 0,
            filters: vec![],
        },
        0,
    )
    .unwrap();
    let mut corrupted = frame(Execution, 4, 5002, 40, 9, 5);
    corrupted[40] ^= 0xFF;
    for (n, bad) in [unchecked, type_zero, subscribe, corrupted].iter().enumerate() {
        let id = format!("a.{:016x}.{}", 0xBAD, n + 1);
        nats_publish(hosts.nats.port, "torq.a.execution.40.4", &[("Nats-Msg-Id", &id)], bad);
    }
    send(&mut orders, 1001..=2000);
    on_b.wait_for(4, 2000, Duration::from_secs(60), &|| hosts.logs());
    let got = on_b.of(4);
    let sequences: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(sequences, (1..=2000).collect::<Vec<u64>>(), "every order once, in order, none injected");
    assert!(got.iter().all(|g| g.2 && g.3 == 1));
    let text = scrape(&hosts.metrics);
    assert_eq!(counter(&text, "b", "execution", "invalid_total"), 4, "{text}");
    assert_eq!(counter(&text, "b", "execution", "relay_reconnects_total"), 0, "{text}");
}

/// Point 2 on core NATS: a Subscribe published as node a never reaches the relay, so node a's
/// frames after it still arrive.
#[test]
fn a_control_frame_published_as_a_node_poisons_nothing() {
    let dir = temp_dir("control");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("control-a"), Host::start("control-b"));
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a"]);
    let on_b = Collector::start(&b, MarketData);
    let logs = || logs(&[&export, &import]);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);
    for role in [torq::protocol::Role::Subscribe, torq::protocol::Role::PublishSubscribe] {
        let subscribe = torq::protocol::Subscribe { role, options: 0, filters: vec![] };
        let control = torq::client::subscribe_frame(&subscribe, 0).unwrap();
        nats_publish(nats.port, "torq.a.market_data.116.0", &[], &control);
    }
    publish(&mut a.publisher(MarketData, 4), 200);
    on_b.wait_for(4, 200, WAIT, &logs);
    assert_eq!(on_b.of(4).len(), 200);
}

/// Points 3 and 4: two publishers of one source on node a, sending the same bytes (a capture
/// replayed twice) interleaved: every frame crosses, and each publisher's order holds.
#[test]
fn frames_sharing_source_sequence_and_time_all_cross_each_publisher_in_order() {
    let hosts = Execution2::start("merge");
    let on_b = Collector::start(&hosts.b, Execution);
    on_b.until_bridged(&mut hosts.a.publisher(Execution, 90), 90, &|| hosts.logs());
    let (mut first, mut second) = (hosts.a.publisher(Execution, 4), hosts.a.publisher(Execution, 4));
    // Publisher 1 marks its frames 1, publisher 2 marks them 2 — otherwise the same header.
    for chunk in 0..50u64 {
        for (publisher, marker) in [(&mut first, 1), (&mut second, 2)] {
            for sequence in chunk * 10 + 1..=chunk * 10 + 10 {
                publisher.offer_verbatim(&frame(Execution, 4, sequence, 40, marker, 77)).unwrap();
            }
            publisher.settle(WAIT).unwrap();
        }
    }
    on_b.wait_for(4, 1000, Duration::from_secs(60), &|| hosts.logs());
    let got = on_b.of(4);
    assert_eq!(got.len(), 1000, "nothing merged, nothing twice");
    for marker in [1, 2] {
        let sequences: Vec<u64> = got.iter().filter(|g| g.3 == marker).map(|g| g.1).collect();
        assert_eq!(sequences, (1..=500).collect::<Vec<u64>>(), "publisher {marker} in its order");
    }
    let text = scrape(&hosts.metrics);
    assert_eq!(counter(&text, "b", "execution", "relay_reconnects_total"), 0, "one connection: {text}");
    assert_eq!(counter(&text, "b", "execution", "rejected_total"), 0, "{text}");
}

/// Point 5: a byte copy of a frame republished on NATS — without an id, or under another id
/// of the same exporter and count — is not delivered again.
#[test]
fn a_copy_republished_on_nats_is_not_delivered_twice() {
    let hosts = Execution2::start("copy");
    let on_b = Collector::start(&hosts.b, Execution);
    on_b.until_bridged(&mut hosts.a.publisher(Execution, 90), 90, &|| hosts.logs());
    let mut orders = hosts.a.publisher(Execution, 4);
    let sent: Vec<Vec<u8>> = (1..=100).map(|s| frame(Execution, 4, s, 40, 1, 5)).collect();
    for frame in &sent {
        orders.offer_verbatim(frame).unwrap();
    }
    orders.settle(WAIT).unwrap();
    on_b.wait_for(4, 100, WAIT, &|| hosts.logs());
    // The stream holds the probe(s), then the 100 orders: the 5th order's id, written again
    // with a leading zero in its count (another id string, the same exporter and count).
    let probes = on_b.of(90).len() as u64;
    let id = stored_id(&hosts.nats.url(), "TORQ_a_EXECUTION", probes + 5);
    let (head, count) = id.rsplit_once('.').unwrap();
    let expected = (probes + 5).to_string();
    assert_eq!(count, expected, "the exporter counts the probes and then the orders: {id}");
    let other_id = format!("{head}.0{count}");
    nats_publish(hosts.nats.port, "torq.a.execution.40.4", &[], &sent[4]);
    nats_publish(hosts.nats.port, "torq.a.execution.40.4", &[("Nats-Msg-Id", &other_id)], &sent[4]);
    // Frames sent after the copies still cross; the copies do not.
    for sequence in 101..=110 {
        orders.offer_verbatim(&frame(Execution, 4, sequence, 40, 1, 5)).unwrap();
    }
    orders.settle(WAIT).unwrap();
    on_b.wait_for(4, 110, WAIT, &|| hosts.logs());
    let sequences: Vec<u64> = on_b.of(4).iter().map(|g| g.1).collect();
    assert_eq!(sequences, (1..=110).collect::<Vec<u64>>());
    let text = scrape(&hosts.metrics);
    assert_eq!(counter(&text, "b", "execution", "duplicates_skipped_total"), 1, "{text}");
    assert_eq!(counter(&text, "b", "execution", "invalid_total"), 1, "{text}");
}

/// Point 6 on core NATS: a hundred invented node names never lock a real node out.
#[test]
fn invented_node_names_never_lock_a_real_node_out() {
    let dir = temp_dir("names");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("names-a"), Host::start("names-b"));
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "all"]);
    let on_b = Collector::start(&b, MarketData);
    // Once the import is subscribed (a frame of an invented node crossed)...
    let start = Instant::now();
    while on_b.of(8).is_empty() {
        assert!(start.elapsed() < WAIT, "nothing crossed\n{}", import.log());
        let probe = frame(MarketData, 8, 1, 200, 3, 5);
        nats_publish(nats.port, "torq.probe.market_data.200.8", &[], &probe);
        std::thread::sleep(Duration::from_millis(100));
    }
    // ... a hundred more names.
    for n in 0..100u64 {
        let invented = frame(MarketData, 7, n + 1, 200, 3, 5);
        nats_publish(nats.port, &format!("torq.invented{n}.market_data.200.7"), &[], &invented);
    }
    on_b.wait_for(7, 100, WAIT, &|| import.log());
    // A real node that appears only now.
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &|| logs(&[&export, &import]));
    publish(&mut a.publisher(MarketData, 4), 50);
    on_b.wait_for(4, 50, WAIT, &|| logs(&[&export, &import]));
    assert_eq!(on_b.of(4).len(), 50);
}

/// Point 6 on JetStream: 70 streams of invented nodes and one whose name no node can have
/// neither stop an `--import all` bridge nor keep a real node's stream out for good.
#[test]
fn invented_streams_neither_stop_the_import_nor_lock_a_node_out() {
    let dir = temp_dir("streams");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("streams-a"), Host::start("streams-b"));
    with_nats(&nats.url(), async |js| {
        let long = format!("TORQ_{}_EXECUTION", "x".repeat(240));
        let names = (0..70).map(|n| format!("TORQ_fake{n}_EXECUTION")).chain([long]);
        for (n, name) in names.enumerate() {
            js.create_stream(async_nats::jetstream::stream::Config {
                name,
                subjects: vec![format!("fake.{n}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        }
    });
    let mut import =
        b.bridge(Execution, "b", &nats.url(), &["--import", "all", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    let export = a.bridge(Execution, "a", &nats.url(), &["--export"]);
    let on_b = Collector::start(&b, Execution);
    // Node a's stream waits for an idle import to give up its place (10 s), then crosses.
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export, &import]));
    publish(&mut a.publisher(Execution, 4), 50);
    on_b.wait_for(4, 50, WAIT, &|| logs(&[&export, &import]));
    assert!(import.child.try_wait().unwrap().is_none(), "the import is still running:\n{}", import.log());
    assert!(counter(&scrape(&metrics), "b", "execution", "invalid_total") >= 1, "the long name counted");
    assert!(import.terminate().success());
}

/// Point 8: a source whose sequence alternates 2, 1, 2, 1 opens no relay connections, and
/// with the relay stopped, large messages flooding in do not grow the import's memory.
#[test]
fn floods_open_no_connections_and_grow_no_memory() {
    let dir = temp_dir("flood");
    let nats = Nats::start(&dir);
    let (a, mut b) = (Host::start("flood-a"), Host::start("flood-b"));
    let mut import =
        b.bridge(MarketData, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &|| logs(&[&export, &import]));
    for n in 0..2000u64 {
        let sequence = 2 - n % 2;
        nats_publish_fast(nats.port, "torq.a.market_data.200.5", &frame(MarketData, 5, sequence, 200, 1, 5));
    }
    on_b.wait_for(5, 2000, WAIT, &|| import.log());
    let text = scrape(&metrics);
    assert_eq!(counter(&text, "b", "market_data", "relay_reconnects_total"), 0, "{text}");
    // The relay goes away; 400 messages of 1 MiB arrive (a frame whose header says so first).
    drop(on_b);
    b.relay.kill();
    let rss = |proc: &Proc| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    let before = rss(&import);
    let mut big = frame(MarketData, 5, 3, 200, 1, 5);
    big.resize(1 << 20, 0);
    nats_publish_fast(nats.port, "torq.a.market_data.200.5", &frame(MarketData, 5, 3, 200, 1, 5));
    for _ in 0..400 {
        nats_publish_fast(nats.port, "torq.a.market_data.200.5", &big);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss(&import);
    assert!(after < before + (100 << 20), "the import grew from {before} to {after} bytes");
    assert!(import.child.try_wait().unwrap().is_none(), "still running");
    let _ = import.terminate();
}

/// Point 9: a frame whose checksum is wrong is not given a valid one on its way in.
#[test]
fn a_corrupted_frame_is_not_given_a_valid_checksum() {
    let dir = temp_dir("corrupt");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("corrupt-a"), Host::start("corrupt-b"));
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &|| logs(&[&export, &import]));
    let mut corrupted = frame(MarketData, 6, 1, 200, 1, 5);
    corrupted[40] ^= 0xFF;
    nats_publish(nats.port, "torq.a.market_data.200.6", &[], &corrupted);
    // And one already marked bridged: no exporter sends one.
    let mut bridged = frame(MarketData, 6, 2, 200, 1, 5);
    mark_bridged(&mut bridged).unwrap();
    nats_publish(nats.port, "torq.a.market_data.200.6", &[], &bridged);
    let before = on_b.of(90).len();
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &|| logs(&[&export, &import]));
    assert!(on_b.of(90).len() > before);
    assert!(on_b.of(6).is_empty(), "the corrupted frame crossed: {:?}", on_b.of(6));
    assert_eq!(counter(&scrape(&metrics), "b", "market_data", "invalid_total"), 2);
}

/// Publishes on one kept connection (for floods): a thread-local connection per port.
fn nats_publish_fast(port: u16, subject: &str, payload: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    thread_local! {
        static CONNECTION: std::cell::RefCell<Option<(u16, std::net::TcpStream, BufReader<std::net::TcpStream>)>> =
            const { std::cell::RefCell::new(None) };
    }
    CONNECTION.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(p, ..)| *p != port) {
            let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut out = stream;
            out.write_all(b"CONNECT {\"verbose\":false}\r\n").unwrap();
            *cell = Some((port, out, reader));
        }
        let (_, out, reader) = cell.as_mut().unwrap();
        let mut message = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        message.extend(payload);
        message.extend(b"\r\nPING\r\n");
        out.write_all(&message).unwrap();
        let mut line = String::new();
        while !line.starts_with("PONG") {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "NATS closed the connection");
            assert!(!line.starts_with("-ERR"), "NATS refused: {line}");
        }
    });
}
