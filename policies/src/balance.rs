//! Choosing a server of an upstream group: the balancing algorithms, as pure functions of the
//! servers' state, a random source and the time, which the caller passes in.
//!
//! A [`Balancer`] is per worker and per group. It sees the servers as [`Candidate`]s: the ones
//! the caller may send to (healthy, not ejected, under their limits), each with its weight and
//! the worker's own count of requests outstanding on it. It answers with the index of the
//! candidate to use. Nothing here is shared between workers: "least outstanding" means on this
//! worker (docs/architecture.md says what that means across cores).

use std::time::{Duration, Instant};

/// A small, fast, seeded random source (SplitMix64): the same seed gives the same picks, so
/// tests are exact. Not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), without modulo bias worth mentioning for small `n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// What a balancer learns of one server at a pick: its load on this worker.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Requests this worker has in flight on it.
    pub outstanding: u32,
    /// Its latency estimate (peak-EWMA), when it has one.
    pub latency: Option<Duration>,
}

/// The balancing algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Two servers at random (by weight), the one with fewer outstanding requests.
    PowerOfTwo,
    /// Power of two choices on latency × (outstanding + 1) (Finagle, linkerd2-proxy).
    PeakEwma,
    /// Each in turn; with weights (or servers taken out), as [`Algorithm::Weighted`].
    RoundRobin,
    /// nginx's smooth weighted round robin.
    Weighted,
    /// The fewest outstanding requests relative to weight; ties by round robin.
    LeastConnections,
    /// At random, by weight.
    Random,
}

/// One group's balancer on one worker, over servers of given weights.
///
/// A weight of 0 takes a server out (down, ejected, a backup not in use): it is never picked.
/// [`Balancer::set_weights`] changes them (health changes, slow start).
#[derive(Clone, Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    weights: Vec<u32>,
    total: u64,
    /// How many servers may be picked (weight above 0).
    live: usize,
    /// Every server may be picked, all of the same weight: draws need no walk over the weights.
    uniform: bool,
    /// Round-robin position.
    next: usize,
    /// Smooth weighted round robin's current weights, by server.
    current: Vec<i64>,
}

impl Balancer {
    /// A balancer over servers of these weights (0 counts as 1).
    pub fn new(algorithm: Algorithm, weights: &[u32]) -> Self {
        let weights: Vec<u32> = weights.iter().map(|&w| w.max(1)).collect();
        let mut balancer = Self {
            algorithm,
            total: 0,
            live: 0,
            uniform: false,
            current: vec![0; weights.len()],
            weights: Vec::new(),
            next: 0,
        };
        balancer.set_weights(&weights);
        balancer
    }

    /// Starts round robin at `position` (workers start at different servers).
    #[must_use]
    pub fn starting_at(mut self, position: usize) -> Self {
        self.next = position;
        self
    }

    /// The servers' weights from now on, in the same order (0: not to be picked). Smooth
    /// weighted round robin forgets what it owed a server taken out.
    pub fn set_weights(&mut self, weights: &[u32]) {
        self.weights.clear();
        self.weights.extend_from_slice(weights);
        self.current.resize(weights.len(), 0);
        for (current, &w) in self.current.iter_mut().zip(weights) {
            if w == 0 {
                *current = 0;
            }
        }
        self.total = weights.iter().map(|&w| u64::from(w)).sum();
        self.live = weights.iter().filter(|&&w| w > 0).count();
        self.uniform =
            weights.first().is_some_and(|&w| w > 0) && weights.windows(2).all(|w| w[0] == w[1]);
    }

    /// The weights in use.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The index of the server to send to (`load(i)`: server `i`'s load now, asked only of
    /// the servers the algorithm looks at); `None` when no server may be picked.
    pub fn pick(&mut self, load: impl Fn(usize) -> Load, rng: &mut Rng) -> Option<usize> {
        let n = self.weights.len();
        match self.live {
            0 => return None,
            1 => return self.weights.iter().position(|&w| w > 0),
            _ => {}
        }
        Some(match self.algorithm {
            Algorithm::PowerOfTwo => self.two_choices(rng, |i| u128::from(load(i).outstanding)),
            Algorithm::PeakEwma => self.two_choices(rng, |i| {
                let load = load(i);
                match load.latency {
                    // Not measured yet and already busy: it may be slow, and nothing says
                    // otherwise until its first response (Finagle's penalty).
                    // Among such servers, the one with fewer outstanding (p2c's rule).
                    None if load.outstanding > 0 => {
                        UNMEASURED_PENALTY + u128::from(load.outstanding)
                    }
                    latency => {
                        latency.unwrap_or(DEFAULT_LATENCY).as_nanos()
                            * u128::from(load.outstanding + 1)
                    }
                }
            }),
            // Round robin over servers of different weights (or some taken out) is nginx's
            // smooth weighted one: each in turn, as often as its weight says.
            Algorithm::RoundRobin if self.uniform => {
                let i = self.next % n;
                self.next = self.next.wrapping_add(1);
                i
            }
            Algorithm::RoundRobin | Algorithm::Weighted => self.smooth_weighted(|_| true),
            Algorithm::LeastConnections => {
                // outstanding ÷ weight, compared without division; ties by smooth weighted
                // round robin among the tied (nginx's `least_conn`).
                let loads: Vec<u64> = (0..n)
                    .map(|i| {
                        if self.weights[i] > 0 {
                            u64::from(load(i).outstanding)
                        } else {
                            0
                        }
                    })
                    .collect();
                let lighter = |a: usize, b: usize| {
                    loads[a] * u64::from(self.weights[b]) < loads[b] * u64::from(self.weights[a])
                };
                let live = || (0..n).filter(|&i| self.weights[i] > 0);
                let best = live().fold(None, |best: Option<usize>, i| match best {
                    Some(b) if !lighter(i, b) => Some(b),
                    _ => Some(i),
                });
                let best = best.unwrap_or(0);
                let tied: Vec<bool> = (0..n)
                    .map(|i| self.weights[i] > 0 && !lighter(best, i))
                    .collect();
                self.smooth_weighted(|i| tied[i])
            }
            Algorithm::Random => self.weighted_random(rng, None),
        })
    }

    /// nginx's smooth weighted round robin over the servers `among` allows: each one's
    /// current weight grows by its weight, the largest is chosen and loses their total.
    fn smooth_weighted(&mut self, among: impl Fn(usize) -> bool) -> usize {
        let mut best = None;
        let mut total = 0i64;
        for (i, &w) in self.weights.iter().enumerate() {
            if w == 0 || !among(i) {
                continue;
            }
            total += i64::from(w);
            self.current[i] += i64::from(w);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best.unwrap_or(0);
        self.current[best] -= total;
        best
    }

    /// Two distinct servers drawn by weight; the one of lower `cost` ÷ weight (the first on a
    /// tie), compared without division. Needs two servers that may be picked.
    fn two_choices(&self, rng: &mut Rng, cost: impl Fn(usize) -> u128) -> usize {
        let n = self.weights.len();
        let a = self.weighted_random(rng, None);
        let b = if self.uniform {
            (a + 1 + rng.below(n - 1)) % n
        } else {
            self.weighted_random(rng, Some(a))
        };
        let (wa, wb) = (u128::from(self.weights[a]), u128::from(self.weights[b]));
        // Saturating: the unmeasured penalty times a weight near `u32::MAX` is past `u128`.
        if cost(b).saturating_mul(wa) < cost(a).saturating_mul(wb) {
            b
        } else {
            a
        }
    }

    /// A server at random (other than `except`), each with a chance proportional to its
    /// weight.
    fn weighted_random(&self, rng: &mut Rng, except: Option<usize>) -> usize {
        if self.uniform && except.is_none() {
            return rng.below(self.weights.len());
        }
        let skipped = except.map_or(0, |e| u64::from(self.weights[e]));
        let total = self.total - skipped;
        let mut point = rng.next_u64() % total.max(1);
        let mut last = 0;
        for (i, &w) in self.weights.iter().enumerate() {
            if Some(i) == except || w == 0 {
                continue;
            }
            if point < u64::from(w) {
                return i;
            }
            point -= u64::from(w);
            last = i;
        }
        last
    }
}

/// The latency assumed for an idle server not measured yet: low, so that a new server gets
/// tried.
const DEFAULT_LATENCY: Duration = Duration::from_millis(1);
/// The peak-EWMA cost of a server not measured yet with a request already outstanding: above
/// any measured one, so that it takes no second request before its first answer.
const UNMEASURED_PENALTY: u128 = 1 << 100;

/// A server's latency estimate, peak-EWMA (Finagle's): a slower response than the estimate
/// replaces it at once (the peak), a faster one is blended in with a weight that decays with
/// the time since the last one (`tau`), so the estimate forgets slowly when the server is
/// quiet and quickly when it is busy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeakEwma {
    estimate: Option<Duration>,
    at: Option<Instant>,
    tau: Duration,
}

impl PeakEwma {
    pub fn new(tau: Duration) -> Self {
        Self {
            estimate: None,
            at: None,
            tau,
        }
    }

    /// The estimate now.
    pub fn estimate(&self) -> Option<Duration> {
        self.estimate
    }

    /// Takes in one response's latency, observed at `now`.
    pub fn observe(&mut self, latency: Duration, now: Instant) {
        let next = match (self.estimate, self.at) {
            (Some(estimate), Some(at)) if latency < estimate => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                let w = (-elapsed / self.tau.as_secs_f64().max(1e-9)).exp();
                Duration::from_secs_f64(
                    estimate.as_secs_f64() * w + latency.as_secs_f64() * (1.0 - w),
                )
            }
            _ => latency,
        };
        self.estimate = Some(next);
        self.at = Some(now);
    }
}

#[cfg(test)]
#[allow(clippy::cast_precision_loss)] // shares of test counts
mod tests {
    use super::*;

    fn even(n: usize) -> Vec<Load> {
        vec![Load::default(); n]
    }

    /// One pick over `loads`.
    fn pick(b: &mut Balancer, loads: &[Load], rng: &mut Rng) -> usize {
        b.pick(|i| loads[i], rng).unwrap()
    }

    fn shares(counts: &[usize]) -> Vec<f64> {
        let total: usize = counts.iter().sum();
        counts.iter().map(|&c| c as f64 / total as f64).collect()
    }

    #[test]
    fn the_random_source_is_seeded_and_even() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[a.below(4)] += 1;
        }
        for share in shares(&counts) {
            assert!((share - 0.25).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn round_robin_takes_each_in_turn_from_its_start() {
        let mut b = Balancer::new(Algorithm::RoundRobin, &[1, 1, 1]).starting_at(1);
        let mut rng = Rng::new(1);
        let c = even(3);
        let picks: Vec<usize> = (0..6).map(|_| pick(&mut b, &c, &mut rng)).collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn smooth_weighted_spreads_as_nginx_does() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a (no burst of five a's).
        let c = even(3);
        let mut b = Balancer::new(Algorithm::Weighted, &[5, 1, 1]);
        let mut rng = Rng::new(1);
        let picks: Vec<usize> = (0..7).map(|_| pick(&mut b, &c, &mut rng)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn two_choices_avoid_the_busy_server() {
        let mut c = even(4);
        c[2].outstanding = 50;
        let mut b = Balancer::new(Algorithm::PowerOfTwo, &[1, 1, 1, 1]);
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 4];
        for _ in 0..10_000 {
            counts[pick(&mut b, &c, &mut rng)] += 1;
        }
        // The busy one is picked only when it is drawn against itself, which never happens:
        // the two draws differ.
        assert_eq!(counts[2], 0, "{counts:?}");
        for i in [0, 1, 3] {
            assert!((shares(&counts)[i] - 1.0 / 3.0).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn random_follows_the_weights() {
        let c = even(2);
        let mut b = Balancer::new(Algorithm::Random, &[3, 1]);
        let mut rng = Rng::new(9);
        let mut counts = [0usize; 2];
        for _ in 0..20_000 {
            counts[pick(&mut b, &c, &mut rng)] += 1;
        }
        assert!((shares(&counts)[0] - 0.75).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn peak_ewma_moves_traffic_off_a_slow_server() {
        let mut c = even(3);
        for (i, ms) in [(0, 2), (1, 2), (2, 40)] {
            c[i].latency = Some(Duration::from_millis(ms));
        }
        let mut b = Balancer::new(Algorithm::PeakEwma, &[1, 1, 1]);
        let mut rng = Rng::new(5);
        let mut counts = [0usize; 3];
        for _ in 0..9_000 {
            counts[pick(&mut b, &c, &mut rng)] += 1;
        }
        assert_eq!(counts[2], 0, "{counts:?}");
    }

    #[test]
    fn peak_ewma_sends_an_unmeasured_server_nothing_more_until_its_first_answer() {
        let mut c = even(3);
        c[0].latency = Some(Duration::from_millis(5));
        c[1].latency = Some(Duration::from_millis(5));
        // Never answered, one request out: passed over, even against busy measured servers.
        c[2].outstanding = 1;
        c[0].outstanding = 20;
        let mut b = Balancer::new(Algorithm::PeakEwma, &[1, 1, 1]);
        let mut rng = Rng::new(8);
        for _ in 0..1000 {
            assert_ne!(pick(&mut b, &c, &mut rng), 2);
        }
        // Idle and unmeasured: tried.
        c[2].outstanding = 0;
        assert!((0..1000).any(|_| pick(&mut b, &c, &mut rng) == 2));
    }

    #[test]
    fn peak_ewma_shares_a_cold_burst_by_outstanding_and_takes_any_weight() {
        // Nothing measured yet, all busy: the fewer outstanding wins, as under p2c.
        let mut c = even(2);
        c[0].outstanding = 3;
        c[1].outstanding = 1;
        let mut b = Balancer::new(Algorithm::PeakEwma, &[1, 1]);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            assert_eq!(pick(&mut b, &c, &mut rng), 1);
        }
        // The penalty times the largest weight does not overflow.
        let mut b = Balancer::new(Algorithm::PeakEwma, &[u32::MAX, 1]);
        for _ in 0..100 {
            pick(&mut b, &c, &mut rng);
        }
    }

    #[test]
    fn least_connections_takes_the_least_loaded_by_weight() {
        let mut c = even(3);
        c[0].outstanding = 4;
        c[1].outstanding = 2;
        c[2].outstanding = 2;
        let mut b = Balancer::new(Algorithm::LeastConnections, &[1, 1, 2]);
        let mut rng = Rng::new(1);
        assert_eq!(
            pick(&mut b, &c, &mut rng),
            2,
            "2 of weight 2 is the lightest"
        );
        c[2].outstanding = 4;
        // Now 1 (2/1) and 2 (4/2) tie: round robin decides, both get turns.
        let picks: Vec<usize> = (0..4).map(|_| pick(&mut b, &c, &mut rng)).collect();
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn nothing_to_pick_is_none_and_one_is_that_one() {
        let mut rng = Rng::new(1);
        let mut none = Balancer::new(Algorithm::PowerOfTwo, &[]);
        assert_eq!(none.pick(|_| Load::default(), &mut rng), None);
        let mut one = Balancer::new(Algorithm::PowerOfTwo, &[1]);
        assert_eq!(one.pick(|_| Load::default(), &mut rng), Some(0));
    }

    #[test]
    fn servers_of_weight_zero_are_never_picked_by_any_algorithm() {
        let algorithms = [
            Algorithm::PowerOfTwo,
            Algorithm::PeakEwma,
            Algorithm::RoundRobin,
            Algorithm::Weighted,
            Algorithm::LeastConnections,
            Algorithm::Random,
        ];
        let c = even(4);
        for algorithm in algorithms {
            let mut b = Balancer::new(algorithm, &[1, 1, 1, 1]);
            b.set_weights(&[1, 0, 3, 0]);
            let mut rng = Rng::new(11);
            let mut counts = [0usize; 4];
            for _ in 0..4_000 {
                counts[pick(&mut b, &c, &mut rng)] += 1;
            }
            assert_eq!((counts[1], counts[3]), (0, 0), "{algorithm:?} {counts:?}");
            // The heavier one takes more (peak-EWMA, on equal latencies, all of it).
            assert!(counts[2] > counts[0], "{algorithm:?} {counts:?}");
            // One left: that one; none left: nothing.
            b.set_weights(&[0, 0, 2, 0]);
            assert_eq!(b.pick(|i| c[i], &mut rng), Some(2), "{algorithm:?}");
            b.set_weights(&[0, 0, 0, 0]);
            assert_eq!(b.pick(|i| c[i], &mut rng), None, "{algorithm:?}");
        }
    }

    #[test]
    fn a_server_at_a_tenth_of_its_weight_takes_about_a_tenth_of_a_share() {
        // Slow start: weight 100 against 1000 for the others.
        let c = even(3);
        let mut b = Balancer::new(Algorithm::PowerOfTwo, &[1, 1, 1]);
        b.set_weights(&[1000, 1000, 100]);
        let mut rng = Rng::new(2);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[pick(&mut b, &c, &mut rng)] += 1;
        }
        let share = shares(&counts)[2];
        assert!(share > 0.02 && share < 0.12, "{counts:?}");
    }

    #[test]
    fn peak_ewma_takes_peaks_at_once_and_decays_with_time() {
        let start = Instant::now();
        let mut e = PeakEwma::new(Duration::from_secs(10));
        e.observe(Duration::from_millis(10), start);
        e.observe(Duration::from_millis(100), start + Duration::from_millis(1));
        assert_eq!(
            e.estimate(),
            Some(Duration::from_millis(100)),
            "the peak at once"
        );
        // A fast response right after barely moves it; one after a long quiet time mostly
        // replaces it.
        let mut soon = e;
        soon.observe(Duration::from_millis(10), start + Duration::from_millis(2));
        assert!(soon.estimate().unwrap() > Duration::from_millis(99));
        let mut later = e;
        later.observe(Duration::from_millis(10), start + Duration::from_secs(60));
        assert!(later.estimate().unwrap() < Duration::from_millis(11));
        // One tau later: 1/e of the way.
        let mut tau = e;
        tau.observe(
            Duration::from_millis(10),
            start + Duration::from_millis(1) + Duration::from_secs(10),
        );
        let ms = tau.estimate().unwrap().as_secs_f64() * 1000.0;
        assert!(
            (ms - (10.0 + 90.0 / std::f64::consts::E)).abs() < 0.01,
            "{ms}"
        );
    }
}
