//! Forwarding fields: who the client is, how and where it came in, and who passed it on.
//!
//! Phase `request_filter`: when the peer is a trusted proxy, the real client is the nearest
//! address in its `X-Forwarded-For` chain that is not itself trusted (nginx's realip with
//! `real_ip_recursive on`); it becomes `ctx.client_ip` and `${client_addr}`. Phase
//! `upstream_request_filter`: `X-Forwarded-For` (the trusted chain kept, every field line of
//! it, then the peer), `X-Forwarded-Proto` (from the listener's kind), `X-Forwarded-Host`,
//! `Forwarded` (RFC 7239) when asked for, and ringwall appended to `Via` (RFC 9110 §7.6.3,
//! every incoming `Via` line kept). From a peer that is not trusted, the forwarding fields it
//! sent are replaced, so a client cannot claim to be someone else. Phase `response_filter`:
//! ringwall appended to the `Via` of a forwarded response (not of ringwall's own answers).
//! `Via` can be turned off: an nginx origin with `gzip_proxied off` does not compress responses
//! to requests that carry one.

use std::net::IpAddr;

use super::{Filter, Flow, Request, Response, ResponseSource};
use crate::config::{Cidr, Forwarding};
use crate::http1::{put_ip, FieldName, HeadOverlay, RequestHead, Version};
use crate::l7::RequestContext;

/// The forwarding fields of one route.
pub struct ForwardedFilter {
    forwarding: Forwarding,
    trusted: Vec<Cidr>,
}

impl ForwardedFilter {
    /// `None` when the route adds no field and no proxy is trusted.
    pub fn new(forwarding: Forwarding, trusted: &[Cidr]) -> Option<Self> {
        let active =
            forwarding.x_forwarded || forwarding.forwarded || forwarding.via || !trusted.is_empty();
        active.then(|| Self {
            forwarding,
            trusted: trusted.to_vec(),
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The real client behind a trusted peer: walking the chain from its end, the first
    /// address that is not trusted (or the chain's first when all are; the peer when the chain
    /// is broken).
    fn real_client(&self, request: &Request<'_>, peer: IpAddr) -> IpAddr {
        let Some(chain) = joined(request, b"x-forwarded-for") else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(|&b| b == b',') {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// Every forwardable field line called `name`, joined with `", "` (RFC 9110 §5.3).
fn joined(request: &Request<'_>, name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    join_into(request.head, name, &mut out).then_some(out)
}

/// Writes every forwardable field line called `name` into `out`, joined with `", "`; false
/// when there is none.
fn join_into(head: &RequestHead, name: &[u8], out: &mut Vec<u8>) -> bool {
    let mut found = false;
    for (n, value) in head.forwardable_fields() {
        if n.eq_ignore_ascii_case(name) {
            if found {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value.trim_ascii());
            found = true;
        }
    }
    found
}

/// Which forwarding fields a head carries, from one pass over its fields.
#[derive(Clone, Copy, Default)]
struct Present {
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    forwarded: bool,
    via: bool,
}

impl Present {
    fn of(head: &RequestHead) -> Present {
        let mut present = Present::default();
        for (name, _) in head.forwardable_fields() {
            match name.len() {
                3 if name.eq_ignore_ascii_case(b"via") => present.via = true,
                9 if name.eq_ignore_ascii_case(b"forwarded") => present.forwarded = true,
                15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => {
                    present.x_forwarded_for = true;
                }
                16 if name.eq_ignore_ascii_case(b"x-forwarded-host") => {
                    present.x_forwarded_host = true;
                }
                17 if name.eq_ignore_ascii_case(b"x-forwarded-proto") => {
                    present.x_forwarded_proto = true;
                }
                _ => {}
            }
        }
        present
    }
}

/// Replaces the head's fields called `name` (if `present`) with one written by `write`. As
/// the chain's first filter, this filter finds nothing added before it, so a field the head
/// lacks is only added: the common case costs no removal.
fn replace_with(
    overlay: &mut HeadOverlay,
    name: &'static [u8],
    present: bool,
    write: impl FnOnce(&mut Vec<u8>),
) {
    if present {
        overlay.remove(FieldName::Static(name));
    }
    overlay.add_with(FieldName::Static(name), write);
}

/// One `X-Forwarded-For` element: an address, perhaps bracketed or with a port.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

fn via_entry(version: Version) -> &'static [u8] {
    match version {
        Version::Http10 => b"1.0 ringwall",
        Version::Http11 => b"1.1 ringwall",
    }
}

impl Filter for ForwardedFilter {
    fn name(&self) -> &'static str {
        "forwarded"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        let peer = ctx.remote_addr.ip();
        if self.trusts(peer) {
            ctx.client_ip = self.real_client(request, peer);
        }
        Flow::Continue
    }

    fn upstream_request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) {
        let peer = ctx.remote_addr.ip();
        let trusted = self.trusts(peer);
        let head = request.head;
        let overlay = &mut *request.overlay;
        let present = Present::of(head);
        if self.forwarding.x_forwarded {
            replace_with(
                overlay,
                b"X-Forwarded-For",
                present.x_forwarded_for,
                |out| {
                    if trusted && join_into(head, b"x-forwarded-for", out) {
                        out.extend_from_slice(b", ");
                    }
                    put_ip(out, peer);
                },
            );
            if !(trusted && present.x_forwarded_proto) {
                replace_with(
                    overlay,
                    b"X-Forwarded-Proto",
                    present.x_forwarded_proto,
                    |out| out.extend_from_slice(ctx.scheme.as_bytes()),
                );
            }
            if !(trusted && present.x_forwarded_host) {
                match head.host() {
                    Some(host) => replace_with(
                        overlay,
                        b"X-Forwarded-Host",
                        present.x_forwarded_host,
                        |out| out.extend_from_slice(host),
                    ),
                    None if present.x_forwarded_host => {
                        overlay.remove(FieldName::Static(b"X-Forwarded-Host"));
                    }
                    None => {}
                }
            }
        }
        if self.forwarding.forwarded {
            replace_with(overlay, b"Forwarded", present.forwarded, |out| {
                if trusted && join_into(head, b"forwarded", out) {
                    out.extend_from_slice(b", ");
                }
                match peer {
                    IpAddr::V4(_) => {
                        out.extend_from_slice(b"for=");
                        put_ip(out, peer);
                    }
                    IpAddr::V6(_) => {
                        out.extend_from_slice(b"for=\"[");
                        put_ip(out, peer);
                        out.extend_from_slice(b"]\"");
                    }
                }
                if let Some(host) = head.host() {
                    out.extend_from_slice(b";host=\"");
                    for &b in host {
                        if b == b'"' || b == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                }
                out.extend_from_slice(b";proto=");
                out.extend_from_slice(ctx.scheme.as_bytes());
            });
        }
        if self.forwarding.via {
            replace_with(overlay, b"Via", present.via, |out| {
                if present.via && join_into(head, b"via", out) {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(via_entry(head.version()));
            });
        }
    }

    fn response_filter(&self, response: &mut Response<'_>, _ctx: &mut RequestContext) {
        // Via marks what is forwarded (RFC 9110 §7.6.3); ringwall's own answers were not.
        if !self.forwarding.via || matches!(response.source, ResponseSource::Local(_)) {
            return;
        }
        let source = response.source;
        let version = response.version();
        let present = source
            .fields()
            .any(|(name, _)| name.eq_ignore_ascii_case(b"via"));
        replace_with(response.overlay, b"Via", present, |out| {
            if present {
                for (name, value) in source.fields() {
                    if name.eq_ignore_ascii_case(b"via") {
                        out.extend_from_slice(value.trim_ascii());
                        out.extend_from_slice(b", ");
                    }
                }
            }
            out.extend_from_slice(via_entry(version));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;
    use crate::filters::testing::{context, request_head, run_upstream_request};

    const ALL: Forwarding = Forwarding {
        x_forwarded: true,
        forwarded: true,
        via: true,
    };

    fn trusted(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|t| crate::config::parse_cidr(t).unwrap())
            .collect()
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_the_chain() {
        let filter = ForwardedFilter::new(ALL, &[]).unwrap();
        let head = request_head(
            "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nVia: 1.1 a, 1.0 b\r\nVia: 1.1 c\r\n\r\n",
        );
        let (fields, ctx) = run_upstream_request(&filter, &head, context("192.0.2.9:5000"));
        assert_eq!(ctx.client_ip.to_string(), "192.0.2.9");
        assert_eq!(fields.get("x-forwarded-for").unwrap(), "192.0.2.9");
        assert_eq!(fields.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(fields.get("x-forwarded-host").unwrap(), "shop.test");
        assert_eq!(
            fields.get("forwarded").unwrap(),
            "for=192.0.2.9;host=\"shop.test\";proto=http"
        );
        // Via is a trace, not a claim: every line is kept, then ringwall.
        assert_eq!(
            fields.get("via").unwrap(),
            "1.1 a, 1.0 b, 1.1 c, 1.1 ringwall"
        );
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain_and_names_the_real_client() {
        let filter = ForwardedFilter::new(ALL, &trusted(&["10.0.0.0/8"])).unwrap();
        let head = request_head(
            "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.5, 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\nX-Forwarded-Proto: https\r\n\r\n",
        );
        let (fields, ctx) = run_upstream_request(&filter, &head, context("10.9.9.9:443"));
        assert_eq!(ctx.client_ip.to_string(), "203.0.113.5");
        assert_eq!(
            fields.get("x-forwarded-for").unwrap(),
            "203.0.113.5, 10.1.1.1, 10.2.2.2, 10.9.9.9"
        );
        assert_eq!(fields.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(
            fields.get("forwarded").unwrap(),
            "for=10.9.9.9;host=\"shop.test\";proto=http"
        );
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded_and_nothing_is_added_when_off() {
        let filter = ForwardedFilter::new(ALL, &[]).unwrap();
        let head = request_head("GET / HTTP/1.0\r\n\r\n");
        let (fields, _) = run_upstream_request(&filter, &head, context("[2001:db8::7]:80"));
        assert_eq!(
            fields.get("forwarded").unwrap(),
            "for=\"[2001:db8::7]\";proto=http"
        );
        assert_eq!(fields.get("via").unwrap(), "1.0 ringwall");
        assert!(fields.get("x-forwarded-host").is_none());
        let off = Forwarding {
            x_forwarded: false,
            forwarded: false,
            via: false,
        };
        assert!(ForwardedFilter::new(off, &[]).is_none());
    }
}
