//! `torq-demo`: a small trading desk on the three relays, written on the client library.
//!
//! Starts `relay_dev all` on a private directory, then the desk (see `desk.rs`): collectors
//! publish quotes and trades for four coins on two venues to the market-data relay; a strategy
//! turns cross-venue crossings into ArbitrageSignals on the signal relay; an engine turns each
//! signal into two orders on the execution relay, which a simulated venue fills, the fills
//! flowing back to the engine. A live view shows each relay once a second; at the end (after
//! `--seconds`, or Ctrl-C) the collectors stop, the desk drains, the relays are stopped with
//! SIGTERM, and a summary says whether every order and fill arrived complete and in order.

mod desk;
mod relays;
mod view;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use torq::client::{Error, Subscriber};

use desk::{Desk, SIGNAL, Sockets, histogram};
use relays::Relays;
use view::{Row, Screen, compact, dollars, percentiles, table};

/// A trading desk on the three relays: collectors, a strategy, an execution engine and a venue,
/// with a live view of each relay and a summary that says whether any order or fill was lost.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// How long the desk trades, in seconds (Ctrl-C stops it sooner, as cleanly).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Market-data frames per second from the collectors (0 = as fast as the relay takes them).
    #[arg(long, value_name = "FRAMES_PER_S", default_value_t = 100_000)]
    rate: u64,
    /// Directory for the sockets and the execution audit trail (relay_dev's --socket-dir), kept
    /// afterwards [default: a fresh one under the temp directory, removed afterwards].
    #[arg(long, value_name = "DIR", visible_alias = "dir")]
    socket_dir: Option<PathBuf>,
    /// Print the summary once more as one JSON object, the last line of the output.
    #[arg(long)]
    json: bool,
}

/// How long the relays have to start, the desk to drain, the relays to stop.
const START: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(5);
const STOP: Duration = Duration::from_secs(10);
const NAMES: [&str; 3] = ["market data", "signal", "execution"];

fn main() -> ExitCode {
    let args = Args::parse();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&interrupted));
    }
    let relay_dev = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("relay_dev")));
    let Some(relay_dev) = relay_dev.filter(|p| p.exists()) else {
        eprintln!(
            "torq-demo: relay_dev is not built next to torq-demo; run `cargo build --release --bins` first"
        );
        return ExitCode::from(2);
    };
    let dir = args
        .socket_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("torq-demo-{}", std::process::id())));
    let mut screen = Screen::new(std::io::stdout().is_terminal());
    let status = match Relays::start(&relay_dev, &dir, screen.terminal()) {
        Ok(relays) => run(&args, &dir, relays, &mut screen, &interrupted),
        Err(e) => {
            eprintln!("torq-demo: cannot start {}: {e}", relay_dev.display());
            ExitCode::from(2)
        }
    };
    if args.socket_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    status
}

/// The desk on running relays, the live view, the stop and the summary.
fn run(
    args: &Args,
    dir: &Path,
    mut relays: Relays,
    screen: &mut Screen,
    interrupted: &AtomicBool,
) -> ExitCode {
    let [market_data, signal, execution] = relays::sockets(dir);
    let sockets = Sockets { market_data, signal, execution };
    let desk = Arc::new(Desk::new());
    let deadline = Instant::now() + START;
    let retry = |attempt: &mut dyn FnMut() -> Result<Subscriber, Error>| loop {
        match attempt() {
            Err(Error::Connect { .. })
                if Instant::now() < deadline && relays.running() && !interrupted.load(Relaxed) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    };
    let mut running = match desk::start(&desk, &sockets, args.rate, retry) {
        Ok(running) => running,
        Err(_) if interrupted.load(Relaxed) => {
            relays.stop(STOP);
            println!("interrupted before the desk started; relays stopped");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("torq-demo: the desk cannot connect to the relays: {e}");
            relays.stop(STOP);
            for line in relays.tail() {
                eprintln!("  {line}");
            }
            return ExitCode::from(1);
        }
    };
    let subscribers = desk.lanes.each_ref().map(|lane| lane.subscribers.load(Relaxed));
    println!("relays up in {} (market_data.sock, signals.sock, execution.sock)", dir.display());
    println!("desk: collectors -> strategy -> engine <-> venue, through the three relays");

    let start = Instant::now();
    let mut live = Live::default();
    let mut second = 0;
    while second < args.seconds && !interrupted.load(Relaxed) {
        let next = start + Duration::from_secs(second + 1);
        while !interrupted.load(Relaxed) && Instant::now() < next {
            std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
        if interrupted.load(Relaxed) {
            break;
        }
        second += 1;
        let mut lines = vec![format!("torq-demo  {second} s of {}  (Ctrl-C stops)", args.seconds)];
        lines.extend(live.refresh(&desk, &relays));
        screen.show(&lines);
    }
    let elapsed = start.elapsed();
    let drained = running.drain(&desk, DRAIN);
    let status = relays.stop(STOP);
    running.join();
    screen.release();
    for line in relays.take_held() {
        eprintln!("{line}");
    }

    let summary = Summary::new(&desk, &relays, &mut live, subscribers, dir);
    let relays_ok = status.is_some_and(|s| s.success());
    let errors = desk.errors();
    println!();
    println!(
        "summary: {:.1} s{}; relays stopped, {}",
        elapsed.as_secs_f64(),
        if interrupted.load(Relaxed) { " (interrupted)" } else { "" },
        status.map_or_else(|| "exit status unknown".to_string(), |s| s.to_string())
    );
    for line in &summary.lines {
        println!("{line}");
    }
    if !drained {
        println!("the desk had not drained after {DRAIN:?} when the relays were stopped");
    }
    for error in &errors {
        println!("client error: {error}");
    }
    if args.json {
        let mut json = summary.json;
        json["seconds"] = serde_json::json!(elapsed.as_secs_f64());
        json["interrupted"] = serde_json::json!(interrupted.load(Relaxed));
        json["relays_exit"] = serde_json::json!(status.and_then(|s| s.code()));
        json["drained"] = serde_json::json!(drained);
        json["errors"] = serde_json::json!(errors);
        println!("{json}");
    }
    if relays_ok && drained && summary.nothing_lost && errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What the live view keeps between refreshes.
#[derive(Debug)]
struct Live {
    /// Published and received per relay at the last refresh.
    last: [[u64; 2]; 3],
    /// Latency per relay, then quote to order, since the start.
    totals: [Histogram<u64>; 4],
}

impl Default for Live {
    fn default() -> Self {
        Live { last: [[0; 2]; 3], totals: std::array::from_fn(|_| histogram()) }
    }
}

impl Live {
    /// The table of the last second and the desk's line.
    fn refresh(&mut self, desk: &Desk, relays: &Relays) -> Vec<String> {
        let counters = relays.counters();
        let mut rows = Vec::new();
        for (index, lane) in desk.lanes.iter().enumerate() {
            let now = [lane.published.load(Relaxed), lane.received.load(Relaxed)];
            let rates = [now[0] - self.last[index][0], now[1] - self.last[index][1]];
            self.last[index] = now;
            let mut second = histogram();
            lane.take_latency(&mut second);
            let _ = self.totals[index].add(&second);
            rows.push(Row {
                name: NAMES[index],
                counts: Some(rates),
                subscribers: Some(lane.subscribers.load(Relaxed)),
                drops: Some(counters[index].map_or(lane.dropped.load(Relaxed), |c| c.dropped)),
                rejected: counters[index].map(|c| c.rejected),
                latency: percentiles(&second),
            });
        }
        let mut second = histogram();
        desk.take_quote_to_order(&mut second);
        let _ = self.totals[3].add(&second);
        rows.push(Row { name: "quote→order", latency: percentiles(&second), ..Row::default() });
        let mut lines = table(["in/s", "out/s"], &rows);
        lines.push(desk_line(desk));
        lines
    }
}

/// The desk's business so far, in one line.
fn desk_line(desk: &Desk) -> String {
    let tally = &desk.tally;
    format!(
        "ticks {}  signals {}  orders {}  fills {}  pnl {}",
        compact(desk.quotes.load(Relaxed) + desk.trades.load(Relaxed)),
        compact(desk.lanes[SIGNAL].published.load(Relaxed)),
        compact(tally.orders_sent.load(Relaxed)),
        compact(tally.fills_received.load(Relaxed)),
        dollars(desk.pnl.load(Relaxed))
    )
}

/// The end of the run: lines for people, an object for programs, and the verdict.
#[derive(Debug)]
struct Summary {
    lines: Vec<String>,
    json: serde_json::Value,
    nothing_lost: bool,
}

impl Summary {
    fn new(desk: &Desk, relays: &Relays, live: &mut Live, subscribers: [u64; 3], dir: &Path) -> Summary {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        let counters = relays.counters();
        let mut rows = Vec::new();
        let mut json_relays = serde_json::Map::new();
        for (index, lane) in desk.lanes.iter().enumerate() {
            lane.take_latency(&mut live.totals[index]);
            let latency = percentiles(&live.totals[index]);
            let counts = [get(&lane.published), get(&lane.received)];
            let drops = counters[index].map_or(get(&lane.dropped), |c| c.dropped);
            rows.push(Row {
                name: NAMES[index],
                counts: Some(counts),
                subscribers: Some(subscribers[index]),
                drops: Some(drops),
                rejected: counters[index].map(|c| c.rejected),
                latency,
            });
            json_relays.insert(
                relays::NAMES[index].to_string(),
                serde_json::json!({
                    "sent": counts[0],
                    "received": counts[1],
                    "dropped": drops,
                    "rejected": counters[index].map(|c| c.rejected),
                    "relay_frames_in": counters[index].map(|c| c.frames_in),
                    "relay_frames_out": counters[index].map(|c| c.frames_out),
                    "latency_ns": latency_json(latency),
                }),
            );
        }
        desk.take_quote_to_order(&mut live.totals[3]);
        let quote_to_order = percentiles(&live.totals[3]);
        rows.push(Row { name: "quote→order", latency: quote_to_order, ..Row::default() });
        let mut lines = table(["sent", "received"], &rows);
        lines.push("drops, rej: the relays' own counters; latency: publisher's timestamp to receipt".into());

        let tally = &desk.tally;
        let (orders, fills) = (get(&tally.orders_sent), get(&tally.fills_sent));
        let audited = relays::audited(dir);
        let audit_ok = audited == Some(orders + fills);
        let nothing_lost = tally.sound() && audit_ok;
        lines.push(format!(
            "desk: {} ticks -> {} signals -> {} orders, pnl {}",
            compact(get(&desk.quotes) + get(&desk.trades)),
            compact(get(&desk.lanes[SIGNAL].published)),
            compact(orders),
            dollars(desk.pnl.load(Relaxed))
        ));
        if tally.sound() {
            lines.push(format!(
                "execution: {orders} orders, {fills} fills: all arrived complete and in order"
            ));
        } else if get(&tally.rejected) > 0 {
            lines.push(format!("execution: the relay REJECTED {} orders and fills", get(&tally.rejected)));
        } else {
            lines.push(format!(
                "execution: LOST {} of {} frames; {} gaps, {} out of order, {} incomplete",
                tally.lost(),
                orders + fills,
                get(&tally.gaps),
                get(&tally.out_of_order),
                get(&tally.incomplete),
            ));
            lines.push(format!(
                "           orders {orders} sent, {} received; fills {fills} sent, {} received",
                get(&tally.orders_received),
                get(&tally.fills_received),
            ));
        }
        lines.push(format!(
            "execution: the relay confirmed {} of {orders} orders and {} of {fills} fills",
            get(&tally.orders_confirmed),
            get(&tally.fills_confirmed),
        ));
        lines.push(match audited {
            Some(n) if audit_ok => format!("execution: {n} accepted frames audited, one per order and fill"),
            Some(n) => {
                format!("execution: {n} accepted frames audited, for {} orders and fills", orders + fills)
            }
            None => "execution: no audit trail found".to_string(),
        });
        let json = serde_json::json!({
            "relays": json_relays,
            "desk": {
                "quotes": get(&desk.quotes),
                "trades": get(&desk.trades),
                "signals": get(&desk.lanes[SIGNAL].published),
                "pnl_usd": desk.pnl.load(Relaxed) as f64 / 1e8,
                "quote_to_order_ns": latency_json(quote_to_order),
            },
            "execution": {
                "orders_sent": orders,
                "orders_received": get(&tally.orders_received),
                "fills_sent": fills,
                "fills_received": get(&tally.fills_received),
                "gaps": get(&tally.gaps),
                "out_of_order": get(&tally.out_of_order),
                "incomplete": get(&tally.incomplete),
                "orders_confirmed": get(&tally.orders_confirmed),
                "fills_confirmed": get(&tally.fills_confirmed),
                "rejected": get(&tally.rejected),
                "lost": tally.lost(),
                "audited": audited,
            },
            "nothing_lost": nothing_lost,
        });
        Summary { lines, json, nothing_lost }
    }
}

fn latency_json(latency: Option<[u64; 3]>) -> serde_json::Value {
    match latency {
        Some([p50, p99, p999]) => serde_json::json!({ "p50": p50, "p99": p99, "p99_9": p999 }),
        None => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desk_line_fits_80_columns_whatever_the_numbers() {
        let desk = Desk::new();
        for counter in
            [&desk.quotes, &desk.lanes[SIGNAL].published, &desk.tally.orders_sent, &desk.tally.fills_received]
        {
            counter.store(999_999, Relaxed);
        }
        desk.pnl.store(i64::MIN, Relaxed);
        let line = desk_line(&desk);
        assert!(line.chars().count() <= view::WIDTH, "{} columns: {line}", line.chars().count());
    }
}
