//! `torq-perf`: the figure printer. Each scenario pins itself to a core, repeats its
//! measurement several times and prints the median.
//!
//! ```text
//! cargo run --release -p torq-perf -- codec [--json] [--runs N] [--millis MS] [--core K]
//! torq-perf throughput --target naive|RELAY-BINARY [--relay-cores LIST] --subscribers N --frames N [--runs N]
//!                      [--transport socket|shm] [--shm-idle spin|backoff|block] [-- RELAY ARGS]
//! torq-perf latency --target naive|RELAY-BINARY --rates 10k,100k [--seconds 6] [--out DIR]
//!                   [--transport socket|shm] [--shm-idle spin|backoff|block] [-- RELAY ARGS]
//! torq-perf bridge [--domain market-data|execution] [--rates 10k] [--throughput-s 3] [--taps] [--out DIR]
//! torq-perf naive-relay --socket PATH          # the floor: copies one publisher's bytes to all
//! torq-perf publish --socket PATH --frames N [--size 128] [--rate R] [--domain D] [--checksum]
//! torq-perf subscribe --socket PATH --frames N [--latency [--hlog FILE]] [--ack] [--idle-ms MS]
//!                     [--transport socket|shm] [--shm-idle spin|backoff|block]
//! torq-perf nats-publish --nats URL --frames N [--rate R]  # the bridge's floor, over NATS
//! torq-perf nats-subscribe --nats URL --frames N [--latency [--hlog FILE]]
//! torq-perf soak --minutes N [--json] [--target RELAY-BINARY] [--md-rate R] [--signal-rate R] [--execution-rate R]
//! ```
//!
//! The flags are named as the relays' and torq-bridge's (`--socket PATH`, `--nats URL`,
//! `--slow-consumer`, `--checksum`; `--target` for the relay binary under test, `--relay-cores`
//! for its `--cores`); the former spellings (`--url`, `--relay`, `--cores`, `--policy`, `--crc`)
//! still work.
//!
//! `throughput` and `latency` start the relay and the clients as separate processes (the
//! other subcommands), see `perf/src/relay.rs` and `perf/src/latency/`; `bridge` runs a NATS
//! server, two relays and two bridges and measures the hop between them, see
//! `perf/src/bridge/mod.rs`; `soak` runs `relay_dev all` under churning load and judges its
//! resources over time, see `perf/src/soak/mod.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use torq::protocol::{Crc, VenueId};

mod bridge;
mod clients;
mod codec;
mod latency;
mod machine;
mod naive;
mod nats;
mod reaper;
mod relay;
mod soak;

/// Prints the relay's performance figures as medians of several runs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Codec figures: frame construction and parsing of a 74-byte Trade frame (with and
    /// without CRC), InstrumentId round trips, and the baseline of one crc32fast call over
    /// the same 70 bytes.
    Codec {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Measurements per figure; the median is reported.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Length of one measurement, in milliseconds.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..))]
        millis: u64,
        /// Core to pin to (default: the last core); `none` leaves the thread unpinned.
        #[arg(long, default_value = "last")]
        core: String,
        /// Measure only the figures whose name contains this text (for profiling).
        #[arg(long, default_value = "")]
        only: String,
    },
    /// Relay throughput: one publisher sending frames (128 bytes) as fast as it can to a relay
    /// (`--target naive` for the floor, or a relay binary) and N subscriber processes; prints
    /// per-subscriber and aggregate frames/s and drops, per run and as medians.
    Throughput(relay::ThroughputArgs),
    /// Relay latency: one publisher, open loop at each of `--rates`, each frame stamped with
    /// its intended send time, and one subscriber recording receive time − intended time
    /// after a warm-up; prints p50 … p99.99 and max in µs, delivered against sent and gaps,
    /// per run and as medians (against the floor with `--with-floor`); `--out DIR` writes
    /// `.hgrm`, `.hlog` and `.svg` files.
    Latency(latency::LatencyArgs),
    /// Across hosts: publisher → relay a → torq-bridge → NATS → torq-bridge → relay b →
    /// subscriber, with its own nats-server, two relays and two bridges; latency (open loop at
    /// each of `--rates`, as `latency`) and throughput (frames sent as fast as possible, loss
    /// per hop), each run against a bare NATS publish → subscribe hop measured just before it;
    /// `--out DIR` writes `.hgrm`, `.hlog` and `.svg` files.
    Bridge(bridge::BridgeArgs),
    /// The floor: one thread copying the bytes of the first connection that sends any (the
    /// publisher) to every other connection, 64 KiB reads, no framing; exits when the
    /// publisher disconnects.
    NaiveRelay(naive::NaiveArgs),
    /// Client process: sends the legacy hello, then `--frames` frames; prints one JSON line.
    Publish(clients::PublishArgs),
    /// Client process: prints `ready` once connected, counts frames (and latencies), from its
    /// socket or the relay's shared-memory log (`--transport shm`); prints one JSON line.
    Subscribe(clients::SubscribeArgs),
    /// Client process of the bridge's floor: publishes `--frames` frames on a NATS subject (as
    /// `publish` does on a relay); prints one JSON line.
    NatsPublish(nats::NatsPublishArgs),
    /// Client process of the bridge's floor: subscribes to a NATS subject, prints `ready` once
    /// the server has the subscription, counts frames (and latencies); prints one JSON line.
    NatsSubscribe(nats::NatsSubscribeArgs),
    /// Soak: the three relays of `relay_dev all` under mixed load with churning clients for
    /// `--minutes`; samples the relay's RSS, open fds, threads and queue depths every second
    /// and exits 1 when one trends upward or an execution frame is missing.
    Soak(soak::SoakArgs),
}

fn main() {
    let result = match Args::parse().scenario {
        Scenario::Codec { json, runs, millis, core, only } => {
            if let Err(message) = pin(&core) {
                eprintln!("torq-perf: {message}");
                std::process::exit(2);
            }
            codec_figures(json, &Measure { runs, length: Duration::from_millis(millis), only: &only });
            Ok(())
        }
        Scenario::Throughput(args) => relay::throughput(&args),
        Scenario::Latency(args) => latency::latency(&args),
        Scenario::Bridge(args) => bridge::bridge(&args),
        Scenario::NaiveRelay(args) => naive::run(&args),
        Scenario::Publish(args) => clients::publish(&args),
        Scenario::Subscribe(args) => clients::subscribe(&args),
        Scenario::NatsPublish(args) => nats::publish(&args),
        Scenario::NatsSubscribe(args) => nats::subscribe(&args),
        Scenario::Soak(args) => soak::soak(&args),
    };
    if let Err(message) = result {
        eprintln!("torq-perf: {message}");
        std::process::exit(1);
    }
}

/// Pins the current thread: `last`, `none` or a core number.
fn pin(core: &str) -> Result<(), String> {
    if core == "none" {
        return Ok(());
    }
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let id = match core {
        "last" => ids.last().copied(),
        number => {
            let wanted: usize = number
                .parse()
                .map_err(|_| format!("--core {number}: expected a core number, `last` or `none`"))?;
            ids.iter().copied().find(|id| id.id == wanted)
        }
    };
    let id = id.ok_or_else(|| format!("--core {core}: no such core (this machine has {})", ids.len()))?;
    if core_affinity::set_for_current(id) { Ok(()) } else { Err(format!("--core {core}: pinning failed")) }
}

/// How figures are measured: `runs` measurements of `length` each, median reported;
/// figures whose name does not contain `only` are skipped (NaN).
struct Measure<'a> {
    runs: u32,
    length: Duration,
    only: &'a str,
}

impl Measure<'_> {
    /// Operations per second of `op`, the median of the runs.
    fn rate(&self, name: &'static str, mut op: impl FnMut(u64)) -> (&'static str, f64) {
        const BATCH: u64 = 100_000;
        if !name.contains(self.only) {
            return (name, f64::NAN);
        }
        let mut rates: Vec<f64> = (0..=self.runs)
            .map(|_| {
                let start = Instant::now();
                let mut done = 0u64;
                while start.elapsed() < self.length {
                    for i in done..done + BATCH {
                        op(i);
                    }
                    done += BATCH;
                }
                done as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        rates.remove(0); // the first run warms caches and clocks up
        rates.sort_by(f64::total_cmp);
        (name, rates[rates.len() / 2])
    }
}

fn codec_figures(json: bool, measure: &Measure<'_>) {
    let trade = codec::sample_trade();
    let mut buf = [0u8; 128];
    let len = codec::construct(&mut buf, &trade, 1, Crc::Compute);
    assert_eq!(len, 74, "the Trade frame is 74 bytes");
    let frame = buf[..len].to_vec();
    let with_crc = codec::market_data_checks(true);
    let without_crc = codec::market_data_checks(false);
    assert!(codec::parse(&frame, &with_crc).is_some(), "the sample frame parses");

    let construct =
        |buf: &mut [u8], i, crc| black_box(codec::construct(black_box(buf), black_box(&trade), i, crc));
    let figures = [
        measure.rate("construct_per_s", |i| _ = construct(&mut buf, i, Crc::Compute)),
        measure.rate("construct_nocrc_per_s", |i| _ = construct(&mut buf, i, Crc::Skip)),
        measure.rate("parse_per_s", |_| _ = black_box(codec::parse(black_box(&frame), &with_crc))),
        measure.rate("parse_nocrc_per_s", |_| _ = black_box(codec::parse(black_box(&frame), &without_crc))),
        measure.rate("instrument_per_s", |i| {
            let symbol = black_box(codec::SYMBOLS[(i & 63) as usize]);
            black_box(codec::instrument_round_trip(black_box(VenueId::Kraken), symbol));
        }),
        measure.rate("crc_only_per_s", |_| _ = black_box(codec::crc_only(black_box(&frame)))),
    ];

    if json {
        let fields: Vec<String> =
            figures.iter().map(|(name, rate)| format!("\"{name}\":{rate:.0}")).collect();
        println!("{{{}}}", fields.join(","));
        return;
    }
    println!("{:<24} {:>14} {:>10}", "figure (median)", "ops/s", "ns/op");
    for (name, rate) in figures {
        println!("{:<24} {:>14.0} {:>10.2}", name.trim_end_matches("_per_s"), rate, 1e9 / rate);
    }
    let crc_only = figures[5].1;
    println!(
        "with CRC vs crc_only: construct {:.2}x, parse {:.2}x (target: at most 1.30x)",
        crc_only / figures[0].1,
        crc_only / figures[2].1
    );
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Args, Scenario};

    /// Every subcommand's help.
    fn helps() -> Vec<(String, String)> {
        let mut command = Args::command();
        command.build();
        command
            .get_subcommands_mut()
            .map(|sub| (sub.get_name().to_string(), sub.render_long_help().to_string()))
            .collect()
    }

    #[test]
    fn the_flags_are_named_as_the_relays_and_the_bridges() {
        let helps = helps();
        let help = |name: &str| &helps.iter().find(|(n, _)| n == name).unwrap().1;
        for name in ["naive-relay", "publish", "subscribe"] {
            assert!(help(name).contains("--socket <PATH>"), "{name}:\n{}", help(name));
        }
        for name in ["nats-publish", "nats-subscribe"] {
            assert!(help(name).contains("--nats <URL>"), "{name}:\n{}", help(name));
        }
        for name in ["throughput", "latency"] {
            let text = help(name);
            for flag in [
                "--target <naive|RELAY-BINARY>",
                "--relay-cores <LIST|none|none:N>",
                "--slow-consumer <POLICY>",
            ] {
                assert!(text.contains(flag), "{name}: {flag}\n{text}");
            }
            assert!(text.contains("--checksum"), "{name}:\n{text}");
            assert!(
                text.contains("--transport <TRANSPORT>") && text.contains("--shm-idle <SHM_IDLE>"),
                "{text}"
            );
        }
        assert!(help("bridge").contains("--relay-cores <LIST|none|none:N>"), "{}", help("bridge"));
        assert!(help("soak").contains("--target <RELAY-BINARY>"), "{}", help("soak"));
        for (name, text) in &helps {
            // The flags' own lines (their descriptions may name a relay's flags).
            for line in text.lines().map(str::trim_start).filter(|line| line.starts_with('-')) {
                for wrong in ["--url ", "--relay ", "--policy ", "--cores ", "--crc", "<SOCKET>", "<URL_>"] {
                    assert!(
                        !line.starts_with(wrong) && !line.contains(&format!(" {wrong}")),
                        "{name}: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_former_spellings_still_parse() {
        let parse = |list: &[&str]| {
            format!(
                "{:?}",
                Args::parse_from(std::iter::once("torq-perf").chain(list.iter().copied())).scenario
            )
        };
        assert_eq!(
            parse(&["nats-publish", "--url", "nats://h:4222", "--frames", "1"]),
            parse(&["nats-publish", "--nats", "nats://h:4222", "--frames", "1"])
        );
        assert_eq!(parse(&["soak", "--relay", "/bin/r"]), parse(&["soak", "--target", "/bin/r"]));
        let old = ["throughput", "--cores", "0", "--policy", "drop", "--crc"];
        let new = ["throughput", "--relay-cores", "0", "--slow-consumer", "drop", "--checksum"];
        assert_eq!(parse(&old), parse(&new));
        assert!(
            parse(&new).contains("relay_cores: \"0\"") && parse(&new).contains("slow_consumer: \"drop\"")
        );
        assert_eq!(parse(&["bridge", "--cores", "0/1"]), parse(&["bridge", "--relay-cores", "0/1"]));
        assert_eq!(
            parse(&["publish", "--socket", "/s", "--frames", "1", "--crc"]),
            parse(&["publish", "--socket", "/s", "--frames", "1", "--checksum"])
        );
        assert!(matches!(Args::parse_from(["torq-perf", "soak"]).scenario, Scenario::Soak(_)));
    }

    #[test]
    fn subscribers_take_a_transport_and_an_idle_strategy() {
        let subscribe = |list: &[&str]| {
            let args = ["torq-perf", "subscribe", "--socket", "/s", "--frames", "1"];
            Args::try_parse_from(args.iter().chain(list).copied()).map(|args| format!("{:?}", args.scenario))
        };
        let plain = subscribe(&[]).unwrap();
        assert!(plain.contains("transport: Socket, shm_idle: Spin"), "{plain}");
        let shm = subscribe(&["--transport", "shm", "--shm-idle", "block"]).unwrap();
        assert!(shm.contains("transport: Shm, shm_idle: Block"), "{shm}");
        assert!(subscribe(&["--transport", "pipe"]).is_err());
        assert!(subscribe(&["--transport", "shm", "--shm-idle", "nap"]).is_err());
    }
}
