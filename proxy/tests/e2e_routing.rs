//! End to end: which origin a request reaches. Routes match on host (exact and `*.` wildcard),
//! path prefix, method and header value, the first matching route in file order wins, no match
//! is a 404 from ringwall, `host_rewrite` replaces the Host sent upstream, and the servers of a
//! group take turns.

mod common;

use std::fmt::Write as _;

use common::{get, Client, Origin, Proxy, Response};

/// Six named echo origins, one per upstream group, and a proxy routing between them.
struct Routed {
    origins: Vec<Origin>,
    proxy: Proxy,
}

const GROUPS: [&str; 5] = ["header", "exact", "wild", "method", "prefix"];

fn routed() -> Routed {
    let origins: Vec<Origin> = GROUPS.iter().map(|name| Origin::echo(name)).collect();
    let mut toml = String::new();
    for (name, origin) in GROUPS.iter().zip(&origins) {
        let _ = write!(
            toml,
            "[[upstream]]\nname = \"{name}\"\nservers = [\"{}\"]\n\n",
            origin.addr
        );
    }
    toml.push_str(
        r#"
[[route]]
name = "api-v2"
path_prefix = "/api/"
headers = { "X-Api-Version" = "2" }
upstream = "header"

[[route]]
name = "api-host"
hosts = ["api.example.com"]
upstream = "exact"
host_rewrite = "api.internal"

[[route]]
name = "org-wildcard"
hosts = ["*.example.org"]
upstream = "wild"

[[route]]
name = "forms"
path_prefix = "/forms/"
methods = ["post", "PUT"]
upstream = "method"

[[route]]
name = "static"
path_prefix = "/static/"
upstream = "prefix"

[[route]]
name = "shadowed-by-static"
path_prefix = "/static/deep/"
upstream = "method"
"#,
    );
    let proxy = Proxy::with_config(&toml, &[]);
    Routed { origins, proxy }
}

/// Which origin answered (its `X-Origin`), or `404` when ringwall did.
fn served_by(response: &Response) -> String {
    match response.status {
        200 => response.header("x-origin").unwrap_or("?").to_string(),
        404 => "404".to_string(),
        other => format!("status {other}: {}", response.text()),
    }
}

fn route_of(client: &mut Client, request: &str) -> String {
    served_by(&client.request(request))
}

#[test]
fn exact_host_routes_and_host_rewrite() {
    let routed = routed();
    let mut client = routed.proxy.client();
    let response = client.request(get("/", "api.example.com"));
    assert_eq!(served_by(&response), "exact");
    let (seen, _) = response.echoed();
    assert_eq!(seen.all("host"), ["api.internal"], "{}", seen.raw);
    assert_eq!(seen.get("x-forwarded-host"), Some("api.example.com"));

    // Case-insensitive, port ignored.
    assert_eq!(
        route_of(&mut client, &get("/x", "API.Example.COM:8080")),
        "exact"
    );
    // Exact means exact.
    assert_eq!(
        route_of(&mut client, &get("/", "api.example.com.evil")),
        "404"
    );
    assert_eq!(
        route_of(&mut client, &get("/", "www.api.example.com")),
        "404"
    );
}

#[test]
fn wildcard_host_matches_subdomains_only() {
    let routed = routed();
    let mut client = routed.proxy.client();
    assert_eq!(route_of(&mut client, &get("/", "a.example.org")), "wild");
    assert_eq!(route_of(&mut client, &get("/", "a.b.example.org")), "wild");
    assert_eq!(route_of(&mut client, &get("/", "A.EXAMPLE.ORG:81")), "wild");
    assert_eq!(route_of(&mut client, &get("/", "example.org")), "404");
    assert_eq!(route_of(&mut client, &get("/", "badexample.org")), "404");
    // Without host_rewrite the client's Host goes upstream unchanged.
    let response = client.request(get("/", "a.example.org"));
    assert_eq!(response.echoed().0.all("host"), ["a.example.org"]);
}

#[test]
fn path_prefix_and_method_routes() {
    let routed = routed();
    let mut client = routed.proxy.client();
    let post = "POST /forms/contact HTTP/1.1\r\nHost: any.test\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(route_of(&mut client, post), "method");
    let put = "PUT /forms/contact HTTP/1.1\r\nHost: any.test\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(route_of(&mut client, put), "method");
    assert_eq!(
        route_of(&mut client, &get("/forms/contact", "any.test")),
        "404"
    );
    assert_eq!(
        route_of(&mut client, &get("/static/app.css", "any.test")),
        "prefix"
    );
    // A plain string prefix: "/static/" does not match "/static".
    assert_eq!(route_of(&mut client, &get("/static", "any.test")), "404");
}

#[test]
fn first_matching_route_in_file_order_wins() {
    let routed = routed();
    let mut client = routed.proxy.client();
    // "static" comes before "shadowed-by-static", which would also match.
    assert_eq!(
        route_of(&mut client, &get("/static/deep/x", "any.test")),
        "prefix"
    );
    // "api-v2" (path + header) comes before "api-host".
    let v2 = "GET /api/users HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Version: 2\r\n\r\n";
    assert_eq!(route_of(&mut client, v2), "header");
    let v1 = "GET /api/users HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Version: 1\r\n\r\n";
    assert_eq!(route_of(&mut client, v1), "exact");
    let header_name_case = "GET /api/users HTTP/1.1\r\nHost: x.test\r\nx-api-version: 2\r\n\r\n";
    assert_eq!(route_of(&mut client, header_name_case), "header");
    let no_header = "GET /api/users HTTP/1.1\r\nHost: x.test\r\n\r\n";
    assert_eq!(route_of(&mut client, no_header), "404");
}

#[test]
fn no_matching_route_is_a_404_from_ringwall() {
    let routed = routed();
    let mut client = routed.proxy.client();
    let response = client.request(get("/nowhere", "unknown.test"));
    assert_eq!(response.status, 404);
    assert!(
        response.header("x-origin").is_none(),
        "answered by an origin"
    );
    assert!(
        routed.origins.iter().all(|o| o.requests() == 0),
        "an origin saw the unroutable request"
    );
    // A 404 is a complete exchange: unless ringwall said it closes, the connection goes on.
    if !response.head.has_token("connection", "close") {
        assert_eq!(route_of(&mut client, &get("/", "a.example.org")), "wild");
    }
}

#[test]
fn servers_of_a_group_take_turns() {
    let a = Origin::echo("a");
    let b = Origin::echo("b");
    let proxy = Proxy::start(&[a.addr, b.addr], &["--lb", "round-robin"]);
    let mut client = proxy.client();
    let order: Vec<String> = (0..6)
        .map(|i| route_of(&mut client, &get(&format!("/rr/{i}"), "rr.test")))
        .collect();
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {order:?}");
    }
    assert_eq!(a.requests(), 3, "{order:?}");
    assert_eq!(b.requests(), 3, "{order:?}");
}

#[test]
fn a_host_with_a_trailing_dot_is_the_same_host() {
    let exact = Origin::echo("exact");
    let other = Origin::echo("other");
    let toml = format!(
        "[[upstream]]\nname = \"exact\"\nservers = [\"{}\"]\n\n[[upstream]]\nname = \"other\"\nservers = [\"{}\"]\n\n\
         [[route]]\nhosts = [\"shop.example\", \"*.cdn.example\"]\nupstream = \"exact\"\n\n[[route]]\nupstream = \"other\"\n",
        exact.addr, other.addr
    );
    let proxy = Proxy::with_config(&toml, &[]);
    let mut client = proxy.client();
    for host in ["shop.example.", "SHOP.example.:8080", "img.cdn.example."] {
        let response = client.request(get("/", host));
        assert_eq!(response.header("x-origin"), Some("exact"), "Host: {host}");
    }
    let response = client.request(get("/", "shop.example.org"));
    assert_eq!(response.header("x-origin"), Some("other"));
}
