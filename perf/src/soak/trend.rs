//! Whether a sampled series trends upward.
//!
//! A soak samples each resource once a second. The first [`WARM_UP`] of the run is left out
//! (queues fill, the allocator and the kernel's socket buffers settle). A series **rises**
//! when both of these exceed its tolerance:
//!
//! - the **step**: the median of the last third of the run minus the median of the middle
//!   third (medians, so one burst at a sampling instant moves nothing);
//! - the **fit**: the slope of the least-squares line through every sample after the warm-up,
//!   times the time those samples span (the growth the line says happened).
//!
//! A leak grows steadily and trips both; a burst near the end moves the fit but not the
//! medians; a level that wanders within its bounds moves neither by more than the tolerance.
//! The tolerance of a series is `absolute + relative × (median of the middle third)`.

use serde::Serialize;

/// The share of the run left out before judging.
pub const WARM_UP: f64 = 0.2;

/// How much a series may grow before it counts as rising.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Growth always allowed, in the series' unit.
    pub absolute: f64,
    /// Growth allowed in proportion to the median of the middle third.
    pub relative: f64,
}

/// The verdict on one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// The first sample.
    pub start: f64,
    /// The last sample.
    pub end: f64,
    /// The largest sample.
    pub max: f64,
    /// Median of the samples in the middle third of the run.
    pub middle_median: f64,
    /// Median of the samples in the last third of the run.
    pub last_median: f64,
    /// Least-squares slope after the warm-up, per minute.
    pub slope_per_min: f64,
    /// `last_median − middle_median`.
    pub step: f64,
    /// The slope times the time the samples after the warm-up span.
    pub fit: f64,
    /// The growth allowed: `absolute + relative × middle_median`.
    pub allowed: f64,
    /// Both the step and the fit exceed `allowed`.
    pub rising: bool,
}

/// Judges `samples` (`(seconds since the start, value)`, in time order) of a run that lasted
/// `run_s` seconds; `None` when there are too few samples to judge (fewer than one in each
/// of the middle and last thirds, or fewer than two after the warm-up).
pub fn judge(samples: &[(f64, f64)], run_s: f64, tolerance: Tolerance) -> Option<Trend> {
    let (&(_, start), &(_, end)) = (samples.first()?, samples.last()?);
    let after_warm_up: Vec<(f64, f64)> =
        samples.iter().copied().filter(|(t, _)| *t >= WARM_UP * run_s).collect();
    let values_in = |from: f64, to: f64| -> Vec<f64> {
        samples.iter().filter(|(t, _)| *t >= from * run_s && *t < to * run_s).map(|(_, v)| *v).collect()
    };
    // The last third includes the sample at the very end of the run.
    let middle_median = median(values_in(1.0 / 3.0, 2.0 / 3.0))?;
    let last_median = median(values_in(2.0 / 3.0, f64::INFINITY))?;
    let slope = slope(&after_warm_up)?;
    let span = after_warm_up.last()?.0 - after_warm_up.first()?.0;
    let (step, fit) = (last_median - middle_median, slope * span);
    let allowed = tolerance.absolute + tolerance.relative * middle_median.max(0.0);
    Some(Trend {
        start,
        end,
        max: samples.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max),
        middle_median,
        last_median,
        slope_per_min: slope * 60.0,
        step,
        fit,
        allowed,
        rising: step > allowed && fit > allowed,
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// The least-squares slope of `points`, per second; `None` for fewer than two distinct times.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_t = points.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_v = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, v) in points {
        covariance += (t - mean_t) * (v - mean_v);
        variance += (t - mean_t) * (t - mean_t);
    }
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: f64 = 600.0;
    const TOLERANCE: Tolerance = Tolerance { absolute: 4.0, relative: 0.1 };

    /// One sample a second for the whole run.
    fn series(value: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=600).map(|t| t as f64).map(|t| (t, value(t))).collect()
    }

    /// A repeatable wobble in [-1, 1].
    fn noise(t: f64) -> f64 {
        ((t * 12.9898).sin() * 43_758.547).fract()
    }

    #[test]
    fn a_flat_noisy_series_does_not_rise() {
        let trend = judge(&series(|t| 100.0 + 8.0 * noise(t)), RUN, TOLERANCE).unwrap();
        assert!(!trend.rising, "{trend:?}");
        assert!(trend.step.abs() < 3.0 && trend.fit.abs() < 3.0, "{trend:?}");
    }

    #[test]
    fn steady_growth_rises() {
        // 100 → 160 over the run: +20 between the thirds' medians (130 → 150), beyond the
        // 4 + 10 % × 130 = 17 allowed.
        let trend = judge(&series(|t| 100.0 + t / 10.0 + noise(t)), RUN, TOLERANCE).unwrap();
        assert!(trend.rising, "{trend:?}");
        assert!((trend.step - 20.0).abs() < 1.0, "{trend:?}");
        assert!((trend.slope_per_min - 6.0).abs() < 0.1, "{trend:?}");
        assert!((trend.fit - 48.0).abs() < 1.0, "{trend:?}");
        // The same growth within a larger tolerance does not rise.
        let loose = Tolerance { absolute: 30.0, relative: 0.0 };
        assert!(!judge(&series(|t| 100.0 + t / 10.0), RUN, loose).unwrap().rising);
    }

    #[test]
    fn growth_during_the_warm_up_only_does_not_rise() {
        let trend = judge(&series(|t| if t < 100.0 { t } else { 100.0 }), RUN, TOLERANCE).unwrap();
        assert!(!trend.rising, "{trend:?}");
        assert_eq!((trend.start, trend.end, trend.max), (0.0, 100.0, 100.0));
    }

    #[test]
    fn a_burst_at_the_end_moves_the_fit_not_the_medians() {
        let trend = judge(&series(|t| if t > 590.0 { 1000.0 } else { 100.0 }), RUN, TOLERANCE).unwrap();
        assert!(trend.fit > trend.allowed, "the line feels the burst: {trend:?}");
        assert!(!trend.rising, "{trend:?}");
        assert_eq!(trend.max, 1000.0);
    }

    #[test]
    fn a_lasting_step_up_in_the_last_third_rises() {
        let trend = judge(&series(|t| if t > 450.0 { 150.0 } else { 100.0 }), RUN, TOLERANCE).unwrap();
        assert!(trend.rising, "{trend:?}");
        assert_eq!(trend.step, 50.0);
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        assert_eq!(judge(&[], RUN, TOLERANCE), None);
        assert_eq!(judge(&[(0.0, 1.0), (100.0, 2.0)], RUN, TOLERANCE), None);
        // Six samples of a six-second run: judged.
        let short: Vec<(f64, f64)> = (0..=6).map(|t| (t as f64, 10.0)).collect();
        assert!(judge(&short, 6.0, TOLERANCE).is_some_and(|t| !t.rising));
    }
}
