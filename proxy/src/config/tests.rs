//! Tests for loading, defaults, validation errors (each must name the line and the field),
//! flag overrides and the `--upstream` shortcut.

// Duration::from_mins needs Rust 1.91; the workspace's rust-version is 1.85.
#![allow(clippy::duration_suboptimal_units)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::*;
use ringwall_policies::balance::Algorithm;

/// The smallest valid file: one group, one route.
const MINIMAL: &str = r#"[[upstream]]
name = "app"
servers = ["127.0.0.1:9001"]

[[route]]
upstream = "app"
"#;

fn parse(text: &str) -> Config {
    Config::from_toml_str(text, Some(Path::new("ringwall.toml")))
        .unwrap_or_else(|e| panic!("expected a valid config, got: {e}\n{text}"))
}

/// The error message for `text`, loaded as `ringwall.toml`.
fn error(text: &str) -> String {
    match Config::from_toml_str(text, Some(Path::new("ringwall.toml"))) {
        Ok(config) => panic!("expected an error, got {config:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// `MINIMAL` with `extra` appended: its first line is line 7.
fn error_after_minimal(extra: &str) -> String {
    error(&format!("{MINIMAL}{extra}"))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("ringwall").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A config file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("ringwall-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---- defaults -------------------------------------------------------------------------------

#[test]
fn every_default() {
    let config = parse(MINIMAL);
    assert_eq!(config.source.as_deref(), Some(Path::new("ringwall.toml")));
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:8080")]);
    assert_eq!(config.log_level, "info");

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(config.engine.workers, cores);
    assert!(config.engine.pin);
    assert_eq!(config.engine.io_driver, IoDriver::Auto);
    assert_eq!(config.engine.ring_entries, 1024);

    let t = &config.timeouts;
    assert_eq!(t.client_header, Duration::from_secs(10));
    assert_eq!(t.client_keepalive, Duration::from_secs(60));
    assert_eq!(t.client_body, Duration::from_secs(60));
    assert_eq!(t.client_send, Duration::from_secs(60));
    assert_eq!(t.upstream_connect, Duration::from_secs(5));
    assert_eq!(t.upstream_response, Duration::from_secs(60));
    assert_eq!(t.upstream_idle, Duration::from_secs(60));
    assert_eq!(t.drain, Duration::from_secs(10));

    let l = &config.limits;
    assert_eq!(l.max_request_head, 32 * 1024);
    assert_eq!(l.max_response_head, 64 * 1024);
    assert_eq!(l.max_headers, 100);
    assert_eq!(l.max_uri, 8 * 1024);
    assert_eq!(l.max_body, None);
    assert_eq!(l.min_body_rate, 240);
    assert_eq!(l.max_connections_per_worker, 16384);
    assert_eq!(l.max_connections_per_ip, 0);

    assert_eq!(
        config.upstreams,
        [plain_group("app", vec![addr("127.0.0.1:9001")], 64)]
    );
    let routes = &config.routes;
    assert_eq!(routes.len(), 1);
    let route = &routes[0];
    assert_eq!(route.name, "route-0");
    assert!(route.hosts.is_empty() && route.methods.is_empty() && route.headers.is_empty());
    assert_eq!(route.path_prefix, "/");
    assert_eq!(
        route.action,
        RouteAction::Forward {
            upstream: 0,
            host_rewrite: None
        }
    );
    assert_eq!(route.policy.rewrite, None);
    assert_eq!(
        route.policy.timeouts.upstream_response,
        config.timeouts.upstream_response
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one literal config and one assertion per section
fn the_documented_example_parses() {
    let config = parse(
        r#"listen = ["127.0.0.1:8080", "[::1]:8443"]
log_level = "debug"

[engine]
workers = 2
pin = false
io_driver = "uring-coop"
ring_entries = 4096

[timeouts]
client_header = "250ms"
client_keepalive = "2m"
upstream_connect = "1s"
upstream_response = "1m 30s"
upstream_idle = "45s"
drain = "3s"

[limits]
max_request_head = "16KiB"
max_response_head = 131072
max_headers = 64
max_uri = "4 KB"
max_body = "10MiB"

[[upstream]]
name = "app"
servers = ["127.0.0.1:9001", "localhost:9002"]
max_idle_per_server = 8

[[upstream]]
name = "static"
servers = ["[::1]:9003"]

[[route]]
name = "api"
hosts = ["API.example.com", "*.Example.org", "api.example.com"]
path_prefix = "/api/"
methods = ["get", "POST", "GET"]
headers = { "X-Api-Version" = "2", accept = "application/json" }
upstream = "app"
host_rewrite = "app.internal"

[[route]]
upstream = "static"
"#,
    );
    assert_eq!(
        config.listen_addrs(),
        [addr("127.0.0.1:8080"), addr("[::1]:8443")]
    );
    assert_eq!(config.log_level, "debug");
    assert_eq!(
        config.engine,
        EngineConfig {
            workers: 2,
            pin: false,
            io_driver: IoDriver::UringCoop,
            ring_entries: 4096,
            share_listen: false,
            gossip_interval: Duration::from_millis(20),
        }
    );
    assert_eq!(
        config.timeouts,
        Timeouts {
            client_header: Duration::from_millis(250),
            client_keepalive: Duration::from_secs(120),
            client_body: Duration::from_secs(60),
            client_send: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(1),
            upstream_response: Duration::from_secs(90),
            upstream_idle: Duration::from_secs(45),
            drain: Duration::from_secs(3),
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            tunnel_idle: Duration::from_secs(3600),
            tls_handshake: Duration::from_secs(10),
            tcp_idle: Duration::from_secs(600),
            udp_idle: Duration::from_secs(60),
        }
    );
    assert_eq!(
        config.limits,
        Limits {
            max_request_head: 16 * 1024,
            max_response_head: 128 * 1024,
            max_headers: 64,
            max_uri: 4000,
            max_body: Some(10 << 20),
            min_body_rate: 240,
            max_connections_per_worker: 16384,
            max_connections_per_ip: 0,
        }
    );
    let app = &config.upstreams[0];
    assert_eq!(app.servers.len(), 2);
    assert!(app.servers[1].ip().is_loopback() && app.servers[1].port() == 9002);
    assert_eq!(app.max_idle_per_server, 8);
    assert_eq!(config.upstreams[1].servers, [addr("[::1]:9003")]);

    let api = &config.routes[0];
    assert_eq!(api.name, "api");
    assert_eq!(
        api.hosts,
        [
            HostPattern::Exact("api.example.com".into()),
            HostPattern::Suffix(".example.org".into())
        ]
    );
    assert_eq!(api.path_prefix, "/api/");
    assert_eq!(api.methods, ["GET", "POST"]);
    assert_eq!(
        api.headers,
        [
            ("accept".into(), "application/json".into()),
            ("x-api-version".into(), "2".into())
        ]
    );
    assert_eq!(
        api.action,
        RouteAction::Forward {
            upstream: 0,
            host_rewrite: Some("app.internal".into())
        }
    );
    assert_eq!(config.routes[1].name, "route-1");
    assert_eq!(config.routes[1].upstream(), Some(1));
    assert_eq!(config.upstream_index("static"), Some(1));
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../../ringwall.example.toml");
    let config = parse(text);
    assert!(!config.routes.is_empty());
    assert!(!config.upstreams.is_empty());
}

#[test]
fn defaults_with_upstreams() {
    let servers = vec![addr("127.0.0.1:9001"), addr("[::1]:9002")];
    let config = Config::defaults_with_upstreams(servers.clone());
    assert_eq!(config.source, None);
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:8080")]);
    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].name, "default");
    assert_eq!(config.upstreams[0].servers, servers);
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].name, "default");
    assert_eq!(config.routes[0].path_prefix, "/");
    assert!(config.routes[0].hosts.is_empty() && config.routes[0].methods.is_empty());
}

// ---- error format -------------------------------------------------------------------------

#[test]
fn unknown_upstream_names_file_line_column_and_field() {
    // The route's `upstream` value is on line 12, column 12.
    let text = r#"[[upstream]]
name = "app"
servers = ["127.0.0.1:9001"]

[[route]]
name = "web"
upstream = "app"

[[route]]
name = "api"
path_prefix = "/api/"
upstream = "api"
"#;
    assert_eq!(
        error(text),
        r#"ringwall.toml:12:12: route[1].upstream: unknown upstream group "api" (known: "app")"#
    );
}

#[test]
fn without_a_source_path_the_file_is_called_config() {
    let e = Config::from_toml_str("listen = 1", None)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("<config>:1:10: listen: "), "{e}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = error("listen = [\"127.0.0.1:80\"]\n[engine\nworkers = 2\n");
    assert!(e.starts_with("ringwall.toml:2:"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn unknown_fields_are_named() {
    let e = error("listen = [\"127.0.0.1:80\"]\nroutes = []\n");
    assert!(
        e.starts_with("ringwall.toml:2:1: routes: unknown field `routes`"),
        "{e}"
    );

    let e = error("[engine]\nworkers = 2\nthreads = 4\n");
    assert!(
        e.starts_with("ringwall.toml:3:1: engine.threads: unknown field `threads`"),
        "{e}"
    );

    let e = error_after_minimal("prefix = \"/x\"\n");
    assert!(
        e.starts_with("ringwall.toml:7:1: route[0].prefix: unknown field `prefix`"),
        "{e}"
    );

    let e = error("[timeouts]\nclient_headers = \"1s\"\n");
    assert!(
        e.starts_with("ringwall.toml:2:1: timeouts.client_headers: unknown field"),
        "{e}"
    );

    let e = error("[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\nweight = 2\n");
    assert!(
        e.starts_with("ringwall.toml:4:1: upstream[0].weight: unknown field `weight`"),
        "{e}"
    );
}

#[test]
fn wrong_types_are_named() {
    let e = error("[engine]\nworkers = \"two\"\n");
    assert!(
        e.starts_with("ringwall.toml:2:11: engine.workers: invalid type: string \"two\""),
        "{e}"
    );

    let e = error("[engine]\npin = 1\n");
    assert!(
        e.starts_with("ringwall.toml:2:7: engine.pin: invalid type: integer"),
        "{e}"
    );

    let e = error("[engine]\nio_driver = \"kqueue\"\n");
    assert!(
        e.starts_with("ringwall.toml:2:13: engine.io_driver: unknown variant `kqueue`"),
        "{e}"
    );

    let e = error_after_minimal("headers = { \"x-a\" = 1 }\n");
    assert!(
        e.starts_with("ringwall.toml:7:21: route[0].headers.x-a: invalid type: integer"),
        "{e}"
    );

    let e = error("listen = [\"127.0.0.1:80\", 8080]\n");
    assert!(
        e.starts_with("ringwall.toml:1:27: listen[1]: invalid type: integer"),
        "{e}"
    );

    let e = error("engine = { workers = -1 }\n");
    assert!(
        e.starts_with("ringwall.toml:1:22: engine.workers: invalid value: integer `-1`"),
        "{e}"
    );
}

#[test]
fn missing_required_fields_point_at_their_table() {
    let e = error("[[upstream]]\nname = \"app\"\n");
    assert!(
        e.starts_with("ringwall.toml:1:1: upstream[0]: missing field `servers`"),
        "{e}"
    );

    let e = error(&format!("{MINIMAL}\n[[route]]\nname = \"x\"\n"));
    assert!(
        e.starts_with("ringwall.toml:8:1: route[1]: missing field `upstream`"),
        "{e}"
    );
}

#[test]
fn read_error_names_the_file() {
    let missing = std::env::temp_dir().join("ringwall-no-such-file.toml");
    let e = load(&cli(&["--config", missing.to_str().unwrap()])).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    let e = e.to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
}

// ---- validation errors, one per rule ---------------------------------------------------------

/// Asserts `text` fails with exactly `ringwall.toml:<at>: <field>: ` followed by `message`.
#[track_caller]
fn assert_error(text: &str, at: &str, field: &str, message: &str) {
    let e = error(text);
    let expected = format!("ringwall.toml:{at}: {field}: ");
    assert!(
        e.starts_with(&expected),
        "expected {expected:?}…, got {e:?}"
    );
    assert!(e.contains(message), "expected {message:?} in {e:?}");
}

#[test]
fn listen_errors() {
    assert_error("listen = []\n", "1:10", "listen", "must not be empty");
    assert_error(
        "listen = [\"nope\"]\n",
        "1:11",
        "listen[0]",
        "invalid address \"nope\"",
    );
    assert_error(
        "listen = [\"127.0.0.1\"]\n",
        "1:11",
        "listen[0]",
        "expected host:port",
    );
    assert_error(
        "listen = [\"127.0.0.1:http\"]\n",
        "1:11",
        "listen[0]",
        "bad port",
    );
    assert_error(
        "listen = [\n  \"127.0.0.1:80\",\n  \"127.0.0.1:81\",\n  \"127.0.0.1:80\",\n]\n",
        "4:3",
        "listen[2]",
        "duplicate address \"127.0.0.1:80\"",
    );
    assert_error(
        "listen = [\"127.0.0.1:8080\", \"no-such-host.invalid:80\"]\n",
        "1:29",
        "listen[1]",
        "cannot resolve \"no-such-host.invalid:80\"",
    );
}

#[test]
fn log_level_errors() {
    assert_error(
        "log_level = \"loud\"\n",
        "1:13",
        "log_level",
        "unknown log level \"loud\"",
    );
}

#[test]
fn engine_errors() {
    assert_error(
        "[engine]\nworkers = 0\n",
        "2:11",
        "engine.workers",
        "must be at least 1",
    );
    assert_error(
        "[engine]\nworkers = 100000\n",
        "2:11",
        "engine.workers",
        "must be at most 4096",
    );
    assert_error(
        "[engine]\nring_entries = 100\n",
        "2:16",
        "engine.ring_entries",
        "must be between 256 and 32768 (got 100)",
    );
    assert_error(
        "[engine]\nring_entries = 65536\n",
        "2:16",
        "engine.ring_entries",
        "between",
    );
    // Inline and dotted spellings resolve to the same field.
    assert_error(
        "engine = { workers = 0 }\n",
        "1:22",
        "engine.workers",
        "must be at least 1",
    );
    assert_error(
        "engine.workers = 0\n",
        "1:18",
        "engine.workers",
        "must be at least 1",
    );
}

#[test]
fn duration_errors() {
    assert_error(
        "[timeouts]\ndrain = \"5 parsecs\"\n",
        "2:9",
        "timeouts.drain",
        "invalid duration \"5 parsecs\"",
    );
    assert_error(
        "[timeouts]\nclient_header = \"0s\"\n",
        "2:17",
        "timeouts.client_header",
        "must be greater than 0",
    );
    assert_error(
        "[timeouts]\nupstream_idle = 5\n",
        "2:17",
        "timeouts.upstream_idle",
        "expected a duration string",
    );
    assert_error(
        "[timeouts]\nupstream_connect = \"1000years\"\n",
        "2:20",
        "timeouts.upstream_connect",
        "at most 365days",
    );
}

#[test]
fn size_errors() {
    assert_error(
        "[limits]\nmax_uri = \"8XB\"\n",
        "2:11",
        "limits.max_uri",
        "unknown suffix \"XB\"",
    );
    assert_error(
        "[limits]\nmax_uri = -1\n",
        "2:11",
        "limits.max_uri",
        "must not be negative",
    );
    assert_error(
        "[limits]\nmax_uri = \"unlimited\"\n",
        "2:11",
        "limits.max_uri",
        "only allowed for max_body",
    );
    assert_error(
        "[limits]\nmax_request_head = 0\n",
        "2:20",
        "limits.max_request_head",
        "must be at least 1 byte",
    );
    assert_error(
        "[limits]\nmax_response_head = \"1GiB\"\n",
        "2:21",
        "limits.max_response_head",
        "must be at most 16MiB",
    );
    assert_error(
        "[limits]\nmax_headers = 0\n",
        "2:15",
        "limits.max_headers",
        "must be between 1 and 1024",
    );
    assert_error(
        "[limits]\nmax_body = true\n",
        "2:12",
        "limits.max_body",
        "or \"unlimited\"",
    );
}

#[test]
fn balancing_and_weights_are_read_and_checked() {
    let group = |body: &str| {
        format!(
            "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n{body}\n\
             [[route]]\nupstream = \"app\"\n"
        )
    };
    let cases = [
        ("", LoadBalancing::Balance(Algorithm::PeakEwma)),
        (
            "lb = \"round-robin\"",
            LoadBalancing::Balance(Algorithm::RoundRobin),
        ),
        (
            "lb = \"peak-ewma\"",
            LoadBalancing::Balance(Algorithm::PeakEwma),
        ),
        (
            "lb = \"weighted\"",
            LoadBalancing::Balance(Algorithm::Weighted),
        ),
        (
            "lb = \"least-conn\"",
            LoadBalancing::Balance(Algorithm::LeastConnections),
        ),
        ("lb = \"random\"", LoadBalancing::Balance(Algorithm::Random)),
        ("lb = \"hash:ip\"", LoadBalancing::Hash(HashKey::ClientIp)),
        ("lb = \"hash:path\"", LoadBalancing::Hash(HashKey::Path)),
        (
            "lb = \"hash:header:X-User\"",
            LoadBalancing::Hash(HashKey::Header("x-user".into())),
        ),
        (
            "lb = \"hash:cookie:sid\"",
            LoadBalancing::Hash(HashKey::Cookie("sid".into())),
        ),
    ];
    for (body, lb) in cases {
        assert_eq!(parse(&group(body)).upstreams[0].lb, lb, "{body}");
    }
    let weighted = parse(&group("weights = [3, 1]"));
    assert_eq!(weighted.upstreams[0].weights, [3, 1]);
    assert_eq!(parse(&group("")).upstreams[0].weights, [1, 1]);
    assert_error(
        &group("lb = \"fastest\""),
        "4:6",
        "upstream[0].lb",
        "unknown balancing \"fastest\"",
    );
    assert_error(
        &group("lb = \"hash:header:\""),
        "4:6",
        "upstream[0].lb",
        "unknown balancing",
    );
    assert_error(
        &group("weights = [1]"),
        "4:11",
        "upstream[0].weights",
        "1 weights for 2 servers",
    );
    assert_error(
        &group("weights = [1, 0]"),
        "4:15",
        "upstream[0].weights[1]",
        "must be at least 1",
    );
}

#[test]
fn upstream_errors() {
    let group = |body: &str| format!("[[upstream]]\n{body}\n[[route]]\nupstream = \"app\"\n");
    assert_error(
        &group("name = \"app\"\nservers = []"),
        "3:11",
        "upstream[0].servers",
        "must not be empty",
    );
    assert_error(
        &group("name = \"\"\nservers = [\"127.0.0.1:1\"]"),
        "2:8",
        "upstream[0].name",
        "must not be empty",
    );
    assert_error(
        &group("name = \"app\"\nservers = [\"127.0.0.1:1\", \"localhost\"]"),
        "3:27",
        "upstream[0].servers[1]",
        "invalid address \"localhost\": expected host:port",
    );
    assert_error(
        &group("name = \"app\"\nservers = [\"127.0.0.1:0\"]"),
        "3:12",
        "upstream[0].servers[0]",
        "port must not be 0",
    );
    assert_error(
        "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n",
        "6:8",
        "upstream[1].name",
        "duplicate upstream group name \"app\" (also upstream[0])",
    );
}

#[test]
fn route_errors() {
    let route = |body: &str| format!("{MINIMAL}{body}\n");
    assert_error(
        &route("path_prefix = \"api/\""),
        "7:15",
        "route[0].path_prefix",
        "must start with \"/\"",
    );
    assert_error(
        &route("path_prefix = \"/a b\""),
        "7:15",
        "route[0].path_prefix",
        "not allowed",
    );
    assert_error(
        &route("hosts = [\"a.*.com\"]"),
        "7:10",
        "route[0].hosts[0]",
        "bad wildcard \"a.*.com\"",
    );
    assert_error(
        &route("hosts = [\"ok.com\", \"*\"]"),
        "7:20",
        "route[0].hosts[1]",
        "bad wildcard \"*\"",
    );
    assert_error(
        &route("hosts = [\"*.*.com\"]"),
        "7:10",
        "route[0].hosts[0]",
        "bad wildcard",
    );
    assert_error(
        &route("hosts = [\"example.com:8080\"]"),
        "7:10",
        "route[0].hosts[0]",
        "must not include a port",
    );
    assert_error(
        &route("hosts = [\"exa mple.com\"]"),
        "7:10",
        "route[0].hosts[0]",
        "not allowed in a host name",
    );
    assert_error(
        &route("hosts = [\"example..com\"]"),
        "7:10",
        "route[0].hosts[0]",
        "empty label",
    );
    assert_error(
        &route("hosts = []"),
        "7:9",
        "route[0].hosts",
        "leave `hosts` out",
    );
    assert_error(
        &route("methods = [\"GET\", \"GE T\"]"),
        "7:19",
        "route[0].methods[1]",
        "invalid method \"GE T\"",
    );
    assert_error(
        &route("methods = []"),
        "7:11",
        "route[0].methods",
        "leave `methods` out",
    );
    assert_error(
        &route("headers = { \"x a\" = \"1\" }"),
        "7:21",
        "route[0].headers.\"x a\"",
        "invalid header name",
    );
    assert_error(
        &route("headers = { \"X-A\" = \"1\", \"x-a\" = \"2\" }"),
        "7:34",
        "route[0].headers.x-a",
        "duplicate header \"x-a\"",
    );
    assert_error(
        &route("headers = { \"x-a\" = \" 1\" }"),
        "7:21",
        "route[0].headers.x-a",
        "whitespace",
    );
    assert_error(
        &route("host_rewrite = \"a b\""),
        "7:16",
        "route[0].host_rewrite",
        "invalid host \"a b\"",
    );
    assert_error(
        &route("name = \"\""),
        "7:8",
        "route[0].name",
        "must not be empty",
    );
}

#[test]
fn duplicate_route_names() {
    let text =
        format!("{MINIMAL}name = \"web\"\n\n[[route]]\nname = \"web\"\nupstream = \"app\"\n");
    assert_error(
        &text,
        "10:8",
        "route[1].name",
        "duplicate route name \"web\" (also route[0])",
    );
    // An explicit name can collide with a default one; the unnamed route points at its header.
    let text = format!("{MINIMAL}name = \"route-1\"\n\n[[route]]\nupstream = \"app\"\n");
    assert_error(
        &text,
        "9:1",
        "route[1].name",
        "duplicate route name \"route-1\"",
    );
}

#[test]
fn a_file_without_routes_is_rejected() {
    let e = error("[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n");
    assert_eq!(
        e,
        "ringwall.toml: route: no routes: add a [[route]] or pass --upstream <ADDR>"
    );
    let e = error("");
    assert!(e.contains("no routes"), "{e}");
}

#[test]
fn unknown_upstream_with_no_groups() {
    let e = error("[[route]]\nupstream = \"app\"\n");
    assert!(e.contains("there are no [[upstream]] groups"), "{e}");
}

// ---- flags ---------------------------------------------------------------------------------

#[test]
fn flags_override_the_file() {
    let file = TempFile::new(
        "overrides",
        &format!("listen = [\"127.0.0.1:7000\"]\nlog_level = \"warn\"\n\n[engine]\nworkers = 3\nio_driver = \"epoll\"\n\n{MINIMAL}"),
    );
    let config = load(&cli(&[
        "--config",
        file.arg(),
        "-l",
        "127.0.0.1:7001",
        "-l",
        "127.0.0.1:7002",
        "-w",
        "5",
        "--no-pin",
        "--io-driver",
        "uring-plain",
        "--ring-entries",
        "512",
        "--gossip-interval",
        "5ms",
        "--client-header-timeout",
        "1s",
        "--client-keepalive-timeout",
        "2s",
        "--upstream-connect-timeout",
        "3s",
        "--upstream-response-timeout",
        "4s",
        "--upstream-idle-timeout",
        "5s",
        "--drain-timeout",
        "6s",
        "--max-request-head",
        "1KiB",
        "--max-response-head",
        "2KiB",
        "--max-headers",
        "7",
        "--max-uri",
        "512",
        "--max-body",
        "1MB",
        "--upstream-max-idle",
        "3",
        "--log-level",
        "trace",
    ]))
    .unwrap();
    assert_eq!(config.source.as_deref(), Some(file.0.as_path()));
    assert_eq!(
        config.listen_addrs(),
        [addr("127.0.0.1:7001"), addr("127.0.0.1:7002")]
    );
    assert_eq!(config.log_level, "trace");
    assert_eq!(
        config.engine,
        EngineConfig {
            workers: 5,
            pin: false,
            io_driver: IoDriver::UringPlain,
            ring_entries: 512,
            share_listen: false,
            gossip_interval: Duration::from_millis(5),
        }
    );
    assert_eq!(
        config.timeouts,
        Timeouts {
            client_header: Duration::from_secs(1),
            client_keepalive: Duration::from_secs(2),
            client_body: Duration::from_secs(60),
            client_send: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(3),
            upstream_response: Duration::from_secs(4),
            upstream_idle: Duration::from_secs(5),
            drain: Duration::from_secs(6),
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            tunnel_idle: Duration::from_secs(3600),
            tls_handshake: Duration::from_secs(10),
            tcp_idle: Duration::from_secs(600),
            udp_idle: Duration::from_secs(60),
        }
    );
    assert_eq!(
        config.limits,
        Limits {
            max_request_head: 1024,
            max_response_head: 2048,
            max_headers: 7,
            max_uri: 512,
            max_body: Some(1_000_000),
            min_body_rate: 240,
            max_connections_per_worker: 16384,
            max_connections_per_ip: 0,
        }
    );
    assert_eq!(config.upstreams[0].max_idle_per_server, 3);
}

#[test]
fn unset_flags_keep_the_file() {
    let file = TempFile::new(
        "keep",
        &format!(
            "[engine]\nworkers = 3\npin = false\n\n[limits]\nmax_body = \"1KiB\"\n\n{MINIMAL}"
        ),
    );
    let config = load(&cli(&["--config", file.arg()])).unwrap();
    assert_eq!(config.engine.workers, 3);
    assert!(!config.engine.pin);
    assert_eq!(config.limits.max_body, Some(1024));
    let config = load(&cli(&[
        "--config",
        file.arg(),
        "--pin",
        "--max-body",
        "unlimited",
    ]))
    .unwrap();
    assert!(config.engine.pin);
    assert_eq!(config.limits.max_body, None);
}

#[test]
fn flag_errors_name_the_flag() {
    let file = TempFile::new("flag-errors", MINIMAL);
    let fails = |args: &[&str]| {
        let mut all = vec!["--config", file.arg()];
        all.extend_from_slice(args);
        load(&cli(&all)).unwrap_err().to_string()
    };
    assert_eq!(fails(&["--workers", "0"]), "--workers: must be at least 1");
    assert_eq!(
        fails(&["--ring-entries", "10"]),
        "--ring-entries: must be between 256 and 32768 (got 10)"
    );
    assert_eq!(
        fails(&["--max-headers", "0"]),
        "--max-headers: must be between 1 and 1024 (got 0)"
    );
    assert_eq!(
        fails(&["--max-uri", "0"]),
        "--max-uri: must be at least 1 byte"
    );
    assert!(fails(&["--max-request-head", "1GiB"])
        .starts_with("--max-request-head: must be at most 16MiB"));
    assert!(fails(&["--max-response-head", "0"]).starts_with("--max-response-head: "));
    assert!(fails(&["-l", "127.0.0.1:1", "-l", "127.0.0.1:1"])
        .starts_with("--listen: duplicate address"));
    assert!(fails(&["-l", "nope"]).starts_with("--listen: invalid address \"nope\""));
    assert!(fails(&["-u", "127.0.0.1"]).starts_with("--upstream: invalid address \"127.0.0.1\""));
    assert!(fails(&["-u", "127.0.0.1:0"]).starts_with("--upstream: invalid address"));

    // Without a file too.
    let e = load(&cli(&["-u", "127.0.0.1:9001", "-w", "0"])).unwrap_err();
    assert_eq!(e.to_string(), "--workers: must be at least 1");
}

#[test]
fn flags_do_not_excuse_file_errors() {
    // An error in the file is still reported at its line when unrelated flags are given.
    let file = TempFile::new("file-error", &format!("{MINIMAL}path_prefix = \"x\"\n"));
    let e = load(&cli(&[
        "--config",
        file.arg(),
        "-w",
        "2",
        "-u",
        "127.0.0.1:9009",
    ]))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:7:15: route[0].path_prefix: \"x\" must start with \"/\"",
            file.0.display()
        )
    );
}

// ---- --upstream ------------------------------------------------------------------------------

#[test]
fn nothing_to_proxy_without_file_or_upstream() {
    let e = load(&cli(&[])).unwrap_err();
    assert!(matches!(e, ConfigError::NoSource));
    let e = e.to_string();
    for hint in ["--upstream", "--config", "--demo"] {
        assert!(e.contains(hint), "{e}");
    }
    // Other flags alone are not enough.
    assert!(matches!(
        load(&cli(&["-w", "2"])).unwrap_err(),
        ConfigError::NoSource
    ));
}

#[test]
fn upstream_flag_alone_builds_group_and_catch_all_route() {
    let config = load(&cli(&["-u", "127.0.0.1:9001", "-u", "127.0.0.1:9002"])).unwrap();
    assert_eq!(config.source, None);
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:8080")]);
    assert_eq!(
        config.upstreams,
        [plain_group(
            "default",
            vec![addr("127.0.0.1:9001"), addr("127.0.0.1:9002")],
            64
        )]
    );
    let routes = &config.routes;
    assert_eq!(routes.len(), 1);
    let route = &routes[0];
    assert_eq!(route.name, "default");
    assert!(route.hosts.is_empty() && route.methods.is_empty() && route.headers.is_empty());
    assert_eq!(route.path_prefix, "/");
    assert_eq!(
        route.action,
        RouteAction::Forward {
            upstream: 0,
            host_rewrite: None
        }
    );
    assert_eq!(route.policy.rewrite, None);
    assert_eq!(
        route.policy.timeouts.upstream_response,
        config.timeouts.upstream_response
    );
    assert_eq!(
        config.summary(),
        "<command line>: ok (1 routes, 1 upstream groups, 1 listeners)"
    );
}

#[test]
fn upstream_flag_appends_catch_all_after_file_routes() {
    let file = TempFile::new("append", MINIMAL);
    let config = load(&cli(&[
        "-c",
        file.arg(),
        "-u",
        "127.0.0.1:9100",
        "--upstream-max-idle",
        "2",
    ]))
    .unwrap();
    assert_eq!(config.upstreams.len(), 2);
    assert_eq!(config.upstreams[1].name, "default");
    assert_eq!(config.upstreams[1].servers, [addr("127.0.0.1:9100")]);
    // --upstream-max-idle applies to every group, the new one included.
    assert!(config.upstreams.iter().all(|u| u.max_idle_per_server == 2));
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["route-0", "default"]);
    assert_eq!(config.routes[1].upstream(), Some(1));
}

#[test]
fn upstream_flag_replaces_the_servers_of_a_default_group() {
    let text = r#"[[upstream]]
name = "default"
servers = ["127.0.0.1:9001"]
max_idle_per_server = 5

[[route]]
name = "only-get"
methods = ["GET"]
upstream = "default"
"#;
    let file = TempFile::new("replace", text);
    let config = load(&cli(&["-c", file.arg(), "-u", "127.0.0.1:9200"])).unwrap();
    assert_eq!(
        config.upstreams,
        [plain_group("default", vec![addr("127.0.0.1:9200")], 5)]
    );
    // A route already sends to `default`: no route is added.
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].name, "only-get");
}

#[test]
fn upstream_flag_picks_a_free_route_name() {
    let text = r#"[[upstream]]
name = "app"
servers = ["127.0.0.1:9001"]

[[route]]
name = "default"
upstream = "app"
"#;
    let file = TempFile::new("free-name", text);
    let config = load(&cli(&["-c", file.arg(), "-u", "127.0.0.1:9300"])).unwrap();
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["default", "default-2"]);
    assert_eq!(config.routes[1].upstream(), Some(1));
}

#[test]
fn upstream_flag_lets_a_file_without_routes_load() {
    let file = TempFile::new(
        "no-routes",
        "listen = [\"127.0.0.1:7100\"]\n[engine]\nworkers = 1\n",
    );
    assert!(load(&cli(&["-c", file.arg()]))
        .unwrap_err()
        .to_string()
        .contains("no routes"));
    let config = load(&cli(&["-c", file.arg(), "-u", "localhost:9400"])).unwrap();
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:7100")]);
    assert_eq!(config.engine.workers, 1);
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn demo() {
    let demo = vec![addr("127.0.0.1:9501"), addr("127.0.0.1:9502")];
    let config = load_demo(
        &cli(&["--demo", "-w", "1", "-l", "127.0.0.1:7200"]),
        demo.clone(),
    )
    .unwrap();
    assert_eq!(config.upstreams[0].servers, demo);
    assert_eq!(config.engine.workers, 1);
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:7200")]);
    // --upstream wins over the demo origins.
    let config = load_demo(&cli(&["--demo", "-u", "127.0.0.1:9600"]), demo).unwrap();
    assert_eq!(config.upstreams[0].servers, [addr("127.0.0.1:9600")]);
    // Plain `load` cannot build the demo configuration, and says so.
    let e = load(&cli(&["--demo"])).unwrap_err().to_string();
    assert!(e.starts_with("--demo: "), "{e}");
}

#[test]
fn check_reports_counts() {
    let file = TempFile::new(
        "check",
        &format!("listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n{MINIMAL}"),
    );
    let line = check(&cli(&["check", "--config", file.arg()])).unwrap();
    assert_eq!(
        line,
        format!(
            "{}: ok (1 routes, 1 upstream groups, 2 listeners)",
            file.0.display()
        )
    );
    let bad = TempFile::new("check-bad", "[engine]\nworkers = 0\n");
    let e = check(&cli(&["check", "-c", bad.arg()]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}:2:11: engine.workers: must be at least 1",
            bad.0.display()
        )
    );
}

// ---- units -----------------------------------------------------------------------------------

#[test]
fn size_parsing() {
    for (text, bytes) in [
        ("0", 0),
        ("4096", 4096),
        ("10B", 10),
        ("32KiB", 32 << 10),
        ("32 KiB", 32 << 10),
        ("5MiB", 5 << 20),
        ("2GiB", 2 << 30),
        ("3KB", 3_000),
        ("3MB", 3_000_000),
        ("3GB", 3_000_000_000),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in [
        "",
        "KiB",
        "1.5KiB",
        "-1",
        "12kib",
        "12 XB",
        "99999999999999999999",
        "18446744073709551615GiB",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(parse_body_limit("unlimited"), Ok(BodyLimit(None)));
    assert_eq!(parse_body_limit("1KiB"), Ok(BodyLimit(Some(1024))));
    assert!(parse_body_limit("lots").is_err());
    assert_eq!(units::format_size(32 << 10), "32KiB");
    assert_eq!(units::format_size(16 << 20), "16MiB");
    assert_eq!(units::format_size(1000), "1000B");
}

#[test]
fn duration_parsing() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
    for bad in ["", "5", "0s", "0ms", "-1s", "5 parsecs", "366days"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn size_fields_accept_integers_and_strings() {
    let config = parse(&format!(
        "[limits]\nmax_request_head = 2048\nmax_uri = \"1 KiB\"\nmax_body = 0\n\n{MINIMAL}"
    ));
    assert_eq!(config.limits.max_request_head, 2048);
    assert_eq!(config.limits.max_uri, 1024);
    assert_eq!(config.limits.max_body, Some(0));
}

// ---- host patterns ---------------------------------------------------------------------------

#[test]
fn host_patterns_parse() {
    use validate::parse_host_pattern as p;
    assert_eq!(
        p("Example.COM"),
        Ok(HostPattern::Exact("example.com".into()))
    );
    assert_eq!(
        p("*.Example.org"),
        Ok(HostPattern::Suffix(".example.org".into()))
    );
    assert_eq!(p("10.0.0.1"), Ok(HostPattern::Exact("10.0.0.1".into())));
    assert_eq!(p("[::1]"), Ok(HostPattern::Exact("[::1]".into())));
    for bad in [
        "",
        "*",
        "*.",
        "a.*.com",
        "*.*.com",
        "a*.com",
        "example.com:80",
        "[::1]:80",
        "[zz]",
        "a_b c",
    ] {
        assert!(p(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn host_patterns_match() {
    let exact = HostPattern::Exact("api.example.com".into());
    assert!(exact.matches(b"api.example.com"));
    assert!(exact.matches(b"API.Example.com:8443"));
    assert!(exact.matches(b"api.example.com."));
    assert!(!exact.matches(b"www.api.example.com"));
    assert!(!exact.matches(b"api.example.co"));

    let suffix = HostPattern::Suffix(".example.org".into());
    assert!(suffix.matches(b"a.example.org"));
    assert!(suffix.matches(b"a.b.EXAMPLE.org:80"));
    assert!(!suffix.matches(b"example.org"));
    assert!(!suffix.matches(b"badexample.org"));
    assert!(!suffix.matches(b".example.org"));

    let v6 = HostPattern::Exact("[::1]".into());
    assert!(v6.matches(b"[::1]:8080"));
    assert!(v6.matches(b"[::1]"));
}

// ---- field paths -----------------------------------------------------------------------------

#[test]
fn field_paths_display() {
    let p = error::path(&["route"])
        .index(1)
        .key("headers")
        .key("x-api-version");
    assert_eq!(p.to_string(), "route[1].headers.x-api-version");
    assert_eq!(error::path(&["listen"]).index(0).to_string(), "listen[0]");
    assert_eq!(error::path(&["a b"]).to_string(), "\"a b\"");
}

#[test]
fn errors_in_crlf_files_and_after_multibyte_text_count_characters() {
    let text = "# café ☕\r\n[engine]\r\nworkers = 0\r\n";
    assert_error(text, "3:11", "engine.workers", "must be at least 1");
    let text = "[[upstream]]\nname = \"ünï\"\nservers = [\"127.0.0.1:1\"]\n[[route]]\nname = \"é\" ; upstream = \"x\"\n";
    // Syntax error: the column counts characters, not bytes.
    let e = error(text);
    assert!(e.starts_with("ringwall.toml:5:"), "{e}");
    let text =
        "[[upstream]]\nname = \"ünï\"\nservers = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"ü\"\n";
    assert_error(
        text,
        "5:12",
        "route[0].upstream",
        "unknown upstream group \"ü\"",
    );
}

#[test]
fn paths_reach_into_inline_tables() {
    // Path lookups work inside inline tables nested in arrays of tables.
    let text = format!("{MINIMAL}headers = {{ good = \"1\", \"bad name\" = \"2\" }}\n");
    assert_error(
        &text,
        "7:38",
        "route[0].headers.\"bad name\"",
        "invalid header name",
    );
}

#[test]
fn config_error_is_cloneable_and_sendable() {
    fn assert_traits<T: Clone + Send + Sync + std::error::Error + 'static>() {}
    assert_traits::<ConfigError>();
    let e = ConfigError::Invalid {
        file: Some("x.toml".into()),
        location: Some(Location { line: 3, column: 4 }),
        field: Some("engine.workers".into()),
        message: "must be at least 1".into(),
    };
    assert_eq!(
        e.clone().to_string(),
        "x.toml:3:4: engine.workers: must be at least 1"
    );
}

#[test]
fn the_full_example_in_the_docs_is_valid() {
    let docs = include_str!("../../../docs/configuration.md");
    let section = &docs[docs
        .find("## Full example")
        .expect("docs have a full example")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + section[start..].find("```").expect("the block ends");
    let config = parse(&section[start..end]);
    assert_eq!(config.routes.len(), 7);
    assert_eq!(config.upstreams.len(), 3);
    assert_eq!(config.limits.max_body, Some(25 << 20));
    let route = |name: &str| config.routes.iter().find(|r| r.name == name).unwrap();
    assert!(matches!(route("health").action, RouteAction::Return(_)));
    assert_eq!(route("uploads").policy.max_body, Some(2 << 30));
    assert_eq!(route("web").policy.max_body, Some(25 << 20));
    assert_eq!(
        route("uploads").policy.timeouts.client_body,
        Duration::from_secs(300)
    );
    assert!(!route("web").policy.forwarding.via && route("api").policy.forwarding.via);
    assert_eq!(
        route("api").policy.request_id.as_deref(),
        Some("X-Request-Id")
    );
    assert_eq!(config.http.trusted_proxies.len(), 1);
}

#[test]
fn connection_limits_and_body_rate() {
    let config = Config::from_toml_str(
        &format!(
            "[limits]\nmin_body_rate = \"1KiB\"\nmax_connections_per_worker = 100\nmax_connections_per_ip = 8\n\n{MINIMAL}"
        ),
        None,
    )
    .unwrap();
    assert_eq!(config.limits.min_body_rate, 1024);
    assert_eq!(config.limits.max_connections_per_worker, 100);
    assert_eq!(config.limits.max_connections_per_ip, 8);
    let err = Config::from_toml_str(
        &format!("[limits]\nmax_connections_per_worker = 0\n\n{MINIMAL}"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("limits.max_connections_per_worker"), "{err}");
    assert!(err.contains(":2:"), "{err}");
}

// ---- listeners, [http] and what a route does ------------------------------------------------

/// Asserts `text` fails on line `line` (any column) at `field` with `message`.
#[track_caller]
fn assert_error_on_line(text: &str, line: usize, field: &str, message: &str) {
    let e = error(text);
    let prefix = format!("ringwall.toml:{line}:");
    assert!(e.starts_with(&prefix), "expected {prefix:?}…, got {e:?}");
    assert!(
        e.contains(&format!(": {field}: ")),
        "expected {field:?} in {e:?}"
    );
    assert!(e.contains(message), "expected {message:?} in {e:?}");
}

#[test]
fn listeners_from_listen_and_listener_entries() {
    let config = parse(&format!(
        "listen = [\"127.0.0.1:7001\"]\n\n[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:7002\"\nprotocol = \"http\"\n\n[[listener]]\naddress = \"[::1]:7003\"\n\n{MINIMAL}"
    ));
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["listener-0", "public", "listener-2"]);
    assert_eq!(
        config.listen_addrs(),
        [
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7002"),
            addr("[::1]:7003")
        ]
    );
    assert!(config
        .listeners
        .iter()
        .all(|l| l.protocol == ListenerProtocol::Http && l.protocol.scheme() == "http"));
    // A [[listener]] alone replaces the default address.
    let config = parse(&format!(
        "[[listener]]\naddress = \"127.0.0.1:7004\"\n\n{MINIMAL}"
    ));
    assert_eq!(config.listen_addrs(), [addr("127.0.0.1:7004")]);
    assert_eq!(
        parse(MINIMAL).summary(),
        "ringwall.toml: ok (1 routes, 1 upstream groups, 1 listeners)"
    );
}

#[test]
fn listener_errors() {
    assert_error_on_line(
        &format!("[[listener]]\naddress = \"127.0.0.1:7002\"\nprotocol = \"quic\"\n\n{MINIMAL}"),
        3,
        "listener[0].protocol",
        "unknown variant `quic`, expected one of `http`, `https`, `tcp`, `tls`, `udp`",
    );
    assert_error_on_line(
        &format!("listen = [\"127.0.0.1:7002\"]\n[[listener]]\naddress = \"127.0.0.1:7002\"\n\n{MINIMAL}"),
        3,
        "listener[0].address",
        "duplicate address \"127.0.0.1:7002\" (127.0.0.1:7002, also listen[0])",
    );
    assert_error_on_line(
        &format!("[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\n\n{MINIMAL}"),
        5,
        "listener[1].name",
        "duplicate listener name \"a\"",
    );
    assert_error_on_line(
        &format!("[[listener]]\nport = 80\n\n{MINIMAL}"),
        2,
        "listener[0].port",
        "unknown field `port`",
    );
}

/// One upstream group `app` and then `route`, whose first line is line 5.
fn with_route(route: &str) -> String {
    format!("[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n\n[[route]]\n{route}")
}

#[test]
fn a_route_forwards_or_returns() {
    let config = parse(&with_route(
        "return = { status = 301, location = \"https://x.test${request_uri}\" }\n",
    ));
    let RouteAction::Return(response) = &config.routes[0].action else {
        panic!("not a return route");
    };
    assert_eq!(response.status, 301);
    assert_eq!(config.routes[0].upstream(), None);
    assert_error_on_line(
        &with_route("upstream = \"app\"\nreturn = { status = 200 }\n"),
        7,
        "route[0].return",
        "not both",
    );
    assert_error_on_line(
        &with_route("path_prefix = \"/\"\n"),
        5,
        "route[0]",
        "missing field `upstream`",
    );
    assert_error_on_line(
        &with_route("return = { status = 302 }\n"),
        6,
        "route[0].return.location",
        "a 302 redirect needs a location",
    );
    assert_error_on_line(
        &with_route("return = { status = 99 }\n"),
        6,
        "route[0].return.status",
        "between 200 and 599",
    );
    assert_error_on_line(
        &with_route("return = { status = 200, body = \"${nope}\" }\n"),
        6,
        "route[0].return.body",
        "unknown variable \"${nope}\"",
    );
    assert_error_on_line(
        &with_route("return = { status = 200 }\nhost_rewrite = \"a\"\n"),
        7,
        "route[0].host_rewrite",
        "only a route that forwards",
    );
}

#[test]
fn rewrites_header_edits_timeouts_and_limits_per_route() {
    let config = parse(&with_route(
        "upstream = \"app\"\nstrip_prefix = \"/api\"\nrequest_headers = { set = { \"X-A\" = \"${host}\" }, remove = [\"X-B\"] }\ntimeouts = { upstream_response = \"2s\" }\nlimits = { max_body = \"1KiB\" }\nvia = false\n",
    ));
    let policy = &config.routes[0].policy;
    assert_eq!(
        policy.rewrite,
        Some(PathRewrite::StripPrefix("/api".into()))
    );
    assert_eq!(policy.request_headers.len(), 2);
    assert_eq!(policy.timeouts.upstream_response, Duration::from_secs(2));
    assert_eq!(policy.timeouts.client_body, config.timeouts.client_body);
    assert_eq!(policy.max_body, Some(1024));
    assert!(!policy.forwarding.via && policy.forwarding.x_forwarded);
    assert_error_on_line(
        &with_route("upstream = \"app\"\nstrip_prefix = \"/a\"\nreplace_prefix = { from = \"/b\", to = \"/c\" }\n"),
        5,
        "route[0]",
        "at most one of strip_prefix, replace_prefix and regex_rewrite",
    );
    assert_error_on_line(
        &with_route("upstream = \"app\"\nregex_rewrite = { pattern = \"(\", replace = \"/\" }\n"),
        7,
        "route[0].regex_rewrite.pattern",
        "invalid regular expression",
    );
    assert_error_on_line(
        &with_route("upstream = \"app\"\nstrip_prefix = \"api\"\n"),
        7,
        "route[0].strip_prefix",
        "must start with \"/\"",
    );
    assert_error_on_line(
        &with_route(
            "upstream = \"app\"\nrequest_headers = { set = { \"Content-Length\" = \"5\" } }\n",
        ),
        7,
        "route[0].request_headers.set.Content-Length",
        "written by ringwall itself",
    );
    assert_error_on_line(
        &with_route("upstream = \"app\"\nresponse_headers = { add = { \"X-A\" = \"a\\nb\" } }\n"),
        7,
        "route[0].response_headers.add.X-A",
        "visible ASCII",
    );
    assert_error_on_line(
        &with_route("upstream = \"app\"\ntimeouts = { upstream_response = \"0s\" }\n"),
        7,
        "route[0].timeouts.upstream_response",
        "must be greater than 0",
    );
    assert_error_on_line(
        &with_route("upstream = \"app\"\ntimeouts = { client_header = \"1s\" }\n"),
        7,
        "route[0].timeouts.client_header",
        "unknown field `client_header`",
    );
}

#[test]
fn http_section_and_its_flags() {
    let config = parse(&format!(
        "[http]\nmerge_slashes = true\nescaped_slashes = \"reject\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nrequest_id = true\nrequest_id_header = \"X-Trace\"\nresponse_headers = {{ set = {{ \"X-Edge\" = \"1\" }} }}\n\n{MINIMAL}"
    ));
    assert!(config.http.path.merge_slashes);
    assert_eq!(
        config.http.path.escaped_slashes,
        crate::http1::EscapedSlashes::Reject
    );
    assert_eq!(config.http.trusted_proxies.len(), 2);
    let policy = &config.routes[0].policy;
    assert_eq!(policy.request_id.as_deref(), Some("X-Trace"));
    assert_eq!(policy.response_headers.len(), 1);
    assert_error_on_line(
        &format!("[http]\ntrusted_proxies = [\"10.0.0.0/40\"]\n\n{MINIMAL}"),
        2,
        "http.trusted_proxies[0]",
        "invalid prefix length",
    );
    assert_error_on_line(
        &format!("[http]\nescaped_slashes = \"maybe\"\n\n{MINIMAL}"),
        2,
        "http.escaped_slashes",
        "unknown variant `maybe`",
    );
    let config = load(&cli(&[
        "-u",
        "127.0.0.1:9001",
        "--trusted-proxy",
        "192.0.2.0/24",
        "--request-header",
        "X-Real-IP: ${client_addr}",
        "--response-header",
        "X-Edge: yes",
        "--no-via",
        "--forwarded",
        "--request-id",
        "--merge-slashes",
        "--share-listen",
        "--tunnel-idle-timeout",
        "5m",
    ]))
    .unwrap();
    let policy = &config.routes[0].policy;
    assert_eq!(policy.request_headers[0].name, "X-Real-IP");
    assert_eq!(policy.response_headers[0].name, "X-Edge");
    assert!(!policy.forwarding.via && policy.forwarding.forwarded);
    assert!(policy.request_id.is_some() && config.http.path.merge_slashes);
    assert!(config.engine.share_listen);
    assert_eq!(config.timeouts.tunnel_idle, Duration::from_secs(300));
    let e = load(&cli(&[
        "-u",
        "127.0.0.1:9001",
        "--request-header",
        "X-A: ${what}",
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--request-header: "), "{e}");
    assert!(e.contains("unknown variable"), "{e}");
}

#[test]
fn ports_are_stripped_for_host_matching() {
    assert_eq!(strip_port(b"a.com:80"), b"a.com");
    assert_eq!(strip_port(b"a.com"), b"a.com");
    assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
    assert_eq!(strip_port(b"[::1]"), b"[::1]");
}

#[test]
fn a_tls_listener_without_certificates_is_refused_with_its_line() {
    let e =
        error_after_minimal("\n[[listener]]\naddress = \"127.0.0.1:8443\"\nprotocol = \"https\"\n");
    assert!(e.starts_with("ringwall.toml:10:"), "{e}");
    assert!(e.contains("listener[0].protocol"), "{e}");
    assert!(e.contains("[listener.tls]"), "{e}");

    let e = error_after_minimal(
        "\n[[listener]]\naddress = \"127.0.0.1:8443\"\n[listener.tls]\nmin_version = \"1.3\"\n",
    );
    assert!(e.contains("listener[0].tls"), "{e}");
    assert!(e.contains("set protocol = \"https\""), "{e}");
}

#[test]
fn a_missing_certificate_file_is_named_with_its_line_and_field() {
    let e = error_after_minimal(
        "\n[[listener]]\naddress = \"127.0.0.1:8443\"\nprotocol = \"https\"\n\
         [[listener.tls.certificate]]\ncert = \"no-such.pem\"\nkey = \"no-such.key\"\n",
    );
    assert!(e.starts_with("ringwall.toml:12:"), "{e}");
    assert!(e.contains("listener[0].tls.certificate[0].cert"), "{e}");
    // Relative to the file's directory.
    assert!(e.contains("no-such.pem: cannot read"), "{e}");
}

#[test]
fn https_redirect_takes_a_redirect_status_only() {
    let config = parse(&format!("{MINIMAL}https_redirect = true\n"));
    assert_eq!(
        config.routes[0].policy.https_redirect,
        Some(HttpsRedirect {
            status: 301,
            port: None
        })
    );
    let config = parse(&format!(
        "{MINIMAL}https_redirect = {{ status = 308, port = 8443 }}\n"
    ));
    assert_eq!(
        config.routes[0].policy.https_redirect,
        Some(HttpsRedirect {
            status: 308,
            port: Some(8443)
        })
    );
    let e = error(&format!("{MINIMAL}https_redirect = {{ status = 200 }}\n"));
    assert!(e.contains("route[0].https_redirect.status"), "{e}");
}

#[test]
fn tls_flags_without_their_pair_name_the_flag() {
    let e = load(&cli(&[
        "--upstream",
        "127.0.0.1:9001",
        "--tls-cert",
        "a.pem",
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--tls-key"), "{e}");
    assert!(e.contains("each --tls-cert needs its --tls-key"), "{e}");
}

#[test]
fn https_servers_take_their_name_and_port_443() {
    let config = parse(
        "[[upstream]]\nname = \"app\"\nservers = [\"https://localhost\", \"https://127.0.0.1:8443\"]\n\
         [[route]]\nupstream = \"app\"\n",
    );
    let group = &config.upstreams[0];
    assert_eq!(group.servers[0].port(), 443);
    assert_eq!(group.servers[1], addr("127.0.0.1:8443"));
    let tls = group.tls.as_ref().expect("TLS toward https:// servers");
    assert_eq!(tls.server_names, ["localhost", "127.0.0.1"]);
    assert_eq!(tls.ca, None);

    let e = error(
        "[[upstream]]\nname = \"app\"\nservers = [\"https://127.0.0.1:1\", \"127.0.0.1:2\"]\n\
         [[route]]\nupstream = \"app\"\n",
    );
    assert!(e.contains("upstream[0].servers[1]"), "{e}");
    assert!(e.contains("mixes https://"), "{e}");

    let e = error_after_minimal("[upstream.tls]\nca = \"x.pem\"\n");
    assert!(e.contains("upstream[0].tls"), "{e}");
}

#[test]
fn tcp_listeners_forward_to_a_group_and_http_ones_do_not() {
    let config = parse(&format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:7100\"\nprotocol = \"tcp\"\n\
         upstream = \"app\"\nsend_proxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n\
         [[listener.sni_routes]]\nhosts = [\"*.a.test\"]\nupstream = \"app\"\n"
    ));
    let tcp = &config.listeners[0];
    assert_eq!(tcp.protocol, ListenerProtocol::Tcp);
    let forward = tcp.forward.as_ref().unwrap();
    assert_eq!(forward.upstream, Some(0));
    assert_eq!(forward.sni_routes[0].upstream, 0);
    assert_eq!(
        forward.send_proxy_protocol,
        Some(crate::l4::ProxyVersion::V2)
    );
    assert_eq!(tcp.proxy_protocol_from.len(), 1);

    let e = error(&format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:7100\"\nprotocol = \"tcp\"\nupstream = \"nope\"\n"
    ));
    assert!(
        e.contains("listener[0].upstream: unknown upstream group \"nope\""),
        "{e}"
    );
    let e = error(&format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:7100\"\nprotocol = \"tcp\"\n"
    ));
    assert!(e.contains("needs the upstream group"), "{e}");
    let e = error(&format!(
        "{MINIMAL}\n[[listener]]\naddress = \"127.0.0.1:7100\"\nupstream = \"app\"\n"
    ));
    assert!(e.contains("listener[0].upstream: only for protocol"), "{e}");
    // Only TCP listeners: no route is needed.
    let config = parse(
        "[[upstream]]\nname = \"db\"\nservers = [\"127.0.0.1:5432\"]\n\
         [[listener]]\naddress = \"127.0.0.1:7101\"\nprotocol = \"tcp\"\nupstream = \"db\"\n",
    );
    assert!(config.routes.is_empty());
}

/// A group of plain servers with every setting but the pool at its default, as a file without
/// those keys gives it.
fn plain_group(name: &str, servers: Vec<SocketAddr>, max_idle_per_server: usize) -> UpstreamGroup {
    UpstreamGroup {
        name: name.into(),
        weights: vec![1; servers.len()],
        primaries: servers.len(),
        servers,
        max_idle_per_server,
        tls: None,
        lb: LoadBalancing::default(),
        health_check: None,
        ejection: default_ejection(),
        slow_start: Duration::from_secs(10),
        circuit_breaker: crate::config::CircuitBreaker::default(),
        retry_budget: crate::config::RetryBudgetSettings {
            percent: 20,
            min_per_second: 10,
        },
        resolve: None,
    }
}

/// `[upstream.ejection]`'s defaults.
fn default_ejection() -> crate::config::Ejection {
    crate::config::Ejection {
        consecutive: 5,
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
        max_percent: 50,
    }
}

#[test]
fn health_checks_backups_and_ejection_are_read_and_checked() {
    use crate::config::{CheckKind, HealthCheck, Thresholds};
    let group = |body: &str| {
        format!(
            "listen = [\"127.0.0.1:8080\"]\n[[upstream]]\nname = \"app\"\n\
             servers = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n{body}\n\
             [[route]]\nupstream = \"app\"\n"
        )
    };
    let config = parse(&group(
        "backup = [\"127.0.0.1:9003\"]\nweights = [2, 1]\nslow_start = \"3s\"\n\
         [upstream.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\n\
         status = \"200-299\"\nbody = \"ok\"\n\
         [upstream.ejection]\nconsecutive_failures = 3\ntime = \"2s\"\n",
    ));
    let app = &config.upstreams[0];
    assert_eq!(app.servers.len(), 3);
    assert_eq!(app.primaries, 2);
    assert_eq!(app.weights, [2, 1, 1]);
    assert_eq!(app.slow_start, Duration::from_secs(3));
    assert_eq!(
        app.health_check,
        Some(HealthCheck {
            kind: CheckKind::Http {
                method: "GET".into(),
                path: "/healthz".into(),
                host: None,
                status: (200, 299),
                body: Some("ok".into()),
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            jitter: Duration::from_millis(100),
            thresholds: Thresholds { rise: 2, fall: 3 },
        })
    );
    assert_eq!(app.ejection.consecutive, 3);
    assert_eq!(app.ejection.base, Duration::from_secs(2));
    let bad = [
        (
            "[upstream.health_check]\nkind = \"udp\"",
            "upstream[0].health_check.kind",
        ),
        (
            "[upstream.health_check]\nkind = \"tls\"",
            "upstream[0].health_check.kind",
        ),
        (
            "[upstream.health_check]\npath = \"healthz\"",
            "upstream[0].health_check.path",
        ),
        (
            "[upstream.health_check]\nstatus = \"600\"",
            "upstream[0].health_check.status",
        ),
        (
            "[upstream.health_check]\nstatus = \"300-200\"",
            "upstream[0].health_check.status",
        ),
        (
            "[upstream.health_check]\nrise = 0",
            "upstream[0].health_check.rise",
        ),
        (
            "[upstream.health_check]\ninterval = \"1ms\"",
            "upstream[0].health_check.interval",
        ),
        (
            "[upstream.health_check]\ninterval = \"1s\"\njitter = \"2s\"",
            "upstream[0].health_check.jitter",
        ),
        (
            "[upstream.ejection]\nmax_percent = 101",
            "upstream[0].ejection.max_percent",
        ),
        (
            "[upstream.ejection]\ntime = \"10s\"\nmax_time = \"1s\"",
            "upstream[0].ejection.max_time",
        ),
        ("backup = [\"nowhere\"]", "upstream[0].backup[0]"),
    ];
    for (body, field) in bad {
        let error = error(&group(body));
        assert!(error.contains(field), "{body}: {error}");
    }
}

#[test]
fn health_flags_set_every_group_and_need_a_check() {
    let config = load(&cli(&[
        "-u",
        "127.0.0.1:9001",
        "--health-check",
        "/up",
        "--health-interval",
        "500ms",
        "--health-timeout",
        "300ms",
        "--health-rise",
        "1",
        "--health-fall",
        "4",
        "--eject-after",
        "0",
        "--slow-start",
        "0s",
    ]))
    .unwrap();
    let group = &config.upstreams[0];
    let check = group.health_check.as_ref().unwrap();
    assert!(matches!(&check.kind, crate::config::CheckKind::Http { path, .. } if path == "/up"));
    assert_eq!(check.interval, Duration::from_millis(500));
    assert_eq!(check.jitter, Duration::from_millis(50));
    assert_eq!(check.timeout, Duration::from_millis(300));
    assert_eq!((check.thresholds.rise, check.thresholds.fall), (1, 4));
    assert_eq!(group.ejection.consecutive, 0);
    assert_eq!(group.slow_start, Duration::ZERO);
    let error = load(&cli(&["-u", "127.0.0.1:9001", "--health-interval", "1s"]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--health-interval") && error.contains("--health-check"),
        "{error}"
    );
}

#[test]
fn retries_and_circuit_breakers_are_read_and_checked() {
    let text = |group: &str, route: &str| {
        format!(
            "listen = [\"127.0.0.1:8080\"]\n[[upstream]]\nname = \"app\"\n\
             servers = [\"127.0.0.1:9001\"]\n{group}\n\
             [[route]]\nupstream = \"app\"\n{route}\n"
        )
    };
    let config = parse(&text(
        "[upstream.circuit_breaker]\nmax_requests = 10\nmax_pending = 4\n\
         pending_timeout = \"250ms\"\nmax_connections_per_server = 3\n\
         [upstream.retry_budget]\npercent = 50\nmin_per_second = 1",
        "",
    ));
    let group = &config.upstreams[0];
    assert_eq!(group.circuit_breaker.max_requests, Some(10));
    assert_eq!(group.circuit_breaker.max_pending, 4);
    assert_eq!(
        group.circuit_breaker.pending_timeout,
        Some(Duration::from_millis(250))
    );
    assert_eq!(group.circuit_breaker.max_connections_per_server, Some(3));
    assert_eq!(group.circuit_breaker.max_connections, None);
    assert_eq!(
        (
            group.retry_budget.percent,
            group.retry_budget.min_per_second
        ),
        (50, 1)
    );
    let message = error(&text("", "retry = { on = [\"429\"] }"));
    assert!(message.contains("route[0].retry.on[0]"), "{message}");
    let retry = &parse(&text(
        "",
        "retry = { tries = 3, on = [\"error\", \"5xx\"], per_try_timeout = \"1s\" }",
    ))
    .routes[0]
        .policy
        .retry;
    assert_eq!(retry.tries, 3);
    assert!(retry.on_error && !retry.on_timeout);
    assert!(retry.retries_status(503) && !retry.retries_status(404));
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(retry.buffer_body, 64 * 1024);
    // Defaults: error and timeout, no status.
    let retry = &parse(&text("", "")).routes[0].policy.retry;
    assert!(retry.on_error && retry.on_timeout && !retry.retries_status(502));
    let bad = [
        (
            "[upstream.circuit_breaker]\nmax_requests = 0",
            "",
            "upstream[0].circuit_breaker.max_requests",
        ),
        ("", "retry = { tries = 101 }", "route[0].retry.tries"),
        (
            "",
            "retry = { on = [\"sometimes\"] }",
            "route[0].retry.on[0]",
        ),
        (
            "",
            "retry = { buffer_body = \"1GiB\" }",
            "route[0].retry.buffer_body",
        ),
    ];
    for (group, route, field) in bad {
        let message = error(&text(group, route));
        assert!(message.contains(field), "{group} {route}: {message}");
    }
    // Flags reach every route and group.
    let config = load(&cli(&[
        "-u",
        "127.0.0.1:9001",
        "--retry-on",
        "timeout,502",
        "--retry-tries",
        "2",
        "--per-try-timeout",
        "300ms",
        "--max-upstream-requests",
        "8",
        "--max-upstream-pending",
        "2",
        "--retry-budget",
        "5",
    ]))
    .unwrap();
    let retry = &config.routes[0].policy.retry;
    assert!(!retry.on_error && retry.on_timeout && retry.retries_status(502));
    assert_eq!(retry.tries, 2);
    assert_eq!(config.upstreams[0].circuit_breaker.max_requests, Some(8));
    assert_eq!(config.upstreams[0].circuit_breaker.max_pending, 2);
    assert_eq!(config.upstreams[0].retry_budget.percent, 5);
}

#[test]
fn names_resolve_through_the_hosts_file_to_every_address_when_re_resolved() {
    let hosts = TempFile::new(
        "hosts",
        "# comment\n10.0.0.1 app.internal other\n10.0.0.2 APP.internal\n",
    );
    let text = |resolve: &str| {
        format!(
            "listen = [\"127.0.0.1:8080\"]\n[resolver]\nhosts_file = \"{}\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"app.internal:9000\", \"10.0.0.9:9000\"]\n\
             weights = [3, 1]\n{resolve}\n[[route]]\nupstream = \"app\"\n",
            hosts.0.display()
        )
    };
    // Once, at load: the first address.
    let once = parse(&text(""));
    assert_eq!(
        once.upstreams[0].servers,
        [addr("10.0.0.1:9000"), addr("10.0.0.9:9000")]
    );
    assert_eq!(once.resolve_interval(), None);
    // Re-resolved: every address, each with its entry's weight.
    let every = parse(&text("resolve = \"1s\""));
    let group = &every.upstreams[0];
    assert_eq!(
        group.servers,
        [
            addr("10.0.0.1:9000"),
            addr("10.0.0.2:9000"),
            addr("10.0.0.9:9000")
        ]
    );
    assert_eq!(group.weights, [3, 3, 1]);
    assert_eq!(group.primaries, 3);
    assert_eq!(every.resolve_interval(), Some(Duration::from_secs(1)));
    assert!(error(&text("resolve = \"10ms\"")).contains("upstream[0].resolve"));
    let bad = TempFile::new("bad-hosts", "not-an-ip app.internal\n");
    let message = error(&format!(
        "[resolver]\nhosts_file = \"{}\"\n[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n",
        bad.0.display()
    ));
    assert!(
        message.contains("resolver.hosts_file") && message.contains("not an IP address"),
        "{message}"
    );
}

#[test]
fn hedging_is_read_and_checked() {
    let text = |hedge: &str| {
        format!(
            "listen = [\"127.0.0.1:8080\"]\n[[upstream]]\nname = \"app\"\n\
             servers = [\"127.0.0.1:9001\"]\n[[route]]\nupstream = \"app\"\n{hedge}\n"
        )
    };
    assert_eq!(parse(&text("")).routes[0].policy.hedge, None);
    let hedge = parse(&text("hedge = { percentile = 90, min_delay = \"2ms\" }")).routes[0]
        .policy
        .hedge
        .unwrap();
    assert_eq!(hedge.percentile, 90);
    assert_eq!(hedge.min_delay, Duration::from_millis(2));
    assert_eq!(hedge.max_delay, Duration::from_secs(1));
    for (bad, field) in [
        ("hedge = { percentile = 100 }", "route[0].hedge.percentile"),
        (
            "hedge = { min_delay = \"2s\", max_delay = \"1s\" }",
            "route[0].hedge.max_delay",
        ),
    ] {
        let message = error(&text(bad));
        assert!(message.contains(field), "{bad}: {message}");
    }
    let config = load(&cli(&["-u", "127.0.0.1:9001", "--hedge", "75"])).unwrap();
    assert_eq!(config.routes[0].policy.hedge.unwrap().percentile, 75);
}
