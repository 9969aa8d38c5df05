//! Header edits: set, add and remove fields on the request sent upstream and on the response
//! sent back, as nginx's `proxy_set_header` / `add_header` and HAProxy's
//! `http-request set-header` do.
//!
//! Phase `upstream_request_filter` applies the request edits, phase `response_filter` the
//! response ones (also to ringwall's own responses), each list in order: `[http]`'s first,
//! then the route's, and within one list remove, set, add. Values are templates rendered per
//! request (`${client_addr}`, `${host}`, `${request_id}`, `${scheme}`, ...). Framing and
//! connection fields are ringwall's own and cannot be edited (the configuration refuses them).

use bytes::Bytes;

use super::{Filter, Request, Response, Vars};
use crate::config::{EditOp, HeaderEdit, Template};
use crate::http1::HeadOverlay;
use crate::l7::RequestContext;

struct Edit {
    op: EditOp,
    name: Bytes,
    value: Template,
}

pub struct HeaderFilter {
    request: Vec<Edit>,
    response: Vec<Edit>,
}

fn compile(edits: &[HeaderEdit]) -> Vec<Edit> {
    edits
        .iter()
        .map(|edit| Edit {
            op: edit.op,
            name: Bytes::copy_from_slice(edit.name.as_bytes()),
            value: edit.value.clone(),
        })
        .collect()
}

fn apply(edits: &[Edit], overlay: &mut HeadOverlay, vars: &Vars<'_>) {
    for edit in edits {
        match edit.op {
            EditOp::Remove => overlay.remove(edit.name.clone()),
            EditOp::Set => overlay.set(edit.name.clone(), &vars.render(&edit.value)),
            EditOp::Add => overlay.add(edit.name.clone(), &vars.render(&edit.value)),
        }
    }
}

impl HeaderFilter {
    /// `None` when there is nothing to edit.
    pub fn new(request: &[HeaderEdit], response: &[HeaderEdit]) -> Option<Self> {
        (!request.is_empty() || !response.is_empty()).then(|| Self {
            request: compile(request),
            response: compile(response),
        })
    }
}

impl Filter for HeaderFilter {
    fn name(&self) -> &'static str {
        "headers"
    }

    fn upstream_request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) {
        let vars = Vars {
            request: request.info(),
            ctx,
        };
        apply(&self.request, request.overlay, &vars);
    }

    fn response_filter(&self, response: &mut Response<'_>, ctx: &mut RequestContext) {
        let vars = Vars {
            request: response.request,
            ctx,
        };
        apply(&self.response, response.overlay, &vars);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::testing::{context, request_head, run_response, run_upstream_request};

    fn edit(op: EditOp, name: &str, value: &str) -> HeaderEdit {
        HeaderEdit {
            op,
            name: name.into(),
            value: Template::parse(value).unwrap(),
        }
    }

    #[test]
    fn request_edits_in_order_with_variables() {
        let filter = HeaderFilter::new(
            &[
                edit(EditOp::Remove, "X-Debug", ""),
                edit(EditOp::Set, "X-Client", "${client_addr} via ${scheme}"),
                edit(EditOp::Set, "X-Env", "prod"),
                edit(EditOp::Add, "X-Tag", "a"),
            ],
            &[],
        )
        .unwrap();
        let head = request_head(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nX-Env: dev\r\nX-Env: test\r\nX-Tag: z\r\n\r\n",
        );
        let (fields, _) = run_upstream_request(&filter, &head, context("192.0.2.4:1"));
        assert!(!fields.lines.contains_key("x-debug"));
        assert_eq!(fields.get("x-client"), Some("192.0.2.4 via http"));
        assert_eq!(fields.get("x-env"), Some("prod"));
        assert_eq!(fields.lines["x-tag"], ["z", "a"]);
    }

    #[test]
    fn response_edits() {
        let filter = HeaderFilter::new(
            &[],
            &[
                edit(EditOp::Set, "Server", "edge"),
                edit(EditOp::Add, "Strict-Transport-Security", "max-age=600"),
                edit(EditOp::Remove, "X-Powered-By", ""),
            ],
        )
        .unwrap();
        let fields = run_response(
            &filter,
            "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nX-Powered-By: php\r\nContent-Length: 0\r\n\r\n",
            &mut context("192.0.2.4:1"),
        );
        assert_eq!(fields.get("server"), Some("edge"));
        assert_eq!(fields.get("strict-transport-security"), Some("max-age=600"));
        assert!(!fields.lines.contains_key("x-powered-by"));
        assert!(HeaderFilter::new(&[], &[]).is_none());
    }
}
