//! A tiny HTTP/1.1 origin on 127.0.0.1 for the end-to-end tests: std threads, one per
//! connection, counting every complete request it reads, and answering the way a test asks
//! ([`Behaviour`]): normally, chunked, close-delimited, with a given status, never, with garbage,
//! or by hanging up. Optionally over TLS (rustls), with a certificate from the generator's own
//! `SelfSigned`.
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How the origin answers each request.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// `200`, `Content-Length`, keep-alive.
    Ok,
    /// `200`, chunked, keep-alive.
    Chunked,
    /// `200` with a body that ends when the origin closes the connection.
    CloseDelimited,
    /// This status, keep-alive.
    Status(u16),
    /// Reads the request and never answers.
    Silent,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Reads the request and closes the connection without answering.
    HangUp,
}

pub struct Origin {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Origin {
    pub fn start(behaviour: Behaviour) -> Origin {
        Self::start_with(behaviour, None)
    }

    pub fn start_tls(behaviour: Behaviour, cert_pem: &str, key_pem: &str) -> Origin {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(ringwall_load::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(behaviour, Some(Arc::new(config)))
    }

    fn start_with(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => serve(stream, behaviour, &count),
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            serve(rustls::StreamOwned::new(conn, stream), behaviour, &count);
                        }
                    }
                });
            }
        });
        Origin { addr, requests }
    }

    /// Complete requests read so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Reads requests off one connection and answers each.
fn serve<S: Read + Write>(mut stream: S, behaviour: Behaviour, count: &AtomicU64) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Answer every complete request in the buffer (pipelining), then read more.
        while let Some(len) = complete_request(&buf) {
            buf.drain(..len);
            count.fetch_add(1, Ordering::SeqCst);
            let reply: &[u8] = match behaviour {
                Behaviour::Ok => b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n",
                Behaviour::Chunked => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld\n\r\n0\r\n\r\n"
                }
                Behaviour::CloseDelimited => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world\n",
                Behaviour::Status(503) => {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                }
                Behaviour::Status(404) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n",
                Behaviour::Status(_) => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                Behaviour::Silent => b"",
                Behaviour::Garbage => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                Behaviour::HangUp => return,
            };
            if stream
                .write_all(reply)
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
            if matches!(behaviour, Behaviour::CloseDelimited | Behaviour::Garbage) {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The length of the first complete request (head and Content-Length body) in `buf`.
fn complete_request(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(buf).ok()? else {
        return None;
    };
    let body: usize = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

/// A port on 127.0.0.1 with nothing listening.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
