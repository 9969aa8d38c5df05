//! The route table: which upstream group serves a request.
//!
//! Routes are tried in configuration order and the first match wins (as in Envoy and HAProxy),
//! so a specific route goes before a catch-all. A route matches on the request's host (exact or
//! `*.suffix` wildcard, case-insensitive, port and a trailing dot ignored: the one matcher is
//! [`HostPattern::matches`]), a path prefix of the *normalized* path, an optional method list
//! and optional exact header values. Matching allocates nothing. Each entry carries what the
//! route does once matched: its action, its resolved policy and its filter chain, compiled
//! once when the worker builds its table.

use std::cell::RefCell;
use std::rc::Rc;

use ringwall_policies::retry::LatencyWindow;

use crate::metrics::{RouteStats, WorkerMetrics};

use crate::config::{Config, HostPattern, Route, RouteAction, RoutePolicy};
use crate::filters::{FilterChain, Gateway};

/// What the router needs to know about a request.
pub struct RouteQuery<'a, F> {
    /// Host from the absolute-form target or the Host field, possibly with a port.
    pub host: Option<&'a [u8]>,
    /// The normalized path, without the query.
    pub path: &'a [u8],
    pub method: &'a [u8],
    /// Looks up a header value by lower-case name.
    pub header: F,
}

/// One compiled route.
pub struct RouteEntry {
    pub name: Rc<str>,
    hosts: Vec<HostPattern>,
    path_prefix: Vec<u8>,
    methods: Vec<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    pub action: RouteAction,
    pub policy: RoutePolicy,
    /// The route's filters, in the order their hooks run.
    pub filters: FilterChain,
    /// This route's counters on this worker.
    pub stats: Rc<RouteStats>,
    /// Its recent response times on this worker, when it hedges (the hedge's delay).
    pub latencies: Option<RefCell<LatencyWindow>>,
}

/// How far back a hedging route's response times count (one to two of these).
const HEDGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The routes of one worker, in match order.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn new(config: &Config, gateway: &Gateway) -> Self {
        Self::from_routes(&config.routes, config, gateway)
    }

    fn from_routes(routes: &[Route], config: &Config, gateway: &Gateway) -> Self {
        let routes = routes
            .iter()
            .map(|r| RouteEntry {
                name: Rc::from(r.name.as_str()),
                hosts: r.hosts.clone(),
                path_prefix: r.path_prefix.as_bytes().to_vec(),
                methods: r.methods.iter().map(|m| m.as_bytes().to_vec()).collect(),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
                    .collect(),
                action: r.action.clone(),
                policy: r.policy.clone(),
                filters: FilterChain::compile(r, &config.http, gateway),
                stats: Rc::default(),
                latencies: r
                    .policy
                    .hedge
                    .map(|_| RefCell::new(LatencyWindow::new(HEDGE_WINDOW))),
            })
            .collect();
        Self { routes }
    }

    /// Makes every route count into its counters in `metrics` (by name, so that a route kept
    /// by a reload keeps counting where it was).
    pub fn count_into(&mut self, metrics: &WorkerMetrics) {
        for route in &mut self.routes {
            route.stats = metrics.route(&route.name);
        }
    }

    /// The compiled routes, for tests that swap a route's filter chain.
    #[cfg(test)]
    pub(crate) fn entries_mut(&mut self) -> &mut [RouteEntry] {
        &mut self.routes
    }

    /// The first route that matches, if any.
    pub fn find<'a, F>(&self, query: &RouteQuery<'a, F>) -> Option<&RouteEntry>
    where
        F: Fn(&str) -> Option<&'a [u8]>,
    {
        self.routes
            .iter()
            .find(|route| route.matches(query.host, query))
    }
}

impl RouteEntry {
    fn matches<'a, F>(&self, host: Option<&[u8]>, query: &RouteQuery<'a, F>) -> bool
    where
        F: Fn(&str) -> Option<&'a [u8]>,
    {
        if !self.hosts.is_empty() {
            let Some(host) = host else { return false };
            if !self.hosts.iter().any(|p| p.matches(host)) {
                return false;
            }
        }
        if !query.path.starts_with(&self.path_prefix) {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == query.method) {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, value)| (query.header)(name) == Some(value.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose routes the tests then replace.
    fn config() -> Config {
        Config::defaults_with_upstreams(vec!["127.0.0.1:9".parse().unwrap()])
    }

    fn route(name: &str, hosts: &[&str], prefix: &str, upstream: usize) -> Route {
        let mut route = config().routes[0].clone();
        route.name = name.into();
        route.hosts = hosts
            .iter()
            .map(|h| match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.to_string()),
                None => HostPattern::Exact((*h).to_string()),
            })
            .collect();
        route.path_prefix = prefix.into();
        route.action = RouteAction::Forward {
            upstream,
            host_rewrite: None,
        };
        route
    }

    fn table(routes: &[Route]) -> RouteTable {
        RouteTable::from_routes(routes, &config(), &Gateway::default())
    }

    fn find<'a>(
        table: &'a RouteTable,
        host: Option<&'a str>,
        path: &'a str,
        method: &'a str,
        headers: &'a [(&'a str, &'a str)],
    ) -> Option<&'a str> {
        let query = RouteQuery {
            host: host.map(str::as_bytes),
            path: path.as_bytes(),
            method: method.as_bytes(),
            header: |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
            },
        };
        table.find(&query).map(|r| &*r.name)
    }

    #[test]
    fn first_match_in_order_wins() {
        let table = table(&[route("api", &[], "/api/", 0), route("all", &[], "/", 1)]);
        assert_eq!(find(&table, None, "/api/x", "GET", &[]), Some("api"));
        assert_eq!(find(&table, None, "/apix", "GET", &[]), Some("all"));
    }

    #[test]
    fn hosts_exact_wildcard_case_and_port() {
        let table = table(&[
            route("exact", &["example.com"], "/", 0),
            route("wild", &["*.example.org"], "/", 1),
        ]);
        assert_eq!(
            find(&table, Some("EXAMPLE.com:8080"), "/", "GET", &[]),
            Some("exact")
        );
        assert_eq!(
            find(&table, Some("a.b.example.org"), "/", "GET", &[]),
            Some("wild")
        );
        assert_eq!(find(&table, Some("example.org"), "/", "GET", &[]), None);
        assert_eq!(find(&table, Some("xexample.org"), "/", "GET", &[]), None);
        assert_eq!(find(&table, None, "/", "GET", &[]), None);
    }

    #[test]
    fn methods_and_headers() {
        let mut r = route("v2", &[], "/", 0);
        r.methods = vec!["POST".into()];
        r.headers = vec![("X-Api-Version".into(), "2".into())];
        let table = table(&[r]);
        assert_eq!(
            find(&table, None, "/", "POST", &[("x-api-version", "2")]),
            Some("v2")
        );
        assert_eq!(
            find(&table, None, "/", "GET", &[("x-api-version", "2")]),
            None
        );
        assert_eq!(
            find(&table, None, "/", "POST", &[("x-api-version", "3")]),
            None
        );
        assert_eq!(find(&table, None, "/", "POST", &[]), None);
    }

    #[test]
    fn a_trailing_dot_matches_like_the_name_without_it() {
        let table = table(&[
            route("exact", &["example.com"], "/", 0),
            route("wild", &["*.example.org"], "/", 1),
        ]);
        assert_eq!(
            find(&table, Some("example.com."), "/", "GET", &[]),
            Some("exact")
        );
        assert_eq!(
            find(&table, Some("Example.COM.:8080"), "/", "GET", &[]),
            Some("exact")
        );
        assert_eq!(
            find(&table, Some("a.example.org."), "/", "GET", &[]),
            Some("wild")
        );
        assert_eq!(find(&table, Some("[::1]:80"), "/", "GET", &[]), None);
    }
}
