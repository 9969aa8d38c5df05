//! Whether a server may take requests: active checks' rise and fall, passive ejection
//! (outlier detection) with a growing back-off, and slow start, as pure state machines. The
//! caller passes the results and the time in; nothing here does I/O or reads a clock.

use std::time::{Duration, Instant};

use crate::balance::Rng;

/// An active check's thresholds: a server goes down after `fall` failed checks in a row, and
/// up again after `rise` passed ones (HAProxy's and nginx's `rise` / `fall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub rise: u32,
    pub fall: u32,
}

/// One server's state under active checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    up: bool,
    /// Results in a row against the current state.
    streak: u32,
}

impl Checked {
    pub fn new(up: bool) -> Self {
        Self { up, streak: 0 }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Takes one check's result; `Some(up)` when the server's state changes with it.
    pub fn record(&mut self, passed: bool, thresholds: Thresholds) -> Option<bool> {
        if passed == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up {
            thresholds.fall
        } else {
            thresholds.rise
        };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = passed;
        self.streak = 0;
        Some(passed)
    }
}

/// The wait before the next check: `interval`, moved by up to `jitter` either way, so that
/// the checks of many servers (and of many proxies) do not fall on the same instant.
pub fn next_check(interval: Duration, jitter: Duration, rng: &mut Rng) -> Duration {
    let jitter = jitter.min(interval);
    if jitter.is_zero() {
        return interval;
    }
    let span = u64::try_from(jitter.as_nanos() * 2).unwrap_or(u64::MAX);
    let offset = Duration::from_nanos(rng.next_u64() % span.max(1));
    (interval + offset).saturating_sub(jitter)
}

/// Passive checks' settings (Envoy's outlier detection, nginx's `max_fails`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// Failures in a row that eject a server; 0 turns passive ejection off.
    pub consecutive: u32,
    /// The first ejection's length; each ejection that follows closely doubles it.
    pub base: Duration,
    /// The longest an ejection lasts.
    pub max: Duration,
    /// The most of a group's servers ejected at once, in percent. A group of one server never
    /// has it ejected; a larger one may always have one ejected.
    pub max_percent: u32,
}

impl Ejection {
    /// How many of `servers` may be ejected at once.
    pub fn max_ejected(&self, servers: usize) -> usize {
        if servers < 2 {
            return 0;
        }
        (servers * self.max_percent.min(100) as usize / 100).max(1)
    }

    /// The length of the `n`-th ejection in a row (1-based): base, 2 × base, 4 × base, … up
    /// to `max`.
    pub fn length(&self, n: u32) -> Duration {
        let doubling = n.saturating_sub(1).min(20);
        self.base
            .saturating_mul(1 << doubling)
            .min(self.max.max(self.base))
    }
}

/// One server's passive-check state on one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outlier {
    /// Failures in a row.
    failures: u32,
    /// Ejections in a row (forgotten after a quiet `max` back in service).
    ejections: u32,
    /// Ejected until then.
    until: Option<Instant>,
}

impl Outlier {
    /// Whether the server is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Whether failures in a row are being counted (a success would reset them).
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }

    /// When the current ejection ends.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Takes one request's outcome on the server. When it ejects the server, the answer is
    /// the ejection's length. `may_eject`: whether the group's maximum ejected share allows one
    /// more (a failure that would eject past it only counts).
    pub fn record(
        &mut self,
        failed: bool,
        now: Instant,
        policy: &Ejection,
        may_eject: bool,
    ) -> Option<Duration> {
        if !failed {
            self.failures = 0;
            return None;
        }
        if policy.consecutive == 0 || self.is_ejected(now) {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures < policy.consecutive || !may_eject {
            return None;
        }
        // An ejection long after the last one ended starts the back-off over.
        if let Some(until) = self.until {
            if now.saturating_duration_since(until) > policy.max {
                self.ejections = 0;
            }
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = policy.length(self.ejections);
        self.eject(now, length);
        Some(length)
    }

    /// Ejects the server from `now` for `length` (decided here, or by another worker).
    pub fn eject(&mut self, now: Instant, length: Duration) {
        self.failures = 0;
        let until = now + length;
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
    }

    /// Takes the server back now (an active check found it up again).
    pub fn readmit(&mut self) {
        self.failures = 0;
        self.until = None;
    }
}

/// The share of its weight, in thousandths, that a server back in service since `since`
/// takes at `now` with a slow start of `window`: from a tenth up to all of it, linearly
/// (Envoy's slow start with aggression 1 and a minimum of 10 %).
pub fn slow_start(since: Option<Instant>, now: Instant, window: Duration) -> u32 {
    let Some(since) = since else {
        return 1000;
    };
    if window.is_zero() {
        return 1000;
    }
    let elapsed = now.saturating_duration_since(since);
    if elapsed >= window {
        return 1000;
    }
    let share = elapsed.as_nanos() * 1000 / window.as_nanos();
    u32::try_from(share).unwrap_or(1000).clamp(100, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    fn policy() -> Ejection {
        Ejection {
            consecutive: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            max_percent: 50,
        }
    }

    #[test]
    fn a_server_falls_after_fall_failures_and_rises_after_rise_passes() {
        let mut s = Checked::new(true);
        assert_eq!(s.record(false, T), None);
        assert_eq!(s.record(false, T), None);
        // A pass in between starts the count over.
        assert_eq!(s.record(true, T), None);
        assert_eq!(s.record(false, T), None);
        assert_eq!(s.record(false, T), None);
        assert_eq!(s.record(false, T), Some(false));
        assert!(!s.is_up());
        assert_eq!(s.record(false, T), None, "down stays down");
        assert_eq!(s.record(true, T), None);
        assert_eq!(s.record(true, T), Some(true));
        assert!(s.is_up());
    }

    #[test]
    fn checks_spread_within_the_jitter() {
        let mut rng = Rng::new(4);
        let interval = Duration::from_secs(2);
        let jitter = Duration::from_millis(200);
        let waits: Vec<Duration> = (0..1000)
            .map(|_| next_check(interval, jitter, &mut rng))
            .collect();
        assert!(waits
            .iter()
            .all(|w| *w >= interval.saturating_sub(jitter) && *w < interval + jitter));
        assert!(waits
            .iter()
            .any(|w| *w < interval.saturating_sub(jitter / 2)));
        assert!(waits.iter().any(|w| *w > interval + jitter / 2));
        assert_eq!(next_check(interval, Duration::ZERO, &mut rng), interval);
    }

    #[test]
    fn consecutive_failures_eject_for_a_back_off_that_doubles() {
        let start = Instant::now();
        let p = policy();
        let mut o = Outlier::default();
        assert_eq!(o.record(true, start, &p, true), None);
        assert_eq!(o.record(true, start, &p, true), None);
        // A success in between starts the count over.
        assert_eq!(o.record(false, start, &p, true), None);
        assert_eq!(o.record(true, start, &p, true), None);
        assert_eq!(o.record(true, start, &p, true), None);
        assert_eq!(
            o.record(true, start, &p, true),
            Some(Duration::from_secs(10))
        );
        assert!(o.is_ejected(start + Duration::from_secs(9)));
        assert!(!o.is_ejected(start + Duration::from_secs(10)));
        // Back, failing again at once: twice as long, then four times, up to the maximum.
        let mut now = start + Duration::from_secs(10);
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let length = (0..3).find_map(|_| o.record(true, now, &p, true)).unwrap();
            lengths.push(length.as_secs());
            now += length;
        }
        assert_eq!(lengths, [20, 40, 60, 60]);
        // Long in service since: the back-off starts over.
        now += Duration::from_secs(61);
        let length = (0..3).find_map(|_| o.record(true, now, &p, true)).unwrap();
        assert_eq!(length, Duration::from_secs(10));
    }

    #[test]
    fn the_maximum_share_holds_and_one_server_is_never_ejected() {
        let p = policy();
        assert_eq!(p.max_ejected(1), 0);
        assert_eq!(p.max_ejected(2), 1);
        assert_eq!(p.max_ejected(3), 1);
        assert_eq!(p.max_ejected(10), 5);
        let start = Instant::now();
        let mut o = Outlier::default();
        for _ in 0..10 {
            assert_eq!(o.record(true, start, &p, false), None);
        }
        assert!(!o.is_ejected(start));
        // Once the share allows it, the next failure ejects.
        assert!(o.record(true, start, &p, true).is_some());
        let off = Ejection {
            consecutive: 0,
            ..p
        };
        let mut o = Outlier::default();
        for _ in 0..10 {
            assert_eq!(o.record(true, start, &off, true), None);
        }
    }

    #[test]
    fn an_ejection_from_another_worker_or_a_check_applies() {
        let start = Instant::now();
        let mut o = Outlier::default();
        o.eject(start, Duration::from_secs(5));
        assert!(o.is_ejected(start + Duration::from_secs(4)));
        // A shorter one does not cut a longer one short.
        o.eject(start, Duration::from_secs(1));
        assert!(o.is_ejected(start + Duration::from_secs(4)));
        o.readmit();
        assert!(!o.is_ejected(start));
    }

    #[test]
    fn slow_start_ramps_from_a_tenth_to_all() {
        let start = Instant::now();
        let window = Duration::from_secs(10);
        let at = |s: u64| slow_start(Some(start), start + Duration::from_secs(s), window);
        assert_eq!(at(0), 100);
        assert_eq!(at(1), 100);
        assert_eq!(at(5), 500);
        assert_eq!(at(9), 900);
        assert_eq!(at(10), 1000);
        assert_eq!(slow_start(None, start, window), 1000);
        assert_eq!(slow_start(Some(start), start, Duration::ZERO), 1000);
    }
}
