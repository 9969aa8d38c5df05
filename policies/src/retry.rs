//! Failure handling's arithmetic: a retry budget (Envoy's and linkerd's) so that retries
//! cannot multiply the load on an origin that is failing, and the share of a circuit
//! breaker's limit that each worker enforces.

use std::time::{Duration, Instant};

/// How many pieces a budget's window is counted in.
const BUCKETS: usize = 10;

/// A retry budget: over the last `window`, retries may be at most `percent` of the requests
/// begun, plus `min_per_second` retries per second whatever the traffic (so that a quiet
/// service still retries). Kept per worker and per group; no clock of its own (`now` is
/// passed in).
#[derive(Clone, Debug)]
pub struct RetryBudget {
    percent: u32,
    min_per_second: u32,
    window: Duration,
    /// Requests and retries per bucket of `window / BUCKETS`.
    buckets: [(u32, u32); BUCKETS],
    /// The start of the bucket `current`.
    started: Option<Instant>,
    /// Its end: until then a request only counts (one comparison, no arithmetic on times).
    ends: Option<Instant>,
    current: usize,
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32, window: Duration) -> Self {
        Self {
            percent,
            min_per_second,
            window: window.max(Duration::from_millis(BUCKETS as u64)),
            buckets: [(0, 0); BUCKETS],
            started: None,
            ends: None,
            current: 0,
        }
    }

    /// Moves the window on to `now`, forgetting the buckets that fell out of it.
    fn advance(&mut self, now: Instant) {
        if self.ends.is_some_and(|ends| now < ends) {
            return;
        }
        let width = self.window / BUCKETS as u32;
        let Some(started) = self.started else {
            self.started = Some(now);
            self.ends = Some(now + width);
            return;
        };
        let elapsed = now.saturating_duration_since(started);
        let steps = (elapsed.as_nanos() / width.as_nanos().max(1)) as usize;
        if steps == 0 {
            return;
        }
        if steps >= BUCKETS {
            // The whole window is over: start it again now.
            self.buckets = [(0, 0); BUCKETS];
            self.started = Some(now);
            self.ends = Some(now + width);
            return;
        }
        for k in 1..=steps {
            self.buckets[(self.current + k) % BUCKETS] = (0, 0);
        }
        self.current = (self.current + steps) % BUCKETS;
        let started = started + width * u32::try_from(steps).unwrap_or(u32::MAX);
        self.started = Some(started);
        self.ends = Some(started + width);
    }

    /// A request begins (its first try).
    pub fn request(&mut self, now: Instant) {
        self.advance(now);
        let bucket = &mut self.buckets[self.current];
        bucket.0 = bucket.0.saturating_add(1);
    }

    /// Whether one more retry fits in the budget at `now`; counts it when it does.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.advance(now);
        let (requests, retries) = self.buckets.iter().fold((0u64, 0u64), |(q, r), &(bq, br)| {
            (q + u64::from(bq), r + u64::from(br))
        });
        let floor = u64::from(self.min_per_second) * self.window.as_millis() as u64 / 1000;
        let allowed = floor + requests * u64::from(self.percent) / 100;
        if retries >= allowed {
            return false;
        }
        let bucket = &mut self.buckets[self.current];
        bucket.1 = bucket.1.saturating_add(1);
        true
    }
}

/// The part of a process-wide limit that worker `worker` of `workers` enforces: the limit
/// split as evenly as it goes, the first workers taking the remainder, and at least 1 each
/// (so a limit below the number of workers admits one per worker).
pub fn worker_share(limit: u32, workers: usize, worker: usize) -> u32 {
    let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    let worker = u32::try_from(worker).unwrap_or(u32::MAX);
    let base = limit / workers;
    let extra = u32::from(worker < limit % workers);
    (base + extra).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_their_share_of_the_requests() {
        let start = Instant::now();
        // 20 % of the requests, no floor.
        let mut budget = RetryBudget::new(20, 0, Duration::from_secs(10));
        for _ in 0..100 {
            budget.request(start);
        }
        let granted = (0..100).filter(|_| budget.try_retry(start)).count();
        assert_eq!(granted, 20);
        // More requests make room for more retries.
        for _ in 0..10 {
            budget.request(start);
        }
        assert!(budget.try_retry(start));
        assert!(budget.try_retry(start));
        assert!(!budget.try_retry(start));
    }

    #[test]
    fn the_floor_lets_a_quiet_service_retry() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(20, 1, Duration::from_secs(10));
        // No request at all: 1 per second over 10 s.
        let granted = (0..100).filter(|_| budget.try_retry(start)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let start = Instant::now();
        let mut budget = RetryBudget::new(50, 0, Duration::from_secs(10));
        for _ in 0..10 {
            budget.request(start);
        }
        assert_eq!((0..10).filter(|_| budget.try_retry(start)).count(), 5);
        // Half a window on: the same buckets still count.
        let half = start + Duration::from_secs(5);
        assert!(!budget.try_retry(half));
        // A whole window on: all forgotten, and no request since means no retry.
        let later = start + Duration::from_secs(11);
        assert!(!budget.try_retry(later));
        budget.request(later);
        budget.request(later);
        assert!(budget.try_retry(later));
        // Far later (many windows): nothing left over, no overflow.
        let far = start + Duration::from_secs(10_000);
        assert!(!budget.try_retry(far));
    }

    #[test]
    fn a_limit_is_split_between_workers() {
        assert_eq!(
            (0..3).map(|w| worker_share(10, 3, w)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!((0..2).map(|w| worker_share(100, 2, w)).sum::<u32>(), 100);
        // Below the number of workers: one each.
        assert_eq!(
            (0..4).map(|w| worker_share(2, 4, w)).collect::<Vec<_>>(),
            [1, 1, 1, 1]
        );
        assert_eq!(worker_share(5, 1, 0), 5);
    }
}

/// Buckets of a [`LatencyWindow`]: each 1/8 of a power of two wider than the one before, from
/// 64 µs (the first holds everything below) to about 16 s (the last holds everything above).
const LATENCY_BUCKETS: usize = 8 * 18;
const LATENCY_FLOOR_NANOS: u64 = 64_000;

/// Recent response times, for a percentile (a hedged request's delay): counts in buckets
/// 1/8 of a power of two wide, over the current and the previous window of `window`, so the
/// percentile follows the last one to two windows of traffic.
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    window: Duration,
    current: Vec<u32>,
    previous: Vec<u32>,
    ends: Option<Instant>,
}

impl LatencyWindow {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            current: vec![0; LATENCY_BUCKETS],
            previous: vec![0; LATENCY_BUCKETS],
            ends: None,
        }
    }

    fn bucket(latency: Duration) -> usize {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        if nanos <= LATENCY_FLOOR_NANOS {
            return 0;
        }
        let ratio = nanos / LATENCY_FLOOR_NANOS;
        let octave = 63 - u64::from(ratio.leading_zeros());
        // The eighth within the octave, from the next three bits.
        let eighth = if octave >= 3 {
            (nanos / (LATENCY_FLOOR_NANOS << (octave - 3))) & 7
        } else {
            ((nanos << (3 - octave)) / LATENCY_FLOOR_NANOS) & 7
        };
        (usize::try_from(octave * 8 + eighth).unwrap_or(usize::MAX) + 1).min(LATENCY_BUCKETS - 1)
    }

    /// The upper bound of bucket `i`.
    fn bound(i: usize) -> Duration {
        if i == 0 {
            return Duration::from_nanos(LATENCY_FLOOR_NANOS);
        }
        let (octave, eighth) = ((i - 1) / 8, (i - 1) % 8);
        let base = LATENCY_FLOOR_NANOS << octave;
        Duration::from_nanos(base + base * (eighth as u64 + 1) / 8)
    }

    fn roll(&mut self, now: Instant) {
        match self.ends {
            Some(ends) if now < ends => {}
            Some(ends) => {
                if now < ends + self.window {
                    std::mem::swap(&mut self.previous, &mut self.current);
                } else {
                    self.previous.fill(0);
                }
                self.current.fill(0);
                self.ends = Some(now + self.window);
            }
            None => self.ends = Some(now + self.window),
        }
    }

    /// Takes in one response time, at `now`.
    pub fn record(&mut self, latency: Duration, now: Instant) {
        self.roll(now);
        let bucket = &mut self.current[Self::bucket(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// The `percentile` (0 to 100) of the recent response times, rounded up to its bucket's
    /// bound; `None` with fewer than `min_samples` of them.
    pub fn percentile(
        &mut self,
        percentile: u32,
        min_samples: u64,
        now: Instant,
    ) -> Option<Duration> {
        self.roll(now);
        let total: u64 = self
            .current
            .iter()
            .chain(&self.previous)
            .map(|&n| u64::from(n))
            .sum();
        if total < min_samples.max(1) {
            return None;
        }
        let rank = (total * u64::from(percentile.min(100)))
            .div_ceil(100)
            .max(1);
        let mut seen = 0u64;
        for i in 0..LATENCY_BUCKETS {
            seen += u64::from(self.current[i]) + u64::from(self.previous[i]);
            if seen >= rank {
                return Some(Self::bound(i));
            }
        }
        Some(Self::bound(LATENCY_BUCKETS - 1))
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn the_percentile_follows_recent_times_within_a_bucket() {
        let start = Instant::now();
        let mut w = LatencyWindow::new(Duration::from_secs(10));
        assert_eq!(w.percentile(95, 10, start), None);
        // 95 fast (1 ms), 5 slow (100 ms): p90 is fast, p99 slow.
        for i in 0..100 {
            let ms = if i < 95 { 1 } else { 100 };
            w.record(Duration::from_millis(ms), start);
        }
        let p90 = w.percentile(90, 10, start).unwrap();
        assert!(
            p90 >= Duration::from_millis(1) && p90 <= Duration::from_micros(1150),
            "{p90:?}"
        );
        let p99 = w.percentile(99, 10, start).unwrap();
        assert!(
            p99 >= Duration::from_millis(100) && p99 <= Duration::from_millis(115),
            "{p99:?}"
        );
        // Two windows on, only what came since counts.
        let later = start + Duration::from_secs(21);
        assert_eq!(w.percentile(50, 10, later), None);
        for _ in 0..20 {
            w.record(Duration::from_millis(5), later);
        }
        let p50 = w.percentile(50, 10, later).unwrap();
        assert!(
            p50 >= Duration::from_millis(5) && p50 <= Duration::from_micros(5700),
            "{p50:?}"
        );
    }

    #[test]
    fn buckets_are_ordered_and_bound_what_they_hold() {
        let mut last = Duration::ZERO;
        for i in 0..LATENCY_BUCKETS {
            let bound = LatencyWindow::bound(i);
            assert!(bound > last, "bucket {i}");
            last = bound;
        }
        for micros in [1u64, 64, 65, 100, 999, 1000, 12_345, 1_000_000, 9_000_000] {
            let latency = Duration::from_micros(micros);
            let i = LatencyWindow::bucket(latency);
            assert!(
                latency <= LatencyWindow::bound(i),
                "{micros} µs in bucket {i}"
            );
            if i > 0 {
                assert!(
                    latency > LatencyWindow::bound(i - 1),
                    "{micros} µs in bucket {i}"
                );
            }
        }
    }
}
