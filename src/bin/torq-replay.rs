//! `torq-replay`: a recording or a raw capture, published again with its recorded gaps.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use torq::client::{Error, Publisher, PublisherOptions};
use torq::protocol::{Framing, HEADER_SIZE, Header, RelayDomain, Subscribe, control_tlv, frame};
use torq::tools::args::FilterArgs;
use torq::tools::capture::Capture;
use torq::tools::capture::Next;
use torq::tools::live::stop_flag;
use torq::tools::settle::Outcomes;

/// Publish the frames of a recording (torq-record's pcapng) or of a raw capture again.
///
/// Reads FILE — pcapng when it starts with the bytes 0A 0D 0D 0A, otherwise frames back to
/// back — and sends every frame to the relay at --socket exactly as recorded (sequence,
/// timestamp, checksum and every other byte untouched), on one publisher connection.
/// Frames keep their recorded gaps divided by --speed: the gaps between the receive times
/// of a recording, or between the header timestamps of a raw capture. A gap longer than
/// --max-gap (a paused recording, timestamps out of step) is shortened to it, and a time
/// earlier than the one before means no wait. --speed max sends as fast as the relay takes
/// frames.
///
/// Hellos (payload_size 0) and control frames (Subscribe, RelayNotice) are not sent: a
/// connection's role is the replay's business. The filter flags (as torq-tap's: --type,
/// --source, --instrument, OR-ed) keep only the frames they match, by the routing rule of
/// PROTOCOL.md §6.
///
/// With --loop the file is sent again and again until SIGINT or SIGTERM, on the same
/// connection, so the order holds across passes (a relay that checks sequences, as
/// Execution does, rejects the repeated sequences of the second pass on).
///
///   torq-replay orders.pcapng --socket /tmp/torq-test/execution.sock
///   torq-replay capture.bin --socket /tmp/md.sock --speed max --type 1-2
///
/// The relay confirms every frame (PROTOCOL.md §6, publisher confirms): a frame it rejects
/// (a sequence it has seen, a missing checksum) is named on standard error by its place in
/// the file, with the relay's reason (the first 100; the rest are counted), and the frames
/// after it are still sent. A frame the relay cannot take at all (larger than its
/// max_message_size) is not sent and is named. --legacy sends the legacy hello instead: the
/// relay says nothing, and on Execution closes the connection at the first rejected frame.
///
/// Prints, at the end (also after a signal), the frames and bytes sent, the time taken and
/// the rate achieved, and what was skipped; then, once the relay has settled everything (at
/// most --confirm-timeout), how many frames it accepted and rejected and how many were left
/// unconfirmed.
///
/// Exit status: 0 when everything was sent and accepted (or a signal stopped it with all
/// that was sent accepted); 1 when a frame was rejected, refused or left unconfirmed, when
/// the relay is not there or goes away, or FILE is malformed (the message names the byte of
/// the file; the frames before it were sent); 2 for a bad flag or a FILE that cannot be
/// opened.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The recording or raw capture.
    file: PathBuf,
    /// The relay's Unix socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// How much faster than recorded: a positive number (0.5 is half speed), or `max`.
    #[arg(long, value_name = "X|max", default_value = "1", value_parser = parse_speed)]
    speed: Speed,
    /// The longest wait between two frames, in seconds (before --speed applies).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    max_gap: Duration,
    #[command(flatten)]
    filters: FilterArgs,
    /// Send the file again and again until SIGINT or SIGTERM.
    #[arg(long = "loop")]
    repeat: bool,
    /// How long to wait at the end for the relay to confirm every frame, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    confirm_timeout: Duration,
    /// Say the legacy hello and ask for no confirmation (rejections go unreported).
    #[arg(long)]
    legacy: bool,
}

#[derive(Debug, Clone, Copy)]
enum Speed {
    Factor(f64),
    Max,
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    if text == "max" {
        return Ok(Speed::Max);
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Speed::Factor(x)),
        _ => Err(format!("{text:?} is neither a positive number nor `max`")),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let subscribe = match args.filters.subscribe() {
        Ok(subscribe) => subscribe,
        Err(e) => return fail(2, &e),
    };
    let stop = match stop_flag() {
        Ok(flag) => flag,
        Err(e) => return fail(1, &format!("cannot install the signal handlers: {e}")),
    };
    let mut replay = Replay::new(&args, subscribe, stop);
    let outcome = loop {
        let file = match File::open(&args.file) {
            Ok(file) => file,
            Err(e) => return fail(2, &format!("cannot open {}: {e}", args.file.display())),
        };
        let outcome = replay.pass(BufReader::with_capacity(1 << 16, file));
        replay.passes += 1;
        if outcome.is_err() || !args.repeat || replay.stopped() {
            break outcome;
        }
    };
    println!("{}", replay.summary());
    if let Err(e) = &outcome {
        eprintln!("torq-replay: {e}");
    }
    if args.legacy {
        return if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let closing = replay.outcomes.finish(replay.publisher.as_mut(), args.confirm_timeout);
    println!("torq-replay: {closing}");
    if outcome.is_ok() && closing.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn fail(status: u8, message: &str) -> ExitCode {
    eprintln!("torq-replay: {message}");
    ExitCode::from(status)
}

/// Where a frame is in the file, for messages.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Byte offset of a raw capture.
    Raw(u64),
    /// File offset of a recording's packet block.
    Packet(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Raw(offset) => write!(f, "the frame at byte {offset}"),
            Place::Packet(offset) => write!(f, "the packet at byte {offset}"),
        }
    }
}

/// A place in the file, with the file's name, for the relay's verdicts.
#[derive(Debug, Clone)]
struct InFile<'a> {
    file: &'a Path,
    place: Place,
}

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.place)
    }
}

struct Replay<'a> {
    file: &'a Path,
    socket: &'a Path,
    speed: Speed,
    max_gap: u64,
    subscribe: Subscribe,
    stop: Arc<AtomicBool>,
    publisher: Option<Publisher>,
    confirm: bool,
    outcomes: Outcomes<InFile<'a>>,
    pacer: Pacer,
    first_sent: Option<Instant>,
    frames: u64,
    bytes: u64,
    skipped: u64,
    filtered: u64,
    passes: u64,
}

impl<'a> Replay<'a> {
    fn new(args: &'a Args, subscribe: Subscribe, stop: Arc<AtomicBool>) -> Self {
        Replay {
            file: &args.file,
            socket: &args.socket,
            speed: args.speed,
            max_gap: args.max_gap.as_nanos().min(u128::from(u64::MAX)) as u64,
            subscribe,
            stop,
            publisher: None,
            confirm: !args.legacy,
            outcomes: Outcomes::new("torq-replay"),
            pacer: Pacer::default(),
            first_sent: None,
            frames: 0,
            bytes: 0,
            skipped: 0,
            filtered: 0,
            passes: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sends the whole file once; what was queued before an error is sent too.
    fn pass(&mut self, input: impl std::io::Read) -> Result<(), String> {
        self.pacer = Pacer::default();
        let result = self.send_file(input);
        let flushed = self.publisher.as_mut().map_or(Ok(()), |p| p.flush().map_err(|e| e.to_string()));
        result.and(flushed)
    }

    fn send_file(&mut self, input: impl std::io::Read) -> Result<(), String> {
        let file = self.file.display().to_string();
        let capture = Capture::open(input).map_err(|e| format!("reading {file}: {e}"))?;
        match capture {
            Capture::Raw(mut frames) => loop {
                match frames.next_frame().map_err(|e| format!("reading {file}: {e}"))? {
                    Next::Frame { bytes, offset } => {
                        let time = Header::view(bytes).map(Header::timestamp);
                        if !self.send(bytes, time, Place::Raw(offset))? {
                            break;
                        }
                    }
                    Next::Broken { offset, message, .. } => {
                        return Err(format!("{file}: the frame at byte {offset}: {message}"));
                    }
                    Next::End => break,
                }
            },
            Capture::Pcapng(mut recording) => 'packets: loop {
                let packet = match recording.next_packet() {
                    Ok(Some(packet)) => packet,
                    Ok(None) => break,
                    Err(e) => return Err(format!("{file}: {e}")),
                };
                let (data, place) = (packet.data, Place::Packet(packet.offset));
                let mut at = 0;
                while at < data.len() {
                    let len = match frame(&data[at..], usize::MAX) {
                        Ok(Framing::Frame(len)) => len,
                        Ok(Framing::Incomplete(_)) => {
                            return Err(format!(
                                "{file}: {place} ends inside a frame (byte {at} of its data)"
                            ));
                        }
                        Err(e) => return Err(format!("{file}: {place}, byte {at} of its data: {e}")),
                    };
                    if !self.send(&data[at..at + len], packet.timestamp_ns, place)? {
                        break 'packets;
                    }
                    at += len;
                }
            },
        }
        Ok(())
    }

    /// Sends one frame when it is due; false when a signal says stop.
    fn send(&mut self, bytes: &[u8], time: Option<u64>, place: Place) -> Result<bool, String> {
        let header = Header::view(bytes).ok_or_else(|| format!("{place} is shorter than a header"))?;
        let payload = &bytes[HEADER_SIZE..];
        let control = header.domain() == Some(RelayDomain::System) && control_tlv(payload).is_some();
        if payload.is_empty() || control {
            self.skipped += 1;
            return Ok(true);
        }
        if !self.subscribe.wants_frame(bytes) {
            self.filtered += 1;
            return Ok(true);
        }
        if self.publisher.is_none() {
            let domain = header.domain().unwrap_or(RelayDomain::System);
            let options = PublisherOptions::new(domain, header.source()).confirm(self.confirm);
            self.publisher = Some(Publisher::connect(self.socket, options).map_err(|e| e.to_string())?);
        }
        let Some(publisher) = self.publisher.as_mut() else { unreachable!("connected above") };
        if let Speed::Factor(speed) = self.speed {
            let due = self.pacer.due(time, self.max_gap, speed);
            if due > Instant::now() {
                publisher.flush().map_err(|e| e.to_string())?;
                self.outcomes.report(publisher);
                while let Some(left) = due.checked_duration_since(Instant::now()) {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                }
            }
        }
        if self.stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let at = InFile { file: self.file, place };
        match publisher.offer_verbatim(bytes) {
            Ok(()) => self.outcomes.sent(publisher, bytes, at),
            // The relay could not take it: say so and go on.
            Err(e @ (Error::Frame(_) | Error::ControlFrame(_))) => {
                self.outcomes.refused(&at, &e);
                return Ok(true);
            }
            Err(e) => return Err(format!("{at}: {e}")),
        }
        if publisher.pending() == 0 {
            // A batch was written: take in what the relay said meanwhile.
            self.outcomes.report(publisher);
        }
        self.first_sent.get_or_insert_with(Instant::now);
        self.frames += 1;
        self.bytes += bytes.len() as u64;
        Ok(true)
    }

    fn summary(&self) -> String {
        let secs = self.first_sent.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = if secs > 0.0 { self.frames as f64 / secs } else { 0.0 };
        let mut line = format!(
            "torq-replay: sent {} frames ({} bytes) in {secs:.3} s: {rate:.0} frames/s, {:.1} MB/s",
            self.frames,
            self.bytes,
            if secs > 0.0 { self.bytes as f64 / secs / 1e6 } else { 0.0 }
        );
        if self.passes > 1 {
            line += &format!(" ({} passes)", self.passes);
        }
        if self.skipped > 0 {
            line += &format!("; {} hellos and control frames not sent", self.skipped);
        }
        if self.filtered > 0 {
            line += &format!("; {} frames filtered out", self.filtered);
        }
        line
    }
}

/// When each frame is due: the first at once, each next one after its recorded gap
/// (at most `max_gap`, never negative) divided by the speed.
#[derive(Debug, Default)]
struct Pacer {
    start: Option<Instant>,
    /// Recorded time elapsed since the first frame, gaps capped, in ns.
    elapsed: u64,
    last: Option<u64>,
}

impl Pacer {
    fn due(&mut self, time: Option<u64>, max_gap: u64, speed: f64) -> Instant {
        let start = *self.start.get_or_insert_with(Instant::now);
        if let (Some(time), Some(last)) = (time, self.last) {
            self.elapsed = self.elapsed.saturating_add(time.saturating_sub(last).min(max_gap));
        }
        if let Some(time) = time {
            self.last = Some(self.last.map_or(time, |last| last.max(time)));
        }
        let scaled = Duration::try_from_secs_f64(self.elapsed as f64 / 1e9 / speed).unwrap_or(Duration::MAX);
        start.checked_add(scaled).unwrap_or(start + Duration::from_secs(86_400 * 365))
    }
}
