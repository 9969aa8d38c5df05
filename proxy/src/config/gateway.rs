//! The gateway's settings: `[[rate_limit]]`s, and which routes they apply to (`[http]
//! rate_limits` for every route, then a route's own `rate_limits`).

use std::collections::HashMap;
use std::time::Duration;

use ringwall_policies::ratelimit::Kind;
use serde::{Deserialize, Serialize};

use super::error::{path, FieldPath, Problem};
use super::file::FileConfig;
use super::policy::is_token;
use super::Route;

type Checked<T> = Result<T, Problem>;

/// Most keys a limit's default map holds per worker.
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

/// `[[rate_limit]]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    /// What routes name it by; also the policy's name in the `RateLimit` fields.
    pub name: String,
    /// `N/s`, `N/m` or `N/h`. Default: none (then `concurrent` must be given).
    #[serde(default)]
    pub rate: Option<String>,
    /// Requests a key may make at once beyond the rate (a token bucket's size). Default: the
    /// rate's `N`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests past the burst that wait for their turn instead of being refused (nginx's
    /// `limit_req … delay`). Default: `0`.
    #[serde(default)]
    pub delay: u32,
    /// `token-bucket` or `sliding-window`. Default: `token-bucket`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// Most requests of a key in flight at once, instead of a rate. Default: none.
    #[serde(default)]
    pub concurrent: Option<u32>,
    /// What a request is counted by: `ip` (IPv6 by /64), `route`, `header:NAME`, or a list of
    /// them (counted by the combination). Default: `ip`.
    #[serde(default = "default_key")]
    pub key: KeyFile,
    /// Each worker enforces the limit alone (the process then allows it once per worker), with
    /// no exchange between workers. Default: `false`.
    #[serde(default)]
    pub per_worker: bool,
    /// Most keys held per worker (memory: about 80 bytes each). Default: `100000`.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Send `RateLimit` and `RateLimit-Policy` on every response, not only on 429s.
    /// Default: `false`.
    #[serde(default)]
    pub headers: bool,
}

fn default_algorithm() -> String {
    "token-bucket".to_owned()
}

fn default_key() -> KeyFile {
    KeyFile::One("ip".to_owned())
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

/// `key = "ip"` or `key = ["ip", "route"]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum KeyFile {
    One(String),
    Many(Vec<String>),
}

impl KeyFile {
    fn parts(&self) -> &[String] {
        match self {
            KeyFile::One(one) => std::slice::from_ref(one),
            KeyFile::Many(many) => many,
        }
    }
}

impl RateLimitFile {
    /// The limit `--rate-limit` makes.
    pub(crate) fn from_flags(rate: String) -> Self {
        RateLimitFile {
            name: FLAG_LIMIT.to_owned(),
            rate: Some(rate),
            burst: None,
            delay: 0,
            algorithm: default_algorithm(),
            concurrent: None,
            key: default_key(),
            per_worker: false,
            max_keys: DEFAULT_MAX_KEYS,
            headers: false,
        }
    }
}

/// The name of the limit `--rate-limit` adds (or replaces) and applies to every route.
pub(crate) const FLAG_LIMIT: &str = "default";

/// One part of what a request is counted by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The client address (after `trusted_proxies`); IPv6 by its /64.
    Ip,
    /// The route's name.
    Route,
    /// A request field's value (lowercase name); a request without it is not counted.
    Header(String),
    /// The authenticated consumer; an anonymous request is not counted.
    Consumer,
    /// The consumer's plan; a request without one is not counted.
    Plan,
}

/// A `[[rate_limit]]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub name: String,
    pub kind: Kind,
    pub key: Vec<KeyPart>,
    /// Whether the workers exchange what they admitted (one limit for the process).
    pub shared: bool,
    pub max_keys: usize,
    /// `RateLimit` fields on every response.
    pub headers: bool,
}

impl RateLimit {
    /// The quota and window of the `RateLimit-Policy` field (`q`, `w` in seconds).
    pub fn quota(&self) -> (u64, u64) {
        match self.kind {
            Kind::Bucket { amount, per, .. } | Kind::Window { amount, per } => {
                (u64::from(amount), per.as_secs().max(1))
            }
            Kind::Concurrent { max } => (u64::from(max), 1),
        }
    }
}

/// `N/s`, `N/m`, `N/h` (also `Nr/s`, nginx's spelling).
pub(crate) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let form = "a rate is N/s, N/m or N/h, such as 100/s";
    let (n, unit) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: {form}"))?;
    let n = n.trim().trim_end_matches('r');
    let amount: u32 = n
        .parse()
        .map_err(|_| format!("{text:?}: {form} (N a whole number)"))?;
    if amount == 0 {
        return Err(format!("{text:?}: the rate must be at least 1"));
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(format!("{text:?}: {form}")),
    };
    Ok((amount, per))
}

fn check_key(key: &KeyFile, here: &FieldPath) -> Checked<Vec<KeyPart>> {
    let parts = key.parts();
    if parts.is_empty() {
        return Err(Problem::new(here.clone(), "must name at least one part"));
    }
    let mut checked = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let at = match key {
            KeyFile::One(_) => here.clone(),
            KeyFile::Many(_) => here.index(i),
        };
        let part = match part.trim() {
            "ip" => KeyPart::Ip,
            "route" => KeyPart::Route,
            "consumer" => KeyPart::Consumer,
            "plan" => KeyPart::Plan,
            other => match other.strip_prefix("header:") {
                Some(name) if is_token(name) => KeyPart::Header(name.to_ascii_lowercase()),
                Some(name) => {
                    return Err(Problem::new(at, format!("{name:?} is not a field name")))
                }
                None => {
                    return Err(Problem::new(
                        at,
                        format!(
                            "{other:?}: a key part is ip, route, consumer, plan or header:NAME"
                        ),
                    ))
                }
            },
        };
        if checked.contains(&part) {
            return Err(Problem::new(at, "named twice"));
        }
        checked.push(part);
    }
    Ok(checked)
}

fn check_rate_limit(limit: &RateLimitFile, here: &FieldPath) -> Checked<RateLimit> {
    let kind = match (&limit.rate, limit.concurrent) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(Problem::new(
                here.clone(),
                "give exactly one of rate (such as \"100/s\") and concurrent",
            ))
        }
        (None, Some(max)) => {
            if max == 0 {
                return Err(Problem::new(here.key("concurrent"), "must be at least 1"));
            }
            for (given, key) in [
                (limit.burst.is_some(), "burst"),
                (limit.delay > 0, "delay"),
                (limit.algorithm != default_algorithm(), "algorithm"),
            ] {
                if given {
                    return Err(Problem::new(
                        here.key(key),
                        "applies to a rate, not to a concurrency limit",
                    ));
                }
            }
            Kind::Concurrent { max }
        }
        (Some(rate), None) => {
            let (amount, per) = parse_rate(rate).map_err(|m| Problem::new(here.key("rate"), m))?;
            match limit.algorithm.as_str() {
                "token-bucket" => {
                    let burst = limit.burst.unwrap_or(amount);
                    if burst == 0 {
                        return Err(Problem::new(
                            here.key("burst"),
                            "must be at least 1 (one request at a time)",
                        ));
                    }
                    Kind::Bucket {
                        amount,
                        per,
                        burst,
                        queue: limit.delay,
                    }
                }
                "sliding-window" => {
                    for (given, key) in
                        [(limit.burst.is_some(), "burst"), (limit.delay > 0, "delay")]
                    {
                        if given {
                            return Err(Problem::new(
                                here.key(key),
                                "applies to a token bucket: a sliding window allows N in \
                                 any period",
                            ));
                        }
                    }
                    Kind::Window { amount, per }
                }
                other => {
                    return Err(Problem::new(
                        here.key("algorithm"),
                        format!("{other:?}: token-bucket or sliding-window"),
                    ))
                }
            }
        }
    };
    if !(16..=100_000_000).contains(&limit.max_keys) {
        return Err(Problem::new(
            here.key("max_keys"),
            "must be between 16 and 100000000",
        ));
    }
    Ok(RateLimit {
        name: limit.name.clone(),
        kind,
        key: check_key(&limit.key, &here.key("key"))?,
        shared: !limit.per_worker,
        max_keys: limit.max_keys,
        headers: limit.headers,
    })
}

/// The `[[rate_limit]]`s; each route's `rate_limits` set to `[http]`'s and its own (indexes,
/// each once).
pub(crate) fn check_rate_limits(
    file: &FileConfig,
    routes: &mut [Route],
) -> Checked<Vec<RateLimit>> {
    let mut limits = Vec::with_capacity(file.rate_limit.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, limit) in file.rate_limit.iter().enumerate() {
        let here = path(&["rate_limit"]).index(i);
        let name = limit.name.trim();
        if name.is_empty() || !is_token(name) {
            return Err(Problem::new(
                here.key("name"),
                format!("{name:?}: a name is letters, digits and -_. (it goes in a header)"),
            ));
        }
        if let Some(first) = names.insert(name, i) {
            return Err(Problem::new(
                here.key("name"),
                format!("duplicate rate limit name {name:?} (also rate_limit[{first}])"),
            ));
        }
        limits.push(check_rate_limit(limit, &here)?);
    }
    let find = |name: &str, at: FieldPath| {
        names
            .get(name.trim())
            .copied()
            .ok_or_else(|| Problem::new(at, format!("no [[rate_limit]] is named {name:?}")))
    };
    let mut every = Vec::new();
    for (i, name) in file.http.rate_limits.iter().enumerate() {
        let index = find(name, path(&["http", "rate_limits"]).index(i))?;
        if !every.contains(&index) {
            every.push(index);
        }
    }
    for (r, route) in routes.iter_mut().enumerate() {
        let mut applied = every.clone();
        let own = file.route.get(r).map_or(&[][..], |f| &f.rate_limits[..]);
        for (i, name) in own.iter().enumerate() {
            let index = find(name, path(&["route"]).index(r).key("rate_limits").index(i))?;
            if !applied.contains(&index) {
                applied.push(index);
            }
        }
        route.policy.rate_limits = applied;
    }
    Ok(limits)
}
