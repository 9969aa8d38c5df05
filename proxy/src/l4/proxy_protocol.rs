//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a proxy sends first on a
//! connection to its origin, so that the origin learns the real client address.
//!
//! [`encode`] writes one toward origins (`send_proxy_protocol`); [`decode`] reads one from a
//! load balancer in front (`proxy_protocol_from`), v1 (text) or v2 (binary), and says how many
//! bytes it took. Both follow haproxy.org's `proxy-protocol.txt`.

use std::net::{IpAddr, SocketAddr};

/// Which version to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum ProxyVersion {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v2")]
    V2,
}

/// The v2 signature.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;

/// The header for a TCP connection from `source` that arrived at `destination`.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    // Both ends in one family: an IPv4 peer of an IPv6 socket is written as mapped IPv6.
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = SIGNATURE.to_vec();
            out.push(0x21); // version 2, PROXY
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // TCP over IPv4
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21); // TCP over IPv6
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    (
        SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port()),
        SocketAddr::new(IpAddr::V6(v6(b.ip())), b.port()),
    )
}

/// What the first bytes of a connection from a trusted load balancer say.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes; the client's address, when it carries one (`LOCAL` and
    /// `UNKNOWN` headers do not: the connection is the balancer's own).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
    /// Not a PROXY header, or a malformed one.
    Invalid,
}

/// Reads a v1 or v2 header at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded {
    let n = bytes.len().min(SIGNATURE.len());
    if bytes[..n] == SIGNATURE[..n] {
        return if n < SIGNATURE.len() {
            Decoded::Incomplete
        } else {
            decode_v2(bytes)
        };
    }
    let n = bytes.len().min(6);
    if bytes[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Decoded::Incomplete
        } else {
            decode_v1(bytes)
        };
    }
    Decoded::Invalid
}

fn decode_v1(bytes: &[u8]) -> Decoded {
    let Some(end) = bytes.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if bytes.len() >= V1_MAX {
            Decoded::Invalid
        } else {
            Decoded::Incomplete
        };
    };
    if end == 0 || bytes[end - 1] != b'\r' {
        return Decoded::Invalid;
    }
    let Ok(line) = std::str::from_utf8(&bytes[6..end - 1]) else {
        return Decoded::Invalid;
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(src), Ok(dst), Ok(sport), Ok(_)) = (
                src.parse::<IpAddr>(),
                dst.parse::<IpAddr>(),
                sport.parse::<u16>(),
                dport.parse::<u16>(),
            ) else {
                return Decoded::Invalid;
            };
            let v4 = *family == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Decoded::Invalid;
            }
            Some(SocketAddr::new(src, sport))
        }
        _ => return Decoded::Invalid,
    };
    Decoded::Header {
        len: end + 1,
        source,
    }
}

fn decode_v2(bytes: &[u8]) -> Decoded {
    if bytes.len() < 16 {
        return Decoded::Incomplete;
    }
    let (version, command, family) = (bytes[12] >> 4, bytes[12] & 0x0f, bytes[13]);
    if version != 2 || command > 1 {
        return Decoded::Invalid;
    }
    let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if bytes.len() < len {
        return Decoded::Incomplete;
    }
    let body = &bytes[16..len];
    let source = match (command, family >> 4) {
        // LOCAL: the balancer's own connection (health checks), or UNSPEC (a family without
        // addresses): no client address to take, the peer's stays.
        (0, _) | (_, 0) => None,
        (_, 1) if body.len() >= 12 => {
            let ip = <[u8; 4]>::try_from(&body[0..4]).expect("4 bytes");
            Some(SocketAddr::new(
                IpAddr::from(ip),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (_, 2) if body.len() >= 36 => {
            let ip = <[u8; 16]>::try_from(&body[0..16]).expect("16 bytes");
            Some(SocketAddr::new(
                IpAddr::from(ip),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        _ => return Decoded::Invalid,
    };
    Decoded::Header { len, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_byte_by_byte() {
        assert_eq!(
            encode(
                ProxyVersion::V1,
                addr("192.0.2.1:56324"),
                addr("198.51.100.1:443")
            ),
            b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
        );
        assert_eq!(
            encode(
                ProxyVersion::V1,
                addr("[2001:db8::1]:1000"),
                addr("[::1]:80")
            ),
            b"PROXY TCP6 2001:db8::1 ::1 1000 80\r\n"
        );
    }

    #[test]
    fn v2_headers_byte_by_byte() {
        let header = encode(
            ProxyVersion::V2,
            addr("192.0.2.1:56324"),
            addr("198.51.100.1:443"),
        );
        let mut expected = SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        expected.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 1]);
        expected.extend_from_slice(&56324u16.to_be_bytes());
        expected.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(header, expected);
        let header = encode(
            ProxyVersion::V2,
            addr("[2001:db8::1]:1000"),
            addr("127.0.0.1:80"),
        );
        assert_eq!(&header[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(header.len(), 16 + 36);
    }

    #[test]
    fn what_is_encoded_decodes_and_the_rest_is_left() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            for (s, d) in [
                ("10.1.2.3:4000", "10.0.0.1:443"),
                ("[2001:db8::7]:5000", "[2001:db8::1]:443"),
            ] {
                let mut bytes = encode(version, addr(s), addr(d));
                let len = bytes.len();
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
                assert_eq!(
                    decode(&bytes),
                    Decoded::Header {
                        len,
                        source: Some(addr(s))
                    }
                );
                for cut in 0..len {
                    assert_eq!(
                        decode(&bytes[..cut]),
                        Decoded::Incomplete,
                        "{version:?} {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_local_and_garbage() {
        assert_eq!(
            decode(b"PROXY UNKNOWN\r\n"),
            Decoded::Header {
                len: 15,
                source: None
            }
        );
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            decode(&local),
            Decoded::Header {
                len: 16,
                source: None
            }
        );
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Decoded::Invalid);
        assert_eq!(
            decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"),
            Decoded::Invalid
        );
        assert_eq!(decode(b"PROXY TCP4 ::1 5.6.7.8 1 1\r\n"), Decoded::Invalid);
        assert_eq!(decode(&[b'P'; 200]), Decoded::Invalid);
        assert_eq!(
            decode(format!("PROXY {}", "x".repeat(200)).as_bytes()),
            Decoded::Invalid
        );
    }
}
