//! `torq-decode`: Protocol V2 frames in a raw capture or a pcapng recording → one JSON object
//! per frame per line.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use torq::tools::decode::{Render, decode};

/// Decode Protocol V2 frames — a raw capture (frames back to back) or a pcapng recording of
/// torq-record — into JSON lines.
///
/// Reads FILE (or standard input when FILE is absent or `-`) and prints one JSON object per
/// frame on standard output:
///
///   {"offset", "domain_byte", "version", "source", "flags", "sequence", "timestamp",
///    "payload_size", "checksum", "checksum_ok", "tlvs": [{"type", "len", "name", "value"}]}
///
/// `offset` is the frame's byte offset in the stream; in a recording it counts bytes of
/// frames (the packets' data), not of the file. `checksum_ok` is true or false, or null when
/// the checksum is 0 ("not computed"). `name` appears for registered TLV types; `value` for
/// the layouts of PROTOCOL.md §4 and the Subscribe/RelayNotice control values, with the fields
/// named as there. Integers are exact and raw (prices are not scaled), byte arrays are "0x…"
/// hex strings, OrderBook levels are `bids`/`asks` arrays of {price, size, order_count}. A
/// control value that breaks its rules gets `value_error` instead of `value`.
///
/// With --hex every TLV also gets `hex` (its value bytes, "0x…"), a TLV written in the
/// extended form although its value is at most 255 bytes gets `"extended": true`, and the
/// error line of a frame that could be framed gets `hex` (the whole frame): torq-pub rebuilds
/// every byte from that, so `torq-decode --hex FILE | torq-pub --socket PATH` re-sends FILE.
///
/// A bad frame prints {"offset", "error", "message"}, where `error` is one of bad_magic,
/// unsupported_version, bad_domain, truncated_frame, tlv_invalid_type, tlv_truncated,
/// tlv_reserved_nonzero, tlv_size_mismatch, tlv_size_out_of_bounds, bad_recording. After
/// bad_magic, unsupported_version or truncated_frame decoding stops (the stream cannot be
/// framed any more) — in a recording, only that packet's; after the others it goes on with
/// the next frame. bad_recording (the pcapng blocks are broken; the message names the byte of
/// the file) ends decoding.
///
/// Memory stays bounded by the largest frame actually present: a huge `payload_size` is
/// never allocated up front.
///
/// Exit status: 0 when every frame decoded cleanly with no checksum mismatch, 1 otherwise,
/// 2 when FILE cannot be read.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The capture or recording to decode; standard input when absent or `-`.
    file: Option<PathBuf>,
    /// Add the bytes of every TLV (and of undecodable frames) as hex, for torq-pub.
    #[arg(long)]
    hex: bool,
    /// Pretty-print each object over several lines.
    #[arg(long)]
    pretty: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let input: Box<dyn Read> = match &args.file {
        Some(path) if path.as_os_str() != "-" => match File::open(path) {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("torq-decode: cannot open {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        _ => Box::new(io::stdin().lock()),
    };
    let render = Render { hex: args.hex, pretty: args.pretty };
    let mut out = BufWriter::new(io::stdout().lock());
    match decode(BufReader::with_capacity(1 << 16, input), &mut out, render)
        .and_then(|clean| out.flush().map(|_| clean))
    {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let name = args.file.as_ref().map_or("standard input".into(), |p| p.display().to_string());
            eprintln!("torq-decode: reading {name}: {e}");
            ExitCode::from(2)
        }
    }
}
