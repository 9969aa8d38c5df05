//! The route table: which upstream group serves a request.
//!
//! Routes are tried in configuration order and the first match wins (as in Envoy and HAProxy),
//! so a specific route goes before a catch-all. A route matches on the request's host (exact or
//! `*.suffix` wildcard, case-insensitive, port ignored), a path prefix, an optional method list
//! and optional exact header values. Matching allocates nothing.

use crate::config::{HostPattern, Route};

/// What the router needs to know about a request.
pub struct RouteQuery<'a, F> {
    /// Host from the absolute-form target or the Host field, possibly with a port.
    pub host: Option<&'a [u8]>,
    pub path: &'a [u8],
    pub method: &'a [u8],
    /// Looks up a header value by lower-case name.
    pub header: F,
}

/// One compiled route.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    pub name: String,
    hosts: Vec<HostPattern>,
    path_prefix: Vec<u8>,
    methods: Vec<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    /// Index of the upstream group in the configuration.
    pub upstream: usize,
    /// Host header sent upstream instead of the client's.
    pub host_rewrite: Option<String>,
}

/// The routes of one worker, in match order.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let routes = routes
            .iter()
            .map(|r| RouteEntry {
                name: r.name.clone(),
                hosts: r.hosts.clone(),
                path_prefix: r.path_prefix.as_bytes().to_vec(),
                methods: r.methods.iter().map(|m| m.as_bytes().to_vec()).collect(),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
                    .collect(),
                upstream: r.upstream,
                host_rewrite: r.host_rewrite.clone(),
            })
            .collect();
        Self { routes }
    }

    /// The first route that matches, if any.
    pub fn find<'a, F>(&self, query: &RouteQuery<'a, F>) -> Option<&RouteEntry>
    where
        F: Fn(&str) -> Option<&'a [u8]>,
    {
        let host = query.host.map(strip_port);
        self.routes.iter().find(|route| route.matches(host, query))
    }
}

impl RouteEntry {
    fn matches<'a, F>(&self, host: Option<&[u8]>, query: &RouteQuery<'a, F>) -> bool
    where
        F: Fn(&str) -> Option<&'a [u8]>,
    {
        if !self.hosts.is_empty() {
            let Some(host) = host else { return false };
            if !self.hosts.iter().any(|p| host_matches(p, host)) {
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

fn host_matches(pattern: &HostPattern, host: &[u8]) -> bool {
    match pattern {
        HostPattern::Exact(exact) => exact.as_bytes().eq_ignore_ascii_case(host),
        HostPattern::Suffix(suffix) => {
            let suffix = suffix.as_bytes();
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, hosts: &[&str], prefix: &str, upstream: usize) -> Route {
        Route {
            name: name.into(),
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Suffix(suffix.to_string()),
                    None => HostPattern::Exact((*h).to_string()),
                })
                .collect(),
            path_prefix: prefix.into(),
            methods: vec![],
            headers: vec![],
            upstream,
            host_rewrite: None,
        }
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
        table.find(&query).map(|r| r.name.as_str())
    }

    #[test]
    fn first_match_in_order_wins() {
        let table = RouteTable::new(&[route("api", &[], "/api/", 0), route("all", &[], "/", 1)]);
        assert_eq!(find(&table, None, "/api/x", "GET", &[]), Some("api"));
        assert_eq!(find(&table, None, "/apix", "GET", &[]), Some("all"));
    }

    #[test]
    fn hosts_exact_wildcard_case_and_port() {
        let table = RouteTable::new(&[
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
        let table = RouteTable::new(&[r]);
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
    fn ports_are_stripped() {
        assert_eq!(strip_port(b"a.com:80"), b"a.com");
        assert_eq!(strip_port(b"a.com"), b"a.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
    }
}
