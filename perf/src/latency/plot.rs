//! The SVG of a latency scenario (plotters, its SVG backend only): on top the percentile
//! spectrum of each series (latency against 1/(1−p) on a log axis, labelled 90 %, 99 %,
//! 99.9 % …), the relay against the floor on one chart; below, p99.9 (solid) and max (dashed)
//! of each second of the measurement. Both latency axes are logarithmic: tails are orders of
//! magnitude above medians. Log axes are labelled at 1, 2 and 5 × 10^k ([`log_ticks`]), with
//! units; a line ends at its last point with data ([`spectrum`], [`drawn`]).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::hdr::NS_PER_US;

/// One line of each chart: a whole-run histogram and its per-second p99.9 and max.
#[derive(Debug)]
pub struct Series<'a> {
    pub label: String,
    pub histogram: &'a Histogram<u64>,
    /// One per second; runs follow one another on the time axis.
    pub per_second: Vec<Second>,
}

/// One second of a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    /// Seconds from the measurement's start.
    pub start_s: f64,
    pub p99_9_ns: u64,
    pub max_ns: u64,
    /// Frames measured in it.
    pub count: u64,
}

/// The seconds worth a point on the per-second chart: a second holding under a tenth of the
/// series' median count (the few frames received in the last, partial second of a run) has
/// no p99.9 of its own, and drawn it showed as a fall (from 4.6 ms to the 1 ms of its one
/// frame); the line ends at the run's last whole second instead.
pub fn drawn(per_second: &[Second]) -> Vec<Second> {
    let mut counts: Vec<u64> = per_second.iter().map(|s| s.count).collect();
    counts.sort_unstable();
    let Some(&median) = counts.get(counts.len() / 2) else { return Vec::new() };
    per_second.iter().copied().filter(|s| s.count > 0 && s.count * 10 >= median).collect()
}

/// The ticks of a log axis over `low..=high`: 1, 2 and 5 × 10^k, or each decade alone when
/// those would be more than `most` (always at least the decades within the range).
pub fn log_ticks(low: f64, high: f64, most: usize) -> Vec<f64> {
    if !(low > 0.0 && high >= low && high.is_finite()) {
        return Vec::new();
    }
    let ticks = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (low.log10().floor() as i32, high.log10().ceil() as i32);
        (first..=last)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            // A little slack: 10f64.powi(-1) × 5 is not exactly 0.5.
            .filter(|v| *v >= low * (1.0 - 1e-9) && *v <= high * (1.0 + 1e-9))
            .collect()
    };
    let dense = ticks(&[1.0, 2.0, 5.0]);
    if dense.len() <= most { dense } else { ticks(&[1.0]) }
}

/// A latency in µs as an axis label with its unit: "500 ns", "2 µs", "50 ms", "1 s".
pub fn latency_label(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else if us >= 1.0 {
        (us, "µs")
    } else {
        (us * 1e3, "ns")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

const COLORS: [RGBColor; 4] = [RGBColor(200, 40, 40), RGBColor(40, 90, 200), RGBColor(30, 150, 60), BLACK];

/// `1/(1-p)` as a percentile label: 1 → "0%", 2 → "50%", 10 → "90%", 200 → "99.5%", 1000 →
/// "99.9%", 2000 → "99.95%": as many decimals as tell the tick from its neighbours.
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let decimals = ((x.log10() - 1e-9).ceil() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// The points of a percentile spectrum: (1/(1−p), µs) for each step of 5 ticks per half
/// distance while 1/(1−p) is under the count (a percentile further out has no frame of its
/// own), then the max at 1/(1−p) = the count: the line ends at the last percentile with data,
/// and never turns back.
fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let last = histogram.len().max(2) as f64;
    let mut points: Vec<(f64, f64)> = histogram
        .iter_quantiles(5)
        .map(|step| (1.0 / (1.0 - step.quantile_iterated_to()), step.value_iterated_to() as f64 / NS_PER_US))
        .take_while(|(x, _)| *x < last)
        .collect();
    points.push((last, histogram.max() as f64 / NS_PER_US));
    points
}

/// Draws `series` into an SVG file at `path`.
///
/// # Errors
///
/// When there is nothing to draw or the file cannot be written.
pub fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let spectra: Vec<Vec<(f64, f64)>> = series.iter().map(|s| spectrum(s.histogram)).collect();
    let all_values = spectra.iter().flatten().map(|p| p.1).chain(
        series
            .iter()
            .flat_map(|s| drawn(&s.per_second).into_iter().flat_map(|p| [p.p99_9_ns, p.max_ns]))
            .map(|ns| ns as f64 / NS_PER_US),
    );
    let (low, high) = all_values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if high <= 0.0 {
        return Err(fail(&"no latency recorded"));
    }
    let y_range = (low.max(0.01) / 1.5)..(high * 1.5);
    let widest = spectra.iter().flatten().map(|p| p.0).fold(10.0f64, f64::max);
    let x_max = 10f64.powf(widest.log10().ceil());
    let y_ticks = log_ticks(y_range.start, y_range.end, 16);

    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(500);

    let mut chart = ChartBuilder::on(&top)
        .caption("percentile spectrum (every measured frame)", ("sans-serif", 16))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (1.0..x_max).log_scale().with_key_points(log_ticks(1.0, x_max, 12)),
            y_range.clone().log_scale().with_key_points(y_ticks.clone()),
        )
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (axis: 1/(1-p), log)")
        .y_desc("latency (log)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .draw()
        .map_err(|e| fail(&e))?;
    for ((s, points), color) in series.iter().zip(&spectra).zip(COLORS.iter().cycle()) {
        let label = format!(
            "{} (p50 {}, p99.9 {}, max {} µs)",
            s.label,
            q(s.histogram, 0.5),
            q(s.histogram, 0.999),
            format_us(s.histogram.max() as f64 / NS_PER_US)
        );
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;

    let seconds =
        series.iter().flat_map(|s| s.per_second.iter().map(|p| p.start_s)).fold(1.0f64, f64::max) + 1.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("per second: p99.9 (solid) and max (dashed)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..seconds, y_range.log_scale().with_key_points(y_ticks))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("second of the measurement (runs one after another)")
        .y_desc("latency (log)")
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0} s") } else { format!("{x:.1} s") })
        .y_label_formatter(&|y| latency_label(*y))
        .draw()
        .map_err(|e| fail(&e))?;
    for (s, color) in series.iter().zip(COLORS.iter().cycle()) {
        let seconds = drawn(&s.per_second);
        let p999 = seconds.iter().map(|p| (p.start_s + 0.5, p.p99_9_ns as f64 / NS_PER_US));
        chart.draw_series(LineSeries::new(p999, color.stroke_width(2))).map_err(|e| fail(&e))?;
        let max = seconds.iter().map(|p| (p.start_s + 0.5, p.max_ns as f64 / NS_PER_US)).collect::<Vec<_>>();
        chart.draw_series(DashedLineSeries::new(max, 6, 4, color.stroke_width(1))).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

fn q(histogram: &Histogram<u64>, quantile: f64) -> String {
    format_us(histogram.value_at_quantile(quantile) as f64 / NS_PER_US)
}

/// µs with as many decimals as a small number needs.
pub fn format_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 1.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(start_s: f64, p99_9_ns: u64, max_ns: u64, count: u64) -> Second {
        Second { start_s, p99_9_ns, max_ns, count }
    }

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(5.0), "80%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(200.0), "99.5%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(2000.0), "99.95%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn log_axes_are_labelled_at_1_2_and_5_of_each_decade_with_units() {
        let ticks = log_ticks(0.7, 4600.0, 16);
        assert_eq!(ticks.len(), 11, "{ticks:?}");
        let labels: Vec<String> = ticks.iter().map(|t| latency_label(*t)).collect();
        assert_eq!(
            labels,
            ["1 µs", "2 µs", "5 µs", "10 µs", "20 µs", "50 µs", "100 µs", "200 µs", "500 µs", "1 ms", "2 ms"]
        );
        // Below a µs and above a second, in their units; fractions of a unit kept.
        assert_eq!(
            log_ticks(0.15, 0.6, 16).iter().map(|t| latency_label(*t)).collect::<Vec<_>>(),
            ["200 ns", "500 ns"]
        );
        assert_eq!(latency_label(2e6), "2 s");
        assert_eq!(latency_label(1500.0), "1.5 ms");
        // Every decade in range is a tick; when 1-2-5 would crowd the axis, only decades.
        let wide = log_ticks(1.0, 1e7, 12);
        assert_eq!(wide, [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]);
        assert_eq!(log_ticks(1.0, 1e3, 12), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        assert!(log_ticks(0.0, 10.0, 12).is_empty());
        assert_eq!(percentile_label(log_ticks(1.0, 1e3, 12)[7]), "99.5%");
    }

    #[test]
    fn a_run_s_last_partial_second_is_not_drawn() {
        // Runs of 10 000 frames a second; each run's last interval holds the frames of its last
        // few milliseconds (here one), whose p99.9 is that frame: drawn, a fall from 4.6 ms.
        let seconds = [
            second(0.0, 4_600_000, 5_000_000, 10_000),
            second(1.0, 4_500_000, 4_900_000, 9_800),
            second(2.0, 1_000_000, 1_000_000, 1),
            second(3.0, 4_400_000, 4_700_000, 10_000),
            second(4.0, 4_600_000, 4_600_000, 10_100),
            second(5.0, 900_000, 900_000, 37),
        ];
        let kept: Vec<f64> = drawn(&seconds).iter().map(|s| s.start_s).collect();
        assert_eq!(kept, [0.0, 1.0, 3.0, 4.0], "each run's line ends at its last whole second");
        // A slow rate (a hundred frames a second) keeps every second; an empty one is never drawn.
        let slow: Vec<Second> = (0..5).map(|i| second(f64::from(i), 9_000, 9_000, 100)).collect();
        assert_eq!(drawn(&slow).len(), 5);
        assert!(drawn(&[second(0.0, 0, 0, 0)]).is_empty());
        assert!(drawn(&[]).is_empty());
    }

    #[test]
    fn the_spectrum_ends_at_the_last_percentile_with_data() {
        let mut histogram = crate::latency::hdr::histogram();
        for i in 0..999u64 {
            histogram.record(50_000 + i).unwrap();
        }
        histogram.record(4_600_000).unwrap();
        let points = spectrum(&histogram);
        // Never turns back: 1/(1-p) rises, latency never falls; the last point is the max, at
        // 1/(1-p) = the count (the one frame beyond p99.9).
        for pair in points.windows(2) {
            assert!(pair[1].0 > pair[0].0 && pair[1].1 >= pair[0].1, "{pair:?} in {points:?}");
        }
        let last = points.last().unwrap();
        assert_eq!(last.0, 1000.0);
        assert!((last.1 - histogram.max() as f64 / NS_PER_US).abs() < 1e-9, "{last:?}");
        assert!(points[points.len() - 2].1 < 100.0, "the frames below the max are ~50 µs: {points:?}");
        assert!(spectrum(&crate::latency::hdr::histogram()).is_empty());
    }

    #[test]
    fn the_svg_has_both_charts_and_every_series() {
        let mut relay = crate::latency::hdr::histogram();
        let mut floor = crate::latency::hdr::histogram();
        for i in 1..=20_000u64 {
            relay.record(15_000 + i % 1000).unwrap();
            floor.record(14_000 + i % 900).unwrap();
        }
        relay.record(900_000).unwrap();
        let dir = std::env::temp_dir().join(format!("torq-perf-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency.svg");
        let series = [
            Series {
                label: "relay".into(),
                histogram: &relay,
                per_second: vec![second(0.0, 16_000, 900_000, 10_000), second(1.0, 16_000, 17_000, 10_000)],
            },
            Series {
                label: "floor".into(),
                histogram: &floor,
                per_second: vec![second(0.0, 15_000, 15_500, 10_000), second(1.0, 15_000, 15_400, 10_000)],
            },
        ];
        draw(&path, "latency at 10k frames/s", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in [
            "latency at 10k frames/s",
            "percentile spectrum",
            "per second",
            "99.9%",
            "relay (p50",
            "floor (p50",
        ] {
            assert!(svg.contains(text), "no {text:?} in the SVG");
        }
        assert!(svg.matches("<polyline").count() >= 4, "two spectra and two p99.9 lines");
        let empty = crate::latency::hdr::histogram();
        let nothing = [Series { label: "x".into(), histogram: &empty, per_second: vec![] }];
        assert!(draw(&path, "t", &nothing).is_err());
    }
}
