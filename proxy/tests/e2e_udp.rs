//! UDP forwarding end to end: the real binary in front of UDP origins on loopback, clients on
//! many ports. DNS (a query, an answer with the same id, many clients at once) and syslog
//! (datagrams one way) are the cases; replies must come from the address the client sent to,
//! to the client that asked, and idle sessions must end.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Proxy, IO_TIMEOUT};

/// A UDP origin on loopback: every datagram goes to `answer`, whose reply (if any) goes back
/// to the sender; every datagram's sender and bytes are reported on the channel.
fn udp_origin(
    answer: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> (SocketAddr, mpsc::Receiver<(SocketAddr, Vec<u8>)>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (seen, seen_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if seen.send((from, buf[..n].to_vec())).is_err() {
                break;
            }
            if let Some(reply) = answer(&buf[..n]) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    (addr, seen_rx)
}

fn udp_proxy(origin: SocketAddr, extra: &[&str]) -> Proxy {
    let mut args = vec!["--mode", "udp"];
    args.extend_from_slice(extra);
    Proxy::start(&[origin], &args)
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// A DNS query for `name` (type A), with `id`.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A DNS responder: the query with the response bit set and one A record, 192.0.2.<id % 256>.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut r = query.to_vec();
    r[2] |= 0x80; // QR: response
    r[7] = 1; // ANCOUNT = 1
    r.extend_from_slice(&[
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, query[1],
    ]);
    Some(r)
}

#[test]
fn dns_queries_from_many_clients_get_their_own_answers_from_the_listening_address() {
    let (origin, seen) = udp_origin(dns_answer);
    let proxy = udp_proxy(origin, &[]);
    let clients: Vec<UdpSocket> = (0..50).map(|_| client()).collect();
    // Every client asks three times, all before any answer is read.
    for round in 0..3u16 {
        for (i, c) in clients.iter().enumerate() {
            let id = (i as u16) * 10 + round;
            c.send_to(&dns_query(id, &format!("host{i}.example.test")), proxy.addr)
                .unwrap();
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let mut ids = HashSet::new();
        for _ in 0..3 {
            let mut buf = [0u8; 512];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from, proxy.addr, "the answer comes from the address asked");
            assert!(buf[2] & 0x80 != 0, "a response");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            assert_eq!(id / 10, i as u16, "client {i} got another client's answer");
            assert_eq!(buf[n - 1], buf[1], "the record of this query");
            ids.insert(id);
        }
        assert_eq!(ids.len(), 3, "client {i}");
    }
    // The origin saw the proxy's sockets, one per client session, never the clients.
    let mut senders = HashSet::new();
    for _ in 0..150 {
        let (from, _) = seen.recv_timeout(IO_TIMEOUT).unwrap();
        assert!(clients.iter().all(|c| c.local_addr().unwrap() != from));
        senders.insert(from);
    }
    assert_eq!(senders.len(), 50);
}

#[test]
fn syslog_datagrams_arrive_one_way() {
    let (origin, seen) = udp_origin(|_| None);
    let proxy = udp_proxy(origin, &[]);
    let senders: Vec<UdpSocket> = (0..10).map(|_| client()).collect();
    let mut sent = HashSet::new();
    for (i, s) in senders.iter().enumerate() {
        for j in 0..20 {
            let line = format!("<134>1 2026-12-01T12:00:00Z host{i} app - - - message {j}");
            s.send_to(line.as_bytes(), proxy.addr).unwrap();
            sent.insert(line);
            if j % 5 == 4 {
                // Loopback drops nothing, but a burst of 200 into one socket may: pace it.
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let mut got = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() && Instant::now() < deadline {
        if let Ok((_, line)) = seen.recv_timeout(Duration::from_millis(200)) {
            got.insert(String::from_utf8(line).unwrap());
        }
    }
    assert_eq!(got, sent);
}

#[test]
fn an_idle_session_ends_and_the_next_datagram_opens_another() {
    let (origin, seen) = udp_origin(|q| Some(q.to_vec()));
    let proxy = udp_proxy(origin, &["--udp-idle-timeout", "300ms"]);
    let c = client();
    let mut buf = [0u8; 64];
    c.send_to(b"one", proxy.addr).unwrap();
    c.recv_from(&mut buf).unwrap();
    c.send_to(b"two", proxy.addr).unwrap();
    c.recv_from(&mut buf).unwrap();
    let (first, _) = seen.recv_timeout(IO_TIMEOUT).unwrap();
    let (second, _) = seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(first, second, "one session while it is used");
    thread::sleep(Duration::from_millis(800));
    c.send_to(b"three", proxy.addr).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"three");
    let (third, _) = seen.recv_timeout(IO_TIMEOUT).unwrap();
    assert_ne!(
        third, first,
        "the idle session ended; a new one took the datagram"
    );
}

/// A reload that renames a UDP listener and moves it to another group keeps its socket: new
/// sessions go to the new group, from the same address; a session already open keeps its
/// server.
#[test]
fn a_reload_moves_new_udp_sessions_to_the_new_group() {
    let (first, first_seen) = udp_origin(|q| Some(q.to_vec()));
    let (second, second_seen) = udp_origin(|q| Some(q.to_vec()));
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    drop(taken);
    let config = |name: &str, group: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\naddress = \"{listen}\"\nprotocol = \"udp\"\nupstream = \"{group}\"\n\n\
             [[upstream]]\nname = \"one\"\nservers = [\"{first}\"]\n\n\
             [[upstream]]\nname = \"two\"\nservers = [\"{second}\"]\n"
        )
    };
    let file = common::TempFile::new("udp-reload.toml", &config("dns", "one"));
    let proxy = Proxy::with_config_path(&file.display(), &[], false);
    let early = client();
    early.send_to(b"before", listen).unwrap();
    let mut buf = [0u8; 64];
    let n = early.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"before");
    assert_eq!(first_seen.recv_timeout(IO_TIMEOUT).unwrap().1, b"before");

    std::fs::write(&file.path, config("renamed", "two")).unwrap();
    proxy.reload().expect("the reload is taken");
    let late = client();
    late.send_to(b"after", listen).unwrap();
    let (n, from) = late.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"after"[..], listen),
        "from the same address"
    );
    assert_eq!(second_seen.recv_timeout(IO_TIMEOUT).unwrap().1, b"after");
    // The session opened before the reload keeps its server.
    early.send_to(b"still", listen).unwrap();
    let n = early.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still");
    assert_eq!(first_seen.recv_timeout(IO_TIMEOUT).unwrap().1, b"still");
}
