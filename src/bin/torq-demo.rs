//! `torq-demo`: the relays with live traffic. Starts `relay_dev all` (the three domain relays
//! in one process) on a private directory, runs a market-data collector, a strategy and an
//! execution engine as publishers and one subscriber per domain, prints what flows each
//! second, then stops the relays with SIGTERM and reports their exit status.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use torq::protocol::{
    Crc, Fill, FrameBuilder, Header, InstrumentId, OPTION_NOTICES, OrderRequest, RelayDomain, Role,
    SignalIdentity, SourceType, Subscribe, Trade, VenueId, registry, tlvs,
};

/// Run the three relays with live traffic for a few seconds and show what flows.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// How long to publish, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Market-data frames per second (0 = as fast as the relay takes them).
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Directory for the sockets (default: a fresh one under the temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("torq-demo-{}", std::process::id())));
    let relay_dev = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("relay_dev")));
    let Some(relay_dev) = relay_dev.filter(|p| p.exists()) else {
        eprintln!(
            "torq-demo: relay_dev is not built next to torq-demo; run `cargo build --release --bins` first"
        );
        return ExitCode::from(2);
    };
    let mut relays =
        match Command::new(&relay_dev).arg("all").arg("-s").arg(&dir).stdin(Stdio::null()).spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!("torq-demo: cannot start {}: {e}", relay_dev.display());
                return ExitCode::from(2);
            }
        };
    let sockets = ["market_data.sock", "signals.sock", "execution.sock"].map(|name| dir.join(name));
    let start = Instant::now();
    while !sockets.iter().all(|s| UnixStream::connect(s).is_ok()) {
        if start.elapsed() > Duration::from_secs(10) || relays.try_wait().ok().flatten().is_some() {
            eprintln!("torq-demo: the relays did not start (see their log above)");
            let _ = relays.kill();
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "relays up in {}: {}",
        dir.display(),
        sockets.iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(", ")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let (ready, subscribed) = std::sync::mpsc::channel();
    let readers: Vec<_> = sockets
        .iter()
        .zip(&counters)
        .map(|(socket, count)| {
            let (socket, count, ready) = (socket.clone(), Arc::clone(count), ready.clone());
            std::thread::spawn(move || subscribe(&socket, &count, &ready))
        })
        .collect();
    // Subscribers first (each waits for the relay's "subscribed" notice), then the publishers.
    for _ in 0..sockets.len() {
        if subscribed.recv_timeout(Duration::from_secs(10)).is_err() {
            eprintln!("torq-demo: a subscriber was not acknowledged by the relays");
            let _ = relays.kill();
            return ExitCode::from(1);
        }
    }
    let publishers = [
        spawn_publisher(&sockets[0], RelayDomain::MarketData, args.rate, &stop),
        spawn_publisher(&sockets[1], RelayDomain::Signal, 1_000, &stop),
        spawn_publisher(&sockets[2], RelayDomain::Execution, 1_000, &stop),
    ];
    let mut last = [0u64; 3];
    for second in 1..=args.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let now: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
        println!(
            "t={second}s received/s: market data {:>9}, signals {:>6}, execution {:>6}",
            now[0] - last[0],
            now[1] - last[1],
            now[2] - last[2]
        );
        last = [now[0], now[1], now[2]];
    }
    stop.store(true, Relaxed);
    let sent: Vec<u64> = publishers.into_iter().map(|p| p.join().unwrap_or(0)).collect();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&relays),
        rustix::process::Signal::TERM,
    );
    let status = relays.wait();
    for reader in readers {
        let _ = reader.join();
    }
    let received: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
    println!("sent:     market data {}, signals {}, execution {}", sent[0], sent[1], sent[2]);
    println!("received: market data {}, signals {}, execution {}", received[0], received[1], received[2]);
    println!("relays exited with {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
    if status.map(|s| s.success()).unwrap_or(false) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Subscribes to everything with notices on, reports once the relay acknowledged it, then
/// counts the data frames it receives until the relay closes the connection.
fn subscribe(socket: &Path, count: &AtomicU64, ready: &std::sync::mpsc::Sender<()>) {
    let Ok(mut stream) = UnixStream::connect(socket) else { return };
    let request = Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: vec![] };
    let mut frame = [0u8; 64];
    let Ok(len) =
        FrameBuilder::new(&mut frame, RelayDomain::System, SourceType::Dashboard.raw()).and_then(|mut b| {
            b.tlv_with(registry::SUBSCRIBE, request.encoded_len(), |out| request.emit(out))?;
            Ok(b.finish(0, 0, Crc::Compute))
        })
    else {
        return;
    };
    if stream.write_all(&frame[..len]).is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut filled = 0;
    loop {
        match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let mut pos = 0;
        while let Some(header) = Header::view(&buf[pos..filled]) {
            let len = 32 + header.payload_size() as usize;
            if pos + len > filled {
                break;
            }
            let first = tlvs(&buf[pos + 32..pos + len]).next().and_then(Result::ok).map(|t| t.tlv_type);
            if first == Some(registry::RELAY_NOTICE) {
                let _ = ready.send(()); // the relay's notice: subscribed (later ones: stopping)
            } else {
                count.fetch_add(1, Relaxed);
            }
            pos += len;
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if filled == buf.len() {
            return; // a frame larger than the buffer: not from these relays
        }
    }
}

/// Publishes frames of `domain` at `rate` per second until `stop`; returns the count sent.
fn spawn_publisher(
    socket: &Path,
    domain: RelayDomain,
    rate: u64,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let (socket, stop) = (socket.to_path_buf(), Arc::clone(stop));
    std::thread::spawn(move || {
        let Ok(mut stream) = UnixStream::connect(&socket) else { return 0 };
        let hello = [0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0];
        if stream.write_all(&[&hello[..], &[0; 24]].concat()).is_err() {
            return 0;
        }
        let btc = InstrumentId::coin(VenueId::Kraken, "BTC/USD").unwrap_or_default();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut batch = Vec::with_capacity(64 << 10);
        let mut frame = [0u8; 256];
        while !stop.load(Relaxed) {
            let due =
                if rate == 0 { sent + 256 } else { (start.elapsed().as_secs_f64() * rate as f64) as u64 };
            if due <= sent {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            batch.clear();
            let until = due.min(sent + 512);
            while sent < until {
                sent += 1;
                let len = build(&mut frame, domain, sent, &btc);
                batch.extend_from_slice(&frame[..len]);
            }
            if stream.write_all(&batch).is_err() {
                break;
            }
        }
        sent
    })
}

fn build(buf: &mut [u8], domain: RelayDomain, sequence: u64, btc: &InstrumentId) -> usize {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let result = match domain {
        RelayDomain::MarketData => {
            let trade = Trade {
                asset_id: btc.asset_id,
                price: 9_700_000_000_000 + (sequence % 1000) as i64 * 1_000_000,
                volume: 1_000_000,
                execution_timestamp_ns: now,
                venue: btc.venue,
                asset_type: btc.asset_type,
                side: (sequence % 2) as u8,
            };
            FrameBuilder::new(buf, domain, SourceType::KrakenCollector.raw()).and_then(|mut b| {
                b.payload(&trade)?;
                Ok(b.finish(sequence, now, Crc::Compute))
            })
        }
        RelayDomain::Signal => {
            let identity = SignalIdentity {
                signal_id: sequence,
                strategy_id: 21,
                signal_type: 1,
                confidence: 80,
                valid_for_ms: 500,
            };
            FrameBuilder::new(buf, domain, SourceType::ArbitrageStrategy.raw()).and_then(|mut b| {
                b.payload(&identity)?;
                Ok(b.finish(sequence, now, Crc::Compute))
            })
        }
        _ => {
            let order = OrderRequest {
                order_id: sequence,
                asset_id: btc.asset_id,
                venue: btc.venue,
                asset_type: btc.asset_type,
                side: 0,
                order_type: 1,
                time_in_force: 0,
                price: 9_700_000_000_000,
                quantity: 1_000_000,
                strategy_id: 21,
            };
            let fill =
                Fill { order_id: sequence, fill_id: sequence, price: order.price, quantity: order.quantity };
            FrameBuilder::new(buf, domain, SourceType::ExecutionEngine.raw()).and_then(|mut b| {
                b.payload(&order)?.payload(&fill)?;
                Ok(b.finish(sequence, now, Crc::Compute))
            })
        }
    };
    result.unwrap_or(0)
}
