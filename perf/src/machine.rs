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
    fn this_machine_is_described() {
        let machine = Machine::describe();
        assert!(machine.cores >= 1);
        assert_ne!(machine.kernel, "?");
        assert!(machine.load.iter().all(|l| *l >= 0.0), "{:?}", machine.load);
        let line = machine.to_string();
        assert!(line.contains("clock source") && line.contains(&machine.kernel), "{line}");
    }
}
