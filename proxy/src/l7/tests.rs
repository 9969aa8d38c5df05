//! The request path without sockets: the real phases, filters and pump over in-memory streams,
//! with a scripted origin behind an in-memory dialer, on one monoio runtime.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use ringwall_runtime::{memory_pair, Drain, MemoryStream};

use super::{serve, Dialer, ProxyError, RequestContext, Worker};
use crate::config::Config;
use crate::filters::{Filter, FilterChain};
use crate::http1::{parse_request, BodyDecoder, Decoded, HeadLimits};

/// An origin: gets the request head (as text) and its body, returns the raw response.
type Script = Rc<dyn Fn(&str, &[u8]) -> Vec<u8>>;

/// Dials the scripted origins by address; any other address refuses the connection.
#[derive(Clone, Default)]
struct MemoryDialer {
    origins: Rc<RefCell<HashMap<SocketAddr, Script>>>,
    dials: Rc<RefCell<Vec<SocketAddr>>>,
}

impl MemoryDialer {
    fn origin(&self, addr: &str, script: impl Fn(&str, &[u8]) -> Vec<u8> + 'static) {
        self.origins
            .borrow_mut()
            .insert(addr.parse().unwrap(), Rc::new(script));
    }
}

impl Dialer for MemoryDialer {
    type Stream = MemoryStream;

    async fn dial(
        &self,
        target: &super::upstream::UpstreamTarget,
        _timeout: Duration,
    ) -> Result<MemoryStream, ProxyError> {
        let addr = target.addr;
        self.dials.borrow_mut().push(addr);
        let Some(script) = self.origins.borrow().get(&addr).cloned() else {
            return Err(ProxyError::UpstreamConnect {
                addr,
                source: std::io::ErrorKind::ConnectionRefused.into(),
            });
        };
        let (ours, theirs) = memory_pair();
        monoio::spawn(run_origin(theirs, script));
        Ok(ours)
    }
}

/// Serves requests on one connection with `script` until the proxy closes it.
async fn run_origin(mut stream: MemoryStream, script: Script) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let head = loop {
            if let Ok(Some(head)) = parse_request(&mut buf, &HeadLimits::default()) {
                break head;
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let mut decoder = BodyDecoder::new(head.body());
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf).expect("valid body") {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(_) => {}
                Decoded::End => break,
                Decoded::NeedMore => {
                    if !read_more(&mut stream, &mut buf).await {
                        return;
                    }
                }
            }
        }
        let mut text = String::from_utf8_lossy(head.method_bytes()).into_owned();
        text.push(' ');
        text.push_str(&String::from_utf8_lossy(head.target()));
        for (name, value) in head.fields() {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(name));
            text.push_str(": ");
            text.push_str(&String::from_utf8_lossy(value));
        }
        let (written, _) = stream.write_all(script(&text, &body)).await;
        if written.is_err() {
            return;
        }
    }
}

async fn read_more(stream: &mut MemoryStream, buf: &mut BytesMut) -> bool {
    let mut chunk = Vec::with_capacity(4096);
    let (read, returned) = stream.read(chunk).await;
    chunk = returned;
    match read {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Sends back what it got: the request head as the body.
fn echo(head: &str, body: &[u8]) -> Vec<u8> {
    let mut payload = head.as_bytes().to_vec();
    payload.extend_from_slice(b"\n\n");
    payload.extend_from_slice(body);
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(&payload);
    out
}

fn run<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn worker(toml: &str, dialer: &MemoryDialer) -> Worker<MemoryDialer> {
    let config = Config::from_toml_str(toml, None).expect("valid config");
    Worker::new(&config, 0, Drain::default(), None, dialer.clone())
}

/// A client connection to a worker, served on the runtime like an accepted one.
struct Client {
    stream: MemoryStream,
    buf: BytesMut,
}

impl Client {
    fn connect(worker: &Rc<Worker<MemoryDialer>>) -> Client {
        let (ours, theirs) = memory_pair();
        let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
        monoio::spawn(serve(worker.clone(), theirs, peer, 0));
        Client {
            stream: ours,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, raw: &str) {
        let (written, _) = self.stream.write_all(raw.as_bytes().to_vec()).await;
        written.expect("proxy reads");
    }

    /// One response: head text and body (Content-Length, chunked, or until close).
    async fn response(&mut self) -> (String, Vec<u8>) {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                read_more(&mut self.stream, &mut self.buf).await,
                "no response head"
            );
        };
        let head = String::from_utf8(self.buf.split_to(head_end).to_vec()).unwrap();
        let lower = head.to_ascii_lowercase();
        let mut body = Vec::new();
        if let Some(at) = lower.find("content-length: ") {
            let rest = &lower[at + 16..];
            let n: usize = rest[..rest.find('\r').unwrap()].parse().unwrap();
            while self.buf.len() < n {
                assert!(
                    read_more(&mut self.stream, &mut self.buf).await,
                    "short body"
                );
            }
            body = self.buf.split_to(n).to_vec();
        } else if lower.contains("transfer-encoding: chunked") {
            let mut decoder = BodyDecoder::new(crate::http1::BodyKind::Chunked);
            loop {
                match decoder.decode(&mut self.buf).unwrap() {
                    Decoded::Data(data) => body.extend_from_slice(&data),
                    Decoded::Trailers(_) => {}
                    Decoded::End => break,
                    Decoded::NeedMore => {
                        assert!(
                            read_more(&mut self.stream, &mut self.buf).await,
                            "short chunked body"
                        );
                    }
                }
            }
        }
        (head, body)
    }

    /// True when the proxy closed the connection.
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !read_more(&mut self.stream, &mut self.buf).await
    }
}

const ONE_ORIGIN: &str = r#"
[http]
request_id = true

[[upstream]]
name = "app"
servers = ["10.0.0.1:80"]

[[route]]
name = "health"
path_prefix = "/health"
return = { status = 200, body = "ok ${client_addr}\n" }

[[route]]
name = "app"
upstream = "app"
strip_prefix = "/api"
response_headers = { set = { "X-Route" = "app" } }
"#;

#[test]
fn a_request_goes_through_every_phase_without_a_socket() {
    let dialer = MemoryDialer::default();
    dialer.origin("10.0.0.1:80", echo);
    let worker = Rc::new(worker(ONE_ORIGIN, &dialer));
    run(async move {
        let mut client = Client::connect(&worker);
        client
            .send("GET /api/users/../items?x=1 HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
            .await;
        let (head, body) = client.response().await;
        let seen = String::from_utf8(body).unwrap();
        // Normalized (`..` removed), then the prefix stripped; the query kept.
        assert!(seen.starts_with("GET /items?x=1\n"), "{seen}");
        assert!(seen.contains("\nX-Forwarded-For: 192.0.2.10\n"), "{seen}");
        assert!(seen.contains("\nX-Forwarded-Proto: http\n"), "{seen}");
        assert!(seen.contains("\nVia: 1.1 ringwall"), "{seen}");
        let id_line = seen
            .lines()
            .find(|l| l.starts_with("X-Request-Id: "))
            .expect("a request id upstream");
        assert!(head.contains(&format!("\r\n{id_line}\r\n")), "{head}");
        assert!(head.contains("\r\nX-Route: app\r\n"), "{head}");
        assert!(head.contains("\r\nVia: 1.1 ringwall\r\n"), "{head}");
    });
}

#[test]
fn a_filter_answers_early_and_no_origin_is_dialled() {
    let dialer = MemoryDialer::default();
    dialer.origin("10.0.0.1:80", echo);
    let worker = Rc::new(worker(ONE_ORIGIN, &dialer));
    let dials = dialer.dials.clone();
    run(async move {
        let mut client = Client::connect(&worker);
        client.send("GET /health HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let (head, body) = client.response().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nDate: "), "{head}");
        assert!(head.contains("\r\nX-Request-Id: "), "{head}");
        assert_eq!(body, b"ok 192.0.2.10\n");
        // The connection stays usable for the next request.
        client.send("GET /health HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(client.response().await.0.starts_with("HTTP/1.1 200"));
    });
    assert!(dials.borrow().is_empty());
}

/// Upper-cases every body chunk on its way to the client, and adds a last piece.
struct Shout;

impl Filter for Shout {
    fn name(&self) -> &'static str {
        "shout"
    }

    fn filters_response_body(&self) -> bool {
        true
    }

    fn response_body_filter(
        &self,
        chunk: &mut Option<Bytes>,
        end: bool,
        _ctx: &mut RequestContext,
    ) {
        if let Some(data) = chunk {
            *data = Bytes::from(data.to_ascii_uppercase());
        }
        if end {
            *chunk = Some(Bytes::from_static(b"!"));
        }
    }
}

#[test]
fn a_body_filter_replaces_chunks_and_the_framing_follows() {
    let dialer = MemoryDialer::default();
    dialer.origin("10.0.0.1:80", |_, _| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()
    });
    let mut worker = worker(ONE_ORIGIN, &dialer);
    worker.routes.entries_mut()[1].filters = FilterChain::new(vec![Box::new(Shout)]);
    let worker = Rc::new(worker);
    run(async move {
        let mut client = Client::connect(&worker);
        client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let (head, body) = client.response().await;
        // The filter may change the length: Content-Length gives way to chunked.
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        assert_eq!(body, b"HELLO!");
        client.send("GET / HTTP/1.0\r\n\r\n").await;
        let (head, _) = client.response().await;
        // HTTP/1.0 cannot take chunks: the body ends with the connection.
        assert!(head.contains("Connection: close"), "{head}");
        let mut rest = Vec::new();
        while read_more(&mut client.stream, &mut client.buf).await {}
        rest.extend_from_slice(&client.buf);
        assert_eq!(rest, b"HELLO!");
    });
}

#[test]
fn a_dead_server_is_not_every_requests_first_choice() {
    let dialer = MemoryDialer::default();
    dialer.origin("10.0.0.2:80", echo);
    let toml = r#"
[[upstream]]
name = "app"
servers = ["10.0.0.1:80", "10.0.0.2:80"]
max_idle_per_server = 0
lb = "round-robin"

[[route]]
upstream = "app"
"#;
    let worker = Rc::new(worker(toml, &dialer));
    let dials = dialer.dials.clone();
    let answered = Rc::new(Cell::new(0));
    let counted = answered.clone();
    run(async move {
        let mut client = Client::connect(&worker);
        for _ in 0..4 {
            client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
            if client.response().await.0.starts_with("HTTP/1.1 200") {
                counted.set(counted.get() + 1);
            }
        }
    });
    assert_eq!(answered.get(), 4);
    let dead: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let to_dead = dials.borrow().iter().filter(|a| **a == dead).count();
    // Round robin starts half the requests on each server; a retry does not move it again.
    assert_eq!(to_dead, 2, "{:?}", dials.borrow());
}

#[test]
fn an_error_closes_the_connection_of_a_client_that_asked_for_it() {
    let dialer = MemoryDialer::default();
    let toml = r#"
[[upstream]]
name = "app"
servers = ["10.0.0.9:80"]

[[route]]
upstream = "app"
"#;
    let worker = Rc::new(worker(toml, &dialer));
    run(async move {
        let mut client = Client::connect(&worker);
        client
            .send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await;
        let (head, _) = client.response().await;
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(head.contains("\r\nDate: "), "{head}");
        assert!(client.closed().await);

        let mut client = Client::connect(&worker);
        client.send("GET / HTTP/1.0\r\n\r\n").await;
        let (head, _) = client.response().await;
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(client.closed().await);

        let mut client = Client::connect(&worker);
        client.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let (head, _) = client.response().await;
        assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{head}");
    });
}

/// What an idle keep-alive connection carries is `serve`'s future (boxed by the engine), its
/// socket and an idle slot: docs/benchmarks.md budgets it under 1 KiB in all. The future's size
/// moves with any state added to the connection loop; this keeps it in its allocation class.
#[test]
fn an_idle_connection_carries_a_small_future() {
    run(async {
        let config = Config::from_toml_str(ONE_ORIGIN, None).expect("valid config");
        let worker = Rc::new(Worker::new(
            &config,
            0,
            Drain::default(),
            None,
            super::TcpDialer::default(),
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let stream = monoio::net::TcpStream::from_std(std_stream).unwrap();
        let future = serve(worker, stream, "127.0.0.1:1".parse().unwrap(), 0);
        let size = std::mem::size_of_val(&future);
        // docs/architecture.md quotes this line (`-- --nocapture`).
        eprintln!("serve's future over TCP: {size} bytes");
        assert!(size <= 640, "serve's future is {size} bytes");
        // Nothing in it is cache-padded (a monoio `Sleep` is, and is 640 bytes by itself).
        assert!(std::mem::align_of_val(&future) <= 16);
    });
}
