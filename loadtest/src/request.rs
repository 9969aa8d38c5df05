//! Request bytes, rendered once before the run.
//!
//! [`RequestSet`] holds one complete request (head and body) per path as [`Bytes`], so a
//! connection hands the same buffer to every write without copying or formatting; a pipelined
//! batch is the concatenation of consecutive requests ([`RequestSet::batch`]). Like wrk, the
//! head carries `Host` and the user's `-H` headers, plus `Content-Length` for a body and
//! `Connection: close` without keep-alive.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::options::LoadOptions;
use crate::target::Target;

/// The prepared requests of a run.
#[derive(Clone, Debug)]
pub struct RequestSet {
    requests: Vec<Bytes>,
    /// `HEAD` requests get body-less responses.
    pub head_method: bool,
}

impl RequestSet {
    pub fn new(opts: &LoadOptions, target: &Target) -> Self {
        let paths: Vec<&str> = if opts.paths.is_empty() {
            vec![target.path.as_str()]
        } else {
            opts.paths.iter().map(String::as_str).collect()
        };
        let requests = paths
            .iter()
            .map(|path| render(opts, target, path))
            .collect();
        RequestSet {
            requests,
            head_method: opts.method.eq_ignore_ascii_case("HEAD"),
        }
    }

    /// Number of distinct requests (paths).
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The `n`-th request of the round robin.
    pub fn get(&self, n: usize) -> Bytes {
        self.requests[n % self.requests.len()].clone()
    }

    /// Requests `first .. first + count` of the round robin as one buffer.
    pub fn batch(&self, first: usize, count: usize) -> Bytes {
        if count == 1 {
            return self.get(first);
        }
        let mut buf = BytesMut::new();
        for n in first..first + count {
            buf.put_slice(&self.requests[n % self.requests.len()]);
        }
        buf.freeze()
    }
}

/// One request's bytes.
fn render(opts: &LoadOptions, target: &Target, path: &str) -> Bytes {
    let mut head = format!("{} {path} HTTP/1.1\r\n", opts.method);
    let has = |name: &str| {
        opts.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        let _ = write!(head, "Host: {}\r\n", target.authority);
    }
    for (name, value) in &opts.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let body = opts.body.as_deref().unwrap_or_default();
    let sends_body = opts.body.is_some()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| opts.method.eq_ignore_ascii_case(m));
    if sends_body && !has("content-length") && !has("transfer-encoding") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    if !opts.keepalive && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut buf = BytesMut::with_capacity(head.len() + body.len());
    buf.put_slice(head.as_bytes());
    buf.put_slice(body);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LoadOptions {
        LoadOptions {
            url: "http://127.0.0.1:8080/a".into(),
            ..LoadOptions::default()
        }
    }

    #[test]
    fn get_like_wrk() {
        let o = opts();
        let t = Target::parse(&o.url).unwrap();
        let set = RequestSet::new(&o, &t);
        assert_eq!(
            &set.get(0)[..],
            b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        assert!(!set.head_method);
    }

    #[test]
    fn post_body_headers_close_and_paths() {
        let o = LoadOptions {
            method: "POST".into(),
            body: Some(b"abc".to_vec()),
            headers: vec![
                ("Host".into(), "example".into()),
                ("X-A".into(), "1".into()),
            ],
            keepalive: false,
            paths: vec!["/x".into(), "/y".into()],
            ..opts()
        };
        let t = Target::parse(&o.url).unwrap();
        let set = RequestSet::new(&o, &t);
        assert_eq!(set.len(), 2);
        assert_eq!(
            &set.get(3)[..],
            b"POST /y HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        let batch = set.batch(1, 3);
        let text = std::str::from_utf8(&batch).unwrap();
        assert_eq!(text.matches("POST /y").count(), 2);
        assert_eq!(text.matches("POST /x").count(), 1);
        assert!(text.starts_with("POST /y"));
        let head = LoadOptions {
            method: "HEAD".into(),
            ..opts()
        };
        assert!(RequestSet::new(&head, &t).head_method);
    }
}
