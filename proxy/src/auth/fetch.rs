//! `[auth.jwt] jwks_url`: the JWKS fetched by the control thread at start and every `refresh`,
//! and posted to every worker when it changed (`Message::JwtKeys`). A failed fetch keeps the
//! keys in use and is tried again in 10 s (or `refresh`, if sooner). Until the first fetch
//! succeeds no token verifies (401). A plain HTTP/1.1 GET over `http://` or `https://` (the
//! system's CA certificates), at most 1 MiB, 5 s to answer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwall_runtime::{rustls, Outside};

use super::jwt::{parse_jwks, JwtVerifier};
use crate::config::{Config, JwtKeys};
use crate::control::Message;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 1 << 20;
const RETRY: Duration = Duration::from_secs(10);

/// The control thread's JWKS: where from, when next, what it last got.
pub struct Jwks {
    url: Option<String>,
    next: Instant,
    body: Option<Vec<u8>>,
}

impl Jwks {
    pub fn of(config: &Config) -> Self {
        Self {
            url: url_of(config),
            next: Instant::now(),
            body: None,
        }
    }

    /// Fetches the JWKS when it is time; posts it to every worker when it changed.
    pub fn refresh_if_due(&mut self, config: &Config, outside: &Outside<Message>) {
        let (Some(url), Some(settings)) = (&self.url, &config.auth.jwt) else {
            return;
        };
        if Instant::now() < self.next {
            return;
        }
        let fetched = get(url).and_then(|body| {
            let text = std::str::from_utf8(&body).map_err(|_| "not UTF-8".to_owned())?;
            let keys = parse_jwks(text)?;
            Ok((body, keys))
        });
        match fetched {
            Ok((body, keys)) => {
                self.next = Instant::now() + settings.refresh;
                if self.body.as_ref() == Some(&body) {
                    return;
                }
                tracing::info!(url, keys = keys.len(), "JWKS fetched");
                self.body = Some(body);
                post(outside, &Arc::new(JwtVerifier::new(settings, keys)));
            }
            Err(e) => {
                self.next = Instant::now() + RETRY.min(settings.refresh);
                tracing::warn!(url, "cannot fetch the JWKS, keeping the keys in use: {e}");
            }
        }
    }

    /// A new generation was installed: its workers start without the fetched keys, so they
    /// are posted again (or fetched at once, when the URL changed).
    pub fn installed(&mut self, config: &Config, outside: &Outside<Message>) {
        let url = url_of(config);
        if url != self.url {
            *self = Self::of(config);
            return;
        }
        // The same keys, under the new generation's settings (issuer, audience…).
        if let (Some(body), Some(settings)) = (&self.body, &config.auth.jwt) {
            let keys = std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(parse_jwks);
            if let Ok(keys) = keys {
                post(outside, &Arc::new(JwtVerifier::new(settings, keys)));
            }
        }
    }
}

fn url_of(config: &Config) -> Option<String> {
    match config.auth.jwt.as_ref().map(|j| &j.keys) {
        Some(JwtKeys::Url(url)) => Some(url.clone()),
        _ => None,
    }
}

fn post(outside: &Outside<Message>, verifier: &Arc<JwtVerifier>) {
    for to in 0..outside.workers() {
        outside.send(to, Message::JwtKeys(verifier.clone()));
    }
}

/// The body of a `GET url`.
fn get(url: &str) -> Result<Vec<u8>, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("not an http:// or https:// URL".to_owned());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty())
        .map_or(authority, |(host, _)| host);
    let with_port = if host.len() == authority.len() {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    } else {
        authority.to_owned()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{with_port}: no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: ringwall\r\n\r\n"
    );
    let raw = if tls {
        let roots = crate::tls::system_roots().map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut stream, &request)?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, &request)?
    };
    Ok(raw)
}

/// Sends the request and reads the response's body: as soon as it is whole (by its length or
/// its last chunk), or at the end of the stream.
fn exchange(stream: &mut (impl Read + Write), request: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let eof = match stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_BODY + 64 * 1024 {
                    return Err("the response is larger than 1 MiB".to_owned());
                }
                false
            }
            // A TLS peer that closes without close_notify: what came is what there is.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
            Err(e) => return Err(e.to_string()),
        };
        if let Some(body) = body_of(&raw, eof)? {
            return Ok(body);
        }
        if eof {
            return Err("the response ended early".to_owned());
        }
    }
}

/// The body of an HTTP/1.1 response (200 only; by Content-Length, chunked, or to the end of
/// the stream at `eof`); `None` while it is not whole yet.
fn body_of(raw: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut fields);
    let head = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if !eof => return Ok(None),
        _ => return Err("no whole response head".to_owned()),
    };
    if response.code != Some(200) {
        return Err(format!("status {}", response.code.unwrap_or(0)));
    }
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[head..];
    if field("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = rest;
        loop {
            let Some(end) = at.windows(2).position(|w| w == b"\r\n") else {
                return if eof {
                    Err("a broken chunk".to_owned())
                } else {
                    Ok(None)
                };
            };
            let size_text = String::from_utf8_lossy(&at[..end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "a broken chunk size".to_owned())?;
            at = &at[end + 2..];
            if size == 0 {
                return Ok(Some(body));
            }
            if body.len() + size > MAX_BODY {
                return Err("the response is larger than 1 MiB".to_owned());
            }
            if at.len() < size + 2 {
                return if eof {
                    Err("a cut chunk".to_owned())
                } else {
                    Ok(None)
                };
            }
            body.extend_from_slice(&at[..size]);
            at = &at[size + 2..];
        }
    }
    match field("content-length").and_then(|l| l.parse::<usize>().ok()) {
        Some(n) if n > MAX_BODY => Err("the response is larger than 1 MiB".to_owned()),
        Some(n) if rest.len() >= n => Ok(Some(rest[..n].to_vec())),
        Some(_) if eof => Err("a body shorter than its Content-Length".to_owned()),
        None if eof => Ok(Some(rest.to_vec())),
        Some(_) | None => Ok(None),
    }
}
