//! `https_redirect`: a request that arrived on a plain listener is sent to the same URL over
//! `https://` (nginx's `return 301 https://$host$request_uri`), one on a TLS listener goes on.
//!
//! Phase `request_filter`. The `Location` is the request's host (its port dropped) with the
//! configured port, and the (normalized) path with its query.

use bytes::Bytes;

use super::{Filter, Flow, Request, Vars};
use crate::config::{HttpsRedirect, Template};
use crate::http1::LocalResponse;
use crate::l7::RequestContext;

pub struct HttpsRedirectFilter {
    status: u16,
    location: Template,
}

impl HttpsRedirectFilter {
    pub fn new(redirect: HttpsRedirect) -> Self {
        let location = match redirect.port {
            None => "https://${host}${request_uri}".to_owned(),
            Some(port) => format!("https://${{host}}:{port}${{request_uri}}"),
        };
        Self {
            status: redirect.status,
            location: Template::parse(&location).expect("a fixed template"),
        }
    }
}

impl Filter for HttpsRedirectFilter {
    fn name(&self) -> &'static str {
        "https_redirect"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        if ctx.scheme == "https" {
            return Flow::Continue;
        }
        if request.info().head.host().is_none() {
            // Nowhere to send it: HTTP/1.0 without Host.
            return Flow::Respond(LocalResponse::text(400, "No Host to redirect to\n"));
        }
        let vars = Vars {
            request: request.info(),
            ctx,
        };
        let location = Bytes::from(vars.render(&self.location));
        Flow::Respond(LocalResponse {
            status: self.status,
            fields: vec![(Bytes::from_static(b"Location"), location)],
            body: Bytes::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{context, request_head, run_request};

    fn redirect(port: Option<u16>) -> HttpsRedirectFilter {
        HttpsRedirectFilter::new(HttpsRedirect { status: 308, port })
    }

    #[test]
    fn a_plain_request_is_sent_to_https_with_its_target() {
        let head = request_head("GET /a?b=1 HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n");
        let Flow::Respond(response) =
            run_request(&redirect(None), &head, context("192.0.2.1:9")).flow
        else {
            panic!("no redirect");
        };
        assert_eq!(response.status, 308);
        assert_eq!(&response.fields[0].1[..], b"https://shop.test/a?b=1");
        let Flow::Respond(response) =
            run_request(&redirect(Some(8443)), &head, context("192.0.2.1:9")).flow
        else {
            panic!("no redirect");
        };
        assert_eq!(&response.fields[0].1[..], b"https://shop.test:8443/a?b=1");
    }

    #[test]
    fn a_request_over_tls_goes_on() {
        let head = request_head("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n");
        let mut ctx = context("192.0.2.1:9");
        ctx.scheme = "https";
        assert!(matches!(
            run_request(&redirect(None), &head, ctx).flow,
            Flow::Continue
        ));
    }
}
