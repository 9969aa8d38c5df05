//! End to end: WebSocket through ringwall, with a real WebSocket server and client
//! (`tungstenite`, RFC 6455, its own handshake and framing). The upgrade is forwarded, the
//! origin's 101 is passed back with its `Sec-WebSocket-Accept`, and messages cross both ways
//! until either side closes; the origin's close code reaches the client; an idle tunnel is
//! closed after `--tunnel-idle-timeout`; a 101 to a request that asked for no upgrade is 502.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, Origin, Proxy};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// A WebSocket origin on loopback: greets, echoes every message, and closes with code 4001
/// when told "close-me". One thread per connection; it stops when the test process ends.
struct WsOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl WsOrigin {
    fn start() -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                counted.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || serve_ws(stream));
            }
        });
        WsOrigin { addr, connections }
    }
}

fn serve_ws(stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    if ws.send(Message::text("hello from the origin")).is_err() {
        return;
    }
    #[allow(clippy::collapsible_match)] // the guard would move `message` before it is sent
    while let Ok(message) = ws.read() {
        match message {
            Message::Text(text) if text.as_str() == "close-me" => {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::from(4001),
                    reason: "origin closes".into(),
                }));
            }
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(message).is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// A client connected through `proxy` to `path`, past the origin's greeting.
fn connect(proxy: &Proxy, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(proxy.addr).expect("connect to ringwall");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{}{path}", proxy.addr);
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("handshake");
    assert_eq!(response.status().as_u16(), 101);
    assert!(response.headers().contains_key("sec-websocket-accept"));
    assert_eq!(
        ws.read().expect("greeting"),
        Message::text("hello from the origin")
    );
    ws
}

#[test]
fn websocket_messages_cross_both_ways_through_ringwall() {
    let origin = WsOrigin::start();
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut ws = connect(&proxy, "/chat");
    ws.send(Message::text("ping through ringwall")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("ping through ringwall"));
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(blob));
    for i in 0..50 {
        ws.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..50 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
    // A clean close handshake through the tunnel: our close, the origin's answer.
    ws.close(None).unwrap();
    match ws.read() {
        Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
        Ok(other) => panic!("after close: {other:?}"),
        Err(e) => panic!("closing: {e}"),
    }
}

#[test]
fn the_origins_close_code_reaches_the_client() {
    let origin = WsOrigin::start();
    let proxy = Proxy::start(&[origin.addr], &[]);
    let mut ws = connect(&proxy, "/bye");
    ws.send(Message::text("close-me")).unwrap();
    match ws.read().expect("a close frame") {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected the origin's close, got {other:?}"),
    }
    // ringwall is still an HTTP proxy for everything else on the same listener.
    let plain = Origin::echo("plain");
    let proxy = Proxy::start(&[plain.addr], &[]);
    assert_eq!(proxy.client().request(get("/", "a.test")).status, 200);
}

#[test]
fn an_idle_tunnel_is_closed_after_its_timeout() {
    let origin = WsOrigin::start();
    let proxy = Proxy::start(&[origin.addr], &["--tunnel-idle-timeout", "1s"]);
    let mut ws = connect(&proxy, "/quiet");
    let started = Instant::now();
    match ws.read() {
        Err(
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::Protocol(_)
            | tungstenite::Error::Io(_),
        ) => {}
        other => panic!("the idle tunnel stayed open: {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_101_to_a_request_without_upgrade_is_502() {
    let origin = Origin::start(|_req, conn| {
        conn.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        )?;
        Ok(common::Next::Close)
    });
    let proxy = Proxy::start(&[origin.addr], &[]);
    let response = proxy.client().request(get("/", "a.test"));
    assert_eq!(response.status, 502);
}
