//! The client processes of the relay scenarios: `torq-perf publish` and `torq-perf subscribe`.
//!
//! Both talk Protocol V2 over a Unix stream socket. The publisher sends the legacy hello, then
//! frames of one fixed size: a routing TLV first (a Trade for market data, a SignalIdentity for
//! signal, an OrderRequest for execution) and a vendor TLV (type 200) padding the frame to
//! `--size`. The subscriber frames
//! the stream by the header's `payload_size` and prints one JSON line.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::json;
use torq::protocol::{
    Crc, FrameBuilder, HEADER_SIZE, Header, MAGIC, OPTION_NOTICES, OrderRequest, Payload, RelayDomain,
    RelayNotice, Role, SignalIdentity, SourceType, Subscribe, Trade, VenueId, checksum, notice, registry,
};

/// What legacy publishers send first: a frame with no payload (domain 1, source 2).
pub const LEGACY_HELLO: [u8; HEADER_SIZE] = {
    let mut hello = [0u8; HEADER_SIZE];
    let start = [0xEF, 0xBE, 0xAD, 0xDE, 0x01, 0x01, 0x02, 0x00];
    let mut i = 0;
    while i < start.len() {
        hello[i] = start[i];
        i += 1;
    }
    hello
};

/// The vendor TLV type that pads frames to their size.
const PADDING_TLV: u8 = 200;
/// Frames per `write_all` of an unpaced publisher.
const BATCH: usize = 1024;

/// The relay domain the publisher's frames are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Domain {
    /// Domain 0, source KrakenCollector, a Trade as the routing TLV.
    MarketData,
    /// Domain 1, source ArbitrageStrategy, a SignalIdentity as the routing TLV.
    Signal,
    /// Domain 2, source ExecutionEngine, an OrderRequest as the routing TLV.
    Execution,
}

impl Domain {
    /// The name `--domain` takes.
    pub fn name(self) -> &'static str {
        match self {
            Domain::MarketData => "market-data",
            Domain::Signal => "signal",
            Domain::Execution => "execution",
        }
    }
}

/// `torq-perf publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The relay's socket.
    #[arg(long)]
    socket: PathBuf,
    /// Data frames to send (the hello is not counted).
    #[arg(long)]
    frames: u64,
    /// Bytes per frame, header included (market data: at least 76, signal: at least 52,
    /// execution: at least 84).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Frames per second, sent one at a time with the send time (ns since the Unix epoch) in
    /// the header's timestamp; without it, frames are written in batches of 1024 as fast as
    /// the socket takes them, each batch stamped with the time it was written.
    #[arg(long)]
    rate: Option<f64>,
    /// Which relay the frames are for.
    #[arg(long, value_enum, default_value_t = Domain::MarketData)]
    domain: Domain,
    /// Compute each frame's checksum (otherwise 0, "not computed").
    #[arg(long)]
    crc: bool,
    /// Core to pin this process to, or `none`.
    #[arg(long, default_value = "none")]
    core: String,
}

/// `torq-perf subscribe`.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// The relay's socket.
    #[arg(long)]
    socket: PathBuf,
    /// Stop after this many data frames (or at end of stream, or after `--idle-ms`).
    #[arg(long)]
    frames: u64,
    /// Record receive time − header timestamp of every frame and print its percentiles (ns).
    #[arg(long)]
    latency: bool,
    /// Stop when no byte has arrived for this long after the first frame (0: never).
    #[arg(long, default_value_t = 0)]
    idle_ms: u64,
    /// Send a Subscribe (role subscribe, notices on, no filter) and print `ready` only once the
    /// relay acknowledges it; without it the subscriber sends nothing (a legacy subscriber) and
    /// prints `ready` as soon as it is connected.
    #[arg(long)]
    ack: bool,
    /// Core to pin this process to, or `none`.
    #[arg(long, default_value = "none")]
    core: String,
}

/// Nanoseconds since the Unix epoch: the one clock every process on the machine shares.
pub fn epoch_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One data frame of exactly `size` bytes (sequence, timestamp and checksum left 0).
pub fn template(domain: Domain, size: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; size.max(HEADER_SIZE)];
    let (relay_domain, source, routing_len) = match domain {
        Domain::MarketData => (RelayDomain::MarketData, SourceType::KrakenCollector, Trade::SIZE),
        Domain::Signal => (RelayDomain::Signal, SourceType::ArbitrageStrategy, SignalIdentity::SIZE),
        Domain::Execution => (RelayDomain::Execution, SourceType::ExecutionEngine, OrderRequest::SIZE),
    };
    let built = (|| {
        let mut builder = FrameBuilder::new(&mut buf, relay_domain, source.raw())?;
        let venue = VenueId::Kraken.raw();
        let asset_id = 0x4254_432F_5553_4400; // "BTC/USD"
        match domain {
            Domain::MarketData => {
                let trade = Trade {
                    asset_id,
                    price: 9_712_345_000_000,
                    volume: 25_000_000,
                    venue,
                    asset_type: 51,
                    ..Trade::default()
                };
                builder.payload(&trade)?
            }
            Domain::Signal => {
                let identity = SignalIdentity {
                    signal_id: 1,
                    strategy_id: 21,
                    signal_type: 1,
                    confidence: 80,
                    valid_for_ms: 500,
                };
                builder.payload(&identity)?
            }
            Domain::Execution => {
                let order = OrderRequest {
                    order_id: 1,
                    asset_id,
                    venue,
                    asset_type: 51,
                    order_type: 1,
                    price: 9_712_345_000_000,
                    quantity: 25_000_000,
                    ..OrderRequest::default()
                };
                builder.payload(&order)?
            }
        };
        // The padding TLV's header is 2 bytes up to 255 value bytes, 5 beyond.
        let rest = size.saturating_sub(HEADER_SIZE + 2 + routing_len);
        let value_len = if rest <= 257 { rest.saturating_sub(2) } else { rest - 5 };
        builder.tlv(PADDING_TLV, &vec![0u8; value_len])?;
        Ok::<usize, torq::protocol::Error>(builder.finish(0, 0, Crc::Skip))
    })();
    match built {
        Ok(len) if len == size => Ok(buf),
        Ok(len) => Err(format!("--size {size}: no frame of exactly that size (the nearest is {len})")),
        Err(e) => Err(format!("--size {size}: {e}")),
    }
}

/// Writes sequence, timestamp and (when `crc`) the checksum into a built frame.
#[inline]
pub fn stamp(frame: &mut [u8], sequence: u64, timestamp: u64, crc: bool) {
    if let Some(header) = Header::view_mut(frame) {
        header.set_sequence(sequence);
        header.set_timestamp(timestamp);
    }
    if crc {
        let sum = checksum(frame);
        frame[28..32].copy_from_slice(&sum.to_le_bytes());
    }
}

/// `torq-perf publish`: prints `{"role":"publisher","frames":…,"bytes":…,"elapsed_s":…,"rate":…}`.
pub fn publish(args: &PublishArgs) -> Result<(), String> {
    crate::pin(&args.core)?;
    let frame = template(args.domain, args.size)?;
    let socket = args.socket.display();
    let mut stream = UnixStream::connect(&args.socket).map_err(|e| format!("connect {socket}: {e}"))?;
    let size = args.size;
    let mut batch: Vec<u8> = frame.repeat(BATCH);
    let start = Instant::now();
    let sent = (|| {
        stream.write_all(&LEGACY_HELLO)?;
        let mut sequence = 0u64;
        match args.rate {
            Some(rate) => {
                let period_ns = 1e9 / rate;
                let frame = &mut batch[..size];
                while sequence < args.frames {
                    let due = start + Duration::from_nanos((sequence as f64 * period_ns) as u64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    sequence += 1;
                    stamp(frame, sequence, epoch_ns(), args.crc);
                    stream.write_all(frame)?;
                }
            }
            None => {
                while sequence < args.frames {
                    let count = (args.frames - sequence).min(BATCH as u64) as usize;
                    let now = epoch_ns();
                    for frame in batch[..count * size].chunks_exact_mut(size) {
                        sequence += 1;
                        stamp(frame, sequence, now, args.crc);
                    }
                    stream.write_all(&batch[..count * size])?;
                }
            }
        }
        Ok::<u64, std::io::Error>(sequence)
    })()
    .map_err(|e| format!("publish to {socket}: {e}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    let line = json!({
        "role": "publisher",
        "frames": sent,
        "bytes": sent * size as u64,
        "elapsed_s": elapsed,
        "rate": sent as f64 / elapsed,
    });
    println!("{line}");
    Ok(())
}

/// Why a subscriber stopped.
#[derive(Debug, Clone, Copy)]
enum End {
    Frames,
    Eof,
    Idle,
}

/// `torq-perf subscribe`: prints `ready` once connected (acknowledged with `--ack`), then one
/// JSON line: frames, bytes, elapsed_s (first to last frame), rate, gaps (sequence
/// discontinuities), end (`frames`, `eof` or `idle`), the relay's drop notices and, with
/// `--latency`, latency_ns {p50, p90, p99, p99_9, max, count}.
pub fn subscribe(args: &SubscribeArgs) -> Result<(), String> {
    crate::pin(&args.core)?;
    let socket = args.socket.display();
    let mut stream = UnixStream::connect(&args.socket).map_err(|e| format!("connect {socket}: {e}"))?;
    let io_error = |e: std::io::Error| format!("subscribe to {socket}: {e}");
    if args.ack {
        let subscribe = Subscribe { role: Role::Subscribe, options: OPTION_NOTICES, filters: Vec::new() };
        stream.write_all(&subscribe_frame(&subscribe)?).map_err(io_error)?;
    } else {
        ready();
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0usize, 0usize);
    let (mut frames, mut bytes, mut gaps, mut last_sequence) = (0u64, 0u64, 0u64, 0u64);
    let (mut notices, mut relay_dropped) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let stop = 'read: loop {
        if frames >= args.frames {
            break End::Frames;
        }
        if end == buf.len() {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        let n = match stream.read(&mut buf[end..]) {
            Ok(0) => break End::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break End::Idle,
            Err(e) => return Err(io_error(e)),
        };
        let received = Instant::now();
        let received_ns = if args.latency { epoch_ns() } else { 0 };
        end += n;
        while end - start >= HEADER_SIZE {
            let header = Header::view(&buf[start..end]).ok_or("short header")?;
            let len = header.frame_len() as usize;
            if header.magic() != MAGIC || len > buf.len() {
                return Err(format!("{socket}: broken stream after {frames} frames (bad magic or size)"));
            }
            if end - start < len {
                break;
            }
            let frame = &buf[start..start + len];
            start += len;
            if len == HEADER_SIZE {
                continue; // a hello (the naive relay forwards it)
            }
            if header.domain_byte() == RelayDomain::System.raw()
                && frame[HEADER_SIZE] == registry::RELAY_NOTICE
            {
                notices += 1;
                let value = frame.get(HEADER_SIZE + 2..).unwrap_or_default();
                let notice = RelayNotice::parse(value).map_err(|e| format!("{socket}: bad notice: {e}"))?;
                match notice.code {
                    notice::SUBSCRIBED if args.ack => ready(),
                    notice::DROPPED => {
                        relay_dropped +=
                            notice.text.strip_prefix("dropped=").and_then(|n| n.parse().ok()).unwrap_or(0);
                    }
                    notice::PROTOCOL_ERROR | notice::ACCESS_DENIED => {
                        return Err(format!("{socket}: relay notice {}: {}", notice.code, notice.text));
                    }
                    _ => {}
                }
                continue;
            }
            let sequence = header.sequence();
            gaps += u64::from(sequence != last_sequence + 1);
            last_sequence = sequence;
            if args.latency {
                histogram.saturating_record(received_ns.saturating_sub(header.timestamp()).max(1));
            }
            frames += 1;
            bytes += len as u64;
            last = received;
            if first.is_none() {
                first = Some(received);
                if args.idle_ms > 0 {
                    stream.set_read_timeout(Some(Duration::from_millis(args.idle_ms))).map_err(io_error)?;
                }
            }
            if frames == args.frames {
                break 'read End::Frames;
            }
        }
        if start == end {
            (start, end) = (0, 0);
        }
    };
    let elapsed = first.map_or(0.0, |first| (last - first).as_secs_f64());
    let mut line = json!({
        "role": "subscriber",
        "frames": frames,
        "bytes": bytes,
        "elapsed_s": elapsed,
        "rate": if elapsed > 0.0 { frames as f64 / elapsed } else { 0.0 },
        "gaps": gaps,
        "end": format!("{stop:?}").to_lowercase(),
        "notices": notices,
        "relay_dropped": relay_dropped,
    });
    if args.latency {
        let q = |q: f64| histogram.value_at_quantile(q);
        line["latency_ns"] = json!({
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
            "max": histogram.max(), "count": histogram.len(),
        });
    }
    println!("{line}");
    Ok(())
}

/// Tells the driver this subscriber is connected (and acknowledged, with `--ack`).
fn ready() {
    println!("ready");
    _ = std::io::stdout().flush();
}

/// A Subscribe control frame.
pub fn subscribe_frame(subscribe: &Subscribe) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; HEADER_SIZE + 2 + subscribe.encoded_len()];
    let mut builder = FrameBuilder::new(&mut buf, RelayDomain::System, SourceType::TestClient.raw())
        .map_err(|e| e.to_string())?;
    builder
        .tlv_with(registry::SUBSCRIBE, subscribe.encoded_len(), |out| subscribe.emit(out).map(drop))
        .map_err(|e| e.to_string())?;
    let len = builder.finish(1, epoch_ns(), Crc::Compute);
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use torq::protocol::{Checks, ChecksumLevel, FrameKind, validate};

    #[test]
    fn frames_have_the_asked_size_and_validate() {
        for (domain, relay_domain) in [
            (Domain::MarketData, RelayDomain::MarketData),
            (Domain::Signal, RelayDomain::Signal),
            (Domain::Execution, RelayDomain::Execution),
        ] {
            for size in [128, 300, 1024] {
                let mut frame = template(domain, size).unwrap();
                assert_eq!(frame.len(), size);
                stamp(&mut frame, 7, 1, true);
                let checks = Checks { checksum: ChecksumLevel::Required, ..Checks::new(relay_domain) };
                assert_eq!(validate(&frame, &checks), Ok(FrameKind::Data));
                assert_eq!(Header::view(&frame).unwrap().sequence(), 7);
            }
        }
        assert!(template(Domain::MarketData, 40).is_err());
        assert!(template(Domain::MarketData, 333).is_err()); // neither padding TLV form fits
    }

    #[test]
    fn domain_names_are_the_flag_values() {
        use clap::ValueEnum;
        for domain in Domain::value_variants() {
            assert_eq!(domain.to_possible_value().unwrap().get_name(), domain.name());
        }
    }

    #[test]
    fn the_legacy_hello_is_a_hello() {
        let header = Header::view(&LEGACY_HELLO).unwrap();
        assert_eq!((header.magic(), header.version(), header.payload_size()), (MAGIC, 1, 0));
        assert_eq!((header.domain_byte(), header.source()), (1, 2));
    }
}
