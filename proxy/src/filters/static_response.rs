//! A route's own response: `return = { status = 200, body = "ok" }` or a redirect,
//! `return = { status = 301, location = "https://${host}${request_uri}" }` (nginx's `return`).
//!
//! Phase `request_filter`: renders the body and the `Location` for this request and answers
//! with them; the request never reaches an upstream. The response still passes the response
//! filters (header edits, request id), like every response ringwall sends.

use bytes::Bytes;

use super::{Filter, Flow, Request, Vars};
use crate::config::StaticResponse;
use crate::http1::LocalResponse;
use crate::l7::RequestContext;

pub struct StaticResponseFilter {
    response: StaticResponse,
}

impl StaticResponseFilter {
    pub fn new(response: StaticResponse) -> Self {
        Self { response }
    }
}

impl Filter for StaticResponseFilter {
    fn name(&self) -> &'static str {
        "static_response"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        let vars = Vars {
            request: request.info(),
            ctx,
        };
        let body = Bytes::from(vars.render(&self.response.body));
        let mut fields = Vec::new();
        if let Some(location) = &self.response.location {
            fields.push((
                Bytes::from_static(b"Location"),
                Bytes::from(vars.render(location)),
            ));
        }
        match &self.response.content_type {
            Some(content_type) => fields.push((
                Bytes::from_static(b"Content-Type"),
                Bytes::copy_from_slice(content_type.as_bytes()),
            )),
            None if !body.is_empty() => fields.push((
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )),
            None => {}
        }
        Flow::Respond(LocalResponse {
            status: self.response.status,
            fields,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Template;
    use crate::filters::testing::{context, request_head, run_request};

    #[test]
    fn a_redirect_renders_its_location_for_the_request() {
        let filter = StaticResponseFilter::new(StaticResponse {
            status: 301,
            body: Template::default(),
            location: Some(Template::parse("https://${host}${request_uri}").unwrap()),
            content_type: None,
        });
        let head = request_head("GET /a/b?x=1 HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n");
        let run = run_request(&filter, &head, context("192.0.2.1:9"));
        let Flow::Respond(response) = run.flow else {
            panic!("no response");
        };
        assert_eq!(response.status, 301);
        assert_eq!(
            response.fields,
            [(
                Bytes::from_static(b"Location"),
                Bytes::from_static(b"https://shop.test/a/b?x=1")
            )]
        );
        assert!(response.body.is_empty());
    }

    #[test]
    fn a_body_gets_a_content_type() {
        let filter = StaticResponseFilter::new(StaticResponse {
            status: 200,
            body: Template::parse("ok from ${client_addr}\n").unwrap(),
            location: None,
            content_type: None,
        });
        let head = request_head("GET /health HTTP/1.1\r\nHost: h\r\n\r\n");
        let Flow::Respond(response) = run_request(&filter, &head, context("192.0.2.1:9")).flow
        else {
            panic!("no response");
        };
        assert_eq!(&response.body[..], b"ok from 192.0.2.1\n");
        assert_eq!(&response.fields[0].1[..], b"text/plain; charset=utf-8");
    }
}
