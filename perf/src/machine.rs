//! What a figure was measured on: the CPU, the kernel, the clock source the timestamps come
//! from, the cores and how loaded the machine was — printed at the head of every relay
//! scenario's report, since a latency figure means nothing without them.

use serde::Serialize;

/// The machine, read from `/proc` and `/sys` (fields are `?` when unreadable).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` of the first CPU, with family and model numbers.
    pub cpu: String,
    /// Whether the CPU flags say a hypervisor runs the machine.
    pub virtualized: bool,
    /// Cores this process may run on.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`.
    pub clocksource: String,
    /// `MemTotal` in GiB.
    pub memory_gib: f64,
    /// The 1-, 5- and 15-minute load averages when the scenario started.
    pub load: [f64; 3],
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_string()).unwrap_or_else(|_| "?".to_string())
}

/// The value of the first `key : value` line of `/proc/cpuinfo`-style text.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim())
    })
}

impl Machine {
    /// This machine, now.
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = format!(
            "{} (family {}, model {})",
            field(&cpuinfo, "model name").unwrap_or("?"),
            field(&cpuinfo, "cpu family").unwrap_or("?"),
            field(&cpuinfo, "model").unwrap_or("?"),
        );
        let virtualized =
            field(&cpuinfo, "flags").is_some_and(|flags| flags.split_whitespace().any(|f| f == "hypervisor"));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN);
        Machine {
            cpu,
            virtualized,
            cores: core_affinity::get_core_ids().map_or(0, |ids| ids.len()),
            kernel: read("/proc/sys/kernel/osrelease"),
            clocksource: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            load: load(),
        }
    }
}

/// The load averages now.
pub fn load() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| fields.next().unwrap_or(f64::NAN))
}

/// Clock ticks per second in `/proc` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU time used so far: by the whole machine, stolen by the hypervisor, and by this process
/// with its children that have been waited for (the relay and the clients of finished runs).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    busy_s: f64,
    steal_s: f64,
    own_s: f64,
    at: std::time::Instant,
}

/// What the rest of the machine did while a run ran.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Others {
    /// CPU seconds used by other processes (and the kernel on their behalf).
    pub cpu_s: f64,
    /// CPU seconds the hypervisor took from this machine's vCPUs.
    pub steal_s: f64,
    /// Seconds of the wall clock the figures cover.
    pub wall_s: f64,
}

impl CpuTimes {
    /// The counters now.
    pub fn now() -> CpuTimes {
        let (busy_s, steal_s) = machine_times(&read("/proc/stat")).unwrap_or((f64::NAN, f64::NAN));
        let own_s = own_times(&read("/proc/self/stat")).unwrap_or(f64::NAN);
        CpuTimes { busy_s, steal_s, own_s, at: std::time::Instant::now() }
    }

    /// What others used since `self` was read: the machine's busy time less this process's and
    /// its waited-for children's, so it is exact only once every child of the interval exited.
    pub fn others(&self) -> Others {
        let now = CpuTimes::now();
        Others {
            cpu_s: ((now.busy_s - self.busy_s) - (now.own_s - self.own_s)).max(0.0),
            steal_s: now.steal_s - self.steal_s,
            wall_s: now.at.duration_since(self.at).as_secs_f64(),
        }
    }
}

/// Busy and steal seconds of all CPUs from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal …`).
fn machine_times(stat: &str) -> Option<(f64, f64)> {
    let fields: Vec<f64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map_while(|f| f.parse().ok()).collect();
    let busy = fields.first()? + fields.get(1)? + fields.get(2)? + fields.get(5)? + fields.get(6)?;
    Some((busy / TICKS, fields.get(7).copied().unwrap_or(0.0) / TICKS))
}

/// utime + stime + cutime + cstime of `/proc/<pid>/stat`, in seconds.
fn own_times(stat: &str) -> Option<f64> {
    stat_times(stat, 4)
}

/// The sum of the first `count` of utime, stime, cutime, cstime in `/proc/<pid>/stat` text.
fn stat_times(stat: &str, count: usize) -> Option<f64> {
    // Fields after the command (which may hold spaces) in parentheses: state is field 3, so
    // utime (14) … cstime (17) are the 12th to 15th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<f64> =
        rest.split_whitespace().skip(11).take(count).map_while(|f| f.parse().ok()).collect();
    (fields.len() == count).then(|| fields.iter().sum::<f64>() / TICKS)
}

/// CPU seconds (user + system) process `pid` has used so far; it may have exited as long as
/// it was not waited for yet. `None` when unreadable.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    stat_times(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, 2)
}

impl std::fmt::Display for Others {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "others used {:.2} s of CPU in {:.1} s, steal {:.2} s",
            self.cpu_s, self.wall_s, self.steal_s
        )
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine: {}{}, {} cores, {:.0} GiB; kernel {}; clock source {}; load {:.2} {:.2} {:.2}",
            self.cpu,
            if self.virtualized { ", virtualized" } else { "" },
            self.cores,
            self.memory_gib,
            self.kernel,
            self.clocksource,
            self.load[0],
            self.load[1],
            self.load[2],
        )
    }
}

/// Waits (at most `limit`) until the rest of the machine has used less than `share` of one
/// core over a whole second; returns what it saw in the last second and whether it waited in
/// vain. With `limit` zero it only looks for one second.
pub fn wait_quiet(limit: std::time::Duration, share: f64) -> (Others, bool) {
    let start = std::time::Instant::now();
    loop {
        let before = CpuTimes::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let others = before.others();
        if others.cpu_s < share * others.wall_s {
            return (others, false);
        }
        if start.elapsed() >= limit {
            return (others, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields_are_read_by_name() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nflags\t\t: fpu hypervisor sse\n";
        assert_eq!(field(text, "model name"), Some("AMD EPYC"));
        assert_eq!(field(text, "model"), Some("2"), "not the `model name` line");
        assert_eq!(field(text, "cpu family"), Some("26"));
        assert_eq!(field(text, "stepping"), None);
    }

    #[test]
    fn cpu_times_are_read_from_proc_text() {
        let stat = "cpu  1000 50 300 90000 20 10 40 7 0 0\ncpu0 500 25 150 45000 10 5 20 3 0 0\n";
        assert_eq!(machine_times(stat), Some((14.0, 0.07)));
        assert_eq!(machine_times("intr 1 2 3\n"), None);
        let own = "4242 (torq perf (x)) S 1 2 3 4 5 6 7 8 9 10 120 30 400 50 20 0 1 0";
        assert_eq!(own_times(own), Some(6.0), "utime 120 + stime 30 + cutime 400 + cstime 50 ticks");
        assert_eq!(own_times("4242 (x) S 1 2"), None);
        assert_eq!(stat_times(own, 2), Some(1.5), "utime + stime alone");
        assert!(process_cpu_s(std::process::id()).is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn this_machine_is_described() {
        let machine = Machine::describe();
        assert!(machine.cores >= 1);
        assert_ne!(machine.kernel, "?");
        assert!(machine.load.iter().all(|l| *l >= 0.0), "{:?}", machine.load);
        let line = machine.to_string();
        assert!(line.contains("clock source") && line.contains(&machine.kernel), "{line}");
    }
}
