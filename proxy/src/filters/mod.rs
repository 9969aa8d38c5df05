//! Filters: the features that plug into the request path's hooks, one file each.
//!
//! A [`Filter`] implements any of the hooks of the pipeline (Pingora's `ProxyHttp`, Envoy's
//! filter chain): `request_filter` (may answer the request itself), `upstream_request_filter`
//! (edits the head sent upstream), `request_body_filter`, `response_filter` (edits the head
//! sent back), `response_body_filter` and `logging`. A filter never touches a socket: heads are
//! edited through a [`HeadOverlay`] the encoder applies, bodies are handed over chunk by chunk,
//! and an early answer is a [`LocalResponse`] returned as [`Flow::Respond`].
//!
//! Each route's [`FilterChain`] is compiled once, when a worker builds its route table
//! ([`FilterChain::compile`]), in this order, which is also the order every hook runs in:
//!
//! 1. `forwarded`: takes the real client address from trusted proxies (request), writes
//!    `X-Forwarded-*`, `Forwarded` and `Via` (upstream request), adds to `Via` (response);
//! 2. `request_id`: keeps a valid incoming id or makes one, sends it upstream and back;
//! 3. `https_redirect`: a plain request redirected to `https://`;
//! 4. `auth`: the consumer, from an API key, a JWT or Basic credentials (401, 403); the
//!    consumer's field to the origin;
//! 5. `rate_limit`: the route's and the consumer's plan's rate and concurrency limits (429,
//!    or a wait in a queue);
//! 6. `static_response`: the route's `return` (status, body, redirect);
//! 7. `rewrite`: strip or replace a path prefix, or a regex rewrite;
//! 8. `headers`: the request and response header edits of `[http]` and then the route;
//! 9. `compress`: the response compressed on the fly (gzip, brotli, zstd) when the client
//!    accepts it; last, so that it sees the head as the other filters left it. Its encoder
//!    is per response, in the context, and runs after every other body filter.
//!
//! A route with none of these configured has an empty chain, and every hook is then a loop
//! over nothing.

mod auth;
mod compress;
mod forwarded;
mod headers;
mod https_redirect;
mod rate_limit;
mod request_id;
mod rewrite;
mod static_response;

use bytes::Bytes;

use crate::config::{Http, Route, RouteAction, Template, Variable};
use crate::http1::{put_ip, HeadOverlay, LocalResponse, RequestHead, ResponseHead, Version};
use crate::l7::RequestContext;

pub use auth::{AuthFilter, AuthSettings};
pub use compress::{CompressFilter, Encoder};
pub use forwarded::ForwardedFilter;
pub use headers::HeaderFilter;
pub use rate_limit::{Held, LimitStats, RateLimitFilter, RateLimiters, Usage};
pub use request_id::RequestIdFilter;
pub use request_id::{is_valid_id, new_id};
pub use rewrite::RewriteFilter;
pub use static_response::StaticResponseFilter;

/// What a worker's filters share: its rate limits, its credentials (`None` when `[auth]`
/// configures none), and each plan's rate limits (indexes into `limits`).
#[derive(Default)]
pub struct Gateway {
    pub limits: RateLimiters,
    pub auth: Option<(
        std::rc::Rc<AuthSettings>,
        std::rc::Rc<crate::auth::WorkerAuth>,
    )>,
    pub plans: Vec<Vec<usize>>,
    /// Each plan's quota.
    pub plan_quotas: Vec<Option<(u64, crate::config::QuotaPeriod)>>,
    /// The quota counts (`None` when no plan has a quota); kept across generations that keep
    /// `quota_file`.
    pub quotas: Option<std::rc::Rc<crate::auth::quota::Quotas>>,
}

impl Gateway {
    /// The gateway of `config`; the rate limits of `previous` with unchanged settings are
    /// kept, and so are its credentials when the configuration's are the same (keys added on
    /// the admin endpoint, a fetched JWKS).
    pub fn new(
        config: &crate::config::Config,
        previous: Option<&Gateway>,
        stats: impl Fn(&str) -> std::rc::Rc<LimitStats>,
    ) -> Self {
        let limits = RateLimiters::new(config, previous.map(|p| &p.limits), stats);
        let auth = if config.auth.methods().is_empty() {
            None
        } else {
            let credentials = match crate::auth::Credentials::new(&config.auth, None) {
                Ok(credentials) => credentials,
                Err(e) => {
                    // The configuration's check parsed the same keys: not reached.
                    tracing::error!("the JWT keys cannot be loaded: {e}");
                    crate::auth::Credentials::default()
                }
            };
            Some((
                std::rc::Rc::new(AuthSettings::new(&config.auth)),
                std::rc::Rc::new(crate::auth::WorkerAuth::new(std::sync::Arc::new(
                    credentials,
                ))),
            ))
        };
        let plan_quotas: Vec<_> = config.auth.plans.iter().map(|p| p.quota).collect();
        let quotas = plan_quotas.iter().any(Option::is_some).then(|| {
            let file = config.auth.quota_file.as_deref();
            match previous.and_then(|p| p.quotas.clone()) {
                Some(kept) if kept.file() == file => kept,
                _ => std::rc::Rc::new(crate::auth::quota::Quotas::load(file)),
            }
        });
        Self {
            limits,
            auth,
            plans: config
                .auth
                .plans
                .iter()
                .map(|p| p.rate_limits.clone())
                .collect(),
            plan_quotas,
            quotas,
        }
    }
}

/// What the request filter phase decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next filter, then to the upstream.
    Continue,
    /// Answer with this response; the request goes no further.
    Respond(LocalResponse),
    /// Go on after this wait (a rate limit's queue).
    Wait(std::time::Duration),
}

/// The request as filters see it: the parsed head (unchanged), the normalized path, and the
/// overlay of edits for the head sent upstream.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    /// The normalized path, without the query.
    pub path: &'a [u8],
    /// The query with its `?`, or empty.
    pub query: &'a [u8],
    pub overlay: &'a mut HeadOverlay,
}

impl<'a> Request<'a> {
    /// The request without its overlay, for what only reads it.
    pub fn info(&self) -> RequestInfo<'a> {
        RequestInfo {
            head: self.head,
            path: self.path,
            query: self.query,
        }
    }

    /// The path that will be sent upstream: a rewritten one, else the normalized one.
    pub fn upstream_path(&self) -> &[u8] {
        match self.overlay.target() {
            Some(target) => {
                let end = target
                    .iter()
                    .position(|&b| b == b'?')
                    .unwrap_or(target.len());
                &target[..end]
            }
            None => self.path,
        }
    }
}

/// Where a response comes from.
#[derive(Clone, Copy)]
pub enum ResponseSource<'a> {
    Upstream(&'a ResponseHead),
    Local(&'a LocalResponse),
}

/// What a response filter may read of the request it answers.
#[derive(Clone, Copy)]
pub struct RequestInfo<'a> {
    pub head: &'a RequestHead,
    /// The normalized path, without the query.
    pub path: &'a [u8],
    /// The query with its `?`, or empty.
    pub query: &'a [u8],
}

/// The response as filters see it, with the overlay of edits for the head sent back.
pub struct Response<'a> {
    pub request: RequestInfo<'a>,
    pub source: ResponseSource<'a>,
    pub overlay: &'a mut HeadOverlay,
}

impl Response<'_> {
    pub fn status(&self) -> u16 {
        match self.source {
            ResponseSource::Upstream(head) => head.status(),
            ResponseSource::Local(local) => local.status,
        }
    }

    /// The version the response arrived in (a local response counts as HTTP/1.1).
    pub fn version(&self) -> Version {
        match self.source {
            ResponseSource::Upstream(head) => head.version(),
            ResponseSource::Local(_) => Version::Http11,
        }
    }
}

impl<'a> ResponseSource<'a> {
    /// Every field line, in order.
    pub fn fields(self) -> ResponseFields<'a> {
        match self {
            ResponseSource::Upstream(head) => ResponseFields::Upstream(head, 0),
            ResponseSource::Local(local) => ResponseFields::Local(local.fields.iter()),
        }
    }
}

/// The field lines of a response, from either source.
pub enum ResponseFields<'a> {
    Upstream(&'a ResponseHead, usize),
    Local(std::slice::Iter<'a, (Bytes, Bytes)>),
}

impl<'a> Iterator for ResponseFields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ResponseFields::Upstream(head, at) => {
                let field = head.field_at(*at);
                *at += 1;
                field
            }
            ResponseFields::Local(iter) => iter.next().map(|(n, v)| (&n[..], &v[..])),
        }
    }
}

/// One feature on the request path. Every hook has a default that does nothing.
pub trait Filter {
    /// For logs and the docs' phase chart.
    fn name(&self) -> &'static str;

    /// Phase `request_filter`: after routing, before an upstream is chosen. Returning
    /// [`Flow::Respond`] answers the request here.
    fn request_filter(&self, _request: &mut Request<'_>, _ctx: &mut RequestContext) -> Flow {
        Flow::Continue
    }

    /// Phase `upstream_request_filter`: the head about to be sent upstream.
    fn upstream_request_filter(&self, _request: &mut Request<'_>, _ctx: &mut RequestContext) {}

    /// Whether this filter sees (and may change) request body chunks.
    fn filters_request_body(&self) -> bool {
        false
    }

    /// A piece of the request body on its way upstream (`None` at the end, where a filter may
    /// still produce a last piece). Only called when [`Self::filters_request_body`].
    fn request_body_filter(
        &self,
        _chunk: &mut Option<Bytes>,
        _end: bool,
        _ctx: &mut RequestContext,
    ) {
    }

    /// Phase `response_filter`: the response head about to be sent back (from the origin or
    /// made by ringwall).
    fn response_filter(&self, _response: &mut Response<'_>, _ctx: &mut RequestContext) {}

    /// Whether this filter sees (and may change) response body chunks. When one does, the
    /// response is sent chunked (or close-delimited to HTTP/1.0), since its length may change.
    fn filters_response_body(&self) -> bool {
        false
    }

    /// A piece of the response body on its way to the client; see
    /// [`Self::request_body_filter`].
    fn response_body_filter(
        &self,
        _chunk: &mut Option<Bytes>,
        _end: bool,
        _ctx: &mut RequestContext,
    ) {
    }

    /// Phase `logging`: the request is over, whatever its outcome.
    fn logging(&self, _ctx: &RequestContext) {}
}

/// A route's filters, in hook order.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
    request_body: bool,
    response_body: bool,
}

impl FilterChain {
    /// The chain for `route`, from its resolved policy (see the module doc for the order);
    /// `gateway`: the worker's rate limits and credentials.
    pub fn compile(route: &Route, http: &Http, gateway: &Gateway) -> Self {
        let policy = &route.policy;
        let limits = &gateway.limits;
        let mut filters: Vec<Box<dyn Filter>> = Vec::new();
        if let Some(filter) = ForwardedFilter::new(policy.forwarding, &http.trusted_proxies) {
            filters.push(Box::new(filter));
        }
        if let Some(header) = &policy.request_id {
            filters.push(Box::new(RequestIdFilter::new(header)));
        }
        if let Some(redirect) = policy.https_redirect {
            filters.push(Box::new(https_redirect::HttpsRedirectFilter::new(redirect)));
        }
        if let Some((settings, state)) = &gateway.auth {
            filters.push(Box::new(AuthFilter::new(
                &policy.auth,
                settings.clone(),
                state.clone(),
            )));
        }
        let route_limits = policy
            .rate_limits
            .iter()
            .filter_map(|&i| limits.get(i).cloned())
            .collect();
        let plan_limits = gateway
            .plans
            .iter()
            .map(|plan| {
                plan.iter()
                    .filter_map(|&i| limits.get(i).cloned())
                    .collect()
            })
            .collect();
        let quotas = (gateway.plan_quotas.clone(), gateway.quotas.clone());
        if let Some(filter) = RateLimitFilter::new(route_limits, plan_limits, quotas, &route.name) {
            filters.push(Box::new(filter));
        }
        if let RouteAction::Return(response) = &route.action {
            filters.push(Box::new(StaticResponseFilter::new(response.clone())));
        }
        if let Some(rewrite) = &policy.rewrite {
            filters.push(Box::new(RewriteFilter::new(rewrite.clone())));
        }
        if let Some(filter) = HeaderFilter::new(&policy.request_headers, &policy.response_headers) {
            filters.push(Box::new(filter));
        }
        if let Some(compression) = &policy.compression {
            filters.push(Box::new(CompressFilter::new(compression.clone())));
        }
        Self::new(filters)
    }

    /// A chain of exactly these filters (tests, and features that build their own).
    pub fn new(filters: Vec<Box<dyn Filter>>) -> Self {
        Self {
            request_body: filters.iter().any(|f| f.filters_request_body()),
            response_body: filters.iter().any(|f| f.filters_response_body()),
            filters,
        }
    }

    /// Every filter's `request_filter` until one answers; the longest wait any asked for.
    pub fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        let mut wait = std::time::Duration::ZERO;
        for filter in &self.filters {
            match filter.request_filter(request, ctx) {
                Flow::Continue => {}
                Flow::Wait(w) => wait = wait.max(w),
                respond @ Flow::Respond(_) => return respond,
            }
        }
        if wait.is_zero() {
            Flow::Continue
        } else {
            Flow::Wait(wait)
        }
    }

    pub fn upstream_request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) {
        for filter in &self.filters {
            filter.upstream_request_filter(request, ctx);
        }
    }

    pub fn filters_request_body(&self) -> bool {
        self.request_body
    }

    pub fn request_body_filter(
        &self,
        chunk: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestContext,
    ) {
        for filter in self.filters.iter().filter(|f| f.filters_request_body()) {
            filter.request_body_filter(chunk, end, ctx);
        }
    }

    pub fn response_filter(&self, response: &mut Response<'_>, ctx: &mut RequestContext) {
        for filter in &self.filters {
            filter.response_filter(response, ctx);
        }
    }

    /// Whether a filter of the chain (not counting compression) sees response bodies.
    pub fn has_response_body_filters(&self) -> bool {
        self.response_body
    }

    /// Whether this response's body goes through filters: the chain's, or the encoder the
    /// `compress` filter left for it.
    pub fn filters_response_body(&self, ctx: &RequestContext) -> bool {
        self.response_body || ctx.encoder.is_some()
    }

    pub fn response_body_filter(
        &self,
        chunk: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestContext,
    ) {
        for filter in self.filters.iter().filter(|f| f.filters_response_body()) {
            filter.response_body_filter(chunk, end, ctx);
        }
        if let Some(encoder) = &mut ctx.encoder {
            encoder.encode(chunk, end);
        }
    }

    pub fn logging(&self, ctx: &RequestContext) {
        for filter in &self.filters {
            filter.logging(ctx);
        }
    }
}

/// What `${variables}` stand for in one request.
pub struct Vars<'a> {
    pub request: RequestInfo<'a>,
    pub ctx: &'a RequestContext,
}

impl Vars<'_> {
    /// Renders `template` for this request.
    pub fn render(&self, template: &Template) -> Vec<u8> {
        let mut out = Vec::new();
        template.render(&mut out, |var, out| self.write(var, out));
        out
    }

    fn write(&self, var: Variable, out: &mut Vec<u8>) {
        match var {
            Variable::ClientAddr => put_ip(out, self.ctx.client_ip),
            Variable::RemoteAddr => put_ip(out, self.ctx.remote_addr.ip()),
            Variable::Host => {
                if let Some(host) = self.request.head.host() {
                    out.extend_from_slice(crate::config::strip_port(host));
                }
            }
            Variable::RequestId => {
                if let Some(id) = &self.ctx.request_id {
                    out.extend_from_slice(id);
                }
            }
            Variable::Scheme => out.extend_from_slice(self.ctx.scheme.as_bytes()),
            Variable::Path => out.extend_from_slice(self.request.path),
            Variable::RequestUri => {
                out.extend_from_slice(self.request.path);
                out.extend_from_slice(self.request.query);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
