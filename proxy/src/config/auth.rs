//! Authentication settings: `[auth]` (the credentials ringwall accepts: API keys, JWTs,
//! htpasswd users), `[[consumer]]`s and `[[plan]]`s, and a route's `auth` (who may use it).
//!
//! Files named here are read and checked when the configuration is (so `ringwall check`
//! refuses a bad key file as the start would, with the file and its line); what they hold is
//! kept in the [`Auth`] as plain data, turned into keys by `crate::auth` per generation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{path, FieldPath, Problem};
use super::file::{FileConfig, RouteFile};
use super::policy::is_token;
use super::units::{deserialize_duration, serialize_duration};
use super::validate::file_path;

type Checked<T> = Result<T, Problem>;

/// `[auth]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthFile {
    /// A route's `auth.mode` when it gives none: `off`, `optional` or `required`.
    /// Default: `"off"`.
    pub mode: String,
    /// The request field that carries the authenticated consumer's name to the origin (any
    /// copy the client sent is removed first). Default: `"X-Consumer"`.
    pub consumer_header: String,
    /// The request field an API key comes in. Default: `"X-API-Key"`.
    pub api_key_header: String,
    /// A query parameter an API key may come in too. Default: none.
    pub api_key_query: Option<String>,
    /// A file of API keys: lines `CONSUMER sha256:HEX` (blank lines and `#` comments
    /// skipped), read again when it changes. Default: none.
    pub api_keys_file: Option<String>,
    /// An htpasswd file (`user:hash`, bcrypt `$2y$`/`$2b$`/`$2a$` or SHA-crypt `$5$`/`$6$`)
    /// for Basic authentication; a user is the consumer of the same name. Default: none.
    pub htpasswd: Option<String>,
    /// The realm of `WWW-Authenticate`. Default: `"ringwall"`.
    pub realm: String,
    /// `[auth.jwt]`: bearer tokens. Default: none.
    pub jwt: Option<JwtFile>,
    /// Where plans' quota counts are kept across reloads and restarts. Default: none (a
    /// quota then needs one: refused).
    pub quota_file: Option<String>,
}

impl Default for AuthFile {
    fn default() -> Self {
        AuthFile {
            mode: "off".to_owned(),
            consumer_header: "X-Consumer".to_owned(),
            api_key_header: "X-API-Key".to_owned(),
            api_key_query: None,
            api_keys_file: None,
            htpasswd: None,
            realm: "ringwall".to_owned(),
            jwt: None,
            quota_file: None,
        }
    }
}

/// `[auth.jwt]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct JwtFile {
    /// A PEM public key, a JWKS (JSON with `keys`), or a file holding an HMAC secret.
    /// Default: none (then `jwks_url`).
    pub keys: Option<String>,
    /// A JWKS fetched at start and every `refresh`. Default: none.
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is fetched again. Default: `"5m"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub refresh: Duration,
    /// Accepted `alg`s (`HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`,
    /// `PS384`, `PS512`, `ES256`, `ES384`, `EdDSA`). Default: every one of the keys' kinds.
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; when given, a token must carry one. Default: any.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; when given, a token must carry one. Default: any.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default: `"60s"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub leeway: Duration,
    /// The claim that names the consumer. Default: `"sub"`.
    pub consumer_claim: String,
    /// The claim with the token's scopes (a space-separated string or an array).
    /// Default: `"scope"` (also `scp`).
    pub scopes_claim: String,
    /// Verified tokens kept per worker until they expire. Default: `10000`.
    pub cache: usize,
}

impl Default for JwtFile {
    fn default() -> Self {
        JwtFile {
            keys: None,
            jwks_url: None,
            refresh: Duration::from_secs(300),
            algorithms: Vec::new(),
            issuer: Vec::new(),
            audience: Vec::new(),
            leeway: Duration::from_secs(60),
            consumer_claim: "sub".to_owned(),
            scopes_claim: "scope".to_owned(),
            cache: 10_000,
        }
    }
}

/// `[[consumer]]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsumerFile {
    pub name: String,
    /// The `[[plan]]` it is on. Default: none.
    #[serde(default)]
    pub plan: Option<String>,
    /// Its API keys, hashed: `sha256:HEX` (`printf %s KEY | sha256sum`). Default: none.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

/// `[[plan]]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanFile {
    pub name: String,
    /// `[[rate_limit]]`s applied to its consumers' requests, after the route's. Default: none.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// Requests per consumer per calendar day or month (UTC): `N/day`, `N/month`.
    /// Default: none.
    #[serde(default)]
    pub quota: Option<String>,
}

/// A route's `auth` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RouteAuthFile {
    /// `off`, `optional` (a valid credential names the consumer; none is allowed, a bad one
    /// is not) or `required`. Default: `[auth].mode`.
    pub mode: Option<String>,
    /// Accepted credentials: `api_key`, `jwt`, `basic`. Default: every one configured.
    pub methods: Vec<String>,
    /// Scopes a token must carry (all of them). Default: none.
    pub scopes: Vec<String>,
    /// Claims a token must carry with these values (a string equal, or an array holding it).
    pub claims: BTreeMap<String, String>,
    /// The only consumers allowed (403 for others). Default: any.
    pub consumers: Vec<String>,
    /// The only plans allowed. Default: any.
    pub plans: Vec<String>,
    /// Methods (HTTP) that need no credential even when `mode` is `required`, such as
    /// `["OPTIONS"]` for CORS preflights. Default: none.
    pub anonymous_methods: Vec<String>,
}

/// Whether a route asks for credentials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    Off,
    Optional,
    Required,
}

/// A kind of credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Basic,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Basic => "basic",
        }
    }
}

/// How often a quota starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    Day,
    Month,
}

/// A `[[plan]]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    /// Indexes into `Config::rate_limits`.
    pub rate_limits: Vec<usize>,
    pub quota: Option<(u64, QuotaPeriod)>,
}

/// A `[[consumer]]` (or one a keys file names), checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    /// Index into [`Auth::plans`].
    pub plan: Option<usize>,
}

/// Where the JWT keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtKeys {
    /// A file and what it held at load.
    File { path: PathBuf, contents: Vec<u8> },
    /// A JWKS URL (`http://` or `https://`).
    Url(String),
}

/// `[auth.jwt]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwt {
    pub keys: JwtKeys,
    pub refresh: Duration,
    /// Upper-case names; empty: every algorithm of the keys' kinds.
    pub algorithms: Vec<String>,
    pub issuer: Vec<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub consumer_claim: String,
    pub scopes_claim: String,
    pub cache: usize,
}

/// `[auth]`, `[[consumer]]`s and `[[plan]]`s, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub mode: AuthMode,
    pub consumer_header: String,
    pub api_key_header: String,
    pub api_key_query: Option<String>,
    pub api_keys_file: Option<PathBuf>,
    /// Every API key: its consumer (index into `consumers`) and its SHA-256.
    pub api_keys: KeyTable,
    pub htpasswd: Option<PathBuf>,
    /// The htpasswd file's users and hashes, at load.
    pub users: Vec<(String, String)>,
    pub realm: String,
    pub jwt: Option<Jwt>,
    pub quota_file: Option<PathBuf>,
    pub consumers: Vec<Consumer>,
    pub plans: Vec<Plan>,
}

impl Auth {
    /// The credentials configured, in the order they are tried.
    pub fn methods(&self) -> Vec<AuthMethod> {
        let mut methods = Vec::new();
        if !self.api_keys.is_empty() || self.api_keys_file.is_some() {
            methods.push(AuthMethod::ApiKey);
        }
        if self.jwt.is_some() {
            methods.push(AuthMethod::Jwt);
        }
        if self.htpasswd.is_some() {
            methods.push(AuthMethod::Basic);
        }
        methods
    }

    pub fn consumer(&self, name: &str) -> Option<usize> {
        self.consumers.iter().position(|c| c.name == name)
    }
}

/// A route's `auth`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAuth {
    pub mode: AuthMode,
    /// Accepted credentials (never empty when `mode` is not `Off`).
    pub methods: Vec<AuthMethod>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, String)>,
    /// Allowed consumer names; empty: any.
    pub consumers: Vec<String>,
    /// Allowed plans (indexes into [`Auth::plans`]); empty: any.
    pub plans: Vec<usize>,
    /// Upper-case methods let through without a credential.
    pub anonymous_methods: Vec<String>,
}

fn check_mode(text: &str, here: FieldPath) -> Checked<AuthMode> {
    match text {
        "off" => Ok(AuthMode::Off),
        "optional" => Ok(AuthMode::Optional),
        "required" => Ok(AuthMode::Required),
        other => Err(Problem::new(
            here,
            format!("{other:?}: off, optional or required"),
        )),
    }
}

/// `sha256:` and 64 hex digits.
pub fn parse_key_hash(text: &str) -> Result<[u8; 32], String> {
    let hex = text.trim().strip_prefix("sha256:").ok_or_else(|| {
        "an API key is stored hashed: sha256:HEX (printf %s KEY | sha256sum)".to_owned()
    })?;
    if hex.len() != 64 {
        return Err(format!("sha256: takes 64 hex digits, not {}", hex.len()));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "sha256: takes hex digits only".to_owned())?;
    }
    Ok(out)
}

/// An API keys file's (consumer, SHA-256) pairs.
pub type KeyLines = Vec<(String, [u8; 32])>;
/// API keys by consumer index: (consumer, SHA-256).
pub type KeyTable = Vec<(usize, [u8; 32])>;
/// A file's bad line: its number (from 1) and what is wrong with it.
pub type LineError = (usize, String);

/// The lines of an API keys file: (consumer, hash), or the first bad line's number and why.
pub fn parse_keys_file(text: &str) -> Result<KeyLines, LineError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(consumer), Some(hash), None) = (words.next(), words.next(), words.next()) else {
            return Err((n + 1, "a line is CONSUMER sha256:HEX".to_owned()));
        };
        let hash = parse_key_hash(hash).map_err(|m| (n + 1, m))?;
        keys.push((consumer.to_owned(), hash));
    }
    Ok(keys)
}

/// The lines of an htpasswd file: (user, hash), or the first bad line's number and why.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, LineError> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((n + 1, "a line is user:hash".to_owned()));
        };
        if !["$2y$", "$2b$", "$2a$", "$5$", "$6$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            return Err((
                n + 1,
                format!("{user}: only bcrypt ($2y$) and SHA-crypt ($5$, $6$) hashes are accepted (htpasswd -B)"),
            ));
        }
        users.push((user.to_owned(), hash.to_owned()));
    }
    Ok(users)
}

fn read(path: &Path, here: &FieldPath) -> Checked<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Problem::new(here.clone(), format!("cannot read {}: {e}", path.display())))
}

fn check_jwt(jwt: &JwtFile, base: Option<&Path>, here: &FieldPath) -> Checked<Jwt> {
    let keys = match (&jwt.keys, &jwt.jwks_url) {
        (Some(file), None) => {
            let at = here.key("keys");
            let path = file_path(file, base, &at)?;
            let contents = std::fs::read(&path).map_err(|e| {
                Problem::new(at.clone(), format!("cannot read {}: {e}", path.display()))
            })?;
            crate::auth::check_key_file(&contents)
                .map_err(|m| Problem::new(at, format!("{}: {m}", path.display())))?;
            JwtKeys::File { path, contents }
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Problem::new(
                    here.key("jwks_url"),
                    "must be an http:// or https:// URL",
                ));
            }
            JwtKeys::Url(url.clone())
        }
        _ => {
            return Err(Problem::new(
                here.clone(),
                "give exactly one of keys (a file) and jwks_url",
            ))
        }
    };
    let mut algorithms = Vec::with_capacity(jwt.algorithms.len());
    for (i, alg) in jwt.algorithms.iter().enumerate() {
        let upper = alg.trim().to_ascii_uppercase();
        let upper = if upper == "EDDSA" {
            "EdDSA".to_owned()
        } else {
            upper
        };
        if upper.parse::<jsonwebtoken::Algorithm>().is_err() {
            return Err(Problem::new(
                here.key("algorithms").index(i),
                format!("{alg:?}: not a JWT algorithm (HS256, RS256, PS256, ES256, EdDSA, …)"),
            ));
        }
        algorithms.push(upper);
    }
    if jwt.cache > 10_000_000 {
        return Err(Problem::new(here.key("cache"), "at most 10000000"));
    }
    Ok(Jwt {
        keys,
        refresh: jwt.refresh.max(Duration::from_secs(1)),
        algorithms,
        issuer: jwt.issuer.clone(),
        audience: jwt.audience.clone(),
        leeway: jwt.leeway,
        consumer_claim: jwt.consumer_claim.clone(),
        scopes_claim: jwt.scopes_claim.clone(),
        cache: jwt.cache,
    })
}

fn check_quota(text: &str, here: FieldPath) -> Checked<(u64, QuotaPeriod)> {
    let form = "a quota is N/day or N/month";
    let (n, per) = text
        .split_once('/')
        .ok_or_else(|| Problem::new(here.clone(), format!("{text:?}: {form}")))?;
    let n: u64 = n
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| Problem::new(here.clone(), format!("{text:?}: {form}, N at least 1")))?;
    let period = match per.trim() {
        "day" | "d" => QuotaPeriod::Day,
        "month" => QuotaPeriod::Month,
        _ => return Err(Problem::new(here, format!("{text:?}: {form}"))),
    };
    Ok((n, period))
}

/// The `[[plan]]`s.
fn check_plans(file: &FileConfig, limit_names: &HashMap<String, usize>) -> Checked<Vec<Plan>> {
    let a = &file.auth;
    let mut plans = Vec::with_capacity(file.plan.len());
    for (i, plan) in file.plan.iter().enumerate() {
        let at = path(&["plan"]).index(i);
        if plan.name.trim().is_empty() || plans.iter().any(|p: &Plan| p.name == plan.name) {
            return Err(Problem::new(at.key("name"), "must be given and unique"));
        }
        let mut rate_limits = Vec::new();
        for (j, name) in plan.rate_limits.iter().enumerate() {
            let index = limit_names.get(name.trim()).copied().ok_or_else(|| {
                Problem::new(
                    at.key("rate_limits").index(j),
                    format!("no [[rate_limit]] is named {name:?}"),
                )
            })?;
            rate_limits.push(index);
        }
        let quota = match &plan.quota {
            Some(text) => Some(check_quota(text, at.key("quota"))?),
            None => None,
        };
        if quota.is_some() && a.quota_file.is_none() {
            return Err(Problem::new(
                at.key("quota"),
                "a quota is kept across restarts in [auth] quota_file: give one",
            ));
        }
        plans.push(Plan {
            name: plan.name.clone(),
            rate_limits,
            quota,
        });
    }
    Ok(plans)
}

/// The `[[consumer]]`s, and their API keys (consumer index, hash).
fn check_consumers(file: &FileConfig, plans: &[Plan]) -> Checked<(Vec<Consumer>, KeyTable)> {
    let mut consumers: Vec<Consumer> = Vec::new();
    let mut api_keys = Vec::new();
    for (i, consumer) in file.consumer.iter().enumerate() {
        let at = path(&["consumer"]).index(i);
        if !is_token(&consumer.name) || consumers.iter().any(|c| c.name == consumer.name) {
            return Err(Problem::new(
                at.key("name"),
                format!(
                    "{:?}: a consumer's name is unique, letters, digits and -_. (it goes in a header)",
                    consumer.name
                ),
            ));
        }
        let plan = match &consumer.plan {
            Some(name) => Some(plans.iter().position(|p| &p.name == name).ok_or_else(|| {
                Problem::new(at.key("plan"), format!("no [[plan]] is named {name:?}"))
            })?),
            None => None,
        };
        for (j, key) in consumer.api_keys.iter().enumerate() {
            let hash =
                parse_key_hash(key).map_err(|m| Problem::new(at.key("api_keys").index(j), m))?;
            api_keys.push((consumers.len(), hash));
        }
        consumers.push(Consumer {
            name: consumer.name.clone(),
            plan,
        });
    }
    Ok((consumers, api_keys))
}

/// `[auth]`, `[[plan]]`s and `[[consumer]]`s; `limit_names`: the `[[rate_limit]]` names, by
/// index.
pub(crate) fn check_auth(
    file: &FileConfig,
    base: Option<&Path>,
    limit_names: &HashMap<String, usize>,
) -> Checked<Auth> {
    let a = &file.auth;
    let here = path(&["auth"]);
    for (value, key) in [
        (&a.consumer_header, "consumer_header"),
        (&a.api_key_header, "api_key_header"),
    ] {
        if !is_token(value) {
            return Err(Problem::new(
                here.key(key),
                format!("{value:?} is not a field name"),
            ));
        }
    }
    let plans = check_plans(file, limit_names)?;
    let (mut consumers, mut api_keys) = check_consumers(file, &plans)?;
    let api_keys_file = match &a.api_keys_file {
        Some(text) => {
            let at = here.key("api_keys_file");
            let file = file_path(text, base, &at)?;
            let parsed = parse_keys_file(&read(&file, &at)?).map_err(|(line, m)| {
                Problem::new(at.clone(), format!("{}:{line}: {m}", file.display()))
            })?;
            for (name, hash) in parsed {
                let known = consumers.iter().position(|c| c.name == name);
                let index = if let Some(index) = known {
                    index
                } else {
                    consumers.push(Consumer { name, plan: None });
                    consumers.len() - 1
                };
                api_keys.push((index, hash));
            }
            Some(file)
        }
        None => None,
    };
    let (htpasswd, users) = match &a.htpasswd {
        Some(text) => {
            let at = here.key("htpasswd");
            let file = file_path(text, base, &at)?;
            let users = parse_htpasswd(&read(&file, &at)?).map_err(|(line, m)| {
                Problem::new(at.clone(), format!("{}:{line}: {m}", file.display()))
            })?;
            (Some(file), users)
        }
        None => (None, Vec::new()),
    };
    let jwt = match &a.jwt {
        Some(jwt) => Some(check_jwt(jwt, base, &here.key("jwt"))?),
        None => None,
    };
    let quota_file = a
        .quota_file
        .as_deref()
        .map(|text| file_path(text, base, &here.key("quota_file")))
        .transpose()?;
    if let Some(query) = &a.api_key_query {
        if query.is_empty() || query.contains(['&', '=', '#']) {
            return Err(Problem::new(
                here.key("api_key_query"),
                format!("{query:?} is not a query parameter name"),
            ));
        }
        if !crate::access_log::is_secret(query.as_bytes()) {
            return Err(Problem::new(
                here.key("api_key_query"),
                format!(
                    "{query:?}: name it so that access logs hide its value (key, api_key, \
                     access_token, …: see docs/operations.md)"
                ),
            ));
        }
    }
    Ok(Auth {
        mode: check_mode(&a.mode, here.key("mode"))?,
        consumer_header: a.consumer_header.clone(),
        api_key_header: a.api_key_header.clone(),
        api_key_query: a.api_key_query.clone(),
        api_keys_file,
        api_keys,
        htpasswd,
        users,
        realm: a.realm.clone(),
        jwt,
        quota_file,
        consumers,
        plans,
    })
}

/// A route's `auth`, against `[auth]`.
pub(crate) fn check_route_auth(
    route: &RouteFile,
    auth: &Auth,
    here: &FieldPath,
) -> Checked<RouteAuth> {
    let given = &route.auth;
    let here = here.key("auth");
    let mode = match &given.mode {
        Some(mode) => check_mode(mode, here.key("mode"))?,
        None => auth.mode,
    };
    let configured = auth.methods();
    let methods = if given.methods.is_empty() {
        configured.clone()
    } else {
        let mut methods = Vec::new();
        for (i, m) in given.methods.iter().enumerate() {
            let method = match m.as_str() {
                "api_key" => AuthMethod::ApiKey,
                "jwt" => AuthMethod::Jwt,
                "basic" => AuthMethod::Basic,
                other => {
                    return Err(Problem::new(
                        here.key("methods").index(i),
                        format!("{other:?}: api_key, jwt or basic"),
                    ))
                }
            };
            if !configured.contains(&method) {
                return Err(Problem::new(
                    here.key("methods").index(i),
                    format!("{m} is not configured in [auth]"),
                ));
            }
            methods.push(method);
        }
        methods
    };
    if mode != AuthMode::Off && methods.is_empty() {
        return Err(Problem::new(
            here.key("mode"),
            "no credentials are configured: add [auth.jwt], [auth] api_keys_file or htpasswd, or consumers' api_keys",
        ));
    }
    if (!given.scopes.is_empty() || !given.claims.is_empty()) && !methods.contains(&AuthMethod::Jwt)
    {
        return Err(Problem::new(
            here.key("scopes"),
            "scopes and claims are a JWT's: the route accepts no JWT",
        ));
    }
    let mut plans = Vec::new();
    for (i, name) in given.plans.iter().enumerate() {
        plans.push(
            auth.plans
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| {
                    Problem::new(
                        here.key("plans").index(i),
                        format!("no [[plan]] is named {name:?}"),
                    )
                })?,
        );
    }
    let mut anonymous_methods = Vec::new();
    for (i, m) in given.anonymous_methods.iter().enumerate() {
        if !is_token(m) {
            return Err(Problem::new(
                here.key("anonymous_methods").index(i),
                format!("{m:?} is not a method"),
            ));
        }
        anonymous_methods.push(m.to_ascii_uppercase());
    }
    Ok(RouteAuth {
        mode,
        methods,
        scopes: given.scopes.clone(),
        claims: given
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        consumers: given.consumers.clone(),
        plans,
        anonymous_methods,
    })
}
