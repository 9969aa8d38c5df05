//! Request ids: one id per request, from the client when it sent a usable one, else made here,
//! sent to the origin and back to the client.
//!
//! Phase `request_filter`: a valid incoming `X-Request-Id` (1 to 128 characters of letters,
//! digits and `-_.:+/=@~`) is kept; anything else is replaced by a new random UUID (version
//! 4), so a client cannot inject a header line or a log line through it. The id goes into
//! `ctx.request_id` (and `${request_id}`). Phase `upstream_request_filter` sets it on the
//! request to the origin; phase `response_filter` on the response (also on ringwall's own
//! responses, so an error can be traced too).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use bytes::Bytes;

use super::{Filter, Flow, Request, Response};
use crate::l7::RequestContext;

/// Longest incoming id that is kept.
const MAX_ID_LEN: usize = 128;

/// The request id of one route.
pub struct RequestIdFilter {
    name: String,
    header: Bytes,
}

impl RequestIdFilter {
    pub fn new(header: &str) -> Self {
        Self {
            name: header.to_owned(),
            header: Bytes::copy_from_slice(header.as_bytes()),
        }
    }
}

/// Whether an incoming id can be passed on as it is.
pub fn is_valid_id(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=@~".contains(&b))
}

thread_local! {
    /// Per-thread random keys (seeded by the OS through `RandomState`) and a counter: hashing
    /// the counter gives unpredictable, never-repeating ids without a lock or a syscall.
    static ID_SOURCE: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

/// A new random UUID, version 4 (RFC 9562 §5.4), in its 36-character text form.
pub fn new_id() -> Bytes {
    let bits = ID_SOURCE.with(|(keys, counter)| {
        let n = counter.get();
        counter.set(n.wrapping_add(2));
        (u128::from(keys.hash_one(n)) << 64) | u128::from(keys.hash_one(n + 1))
    });
    let bits = (bits & !(0xF << 76) | (0x4 << 76)) & !(0b11 << 62) | (0b10 << 62);
    let hex = format!("{bits:032x}");
    Bytes::from(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

impl Filter for RequestIdFilter {
    fn name(&self) -> &'static str {
        "request_id"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        let id = match request.head.field(&self.name) {
            Some(id) if is_valid_id(id) => Bytes::copy_from_slice(id),
            _ => new_id(),
        };
        ctx.request_id = Some(id);
        Flow::Continue
    }

    fn upstream_request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) {
        if let Some(id) = &ctx.request_id {
            request.overlay.set(self.header.clone(), id);
        }
    }

    fn response_filter(&self, response: &mut Response<'_>, ctx: &mut RequestContext) {
        if let Some(id) = &ctx.request_id {
            response.overlay.set(self.header.clone(), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{context, request_head, run_response, run_upstream_request};

    #[test]
    fn a_valid_incoming_id_passes_both_ways() {
        let filter = RequestIdFilter::new("X-Request-Id");
        let head = request_head("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-123.Z\r\n\r\n");
        let (fields, mut ctx) = run_upstream_request(&filter, &head, context("192.0.2.1:1"));
        assert_eq!(fields.get("x-request-id"), Some("abc-123.Z"));
        let back = run_response(
            &filter,
            "HTTP/1.1 200 OK\r\nX-Request-Id: origin-made\r\nContent-Length: 0\r\n\r\n",
            &mut ctx,
        );
        assert_eq!(back.get("x-request-id"), Some("abc-123.Z"));
    }

    #[test]
    fn a_missing_or_unusable_id_is_replaced_by_a_uuid() {
        let filter = RequestIdFilter::new("X-Request-Id");
        for head in [
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: has space\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: \r\n\r\n",
        ] {
            let (fields, ctx) =
                run_upstream_request(&filter, &request_head(head), context("192.0.2.1:1"));
            let id = fields.get("x-request-id").unwrap();
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "version 4: {id}");
            assert!("89ab".contains(&id[19..20]), "variant: {id}");
            assert_eq!(ctx.request_id.as_deref(), Some(id.as_bytes()));
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(!is_valid_id(long.as_bytes()));
        assert!(is_valid_id(&long.as_bytes()[1..]));
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<Bytes> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
