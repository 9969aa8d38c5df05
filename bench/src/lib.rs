//! Fixtures for ringwall's criterion micro-benchmarks (`benches/http1.rs`, `benches/l7.rs`).
//!
//! The inputs the benchmarks time live here rather than in the bench targets so that the tests
//! below can check, without timing anything, that each one means what its benchmark name says:
//! a request head parses with the header count it claims, a chunked body decodes to the payload
//! and trailers it was built from, a route query matches the route it is meant to match early,
//! late or not at all. A benchmark over an input the codec rejects would time the error path
//! and still print a plausible number.
//!
//! Data enters as byte strings and TOML text, is turned into ringwall's own types through its
//! public API ([`ringwall::http1`], [`ringwall::config::Config::from_toml_str`],
//! [`ringwall::l7::RouteTable`]), and the two helpers that the benchmarks time
//! ([`decode_body`], [`find_route`]) do what the request path does with them.

use std::hint::black_box;
use std::io::Write;

use bytes::BytesMut;
use ringwall::config::Config;
use ringwall::http1::{parse_request, BodyDecoder, BodyKind, Decoded, HeadLimits, RequestHead};
use ringwall::l7::{RouteEntry, RouteQuery, RouteTable};

/// A small `curl`-like GET: three fields.
pub const CURL_GET: &[u8] = b"GET /index.html HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

/// A typical browser navigation (Chrome on Linux): twelve fields, long `User-Agent`, `Accept`
/// and `Cookie` values.
pub const BROWSER_GET: &[u8] = b"GET /products/shoes?color=blue&size=42 HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Sec-Fetch-Site: same-origin\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Cookie: session=4f1c2a9be0d34c7f8a6e5b1d2c3f4a5b; theme=dark; consent=1\r\n\
\r\n";

/// The field count of [`BROWSER_GET`].
pub const BROWSER_GET_FIELDS: usize = 12;

/// The field count of [`many_fields_get`]'s request.
pub const MANY_FIELDS: usize = 40;

/// A request with [`MANY_FIELDS`] fields, as an API client behind a few gateways sends:
/// tracing, forwarding and custom headers of realistic lengths.
pub fn many_fields_get() -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(
        b"GET /api/v1/orders/8f14e45f-ceea-467f-a0e6-b0a9c5d1e2f3/items?page=2&limit=50 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: orders-service/3.14.2 (+https://example.com/bot)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.dGhpc2lzbm90YXJlYWxzaWc\r\n\
X-Forwarded-For: 203.0.113.7, 198.51.100.23\r\n\
X-Forwarded-Proto: https\r\n\
X-Request-Id: 9b2d6c1e-8a7f-4e3d-b5c4-a1f0e9d8c7b6\r\n\
traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    );
    let fixed = 9;
    for i in 0..MANY_FIELDS - fixed {
        write!(
            out,
            "X-Client-Attribute-{i:02}: value-{i:02}-0123456789abcdef\r\n"
        )
        .expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A typical origin response head (nginx serving a page): eleven fields.
pub const ORIGIN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Tue, 14 May 2024 09:21:37 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 6120\r\n\
Last-Modified: Mon, 13 May 2024 17:02:11 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"66424a03-17e8\"\r\n\
Cache-Control: public, max-age=3600\r\n\
Vary: Accept-Encoding\r\n\
X-Content-Type-Options: nosniff\r\n\
Accept-Ranges: bytes\r\n\
\r\n";

/// The trailer section the chunked bodies end with (two fields).
pub const TRAILERS: &[u8] =
    b"Server-Timing: db;dur=53.2, app;dur=47.9\r\nDigest: sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\r\n";

/// A chunked body on the wire: `payload_len` bytes of text in chunks of `chunk_len` bytes (the
/// last one shorter), the last chunk, `trailers` (field lines ending in CRLF, or empty) and the
/// final CRLF.
///
/// # Panics
/// If `chunk_len` is zero.
pub fn chunked_body(payload_len: usize, chunk_len: usize, trailers: &[u8]) -> Vec<u8> {
    assert!(chunk_len > 0, "a chunk of zero bytes is the last chunk");
    let mut out = Vec::with_capacity(payload_len + payload_len / chunk_len * 8 + 64);
    let mut left = payload_len;
    while left > 0 {
        let len = left.min(chunk_len);
        write!(out, "{len:x}\r\n").expect("writing to a Vec cannot fail");
        out.extend((0..len).map(|i| b'a' + (i % 26) as u8));
        out.extend_from_slice(b"\r\n");
        left -= len;
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(b"\r\n");
    out
}

/// What [`decode_body`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedBody {
    pub data_bytes: usize,
    pub data_pieces: usize,
    pub trailer_bytes: usize,
}

/// Decodes one chunked body from `buf` with [`BodyDecoder`], the way the request path does:
/// each piece of data is handed on (here to `black_box`) and dropped.
///
/// # Panics
/// If the body is malformed or incomplete: benchmark inputs are complete and valid.
pub fn decode_body(buf: &mut BytesMut) -> DecodedBody {
    let mut decoder = BodyDecoder::new(BodyKind::Chunked);
    let mut seen = DecodedBody {
        data_bytes: 0,
        data_pieces: 0,
        trailer_bytes: 0,
    };
    loop {
        match decoder.decode(buf).expect("a valid chunked body") {
            Decoded::Data(data) => {
                seen.data_bytes += data.len();
                seen.data_pieces += 1;
                black_box(data);
            }
            Decoded::Trailers(trailers) => {
                seen.trailer_bytes = trailers.len();
                black_box(trailers);
            }
            Decoded::End => return seen,
            Decoded::NeedMore => panic!("chunked body is incomplete"),
        }
    }
}

/// Upstream groups for the route table; the addresses are never connected to.
const ROUTE_UPSTREAMS: &str = r#"
[[upstream]]
name = "web"
servers = ["127.0.0.1:9001"]

[[upstream]]
name = "api"
servers = ["127.0.0.1:9002"]

[[upstream]]
name = "static"
servers = ["127.0.0.1:9003"]

[[upstream]]
name = "admin"
servers = ["127.0.0.1:9004"]

[[upstream]]
name = "legacy"
servers = ["127.0.0.1:9005"]
"#;

/// Twenty routes in match order: exact and wildcard hosts, path prefixes, method lists and two
/// header conditions. Every route names hosts, so a request for another host matches none.
const ROUTES: &str = r#"
[[route]]
name = "www-static"
hosts = ["www.example.com", "example.com"]
path_prefix = "/static/"
upstream = "static"

[[route]]
name = "cdn"
hosts = ["*.cdn.example.com"]
upstream = "static"

[[route]]
name = "api-v2-by-header"
hosts = ["api.example.com"]
headers = { "x-api-version" = "2" }
upstream = "api"

[[route]]
name = "api-v2"
hosts = ["api.example.com"]
path_prefix = "/v2/"
upstream = "api"

[[route]]
name = "api-v1"
hosts = ["api.example.com"]
path_prefix = "/v1/"
upstream = "legacy"

[[route]]
name = "api-writes"
hosts = ["api.example.com"]
methods = ["POST", "PUT", "PATCH", "DELETE"]
upstream = "api"

[[route]]
name = "admin"
hosts = ["admin.example.com"]
upstream = "admin"

[[route]]
name = "tenant-api"
hosts = ["*.tenants.example.net"]
path_prefix = "/api/"
upstream = "api"

[[route]]
name = "tenant"
hosts = ["*.tenants.example.net"]
upstream = "web"

[[route]]
name = "shop-cart"
hosts = ["shop.example.com"]
path_prefix = "/cart/"
upstream = "api"

[[route]]
name = "shop-checkout"
hosts = ["shop.example.com"]
path_prefix = "/checkout/"
upstream = "api"

[[route]]
name = "shop"
hosts = ["shop.example.com"]
upstream = "web"

[[route]]
name = "blog"
hosts = ["blog.example.com", "news.example.com"]
upstream = "web"

[[route]]
name = "docs-v2"
hosts = ["docs.example.com"]
path_prefix = "/v2/"
upstream = "static"

[[route]]
name = "docs"
hosts = ["docs.example.com"]
upstream = "static"

[[route]]
name = "media"
hosts = ["*.media.example.org"]
path_prefix = "/img/"
upstream = "static"

[[route]]
name = "www-websocket"
hosts = ["www.example.com"]
path_prefix = "/ws/"
headers = { "upgrade" = "websocket" }
upstream = "web"

[[route]]
name = "www-api"
hosts = ["www.example.com", "example.com"]
path_prefix = "/api/"
upstream = "api"

[[route]]
name = "www-admin"
hosts = ["www.example.com"]
path_prefix = "/admin/"
methods = ["GET", "POST"]
upstream = "admin"

[[route]]
name = "www"
hosts = ["www.example.com", "example.com"]
upstream = "web"
"#;

/// The number of routes in [`route_table`].
pub const ROUTE_COUNT: usize = 20;

/// The configuration behind [`route_table`].
///
/// # Panics
/// If the fixture no longer validates (a config change the benchmarks must follow).
pub fn route_config() -> Config {
    let text = format!("{ROUTE_UPSTREAMS}{ROUTES}");
    Config::from_toml_str(&text, None).unwrap_or_else(|e| panic!("route fixture: {e}"))
}

/// The [`ROUTE_COUNT`] routes, compiled as a worker compiles them.
pub fn route_table() -> RouteTable {
    RouteTable::new(&route_config(), &ringwall::filters::Gateway::default())
}

/// Matches the first route (`www-static`).
pub const ROUTE_EARLY: &[u8] =
    b"GET /static/app.3f2a1c.js HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n";
/// Matches the third route (`api-v2-by-header`) through its header condition.
pub const ROUTE_BY_HEADER: &[u8] = b"GET /orders/17 HTTP/1.1\r\nHost: api.example.com\r\n\
Accept: application/json\r\nX-Request-Id: 9b2d6c1e\r\nX-Api-Version: 2\r\n\r\n";
/// Matches the last route (`www`), after passing the other `www.example.com` routes.
pub const ROUTE_LATE: &[u8] =
    b"GET /account/settings HTTP/1.1\r\nHost: www.example.com:443\r\nAccept: text/html\r\n\r\n";
/// Matches no route: every route is tried and fails on its host.
pub const ROUTE_NONE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: unknown.example.io\r\nAccept: text/html\r\n\r\n";

/// Parses a complete, valid request head.
///
/// # Panics
/// If `bytes` is not one.
pub fn request_head(bytes: &[u8]) -> RequestHead {
    let mut buf = BytesMut::from(bytes);
    parse_request(&mut buf, &HeadLimits::default())
        .expect("a valid request head")
        .expect("a complete request head")
}

/// The route for `head`, found exactly as the request path's `route` phase finds it.
pub fn find_route<'t>(table: &'t RouteTable, head: &RequestHead) -> Option<&'t RouteEntry> {
    let query = RouteQuery {
        host: head.host(),
        path: head.path(),
        method: head.method_bytes(),
        header: |name: &str| head.field(name),
    };
    table.find(&query)
}

/// The number of servers in [`upstream_config`]'s group.
pub const UPSTREAM_SERVERS: usize = 8;

/// One upstream group of [`UPSTREAM_SERVERS`] servers and a catch-all route to it.
///
/// # Panics
/// If the fixture no longer validates.
pub fn upstream_config() -> Config {
    let servers = (0..UPSTREAM_SERVERS)
        .map(|i| format!("\"127.0.0.1:{}\"", 9101 + i))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[[upstream]]\nname = \"app\"\nservers = [{servers}]\nlb = \"round-robin\"\n\n\
         [[route]]\nupstream = \"app\"\n"
    );
    Config::from_toml_str(&text, None).unwrap_or_else(|e| panic!("upstream fixture: {e}"))
}

#[cfg(test)]
mod tests {
    use ringwall::http1::{parse_response, Method};
    use ringwall::l7::{TcpDialer, Upstreams};

    use super::*;

    fn fields(head: &RequestHead) -> usize {
        head.fields().count()
    }

    #[test]
    fn request_heads_parse_whole_with_their_field_counts() {
        for (bytes, count) in [
            (CURL_GET.to_vec(), 3),
            (BROWSER_GET.to_vec(), BROWSER_GET_FIELDS),
            (many_fields_get(), MANY_FIELDS),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            let head = parse_request(&mut buf, &HeadLimits::default())
                .unwrap()
                .unwrap();
            assert!(buf.is_empty(), "the whole fixture is the head");
            assert_eq!(head.head_len(), bytes.len());
            assert_eq!(head.method(), Method::Get);
            assert_eq!(fields(&head), count);
        }
    }

    #[test]
    fn origin_response_parses_whole() {
        let mut buf = BytesMut::from(ORIGIN_RESPONSE);
        let head = parse_response(&mut buf, &HeadLimits::default(), Method::Get)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!(head.status(), 200);
        assert_eq!(head.body(), BodyKind::Length(6120));
        assert_eq!(head.fields().count(), 11);
    }

    #[test]
    fn chunked_bodies_decode_to_their_payload_and_trailers() {
        for chunk_len in [1024, 16, 1000] {
            let wire = chunked_body(64 * 1024, chunk_len, TRAILERS);
            let mut buf = BytesMut::from(&wire[..]);
            let seen = decode_body(&mut buf);
            assert!(buf.is_empty(), "the decoder consumed the whole body");
            assert_eq!(seen.data_bytes, 64 * 1024);
            assert_eq!(seen.data_pieces, (64 * 1024usize).div_ceil(chunk_len));
            assert_eq!(seen.trailer_bytes, TRAILERS.len());
        }
        let mut buf = BytesMut::from(&chunked_body(10, 4, b"")[..]);
        assert_eq!(decode_body(&mut buf).trailer_bytes, 0);
    }

    #[test]
    fn route_queries_match_where_their_names_say() {
        let table = route_table();
        assert_eq!(route_config().routes.len(), ROUTE_COUNT);
        let names = route_config().routes;
        let position = |name: &str| names.iter().position(|r| r.name == name).unwrap();
        let found = |bytes| find_route(&table, &request_head(bytes)).map(|r| r.name.clone());

        assert_eq!(found(ROUTE_EARLY).as_deref(), Some("www-static"));
        assert_eq!(position("www-static"), 0);
        assert_eq!(found(ROUTE_BY_HEADER).as_deref(), Some("api-v2-by-header"));
        assert_eq!(position("api-v2-by-header"), 2);
        assert_eq!(found(ROUTE_LATE).as_deref(), Some("www"));
        assert_eq!(position("www"), ROUTE_COUNT - 1);
        assert_eq!(found(ROUTE_NONE), None);
    }

    #[test]
    fn upstreams_build_without_a_runtime_and_pick_round_robin() {
        let config = upstream_config();
        assert_eq!(config.upstreams[0].servers.len(), UPSTREAM_SERVERS);
        let upstreams = Upstreams::new(
            &config,
            0,
            TcpDialer::default(),
            std::rc::Rc::default(),
            &ringwall::metrics::WorkerMetrics::default(),
        );
        let picks: Vec<usize> = (0..UPSTREAM_SERVERS * 2)
            .map(|_| upstreams.pick(0, None, std::time::Instant::now()).unwrap())
            .collect();
        let expected: Vec<usize> = (0..UPSTREAM_SERVERS).cycle().take(picks.len()).collect();
        assert_eq!(picks, expected);
    }
}
