//! The SVG of a latency scenario (plotters, its SVG backend only): on top the percentile
//! spectrum of each series (latency against 1/(1−p) on a log axis, labelled 90 %, 99 %,
//! 99.9 % …), the relay against the floor on one chart; below, p99.9 (solid) and max (dashed)
//! of each second of the measurement. Both latency axes are logarithmic: tails are orders of
//! magnitude above medians.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::hdr::NS_PER_US;

/// One line of each chart: a whole-run histogram and its per-second p99.9 and max.
#[derive(Debug)]
pub struct Series<'a> {
    pub label: String,
    pub histogram: &'a Histogram<u64>,
    /// (seconds from the measurement's start, p99.9 ns, max ns), one per second; runs follow
    /// one another on the time axis.
    pub per_second: Vec<(f64, u64, u64)>,
}

const COLORS: [RGBColor; 4] = [RGBColor(200, 40, 40), RGBColor(40, 90, 200), RGBColor(30, 150, 60), BLACK];

/// `1/(1-p)` as a percentile label: 1 → "0%", 10 → "90%", 1000 → "99.9%".
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

/// The points of a percentile spectrum: (1/(1−p), µs) for each step of 5 ticks per half
/// distance, up to the last quantile short of 1, then the max at 1/(1−p) = the count.
fn spectrum(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = histogram
        .iter_quantiles(5)
        .filter(|step| step.quantile_iterated_to() < 1.0)
        .map(|step| (1.0 / (1.0 - step.quantile_iterated_to()), step.value_iterated_to() as f64 / NS_PER_US))
        .collect();
    if !histogram.is_empty() {
        points.push((histogram.len().max(2) as f64, histogram.max() as f64 / NS_PER_US));
    }
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
            .flat_map(|s| s.per_second.iter().flat_map(|p| [p.1, p.2]))
            .map(|ns| ns as f64 / NS_PER_US),
    );
    let (low, high) = all_values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if high <= 0.0 {
        return Err(fail(&"no latency recorded"));
    }
    let y_range = (low.max(0.01) / 1.5)..(high * 1.5);
    let widest = spectra.iter().flatten().map(|p| p.0).fold(10.0f64, f64::max);
    let x_max = 10f64.powf(widest.log10().ceil());

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
        .build_cartesian_2d((1.0..x_max).log_scale(), y_range.clone().log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (axis: 1/(1-p), log)")
        .y_desc("latency, µs (log)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format_us(*y))
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

    let seconds = series.iter().flat_map(|s| s.per_second.iter().map(|p| p.0)).fold(1.0f64, f64::max) + 1.0;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("per second: p99.9 (solid) and max (dashed)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..seconds, y_range.log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("second of the measurement (runs one after another)")
        .y_desc("latency, µs (log)")
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.1}") })
        .y_label_formatter(&|y| format_us(*y))
        .draw()
        .map_err(|e| fail(&e))?;
    for (s, color) in series.iter().zip(COLORS.iter().cycle()) {
        let p999 = s.per_second.iter().map(|p| (p.0 + 0.5, p.1 as f64 / NS_PER_US));
        chart.draw_series(LineSeries::new(p999, color.stroke_width(2))).map_err(|e| fail(&e))?;
        let max = s.per_second.iter().map(|p| (p.0 + 0.5, p.2 as f64 / NS_PER_US)).collect::<Vec<_>>();
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

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
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
                per_second: vec![(0.0, 16_000, 900_000), (1.0, 16_000, 17_000)],
            },
            Series {
                label: "floor".into(),
                histogram: &floor,
                per_second: vec![(0.0, 15_000, 15_500), (1.0, 15_000, 15_400)],
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
