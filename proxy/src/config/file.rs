//! Stage one of the configuration: the TOML file as typed serde structs.
//!
//! Every struct denies unknown fields, and every optional field's default lives in exactly one
//! place: the `Default` impl of its struct (or, for `[[upstream]]` and `[[route]]`, whose
//! required fields have no sensible default, a `default_*` function beside the field). Values
//! here are still unchecked: addresses are strings, names are unresolved. `validate.rs` turns a
//! [`FileConfig`] into a [`super::Config`]. Command-line flags are applied to a `FileConfig`
//! before validation, so a flag and the file key it overrides are checked by the same code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{
    deserialize_duration, deserialize_duration_or_zero, deserialize_some_duration,
    serialize_duration, serialize_some_duration, BodyLimit, ByteSize,
};
use super::{EscapedSlashesMode, IoDriver, ListenerProtocol, TlsVersion};
use crate::l4::ProxyVersion;

/// The whole file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Addresses to accept plain HTTP connections on, `host:port`. Default: `None`, meaning
    /// `["127.0.0.1:8080"]` when there is no `[[listener]]` either.
    pub listen: Option<Vec<String>>,
    /// `[[listener]]` entries, after those of `listen`. Default: none.
    pub listener: Vec<ListenerFile>,
    /// Log verbosity: `error`, `warn`, `info`, `debug` or `trace`. Default: `"info"`.
    pub log_level: String,
    /// `[engine]`: workers and the I/O driver.
    pub engine: EngineFile,
    /// `[timeouts]`.
    pub timeouts: TimeoutsFile,
    /// `[limits]`.
    pub limits: LimitsFile,
    /// `[http]`: how requests are normalized and which filters every route gets.
    pub http: HttpFile,
    /// `[[upstream]]` groups. Default: none.
    pub upstream: Vec<UpstreamFile>,
    /// `[[route]]`s, matched in order. Default: none.
    pub route: Vec<RouteFile>,
    /// `[access_log]`. Default: off.
    pub access_log: AccessLogFile,
    /// `[admin]`. Default: no admin listener.
    pub admin: AdminFile,
    /// Where the running process writes its process id (for `ringwall reload` and scripts);
    /// removed when it exits. Default: `None` (none written).
    pub pid_file: Option<String>,
    /// `[resolver]`: how upstream host names are resolved.
    pub resolver: ResolverFile,
    /// `[[rate_limit]]`s, applied by `[http].rate_limits` and a route's `rate_limits`.
    /// Default: none.
    pub rate_limit: Vec<super::gateway::RateLimitFile>,
    /// `[auth]`: the credentials accepted. Default: none.
    pub auth: super::auth::AuthFile,
    /// `[[consumer]]`s. Default: none.
    pub consumer: Vec<super::auth::ConsumerFile>,
    /// `[[plan]]`s. Default: none.
    pub plan: Vec<super::auth::PlanFile>,
    /// `[compression]`: responses compressed on the fly. Default: off.
    pub compression: super::compress::CompressionFile,
    /// `[cache]`: the response cache. Default: off.
    pub cache: super::cache::CacheFile,
}

/// `[resolver]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ResolverFile {
    /// A hosts file (`/etc/hosts` syntax: an address, then names) consulted before the system
    /// resolver, read again at every resolution. Default: `None`.
    pub hosts_file: Option<String>,
}

/// `[admin]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminFile {
    /// `host:port` of the admin listener (`/healthz`, `/status`). Default: `None` (off).
    pub address: Option<String>,
}

/// `[access_log]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AccessLogFile {
    /// `"off"`, `"stdout"`, or a file path. Default: `"off"`.
    pub target: String,
    /// `"combined"`, `"json"` or `"template"`. Default: `"combined"`.
    pub format: String,
    /// With `format = "template"`: text with `${field}` references. Default: `None`.
    pub template: Option<String>,
}

impl Default for AccessLogFile {
    fn default() -> Self {
        AccessLogFile {
            target: "off".to_owned(),
            format: "combined".to_owned(),
            template: None,
        }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: None,
            listener: Vec::new(),
            log_level: "info".to_owned(),
            engine: EngineFile::default(),
            timeouts: TimeoutsFile::default(),
            limits: LimitsFile::default(),
            http: HttpFile::default(),
            upstream: Vec::new(),
            route: Vec::new(),
            access_log: AccessLogFile::default(),
            admin: AdminFile::default(),
            pid_file: None,
            resolver: ResolverFile::default(),
            rate_limit: Vec::new(),
            auth: super::auth::AuthFile::default(),
            consumer: Vec::new(),
            plan: Vec::new(),
            compression: super::compress::CompressionFile::default(),
            cache: super::cache::CacheFile::default(),
        }
    }
}

/// One `[[listener]]`. `address` is required.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerFile {
    /// Name for logs. Default: `None`, meaning `"listener-<index>"` (0-based over all
    /// listeners, those of `listen` first).
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` to accept connections on. Required.
    pub address: String,
    /// What the connections speak: `http`, `https`, `tcp`, `tls` or `udp`. Default: `http`.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// `[listener.tls]`: required for `https` and `tls`, refused otherwise. Default: `None`.
    #[serde(default)]
    pub tls: Option<TlsFile>,
    /// `tcp` and `tls` listeners: the `[[upstream]]` group connections are forwarded to
    /// (for `tcp` with `sni_routes`: the one for names no route covers). Default: `None`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// `tcp` listeners: TLS connections passed through by the SNI of their `ClientHello`, to
    /// the first route whose hosts match. Default: none.
    #[serde(default)]
    pub sni_routes: Vec<SniRouteFile>,
    /// `tcp` and `tls` listeners: send a PROXY protocol header (`"v1"` or `"v2"`) first on
    /// every connection to the origin. Default: `None`.
    #[serde(default)]
    pub send_proxy_protocol: Option<ProxyVersion>,
    /// Addresses or CIDR blocks of load balancers in front whose connections start with a
    /// PROXY protocol header (v1 or v2); the client address is taken from it. Default: none.
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

/// One of a `tcp` listener's `sni_routes`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SniRouteFile {
    /// Host patterns (exact or `*.`), as a route's `hosts`. Required, non-empty.
    pub hosts: Vec<String>,
    /// The `[[upstream]]` group. Required.
    pub upstream: String,
}

/// `[listener.tls]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    /// `[[listener.tls.certificate]]`: at least one. Default: none.
    #[serde(default)]
    pub certificate: Vec<CertificateFile>,
    /// The oldest version accepted, `"1.2"` or `"1.3"`. Default: `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// PEM file of CAs to check client certificates against. Default: `None` (no client
    /// certificates asked for).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// With `client_ca`: `required` (no certificate, no handshake) or `optional` (checked if
    /// sent). Default: `required`.
    #[serde(default)]
    pub client_auth: ClientAuthMode,
    /// Sessions remembered per worker for resumption by session ID; 0 turns it off.
    /// Default: `4096`.
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// Issue session tickets. Default: `true`.
    #[serde(default = "default_true")]
    pub session_tickets: bool,
    /// Refuse clients whose SNI no certificate covers, or that send none. Default: `false`.
    #[serde(default)]
    pub strict_sni: bool,
}

impl Default for TlsFile {
    fn default() -> Self {
        TlsFile {
            certificate: Vec::new(),
            min_version: TlsVersion::default(),
            client_ca: None,
            client_auth: ClientAuthMode::default(),
            session_cache: default_session_cache(),
            session_tickets: true,
            strict_sni: false,
        }
    }
}

fn default_session_cache() -> usize {
    4096
}

fn default_true() -> bool {
    true
}

/// `required` or `optional`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientAuthMode {
    #[default]
    Required,
    Optional,
}

/// `[[listener.tls.certificate]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFile {
    /// PEM file: the certificate, then its intermediates. Required.
    pub cert: String,
    /// PEM file: its private key (PKCS#8, PKCS#1 or SEC1). Required.
    pub key: String,
    /// DER file: an OCSP response to staple. Default: `None`.
    #[serde(default)]
    pub ocsp: Option<String>,
    /// Names it serves (exact, or `*.example.com`). Default: `None`, meaning the
    /// certificate's DNS names.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// Answers clients that send no SNI, or a name no certificate covers. Default: `false`
    /// (then the first certificate does).
    #[serde(default)]
    pub default: bool,
}

/// `[engine]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EngineFile {
    /// Worker threads, one event loop each. Default: `None`, meaning one per online core
    /// (`std::thread::available_parallelism`).
    pub workers: Option<usize>,
    /// Pin each worker to its own core. Default: `true`.
    pub pin: bool,
    /// Which I/O driver the workers run. Default: `auto`.
    pub io_driver: IoDriver,
    /// Submission queue entries per ring (uring drivers), `256..=32768`. Default: `1024`.
    pub ring_entries: u32,
    /// Share listening addresses with another process on purpose (`SO_REUSEPORT`); otherwise
    /// an address something already listens on stops the start. Default: `false`.
    pub share_listen: bool,
    /// How often workers exchange what they batched (health, limits' consumption) on the
    /// message path between them. Default: `"20ms"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub gossip_interval: Duration,
}

impl Default for EngineFile {
    fn default() -> Self {
        EngineFile {
            workers: None,
            pin: true,
            io_driver: IoDriver::Auto,
            ring_entries: 1024,
            share_listen: false,
            gossip_interval: Duration::from_millis(20),
        }
    }
}

/// `[timeouts]`, all humantime strings greater than zero.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TimeoutsFile {
    /// The whole request head must arrive within this (else 408). Default: `10s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub client_header: Duration,
    /// Idle time allowed between requests on a client connection. Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub client_keepalive: Duration,
    /// The longest wait for the next bytes of a request body (else 408). Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub client_body: Duration,
    /// The longest a client may leave a response unread before it is dropped. Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub client_send: Duration,
    /// Connecting to an upstream server (502 on failure, 504 on timeout). Default: `5s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub upstream_connect: Duration,
    /// Wait for the response head, and the longest gap between body reads (504). Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub upstream_response: Duration,
    /// Idle pooled upstream connections are closed after this. Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub upstream_idle: Duration,
    /// On SIGINT/SIGTERM, in-flight requests get this long to finish. Default: `10s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub drain: Duration,
    /// After a refusal, how long ringwall goes on reading (and discarding) what the client
    /// still sends, so the refusal is not lost to a reset (nginx `lingering_time`).
    /// Default: `30s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub lingering_time: Duration,
    /// The longest wait for more bytes while lingering (nginx `lingering_timeout`).
    /// Default: `5s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub lingering_timeout: Duration,
    /// An upgraded connection (WebSocket) is closed after this long with no byte either way
    /// (HAProxy's `timeout tunnel`). Default: `1h`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub tunnel_idle: Duration,
    /// A TLS handshake must complete within this, else the connection is closed.
    /// Default: `10s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub tls_handshake: Duration,
    /// A forwarded TCP connection (`tcp` and `tls` listeners) with no byte either way for this
    /// long is closed (nginx's `proxy_timeout`). Default: `10m`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub tcp_idle: Duration,
    /// A UDP session without a datagram either way for this long ends. Default: `60s`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub udp_idle: Duration,
}

// Duration::from_mins needs Rust 1.91; the workspace's rust-version is 1.85.
#[allow(clippy::duration_suboptimal_units)]
impl Default for TimeoutsFile {
    fn default() -> Self {
        TimeoutsFile {
            client_header: Duration::from_secs(10),
            client_keepalive: Duration::from_secs(60),
            client_body: Duration::from_secs(60),
            client_send: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            tunnel_idle: Duration::from_secs(3600),
            tls_handshake: Duration::from_secs(10),
            tcp_idle: Duration::from_secs(600),
            udp_idle: Duration::from_secs(60),
        }
    }
}

/// `[limits]`.
#[allow(clippy::struct_field_names)] // the `max_` prefix is part of the file's key names
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LimitsFile {
    /// Largest request head (request line and headers), else 431. Default: `32KiB`.
    pub max_request_head: ByteSize,
    /// Largest response head from an upstream, else 502. Default: `64KiB`.
    pub max_response_head: ByteSize,
    /// Most header fields in a request, else 431. Default: `100`.
    pub max_headers: usize,
    /// Longest request target, else 414. Default: `8KiB`.
    pub max_uri: ByteSize,
    /// Largest request body, else 413; `"unlimited"` for no limit. Default: `"unlimited"`.
    pub max_body: BodyLimit,
    /// After a 5 s grace period, a request body must arrive at least this fast on average (bytes
    /// per second), else 408; `0` turns the check off. Default: `240` (Kestrel's default).
    pub min_body_rate: ByteSize,
    /// Most open client connections per worker; at the limit the worker pauses accepting until
    /// one closes. Default: `16384`.
    pub max_connections_per_worker: usize,
    /// Most open connections from one client address across all workers (IPv6: per /64), else
    /// 429; `0` means no limit. Default: `0`.
    pub max_connections_per_ip: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_request_head: ByteSize(32 << 10),
            max_response_head: ByteSize(64 << 10),
            max_headers: 100,
            max_uri: ByteSize(8 << 10),
            max_body: BodyLimit(None),
            min_body_rate: ByteSize(240),
            max_connections_per_worker: 16384,
            max_connections_per_ip: 0,
        }
    }
}

/// `[http]`: request normalization and the filters every route gets unless it says otherwise.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpFile {
    /// Merge repeated `/` in request paths before routing. Default: `false`.
    pub merge_slashes: bool,
    /// `%2F` in a path: `keep`, `reject` (400) or `decode`. Default: `keep`.
    pub escaped_slashes: EscapedSlashesMode,
    /// Send `X-Forwarded-For`, `-Proto` and `-Host` upstream. Default: `true`.
    pub x_forwarded: bool,
    /// Send `Forwarded` (RFC 7239) upstream. Default: `false`.
    pub forwarded: bool,
    /// Add ringwall to `Via` on requests and responses. Default: `true`.
    pub via: bool,
    /// Addresses or CIDR blocks of proxies in front of ringwall whose `X-Forwarded-For` and
    /// `Forwarded` are kept and from which the real client address is taken. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Pass a valid incoming request id, or make one, to the origin and back. Default: `false`.
    pub request_id: bool,
    /// The field that carries the request id. Default: `"X-Request-Id"`.
    pub request_id_header: String,
    /// Edits of the request sent upstream, on every route (before the route's own).
    pub request_headers: HeaderEditsFile,
    /// Edits of the response sent to the client, on every route (before the route's own).
    pub response_headers: HeaderEditsFile,
    /// `[[rate_limit]]` names applied to every route (before the route's own). Default: none.
    pub rate_limits: Vec<String>,
}

impl Default for HttpFile {
    fn default() -> Self {
        HttpFile {
            merge_slashes: false,
            escaped_slashes: EscapedSlashesMode::Keep,
            x_forwarded: true,
            forwarded: false,
            via: true,
            trusted_proxies: Vec::new(),
            request_id: false,
            request_id_header: "X-Request-Id".to_owned(),
            request_headers: HeaderEditsFile::default(),
            response_headers: HeaderEditsFile::default(),
            rate_limits: Vec::new(),
        }
    }
}

/// `request_headers` / `response_headers`: applied in the order remove, set, add.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HeaderEditsFile {
    /// Fields removed. Default: none.
    pub remove: Vec<String>,
    /// Fields replaced (or added when absent), by name. Default: none.
    pub set: BTreeMap<String, String>,
    /// Fields added beside any of the same name, by name. Default: none.
    pub add: BTreeMap<String, String>,
}

/// `[[route]].return`: a response of the route's own.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReturnFile {
    /// `200..=599`. Required.
    pub status: u16,
    /// The body. Default: `""`.
    #[serde(default)]
    pub body: String,
    /// `Location` (required for 301, 302, 303, 307 and 308). Default: none.
    #[serde(default)]
    pub location: Option<String>,
    /// Default: `"text/plain; charset=utf-8"` when there is a body.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `[[route]].replace_prefix`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplacePrefixFile {
    pub from: String,
    pub to: String,
}

/// `[[route]].regex_rewrite`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegexRewriteFile {
    /// A `regex` crate pattern matched against the path.
    pub pattern: String,
    /// The replacement; `$1`, `${name}` refer to capture groups.
    pub replace: String,
}

/// `[[route]].timeouts`: the timeouts that apply once a request is routed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RouteTimeoutsFile {
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub client_body: Option<Duration>,
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub client_send: Option<Duration>,
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub upstream_connect: Option<Duration>,
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub upstream_response: Option<Duration>,
}

/// `[[route]].limits`: the limits that apply once a request is routed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RouteLimitsFile {
    pub max_body: Option<BodyLimit>,
    pub min_body_rate: Option<ByteSize>,
}

/// One `[[upstream]]` group. `name` and `servers` are required.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    /// The name routes refer to. Required, unique.
    pub name: String,
    /// `host:port` of each server, resolved once at load time. Required, non-empty.
    pub servers: Vec<String>,
    /// Most idle pooled connections kept per server (0 disables pooling). Default: `64`.
    #[serde(default = "default_max_idle_per_server")]
    pub max_idle_per_server: usize,
    /// How a server is chosen: `p2c`, `peak-ewma`, `round-robin`, `weighted`, `least-conn`,
    /// `random`, `hash:ip`, `hash:header:NAME`, `hash:cookie:NAME` or `hash:path`.
    /// Default: `None`, meaning `peak-ewma`.
    #[serde(default)]
    pub lb: Option<String>,
    /// Each server's weight, in `servers` order (at least 1). Default: empty, every weight 1.
    #[serde(default)]
    pub weights: Vec<u32>,
    /// `host:port` of servers used only while no server of `servers` may take requests
    /// (nginx's and HAProxy's `backup`), each of weight 1. Default: none.
    #[serde(default)]
    pub backup: Vec<String>,
    /// `[upstream.tls]`: settings for `https://` servers. Default: `None`.
    #[serde(default)]
    pub tls: Option<UpstreamTlsFile>,
    /// Resolve the servers' host names again this often, and follow the answer: every address
    /// a name resolves to is a server. Default: `None`, resolved once at load, the first
    /// address kept.
    #[serde(
        default,
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub resolve: Option<Duration>,
    /// `[upstream.health_check]`: active checks. Default: `None`, no active checks.
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
    /// `[upstream.ejection]`: passive checks (outlier detection), on by default.
    #[serde(default)]
    pub ejection: EjectionFile,
    /// `[upstream.circuit_breaker]`: limits whose overflow answers 503 at once. Default: none.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerFile,
    /// `[upstream.retry_budget]`: how many retries the group takes. Default: 20 % of the
    /// requests plus 10 per second.
    #[serde(default)]
    pub retry_budget: RetryBudgetFile,
    /// How long a server back in service (up again, or its ejection over) takes to ramp from a
    /// tenth of its share to all of it; `"0s"` turns slow start off. Default: `"10s"`.
    #[serde(
        default = "default_slow_start",
        deserialize_with = "deserialize_duration_or_zero",
        serialize_with = "serialize_duration"
    )]
    pub slow_start: Duration,
}

/// Default of `[[upstream]].slow_start`.
pub(crate) fn default_slow_start() -> Duration {
    Duration::from_secs(10)
}

/// `[upstream.health_check]`: one worker checks each server of the group on an interval, and
/// every worker follows what it finds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HealthCheckFile {
    /// `http` (a request, its status and optionally its body checked), `tcp` (a connection
    /// accepted) or `tls` (a TLS handshake completed; `https://` servers). Default: `"http"`.
    pub kind: String,
    /// The request's path (`http`). Default: `"/"`.
    pub path: String,
    /// The request's method (`http`). Default: `"GET"`.
    pub method: String,
    /// The request's `Host` (`http`). Default: `None`, meaning the server's name (its TLS
    /// name, else its address).
    pub host: Option<String>,
    /// The statuses that pass, `"200"` or `"200-399"` (`http`). Default: `"200-399"`.
    pub status: String,
    /// Text the response body must contain, within its first 64 KiB (`http`). Default: `None`.
    pub body: Option<String>,
    /// Time between two checks of a server. Default: `"5s"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub interval: Duration,
    /// Time a check may take, the connection included. Default: `"2s"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub timeout: Duration,
    /// Passed checks in a row that bring a server back up. Default: `2`.
    pub rise: u32,
    /// Failed checks in a row that take a server down. Default: `3`.
    pub fall: u32,
    /// Each wait moved at random by up to this much either way. Default: `None`, meaning a
    /// tenth of the interval.
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub jitter: Option<Duration>,
}

impl Default for HealthCheckFile {
    fn default() -> Self {
        HealthCheckFile {
            kind: "http".to_owned(),
            path: "/".to_owned(),
            method: "GET".to_owned(),
            host: None,
            status: "200-399".to_owned(),
            body: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            jitter: None,
        }
    }
}

/// `[upstream.circuit_breaker]`: each limit is for the whole process, split evenly between
/// the workers (at least 1 each). A request over `max_requests` (or finding every server at
/// its own limits) waits, while fewer than `max_pending` wait, for up to `pending_timeout`;
/// otherwise it is answered 503 at once.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CircuitBreakerFile {
    /// Most connections open to the group's servers. Default: no limit.
    pub max_connections: Option<u32>,
    /// Most requests outstanding on the group. Default: no limit.
    pub max_requests: Option<u32>,
    /// Most requests waiting for room. Default: `0`, none wait.
    pub max_pending: u32,
    /// How long a request waits for room. Default: `None`, meaning
    /// `timeouts.upstream_connect`.
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub pending_timeout: Option<Duration>,
    /// Most connections open to one server. Default: no limit.
    pub max_connections_per_server: Option<u32>,
    /// Most requests outstanding on one server. Default: no limit.
    pub max_requests_per_server: Option<u32>,
}

/// `[upstream.retry_budget]`: per worker, over the last 10 s, retries may be at most
/// `percent` of the requests begun plus `min_per_second` a second (Envoy's and linkerd's
/// budgets). Tries after a refused connection are not counted: nothing reached the origin.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RetryBudgetFile {
    /// Default: `20`.
    pub percent: u32,
    /// Default: `10`.
    pub min_per_second: u32,
}

impl Default for RetryBudgetFile {
    fn default() -> Self {
        RetryBudgetFile {
            percent: 20,
            min_per_second: 10,
        }
    }
}

/// `[upstream.ejection]`: passive checks. A server whose requests fail so many times in a row
/// (no connection, a timeout, a broken or 5xx response) is taken out on every worker for a
/// while that doubles with each ejection in a row.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EjectionFile {
    /// Failures in a row that eject a server; `0` turns passive checks off. Default: `5`.
    pub consecutive_failures: u32,
    /// The first ejection's length. Default: `"10s"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub time: Duration,
    /// The longest ejection. Default: `"5m"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub max_time: Duration,
    /// The most of the group's servers ejected at once, in percent (a group of two or more
    /// may always have one ejected; a single server never is). Default: `50`.
    pub max_percent: u32,
}

impl Default for EjectionFile {
    fn default() -> Self {
        EjectionFile {
            consecutive_failures: 5,
            time: Duration::from_secs(10),
            max_time: Duration::from_secs(300),
            max_percent: 50,
        }
    }
}

/// `[upstream.tls]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamTlsFile {
    /// PEM file of the CAs the servers' certificates must chain to. Default: `None`, meaning
    /// the system's roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// The name sent as SNI and checked against every server's certificate. Default: `None`,
    /// meaning the host of each server's URL.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM file of a client certificate chain to present. Default: `None`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM file of its private key; required with `client_cert`. Default: `None`.
    #[serde(default)]
    pub client_key: Option<String>,
}

/// Default of `[[upstream]].max_idle_per_server`.
pub(crate) fn default_max_idle_per_server() -> usize {
    64
}

/// One `[[route]]`. Exactly one of `upstream` and `return` is required.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    /// Name for logs and errors. Default: `None`, meaning `"route-<index>"` (0-based).
    #[serde(default)]
    pub name: Option<String>,
    /// Host patterns; any of them must match. Default: `None`, meaning any host.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// The request path must start with this. Default: `"/"`.
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// Allowed methods. Default: `None`, meaning any method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Headers that must be present with exactly these values. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The `[[upstream]]` group to forward to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A response of the route's own instead of forwarding.
    #[serde(default, rename = "return")]
    pub return_response: Option<ReturnFile>,
    /// Host header sent upstream. Default: `None`, meaning the client's Host is kept.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// Remove this prefix from the path sent upstream. Default: none.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Replace a prefix of the path sent upstream. Default: none.
    #[serde(default)]
    pub replace_prefix: Option<ReplacePrefixFile>,
    /// Rewrite the path sent upstream with a regular expression. Default: none.
    #[serde(default)]
    pub regex_rewrite: Option<RegexRewriteFile>,
    /// Overrides `[http].x_forwarded`.
    #[serde(default)]
    pub x_forwarded: Option<bool>,
    /// Overrides `[http].forwarded`.
    #[serde(default)]
    pub forwarded: Option<bool>,
    /// Overrides `[http].via`.
    #[serde(default)]
    pub via: Option<bool>,
    /// Overrides `[http].request_id`.
    #[serde(default)]
    pub request_id: Option<bool>,
    /// Edits of the request sent upstream, after `[http].request_headers`.
    #[serde(default)]
    pub request_headers: HeaderEditsFile,
    /// Edits of the response sent to the client, after `[http].response_headers`.
    #[serde(default)]
    pub response_headers: HeaderEditsFile,
    /// Overrides of `[timeouts]` for this route.
    #[serde(default)]
    pub timeouts: RouteTimeoutsFile,
    /// Overrides of `[limits]` for this route.
    #[serde(default)]
    pub limits: RouteLimitsFile,
    /// Requests that arrive on a plain listener are redirected to `https://` (`true`: 301 to
    /// port 443; a table sets `status` and `port`); those on TLS listeners are served.
    /// Default: `None`.
    #[serde(default)]
    pub https_redirect: Option<HttpsRedirectFile>,
    /// `[route.retry]`: when a failed try goes on to another server.
    #[serde(default)]
    pub retry: RetryFile,
    /// `[route.hedge]`: a second try of an idempotent request without a body, on another
    /// server, when the first has not answered within a percentile of the route's recent
    /// response times. Default: `None`, no hedging.
    #[serde(default)]
    pub hedge: Option<HedgeFile>,
    /// `[[rate_limit]]` names applied to this route, after `[http].rate_limits`. Default: none.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// `[route.auth]`: who may use the route. Default: `[auth].mode`, every credential.
    #[serde(default)]
    pub auth: super::auth::RouteAuthFile,
    /// Compress this route's responses as `[compression]` says (`false`: never). Default:
    /// `None`, meaning yes when `[compression]` has encodings.
    #[serde(default)]
    pub compress: Option<bool>,
    /// `false`, or `[route.cache]`: how this route's responses are cached. Default: `None`,
    /// cached by RFC 9111 when `[cache] memory` is set.
    #[serde(default)]
    pub cache: Option<super::cache::RouteCacheFile>,
}

/// `[route.hedge]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HedgeFile {
    /// The percentile of the route's recent response times (per worker, last 10 to 20 s) after
    /// which the second try goes, 50 to 99. Default: `95`.
    pub percentile: u32,
    /// The shortest wait before a second try. Default: `"5ms"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub min_delay: Duration,
    /// The longest. Default: `"1s"`.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "serialize_duration"
    )]
    pub max_delay: Duration,
}

impl Default for HedgeFile {
    fn default() -> Self {
        HedgeFile {
            percentile: 95,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// `[route.retry]`. A try that never reached the origin (no connection) always goes on to the
/// next server; the conditions of `on` apply to idempotent requests only, and to a request
/// with a body only when the body was buffered (`buffer_body`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RetryFile {
    /// Most tries of one request, the first included; `0`: one per server in service.
    /// Default: `0`.
    pub tries: u32,
    /// What else makes an idempotent request try the next server: `error` (the connection
    /// broke or the response was malformed before its head), `timeout` (no response head
    /// within the try's timeout), and statuses (`"502"`, `"5xx"`). Default: `["error",
    /// "timeout"]` (nginx's `proxy_next_upstream`).
    pub on: Vec<String>,
    /// How long one try waits for the response head. Default: `None`, meaning
    /// `timeouts.upstream_response`.
    #[serde(
        deserialize_with = "deserialize_some_duration",
        serialize_with = "serialize_some_duration"
    )]
    pub per_try_timeout: Option<Duration>,
    /// A request body of a known length up to this size is read whole before the first try,
    /// so that a retry can send it again; a larger or chunked one streams and is not retried
    /// once it began. `0` turns buffering off. Default: `"64KiB"`.
    pub buffer_body: ByteSize,
}

impl Default for RetryFile {
    fn default() -> Self {
        RetryFile {
            tries: 0,
            on: vec!["error".to_owned(), "timeout".to_owned()],
            per_try_timeout: None,
            buffer_body: ByteSize(64 * 1024),
        }
    }
}

/// `https_redirect = true`, or `https_redirect = { status = 308, port = 8443 }`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum HttpsRedirectFile {
    On(bool),
    Table(HttpsRedirectTable),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpsRedirectTable {
    /// 301, 302, 303, 307 or 308. Default: `301`.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// The port in the `Location`. Default: `443` (left out of the URL).
    #[serde(default = "default_https_port")]
    pub port: u16,
}

fn default_redirect_status() -> u16 {
    301
}

fn default_https_port() -> u16 {
    443
}

impl RouteFile {
    /// A route matching everything and forwarding to `upstream`, with every default.
    pub(crate) fn catch_all(name: String, upstream: String) -> Self {
        RouteFile {
            name: Some(name),
            hosts: None,
            path_prefix: default_path_prefix(),
            methods: None,
            headers: BTreeMap::new(),
            upstream: Some(upstream),
            return_response: None,
            host_rewrite: None,
            strip_prefix: None,
            replace_prefix: None,
            regex_rewrite: None,
            x_forwarded: None,
            forwarded: None,
            via: None,
            request_id: None,
            request_headers: HeaderEditsFile::default(),
            response_headers: HeaderEditsFile::default(),
            timeouts: RouteTimeoutsFile::default(),
            limits: RouteLimitsFile::default(),
            https_redirect: None,
            retry: RetryFile::default(),
            hedge: None,
            rate_limits: Vec::new(),
            auth: super::auth::RouteAuthFile::default(),
            compress: None,
            cache: None,
        }
    }
}

/// Default of `[[route]].path_prefix`.
pub(crate) fn default_path_prefix() -> String {
    "/".to_owned()
}
