//! End to end: the filters of the request path as a user configures them: header edits,
//! `return` routes and redirects, path rewrites, request ids, path normalization before
//! routing, per-route timeouts and limits, and what ringwall's own responses carry.
//!
//! A scripted origin echoes what it received (and sleeps on `/slow`); the client is a raw
//! socket, so every byte of what comes back is checked.

mod common;

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use common::{echo, get, Next, Origin, OriginConn, OriginRequest, Proxy};

fn script(req: &OriginRequest, conn: &mut OriginConn) -> io::Result<Next> {
    if req.target.contains("/slow") {
        thread::sleep(Duration::from_millis(800));
    }
    echo("origin", req, conn)
}

fn config_for(origin: &Origin, routes: &str) -> String {
    format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\n{routes}",
        origin.addr
    )
}

#[test]
fn header_edits_from_the_file_and_the_flags_reach_origin_and_client() {
    let origin = Origin::start(script);
    let toml = config_for(
        &origin,
        r#"
[http.request_headers]
set = { "X-Env" = "prod" }
remove = ["X-Debug"]

[[route]]
upstream = "app"
request_headers = { add = { "X-Tag" = "route" } }
response_headers = { set = { "Server" = "edge" }, remove = ["X-Origin"] }
"#,
    );
    let proxy = Proxy::with_config(
        &toml,
        &[
            "--request-header",
            "X-Real-IP: ${client_addr}",
            "--response-header",
            "Strict-Transport-Security: max-age=600",
        ],
    );
    let mut client = proxy.client();
    let response = client.request(
        "GET /x HTTP/1.1\r\nHost: shop.test\r\nX-Env: dev\r\nX-Debug: 1\r\nX-Tag: client\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let (seen, _) = response.echoed();
    assert_eq!(seen.all("x-env"), ["prod"], "{}", seen.raw);
    assert!(!seen.has("x-debug"), "{}", seen.raw);
    assert_eq!(seen.all("x-tag"), ["client", "route"], "{}", seen.raw);
    assert_eq!(seen.all("x-real-ip"), ["127.0.0.1"], "{}", seen.raw);
    assert_eq!(
        response.head.all("server"),
        ["edge"],
        "{}",
        response.head.raw
    );
    assert!(!response.head.has("x-origin"), "{}", response.head.raw);
    assert_eq!(
        response.header("strict-transport-security"),
        Some("max-age=600")
    );
}

#[test]
fn return_routes_answer_without_an_origin() {
    let origin = Origin::start(script);
    let toml = config_for(
        &origin,
        r#"
[[route]]
path_prefix = "/healthz"
return = { status = 200, body = "ok\n" }

[[route]]
hosts = ["old.test"]
return = { status = 301, location = "https://new.test${request_uri}" }

[[route]]
upstream = "app"
"#,
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let mut client = proxy.client();
    let response = client.request(get("/healthz", "h.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok\n");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(response.head.has("date"), "{}", response.head.raw);
    // Via marks forwarded messages; this one was made here.
    assert!(!response.head.has("via"), "{}", response.head.raw);
    let response = client.request("HEAD /healthz HTTP/1.1\r\nHost: h.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("3"));
    assert!(response.body.is_empty());
    let response = client.request(get("/a/../b/c?x=1&y=2", "old.test"));
    assert_eq!(response.status, 301);
    assert_eq!(
        response.header("location"),
        Some("https://new.test/b/c?x=1&y=2")
    );
    // The same connection still reaches the origin.
    assert_eq!(client.request(get("/app", "h.test")).status, 200);
    assert_eq!(origin.requests(), 1);

    // A body that was not read yet: answered, then the connection closes.
    let mut client = proxy.client();
    let response =
        client.request("POST /healthz HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
}

#[test]
fn rewrites_change_only_what_the_origin_is_sent() {
    let origin = Origin::start(script);
    let toml = config_for(
        &origin,
        r#"
[[route]]
path_prefix = "/api/"
strip_prefix = "/api"
upstream = "app"

[[route]]
path_prefix = "/v1/"
replace_prefix = { from = "/v1/", to = "/internal/v2/" }
upstream = "app"

[[route]]
path_prefix = "/users/"
regex_rewrite = { pattern = '^/users/(\d+)$', replace = "/u/$1/profile" }
upstream = "app"
"#,
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let mut client = proxy.client();
    for (asked, sent) in [
        ("/api/items?page=2", "GET /items?page=2 HTTP/1.1"),
        ("/v1/orders/7", "GET /internal/v2/orders/7 HTTP/1.1"),
        ("/users/42?tab=a", "GET /u/42/profile?tab=a HTTP/1.1"),
        ("/users/abc", "GET /users/abc HTTP/1.1"),
    ] {
        let response = client.request(get(asked, "h.test"));
        assert_eq!(response.status, 200, "{asked}");
        assert_eq!(response.echoed().0.start, sent, "{asked}");
    }
}

#[test]
fn request_ids_pass_through_or_are_made_and_reach_error_responses() {
    let origin = Origin::start(script);
    let toml = format!(
        "{}\n[[upstream]]\nname = \"dead\"\nservers = [\"{}\"]\n",
        config_for(
            &origin,
            "[[route]]\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\n[[route]]\nupstream = \"app\"\n"
        ),
        common::closed_port()
    );
    let proxy = Proxy::with_config(&toml, &["--request-id"]);
    let mut client = proxy.client();
    let response = client.request("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: trace-7f3a\r\n\r\n");
    let (seen, _) = response.echoed();
    assert_eq!(seen.all("x-request-id"), ["trace-7f3a"]);
    assert_eq!(response.header("x-request-id"), Some("trace-7f3a"));

    let response = client.request("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: bad id\r\n\r\n");
    let (seen, _) = response.echoed();
    let made = seen.get("x-request-id").unwrap().to_owned();
    assert_eq!(made.len(), 36, "{made}");
    assert_eq!(response.header("x-request-id"), Some(made.as_str()));

    let response = client.request(get("/dead", "h"));
    assert_eq!(response.status, 502);
    assert_eq!(response.header("x-request-id").map(str::len), Some(36));
}

#[test]
fn the_path_is_normalized_before_routing_and_forwarding() {
    let public = Origin::start(script);
    let toml = config_for(
        &public,
        r#"
[[route]]
name = "public"
path_prefix = "/public/"
upstream = "app"

[[route]]
name = "admin"
path_prefix = "/admin/"
return = { status = 403, body = "admin only\n" }
"#,
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let mut client = proxy.client();
    // Each of these is /admin/secret once normalized: the public route must not match.
    for path in [
        "/public/../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/%2E%2e/admin/secret",
        "/public/./../admin/secret",
        "/public/.%2E/admin/secret",
    ] {
        let response = client.request(get(path, "h.test"));
        assert_eq!(response.status, 403, "{path}: {}", response.head.raw);
    }
    assert_eq!(public.requests(), 0);
    // The origin gets the normalized path.
    let response = client.request(get("/public/a/./b/../c?q=%2e", "h.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.echoed().0.start, "GET /public/a/c?q=%2e HTTP/1.1");
    let response = client.request(get("/public/%7Euser/%41", "h.test"));
    assert_eq!(response.echoed().0.start, "GET /public/~user/A HTTP/1.1");
    // What cannot be normalized is refused, and the connection closed.
    for path in ["/../etc/passwd", "/public/%zz", "/public/../../x"] {
        let mut client = proxy.client();
        let response = client.request(get(path, "h.test"));
        assert_eq!(response.status, 400, "{path}");
    }

    let proxy = Proxy::with_config(&toml, &["--merge-slashes", "--escaped-slashes", "reject"]);
    let mut client = proxy.client();
    let response = client.request(get("//public//x", "h.test"));
    assert_eq!(response.status, 200);
    assert_eq!(response.echoed().0.start, "GET /public/x HTTP/1.1");
    let response = proxy
        .client()
        .request(get("/public/..%2Fadmin/secret", "h.test"));
    assert_eq!(response.status, 400);
}

#[test]
fn per_route_timeouts_and_limits_override_the_global_ones() {
    let origin = Origin::start(script);
    let toml = config_for(
        &origin,
        r#"
[[route]]
path_prefix = "/short/"
upstream = "app"
timeouts = { upstream_response = "200ms" }
limits = { max_body = "10" }

[[route]]
upstream = "app"
"#,
    );
    let proxy = Proxy::with_config(&toml, &["--upstream-response-timeout", "5s"]);
    let started = Instant::now();
    let response = proxy.client().request(get("/short/slow", "h.test"));
    assert_eq!(response.status, 504);
    assert!(started.elapsed() < Duration::from_millis(700));
    let response = proxy.client().request(get("/long/slow", "h.test"));
    assert_eq!(response.status, 200);

    let body = "x".repeat(20);
    let post = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: h.test\r\nContent-Length: 20\r\n\r\n{body}")
    };
    assert_eq!(proxy.client().request(post("/short/up")).status, 413);
    assert_eq!(proxy.client().request(post("/long/up")).status, 200);
}

#[test]
fn ringwalls_own_responses_carry_a_date() {
    let toml = "[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n[[route]]\nhosts = [\"only.test\"]\nupstream = \"app\"\n";
    let proxy = Proxy::with_config(toml, &[]);
    let response = proxy.client().request(get("/", "other.test"));
    assert_eq!(response.status, 404);
    let date = response.header("date").expect("a Date field");
    // IMF-fixdate: "Tue, 01 Dec 2026 06:00:00 GMT".
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
    assert_eq!(response.header("server"), Some("ringwall"));
}

#[test]
fn a_transfer_coding_before_chunked_is_501_and_closes() {
    let origin = Origin::start(script);
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut client = proxy.client();
    let response = client
        .request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(response.status, 501);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.expect_closed(Duration::from_secs(5)).is_ok());
    assert_eq!(origin.requests(), 0);
    // Chunked not last is still 400: the length cannot be known (RFC 9112 §6.3).
    let response = proxy
        .client()
        .request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n");
    assert_eq!(response.status, 400);
}

#[test]
fn listeners_and_their_errors_in_check() {
    let file = common::TempFile::new(
        "listeners.toml",
        "listen = [\"127.0.0.1:7101\"]\n[[listener]]\nname = \"second\"\naddress = \"127.0.0.1:7102\"\n\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n[[route]]\nupstream = \"app\"\n",
    );
    let run = common::run_ringwall(&["check", "--config", &file.display()]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stdout.contains("2 listeners"), "{}", run.stdout);
    let bad = common::TempFile::new(
        "tls.toml",
        "[[listener]]\naddress = \"127.0.0.1:7103\"\nprotocol = \"tls\"\n\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:9\"]\n\n[[route]]\nupstream = \"app\"\n",
    );
    let run = common::run_ringwall(&["check", "--config", &bad.display()]);
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains(":3:12: listener[0].protocol: protocol \"tls\" needs a [listener.tls] table"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dot_segment_cannot_borrow_another_routes_prefix() {
    // Only features that predate normalization, so the test shows the defect on old builds:
    // `/public/../admin` used to match the `/public/` route and reach the public origin.
    let public = Origin::echo("public");
    let admin = Origin::echo("admin");
    let toml = format!(
        "[[upstream]]\nname = \"public\"\nservers = [\"{}\"]\n\n[[upstream]]\nname = \"admin\"\nservers = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/public/\"\nupstream = \"public\"\n\n[[route]]\nupstream = \"admin\"\n",
        public.addr, admin.addr
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let mut client = proxy.client();
    for path in ["/public/../admin/x", "/public/%2e%2e/admin/x"] {
        let response = client.request(get(path, "h.test"));
        assert_eq!(response.header("x-origin"), Some("admin"), "{path}");
        assert_eq!(response.echoed().0.start, "GET /admin/x HTTP/1.1", "{path}");
    }
    assert_eq!(public.requests(), 0);
}
