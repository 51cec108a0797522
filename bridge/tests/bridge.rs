//! Two "hosts" (two `relay_dev all` in two directories), each with its bridges, through real
//! NATS servers: frames cross in order both ways, nothing loops, and execution is delivered
//! once across a `kill -9` of either bridge, a NATS restart, and the loss of one server of a
//! three-server cluster.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torq::client::{Event, Publisher};
use torq::protocol::RelayDomain::{Execution, MarketData};
use util::*;

/// A subscriber reading on a thread of its own (an execution relay pauses the bridge, then
/// disconnects a stalled subscriber, when nobody reads), keeping what it saw.
struct Collector {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start(host: &Host, domain: torq::protocol::RelayDomain) -> Collector {
        let mut subscriber = host.subscriber(domain);
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (into, stopped) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(Event::Frame(frame)) = subscriber.recv_timeout(Duration::from_millis(50)).unwrap()
                {
                    let header = frame.header();
                    into.lock().unwrap().push((header.source(), header.sequence(), header.is_bridged()));
                }
            }
        });
        Collector { seen, stop, thread: Some(thread) }
    }

    fn count(&self, source: u8) -> usize {
        self.seen.lock().unwrap().iter().filter(|(s, _, _)| *s == source).count()
    }

    /// Waits (bounded) until `count` frames of `source` came, then a little longer for any
    /// that should not come.
    fn wait_for(&self, source: u8, count: usize, limit: Duration, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        while self.count(source) < count {
            assert!(
                start.elapsed() < limit,
                "{} of {count} frames of source {source} arrived within {limit:?}\n{}",
                self.count(source),
                logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Publishes probes from `source` until one crosses to this collector.
    fn until_bridged(&self, from: &mut Publisher, source: u8, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        let before = self.count(source);
        while self.count(source) == before {
            publish(from, 1);
            assert!(start.elapsed() < WAIT, "no probe crossed within {WAIT:?}\n{}", logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sequences(&self, source: u8, bridged: bool) -> Vec<u64> {
        sequences(&self.seen.lock().unwrap(), source, bridged)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Publishes `count` frames in batches of 100 with short pauses, on a thread.
fn publish_paced(mut publisher: Publisher, count: usize) -> std::thread::JoinHandle<Publisher> {
    std::thread::spawn(move || {
        for _ in 0..count / 100 {
            publish(&mut publisher, 100);
            std::thread::sleep(Duration::from_millis(10));
        }
        publisher
    })
}

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| format!("--- {}\n{}", p.log.display(), p.log())).collect()
}

#[test]
fn market_data_crosses_in_order_both_ways_and_nothing_loops() {
    let dir = temp_dir("md");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("md-a"), Host::start("md-b"));
    let bridge_a = a.bridge(MarketData, "a", &nats.url(), &["--export", "--import", "b"]);
    let metrics = free_port();
    let address = format!("127.0.0.1:{metrics}");
    let bridge_b =
        b.bridge(MarketData, "b", &nats.url(), &["--export", "--import", "all", "--metrics", &address]);
    let logs = || logs(&[&bridge_a, &bridge_b]);
    let (on_a, on_b) = (Collector::start(&a, MarketData), Collector::start(&b, MarketData));
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);
    on_a.until_bridged(&mut b.publisher(MarketData, 91), 91, &logs);

    publish(&mut a.publisher(MarketData, 4), 2000);
    publish(&mut b.publisher(MarketData, 5), 2000);
    let all: Vec<u64> = (1..=2000).collect();
    for (side, local, remote) in [(&on_a, 4, 5), (&on_b, 5, 4)] {
        side.wait_for(local, 2000, WAIT, &logs);
        side.wait_for(remote, 2000, WAIT, &logs);
        // Each frame once, in order; local frames never come back bridged, imported ones are.
        assert_eq!(side.sequences(local, false), all);
        assert_eq!(side.sequences(remote, true), all);
    }
    // B's counters: what it wrote into its relay is what came from A; it exported its own
    // frames and never the bridged ones its relay forwarded.
    let text = scrape(&address);
    let value = |name: &str| -> u64 {
        let line = format!("torq_bridge_{name}{{node=\"b\",domain=\"market_data\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let from_a = (on_b.count(4) + on_b.count(90)) as u64;
    assert_eq!(value("imported_out_total"), from_a);
    // (A probe may have crossed before B's export subscription was in place.)
    assert!(value("export_skipped_bridged_total") >= 2000, "{text}");
    assert!(value("exported_in_total") >= (on_a.count(5) + on_a.count(91)) as u64, "{text}");
    assert_eq!(value("lost_total"), 0);
}

/// One GET of the Prometheus text.
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

#[test]
fn execution_is_delivered_once_across_kill_9_of_either_bridge_and_a_nats_restart() {
    let dir = temp_dir("exec");
    let mut nats = Nats::start(&dir);
    let (a, b) = (Host::start("exec-a"), Host::start("exec-b"));
    let url = nats.url();
    let mut export = a.bridge(Execution, "a", &url, &["--export"]);
    let mut import = b.bridge(Execution, "b", &url, &["--import", "a"]);
    let on_b = Collector::start(&b, Execution);
    let mut probe = a.publisher(Execution, 90);
    on_b.until_bridged(&mut probe, 90, &|| logs(&[&export, &import]));

    // kill -9 of the importing bridge while frames flow.
    let publishing = publish_paced(a.publisher(Execution, 4), 5000);
    std::thread::sleep(Duration::from_millis(150));
    import.kill();
    std::thread::sleep(Duration::from_millis(200));
    import = b.bridge(Execution, "b", &url, &["--import", "a"]);
    let publisher = publishing.join().unwrap();
    on_b.wait_for(4, 5000, Duration::from_secs(60), &|| logs(&[&export, &import]));

    // A NATS restart while frames flow.
    let publishing = publish_paced(publisher, 5000);
    std::thread::sleep(Duration::from_millis(150));
    nats.restart();
    let publisher = publishing.join().unwrap();
    on_b.wait_for(4, 10_000, Duration::from_secs(60), &|| logs(&[&export, &import, &nats.proc]));

    // kill -9 of the exporting bridge: what the relay forwards after it is back crosses once.
    export.kill();
    export = a.bridge(Execution, "a", &url, &["--export"]);
    on_b.until_bridged(&mut probe, 90, &|| logs(&[&export, &import]));
    publish_paced(publisher, 2000).join().unwrap();
    on_b.wait_for(4, 12_000, Duration::from_secs(60), &|| logs(&[&export, &import]));

    assert_eq!(on_b.sequences(4, true), (1..=12_000).collect::<Vec<u64>>(), "every frame once, in order");
}

#[test]
fn execution_stays_lossless_when_one_server_of_a_three_server_cluster_dies() {
    let dir = temp_dir("cluster");
    let (clients, routes): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_port(), free_port())).unzip();
    let mut servers: Vec<Nats> = (0..3).map(|i| Nats::cluster_member(&dir, i, clients[i], &routes)).collect();
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let (a, b) = (Host::start("cluster-a"), Host::start("cluster-b"));
    let export = a.bridge(Execution, "a", &urls, &["--export", "--replicas", "3"]);
    let import = b.bridge(Execution, "b", &urls, &["--import", "a"]);
    let on_b = Collector::start(&b, Execution);
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export, &import]));

    let publishing = publish_paced(a.publisher(Execution, 4), 4000);
    std::thread::sleep(Duration::from_millis(150));
    servers.remove(0).proc.kill();
    let publisher = publishing.join().unwrap();
    publish_paced(publisher, 2000).join().unwrap();
    on_b.wait_for(4, 6000, Duration::from_secs(90), &|| logs(&[&export, &import]));
    assert_eq!(on_b.sequences(4, true), (1..=6000).collect::<Vec<u64>>(), "every frame once, in order");
}
