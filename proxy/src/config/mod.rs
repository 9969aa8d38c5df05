//! ringwall's configuration: a TOML file, overridden by command-line flags, validated into a
//! [`Config`] that cannot be invalid.
//!
//! Three stages (docs/configuration.md describes every field):
//!
//! 1. `file.rs`: the text is deserialized into typed structs that deny unknown fields and carry
//!    one documented default per field. Syntax, type and unknown-field errors stop here.
//! 2. [`load`] applies the flags of a [`Cli`] to those structs (each flag replaces the value of
//!    its key), remembering which values came from which flag.
//! 3. `validate.rs` checks everything else (names resolve, addresses resolve, ranges hold) and
//!    builds the [`Config`] the rest of the proxy consumes: addresses are `SocketAddr`s,
//!    routes point at upstream groups by index, host patterns are parsed and lowercased.
//!
//! Every failure is a [`ConfigError`] whose message names the file, line, column and dotted
//! field path (`ringwall.toml:14:12: route[1].upstream: unknown upstream group "api"`), or the
//! flag that supplied the bad value (`--workers: must be at least 1`).

mod auth;
mod cache;
mod compress;
mod error;
mod file;
mod gateway;
mod policy;
mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ringwall_policies::balance::Algorithm;
pub use ringwall_policies::health::{Ejection, Thresholds};
use serde::Deserialize;

use crate::cli::Cli;

pub use auth::parse_key_hash;
pub use auth::{
    parse_htpasswd, parse_keys_file, Auth, AuthMethod, AuthMode, Consumer, Jwt, JwtKeys, Plan,
    QuotaPeriod, RouteAuth,
};
pub use cache::{CacheSettings, RouteCache};
pub use compress::{Compression, Encoding, MediaPattern};
pub use error::{ConfigError, Location};
pub use gateway::{KeyPart, RateLimit};
pub use policy::{
    is_token, parse_cidr, Cidr, EditOp, Forwarding, HeaderEdit, Http, HttpsRedirect, PathRewrite,
    RegexRewrite, RoutePolicy, RouteTimeouts, StaticResponse, Template, TemplatePart, Variable,
};
pub use units::{
    parse_body_limit, parse_duration, parse_duration_or_zero, parse_size, BodyLimit, MAX_DURATION,
};

use error::{path, Locator};
use file::{FileConfig, RouteFile, UpstreamFile};

/// The name of the upstream group that `--upstream` builds or replaces, and of the catch-all
/// route added for it when no route sends there.
pub const DEFAULT_UPSTREAM: &str = "default";

/// A validated configuration. Every field holds a checked, resolved value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this was loaded from; `None` when built from flags or text alone.
    pub source: Option<PathBuf>,
    /// Where client connections are accepted: those of `listen` first, then the
    /// `[[listener]]`s. Non-empty, no duplicate addresses.
    pub listeners: Vec<Listener>,
    pub engine: EngineConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// `[http]`: what applies to every request before routing.
    pub http: Http,
    /// Upstream groups, in file order (a group added by `--upstream` comes last).
    pub upstreams: Vec<UpstreamGroup>,
    /// Routes in match order: the first route that matches a request wins.
    pub routes: Vec<Route>,
    /// One of `error`, `warn`, `info`, `debug`, `trace`.
    pub log_level: String,
    /// `[access_log]`.
    pub access_log: AccessLogSettings,
    /// `[[rate_limit]]`s, in file order (the one `--rate-limit` adds comes last).
    pub rate_limits: Vec<RateLimit>,
    /// `[auth]`, `[[consumer]]`s, `[[plan]]`s.
    pub auth: Auth,
    /// `[compression]`; `None`: off (each route's policy holds what applies to it).
    pub compression: Option<Arc<Compression>>,
    /// `[cache]`; `None`: no cache.
    pub cache: Option<CacheSettings>,
    /// `[admin] address`: where the admin listener accepts; `None`: no admin listener.
    pub admin: Option<SocketAddr>,
    /// Where the process id is written; `None`: nowhere. Absolute (see `access_log`).
    pub pid_file: Option<PathBuf>,
    /// The file's settings with the flags applied, every default filled in, as TOML, with
    /// secrets hidden: what the admin endpoint's `/config` shows.
    pub effective: String,
}

/// `[access_log]`: where request lines go and how they look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub target: AccessLogTarget,
    pub format: AccessLogFormat,
}

/// Where request lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    /// Appended to; reopened on SIGUSR1. Absolute (a relative path in the file is taken from
    /// the file's directory).
    File(PathBuf),
}

/// How a request line looks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx's `combined`.
    Combined,
    /// One JSON object per line.
    Json,
    /// Text with `${field}` references.
    Template(Vec<crate::access_log::TemplatePiece>),
}

/// One listening address and what its connections speak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Unique among listeners (`listener-<index>` when none is given).
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: ListenerProtocol,
    /// TLS termination; `Some` exactly when `protocol` is `https` or `tls`.
    pub tls: Option<TlsSettings>,
    /// Where a `tcp` or `tls` listener forwards; `Some` exactly for those.
    pub forward: Option<TcpForward>,
    /// Peers whose connections start with a PROXY protocol header.
    pub proxy_protocol_from: Vec<Cidr>,
}

/// Where the connections of a `tcp` or `tls` listener go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpForward {
    /// Index into [`Config::upstreams`]: every connection (`tls`, or `tcp` without
    /// `sni_routes`), or those whose SNI no route covers.
    pub upstream: Option<usize>,
    /// In order; the first whose hosts match the `ClientHello`'s SNI wins.
    pub sni_routes: Vec<SniRoute>,
    pub send_proxy_protocol: Option<crate::l4::ProxyVersion>,
}

/// TLS passed through to `upstream` when the SNI matches one of `hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRoute {
    pub hosts: Vec<HostPattern>,
    pub upstream: usize,
}

/// What a listener's connections speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// HTTP/1.0 and HTTP/1.1 in plain text.
    #[default]
    Http,
    /// HTTP/1.x inside TLS, terminated here.
    Https,
    /// TCP forwarded to an upstream group as it is (spliced), or routed by the SNI of a TLS
    /// `ClientHello` without terminating it.
    Tcp,
    /// TLS terminated here, the plain bytes forwarded over TCP.
    Tls,
    /// UDP datagrams forwarded to an upstream group, a session per client address and port.
    Udp,
}

impl ListenerProtocol {
    /// The URI scheme of requests that arrive this way (`X-Forwarded-Proto`, `${scheme}`).
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "tls",
            ListenerProtocol::Udp => "udp",
        }
    }

    /// Whether the connections carry HTTP that ringwall parses (`http`, `https`).
    pub fn is_http(self) -> bool {
        matches!(self, ListenerProtocol::Http | ListenerProtocol::Https)
    }

    /// Whether ringwall terminates TLS on it (`https`, `tls`).
    pub fn terminates_tls(self) -> bool {
        matches!(self, ListenerProtocol::Https | ListenerProtocol::Tls)
    }
}

/// `[listener.tls]`: TLS termination on one listener. Paths are absolute (relative ones in the
/// file are taken from the file's directory; those of flags from the current directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Non-empty. The one marked default (else the first) answers clients that send no SNI
    /// or a name no certificate covers (unless `strict_sni`).
    pub certificates: Vec<TlsCertificate>,
    pub min_version: TlsVersion,
    /// Client certificates checked against a CA file; `None`: none asked for.
    pub client_auth: Option<ClientAuth>,
    /// TLS sessions remembered per worker for resumption by session ID (0: none).
    pub session_cache: usize,
    /// Issue session tickets (one key for every worker, so a ticket resumes on any core).
    pub session_tickets: bool,
    /// Refuse a handshake whose SNI no certificate covers, or that sends none.
    pub strict_sni: bool,
}

/// One certificate chain and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A DER OCSP response stapled to handshakes.
    pub ocsp: Option<PathBuf>,
    /// Host names (exact or `*.` wildcard, lowercase) this certificate serves; empty: the
    /// certificate's own DNS names.
    pub names: Vec<String>,
    pub default: bool,
}

/// The oldest TLS version a listener accepts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize, clap::ValueEnum,
)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    #[value(name = "1.3")]
    Tls13,
}

/// Client certificate authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of the CAs client certificates must chain to.
    pub ca: PathBuf,
    /// Without a certificate the handshake fails; otherwise one is asked for and checked if
    /// sent.
    pub required: bool,
}

/// `[http].escaped_slashes`: what `%2F` in a request path means.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EscapedSlashesMode {
    /// Leave it encoded (data inside a segment).
    #[default]
    Keep,
    /// Refuse the request with 400.
    Reject,
    /// Decode it to `/` before dot segments are removed.
    Decode,
}

/// `[engine]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads, at least 1 (default: one per online core).
    pub workers: usize,
    /// Pin worker `i` to core `i`.
    pub pin: bool,
    pub io_driver: IoDriver,
    /// Submission queue entries per ring (uring drivers), `256..=32768`.
    pub ring_entries: u32,
    /// Share listening addresses with other processes on purpose (`SO_REUSEPORT`).
    pub share_listen: bool,
    /// The message path's tick: `1ms..=10s`.
    pub gossip_interval: Duration,
}

/// The I/O driver each worker runs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum IoDriver {
    /// The fastest ring setup the kernel accepts (uring-defer, uring-coop, uring-plain), else
    /// epoll.
    Auto,
    /// A ring with `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN` (kernel 6.1+), or fail.
    UringDefer,
    /// A ring with `COOP_TASKRUN`, or fail.
    UringCoop,
    /// A ring with no setup flags, or fail.
    UringPlain,
    /// A ring with `SQPOLL`: a kernel thread polls the submission queue and takes a core of
    /// its own (on two cores, the load's). Never chosen by `auto`; measured in benchmarks.md.
    UringSqpoll,
    /// The epoll driver, no ring.
    Epoll,
}

impl IoDriver {
    /// The name used in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::UringDefer => "uring-defer",
            IoDriver::UringCoop => "uring-coop",
            IoDriver::UringPlain => "uring-plain",
            IoDriver::UringSqpoll => "uring-sqpoll",
            IoDriver::Epoll => "epoll",
        }
    }
}

impl fmt::Display for IoDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[timeouts]`; every value is greater than zero and at most [`MAX_DURATION`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request head must arrive within this (408).
    pub client_header: Duration,
    /// Idle time between requests on a client connection.
    pub client_keepalive: Duration,
    /// The longest wait for the next bytes of a request body (408).
    pub client_body: Duration,
    /// The longest a client may leave a response unread before it is dropped.
    pub client_send: Duration,
    /// Connecting to an upstream server (502 on failure, 504 on timeout).
    pub upstream_connect: Duration,
    /// Wait for the response head, and the longest gap between body reads (504).
    pub upstream_response: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle: Duration,
    /// Grace period for in-flight requests on SIGINT/SIGTERM.
    pub drain: Duration,
    /// How long a refused client's further bytes are read and discarded before the close.
    pub lingering_time: Duration,
    /// The longest wait for more of those bytes.
    pub lingering_timeout: Duration,
    /// An upgraded connection with no byte either way for this long is closed.
    pub tunnel_idle: Duration,
    /// A TLS handshake must complete within this, else the connection is closed.
    pub tls_handshake: Duration,
    /// A forwarded TCP connection idle this long either way is closed.
    pub tcp_idle: Duration,
    /// A UDP session without a datagram either way for this long ends.
    pub udp_idle: Duration,
}

/// `[limits]`, in bytes except `max_headers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head, `1..=16MiB` (431).
    pub max_request_head: usize,
    /// Largest upstream response head, `1..=16MiB` (502).
    pub max_response_head: usize,
    /// Most header fields in a request, `1..=1024` (431).
    pub max_headers: usize,
    /// Longest request target, `1..=16MiB` (414).
    pub max_uri: usize,
    /// Largest request body (413); `None` is unlimited.
    pub max_body: Option<u64>,
    /// Least average request-body rate in bytes per second after a 5 s grace (408); 0 is off.
    pub min_body_rate: u64,
    /// Most open client connections per worker (accepting pauses at the limit), at least 1.
    pub max_connections_per_worker: usize,
    /// Most open connections per client address (IPv6: per /64) across workers (429); 0 is off.
    pub max_connections_per_ip: u32,
}

/// How an upstream group chooses a server (`[[upstream]] lb`, `--lb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadBalancing {
    /// One of the balancing algorithms (`ringwall_policies::balance`); by default power of
    /// two choices weighing each server's outstanding requests by its peak-EWMA latency.
    Balance(Algorithm),
    /// Consistent hashing (Maglev) on a key of the request; a request without the key is
    /// balanced by the default, peak-EWMA power of two choices.
    Hash(HashKey),
}

impl Default for LoadBalancing {
    fn default() -> Self {
        LoadBalancing::Balance(Algorithm::PeakEwma)
    }
}

/// What `hash:` balancing hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address (the real one behind trusted proxies).
    ClientIp,
    /// A request header's value (name lowercase).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The path, without the query.
    Path,
}

impl LoadBalancing {
    /// Parses `p2c`, `peak-ewma`, `round-robin`, `weighted`, `least-conn`, `random`,
    /// `hash:ip`, `hash:header:NAME`, `hash:cookie:NAME`, `hash:path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let balance = LoadBalancing::Balance;
        Ok(match text {
            "p2c" => balance(Algorithm::PowerOfTwo),
            "peak-ewma" => balance(Algorithm::PeakEwma),
            "round-robin" => balance(Algorithm::RoundRobin),
            "weighted" => balance(Algorithm::Weighted),
            "least-conn" => balance(Algorithm::LeastConnections),
            "random" => balance(Algorithm::Random),
            "hash:ip" => LoadBalancing::Hash(HashKey::ClientIp),
            "hash:path" => LoadBalancing::Hash(HashKey::Path),
            _ => {
                let named = |prefix: &str| {
                    text.strip_prefix(prefix)
                        .filter(|name| policy::is_token(name))
                        .map(str::to_owned)
                };
                if let Some(name) = named("hash:header:") {
                    LoadBalancing::Hash(HashKey::Header(name.to_ascii_lowercase()))
                } else if let Some(name) = named("hash:cookie:") {
                    LoadBalancing::Hash(HashKey::Cookie(name))
                } else {
                    return Err(format!(
                        "unknown balancing {text:?}: expected p2c, peak-ewma, round-robin, \
                         weighted, least-conn, random, hash:ip, hash:header:NAME, \
                         hash:cookie:NAME or hash:path"
                    ));
                }
            }
        })
    }
}

/// An `[[upstream]]` group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamGroup {
    /// Unique among groups.
    pub name: String,
    /// Resolved once at load time (first address of each `host:port`). Non-empty; port != 0.
    pub servers: Vec<SocketAddr>,
    /// Most idle pooled connections kept per server; 0 disables pooling.
    pub max_idle_per_server: usize,
    /// TLS toward the servers (`https://` servers); `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
    /// How a server is chosen.
    pub lb: LoadBalancing,
    /// Per server, in `servers` order: its weight, at least 1.
    pub weights: Vec<u32>,
    /// How many of `servers` are primaries (they come first); the rest are backups, used only
    /// while no primary may take requests.
    pub primaries: usize,
    /// Active checks; `None`: none.
    pub health_check: Option<HealthCheck>,
    /// Passive checks (`consecutive == 0`: off).
    pub ejection: Ejection,
    /// How long a server back in service ramps up; zero: at once.
    pub slow_start: Duration,
    pub circuit_breaker: CircuitBreaker,
    pub retry_budget: RetryBudgetSettings,
    /// How often its host names are resolved again (every address of a name is a server);
    /// `None`: once, at load.
    pub resolve: Option<Duration>,
}

/// `[upstream.circuit_breaker]`, checked: limits for the whole process (`None`: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub max_connections: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_pending: u32,
    /// `None`: `timeouts.upstream_connect`.
    pub pending_timeout: Option<Duration>,
    pub max_connections_per_server: Option<u32>,
    pub max_requests_per_server: Option<u32>,
}

/// `[upstream.retry_budget]`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudgetSettings {
    pub percent: u32,
    pub min_per_second: u32,
}

/// `[route.retry]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most tries of one request; 0: one per server in service.
    pub tries: u32,
    /// A broken connection or malformed response before the head (idempotent requests).
    pub on_error: bool,
    /// No response head within the try's timeout (idempotent requests).
    pub on_timeout: bool,
    /// Statuses that make an idempotent request try the next server, as (low, high) ranges.
    pub on_status: Vec<(u16, u16)>,
    /// `None`: `timeouts.upstream_response`.
    pub per_try_timeout: Option<Duration>,
    /// Request bodies of a known length up to this are buffered; 0: none.
    pub buffer_body: u64,
}

impl Config {
    /// How often the servers' names must be resolved again: the shortest `resolve` of the
    /// groups; `None` when no group asks.
    pub fn resolve_interval(&self) -> Option<Duration> {
        self.upstreams.iter().filter_map(|g| g.resolve).min()
    }

    /// Whether `other` is this configuration with other upstream addresses only (the same
    /// settings, names resolved to other addresses).
    pub fn only_addresses_differ(&self, other: &Config) -> bool {
        self.effective == other.effective
            && self
                .upstreams
                .iter()
                .zip(&other.upstreams)
                .any(|(a, b)| a.servers != b.servers)
    }
}

/// `[route.hedge]`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HedgePolicy {
    /// 50 to 99.
    pub percentile: u32,
    pub min_delay: Duration,
    /// At least `min_delay`.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Whether a response of `status` makes an idempotent request try again.
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }
}

/// `[upstream.health_check]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// Between two checks of one server, at least 10 ms.
    pub interval: Duration,
    /// For one check, the connection included; above zero.
    pub timeout: Duration,
    /// Each wait moved by up to this much either way; at most `interval`.
    pub jitter: Duration,
    pub thresholds: Thresholds,
}

/// What an active check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// An HTTP/1.1 request; it passes on a status in `status` (and a body containing `body`).
    Http {
        method: String,
        /// Origin form, starts with `/`.
        path: String,
        /// `None`: the server's name.
        host: Option<String>,
        /// Lowest and highest status that pass.
        status: (u16, u16),
        body: Option<String>,
    },
    /// A TCP connection accepted.
    Tcp,
    /// A TLS handshake completed (`https://` servers).
    Tls,
}

/// TLS toward an upstream group's servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Per server, in `servers` order: the name sent as SNI and that its certificate must
    /// carry (the host of its `https://` URL, or the group's `sni`).
    pub server_names: Vec<String>,
    /// CAs the servers' certificates must chain to; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and key to present.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A `[[route]]`. A request matches when every condition holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Unique among routes (`route-<index>` when the file gives none).
    pub name: String,
    /// The Host must match one of these; empty means any host.
    pub hosts: Vec<HostPattern>,
    /// The path must start with this (plain string prefix). Starts with `/`.
    pub path_prefix: String,
    /// The method must be one of these (uppercase tokens, no duplicates); empty means any.
    pub methods: Vec<String>,
    /// Each header must be present with exactly this value. Names lowercase and unique,
    /// sorted by name.
    pub headers: Vec<(String, String)>,
    /// Forward, or answer with a response of its own.
    pub action: RouteAction,
    /// Rewrites, forwarding fields, header edits, timeouts and limits, all resolved.
    pub policy: RoutePolicy,
}

/// What a route does with the requests it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    Forward {
        /// Index into [`Config::upstreams`].
        upstream: usize,
        /// Host header to send upstream instead of the client's.
        host_rewrite: Option<String>,
    },
    /// `return`: ringwall answers itself.
    Return(StaticResponse),
}

impl Route {
    /// The upstream group a forwarding route sends to.
    pub fn upstream(&self) -> Option<usize> {
        match self.action {
            RouteAction::Forward { upstream, .. } => Some(upstream),
            RouteAction::Return(_) => None,
        }
    }
}

/// A route's host condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// This host exactly (lowercase, no port).
    Exact(String),
    /// Any host ending in this suffix (lowercase, starts with `.`), from `*.example.org`.
    /// The bare `example.org` does not match.
    Suffix(String),
}

impl HostPattern {
    /// Whether a request's host (a Host field value or a target's authority) matches:
    /// case-insensitive, port ignored, a trailing dot ignored. The router's one host matcher.
    pub fn matches(&self, host: &[u8]) -> bool {
        let host = strip_port(host.trim_ascii());
        let host = host.strip_suffix(b".").unwrap_or(host);
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact.as_bytes()),
            HostPattern::Suffix(suffix) => {
                let suffix = suffix.as_bytes();
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub(crate) fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

impl Config {
    /// Parses and validates a configuration file's text, with no flags applied. `source` is
    /// only used to name the file in errors and in [`Config::source`].
    pub fn from_toml_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        let locator = Locator::new(source, text);
        let file: FileConfig = toml::from_str(text).map_err(|e| locator.toml_error(&e))?;
        validate::validate(&file, source.map(Path::to_path_buf)).map_err(|p| locator.problem(p))
    }

    /// The defaults, with one upstream group `default` holding `servers` and one catch-all
    /// route `default` sending everything there. Used by `--demo`; see also [`load_demo`],
    /// which applies the command-line flags as well.
    ///
    /// # Panics
    /// If `servers` is empty or holds port 0.
    pub fn defaults_with_upstreams(servers: Vec<SocketAddr>) -> Config {
        let mut file = FileConfig::default();
        add_default_upstream(
            &mut file,
            servers.into_iter().map(|s| s.to_string()).collect(),
        );
        validate::validate(&file, None)
            .unwrap_or_else(|p| panic!("defaults_with_upstreams: {}: {}", p.path, p.message))
    }

    /// `"<file>: ok (N routes, M upstream groups, K listeners)"`, printed by `ringwall check`.
    pub fn summary(&self) -> String {
        let source = self
            .source
            .as_ref()
            .map_or_else(|| "<command line>".to_owned(), |p| p.display().to_string());
        format!(
            "{source}: ok ({} routes, {} upstream groups, {} listeners)",
            self.routes.len(),
            self.upstreams.len(),
            self.listeners.len()
        )
    }

    /// The listening addresses, in listener order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// The index of the upstream group called `name`.
    pub fn upstream_index(&self, name: &str) -> Option<usize> {
        self.upstreams.iter().position(|u| u.name == name)
    }
}

/// Loads the configuration the command line asks for: the `--config` file (if any) with every
/// given flag applied on top, validated. Fails with [`ConfigError::NoSource`] when there is
/// neither a file nor `--upstream`. With `--demo`, call [`load_demo`] instead.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    load_with_fallback(cli, None)
}

/// Like [`load`], for `--demo`: the demo origins at `demo_servers` play the part of
/// `--upstream` when that flag is not given, so the other flags (and a `--config` file) still
/// apply.
pub fn load_demo(cli: &Cli, demo_servers: Vec<SocketAddr>) -> Result<Config, ConfigError> {
    load_with_fallback(cli, Some(demo_servers))
}

/// `ringwall check`: loads like [`load`] and returns the line to print on success.
pub fn check(cli: &Cli) -> Result<String, ConfigError> {
    load(cli).map(|config| config.summary())
}

fn load_with_fallback(
    cli: &Cli,
    demo_servers: Option<Vec<SocketAddr>>,
) -> Result<Config, ConfigError> {
    let text = match &cli.config {
        Some(file) => Some(
            std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
                file: file.clone(),
                error: Arc::new(error),
            })?,
        ),
        None => None,
    };
    if text.is_none() && cli.upstream.is_empty() && demo_servers.is_none() {
        if cli.demo {
            return Err(ConfigError::Flag {
                flag: "--demo",
                message: "the demo configuration needs the demo origins' addresses: \
                          load it with config::load_demo"
                    .to_owned(),
            });
        }
        return Err(ConfigError::NoSource);
    }
    let mut locator = Locator::new(cli.config.as_deref(), text.as_deref().unwrap_or(""));
    let mut file = match &text {
        Some(text) => toml::from_str(text).map_err(|e| locator.toml_error(&e))?,
        None => FileConfig::default(),
    };
    apply_flags(&mut file, cli, demo_servers, &mut locator);
    check_health_flags(&file, cli)?;
    check_rate_limit_flags(cli)?;
    if cli.compress_min_size.is_some() && file.compression.encodings.is_empty() {
        return Err(ConfigError::Flag {
            flag: "--compress-min-size",
            message: "applies to compression: give --compress or [compression] encodings too"
                .to_owned(),
        });
    }
    if file.auth.jwt.is_none() && !(cli.jwt_aud.is_empty() && cli.jwt_iss.is_empty()) {
        let flag = if cli.jwt_aud.is_empty() {
            "--jwt-iss"
        } else {
            "--jwt-aud"
        };
        return Err(ConfigError::Flag {
            flag,
            message: "applies to JWTs: give --jwt-key or an [auth.jwt] table too".to_owned(),
        });
    }
    let mut config =
        validate::validate(&file, cli.config.clone()).map_err(|p| locator.problem(p))?;
    config.effective = effective_text(&file);
    Ok(config)
}

/// The settings as TOML, with the values of secret-looking keys hidden.
fn effective_text(file: &FileConfig) -> String {
    let mut value = match toml::Value::try_from(file) {
        Ok(value) => value,
        Err(e) => return format!("# the configuration cannot be shown: {e}\n"),
    };
    hide_secrets(&mut value);
    toml::to_string_pretty(&value)
        .unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
}

/// Replaces the value of every key that names a secret (a password, a token, a secret, an
/// API key, and header fields that carry credentials, as in `[http.request_headers.set]`)
/// with `"<hidden>"`, at any depth.
fn hide_secrets(value: &mut toml::Value) {
    const SECRET: [&str; 7] = [
        "password",
        "secret",
        "token",
        "api_key",
        "api-key",
        "authorization",
        "cookie",
    ];
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                let key = key.to_ascii_lowercase();
                if SECRET.iter().any(|s| key.contains(s)) {
                    *value = toml::Value::String("<hidden>".to_owned());
                } else {
                    hide_secrets(value);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(hide_secrets),
        _ => {}
    }
}

/// Stage two: each given flag replaces the value of its key, and the locator remembers which
/// flag set which path so that a problem there names the flag.
fn apply_flags(
    file: &mut FileConfig,
    cli: &Cli,
    demo_servers: Option<Vec<SocketAddr>>,
    locator: &mut Locator<'_>,
) {
    if !cli.listen.is_empty() {
        // `--listen` replaces every listener of the file with plain HTTP ones.
        file.listen = Some(cli.listen.clone());
        file.listener.clear();
        locator.set_by_flag(path(&["listen"]), "--listen");
    }
    if let Some(pid_file) = &cli.pid_file {
        file.pid_file = Some(flag_path(pid_file));
        locator.set_by_flag(path(&["pid_file"]), "--pid-file");
    }
    if let Some(admin) = &cli.admin {
        file.admin.address = Some(admin.clone());
        locator.set_by_flag(path(&["admin"]).key("address"), "--admin");
    }
    if let Some(target) = &cli.access_log {
        // A relative path from the command line is the current directory's.
        file.access_log.target = match target.as_str() {
            "off" | "stdout" | "-" => target.clone(),
            path => flag_path(Path::new(path)),
        };
        locator.set_by_flag(path(&["access_log"]).key("target"), "--access-log");
    }
    if let Some(format) = cli.access_log_format {
        match format {
            crate::cli::LogFormatArg::Combined => "combined",
            crate::cli::LogFormatArg::Json => "json",
        }
        .clone_into(&mut file.access_log.format);
        file.access_log.template = None;
        locator.set_by_flag(path(&["access_log"]).key("format"), "--access-log-format");
    }
    apply_tls_flags(file, cli, locator);
    apply_l4_flags(file, cli, locator);
    if let Some(level) = &cli.log_level {
        file.log_level.clone_from(level);
        locator.set_by_flag(path(&["log_level"]), "--log-level");
    }
    apply_engine_flags(&mut file.engine, cli, locator);
    apply_timeout_flags(&mut file.timeouts, cli, locator);
    apply_limit_flags(&mut file.limits, cli, locator);
    apply_http_flags(&mut file.http, cli, locator);

    let servers = if cli.upstream.is_empty() {
        demo_servers.map(|servers| {
            let servers = servers.into_iter().map(|s| s.to_string()).collect();
            (servers, "--demo")
        })
    } else {
        Some((cli.upstream.clone(), "--upstream"))
    };
    if let Some((servers, flag)) = servers {
        let (group, route) = add_default_upstream(file, servers);
        locator.set_by_flag(path(&["upstream"]).index(group).key("servers"), flag);
        if let Some(ca) = &cli.upstream_ca {
            let tls = file.upstream[group]
                .tls
                .get_or_insert_with(file::UpstreamTlsFile::default);
            tls.ca = Some(flag_path(ca));
            locator.set_by_flag(
                path(&["upstream"]).index(group).key("tls").key("ca"),
                "--upstream-ca",
            );
            locator.set_by_flag(path(&["upstream"]).index(group).key("tls"), "--upstream-ca");
        }
        if let Some(route) = route {
            locator.set_by_flag(path(&["route"]).index(route), flag);
        }
    }
    // After `--upstream`, so that the group it adds is included.
    if let Some(max_idle) = cli.upstream_max_idle {
        for group in &mut file.upstream {
            group.max_idle_per_server = max_idle;
        }
    }
    if let Some(lb) = &cli.lb {
        for (i, group) in file.upstream.iter_mut().enumerate() {
            group.lb = Some(lb.clone());
            locator.set_by_flag(path(&["upstream"]).index(i).key("lb"), "--lb");
        }
    }
    apply_health_flags(file, cli, locator);
    apply_failure_flags(file, cli, locator);
    apply_rate_limit_flags(file, cli, locator);
    apply_auth_flags(file, cli, locator);
    apply_compression_flags(file, cli, locator);
}

/// `--compress` sets `[compression] encodings` (`off`: none), `--compress-min-size` its
/// `min_size`.
fn apply_compression_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    let here = path(&["compression"]);
    if let Some(encodings) = &cli.compress {
        let off = encodings.len() == 1 && encodings[0].trim().eq_ignore_ascii_case("off");
        file.compression.encodings = if off { Vec::new() } else { encodings.clone() };
        locator.set_by_flag(here.key("encodings"), "--compress");
        for i in 0..encodings.len() {
            locator.set_by_flag(here.key("encodings").index(i), "--compress");
        }
    }
    if let Some(size) = cli.cache {
        file.cache.memory = Some(units::ByteSize(size));
        locator.set_by_flag(path(&["cache"]).key("memory"), "--cache");
    }
    if let Some(dir) = &cli.cache_dir {
        file.cache.disk_dir = Some(flag_path(dir));
        locator.set_by_flag(path(&["cache"]).key("disk_dir"), "--cache-dir");
    }
    if let Some(size) = cli.cache_disk {
        file.cache.disk_size = Some(units::ByteSize(size));
        locator.set_by_flag(path(&["cache"]).key("disk_size"), "--cache-disk");
    }
    if let Some(size) = cli.compress_min_size {
        file.compression.min_size = units::ByteSize(size);
        locator.set_by_flag(here.key("min_size"), "--compress-min-size");
    }
}

/// `--api-keys` and `--jwt-key` (with `--jwt-aud`, `--jwt-iss`) set `[auth]`'s API keys file
/// and JWT keys, and make every route require a credential.
fn apply_auth_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    let auth = path(&["auth"]);
    if let Some(keys) = &cli.api_keys {
        file.auth.api_keys_file = Some(flag_path(keys));
        locator.set_by_flag(auth.key("api_keys_file"), "--api-keys");
    }
    if let Some(key) = &cli.jwt_key {
        let jwt = file.auth.jwt.get_or_insert_with(auth::JwtFile::default);
        jwt.keys = Some(flag_path(key));
        jwt.jwks_url = None;
        locator.set_by_flag(auth.key("jwt"), "--jwt-key");
        locator.set_by_flag(auth.key("jwt").key("keys"), "--jwt-key");
    }
    if let Some(jwt) = &mut file.auth.jwt {
        if !cli.jwt_aud.is_empty() {
            jwt.audience.clone_from(&cli.jwt_aud);
        }
        if !cli.jwt_iss.is_empty() {
            jwt.issuer.clone_from(&cli.jwt_iss);
        }
    }
    if cli.api_keys.is_some() || cli.jwt_key.is_some() {
        "required".clone_into(&mut file.auth.mode);
        locator.set_by_flag(auth.key("mode"), "--api-keys");
    }
}

/// `--rate-limit` adds the limit `default` (or replaces the file's of that name) and applies
/// it to every route; `--rate-limit-burst` and `--rate-limit-key` set its burst and key.
fn apply_rate_limit_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    let Some(rate) = &cli.rate_limit else {
        return;
    };
    let mut limit = gateway::RateLimitFile::from_flags(rate.clone());
    if let Some(burst) = cli.rate_limit_burst {
        limit.burst = Some(burst);
    }
    if let Some(key) = &cli.rate_limit_key {
        limit.key = gateway::KeyFile::Many(key.clone());
    }
    let existing = file
        .rate_limit
        .iter()
        .position(|l| l.name == gateway::FLAG_LIMIT);
    let index = if let Some(index) = existing {
        file.rate_limit[index] = limit;
        index
    } else {
        file.rate_limit.push(limit);
        file.rate_limit.len() - 1
    };
    let here = path(&["rate_limit"]).index(index);
    locator.set_by_flag(here.clone(), "--rate-limit");
    locator.set_by_flag(here.key("rate"), "--rate-limit");
    locator.set_by_flag(here.key("burst"), "--rate-limit-burst");
    locator.set_by_flag(here.key("key"), "--rate-limit-key");
    if let Some(key) = &cli.rate_limit_key {
        for i in 0..key.len() {
            locator.set_by_flag(here.key("key").index(i), "--rate-limit-key");
        }
    }
    if !file
        .http
        .rate_limits
        .iter()
        .any(|n| n == gateway::FLAG_LIMIT)
    {
        file.http.rate_limits.push(gateway::FLAG_LIMIT.to_owned());
    }
}

/// `--rate-limit-burst` or `--rate-limit-key` without `--rate-limit` would be ignored: refused.
fn check_rate_limit_flags(cli: &Cli) -> Result<(), ConfigError> {
    if cli.rate_limit.is_some() {
        return Ok(());
    }
    let flag = if cli.rate_limit_burst.is_some() {
        "--rate-limit-burst"
    } else if cli.rate_limit_key.is_some() {
        "--rate-limit-key"
    } else {
        return Ok(());
    };
    Err(ConfigError::Flag {
        flag,
        message: "applies to the limit --rate-limit sets: give --rate-limit too".to_owned(),
    })
}

/// `--retry-*` and `--per-try-timeout` apply to every route; `--max-upstream-*`,
/// `--max-server-*` and `--retry-budget*` to every group.
fn apply_failure_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    for (i, route) in file.route.iter_mut().enumerate() {
        let here = path(&["route"]).index(i).key("retry");
        let retry = &mut route.retry;
        if let Some(tries) = cli.retry_tries {
            retry.tries = tries;
            locator.set_by_flag(here.key("tries"), "--retry-tries");
        }
        if let Some(on) = &cli.retry_on {
            retry.on.clone_from(on);
            locator.set_by_flag(here.key("on"), "--retry-on");
            for k in 0..on.len() {
                locator.set_by_flag(here.key("on").index(k), "--retry-on");
            }
        }
        if let Some(timeout) = cli.per_try_timeout {
            retry.per_try_timeout = Some(timeout);
            locator.set_by_flag(here.key("per_try_timeout"), "--per-try-timeout");
        }
        if let Some(size) = cli.retry_buffer_body {
            retry.buffer_body = units::ByteSize(size);
            locator.set_by_flag(here.key("buffer_body"), "--retry-buffer-body");
        }
        if let Some(percentile) = cli.hedge {
            let hedge = path(&["route"]).index(i).key("hedge");
            route
                .hedge
                .get_or_insert_with(file::HedgeFile::default)
                .percentile = percentile;
            locator.set_by_flag(hedge.clone(), "--hedge");
            locator.set_by_flag(hedge.key("percentile"), "--hedge");
        }
    }
    for (i, group) in file.upstream.iter_mut().enumerate() {
        let here = path(&["upstream"]).index(i);
        let breaker = &mut group.circuit_breaker;
        let limits = [
            (
                &mut breaker.max_connections,
                cli.max_upstream_connections,
                "max_connections",
                "--max-upstream-connections",
            ),
            (
                &mut breaker.max_requests,
                cli.max_upstream_requests,
                "max_requests",
                "--max-upstream-requests",
            ),
            (
                &mut breaker.max_connections_per_server,
                cli.max_server_connections,
                "max_connections_per_server",
                "--max-server-connections",
            ),
            (
                &mut breaker.max_requests_per_server,
                cli.max_server_requests,
                "max_requests_per_server",
                "--max-server-requests",
            ),
        ];
        for (field, value, key, flag) in limits {
            if let Some(value) = value {
                *field = Some(value);
                locator.set_by_flag(here.key("circuit_breaker").key(key), flag);
            }
        }
        if let Some(pending) = cli.max_upstream_pending {
            breaker.max_pending = pending;
            locator.set_by_flag(
                here.key("circuit_breaker").key("max_pending"),
                "--max-upstream-pending",
            );
        }
        if let Some(percent) = cli.retry_budget {
            group.retry_budget.percent = percent;
            locator.set_by_flag(here.key("retry_budget").key("percent"), "--retry-budget");
        }
        if let Some(min) = cli.retry_budget_min {
            group.retry_budget.min_per_second = min;
            locator.set_by_flag(
                here.key("retry_budget").key("min_per_second"),
                "--retry-budget-min",
            );
        }
    }
}

/// A `--health-*` flag with no active check to apply to would be ignored: refused instead.
fn check_health_flags(file: &FileConfig, cli: &Cli) -> Result<(), ConfigError> {
    let given = [
        ("--health-interval", cli.health_interval.is_some()),
        ("--health-timeout", cli.health_timeout.is_some()),
        ("--health-rise", cli.health_rise.is_some()),
        ("--health-fall", cli.health_fall.is_some()),
    ];
    let checks = file.upstream.iter().any(|g| g.health_check.is_some());
    match given.iter().find(|(_, given)| *given) {
        Some(&(flag, _)) if !checks => Err(ConfigError::Flag {
            flag,
            message: "no upstream group has an active check: add --health-check PATH or an \
                      [upstream.health_check] table"
                .to_owned(),
        }),
        _ => Ok(()),
    }
}

/// `--health-check` gives every group an HTTP check of that path; `--health-interval`,
/// `--health-timeout`, `--health-rise` and `--health-fall` then apply to every group's check;
/// `--eject-after` and `--slow-start` to every group.
fn apply_health_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    for (i, group) in file.upstream.iter_mut().enumerate() {
        let here = path(&["upstream"]).index(i);
        if let Some(check_path) = &cli.health_check {
            let check = group
                .health_check
                .get_or_insert_with(file::HealthCheckFile::default);
            "http".clone_into(&mut check.kind);
            check.path.clone_from(check_path);
            locator.set_by_flag(here.key("health_check"), "--health-check");
            locator.set_by_flag(here.key("health_check").key("path"), "--health-check");
        }
        if let Some(check) = &mut group.health_check {
            let check_here = here.key("health_check");
            if let Some(interval) = cli.health_interval {
                check.interval = interval;
                locator.set_by_flag(check_here.key("interval"), "--health-interval");
                // The default jitter follows the interval; one that no longer fits is dropped.
                if check.jitter.is_some_and(|j| j > interval) {
                    check.jitter = None;
                }
            }
            if let Some(timeout) = cli.health_timeout {
                check.timeout = timeout;
                locator.set_by_flag(check_here.key("timeout"), "--health-timeout");
            }
            if let Some(rise) = cli.health_rise {
                check.rise = rise;
                locator.set_by_flag(check_here.key("rise"), "--health-rise");
            }
            if let Some(fall) = cli.health_fall {
                check.fall = fall;
                locator.set_by_flag(check_here.key("fall"), "--health-fall");
            }
        }
        if let Some(n) = cli.eject_after {
            group.ejection.consecutive_failures = n;
            locator.set_by_flag(
                here.key("ejection").key("consecutive_failures"),
                "--eject-after",
            );
        }
        if let Some(slow_start) = cli.slow_start {
            group.slow_start = slow_start;
            locator.set_by_flag(here.key("slow_start"), "--slow-start");
        }
    }
}

/// `--tls-cert`/`--tls-key` make every listener a TLS one with those certificates (the
/// plain addresses of `listen` become `https` listeners); `--tls-min-version` and
/// `--tls-client-ca` then apply to every TLS listener.
fn apply_tls_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    if !cli.tls_cert.is_empty() || !cli.tls_key.is_empty() {
        // A cert without its key (or the other way round) stays in, empty, for the check
        // to refuse.
        let pairs: Vec<file::CertificateFile> = (0..cli.tls_cert.len().max(cli.tls_key.len()))
            .map(|i| file::CertificateFile {
                cert: cli
                    .tls_cert
                    .get(i)
                    .map(|p| flag_path(p))
                    .unwrap_or_default(),
                key: cli.tls_key.get(i).map(|p| flag_path(p)).unwrap_or_default(),
                ocsp: None,
                names: None,
                default: false,
            })
            .collect();
        listen_as_listeners(file, cli, locator);
        for (i, listener) in file.listener.iter_mut().enumerate() {
            listener.protocol = ListenerProtocol::Https;
            let tls = listener.tls.get_or_insert_with(file::TlsFile::default);
            tls.certificate.clone_from(&pairs);
            // A problem with a certificate names the flag it came from.
            let at = path(&["listener"]).index(i).key("tls").key("certificate");
            for j in 0..pairs.len() {
                locator.set_by_flag(at.index(j).key("cert"), "--tls-cert");
                locator.set_by_flag(at.index(j).key("key"), "--tls-key");
                locator.set_by_flag(at.index(j), "--tls-cert");
            }
        }
    }
    for (i, listener) in file.listener.iter_mut().enumerate() {
        let Some(tls) = listener.tls.as_mut() else {
            continue;
        };
        let at = path(&["listener"]).index(i).key("tls");
        if let Some(version) = cli.tls_min_version {
            tls.min_version = version;
            locator.set_by_flag(at.key("min_version"), "--tls-min-version");
        }
        if let Some(ca) = &cli.tls_client_ca {
            tls.client_ca = Some(flag_path(ca));
            tls.client_auth = file::ClientAuthMode::Required;
            locator.set_by_flag(at.key("client_ca"), "--tls-client-ca");
        }
    }
}

/// `--mode l4` makes every listener forward TCP to the group `--upstream` builds (`tls` when
/// `--tls-cert` made it TLS), `--mode udp` UDP; `--send-proxy-protocol` applies to every TCP listener and
/// `--proxy-protocol-from` to every listener.
fn apply_l4_flags(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    if let Some(mode @ (crate::cli::Mode::L4 | crate::cli::Mode::Udp)) = cli.mode {
        listen_as_listeners(file, cli, locator);
        for (i, listener) in file.listener.iter_mut().enumerate() {
            listener.protocol = match (mode, listener.protocol) {
                (crate::cli::Mode::Udp, _) => ListenerProtocol::Udp,
                (_, ListenerProtocol::Https | ListenerProtocol::Tls) => ListenerProtocol::Tls,
                _ => ListenerProtocol::Tcp,
            };
            locator.set_by_flag(path(&["listener"]).index(i).key("protocol"), "--mode");
            listener.upstream = Some(DEFAULT_UPSTREAM.to_owned());
            locator.set_by_flag(path(&["listener"]).index(i).key("upstream"), "--mode");
        }
    }
    if !cli.proxy_protocol_from.is_empty() {
        listen_as_listeners(file, cli, locator);
    }
    for (i, listener) in file.listener.iter_mut().enumerate() {
        let at = path(&["listener"]).index(i);
        if let Some(version) = cli.send_proxy_protocol {
            listener.send_proxy_protocol = Some(match version {
                crate::cli::ProxyVersionArg::V1 => crate::l4::ProxyVersion::V1,
                crate::cli::ProxyVersionArg::V2 => crate::l4::ProxyVersion::V2,
            });
            locator.set_by_flag(at.key("send_proxy_protocol"), "--send-proxy-protocol");
        }
        if !cli.proxy_protocol_from.is_empty() {
            listener
                .proxy_protocol_from
                .clone_from(&cli.proxy_protocol_from);
            for j in 0..cli.proxy_protocol_from.len() {
                locator.set_by_flag(
                    at.key("proxy_protocol_from").index(j),
                    "--proxy-protocol-from",
                );
            }
        }
    }
}

/// Makes the plain addresses of `listen` (or the default address, when no listener is given
/// at all) `[[listener]]` entries at the front, so that flags can set what only those have.
fn listen_as_listeners(file: &mut FileConfig, cli: &Cli, locator: &mut Locator<'_>) {
    if !cli.listen.is_empty() {
        // Their addresses still came from `--listen`.
        for i in 0..cli.listen.len() {
            locator.set_by_flag(path(&["listener"]).index(i).key("address"), "--listen");
        }
    }
    let addresses = file.listen.take().unwrap_or_else(|| {
        if file.listener.is_empty() {
            vec![validate::DEFAULT_LISTEN.to_owned()]
        } else {
            Vec::new()
        }
    });
    let converted = addresses.into_iter().map(|address| file::ListenerFile {
        address,
        ..file::ListenerFile::default()
    });
    file.listener.splice(0..0, converted);
}

/// A path given by a flag, made absolute from the current directory (the file's relative
/// paths are taken from the file's directory instead).
fn flag_path(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

fn apply_engine_flags(engine: &mut file::EngineFile, cli: &Cli, locator: &mut Locator<'_>) {
    if let Some(workers) = cli.workers {
        engine.workers = Some(workers);
        locator.set_by_flag(path(&["engine", "workers"]), "--workers");
    }
    if let Some(pin) = cli.pin_override() {
        engine.pin = pin;
    }
    if let Some(driver) = cli.io_driver {
        engine.io_driver = driver;
    }
    if cli.share_listen {
        engine.share_listen = true;
    }
    if let Some(interval) = cli.gossip_interval {
        engine.gossip_interval = interval;
        locator.set_by_flag(path(&["engine", "gossip_interval"]), "--gossip-interval");
    }
    if let Some(entries) = cli.ring_entries {
        engine.ring_entries = entries;
        locator.set_by_flag(path(&["engine", "ring_entries"]), "--ring-entries");
    }
}

fn apply_timeout_flags(timeouts: &mut file::TimeoutsFile, cli: &Cli, locator: &mut Locator<'_>) {
    let t = timeouts;
    for (flag, key, value, slot) in [
        (
            "--client-header-timeout",
            "client_header",
            cli.client_header_timeout,
            &mut t.client_header,
        ),
        (
            "--client-keepalive-timeout",
            "client_keepalive",
            cli.client_keepalive_timeout,
            &mut t.client_keepalive,
        ),
        (
            "--client-body-timeout",
            "client_body",
            cli.client_body_timeout,
            &mut t.client_body,
        ),
        (
            "--client-send-timeout",
            "client_send",
            cli.client_send_timeout,
            &mut t.client_send,
        ),
        (
            "--upstream-connect-timeout",
            "upstream_connect",
            cli.upstream_connect_timeout,
            &mut t.upstream_connect,
        ),
        (
            "--upstream-response-timeout",
            "upstream_response",
            cli.upstream_response_timeout,
            &mut t.upstream_response,
        ),
        (
            "--upstream-idle-timeout",
            "upstream_idle",
            cli.upstream_idle_timeout,
            &mut t.upstream_idle,
        ),
        ("--drain-timeout", "drain", cli.drain_timeout, &mut t.drain),
        (
            "--lingering-time",
            "lingering_time",
            cli.lingering_time,
            &mut t.lingering_time,
        ),
        (
            "--lingering-timeout",
            "lingering_timeout",
            cli.lingering_timeout,
            &mut t.lingering_timeout,
        ),
        (
            "--tunnel-idle-timeout",
            "tunnel_idle",
            cli.tunnel_idle_timeout,
            &mut t.tunnel_idle,
        ),
        (
            "--tls-handshake-timeout",
            "tls_handshake",
            cli.tls_handshake_timeout,
            &mut t.tls_handshake,
        ),
        (
            "--tcp-idle-timeout",
            "tcp_idle",
            cli.tcp_idle_timeout,
            &mut t.tcp_idle,
        ),
        (
            "--udp-idle-timeout",
            "udp_idle",
            cli.udp_idle_timeout,
            &mut t.udp_idle,
        ),
    ] {
        if let Some(value) = value {
            *slot = value;
            locator.set_by_flag(path(&["timeouts", key]), flag);
        }
    }
}

fn apply_limit_flags(limits: &mut file::LimitsFile, cli: &Cli, locator: &mut Locator<'_>) {
    let l = limits;
    for (flag, key, value, slot) in [
        (
            "--max-request-head",
            "max_request_head",
            cli.max_request_head,
            &mut l.max_request_head.0,
        ),
        (
            "--max-response-head",
            "max_response_head",
            cli.max_response_head,
            &mut l.max_response_head.0,
        ),
        ("--max-uri", "max_uri", cli.max_uri, &mut l.max_uri.0),
    ] {
        if let Some(value) = value {
            *slot = value;
            locator.set_by_flag(path(&["limits", key]), flag);
        }
    }
    if let Some(count) = cli.max_headers {
        l.max_headers = count;
        locator.set_by_flag(path(&["limits", "max_headers"]), "--max-headers");
    }
    if let Some(limit) = cli.max_body {
        l.max_body = limit;
        locator.set_by_flag(path(&["limits", "max_body"]), "--max-body");
    }
    if let Some(rate) = cli.min_body_rate {
        l.min_body_rate.0 = rate;
        locator.set_by_flag(path(&["limits", "min_body_rate"]), "--min-body-rate");
    }
    if let Some(count) = cli.max_connections_per_worker {
        l.max_connections_per_worker = count;
        locator.set_by_flag(
            path(&["limits", "max_connections_per_worker"]),
            "--max-connections-per-worker",
        );
    }
    if let Some(count) = cli.max_connections_per_ip {
        l.max_connections_per_ip = count;
        locator.set_by_flag(
            path(&["limits", "max_connections_per_ip"]),
            "--max-connections-per-ip",
        );
    }
}

fn apply_http_flags(http: &mut file::HttpFile, cli: &Cli, locator: &mut Locator<'_>) {
    if cli.merge_slashes {
        http.merge_slashes = true;
    }
    if let Some(mode) = cli.escaped_slashes {
        http.escaped_slashes = mode;
    }
    if cli.no_x_forwarded {
        http.x_forwarded = false;
    }
    if cli.forwarded {
        http.forwarded = true;
    }
    if cli.no_via {
        http.via = false;
    }
    if !cli.trusted_proxy.is_empty() {
        http.trusted_proxies.clone_from(&cli.trusted_proxy);
        locator.set_by_flag(path(&["http", "trusted_proxies"]), "--trusted-proxy");
    }
    if cli.request_id {
        http.request_id = true;
    }
    for (flag, key, given, edits) in [
        (
            "--request-header",
            "request_headers",
            &cli.request_header,
            &mut http.request_headers,
        ),
        (
            "--response-header",
            "response_headers",
            &cli.response_header,
            &mut http.response_headers,
        ),
    ] {
        for field in given {
            // clap has checked the "Name: value" shape.
            if let Some((name, value)) = field.split_once(':') {
                edits
                    .set
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        if !given.is_empty() {
            locator.set_by_flag(path(&["http", key]), flag);
        }
    }
}

/// Builds or replaces the servers of the upstream group `default`, and appends a catch-all
/// route `default` after the file's routes when none sends there. Returns the group's index
/// and the appended route's index.
fn add_default_upstream(file: &mut FileConfig, servers: Vec<String>) -> (usize, Option<usize>) {
    let group = if let Some(index) = file
        .upstream
        .iter()
        .position(|u| u.name == DEFAULT_UPSTREAM)
    {
        file.upstream[index].servers = servers;
        index
    } else {
        file.upstream.push(UpstreamFile {
            name: DEFAULT_UPSTREAM.to_owned(),
            servers,
            max_idle_per_server: file::default_max_idle_per_server(),
            tls: None,
            lb: None,
            weights: Vec::new(),
            backup: Vec::new(),
            health_check: None,
            ejection: file::EjectionFile::default(),
            slow_start: file::default_slow_start(),
            circuit_breaker: file::CircuitBreakerFile::default(),
            retry_budget: file::RetryBudgetFile::default(),
            resolve: None,
        });
        file.upstream.len() - 1
    };
    if file
        .route
        .iter()
        .any(|r| r.upstream.as_deref() == Some(DEFAULT_UPSTREAM))
    {
        return (group, None);
    }
    // A route of the file may already be called "default" (and send elsewhere).
    let taken = |name: &str| {
        file.route.iter().enumerate().any(|(i, r)| {
            r.name
                .clone()
                .unwrap_or_else(|| validate::default_route_name(i))
                == name
        })
    };
    let mut name = DEFAULT_UPSTREAM.to_owned();
    let mut suffix = 2;
    while taken(&name) {
        name = format!("{DEFAULT_UPSTREAM}-{suffix}");
        suffix += 1;
    }
    file.route
        .push(RouteFile::catch_all(name, DEFAULT_UPSTREAM.to_owned()));
    (group, Some(file.route.len() - 1))
}
