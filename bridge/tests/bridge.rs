//! Two "hosts" (two `relay_dev all` in two directories), each with its bridges, through real
//! NATS servers: frames cross in order both ways, nothing loops, and execution is delivered
//! once across a `kill -9` of either bridge, a NATS restart, and the loss of one server of a
//! three-server cluster; and one bridge per node and domain, whatever its host or state directory.

mod util;

use std::time::{Duration, Instant};

use torq::client::Publisher;
use torq::protocol::RelayDomain::{Execution, MarketData};
use util::*;

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
    let bridge_b = b.bridge(
        MarketData,
        "b",
        &nats.url(),
        &["--export", "--import", "all", "--metrics-addr", "127.0.0.1:0"],
    );
    let address = metrics_addr(&bridge_b);
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
    let value = |name: &str| counter(&text, "b", "market_data", name);
    let from_a = (on_b.count(4) + on_b.count(90)) as u64;
    assert_eq!(value("imported_out_total"), from_a);
    // (A probe may have crossed before B's export subscription was in place.)
    assert!(value("export_skipped_bridged_total") >= 2000, "{text}");
    assert!(value("exported_in_total") >= (on_a.count(5) + on_a.count(91)) as u64, "{text}");
    assert_eq!(value("lost_total"), 0);
}

/// A bridge's counter in Prometheus text.
fn counter(text: &str, node: &str, domain: &str, name: &str) -> u64 {
    let line = format!("torq_bridge_{name}{{node=\"{node}\",domain=\"{domain}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
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
fn an_importer_killed_between_writing_and_recording_writes_nothing_twice() {
    let dir = temp_dir("in-doubt");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("in-doubt-a"), Host::start("in-doubt-b"));
    let url = nats.url();
    let export = a.bridge(Execution, "a", &url, &["--export"]);
    // The worst moment for a kill: its 10th batch is in the relay, its cursor does not say so.
    let mut import =
        b.bridge_with(Execution, "b", &url, &["--import", "a"], &[("TORQ_BRIDGE_ABORT_AFTER_WRITES", "10")]);
    let on_b = Collector::start(&b, Execution);
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export, &import]));
    let publishing = publish_paced(a.publisher(Execution, 4), 3000);
    let start = Instant::now();
    while import.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < WAIT, "the importer did not stop at its 10th batch\n{}", import.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    import = b.bridge(Execution, "b", &url, &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    publishing.join().unwrap();
    on_b.wait_for(4, 3000, Duration::from_secs(60), &|| logs(&[&export, &import]));
    assert_eq!(on_b.sequences(4, true), (1..=3000).collect::<Vec<u64>>(), "every frame once, in order");
    // The batch the first importer wrote was found in the relay's audit trail and skipped.
    let text = scrape(&metrics);
    let skipped = counter(&text, "b", "execution", "duplicates_skipped_total");
    assert!(skipped >= 1, "{text}\n{}", import.log());
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

#[test]
fn a_stalled_nats_never_stalls_the_local_market_data_relay() {
    use rustix::process::{Pid, Signal, kill_process};
    let dir = temp_dir("stalled");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("stalled-a"), Host::start("stalled-b"));
    let export = a.bridge(
        MarketData,
        "a",
        &nats.url(),
        &["--export", "--queue", "1000", "--metrics-addr", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&export);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a"]);
    let logs = || logs(&[&export, &import]);
    let (on_a, on_b) = (Collector::start(&a, MarketData), Collector::start(&b, MarketData));
    let mut probe = a.publisher(MarketData, 90);
    on_b.until_bridged(&mut probe, 90, &logs);

    // NATS stops reading: its socket buffers and the NATS client's queue fill up.
    let server = Pid::from_child(&nats.proc.child);
    kill_process(server, Signal::STOP).unwrap();
    let mut publisher = a.publisher(MarketData, 4);
    for _ in 0..300 {
        publish(&mut publisher, 1000);
        std::thread::sleep(Duration::from_millis(2));
    }
    // The local subscriber got every frame: the relay went on at its pace.
    on_a.wait_for(4, 300_000, Duration::from_secs(30), &logs);
    assert_eq!(on_a.sequences(4, false), (1..=300_000).collect::<Vec<u64>>());

    // NATS back: frames cross again, and the bridge has heard from the relay what it dropped
    // for it while it waited (notice 4).
    kill_process(server, Signal::CONT).unwrap();
    on_b.until_bridged(&mut probe, 90, &logs);
    let start = Instant::now();
    while counter(&scrape(&metrics), "a", "market_data", "relay_dropped_total") == 0 {
        assert!(start.elapsed() < WAIT, "no drop reported: {}", scrape(&metrics));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bridges_connect_again_to_relays_that_restart() {
    let dir = temp_dir("restart");
    let nats = Nats::start(&dir);
    let (mut a, mut b) = (Host::start("restart-a"), Host::start("restart-b"));
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export", "--metrics-addr", "127.0.0.1:0"]);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let (metrics_a, metrics_b) = (metrics_addr(&export), metrics_addr(&import));
    let logs = || logs(&[&export, &import]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);

    drop(on_b);
    b.restart_relay();
    a.restart_relay();
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 91), 91, &logs);
    assert!(counter(&scrape(&metrics_a), "a", "market_data", "relay_reconnects_total") >= 1);
    assert!(counter(&scrape(&metrics_b), "b", "market_data", "relay_reconnects_total") >= 1);
}

#[test]
fn signals_cross_with_a_checksum_the_relay_accepts() {
    use torq::protocol::RelayDomain::Signal;
    let dir = temp_dir("signal");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("signal-a"), Host::start("signal-b"));
    let export = a.bridge(Signal, "a", &nats.url(), &["--export"]);
    let import = b.bridge(Signal, "b", &nats.url(), &["--import", "a"]);
    let logs = || logs(&[&export, &import, &b.relay]);
    let on_b = Collector::start(&b, Signal);
    on_b.until_bridged(&mut a.publisher(Signal, 90), 90, &logs);
    publish(&mut a.publisher(Signal, 4), 500);
    // The Signal relay verifies checksums: setting the bridged flag computed it again.
    on_b.wait_for(4, 500, WAIT, &logs);
    assert_eq!(on_b.sequences(4, true), (1..=500).collect::<Vec<u64>>());
}

/// Publishes `payload` on `subject` through a bare NATS protocol connection.
fn nats_publish_raw(port: u16, subject: &str, payload: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // INFO
    let mut out = stream;
    out.write_all(format!("CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n", payload.len()).as_bytes())
        .unwrap();
    out.write_all(payload).unwrap();
    out.write_all(b"\r\nPING\r\n").unwrap();
    while !line.starts_with("PONG") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "NATS closed the connection");
    }
}

#[test]
fn what_is_not_one_frame_is_skipped_and_harms_nothing() {
    let dir = temp_dir("hostile");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("hostile-a"), Host::start("hostile-b"));
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    let logs = || logs(&[&export, &import]);
    let on_b = Collector::start(&b, MarketData);
    let mut probe = a.publisher(MarketData, 90);
    on_b.until_bridged(&mut probe, 90, &logs);

    // Anyone who may publish on NATS can send these as node a: garbage, two frames in one
    // message, a frame cut short.
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0xEF, 0xBE, 0xAD, 0xDE, 0, 1, 4, 0]);
    frame.extend_from_slice(&[0; 24]);
    for payload in [&b"hello"[..], &[frame.clone(), frame.clone()].concat(), &frame[..20]] {
        nats_publish_raw(nats.port, "torq.a.market_data.200.4", payload);
    }
    let before = on_b.count(90);
    on_b.until_bridged(&mut probe, 90, &logs);
    assert!(on_b.count(90) > before, "frames still cross");
    assert_eq!(counter(&scrape(&metrics), "b", "market_data", "invalid_total"), 3);
}

/// How long SIGTERM may take to stop a bridge with nothing to flush.
const PROMPT: Duration = Duration::from_secs(2);

/// SIGTERM: the bridge exits 0 within [`PROMPT`].
fn stops_promptly(bridge: &mut Proc, case: &str) {
    let start = Instant::now();
    let status = bridge.terminate();
    let took = start.elapsed();
    assert!(status.success(), "{case}: {status}: {}", bridge.log());
    assert!(took < PROMPT, "{case}: took {took:?} to stop: {}", bridge.log());
}

/// Waits until the bridge's log holds `text`.
fn wait_log(bridge: &Proc, text: &str) {
    let start = Instant::now();
    while !bridge.log().contains(text) {
        assert!(start.elapsed() < WAIT, "the bridge never said {text:?}: {}", bridge.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bridge_stops_promptly_on_sigterm_even_with_nothing_in_reach() {
    // No NATS: the bridge waits for it to check that no other bridge of its node and domain
    // runs, exporting and importing nothing meanwhile.
    let dir = temp_dir("stop");
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let absent = dir.join("absent.sock");
    let extra = ["--export", "--import", "b", "--metrics-addr", "127.0.0.1:0"];
    let mut alone =
        Bridge { socket: &absent, domain: MarketData, node: "a", nats: &nowhere, extra: &extra, env: &[] }
            .spawn(&dir);
    // Logged once bound, from before it checks for another bridge of its node and domain.
    metrics_addr(&alone);
    let start = Instant::now();
    while !alone.log().contains("waiting for NATS at") {
        assert!(start.elapsed() < WAIT, "the bridge never said that it waits for NATS: {}", alone.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alone.log().contains("exporting market_data from"), "{}", alone.log());
    stops_promptly(&mut alone, "no NATS");

    // NATS but no relay: the reader and the writer wait for it. On Execution the export's
    // JetStream side waited for the reader, which waited for the relay: 7 s.
    let nats = Nats::start(&dir);
    for domain in [MarketData, Execution] {
        let extra = ["--export", "--import", "b"];
        let mut alone =
            Bridge { socket: &absent, domain, node: "a", nats: &nats.url(), extra: &extra, env: &[] }
                .spawn(&dir);
        identity(&alone);
        wait_log(&alone, "export: waiting for the relay");
        stops_promptly(&mut alone, &format!("{domain:?}, no relay"));
    }

    // Both in reach: the import's thread, waiting for NATS messages, ends at once (it used to
    // take the writer's whole 5-second bound).
    let host = Host::start("stop-host");
    let mut bridge = host.bridge(MarketData, "b", &nats.url(), &["--export", "--import", "a"]);
    identity(&bridge);
    stops_promptly(&mut bridge, "both in reach");
}

#[test]
fn a_bridge_whose_nats_went_away_stops_promptly_having_exported_nothing() {
    // NATS up at start, then gone: with nothing handed to NATS since, the stop does not wait
    // for it (it used to wait 2 s for a flush that could not happen, on top of the rest).
    let dir = temp_dir("stop-nats-gone");
    let host = Host::start("stop-nats-gone-host");
    for domain in [MarketData, Execution] {
        let mut nats = Nats::start(&dir);
        let mut bridge = host.bridge(domain, "a", &nats.url(), &["--export", "--import", "b"]);
        identity(&bridge);
        wait_log(&bridge, "export: subscribed to the relay");
        nats.proc.kill();
        wait_log(&bridge, "lost the connection to NATS");
        stops_promptly(&mut bridge, &format!("{domain:?}, NATS gone"));
        assert!(bridge.log().contains("no frame was handed to it since it went"), "{}", bridge.log());
    }
}

#[test]
fn an_export_from_a_relay_of_another_domain_stops_the_bridge_with_the_fix() {
    let dir = temp_dir("wrong-relay");
    let nats = Nats::start(&dir);
    let host = Host::start("wrong-relay-host");
    let market_data = host.socket(MarketData);
    let wrong = Bridge {
        socket: &market_data,
        domain: Execution,
        node: "a",
        nats: &nats.url(),
        extra: &["--export"],
        env: &[],
    };
    let mut bridge = wrong.spawn(&dir);
    let mut publisher = host.publisher(MarketData, 7);
    let start = Instant::now();
    let status = loop {
        publish(&mut publisher, 1);
        if let Some(status) = bridge.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < WAIT,
            "the bridge went on exporting market data as execution: {}",
            bridge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", bridge.log());
    let log = bridge.log();
    assert!(
        log.contains(&format!("the relay at {} forwards MarketData frames", market_data.display())),
        "{log}"
    );
    assert!(log.contains("--socket or --domain is wrong"), "{log}");
}

#[test]
fn a_second_bridge_of_the_same_node_stops_instead_of_importing_without_its_cursor() {
    let dir = temp_dir("same-node");
    let nats = Nats::start(&dir);
    let host = Host::start("same-node-host");
    let mut first =
        host.bridge(Execution, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    // Logged once bound, from before it checks for another bridge of its node and domain.
    metrics_addr(&first);
    // The first holds its import cursor (a bridge's only flock), as /proc/locks shows: taking
    // the lock to find out could take it from the bridge.
    let pid = first.child.id().to_string();
    let start = Instant::now();
    while !std::fs::read_to_string("/proc/locks").unwrap().lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK") && fields.get(4) == Some(&pid.as_str())
    }) {
        assert!(start.elapsed() < WAIT, "the first bridge never locked its cursor: {}", first.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second on a NATS server of its own, which cannot tell it of the first: the cursor's lock
    // stops it.
    let elsewhere = Nats::start(&temp_dir("same-node-elsewhere"));
    let mut second = host.bridge(Execution, "b", &elsewhere.url(), &["--import", "a"]);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = second.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < WAIT, "the second bridge went on: {}", second.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(second.log().contains("locked by another bridge"), "{}", second.log());
    assert!(first.child.try_wait().unwrap().is_none(), "the first bridge goes on: {}", first.log());
}

#[test]
fn export_filters_narrow_what_crosses_as_torq_tap_takes_them() {
    let dir = temp_dir("filters");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("filters-a"), Host::start("filters-b"));
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export", "--source", "90", "--source", "4"]);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a"]);
    let logs = || logs(&[&export, &import]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);

    publish(&mut a.publisher(MarketData, 5), 500);
    publish(&mut a.publisher(MarketData, 4), 500);
    on_b.wait_for(4, 500, WAIT, &logs);
    assert_eq!(on_b.sequences(4, true), (1..=500).collect::<Vec<_>>());
    assert_eq!(on_b.count(5), 0, "source 5 is not among --source 90 --source 4");
}

/// A bridge's gauge in Prometheus text.
fn gauge(text: &str, node: &str, domain: &str, name: &str) -> f64 {
    let line = format!("torq_bridge_{name}{{node=\"{node}\",domain=\"{domain}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn lag_seconds_ignores_timestamps_that_cannot_be_right() {
    use torq::protocol::{Header, RelayDomain};
    use zerocopy::IntoBytes;
    let dir = temp_dir("lag");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("lag-a"), Host::start("lag-b"));
    let export = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let import = b.bridge(MarketData, "b", &nats.url(), &["--import", "a", "--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_addr(&import);
    let logs = || logs(&[&export, &import]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);
    // Probes still on their way set the gauge too.
    std::thread::sleep(Duration::from_millis(500));
    let lag = || gauge(&scrape(&metrics), "b", "market_data", "lag_seconds");
    let real = lag();
    assert!(real > 0.0 && real < 60.0, "a frame that crossed just now: {real} s\n{}", logs());

    // Node a's frames as anyone may publish them on NATS: stamped 0, and an hour ahead.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for (sequence, timestamp) in [(1, 0), (2, now + 3_600_000_000_000)] {
        let header = Header::new(RelayDomain::MarketData, 77, sequence, timestamp, 8);
        let frame = [header.as_bytes(), &[200, 6, 0, 0, 0, 0, 0, 0]].concat();
        nats_publish_raw(nats.port, "torq.a.market_data.200.77", &frame);
        on_b.wait_for(77, sequence as usize, WAIT, &logs);
        assert_eq!(lag(), real, "after the frame stamped {timestamp} ns\n{}", logs());
    }
}

/// Waits (bounded) for a process to exit.
fn wait_exit(proc: &mut Proc, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "{what} still runs after {limit:?}: {}", proc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a running bridge says of itself once no other of its node and domain answered
/// ("pid P on host H, since T"), waited for (bounded).
fn identity(bridge: &Proc) -> String {
    let start = Instant::now();
    loop {
        let log = bridge.log();
        if let Some(at) = log.find("this one runs: ") {
            let line = log[at + "this one runs: ".len()..].lines().next().unwrap().to_string();
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
            assert!(
                line.starts_with(&format!("pid {} on host {}, since ", bridge.child.id(), host.trim())),
                "{line}"
            );
            return line;
        }
        assert!(start.elapsed() < WAIT, "the bridge never said that it runs: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_bridge_of_a_node_and_domain_is_refused_whatever_its_state_dir_and_roles() {
    let dir = temp_dir("twin");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("twin-a"), Host::start("twin-b"));
    let url = nats.url();
    let first_state = dir.join("first").display().to_string();
    let first = a.bridge(MarketData, "a", &url, &["--export", "--state-dir", &first_state]);
    let import = b.bridge(MarketData, "b", &url, &["--import", "a"]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &|| logs(&[&first, &import]));

    // Node a again, as a second host configured as a, or a restart that did not stop the first,
    // would start it: another state directory; an importer is refused as well.
    let other_state = dir.join("other").display().to_string();
    for extra in
        [&["--export", "--state-dir", &other_state][..], &["--import", "b", "--state-dir", &other_state]]
    {
        let mut second = a.bridge(MarketData, "a", &url, extra);
        let status =
            wait_exit(&mut second, Duration::from_secs(10), "a second bridge of node a, market data,");
        assert_eq!(status.code(), Some(1), "{}", second.log());
        let (log, first_is) = (second.log(), identity(&first));
        assert!(log.contains("another bridge of node a and domain market_data is running"), "{log}");
        assert!(log.contains(&first_is), "the first named as it names itself ({first_is}): {log}");
    }

    // Each frame crosses once: only the first exports.
    publish(&mut a.publisher(MarketData, 4), 2000);
    on_b.wait_for(4, 2000, WAIT, &|| logs(&[&first, &import]));
    assert_eq!(on_b.sequences(4, true), (1..=2000).collect::<Vec<u64>>(), "each frame once");
    let mut first = first;
    assert!(first.child.try_wait().unwrap().is_none(), "the first goes on: {}", first.log());
}

#[test]
fn a_second_execution_importer_with_another_state_dir_is_refused() {
    let dir = temp_dir("twin-exec");
    let nats = Nats::start(&dir);
    let (a, b) = (Host::start("twin-exec-a"), Host::start("twin-exec-b"));
    let url = nats.url();
    let export = a.bridge(Execution, "a", &url, &["--export"]);
    let mut first = b.bridge(Execution, "b", &url, &["--import", "a"]);
    let on_b = Collector::start(&b, Execution);
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export, &first]));

    // Its own cursor file, unlocked: only NATS can tell that node b imports already.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let elsewhere = elsewhere.display().to_string();
    let mut second = b.bridge(Execution, "b", &url, &["--import", "a", "--state-dir", &elsewhere]);
    let status = wait_exit(&mut second, Duration::from_secs(10), "a second execution importer of node b");
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(second.log().contains(&identity(&first)), "{}", second.log());

    publish_paced(a.publisher(Execution, 4), 500).join().unwrap();
    on_b.wait_for(4, 500, WAIT, &|| logs(&[&export, &first]));
    assert_eq!(on_b.sequences(4, true), (1..=500).collect::<Vec<u64>>(), "every frame once, in order");
    assert!(first.child.try_wait().unwrap().is_none(), "the first goes on: {}", first.log());
}

#[test]
fn two_bridges_of_a_node_started_at_once_leave_exactly_one() {
    let dir = temp_dir("at-once");
    let nats = Nats::start(&dir);
    let a = Host::start("at-once-a");
    for round in 0..3 {
        let node = format!("a{round}");
        let mut pair = [
            a.bridge(MarketData, &node, &nats.url(), &["--export"]),
            a.bridge(MarketData, &node, &nats.url(), &["--export"]),
        ];
        let start = Instant::now();
        let stopped = loop {
            if let Some(at) = (0..2).find(|&i| pair[i].child.try_wait().unwrap().is_some()) {
                break at;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "round {round}: both run\n{}",
                logs(&[&pair[0], &pair[1]])
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let survivor = 1 - stopped;
        let status = pair[stopped].child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "round {round}: {}", pair[stopped].log());
        assert!(
            pair[stopped].log().contains(&format!("pid {} on host", pair[survivor].child.id())),
            "round {round}: the one that stopped names the other: {}",
            logs(&[&pair[0], &pair[1]])
        );
        // The survivor has decided, and goes on past a few rounds of saying that it runs.
        identity(&pair[survivor]);
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            pair[survivor].child.try_wait().unwrap().is_none(),
            "round {round}: none left\n{}",
            logs(&[&pair[0], &pair[1]])
        );
    }
}

#[test]
fn bridges_of_one_node_in_different_domains_all_run() {
    use torq::protocol::RelayDomain::Signal;
    let dir = temp_dir("domains");
    let nats = Nats::start(&dir);
    let a = Host::start("domains-a");
    let mut bridges: Vec<Proc> = [MarketData, Signal, Execution]
        .map(|domain| a.bridge(domain, "a", &nats.url(), &["--export"]))
        .into();
    for bridge in &bridges {
        identity(bridge);
    }
    // Past a few rounds of each saying that it runs.
    std::thread::sleep(Duration::from_secs(5));
    for bridge in &mut bridges {
        assert!(bridge.child.try_wait().unwrap().is_none(), "{}", bridge.log());
    }
}

#[test]
fn of_two_bridges_that_missed_each_other_at_start_the_later_stops_when_they_meet() {
    use rustix::process::{Pid, Signal, kill_process};
    let dir = temp_dir("meet");
    let nats = Nats::start(&dir);
    let a = Host::start("meet-a");
    let mut first = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let first_is = identity(&first);
    // Frozen, the first answers nobody: the second hears no one and runs.
    let frozen = Pid::from_child(&first.child);
    kill_process(frozen, Signal::STOP).unwrap();
    let mut second = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    identity(&second);
    kill_process(frozen, Signal::CONT).unwrap();
    // Both run, and hear each other: the one started later stops.
    let status = wait_exit(&mut second, Duration::from_secs(10), "the bridge started later");
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(
        second.log().contains(&format!("is running too: {first_is}, started before this one")),
        "{}",
        second.log()
    );
    // Past a few rounds of the first saying that it runs.
    std::thread::sleep(Duration::from_secs(5));
    assert!(first.child.try_wait().unwrap().is_none(), "the first goes on: {}", first.log());
}

#[test]
fn a_nats_user_that_may_not_use_the_control_subject_is_told_the_fix() {
    let dir = temp_dir("denied");
    let nats = Nats::start_with_config(
        &dir,
        "authorization { users = [ { user: torq, password: secret, \
         permissions: { publish: { deny: [\"torq-bridge.>\"] } } } ] }\nno_auth_user: torq\n",
    );
    // (The bridge connects without credentials: the server takes it for user torq.)
    let a = Host::start("denied-a");
    let mut bridge = a.bridge(MarketData, "a", &nats.url(), &["--export"]);
    let status = wait_exit(&mut bridge, WAIT, "a bridge that cannot check for another");
    assert_eq!(status.code(), Some(1), "{}", bridge.log());
    let log = bridge.log();
    // The server's refusal names the subject, and the error the fix.
    assert!(log.contains("publish and subscribe to torq-bridge.a.>"), "{log}");
    assert!(!log.contains("exporting market_data from"), "it exported without checking: {log}");
}
