//! What a route does beyond matching, and the `[http]` settings every route starts from:
//! typed values and their checks.
//!
//! `validate.rs` calls [`check_http`] once and [`check_route_policy`] per route; the result is
//! a [`RoutePolicy`] with every setting resolved (the route's own override, else `[http]`, else
//! the global `[timeouts]` / `[limits]`), so the request path never merges settings per
//! request. The filters in `crate::filters` are compiled from these values. Header values,
//! `return` bodies and redirect targets may hold `${variables}` ([`Template`]), checked here.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::error::{FieldPath, Problem};
use super::file::{
    HeaderEditsFile, HedgeFile, HttpFile, HttpsRedirectFile, RegexRewriteFile, ReplacePrefixFile,
    RetryFile, ReturnFile, RouteFile,
};
use super::validate::check_duration;
use super::{HedgePolicy, Limits, RetryPolicy, Timeouts};
use crate::http1::{EscapedSlashes, PathOptions};

type Checked<T> = Result<T, Problem>;

/// `[http]`, validated: what applies before a request is routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    /// How request paths are normalized before routing.
    pub path: PathOptions,
    /// Peers whose forwarding fields are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Request edits every route starts with.
    pub request_headers: Vec<HeaderEdit>,
    /// Response edits every route starts with.
    pub response_headers: Vec<HeaderEdit>,
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Everything a route does once it matched, resolved against `[http]`, `[timeouts]` and
/// `[limits]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub rewrite: Option<PathRewrite>,
    pub forwarding: Forwarding,
    /// The field carrying the request id when request ids are on.
    pub request_id: Option<String>,
    /// Edits of the upstream request: `[http]`'s, then the route's.
    pub request_headers: Vec<HeaderEdit>,
    /// Edits of the response: `[http]`'s, then the route's.
    pub response_headers: Vec<HeaderEdit>,
    pub timeouts: RouteTimeouts,
    /// Largest request body (413); `None` is unlimited.
    pub max_body: Option<u64>,
    /// Least average request-body rate after a 5 s grace (408); 0 is off.
    pub min_body_rate: u64,
    /// Requests on plain listeners are redirected to `https://`.
    pub https_redirect: Option<HttpsRedirect>,
    /// When a failed try goes on to another server.
    pub retry: RetryPolicy,
    /// Hedged requests; `None`: none.
    pub hedge: Option<HedgePolicy>,
    /// The rate limits that apply, as indexes into [`super::Config::rate_limits`]: `[http]`'s,
    /// then the route's own.
    pub rate_limits: Vec<usize>,
    /// Who may use the route.
    pub auth: super::RouteAuth,
    /// How its responses are compressed; `None`: they are not.
    pub compression: Option<std::sync::Arc<super::Compression>>,
    /// How its responses are cached; `None`: they are not.
    pub cache: Option<std::sync::Arc<super::RouteCache>>,
}

/// `https_redirect`: the status and the port of the `Location`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpsRedirect {
    pub status: u16,
    /// `None` for 443, which the URL leaves out.
    pub port: Option<u16>,
}

fn check_https_redirect(
    redirect: Option<&HttpsRedirectFile>,
    here: &FieldPath,
) -> Checked<Option<HttpsRedirect>> {
    let (status, port) = match redirect {
        None | Some(HttpsRedirectFile::On(false)) => return Ok(None),
        Some(HttpsRedirectFile::On(true)) => (301, 443),
        Some(HttpsRedirectFile::Table(t)) => (t.status, t.port),
    };
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Err(Problem::new(
            here.key("status"),
            format!("must be a redirect status: 301, 302, 303, 307 or 308 (got {status})"),
        ));
    }
    if port == 0 {
        return Err(Problem::new(
            here.key("port"),
            "must be between 1 and 65535",
        ));
    }
    Ok(Some(HttpsRedirect {
        status,
        port: (port != 443).then_some(port),
    }))
}

/// The forwarding fields a route adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarding {
    pub x_forwarded: bool,
    pub forwarded: bool,
    pub via: bool,
}

/// The timeouts that apply once a request is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub client_body: Duration,
    pub client_send: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
}

/// How the path sent upstream differs from the (normalized) request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// Remove this prefix (the result keeps a leading `/`).
    StripPrefix(String),
    /// Replace the prefix `from` with `to`.
    ReplacePrefix {
        from: String,
        to: String,
    },
    Regex(RegexRewrite),
}

/// A compiled `regex_rewrite`.
#[derive(Clone, Debug)]
pub struct RegexRewrite {
    pub regex: regex::Regex,
    pub replace: String,
}

impl PartialEq for RegexRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.replace == other.replace
    }
}

impl Eq for RegexRewrite {}

/// One header edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEdit {
    pub op: EditOp,
    pub name: String,
    /// Empty for `Remove`.
    pub value: Template,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOp {
    Remove,
    Set,
    Add,
}

/// A `return` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticResponse {
    pub status: u16,
    pub body: Template,
    pub location: Option<Template>,
    pub content_type: Option<String>,
}

/// A string with `${variable}` references, split once at load time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Variable),
}

/// What a template may refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// The client's address: the real one when it came through a trusted proxy.
    ClientAddr,
    /// The address of the peer connected to ringwall.
    RemoteAddr,
    /// The request's host (without port), empty when it has none.
    Host,
    /// The request id (empty when request ids are off).
    RequestId,
    /// `http` or `https`, from the listener.
    Scheme,
    /// The normalized path, without the query.
    Path,
    /// The normalized path and the query, as sent upstream before any rewrite.
    RequestUri,
}

impl Variable {
    const ALL: [(&'static str, Variable); 7] = [
        ("client_addr", Variable::ClientAddr),
        ("remote_addr", Variable::RemoteAddr),
        ("host", Variable::Host),
        ("request_id", Variable::RequestId),
        ("scheme", Variable::Scheme),
        ("path", Variable::Path),
        ("request_uri", Variable::RequestUri),
    ];
}

impl Template {
    /// Splits `text` at `${name}` references; `$$` is a literal `$`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            }
            let Some(inner) = after.strip_prefix('{') else {
                return Err(format!(
                    "{text:?}: a \"$\" must start a variable like \"${{host}}\" (write \"$$\" for a \"$\")"
                ));
            };
            let Some(end) = inner.find('}') else {
                return Err(format!("{text:?}: unclosed \"${{\""));
            };
            let name = &inner[..end];
            let Some((_, var)) = Variable::ALL.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = Variable::ALL.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "{text:?}: unknown variable \"${{{name}}}\" (known: {})",
                    known.join(", ")
                ));
            };
            if !literal.is_empty() {
                parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(TemplatePart::Var(*var));
            rest = &inner[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// Writes the template into `out`, asking `var` to write each variable.
    pub fn render(&self, out: &mut Vec<u8>, mut var: impl FnMut(Variable, &mut Vec<u8>)) {
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.extend_from_slice(text.as_bytes()),
                TemplatePart::Var(v) => var(*v, out),
            }
        }
    }
}

/// Checks `[http]`.
pub(crate) fn check_http(http: &HttpFile, here: &FieldPath) -> Checked<Http> {
    let trusted_proxies = http
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_cidr(text).map_err(|m| Problem::new(here.key("trusted_proxies").index(i), m))
        })
        .collect::<Checked<Vec<_>>>()?;
    if !is_token(&http.request_id_header) {
        return Err(Problem::new(
            here.key("request_id_header"),
            format!("invalid header name {:?}", http.request_id_header),
        ));
    }
    Ok(Http {
        path: PathOptions {
            merge_slashes: http.merge_slashes,
            escaped_slashes: match http.escaped_slashes {
                super::EscapedSlashesMode::Keep => EscapedSlashes::Keep,
                super::EscapedSlashesMode::Reject => EscapedSlashes::Reject,
                super::EscapedSlashesMode::Decode => EscapedSlashes::Decode,
            },
        },
        trusted_proxies,
        request_headers: check_header_edits(&http.request_headers, &here.key("request_headers"))?,
        response_headers: check_header_edits(
            &http.response_headers,
            &here.key("response_headers"),
        )?,
    })
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text.trim(), None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!(
            "invalid address {text:?}: expected an IP address or a CIDR block like \"10.0.0.0/8\""
        )
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                return Err(format!(
                    "invalid prefix length in {text:?}: expected 0 to {max}"
                ))
            }
        },
    };
    Ok(Cidr { addr, prefix })
}

/// Resolves what route `route` does beyond matching.
pub(crate) fn check_route_policy(
    route: &RouteFile,
    (http, checked): (&HttpFile, &Http),
    timeouts: &Timeouts,
    limits: &Limits,
    here: &FieldPath,
) -> Checked<RoutePolicy> {
    let mut request_headers = checked.request_headers.clone();
    request_headers.extend(check_header_edits(
        &route.request_headers,
        &here.key("request_headers"),
    )?);
    let mut response_headers = checked.response_headers.clone();
    response_headers.extend(check_header_edits(
        &route.response_headers,
        &here.key("response_headers"),
    )?);
    let t = &route.timeouts;
    let timeout = |key: &str, value: Option<Duration>, global: Duration| match value {
        Some(v) => check_duration(here.key("timeouts").key(key), v),
        None => Ok(global),
    };
    Ok(RoutePolicy {
        rewrite: check_rewrite(route, here)?,
        forwarding: Forwarding {
            x_forwarded: route.x_forwarded.unwrap_or(http.x_forwarded),
            forwarded: route.forwarded.unwrap_or(http.forwarded),
            via: route.via.unwrap_or(http.via),
        },
        request_id: route
            .request_id
            .unwrap_or(http.request_id)
            .then(|| http.request_id_header.clone()),
        request_headers,
        response_headers,
        timeouts: RouteTimeouts {
            client_body: timeout("client_body", t.client_body, timeouts.client_body)?,
            client_send: timeout("client_send", t.client_send, timeouts.client_send)?,
            upstream_connect: timeout(
                "upstream_connect",
                t.upstream_connect,
                timeouts.upstream_connect,
            )?,
            upstream_response: timeout(
                "upstream_response",
                t.upstream_response,
                timeouts.upstream_response,
            )?,
        },
        max_body: route.limits.max_body.map_or(limits.max_body, |l| l.0),
        min_body_rate: route
            .limits
            .min_body_rate
            .map_or(limits.min_body_rate, |r| r.0),
        https_redirect: check_https_redirect(
            route.https_redirect.as_ref(),
            &here.key("https_redirect"),
        )?,
        retry: check_retry(&route.retry, &here.key("retry"))?,
        hedge: match &route.hedge {
            Some(hedge) => Some(check_hedge(hedge, &here.key("hedge"))?),
            None => None,
        },
        // Resolved once the `[[rate_limit]]`s are checked (`gateway::check_rate_limits`).
        rate_limits: Vec::new(),
        // Likewise, once `[auth]` is checked.
        auth: super::RouteAuth::default(),
        compression: None,
        cache: None,
    })
}

/// `[route.hedge]`.
fn check_hedge(hedge: &HedgeFile, here: &FieldPath) -> Checked<HedgePolicy> {
    if !(50..=99).contains(&hedge.percentile) {
        return Err(Problem::new(
            here.key("percentile"),
            "must be between 50 and 99",
        ));
    }
    let min_delay = check_duration(here.key("min_delay"), hedge.min_delay)?;
    let max_delay = check_duration(here.key("max_delay"), hedge.max_delay)?;
    if max_delay < min_delay {
        return Err(Problem::new(
            here.key("max_delay"),
            "must be at least min_delay",
        ));
    }
    Ok(HedgePolicy {
        percentile: hedge.percentile,
        min_delay,
        max_delay,
    })
}

/// `[route.retry]`.
fn check_retry(retry: &RetryFile, here: &FieldPath) -> Checked<RetryPolicy> {
    if retry.tries > 100 {
        return Err(Problem::new(
            here.key("tries"),
            "must be at most 100 (0: one per server in service)",
        ));
    }
    let mut policy = RetryPolicy {
        tries: retry.tries,
        on_error: false,
        on_timeout: false,
        on_status: Vec::new(),
        per_try_timeout: match retry.per_try_timeout {
            Some(t) => Some(check_duration(here.key("per_try_timeout"), t)?),
            None => None,
        },
        buffer_body: retry.buffer_body.0,
    };
    if policy.buffer_body > 16 << 20 {
        return Err(Problem::new(
            here.key("buffer_body"),
            "must be at most 16MiB",
        ));
    }
    for (i, condition) in retry.on.iter().enumerate() {
        match condition.trim() {
            "error" => policy.on_error = true,
            "timeout" => policy.on_timeout = true,
            "5xx" => policy.on_status.push((500, 599)),
            code => match code.parse::<u16>() {
                Ok(status) if (500..=599).contains(&status) => {
                    policy.on_status.push((status, status));
                }
                _ => {
                    return Err(Problem::new(
                        here.key("on").index(i),
                        format!(
                            "unknown retry condition {condition:?}: expected error, timeout, \
                             5xx or a status from 500 to 599"
                        ),
                    ))
                }
            },
        }
    }
    Ok(policy)
}

fn check_rewrite(route: &RouteFile, here: &FieldPath) -> Checked<Option<PathRewrite>> {
    let given = [
        route.strip_prefix.is_some(),
        route.replace_prefix.is_some(),
        route.regex_rewrite.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(Problem::new(
            here.clone(),
            "give at most one of strip_prefix, replace_prefix and regex_rewrite",
        ));
    }
    if let Some(prefix) = &route.strip_prefix {
        check_path_piece(prefix, &here.key("strip_prefix"), true)?;
        return Ok(Some(PathRewrite::StripPrefix(prefix.clone())));
    }
    if let Some(ReplacePrefixFile { from, to }) = &route.replace_prefix {
        check_path_piece(from, &here.key("replace_prefix").key("from"), true)?;
        check_path_piece(to, &here.key("replace_prefix").key("to"), true)?;
        return Ok(Some(PathRewrite::ReplacePrefix {
            from: from.clone(),
            to: to.clone(),
        }));
    }
    if let Some(RegexRewriteFile { pattern, replace }) = &route.regex_rewrite {
        let regex = regex::Regex::new(pattern).map_err(|e| {
            Problem::new(
                here.key("regex_rewrite").key("pattern"),
                format!("invalid regular expression: {}", one_line(&e.to_string())),
            )
        })?;
        check_path_piece(replace, &here.key("regex_rewrite").key("replace"), false)?;
        return Ok(Some(PathRewrite::Regex(RegexRewrite {
            regex,
            replace: replace.clone(),
        })));
    }
    Ok(None)
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A prefix or replacement path: starts with `/` when `rooted`, no bytes a request-target
/// cannot carry.
fn check_path_piece(text: &str, here: &FieldPath, rooted: bool) -> Checked<()> {
    if rooted && !text.starts_with('/') {
        return Err(Problem::new(
            here.clone(),
            format!("{text:?} must start with \"/\""),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '?' || *c == '#')
    {
        return Err(Problem::new(
            here.clone(),
            format!("{text:?}: character {c:?} is not allowed in a path"),
        ));
    }
    Ok(())
}

/// Fields ringwall writes itself: a header edit may not touch them.
const OWN_FIELDS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

fn check_header_edits(edits: &HeaderEditsFile, here: &FieldPath) -> Checked<Vec<HeaderEdit>> {
    let mut checked = Vec::new();
    let check_name = |name: &str, at: &FieldPath| -> Checked<String> {
        if !is_token(name) {
            return Err(Problem::new(
                at.clone(),
                format!("invalid header name {name:?}"),
            ));
        }
        if OWN_FIELDS.iter().any(|own| own.eq_ignore_ascii_case(name)) {
            let hint = if name.eq_ignore_ascii_case("host") {
                " (use the route's host_rewrite)"
            } else {
                ""
            };
            return Err(Problem::new(
                at.clone(),
                format!("{name:?} is written by ringwall itself and cannot be edited{hint}"),
            ));
        }
        Ok(name.to_owned())
    };
    for (i, name) in edits.remove.iter().enumerate() {
        checked.push(HeaderEdit {
            op: EditOp::Remove,
            name: check_name(name, &here.key("remove").index(i))?,
            value: Template::default(),
        });
    }
    for (op, key, map) in [
        (EditOp::Set, "set", &edits.set),
        (EditOp::Add, "add", &edits.add),
    ] {
        for (name, value) in map {
            let at = here.key(key).key(name);
            let name = check_name(name, &at)?;
            if value
                .chars()
                .any(|c| (c.is_control() && c != '\t') || !c.is_ascii())
            {
                return Err(Problem::new(
                    at,
                    format!("header value {value:?} must be visible ASCII, spaces and tabs"),
                ));
            }
            let value = Template::parse(value).map_err(|m| Problem::new(at.clone(), m))?;
            checked.push(HeaderEdit { op, name, value });
        }
    }
    Ok(checked)
}

/// Checks a `return`.
pub(crate) fn check_return(ret: &ReturnFile, here: &FieldPath) -> Checked<StaticResponse> {
    if !(200..=599).contains(&ret.status) {
        return Err(Problem::new(
            here.key("status"),
            format!("must be between 200 and 599 (got {})", ret.status),
        ));
    }
    let redirect = matches!(ret.status, 301 | 302 | 303 | 307 | 308);
    let location = match &ret.location {
        Some(text) => {
            if text.is_empty() || text.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(Problem::new(
                    here.key("location"),
                    format!("invalid location {text:?}: expected a URL without spaces"),
                ));
            }
            Some(Template::parse(text).map_err(|m| Problem::new(here.key("location"), m))?)
        }
        None if redirect => {
            return Err(Problem::new(
                here.key("location"),
                format!("a {} redirect needs a location", ret.status),
            ))
        }
        None => None,
    };
    if let Some(content_type) = &ret.content_type {
        if content_type.is_empty()
            || content_type
                .chars()
                .any(|c| c.is_control() || !c.is_ascii())
        {
            return Err(Problem::new(
                here.key("content_type"),
                format!("invalid content type {content_type:?}"),
            ));
        }
    }
    Ok(StaticResponse {
        status: ret.status,
        body: Template::parse(&ret.body).map_err(|m| Problem::new(here.key("body"), m))?,
        location,
        content_type: ret.content_type.clone(),
    })
}

pub fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_at_variables() {
        let t = Template::parse("https://${host}${request_uri}").unwrap();
        assert_eq!(
            t.parts,
            [
                TemplatePart::Literal("https://".into()),
                TemplatePart::Var(Variable::Host),
                TemplatePart::Var(Variable::RequestUri)
            ]
        );
        assert_eq!(
            Template::parse("a $$5").unwrap().parts,
            [TemplatePart::Literal("a $5".into())]
        );
        assert!(Template::parse("${nope}")
            .unwrap_err()
            .contains("unknown variable"));
        assert!(Template::parse("${host").unwrap_err().contains("unclosed"));
        assert!(Template::parse("$host").is_err());
        let mut out = Vec::new();
        t.render(&mut out, |v, out| {
            out.extend_from_slice(match v {
                Variable::Host => b"h",
                _ => b"/x",
            });
        });
        assert_eq!(out, b"https://h/x");
    }

    #[test]
    fn cidr_blocks_contain_their_addresses() {
        let net = parse_cidr("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one = parse_cidr("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::9".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(parse_cidr("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("ten").is_err());
    }
}
