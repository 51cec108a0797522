//! The throughput runs: the publisher flat out (or at `--throughput-rate`) through the bridge and
//! through the bare NATS hop, and where the bridge's frames went.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Hops, Scenario, discount};
use crate::machine::{CpuTimes, Others};
use crate::relay::{ClientProcesses, median, number, run_clients};

impl Scenario<'_> {
    /// The throughput runs: floor, then bridge, `--runs` times; medians and ratios.
    pub(super) fn throughput(&self) -> Result<Value, String> {
        let (args, say) = (self.args, self.say);
        let pace = match args.throughput_rate {
            Some(rate) => format!("at {rate} frames/s, open loop"),
            None => "as fast as the publisher can".to_string(),
        };
        say.line(&format!(
            "throughput: frames of {} B sent for {} s {pace}, through the bridge and through the bare NATS \
             hop; {} run(s)",
            args.size, args.throughput_s, args.runs
        ));
        let (mut floor_runs, mut bridge_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=args.runs {
            let label = |side: &str| format!("throughput run {run}/{}, {side}", args.runs);
            let floor = self.throughput_run(&label("floor"), false)?;
            say.line(&format!("run {run}, floor: {}", floor.line()));
            let bridge = self.throughput_run(&label("bridge"), true)?;
            say.line(&format!("run {run}, bridge: {}", bridge.line()));
            say.line(&format!("  {}", bridge.hops.line()));
            let ratio = bridge.rate / floor.rate;
            say.line(&format!("  to the floor: {ratio:.3}x"));
            self.cluster.check()?;
            ratios.push(ratio);
            floor_runs.push(floor);
            bridge_runs.push(bridge);
        }
        let medians = |runs: &[Flow]| {
            let column = |f: fn(&Flow) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            json!({
                "rate": column(|r| r.rate),
                "publisher_rate": column(|r| r.publisher_rate),
                "loss": column(|r| r.loss()),
            })
        };
        let (floor_median, bridge_median) = (medians(&floor_runs), medians(&bridge_runs));
        let ratio = median(&mut ratios.clone());
        let mega = |v: &Value, key: &str| format!("{:.3} M", number(v, key) / 1e6);
        say.line(&format!(
            "throughput, median of {} runs: bridge {} frames/s (loss {:.2} %), floor {} frames/s (loss {:.2} %); \
             bridge to the floor {ratio:.3}x (runs: {})",
            args.runs,
            mega(&bridge_median, "rate"),
            100.0 * number(&bridge_median, "loss"),
            mega(&floor_median, "rate"),
            100.0 * number(&floor_median, "loss"),
            ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ")
        ));
        Ok(json!({
            "seconds": args.throughput_s,
            "rate": args.throughput_rate,
            "bridge": {"runs": bridge_runs.iter().map(Flow::json).collect::<Vec<_>>(), "median": bridge_median},
            "floor": {"runs": floor_runs.iter().map(Flow::json).collect::<Vec<_>>(), "median": floor_median},
            "ratio": {"median": ratio, "runs": ratios},
        }))
    }

    /// One throughput run of one side.
    fn throughput_run(&self, label: &str, bridge: bool) -> Result<Flow, String> {
        let not_quiet = !self.wait_quiet(label);
        let (cluster, args) = (self.cluster, self.args);
        let counters = if bridge { Some(cluster.counters()?) } else { None };
        // Unpaced, the publisher stops after the time and the subscriber when nothing came for
        // --idle-ms.
        let frames = match args.throughput_rate {
            Some(rate) => (rate * args.throughput_s).ceil() as u64,
            None => 1 << 40,
        };
        let (mut subscriber, mut publisher) = self.clients(bridge, frames, None)?;
        subscriber.arg("--progress");
        match args.throughput_rate {
            Some(rate) => publisher.args(["--rate", &rate.to_string()]),
            None => publisher.args(["--seconds", &args.throughput_s.to_string()]),
        };
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut on_progress = |value: &Value| {
            let p = &value["progress"];
            let line = format!("{label}: second {}, {} frames in", p["second"], p["frames"]);
            if terminal { eprint!("\r\x1b[K{line}") } else { eprintln!("{line}") }
        };
        let times = CpuTimes::now();
        let before = cluster.cpu();
        let reports = run_clients(ClientProcesses {
            subscribers: vec![subscriber],
            publisher,
            idle_ms: args.idle_ms,
            deadline: Instant::now() + Duration::from_secs(args.timeout_s),
            timeout_s: args.timeout_s,
            on_progress: &mut on_progress,
            end_streams: &mut || {},
        });
        if terminal {
            eprint!("\r\x1b[K");
        }
        let reports =
            reports.map_err(|e| format!("{label}: {e} (the logs are in {})", cluster.dir.display()))?;
        let mut cpu_s = Self::cpu_between(&before, &cluster.cpu(), bridge);
        let mut others = times.others();
        discount(&mut others, &cpu_s);
        let (publisher, subscriber) =
            (&reports.publisher, reports.subscribers.first().cloned().unwrap_or_default());
        cpu_s.push(("publisher".into(), number(publisher, "cpu_s")));
        cpu_s.push(("subscriber".into(), number(&subscriber, "cpu_s")));
        let hops = match counters {
            Some(before) => Hops::between(&before, &cluster.counters()?),
            None => Hops::default(),
        };
        Ok(Flow {
            sent: number(publisher, "frames") as u64,
            received: number(&subscriber, "frames") as u64,
            rate: number(&subscriber, "rate"),
            elapsed_s: number(&subscriber, "elapsed_s"),
            publisher_rate: number(publisher, "rate"),
            gaps: number(&subscriber, "gaps") as u64,
            relay_dropped: number(&subscriber, "relay_dropped") as u64,
            cpu_s,
            others,
            not_quiet,
            hops,
        })
    }
}

/// One throughput run of one side.
struct Flow {
    sent: u64,
    received: u64,
    /// Frames per second the subscriber received, first frame to last.
    rate: f64,
    elapsed_s: f64,
    publisher_rate: f64,
    gaps: u64,
    /// Drops the subscriber's relay told it of (the bridge side).
    relay_dropped: u64,
    cpu_s: Vec<(String, f64)>,
    others: Others,
    not_quiet: bool,
    hops: Hops,
}

impl Flow {
    fn loss(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.sent.saturating_sub(self.received) as f64 / self.sent as f64 }
    }

    fn line(&self) -> String {
        let cpu: Vec<String> =
            self.cpu_s.iter().map(|(who, seconds)| format!("{who} {seconds:.2}")).collect();
        format!(
            "{:.3} M frames/s received ({} of {} sent, loss {:.2} %, gaps {}{}) in {:.2} s; publisher {:.3} M \
             frames/s; CPU s: {}; {}{}",
            self.rate / 1e6,
            self.received,
            self.sent,
            100.0 * self.loss(),
            self.gaps,
            if self.relay_dropped > 0 {
                format!(", relay b dropped {} for it", self.relay_dropped)
            } else {
                String::new()
            },
            self.elapsed_s,
            self.publisher_rate / 1e6,
            cpu.join(", "),
            self.others,
            if self.not_quiet { " (started busy)" } else { "" },
        )
    }

    fn json(&self) -> Value {
        let mut value = json!({
            "sent": self.sent,
            "received": self.received,
            "loss": self.loss(),
            "rate": self.rate,
            "elapsed_s": self.elapsed_s,
            "publisher_rate": self.publisher_rate,
            "gaps": self.gaps,
            "relay_dropped": self.relay_dropped,
            "hops": self.hops,
            "others_cpu_s": self.others.cpu_s,
            "steal_s": self.others.steal_s,
            "wall_s": self.others.wall_s,
            "started_on_a_busy_machine": self.not_quiet,
        });
        for (who, seconds) in &self.cpu_s {
            value[format!("{}_cpu_s", who.replace([' ', '-'], "_"))] = json!(seconds);
        }
        value
    }
}
