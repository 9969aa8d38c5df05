//! L4 end to end: `tcp` and `tls` listeners of the real binary in front of raw TCP origins,
//! with real clients: bytes and their SHA-256 at both ends, half-close, many connections at
//! once, origins that refuse, TLS passed through by SNI to two openssl servers, the PROXY
//! protocol header as the origin reads it, byte by byte.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    closed_port, connect, need, path, wait_peer_close, Offer, OpensslOrigin, Origin, Pki, Proxy,
    RawOrigin, IO_TIMEOUT,
};
use sha2::{Digest, Sha256};

/// `n` bytes of a pattern that differs per `seed`, written in 64 KiB pieces.
fn send_pattern(stream: &mut TcpStream, n: usize, seed: u8) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut piece = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < n {
        let len = piece.len().min(n - sent);
        for (i, b) in piece[..len].iter_mut().enumerate() {
            *b = ((sent + i) as u8).wrapping_mul(31).wrapping_add(seed);
        }
        stream.write_all(&piece[..len]).unwrap();
        hash.update(&piece[..len]);
        sent += len;
    }
    hash.finalize().into()
}

/// Reads to the end; the SHA-256 and the count of what came.
fn read_all_hashed(stream: &mut TcpStream) -> ([u8; 32], usize) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                total += n;
            }
            Err(e) => panic!("read failed after {total} bytes: {e}"),
        }
    }
    (hash.finalize().into(), total)
}

fn l4_proxy(upstreams: &[SocketAddr], extra: &[&str]) -> Proxy {
    let mut args = vec!["--mode", "l4"];
    args.extend_from_slice(extra);
    Proxy::start(upstreams, &args)
}

fn connect_to(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

const HUNDRED_MIB: usize = 100 << 20;

#[test]
fn a_hundred_mib_each_way_arrive_whole_with_half_close_both_ways() {
    // The origin sends its 100 MiB while it reads the client's, and shuts its sending side
    // when done; it reports the SHA-256 of what it sent and of what it read.
    let (report, reports) = mpsc::channel::<(&str, [u8; 32], usize)>();
    let origin = RawOrigin::start(move |stream, _| {
        let mut writer = stream.try_clone().unwrap();
        let sent_report = report.clone();
        let sending = thread::spawn(move || {
            let hash = send_pattern(&mut writer, HUNDRED_MIB, 7);
            writer.shutdown(Shutdown::Write).unwrap();
            let _ = sent_report.send(("sent", hash, HUNDRED_MIB));
        });
        let mut reader = stream;
        let (hash, len) = read_all_hashed(&mut reader);
        let _ = report.send(("received", hash, len));
        sending.join().unwrap();
    });
    let proxy = l4_proxy(&[origin.addr], &[]);
    let client = connect_to(proxy.addr);
    let mut writer = client.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let hash = send_pattern(&mut writer, HUNDRED_MIB, 3);
        // The client is done sending but goes on reading: its FIN must reach the origin
        // while the origin's bytes keep coming.
        writer.shutdown(Shutdown::Write).unwrap();
        hash
    });
    let mut reader = client;
    let (got_hash, got_len) = read_all_hashed(&mut reader);
    let client_sent = sending.join().unwrap();
    assert_eq!(got_len, HUNDRED_MIB);
    let mut origin_saw = std::collections::HashMap::new();
    for _ in 0..2 {
        let (what, hash, len) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        origin_saw.insert(what, (hash, len));
    }
    assert_eq!(
        origin_saw["received"],
        (client_sent, HUNDRED_MIB),
        "the origin got the client's bytes"
    );
    assert_eq!(origin_saw["sent"], (got_hash, HUNDRED_MIB));
}

#[test]
fn the_origin_answers_after_the_client_closed_its_side() {
    let origin = RawOrigin::start(|mut stream, _| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        let reply = format!("got {} bytes, bye", got.len());
        stream.write_all(reply.as_bytes()).unwrap();
    });
    let proxy = l4_proxy(&[origin.addr], &[]);
    let mut client = connect_to(proxy.addr);
    client.write_all(b"hello over tcp").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "got 14 bytes, bye");
}

#[test]
fn hundreds_of_connections_at_once() {
    let origin = RawOrigin::start(|mut stream, _| {
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let proxy = l4_proxy(&[origin.addr], &[]);
    let mut clients: Vec<TcpStream> = (0..300).map(|_| connect_to(proxy.addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("{i:05}").as_bytes()).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut echo = [0u8; 5];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(echo, format!("{i:05}").as_bytes());
    }
    drop(clients);
    assert!(common::wait_until(Duration::from_secs(10), || origin
        .open()
        == 0));
}

#[test]
fn a_refusing_server_is_skipped_and_a_group_that_refuses_closes_the_client() {
    let origin = RawOrigin::start(|mut stream, _| {
        stream.write_all(b"from the live one").unwrap();
    });
    let dead = closed_port();
    let proxy = l4_proxy(&[dead, origin.addr], &["--workers", "1"]);
    for _ in 0..4 {
        let mut client = connect_to(proxy.addr);
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "from the live one");
    }
    let all_dead = l4_proxy(&[closed_port()], &[]);
    let mut client = connect_to(all_dead.addr);
    let started = Instant::now();
    assert!(wait_peer_close(&mut client, Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(common::wait_until(Duration::from_secs(5), || all_dead
        .logs()
        .contains("no server of the group took the connection")));
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let origin = RawOrigin::start(|mut stream, _| {
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf);
    });
    let proxy = l4_proxy(&[origin.addr], &["--tcp-idle-timeout", "300ms"]);
    let mut client = connect_to(proxy.addr);
    let started = Instant::now();
    assert!(wait_peer_close(&mut client, Duration::from_secs(10)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

/// An origin that reports what it read up to the client's marker `|`, then answers `ok`.
fn origin_reads_until_marker() -> (RawOrigin, mpsc::Receiver<Vec<u8>>) {
    let (seen, seen_rx) = mpsc::channel();
    let origin = RawOrigin::start(move |mut stream, _| {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"|") && stream.read(&mut byte).unwrap_or(0) == 1 {
            got.push(byte[0]);
        }
        let _ = seen.send(got);
        let _ = stream.write_all(b"ok");
    });
    (origin, seen_rx)
}

#[test]
fn proxy_protocol_headers_reach_the_origin_byte_by_byte() {
    for version in ["v1", "v2"] {
        let (origin, seen) = origin_reads_until_marker();
        let proxy = l4_proxy(&[origin.addr], &["--send-proxy-protocol", version]);
        let mut client = connect_to(proxy.addr);
        let client_port = client.local_addr().unwrap().port();
        client.write_all(b"data|").unwrap();
        let mut ok = [0u8; 2];
        client.read_exact(&mut ok).unwrap();
        let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        let listen_port = proxy.addr.port();
        let mut expected = if version == "v1" {
            format!("PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {listen_port}\r\n").into_bytes()
        } else {
            let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            v2.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 127, 0, 0, 1, 127, 0, 0, 1]);
            v2.extend_from_slice(&client_port.to_be_bytes());
            v2.extend_from_slice(&listen_port.to_be_bytes());
            v2
        };
        expected.extend_from_slice(b"data|");
        assert_eq!(got, expected, "{version}");
    }
}

#[test]
fn a_proxy_protocol_header_from_a_trusted_balancer_gives_the_client_address() {
    let origin = Origin::echo("app");
    let proxy = Proxy::start(&[origin.addr], &["--proxy-protocol-from", "127.0.0.1/32"]);
    let mut client = connect_to(proxy.addr);
    client
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply
            .to_lowercase()
            .contains("x-forwarded-for: 203.0.113.7"),
        "{reply}"
    );
    // From a trusted address, a connection without the header is closed, unanswered.
    let mut client = connect_to(proxy.addr);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = client.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
}

#[test]
fn tls_is_passed_through_by_sni_to_two_origins() {
    let pki = Pki::new("passthrough");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    std::fs::write(pki.dir.join("who"), "").unwrap();
    let dir_a = pki.dir.join("www-a");
    let dir_b = pki.dir.join("www-b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::write(dir_a.join("who"), "origin a\n").unwrap();
    std::fs::write(dir_b.join("who"), "origin b\n").unwrap();
    let origin_a = OpensslOrigin::start(&a, &dir_a, &[]);
    let origin_b = OpensslOrigin::start(&b, &dir_b, &[]);
    let plain = RawOrigin::start(|mut stream, _| {
        let _ = stream.write_all(b"not tls here");
    });
    let toml = format!(
        "[[upstream]]\nname = \"a\"\nservers = [\"{}\"]\n\
         [[upstream]]\nname = \"b\"\nservers = [\"{}\"]\n\
         [[upstream]]\nname = \"other\"\nservers = [\"{}\"]\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nupstream = \"other\"\n\
         [[listener.sni_routes]]\nhosts = [\"a.test\"]\nupstream = \"a\"\n\
         [[listener.sni_routes]]\nhosts = [\"*.b.test\", \"b.test\"]\nupstream = \"b\"\n",
        origin_a.addr, origin_b.addr, plain.addr
    );
    let proxy = Proxy::with_config_listeners(&toml, &[]);
    let config = Offer::new(&pki).config();
    for (sni, expected) in [("a.test", "origin a\n"), ("b.test", "origin b\n")] {
        // The certificate the client verifies is the origin's own: nothing terminated.
        let mut tls = connect(proxy.addr, &config, sni).unwrap();
        tls.write_all(format!("GET /who HTTP/1.0\r\nHost: {sni}\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.ends_with(expected), "{sni}: {reply}");
    }
    // Not TLS at all: the listener's own group.
    let mut client = connect_to(proxy.addr);
    client.write_all(b"hello").unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).unwrap();
    assert_eq!(got, "not tls here");
}

#[test]
fn a_tls_listener_terminates_tls_in_front_of_a_tcp_origin() {
    need("openssl");
    let pki = Pki::new("tls-tcp");
    let cert = pki.server("site", &["site.test"]);
    let origin = RawOrigin::start(|mut stream, _| {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        let reply = format!(
            "plain at the origin: {}",
            String::from_utf8_lossy(&buf[..n])
        );
        stream.write_all(reply.as_bytes()).unwrap();
    });
    let proxy = l4_proxy(
        &[origin.addr],
        &["--tls-cert", path(&cert.cert), "--tls-key", path(&cert.key)],
    );
    let config = Offer::new(&pki).config();
    let mut tls = connect(proxy.addr, &config, "site.test").unwrap();
    tls.write_all(b"ping").unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    assert_eq!(String::from_utf8_lossy(&reply), "plain at the origin: ping");
}
