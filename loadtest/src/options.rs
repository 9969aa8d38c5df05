//! What a run should do: [`LoadOptions`], the library's input, with wrk's defaults.
//!
//! The CLI (`cli.rs`) and the comparison harness both fill a `LoadOptions` and hand it to
//! [`crate::run`]. [`parse_duration`] reads wrk-style durations (`10s`, `500ms`, `2m`, a bare
//! number of seconds) for both.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};

/// Which I/O driver the generator's threads run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// monoio's epoll driver.
    Epoll,
}

/// Everything one load run needs. `Default` gives wrk's defaults against no URL.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Connections kept open, over all threads.
    pub connections: usize,
    /// Generator threads, each with its own runtime (and ring).
    pub threads: usize,
    /// How long requests are sent; responses in flight at the end are still awaited (up to
    /// `timeout`), so that every request sent is accounted for.
    pub duration: Duration,
    /// Extra request headers; a `Host` given here replaces the URL's.
    pub headers: Vec<(String, String)>,
    pub method: String,
    /// Request body; a `Content-Length` is added for it.
    pub body: Option<Vec<u8>>,
    /// Paths used round robin instead of the URL's path (each connection starts at a different
    /// one). Empty: the URL's path.
    pub paths: Vec<String>,
    /// Open loop: this many requests per second over all connections, latency measured from
    /// each request's intended send time. `None`: closed loop, as fast as responses come back.
    pub rate: Option<f64>,
    /// Requests written back to back per connection before reading their responses.
    pub pipeline: usize,
    /// `false`: a new connection for every request, sent with `Connection: close`.
    pub keepalive: bool,
    /// The longest wait for a connection, a write, or the next bytes of a response.
    pub timeout: Duration,
    /// Accept any TLS certificate (self-signed test certificates).
    pub insecure: bool,
    /// Resume TLS sessions on new connections (`false`: a full handshake every time).
    pub tls_resume: bool,
    /// PEM file of trusted CA certificates for https; default: the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// Cores to pin the generator threads to, thread `i` on `cpus[i % len]`. Empty: no pinning.
    pub cpus: Vec<usize>,
    /// Processes whose CPU time and RSS are sampled before and after the run.
    pub pids: Vec<u32>,
    pub io_driver: IoDriver,
    /// Set to stop the run early (Ctrl-C); requests in flight are still awaited.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            url: String::new(),
            connections: 64,
            threads: 1,
            duration: Duration::from_secs(10),
            headers: Vec::new(),
            method: "GET".to_string(),
            body: None,
            paths: Vec::new(),
            rate: None,
            pipeline: 1,
            keepalive: true,
            timeout: Duration::from_secs(2),
            insecure: false,
            tls_resume: true,
            ca_file: None,
            cpus: Vec::new(),
            pids: Vec::new(),
            io_driver: IoDriver::Auto,
            cancel: None,
        }
    }
}

impl LoadOptions {
    /// Checks the combinations that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.connections > 0, "--connections must be at least 1");
        ensure!(self.threads > 0, "--threads must be at least 1");
        ensure!(
            self.connections >= self.threads,
            "--connections ({}) must be at least --threads ({}): every thread needs one",
            self.connections,
            self.threads
        );
        ensure!(self.pipeline > 0, "--pipeline must be at least 1");
        ensure!(
            self.keepalive || self.pipeline == 1,
            "--pipeline needs keep-alive: --no-keepalive sends one request per connection"
        );
        ensure!(!self.timeout.is_zero(), "--timeout must be positive");
        if let Some(rate) = self.rate {
            ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
        }
        ensure!(
            !self.method.is_empty() && self.method.bytes().all(|b| b.is_ascii_alphabetic()),
            "--method must be a token such as GET or POST"
        );
        for (name, value) in &self.headers {
            ensure!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "bad header name {name:?}"
            );
            ensure!(
                !value.contains(['\r', '\n']),
                "header {name} has a line break in its value"
            );
        }
        for p in &self.paths {
            ensure!(
                p.starts_with('/') && !p.contains([' ', '\r', '\n']),
                "path {p:?} must start with / and hold no spaces"
            );
        }
        Ok(())
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let Ok(value) = num.parse::<f64>() else {
        bail!("bad duration {s:?}: expected e.g. 10s, 500ms, 2m");
    };
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("bad duration unit {other:?} in {s:?}: use ms, s, m or h"),
    };
    ensure!(seconds.is_finite() && seconds >= 0.0, "bad duration {s:?}");
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a `Name: value` header as `-H` takes it.
pub fn parse_header(s: &str) -> anyhow::Result<(String, String)> {
    let Some((name, value)) = s.split_once(':') else {
        bail!("header {s:?} must look like \"Name: value\"");
    };
    Ok((name.trim().to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn headers_and_validation() {
        assert_eq!(
            parse_header("X-Test:  a: b ").unwrap(),
            ("X-Test".to_string(), "a: b".to_string())
        );
        assert!(parse_header("nocolon").is_err());
        let ok = LoadOptions {
            url: "http://127.0.0.1/".into(),
            ..LoadOptions::default()
        };
        ok.validate().unwrap();
        let bad = [
            LoadOptions {
                connections: 0,
                ..ok.clone()
            },
            LoadOptions {
                threads: 4,
                connections: 2,
                ..ok.clone()
            },
            LoadOptions {
                pipeline: 4,
                keepalive: false,
                ..ok.clone()
            },
            LoadOptions {
                rate: Some(0.0),
                ..ok.clone()
            },
            LoadOptions {
                method: "GE T".into(),
                ..ok.clone()
            },
            LoadOptions {
                headers: vec![("X".into(), "a\r\nb".into())],
                ..ok.clone()
            },
            LoadOptions {
                paths: vec!["nope".into()],
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }
}
