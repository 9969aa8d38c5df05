//! The URL under load: `http://` or `https://`, host, port, path.
//!
//! [`Target::parse`] accepts what wrk accepts (`http://127.0.0.1:8080/index.html`,
//! `https://localhost/`, `http://[::1]:8080`) and keeps the authority as written for the `Host`
//! header; [`Target::socket_addr`] resolves it once before the run, so no connection pays for a
//! lookup.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

/// http or https.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed target URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// Host without brackets (`::1`, `127.0.0.1`, `localhost`): what TLS verifies.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as the `Host` header carries it (the port only when not the default).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            bail!("URL must start with http:// or https://: {url}");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            bail!("user info in URLs is not supported: {url}");
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let end = bracketed
                .find(']')
                .with_context(|| format!("unclosed [ in {url}"))?;
            let host = &bracketed[..end];
            let port = match &bracketed[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("bad port in {url}"))?,
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().with_context(|| format!("bad port in {url}"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            bail!("no host in {url}");
        }
        Ok(Target {
            scheme,
            host,
            port,
            authority: authority.to_string(),
            path: path.replace(' ', "%20"),
        })
    }

    /// Resolves host and port to the first address.
    pub fn socket_addr(&self) -> anyhow::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .with_context(|| format!("{} resolves to no address", self.host))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let t = Target::parse("http://127.0.0.1:8080/index.html?x=1").unwrap();
        assert_eq!(
            (
                t.scheme,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (
                Scheme::Http,
                "127.0.0.1",
                8080,
                "127.0.0.1:8080",
                "/index.html?x=1"
            )
        );
        let t = Target::parse("https://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        let t = Target::parse("http://[::1]:9000?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9000, "/?q")
        );
        assert_eq!(t.to_string(), "http://[::1]:9000/?q");
        assert_eq!(
            Target::parse("http://127.0.0.1:1/")
                .unwrap()
                .socket_addr()
                .unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
    }

    #[test]
    fn rejects_what_it_cannot_load() {
        for bad in [
            "ftp://x/",
            "127.0.0.1:80",
            "http://:80/",
            "http://h:port/",
            "http://u@h/",
            "http://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
