//! The response cache (RFC 9111): a shared cache in each worker's memory, bounded in bytes,
//! evicting the least recently used response first.
//!
//! Freshness, storability, `Vary` matching and the merge of a `304` into a stored response are
//! http-cache-semantics' (`CacheOptions { shared: true }`); this module keeps the entries and
//! says what a request does with them ([`Store::lookup`]). Entries are immutable and shared
//! (`Arc`): a revalidated response replaces its entry, and a request that is being answered from
//! an entry keeps it alive while it is evicted.
//!
//! Why LRU: it needs no tuning, it is exact for the bound it keeps (bytes), and with one store
//! per worker and no lock its bookkeeping is one ordered map update per hit. Frequency-aware
//! policies (`TinyLFU`, S3-FIFO) resist scans better; a scan here costs the scanned worker's
//! store only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};

use crate::config::RouteCache;
use crate::http1::{parse_response, put_decimal, HeadLimits, Method, RequestHead, ResponseHead};

/// Fields of a `304` that do not replace the stored response's: they describe the stored body
/// (RFC 9111 §3.2), or are this message's own.
const NOT_UPDATED: [&str; 5] = [
    "content-length",
    "content-encoding",
    "content-range",
    "content-type",
    "transfer-encoding",
];

/// Variants (by `Vary`) kept per URL at most; the oldest goes first.
const MAX_VARIANTS: usize = 16;

/// A request as the cache policy sees it.
pub struct CacheRequest {
    uri: http::Uri,
    method: http::Method,
    headers: http::HeaderMap,
}

impl http_cache_semantics::RequestLike for CacheRequest {
    fn uri(&self) -> http::Uri {
        self.uri.clone()
    }

    fn is_same_uri(&self, other: &http::Uri) -> bool {
        self.uri == *other
    }

    fn method(&self) -> &http::Method {
        &self.method
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
}

/// A response as the cache policy sees it.
pub struct CacheResponse {
    status: http::StatusCode,
    headers: http::HeaderMap,
}

impl http_cache_semantics::ResponseLike for CacheResponse {
    fn status(&self) -> http::StatusCode {
        self.status
    }

    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
}

/// An HTTP-date in any of its three forms (RFC 9110 §5.6.7: IMF-fixdate, RFC 850, asctime),
/// as seconds since the epoch.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let text = text.trim();
    let parts: Vec<&str> = text.split_whitespace().collect();
    let month = |name: &str| {
        crate::http1::MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(name))
            .map(|i| i as u64 + 1)
    };
    let (day, month, year, time): (u64, u64, u64, &str) = match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [_, day, mon, year, time, "GMT"] => {
            (day.parse().ok()?, month(mon)?, year.parse().ok()?, *time)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [_, date, time, "GMT"] => {
            let mut d = date.split('-');
            let (day, mon, year) = (d.next()?, d.next()?, d.next()?);
            let year: u64 = year.parse().ok()?;
            // Two digits: the century that puts it at most 50 years ahead (RFC 9110).
            let year = if year < 100 {
                if year < 70 {
                    2000 + year
                } else {
                    1900 + year
                }
            } else {
                year
            };
            (day.parse().ok()?, month(mon)?, year, *time)
        }
        // Sun Nov  6 08:49:37 1994
        [_, mon, day, time, year] => (day.parse().ok()?, month(mon)?, year.parse().ok()?, *time),
        _ => return None,
    };
    let mut hms = time.split(':').map(str::parse::<u64>);
    let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    // Days since the epoch of a civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// The fields the cache policy is given: dates in the one form it parses, and
/// `proxy-revalidate` as the `must-revalidate` it means for a shared cache (RFC 9111
/// §5.2.2.8; the policy would otherwise take it as no freshness at all).
fn policy_headers<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            continue;
        };
        let value = match name.as_str() {
            "date" | "expires" | "last-modified" => std::str::from_utf8(value)
                .ok()
                .and_then(parse_http_date)
                .map_or_else(
                    || value.to_vec(),
                    |secs| {
                        crate::http1::http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                            .replace("GMT", "+0000")
                            .into_bytes()
                    },
                ),
            "cache-control" => String::from_utf8_lossy(value)
                .split(',')
                .map(|d| {
                    if d.trim().eq_ignore_ascii_case("proxy-revalidate") {
                        "must-revalidate"
                    } else {
                        d.trim()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
                .into_bytes(),
            _ => value.to_vec(),
        };
        if let Ok(value) = http::HeaderValue::from_bytes(&value) {
            map.append(name, value);
        }
    }
    map
}

fn header_map<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

impl CacheRequest {
    /// `head` with its normalized `path` and `query`; a `HEAD` is looked up as the `GET` it
    /// may be answered from. `None` when the target is not a URI the policy can take.
    pub fn new(head: &RequestHead, path: &[u8], query: &[u8]) -> Option<Self> {
        let mut target = Vec::with_capacity(path.len() + query.len());
        target.extend_from_slice(path);
        target.extend_from_slice(query);
        let uri = http::Uri::try_from(target).ok()?;
        let method = match head.method() {
            Method::Head | Method::Get => http::Method::GET,
            _ => http::Method::from_bytes(head.method_bytes()).ok()?,
        };
        Some(Self {
            uri,
            method,
            headers: header_map(head.fields()),
        })
    }

    /// Whether the only condition of the request is `If-None-Match` (a fresh stored response
    /// answers it).
    pub fn only_none_match(&self) -> bool {
        self.headers.contains_key("if-none-match")
            && !["if-modified-since", "if-match", "if-unmodified-since"]
                .iter()
                .any(|name| self.headers.contains_key(*name))
    }

    /// Whether the client made the request conditional itself (then its answer is the
    /// origin's to give, unless [`Self::only_none_match`] and a fresh response is stored).
    pub fn is_conditional(&self) -> bool {
        [
            "if-none-match",
            "if-modified-since",
            "if-match",
            "if-unmodified-since",
        ]
        .iter()
        .any(|name| self.headers.contains_key(*name))
    }

    /// Whether the client accepts a stale response (it sent no `no-cache`, `max-age` or
    /// `min-fresh`, nor `Pragma: no-cache`).
    pub fn allows_stale(&self) -> bool {
        let directives = self
            .headers
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| {
                d.split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let refuses = directives
            .into_iter()
            .any(|d| matches!(d.as_str(), "no-cache" | "max-age" | "min-fresh"));
        let pragma = self
            .headers
            .get("pragma")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-cache"));
        !refuses && !pragma
    }

    /// `Cache-Control: only-if-cached`.
    pub fn only_if_cached(&self) -> bool {
        self.headers
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
    }
}

/// One stored response.
pub struct Entry {
    /// The origin's head as stored: hop-by-hop fields, `Set-Cookie` and `Age` left out, the
    /// body's `Content-Length`.
    pub head: ResponseHead,
    pub body: Bytes,
    pub policy: CachePolicy,
    /// The request fields its `Vary` names, with their values: which variant it is.
    variant: Vec<u8>,
    size: usize,
    /// When it stops being fresh.
    fresh_until: SystemTime,
    /// Its body compressed, per encoding (gzip, br, zstd), made by the first hit that asked
    /// for it: no compression per hit.
    encoded: [std::sync::OnceLock<Bytes>; 3],
}

impl Entry {
    /// Seconds it has left to be fresh, now; negative once stale (RFC 9211's `ttl`).
    pub fn ttl(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Whether its `stale-while-revalidate` (RFC 5861) still covers now: it may answer at
    /// once while a refresh goes to the origin.
    pub fn may_serve_while_revalidating(&self, now: SystemTime) -> bool {
        self.directive("stale-while-revalidate")
            .is_some_and(|window| self.stale_for(now) <= Duration::from_secs(window))
            && !self.head.fields().any(|(n, v)| {
                n.eq_ignore_ascii_case(b"cache-control")
                    && v.split(|&b| b == b',').any(|d| {
                        let d = d.trim_ascii();
                        d.eq_ignore_ascii_case(b"must-revalidate")
                            || d.eq_ignore_ascii_case(b"proxy-revalidate")
                            || d.eq_ignore_ascii_case(b"no-cache")
                    })
            })
    }

    /// Its body in `encoder`'s encoding: made once (by `encoder`), then the same bytes.
    pub fn encoded(&self, encoder: crate::filters::Encoder) -> Bytes {
        let slot = match encoder.encoding() {
            crate::config::Encoding::Gzip => 0,
            crate::config::Encoding::Brotli => 1,
            crate::config::Encoding::Zstd => 2,
        };
        self.encoded[slot]
            .get_or_init(|| encoder.compress_all(&self.body))
            .clone()
    }

    /// How long it has been stale (zero while fresh).
    pub fn stale_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// The seconds of its `Cache-Control` directive `name` (`stale-if-error=60`).
    pub fn directive(&self, name: &str) -> Option<u64> {
        self.head
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"cache-control"))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .find_map(|d| {
                let d = std::str::from_utf8(d).ok()?.trim();
                let (n, v) = d.split_once('=')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().trim_matches('"').parse().ok())?
            })
    }

    /// Its `Age`, now.
    pub fn age(&self, now: SystemTime) -> u64 {
        self.policy.age(now).as_secs()
    }

    /// The validators to revalidate it with: `If-None-Match` from its `ETag`, else
    /// `If-Modified-Since` from its `Last-Modified`.
    pub fn validators(&self) -> Option<(&'static [u8], &[u8])> {
        if let Some(etag) = self.head.field("etag") {
            return Some((b"If-None-Match", etag));
        }
        self.head
            .field("last-modified")
            .map(|date| (&b"If-Modified-Since"[..], date))
    }
}

/// What a request does with the cache.
pub enum Lookup {
    /// Answer from this entry.
    Fresh(Arc<Entry>),
    /// This entry matches but must be revalidated first.
    Stale(Arc<Entry>),
    /// Nothing stored for it.
    Miss,
}

/// One worker's stored responses.
pub struct Store {
    entries: HashMap<Vec<u8>, Vec<(u64, Arc<Entry>)>>,
    /// Last use → key, oldest first (the tick is unique per entry).
    order: BTreeMap<u64, Vec<u8>>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    pub max_entry: usize,
    pub stats: CacheStats,
    /// What this worker stored and invalidated since its last tick, for the others.
    out: CacheShare,
    /// The on-disk tier, shared by every worker.
    pub disk: Option<Arc<crate::cache_disk::Disk>>,
}

/// Entries one worker stored, and keys it invalidated, posted to every other worker on the
/// message path's tick: a response fetched by one worker serves all of them, and an unsafe
/// method's invalidation reaches all of them.
#[derive(Default)]
pub struct CacheShare {
    pub stored: Vec<Stored>,
    pub invalidated: Vec<Vec<u8>>,
}

/// What a worker's cache counted.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub revalidated: u64,
    pub stores: u64,
    pub evictions: u64,
    pub invalidations: u64,
    pub bypasses: u64,
    /// Requests that waited for another one's fetch of their URL.
    pub coalesced: u64,
}

impl Store {
    pub fn new(max_bytes: u64, max_entry: u64) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            max_entry: usize::try_from(max_entry).unwrap_or(usize::MAX),
            stats: CacheStats::default(),
            out: CacheShare::default(),
            disk: None,
        }
    }

    /// What to post to the other workers, taken; `None` when nothing happened.
    pub fn take_share(&mut self) -> Option<CacheShare> {
        if self.out.stored.is_empty() && self.out.invalidated.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.out))
    }

    /// Takes in what another worker stored and invalidated (not posted on again).
    pub fn absorb(&mut self, share: &CacheShare) {
        for key in &share.invalidated {
            self.remove(key);
        }
        for (key, entry) in &share.stored {
            self.put(key.clone(), entry.clone());
        }
    }

    /// Takes a new configuration's bounds (a reload), evicting what no longer fits.
    pub fn resize(&mut self, max_bytes: u64, max_entry: u64) {
        self.max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        self.max_entry = usize::try_from(max_entry).unwrap_or(usize::MAX);
        self.evict_to(self.max_bytes);
    }

    /// Whether anything is stored under `key`.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.entries.contains_key(key)
    }

    /// Bytes held, and entries.
    pub fn usage(&self) -> (u64, u64) {
        (self.bytes as u64, self.order.len() as u64)
    }

    /// The entry for `request` under `key`, and whether it is fresh.
    pub fn lookup(&mut self, key: &[u8], request: &CacheRequest, now: SystemTime) -> Lookup {
        let Some(variants) = self.entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let mut found = None;
        for (tick, entry) in variants.iter_mut().rev() {
            match entry.policy.before_request(request, now) {
                BeforeRequest::Fresh(_) => {
                    found = Some((tick, entry.clone(), true));
                    break;
                }
                BeforeRequest::Stale { matches: true, .. } if found.is_none() => {
                    found = Some((tick, entry.clone(), false));
                }
                BeforeRequest::Stale { .. } => {}
            }
        }
        let Some((tick, entry, fresh)) = found else {
            return Lookup::Miss;
        };
        // Used: to the young end.
        self.tick += 1;
        let old = std::mem::replace(tick, self.tick);
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(self.tick, k);
        }
        if fresh {
            Lookup::Fresh(entry)
        } else {
            Lookup::Stale(entry)
        }
    }

    /// Stores `entry` under `key`, replacing the same variant; evicts the least recently used
    /// entries until it fits. Too large an entry is not stored.
    pub fn insert(&mut self, key: Vec<u8>, entry: Arc<Entry>) {
        if self.put(key.clone(), entry.clone()) {
            self.stats.stores += 1;
            if let Some(disk) = &self.disk {
                disk.store(&key, &entry);
            }
            self.out.stored.push((key, entry));
        }
    }

    /// [`Self::insert`] without telling the other workers; whether it was stored.
    fn put(&mut self, key: Vec<u8>, entry: Arc<Entry>) -> bool {
        if entry.size > self.max_entry || entry.size > self.max_bytes {
            return false;
        }
        self.evict_to(self.max_bytes - entry.size);
        self.tick += 1;
        let variants = self.entries.entry(key.clone()).or_default();
        if let Some(at) = variants
            .iter()
            .position(|(_, e)| e.variant == entry.variant)
        {
            let (tick, old) = variants.remove(at);
            self.order.remove(&tick);
            self.bytes -= old.size;
        } else if variants.len() >= MAX_VARIANTS {
            let (tick, old) = variants.remove(0);
            self.order.remove(&tick);
            self.bytes -= old.size;
        }
        self.bytes += entry.size;
        variants.push((self.tick, entry));
        self.order.insert(self.tick, key);
        true
    }

    /// Forgets every variant stored under `key` because an unsafe method succeeded on it;
    /// the other workers are told on the next tick.
    pub fn invalidate(&mut self, key: &[u8]) -> bool {
        self.out.invalidated.push(key.to_vec());
        if let Some(disk) = &self.disk {
            disk.remove(key);
        }
        self.remove(key)
    }

    /// Like [`Self::purge`], and the disk tier too (the worker that took the purge).
    pub fn purge_everywhere(&mut self, key: &[u8], prefix: bool) -> usize {
        if let Some(disk) = &self.disk {
            disk.purge(key, prefix);
        }
        self.purge(key, prefix)
    }

    /// Stores what was read from the disk tier (not written back, not shared: every worker
    /// reads the same files).
    pub fn put_loaded(&mut self, key: Vec<u8>, entry: Arc<Entry>) {
        self.put(key, entry);
    }

    /// Forgets every variant stored under `key`.
    fn remove(&mut self, key: &[u8]) -> bool {
        let Some(variants) = self.entries.remove(key) else {
            return false;
        };
        for (tick, entry) in variants {
            self.order.remove(&tick);
            self.bytes -= entry.size;
        }
        self.stats.invalidations += 1;
        true
    }

    /// Forgets the URL `key` (with any `key_headers` after it), or with `prefix` every URL
    /// that starts with it; how many keys went.
    pub fn purge(&mut self, key: &[u8], prefix: bool) -> usize {
        let keys: Vec<Vec<u8>> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(key) && (prefix || k.len() == key.len() || k[key.len()] == 0))
            .cloned()
            .collect();
        keys.iter().filter(|k| self.remove(k)).count()
    }

    fn evict_to(&mut self, limit: usize) {
        while self.bytes > limit {
            let Some((tick, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(variants) = self.entries.get_mut(&key) {
                if let Some(at) = variants.iter().position(|(t, _)| *t == tick) {
                    let (_, entry) = variants.remove(at);
                    self.bytes -= entry.size;
                    self.stats.evictions += 1;
                }
                if variants.is_empty() {
                    self.entries.remove(&key);
                }
            }
        }
    }
}

/// The key of a request on a route: host (lowercase, without port), path and query, and the
/// values of the route's `key_headers`. Purges name URLs the same way (`host` + path).
pub fn key(head: &RequestHead, path: &[u8], query: &[u8], route: &RouteCache) -> Vec<u8> {
    let host = head
        .host()
        .map(crate::config::strip_port)
        .unwrap_or_default();
    let mut key = Vec::with_capacity(host.len() + path.len() + query.len() + 8);
    key.extend(host.iter().map(u8::to_ascii_lowercase));
    key.extend_from_slice(path);
    key.extend_from_slice(query);
    for name in &route.key_headers {
        key.push(0);
        key.extend_from_slice(name.as_bytes());
        key.push(b':');
        if let Some(value) = head.field(name) {
            key.extend_from_slice(value);
        }
    }
    key
}

/// The key of a URL given to a purge or named by `Location`: `host/path?query`.
pub fn url_key(host: &[u8], target: &[u8]) -> Vec<u8> {
    let mut key: Vec<u8> = crate::config::strip_port(host)
        .iter()
        .map(u8::to_ascii_lowercase)
        .collect();
    key.extend_from_slice(target);
    key
}

/// The key of a URL given to a purge, `http://host[:port]/path?query` (or `https://`).
pub fn purge_key(url: &str) -> Option<Vec<u8>> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let at = rest.find('/').unwrap_or(rest.len());
    let (host, target) = rest.split_at(at);
    if host.is_empty() {
        return None;
    }
    let target = if target.is_empty() { "/" } else { target };
    Some(url_key(host.as_bytes(), target.as_bytes()))
}

/// Whether the route's bypass conditions hold for this request (a cookie or a field).
pub fn bypassed(head: &RequestHead, route: &RouteCache) -> bool {
    if route.bypass_headers.iter().any(|h| head.field(h).is_some()) {
        return true;
    }
    if route.bypass_cookies.is_empty() {
        return false;
    }
    head.fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .filter_map(|pair| pair.trim_ascii().split(|&b| b == b'=').next())
        .any(|name| route.bypass_cookies.iter().any(|c| c.as_bytes() == name))
}

/// The policy for `response` to `request`, with the route's default freshness for a response
/// that gives none; `None` when it may not be stored (RFC 9111 §3, the route's statuses), or
/// when storing would be useless (no freshness and nothing to revalidate with).
pub fn storable(
    request: &CacheRequest,
    response: &ResponseHead,
    route: &RouteCache,
    now: SystemTime,
) -> Option<CachePolicy> {
    let status = response.status();
    if let Some(statuses) = &route.statuses {
        if !statuses.contains(&status) {
            return None;
        }
    }
    let mut headers = policy_headers(response.fields());
    if let Some(ttl) = route.default_ttl {
        let explicit = headers.contains_key("expires")
            || headers
                .get_all("cache-control")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|d| {
                    let name = d.split('=').next().unwrap_or_default().trim();
                    name.eq_ignore_ascii_case("max-age") || name.eq_ignore_ascii_case("s-maxage")
                });
        if !explicit && !headers.contains_key("last-modified") {
            if let Ok(value) = http::HeaderValue::from_str(&format!("max-age={}", ttl.as_secs())) {
                headers.append("cache-control", value);
            }
        }
    }
    let response = CacheResponse {
        status: http::StatusCode::from_u16(status).ok()?,
        headers,
    };
    let options = CacheOptions {
        shared: true,
        ..CacheOptions::default()
    };
    let policy = CachePolicy::new_options(request, &response, now, options);
    let useful = policy.time_to_live(now) > Duration::ZERO
        || response.headers.contains_key("etag")
        || response.headers.contains_key("last-modified");
    (policy.is_storable() && useful).then_some(policy)
}

/// The fields never stored: `Set-Cookie` (another client's), `Age` (worked out when served),
/// and what the codec does not forward anyway.
fn stored_field(name: &[u8]) -> bool {
    !(name.eq_ignore_ascii_case(b"set-cookie")
        || name.eq_ignore_ascii_case(b"set-cookie2")
        || name.eq_ignore_ascii_case(b"age"))
}

/// A stored head: `status`, `fields` (filtered by [`stored_field`]) and the body's length.
fn stored_head<'a>(
    status: u16,
    reason: &[u8],
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    body_len: usize,
    limits: &HeadLimits,
) -> Option<ResponseHead> {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(&mut out, u64::from(status));
    out.put_u8(b' ');
    out.put_slice(reason);
    out.put_slice(b"\r\n");
    for (name, value) in fields.filter(|(n, _)| stored_field(n)) {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    // A 304 says nothing of a length (its body is another message's).
    if status != 304 {
        out.put_slice(b"Content-Length: ");
        put_decimal(&mut out, body_len as u64);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    parse_response(&mut out, limits, Method::Get).ok().flatten()
}

/// Whether the request's `If-None-Match` names the stored response's `ETag` (the weak
/// comparison, RFC 9110 §13.1.2), or is `*`.
fn none_match(entry: &Entry, request: &RequestHead) -> bool {
    let Some(etag) = entry.head.field("etag") else {
        return request
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"if-none-match"))
            .any(|(_, v)| v.trim_ascii() == b"*");
    };
    let opaque = |tag: &[u8]| -> Vec<u8> {
        tag.trim_ascii()
            .strip_prefix(b"W/")
            .unwrap_or(tag.trim_ascii())
            .to_vec()
    };
    let stored = opaque(etag);
    request
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"if-none-match"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|tag| tag.trim_ascii() == b"*" || opaque(tag) == stored)
}

/// A fresh stored response's `304` to a request whose `If-None-Match` matches it (a cache
/// answers the conditions itself, RFC 9111 §4.3.2).
pub fn not_modified(
    entry: &Entry,
    request: &RequestHead,
    limits: &HeadLimits,
) -> Option<ResponseHead> {
    if !matches!(request.method(), Method::Get | Method::Head) || !none_match(entry, request) {
        return None;
    }
    // The fields a 304 sends (RFC 9110 §15.4.5): those that would have gone with a 200,
    // but for the ones that describe its body.
    let fields = entry.head.forwardable_fields().filter(|(n, _)| {
        !n.eq_ignore_ascii_case(b"content-type") && !n.eq_ignore_ascii_case(b"content-encoding")
    });
    stored_head(304, b"Not Modified", fields, 0, limits)
}

/// The entry for a response whose whole body is `body`.
pub fn entry(
    request: &CacheRequest,
    response: &ResponseHead,
    policy: CachePolicy,
    body: Bytes,
    limits: &HeadLimits,
) -> Option<Arc<Entry>> {
    let head = stored_head(
        response.status(),
        response.reason(),
        response.forwardable_fields(),
        body.len(),
        limits,
    )?;
    let variant = variant_of(request, &head);
    let size = entry_size(request, &head, body.len(), &variant);
    let fresh_until = SystemTime::now() + policy.time_to_live(SystemTime::now());
    Some(Arc::new(Entry {
        head,
        body,
        policy,
        variant,
        size,
        fresh_until,
        encoded: Default::default(),
    }))
}

/// What an entry holds, as counted against `memory`: its head and body, and the policy's copies
/// of the request's and the response's fields (about 64 bytes of map per field beside the
/// bytes), and the entry itself.
fn entry_size(request: &CacheRequest, head: &ResponseHead, body: usize, variant: &[u8]) -> usize {
    let fields: usize = request
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 64)
        .sum();
    let response_fields: usize = head.fields().map(|(n, v)| n.len() + v.len() + 64).sum();
    head.head_len() + body + variant.len() + fields + response_fields + 512
}

/// The request fields `head`'s `Vary` names, with their values.
fn variant_of(request: &CacheRequest, head: &ResponseHead) -> Vec<u8> {
    let mut variant = Vec::new();
    for (_, value) in head
        .fields()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"vary"))
    {
        for name in value.split(|&b| b == b',') {
            let name = name.trim_ascii();
            variant.extend(name.iter().map(u8::to_ascii_lowercase));
            variant.push(b':');
            if let Ok(name) = http::HeaderName::from_bytes(name) {
                for v in request.headers.get_all(name) {
                    variant.extend_from_slice(v.as_bytes());
                    variant.push(b',');
                }
            }
            variant.push(0);
        }
    }
    variant
}

/// A `Range` request answered from a stored full response (RFC 9110 §14): the `206` (or
/// `416`) head and its body; `None` for a full answer (no `Range`, several ranges, another
/// unit, an `If-Range` that does not match, a stored status other than 200).
pub fn ranged(
    entry: &Entry,
    request: &RequestHead,
    limits: &HeadLimits,
) -> Option<(ResponseHead, Bytes)> {
    if request.method() != Method::Get || entry.head.status() != 200 {
        return None;
    }
    let range = request.field("range")?;
    if let Some(condition) = request.field("if-range") {
        let matches = if condition.starts_with(b"\"") {
            // A strong comparison: the stored ETag must be the same, and strong.
            entry.head.field("etag") == Some(condition)
        } else {
            entry.head.field("last-modified") == Some(condition)
        };
        if !matches {
            return None;
        }
    }
    let spec = std::str::from_utf8(range).ok()?.trim();
    let spec = spec.strip_prefix("bytes=").or_else(|| {
        spec.get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
            .map(|_| &spec[6..])
    })?;
    if spec.contains(',') {
        return None;
    }
    let len = entry.body.len() as u64;
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let span = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        (suffix > 0 && len > 0).then(|| (len.saturating_sub(suffix), len - 1))
    } else {
        let first: u64 = first.parse().ok()?;
        let last = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            let last: u64 = last.parse().ok()?;
            if last < first {
                return None;
            }
            last.min(len.saturating_sub(1))
        };
        (first < len).then_some((first, last))
    };
    let fields: Vec<(&[u8], &[u8])> = entry
        .head
        .forwardable_fields()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(b"content-range"))
        .collect();
    if let Some((first, last)) = span {
        let content_range = format!("bytes {first}-{last}/{len}");
        let fields = fields
            .into_iter()
            .chain([(&b"Content-Range"[..], content_range.as_bytes())]);
        let body = entry.body.slice(first as usize..=last as usize);
        let head = stored_head(206, b"Partial Content", fields, body.len(), limits)?;
        return Some((head, body));
    }
    let content_range = format!("bytes */{len}");
    let fields = fields
        .into_iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case(b"content-type") && !n.eq_ignore_ascii_case(b"etag")
        })
        .chain([(&b"Content-Range"[..], content_range.as_bytes())]);
    let head = stored_head(416, b"Range Not Satisfiable", fields, 0, limits)?;
    Some((head, Bytes::new()))
}

/// The stored entry updated by a `304` from the origin; `None` when the `304` does not
/// select it (another validator): then the stored response is not used.
pub fn revalidated(
    stored: &Entry,
    request: &CacheRequest,
    response: &ResponseHead,
    limits: &HeadLimits,
    now: SystemTime,
) -> Option<Arc<Entry>> {
    let not_modified = CacheResponse {
        status: http::StatusCode::NOT_MODIFIED,
        headers: policy_headers(response.fields()),
    };
    let AfterResponse::NotModified(policy, _) =
        stored.policy.after_response(request, &not_modified, now)
    else {
        return None;
    };
    // The 304's fields replace the stored ones of the same name (RFC 9111 §3.2), but for
    // those that describe the stored body; the stored ones keep their order and spelling.
    let updates = |name: &[u8]| {
        !NOT_UPDATED
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    };
    let replaced = |name: &[u8]| {
        updates(name)
            && response
                .forwardable_fields()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let fields: Vec<(&[u8], &[u8])> = stored
        .head
        .forwardable_fields()
        .filter(|(n, _)| !replaced(n))
        .chain(response.forwardable_fields().filter(|(n, _)| updates(n)))
        .collect();
    let head = stored_head(
        stored.head.status(),
        stored.head.reason(),
        fields.into_iter(),
        stored.body.len(),
        limits,
    )?;
    let variant = variant_of(request, &head);
    let size = entry_size(request, &head, stored.body.len(), &variant);
    let fresh_until = now + policy.time_to_live(now);
    Some(Arc::new(Entry {
        head,
        body: stored.body.clone(),
        policy,
        variant,
        size,
        fresh_until,
        encoded: Default::default(),
    }))
}

/// A key and the entry to store under it.
pub type Stored = (Vec<u8>, Arc<Entry>);

/// The body of a response being stored, gathered as it goes to the client.
pub struct Fill {
    pub key: Vec<u8>,
    pub request: CacheRequest,
    pub policy: CachePolicy,
    pub head: ResponseHead,
    body: BytesMut,
    limit: usize,
    /// Went past the limit: not stored.
    pub overflow: bool,
    /// Released once the entry is stored (or not).
    leader: Option<Leader>,
}

impl Fill {
    pub fn new(
        key: Vec<u8>,
        request: CacheRequest,
        policy: CachePolicy,
        head: ResponseHead,
        limit: usize,
        leader: Option<Leader>,
    ) -> Self {
        Self {
            key,
            request,
            policy,
            head,
            body: BytesMut::new(),
            limit,
            overflow: false,
            leader,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.overflow {
            return;
        }
        if self.body.len() + data.len() > self.limit {
            self.overflow = true;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    /// The entry, once the body is complete, and the claim on its URL (to let go of once the
    /// entry is stored).
    pub fn finish(self, limits: &HeadLimits) -> (Option<Stored>, Option<Leader>) {
        if self.overflow {
            return (None, self.leader);
        }
        let body = self.body.freeze();
        let stored = entry(&self.request, &self.head, self.policy, body, limits)
            .map(|entry| (self.key, entry));
        (stored, self.leader)
    }
}

/// How long a request waits for another one fetching the same URL (request coalescing) before
/// it goes to the origin itself (nginx's `proxy_cache_lock_timeout`).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Fired when a fetch that others wait for is over, stored or not.
#[derive(Default)]
pub struct Event {
    done: std::cell::Cell<bool>,
    wakers: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Event {
    fn fire(&self) {
        self.done.set(true);
        for waker in self.wakers.take() {
            waker.wake();
        }
    }

    /// Ready once fired.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.done.get() {
                std::task::Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
    }
}

/// The URLs being fetched on this worker that other requests wait for.
pub type Pending = std::rc::Rc<std::cell::RefCell<HashMap<Vec<u8>, std::rc::Rc<Event>>>>;

/// Held by the request that fetches a URL others wait for: when it goes (the response stored,
/// found not storable, or failed), the URL is no longer pending and the waiters look again.
pub struct Leader {
    pending: Pending,
    key: Vec<u8>,
    event: std::rc::Rc<Event>,
    /// It holds the URL's slot in the process-wide table.
    global: bool,
    stored: bool,
}

/// What claiming a URL found.
pub enum Claim {
    /// This request fetches it.
    Leader(Leader),
    /// Another request on this worker does: wait for its event.
    Local(std::rc::Rc<Event>),
    /// A request on another worker does: poll this worker's store (its entry comes with the
    /// next share) while [`remote_fetch`] says it goes on.
    Remote,
}

/// Slots of the URLs being fetched in the whole process, by key hash (a collision only costs
/// a second fetch): `hash | 1` while a fetch runs, `hash & !1` once it stored its response,
/// 0 when free. The one state the workers share on a miss (one compare-and-swap per miss),
/// so that a burst for a new URL reaches the origin once, not once per worker.
static FETCHES: std::sync::OnceLock<Box<[std::sync::atomic::AtomicU64]>> =
    std::sync::OnceLock::new();
const FETCH_SLOTS: usize = 4096;

fn fetch_slot(key: &[u8]) -> (&'static std::sync::atomic::AtomicU64, u64) {
    use std::hash::{Hash, Hasher};
    let slots = FETCHES.get_or_init(|| {
        (0..FETCH_SLOTS)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect()
    });
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let hash = hasher.finish() | 2;
    (&slots[(hash as usize >> 2) % FETCH_SLOTS], hash)
}

/// What another worker's fetch of `key` is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteFetch {
    Running,
    /// It stored the response: it reaches this worker with the next share.
    Stored,
    /// Over without storing anything (or the slot went to another URL).
    Over,
}

pub fn remote_fetch(key: &[u8]) -> RemoteFetch {
    use std::sync::atomic::Ordering;
    let (slot, hash) = fetch_slot(key);
    match slot.load(Ordering::Acquire) {
        v if v == hash | 1 => RemoteFetch::Running,
        v if v == hash & !1 => RemoteFetch::Stored,
        _ => RemoteFetch::Over,
    }
}

/// Makes this request the one fetching `key`, unless another request on this worker or
/// another one already is.
pub fn claim(pending: &Pending, key: &[u8]) -> Claim {
    use std::sync::atomic::Ordering;
    let mut map = pending.borrow_mut();
    if let Some(event) = map.get(key) {
        return Claim::Local(event.clone());
    }
    let (slot, hash) = fetch_slot(key);
    let mut global = false;
    let mut seen = slot.load(Ordering::Acquire);
    loop {
        if seen == hash | 1 {
            return Claim::Remote;
        }
        if seen & 1 == 1 {
            // Another URL's fetch holds the slot: fetch without telling the other workers.
            break;
        }
        match slot.compare_exchange(seen, hash | 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                global = true;
                break;
            }
            Err(now) => seen = now,
        }
    }
    let event = std::rc::Rc::new(Event::default());
    map.insert(key.to_vec(), event.clone());
    Claim::Leader(Leader {
        pending: pending.clone(),
        key: key.to_vec(),
        event,
        global,
        stored: false,
    })
}

impl Leader {
    /// The response was stored: waiters on other workers wait for the share.
    pub fn stored(&mut self) {
        self.stored = true;
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.pending.borrow_mut().remove(&self.key);
        self.event.fire();
        if self.global {
            use std::sync::atomic::Ordering;
            let (slot, hash) = fetch_slot(&self.key);
            let done = if self.stored { hash & !1 } else { 0 };
            let _ = slot.compare_exchange(hash | 1, done, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// What a request noted about the cache on its way through the phases.
pub struct CacheNote {
    pub key: Vec<u8>,
    pub route_cache: Option<Arc<RouteCache>>,
    pub request: CacheRequest,
    /// The stored entry that matched but is stale.
    pub stale: Option<Arc<Entry>>,
    /// Its validators were sent: a `304` confirms it.
    pub revalidating: bool,
    /// The `Cache-Status` of the response (RFC 9211), without `stored`.
    pub status: &'static str,
    /// Other requests for the URL wait for this one.
    pub leader: Option<Leader>,
}

impl CacheNote {
    /// The stale entry, when its `stale-if-error` (RFC 5861) still covers now.
    pub fn stale_if_error(&self) -> Option<Arc<Entry>> {
        let entry = self.stale.as_ref()?;
        let window = entry.directive("stale-if-error")?;
        (entry.stale_for(SystemTime::now()) <= Duration::from_secs(window)).then(|| entry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request;

    fn request_head(text: &str) -> RequestHead {
        parse_request(&mut BytesMut::from(text.as_bytes()), &HeadLimits::default())
            .unwrap()
            .unwrap()
    }

    fn response_head(text: &str) -> ResponseHead {
        parse_response(
            &mut BytesMut::from(text.as_bytes()),
            &HeadLimits::default(),
            Method::Get,
        )
        .unwrap()
        .unwrap()
    }

    fn route() -> RouteCache {
        RouteCache::default()
    }

    fn limits() -> HeadLimits {
        HeadLimits::default()
    }

    fn cached(store: &mut Store, target: &str, response: &str, body: &'static [u8]) {
        let head = request_head(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"));
        let request = CacheRequest::new(&head, target.as_bytes(), b"").unwrap();
        let response = response_head(response);
        let now = SystemTime::now();
        let policy = storable(&request, &response, &route(), now).expect("storable");
        let entry = entry(
            &request,
            &response,
            policy,
            Bytes::from_static(body),
            &limits(),
        )
        .unwrap();
        store.insert(key(&head, target.as_bytes(), b"", &route()), entry);
    }

    fn look(store: &mut Store, target: &str) -> &'static str {
        let head = request_head(&format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n"));
        let request = CacheRequest::new(&head, target.as_bytes(), b"").unwrap();
        match store.lookup(
            &key(&head, target.as_bytes(), b"", &route()),
            &request,
            SystemTime::now(),
        ) {
            Lookup::Fresh(_) => "fresh",
            Lookup::Stale(_) => "stale",
            Lookup::Miss => "miss",
        }
    }

    #[test]
    fn fresh_stale_and_miss() {
        let mut store = Store::new(1 << 20, 1 << 20);
        cached(
            &mut store,
            "/a",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n",
            b"a",
        );
        cached(
            &mut store,
            "/b",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: \"b\"\r\n\r\n",
            b"b",
        );
        assert_eq!(look(&mut store, "/a"), "fresh");
        assert_eq!(look(&mut store, "/b"), "stale");
        assert_eq!(look(&mut store, "/c"), "miss");
        assert!(store.invalidate(b"a/a"));
        assert_eq!(look(&mut store, "/a"), "miss");
    }

    #[test]
    fn the_least_recently_used_goes_first_and_the_bytes_stay_bounded() {
        let body: &'static [u8] = &[b'x'; 1000];
        // Room for three and a half entries of this size.
        let mut store = Store::new(1 << 20, 1 << 20);
        cached(
            &mut store,
            "/1",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n",
            body,
        );
        let one = store.usage().0;
        assert!(one > 1000, "{one}");
        let room = one * 7 / 2;
        store.resize(room, room);
        for target in ["/2", "/3"] {
            cached(
                &mut store,
                target,
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n",
                body,
            );
        }
        assert_eq!(look(&mut store, "/1"), "fresh");
        cached(
            &mut store,
            "/4",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n",
            body,
        );
        assert_eq!(
            look(&mut store, "/2"),
            "miss",
            "the least recently used went"
        );
        assert_eq!(look(&mut store, "/1"), "fresh");
        assert!(store.usage().0 <= room);
        assert_eq!(store.stats.evictions, 1);
        // Larger than an entry may be: not stored.
        store.resize(room, 100);
        cached(
            &mut store,
            "/5",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n",
            body,
        );
        assert_eq!(look(&mut store, "/5"), "miss");
    }

    #[test]
    fn expires_and_date_in_every_http_date_form_and_proxy_revalidate() {
        let request = request_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let request = CacheRequest::new(&request, b"/", b"").unwrap();
        let now = SystemTime::now();
        let date = crate::http1::http_date(now);
        let later = crate::http1::http_date(now + Duration::from_secs(100));
        let response = response_head(&format!(
            "HTTP/1.1 200 OK\r\nDate: {date}\r\nExpires: {later}\r\n\r\n"
        ));
        let policy = storable(&request, &response, &route(), now).unwrap();
        let ttl = policy.time_to_live(now).as_secs();
        assert!((98..=100).contains(&ttl), "{ttl}");
        // Heuristic freshness: a tenth of the time since Last-Modified.
        let modified = crate::http1::http_date(now - Duration::from_secs(1000));
        let response = response_head(&format!(
            "HTTP/1.1 200 OK\r\nDate: {date}\r\nLast-Modified: {modified}\r\n\r\n"
        ));
        let policy = storable(&request, &response, &route(), now).unwrap();
        let ttl = policy.time_to_live(now).as_secs();
        assert!((98..=100).contains(&ttl), "{ttl}");
        // proxy-revalidate is must-revalidate for a shared cache, not "stale at once".
        let response =
            response_head("HTTP/1.1 200 OK\r\nCache-Control: max-age=60, proxy-revalidate\r\n\r\n");
        let policy = storable(&request, &response, &route(), now).unwrap();
        assert_eq!(policy.time_to_live(now).as_secs(), 60);
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let t = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date("0"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        let now = SystemTime::now();
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(parse_http_date(&crate::http1::http_date(now)), Some(secs));
    }

    #[test]
    fn set_cookie_and_age_are_not_stored() {
        let request = request_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let request = CacheRequest::new(&request, b"/", b"").unwrap();
        let response = response_head(
            "HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\nSet-Cookie: s=1\r\nAge: 5\r\nX-A: b\r\nContent-Length: 2\r\n\r\n",
        );
        let policy = storable(&request, &response, &route(), SystemTime::now()).unwrap();
        let entry = entry(
            &request,
            &response,
            policy,
            Bytes::from_static(b"hi"),
            &limits(),
        )
        .unwrap();
        assert_eq!(entry.head.field("set-cookie"), None);
        assert_eq!(entry.head.field("age"), None);
        assert_eq!(entry.head.field("x-a"), Some(&b"b"[..]));
        assert_eq!(entry.head.field("content-length"), Some(&b"2"[..]));
    }

    #[test]
    fn private_no_store_and_useless_responses_are_not_storable() {
        let request = request_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let request = CacheRequest::new(&request, b"/", b"").unwrap();
        let now = SystemTime::now();
        for response in [
            "HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\n\r\n",
            "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 500 Oops\r\nCache-Control: max-age=60\r\n\r\n",
        ] {
            assert!(
                storable(&request, &response_head(response), &route(), now).is_none(),
                "{response}"
            );
        }
        // A default TTL makes a response that says nothing storable.
        let ttl = RouteCache {
            default_ttl: Some(Duration::from_secs(30)),
            ..RouteCache::default()
        };
        let policy = storable(
            &request,
            &response_head("HTTP/1.1 200 OK\r\n\r\n"),
            &ttl,
            now,
        )
        .unwrap();
        assert_eq!(policy.time_to_live(now).as_secs(), 30);
        // s-maxage wins over max-age in a shared cache.
        let policy = storable(
            &request,
            &response_head("HTTP/1.1 200 OK\r\nCache-Control: max-age=10, s-maxage=100\r\n\r\n"),
            &route(),
            now,
        )
        .unwrap();
        assert_eq!(policy.time_to_live(now).as_secs(), 100);
    }
}
