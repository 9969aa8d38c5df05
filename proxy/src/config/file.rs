//! Stage one of the configuration: the TOML file as typed serde structs.
//!
//! Every struct denies unknown fields, and every optional field's default lives in exactly one
//! place: the `Default` impl of its struct (or, for `[[upstream]]` and `[[route]]`, whose
//! required fields have no sensible default, a `default_*` function beside the field). Values
//! here are still unchecked: addresses are strings, names are unresolved. `validate.rs` turns a
//! [`FileConfig`] into a [`super::Config`]. Command-line flags are applied to a `FileConfig`
//! before validation, so a flag and the file key it overrides are checked by the same code.

use std::time::Duration;

use serde::Deserialize;

use super::units::{deserialize_duration, BodyLimit, ByteSize};
use super::IoDriver;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Addresses to accept client connections on, `host:port`.
    /// Default: `["127.0.0.1:8080"]`.
    pub listen: Vec<String>,
    /// Log verbosity: `error`, `warn`, `info`, `debug` or `trace`. Default: `"info"`.
    pub log_level: String,
    /// `[engine]`: workers and the I/O driver.
    pub engine: EngineFile,
    /// `[timeouts]`.
    pub timeouts: TimeoutsFile,
    /// `[limits]`.
    pub limits: LimitsFile,
    /// `[[upstream]]` groups. Default: none.
    pub upstream: Vec<UpstreamFile>,
    /// `[[route]]`s, matched in order. Default: none.
    pub route: Vec<RouteFile>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: vec!["127.0.0.1:8080".to_owned()],
            log_level: "info".to_owned(),
            engine: EngineFile::default(),
            timeouts: TimeoutsFile::default(),
            limits: LimitsFile::default(),
            upstream: Vec::new(),
            route: Vec::new(),
        }
    }
}

/// `[engine]`.
#[derive(Clone, Debug, Deserialize)]
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
}

impl Default for EngineFile {
    fn default() -> Self {
        EngineFile {
            workers: None,
            pin: true,
            io_driver: IoDriver::Auto,
            ring_entries: 1024,
        }
    }
}

/// `[timeouts]`, all humantime strings greater than zero.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TimeoutsFile {
    /// The whole request head must arrive within this (else 408). Default: `10s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub client_header: Duration,
    /// Idle time allowed between requests on a client connection. Default: `60s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub client_keepalive: Duration,
    /// The longest wait for the next bytes of a request body (else 408). Default: `60s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub client_body: Duration,
    /// The longest a client may leave a response unread before it is dropped. Default: `60s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub client_send: Duration,
    /// Connecting to an upstream server (502 on failure, 504 on timeout). Default: `5s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub upstream_connect: Duration,
    /// Wait for the response head, and the longest gap between body reads (504). Default: `60s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub upstream_response: Duration,
    /// Idle pooled upstream connections are closed after this. Default: `60s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub upstream_idle: Duration,
    /// On SIGINT/SIGTERM, in-flight requests get this long to finish. Default: `10s`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub drain: Duration,
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
        }
    }
}

/// `[limits]`.
#[allow(clippy::struct_field_names)] // the `max_` prefix is part of the file's key names
#[derive(Clone, Debug, Deserialize)]
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

/// One `[[upstream]]` group. `name` and `servers` are required.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    /// The name routes refer to. Required, unique.
    pub name: String,
    /// `host:port` of each server, resolved once at load time. Required, non-empty.
    pub servers: Vec<String>,
    /// Most idle pooled connections kept per server (0 disables pooling). Default: `64`.
    #[serde(default = "default_max_idle_per_server")]
    pub max_idle_per_server: usize,
}

/// Default of `[[upstream]].max_idle_per_server`.
pub(crate) fn default_max_idle_per_server() -> usize {
    64
}

/// One `[[route]]`. Only `upstream` is required.
#[derive(Clone, Debug, Deserialize)]
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
    pub headers: std::collections::BTreeMap<String, String>,
    /// The `[[upstream]]` group to forward to. Required.
    pub upstream: String,
    /// Host header sent upstream. Default: `None`, meaning the client's Host is kept.
    #[serde(default)]
    pub host_rewrite: Option<String>,
}

/// Default of `[[route]].path_prefix`.
pub(crate) fn default_path_prefix() -> String {
    "/".to_owned()
}
