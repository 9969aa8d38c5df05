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
