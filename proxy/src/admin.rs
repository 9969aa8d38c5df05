//! The admin listener (`--admin ADDR`, off by default): `/healthz` for a load balancer in
//! front, `/status` for people and scripts.
//!
//! Every worker accepts on the admin address (its own `SO_REUSEPORT` socket, like any
//! listener) and answers from what it knows: the configuration, the bound addresses, its own
//! state. `/healthz` is `200 ok` while the process serves and `503 draining` once it drains, so
//! a balancer stops sending before the listeners close. Only `GET` and `HEAD`; keep-alive as
//! HTTP/1.1 clients expect.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::config::Config;
use crate::http1::{
    parse_request, write_local_response, HeadOverlay, LocalResponse, Method, RequestHead,
};
use crate::l7::{Conn, Dialer, ReadSize, Worker};

/// What `/status` says of the process, the same for every worker.
#[derive(Debug)]
pub struct AdminInfo {
    pub started: Instant,
    /// The I/O driver the workers run on.
    pub driver: String,
    pub workers: usize,
    /// Every listener's bound address (port 0 resolved), in listener order.
    pub addrs: Vec<SocketAddr>,
    /// `[[upstream]]` groups: name and servers.
    pub upstreams: Vec<(String, Vec<SocketAddr>)>,
}

impl AdminInfo {
    pub fn new(config: &Config, started: Instant, driver: String, addrs: Vec<SocketAddr>) -> Self {
        Self {
            started,
            driver,
            workers: config.engine.workers,
            addrs,
            upstreams: config
                .upstreams
                .iter()
                .map(|g| (g.name.clone(), g.servers.clone()))
                .collect(),
        }
    }
}

/// Serves one connection to the admin listener.
pub async fn serve_admin<D: Dialer>(
    worker: Rc<Worker<D>>,
    info: Rc<AdminInfo>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let mut conn = Conn::new(stream, 0, worker.deadlines.timer());
    loop {
        let head = loop {
            match parse_request(&mut conn.buf, &worker.request_limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {
                    let limit = worker.timeouts.client_keepalive;
                    if conn.read(limit, ReadSize::Head).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, "admin: malformed request: {e}");
                    let response = LocalResponse::status_page(e.status());
                    respond(&worker, &mut conn, &response, false, false).await;
                    return;
                }
            }
        };
        // A request with a body (refused, unread) ends the connection.
        let keep_alive = head.keep_alive()
            && !worker.drain.is_draining()
            && matches!(
                head.body(),
                crate::http1::BodyKind::Empty | crate::http1::BodyKind::Length(0)
            );
        let response = answer(&worker, &info, &head);
        let head_only = head.method() == Method::Head;
        if !respond(&worker, &mut conn, &response, keep_alive, head_only).await {
            return;
        }
    }
}

/// Writes `response`; false when the connection is to close (or failed).
async fn respond<D: Dialer>(
    worker: &Worker<D>,
    conn: &mut Conn<TcpStream>,
    response: &LocalResponse,
    keep_alive: bool,
    head_only: bool,
) -> bool {
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    write_local_response(
        conn.out.buf(),
        response,
        &HeadOverlay::default(),
        connection,
        head_only,
    );
    conn.flush(worker.timeouts.client_send).await.is_ok() && keep_alive
}

/// The response for one admin request.
fn answer<D: Dialer>(worker: &Worker<D>, info: &AdminInfo, head: &RequestHead) -> LocalResponse {
    if !matches!(head.method(), Method::Get | Method::Head) {
        let mut response = LocalResponse::status_page(405);
        response.fields.push((
            Bytes::from_static(b"Allow"),
            Bytes::from_static(b"GET, HEAD"),
        ));
        return response;
    }
    match head.path() {
        b"/healthz" if worker.drain.is_draining() => LocalResponse::text(503, "draining\n"),
        b"/healthz" => LocalResponse::text(200, "ok\n"),
        b"/status" => {
            let mut response = LocalResponse::text(200, status_json(worker, info));
            response.fields = vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"application/json"),
            )];
            response
        }
        _ => LocalResponse::status_page(404),
    }
}

/// `/status`: version, uptime, configuration generation, workers, listeners, upstream servers.
fn status_json<D: Dialer>(worker: &Worker<D>, info: &AdminInfo) -> String {
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"uptime_seconds\":{:.3},\"generation\":1,\"workers\":{},\
         \"io_driver\":{},\"draining\":{},\"listeners\":[",
        env!("CARGO_PKG_VERSION"),
        info.started.elapsed().as_secs_f64(),
        info.workers,
        json_string(&info.driver),
        worker.drain.is_draining(),
    );
    for (i, listener) in worker.listeners.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let addr = info
            .addrs
            .get(i)
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = write!(
            out,
            "{{\"name\":{},\"address\":{},\"protocol\":\"{}\"}}",
            json_string(&listener.name),
            json_string(&addr),
            listener.scheme
        );
    }
    out.push_str("],\"upstreams\":[");
    for (i, (name, servers)) in info.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"name\":{},\"servers\":[", json_string(name));
        for (j, server) in servers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            // No health checks yet: every server is in the rotation.
            let _ = write!(
                out,
                "{{\"address\":\"{server}\",\"state\":\"in rotation (not checked)\"}}"
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
