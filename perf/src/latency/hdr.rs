//! HDR histograms of latency and the two files they are kept in.
//!
//! - A [`Recorder`] keeps one histogram per second of a run (by receive time, from the
//!   intended send time of the first measured frame), so a stall shows in the second it
//!   happened instead of vanishing into the whole run's distribution.
//! - An **interval log** (`.hlog`) is the `hdrhistogram` crate's V2 interval log, as the Java
//!   `HistogramLogWriter` writes it and `HistogramLogProcessor` reads it: a `StartTime` and a
//!   `BaseTime` header, then one line per histogram, `[Tag=T,]start,length,max,base64(V2 deflate
//!   histogram)`, start relative to `BaseTime`, max in µs (`MaxValueDivisor` 1000; the
//!   histograms themselves are in ns).
//! - A **percentile distribution** (`.hgrm`) is the text of the Java
//!   `AbstractHistogram.outputPercentileDistribution` (5 ticks per half distance), values in µs,
//!   as `HistogramLogProcessor` writes it and the online HdrHistogram plotter loads it.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Nanoseconds in the unit the files and reports use (µs).
pub const NS_PER_US: f64 = 1000.0;

/// Latencies from 1 ns to 60 s, 3 significant digits (0.1 % resolution).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// The percentiles a report gives of one histogram, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Summary {
    /// The percentiles of `histogram` (all 0 when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Summary {
        if histogram.is_empty() {
            return Summary::default();
        }
        let q = |q: f64| histogram.value_at_quantile(q);
        Summary {
            count: histogram.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }

    /// The figures a table shows, with their names: p50 … max.
    pub fn figures(&self) -> [(&'static str, u64); 6] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p99_9),
            ("p99.99", self.p99_99),
            ("max", self.max),
        ]
    }
}

/// One second of a run.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Seconds from the start of the measurement.
    pub start_s: u64,
    pub histogram: Histogram<u64>,
}

/// Records latencies into one histogram per second of receive time.
#[derive(Debug)]
pub struct Recorder {
    /// Intended send time of the first frame recorded (ns since the epoch): second 0 starts here.
    base_ns: Option<u64>,
    current: Interval,
    closed: Vec<Interval>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            base_ns: None,
            current: Interval { start_s: 0, histogram: histogram() },
            closed: Vec::new(),
        }
    }
}

impl Recorder {
    /// Records a frame meant to be sent at `intended_ns` and received at `received_ns` (both
    /// ns since the epoch). Returns true when this closed at least one second (the frame
    /// belongs to a later one), so the caller can report progress.
    pub fn record(&mut self, intended_ns: u64, received_ns: u64) -> bool {
        let base = *self.base_ns.get_or_insert(intended_ns);
        let second = received_ns.saturating_sub(base) / 1_000_000_000;
        let closed = second > self.current.start_s;
        while second > self.current.start_s {
            // Seconds without a frame stay in the log, empty, so the time axis has no holes.
            let next = Interval { start_s: self.current.start_s + 1, histogram: histogram() };
            self.closed.push(std::mem::replace(&mut self.current, next));
        }
        self.current.histogram.saturating_record(received_ns.saturating_sub(intended_ns).max(1));
        closed
    }

    /// The last second closed, if any.
    pub fn last_closed(&self) -> Option<&Interval> {
        self.closed.last()
    }

    /// When second 0 started (ns since the epoch), once a frame was recorded.
    pub fn base_ns(&self) -> Option<u64> {
        self.base_ns
    }

    /// Every second, the one in progress included (unless nothing was ever recorded).
    pub fn finish(mut self) -> Vec<Interval> {
        if self.base_ns.is_some() {
            self.closed.push(self.current);
        }
        self.closed
    }
}

/// The sum of some intervals.
pub fn total<'a>(intervals: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut total = histogram();
    for histogram in intervals {
        total.add(histogram).unwrap_or_else(|_| unreachable!("same bounds, auto-resizing off: in range"));
    }
    total
}

fn epoch(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// One histogram of an interval log, with its tag and start (s from the log's `BaseTime`).
#[derive(Debug, Clone)]
pub struct Logged {
    pub tag: Option<String>,
    pub start_s: f64,
    pub histogram: Histogram<u64>,
}

/// Writes an interval log: `comments` first, `StartTime` and `BaseTime` at `base_ns`, then each
/// histogram as a one-second interval starting `start_s` after it.
///
/// # Errors
///
/// When writing or serializing fails.
pub fn write_interval_log(
    out: &mut impl Write,
    base_ns: u64,
    comments: &[String],
    histograms: &[Logged],
) -> Result<(), String> {
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment("[Histogram log format version 1.3]");
    for comment in comments {
        builder.add_comment(comment);
    }
    builder.with_start_time(epoch(base_ns)).with_base_time(epoch(base_ns)).with_max_value_divisor(NS_PER_US);
    let mut serializer = V2DeflateSerializer::new();
    let mut log = builder.begin_log_with(out, &mut serializer).map_err(|e| e.to_string())?;
    for logged in histograms {
        let tag = match &logged.tag {
            Some(tag) => Some(Tag::new(tag).ok_or_else(|| format!("tag {tag:?}: no commas or spaces"))?),
            None => None,
        };
        let start = Duration::from_secs_f64(logged.start_s);
        log.write_histogram(&logged.histogram, start, Duration::from_secs(1), tag)
            .map_err(|e| format!("interval log: {e}"))?;
    }
    Ok(())
}

/// Reads an interval log: its `BaseTime` (ns since the epoch, 0 when absent) and histograms.
///
/// # Errors
///
/// When a line does not parse or a histogram does not decode.
pub fn read_interval_log(text: &[u8]) -> Result<(u64, Vec<Logged>), String> {
    let mut base_ns = 0;
    let mut histograms = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(text) {
        match entry.map_err(|e| format!("interval log: {e:?}"))? {
            LogEntry::BaseTime(time) => base_ns = time.as_nanos() as u64,
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(interval) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(interval.encoded_histogram())
                    .map_err(|e| format!("interval log: base64: {e}"))?;
                let decoded: Histogram<u64> = deserializer
                    .deserialize(&mut bytes.as_slice())
                    .map_err(|e| format!("interval log: histogram: {e:?}"))?;
                let mut histogram = histogram();
                histogram.add(&decoded).map_err(|e| format!("interval log: {e:?}"))?;
                histograms.push(Logged {
                    tag: interval.tag().map(|tag| tag.as_str().to_string()),
                    start_s: interval.start_timestamp().as_secs_f64(),
                    histogram,
                });
            }
        }
    }
    Ok((base_ns, histograms))
}

/// Writes the percentile distribution of `histogram` (ns) in µs, in the Java
/// `outputPercentileDistribution` format: a header, one line per step of 5 ticks per half
/// distance (value, percentile as a fraction, count up to it, 1/(1−percentile)), the last at
/// percentile 1 without the last column, then mean, standard deviation, max, count and the
/// histogram's bucket shape.
///
/// # Errors
///
/// When writing fails.
pub fn write_percentile_distribution(out: &mut impl Write, histogram: &Histogram<u64>) -> io::Result<()> {
    let us = |ns: f64| ns / NS_PER_US;
    writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")?;
    let mut count = 0;
    for step in histogram.iter_quantiles(5) {
        count += step.count_since_last_iteration();
        let value = us(step.value_iterated_to() as f64);
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            writeln!(out, "{value:12.3} {quantile:2.12} {count:10} {:14.2}", 1.0 / (1.0 - quantile))?;
        } else {
            writeln!(out, "{value:12.3} {quantile:2.12} {count:10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        us(histogram.mean()),
        us(histogram.stdev())
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        us(histogram.max() as f64),
        histogram.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        histogram.distinct_values()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const BASE: u64 = 1_800_000_000 * SECOND;

    #[test]
    fn seconds_are_counted_from_the_first_intended_time_by_receive_time() {
        let mut recorder = Recorder::default();
        assert!(!recorder.record(BASE, BASE + 20_000));
        assert!(!recorder.record(BASE + 500_000_000, BASE + SECOND - 1));
        // Received in second 3 (a stall): seconds 1 and 2 stay, empty.
        assert!(recorder.record(BASE + SECOND - 100, BASE + 3 * SECOND + 10));
        assert_eq!(recorder.last_closed().map(|i| i.start_s), Some(2));
        assert_eq!(recorder.base_ns(), Some(BASE));
        let intervals = recorder.finish();
        let counts: Vec<(u64, u64)> = intervals.iter().map(|i| (i.start_s, i.histogram.len())).collect();
        assert_eq!(counts, [(0, 2), (1, 0), (2, 0), (3, 1)]);
        // The late frame is measured from when it should have gone, not from when it went.
        assert!(intervals[3].histogram.equivalent(intervals[3].histogram.max(), 2 * SECOND + 110));
        assert!(Recorder::default().finish().is_empty(), "nothing recorded, no interval");
    }

    #[test]
    fn an_interval_log_reads_back_as_written() {
        let mut first = histogram();
        first.record_n(15_000, 900).unwrap();
        first.record(2_000_000).unwrap();
        let mut second = histogram();
        second.record(18_500).unwrap();
        let logged = vec![
            Logged { tag: Some("run1".into()), start_s: 0.0, histogram: first.clone() },
            Logged { tag: Some("run1".into()), start_s: 1.0, histogram: second.clone() },
            Logged { tag: None, start_s: 2.0, histogram: histogram() },
        ];
        let mut text = Vec::new();
        write_interval_log(&mut text, BASE, &["a comment".into()], &logged).unwrap();
        let text_str = String::from_utf8(text.clone()).unwrap();
        let lines: Vec<&str> = text_str.lines().collect();
        assert_eq!(lines[0], "#[Histogram log format version 1.3]");
        assert_eq!(lines[1], "#a comment");
        assert_eq!(lines[2], "#[StartTime: 1800000000.000 (seconds since epoch)]");
        assert_eq!(lines[3], "#[BaseTime: 1800000000.000 (seconds since epoch)]");
        assert!(lines[5].starts_with("Tag=run1,0.000,1.000,2000.895,"), "max in µs: {}", lines[5]);
        assert!(lines[7].starts_with("2.000,1.000,0.000,"), "{}", lines[7]);
        let (base, read) = read_interval_log(&text).unwrap();
        assert_eq!(base, BASE);
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].histogram, first);
        assert_eq!(read[1].histogram, second);
        assert_eq!((read[1].tag.as_deref(), read[1].start_s), (Some("run1"), 1.0));
        assert_eq!((read[2].tag.as_deref(), read[2].histogram.len()), (None, 0));
        assert!(read_interval_log(b"0.000,1.000,1.0,notbase64!\n").is_err());
    }

    #[test]
    fn the_percentile_distribution_is_the_java_text() {
        let mut h = histogram();
        for value in 1..=1000u64 {
            h.record(value * 1000).unwrap(); // 1 µs .. 1 ms
        }
        let mut text = Vec::new();
        write_percentile_distribution(&mut text, &h).unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       1.000 0.000000000000          1           1.00");
        let median = lines.iter().find(|l| l.contains(" 0.500000000000 ")).unwrap();
        assert_eq!(*median, "     500.223 0.500000000000        500           2.00");
        let last = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert_eq!(*last, "    1000.447 1.000000000000       1000");
        assert_eq!(lines[lines.len() - 2], "#[Max     =     1000.447, Total count    =         1000]");
        assert!(lines[lines.len() - 3].starts_with("#[Mean    =      500."), "{}", lines[lines.len() - 3]);
        assert!(lines[lines.len() - 1].starts_with("#[Buckets = "));
        // Every data line has the four (the last, three) columns and rising percentiles.
        let data: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(data.windows(2).all(|w| w[0][1] <= w[1][1] && w[0][0] <= w[1][0]));
        assert!(data[..data.len() - 1].iter().all(|l| l.len() == 4));
    }

    #[test]
    fn summaries_read_the_percentiles() {
        let mut h = histogram();
        for value in 1..=10_000u64 {
            h.record(value).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 10_000);
        assert!(h.equivalent(s.p50, 5000) && h.equivalent(s.p99_9, 9990) && h.equivalent(s.p99_99, 9999));
        assert_eq!(s.max, h.max());
        assert_eq!(Summary::of(&histogram()), Summary::default());
    }
}
