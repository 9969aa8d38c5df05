//! Reading the server name (SNI) out of a TLS `ClientHello` without terminating TLS: how a TCP
//! listener routes TLS connections it passes through untouched (nginx's `ssl_preread`,
//! HAProxy's `req.ssl_sni`).
//!
//! [`peek_sni`] looks at the first bytes a client sent: one TLS record of type handshake
//! holding a `ClientHello` (RFC 8446 §4.1.2, the same layout in TLS 1.2, RFC 5246 §7.4.1.2), and
//! in its extensions the `server_name` one (RFC 6066 §3). Nothing is consumed: the bytes are
//! forwarded to the origin as they came.

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// More bytes are needed to see the whole `ClientHello`.
    Incomplete,
    /// A `ClientHello`; its host name if it sent one.
    Parsed(Option<&'a str>),
    /// Not a TLS `ClientHello` (or a malformed one).
    NotTls,
}

/// The largest `ClientHello` record this reads (a record's maximum, RFC 8446 §5.1).
pub const MAX_RECORD: usize = 5 + (1 << 14);

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// Looks for the SNI host name in `bytes`, the start of a connection.
pub fn peek_sni(bytes: &[u8]) -> Hello<'_> {
    if bytes.len() < 5 {
        return if bytes.first().is_some_and(|&b| b != HANDSHAKE) {
            Hello::NotTls
        } else {
            Hello::Incomplete
        };
    }
    if bytes[0] != HANDSHAKE || bytes[1] != 3 {
        return Hello::NotTls;
    }
    let length = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    if length == 0 || length > 1 << 14 {
        return Hello::NotTls;
    }
    let Some(record) = bytes.get(5..5 + length) else {
        return Hello::Incomplete;
    };
    parse_client_hello(record).map_or(Hello::NotTls, Hello::Parsed)
}

/// A cursor over a byte slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a length prefix of `width` bytes.
    fn vector(&mut self, width: usize) -> Option<Reader<'a>> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        Some(Reader(self.take(len)?))
    }
}

/// `None` for a malformed `ClientHello`; `Some(None)` for one without a host name. (The outer
/// `Option` is what lets every bounds check below be a `?`.)
#[allow(clippy::option_option)]
fn parse_client_hello(record: &[u8]) -> Option<Option<&str>> {
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    // The whole message must be in this record.
    let len = r.u24()?;
    let mut body = Reader(r.take(len)?);
    body.take(2 + 32)?; // legacy_version, random
    body.vector(1)?; // legacy_session_id
    body.vector(2)?; // cipher_suites
    body.vector(1)?; // legacy_compression_methods
    if body.0.is_empty() {
        return Some(None); // no extensions at all (old clients)
    }
    let mut extensions = body.vector(2)?;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let mut data = extensions.vector(2)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut names = data.vector(2)?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vector(2)?.0;
            if name_type == HOST_NAME {
                let name = std::str::from_utf8(name).ok()?;
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                return valid.then_some(Some(name));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ClientHello` as a TLS client would send it, with `sni` in it (or none).
    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut extensions = Vec::new();
        // supported_versions, before the name, to show that others are skipped.
        extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        if let Some(name) = sni {
            let n = name.len() as u16;
            extensions.extend_from_slice(&0u16.to_be_bytes());
            extensions.extend_from_slice(&(n + 5).to_be_bytes());
            extensions.extend_from_slice(&(n + 3).to_be_bytes());
            extensions.push(0);
            extensions.extend_from_slice(&n.to_be_bytes());
            extensions.extend_from_slice(name.as_bytes());
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut message = vec![CLIENT_HELLO];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend_from_slice(&(message.len() as u16).to_be_bytes());
        record.extend_from_slice(&message);
        record
    }

    #[test]
    fn the_name_is_found_and_nothing_else_is_taken_for_it() {
        let hello = client_hello(Some("api.example.com"));
        assert_eq!(peek_sni(&hello), Hello::Parsed(Some("api.example.com")));
        assert_eq!(peek_sni(&client_hello(None)), Hello::Parsed(None));
    }

    #[test]
    fn a_real_clients_hello_gives_its_name() {
        // What Python's ssl module (OpenSSL 3) sent first for server_hostname="api.example.test",
        // kept as a fuzz seed.
        let hello = include_bytes!("../../../fuzz/seeds/l4_preamble/client_hello");
        assert_eq!(peek_sni(hello), Hello::Parsed(Some("api.example.test")));
    }

    #[test]
    fn partial_hellos_ask_for_more_and_other_protocols_are_not_tls() {
        let hello = client_hello(Some("a.test"));
        for cut in [0, 1, 4, 5, 20, hello.len() - 1] {
            assert_eq!(peek_sni(&hello[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        assert_eq!(peek_sni(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(peek_sni(b"G"), Hello::NotTls);
        assert_eq!(peek_sni(b"SSH-2.0-OpenSSH_9.6\r\n"), Hello::NotTls);
    }

    #[test]
    fn malformed_hellos_never_panic() {
        let hello = client_hello(Some("a.test"));
        // Every truncation of the message inside a record that claims to be whole, and every
        // single-byte corruption: an answer, never a panic.
        for i in 5..hello.len() {
            let mut bad = hello.clone();
            bad[i] ^= 0xff;
            let _ = peek_sni(&bad);
            let mut short = hello[..i].to_vec();
            let len = (short.len() - 5) as u16;
            short[3..5].copy_from_slice(&len.to_be_bytes());
            let _ = peek_sni(&short);
        }
        assert_eq!(peek_sni(&[22, 3, 1, 0, 0]), Hello::NotTls);
    }
}
