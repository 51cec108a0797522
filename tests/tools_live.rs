//! The live tools against running relays: torq-tap, torq-record, torq-replay, torq-pub.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use torq::client::{Event, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use torq::protocol::*;
use util::*;

const MARKET_DATA: &str = env!("CARGO_BIN_EXE_market_data_relay");
const EXECUTION: &str = env!("CARGO_BIN_EXE_execution_relay");
const TAP: &str = env!("CARGO_BIN_EXE_torq-tap");
const RECORD: &str = env!("CARGO_BIN_EXE_torq-record");
const REPLAY: &str = env!("CARGO_BIN_EXE_torq-replay");
const PUB: &str = env!("CARGO_BIN_EXE_torq-pub");
const DECODE: &str = env!("CARGO_BIN_EXE_torq-decode");

/// A tool started with its stdout piped; returns once its standard error holds `ready` (the
/// line saying its subscription took effect). Its stderr lines keep arriving on the channel.
fn start_tool(binary: &str, args: &[&str], ready: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tool starts");
    let (sender, lines) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let start = Instant::now();
    loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(ready) => return (child, lines),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("{binary} did not say {ready:?} within {WAIT:?}");
            }
        }
    }
}

/// Waits (bounded) for the tool; its exit code and standard output.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let status = wait_child(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    (status.code(), stdout)
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines().map(|line| serde_json::from_str(line).expect("every line is JSON")).collect()
}

/// torq-decode on `bytes` (a raw capture), with `args`.
fn decode(bytes: &[u8], args: &[&str]) -> (Vec<Json>, Option<i32>) {
    let file = temp_dir("decode").join("capture");
    std::fs::write(&file, bytes).unwrap();
    let output = Command::new(DECODE).args(args).arg(&file).output().unwrap();
    (json_lines(&String::from_utf8(output.stdout).unwrap()), output.status.code())
}

fn run(binary: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tool starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let status = wait_child(&mut child);
    let mut output = Output { status, stdout: Vec::new(), stderr: Vec::new() };
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut output.stdout).unwrap();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut output.stderr).unwrap();
    output
}

fn frame_with(
    domain: RelayDomain,
    source: u8,
    sequence: u64,
    timestamp: u64,
    fill: impl FnOnce(&mut FrameBuilder<'_>),
) -> Vec<u8> {
    let mut buf = vec![0; 4096];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
    fill(&mut builder);
    let len = builder.finish(sequence, timestamp, Crc::Compute);
    buf.truncate(len);
    buf
}

/// Market-data frames of several layouts and sizes.
fn market_data(count: u64) -> Vec<Vec<u8>> {
    (1..=count)
        .map(|i| {
            frame_with(RelayDomain::MarketData, 3, i, 1_700_000_000_000_000_000 + i, |b| match i % 3 {
                0 => {
                    b.payload(&Trade { asset_id: i, price: i as i64 * 100, venue: 101, ..Trade::default() })
                        .unwrap();
                }
                1 => {
                    b.payload(&Quote { asset_id: i, bid_price: 5, ..Quote::default() }).unwrap();
                }
                _ => {
                    b.tlv(200, &vec![i as u8; 10 + i as usize * 13]).unwrap();
                }
            })
        })
        .collect()
}

/// The frames a subscriber receives until `count` arrived.
fn receive(subscriber: &mut Subscriber, count: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while frames.len() < count {
        match subscriber.recv_timeout(WAIT).unwrap() {
            Some(Event::Frame(frame)) => frames.push(frame.bytes().to_vec()),
            Some(Event::Notice(_)) | Some(Event::Gap { .. }) | Some(Event::Restarted { .. }) => {}
            other => panic!("only {} of {count} frames arrived: {other:?}", frames.len()),
        }
    }
    frames
}

fn without_offset(mut line: Json) -> Json {
    line.as_object_mut().unwrap().remove("offset");
    line
}

#[test]
fn tap_prints_what_was_published_as_decode_does_and_count_exits_0() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.to_str().unwrap();
    let (tap, _) = start_tool(TAP, &["--socket", socket, "--count", "9"], "subscribed to");
    let frames = market_data(9);
    let mut publisher = relay.connect();
    for frame in &frames {
        publisher.send(frame);
    }
    let (status, stdout) = finish(tap);
    assert_eq!(status, Some(0), "--count 9 exits 0 after nine frames");
    let tapped = json_lines(&stdout);
    let (decoded, decode_status) = decode(&frames.concat(), &[]);
    assert_eq!(decode_status, Some(0));
    assert_eq!(tapped.len(), 9);
    let tapped_without: Vec<Json> = tapped.iter().cloned().map(without_offset).collect();
    let decoded_without: Vec<Json> = decoded.into_iter().map(without_offset).collect();
    assert_eq!(tapped_without, decoded_without);
    // Offsets count bytes received: consecutive frames are their lengths apart.
    for (pair, frame) in tapped.windows(2).zip(&frames) {
        assert_eq!(
            pair[1]["offset"].as_u64().unwrap() - pair[0]["offset"].as_u64().unwrap(),
            frame.len() as u64
        );
    }
}

#[test]
fn tap_through_shared_memory_prints_what_the_socket_would() {
    for idle in ["spin", "block"] {
        let relay = Relay::start(MARKET_DATA, &[]);
        let socket = relay.socket.to_str().unwrap();
        let (tap, _) = start_tool(
            TAP,
            &["--socket", socket, "--shm", "on", "--shm-idle", idle, "--count", "9"],
            "subscribed to",
        );
        let frames = market_data(9);
        let mut publisher = relay.connect();
        for frame in &frames {
            publisher.send(frame);
        }
        let (status, stdout) = finish(tap);
        assert_eq!(status, Some(0), "--shm {idle}: nine frames");
        let tapped: Vec<Json> = json_lines(&stdout).into_iter().map(without_offset).collect();
        let (decoded, _) = decode(&frames.concat(), &[]);
        assert_eq!(tapped, decoded.into_iter().map(without_offset).collect::<Vec<_>>(), "--shm {idle}");
    }
}

#[test]
fn tap_filters_by_type_source_and_instrument() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.to_str().unwrap();
    let args = [
        "--socket",
        socket,
        "--type",
        "2",
        "--source",
        "7",
        "--instrument",
        "Kraken:Coin:BTC/USD",
        "--count",
        "3",
    ];
    let (tap, _) = start_tool(TAP, &args, "subscribed to");
    let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
    let trade = |asset_id, source, sequence| {
        frame_with(RelayDomain::MarketData, source, sequence, 0, |b| {
            b.payload(&Trade { asset_id, venue: btc.venue, asset_type: btc.asset_type, ..Trade::default() })
                .unwrap();
        })
    };
    let quote = frame_with(RelayDomain::MarketData, 3, 1, 0, |b| {
        b.payload(&Quote::default()).unwrap();
    });
    // Not wanted: a Trade of another asset from source 3. Wanted: a Quote (type 2), a frame
    // of source 7, a Trade of BTC/USD on Kraken.
    let (other, of_source_7, btc_trade) = (trade(1, 3, 2), trade(1, 7, 1), trade(btc.asset_id, 3, 3));
    let mut publisher = relay.connect();
    for frame in [&other, &quote, &of_source_7, &btc_trade] {
        publisher.send(frame);
    }
    let (status, stdout) = finish(tap);
    assert_eq!(status, Some(0));
    let lines = json_lines(&stdout);
    let seen: Vec<(u64, u64)> =
        lines.iter().map(|l| (l["source"].as_u64().unwrap(), l["sequence"].as_u64().unwrap())).collect();
    assert_eq!(seen, [(3, 1), (7, 1), (3, 3)], "{stdout}");
}

#[test]
fn tap_says_a_publisher_started_again_rather_than_skipped() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.to_str().unwrap();
    let (tap, stderr) = start_tool(TAP, &["--socket", socket, "--count", "6"], "subscribed to");
    let frames = market_data(3);
    // Source 3 sends 1, 2, 3, its process restarts and sends 1, 2 (a new connection), then
    // it skips to 9. Each connection's frames are settled (forwarded) before the next one's go.
    let skip =
        frame_with(RelayDomain::MarketData, 3, 9, 0, |b| b.payload(&Quote::default()).map(|_| ()).unwrap());
    for run in [&frames[..], &[frames[0].clone(), frames[1].clone(), skip]] {
        let mut publisher =
            Publisher::connect(&relay.socket, PublisherOptions::new(RelayDomain::MarketData, 3))
                .expect("a publisher connects");
        run.iter().for_each(|frame| publisher.offer_verbatim(frame).unwrap());
        assert_eq!(publisher.settle(WAIT).unwrap().accepted, 3);
    }
    let (status, stdout) = finish(tap);
    assert_eq!(status, Some(0), "{stdout}");
    // The tool has exited: its standard error ends, and with it the channel.
    let said: Vec<String> = stderr.iter().collect();
    let expected = [
        "torq-tap: source 3 started again at sequence 1 (4 was due)",
        "torq-tap: source 3 skipped sequences: 3 was due, 9 came",
    ];
    assert_eq!(said, expected, "stderr, after the subscription");
}

#[test]
fn tap_against_a_missing_socket_exits_1_naming_it() {
    let dir = temp_dir("tap-missing");
    let socket = dir.join("nobody.sock");
    let output = run(TAP, &["--socket", socket.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(socket.to_str().unwrap()), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn tap_exits_1_when_the_relay_goes_away() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let socket = relay.socket.to_str().unwrap().to_string();
    let (tap, _) = start_tool(TAP, &["--socket", &socket], "subscribed to");
    assert_eq!(relay.stop().code(), Some(0));
    let (status, _) = finish(tap);
    assert_eq!(status, Some(1));
}

#[test]
fn record_then_decode_shows_the_same_frames() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let dir = temp_dir("record");
    let file = dir.join("md.pcapng");
    let args =
        ["--socket", relay.socket.to_str().unwrap(), "--output", file.to_str().unwrap(), "--count", "12"];
    let (record, _) = start_tool(RECORD, &args, "recording");
    let frames = market_data(12);
    let mut publisher = relay.connect();
    for frame in &frames {
        publisher.send(frame);
    }
    assert_eq!(finish(record).0, Some(0));
    let recorded = std::fs::read(&file).unwrap();
    assert_eq!(recorded[..4], [0x0A, 0x0D, 0x0D, 0x0A], "a pcapng file");
    let (from_recording, status) = decode(&recorded, &[]);
    assert_eq!(status, Some(0));
    // Offsets in a recording count bytes of frames: the very lines of the raw frames.
    assert_eq!(from_recording, decode(&frames.concat(), &[]).0);
    // Every packet holds one frame, stamped with a receive time of this run.
    let mut reader = torq::tools::pcapng::Reader::new(&recorded[..]);
    let now = torq::tools::live::unix_ns();
    let mut packets = 0;
    while let Some(packet) = reader.next_packet().unwrap() {
        assert_eq!(packet.data, &frames[packets][..]);
        let time = packet.timestamp_ns.unwrap();
        assert!(time <= now && now - time < 60_000_000_000, "received {time}, now {now}");
        packets += 1;
    }
    assert_eq!(packets, 12);
}

#[test]
fn record_stops_on_sigterm_with_the_file_complete() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let file = temp_dir("record-term").join("md.pcapng");
    let args = ["--socket", relay.socket.to_str().unwrap(), "--output", file.to_str().unwrap()];
    let (record, _) = start_tool(RECORD, &args, "recording");
    let frames = market_data(5);
    let mut publisher = relay.connect();
    for frame in &frames {
        publisher.send(frame);
    }
    // The recorder flushes whenever it is idle: wait until the five frames are in the file.
    let start = Instant::now();
    while decode(&std::fs::read(&file).unwrap(), &[]).0.len() < 5 {
        assert!(start.elapsed() < WAIT, "the frames did not reach the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&record);
    assert_eq!(finish(record).0, Some(0));
    let (lines, status) = decode(&std::fs::read(&file).unwrap(), &[]);
    assert_eq!((lines.len(), status), (5, Some(0)));
}

#[test]
fn record_duration_stops_with_a_whole_file() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let file = temp_dir("record-duration").join("md.pcapng");
    let args =
        ["--socket", relay.socket.to_str().unwrap(), "--output", file.to_str().unwrap(), "--duration", "0.3"];
    let (record, _) = start_tool(RECORD, &args, "recording");
    assert_eq!(finish(record).0, Some(0));
    let mut reader = torq::tools::pcapng::Reader::new(std::fs::File::open(&file).unwrap());
    assert!(reader.next_packet().unwrap().is_none(), "headers only, and whole");
}

#[test]
fn record_then_replay_into_a_second_relay_delivers_identical_frames_in_order() {
    let first = Relay::start(MARKET_DATA, &[]);
    let second = Relay::start(MARKET_DATA, &[]);
    let file = temp_dir("replay").join("md.pcapng");
    let args =
        ["--socket", first.socket.to_str().unwrap(), "--output", file.to_str().unwrap(), "--count", "300"];
    let (record, _) = start_tool(RECORD, &args, "recording");
    let frames = market_data(300);
    let mut publisher = first.connect();
    for frame in &frames {
        publisher.send(frame);
    }
    assert_eq!(finish(record).0, Some(0));
    let mut subscriber = Subscriber::connect(&second.socket, SubscriberOptions::new()).unwrap();
    let output = run(REPLAY, &[file.to_str().unwrap(), "--socket", second.socket.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("sent 300 frames"), "{summary}");
    assert_eq!(receive(&mut subscriber, 300), frames, "byte-identical, in order");
}

#[test]
fn replay_keeps_the_recorded_gaps_scaled_by_speed() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    // A raw capture: its gaps are those of the header timestamps, 400 ms here. A hello
    // first, which is not sent.
    let at = |sequence: u64, ms: u64| {
        frame_with(RelayDomain::MarketData, 3, sequence, 1_700_000_000_000_000_000 + ms * 1_000_000, |b| {
            b.tlv(200, &[sequence as u8]).unwrap();
        })
    };
    let mut capture = LEGACY_HELLO.to_vec();
    let frames = [at(1, 0), at(2, 400), at(3, 400)];
    capture.extend(frames.concat());
    let file = temp_dir("replay-speed").join("capture.bin");
    std::fs::write(&file, &capture).unwrap();
    let socket = relay.socket.to_str().unwrap();
    let mut timed = |speed: &str| {
        let start = Instant::now();
        let output = run(REPLAY, &[file.to_str().unwrap(), "--socket", socket, "--speed", speed], None);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(receive(&mut subscriber, 3), frames);
        start.elapsed()
    };
    assert!(timed("1") >= Duration::from_millis(390));
    assert!(timed("4") >= Duration::from_millis(95));
    // --max-gap shortens a long gap: a minute to 10 ms.
    let late = [at(4, 0), at(5, 60_000)];
    std::fs::write(&file, late.concat()).unwrap();
    let start = Instant::now();
    let args = [file.to_str().unwrap(), "--socket", socket, "--max-gap", "0.01"];
    assert_eq!(run(REPLAY, &args, None).status.code(), Some(0));
    assert_eq!(receive(&mut subscriber, 2), late);
    assert!(start.elapsed() < WAIT / 2, "the minute was not shortened");
}

#[test]
fn pub_of_decode_hex_rebuilds_the_same_bytes() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let mut frames = market_data(6);
    let head = OrderBookHead { asset_id: 9, venue: 102, asset_type: 51, ..Default::default() };
    let mut book = vec![0; OrderBook::encoded_len(1, 1)];
    let level = Level { price: 100, size: 1, order_count: 3 };
    OrderBook::emit(&head, &[level], &[level], &mut book).unwrap();
    frames.push(frame_with(RelayDomain::MarketData, 4, 1, 5, |b| {
        b.tlv(3, &book).unwrap();
    }));
    // Bytes no value object says: a reserved byte set, a short value in the extended form,
    // a checksum left 0, another that is wrong (MarketData does not verify checksums).
    let mut odd = frame_with(RelayDomain::MarketData, 4, 2, 6, |b| {
        b.payload(&Trade::default()).unwrap();
    });
    odd[32 + 2 + 35] = 0xEE;
    odd.extend_from_slice(&[255, 0, 201, 3, 0, 1, 2, 3]);
    odd[24..28].copy_from_slice(&(42u32 + 8).to_le_bytes());
    odd[28..32].copy_from_slice(&0xDEAD_0001u32.to_le_bytes());
    frames.push(odd);
    let mut unchecked = frames[0].clone();
    unchecked[8] = 40; // another sequence
    unchecked[28..32].fill(0);
    frames.push(unchecked);
    let dir = temp_dir("pub");
    let capture = dir.join("capture.bin");
    std::fs::write(&capture, frames.concat()).unwrap();
    let decoded = Command::new(DECODE).arg("--hex").arg(&capture).output().unwrap();
    assert_eq!(decoded.status.code(), Some(1), "the wrong checksum makes the decode unclean");
    let published = run(PUB, &["--socket", relay.socket.to_str().unwrap()], Some(&decoded.stdout));
    assert_eq!(published.status.code(), Some(0), "{}", String::from_utf8_lossy(&published.stderr));
    assert_eq!(receive(&mut subscriber, frames.len()), frames);
}

#[test]
fn pub_builds_a_hand_written_order_and_names_a_bad_line() {
    let dir = temp_dir("pub-order");
    let relay = Relay::start(EXECUTION, &["--audit-file", dir.join("audit").to_str().unwrap()]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let lines = concat!(
        r#"{"domain_byte": 2, "source": 99, "tlvs": [{"type": 40, "value": {"order_id": 1, "#,
        r#""asset_id": "0x4254432f55534400", "venue": 101, "asset_type": 51, "price": 4500000000000, "#,
        r#""quantity": 100000000}}]}"#,
        "\n\n",
        r#"{"domain_byte": 2, "source": 99, "tlvs": [{"type": 40, "value": {"order_id": 2, "prce": 1}}]}"#,
        "\n",
    );
    let file = dir.join("orders.jsonl");
    std::fs::write(&file, lines).unwrap();
    let output = run(PUB, &["--socket", relay.socket.to_str().unwrap(), file.to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3") && stderr.contains("tlvs[0].value.prce"), "{stderr}");
    // The line before the bad one was published: sequence 1, checksummed (Execution
    // requires it), the fields as written.
    let frame = receive(&mut subscriber, 1).remove(0);
    let header = Header::view(&frame).unwrap();
    assert_eq!((header.sequence(), header.source()), (1, 99));
    assert_eq!(header.checksum(), checksum(&frame));
    let order = OrderRequest::parse(tlvs(&frame[32..]).next().unwrap().unwrap().value).unwrap();
    let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap();
    assert_eq!(order.instrument(), btc);
    assert_eq!((order.order_id, order.price, order.quantity), (1, 4_500_000_000_000, 100_000_000));
}

#[test]
fn pub_names_each_rejected_line_and_loses_nothing_behind_it() {
    let dir = temp_dir("pub-confirm");
    let relay = Relay::start(EXECUTION, &["--audit-file", dir.join("audit").to_str().unwrap()]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let order = |id: u64, extra: &str| {
        format!(
            r#"{{"domain_byte":2,"source":50{extra},"tlvs":[{{"type":40,"value":{{"order_id":{id},"price":5,"quantity":1}}}}]}}"#
        )
    };
    // Line 1 has no checksum (rejected), line 3 is over the relay's max_message_size (never
    // sent), line 4 is a Subscribe (never sent), lines 2 and 5 are valid.
    let tlv = format!(r#"{{"type":200,"hex":"0x{}"}}"#, "00".repeat(65_000));
    let huge = format!(r#"{{"domain_byte":2,"source":50,"tlvs":[{tlv},{tlv},{tlv}]}}"#);
    let subscribe = r#"{"domain_byte":3,"source":50,"tlvs":[{"type":116,"value":{"role":1}}]}"#;
    let lines = [order(1, r#","checksum":0"#), order(2, ""), huge, subscribe.to_string(), order(5, "")];
    let output = run(PUB, &["--socket", relay.socket.to_str().unwrap()], Some(lines.join("\n").as_bytes()));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = |needle: &str| stderr.lines().any(|line| line.contains(needle));
    assert!(said("line 1: rejected by the relay (sequence 1): checksum_missing"), "{stderr}");
    assert!(said("line 3: not sent") && said("max_message_size of 131072"), "{stderr}");
    assert!(said("line 4: not sent") && said("control frame"), "{stderr}");
    assert!(said("3 frames sent: 2 accepted, 1 rejected; 2 not sent"), "{stderr}");
    // Orders 2 and 5 both arrived: a rejection no longer closes the connection.
    let ids: Vec<u64> = receive(&mut subscriber, 2)
        .iter()
        .map(|frame| OrderRequest::parse(tlvs(&frame[32..]).next().unwrap().unwrap().value).unwrap().order_id)
        .collect();
    assert_eq!(ids, [2, 5]);
    // Everything accepted: exit 0.
    let output = run(PUB, &["--socket", relay.socket.to_str().unwrap()], Some(order(6, "").as_bytes()));
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 frames sent: 1 accepted, 0 rejected"));
}

#[test]
fn replay_names_each_rejected_frame_and_sends_the_rest() {
    let dir = temp_dir("replay-confirm");
    let relay = Relay::start(EXECUTION, &["--audit-file", dir.join("audit").to_str().unwrap()]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let order = |sequence: u64| {
        frame_with(RelayDomain::Execution, 20, sequence, 1, |b| {
            b.tlv(40, &[sequence as u8; 48]).unwrap();
        })
    };
    // Sequence 2 twice: the relay rejects the second as a replay.
    let frames = [order(1), order(2), order(2), order(3)];
    let replayed_at = frames[0].len() + frames[1].len();
    std::fs::write(dir.join("orders.bin"), frames.concat()).unwrap();
    let file = dir.join("orders.bin");
    let args = [file.to_str().unwrap(), "--socket", relay.socket.to_str().unwrap(), "--speed", "max"];
    let output = run(REPLAY, &args, None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rejected = format!(
        "orders.bin: the frame at byte {replayed_at}: rejected by the relay (sequence 2): sequence_replay"
    );
    assert!(stderr.contains(&rejected), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("4 frames sent: 3 accepted, 1 rejected"), "{stdout}");
    assert_eq!(receive(&mut subscriber, 3), [frames[0].clone(), frames[1].clone(), frames[3].clone()]);
}

#[test]
fn replay_names_the_byte_where_a_file_breaks() {
    let relay = Relay::start(MARKET_DATA, &[]);
    let mut subscriber = Subscriber::connect(&relay.socket, SubscriberOptions::new()).unwrap();
    let frames = market_data(3);
    let dir = temp_dir("replay-broken");
    // A recording torn inside its last block: the frames before it are sent.
    let mut writer = torq::tools::pcapng::Writer::new(Vec::new(), "test", "x").unwrap();
    for frame in &frames {
        writer.write_packet(1, frame).unwrap();
    }
    let mut recording = writer.into_inner();
    let torn_at = recording.len() - (32 + frames[2].len().next_multiple_of(4));
    recording.truncate(recording.len() - 3);
    let file = dir.join("torn.pcapng");
    std::fs::write(&file, &recording).unwrap();
    let socket = relay.socket.to_str().unwrap();
    let output = run(REPLAY, &[file.to_str().unwrap(), "--socket", socket], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("byte {torn_at}")) && stderr.contains("torn.pcapng"), "{stderr}");
    assert_eq!(receive(&mut subscriber, 2), frames[..2]);
    // A raw capture cut inside a frame.
    let mut raw = frames.concat();
    raw.truncate(raw.len() - 1);
    let cut_at = raw.len() + 1 - frames[2].len();
    std::fs::write(dir.join("cut.bin"), &raw).unwrap();
    let output = run(REPLAY, &[dir.join("cut.bin").to_str().unwrap(), "--socket", socket], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("byte {cut_at}")), "{stderr}");
    assert_eq!(receive(&mut subscriber, 2), frames[..2]);
}

/// The tools' help texts say what each flag does (a missing doc comment shows as a bare
/// flag).
#[test]
fn every_tool_has_a_complete_help() {
    for (binary, flags) in [
        (TAP, &["--socket", "--type", "--source", "--instrument", "--count", "--pretty", "--hex"][..]),
        (RECORD, &["--socket", "--output", "--type", "--count", "--duration"][..]),
        (REPLAY, &["--socket", "--speed", "--max-gap", "--type", "--loop"][..]),
        (PUB, &["--socket", "hex", "value"][..]),
        (DECODE, &["--hex", "pcapng", "bad_recording"][..]),
    ] {
        let output = Command::new(binary).arg("--help").output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8(output.stdout).unwrap();
        for flag in flags {
            assert!(help.contains(flag), "{binary} --help lacks {flag}:\n{help}");
        }
        assert!(help.contains("Exit status"), "{binary} --help says no exit status");
    }
}
