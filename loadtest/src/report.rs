//! What a run measured: [`LoadReport`], serialisable for `--json`, and its wrk-like text form.
//!
//! The report carries the throughput, the latency summary, responses by status class
//! ([`StatusCounts`]), failures by kind ([`ErrorCounts`]), the CPU and RSS of every `--pid`
//! process, and the generator's own CPU so that a reader can see it was not the bottleneck.
//! [`LoadReport::to_text`] prints it the way wrk does, with the extra lines after.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::latency::{format_us, LatencySummary};
use crate::process_usage::{ClockTicks, ProcessUsage};

/// Responses by status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub s1xx: u64,
    pub s2xx: u64,
    pub s3xx: u64,
    pub s4xx: u64,
    pub s5xx: u64,
    /// Status codes outside 100..=599.
    pub other: u64,
}

impl StatusCounts {
    pub fn count(&mut self, status: u16) {
        match status {
            100..=199 => self.s1xx += 1,
            200..=299 => self.s2xx += 1,
            300..=399 => self.s3xx += 1,
            400..=499 => self.s4xx += 1,
            500..=599 => self.s5xx += 1,
            _ => self.other += 1,
        }
    }

    pub fn merge(&mut self, o: &StatusCounts) {
        self.s1xx += o.s1xx;
        self.s2xx += o.s2xx;
        self.s3xx += o.s3xx;
        self.s4xx += o.s4xx;
        self.s5xx += o.s5xx;
        self.other += o.other;
    }

    /// Responses that were neither 2xx nor 3xx (wrk's "Non-2xx or 3xx responses").
    pub fn non_2xx_3xx(&self) -> u64 {
        self.s1xx + self.s4xx + self.s5xx + self.other
    }
}

/// Failed requests and connections, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Connections (or TLS handshakes) that failed.
    pub connect: u64,
    /// Reads that failed, or a connection closed while responses were still due.
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Requests that got no response (or no next bytes of one) within `--timeout`.
    pub timeout: u64,
    /// Responses that were not valid HTTP/1.1.
    pub protocol: u64,
}

impl ErrorCounts {
    pub fn merge(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.protocol += o.protocol;
    }

    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.protocol
    }
}

/// The generator's own CPU use during the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorUsage {
    pub cpu_seconds: f64,
    /// Percent of one core; 100 × threads means the generator was saturated.
    pub cpu_percent: f64,
    pub cpu_us_per_request: Option<f64>,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub url: String,
    pub method: String,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub keepalive: bool,
    /// Target rate of an open-loop run, requests/s.
    pub rate: Option<f64>,
    /// The I/O driver the generator ran on.
    pub io_driver: String,
    /// The configured duration, seconds.
    pub duration_seconds: f64,
    /// From the start until the last response (or the end of the duration), seconds.
    pub elapsed_seconds: f64,
    /// Complete responses, whatever their status.
    pub requests: u64,
    pub requests_per_second: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes read per second, MiB.
    pub read_mib_per_second: f64,
    pub connections_opened: u64,
    pub latency: LatencySummary,
    /// Share of responses within mean ± one standard deviation (wrk's "+/- Stdev"), percent.
    pub latency_within_stdev_percent: f64,
    pub status: StatusCounts,
    pub errors: ErrorCounts,
    pub clock_ticks: ClockTicks,
    /// One entry per `--pid`.
    pub processes: Vec<ProcessUsage>,
    pub generator: GeneratorUsage,
}

impl LoadReport {
    /// Sum of the `--pid` processes' CPU µs per request (a proxy's master and workers together).
    pub fn target_cpu_us_per_request(&self) -> Option<f64> {
        self.processes
            .iter()
            .map(|p| p.cpu_us_per_request)
            .sum::<Option<f64>>()
    }

    /// Sum of the `--pid` processes' CPU µs per MiB moved.
    pub fn target_cpu_us_per_mib(&self) -> Option<f64> {
        self.processes.iter().map(|p| p.cpu_us_per_mib).sum()
    }

    /// The wrk-style text report; with `latency_table`, the percentile table too.
    pub fn to_text(&self, latency_table: bool) -> String {
        let mut out = String::new();
        let l = &self.latency;
        let mode = match self.rate {
            Some(r) => format!("open loop at {r:.0} requests/s, latency from intended send times"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "Running {:.0}s test @ {}",
            self.duration_seconds, self.url
        );
        let _ = writeln!(
            out,
            "  {} threads and {} connections ({mode}; {}{}{})",
            self.threads,
            self.connections,
            self.io_driver,
            if self.pipeline > 1 {
                format!("; pipeline {}", self.pipeline)
            } else {
                String::new()
            },
            if self.keepalive {
                ""
            } else {
                "; new connection per request"
            },
        );
        let _ = writeln!(out, "  Thread Stats   Avg      Stdev     Max   +/- Stdev");
        let _ = writeln!(
            out,
            "    Latency {:>9} {:>9} {:>9} {:>8.2}%",
            format_us(l.mean_us),
            format_us(l.stdev_us),
            format_us(l.max_us as f64),
            self.latency_within_stdev_percent
        );
        if latency_table {
            let _ = writeln!(out, "  Latency Distribution");
            for (name, v) in [
                ("50.000%", l.p50_us),
                ("75.000%", l.p75_us),
                ("90.000%", l.p90_us),
                ("99.000%", l.p99_us),
                ("99.900%", l.p999_us),
                ("99.990%", l.p9999_us),
                ("100.000%", l.max_us),
            ] {
                let _ = writeln!(out, "  {name:>9} {:>10}", format_us(v as f64));
            }
        }
        let _ = writeln!(
            out,
            "  {} requests in {:.2}s, {} read",
            self.requests,
            self.elapsed_seconds,
            format_bytes(self.bytes_read)
        );
        let e = &self.errors;
        if e.total() > 0 {
            let _ = writeln!(
                out,
                "  Socket errors: connect {}, read {}, write {}, timeout {}, protocol {}",
                e.connect, e.read, e.write, e.timeout, e.protocol
            );
        }
        let s = &self.status;
        let _ = writeln!(
            out,
            "  Status: 2xx {}, 3xx {}, 4xx {}, 5xx {}{}",
            s.s2xx,
            s.s3xx,
            s.s4xx,
            s.s5xx,
            if s.s1xx + s.other > 0 {
                format!(", other {}", s.s1xx + s.other)
            } else {
                String::new()
            }
        );
        if s.non_2xx_3xx() > 0 {
            let _ = writeln!(out, "  Non-2xx or 3xx responses: {}", s.non_2xx_3xx());
        }
        let _ = writeln!(out, "Requests/sec: {:>10.2}", self.requests_per_second);
        let _ = writeln!(
            out,
            "Transfer/sec: {:>10}",
            format_bytes((self.read_mib_per_second * 1024.0 * 1024.0) as u64)
        );
        self.write_usage(&mut out);
        out
    }
}

impl LoadReport {
    /// The `--pid` processes' and the generator's CPU lines.
    fn write_usage(&self, out: &mut String) {
        for p in &self.processes {
            let _ = writeln!(
                out,
                "Process {} ({}, {} threads): CPU {:.2}s ({:.1}% of a core), {} CPU us/request, {} CPU us/MiB, RSS {} -> {}",
                p.pid,
                p.name,
                p.threads,
                p.cpu_seconds,
                p.cpu_percent,
                opt2(p.cpu_us_per_request),
                opt2(p.cpu_us_per_mib),
                format_bytes(p.rss_before_kib * 1024),
                format_bytes(p.rss_after_kib * 1024),
            );
        }
        if self.processes.len() > 1 {
            let _ = writeln!(
                out,
                "Processes together: {} CPU us/request, {} CPU us/MiB",
                opt2(self.target_cpu_us_per_request()),
                opt2(self.target_cpu_us_per_mib())
            );
        }
        let g = &self.generator;
        let _ = writeln!(
            out,
            "Generator: CPU {:.2}s ({:.1}% of a core over {} thread(s)), {} CPU us/request",
            g.cpu_seconds,
            g.cpu_percent,
            self.threads,
            opt2(g.cpu_us_per_request)
        );
        if self.clock_ticks.assumed {
            let _ = writeln!(
                out,
                "(getconf CLK_TCK failed: CPU times assume 100 clock ticks per second)"
            );
        }
    }
}

fn opt2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// `12.34MB`-style sizes (binary units, as wrk prints them).
pub fn format_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let n = n as f64;
    if n < K {
        format!("{n:.0}B")
    } else if n < K * K {
        format!("{:.2}KB", n / K)
    } else if n < K * K * K {
        format!("{:.2}MB", n / (K * K))
    } else {
        format!("{:.2}GB", n / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_and_errors() {
        let mut s = StatusCounts::default();
        for code in [200, 204, 301, 404, 503, 100, 99, 600] {
            s.count(code);
        }
        assert_eq!(
            (s.s2xx, s.s3xx, s.s4xx, s.s5xx, s.s1xx, s.other),
            (2, 1, 1, 1, 1, 2)
        );
        assert_eq!(s.non_2xx_3xx(), 5);
        let mut t = StatusCounts::default();
        t.merge(&s);
        t.merge(&s);
        assert_eq!(t.s2xx, 4);
        let mut e = ErrorCounts {
            connect: 1,
            read: 2,
            write: 3,
            timeout: 4,
            protocol: 5,
        };
        e.merge(&e.clone());
        assert_eq!(e.total(), 30);
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_bytes(1536), "1.50KB");
        assert_eq!(format_bytes(3 * 1024 * 1024), "3.00MB");
    }
}
