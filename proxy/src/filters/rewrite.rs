//! Path rewriting: the path sent upstream differs from the one the client asked for.
//!
//! Phase `request_filter`, after routing (which saw the client's normalized path): strip a
//! prefix (`/api/users` → `/users`), replace a prefix (Envoy's `prefix_rewrite`), or rewrite
//! with a regular expression whose every match is replaced (Envoy's `regex_rewrite`, the
//! `regex` crate; `$1` and `${name}` name capture groups). The query is kept as it was. A
//! regex rewrite that produces something a request-target cannot carry is answered 500, since
//! the configuration, not the client, is at fault.

use bytes::{Bytes, BytesMut};

use super::{Filter, Flow, Request};
use crate::config::PathRewrite;
use crate::http1::LocalResponse;
use crate::l7::RequestContext;

pub struct RewriteFilter {
    rewrite: PathRewrite,
}

impl RewriteFilter {
    pub fn new(rewrite: PathRewrite) -> Self {
        Self { rewrite }
    }

    /// The new path for `path`, or `None` when it stays as it is.
    pub fn rewrite(&self, path: &[u8]) -> Option<Vec<u8>> {
        match &self.rewrite {
            PathRewrite::StripPrefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_bytes())?;
                let mut out = Vec::with_capacity(rest.len() + 1);
                if !rest.starts_with(b"/") {
                    out.push(b'/');
                }
                out.extend_from_slice(rest);
                Some(out)
            }
            PathRewrite::ReplacePrefix { from, to } => {
                let rest = path.strip_prefix(from.as_bytes())?;
                let mut out = Vec::with_capacity(to.len() + rest.len());
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(rest);
                Some(out)
            }
            PathRewrite::Regex(rewrite) => {
                // Paths are ASCII (the codec refuses anything else in a target).
                let path = std::str::from_utf8(path).ok()?;
                let replaced = rewrite.regex.replace_all(path, rewrite.replace.as_str());
                match replaced {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(new) => Some(new.into_bytes()),
                }
            }
        }
    }
}

/// A path the origin can be sent: rooted, visible ASCII, no query or fragment marker.
fn is_sendable_path(path: &[u8]) -> bool {
    path.starts_with(b"/")
        && path
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

impl Filter for RewriteFilter {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn request_filter(&self, request: &mut Request<'_>, _ctx: &mut RequestContext) -> Flow {
        let Some(path) = self.rewrite(request.upstream_path()) else {
            return Flow::Continue;
        };
        if !is_sendable_path(&path) {
            tracing::warn!(
                path = %String::from_utf8_lossy(&path),
                "path rewrite produced a path that cannot be sent; answering 500"
            );
            return Flow::Respond(LocalResponse::status_page(500));
        }
        let mut target = BytesMut::with_capacity(path.len() + request.query.len());
        target.extend_from_slice(&path);
        target.extend_from_slice(request.query);
        request.overlay.set_target(Bytes::from(target));
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegexRewrite;
    use crate::filters::testing::{context, request_head, run_request};

    fn upstream_line(rewrite: PathRewrite, request: &str) -> String {
        let filter = RewriteFilter::new(rewrite);
        let head = request_head(request);
        run_request(&filter, &head, context("192.0.2.1:1"))
            .fields
            .start_line
    }

    #[test]
    fn strip_prefix_keeps_the_path_rooted_and_the_query() {
        let strip = || PathRewrite::StripPrefix("/api".into());
        assert_eq!(
            upstream_line(strip(), "GET /api/users?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            "GET /users?x=1 HTTP/1.1"
        );
        assert_eq!(
            upstream_line(strip(), "GET /api HTTP/1.1\r\nHost: h\r\n\r\n"),
            "GET / HTTP/1.1"
        );
        assert_eq!(
            upstream_line(strip(), "GET /other HTTP/1.1\r\nHost: h\r\n\r\n"),
            "GET /other HTTP/1.1"
        );
    }

    #[test]
    fn replace_prefix() {
        let replace = PathRewrite::ReplacePrefix {
            from: "/v1/".into(),
            to: "/api/v2/".into(),
        };
        assert_eq!(
            upstream_line(replace, "GET /v1/items/7 HTTP/1.1\r\nHost: h\r\n\r\n"),
            "GET /api/v2/items/7 HTTP/1.1"
        );
    }

    #[test]
    fn regex_rewrite_replaces_every_match_and_refuses_a_broken_result() {
        let regex = |pattern: &str, replace: &str| {
            PathRewrite::Regex(RegexRewrite {
                regex: regex::Regex::new(pattern).unwrap(),
                replace: replace.into(),
            })
        };
        assert_eq!(
            upstream_line(
                regex(r"^/users/(\d+)/?$", "/u/$1"),
                "GET /users/42?full=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            ),
            "GET /u/42?full=1 HTTP/1.1"
        );
        let filter = RewriteFilter::new(regex("^/(.*)$", "/$1 x"));
        let head = request_head("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        let run = run_request(&filter, &head, context("192.0.2.1:1"));
        assert!(matches!(run.flow, Flow::Respond(ref r) if r.status == 500));
    }
}
