//! `torq-tap`: the frames a relay forwards, live, as torq-decode prints them.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use torq::client::Idle;
use torq::tools::args::FilterArgs;
use torq::tools::decode::Render;
use torq::tools::live::{ReceiveError, Until, receive, stop_flag, subscribe};

/// Print the frames a relay forwards, live, one JSON line each, as torq-decode prints them.
///
/// Connects to the relay at --socket as a subscriber (PROTOCOL.md §6: a Subscribe with the
/// filters of --type, --source and --instrument, OR-ed; none means every data frame, and
/// asking for notices) and prints every frame it receives in exactly the schema of
/// torq-decode (see `torq-decode --help`); `offset` counts the bytes received on the
/// connection, the relay's notices included. Standard error says when the subscription has
/// taken effect ("torq-tap: subscribed to PATH": frames published from then on are seen),
/// then the relay's notices (rejections, drops, stopping) and sequence gaps.
///
///   torq-tap --socket /tmp/torq/market_data.sock --type 1-3 --count 10
///   torq-tap --socket /tmp/torq/execution.sock --instrument Kraken:Coin:BTC/USD --pretty
///   torq-tap --socket /tmp/torq/signals.sock --hex | torq-pub --socket /tmp/other.sock
///
/// A frame the relay forwarded but torq-decode would call bad (e.g. a checksum the relay
/// does not verify) is printed as such; it does not stop the tap.
///
/// Exit status: 0 after --count frames, on SIGINT or SIGTERM, or when standard output is
/// closed; 1 when the relay is not there, refuses the subscription or goes away; 2 for a bad
/// flag.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The relay's Unix socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    #[command(flatten)]
    filters: FilterArgs,
    /// Exit 0 after this many frames.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Pretty-print each object over several lines.
    #[arg(long)]
    pretty: bool,
    /// Add every TLV's bytes as hex (torq-decode --hex), for torq-pub.
    #[arg(long)]
    hex: bool,
    /// The relay's max_message_size: the largest frame expected.
    #[arg(long, value_name = "BYTES", default_value_t = 131_072)]
    max_message_size: usize,
    /// `on`: take the frames from the relay's shared-memory log (PROTOCOL.md §7) instead of
    /// the socket. An overrun (the tap fell a whole log behind) is printed as a drop notice. A
    /// relay that offers no log (Execution, a relay run with --shm off) delivers over the socket.
    #[arg(long, value_name = "on|off", default_value = "off", value_parser = ["on", "off"])]
    shm: String,
    /// How the tap waits for the shared-memory log: `spin` polls (a core of its own),
    /// `backoff` polls, yields, then sleeps, `block` sleeps until the relay wakes it.
    #[arg(long, value_name = "STRATEGY", value_enum, default_value = "backoff")]
    shm_idle: ShmIdle,
}

/// `--shm`'s strategies.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ShmIdle {
    Spin,
    Backoff,
    Block,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let signal = match stop_flag() {
        Ok(flag) => Some(flag),
        Err(e) => return fail(&format!("cannot install the signal handlers: {e}")),
    };
    let mut subscriber = match subscribe(
        &args.socket,
        &args.filters,
        args.max_message_size,
        (args.shm == "on").then_some(args.shm_idle.into()),
    ) {
        Ok(subscriber) => subscriber,
        Err(e) => return fail(&e),
    };
    eprintln!("torq-tap: subscribed to {}", args.socket.display());
    let render = Render { hex: args.hex, pretty: args.pretty };
    let mut out = BufWriter::new(io::stdout().lock());
    let until = Until { count: args.count, deadline: None, signal };
    let result = receive(
        &mut subscriber,
        &until,
        "torq-tap",
        &mut out,
        |out, frame| {
            let (line, _) = render.frame(frame.bytes(), frame.offset());
            render.write(out, &line)
        },
        |out| out.flush(),
    );
    let flushed = out.flush();
    match (result, flushed) {
        (Err(ReceiveError::Relay(e)), _) => fail(&e.to_string()),
        (Err(ReceiveError::Output(e)), _) | (Ok(_), Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        (Err(ReceiveError::Output(e)), _) | (Ok(_), Err(e)) => fail(&format!("writing standard output: {e}")),
        (Ok(_), Ok(())) => ExitCode::SUCCESS,
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("torq-tap: {message}");
    ExitCode::from(1)
}
