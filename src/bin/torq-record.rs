//! `torq-record`: the frames a relay forwards, with their receive times, into a pcapng file.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use torq::tools::args::FilterArgs;
use torq::tools::live::{ReceiveError, Stopped, Until, receive, stop_flag, subscribe, unix_ns};
use torq::tools::pcapng::Writer;

/// Record the frames a relay forwards, with their receive times, into a pcapng file.
///
/// Subscribes to the relay at --socket as torq-tap does (the same filter flags) and writes
/// every frame received to --output: a Section Header Block, one Interface Description
/// Block (link type LINKTYPE_USER0 = 147, if_tsresol 9: nanosecond timestamps, if_name the
/// socket path) and one Enhanced Packet Block per frame holding the frame verbatim, stamped
/// with the time it was received (ns since the Unix epoch). Wireshark, tshark, tcpdump and
/// capinfos open the file; torq-decode prints it, torq-replay sends it again.
///
///   torq-record --socket /tmp/torq/execution.sock --output orders.pcapng --duration 60
///   torq-decode orders.pcapng
///   torq-replay orders.pcapng --socket /tmp/torq-test/execution.sock
///
/// Stops after --count frames, after --duration seconds, or on SIGINT or SIGTERM, with the
/// file complete. The file is written through a buffer flushed whenever no frame is
/// waiting; a recorder killed with SIGKILL leaves at most a torn last block, which the
/// readers report naming its byte. An existing file is replaced.
///
/// Standard error says when the subscription has taken effect ("torq-record: recording PATH
/// to FILE"), then the relay's notices and sequence gaps, and a summary line at the end.
///
/// Exit status: 0 when stopped by --count, --duration or a signal; 1 when the relay is not
/// there or goes away (the file is complete up to then) or the file cannot be written; 2 for
/// a bad flag.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The relay's Unix socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The pcapng file to write.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    filters: FilterArgs,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// The relay's max_message_size: the largest frame expected.
    #[arg(long, value_name = "BYTES", default_value_t = 131_072)]
    max_message_size: usize,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let signal = match stop_flag() {
        Ok(flag) => Some(flag),
        Err(e) => return fail(&format!("cannot install the signal handlers: {e}")),
    };
    let started = Instant::now();
    let mut subscriber = match subscribe(&args.socket, &args.filters, args.max_message_size, None) {
        Ok(subscriber) => subscriber,
        Err(e) => return fail(&e),
    };
    let output = args.output.display();
    let file = match File::create(&args.output) {
        Ok(file) => BufWriter::with_capacity(1 << 16, file),
        Err(e) => return fail(&format!("cannot create {output}: {e}")),
    };
    let interface = args.socket.to_string_lossy();
    let application = concat!("torq-record ", env!("CARGO_PKG_VERSION"));
    let mut writer = match Writer::new(file, application, &interface) {
        Ok(writer) => writer,
        Err(e) => return fail(&format!("writing {output}: {e}")),
    };
    eprintln!("torq-record: recording {} to {output}", args.socket.display());
    let until = Until { count: args.count, deadline: args.duration.map(|d| started + d), signal };
    let (mut frames, mut bytes) = (0u64, 0u64);
    let result = receive(
        &mut subscriber,
        &until,
        "torq-record",
        &mut writer,
        |writer, frame| {
            frames += 1;
            bytes += frame.bytes().len() as u64;
            writer.write_packet(unix_ns(), frame.bytes())
        },
        |writer| writer.flush(),
    );
    let secs = started.elapsed().as_secs_f64();
    eprintln!("torq-record: {frames} frames ({bytes} bytes) in {secs:.1} s recorded to {output}");
    match result {
        Ok((Stopped::Signal, _)) => {
            eprintln!("torq-record: stopped by a signal");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(ReceiveError::Relay(e)) => fail(&format!("{e}; {output} holds every frame received until then")),
        Err(ReceiveError::Output(e)) => fail(&format!("writing {output}: {e}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("torq-record: {message}");
    ExitCode::from(1)
}
