//! Latency recording and the percentile figures reported from it.
//!
//! Each generator thread records into its own [`LatencyRecorder`] (an `HdrHistogram` of
//! microseconds, 3 significant figures, so any value is within 0.1 %); the threads' recorders are
//! merged after the run and summarised as a [`LatencySummary`]: mean, standard deviation, the
//! fixed percentiles wrk prints (p50, p75, p90, p99) plus p99.9, p99.99 and max, and a
//! [`LatencySummary::curve`] of points for the comparison chart.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The percentiles every report lists, in order.
pub const REPORTED_PERCENTILES: [f64; 7] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// The points of the latency curve drawn in the comparison chart.
pub const CURVE_PERCENTILES: [f64; 9] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

/// Records latencies of one thread, in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        // Auto-resizing: no upper bound to pick, and 3 figures keeps it to tens of KiB.
        let mut hist = Histogram::new(3).expect("3 significant figures is a valid precision");
        hist.auto(true);
        LatencyRecorder { hist }
    }

    /// Records one latency (rounded down to whole microseconds, at least 1).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // With auto-resize on, recording can only fail for values past u64 range.
        let _ = self.hist.record(us);
    }

    /// Adds another thread's recordings.
    pub fn merge(&mut self, other: &LatencyRecorder) {
        let _ = self.hist.add(&other.hist);
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary::from_histogram(&self.hist)
    }
}

/// One percentile and its latency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    /// 0..=100.
    pub percentile: f64,
    /// Microseconds.
    pub us: u64,
}

/// The latency figures of a run, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Responses recorded.
    pub count: u64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p75_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// Points at [`CURVE_PERCENTILES`], for plotting.
    pub curve: Vec<Percentile>,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds; all zeros when it is empty.
    pub fn from_histogram(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return LatencySummary::default();
        }
        let at = |p: f64| hist.value_at_quantile(p / 100.0);
        LatencySummary {
            count: hist.len(),
            mean_us: hist.mean(),
            stdev_us: hist.stdev(),
            min_us: hist.min(),
            p50_us: at(50.0),
            p75_us: at(75.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            p9999_us: at(99.99),
            max_us: hist.max(),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| Percentile {
                    percentile: p,
                    us: if p >= 100.0 { hist.max() } else { at(p) },
                })
                .collect(),
        }
    }

    /// The figure for one of [`REPORTED_PERCENTILES`] (100 is the maximum).
    pub fn at(&self, percentile: f64) -> u64 {
        match percentile {
            p if p >= 100.0 => self.max_us,
            p if p >= 99.99 => self.p9999_us,
            p if p >= 99.9 => self.p999_us,
            p if p >= 99.0 => self.p99_us,
            p if p >= 90.0 => self.p90_us,
            p if p >= 75.0 => self.p75_us,
            _ => self.p50_us,
        }
    }

    /// Share of responses within mean ± one standard deviation, as wrk prints it.
    pub fn within_stdev(&self, hist: &LatencyRecorder) -> f64 {
        if hist.is_empty() {
            return 0.0;
        }
        let lo = (self.mean_us - self.stdev_us).max(0.0);
        let hi = self.mean_us + self.stdev_us;
        let inside: u64 = hist
            .hist
            .iter_recorded()
            .filter(|v| {
                let x = v.value_iterated_to() as f64;
                x >= lo && x <= hi
            })
            .map(|v| v.count_at_value())
            .sum();
        100.0 * inside as f64 / hist.len() as f64
    }
}

/// Formats microseconds the way wrk does: `812.00us`, `1.53ms`, `2.10s`.
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.2}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut rec = LatencyRecorder::new();
        // 1..=10_000 microseconds, once each.
        for us in 1..=10_000u64 {
            rec.record(Duration::from_micros(us));
        }
        let s = rec.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // HdrHistogram with 3 figures reports the highest value of the bucket, within 0.1 %.
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.001, "got {got}, want {want}");
        };
        close(s.p50_us, 5_000);
        close(s.p75_us, 7_500);
        close(s.p90_us, 9_000);
        close(s.p99_us, 9_900);
        close(s.p999_us, 9_990);
        close(s.p9999_us, 9_999);
        close(s.max_us, 10_000);
        assert!((s.mean_us - 5_000.5).abs() < 5.0);
        assert_eq!(s.curve.len(), CURVE_PERCENTILES.len());
        assert_eq!(s.curve.last().unwrap().us, s.max_us);
        assert!(s.curve.windows(2).all(|w| w[0].us <= w[1].us));
        assert_eq!(s.at(99.9), s.p999_us);
        assert_eq!(s.at(100.0), s.max_us);
    }

    #[test]
    fn merging_threads_adds_counts_and_keeps_tails() {
        let mut a = LatencyRecorder::new();
        let mut b = LatencyRecorder::new();
        for _ in 0..999 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 100);
        assert_eq!(s.p99_us, 100);
        assert!(s.p999_us >= 1_999_000, "{}", s.p999_us);
        assert!(s.max_us >= 1_999_000);
        // Sub-microsecond latencies still count, as 1 us.
        let mut c = LatencyRecorder::new();
        c.record(Duration::from_nanos(10));
        assert_eq!(c.summary().min_us, 1);
    }

    #[test]
    fn empty_summary_is_zero_and_formatting() {
        let s = LatencyRecorder::new().summary();
        assert_eq!(s.count, 0);
        assert_eq!(s.max_us, 0);
        assert_eq!(format_us(812.0), "812.00us");
        assert_eq!(format_us(1530.0), "1.53ms");
        assert_eq!(format_us(2_100_000.0), "2.10s");
        let mut r = LatencyRecorder::new();
        for us in [10, 10, 10, 10, 1000] {
            r.record(Duration::from_micros(us));
        }
        let s = r.summary();
        assert!((s.within_stdev(&r) - 80.0).abs() < 1e-9);
    }
}
