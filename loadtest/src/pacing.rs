//! The open-loop send schedule of `--rate` runs (wrk2's model), as pure arithmetic on time
//! offsets from the start of the run, so that tests can drive it with virtual time.
//!
//! A total rate R over C connections gives every connection the rate R / C. Connection `i`
//! intends to send its `k`-th request at `(i + k·C) / R` seconds after the start: the intended
//! times of all connections interleave into one evenly spaced stream of R per second. A
//! connection sends a request at its intended time, or at once if it is already late (a slow
//! response held it up), and its latency is measured **from the intended time**
//! ([`latency_from_intended`]): a stall then shows up in every request that it delayed, instead of
//! in one slow sample as in a closed loop (coordinated omission, corrected).

use std::time::Duration;

/// One connection's schedule of intended send times.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Requests per second of the whole run.
    total_rate: f64,
    connections: u64,
    index: u64,
    /// Requests already taken off the schedule.
    taken: u64,
}

impl Schedule {
    /// The schedule of connection `index` of `connections`, for `total_rate` requests/s overall.
    pub fn new(total_rate: f64, connections: usize, index: usize) -> Self {
        assert!(total_rate > 0.0, "rate must be positive");
        assert!(index < connections, "connection index out of range");
        Schedule {
            total_rate,
            connections: connections as u64,
            index: index as u64,
            taken: 0,
        }
    }

    /// The intended send time of this connection's `k`-th request.
    pub fn intended(&self, k: u64) -> Duration {
        let slot = self.index + k * self.connections;
        // f64 of nanoseconds: exact for runs far longer than any benchmark.
        Duration::from_nanos((slot as f64 * 1e9 / self.total_rate).round() as u64)
    }

    /// The time between two requests of this connection.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.total_rate)
    }

    /// The intended time of the next request not yet taken.
    pub fn next(&self) -> Duration {
        self.intended(self.taken)
    }

    /// Takes the requests that are due at `now` (intended at or before it), at most `max`, and
    /// returns their intended times. Empty when the next one is still in the future.
    pub fn take_due(&mut self, now: Duration, max: usize) -> Vec<Duration> {
        let mut due = Vec::new();
        while due.len() < max && self.next() <= now {
            due.push(self.next());
            self.taken += 1;
        }
        due
    }

    /// Requests taken so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }
}

/// How many requests all connections together intend to send before `horizon`.
pub fn intended_before(total_rate: f64, horizon: Duration) -> u64 {
    // Slots 0, 1, 2, ... at slot / R: those with slot / R < horizon.
    (horizon.as_secs_f64() * total_rate).ceil() as u64
}

/// The latency of a response completed at `completed`, for a request intended at `intended`
/// (both offsets from the start of the run). Never negative.
pub fn latency_from_intended(intended: Duration, completed: Duration) -> Duration {
    completed.saturating_sub(intended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyRecorder;

    #[test]
    fn connections_interleave_into_an_even_stream() {
        let (rate, conns) = (1000.0, 4);
        let mut all: Vec<Duration> = (0..conns)
            .flat_map(|i| {
                let s = Schedule::new(rate, conns, i);
                (0..250).map(move |k| s.intended(k))
            })
            .collect();
        all.sort();
        // 1000 sends, one per millisecond, starting at 0.
        for (n, t) in all.iter().enumerate() {
            assert_eq!(*t, Duration::from_millis(n as u64));
        }
        assert_eq!(
            Schedule::new(rate, conns, 2).interval(),
            Duration::from_millis(4)
        );
    }

    #[test]
    fn take_due_releases_only_what_is_due() {
        let mut s = Schedule::new(100.0, 2, 1); // every 20 ms, first at 10 ms
        assert!(s.take_due(Duration::from_millis(9), 8).is_empty());
        assert_eq!(
            s.take_due(Duration::from_millis(10), 8),
            vec![Duration::from_millis(10)]
        );
        // 45 ms late: the 30 ms and 50 ms sends are due, the 70 ms one is not.
        assert_eq!(
            s.take_due(Duration::from_millis(55), 8),
            vec![Duration::from_millis(30), Duration::from_millis(50)]
        );
        // A pipeline depth caps how many go at once; the rest stay due.
        assert_eq!(s.take_due(Duration::from_millis(200), 2).len(), 2);
        assert_eq!(s.next(), Duration::from_millis(110));
        assert_eq!(s.taken(), 5);
    }

    #[test]
    fn total_sends_over_a_run_match_the_rate() {
        let (rate, conns) = (2500.0, 64);
        let horizon = Duration::from_secs(3);
        let mut total = 0u64;
        for i in 0..conns {
            let mut s = Schedule::new(rate, conns, i);
            // Virtual time stepping in 1 ms ticks, as a timer wheel would wake the connection.
            let mut now = Duration::ZERO;
            while now < horizon {
                total += s.take_due(now, usize::MAX).len() as u64;
                now += Duration::from_millis(1);
            }
        }
        // Every slot intended at or before the last tick (2.999 s) was sent: slots 0..=7497.
        assert_eq!(total, 7498);
        assert_eq!(intended_before(rate, horizon), 7500);
    }

    /// One connection against a server that answers in 1 ms but stalls from 1 s to 2 s: the
    /// corrected latencies show the stall in every request it held up; the send-to-response
    /// latencies of a closed loop show it once.
    #[test]
    fn a_stall_is_seen_by_every_delayed_request() {
        let service = |send: Duration| {
            let (stall_from, stall_to) = (Duration::from_secs(1), Duration::from_secs(2));
            if send >= stall_from && send < stall_to {
                stall_to + Duration::from_millis(1)
            } else {
                send + Duration::from_millis(1)
            }
        };
        let mut s = Schedule::new(100.0, 1, 0); // every 10 ms
        let (mut corrected, mut naive) = (LatencyRecorder::new(), LatencyRecorder::new());
        let mut now = Duration::ZERO;
        while s.next() < Duration::from_secs(3) {
            // Wait for the next intended time unless already late, then send one.
            now = now.max(s.next());
            let intended = s.take_due(now, 1)[0];
            let done = service(now);
            corrected.record(latency_from_intended(intended, done));
            naive.record(done.saturating_sub(now));
            now = done;
        }
        let (c, n) = (corrected.summary(), naive.summary());
        assert_eq!(c.count, 300);
        assert_eq!(n.p90_us, 1000);
        assert_eq!(n.p99_us, 1000);
        // A third of the requests were due during the stall: p75 sits halfway down its ramp.
        assert!(c.p75_us > 200_000, "corrected p75 {}", c.p75_us);
        assert!(c.max_us >= 1_000_000, "corrected max {}", c.max_us);
        assert_eq!(
            latency_from_intended(Duration::from_secs(2), Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}
