//! The configuration files of the origin, nginx and HAProxy, and ringwall's command line, with
//! equal settings for all three proxies.
//!
//! Pure functions from [`Layout`] (ports and file paths) to text, so tests can check what each
//! proxy is told. Every proxy: one worker or thread; keep-alive to clients; a pooled keep-alive
//! connection set to the origin (nginx `upstream { keepalive 64; }` with
//! `proxy_http_version 1.1` and an empty `Connection` header, HAProxy `http-reuse always`,
//! ringwall's own pool of 64 idle connections); bodies streamed or held in memory, never spilled
//! to disk; no access logs; TLS 1.3 only with the same P-256 certificate; L4 through nginx
//! `stream {}` and HAProxy `mode tcp`. The origin is an nginx of its own: `return 200 "hello world\n"` at `/`, static
//! files of 4 KiB, 64 KiB and 1 MiB, and `/upload`, which reads a whole request body, then answers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Idle pooled connections each proxy keeps to the origin.
pub const UPSTREAM_POOL: usize = 64;
/// Keep-alive limits high enough never to close a connection during a run.
const KEEPALIVE_TIMEOUT_S: u32 = 300;
/// Where Debian's dynamic nginx modules live.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// Ports and files of one comparison.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Temp dir holding configs, logs, pid files, the certificate and the origin's files.
    pub dir: PathBuf,
    pub origin_port: u16,
    /// ringwall's plain, TLS and TCP listeners.
    pub ringwall: ProxyPorts,
    /// ringwall's admin listener, whose `/metrics` the comparison scrapes every second while it
    /// runs (ringwall measured with its metrics on, as it runs in production).
    pub ringwall_admin: u16,
    pub nginx: ProxyPorts,
    pub haproxy: ProxyPorts,
    /// Client connections the proxies must accept at once (the idle scenario), plus margin.
    pub max_connections: usize,
    /// The open-file limit the servers inherit (hard limit; they cannot go past it).
    pub nofile_limit: u64,
    /// `load_module` line for nginx's stream module, when it is a dynamic module.
    pub nginx_stream_module: Option<PathBuf>,
}

/// The three listeners of a proxy under test.
#[derive(Clone, Copy, Debug)]
pub struct ProxyPorts {
    pub http: u16,
    pub tls: u16,
    pub l4: u16,
}

impl Layout {
    /// Open files to ask for: enough for every client and upstream connection, within the limit.
    pub fn nofile(&self) -> u64 {
        (self.max_connections as u64 * 2 + 1024).min(self.nofile_limit)
    }
    /// HAProxy's `maxconn`: it reserves two descriptors per connection (client and server) and
    /// refuses to start when `2 × maxconn` exceeds its open-file limit.
    pub fn haproxy_maxconn(&self) -> u64 {
        (self.max_connections as u64 + 256).min(self.nofile().saturating_sub(200) / 2)
    }

    /// The most idle client connections every proxy can hold within `nofile_limit`.
    pub fn idle_capacity(nofile_limit: u64) -> usize {
        usize::try_from((nofile_limit.saturating_sub(200) / 2).saturating_sub(256)).unwrap_or(0)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// HAProxy wants certificate and key in one file.
    pub fn cert_and_key(&self) -> PathBuf {
        self.dir.join("cert-and-key.pem")
    }
    pub fn www(&self) -> PathBuf {
        self.dir.join("www")
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The main context every nginx the comparison starts shares: one worker in the foreground,
/// its own pid and error log, and room for `connections` connections.
fn nginx_main_context(l: &Layout, name: &str, connections: usize) -> String {
    format!(
        "daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {pid};
error_log {log} warn;
events {{ worker_connections {connections}; }}
",
        nofile = l.nofile(),
        pid = p(&l.file(&format!("{name}.pid"))),
        log = p(&l.file(&format!("{name}-error.log"))),
    )
}

/// The origin nginx.
pub fn nginx_origin(l: &Layout) -> String {
    format!(
        r#"# ringwall-load compare: the origin server.
{main}http {{
    access_log off;
    default_type text/plain;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout {ka}s;
    client_max_body_size 0;
    client_body_buffer_size 2m;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = / {{ return 200 "hello world\n"; }}
        # Read the whole body (buffered in memory) before answering: a `return` here would
        # answer early and discard the body, and proxies differ in what they do then.
        location = /upload {{
            client_body_buffer_size 2m;
            proxy_pass http://origin_self/ok;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /ok {{ return 200 "ok\n"; }}
        location / {{ root {www}; }}
    }}
    upstream origin_self {{
        server 127.0.0.1:{port};
        keepalive 8;
    }}
}}
"#,
        main = nginx_main_context(l, "origin", l.max_connections + 1024),
        ka = KEEPALIVE_TIMEOUT_S,
        port = l.origin_port,
        www = p(&l.www()),
    )
}

/// Whether the proxies under test write access logs (the `small-16-log` scenario), each to a
/// file in the run's directory: nginx and ringwall buffered alike (16 KiB, flushed every
/// 100 ms: ringwall's fixed behaviour, nginx's `buffer=16k flush=100ms`), HAProxy to its
/// stdout (`log stdout`, its way to log without a syslog server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logging {
    Off,
    On,
}

impl Logging {
    /// The name of a proxy's configuration file for this logging.
    pub fn conf(self, name: &str) -> String {
        match self {
            Logging::Off => name.to_owned(),
            Logging::On => {
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
                format!("{stem}-log.{ext}")
            }
        }
    }
}

/// nginx as the proxy under test: HTTP, TLS 1.3 and L4 listeners.
pub fn nginx_proxy(l: &Layout, logging: Logging) -> String {
    let mut out = String::from("# ringwall-load compare: nginx under test.\n");
    if let Some(module) = &l.nginx_stream_module {
        let _ = writeln!(out, "load_module {};", p(module));
    }
    let location = "location / {\n            proxy_pass http://origin;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n        }";
    let _ = write!(
        out,
        r"{main}http {{
    {access_log}
    keepalive_requests 1000000;
    keepalive_timeout {ka}s;
    client_max_body_size 0;
    # Request bodies streamed; responses through 8 x 16 KiB memory buffers (HAProxy's buffers
    # are 16 KiB too), never spilled to a temp file.
    proxy_request_buffering off;
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    proxy_max_temp_file_size 0;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive {pool};
        keepalive_requests 1000000;
        keepalive_timeout {ka}s;
    }}
    server {{
        listen 127.0.0.1:{http} backlog=4096;
        {location}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        {location}
    }}
}}
stream {{
    upstream origin_tcp {{ server 127.0.0.1:{origin}; }}
    server {{
        listen 127.0.0.1:{l4} backlog=4096;
        proxy_pass origin_tcp;
    }}
}}
",
        main = nginx_main_context(l, "nginx", l.max_connections * 2 + 1024),
        ka = KEEPALIVE_TIMEOUT_S,
        origin = l.origin_port,
        pool = UPSTREAM_POOL,
        http = l.nginx.http,
        tls = l.nginx.tls,
        l4 = l.nginx.l4,
        cert = p(&l.cert()),
        key = p(&l.key()),
        access_log = match logging {
            Logging::Off => "access_log off;".to_owned(),
            Logging::On => format!(
                "access_log {} combined buffer=16k flush=100ms;",
                p(&l.file("nginx-access.log"))
            ),
        },
    );
    out
}

/// HAProxy as the proxy under test: HTTP, TLS 1.3 and L4 frontends.
pub fn haproxy(l: &Layout, logging: Logging) -> String {
    let (global_log, defaults_log) = match logging {
        Logging::Off => ("", ""),
        Logging::On => (
            "    log stdout format raw local0\n",
            "    log global\n    option httplog\n",
        ),
    };
    format!(
        r"# ringwall-load compare: HAProxy under test.
global
    nbthread 1
    maxconn {maxconn}
    ulimit-n {nofile}
    ssl-default-bind-options ssl-min-ver TLSv1.3
{global_log}
defaults
{defaults_log}    mode http
    timeout connect 5s
    timeout client {ka}s
    timeout server {ka}s
    timeout http-keep-alive {ka}s
    http-reuse always

frontend http_in
    bind 127.0.0.1:{http} backlog 4096
    default_backend origin

frontend tls_in
    bind 127.0.0.1:{tls} ssl crt {crt} ssl-min-ver TLSv1.3 backlog 4096
    default_backend origin

backend origin
    server origin 127.0.0.1:{origin} pool-max-conn {pool}

frontend l4_in
    mode tcp
    bind 127.0.0.1:{l4} backlog 4096
    default_backend origin_tcp

backend origin_tcp
    mode tcp
    server origin 127.0.0.1:{origin}
",
        maxconn = l.haproxy_maxconn(),
        nofile = l.nofile(),
        ka = KEEPALIVE_TIMEOUT_S,
        http = l.haproxy.http,
        tls = l.haproxy.tls,
        l4 = l.haproxy.l4,
        crt = p(&l.cert_and_key()),
        origin = l.origin_port,
        pool = UPSTREAM_POOL,
    )
}

/// ringwall's arguments (after the binary): its configuration file, one worker, not
/// self-pinned (the harness pins it with taskset).
pub fn ringwall_args(l: &Layout, logging: Logging) -> Vec<String> {
    vec![
        "--config".into(),
        l.file(&logging.conf("ringwall.toml")).display().to_string(),
        "--workers".into(),
        "1".into(),
        "--no-pin".into(),
    ]
}

/// ringwall as the proxy under test: plain HTTP/1.1, TLS 1.3 (the same certificate as the
/// others) and TCP (L4) listeners, the same pool and keep-alive settings, logging at `warn`,
/// the admin listener on (its `/metrics` scraped every second).
pub fn ringwall(l: &Layout, logging: Logging) -> String {
    let access_log = match logging {
        Logging::Off => String::new(),
        Logging::On => format!(
            "\n[access_log]\ntarget = \"{}\"\n",
            p(&l.file("ringwall-access.log"))
        ),
    };
    format!(
        r#"# ringwall-load compare: ringwall under test.
log_level = "warn"
{access_log}
[admin]
address = "127.0.0.1:{admin}"

[[listener]]
address = "127.0.0.1:{http}"

[[listener]]
address = "127.0.0.1:{tls}"
protocol = "https"
[listener.tls]
min_version = "1.3"
[[listener.tls.certificate]]
cert = "{cert}"
key = "{key}"

[[listener]]
address = "127.0.0.1:{l4}"
protocol = "tcp"
upstream = "origin"

[timeouts]
client_keepalive = "{ka}s"

[[upstream]]
name = "origin"
servers = ["127.0.0.1:{origin}"]
max_idle_per_server = {pool}

[[route]]
upstream = "origin"
"#,
        http = l.ringwall.http,
        tls = l.ringwall.tls,
        l4 = l.ringwall.l4,
        cert = p(&l.cert()),
        key = p(&l.key()),
        ka = KEEPALIVE_TIMEOUT_S,
        origin = l.origin_port,
        pool = UPSTREAM_POOL,
        access_log = access_log,
        admin = l.ringwall_admin,
    )
}

/// The origin's static files: name and size.
pub const STATIC_FILES: [(&str, usize); 3] = [("4k", 4096), ("64k", 65536), ("1m", 1 << 20)];

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/cmp"),
            origin_port: 9000,
            ringwall: ProxyPorts {
                http: 9001,
                tls: 9002,
                l4: 9003,
            },
            ringwall_admin: 9004,
            nginx: ProxyPorts {
                http: 9010,
                tls: 9011,
                l4: 9012,
            },
            haproxy: ProxyPorts {
                http: 9020,
                tls: 9021,
                l4: 9022,
            },
            max_connections: 10_000,
            nofile_limit: 20_000,
            nginx_stream_module: Some(PathBuf::from(NGINX_STREAM_MODULE)),
        }
    }

    #[test]
    fn origin_serves_hello_files_and_uploads() {
        let c = nginx_origin(&layout());
        assert!(c.contains("listen 127.0.0.1:9000"));
        assert!(c.contains(r#"return 200 "hello world\n";"#));
        assert!(c.contains("location = /upload"));
        assert!(c.contains("proxy_pass_request_body off;"));
        assert!(c.contains("root /tmp/cmp/www;"));
        assert!(c.contains("access_log off;"));
        assert!(c.contains("worker_processes 1;"));
    }

    #[test]
    fn nginx_pools_upstream_keepalive_and_has_three_listeners() {
        let c = nginx_proxy(&layout(), Logging::Off);
        assert!(c.starts_with("# ringwall-load"));
        assert!(c.contains("load_module /usr/lib/nginx/modules/ngx_stream_module.so;"));
        assert!(c.contains("keepalive 64;"));
        assert_eq!(c.matches("proxy_http_version 1.1;").count(), 2);
        assert_eq!(c.matches(r#"proxy_set_header Connection "";"#).count(), 2);
        assert!(c.contains("worker_processes 1;"));
        assert!(c.contains("access_log off;"));
        assert!(c.contains("listen 127.0.0.1:9010 backlog"));
        assert!(c.contains("listen 127.0.0.1:9011 ssl"));
        assert!(c.contains("ssl_protocols TLSv1.3;"));
        assert!(c.contains("ssl_certificate /tmp/cmp/cert.pem;"));
        assert!(c.contains("stream {"));
        assert!(c.contains("listen 127.0.0.1:9012 backlog"));
        assert!(c.contains("server 127.0.0.1:9000;"));
        // Balanced braces: nginx would refuse the file otherwise.
        assert_eq!(c.matches('{').count(), c.matches('}').count());
        let mut no_module = layout();
        no_module.nginx_stream_module = None;
        assert!(!nginx_proxy(&no_module, Logging::Off).contains("load_module"));
    }

    #[test]
    fn haproxy_one_thread_reuse_tls13_and_tcp() {
        let c = haproxy(&layout(), Logging::Off);
        assert!(c.contains("nbthread 1"));
        assert!(c.contains("maxconn 9900\n    ulimit-n 20000"));
        assert_eq!(Layout::idle_capacity(20_000), 9644);
        assert!(c.contains("http-reuse always"));
        assert!(c.contains("bind 127.0.0.1:9020"));
        assert!(
            c.contains("bind 127.0.0.1:9021 ssl crt /tmp/cmp/cert-and-key.pem ssl-min-ver TLSv1.3")
        );
        assert!(c.contains("mode tcp\n    bind 127.0.0.1:9022"));
        assert!(c.contains("server origin 127.0.0.1:9000"));
        assert!(!c.contains("\n    log "), "logging stays off");
    }

    #[test]
    fn logging_configs_log_to_files_in_the_run_directory() {
        let l = layout();
        assert!(nginx_proxy(&l, Logging::On)
            .contains("access_log /tmp/cmp/nginx-access.log combined buffer=16k flush=100ms;"));
        let h = haproxy(&l, Logging::On);
        assert!(h.contains("log stdout format raw local0") && h.contains("option httplog"));
        assert!(ringwall(&l, Logging::On)
            .contains("[access_log]\ntarget = \"/tmp/cmp/ringwall-access.log\""));
        assert_eq!(Logging::On.conf("nginx.conf"), "nginx-log.conf");
        assert!(ringwall_args(&l, Logging::On)
            .join(" ")
            .contains("ringwall-log.toml"));
    }

    #[test]
    fn ringwall_command_line_and_config() {
        let a = ringwall_args(&layout(), Logging::Off).join(" ");
        assert_eq!(a, "--config /tmp/cmp/ringwall.toml --workers 1 --no-pin");
        let c = ringwall(&layout(), Logging::Off);
        assert!(c.contains("address = \"127.0.0.1:9001\""));
        assert!(c.contains("address = \"127.0.0.1:9002\"\nprotocol = \"https\""));
        assert!(c.contains("min_version = \"1.3\""));
        assert!(c.contains("cert = \"/tmp/cmp/cert.pem\""));
        assert!(c.contains("max_idle_per_server = 64"));
        assert!(c.contains("address = \"127.0.0.1:9003\"\nprotocol = \"tcp\""));
    }
}
