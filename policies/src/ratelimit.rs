//! Rate limits: token buckets, sliding windows and limits on concurrent requests, one map of
//! keys per worker, that hold for the whole process when the workers exchange what they
//! counted.
//!
//! Each worker keeps, per key, its own copy of the process's state for that key: the global
//! bucket's level, the global window's counts, the requests in flight on every worker. What it
//! admits it takes from its copy at once, and notes as not yet reported. On the message path's
//! tick ([`Limiter::report`]) each worker sends the others what it took since the last tick,
//! and each takes what the others took from its own copy ([`Limiter::absorb`]). A bucket may
//! go below zero when the others' reports arrive: a debt, which the refill pays back before the
//! worker admits again.
//!
//! The error bound (`docs/architecture.md` has the argument): with `W` workers, a tick of `T`,
//! a rate `r` and a burst `B`, the requests admitted over any interval of length `t` are at
//! most `B + r·t + (W − 1)·(B + r·T)`, and what the other workers admitted in the last tick is
//! the only part not yet paid back; over a long interval the count is `B + r·t` within
//! `(W − 1)·r·T`. Without the exchange (`shared: false`) each worker enforces the limit alone,
//! which is `W` times it for the process.
//!
//! Memory is bounded: at most `max_keys` keys per limit per worker. When the map is full, keys
//! whose state is back to that of a key never seen (a full bucket, a window two periods old,
//! nothing in flight) are dropped first; if that frees less than an eighth, the least recently
//! used are dropped (which forgives them what they had used: counted in
//! [`Limiter::evicted`]).

// Levels and times are f64: nanosecond counts lose precision only past 2^52 ns (52 days of
// uptime), and then by nanoseconds; every f64 turned back into an integer is clamped at 0.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A token bucket: `amount` tokens every `per`, holding at most `burst`; up to `queue`
    /// more requests wait for their token instead of being refused (nginx's `limit_req`
    /// `burst` with `delay`).
    Bucket {
        amount: u32,
        per: Duration,
        burst: u32,
        queue: u32,
    },
    /// A sliding window: at most `amount` requests in any `per`, estimated from the current
    /// fixed window's count and the previous one's, weighted by how much of it still overlaps.
    Window { amount: u32, per: Duration },
    /// At most `max` requests in flight at once.
    Concurrent { max: u32 },
}

/// What a request gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Go on. `remaining`: what the key may still take now; `reset`: until its quota is whole
    /// again.
    Allow { remaining: u64, reset: Duration },
    /// Go on after `wait` (the request took a place in the queue).
    Delay { wait: Duration },
    /// Over the limit; it could go on after `retry_after`.
    Refuse {
        retry_after: Duration,
        reset: Duration,
    },
}

/// One key's state on one worker. See the module's text for what `level` and `other` hold
/// for each kind.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Bucket: tokens (below zero: owed). Window: the current window's count. Concurrent:
    /// requests in flight on this worker.
    level: f64,
    /// Window: the previous window's count. Concurrent: in flight on the other workers.
    other: f64,
    /// Nanoseconds from the limiter's origin: the bucket's last refill, the window's start,
    /// the last use.
    at: u64,
    /// Taken here (and, for concurrency, given back) since the last report.
    unreported: i32,
    /// Whether the key is in the list of those to report.
    listed: bool,
}

/// One limit on one worker.
#[derive(Debug)]
pub struct Limiter {
    kind: Kind,
    /// A bucket's nanoseconds per token (worked out once: a division of a `u128` is dear).
    per_token: f64,
    shared: bool,
    /// The instant every worker counts time from (windows begin at the same instants on all).
    origin: Instant,
    max_keys: usize,
    entries: HashMap<u64, Entry, BuildHasherDefault<Mix>>,
    /// Keys with something to report.
    listed: Vec<u64>,
    evicted: u64,
}

impl Limiter {
    /// A limit of `kind`; `shared`: whether the workers exchange what they take (one limit for
    /// the process) or each enforces it alone. `origin` must be the same on every worker.
    pub fn new(kind: Kind, shared: bool, origin: Instant, max_keys: usize) -> Self {
        let per_token = match kind {
            Kind::Bucket { amount, per, .. } => {
                (per.as_nanos() as u64) as f64 / f64::from(amount.max(1))
            }
            _ => 0.0,
        };
        Self {
            kind,
            per_token,
            shared,
            origin,
            max_keys: max_keys.max(8),
            entries: HashMap::default(),
            listed: Vec::new(),
            evicted: 0,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys dropped while not back to a fresh state (forgiven what they had used).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// The entry of `key`, brought up to `at` (refilled, its window moved on), in one lookup
    /// unless the map is full; and the list of keys to report.
    fn entry(&mut self, key: u64, at: u64) -> (&mut Entry, &mut Vec<u64>) {
        if self.entries.len() >= self.max_keys && !self.entries.contains_key(&key) {
            self.evict(at);
        }
        let kind = self.kind;
        let entry = self.entries.entry(key).or_insert_with(|| fresh(kind, at));
        advance(kind, self.per_token, entry, at);
        (entry, &mut self.listed)
    }

    /// Whether a request of `key` may go on now; counts it if so.
    pub fn check(&mut self, key: u64, now: Instant) -> Decision {
        let at = self.nanos(now);
        let (kind, per_token) = (self.kind, self.per_token);
        let (shared, cap) = (self.shared, self.max_keys * 2);
        let (entry, listed) = self.entry(key, at);
        let decision = decide(kind, per_token, entry, at);
        if !matches!(decision, Decision::Refuse { .. }) {
            note(entry, key, 1, shared, listed, cap);
        }
        decision
    }

    /// A request of `key` that [`Self::check`] let in has ended (concurrency limits only).
    pub fn release(&mut self, key: u64) {
        if !matches!(self.kind, Kind::Concurrent { .. }) {
            return;
        }
        let (shared, cap) = (self.shared, self.max_keys * 2);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.level = (entry.level - 1.0).max(0.0);
            note(entry, key, -1, shared, &mut self.listed, cap);
        }
    }

    /// Gives back what [`Self::check`] took for a request of `key` that went no further (a
    /// later limit refused it).
    pub fn refund(&mut self, key: u64) {
        let (shared, cap) = (self.shared, self.max_keys * 2);
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        match self.kind {
            Kind::Bucket { burst, .. } => entry.level = (entry.level + 1.0).min(f64::from(burst)),
            Kind::Window { .. } | Kind::Concurrent { .. } => {
                entry.level = (entry.level - 1.0).max(0.0);
            }
        }
        note(entry, key, -1, shared, &mut self.listed, cap);
    }

    /// What this worker took per key since the last report, for the other workers; appended
    /// to `out`. Nothing when the limit is not shared.
    pub fn report(&mut self, out: &mut Vec<(u64, i32)>) {
        for key in self.listed.drain(..) {
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.listed = false;
                if entry.unreported != 0 {
                    out.push((key, entry.unreported));
                    entry.unreported = 0;
                }
            }
        }
    }

    /// What another worker took of `key` (or, for concurrency, took and gave back).
    pub fn absorb(&mut self, key: u64, taken: i32, now: Instant) {
        if !self.shared {
            return;
        }
        let at = self.nanos(now);
        let kind = self.kind;
        let (entry, _) = self.entry(key, at);
        let taken = f64::from(taken);
        match kind {
            Kind::Bucket { .. } => entry.level -= taken,
            Kind::Window { .. } => entry.level += taken,
            Kind::Concurrent { .. } => entry.other = (entry.other + taken).max(0.0),
        }
    }

    /// Makes room: drops the keys back to a fresh state, then, if that freed less than an
    /// eighth, the least recently used.
    fn evict(&mut self, at: u64) {
        let (kind, per_token) = (self.kind, self.per_token);
        self.entries.retain(|_, entry| {
            let mut probe = *entry;
            advance(kind, per_token, &mut probe, at);
            !is_fresh(kind, &probe, at)
        });
        let target = self.max_keys - self.max_keys / 8;
        if self.entries.len() <= target {
            return;
        }
        let mut ages: Vec<(u64, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| !matches!(kind, Kind::Concurrent { .. }) || e.level == 0.0)
            .map(|(&key, e)| (e.at, key))
            .collect();
        let drop = (self.entries.len() - target).min(ages.len());
        if drop == 0 {
            return;
        }
        ages.select_nth_unstable(drop - 1);
        for &(_, key) in &ages[..drop] {
            self.entries.remove(&key);
        }
        self.evicted += drop as u64;
    }
}

/// Adds `taken` to what `key` has to report, and lists the key once for the next report (at
/// most `cap` keys listed; past that, a flood's reports are dropped).
fn note(entry: &mut Entry, key: u64, taken: i32, shared: bool, listed: &mut Vec<u64>, cap: usize) {
    entry.unreported += taken;
    if shared && !entry.listed && listed.len() < cap {
        entry.listed = true;
        listed.push(key);
    }
}

/// A key never seen, at `at`.
fn fresh(kind: Kind, at: u64) -> Entry {
    let (level, at) = match kind {
        Kind::Bucket { burst, .. } => (f64::from(burst), at),
        Kind::Window { per, .. } => (0.0, window_start(at, per)),
        Kind::Concurrent { .. } => (0.0, at),
    };
    Entry {
        level,
        other: 0.0,
        at,
        unreported: 0,
        listed: false,
    }
}

/// The map's hasher. Keys are already hashes (the proxy's, with per-process random seeds), so
/// one multiplication spreads them over the table's control bits; sequential keys (the tests')
/// spread too.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn window_start(at: u64, per: Duration) -> u64 {
    let per = per.as_nanos().max(1) as u64;
    at - at % per
}

/// Brings an entry up to `at`: a bucket refilled, a window moved on.
fn advance(kind: Kind, per_token: f64, entry: &mut Entry, at: u64) {
    match kind {
        Kind::Bucket { burst, .. } => {
            let elapsed = at.saturating_sub(entry.at);
            if elapsed > 0 {
                entry.level = (entry.level + elapsed as f64 / per_token).min(f64::from(burst));
                entry.at = at;
            }
        }
        Kind::Window { per, .. } => {
            let start = window_start(at, per);
            if start != entry.at {
                let width = per.as_nanos().max(1) as u64;
                entry.other = if start - entry.at == width {
                    entry.level
                } else {
                    0.0
                };
                entry.level = 0.0;
                entry.at = start;
            }
        }
        Kind::Concurrent { .. } => entry.at = entry.at.max(at),
    }
}

/// Whether an entry (brought up to `at`) holds nothing a fresh one would not.
fn is_fresh(kind: Kind, entry: &Entry, at: u64) -> bool {
    entry.unreported == 0
        && match kind {
            Kind::Bucket { burst, .. } => entry.level >= f64::from(burst),
            Kind::Window { .. } => entry.level == 0.0 && entry.other == 0.0 && entry.at <= at,
            Kind::Concurrent { .. } => entry.level == 0.0 && entry.other == 0.0,
        }
}

fn secs(nanos: f64) -> Duration {
    Duration::from_nanos(nanos.max(0.0).ceil() as u64)
}

/// The decision for one request on an entry brought up to `at`; takes what it admits.
fn decide(kind: Kind, per_token: f64, entry: &mut Entry, at: u64) -> Decision {
    match kind {
        Kind::Bucket { burst, queue, .. } => {
            let level = entry.level;
            // Until the bucket is full again, after this request.
            let reset = |level: f64| secs((f64::from(burst) - level) * per_token);
            if level >= 1.0 {
                entry.level -= 1.0;
                Decision::Allow {
                    // Not below zero here; `as` truncates, which is the floor.
                    remaining: entry.level as u64,
                    reset: reset(entry.level),
                }
            } else if level >= 1.0 - f64::from(queue) {
                entry.level -= 1.0;
                Decision::Delay {
                    wait: secs((1.0 - level) * per_token),
                }
            } else {
                Decision::Refuse {
                    retry_after: secs((1.0 - f64::from(queue) - level) * per_token),
                    reset: reset(level),
                }
            }
        }
        Kind::Window { amount, per } => {
            let width = (per.as_nanos().max(1) as u64) as f64;
            let into = (at - entry.at) as f64;
            let left = (width - into).max(0.0);
            let estimate = entry.other * (1.0 - into / width) + entry.level;
            let limit = f64::from(amount);
            if estimate + 1.0 <= limit {
                entry.level += 1.0;
                Decision::Allow {
                    remaining: (limit - estimate - 1.0).floor().max(0.0) as u64,
                    reset: secs(left),
                }
            } else {
                // When the estimate falls to `limit − 1`: later in this window as the
                // previous one's weight fades, or in the next as this one's does.
                let need = limit - 1.0;
                let wait = if entry.level <= need && entry.other > 0.0 {
                    let fraction = 1.0 - (need - entry.level) / entry.other;
                    fraction * width - into
                } else if entry.level > 0.0 {
                    left + (1.0 - need / entry.level).max(0.0) * width
                } else {
                    left
                };
                Decision::Refuse {
                    retry_after: secs(wait),
                    reset: secs(left),
                }
            }
        }
        Kind::Concurrent { max } => {
            if entry.level + entry.other < f64::from(max) {
                entry.level += 1.0;
                Decision::Allow {
                    remaining: (f64::from(max) - entry.level - entry.other).max(0.0) as u64,
                    reset: Duration::ZERO,
                }
            } else {
                Decision::Refuse {
                    retry_after: Duration::from_secs(1),
                    reset: Duration::ZERO,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn bucket(amount: u32, per: Duration, burst: u32, queue: u32) -> Kind {
        Kind::Bucket {
            amount,
            per,
            burst,
            queue,
        }
    }

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(bucket(10, Duration::from_secs(1), 5, 0), true, t0, 100);
        let admitted = (0..20).filter(|_| allowed(l.check(1, t0))).count();
        assert_eq!(admitted, 5);
        // One token every 100 ms.
        assert!(!allowed(l.check(1, t0 + 99 * MS)));
        assert!(allowed(l.check(1, t0 + 101 * MS)));
        match l.check(1, t0 + 101 * MS) {
            Decision::Refuse { retry_after, reset } => {
                assert!(
                    retry_after > 95 * MS && retry_after <= 100 * MS,
                    "{retry_after:?}"
                );
                assert!(reset > 490 * MS, "{reset:?}");
            }
            other => panic!("{other:?}"),
        }
        // Another key is not touched.
        assert!(allowed(l.check(2, t0)));
        // A second later the bucket is full again, and no more than full.
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..20).filter(|_| allowed(l.check(1, later))).count(), 5);
    }

    #[test]
    fn a_queue_delays_instead_of_refusing() {
        let t0 = Instant::now();
        let mut l = Limiter::new(bucket(10, Duration::from_secs(1), 2, 3), true, t0, 100);
        let decisions: Vec<Decision> = (0..6).map(|_| l.check(1, t0)).collect();
        assert!(allowed(decisions[0]) && allowed(decisions[1]));
        let waits: Vec<Duration> = decisions[2..5]
            .iter()
            .map(|d| match d {
                Decision::Delay { wait } => *wait,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 300 * MS]);
        assert!(matches!(decisions[5], Decision::Refuse { .. }));
    }

    #[test]
    fn a_sliding_window_counts_the_overlap_of_the_last_one() {
        let t0 = Instant::now();
        let per = Duration::from_secs(1);
        let mut l = Limiter::new(Kind::Window { amount: 10, per }, true, t0, 100);
        let start = t0 + per; // a window's start
        let first: Vec<Decision> = (0..15).map(|_| l.check(1, start)).collect();
        assert_eq!(
            first.iter().filter(|d| allowed(**d)).count(),
            10,
            "{first:?}"
        );
        // Half-way through the next window, the last one weighs 5: 5 more fit.
        let half = start + per + 500 * MS;
        assert_eq!((0..15).filter(|_| allowed(l.check(1, half))).count(), 5);
        match l.check(1, half) {
            Decision::Refuse { retry_after, .. } => assert!(retry_after > Duration::ZERO),
            other => panic!("{other:?}"),
        }
        // Two windows later it has all gone.
        let gone = start + 3 * per;
        assert_eq!((0..15).filter(|_| allowed(l.check(1, gone))).count(), 10);
    }

    #[test]
    fn concurrency_counts_what_is_in_flight_on_every_worker() {
        let t0 = Instant::now();
        let kind = Kind::Concurrent { max: 3 };
        let mut a = Limiter::new(kind, true, t0, 100);
        let mut b = Limiter::new(kind, true, t0, 100);
        assert!(allowed(a.check(7, t0)));
        assert!(allowed(a.check(7, t0)));
        exchange(&mut a, &mut b, t0);
        assert!(allowed(b.check(7, t0)));
        assert!(!allowed(b.check(7, t0)), "2 on a and 1 on b");
        a.release(7);
        exchange(&mut a, &mut b, t0);
        assert!(allowed(b.check(7, t0)));
    }

    #[test]
    fn concurrency_recovers_from_places_both_workers_gave_at_once() {
        let t0 = Instant::now();
        let kind = Kind::Concurrent { max: 2 };
        let mut a = Limiter::new(kind, true, t0, 100);
        let mut b = Limiter::new(kind, true, t0, 100);
        for l in [&mut a, &mut b] {
            assert!(allowed(l.check(7, t0)));
            assert!(allowed(l.check(7, t0)));
        }
        exchange(&mut a, &mut b, t0);
        assert!(!allowed(a.check(7, t0)));
        assert!(!allowed(b.check(7, t0)));
        for l in [&mut a, &mut b] {
            l.release(7);
            l.release(7);
        }
        exchange(&mut a, &mut b, t0);
        assert!(allowed(a.check(7, t0)));
        assert!(allowed(b.check(7, t0)));
    }

    fn exchange(a: &mut Limiter, b: &mut Limiter, now: Instant) {
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        a.report(&mut from_a);
        b.report(&mut from_b);
        for (key, n) in from_a {
            b.absorb(key, n, now);
        }
        for (key, n) in from_b {
            a.absorb(key, n, now);
        }
    }

    /// `workers` limiters of 100 r/s and a burst of `burst`, offered far more than that for
    /// 10 s of virtual time on the workers `busy` says; they exchange every 20 ms when
    /// `shared`. The requests admitted.
    fn overload(workers: usize, busy: &[usize], burst: u32, shared: bool) -> usize {
        let t0 = Instant::now();
        let kind = bucket(100, Duration::from_secs(1), burst, 0);
        let mut limiters: Vec<Limiter> = (0..workers)
            .map(|_| Limiter::new(kind, shared, t0, 1000))
            .collect();
        let mut admitted = 0;
        // 2000 requests/s on each busy worker, one every 0.5 ms.
        for step in 0..20_000u64 {
            let now = t0 + Duration::from_micros(step * 500);
            for &w in busy {
                admitted += usize::from(allowed(limiters[w].check(42, now)));
            }
            if step % 40 == 39 {
                let mut reports = vec![Vec::new(); workers];
                for (w, l) in limiters.iter_mut().enumerate() {
                    l.report(&mut reports[w]);
                }
                for (from, report) in reports.iter().enumerate() {
                    for (to, l) in limiters.iter_mut().enumerate() {
                        if to != from {
                            for &(key, n) in report {
                                l.absorb(key, n, now);
                            }
                        }
                    }
                }
            }
        }
        admitted
    }

    #[test]
    fn the_exchange_makes_the_limit_hold_for_the_process() {
        for burst in [1, 20, 100] {
            let expected = 1000.0 + f64::from(burst);
            let both = overload(2, &[0, 1], burst, true) as f64;
            assert!(
                (both - expected).abs() <= expected * 0.05,
                "burst {burst}: {both} admitted, {expected} expected"
            );
            let one = overload(2, &[1], burst, true) as f64;
            assert!(
                (one - expected).abs() <= expected * 0.05,
                "burst {burst}, one worker busy: {one}"
            );
            let apart = overload(2, &[0, 1], burst, false) as f64;
            assert!(
                (apart - 2.0 * expected).abs() <= expected * 0.1,
                "burst {burst}, no exchange: {apart}, about double expected"
            );
        }
        let four = overload(4, &[0, 1, 2, 3], 20, true) as f64;
        assert!((four - 1020.0).abs() <= 1020.0 * 0.05, "4 workers: {four}");
    }

    #[test]
    fn a_million_keys_stay_within_the_bound() {
        let t0 = Instant::now();
        let mut l = Limiter::new(bucket(10, Duration::from_secs(1), 10, 0), true, t0, 10_000);
        let mut out = Vec::new();
        for i in 0..1_000_000u64 {
            let now = t0 + Duration::from_micros(i);
            assert!(allowed(l.check(i, now)), "a new key always has its burst");
            assert!(l.len() <= 10_000);
            if i % 20_000 == 0 {
                out.clear();
                l.report(&mut out);
            }
        }
        // Every key took one token and none came back (1 s has not passed): all were
        // evicted by age.
        assert!(l.evicted() > 900_000, "{}", l.evicted());
        // A key that is used keeps its state.
        let mut l = Limiter::new(bucket(1, Duration::from_secs(3600), 1, 0), true, t0, 100);
        assert!(allowed(l.check(u64::MAX, t0)));
        for i in 0..10_000u64 {
            l.check(i, t0 + Duration::from_micros(i));
            if i % 10 == 0 {
                assert!(!allowed(l.check(u64::MAX, t0 + Duration::from_micros(i))));
            }
        }
    }

    #[test]
    fn idle_keys_go_first() {
        let t0 = Instant::now();
        let mut l = Limiter::new(bucket(1000, Duration::from_secs(1), 1, 0), true, t0, 8);
        for key in 0..8 {
            l.check(key, t0);
        }
        // Reported, and 1 ms later all full again: the next key makes them go, forgiving
        // nothing.
        l.report(&mut Vec::new());
        l.check(100, t0 + 2 * MS);
        assert_eq!(l.len(), 1);
        assert_eq!(l.evicted(), 0);
    }
}
