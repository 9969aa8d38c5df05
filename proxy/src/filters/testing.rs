//! Test helpers for filters: a parsed head, a context, and a run of the request hooks whose
//! result is read back from the head the encoder writes, so a test sees what an origin would.

use std::collections::HashMap;

use bytes::BytesMut;

use super::{Filter, Flow, Request, RequestInfo, Response, ResponseSource};
use crate::http1::{
    parse_request, parse_response, write_request_head, write_response_head, HeadLimits,
    HeadOverlay, Method, OutFraming, RequestFraming, RequestHead,
};
use crate::l7::RequestContext;

pub fn request_head(raw: &str) -> RequestHead {
    parse_request(&mut BytesMut::from(raw.as_bytes()), &HeadLimits::default())
        .expect("valid head")
        .expect("complete head")
}

pub fn context(remote: &str) -> RequestContext {
    RequestContext::new(0, "http", remote.parse().expect("socket address"))
}

/// A written head's fields: lowercase name → the values of every line of that name.
#[derive(Debug, Default)]
pub struct Fields {
    pub start_line: String,
    pub lines: HashMap<String, Vec<String>>,
}

impl Fields {
    fn parse(text: &str) -> Fields {
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_owned();
        let mut fields = Fields {
            start_line,
            lines: HashMap::new(),
        };
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(": ").expect("name: value");
            fields
                .lines
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(value.to_owned());
        }
        fields
    }

    /// The value of the one line called `name`; panics when there are several.
    pub fn get(&self, name: &str) -> Option<&str> {
        let values = self.lines.get(name)?;
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        Some(&values[0])
    }
}

/// The outcome of the request hooks of one filter.
pub struct RequestRun {
    pub flow: Flow,
    pub fields: Fields,
    pub ctx: RequestContext,
}

/// Runs `request_filter` and (unless it answered) `upstream_request_filter`, then writes the
/// upstream head.
pub fn run_request(filter: &dyn Filter, head: &RequestHead, mut ctx: RequestContext) -> RequestRun {
    let mut overlay = HeadOverlay::default();
    let target = head.target();
    let query_at = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let mut request = Request {
        head,
        path: head.path(),
        query: &target[query_at..],
        overlay: &mut overlay,
    };
    let flow = filter.request_filter(&mut request, &mut ctx);
    if matches!(flow, Flow::Continue) {
        filter.upstream_request_filter(&mut request, &mut ctx);
    }
    let mut out = BytesMut::new();
    write_request_head(
        &mut out,
        head,
        &overlay,
        &RequestFraming {
            host: head.host().unwrap_or(b"origin"),
            framing: OutFraming::None,
            upgrade: None,
        },
    );
    RequestRun {
        flow,
        fields: Fields::parse(std::str::from_utf8(&out).expect("ASCII head")),
        ctx,
    }
}

/// [`run_request`] for filters that never answer: the fields and the context.
pub fn run_upstream_request(
    filter: &dyn Filter,
    head: &RequestHead,
    ctx: RequestContext,
) -> (Fields, RequestContext) {
    let run = run_request(filter, head, ctx);
    (run.fields, run.ctx)
}

/// Runs `response_filter` on an origin's response head to a `GET /` and writes it back.
pub fn run_response(filter: &dyn Filter, raw: &str, ctx: &mut RequestContext) -> Fields {
    let request = request_head("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = parse_response(
        &mut BytesMut::from(raw.as_bytes()),
        &HeadLimits::default(),
        Method::Get,
    )
    .expect("valid response")
    .expect("complete response");
    let mut overlay = HeadOverlay::default();
    filter.response_filter(
        &mut Response {
            request: RequestInfo {
                head: &request,
                path: b"/",
                query: b"",
            },
            source: ResponseSource::Upstream(&head),
            overlay: &mut overlay,
        },
        ctx,
    );
    let mut out = BytesMut::new();
    write_response_head(&mut out, &head, &overlay, OutFraming::None, None);
    Fields::parse(std::str::from_utf8(&out).expect("ASCII head"))
}
