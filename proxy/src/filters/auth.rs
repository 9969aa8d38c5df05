//! Authentication on the request path.
//!
//! Phase `request_filter` ([`AuthFilter`]): the route's accepted credentials, in order: an API
//! key (`[auth] api_key_header`, or the query parameter `api_key_query`), a bearer token
//! (`Authorization: Bearer`), Basic credentials (`Authorization: Basic`) checked against the
//! htpasswd users. A credential that is present and wrong is answered 401 whatever the mode;
//! none at all is 401 when the route requires one (with a `WWW-Authenticate` challenge per
//! accepted kind), and goes on anonymous when it is optional. A consumer the route does not
//! allow (its consumers, its plans, a token without its scopes or claims) is answered 403.
//! The consumer goes into the request's notes, for the rate limits, quotas, counters and logs.
//!
//! Phase `upstream_request_filter`: every copy of the consumer field the client sent is
//! removed, and the authenticated consumer's name is set in it.

use std::rc::Rc;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use super::{Filter, Flow, Request};
use crate::auth::{ConsumerInfo, WorkerAuth};
use crate::config::{Auth, AuthMethod, AuthMode, RouteAuth};
use crate::http1::LocalResponse;
use crate::l7::RequestContext;

/// What a route's authentication needs of `[auth]`, made once per worker generation.
pub struct AuthSettings {
    consumer_header: Bytes,
    api_key_header: String,
    api_key_query: Option<String>,
    /// The `WWW-Authenticate` challenge of each kind.
    challenges: [(AuthMethod, Bytes); 3],
    realm: String,
}

impl AuthSettings {
    pub fn new(auth: &Auth) -> Self {
        let realm = &auth.realm;
        Self {
            consumer_header: Bytes::from(auth.consumer_header.clone()),
            api_key_header: auth.api_key_header.to_ascii_lowercase(),
            api_key_query: auth.api_key_query.clone(),
            challenges: [
                (
                    AuthMethod::ApiKey,
                    Bytes::from(format!(
                        "ApiKey realm=\"{realm}\", header=\"{}\"",
                        auth.api_key_header
                    )),
                ),
                (
                    AuthMethod::Jwt,
                    Bytes::from(format!("Bearer realm=\"{realm}\"")),
                ),
                (
                    AuthMethod::Basic,
                    Bytes::from(format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")),
                ),
            ],
            realm: realm.clone(),
        }
    }

    fn challenge(&self, method: AuthMethod) -> Bytes {
        self.challenges
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }
}

/// A route's authentication.
pub struct AuthFilter {
    route: RouteAuth,
    settings: Rc<AuthSettings>,
    state: Rc<WorkerAuth>,
}

/// What a request's credentials came to.
enum Outcome {
    /// None of the route's kinds was presented.
    Absent,
    Consumer(Arc<ConsumerInfo>, Option<Arc<crate::auth::VerifiedToken>>),
    /// A credential of this kind was presented and is wrong (why, for a bearer token).
    Wrong(AuthMethod, Option<&'static str>),
}

impl AuthFilter {
    pub fn new(route: &RouteAuth, settings: Rc<AuthSettings>, state: Rc<WorkerAuth>) -> Self {
        Self {
            route: route.clone(),
            settings,
            state,
        }
    }

    fn authenticate(&self, request: &Request<'_>) -> Outcome {
        let authorization = request.head.field("authorization");
        // `Scheme credentials` (the scheme case-insensitive, RFC 9110 §11.1), as bytes.
        let scheme = |name: &[u8]| {
            authorization.and_then(|value| {
                let value = value.trim_ascii();
                let space = value.iter().position(|&b| b == b' ')?;
                value[..space]
                    .eq_ignore_ascii_case(name)
                    .then(|| value[space + 1..].trim_ascii())
            })
        };
        for &method in &self.route.methods {
            match method {
                AuthMethod::ApiKey => {
                    let key = request
                        .head
                        .field(&self.settings.api_key_header)
                        .or_else(|| self.query_key(request.query));
                    if let Some(key) = key {
                        let credentials = self.state.credentials.borrow();
                        return match credentials.api_key(key) {
                            Some(consumer) => Outcome::Consumer(consumer.clone(), None),
                            None => Outcome::Wrong(method, None),
                        };
                    }
                }
                AuthMethod::Jwt => {
                    if let Some(token) = scheme(b"bearer") {
                        return match self.state.token(token) {
                            Ok(verified) => {
                                Outcome::Consumer(verified.consumer.clone(), Some(verified))
                            }
                            Err(e) => Outcome::Wrong(method, Some(e.description())),
                        };
                    }
                }
                AuthMethod::Basic => {
                    if let Some(encoded) = scheme(b"basic") {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .ok()
                            .and_then(|d| String::from_utf8(d).ok());
                        let consumer = decoded.as_deref().and_then(|pair| {
                            let (user, password) = pair.split_once(':')?;
                            self.state.basic(user, password)
                        });
                        return match consumer {
                            Some(consumer) => Outcome::Consumer(consumer, None),
                            None => Outcome::Wrong(method, None),
                        };
                    }
                }
            }
        }
        Outcome::Absent
    }

    /// The API key in the query, when `[auth] api_key_query` names its parameter.
    fn query_key<'q>(&self, query: &'q [u8]) -> Option<&'q [u8]> {
        let name = self.settings.api_key_query.as_deref()?.as_bytes();
        let query = query.strip_prefix(b"?").unwrap_or(query);
        query.split(|&b| b == b'&').find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq] == *name).then(|| &pair[eq + 1..])
        })
    }

    /// 401 with the challenges of the route's kinds (an invalid bearer token's says why).
    fn unauthorized(&self, wrong: Option<(AuthMethod, Option<&'static str>)>) -> LocalResponse {
        let mut response = LocalResponse::status_page(401);
        for &method in &self.route.methods {
            let challenge = match wrong {
                Some((AuthMethod::Jwt, Some(why))) if method == AuthMethod::Jwt => {
                    Bytes::from(format!(
                        "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{why}\"",
                        self.settings.realm
                    ))
                }
                _ => self.settings.challenge(method),
            };
            response
                .fields
                .push((Bytes::from_static(b"WWW-Authenticate"), challenge));
        }
        response
    }

    /// Why the consumer may not use the route, if it may not.
    fn forbidden(
        &self,
        consumer: &ConsumerInfo,
        token: Option<&crate::auth::VerifiedToken>,
    ) -> Option<LocalResponse> {
        let route = &self.route;
        let allowed = (route.consumers.is_empty()
            || route.consumers.iter().any(|c| **c == *consumer.name))
            && (route.plans.is_empty() || consumer.plan.is_some_and(|p| route.plans.contains(&p)));
        let mut response = LocalResponse::status_page(403);
        if !allowed {
            return Some(response);
        }
        if route.scopes.is_empty() && route.claims.is_empty() {
            return None;
        }
        let scope_claim = self
            .state
            .credentials
            .borrow()
            .jwt
            .as_ref()
            .map_or_else(|| "scope".to_owned(), |v| v.scopes_claim.clone());
        let ok = token.is_some_and(|t| {
            let scopes = crate::auth::jwt::scopes(&t.claims, &scope_claim);
            route.scopes.iter().all(|s| scopes.contains(&s.as_str()))
                && route
                    .claims
                    .iter()
                    .all(|(name, value)| crate::auth::jwt::claim_is(&t.claims, name, value))
        });
        if ok {
            return None;
        }
        if !route.scopes.is_empty() {
            response.fields.push((
                Bytes::from_static(b"WWW-Authenticate"),
                Bytes::from(format!(
                    "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
                    self.settings.realm,
                    route.scopes.join(" ")
                )),
            ));
        }
        Some(response)
    }
}

impl Filter for AuthFilter {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) -> Flow {
        if self.route.mode == AuthMode::Off {
            return Flow::Continue;
        }
        let refuse = |ctx: &mut RequestContext, response: LocalResponse| {
            ctx.notes().rejected = Some("auth");
            Flow::Respond(response)
        };
        match self.authenticate(request) {
            Outcome::Consumer(consumer, token) => {
                let forbidden = self.forbidden(&consumer, token.as_deref());
                // Known, even when refused: its counters and log lines say who it was.
                ctx.consumer = Some(consumer);
                match forbidden {
                    Some(response) => refuse(ctx, response),
                    None => Flow::Continue,
                }
            }
            Outcome::Wrong(method, why) => refuse(ctx, self.unauthorized(Some((method, why)))),
            Outcome::Absent => {
                let method = request.head.method_bytes();
                let anonymous = self.route.mode == AuthMode::Optional
                    || self
                        .route
                        .anonymous_methods
                        .iter()
                        .any(|m| m.as_bytes() == method);
                if anonymous {
                    Flow::Continue
                } else {
                    refuse(ctx, self.unauthorized(None))
                }
            }
        }
    }

    fn upstream_request_filter(&self, request: &mut Request<'_>, ctx: &mut RequestContext) {
        // `set` replaces every copy the client sent; `remove` drops them when anonymous.
        let name = self.settings.consumer_header.clone();
        match &ctx.consumer {
            Some(consumer) => request.overlay.set(name, consumer.name.as_bytes()),
            None => request.overlay.remove(name),
        }
    }
}
