//! Rate limits on the request path.
//!
//! Each worker holds one [`LimitState`] per `[[rate_limit]]` ([`RateLimiters`]): the policy's
//! per-key map ([`ringwall_policies::ratelimit::Limiter`]), its counters and the text of its
//! `RateLimit-Policy` field. A reload keeps the state of every limit whose settings did not
//! change. On the message path's tick the worker sends what it admitted per key to the other
//! workers ([`RateLimiters::report`]) and takes in theirs ([`RateLimiters::absorb`]), so that
//! a limit of N holds for the process.
//!
//! Phase `request_filter` ([`RateLimitFilter`]): the route's limits in order; each counts the
//! request by its key (a request without the key's header is not counted by that limit). One
//! limit over: what the earlier ones took is given back and the answer is 429 with
//! `Retry-After`, `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
//! One with a queue: the request waits its turn ([`Flow::Wait`]). A concurrency limit's place
//! is held by the request's context and given back when the request ends, however it ends.
//! Phase `response_filter`: the `RateLimit` fields on every response, for limits with
//! `headers = true`.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwall_policies::ratelimit::{Decision, Kind, Limiter};

use super::{Filter, Flow, Request, Response};
use crate::auth::quota::{QuotaDecision, Quotas};
use crate::config::{Config, KeyPart, QuotaPeriod, RateLimit};
use crate::http1::LocalResponse;
use crate::l7::RequestContext;

/// One limit's counters on one worker.
#[derive(Default)]
pub struct LimitStats {
    pub allowed: Cell<u64>,
    pub delayed: Cell<u64>,
    pub refused: Cell<u64>,
    /// Keys held (set on the tick).
    pub keys: Cell<u64>,
    /// Keys dropped before they were back to a fresh state.
    pub evicted: Cell<u64>,
}

/// One `[[rate_limit]]` on one worker.
pub struct LimitState {
    /// The same on every worker and in every generation that keeps the limit's settings.
    pub id: u64,
    pub config: RateLimit,
    limiter: RefCell<Limiter>,
    /// The `RateLimit-Policy` field's value: `"name";q=N;w=S`.
    policy: Bytes,
    pub stats: Rc<LimitStats>,
}

/// The instant every worker's windows count from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The keys' hasher: seeded at random once per process, the same on every worker (so that
/// their reports name the same keys), unknown to clients (so that none can aim at another's
/// key).
fn key_hasher() -> &'static ahash::RandomState {
    static HASHER: OnceLock<ahash::RandomState> = OnceLock::new();
    HASHER.get_or_init(|| {
        let seeds = std::collections::hash_map::RandomState::new();
        let seed = |n: u64| seeds.hash_one(n);
        ahash::RandomState::with_seeds(seed(1), seed(2), seed(3), seed(4))
    })
}

/// The key of a limit counted by the client address alone: the address (IPv4, or an IPv6
/// address's /64) xor a per-process random seed (one per family), times an odd number: a
/// bijection within each family, so two clients of one family never share a key, and no client
/// can tell which key is another's. Cheaper than hashing the address.
fn ip_key(ip: IpAddr) -> u64 {
    static SEEDS: OnceLock<(u64, u64)> = OnceLock::new();
    let (v4_seed, v6_seed) = *SEEDS.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        (random.hash_one(4u64), random.hash_one(6u64))
    });
    let mixed = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)) ^ v4_seed,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)) ^ v4_seed,
            None => (u128::from(v6) >> 64) as u64 ^ v6_seed,
        },
    };
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl LimitState {
    fn new(config: &RateLimit, stats: Rc<LimitStats>) -> Self {
        let (quota, window) = config.quota();
        let policy = format!("\"{}\";q={quota};w={window}", config.name);
        Self {
            id: limit_id(config),
            config: config.clone(),
            limiter: RefCell::new(Limiter::new(
                config.kind,
                config.shared,
                origin(),
                config.max_keys,
            )),
            policy: Bytes::from(policy),
            stats,
        }
    }

    /// The `RateLimit` field's value: what is left and when the quota is whole again.
    fn remaining(&self, remaining: u64, reset: Duration) -> Bytes {
        Bytes::from(format!(
            "\"{}\";r={remaining};t={}",
            self.config.name,
            whole_seconds(reset)
        ))
    }
}

/// A limit's identity: its settings (a reload that changes them starts it afresh).
fn limit_id(config: &RateLimit) -> u64 {
    let mut hasher = DefaultHasher::new();
    config.name.hash(&mut hasher);
    config.kind.hash(&mut hasher);
    config.key.hash(&mut hasher);
    config.shared.hash(&mut hasher);
    config.max_keys.hash(&mut hasher);
    hasher.finish()
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One worker's limits, in the order of the configuration's `[[rate_limit]]`s.
#[derive(Default)]
pub struct RateLimiters {
    limits: Vec<Rc<LimitState>>,
}

/// What one worker admitted per key of one limit since its last report.
pub type Usage = Vec<(u64, Vec<(u64, i32)>)>;

impl RateLimiters {
    /// The limits of `config`; those of `previous` with the same settings are kept (their
    /// counts go on).
    pub fn new(
        config: &Config,
        previous: Option<&RateLimiters>,
        stats: impl Fn(&str) -> Rc<LimitStats>,
    ) -> Self {
        let limits = config
            .rate_limits
            .iter()
            .map(|limit| {
                let id = limit_id(limit);
                previous
                    .and_then(|p| p.limits.iter().find(|l| l.id == id))
                    .cloned()
                    .unwrap_or_else(|| Rc::new(LimitState::new(limit, stats(&limit.name))))
            })
            .collect();
        Self { limits }
    }

    pub fn get(&self, index: usize) -> Option<&Rc<LimitState>> {
        self.limits.get(index)
    }

    /// What this worker admitted since the last report, per shared limit; empty when nothing.
    /// Also brings the limits' key counts up to date.
    pub fn report(&self) -> Usage {
        let mut usage = Vec::new();
        for limit in &self.limits {
            let mut limiter = limit.limiter.borrow_mut();
            limit.stats.keys.set(limiter.len() as u64);
            limit.stats.evicted.set(limiter.evicted());
            let mut taken = Vec::new();
            limiter.report(&mut taken);
            if !taken.is_empty() {
                usage.push((limit.id, taken));
            }
        }
        usage
    }

    /// What another worker admitted (limits this worker does not have are skipped: another
    /// generation's).
    pub fn absorb(&self, usage: &Usage, now: Instant) {
        for (id, taken) in usage {
            let Some(limit) = self.limits.iter().find(|l| l.id == *id) else {
                continue;
            };
            let mut limiter = limit.limiter.borrow_mut();
            for &(key, n) in taken {
                limiter.absorb(key, n, now);
            }
        }
    }
}

/// A place under a concurrency limit, given back when the request's context goes.
pub struct Held {
    limit: Rc<LimitState>,
    key: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.limit.limiter.borrow_mut().release(self.key);
    }
}

/// Each plan's quota, and the worker's quota counts (`None` when no plan has a quota).
pub type PlanQuotas = (Vec<Option<(u64, QuotaPeriod)>>, Option<Rc<Quotas>>);

/// A route's rate limits, and those of each plan (for its consumers' requests).
pub struct RateLimitFilter {
    limits: Vec<Rc<LimitState>>,
    plans: Vec<Vec<Rc<LimitState>>>,
    /// Each plan's quota, and the worker's counts (`None` when no plan has one).
    plan_quotas: Vec<Option<(u64, QuotaPeriod)>>,
    quotas: Option<Rc<Quotas>>,
    route: Rc<str>,
    headers: bool,
}

impl RateLimitFilter {
    /// `None` when neither the route nor any plan has a limit.
    pub fn new(
        limits: Vec<Rc<LimitState>>,
        plans: Vec<Vec<Rc<LimitState>>>,
        (plan_quotas, quotas): PlanQuotas,
        route: &str,
    ) -> Option<Self> {
        if limits.is_empty() && plans.iter().all(Vec::is_empty) && quotas.is_none() {
            return None;
        }
        Some(Self {
            headers: limits
                .iter()
                .chain(plans.iter().flatten())
                .any(|l| l.config.headers),
            limits,
            plans,
            plan_quotas,
            quotas,
            route: Rc::from(route),
        })
    }

    /// The limits that apply to a request: the route's, then its consumer's plan's.
    fn applying<'s>(&'s self, ctx: &RequestContext) -> impl Iterator<Item = &'s Rc<LimitState>> {
        let plan = ctx
            .consumer
            .as_ref()
            .and_then(|c| c.plan)
            .and_then(|p| self.plans.get(p));
        self.limits.iter().chain(plan.into_iter().flatten())
    }

    /// The key of `request` under `parts`; `None` when a header it needs is missing.
    fn key(&self, parts: &[KeyPart], request: &Request<'_>, ctx: &RequestContext) -> Option<u64> {
        if let [KeyPart::Ip] = parts {
            return Some(ip_key(ctx.client_ip));
        }
        let mut hasher = key_hasher().build_hasher();
        for part in parts {
            match part {
                KeyPart::Ip => match ctx.client_ip {
                    IpAddr::V4(v4) => hasher.write(&v4.octets()),
                    IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                        Some(v4) => hasher.write(&v4.octets()),
                        // One client is one /64.
                        None => hasher.write(&v6.octets()[..8]),
                    },
                },
                KeyPart::Route => hasher.write(self.route.as_bytes()),
                // An anonymous request is not counted by a limit per consumer or plan.
                KeyPart::Consumer => {
                    let consumer = ctx.consumer.as_ref()?;
                    hasher.write(consumer.name.as_bytes());
                }
                KeyPart::Plan => {
                    let plan = ctx.consumer.as_ref()?.plan?;
                    hasher.write_usize(plan);
                }
                KeyPart::Header(name) => {
                    let value = request.head.field(name)?;
                    hasher.write_usize(value.len());
                    hasher.write(value);
                }
            }
            hasher.write_u8(0xff);
        }
        Some(hasher.finish())
    }

    /// Gives back what the first `taken` limits took for a request refused after them (their
    /// concurrency places go with the context), and notes why it was refused.
    fn give_back(
        &self,
        taken: usize,
        request: &Request<'_>,
        ctx: &mut RequestContext,
        reason: &'static str,
    ) {
        for earlier in self.applying(ctx).take(taken) {
            if matches!(earlier.config.kind, Kind::Concurrent { .. }) {
                continue;
            }
            if let Some(key) = self.key(&earlier.config.key, request, ctx) {
                earlier.limiter.borrow_mut().refund(key);
            }
        }
        let notes = ctx.notes();
        notes.held.clear();
        notes.rejected = Some(reason);
    }

    /// The consumer's plan's quota: `None` when the request fits (and is counted), else the
    /// 429 to answer.
    fn quota(&self, ctx: &RequestContext) -> Option<LocalResponse> {
        let quotas = self.quotas.as_ref()?;
        let consumer = ctx.consumer.as_ref()?;
        let (amount, period) = (*self.plan_quotas.get(consumer.plan?)?)?;
        let unix = crate::auth::unix_now();
        match quotas.check(&consumer.name, amount, period, unix) {
            QuotaDecision::Allow => None,
            QuotaDecision::Refuse { retry_after } => {
                let window = match period {
                    QuotaPeriod::Day => 86_400,
                    QuotaPeriod::Month => 2_592_000,
                };
                Some(refused(
                    &Bytes::from(format!("\"quota\";q={amount};w={window}")),
                    Duration::from_secs(retry_after),
                    Bytes::from(format!("\"quota\";r=0;t={retry_after}")),
                ))
            }
        }
    }
}

/// A 429 with `Retry-After` and the `RateLimit` fields.
fn refused(policy: &Bytes, retry_after: Duration, remaining: Bytes) -> LocalResponse {
    let mut response = LocalResponse::status_page(429);
    response.fields.extend([
        (
            Bytes::from_static(b"Retry-After"),
            Bytes::from(whole_seconds(retry_after).max(1).to_string()),
        ),
        (Bytes::from_static(b"RateLimit-Policy"), policy.clone()),
        (Bytes::from_static(b"RateLimit"), remaining),
    ]);
    response
}

impl Filter for RateLimitFilter {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        // The head's arrival is "now": no clock read of its own.
        let now = ctx.started;
        let mut wait = Duration::ZERO;
        for (i, limit) in self.applying(ctx).enumerate() {
            let Some(key) = self.key(&limit.config.key, request, ctx) else {
                continue;
            };
            let decision = limit.limiter.borrow_mut().check(key, now);
            match decision {
                Decision::Allow { remaining, reset } => {
                    bump(&limit.stats.allowed);
                    if let Kind::Concurrent { .. } = limit.config.kind {
                        ctx.notes().held.push(Held {
                            limit: limit.clone(),
                            key,
                        });
                    }
                    if limit.config.headers {
                        let notes = ctx.notes();
                        let lowest = notes.rate_limit.as_ref().is_none_or(|n| remaining < n.0);
                        if lowest {
                            let value = limit.remaining(remaining, reset);
                            notes.rate_limit = Some((remaining, limit.policy.clone(), value));
                        }
                    }
                }
                Decision::Delay { wait: w } => {
                    bump(&limit.stats.delayed);
                    wait = wait.max(w);
                }
                Decision::Refuse { retry_after, reset } => {
                    bump(&limit.stats.refused);
                    self.give_back(i, request, ctx, "rate");
                    return Flow::Respond(refused(
                        &limit.policy,
                        retry_after,
                        limit.remaining(0, reset.max(retry_after)),
                    ));
                }
            }
        }
        if let Some(response) = self.quota(ctx) {
            self.give_back(usize::MAX, request, ctx, "quota");
            return Flow::Respond(response);
        }
        if wait.is_zero() {
            Flow::Continue
        } else {
            Flow::Wait(wait)
        }
    }

    fn response_filter(&self, response: &mut Response<'_>, ctx: &mut RequestContext) {
        if !self.headers || response.status() == 429 {
            return;
        }
        if let Some((_, policy, value)) = ctx.notes.as_mut().and_then(|n| n.rate_limit.take()) {
            response.overlay.set(b"RateLimit-Policy", &policy);
            response.overlay.set(b"RateLimit", &value);
        }
    }
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get() + 1);
}
