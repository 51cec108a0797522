//! `torq-pub`: JSON lines in torq-decode's schema → frames published to a relay.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use torq::client::{Error, Publisher, PublisherOptions};
use torq::protocol::{Header, RelayDomain};
use torq::tools::encode::Encoder;
use torq::tools::live::unix_ns;
use torq::tools::settle::Outcomes;

/// Publish frames described by JSON lines in the schema torq-decode prints.
///
/// Reads FILE (standard input when absent or `-`), one JSON object per line, and publishes
/// the frame each describes to the relay at --socket, in order, on one publisher connection.
/// Blank lines are skipped. A line gives:
///
///   domain_byte, source        required (0..=255)
///   version, flags             default 1 and 0
///   sequence                   default (or "auto"): one more than the last of its source
///   timestamp                  default (or "auto"): now, ns since the Unix epoch
///   checksum                   default (or "auto"): computed; a number is written as given
///                              (0 = "not computed", or a wrong one to test a relay)
///   tlvs                       required: an array, in wire order, of
///     {"type", "value": {…}}   the value built from its fields, named as torq-decode names
///                              them; fields left out are 0; integers, or "0x…" hex strings
///                              (byte arrays, or an integer written in hex)
///     {"type", "hex": "0x…"}   the value bytes as they are (any type)
///
/// `value` is supported for every layout torq-decode prints a value for: Trade (1), Quote
/// (2), OrderBook (3, with bids/asks arrays of {price, size, order_count}), QuoteUpdate
/// (17), SignalIdentity (20), ArbitrageSignal (32), OrderRequest (40), OrderStatus (41),
/// Fill (42), OrderCancel (43), OrderModify (44), Heartbeat (100), Subscribe (116: role,
/// options, filters of {kind, lo, hi, source, venue, asset_type, reserved, asset_id}) and
/// RelayNotice (117: code, sequence, text). Any other type takes `hex`. A TLV whose value is
/// over 255 bytes uses the extended form; `"extended": true` forces it for a shorter one.
///
/// What torq-decode adds for reading may stay: `offset`, `checksum_ok`, `value_error` are
/// ignored; `payload_size`, `len`, `name` must agree with what is built; when a TLV has
/// both `value` and `hex` they must agree. An error line of `torq-decode --hex` (a frame it
/// framed but could not decode) is sent as its `hex`, the whole frame. So
///
///   torq-decode --hex capture.bin | torq-pub --socket /tmp/md.sock
///
/// re-sends every frame of a capture byte for byte, and an order can be written by hand (one
/// object per line; here a limit order for BTC/USD on Kraken):
///
///   {"domain_byte": 2, "source": 99, "tlvs": [{"type": 40, "value": {"order_id": 1, "asset_id": "0x4254432f55534400", "venue": 101, "asset_type": 51, "order_type": 1, "price": 4500000000000, "quantity": 100000000}}]}
///
/// Frames are written when a batch fills or the input pauses, so typed lines go out at once.
///
/// The relay confirms every frame (PROTOCOL.md §6, publisher confirms): a frame it rejects
/// is named on standard error by its line, with the relay's reason, and the frames after it
/// are still sent (a rejection no longer closes the connection). A line whose frame the
/// relay cannot take at all — larger than its max_message_size, or a Subscribe/RelayNotice
/// control frame, which would replace this connection's subscription — is not sent, named
/// with the reason, and the lines after it go on. At the end it waits (at most
/// --confirm-timeout) until the relay has settled everything and prints how many frames were
/// accepted, rejected and left unconfirmed. --legacy sends the legacy hello instead: the
/// relay then says nothing, and on Execution closes the connection at the first rejected
/// frame.
///
/// Exit status: 0 when every frame was accepted (with --legacy: written); 1 when any was
/// rejected, refused or left unconfirmed, at the first line that is not a frame (the message
/// names the line number and the field; the frames before it were sent and are confirmed),
/// or when the relay is not there or goes away; 2 for a bad flag or a FILE that cannot be
/// opened.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The relay's Unix socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// JSON lines; standard input when absent or `-`.
    file: Option<PathBuf>,
    /// How long to wait at the end for the relay to confirm every frame, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    confirm_timeout: Duration,
    /// Say the legacy hello and ask for no confirmation (rejections go unreported).
    #[arg(long)]
    legacy: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

/// An input line, for messages.
#[derive(Debug, Clone)]
struct Line<'a> {
    name: &'a str,
    number: u64,
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.name, self.number)
    }
}

/// The longest line read (a frame of 4 MiB as hex, with room to spare).
const MAX_LINE: u64 = 16 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    let (input, name): (Box<dyn Read>, String) = match &args.file {
        Some(path) if path.as_os_str() != "-" => match File::open(path) {
            Ok(file) => (Box::new(file), path.display().to_string()),
            Err(e) => {
                eprintln!("torq-pub: cannot open {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        _ => (Box::new(io::stdin().lock()), "standard input".to_string()),
    };
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut encoder = Encoder::new();
    let mut publisher: Option<Publisher> = None;
    let mut outcomes = Outcomes::new("torq-pub");
    let mut published = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    let result = loop {
        number += 1;
        line.clear();
        match (&mut input).take(MAX_LINE + 1).read_until(b'\n', &mut line) {
            Ok(0) => break Ok(()),
            Ok(_) if line.len() as u64 > MAX_LINE => {
                break Err(format!("{name} line {number}: longer than {MAX_LINE} bytes"));
            }
            Ok(_) => {}
            Err(e) => break Err(format!("reading {name}: {e}")),
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            break Err(format!("{name} line {number}: not UTF-8"));
        };
        if text.trim().is_empty() {
            continue;
        }
        let json = match serde_json::from_str(text) {
            Ok(json) => json,
            Err(e) => break Err(format!("{name} line {number}: not JSON: {e}")),
        };
        let frame = match encoder.frame(&json, unix_ns()) {
            Ok(frame) => frame,
            Err(e) => break Err(format!("{name} line {number}: {e}")),
        };
        if publisher.is_none() {
            let header = Header::view(&frame).expect("a built frame holds a header");
            let domain = header.domain().unwrap_or(RelayDomain::System);
            let options = PublisherOptions::new(domain, header.source()).confirm(!args.legacy);
            match Publisher::connect(&args.socket, options) {
                Ok(connected) => publisher = Some(connected),
                Err(e) => break Err(e.to_string()),
            }
        }
        let Some(sender) = publisher.as_mut() else { unreachable!("connected above") };
        let line = Line { name: &name, number };
        match sender.offer_verbatim(&frame) {
            Ok(()) => outcomes.sent(sender, &frame, line),
            // The relay could not take it: say so and go on with the next line.
            Err(e @ (Error::Frame(_) | Error::ControlFrame(_))) => {
                outcomes.refused(&line, &e);
                continue;
            }
            Err(e) => break Err(format!("{line}: {e}")),
        }
        published += 1;
        // Nothing more to read right now (a person typing, a pause): send what waits.
        if input.buffer().is_empty() {
            if let Err(e) = sender.flush() {
                break Err(e.to_string());
            }
            outcomes.report(sender);
        }
    };
    if let Err(e) = &result {
        eprintln!("torq-pub: {e}");
    }
    if args.legacy {
        let flushed = publisher.as_mut().map_or(Ok(()), Publisher::flush);
        eprintln!("torq-pub: published {published} frames (--legacy: not confirmed)");
        return match (result, flushed) {
            (Ok(()), Ok(())) => ExitCode::SUCCESS,
            (_, Err(e)) => {
                eprintln!("torq-pub: {e}");
                ExitCode::from(1)
            }
            _ => ExitCode::from(1),
        };
    }
    let closing = outcomes.finish(publisher.as_mut(), args.confirm_timeout);
    eprintln!("torq-pub: {closing}");
    if result.is_ok() && closing.clean() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
