//! The comparison's scenarios and proxies, and which proxy supports which scenario.
//!
//! A [`Scenario`] names one workload (small keep-alive GETs at 16 or 256 connections, the same
//! at a fixed rate, 4 KiB / 64 KiB responses, 1 MiB uploads, a new connection per request, TLS 1.3
//! termination, L4 forwarding of 1 MiB bodies, idle connections), the listener it goes through
//! ([`Listener`]) and the figure that decides it ([`Figure`]). [`Proxy::supports`] is the one
//! table of what ringwall can do today: a scenario it does not support is reported as "not
//! supported", never run against something else. Update it when ringwall gains TLS or L4.

use std::fmt;

/// A proxy under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proxy {
    Ringwall,
    Nginx,
    Haproxy,
}

impl Proxy {
    /// In the order they run within a round (A B C).
    pub const ALL: [Proxy; 3] = [Proxy::Ringwall, Proxy::Nginx, Proxy::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Proxy::Ringwall => "ringwall",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "HAProxy",
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The proxy listener a scenario's load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Plain HTTP/1.1 reverse proxy.
    Http,
    /// TLS 1.3 termination, then HTTP/1.1 to the origin.
    Tls,
    /// TCP forwarding (nginx `stream`, HAProxy `mode tcp`).
    L4,
}

/// The figure a scenario is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    CpuPerRequest,
    CpuPerMib,
    /// Open-loop latency percentiles (and CPU per request).
    Latency,
    /// RSS growth per idle connection.
    RssPerConnection,
}

/// One workload of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    Small16,
    SmallLogged,
    Small256,
    SmallRate,
    Body4k,
    Body64k,
    Post1m,
    NewConnection,
    Tls,
    TlsHandshake,
    L4Body1m,
    Idle,
}

impl Scenario {
    pub const ALL: [Scenario; 12] = [
        Scenario::Small16,
        Scenario::SmallLogged,
        Scenario::Small256,
        Scenario::SmallRate,
        Scenario::Body4k,
        Scenario::Body64k,
        Scenario::Post1m,
        Scenario::NewConnection,
        Scenario::Tls,
        Scenario::TlsHandshake,
        Scenario::L4Body1m,
        Scenario::Idle,
    ];

    /// The name `--scenarios` takes.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Small16 => "small-16",
            Scenario::SmallLogged => "small-16-log",
            Scenario::Small256 => "small-256",
            Scenario::SmallRate => "small-rate",
            Scenario::Body4k => "body-4k",
            Scenario::Body64k => "body-64k",
            Scenario::Post1m => "post-1m",
            Scenario::NewConnection => "new-conn",
            Scenario::Tls => "tls",
            Scenario::TlsHandshake => "tls-new",
            Scenario::L4Body1m => "l4-1m",
            Scenario::Idle => "idle",
        }
    }

    /// One line on what it measures.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Small16 => "GET 12-byte body, keep-alive, closed loop, 16 connections",
            Scenario::SmallLogged => {
                "small-16 with an access log line per request, to a file (nginx and ringwall buffered 16 KiB / 100 ms, HAProxy to stdout)"
            }
            Scenario::Small256 => "GET 12-byte body, keep-alive, closed loop, 256 connections",
            Scenario::SmallRate => {
                "GET 12-byte body, keep-alive, fixed rate (open loop), 64 connections"
            }
            Scenario::Body4k => "GET 4 KiB static file, keep-alive, 64 connections",
            Scenario::Body64k => "GET 64 KiB static file, keep-alive, 64 connections",
            Scenario::Post1m => "POST 1 MiB body, keep-alive, 16 connections",
            Scenario::NewConnection => {
                "GET 12-byte body, a new connection per request (Connection: close), 16 connections"
            }
            Scenario::Tls => "GET 12-byte body over TLS 1.3 (P-256), keep-alive, 64 connections",
            Scenario::TlsHandshake => {
                "GET 12-byte body over TLS 1.3 (P-256), a new connection and a full handshake per request, 16 connections"
            }
            Scenario::L4Body1m => {
                "GET 1 MiB through TCP (L4) forwarding, keep-alive, 16 connections"
            }
            Scenario::Idle => "N idle keep-alive connections, one request each: RSS per connection",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn listener(self) -> Listener {
        match self {
            Scenario::Tls | Scenario::TlsHandshake => Listener::Tls,
            Scenario::L4Body1m => Listener::L4,
            _ => Listener::Http,
        }
    }

    pub fn figure(self) -> Figure {
        match self {
            Scenario::Post1m | Scenario::L4Body1m | Scenario::Body64k => Figure::CpuPerMib,
            Scenario::SmallRate => Figure::Latency,
            Scenario::Idle => Figure::RssPerConnection,
            _ => Figure::CpuPerRequest,
        }
    }

    /// Origin path the load asks for.
    pub fn path(self) -> &'static str {
        match self {
            Scenario::Body4k => "/4k",
            Scenario::Body64k => "/64k",
            Scenario::L4Body1m => "/1m",
            Scenario::Post1m => "/upload",
            _ => "/",
        }
    }

    /// Client connections of a load run (the idle scenario takes `--idle-connections`).
    pub fn connections(self) -> usize {
        match self {
            Scenario::Small16
            | Scenario::SmallLogged
            | Scenario::Post1m
            | Scenario::NewConnection
            | Scenario::TlsHandshake
            | Scenario::L4Body1m => 16,
            Scenario::Small256 => 256,
            _ => 64,
        }
    }
}

/// Parses `--scenarios a,b,c` (or `all`).
pub fn parse_list(list: &str) -> Result<Vec<Scenario>, String> {
    if list.trim() == "all" {
        return Ok(Scenario::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s = Scenario::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario {name:?}; known: {}", known.join(", "))
        })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err("no scenario given".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lists_parse() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
            assert!(!s.description().is_empty());
        }
        assert_eq!(
            parse_list("small-16, tls,small-16").unwrap(),
            vec![Scenario::Small16, Scenario::Tls]
        );
        assert_eq!(parse_list("all").unwrap().len(), Scenario::ALL.len());
        assert!(parse_list("nope").unwrap_err().contains("small-16"));
        assert!(parse_list(",").is_err());
    }
}
