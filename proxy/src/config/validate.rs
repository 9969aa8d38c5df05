//! Stage three of the configuration: checks a [`FileConfig`] (with flags applied) and builds
//! the [`Config`] that cannot be invalid.
//!
//! Checks run in file order and stop at the first [`Problem`], which carries the field path
//! that `error.rs` turns into a line number or a flag name. Addresses are resolved here, once:
//! a literal `ip:port` is taken as is, a `host:port` goes through the system resolver and its
//! first address is kept.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{path, FieldPath, Problem};
use super::file::{
    AccessLogFile, CircuitBreakerFile, ClientAuthMode, EjectionFile, EngineFile, FileConfig,
    HealthCheckFile, HttpFile, LimitsFile, ListenerFile, RouteFile, TimeoutsFile, TlsFile,
    UpstreamFile, UpstreamTlsFile,
};
use super::policy::{check_http, check_return, check_route_policy, is_token, parse_cidr, Http};
use super::units::{format_size, MAX_DURATION};
use super::{
    AccessLogFormat, AccessLogSettings, AccessLogTarget, CheckKind, Cidr, CircuitBreaker,
    ClientAuth, Config, Ejection, EngineConfig, HealthCheck, HostPattern, Limits, Listener,
    ListenerProtocol, LoadBalancing, RetryBudgetSettings, Route, RouteAction, SniRoute, TcpForward,
    Thresholds, Timeouts, TlsCertificate, TlsSettings, UpstreamGroup, UpstreamTls,
};
use crate::tls::TlsField;
use ringwall_runtime::rustls;

/// The accepted log levels, least verbose first.
pub(crate) const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Most worker threads accepted; more is a typo, not a machine.
const MAX_WORKERS: usize = 4096;
const RING_ENTRIES: std::ops::RangeInclusive<u32> = 256..=32768;
/// Largest accepted request head, response head and URI limit.
const MAX_HEAD_LIMIT: u64 = 16 << 20;
const MAX_HEADERS: usize = 1024;

type Checked<T> = Result<T, Problem>;

/// The name of a route the file leaves unnamed.
pub(crate) fn default_route_name(index: usize) -> String {
    format!("route-{index}")
}

/// Where clients connect when the file names no listener.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub(crate) fn validate(file: &FileConfig, source: Option<PathBuf>) -> Checked<Config> {
    let base = source
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf);
    let hosts = match &file.resolver.hosts_file {
        Some(text) => {
            let here = path(&["resolver", "hosts_file"]);
            let file = file_path(text, base.as_deref(), &here)?;
            Hosts::read(&file).map_err(|m| Problem::new(here, m))?
        }
        None => Hosts::default(),
    };
    let upstreams = check_upstreams(&file.upstream, base.as_deref(), &hosts)?;
    let listeners = check_listeners(
        file.listen.as_deref(),
        &file.listener,
        base.as_deref(),
        &upstreams,
    )?;
    let log_level = check_log_level(&file.log_level)?;
    let engine = check_engine(&file.engine)?;
    let timeouts = check_timeouts(&file.timeouts)?;
    let limits = check_limits(&file.limits)?;
    let http = check_http(&file.http, &path(&["http"]))?;
    let settings = RouteSettings {
        http: (&file.http, &http),
        timeouts: &timeouts,
        limits: &limits,
    };
    let mut routes = check_routes(&file.route, &upstreams, &settings)?;
    let rate_limits = super::gateway::check_rate_limits(file, &mut routes)?;
    let limit_names: HashMap<String, usize> = rate_limits
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.clone(), i))
        .collect();
    let auth = super::auth::check_auth(file, base.as_deref(), &limit_names)?;
    let compression = super::compress::check_compression(file, &mut routes)?;
    let cache = super::cache::check_cache(file, &mut routes, base.as_deref())?;
    for (i, route) in routes.iter_mut().enumerate() {
        if let Some(route_file) = file.route.get(i) {
            route.policy.auth =
                super::auth::check_route_auth(route_file, &auth, &path(&["route"]).index(i))?;
        }
    }
    if routes.is_empty() && listeners.iter().any(|l| l.protocol.is_http()) {
        return Err(Problem::new(
            path(&["route"]),
            "no routes: add a [[route]] or pass --upstream <ADDR>",
        ));
    }
    let access_log = check_access_log(&file.access_log, base.as_deref())?;
    let pid_file = file
        .pid_file
        .as_deref()
        .map(|text| file_path(text, base.as_deref(), &path(&["pid_file"])))
        .transpose()?;
    let admin = match &file.admin.address {
        None => None,
        Some(text) => {
            let at = path(&["admin"]).key("address");
            let addr = resolve_first(text).map_err(|m| Problem::new(at.clone(), m))?;
            if addr.port() != 0
                && listeners
                    .iter()
                    .any(|l| l.addr == addr && l.protocol != ListenerProtocol::Udp)
            {
                return Err(Problem::new(
                    at,
                    format!("{addr} is already a listener's address"),
                ));
            }
            Some(addr)
        }
    };
    Ok(Config {
        source,
        listeners,
        engine,
        timeouts,
        limits,
        http,
        upstreams,
        routes,
        log_level,
        access_log,
        rate_limits,
        auth,
        compression,
        cache,
        admin,
        pid_file,
        effective: String::new(),
    })
}

/// `listen` (plain HTTP addresses) and `[[listener]]`s, as one list; the default address when
/// neither is given.
fn check_listeners(
    listen: Option<&[String]>,
    entries: &[ListenerFile],
    base: Option<&Path>,
    upstreams: &[UpstreamGroup],
) -> Checked<Vec<Listener>> {
    let default = [DEFAULT_LISTEN.to_owned()];
    let listen = match listen {
        Some([]) => return Err(Problem::new(path(&["listen"]), "must not be empty")),
        Some(listen) => listen,
        None if entries.is_empty() => &default[..],
        None => &[],
    };
    let given = listen
        .iter()
        .enumerate()
        .map(|(i, text)| {
            (
                None,
                text,
                ListenerProtocol::Http,
                None,
                None,
                path(&["listen"]).index(i),
            )
        })
        .chain(entries.iter().enumerate().map(|(i, entry)| {
            (
                Some((entry.name.as_deref(), i)),
                &entry.address,
                entry.protocol,
                entry.tls.as_ref(),
                Some(entry),
                path(&["listener"]).index(i),
            )
        }));
    let mut listeners: Vec<Listener> = Vec::new();
    let mut places: Vec<FieldPath> = Vec::new();
    for (name, text, protocol, tls, entry, here) in given {
        let at = if name.is_some() {
            here.key("address")
        } else {
            here.clone()
        };
        let addr = resolve_first(text).map_err(|m| Problem::new(at.clone(), m))?;
        // Port 0 asks the kernel for a free port: several such listeners do not collide.
        // A UDP and a TCP listener may share an address (DNS on port 53 is both).
        let udp = protocol == ListenerProtocol::Udp;
        if let Some(first) = listeners.iter().position(|l| {
            l.addr == addr && addr.port() != 0 && (l.protocol == ListenerProtocol::Udp) == udp
        }) {
            return Err(Problem::new(
                at,
                format!(
                    "duplicate address {text:?} ({addr}, also {})",
                    places[first]
                ),
            ));
        }
        let name = match name {
            Some((Some(name), _)) => {
                check_name(name, &here.key("name"))?;
                if listeners.iter().any(|l| l.name == name) {
                    return Err(Problem::new(
                        here.key("name"),
                        format!("duplicate listener name {name:?}"),
                    ));
                }
                name.to_owned()
            }
            _ => format!("listener-{}", listeners.len()),
        };
        let (tls, forward, proxy_protocol_from) =
            check_listener_kind(protocol, tls, entry, base, upstreams, &here)?;
        listeners.push(Listener {
            name,
            addr,
            protocol,
            tls,
            forward,
            proxy_protocol_from,
        });
        places.push(here);
    }
    Ok(listeners)
}

/// What a listener's protocol asks for: its TLS settings, where a TCP listener forwards, and
/// the balancers whose PROXY headers it takes.
fn check_listener_kind(
    protocol: ListenerProtocol,
    tls: Option<&TlsFile>,
    entry: Option<&ListenerFile>,
    base: Option<&Path>,
    upstreams: &[UpstreamGroup],
    here: &FieldPath,
) -> Checked<(Option<TlsSettings>, Option<TcpForward>, Vec<Cidr>)> {
    let tls = match (protocol.terminates_tls(), tls) {
        (true, Some(tls)) => Some(check_tls(tls, base, &here.key("tls"))?),
        (true, None) => {
            return Err(Problem::new(
                here.key("protocol"),
                format!(
                    "protocol \"{}\" needs a [listener.tls] table with a certificate",
                    protocol.scheme()
                ),
            ))
        }
        (false, Some(_)) => {
            return Err(Problem::new(
                here.key("tls"),
                "TLS settings on a listener that does not terminate TLS: set protocol = \
                     \"https\" (HTTP) or \"tls\" (TCP)",
            ))
        }
        (false, None) => None,
    };
    let (forward, proxy_protocol_from) = match entry {
        None => (None, Vec::new()),
        Some(entry) => (
            check_forward(entry, protocol, upstreams, here)?,
            entry
                .proxy_protocol_from
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    parse_cidr(text)
                        .map_err(|m| Problem::new(here.key("proxy_protocol_from").index(i), m))
                })
                .collect::<Checked<Vec<_>>>()?,
        ),
    };
    Ok((tls, forward, proxy_protocol_from))
}

/// Where a `tcp` or `tls` listener forwards; `None` for HTTP listeners, which must not say.
fn check_forward(
    entry: &ListenerFile,
    protocol: ListenerProtocol,
    upstreams: &[UpstreamGroup],
    here: &FieldPath,
) -> Checked<Option<TcpForward>> {
    let group = |name: &str, at: FieldPath| {
        upstreams
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| {
                let known: Vec<String> =
                    upstreams.iter().map(|g| format!("{:?}", g.name)).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                Problem::new(
                    at,
                    format!("unknown upstream group {name:?} (known: {known})"),
                )
            })
    };
    if protocol.is_http() {
        for (given, key) in [
            (entry.upstream.is_some(), "upstream"),
            (!entry.sni_routes.is_empty(), "sni_routes"),
            (entry.send_proxy_protocol.is_some(), "send_proxy_protocol"),
        ] {
            if given {
                return Err(Problem::new(
                    here.key(key),
                    "only for protocol \"tcp\" or \"tls\" listeners (HTTP listeners route \
                     by [[route]])",
                ));
            }
        }
        return Ok(None);
    }
    let upstream = entry
        .upstream
        .as_deref()
        .map(|name| group(name, here.key("upstream")))
        .transpose()?;
    if protocol == ListenerProtocol::Udp {
        for (given, key) in [
            (!entry.sni_routes.is_empty(), "sni_routes"),
            (entry.send_proxy_protocol.is_some(), "send_proxy_protocol"),
            (!entry.proxy_protocol_from.is_empty(), "proxy_protocol_from"),
        ] {
            if given {
                return Err(Problem::new(
                    here.key(key),
                    "not for protocol \"udp\" listeners (TCP only)",
                ));
            }
        }
    }
    if protocol == ListenerProtocol::Tls && !entry.sni_routes.is_empty() {
        return Err(Problem::new(
            here.key("sni_routes"),
            "routing by SNI is for TLS passed through (protocol \"tcp\"); a \"tls\" listener \
             terminates it and picks the certificate by SNI",
        ));
    }
    let mut sni_routes = Vec::with_capacity(entry.sni_routes.len());
    for (i, route) in entry.sni_routes.iter().enumerate() {
        let at = here.key("sni_routes").index(i);
        if route.hosts.is_empty() {
            return Err(Problem::new(at.key("hosts"), "must not be empty"));
        }
        let hosts = route
            .hosts
            .iter()
            .enumerate()
            .map(|(j, h)| {
                parse_host_pattern(h).map_err(|m| Problem::new(at.key("hosts").index(j), m))
            })
            .collect::<Checked<Vec<_>>>()?;
        sni_routes.push(SniRoute {
            hosts,
            upstream: group(&route.upstream, at.key("upstream"))?,
        });
    }
    if upstream.is_none() && sni_routes.is_empty() {
        return Err(Problem::new(
            here.key("upstream"),
            format!(
                "a \"{}\" listener needs the upstream group it forwards to",
                protocol.scheme()
            ),
        ));
    }
    Ok(Some(TcpForward {
        upstream,
        sni_routes,
        send_proxy_protocol: entry.send_proxy_protocol,
    }))
}

/// `[access_log]`.
fn check_access_log(log: &AccessLogFile, base: Option<&Path>) -> Checked<AccessLogSettings> {
    let here = path(&["access_log"]);
    let target = match log.target.as_str() {
        "off" => AccessLogTarget::Off,
        "stdout" | "-" => AccessLogTarget::Stdout,
        other => AccessLogTarget::File(file_path(other, base, &here.key("target"))?),
    };
    let format = match (log.format.as_str(), &log.template) {
        ("combined", None) => AccessLogFormat::Combined,
        ("json", None) => AccessLogFormat::Json,
        ("template", Some(text)) => AccessLogFormat::Template(
            crate::access_log::parse_template(text)
                .map_err(|m| Problem::new(here.key("template"), m))?,
        ),
        ("template", None) => {
            return Err(Problem::new(
                here.key("format"),
                "format \"template\" needs a `template`",
            ))
        }
        ("combined" | "json", Some(_)) => {
            return Err(Problem::new(
                here.key("template"),
                "a template is used only with format = \"template\"",
            ))
        }
        (other, _) => {
            return Err(Problem::new(
                here.key("format"),
                format!("unknown format {other:?}: \"combined\", \"json\" or \"template\""),
            ))
        }
    };
    Ok(AccessLogSettings { target, format })
}

/// A path of the file, taken from the file's directory when relative.
pub(crate) fn file_path(text: &str, base: Option<&Path>, here: &FieldPath) -> Checked<PathBuf> {
    if text.is_empty() {
        return Err(Problem::new(
            here.clone(),
            "must not be empty (on the command line: each --tls-cert needs its --tls-key)",
        ));
    }
    let path = Path::new(text);
    Ok(match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    })
}

/// `[listener.tls]`: the settings, then every file they name, read and checked as the start
/// would (so `ringwall check` refuses what the start would refuse).
fn check_tls(tls: &TlsFile, base: Option<&Path>, here: &FieldPath) -> Checked<TlsSettings> {
    if tls.certificate.is_empty() {
        return Err(Problem::new(
            here.key("certificate"),
            "at least one [[listener.tls.certificate]] is needed",
        ));
    }
    let mut certificates = Vec::with_capacity(tls.certificate.len());
    let mut defaults = 0;
    for (i, c) in tls.certificate.iter().enumerate() {
        let at = here.key("certificate").index(i);
        let names = match &c.names {
            None => Vec::new(),
            Some(names) if names.is_empty() => {
                return Err(Problem::new(at.key("names"), "must not be empty"))
            }
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    check_tls_name(n).map_err(|m| Problem::new(at.key("names").index(j), m))
                })
                .collect::<Checked<Vec<_>>>()?,
        };
        defaults += usize::from(c.default);
        if defaults > 1 {
            return Err(Problem::new(
                at.key("default"),
                "only one certificate may be the default",
            ));
        }
        certificates.push(TlsCertificate {
            cert: file_path(&c.cert, base, &at.key("cert"))?,
            key: file_path(&c.key, base, &at.key("key"))?,
            ocsp: c
                .ocsp
                .as_deref()
                .map(|o| file_path(o, base, &at.key("ocsp")))
                .transpose()?,
            names,
            default: c.default,
        });
    }
    let client_auth = tls
        .client_ca
        .as_deref()
        .map(|ca| {
            Ok::<_, Problem>(ClientAuth {
                ca: file_path(ca, base, &here.key("client_ca"))?,
                required: tls.client_auth == ClientAuthMode::Required,
            })
        })
        .transpose()?;
    let settings = TlsSettings {
        certificates,
        min_version: tls.min_version,
        client_auth,
        session_cache: tls.session_cache,
        session_tickets: tls.session_tickets,
        strict_sni: tls.strict_sni,
    };
    crate::tls::ListenerTls::load(&settings).map_err(|e| {
        let at = match e.field {
            TlsField::Cert(i) => here.key("certificate").index(i).key("cert"),
            TlsField::Key(i) => here.key("certificate").index(i).key("key"),
            TlsField::Ocsp(i) => here.key("certificate").index(i).key("ocsp"),
            TlsField::Names(i) => here.key("certificate").index(i),
            TlsField::Ca => here.key("client_ca"),
            TlsField::Settings => here.clone(),
        };
        Problem::new(at, e.to_string())
    })?;
    Ok(settings)
}

/// A host name a certificate serves: `example.com` or `*.example.com`, lowercased.
fn check_tls_name(name: &str) -> Result<String, String> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "{name:?} is not a host name (or a `*.` wildcard of one)"
        ))
    }
}

fn check_log_level(level: &str) -> Checked<String> {
    if LOG_LEVELS.contains(&level) {
        Ok(level.to_owned())
    } else {
        Err(Problem::new(
            path(&["log_level"]),
            format!("unknown log level {level:?}: expected one of error, warn, info, debug, trace"),
        ))
    }
}

fn check_engine(engine: &EngineFile) -> Checked<EngineConfig> {
    let workers = match engine.workers {
        None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        Some(0) => {
            return Err(Problem::new(
                path(&["engine", "workers"]),
                "must be at least 1",
            ))
        }
        Some(n) if n > MAX_WORKERS => {
            return Err(Problem::new(
                path(&["engine", "workers"]),
                format!("must be at most {MAX_WORKERS}"),
            ))
        }
        Some(n) => n,
    };
    if !RING_ENTRIES.contains(&engine.ring_entries) {
        return Err(Problem::new(
            path(&["engine", "ring_entries"]),
            format!(
                "must be between {} and {} (got {})",
                RING_ENTRIES.start(),
                RING_ENTRIES.end(),
                engine.ring_entries
            ),
        ));
    }
    if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&engine.gossip_interval) {
        return Err(Problem::new(
            path(&["engine", "gossip_interval"]),
            "must be between 1ms and 10s",
        ));
    }
    Ok(EngineConfig {
        gossip_interval: engine.gossip_interval,
        workers,
        pin: engine.pin,
        io_driver: engine.io_driver,
        ring_entries: engine.ring_entries,
        share_listen: engine.share_listen,
    })
}

/// A timeout: greater than zero and at most [`MAX_DURATION`]. Durations are checked when
/// parsed too; this keeps the guarantee for values set in code.
pub(crate) fn check_duration(here: FieldPath, value: Duration) -> Checked<Duration> {
    if value.is_zero() {
        Err(Problem::new(here, "must be greater than 0"))
    } else if value > MAX_DURATION {
        Err(Problem::new(here, "must be at most 365days"))
    } else {
        Ok(value)
    }
}

fn check_timeouts(timeouts: &TimeoutsFile) -> Checked<Timeouts> {
    let check = |key: &str, value: Duration| check_duration(path(&["timeouts", key]), value);
    Ok(Timeouts {
        client_header: check("client_header", timeouts.client_header)?,
        client_keepalive: check("client_keepalive", timeouts.client_keepalive)?,
        client_body: check("client_body", timeouts.client_body)?,
        client_send: check("client_send", timeouts.client_send)?,
        upstream_connect: check("upstream_connect", timeouts.upstream_connect)?,
        upstream_response: check("upstream_response", timeouts.upstream_response)?,
        upstream_idle: check("upstream_idle", timeouts.upstream_idle)?,
        drain: check("drain", timeouts.drain)?,
        lingering_time: check("lingering_time", timeouts.lingering_time)?,
        lingering_timeout: check("lingering_timeout", timeouts.lingering_timeout)?,
        tunnel_idle: check("tunnel_idle", timeouts.tunnel_idle)?,
        tls_handshake: check("tls_handshake", timeouts.tls_handshake)?,
        tcp_idle: check("tcp_idle", timeouts.tcp_idle)?,
        udp_idle: check("udp_idle", timeouts.udp_idle)?,
    })
}

fn check_limits(limits: &LimitsFile) -> Checked<Limits> {
    let head = |key: &str, bytes: u64| -> Checked<usize> {
        if bytes == 0 {
            return Err(Problem::new(
                path(&["limits", key]),
                "must be at least 1 byte",
            ));
        }
        if bytes > MAX_HEAD_LIMIT {
            return Err(Problem::new(
                path(&["limits", key]),
                format!(
                    "must be at most {} (got {bytes} bytes)",
                    format_size(MAX_HEAD_LIMIT)
                ),
            ));
        }
        Ok(usize::try_from(bytes).expect("at most 16MiB fits in usize"))
    };
    if !(1..=MAX_HEADERS).contains(&limits.max_headers) {
        return Err(Problem::new(
            path(&["limits", "max_headers"]),
            format!(
                "must be between 1 and {MAX_HEADERS} (got {})",
                limits.max_headers
            ),
        ));
    }
    if limits.max_connections_per_worker == 0 {
        return Err(Problem::new(
            path(&["limits", "max_connections_per_worker"]),
            "must be at least 1",
        ));
    }
    Ok(Limits {
        max_request_head: head("max_request_head", limits.max_request_head.0)?,
        max_response_head: head("max_response_head", limits.max_response_head.0)?,
        max_headers: limits.max_headers,
        max_uri: head("max_uri", limits.max_uri.0)?,
        max_body: limits.max_body.0,
        min_body_rate: limits.min_body_rate.0,
        max_connections_per_worker: limits.max_connections_per_worker,
        max_connections_per_ip: limits.max_connections_per_ip,
    })
}

fn check_upstreams(
    groups: &[UpstreamFile],
    base: Option<&Path>,
    hosts: &Hosts,
) -> Checked<Vec<UpstreamGroup>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(groups.len());
    for (index, group) in groups.iter().enumerate() {
        let here = path(&["upstream"]).index(index);
        check_name(&group.name, &here.key("name"))?;
        if let Some(first) = seen.insert(&group.name, index) {
            return Err(Problem::new(
                here.key("name"),
                format!(
                    "duplicate upstream group name {:?} (also upstream[{first}])",
                    group.name
                ),
            ));
        }
        if group.servers.is_empty() {
            return Err(Problem::new(here.key("servers"), "must not be empty"));
        }
        let ServerList {
            servers,
            names,
            weights,
            primaries,
            https,
        } = check_servers(group, &here, hosts)?;
        let tls = match (https, &group.tls) {
            (false, Some(_)) => {
                return Err(Problem::new(
                    here.key("tls"),
                    "TLS settings for plain servers: write them as https://host:port",
                ))
            }
            (false, None) => None,
            (true, tls) => Some(check_upstream_tls(
                tls.as_ref().unwrap_or(&UpstreamTlsFile::default()),
                names,
                base,
                &here.key("tls"),
            )?),
        };
        let lb = match &group.lb {
            None => LoadBalancing::default(),
            Some(text) => {
                LoadBalancing::parse(text).map_err(|m| Problem::new(here.key("lb"), m))?
            }
        };
        let (health_check, ejection) = check_health(group, https, &here)?;
        let (circuit_breaker, retry_budget) = check_failure_handling(group, &here)?;
        checked.push(UpstreamGroup {
            name: group.name.clone(),
            servers,
            max_idle_per_server: group.max_idle_per_server,
            tls,
            lb,
            weights,
            primaries,
            health_check,
            ejection,
            slow_start: group.slow_start,
            circuit_breaker,
            retry_budget,
            resolve: group.resolve,
        });
    }
    Ok(checked)
}

/// A group's servers and backups, resolved (a name re-resolved on an interval gives all its
/// addresses), with each one's TLS name and weight.
struct ServerList {
    servers: Vec<SocketAddr>,
    names: Vec<String>,
    weights: Vec<u32>,
    primaries: usize,
    /// Whether they are `https://` servers.
    https: bool,
}

/// `servers`, `backup`, `weights` and `resolve` of a group.
fn check_servers(group: &UpstreamFile, here: &FieldPath, hosts: &Hosts) -> Checked<ServerList> {
    let entry_weights = check_weights(group, here)?;
    let mut servers = Vec::with_capacity(group.servers.len());
    let mut names = Vec::with_capacity(group.servers.len());
    let mut weights = Vec::with_capacity(group.servers.len());
    let mut primaries = 0;
    let mut https = None;
    if let Some(every) = group.resolve {
        if every < Duration::from_millis(100) {
            return Err(Problem::new(here.key("resolve"), "must be at least 100ms"));
        }
    }
    let listed = group
        .servers
        .iter()
        .enumerate()
        .map(|(i, text)| (here.key("servers").index(i), text))
        .chain(
            group
                .backup
                .iter()
                .enumerate()
                .map(|(i, text)| (here.key("backup").index(i), text)),
        );
    for (entry, (at, text)) in listed.enumerate() {
        let (is_https, host_port) = split_scheme(text);
        if *https.get_or_insert(is_https) != is_https {
            return Err(Problem::new(
                at,
                "mixes https:// and plain servers in one group: give each its own group",
            ));
        }
        let mut addresses = resolve(&host_port, hosts).map_err(|m| Problem::new(at.clone(), m))?;
        if group.resolve.is_none() {
            addresses.truncate(1);
        }
        if addresses.iter().any(|a| a.port() == 0) {
            return Err(Problem::new(
                at,
                format!("invalid address {text:?}: port must not be 0"),
            ));
        }
        let host = host_port
            .rsplit_once(':')
            .map_or(&host_port[..], |(h, _)| h);
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        for server in addresses {
            servers.push(server);
            names.push(name.clone());
            weights.push(entry_weights[entry]);
            if entry < group.servers.len() {
                primaries += 1;
            }
        }
    }
    Ok(ServerList {
        servers,
        names,
        weights,
        primaries,
        https: https == Some(true),
    })
}

/// A group's `circuit_breaker` and `retry_budget`.
fn check_failure_handling(
    group: &UpstreamFile,
    here: &FieldPath,
) -> Checked<(CircuitBreaker, RetryBudgetSettings)> {
    let circuit_breaker = check_circuit_breaker(&group.circuit_breaker, here)?;
    let budget = &group.retry_budget;
    if budget.percent > 1000 {
        return Err(Problem::new(
            here.key("retry_budget").key("percent"),
            "must be at most 1000",
        ));
    }
    Ok((
        circuit_breaker,
        RetryBudgetSettings {
            percent: budget.percent,
            min_per_second: budget.min_per_second,
        },
    ))
}

/// `[upstream.circuit_breaker]`.
fn check_circuit_breaker(
    breaker: &CircuitBreakerFile,
    here: &FieldPath,
) -> Checked<CircuitBreaker> {
    let here = here.key("circuit_breaker");
    for (key, value) in [
        ("max_connections", breaker.max_connections),
        ("max_requests", breaker.max_requests),
        (
            "max_connections_per_server",
            breaker.max_connections_per_server,
        ),
        ("max_requests_per_server", breaker.max_requests_per_server),
    ] {
        if value == Some(0) {
            return Err(Problem::new(
                here.key(key),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
    }
    let pending_timeout = match breaker.pending_timeout {
        Some(t) => Some(check_duration(here.key("pending_timeout"), t)?),
        None => None,
    };
    Ok(CircuitBreaker {
        max_connections: breaker.max_connections,
        max_requests: breaker.max_requests,
        max_pending: breaker.max_pending,
        pending_timeout,
        max_connections_per_server: breaker.max_connections_per_server,
        max_requests_per_server: breaker.max_requests_per_server,
    })
}

/// A group's `health_check`, `ejection` and `slow_start`.
fn check_health(
    group: &UpstreamFile,
    https: bool,
    here: &FieldPath,
) -> Checked<(Option<HealthCheck>, Ejection)> {
    let health_check = match &group.health_check {
        Some(check) => Some(check_health_check(check, https, &here.key("health_check"))?),
        None => None,
    };
    let ejection = check_ejection(&group.ejection, &here.key("ejection"))?;
    if group.slow_start > Duration::from_secs(3600) {
        return Err(Problem::new(here.key("slow_start"), "must be at most 1h"));
    }
    Ok((health_check, ejection))
}

/// `[upstream.health_check]`; `https`: whether the group's servers are `https://`.
fn check_health_check(
    check: &HealthCheckFile,
    https: bool,
    here: &FieldPath,
) -> Checked<HealthCheck> {
    let kind = match check.kind.as_str() {
        "http" => {
            if !is_token(&check.method) {
                return Err(Problem::new(
                    here.key("method"),
                    format!("invalid method {:?}", check.method),
                ));
            }
            if !check.path.starts_with('/') || check.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(Problem::new(
                    here.key("path"),
                    format!(
                        "invalid path {:?}: expected an absolute path such as \"/healthz\"",
                        check.path
                    ),
                ));
            }
            if let Some(host) = &check.host {
                if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(Problem::new(
                        here.key("host"),
                        format!("invalid host {host:?}"),
                    ));
                }
            }
            let status = parse_status_range(&check.status).ok_or_else(|| {
                Problem::new(
                    here.key("status"),
                    format!(
                        "invalid status range {:?}: expected \"200\" or \"200-399\" \
                             (100..=599)",
                        check.status
                    ),
                )
            })?;
            CheckKind::Http {
                method: check.method.clone(),
                path: check.path.clone(),
                host: check.host.clone(),
                status,
                body: check.body.clone().filter(|b| !b.is_empty()),
            }
        }
        "tcp" => CheckKind::Tcp,
        "tls" if https => CheckKind::Tls,
        "tls" => {
            return Err(Problem::new(
                here.key("kind"),
                "a TLS check needs https:// servers (use \"tcp\" for plain ones)",
            ))
        }
        other => {
            return Err(Problem::new(
                here.key("kind"),
                format!("unknown check {other:?}: expected http, tcp or tls"),
            ))
        }
    };
    if check.interval < Duration::from_millis(10) || check.interval > Duration::from_secs(3600) {
        return Err(Problem::new(
            here.key("interval"),
            "must be between 10ms and 1h",
        ));
    }
    if check.timeout.is_zero() || check.timeout > Duration::from_secs(3600) {
        return Err(Problem::new(
            here.key("timeout"),
            "must be above 0 and at most 1h",
        ));
    }
    for (name, value) in [("rise", check.rise), ("fall", check.fall)] {
        if !(1..=100).contains(&value) {
            return Err(Problem::new(here.key(name), "must be between 1 and 100"));
        }
    }
    let jitter = check.jitter.unwrap_or(check.interval / 10);
    if jitter > check.interval {
        return Err(Problem::new(
            here.key("jitter"),
            "must be at most the interval",
        ));
    }
    Ok(HealthCheck {
        kind,
        interval: check.interval,
        timeout: check.timeout,
        jitter,
        thresholds: Thresholds {
            rise: check.rise,
            fall: check.fall,
        },
    })
}

/// `"200"` or `"200-399"`, within 100..=599.
fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    ((100..=599).contains(&low) && (low..=599).contains(&high)).then_some((low, high))
}

/// `[upstream.ejection]`.
fn check_ejection(ejection: &EjectionFile, here: &FieldPath) -> Checked<Ejection> {
    if ejection.consecutive_failures > 1000 {
        return Err(Problem::new(
            here.key("consecutive_failures"),
            "must be at most 1000 (0 turns passive checks off)",
        ));
    }
    if ejection.time.is_zero() || ejection.time > Duration::from_secs(3600) {
        return Err(Problem::new(
            here.key("time"),
            "must be above 0 and at most 1h",
        ));
    }
    if ejection.max_time < ejection.time || ejection.max_time > Duration::from_secs(86_400) {
        return Err(Problem::new(
            here.key("max_time"),
            "must be at least `time` and at most 24h",
        ));
    }
    if ejection.max_percent > 100 {
        return Err(Problem::new(here.key("max_percent"), "must be at most 100"));
    }
    Ok(Ejection {
        consecutive: ejection.consecutive_failures,
        base: ejection.time,
        max: ejection.max_time,
        max_percent: ejection.max_percent,
    })
}

/// `weights`, one per server of `servers`; the backups' weights (1 each) follow them.
fn check_weights(group: &UpstreamFile, here: &FieldPath) -> Checked<Vec<u32>> {
    let weights = if group.weights.is_empty() {
        vec![1; group.servers.len()]
    } else if group.weights.len() != group.servers.len() {
        return Err(Problem::new(
            here.key("weights"),
            format!(
                "{} weights for {} servers: give one per server, in the same order",
                group.weights.len(),
                group.servers.len()
            ),
        ));
    } else if let Some(i) = group.weights.iter().position(|&w| w == 0) {
        return Err(Problem::new(
            here.key("weights").index(i),
            "must be at least 1 (remove the server to send it nothing)",
        ));
    } else {
        group.weights.clone()
    };
    Ok(weights
        .into_iter()
        .chain(std::iter::repeat_n(1, group.backup.len()))
        .collect())
}

/// `https://host[:port]` (443 by default), `http://host:port` or `host:port`: whether it is
/// TLS, and `host:port`.
fn split_scheme(text: &str) -> (bool, String) {
    let trimmed = text.trim();
    if let Some(rest) = trimmed.strip_prefix("https://") {
        let rest = rest.trim_end_matches('/');
        let has_port = rest
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && !port.contains(']'));
        return (
            true,
            if has_port {
                rest.to_owned()
            } else {
                format!("{rest}:443")
            },
        );
    }
    let rest = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    (false, rest.trim_end_matches('/').to_owned())
}

/// `[upstream.tls]`, with the files it names read and checked.
fn check_upstream_tls(
    tls: &UpstreamTlsFile,
    names: Vec<String>,
    base: Option<&Path>,
    here: &FieldPath,
) -> Checked<UpstreamTls> {
    let server_names = match &tls.sni {
        Some(sni) => {
            check_tls_name(sni).map_err(|m| Problem::new(here.key("sni"), m))?;
            vec![sni.to_ascii_lowercase(); names.len()]
        }
        None => names,
    };
    for name in &server_names {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(Problem::new(
                here.key("sni"),
                format!("{name:?} is not a name a TLS server can be checked against"),
            ));
        }
    }
    let client_cert = match (&tls.client_cert, &tls.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            file_path(cert, base, &here.key("client_cert"))?,
            file_path(key, base, &here.key("client_key"))?,
        )),
        (Some(_), None) => {
            return Err(Problem::new(
                here.key("client_key"),
                "needed with client_cert",
            ))
        }
        (None, Some(_)) => {
            return Err(Problem::new(
                here.key("client_cert"),
                "needed with client_key",
            ))
        }
    };
    let checked = UpstreamTls {
        server_names,
        ca: tls
            .ca
            .as_deref()
            .map(|ca| file_path(ca, base, &here.key("ca")))
            .transpose()?,
        client_cert,
    };
    crate::tls::upstream_client_config(&checked).map_err(|e| {
        let at = match e.field {
            TlsField::Ca => here.key("ca"),
            TlsField::Cert(_) => here.key("client_cert"),
            TlsField::Key(_) => here.key("client_key"),
            _ => here.clone(),
        };
        Problem::new(at, e.to_string())
    })?;
    Ok(checked)
}

/// What every route's policy is resolved against.
struct RouteSettings<'a> {
    http: (&'a HttpFile, &'a Http),
    timeouts: &'a Timeouts,
    limits: &'a Limits,
}

fn check_routes(
    routes: &[RouteFile],
    upstreams: &[UpstreamGroup],
    settings: &RouteSettings<'_>,
) -> Checked<Vec<Route>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(routes.len());
    for (index, route) in routes.iter().enumerate() {
        let here = path(&["route"]).index(index);
        let name = match &route.name {
            Some(name) => {
                check_name(name, &here.key("name"))?;
                name.clone()
            }
            None => default_route_name(index),
        };
        if let Some(first) = seen.insert(name.clone(), index) {
            return Err(Problem::new(
                here.key("name"),
                format!("duplicate route name {name:?} (also route[{first}])"),
            ));
        }
        checked.push(Route {
            name,
            hosts: check_hosts(route.hosts.as_deref(), &here.key("hosts"))?,
            path_prefix: check_path_prefix(&route.path_prefix, &here.key("path_prefix"))?,
            methods: check_methods(route.methods.as_deref(), &here.key("methods"))?,
            headers: check_headers(&route.headers, &here.key("headers"))?,
            action: check_action(route, upstreams, &here)?,
            policy: check_route_policy(
                route,
                settings.http,
                settings.timeouts,
                settings.limits,
                &here,
            )?,
        });
    }
    Ok(checked)
}

/// Exactly one of `upstream` and `return`.
fn check_action(
    route: &RouteFile,
    upstreams: &[UpstreamGroup],
    here: &FieldPath,
) -> Checked<RouteAction> {
    match (&route.upstream, &route.return_response) {
        (Some(_), Some(_)) => Err(Problem::new(
            here.key("return"),
            "a route either forwards (`upstream`) or answers itself (`return`), not both",
        )),
        (None, None) => Err(Problem::new(
            here.clone(),
            "missing field `upstream` (the group to forward to), or give `return` for a \
             response of the route's own",
        )),
        (Some(upstream), None) => Ok(RouteAction::Forward {
            upstream: find_upstream(upstream, upstreams, &here.key("upstream"))?,
            host_rewrite: match &route.host_rewrite {
                Some(host) => Some(check_host_rewrite(host, &here.key("host_rewrite"))?),
                None => None,
            },
        }),
        (None, Some(ret)) => {
            if route.host_rewrite.is_some() {
                return Err(Problem::new(
                    here.key("host_rewrite"),
                    "only a route that forwards (`upstream`) can rewrite the host",
                ));
            }
            Ok(RouteAction::Return(check_return(ret, &here.key("return"))?))
        }
    }
}

fn check_name(name: &str, here: &FieldPath) -> Checked<()> {
    if name.trim().is_empty() {
        return Err(Problem::new(here.clone(), "must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Problem::new(
            here.clone(),
            format!("{name:?} contains a control character"),
        ));
    }
    Ok(())
}

fn find_upstream(name: &str, upstreams: &[UpstreamGroup], here: &FieldPath) -> Checked<usize> {
    upstreams
        .iter()
        .position(|u| u.name == name)
        .ok_or_else(|| {
            let known: Vec<String> = upstreams.iter().map(|u| format!("{:?}", u.name)).collect();
            let known = if known.is_empty() {
                "there are no [[upstream]] groups".to_owned()
            } else {
                format!("known: {}", known.join(", "))
            };
            Problem::new(
                here.clone(),
                format!("unknown upstream group {name:?} ({known})"),
            )
        })
}

fn check_hosts(hosts: Option<&[String]>, here: &FieldPath) -> Checked<Vec<HostPattern>> {
    let Some(hosts) = hosts else {
        return Ok(Vec::new());
    };
    if hosts.is_empty() {
        return Err(Problem::new(
            here.clone(),
            "must not be empty (leave `hosts` out to match any host)",
        ));
    }
    let mut patterns = Vec::with_capacity(hosts.len());
    for (index, text) in hosts.iter().enumerate() {
        let pattern = parse_host_pattern(text).map_err(|m| Problem::new(here.index(index), m))?;
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    Ok(patterns)
}

/// `example.com` (exact) or `*.example.com` (any subdomain); no port, no other wildcard.
pub(crate) fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("*.") {
        if rest.contains('*') {
            return Err(format!(
                "bad wildcard {text:?}: only one leading \"*.\" is allowed"
            ));
        }
        check_host_name(rest).map_err(|why| format!("invalid host pattern {text:?}: {why}"))?;
        return Ok(HostPattern::Suffix(format!(".{rest}")));
    }
    if lower.contains('*') {
        return Err(format!(
            "bad wildcard {text:?}: a wildcard is only allowed as a leading \"*.\", as in \"*.example.org\""
        ));
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(HostPattern::Exact(lower)),
            Err(_) => Err(format!(
                "invalid host pattern {text:?}: not an IPv6 address"
            )),
        };
    }
    check_host_name(&lower).map_err(|why| format!("invalid host pattern {text:?}: {why}"))?;
    Ok(HostPattern::Exact(lower))
}

fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty host name".to_owned());
    }
    if name.contains(':') {
        return Err("must not include a port (the port is ignored when matching)".to_owned());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or doubled \".\")".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("character {c:?} is not allowed in a host name"));
        }
    }
    Ok(())
}

fn check_path_prefix(prefix: &str, here: &FieldPath) -> Checked<String> {
    if !prefix.starts_with('/') {
        return Err(Problem::new(
            here.clone(),
            format!("{prefix:?} must start with \"/\""),
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        return Err(Problem::new(
            here.clone(),
            format!("{prefix:?}: character {c:?} is not allowed in a path prefix"),
        ));
    }
    Ok(prefix.to_owned())
}

fn check_methods(methods: Option<&[String]>, here: &FieldPath) -> Checked<Vec<String>> {
    let Some(methods) = methods else {
        return Ok(Vec::new());
    };
    if methods.is_empty() {
        return Err(Problem::new(
            here.clone(),
            "must not be empty (leave `methods` out to allow any method)",
        ));
    }
    let mut checked: Vec<String> = Vec::with_capacity(methods.len());
    for (index, method) in methods.iter().enumerate() {
        if !is_token(method) {
            return Err(Problem::new(
                here.index(index),
                format!("invalid method {method:?}: must be an HTTP token like \"GET\""),
            ));
        }
        let upper = method.to_ascii_uppercase();
        if !checked.contains(&upper) {
            checked.push(upper);
        }
    }
    Ok(checked)
}

fn check_headers(
    headers: &std::collections::BTreeMap<String, String>,
    here: &FieldPath,
) -> Checked<Vec<(String, String)>> {
    let mut checked: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let at = here.key(name);
        if !is_token(name) {
            return Err(Problem::new(at, format!("invalid header name {name:?}")));
        }
        let lower = name.to_ascii_lowercase();
        if checked.iter().any(|(n, _)| *n == lower) {
            return Err(Problem::new(
                at,
                format!("duplicate header {name:?} (header names are case-insensitive)"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Problem::new(
                at,
                format!("header value {value:?} contains a control character"),
            ));
        }
        if value.trim_matches([' ', '\t']) != value {
            return Err(Problem::new(
                at,
                format!("header value {value:?} has leading or trailing whitespace, which HTTP strips, so it could never match"),
            ));
        }
        checked.push((lower, value.clone()));
    }
    checked.sort();
    Ok(checked)
}

fn check_host_rewrite(host: &str, here: &FieldPath) -> Checked<String> {
    let bad = host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c));
    if bad {
        return Err(Problem::new(
            here.clone(),
            format!("invalid host {host:?}: expected a Host header value like \"app.internal\" or \"10.0.0.1:8080\""),
        ));
    }
    Ok(host.to_owned())
}

/// Names and their addresses from a hosts file (`/etc/hosts` syntax), looked up before the
/// system resolver.
#[derive(Debug, Default)]
pub(crate) struct Hosts(HashMap<String, Vec<std::net::IpAddr>>);

impl Hosts {
    pub(crate) fn read(file: &Path) -> Result<Hosts, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut hosts: HashMap<String, Vec<std::net::IpAddr>> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(address) = fields.next() else {
                continue;
            };
            let address: std::net::IpAddr = address.parse().map_err(|_| {
                format!(
                    "{}:{}: {address:?} is not an IP address",
                    file.display(),
                    number + 1
                )
            })?;
            for name in fields {
                let entry = hosts.entry(name.to_ascii_lowercase()).or_default();
                if !entry.contains(&address) {
                    entry.push(address);
                }
            }
        }
        Ok(Hosts(hosts))
    }

    fn lookup(&self, host: &str) -> Option<&[std::net::IpAddr]> {
        self.0
            .get(&host.to_ascii_lowercase())
            .map(Vec::as_slice)
            .filter(|a| !a.is_empty())
    }
}

/// A listening address: `ip:port`, or `host:port` through the system resolver (its first
/// address).
fn resolve_first(text: &str) -> Result<SocketAddr, String> {
    resolve(text, &Hosts::default()).map(|all| all[0])
}

/// `ip:port` as is, or `host:port` through the hosts file, else the system resolver: every
/// address, in the resolver's order.
fn resolve(text: &str, hosts: &Hosts) -> Result<Vec<SocketAddr>, String> {
    let trimmed = text.trim();
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    let example = "expected host:port, e.g. \"127.0.0.1:9001\" or \"localhost:9001\"";
    let Some((host, port)) = trimmed.rsplit_once(':') else {
        return Err(format!("invalid address {text:?}: {example}"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("invalid address {text:?}: {example}"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("invalid address {text:?}: bad port {port:?}"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Some(addresses) = hosts.lookup(host) {
        return Ok(addresses
            .iter()
            .map(|&ip| SocketAddr::new(ip, port))
            .collect());
    }
    match (host, port).to_socket_addrs() {
        Ok(addresses) => {
            let mut all: Vec<SocketAddr> = Vec::new();
            for address in addresses {
                if !all.contains(&address) {
                    all.push(address);
                }
            }
            if all.is_empty() {
                return Err(format!("cannot resolve {text:?}: no addresses"));
            }
            Ok(all)
        }
        Err(error) => Err(format!("cannot resolve {text:?}: {error}")),
    }
}
