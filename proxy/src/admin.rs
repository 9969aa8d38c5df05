//! The admin listener (`--admin ADDR`, off by default): `/healthz` for a load balancer in
//! front, `/status` and `/config` for people and scripts, `/metrics` for Prometheus.
//!
//! Every worker accepts on the admin address (its own `SO_REUSEPORT` socket, like any
//! listener) and answers from what it knows: the current configuration generation, the bound
//! addresses, the process's counters. `/metrics` asks every other worker for its counters on
//! the message path and adds them up (`WorkerState::scrape`). `/healthz` is `200 ok` while the
//! process serves and `503 draining` once it drains, so a balancer stops sending before the
//! listeners close. Only `GET` and `HEAD`; keep-alive as HTTP/1.1 clients expect.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use monoio::net::TcpStream;

use crate::control::Generation;
use crate::http1::{
    parse_request, write_local_response, HeadOverlay, LocalResponse, Method, RequestHead,
};
use crate::l7::{Conn, Dialer, ReadSize, Worker};
use crate::metrics::{render, ProcessInfo};
use crate::worker::WorkerState;

/// What `/status` says of one generation, the same for every worker.
#[derive(Debug)]
pub struct AdminInfo {
    pub workers: usize,
    /// Every listener's bound address (port 0 resolved), in listener order.
    pub addrs: Vec<SocketAddr>,
    /// `/config`'s body.
    pub config: String,
}

impl AdminInfo {
    pub fn new(generation: &Generation) -> Self {
        let config = &generation.config;
        Self {
            workers: config.engine.workers,
            addrs: generation.addrs.clone(),
            config: config.effective.clone(),
        }
    }
}

/// Serves one connection to the admin listener.
pub async fn serve_admin(state: Rc<WorkerState>, stream: TcpStream, peer: SocketAddr) {
    let worker = state.current().worker.clone();
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
        // A small body of known length is read (the key endpoints take one); any other body
        // is refused unread and ends the connection.
        let mut body = None;
        if let crate::http1::BodyKind::Length(n) = head.body() {
            if n > 0 && n <= MAX_ADMIN_BODY {
                let n = n as usize;
                while conn.buf.len() < n {
                    let limit = worker.timeouts.client_body;
                    if conn.read(limit, ReadSize::Body).await.is_err() {
                        return;
                    }
                }
                body = Some(conn.buf.split_to(n).freeze());
            }
        }
        let keep_alive = head.keep_alive()
            && !worker.drain.is_draining()
            && (body.is_some()
                || matches!(
                    head.body(),
                    crate::http1::BodyKind::Empty | crate::http1::BodyKind::Length(0)
                ));
        let response = match head.path() {
            b"/api-keys" | b"/api-keys/" => api_keys(&state, &head, body.as_deref()),
            path if path.starts_with(b"/api-keys/") => api_keys(&state, &head, body.as_deref()),
            b"/cache/purge" => purge(&state, &head, body.as_deref()),
            _ => answer(&state, &head).await,
        };
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

/// Largest body the admin endpoint reads.
const MAX_ADMIN_BODY: u64 = 16 * 1024;

/// `POST /cache/purge` with `{"url": "http://host/path?query"}` (that URL, whatever its
/// variants) or `{"prefix": "http://host/path/"}` (every URL that starts so): the stored
/// responses go on this worker at once and on the others when they take the message.
fn purge(state: &WorkerState, head: &RequestHead, body: Option<&[u8]>) -> LocalResponse {
    if head.method() != Method::Post {
        return LocalResponse::text(405, "POST {\"url\": …} or {\"prefix\": …}\n");
    }
    let value = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let field = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let (url, prefix) =
        match (field("url"), field("prefix")) {
            (Some(url), None) => (url, false),
            (None, Some(prefix)) => (prefix, true),
            _ => return LocalResponse::text(
                400,
                "expected {\"url\": \"http://host/path\"} or {\"prefix\": \"http://host/path\"}\n",
            ),
        };
    let Some(key) = crate::cache::purge_key(&url) else {
        return LocalResponse::text(400, format!("{url:?} is not an http:// or https:// URL\n"));
    };
    let current = state.current();
    let purged = match current.worker.cache.borrow_mut().as_mut() {
        Some(store) => store.purge_everywhere(&key, prefix),
        None => return LocalResponse::text(404, "there is no cache ([cache] memory, --cache)\n"),
    };
    state
        .postbox
        .broadcast_with(|| crate::control::Message::CachePurge {
            key: key.clone(),
            prefix,
        });
    tracing::info!(url, prefix, purged, "cache purge");
    typed(format!("{{\"purged\":{purged}}}\n"), "application/json")
}

/// `/api-keys`: `GET` lists consumers and key hashes; `POST` with `{"consumer": "alice",
/// "key": "…"}` (or `"hash": "sha256:…"`) adds a key; `DELETE /api-keys/sha256:…` revokes
/// one. A change goes to every worker at once (`Message::Credentials`), and is written to
/// `[auth] api_keys_file` when there is one (else it lasts until the next reload).
fn api_keys(state: &WorkerState, head: &RequestHead, body: Option<&[u8]>) -> LocalResponse {
    let current = state.current();
    let Some((_, auth)) = &current.worker.gateway.auth else {
        return LocalResponse::text(404, "no [auth] credentials are configured\n");
    };
    let credentials = auth.credentials.borrow().clone();
    let path = String::from_utf8_lossy(head.path()).into_owned();
    let change = match (head.method(), path.strip_prefix("/api-keys/")) {
        (Method::Get | Method::Head, _) => {
            let mut out = String::from("[");
            let mut keys: Vec<(&str, String)> = credentials
                .api_keys
                .iter()
                .filter_map(|(hash, &c)| Some((&*credentials.consumers.get(c)?.name, hex(hash))))
                .collect();
            keys.sort();
            for (i, (consumer, hash)) in keys.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(
                    out,
                    "{sep}{{\"consumer\":{},\"hash\":\"sha256:{hash}\"}}",
                    json_string(consumer)
                );
            }
            out.push_str("]\n");
            return typed(out, "application/json");
        }
        (Method::Post, None | Some("")) => {
            let Some(value) =
                body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            else {
                return LocalResponse::text(400, "expected {\"consumer\": NAME, \"key\": KEY} or {\"consumer\": NAME, \"hash\": \"sha256:HEX\"}\n");
            };
            let consumer = value.get("consumer").and_then(|v| v.as_str()).unwrap_or("");
            if !crate::config::is_token(consumer) {
                return LocalResponse::text(400, "consumer: letters, digits and -_.\n");
            }
            let hash = match (
                value.get("key").and_then(|v| v.as_str()),
                value.get("hash").and_then(|v| v.as_str()),
            ) {
                (Some(key), None) if !key.is_empty() => crate::auth::key_hash(key.as_bytes()),
                (None, Some(hash)) => match crate::config::parse_key_hash(hash) {
                    Ok(hash) => hash,
                    Err(e) => return LocalResponse::text(400, format!("hash: {e}\n")),
                },
                _ => return LocalResponse::text(400, "give one of key and hash\n"),
            };
            (consumer.to_owned(), hash, true)
        }
        (Method::Delete, Some(hash)) => match crate::config::parse_key_hash(hash) {
            Ok(hash) => match credentials.api_keys.get(&hash) {
                Some(&c) => (credentials.consumers[c].name.to_string(), hash, false),
                None => return LocalResponse::status_page(404),
            },
            Err(e) => return LocalResponse::text(400, format!("{e}\n")),
        },
        _ => {
            let mut response = LocalResponse::status_page(405);
            response.fields.push((
                Bytes::from_static(b"Allow"),
                Bytes::from_static(b"GET, POST, DELETE"),
            ));
            return response;
        }
    };
    let (consumer, hash, add) = change;
    let next = std::sync::Arc::new(credentials.with_key(&consumer, hash, add));
    if let Some(file) = &current.generation.config.auth.api_keys_file {
        if let Err(e) = write_keys_file(file, &next) {
            return LocalResponse::text(500, format!("cannot write {}: {e}\n", file.display()));
        }
    }
    auth.replace(next.clone());
    state
        .postbox
        .broadcast_with(|| crate::control::Message::Credentials(next.clone()));
    tracing::info!(
        consumer,
        add,
        "API key {}",
        if add { "added" } else { "revoked" }
    );
    let out = format!(
        "{{\"consumer\":{},\"hash\":\"sha256:{}\"}}\n",
        json_string(&consumer),
        hex(&hash)
    );
    let mut response = typed(out, "application/json");
    response.status = if add { 201 } else { 200 };
    response
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The keys file for `credentials`: every key as `CONSUMER sha256:HEX`, written to a new file
/// renamed over the old (the control thread then sees it change and reloads the same keys).
fn write_keys_file(
    file: &std::path::Path,
    credentials: &crate::auth::Credentials,
) -> std::io::Result<()> {
    let mut lines: Vec<String> = credentials
        .api_keys
        .iter()
        .filter_map(|(hash, &c)| {
            Some(format!(
                "{} sha256:{}",
                credentials.consumers.get(c)?.name,
                hex(hash)
            ))
        })
        .collect();
    lines.sort();
    let mut text = String::from("# written by ringwall's admin endpoint\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let partial = file.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, file)
}

/// The response for one admin request.
async fn answer(state: &WorkerState, head: &RequestHead) -> LocalResponse {
    if !matches!(head.method(), Method::Get | Method::Head) {
        let mut response = LocalResponse::status_page(405);
        response.fields.push((
            Bytes::from_static(b"Allow"),
            Bytes::from_static(b"GET, HEAD"),
        ));
        return response;
    }
    let current = state.current();
    let worker = &current.worker;
    match head.path() {
        b"/healthz" if worker.drain.is_draining() => LocalResponse::text(503, "draining\n"),
        b"/healthz" => LocalResponse::text(200, "ok\n"),
        b"/status" => typed(
            status_json(state, worker, &current.admin, current.generation.number),
            "application/json",
        ),
        b"/config" => typed(current.admin.config.clone(), "application/toml"),
        b"/metrics" => {
            let (sum, missing_workers) = state.scrape().await;
            let process = &state.process;
            let server_states: Vec<(String, String, &'static str)> = worker
                .upstreams
                .states(std::time::Instant::now())
                .into_iter()
                .flat_map(|(group, servers)| {
                    servers
                        .into_iter()
                        .map(move |(server, state)| (group.to_string(), server, state.as_str()))
                })
                .collect();
            let text = render(
                &sum,
                &ProcessInfo {
                    version: env!("CARGO_PKG_VERSION"),
                    io_driver: process.driver.get().map_or("", String::as_str),
                    workers: current.admin.workers,
                    uptime: process.started.elapsed(),
                    generation: process.generation(),
                    reloads: process.reloads.load(Ordering::Relaxed),
                    reload_failures: process.reload_failures.load(Ordering::Relaxed),
                    missing_workers,
                    server_states: &server_states,
                },
            );
            typed(text, "text/plain; version=0.0.4; charset=utf-8")
        }
        _ => LocalResponse::status_page(404),
    }
}

/// A 200 response of `body` with its `Content-Type`.
fn typed(body: String, content_type: &'static str) -> LocalResponse {
    let mut response = LocalResponse::text(200, body);
    response.fields = vec![(
        Bytes::from_static(b"Content-Type"),
        Bytes::from_static(content_type.as_bytes()),
    )];
    response
}

/// `/status`: version, uptime, configuration generation, workers, listeners, upstream servers.
fn status_json<D: Dialer>(
    state: &WorkerState,
    worker: &Worker<D>,
    info: &AdminInfo,
    generation: u64,
) -> String {
    let mut out = String::with_capacity(512);
    let process = &state.process;
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"uptime_seconds\":{:.3},\"generation\":{generation},\
         \"reloads\":{},\"reload_failures\":{},\"workers\":{},\
         \"io_driver\":{},\"draining\":{},\"listeners\":[",
        env!("CARGO_PKG_VERSION"),
        process.started.elapsed().as_secs_f64(),
        process.reloads.load(Ordering::Relaxed),
        process.reload_failures.load(Ordering::Relaxed),
        info.workers,
        json_string(process.driver.get().map_or("", String::as_str)),
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
    for (i, (name, servers)) in worker
        .upstreams
        .states(std::time::Instant::now())
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"name\":{},\"servers\":[", json_string(name));
        for (j, (server, state)) in servers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"address\":{},\"state\":\"{}\"}}",
                json_string(server),
                state.as_str()
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
