//! The command line: `ringwall [OPTIONS] [COMMAND]`, parsed with clap.
//!
//! [`Cli`] only parses; `config::load` applies it. Every option is optional and overrides the
//! matching key of the `--config` file (docs/configuration.md lists both side by side). Values
//! with units use the same parsers as the file, so `--max-body 10MiB` and `max_body = "10MiB"`
//! agree, and a malformed value is reported by clap with the flag's name. Range checks that
//! need context (`--workers 0`) happen in `config::load` and also name the flag. Options are
//! global, so `ringwall check --config ringwall.toml --workers 4` checks what would run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{
    parse_body_limit, parse_duration, parse_duration_or_zero, parse_size, BodyLimit,
    EscapedSlashesMode, IoDriver, TlsVersion,
};

/// What `--mode` makes of the listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// HTTP reverse proxy (HTTPS with --tls-cert).
    Http,
    /// TCP forwarding to the --upstream servers (TLS terminated first with --tls-cert).
    L4,
    /// UDP forwarding to the --upstream servers, a session per client address and port.
    Udp,
}

/// `--access-log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// nginx's `combined`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `--send-proxy-protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyVersionArg {
    V1,
    V2,
}

/// ringwall: a thread-per-core HTTP/1.1 reverse proxy.
///
/// Settings come from the --config file (see docs/configuration.md); every option below
/// overrides the file. Without a file, --upstream (or --demo) is required.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "ringwall", version)]
#[allow(clippy::struct_field_names)] // the *_timeout names mirror the flags
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file.
    #[arg(short = 'c', long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Write the process id here once serving (removed at exit); `ringwall reload` and
    /// `ringwall upgrade` read it to find the running process.
    #[arg(long, value_name = "FILE", global = true)]
    pub pid_file: Option<PathBuf>,

    /// Run the built-in demo: local origin servers behind the proxy.
    #[arg(long, global = true)]
    pub demo: bool,

    /// Address to accept client connections on, host:port (repeatable; replaces the file's
    /// `listen` list) [default: 127.0.0.1:8080].
    #[arg(short = 'l', long, value_name = "ADDR", global = true)]
    pub listen: Vec<String>,

    /// Upstream server host:port, or `https://host[:port]` for TLS to it (repeatable). The
    /// servers form (or replace those of) the
    /// upstream group "default"; unless a route already sends there, a catch-all route
    /// "default" is added after the file's routes.
    #[arg(short = 'u', long, value_name = "ADDR", global = true)]
    pub upstream: Vec<String>,

    /// CA file (PEM) that the certificates of `https://` servers given by --upstream must
    /// chain to [default: the system's roots].
    #[arg(long, value_name = "FILE", global = true)]
    pub upstream_ca: Option<PathBuf>,

    /// Worker threads [default: one per online core].
    #[arg(short = 'w', long, value_name = "N", global = true)]
    pub workers: Option<usize>,

    /// Pin each worker to its own core [default].
    #[arg(long, overrides_with = "no_pin", global = true)]
    pub pin: bool,

    /// Do not pin workers to cores.
    #[arg(long, overrides_with = "pin", global = true)]
    pub no_pin: bool,

    /// I/O driver [default: auto]. Also read from `RINGWALL_IO_DRIVER` (the flag wins).
    #[arg(
        long,
        value_name = "DRIVER",
        value_enum,
        global = true,
        env = "RINGWALL_IO_DRIVER"
    )]
    pub io_driver: Option<IoDriver>,

    /// Submission queue entries per ring (uring drivers), 256..=32768 [default: 1024].
    #[arg(long, value_name = "N", global = true)]
    pub ring_entries: Option<u32>,

    /// How often workers exchange batched state on the message path between them (health,
    /// rate-limit consumption), 1ms..=10s [default: 20ms].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub gossip_interval: Option<Duration>,

    /// Share the listening addresses with another process that already listens there
    /// (`SO_REUSEPORT`); without it such an address stops the start.
    #[arg(long, global = true)]
    pub share_listen: bool,

    /// Time for the whole request head to arrive, else 408 [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub client_header_timeout: Option<Duration>,

    /// Idle time allowed between requests on a client connection [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub client_keepalive_timeout: Option<Duration>,

    /// The longest wait for the next bytes of a request body, else 408 [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub client_body_timeout: Option<Duration>,

    /// The longest a client may leave a response unread before it is dropped [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub client_send_timeout: Option<Duration>,

    /// Time to connect to an upstream server (502 on failure, 504 on timeout) [default: 5s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub upstream_connect_timeout: Option<Duration>,

    /// Time to wait for the response head, and the longest gap between body reads, else 504
    /// [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub upstream_response_timeout: Option<Duration>,

    /// Idle pooled upstream connections are closed after this [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub upstream_idle_timeout: Option<Duration>,

    /// On SIGINT/SIGTERM, time for in-flight requests to finish [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub drain_timeout: Option<Duration>,

    /// After refusing a request, how long ringwall reads and discards what the client still
    /// sends before closing [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub lingering_time: Option<Duration>,

    /// The longest wait for more bytes while lingering [default: 5s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub lingering_timeout: Option<Duration>,

    /// Close an upgraded connection (WebSocket) after this long with no byte either way
    /// [default: 1h].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub tunnel_idle_timeout: Option<Duration>,

    /// Start the admin listener on this address (`/healthz`, `/status`); keep it on loopback
    /// [default: off].
    #[arg(long, value_name = "ADDR", global = true)]
    pub admin: Option<String>,

    /// Where request lines go: a file (appended to, reopened on SIGUSR1), `stdout`, or `off`
    /// [default: off].
    #[arg(long, value_name = "PATH|stdout|off", global = true)]
    pub access_log: Option<String>,

    /// How request lines look [default: combined].
    #[arg(long, value_name = "FORMAT", value_enum, global = true)]
    pub access_log_format: Option<LogFormatArg>,

    /// What the listeners do: `http` (reverse proxy), `l4` (forward TCP connections to the
    /// --upstream servers; with --tls-cert, TLS is terminated first) or `udp` (forward UDP
    /// datagrams) [default: http, or each listener's protocol in the file].
    #[arg(long, value_name = "MODE", value_enum, global = true)]
    pub mode: Option<Mode>,

    /// Send a PROXY protocol header (v1 or v2) to the origin first on every forwarded TCP
    /// connection (--mode l4).
    #[arg(long, value_name = "VERSION", value_enum, global = true)]
    pub send_proxy_protocol: Option<ProxyVersionArg>,

    /// An address or CIDR block of a load balancer in front whose connections start with a
    /// PROXY protocol header; the client address is taken from it (repeatable; every
    /// listener).
    #[arg(long, value_name = "CIDR", global = true)]
    pub proxy_protocol_from: Vec<String>,

    /// Close a forwarded TCP connection after this long with no byte either way
    /// [default: 10m].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub tcp_idle_timeout: Option<Duration>,

    /// End a UDP session after this long without a datagram either way [default: 60s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub udp_idle_timeout: Option<Duration>,

    /// A TLS handshake must complete within this, else the connection is closed
    /// [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub tls_handshake_timeout: Option<Duration>,

    /// Terminate TLS on every listener with this PEM certificate chain (repeatable, each with
    /// its --tls-key, in the same order; the first is the default, the others are chosen by
    /// SNI from their DNS names).
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Vec<PathBuf>,

    /// The PEM private key of the --tls-cert at the same position (repeatable).
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Vec<PathBuf>,

    /// Oldest TLS version accepted on TLS listeners [default: 1.2].
    #[arg(long, value_name = "VERSION", value_enum, global = true)]
    pub tls_min_version: Option<TlsVersion>,

    /// Ask TLS clients for a certificate and check it against this PEM CA file; clients
    /// without one are refused.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_client_ca: Option<PathBuf>,

    /// Largest request head, else 431 [default: 32KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub max_request_head: Option<u64>,

    /// Largest upstream response head, else 502 [default: 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub max_response_head: Option<u64>,

    /// Most header fields in a request, else 431 [default: 100].
    #[arg(long, value_name = "N", global = true)]
    pub max_headers: Option<usize>,

    /// Longest request target, else 414 [default: 8KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub max_uri: Option<u64>,

    /// Largest request body, else 413 [default: unlimited].
    #[arg(long, value_name = "SIZE|unlimited", value_parser = parse_body_limit, global = true)]
    pub max_body: Option<BodyLimit>,

    /// Least average request-body rate in bytes per second after a 5 s grace, else 408; 0 turns
    /// it off [default: 240].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub min_body_rate: Option<u64>,

    /// Most open client connections per worker; at the limit the worker pauses accepting
    /// [default: 16384].
    #[arg(long, value_name = "N", global = true)]
    pub max_connections_per_worker: Option<usize>,

    /// Most open connections from one client address (IPv6: per /64), else 429; 0 means no
    /// limit [default: 0].
    #[arg(long, value_name = "N", global = true)]
    pub max_connections_per_ip: Option<u32>,

    /// How every upstream group chooses a server: peak-ewma, p2c, round-robin, weighted,
    /// least-conn, random, hash:ip, hash:header:NAME, hash:cookie:NAME, hash:path
    /// [default: each group's own setting, else peak-ewma].
    #[arg(long, value_name = "ALGORITHM", global = true)]
    pub lb: Option<String>,

    /// Most idle pooled connections per upstream server, for every upstream group
    /// [default: each group's own setting, else 64].
    #[arg(long, value_name = "N", global = true)]
    pub upstream_max_idle: Option<usize>,

    /// Check every upstream group's servers with an HTTP GET of this path (a 2xx or 3xx
    /// passes) [default: each group's own `[upstream.health_check]`, else no active checks].
    #[arg(long, value_name = "PATH", global = true)]
    pub health_check: Option<String>,

    /// Time between two active checks of a server, for every group that checks
    /// [default: each group's own setting, else 5s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub health_interval: Option<Duration>,

    /// Time an active check may take, for every group that checks [default: each group's own
    /// setting, else 2s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub health_timeout: Option<Duration>,

    /// Passed checks in a row that bring a server back up, for every group that checks
    /// [default: each group's own setting, else 2].
    #[arg(long, value_name = "N", global = true)]
    pub health_rise: Option<u32>,

    /// Failed checks in a row that take a server down, for every group that checks
    /// [default: each group's own setting, else 3].
    #[arg(long, value_name = "N", global = true)]
    pub health_fall: Option<u32>,

    /// Failures in a row (no connection, timeout, 5xx) that eject a server for a while, for
    /// every group; 0 turns passive ejection off [default: each group's own setting, else 5].
    #[arg(long, value_name = "N", global = true)]
    pub eject_after: Option<u32>,

    /// How long a server back in service takes to ramp up to its full share, for every group;
    /// 0s turns slow start off [default: each group's own setting, else 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration_or_zero, global = true)]
    pub slow_start: Option<Duration>,

    /// Most tries of one request, for every route; 0 means one per server in service
    /// [default: each route's own setting, else 0].
    #[arg(long, value_name = "N", global = true)]
    pub retry_tries: Option<u32>,

    /// What else makes an idempotent request try the next server, for every route: a
    /// comma-separated list of error, timeout, 5xx and statuses such as 502
    /// [default: each route's own setting, else error,timeout].
    #[arg(long, value_name = "LIST", value_delimiter = ',', global = true)]
    pub retry_on: Option<Vec<String>>,

    /// How long one try waits for the response head, for every route [default: each route's
    /// own setting, else the upstream response timeout].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, global = true)]
    pub per_try_timeout: Option<Duration>,

    /// Request bodies of a known length up to this size are buffered so that a retry can send
    /// them again, for every route; 0 turns it off [default: each route's own setting, else
    /// 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub retry_buffer_body: Option<u64>,

    /// Hedge every route's idempotent requests without a body: a second try on another server
    /// when the first has not answered within this percentile (50 to 99) of the route's recent
    /// response times [default: each route's own setting, else no hedging].
    #[arg(long, value_name = "PERCENTILE", global = true)]
    pub hedge: Option<u32>,

    /// Retries allowed per worker and group, as a percentage of the requests of the last 10 s
    /// [default: each group's own setting, else 20].
    #[arg(long, value_name = "PERCENT", global = true)]
    pub retry_budget: Option<u32>,

    /// Retries allowed per second per worker and group whatever the traffic [default: each
    /// group's own setting, else 10].
    #[arg(long, value_name = "N", global = true)]
    pub retry_budget_min: Option<u32>,

    /// Most connections open to every upstream group, split between the workers
    /// [default: each group's own setting, else no limit].
    #[arg(long, value_name = "N", global = true)]
    pub max_upstream_connections: Option<u32>,

    /// Most requests outstanding on every upstream group, split between the workers; more
    /// wait (--max-upstream-pending) or get 503 [default: each group's own setting, else no
    /// limit].
    #[arg(long, value_name = "N", global = true)]
    pub max_upstream_requests: Option<u32>,

    /// Most requests waiting for room in every upstream group, split between the workers
    /// [default: each group's own setting, else 0].
    #[arg(long, value_name = "N", global = true)]
    pub max_upstream_pending: Option<u32>,

    /// Most connections open to one upstream server, for every group, split between the
    /// workers [default: each group's own setting, else no limit].
    #[arg(long, value_name = "N", global = true)]
    pub max_server_connections: Option<u32>,

    /// Most requests outstanding on one upstream server, for every group, split between the
    /// workers [default: each group's own setting, else no limit].
    #[arg(long, value_name = "N", global = true)]
    pub max_server_requests: Option<u32>,

    /// Limit every route to this rate per client address (or per --rate-limit-key), for the
    /// whole process: N/s, N/m or N/h; over it, 429 with Retry-After [default: no limit].
    #[arg(long, value_name = "RATE", global = true)]
    pub rate_limit: Option<String>,

    /// Requests a key may make at once beyond --rate-limit [default: the rate's N].
    #[arg(long, value_name = "N", global = true)]
    pub rate_limit_burst: Option<u32>,

    /// What --rate-limit counts by: ip (IPv6 by /64), route, header:NAME, or several joined
    /// by commas [default: ip].
    #[arg(long, value_name = "KEY", value_delimiter = ',', global = true)]
    pub rate_limit_key: Option<Vec<String>>,

    /// Compress responses on the fly with these encodings, in order of preference when a
    /// client accepts several equally: gzip, br, zstd, joined by commas; `off` for none
    /// [default: the file's [compression] encodings, else off].
    #[arg(long, value_name = "ENCODINGS", value_delimiter = ',', global = true)]
    pub compress: Option<Vec<String>>,

    /// Cache responses (RFC 9111) in this much memory per worker, on every route
    /// [default: the file's [cache] memory, else no cache].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub cache: Option<u64>,

    /// Keep cached responses in files in this directory too, shared by every worker and read
    /// again after a restart [default: the file's [cache] directory, else none].
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// Most bytes of files in --cache-dir [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub cache_disk: Option<u64>,

    /// Responses with a Content-Length below this are not compressed [default: 256].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, global = true)]
    pub compress_min_size: Option<u64>,

    /// Every request must carry an API key of this file (lines CONSUMER sha256:HEX), in
    /// X-API-Key [default: no API keys].
    #[arg(long, value_name = "FILE", global = true)]
    pub api_keys: Option<PathBuf>,

    /// Every request must carry a bearer JWT signed by this key: a PEM public key, a file
    /// holding an HMAC secret, or a JWKS [default: no JWTs].
    #[arg(long, value_name = "FILE", global = true)]
    pub jwt_key: Option<PathBuf>,

    /// The audience a JWT must name (repeatable: any of them) [default: any].
    #[arg(long, value_name = "AUD", global = true)]
    pub jwt_aud: Vec<String>,

    /// The issuer a JWT must name (repeatable: any of them) [default: any].
    #[arg(long, value_name = "ISS", global = true)]
    pub jwt_iss: Vec<String>,

    /// Merge repeated slashes in request paths before routing.
    #[arg(long, global = true)]
    pub merge_slashes: bool,

    /// What %2F in a request path means: keep it, reject the request (400), or decode it to
    /// "/" [default: keep].
    #[arg(long, value_name = "MODE", value_enum, global = true)]
    pub escaped_slashes: Option<EscapedSlashesMode>,

    /// Do not send X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host upstream.
    #[arg(long, global = true)]
    pub no_x_forwarded: bool,

    /// Send a Forwarded field (RFC 7239) upstream.
    #[arg(long, global = true)]
    pub forwarded: bool,

    /// Do not add ringwall to Via on requests and responses.
    #[arg(long, global = true)]
    pub no_via: bool,

    /// An address or CIDR block of a proxy in front of ringwall whose X-Forwarded-For is kept
    /// and from which the real client address is taken (repeatable; replaces the file's list).
    #[arg(long, value_name = "CIDR", global = true)]
    pub trusted_proxy: Vec<String>,

    /// Pass a valid incoming X-Request-Id, or make one, to the origin and back.
    #[arg(long, global = true)]
    pub request_id: bool,

    /// Set a field on every request sent upstream, "Name: value" (repeatable); the value may
    /// use `${client_addr}`, `${host}`, `${request_id}`, `${scheme}` and the like.
    #[arg(long, value_name = "FIELD", value_parser = parse_field_flag, global = true)]
    pub request_header: Vec<String>,

    /// Set a field on every response sent to clients, "Name: value" (repeatable).
    #[arg(long, value_name = "FIELD", value_parser = parse_field_flag, global = true)]
    pub response_header: Vec<String>,

    /// Log verbosity [default: info].
    #[arg(
        long,
        value_name = "LEVEL",
        env = "RINGWALL_LOG",
        value_parser = ["error", "warn", "info", "debug", "trace"],
        global = true
    )]
    pub log_level: Option<String>,
}

/// Subcommands. Without one, ringwall runs the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Validate a config file and exit: prints "<file>: ok (N routes, M upstream groups,
    /// K listeners)" and exits 0, or prints the error and exits 1.
    Check,
    /// Reload the running ringwall named by the pid file (`--pid-file`, or `pid_file` in
    /// the config file): the configuration is checked here first, and a configuration that
    /// fails the check is not sent. Same as sending it SIGHUP.
    Reload,
    /// Binary upgrade of the running ringwall named by the pid file: it starts the binary at
    /// its own path (install the new build there first) on its listening sockets, and drains
    /// once the new process serves. Same as sending it SIGUSR2.
    Upgrade,
}

/// `"Name: value"`: a name, a colon, a value (which may be empty).
fn parse_field_flag(text: &str) -> Result<String, String> {
    match text.split_once(':') {
        Some((name, _)) if !name.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(format!(
            "expected \"Name: value\", like \"X-Env: production\" (got {text:?})"
        )),
    }
}

impl Cli {
    /// `Some(true)` for `--pin`, `Some(false)` for `--no-pin` (the last one given wins),
    /// `None` when neither is given.
    pub fn pin_override(&self) -> Option<bool> {
        if self.no_pin {
            Some(false)
        } else if self.pin {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("ringwall").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_parse_to_nothing_set() {
        let cli = parse(&[]);
        assert_eq!(cli.command, None);
        assert_eq!(cli.config, None);
        assert!(!cli.demo);
        assert!(cli.listen.is_empty() && cli.upstream.is_empty());
        assert_eq!(cli.workers, None);
        assert_eq!(cli.pin_override(), None);
        assert_eq!(cli.max_body, None);
    }

    #[test]
    fn short_and_long_flags() {
        let cli = parse(&[
            "-c",
            "r.toml",
            "-l",
            "0.0.0.0:80",
            "--listen",
            "[::]:80",
            "-u",
            "127.0.0.1:9001",
            "-u",
            "localhost:9002",
            "-w",
            "3",
            "--io-driver",
            "uring-coop",
            "--ring-entries",
            "512",
        ]);
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("r.toml")));
        assert_eq!(cli.listen, ["0.0.0.0:80", "[::]:80"]);
        assert_eq!(cli.upstream, ["127.0.0.1:9001", "localhost:9002"]);
        assert_eq!(cli.workers, Some(3));
        assert_eq!(cli.io_driver, Some(IoDriver::UringCoop));
        assert_eq!(cli.ring_entries, Some(512));
    }

    #[test]
    fn every_io_driver_name_parses() {
        for (name, driver) in [
            ("auto", IoDriver::Auto),
            ("uring-defer", IoDriver::UringDefer),
            ("uring-coop", IoDriver::UringCoop),
            ("uring-plain", IoDriver::UringPlain),
            ("uring-sqpoll", IoDriver::UringSqpoll),
            ("epoll", IoDriver::Epoll),
        ] {
            assert_eq!(parse(&["--io-driver", name]).io_driver, Some(driver));
            assert_eq!(driver.as_str(), name);
        }
        assert!(Cli::try_parse_from(["ringwall", "--io-driver", "kqueue"]).is_err());
    }

    #[test]
    fn pin_and_no_pin_last_wins() {
        assert_eq!(parse(&["--pin"]).pin_override(), Some(true));
        assert_eq!(parse(&["--no-pin"]).pin_override(), Some(false));
        assert_eq!(parse(&["--pin", "--no-pin"]).pin_override(), Some(false));
        assert_eq!(parse(&["--no-pin", "--pin"]).pin_override(), Some(true));
    }

    #[test]
    #[allow(clippy::duration_suboptimal_units)] // from_mins needs Rust 1.91; rust-version is 1.85
    fn durations_and_sizes() {
        let cli = parse(&[
            "--client-header-timeout",
            "250ms",
            "--client-keepalive-timeout",
            "2m",
            "--upstream-connect-timeout",
            "1s",
            "--upstream-response-timeout",
            "90s",
            "--upstream-idle-timeout",
            "5m",
            "--drain-timeout",
            "3s",
            "--max-request-head",
            "16KiB",
            "--max-response-head",
            "1MiB",
            "--max-headers",
            "50",
            "--max-uri",
            "4096",
            "--max-body",
            "10MB",
            "--upstream-max-idle",
            "8",
        ]);
        assert_eq!(cli.client_header_timeout, Some(Duration::from_millis(250)));
        assert_eq!(cli.client_keepalive_timeout, Some(Duration::from_secs(120)));
        assert_eq!(cli.upstream_connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(cli.upstream_response_timeout, Some(Duration::from_secs(90)));
        assert_eq!(cli.upstream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(cli.drain_timeout, Some(Duration::from_secs(3)));
        assert_eq!(cli.max_request_head, Some(16 * 1024));
        assert_eq!(cli.max_response_head, Some(1 << 20));
        assert_eq!(cli.max_headers, Some(50));
        assert_eq!(cli.max_uri, Some(4096));
        assert_eq!(cli.max_body, Some(BodyLimit(Some(10_000_000))));
        assert_eq!(cli.upstream_max_idle, Some(8));
        assert_eq!(
            parse(&["--max-body", "unlimited"]).max_body,
            Some(BodyLimit(None))
        );
    }

    #[test]
    fn malformed_values_name_the_flag() {
        for args in [
            ["--drain-timeout", "5 parsecs"],
            ["--drain-timeout", "0s"],
            ["--max-uri", "8XB"],
            ["--max-request-head", "unlimited"],
            ["--workers", "two"],
            ["--log-level", "loud"],
        ] {
            let error = Cli::try_parse_from(std::iter::once("ringwall").chain(args))
                .expect_err(args[1])
                .to_string();
            assert!(error.contains(args[0]), "{args:?}: {error}");
        }
    }

    #[test]
    fn check_subcommand_takes_the_global_options() {
        let cli = parse(&["check", "--config", "ringwall.toml", "--workers", "2"]);
        assert_eq!(cli.command, Some(Command::Check));
        assert_eq!(
            cli.config.as_deref(),
            Some(std::path::Path::new("ringwall.toml"))
        );
        assert_eq!(cli.workers, Some(2));
        let cli = parse(&["--config", "ringwall.toml", "check"]);
        assert_eq!(cli.command, Some(Command::Check));
    }

    #[test]
    fn request_path_flags() {
        let cli = parse(&[
            "--request-header",
            "X-Env: prod",
            "--response-header",
            "Strict-Transport-Security: max-age=600",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--no-via",
            "--escaped-slashes",
            "reject",
            "--share-listen",
        ]);
        assert_eq!(cli.request_header, ["X-Env: prod"]);
        assert_eq!(
            cli.response_header,
            ["Strict-Transport-Security: max-age=600"]
        );
        assert_eq!(cli.trusted_proxy, ["10.0.0.0/8"]);
        assert!(cli.no_via && cli.share_listen && !cli.forwarded);
        assert_eq!(cli.escaped_slashes, Some(EscapedSlashesMode::Reject));
        let error = Cli::try_parse_from(["ringwall", "--request-header", "novalue"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--request-header"), "{error}");
    }

    #[test]
    fn log_level_flag() {
        assert_eq!(
            parse(&["--log-level", "debug"]).log_level.as_deref(),
            Some("debug")
        );
    }

    #[test]
    fn help_documents_every_flag() {
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--demo",
            "--listen",
            "--upstream",
            "--workers",
            "--pin",
            "--no-pin",
            "--io-driver",
            "--ring-entries",
            "--client-header-timeout",
            "--client-keepalive-timeout",
            "--upstream-connect-timeout",
            "--upstream-response-timeout",
            "--upstream-idle-timeout",
            "--drain-timeout",
            "--max-request-head",
            "--max-response-head",
            "--max-headers",
            "--max-uri",
            "--max-body",
            "--upstream-max-idle",
            "--share-listen",
            "--lingering-time",
            "--lingering-timeout",
            "--tunnel-idle-timeout",
            "--merge-slashes",
            "--escaped-slashes",
            "--no-x-forwarded",
            "--forwarded",
            "--no-via",
            "--trusted-proxy",
            "--request-id",
            "--request-header",
            "--response-header",
            "--log-level",
            "RINGWALL_LOG",
            "check",
        ] {
            assert!(
                help.contains(flag),
                "--help does not mention {flag}:\n{help}"
            );
        }
    }
}
