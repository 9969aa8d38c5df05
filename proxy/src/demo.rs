//! The built-in demo origins behind `ringwall --demo`.
//!
//! Two small HTTP/1.1 origin servers on loopback ports chosen by the kernel, each on its own
//! thread and runtime, built on ringwall's own codec. They answer every request with a short
//! text naming the origin, the method, the path and the size of the request body, so that a
//! user can watch routing and balancing with nothing but curl. `/stream` answers with a
//! chunked body. They are a demo, not a benchmark target.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use crate::http1::{parse_request, BodyDecoder, Decoded, HeadLimits, Method};
use crate::l7::{read_some, ReadSize};

const DEMO_LIMITS: HeadLimits = HeadLimits {
    max_head: 64 * 1024,
    max_headers: 100,
    max_uri: 8 * 1024,
};
/// A demo connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// Starts `count` demo origins on 127.0.0.1 and returns their addresses. They run until the
/// process exits.
pub fn start_origins(count: usize) -> io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::with_capacity(count);
    for index in 1..=count {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        addrs.push(addr);
        std::thread::Builder::new()
            .name(format!("demo-origin-{index}"))
            .spawn(move || {
                let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build();
                let mut runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!("demo origin {index}: cannot start: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!("demo origin {index}: {e}");
                            return;
                        }
                    };
                    while let Ok((stream, _)) = listener.accept().await {
                        monoio::spawn(serve_demo(stream, index, addr));
                    }
                });
            })?;
    }
    Ok(addrs)
}

async fn serve_demo(mut stream: TcpStream, index: usize, addr: SocketAddr) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let head = loop {
            match parse_request(&mut buf, &DEMO_LIMITS) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(_) => {
                    let _ = stream
                        .write_all(&b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..])
                        .await;
                    return;
                }
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let mut decoder = BodyDecoder::new(head.body());
        let mut body_bytes = 0usize;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => body_bytes += data.len(),
                Ok(Decoded::Trailers(_)) => {}
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) => {
                    if !read_more(&mut stream, &mut buf).await {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let text = format!(
            "hello from ringwall demo origin {index} ({addr})\nmethod: {}\npath: {}\nrequest body bytes: {body_bytes}\n",
            String::from_utf8_lossy(head.method_bytes()),
            String::from_utf8_lossy(head.target()),
        );
        let keep_alive = head.keep_alive();
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let response = if head.path() == b"/stream" {
            let mut chunked = format!(
                "HTTP/1.1 200 OK\r\nServer: ringwall-demo-origin\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
            );
            if head.method() != Method::Head {
                for line in text.lines().chain(["(this body came in chunks)"]) {
                    let _ = write!(chunked, "{:x}\r\n{line}\n\r\n", line.len() + 1);
                }
                chunked.push_str("0\r\n\r\n");
            }
            chunked
        } else {
            let body = if head.method() == Method::Head {
                ""
            } else {
                &text
            };
            format!(
                "HTTP/1.1 200 OK\r\nServer: ringwall-demo-origin\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
                text.len()
            )
        };
        let (result, _) = stream.write_all(Bytes::from(response)).await;
        if result.is_err() || !keep_alive {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    matches!(read_some(stream, buf, IDLE, ReadSize::Body).await, Ok(n) if n > 0)
}
