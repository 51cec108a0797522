//! The client processes of the relay scenarios: `torq-perf publish` and `torq-perf subscribe`.
//!
//! Both talk to the relay through the client library (`torq::client`). The publisher says
//! hello, then sends frames of one fixed size: a routing TLV first (a Trade for market data, a
//! SignalIdentity for signal, an OrderRequest for execution) and a vendor TLV (type 200)
//! padding the frame to `--size`. The subscriber counts frames, gaps and drop notices and
//! prints one JSON line; it takes its data frames from its socket or, with `--transport shm`,
//! from the relay's broadcast log in shared memory (PROTOCOL.md §7), where an overrun comes as
//! a drop notice and is reported as frames lost to overrun. The soak's clients
//! (`perf/src/soak`) share the frame template and write raw bytes when they must misbehave.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use torq::client::{Event, Idle, Notice, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
use torq::protocol::{
    Crc, FrameBuilder, HEADER_SIZE, Header, OrderRequest, Payload, RelayDomain, SignalIdentity, SourceType,
    Subscribe, Trade, VenueId, checksum,
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

/// How a subscriber takes its data frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// From its socket, as the relay writes them (PROTOCOL.md §6).
    #[default]
    Socket,
    /// From the relay's broadcast log in shared memory (PROTOCOL.md §7): a Subscribe with
    /// options bit 3; notices still come over the socket. A relay that answers `shm=0`
    /// delivers over the socket, and the report says so.
    Shm,
}

impl Transport {
    /// The name `--transport` takes.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Socket => "socket",
            Transport::Shm => "shm",
        }
    }
}

/// How a shared-memory subscriber waits for frames: the client library's [`Idle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ShmIdle {
    /// Polls the log without pause: no system call and no wake-up, a core of its own.
    #[default]
    Spin,
    /// Polls a while, yields a while, then sleeps until the relay wakes it.
    Backoff,
    /// Sleeps until the relay wakes it (a futex in the log).
    Block,
}

impl ShmIdle {
    /// The name `--shm-idle` takes.
    pub fn name(self) -> &'static str {
        match self {
            ShmIdle::Spin => "spin",
            ShmIdle::Backoff => "backoff",
            ShmIdle::Block => "block",
        }
    }
}

impl From<ShmIdle> for Idle {
    fn from(idle: ShmIdle) -> Idle {
        match idle {
            ShmIdle::Spin => Idle::Spin,
            ShmIdle::Backoff => Idle::Backoff,
            ShmIdle::Block => Idle::Block,
        }
    }
}

/// `torq-perf publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The relay's socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[command(flatten)]
    load: Load,
    /// Ask the relay to confirm every frame (the client library's default) and wait for it
    /// at the end. Without it the publisher says the legacy hello, as the publishers the
    /// relays replace do (and the floors, which answer no Subscribe, need).
    #[arg(long)]
    confirm: bool,
}

/// What a publisher sends: the flags `torq-perf publish` and `nats-publish` share.
#[derive(Debug, clap::Args)]
pub struct Load {
    /// Data frames to send (the hello is not counted).
    #[arg(long)]
    pub frames: u64,
    /// Bytes per frame, header included (market data: at least 76, signal: at least 52,
    /// execution: at least 84).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Frames per second, open loop: frame i is due at start + i / rate and carries that
    /// *intended* time (ns since the Unix epoch) in its header's timestamp, however late it
    /// goes; every frame due by now is written at once, so a stall delays the frames behind it
    /// instead of the schedule. Without it, as fast as the connection takes them.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Without `--rate`: stop after this many seconds, or after `--frames`, whichever comes
    /// first.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Which relay the frames are for.
    #[arg(long, value_enum, default_value_t = Domain::MarketData)]
    pub domain: Domain,
    /// Compute each frame's checksum (otherwise 0, "not computed").
    #[arg(long, visible_alias = "crc")]
    pub checksum: bool,
    /// Core to pin this process to, or `none`.
    #[arg(long, default_value = "none")]
    pub core: String,
}

impl Load {
    /// The publisher's JSON line: frames, bytes, elapsed_s, rate, cpu_s and, paced, how late
    /// each frame was written (`lateness_ns`: the clock read before the write − its intended
    /// time, warm-up included: the publisher's own share of the latency measured) and how long
    /// each wake-up took from its clock reading to the write's return (`write_ns`).
    pub fn report(
        &self,
        sent: u64,
        elapsed: f64,
        lateness: &hdrhistogram::Histogram<u64>,
        writes: &hdrhistogram::Histogram<u64>,
    ) -> serde_json::Value {
        let mut line = json!({
            "role": "publisher",
            "frames": sent,
            "bytes": sent * self.size as u64,
            "elapsed_s": elapsed,
            "rate": sent as f64 / elapsed,
            "cpu_s": crate::machine::process_cpu_s(std::process::id()),
        });
        if self.rate.is_some() {
            line["lateness_ns"] = json!(crate::latency::hdr::Summary::of(lateness));
            line["write_ns"] = json!(crate::latency::hdr::Summary::of(writes));
        }
        line
    }
}

/// `torq-perf subscribe`.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// The relay's socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[command(flatten)]
    count: CountArgs,
    /// Send a Subscribe (role subscribe, notices on, no filter) and print `ready` only once the
    /// relay acknowledges it; without it the subscriber sends nothing (a legacy subscriber) and
    /// prints `ready` as soon as it is connected. Implied by `--transport shm`.
    #[arg(long)]
    ack: bool,
    /// Where the data frames are read: `socket`, or `shm`, the relay's broadcast log in shared
    /// memory (a Subscribe asking for it, acknowledged before `ready`; frames lost to overrun
    /// are reported as `overrun_frames`).
    #[arg(long, value_enum, default_value_t = Transport::Socket)]
    transport: Transport,
    /// With `--transport shm`: how the reader waits for frames: `spin` (polls, a core of its
    /// own), `backoff` (polls, yields, then sleeps) or `block` (sleeps until the relay wakes
    /// it).
    #[arg(long, value_enum, default_value_t = ShmIdle::Spin)]
    shm_idle: ShmIdle,
    /// Core to pin this process to, or `none`.
    #[arg(long, default_value = "none")]
    core: String,
}

/// What a subscriber counts and records, and when it stops: the flags `torq-perf subscribe`
/// and `torq-perf nats-subscribe` share.
#[derive(Debug, clap::Args)]
pub struct CountArgs {
    /// Stop after this many data frames (or at end of stream, or after `--idle-ms`).
    #[arg(long)]
    pub frames: u64,
    /// Record receive time − header timestamp of every frame and print its percentiles (ns).
    #[arg(long)]
    pub latency: bool,
    /// With `--latency`: frames with a sequence up to this are warm-up, not recorded.
    #[arg(long, default_value_t = 0)]
    pub warmup_frames: u64,
    /// With `--latency`: write one histogram per second to this interval log (`.hlog`).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Print a `{"progress":…}` line each second: with `--latency` when a second of
    /// measurement closes (its p99.9 and max), otherwise each second from the first frame.
    #[arg(long)]
    pub progress: bool,
    /// Stop when no byte has arrived for this long after the first frame (0: never).
    #[arg(long, default_value_t = 0)]
    pub idle_ms: u64,
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
/// Frames go through the client library: each is copied into its send buffer with the
/// sequence, the time and (with `--crc`) the checksum filled in.
pub fn publish(args: &PublishArgs) -> Result<(), String> {
    let load = &args.load;
    crate::pin(&load.core)?;
    let frame = template(load.domain, load.size)?;
    let header = Header::view(&frame).ok_or("the template has a header")?;
    let domain = header.domain().ok_or("the template has a domain")?;
    let options =
        PublisherOptions::new(domain, header.source()).checksum(load.checksum).confirm(args.confirm);
    let socket = args.socket.display();
    let mut publisher = Publisher::connect(&args.socket, options).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut lateness = crate::latency::hdr::histogram();
    let mut writes = crate::latency::hdr::histogram();
    let sent = (|| {
        let mut sent = 0u64;
        match load.rate {
            Some(rate) => {
                // Sleeps end when asked, not up to 50 µs later (the default timer slack).
                _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
                let period_ns = 1e9 / rate;
                let first = epoch_ns() + 1_000_000;
                let due = |i: u64| first + (i as f64 * period_ns) as u64;
                while sent < load.frames {
                    let now = epoch_ns();
                    if now < due(sent) {
                        sleep_until(due(sent));
                        continue;
                    }
                    while sent < load.frames && due(sent) <= now {
                        publisher.offer_at(&frame, due(sent))?;
                        lateness.saturating_record((now - due(sent)).max(1));
                        sent += 1;
                    }
                    publisher.flush()?;
                    writes.saturating_record(epoch_ns().saturating_sub(now).max(1));
                }
            }
            None => {
                // Batches of 1024 frames built once, stamped in place and sent without a
                // copy, with one clock reading each, as the hand-written client wrote them.
                let mut batch = frame.repeat(1024);
                let stop = load.seconds.map(|s| start + Duration::from_secs_f64(s));
                while sent < load.frames && stop.is_none_or(|stop| Instant::now() < stop) {
                    let count = (load.frames - sent).min(1024);
                    publisher.send_frames(&mut batch[..count as usize * load.size], epoch_ns())?;
                    sent += count;
                }
                publisher.flush()?;
            }
        }
        if args.confirm {
            let settled = publisher.settle(Duration::from_secs(30))?;
            if settled.accepted != settled.sent {
                return Err(torq::client::Error::Refused {
                    path: args.socket.clone(),
                    text: format!("{} of {} frames accepted", settled.accepted, settled.sent),
                });
            }
        }
        Ok::<u64, torq::client::Error>(sent)
    })()
    .map_err(|e| format!("publish to {socket}: {e}"))?;
    println!("{}", load.report(sent, start.elapsed().as_secs_f64(), &lateness, &writes));
    Ok(())
}

/// Sleeps until `epoch_ns` (ns since the Unix epoch) on the realtime clock, the clock the
/// timestamps are read from.
pub fn sleep_until(epoch_ns: u64) {
    use rustix::thread::{ClockId, Timespec, clock_nanosleep_absolute};
    let at =
        Timespec { tv_sec: (epoch_ns / 1_000_000_000) as i64, tv_nsec: (epoch_ns % 1_000_000_000) as i64 };
    _ = clock_nanosleep_absolute(ClockId::Realtime, &at); // EINTR: the caller checks the time
}

/// Why a subscriber stopped.
#[derive(Debug, Clone, Copy)]
pub enum End {
    Frames,
    Eof,
    Idle,
}

/// What a subscriber counted.
#[derive(Debug, Default)]
pub struct Counts {
    pub frames: u64,
    pub bytes: u64,
    pub gaps: u64,
    pub notices: u64,
    /// Frames the relay's drop notices counted (over shared memory: the reader's overruns).
    pub relay_dropped: u64,
    /// Drop notices (each one run of frames lost).
    pub drop_notices: u64,
    pub refused: Option<String>,
}

/// A subscriber's counts, latency histograms and progress lines, whatever its frames come
/// through (a relay, NATS).
#[derive(Debug)]
pub struct Tally<'a> {
    args: &'a CountArgs,
    pub counts: Counts,
    recorder: crate::latency::hdr::Recorder,
    closed_a_second: bool,
    first: Option<Instant>,
    last: Instant,
    /// Without `--latency`: when the next progress line is due.
    next_progress: Option<Instant>,
}

impl<'a> Tally<'a> {
    pub fn new(args: &'a CountArgs) -> Tally<'a> {
        Tally {
            args,
            counts: Counts::default(),
            recorder: crate::latency::hdr::Recorder::default(),
            closed_a_second: false,
            first: None,
            last: Instant::now(),
            next_progress: None,
        }
    }

    /// Whether every frame wanted has come.
    pub fn done(&self) -> bool {
        self.counts.frames >= self.args.frames
    }

    /// How long to wait for the next frame: `--idle-ms` once frames have come, else an hour.
    pub fn patience(&self) -> Duration {
        match (self.first, self.args.idle_ms) {
            (Some(_), ms) if ms > 0 => Duration::from_millis(ms),
            _ => Duration::from_secs(3600),
        }
    }

    /// Counts a data frame (of `len` bytes) and records its latency; frames past the number
    /// wanted are ignored.
    #[inline]
    pub fn frame(&mut self, header: &Header, len: usize) {
        if self.done() {
            return;
        }
        if self.args.latency && header.sequence() > self.args.warmup_frames {
            self.closed_a_second |= self.recorder.record(header.timestamp(), epoch_ns());
        }
        self.counts.frames += 1;
        self.counts.bytes += len as u64;
    }

    /// Records the latency of a frame sent at `timestamp` (ns), received now.
    #[inline]
    pub fn record(&mut self, timestamp: u64) {
        self.closed_a_second |= self.recorder.record(timestamp, epoch_ns());
    }

    /// After a batch of events: notes the time of the last frame and prints a progress line
    /// when one is due.
    pub fn batch_done(&mut self, handled: usize) {
        if handled > 0 && self.counts.frames > 0 {
            self.last = Instant::now();
            self.first.get_or_insert(self.last);
        }
        if !self.args.progress {
            return;
        }
        let line = if self.args.latency {
            if !std::mem::take(&mut self.closed_a_second) {
                return;
            }
            let Some(interval) = self.recorder.last_closed() else { return };
            let h = &interval.histogram;
            json!({"progress": {"second": interval.start_s, "frames": self.counts.frames,
                "p99_9": h.value_at_quantile(0.999), "max": h.max()}})
        } else {
            let Some(first) = self.first else { return };
            let due = self.next_progress.get_or_insert(first + Duration::from_secs(1));
            if self.last < *due {
                return;
            }
            *due += Duration::from_secs(1);
            json!({"progress": {"second": (self.last - first).as_secs(), "frames": self.counts.frames}})
        };
        println!("{line}");
        _ = std::io::Write::flush(&mut std::io::stdout());
    }

    /// The report, one JSON object: frames, bytes, elapsed_s (first to last frame), rate,
    /// gaps, end, notices, relay_dropped, cpu_s and, with `--latency`, latency_ns; writes the
    /// interval log when asked. `source` names where the frames came from (in the log).
    pub fn report(self, end: End, source: &str) -> Result<serde_json::Value, String> {
        let counts = &self.counts;
        let elapsed = self.first.map_or(0.0, |first| (self.last - first).as_secs_f64());
        let mut line = json!({
            "role": "subscriber",
            "frames": counts.frames,
            "bytes": counts.bytes,
            "elapsed_s": elapsed,
            "rate": if elapsed > 0.0 { counts.frames as f64 / elapsed } else { 0.0 },
            "gaps": counts.gaps,
            "end": format!("{end:?}").to_lowercase(),
            "notices": counts.notices,
            "relay_dropped": counts.relay_dropped,
            "cpu_s": crate::machine::process_cpu_s(std::process::id()),
        });
        if self.args.latency {
            let base_ns = self.recorder.base_ns().unwrap_or(0);
            let intervals = self.recorder.finish();
            let total = crate::latency::hdr::total(intervals.iter().map(|i| &i.histogram));
            line["latency_ns"] = json!(crate::latency::hdr::Summary::of(&total));
            if let Some(path) = &self.args.hlog {
                let logged: Vec<_> = intervals
                    .into_iter()
                    .map(|i| crate::latency::hdr::Logged {
                        tag: None,
                        start_s: i.start_s as f64,
                        histogram: i.histogram,
                    })
                    .collect();
                let comment = format!("torq-perf subscribe: receive time - intended send time, ns; {source}");
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?,
                );
                crate::latency::hdr::write_interval_log(&mut file, base_ns, &[comment], &logged)?;
                std::io::Write::flush(&mut file).map_err(|e| format!("write {}: {e}", path.display()))?;
            }
        }
        Ok(line)
    }
}

impl Counts {
    /// Counts an event other than a frame (out of the per-frame path: they are rare).
    #[cold]
    #[inline(never)]
    fn other(&mut self, event: Event<torq::client::Frame<'_>>) {
        match event {
            // A sequence that goes back is as wrong in a measurement as one that skips.
            Event::Gap { .. } | Event::Restarted { .. } => self.gaps += 1,
            Event::Notice(notice) => {
                self.notices += 1;
                match notice {
                    Notice::Dropped { count, .. } => {
                        self.relay_dropped += count;
                        self.drop_notices += 1;
                    }
                    Notice::Merged { dropped, .. } => {
                        self.relay_dropped += dropped;
                        self.drop_notices += 1;
                    }
                    Notice::ProtocolError { text, .. } | Notice::AccessDenied { text, .. } => {
                        self.refused = Some(text);
                    }
                    _ => {}
                }
            }
            Event::Frame(_) | Event::Reconnected { .. } => {}
        }
    }
}

/// `torq-perf subscribe`: prints `ready` once connected (acknowledged with `--ack` or
/// `--transport shm`), then one JSON line ([`Tally::report`]): frames, gaps (sequence
/// discontinuities), why it stopped (`frames`, `eof` or `idle`), the relay's drop notices,
/// `transport` (what brought the data frames) and, asked for shared memory, `shm` (`idle`,
/// `granted`, `overrun_frames`, `overruns`); with `--latency`, the percentiles of the frames
/// after the warm-up. Frames come through the client library.
pub fn subscribe(args: &SubscribeArgs) -> Result<(), String> {
    crate::pin(&args.core)?;
    let socket = args.socket.display();
    let options = match args.transport {
        Transport::Shm => SubscriberOptions::new().shm(args.shm_idle.into()),
        Transport::Socket if args.ack => SubscriberOptions::new(),
        Transport::Socket => SubscriberOptions::legacy(),
    };
    let mut subscriber = Subscriber::connect(&args.socket, options).map_err(|e| e.to_string())?;
    let granted = subscriber.shared_memory();
    ready();
    let mut tally = Tally::new(&args.count);
    let end = loop {
        if tally.done() {
            break End::Frames;
        }
        match subscriber.wait(tally.patience()) {
            Ok(true) => {}
            Ok(false) => break End::Idle,
            Err(torq::client::Error::Closed { .. }) => break End::Eof,
            Err(e) => return Err(format!("subscribe to {socket}: {e}")),
        }
        let (wanted, latency, warmup) = (args.count.frames, args.count.latency, args.count.warmup_frames);
        // Counted in locals, which stay in registers through the loop (the tally goes to the
        // rare paths by reference).
        let (mut frames, mut bytes) = (tally.counts.frames, tally.counts.bytes);
        let handled = subscriber.poll(
            |event| match event {
                // Not a hello (the naive relay forwards it).
                Event::Frame(frame) if frames < wanted && !frame.payload().is_empty() => {
                    let header = frame.header();
                    let sequence = header.sequence();
                    // Later gaps come as events from the library; a late first frame here.
                    if frames == 0 && sequence != 1 {
                        tally.counts.gaps += 1;
                    }
                    if latency && sequence > warmup {
                        tally.record(header.timestamp());
                    }
                    frames += 1;
                    bytes += frame.bytes().len() as u64;
                }
                Event::Frame(_) => {}
                other => tally.counts.other(other),
            },
            4096,
        );
        (tally.counts.frames, tally.counts.bytes) = (frames, bytes);
        let handled = match handled {
            Ok(handled) => handled,
            // The frames before the end of stream were handled (and counted) first.
            Err(torq::client::Error::Closed { .. }) => break End::Eof,
            Err(e) => return Err(format!("subscribe to {socket}: {e}")),
        };
        if let Some(text) = tally.counts.refused.take() {
            return Err(format!("{socket}: the relay refused: {text}"));
        }
        tally.batch_done(handled);
    };
    let counts = &tally.counts;
    let transport = if granted { Transport::Shm } else { Transport::Socket };
    let shm = (args.transport == Transport::Shm).then(|| {
        // Over the log every drop notice is an overrun: no data frame comes over the socket.
        json!({"idle": args.shm_idle.name(), "granted": granted,
            "overrun_frames": if granted { counts.relay_dropped } else { 0 },
            "overruns": if granted { counts.drop_notices } else { 0 }})
    });
    let source = format!("{socket}, transport {}", transport.name());
    let mut line = tally.report(end, &source)?;
    line["transport"] = transport.name().into();
    if let Some(shm) = shm {
        line["shm"] = shm;
    }
    println!("{line}");
    Ok(())
}

/// Says `ready` on stdout (the driver starts the publisher once every subscriber has).
pub fn ready() {
    println!("ready");
    _ = std::io::Write::flush(&mut std::io::stdout());
}

/// A Subscribe control frame (the client library's builder).
pub fn subscribe_frame(subscribe: &Subscribe) -> Result<Vec<u8>, String> {
    torq::client::subscribe_frame(subscribe, epoch_ns()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use torq::protocol::{Checks, ChecksumLevel, FrameKind, MAGIC, validate};

    #[test]
    fn frames_have_the_asked_size_and_validate() {
        for (domain, relay_domain) in [
            (Domain::MarketData, RelayDomain::MarketData),
            (Domain::Signal, RelayDomain::Signal),
            (Domain::Execution, RelayDomain::Execution),
        ] {
            for size in [128, 300, 1024] {
                let frame = template(domain, size).unwrap();
                assert_eq!(frame.len(), size);
                let checks = Checks { checksum: ChecksumLevel::Verify, ..Checks::new(relay_domain) };
                assert_eq!(validate(&frame, &checks), Ok(FrameKind::Data));
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
