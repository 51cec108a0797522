//! The live view and the summary: tables of at most 80 columns, redrawn in place on a
//! terminal, printed as plain lines otherwise.

use std::io::Write;

use hdrhistogram::Histogram;

/// The width every line fits in.
pub const WIDTH: usize = 80;

/// One row of a table: a relay, or the desk's quote-to-order path (no counts).
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// What the row is about.
    pub name: &'static str,
    /// Frames in and out (per second in the live view, in all in the summary).
    pub counts: Option<[u64; 2]>,
    /// Subscribers connected.
    pub subscribers: Option<u64>,
    /// Frames dropped.
    pub drops: Option<u64>,
    /// Frames rejected.
    pub rejected: Option<u64>,
    /// Latency p50, p99, p99.9 in ns.
    pub latency: Option<[u64; 3]>,
}

/// The percentiles a row shows, or `None` for an empty histogram.
pub fn percentiles(histogram: &Histogram<u64>) -> Option<[u64; 3]> {
    (!histogram.is_empty()).then(|| [0.5, 0.99, 0.999].map(|q| histogram.value_at_quantile(q)))
}

/// The table: a heading (with `counts` naming the two count columns) and one line per row.
pub fn table(counts: [&str; 2], rows: &[Row]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<12}{:>9}{:>9}{:>6}{:>8}{:>7}{:>9}{:>9}{:>9}",
        "relay", counts[0], counts[1], "subs", "drops", "rej", "p50", "p99", "p99.9"
    )];
    let or_dash = |value: Option<u64>| value.map_or_else(|| "-".to_string(), compact);
    for row in rows {
        let [p50, p99, p999] = match row.latency {
            Some(latency) => latency.map(duration),
            None => ["-".to_string(), "-".to_string(), "-".to_string()],
        };
        let (count_in, count_out) = match row.counts {
            Some([a, b]) => (compact(a), compact(b)),
            None => (String::new(), String::new()),
        };
        let blank_unless =
            |value: Option<u64>| if row.counts.is_some() { or_dash(value) } else { String::new() };
        lines.push(format!(
            "{:<12}{:>9}{:>9}{:>6}{:>8}{:>7}{:>9}{:>9}{:>9}",
            row.name,
            count_in,
            count_out,
            blank_unless(row.subscribers),
            blank_unless(row.drops),
            blank_unless(row.rejected),
            p50,
            p99,
            p999
        ));
    }
    lines
}

/// A count in at most 7 characters: exact below a million, then with a suffix.
pub fn compact(n: u64) -> String {
    if n < 1_000_000 {
        return n.to_string();
    }
    let mut value = n as f64 / 1e6;
    for unit in ["M", "G", "T", "P"] {
        if value < 999.95 {
            return format!("{value:.1}{unit}");
        }
        value /= 1e3;
    }
    format!("{value:.1}E")
}

/// A duration in ns in at most 7 characters.
pub fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.1}s", ns as f64 / 1e9),
        _ => ">999s".to_string(),
    }
}

/// Dollars from USD ×1e8, in at most 11 characters.
pub fn dollars(q8: i64) -> String {
    let value = q8 as f64 / 1e8;
    if value.abs() < 1e5 { format!("${value:.2}") } else { format!("${:.2}M", value / 1e6) }
}

/// `line` cut to [`WIDTH`] characters.
pub fn fit(line: &str) -> String {
    line.chars().take(WIDTH).collect()
}

/// Where the view goes: a terminal, where each refresh overwrites the last, or anything else,
/// where each refresh is more plain lines.
#[derive(Debug)]
pub struct Screen {
    terminal: bool,
    /// Lines of the last refresh still on the terminal.
    drawn: usize,
}

impl Screen {
    /// A screen on stdout, redrawn in place when `terminal`.
    pub fn new(terminal: bool) -> Screen {
        Screen { terminal, drawn: 0 }
    }

    /// Whether the view redraws in place.
    pub fn terminal(&self) -> bool {
        self.terminal
    }

    /// Shows `lines`: over the last refresh on a terminal, after it otherwise.
    pub fn show(&mut self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn); // back to the first line drawn
            }
            for line in lines {
                let _ = writeln!(out, "\r\x1b[2K{}", fit(line));
            }
            self.drawn = lines.len();
        } else {
            for line in lines {
                let _ = writeln!(out, "{}", fit(line));
            }
        }
        let _ = out.flush();
    }

    /// Lines printed from now on stay (the summary goes under the last refresh).
    pub fn release(&mut self) {
        self.drawn = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_fits_80_columns_whatever_the_numbers() {
        let big = Row {
            name: "market data",
            counts: Some([u64::MAX, 999_999]),
            subscribers: Some(u64::MAX),
            drops: Some(123_456_789_012),
            rejected: Some(999_999_999),
            latency: Some([999, 999_999, 60_000_000_000]),
        };
        let path = Row { name: "quote→order", latency: Some([1, 2, 3]), ..Row::default() };
        let empty = Row { name: "execution", counts: Some([0, 0]), ..Row::default() };
        for line in table(["in/s", "out/s"], &[big, path, empty]) {
            assert!(line.chars().count() <= WIDTH, "{} columns: {line}", line.chars().count());
        }
        for q8 in [i64::MIN, i64::MAX, -9_999_999_999_999, -12_345_678_900_000] {
            assert!(dollars(q8).chars().count() <= 11, "{}", dollars(q8));
        }
    }

    #[test]
    fn counts_and_durations_read_at_a_glance() {
        assert_eq!(compact(999_999), "999999");
        assert_eq!(compact(1_240_000), "1.2M");
        assert_eq!(compact(2_500_000_000), "2.5G");
        assert_eq!(compact(u64::MAX), "18.4E");
        assert_eq!(duration(850), "850ns");
        assert_eq!(duration(12_340), "12.3µs");
        assert_eq!(duration(2_500_000), "2.5ms");
        assert_eq!(dollars(12_345_000_000), "$123.45");
        assert_eq!(dollars(23_456_000_000_000), "$0.23M");
        let lines = table(["in", "out"], &[Row { name: "signal", counts: Some([5, 4]), ..Row::default() }]);
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["signal", "5", "4", "-", "-", "-", "-", "-", "-"]
        );
    }
}
