//! Counters kept per worker and summed at scrape time.
//!
//! Every worker owns a [`WorkerMetrics`]: plain `Cell` counters, one set per route, per
//! upstream server and per listener, found once when a configuration generation is built (a
//! route or a server holds an `Rc` to its counters), so counting a request is a few increments
//! on the worker's own memory: no atomic, no lock, no lookup. The counters are keyed by name,
//! not by position, so they live across reloads: a route that stays keeps counting.
//!
//! `/metrics` on the admin listener asks every worker for a [`Snapshot`] on the message path
//! (`docs/architecture.md`, "Cores that talk"), adds them up ([`Snapshot::merge`]) and writes
//! the Prometheus text format ([`render`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use crate::filters::LimitStats;

/// The upper bounds of the latency histograms' buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds, which a request's duration is compared with.
const BUCKET_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram on one worker: a count per bucket (not cumulative), the sum and count.
#[derive(Default)]
pub struct Histogram {
    buckets: [Cell<u64>; BUCKETS.len() + 1],
    sum_micros: Cell<u64>,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let micros = took.as_micros() as u64;
        // Most requests take well under a millisecond: the first bounds decide.
        let i = BUCKET_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKET_MICROS.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_micros, micros);
    }

    fn snapshot(&self) -> HistogramCounts {
        HistogramCounts {
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
            sum_micros: self.sum_micros.get(),
        }
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// A status code's class as an index: 0 for 1xx … 4 for 5xx, 5 for none (the client went
/// away before a response).
fn class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Per consumer, per route.
type ConsumerStats =
    HashMap<Arc<str>, HashMap<Rc<str>, Rc<RouteStats>, ahash::RandomState>, ahash::RandomState>;

/// Most consumers counted apart per worker.
pub const MAX_CONSUMERS: usize = 1000;

/// Why a policy refused a request: `auth` (401, 403), `rate` (a rate or concurrency limit),
/// `quota` (a plan's quota).
pub const REJECT_REASONS: [&str; 3] = ["auth", "rate", "quota"];

/// One route's counters on one worker.
#[derive(Default)]
pub struct RouteStats {
    requests: [Cell<u64>; 6],
    /// Requests a policy refused, by [`REJECT_REASONS`].
    rejected: [Cell<u64>; REJECT_REASONS.len()],
    duration: Histogram,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
}

impl RouteStats {
    /// Counts one finished request.
    pub fn request(&self, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        bump(&self.requests[class(status)], 1);
        self.duration.observe(took);
        bump(&self.bytes_in, bytes_in);
        bump(&self.bytes_out, bytes_out);
    }

    /// Counts a request a policy refused (`reason`: one of [`REJECT_REASONS`]).
    pub fn rejected(&self, reason: &str) {
        if let Some(i) = REJECT_REASONS.iter().position(|&r| r == reason) {
            bump(&self.rejected[i], 1);
        }
    }

    /// Counts a request refused before its head was complete (400, 408, 414, 431, a client
    /// over its connection limit): its status only, it has no duration.
    pub fn refused(&self, status: u16) {
        bump(&self.requests[class(status)], 1);
    }

    fn snapshot(&self) -> RouteCounts {
        RouteCounts {
            requests: std::array::from_fn(|i| self.requests[i].get()),
            rejected: std::array::from_fn(|i| self.rejected[i].get()),
            duration: self.duration.snapshot(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
        }
    }
}

/// One upstream server's counters on one worker.
#[derive(Default)]
pub struct ServerStats {
    responses: [Cell<u64>; 6],
    /// From the request's start to the response head from this server.
    response_time: Histogram,
    pub connects: Cell<u64>,
    pub connect_failures: Cell<u64>,
    pub connect_timeouts: Cell<u64>,
    /// Requests sent on a pooled connection.
    pub reused: Cell<u64>,
    /// Times passive checks ejected it (counted by the worker that decided).
    pub ejections: Cell<u64>,
    /// Active checks run, and those that failed (counted by the worker that checks).
    pub checks: Cell<u64>,
    pub check_failures: Cell<u64>,
    /// Times active checks took it down, and brought it back up.
    pub went_down: Cell<u64>,
    pub went_up: Cell<u64>,
}

impl ServerStats {
    pub fn response(&self, status: u16, took: Option<Duration>) {
        bump(&self.responses[class(status)], 1);
        if let Some(took) = took {
            self.response_time.observe(took);
        }
    }

    pub fn count(cell: &Cell<u64>) {
        bump(cell, 1);
    }

    fn snapshot(&self) -> ServerCounts {
        ServerCounts {
            responses: std::array::from_fn(|i| self.responses[i].get()),
            response_time: self.response_time.snapshot(),
            connects: self.connects.get(),
            connect_failures: self.connect_failures.get(),
            connect_timeouts: self.connect_timeouts.get(),
            reused: self.reused.get(),
            ejections: self.ejections.get(),
            checks: self.checks.get(),
            check_failures: self.check_failures.get(),
            went_down: self.went_down.get(),
            went_up: self.went_up.get(),
        }
    }
}

/// One upstream group's counters on one worker.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Requests answered 503 by the circuit breaker (no room, none could wait, or the wait
    /// ran out).
    pub overflows: Cell<u64>,
    /// Requests that waited for room.
    pub pending: Cell<u64>,
    /// Tries after the first (to another server).
    pub retries: Cell<u64>,
    /// Retries the budget refused.
    pub retries_refused: Cell<u64>,
    /// Second tries of hedged requests.
    pub hedges: Cell<u64>,
}

impl GroupStats {
    fn snapshot(&self) -> GroupCounts {
        GroupCounts {
            overflows: self.overflows.get(),
            pending: self.pending.get(),
            retries: self.retries.get(),
            retries_refused: self.retries_refused.get(),
            hedges: self.hedges.get(),
        }
    }
}

/// One listener's counters on one worker (its connections are counted by the engine, per
/// socket: `WorkerState::snapshot` adds them).
#[derive(Debug, Default)]
pub struct ListenerStats {
    tls_handshakes: Cell<u64>,
    tls_failures: Cell<u64>,
}

impl ListenerStats {
    pub fn tls_handshake(&self, ok: bool) {
        bump(
            if ok {
                &self.tls_handshakes
            } else {
                &self.tls_failures
            },
            1,
        );
    }
}

/// A worker's counters, by name.
#[derive(Default)]
pub struct WorkerMetrics {
    routes: RefCell<HashMap<Rc<str>, Rc<RouteStats>>>,
    servers: RefCell<HashMap<(String, String), Rc<ServerStats>>>,
    groups: RefCell<HashMap<String, Rc<GroupStats>>>,
    listeners: RefCell<HashMap<String, Rc<ListenerStats>>>,
    limits: RefCell<HashMap<String, Rc<LimitStats>>>,
    /// Per consumer and route (at most [`MAX_CONSUMERS`] consumers; the others count as
    /// `other`, so that token subjects cannot grow the series without bound).
    consumers: RefCell<ConsumerStats>,
    /// Requests that matched no route (or failed before routing).
    pub unrouted: Rc<RouteStats>,
}

impl WorkerMetrics {
    pub fn route(&self, name: &Rc<str>) -> Rc<RouteStats> {
        self.routes
            .borrow_mut()
            .entry(name.clone())
            .or_default()
            .clone()
    }

    pub fn server(&self, group: &str, server: &str) -> Rc<ServerStats> {
        self.servers
            .borrow_mut()
            .entry((group.to_owned(), server.to_owned()))
            .or_default()
            .clone()
    }

    pub fn group(&self, name: &str) -> Rc<GroupStats> {
        self.groups
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The counters of `consumer`'s requests on `route`.
    pub fn consumer(&self, consumer: &Arc<str>, route: &Rc<str>) -> Rc<RouteStats> {
        let mut consumers = self.consumers.borrow_mut();
        if let Some(stats) = consumers.get(&**consumer).and_then(|r| r.get(&**route)) {
            return stats.clone();
        }
        let name = if consumers.contains_key(&**consumer) || consumers.len() < MAX_CONSUMERS {
            consumer.clone()
        } else {
            Arc::from("other")
        };
        consumers
            .entry(name)
            .or_default()
            .entry(route.clone())
            .or_default()
            .clone()
    }

    pub fn limit(&self, name: &str) -> Rc<LimitStats> {
        self.limits
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    pub fn listener(&self, name: &str) -> Rc<ListenerStats> {
        self.listeners
            .borrow_mut()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets the counters of names no generation uses any more (a route or a server
    /// removed by a reload): what they counted stays in the totals of `/metrics` only while
    /// something holds them. Prometheus handles a series that goes away.
    pub fn forget_unused(&self) {
        self.routes
            .borrow_mut()
            .retain(|_, stats| Rc::strong_count(stats) > 1);
        self.servers
            .borrow_mut()
            .retain(|_, stats| Rc::strong_count(stats) > 1);
        self.groups
            .borrow_mut()
            .retain(|_, stats| Rc::strong_count(stats) > 1);
        self.listeners
            .borrow_mut()
            .retain(|_, stats| Rc::strong_count(stats) > 1);
        self.limits
            .borrow_mut()
            .retain(|_, stats| Rc::strong_count(stats) > 1);
    }

    /// What this worker counted, as plain data another thread may read.
    pub fn snapshot(&self, worker: usize, dropped_log_lines: u64) -> Snapshot {
        let mut routes: BTreeMap<String, RouteCounts> = self
            .routes
            .borrow()
            .iter()
            .map(|(name, stats)| (name.to_string(), stats.snapshot()))
            .collect();
        let unrouted = self.unrouted.snapshot();
        if unrouted.requests.iter().any(|&n| n > 0) {
            routes.insert(String::new(), unrouted);
        }
        Snapshot {
            routes,
            servers: self
                .servers
                .borrow()
                .iter()
                .map(|(key, stats)| (key.clone(), stats.snapshot()))
                .collect(),
            groups: self
                .groups
                .borrow()
                .iter()
                .map(|(name, stats)| (name.clone(), stats.snapshot()))
                .collect(),
            listeners: self
                .listeners
                .borrow()
                .iter()
                .map(|(name, stats)| {
                    (
                        (worker, name.clone()),
                        ListenerCounts {
                            accepted: 0,
                            open: 0,
                            tls_handshakes: stats.tls_handshakes.get(),
                            tls_failures: stats.tls_failures.get(),
                        },
                    )
                })
                .collect(),
            consumers: self
                .consumers
                .borrow()
                .iter()
                .flat_map(|(consumer, routes)| {
                    routes.iter().map(move |(route, stats)| {
                        ((consumer.to_string(), route.to_string()), stats.snapshot())
                    })
                })
                .collect(),
            limits: self
                .limits
                .borrow()
                .iter()
                .map(|(name, stats)| {
                    (
                        name.clone(),
                        LimitCounts {
                            allowed: stats.allowed.get(),
                            delayed: stats.delayed.get(),
                            refused: stats.refused.get(),
                            keys: stats.keys.get(),
                            evicted: stats.evicted.get(),
                        },
                    )
                })
                .collect(),
            dropped_log_lines,
            cache: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitCounts {
    pub allowed: u64,
    pub delayed: u64,
    pub refused: u64,
    pub keys: u64,
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HistogramCounts {
    buckets: [u64; BUCKETS.len() + 1],
    sum_micros: u64,
}

impl HistogramCounts {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_micros += other.sum_micros;
    }

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RouteCounts {
    pub requests: [u64; 6],
    pub rejected: [u64; REJECT_REASONS.len()],
    pub duration: HistogramCounts,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl RouteCounts {
    fn add(&mut self, other: &Self) {
        for (a, b) in self.requests.iter_mut().zip(other.requests) {
            *a += b;
        }
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
        self.duration.add(&other.duration);
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ServerCounts {
    pub responses: [u64; 6],
    pub response_time: HistogramCounts,
    pub connects: u64,
    pub connect_failures: u64,
    pub connect_timeouts: u64,
    pub reused: u64,
    pub ejections: u64,
    pub checks: u64,
    pub check_failures: u64,
    pub went_down: u64,
    pub went_up: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub overflows: u64,
    pub pending: u64,
    pub retries: u64,
    pub retries_refused: u64,
    pub hedges: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ListenerCounts {
    pub accepted: u64,
    pub open: u64,
    pub tls_handshakes: u64,
    pub tls_failures: u64,
}

/// What one worker counted, or the sum of several workers' counts.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// By route name (`""`: requests no route took).
    pub routes: BTreeMap<String, RouteCounts>,
    /// By (upstream group, server).
    pub servers: BTreeMap<(String, String), ServerCounts>,
    /// By upstream group.
    pub groups: BTreeMap<String, GroupCounts>,
    /// By (worker, listener): connections are shown per worker, to see the balance.
    pub listeners: BTreeMap<(usize, String), ListenerCounts>,
    /// By rate limit name.
    pub limits: BTreeMap<String, LimitCounts>,
    /// By (consumer, route).
    pub consumers: BTreeMap<(String, String), RouteCounts>,
    pub dropped_log_lines: u64,
    /// The response cache's counts; `None` without a cache.
    pub cache: Option<CacheCounts>,
}

/// What the response caches counted, and what they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub stats: crate::cache::CacheStats,
    pub bytes: u64,
    pub entries: u64,
}

impl Snapshot {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Snapshot) {
        for (name, counts) in other.routes {
            self.routes.entry(name).or_default().add(&counts);
        }
        for (key, counts) in other.consumers {
            self.consumers.entry(key).or_default().add(&counts);
        }
        for (key, counts) in other.servers {
            let sum = self.servers.entry(key).or_default();
            for (a, b) in sum.responses.iter_mut().zip(counts.responses) {
                *a += b;
            }
            sum.response_time.add(&counts.response_time);
            sum.connects += counts.connects;
            sum.connect_failures += counts.connect_failures;
            sum.connect_timeouts += counts.connect_timeouts;
            sum.reused += counts.reused;
            sum.ejections += counts.ejections;
            sum.checks += counts.checks;
            sum.check_failures += counts.check_failures;
            sum.went_down += counts.went_down;
            sum.went_up += counts.went_up;
        }
        for (name, counts) in other.groups {
            let sum = self.groups.entry(name).or_default();
            sum.overflows += counts.overflows;
            sum.pending += counts.pending;
            sum.retries += counts.retries;
            sum.retries_refused += counts.retries_refused;
            sum.hedges += counts.hedges;
        }
        for (key, counts) in other.listeners {
            let sum = self.listeners.entry(key).or_default();
            sum.accepted += counts.accepted;
            sum.open += counts.open;
            sum.tls_handshakes += counts.tls_handshakes;
            sum.tls_failures += counts.tls_failures;
        }
        for (name, counts) in other.limits {
            let sum = self.limits.entry(name).or_default();
            sum.allowed += counts.allowed;
            sum.delayed += counts.delayed;
            sum.refused += counts.refused;
            sum.keys += counts.keys;
            sum.evicted += counts.evicted;
        }
        self.dropped_log_lines += other.dropped_log_lines;
        if let Some(other) = other.cache {
            let sum = self.cache.get_or_insert_with(CacheCounts::default);
            let (a, b) = (&mut sum.stats, other.stats);
            a.hits += b.hits;
            a.misses += b.misses;
            a.revalidated += b.revalidated;
            a.stores += b.stores;
            a.evictions += b.evictions;
            a.invalidations += b.invalidations;
            a.bypasses += b.bypasses;
            a.coalesced += b.coalesced;
            sum.bytes += other.bytes;
            sum.entries += other.entries;
        }
    }
}

/// What `/metrics` says besides the workers' counters.
#[derive(Debug)]
pub struct ProcessInfo<'a> {
    pub version: &'a str,
    pub io_driver: &'a str,
    pub workers: usize,
    pub uptime: Duration,
    pub generation: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Workers that did not answer the scrape in time (their counts are missing).
    pub missing_workers: usize,
    /// Every upstream server: group, label and state (as `ServerState::as_str`).
    pub server_states: &'a [(String, String, &'static str)],
}

/// The states `ringwall_upstream_server_state` shows.
const SERVER_STATES: [&str; 4] = ["up", "down", "ejected", "backup"];

/// The Prometheus text exposition format (version 0.0.4) of `sum` and `process`.
#[allow(clippy::too_many_lines)] // one family after another
pub fn render(sum: &Snapshot, process: &ProcessInfo<'_>) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "ringwall_info",
        "gauge",
        "The running ringwall: version and I/O driver.",
    );
    let _ = writeln!(
        out,
        "ringwall_info{{version=\"{}\",io_driver=\"{}\"}} 1",
        label(process.version),
        label(process.io_driver)
    );
    family(&mut out, "ringwall_workers", "gauge", "Worker threads.");
    let _ = writeln!(out, "ringwall_workers {}", process.workers);
    family(
        &mut out,
        "ringwall_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
    );
    let _ = writeln!(
        out,
        "ringwall_uptime_seconds {:.3}",
        process.uptime.as_secs_f64()
    );
    family(
        &mut out,
        "ringwall_config_generation",
        "gauge",
        "The configuration generation serving new requests (1 at start, +1 per reload).",
    );
    let _ = writeln!(out, "ringwall_config_generation {}", process.generation);
    family(
        &mut out,
        "ringwall_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    let _ = writeln!(
        out,
        "ringwall_reloads_total{{result=\"ok\"}} {}",
        process.reloads
    );
    let _ = writeln!(
        out,
        "ringwall_reloads_total{{result=\"refused\"}} {}",
        process.reload_failures
    );
    family(
        &mut out,
        "ringwall_scrape_missing_workers",
        "gauge",
        "Workers whose counters did not reach this scrape in time.",
    );
    let _ = writeln!(
        out,
        "ringwall_scrape_missing_workers {}",
        process.missing_workers
    );
    family(
        &mut out,
        "ringwall_access_log_dropped_lines_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    let _ = writeln!(
        out,
        "ringwall_access_log_dropped_lines_total {}",
        sum.dropped_log_lines
    );

    let by_route: Vec<(String, &RouteCounts)> = sum
        .routes
        .iter()
        .map(|(route, counts)| (format!("route=\"{}\"", label(route)), counts))
        .collect();
    request_families(
        &mut out,
        "ringwall_",
        "route (route=\"\": no route matched)",
        &by_route,
    );
    let by_consumer: Vec<(String, &RouteCounts)> = sum
        .consumers
        .iter()
        .map(|((consumer, route), counts)| {
            (
                format!(
                    "consumer=\"{}\",route=\"{}\"",
                    label(consumer),
                    label(route)
                ),
                counts,
            )
        })
        .collect();
    request_families(
        &mut out,
        "ringwall_consumer_",
        "consumer and route",
        &by_consumer,
    );
    rate_limit_families(&mut out, &sum.limits);
    if let Some(cache) = &sum.cache {
        cache_families(&mut out, cache);
    }

    family(
        &mut out,
        "ringwall_upstream_responses_total",
        "counter",
        "Responses from upstream servers, by group, server and status class.",
    );
    for ((group, server), counts) in &sum.servers {
        for (class, n) in CLASSES.iter().take(5).zip(counts.responses) {
            let _ = writeln!(
                out,
                "ringwall_upstream_responses_total{{group=\"{}\",server=\"{}\",code=\"{class}\"}} {n}",
                label(group),
                label(server)
            );
        }
    }
    family(
        &mut out,
        "ringwall_upstream_response_seconds",
        "histogram",
        "Time from a request's head to the server's response head, by group and server.",
    );
    for ((group, server), counts) in &sum.servers {
        histogram(
            &mut out,
            "ringwall_upstream_response_seconds",
            &format!("group=\"{}\",server=\"{}\"", label(group), label(server)),
            &counts.response_time,
        );
    }
    let server_counters: [ServerFamily; 7] = [
        (
            "ringwall_upstream_connects_total",
            "New connections made to upstream servers.",
            |c| c.connects,
        ),
        (
            "ringwall_upstream_connect_failures_total",
            "Connections to upstream servers that failed (refused, reset, TLS).",
            |c| c.connect_failures,
        ),
        (
            "ringwall_upstream_connect_timeouts_total",
            "Connections to upstream servers not made within the connect timeout.",
            |c| c.connect_timeouts,
        ),
        (
            "ringwall_upstream_pool_reuse_total",
            "Requests sent on a pooled keep-alive connection.",
            |c| c.reused,
        ),
        (
            "ringwall_upstream_ejections_total",
            "Times passive checks ejected an upstream server.",
            |c| c.ejections,
        ),
        (
            "ringwall_upstream_health_checks_total",
            "Active health checks run on upstream servers.",
            |c| c.checks,
        ),
        (
            "ringwall_upstream_health_check_failures_total",
            "Active health checks that failed.",
            |c| c.check_failures,
        ),
    ];
    for (name, help, get) in server_counters {
        family(&mut out, name, "counter", help);
        for ((group, server), counts) in &sum.servers {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\",server=\"{}\"}} {}",
                label(group),
                label(server),
                get(counts)
            );
        }
    }

    let group_counters: [GroupFamily; 5] = [
        (
            "ringwall_upstream_overflows_total",
            "Requests the circuit breaker answered 503 (no room, and none could wait or the wait ran out).",
            |c| c.overflows,
        ),
        (
            "ringwall_upstream_pending_total",
            "Requests that waited for room under the circuit breaker's limits.",
            |c| c.pending,
        ),
        (
            "ringwall_upstream_retries_total",
            "Tries after a request's first, on another server.",
            |c| c.retries,
        ),
        (
            "ringwall_upstream_retries_refused_total",
            "Retries the retry budget refused.",
            |c| c.retries_refused,
        ),
        (
            "ringwall_upstream_hedges_total",
            "Second tries of hedged requests, sent while the first had not answered.",
            |c| c.hedges,
        ),
    ];
    for (name, help, get) in group_counters {
        family(&mut out, name, "counter", help);
        for (group, counts) in &sum.groups {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", label(group), get(counts));
        }
    }
    family(
        &mut out,
        "ringwall_upstream_health_changes_total",
        "counter",
        "Times active health checks took an upstream server down, or brought it up.",
    );
    for ((group, server), counts) in &sum.servers {
        for (to, n) in [("down", counts.went_down), ("up", counts.went_up)] {
            let _ = writeln!(
                out,
                "ringwall_upstream_health_changes_total{{group=\"{}\",server=\"{}\",to=\"{to}\"}} {n}",
                label(group),
                label(server)
            );
        }
    }
    family(
        &mut out,
        "ringwall_upstream_server_state",
        "gauge",
        "Each upstream server's state as the answering worker sees it (1 for the state it is \
         in): up, down (active checks), ejected (passive checks) or backup (not in use).",
    );
    for (group, server, state) in process.server_states {
        for each in SERVER_STATES {
            let _ = writeln!(
                out,
                "ringwall_upstream_server_state{{group=\"{}\",server=\"{}\",state=\"{each}\"}} {}",
                label(group),
                label(server),
                u8::from(*state == each)
            );
        }
    }

    let listener_values: [ListenerFamily; 4] = [
        (
            "ringwall_connections_open",
            "gauge",
            "Client connections open now, by worker and listener.",
            |c| c.open,
        ),
        (
            "ringwall_connections_accepted_total",
            "counter",
            "Client connections accepted, by worker and listener.",
            |c| c.accepted,
        ),
        (
            "ringwall_tls_handshakes_total",
            "counter",
            "TLS handshakes completed, by worker and listener.",
            |c| c.tls_handshakes,
        ),
        (
            "ringwall_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out, by worker and listener.",
            |c| c.tls_failures,
        ),
    ];
    for (name, kind, help, get) in listener_values {
        family(&mut out, name, kind, help);
        for ((worker, listener), counts) in &sum.listeners {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{worker}\",listener=\"{}\"}} {}",
                label(listener),
                get(counts)
            );
        }
    }
    out
}

/// A family of per-server counters: name, help, the value.
type ServerFamily = (&'static str, &'static str, fn(&ServerCounts) -> u64);
/// A family of per-group counters: name, help, and how to read it.
type GroupFamily = (&'static str, &'static str, fn(&GroupCounts) -> u64);
/// A family of per-listener values: name, type, help, the value.
type ListenerFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ListenerCounts) -> u64,
);

/// The request counters of `rows` (each with its labels): requests by status class, refusals
/// by reason, durations, body bytes; families named `{prefix}requests_total` and so on.
fn request_families(out: &mut String, prefix: &str, by: &str, rows: &[(String, &RouteCounts)]) {
    let name = |n: &str| format!("{prefix}{n}");
    family(
        out,
        &name("requests_total"),
        "counter",
        &format!("Requests by {by} and status class."),
    );
    for (labels, counts) in rows {
        for (class, n) in CLASSES.iter().zip(counts.requests) {
            let _ = writeln!(
                out,
                "{}{{{labels},code=\"{class}\"}} {n}",
                name("requests_total")
            );
        }
    }
    family(
        out,
        &name("requests_rejected_total"),
        "counter",
        &format!(
            "Requests a policy refused, by {by} and reason (auth: 401 or 403; rate: a rate or \
             concurrency limit; quota: a plan's quota)."
        ),
    );
    for (labels, counts) in rows {
        for (reason, n) in REJECT_REASONS.iter().zip(counts.rejected) {
            let _ = writeln!(
                out,
                "{}{{{labels},reason=\"{reason}\"}} {n}",
                name("requests_rejected_total")
            );
        }
    }
    family(
        out,
        &name("request_duration_seconds"),
        "histogram",
        &format!("Time from a request's head to the end of its response, by {by}."),
    );
    for (labels, counts) in rows {
        histogram(
            out,
            &name("request_duration_seconds"),
            labels,
            &counts.duration,
        );
    }
    for (family_name, help, get) in [
        (
            "request_bytes_total",
            "Bytes of request bodies received from clients",
            (|c: &RouteCounts| c.bytes_in) as fn(&RouteCounts) -> u64,
        ),
        (
            "response_bytes_total",
            "Bytes sent to clients (heads and bodies)",
            |c: &RouteCounts| c.bytes_out,
        ),
    ] {
        family(
            out,
            &name(family_name),
            "counter",
            &format!("{help}, by {by}."),
        );
        for (labels, counts) in rows {
            let _ = writeln!(out, "{}{{{labels}}} {}", name(family_name), get(counts));
        }
    }
}

/// The response cache's counters, summed over the workers.
fn cache_families(out: &mut String, cache: &CacheCounts) {
    let s = cache.stats;
    for (name, kind, help, value) in [
        (
            "ringwall_cache_lookups_total{result=\"hit\"}",
            "counter",
            "",
            s.hits,
        ),
        (
            "ringwall_cache_lookups_total{result=\"miss\"}",
            "",
            "",
            s.misses,
        ),
        (
            "ringwall_cache_lookups_total{result=\"bypass\"}",
            "",
            "",
            s.bypasses,
        ),
        (
            "ringwall_cache_revalidations_total",
            "counter",
            "Stale responses the origin confirmed with a 304 and the cache answered.",
            s.revalidated,
        ),
        (
            "ringwall_cache_coalesced_total",
            "counter",
            "Requests that waited for another request's fetch of their URL, then were answered \
             from what it stored.",
            s.coalesced,
        ),
        (
            "ringwall_cache_stores_total",
            "counter",
            "Responses stored (or stored again, revalidated).",
            s.stores,
        ),
        (
            "ringwall_cache_evictions_total",
            "counter",
            "Responses evicted to make room (least recently used first).",
            s.evictions,
        ),
        (
            "ringwall_cache_invalidations_total",
            "counter",
            "URLs whose stored responses went: an unsafe method succeeded on them, or a purge.",
            s.invalidations,
        ),
        (
            "ringwall_cache_bytes",
            "gauge",
            "Bytes the caches hold, summed over the workers.",
            cache.bytes,
        ),
        (
            "ringwall_cache_entries",
            "gauge",
            "Responses the caches hold, summed over the workers.",
            cache.entries,
        ),
    ] {
        let family_name = name.split('{').next().unwrap_or(name);
        if !kind.is_empty() {
            let help = if help.is_empty() {
                "Requests the cache looked up, by result (hit: answered from the cache; miss: \
                 forwarded, stale ones included; bypass: the route's bypass conditions)."
            } else {
                help
            };
            family(out, family_name, kind, help);
        }
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The rate limits' counters: decisions by outcome, keys held, keys evicted.
fn rate_limit_families(out: &mut String, limits: &BTreeMap<String, LimitCounts>) {
    family(
        out,
        "ringwall_rate_limit_decisions_total",
        "counter",
        "Requests a rate limit counted, by limit and outcome (allowed, delayed, refused).",
    );
    for (name, c) in limits {
        for (outcome, n) in [
            ("allowed", c.allowed),
            ("delayed", c.delayed),
            ("refused", c.refused),
        ] {
            let _ = writeln!(
                out,
                "ringwall_rate_limit_decisions_total{{limit=\"{}\",outcome=\"{outcome}\"}} {n}",
                label(name)
            );
        }
    }
    family(
        out,
        "ringwall_rate_limit_keys",
        "gauge",
        "Keys a rate limit holds, summed over the workers (each holds its own).",
    );
    for (name, c) in limits {
        let _ = writeln!(
            out,
            "ringwall_rate_limit_keys{{limit=\"{}\"}} {}",
            label(name),
            c.keys
        );
    }
    family(
        out,
        "ringwall_rate_limit_evictions_total",
        "counter",
        "Keys dropped from a full map before their state was back to a fresh one's.",
    );
    for (name, c) in limits {
        let _ = writeln!(
            out,
            "ringwall_rate_limit_evictions_total{{limit=\"{}\"}} {}",
            label(name),
            c.evicted
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, counts: &HistogramCounts) {
    let mut cumulative = 0;
    for (bound, n) in BUCKETS.iter().zip(counts.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
        counts.count()
    );
    let _ = writeln!(
        out,
        "{name}_sum{{{labels}}} {}",
        Duration::from_micros(counts.sum_micros).as_secs_f64()
    );
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", counts.count());
}

/// A label value escaped as the text format asks: backslash, double quote and newline.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_two_workers_add_up() {
        let a = WorkerMetrics::default();
        let b = WorkerMetrics::default();
        let name: Rc<str> = "api".into();
        let (ra, rb) = (a.route(&name), b.route(&name));
        for _ in 0..3 {
            ra.request(200, Duration::from_millis(2), 10, 100);
        }
        rb.request(503, Duration::from_secs(20), 0, 50);
        let mut sum = a.snapshot(0, 1);
        sum.merge(b.snapshot(1, 2));
        let api = &sum.routes["api"];
        assert_eq!(api.requests, [0, 3, 0, 0, 1, 0]);
        assert_eq!(api.duration.count(), 4);
        assert_eq!(api.duration.buckets[BUCKETS.len()], 1, "20 s is over 10 s");
        assert_eq!(api.duration.buckets[2], 3, "2 ms is in the 2.5 ms bucket");
        assert_eq!((api.bytes_in, api.bytes_out), (30, 350));
        assert_eq!(sum.dropped_log_lines, 3);
        let text = render(
            &sum,
            &ProcessInfo {
                version: "0",
                io_driver: "epoll",
                workers: 2,
                uptime: Duration::from_secs(1),
                generation: 1,
                reloads: 0,
                reload_failures: 0,
                missing_workers: 0,
                server_states: &[("app".to_owned(), "127.0.0.1:9001".to_owned(), "up")],
            },
        );
        assert!(text.contains("ringwall_requests_total{route=\"api\",code=\"2xx\"} 3\n"));
        assert!(text
            .contains("ringwall_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 3\n"));
        assert!(text
            .contains("ringwall_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("ringwall_request_duration_seconds_count{route=\"api\"} 4\n"));
    }

    #[test]
    fn the_bounds_in_micros_are_the_bounds_in_seconds() {
        for (micros, seconds) in BUCKET_MICROS.iter().zip(BUCKETS) {
            assert_eq!(
                Duration::from_micros(*micros),
                Duration::from_secs_f64(seconds)
            );
        }
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(501));
        let counts = h.snapshot();
        assert_eq!(
            (counts.buckets[0], counts.buckets[1]),
            (1, 1),
            "the bound is inclusive"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn unused_counters_are_forgotten_and_used_ones_kept() {
        let m = WorkerMetrics::default();
        let kept = m.route(&"kept".into());
        drop(m.route(&"gone".into()));
        m.forget_unused();
        assert_eq!(m.routes.borrow().len(), 1);
        drop(kept);
    }

    #[test]
    fn tls_handshakes_are_counted_per_listener() {
        let m = WorkerMetrics::default();
        let listener = m.listener("main");
        listener.tls_handshake(true);
        listener.tls_handshake(false);
        listener.tls_handshake(true);
        let snap = m.snapshot(0, 0);
        let counts = snap.listeners[&(0, "main".to_owned())];
        assert_eq!((counts.tls_handshakes, counts.tls_failures), (2, 1));
    }
}
