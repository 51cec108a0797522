//! The soak's clients: threads of the driver that connect, subscribe or publish for a few
//! seconds, disconnect and start again, until told to stop — plus client processes
//! (`torq-perf publish` and `torq-perf subscribe`) killed with SIGKILL, and the execution
//! subscribers that stay connected for the whole run.
//!
//! Every data frame carries the id of its publisher session in its last 8 bytes (the padding
//! TLV; 0 for the `torq-perf publish` processes, whose frames are not tracked) and the
//! session's sequence, 1, 2, 3 … in its header, so a subscriber can tell, per publisher,
//! whether a frame arrived out of order, twice, or after a gap.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;
use torq::protocol::{
    Filter, HEADER_SIZE, Header, MAGIC, OPTION_HEARTBEATS, OPTION_NOTICES, RelayDomain, RelayNotice, Role,
    Subscribe, VenueId, notice, registry, tlvs,
};

use super::rng::Rng;
use crate::clients::{self, Domain, LEGACY_HELLO};

/// The three domains, in the order of every per-domain array here.
pub const DOMAINS: [Domain; 3] = [Domain::MarketData, Domain::Signal, Domain::Execution];
/// Frames per write of a publisher, at most.
const BATCH: usize = 1024;
/// How long a publisher waits between two writes.
const TICK: Duration = Duration::from_millis(2);
/// A read or a write that takes longer than this is a client error: the relay never
/// pauses a publisher or leaves a reader without a byte for this long.
const READ_TICK: Duration = Duration::from_millis(100);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// One session lasts this long (uniform between the two).
const SESSION_MS: (u64, u64) = (1000, 5000);
/// A slow subscriber reads this much, then sleeps `SLOW_PAUSE`: 3.2 MB/s at most, a quarter
/// of the default market-data load, and a full 4 MiB queue drains in ~1.3 s, so the drop
/// notices queued behind it arrive within a session.
const SLOW_READ: usize = 32 * 1024;
const SLOW_PAUSE: Duration = Duration::from_millis(10);
/// Error messages kept for the report.
const KEPT_ERRORS: usize = 10;

fn slot(domain: Domain) -> usize {
    DOMAINS.iter().position(|d| *d == domain).unwrap_or(0)
}

/// What the clients of one domain did.
#[derive(Debug, Default)]
pub struct Counts {
    /// Sessions started (publishers and subscribers, threads only).
    pub sessions: AtomicU64,
    /// Sessions ended abruptly: a publisher closing in the middle of a frame, a subscriber
    /// that stops reading and closes with frames queued to it.
    pub aborted: AtomicU64,
    /// Whole frames written by the publisher threads.
    pub published: AtomicU64,
    /// Data frames received by the subscriber threads (not the whole-run subscribers).
    pub received: AtomicU64,
    /// Frames the relay said it dropped (notice 4).
    pub relay_dropped: AtomicU64,
    /// A publisher's frame that arrived after a later one of the same publisher, or twice.
    pub disordered: AtomicU64,
    /// Frames missing between two frames of one publisher received by a subscriber that
    /// stayed connected and reading in between (counted for the lossless domain only).
    pub gaps: AtomicU64,
}

/// Everything the clients share.
#[derive(Debug)]
pub struct Load {
    sockets: [PathBuf; 3],
    size: usize,
    rates: [f64; 3],
    exe: PathBuf,
    stop: AtomicBool,
    finish: AtomicBool,
    next_id: AtomicU64,
    /// Per domain, in the order of [`DOMAINS`].
    pub counts: [Counts; 3],
    /// Execution publisher sessions: (id, whole frames written). Every one must reach every
    /// whole-run subscriber.
    pub ledger: Mutex<Vec<(u64, u64)>>,
    /// Client processes killed with SIGKILL.
    pub killed: AtomicU64,
    /// Connections opened and closed at once: bare, after a hello, or after 32 bytes of
    /// garbage (a protocol error for the relay).
    pub flashes: AtomicU64,
    /// Client errors (anything a client did not expect: a refused connection, a failed
    /// write, a protocol-error notice, the relay closing a connection).
    pub errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Load {
    /// Clients of the relays on `sockets` (market data, signal, execution), frames of `size`
    /// bytes, `rates` frames/s per domain for all its publisher threads together; `exe` is
    /// `torq-perf`, for the client processes.
    pub fn new(sockets: [PathBuf; 3], size: usize, rates: [f64; 3], exe: PathBuf) -> Self {
        Load {
            sockets,
            size,
            rates,
            exe,
            stop: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            counts: Default::default(),
            ledger: Mutex::new(Vec::new()),
            killed: AtomicU64::new(0),
            flashes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    /// Ends the churn: every session ends within a read tick, publishers with a clean close.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Ends the whole-run subscribers (once the relay has stopped, if it never closes them).
    pub fn finish(&self) {
        self.finish.store(true, Relaxed);
    }

    fn error(&self, message: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut kept = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_ERRORS {
            kept.push(message);
        }
    }

    /// The first client errors.
    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn connect(&self, domain: Domain) -> Result<UnixStream, String> {
        let socket = &self.sockets[slot(domain)];
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))
    }

    /// A data frame of this load's size for `domain`, marked with publisher `id`.
    fn frame(&self, domain: Domain, id: u64) -> Result<Vec<u8>, String> {
        let mut frame = clients::template(domain, self.size)?;
        let len = frame.len();
        frame[len - 8..].copy_from_slice(&id.to_le_bytes());
        Ok(frame)
    }
}

/// What a churning client thread does, session after session.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Publishes at this many frames/s.
    Publisher(f64),
    /// Reads everything as it comes.
    Subscriber,
    /// Reads at most 3.2 MB/s: market data drops frames for it.
    SlowSubscriber,
    /// Starts `torq-perf publish` (or `subscribe`) processes and kills them.
    Processes { publishers: bool },
}

/// Starts the churning clients: per domain, publisher threads sharing the domain's rate and
/// subscriber threads (market data: two fast, two slow; signal: one publisher, two
/// subscribers; execution: two publishers, one churning subscriber), and two threads of
/// killed client processes. Each thread's choices come from `seed`.
pub fn start(load: &Arc<Load>, seed: u64) -> Vec<JoinHandle<()>> {
    let [md, signal, execution] = load.rates;
    let slots = [
        (Domain::MarketData, Part::Publisher(md / 2.0)),
        (Domain::MarketData, Part::Publisher(md / 2.0)),
        (Domain::MarketData, Part::Subscriber),
        (Domain::MarketData, Part::Subscriber),
        (Domain::MarketData, Part::SlowSubscriber),
        (Domain::MarketData, Part::SlowSubscriber),
        (Domain::Signal, Part::Publisher(signal)),
        (Domain::Signal, Part::Subscriber),
        (Domain::Signal, Part::Subscriber),
        (Domain::Execution, Part::Publisher(execution / 2.0)),
        (Domain::Execution, Part::Publisher(execution / 2.0)),
        (Domain::Execution, Part::Subscriber),
        (Domain::MarketData, Part::Processes { publishers: true }),
        (Domain::MarketData, Part::Processes { publishers: false }),
    ];
    slots
        .into_iter()
        .enumerate()
        .map(|(i, (domain, role))| {
            let load = Arc::clone(load);
            let mut rng = Rng::new(seed.wrapping_add(i as u64));
            std::thread::spawn(move || {
                while !load.stopping() {
                    let length = rng.millis(SESSION_MS);
                    let result = match role {
                        Part::Publisher(rate) => publish(&load, domain, rate, length, &mut rng),
                        Part::Subscriber => subscribe(&load, domain, false, length, &mut rng),
                        Part::SlowSubscriber => subscribe(&load, domain, true, length, &mut rng),
                        Part::Processes { publishers } => processes(&load, publishers, length, &mut rng),
                    };
                    if let Err(message) = result {
                        load.error(message);
                        std::thread::sleep(READ_TICK);
                    }
                }
            })
        })
        .collect()
}

/// Writes `bytes`, counting what was written even when a write fails.
fn write_counted(stream: &mut UnixStream, mut bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return (written, Err(ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// One publisher session: the legacy hello or a Subscribe with role publish, then frames at
/// `rate` for `length` (or until the stop), then a clean close — or, one session in four, half
/// a frame and an abrupt close. Execution sessions go into the ledger.
fn publish(load: &Load, domain: Domain, rate: f64, length: Duration, rng: &mut Rng) -> Result<(), String> {
    let counts = &load.counts[slot(domain)];
    let mut stream = load.connect(domain)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
    let id = load.next_id.fetch_add(1, Relaxed);
    let frame = load.frame(domain, id)?;
    let size = frame.len();
    let crc = domain != Domain::MarketData;
    let mut batch = frame.repeat(BATCH);
    let abrupt = rng.one_in(4);
    counts.sessions.fetch_add(1, Relaxed);
    counts.aborted.fetch_add(u64::from(abrupt), Relaxed);
    let opening = if rng.one_in(2) {
        LEGACY_HELLO.to_vec()
    } else {
        clients::subscribe_frame(&Subscribe { role: Role::Publish, options: 0, filters: Vec::new() })?
    };
    let mut sent = 0u64;
    let result = (|| {
        stream.write_all(&opening)?;
        let start = Instant::now();
        while start.elapsed() < length && !load.stopping() {
            std::thread::sleep(TICK);
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            while sent < due {
                let count = (due - sent).min(BATCH as u64) as usize;
                let now = clients::epoch_ns();
                for (i, frame) in batch[..count * size].chunks_exact_mut(size).enumerate() {
                    clients::stamp(frame, sent + 1 + i as u64, now, crc);
                }
                let (written, result) = write_counted(&mut stream, &batch[..count * size]);
                let whole = (written / size) as u64;
                sent += whole;
                counts.published.fetch_add(whole, Relaxed);
                result?;
            }
        }
        if abrupt {
            clients::stamp(&mut batch[..size], sent + 1, clients::epoch_ns(), crc);
            stream.write_all(&batch[..size / 2])?;
        }
        Ok::<(), io::Error>(())
    })();
    drop(stream);
    if domain == Domain::Execution {
        load.ledger.lock().unwrap_or_else(|e| e.into_inner()).push((id, sent));
    }
    result.map_err(|e| format!("{} publisher {id}: {e} after {sent} frames", domain.name()))
}

/// What a subscriber reads: frames framed by their header's size.
#[derive(Debug)]
struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One frame as the soak's subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Hello,
    /// A data frame of publisher `id` (0: not tracked).
    Data {
        id: u64,
        sequence: u64,
    },
    Notice {
        code: u16,
        text: String,
    },
    /// A Heartbeat or another System frame.
    System,
}

impl Reader {
    fn new() -> Self {
        Reader { buf: vec![0; 1 << 20], start: 0, end: 0 }
    }

    /// Reads at most `max` bytes; `Ok(0)` at end of stream.
    fn fill(&mut self, stream: &mut UnixStream, max: usize) -> io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let room = (self.buf.len() - self.end).min(max);
        let n = stream.read(&mut self.buf[self.end..self.end + room])?;
        self.end += n;
        Ok(n)
    }

    /// The next whole frame read, as a range of the buffer.
    fn next(&mut self) -> Result<Option<Range<usize>>, String> {
        let Some(header) = Header::view(&self.buf[self.start..self.end]) else { return Ok(None) };
        let len = header.frame_len() as usize;
        if header.magic() != MAGIC || len > self.buf.len() || len < HEADER_SIZE {
            return Err("a broken stream (bad magic or size)".to_string());
        }
        if self.end - self.start < len {
            return Ok(None);
        }
        self.start += len;
        Ok(Some(self.start - len..self.start))
    }
}

/// Classifies a frame; data frames must be `size` bytes.
fn classify(frame: &[u8], size: usize) -> Result<Frame, String> {
    let Some(header) = Header::view(frame) else { return Err("a short frame".to_string()) };
    if frame.len() == HEADER_SIZE {
        return Ok(Frame::Hello);
    }
    if header.domain_byte() == RelayDomain::System.raw() {
        let first = tlvs(&frame[HEADER_SIZE..]).next().transpose().map_err(|e| format!("a bad TLV: {e}"))?;
        return match first {
            Some(tlv) if tlv.tlv_type == registry::RELAY_NOTICE => {
                let notice = RelayNotice::parse(tlv.value).map_err(|e| format!("a bad notice: {e}"))?;
                Ok(Frame::Notice { code: notice.code, text: notice.text.to_string() })
            }
            _ => Ok(Frame::System),
        };
    }
    if frame.len() != size {
        return Err(format!("a data frame of {} bytes (the load sends {size})", frame.len()));
    }
    let id = u64::from_le_bytes(frame[size - 8..].try_into().map_err(|_| "short frame")?);
    Ok(Frame::Data { id, sequence: header.sequence() })
}

/// Frames drops announced by a notice 4 (`dropped=<n>`), 0 for any other text.
fn dropped_in(text: &str) -> u64 {
    text.strip_prefix("dropped=").and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Per publisher, the last sequence a subscriber received and what went wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Track {
    /// The last (highest) sequence received.
    pub last: u64,
    /// Frames received.
    pub frames: u64,
    /// Sequences skipped between frames received (with `from_one`, before the first too).
    pub gaps: u64,
    /// Frames that arrived after a later one, or twice.
    pub disordered: u64,
}

/// Per publisher id, what a subscriber received.
pub type Tracks = HashMap<u64, Track>;

/// A subscriber's view of every publisher it heard from.
#[derive(Debug, Default)]
struct Tracker {
    publishers: Tracks,
    /// Sequences are expected from 1 (a subscriber connected before every publisher);
    /// otherwise from the first one received.
    from_one: bool,
}

impl Tracker {
    fn see(&mut self, id: u64, sequence: u64) {
        let from_one = self.from_one;
        let track = self.publishers.entry(id).or_insert_with(|| Track {
            last: if from_one { 0 } else { sequence.saturating_sub(1) },
            ..Track::default()
        });
        track.frames += 1;
        if sequence > track.last {
            track.gaps += sequence - track.last - 1;
            track.last = sequence;
        } else {
            track.disordered += 1;
        }
    }

    fn totals(&self) -> Track {
        self.publishers.values().fold(Track::default(), |sum, t| Track {
            last: 0,
            frames: sum.frames + t.frames,
            gaps: sum.gaps + t.gaps,
            disordered: sum.disordered + t.disordered,
        })
    }
}

/// A Subscribe of the kind clients of `domain` send, or `None` for a legacy subscriber
/// (which sends nothing). Filters always match every frame of the load: a subscriber's
/// frames may never have gaps except for drops.
fn subscription(domain: Domain, rng: &mut Rng) -> Option<Subscribe> {
    let options = match rng.below(4) {
        0 => return None,
        1 => OPTION_NOTICES,
        2 => OPTION_NOTICES | OPTION_HEARTBEATS,
        _ => 0,
    };
    let filters = match (rng.below(3), domain) {
        (0, _) => Vec::new(),
        (1, Domain::MarketData) => vec![Filter::Venue(VenueId::Kraken.raw())],
        (_, Domain::MarketData) => vec![Filter::TypeRange { lo: 1, hi: 1 }],
        (_, Domain::Signal) => vec![Filter::TypeRange { lo: 20, hi: 20 }],
        (_, Domain::Execution) => vec![Filter::TypeRange { lo: 40, hi: 40 }],
    };
    Some(Subscribe { role: Role::Subscribe, options, filters })
}

/// One subscriber session: legacy or one of the Subscribes, reading fast or slowly for
/// `length`; one session in four stops reading for a while and closes with frames queued.
/// Frames of each publisher must arrive in order; in the lossless domain, without gaps too.
fn subscribe(load: &Load, domain: Domain, slow: bool, length: Duration, rng: &mut Rng) -> Result<(), String> {
    let counts = &load.counts[slot(domain)];
    let mut stream = load.connect(domain)?;
    stream.set_read_timeout(Some(READ_TICK)).map_err(|e| e.to_string())?;
    let abrupt = rng.one_in(4);
    counts.sessions.fetch_add(1, Relaxed);
    counts.aborted.fetch_add(u64::from(abrupt), Relaxed);
    if let Some(subscribe) = subscription(domain, rng) {
        stream.write_all(&clients::subscribe_frame(&subscribe)?).map_err(|e| e.to_string())?;
    }
    let name = domain.name();
    let mut reader = Reader::new();
    let mut tracker = Tracker::default();
    let start = Instant::now();
    let reading = if abrupt { length.saturating_sub(Duration::from_millis(500)) } else { length };
    let result = (|| {
        while start.elapsed() < reading && !load.stopping() {
            match reader.fill(&mut stream, if slow { SLOW_READ } else { usize::MAX }) {
                Ok(0) => return Err(format!("{name} subscriber: the relay closed the connection")),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{name} subscriber: {e}")),
            }
            let mut received = 0;
            while let Some(range) = reader.next().map_err(|e| format!("{name} subscriber: {e}"))? {
                match classify(&reader.buf[range], load.size)
                    .map_err(|e| format!("{name} subscriber: {e}"))?
                {
                    Frame::Data { id, sequence } => {
                        received += 1;
                        if id != 0 {
                            tracker.see(id, sequence);
                        }
                    }
                    Frame::Notice { code: notice::DROPPED, text } => {
                        counts.relay_dropped.fetch_add(dropped_in(&text), Relaxed);
                    }
                    Frame::Notice { code: code @ (notice::PROTOCOL_ERROR | notice::ACCESS_DENIED), text } => {
                        return Err(format!("{name} subscriber: relay notice {code}: {text}"));
                    }
                    Frame::Hello | Frame::Notice { .. } | Frame::System => {}
                }
            }
            counts.received.fetch_add(received, Relaxed);
            if slow {
                std::thread::sleep(SLOW_PAUSE);
            }
        }
        if abrupt && !load.stopping() {
            std::thread::sleep(Duration::from_millis(500)); // frames pile up, then the close
        }
        Ok(())
    })();
    let totals = tracker.totals();
    counts.disordered.fetch_add(totals.disordered, Relaxed);
    if domain == Domain::Execution {
        counts.gaps.fetch_add(totals.gaps, Relaxed);
    }
    result
}

/// One client process: `torq-perf publish` (paced, for a random domain) or `torq-perf
/// subscribe`, killed with SIGKILL after `length`; then a connection opened and closed at once
/// on each socket, bare, after a hello or after garbage.
fn processes(load: &Load, publishers: bool, length: Duration, rng: &mut Rng) -> Result<(), String> {
    let domain = DOMAINS[rng.below(3) as usize];
    let socket = &load.sockets[slot(domain)];
    let mut command = Command::new(&load.exe);
    if publishers {
        let rate = match domain {
            Domain::MarketData => 2000,
            Domain::Signal | Domain::Execution => 500,
        };
        command.args(["publish", "--frames", "1000000000", "--rate", &rate.to_string()]);
        command.args(["--domain", domain.name(), "--size", &load.size.to_string()]);
        command.args((domain != Domain::MarketData).then_some("--checksum"));
    } else {
        command.args(["subscribe", "--frames", &u64::MAX.to_string()]);
    }
    command.arg("--socket").arg(socket).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("start {}: {e}", load.exe.display()))?;
    let start = Instant::now();
    let mut early = None;
    while start.elapsed() < length && !load.stopping() {
        if let Ok(Some(status)) = child.try_wait() {
            early = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    _ = child.kill();
    _ = child.wait();
    if let Some(status) = early {
        let what = if publishers { "publish" } else { "subscribe" };
        return Err(format!("torq-perf {what} on {} exited by itself: {status}", domain.name()));
    }
    load.killed.fetch_add(1, Relaxed);
    for domain in DOMAINS {
        let mut stream = load.connect(domain)?;
        // A failed write means the relay closed first: nothing to report.
        match rng.below(3) {
            0 => {}
            1 => _ = stream.write_all(&LEGACY_HELLO),
            _ => _ = stream.write_all(&[0xFF; HEADER_SIZE]), // bad magic: a protocol error
        }
        load.flashes.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// The kinds of whole-run execution subscribers.
pub const WHOLE_RUN: [&str; 4] = ["legacy", "subscribe", "subscribe+heartbeats", "subscribe+filter"];

/// A whole-run execution subscriber: connected before any execution publisher, reading
/// until the relay closes the connection (or the load finishes).
#[derive(Debug)]
pub struct WholeRun {
    /// Its kind, one of [`WHOLE_RUN`].
    pub kind: &'static str,
    /// Tracked frames received so far.
    pub tracked: Arc<AtomicU64>,
    thread: JoinHandle<Result<Tracks, String>>,
}

impl WholeRun {
    /// Connects subscriber `index` of [`WHOLE_RUN`]; it sends `index` on `ready` once the
    /// relay acknowledged its Subscribe, or (legacy) once it received an untracked frame.
    pub fn start(load: &Arc<Load>, index: usize, ready: Sender<usize>) -> Result<WholeRun, String> {
        let kind = WHOLE_RUN[index];
        let subscribe = |options, filters| Subscribe { role: Role::Subscribe, options, filters };
        let subscribe = match index {
            0 => None,
            1 => Some(subscribe(OPTION_NOTICES, Vec::new())),
            2 => Some(subscribe(OPTION_NOTICES | OPTION_HEARTBEATS, Vec::new())),
            _ => Some(subscribe(OPTION_NOTICES, vec![Filter::TypeRange { lo: 40, hi: 40 }])),
        };
        let mut stream = load.connect(Domain::Execution)?;
        stream.set_read_timeout(Some(READ_TICK)).map_err(|e| e.to_string())?;
        if let Some(subscribe) = &subscribe {
            stream.write_all(&clients::subscribe_frame(subscribe)?).map_err(|e| e.to_string())?;
        }
        let tracked = Arc::new(AtomicU64::new(0));
        let (load, count) = (Arc::clone(load), Arc::clone(&tracked));
        let thread = std::thread::spawn(move || {
            let fail = |e: String| format!("whole-run execution subscriber ({kind}): {e}");
            let mut reader = Reader::new();
            let mut tracker = Tracker { from_one: true, ..Tracker::default() };
            let mut ready = Some(ready);
            loop {
                match reader.fill(&mut stream, usize::MAX) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if load.finish.load(Relaxed) {
                            break;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(fail(e.to_string())),
                }
                let mut received = 0;
                while let Some(range) = reader.next().map_err(fail)? {
                    match classify(&reader.buf[range], load.size).map_err(fail)? {
                        Frame::Data { id: 0, .. } if subscribe.is_none() => {
                            if let Some(ready) = ready.take() {
                                _ = ready.send(index);
                            }
                        }
                        Frame::Data { id: 0, .. } => {}
                        Frame::Data { id, sequence } => {
                            tracker.see(id, sequence);
                            received += 1;
                        }
                        Frame::Notice { code: notice::SUBSCRIBED, .. } => {
                            if let Some(ready) = ready.take() {
                                _ = ready.send(index);
                            }
                        }
                        Frame::Notice { code: code @ (notice::REJECTED | notice::PROTOCOL_ERROR), text } => {
                            return Err(fail(format!("relay notice {code}: {text}")));
                        }
                        Frame::Hello | Frame::Notice { .. } | Frame::System => {}
                    }
                }
                count.fetch_add(received, Relaxed);
            }
            Ok(tracker.publishers)
        });
        Ok(WholeRun { kind, tracked, thread })
    }

    /// What it received, per publisher id, once it has stopped.
    pub fn join(self) -> Result<Tracks, String> {
        self.thread.join().map_err(|_| format!("whole-run subscriber ({}) panicked", self.kind))?
    }
}

/// Publishes untracked execution frames (id 0), one every 10 ms, until `done` says so or
/// `deadline` passes: the legacy whole-run subscriber is ready once it receives one.
pub fn probe(load: &Load, mut done: impl FnMut() -> bool, deadline: Instant) -> Result<(), String> {
    let mut stream = load.connect(Domain::Execution)?;
    let mut frame = load.frame(Domain::Execution, 0)?;
    stream.write_all(&LEGACY_HELLO).map_err(|e| format!("probe: {e}"))?;
    let mut sequence = 0;
    while !done() {
        if Instant::now() >= deadline {
            return Err("the whole-run execution subscribers were not ready within 10 s".to_string());
        }
        sequence += 1;
        clients::stamp(&mut frame, sequence, clients::epoch_ns(), true);
        stream.write_all(&frame).map_err(|e| format!("probe: {e}"))?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_counts_gaps_and_disorder_per_publisher() {
        let mut whole_run = Tracker { from_one: true, ..Tracker::default() };
        let mut joined_late = Tracker::default();
        for (id, sequence) in [(7, 1), (7, 2), (9, 3), (7, 5), (7, 4), (9, 4), (7, 5), (7, 6)] {
            whole_run.see(id, sequence);
            joined_late.see(id, sequence);
        }
        let seven = Track { last: 6, frames: 6, gaps: 2, disordered: 2 };
        assert_eq!(whole_run.publishers[&7], seven);
        assert_eq!(joined_late.publishers[&7], seven);
        // Publisher 9 was first heard at 3: missing 1 and 2 for a subscriber there from the
        // start, nothing for one that joined late.
        assert_eq!(whole_run.publishers[&9], Track { last: 4, frames: 2, gaps: 2, disordered: 0 });
        assert_eq!(joined_late.publishers[&9], Track { last: 4, frames: 2, gaps: 0, disordered: 0 });
        assert_eq!(whole_run.totals(), Track { last: 0, frames: 8, gaps: 4, disordered: 2 });
    }

    #[test]
    fn frames_carry_their_publisher() {
        let load = Load::new(Default::default(), 128, [0.0; 3], PathBuf::new());
        for domain in DOMAINS {
            let mut frame = load.frame(domain, 0x0123_4567_89AB_CDEF).unwrap();
            clients::stamp(&mut frame, 42, 1, true);
            assert_eq!(classify(&frame, 128), Ok(Frame::Data { id: 0x0123_4567_89AB_CDEF, sequence: 42 }));
            assert!(classify(&frame, 256).is_err(), "a frame of another size is not the load's");
        }
        assert_eq!(classify(&LEGACY_HELLO, 128), Ok(Frame::Hello));
        assert_eq!(dropped_in("dropped=12"), 12);
        assert_eq!(dropped_in("merged rejected=0 dropped=3"), 0);
    }

    #[test]
    fn the_reader_frames_a_stream_cut_anywhere() {
        let load = Load::new(Default::default(), 128, [0.0; 3], PathBuf::new());
        let frame = load.frame(Domain::MarketData, 5).unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let stream: Vec<u8> = [&LEGACY_HELLO[..], &frame, &frame].concat();
        let mut reader = Reader::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(50) {
            a.write_all(chunk).unwrap();
            reader.fill(&mut b, usize::MAX).unwrap();
            while let Some(range) = reader.next().unwrap() {
                frames.push(classify(&reader.buf[range], 128).unwrap());
            }
        }
        let data = Frame::Data { id: 5, sequence: 0 };
        assert_eq!(frames, [Frame::Hello, data.clone(), data]);
    }

    #[test]
    fn the_rng_spreads() {
        let mut rng = Rng::new(0);
        let mut seen = [0u32; 4];
        for _ in 0..4000 {
            seen[rng.below(4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        let length = rng.millis(SESSION_MS);
        assert!((1000..=5000).contains(&(length.as_millis() as u64)));
    }
}
