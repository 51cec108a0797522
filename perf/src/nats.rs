//! The floor of `torq-perf bridge`: a bare NATS hop, `torq-perf nats-publish` → `nats-server`
//! → `torq-perf nats-subscribe`, with the frames, the schedule and the report of `torq-perf
//! publish` and `subscribe` (`perf/src/clients.rs`), so both hops are measured alike.
//!
//! Both use `async-nats`, the client the bridge uses, with nothing between it and the frames,
//! each on one thread (a current-thread runtime): the publisher sleeps until a frame is due (an
//! absolute `clock_nanosleep`, as `publish` does), hands every frame due to the client and
//! yields, so the client's connection task writes them from the same thread; the subscriber
//! takes each message from the subscription as the connection task delivers it. A runtime
//! worker thread beside the publisher's (the pattern of the bridge: a thread handing frames to
//! tokio) cost one more wake-up per frame: 1.6 s of the publisher's CPU against 0.86 s per
//! 50 000 frames at 10 000/s, and 86 against 72 µs at p50 in runs minutes apart.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use torq::protocol::Header;

use crate::clients::{CountArgs, End, Load, Tally, epoch_ns, ready, sleep_until, stamp, template};

/// `torq-perf nats-publish`.
#[derive(Debug, clap::Args)]
pub struct NatsPublishArgs {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (as torq-bridge's --nats).
    #[arg(long, value_name = "URL", visible_alias = "url")]
    nats: String,
    /// The subject to publish on.
    #[arg(long, default_value = "perf.floor")]
    subject: String,
    #[command(flatten)]
    load: Load,
}

/// `torq-perf nats-subscribe`.
#[derive(Debug, clap::Args)]
pub struct NatsSubscribeArgs {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (as torq-bridge's --nats).
    #[arg(long, value_name = "URL", visible_alias = "url")]
    nats: String,
    /// The subject to subscribe to.
    #[arg(long, default_value = "perf.floor")]
    subject: String,
    #[command(flatten)]
    count: CountArgs,
    /// Core to pin this process to, or `none`.
    #[arg(long, default_value = "none")]
    core: String,
}

/// The NATS client's runtime, on this thread.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the NATS client's runtime: {e}"))
}

fn connect_options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new().name(name).connection_timeout(Duration::from_secs(10))
}

/// `torq-perf nats-publish`: prints the JSON line of `torq-perf publish` (frames, bytes,
/// elapsed_s, rate, cpu_s and, paced, lateness_ns and write_ns).
pub fn publish(args: &NatsPublishArgs) -> Result<(), String> {
    let load = &args.load;
    crate::pin(&load.core)?;
    let runtime = runtime()?;
    let url = &args.nats;
    let client = runtime
        .block_on(connect_options("torq-perf nats-publish").connect(url))
        .map_err(|e| format!("connect to {url}: {e}"))?;
    let subject = async_nats::Subject::from(args.subject.as_str());
    let template = template(load.domain, load.size)?;
    let frame = |sequence: u64, timestamp: u64| {
        let mut frame = template.clone();
        stamp(&mut frame, sequence, timestamp, load.checksum);
        frame
    };
    let start = std::time::Instant::now();
    let mut lateness = crate::latency::hdr::histogram();
    let mut writes = crate::latency::hdr::histogram();
    let mut sent = 0u64;
    let published: Result<(), async_nats::Error> = match load.rate {
        Some(rate) => {
            _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
            let period_ns = 1e9 / rate;
            let first = epoch_ns() + 1_000_000;
            let due = |i: u64| first + (i as f64 * period_ns) as u64;
            (|| {
                while sent < load.frames {
                    let now = epoch_ns();
                    if now < due(sent) {
                        sleep_until(due(sent));
                        continue;
                    }
                    runtime.block_on(async {
                        while sent < load.frames && due(sent) <= now {
                            let sequence = sent + 1;
                            client.publish(subject.clone(), frame(sequence, due(sent)).into()).await?;
                            lateness.saturating_record((now - due(sent)).max(1));
                            sent += 1;
                        }
                        // The client's connection task (on this thread) writes them now.
                        tokio::task::yield_now().await;
                        Ok::<(), async_nats::Error>(())
                    })?;
                    writes.saturating_record(epoch_ns().saturating_sub(now).max(1));
                }
                runtime.block_on(client.flush())?;
                Ok(())
            })()
        }
        None => runtime.block_on(async {
            let stop = load.seconds.map(|s| start + Duration::from_secs_f64(s));
            let mut now = epoch_ns();
            while sent < load.frames {
                if sent.is_multiple_of(1024) {
                    if stop.is_some_and(|stop| std::time::Instant::now() >= stop) {
                        break;
                    }
                    now = epoch_ns();
                }
                client.publish(subject.clone(), frame(sent + 1, now).into()).await?;
                sent += 1;
            }
            client.flush().await?;
            Ok(())
        }),
    };
    published.map_err(|e| format!("publish to {url}: {e}"))?;
    println!("{}", load.report(sent, start.elapsed().as_secs_f64(), &lateness, &writes));
    Ok(())
}

/// `torq-perf nats-subscribe`: prints `ready` once the server has its subscription (a flush
/// after the subscribe: the server answered the ping behind it), then the JSON line of
/// `torq-perf subscribe`; a gap is a message whose sequence is not the one after the last.
pub fn subscribe(args: &NatsSubscribeArgs) -> Result<(), String> {
    crate::pin(&args.core)?;
    let runtime = runtime()?;
    let url = &args.nats;
    let source = format!("{url} {}", args.subject);
    let report = runtime.block_on(async {
        let client = connect_options("torq-perf nats-subscribe")
            .connect(url)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
        let mut subscription =
            client.subscribe(args.subject.clone()).await.map_err(|e| format!("subscribe on {url}: {e}"))?;
        client.flush().await.map_err(|e| format!("subscribe on {url}: {e}"))?;
        ready();
        let mut tally = Tally::new(&args.count);
        let mut due = 1;
        let mut take = |tally: &mut Tally<'_>, message: async_nats::Message| {
            let Some(header) = Header::view(&message.payload) else { return };
            if header.sequence() != due {
                tally.counts.gaps += 1;
            }
            due = header.sequence() + 1;
            tally.frame(header, message.payload.len());
        };
        let end = loop {
            if tally.done() {
                break End::Frames;
            }
            let message = match tokio::time::timeout(tally.patience(), subscription.next()).await {
                Err(_) => break End::Idle,
                Ok(None) => break End::Eof,
                Ok(Some(message)) => message,
            };
            take(&mut tally, message);
            // The messages already there, without waiting (nor arming a timer) for each.
            let mut handled = 1;
            while handled < 4096 && !tally.done() {
                match subscription.next().now_or_never() {
                    Some(Some(message)) => take(&mut tally, message),
                    _ => break,
                }
                handled += 1;
            }
            tally.batch_done(handled);
        };
        tally.report(end, &source)
    })?;
    println!("{report}");
    Ok(())
}
