//! The idle-connection scenario: how much memory a proxy spends on a keep-alive client
//! connection that does nothing.
//!
//! [`measure`] samples the proxy's RSS, opens N connections one after another, sends one request
//! on each and reads its response (so that every connection went through the proxy's whole
//! request path and holds whatever buffers it keeps), waits a second with all of them idle,
//! samples RSS again, and closes them with a reset (`SO_LINGER` 0, so that tens of thousands of
//! closes across rounds leave no `TIME_WAIT` behind to exhaust local ports). Plain blocking
//! sockets: only memory is measured here, not speed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::process_usage::ProcessSample;
use crate::response::ResponseReader;

/// What holding the connections cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdleResult {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl IdleResult {
    /// RSS growth per connection, bytes (negative growth counts as none).
    pub fn bytes_per_connection(&self) -> f64 {
        if self.connections == 0 {
            return 0.0;
        }
        (self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024) as f64
            / self.connections as f64
    }
}

fn rss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for &pid in pids {
        total += ProcessSample::take(pid)
            .with_context(|| format!("sampling process {pid}"))?
            .rss_kib;
    }
    Ok(total)
}

/// Opens `n` connections to `addr`, one request each, holds them idle and samples `pids`.
pub fn measure(
    addr: SocketAddr,
    n: usize,
    pids: &[u32],
    cancel: &AtomicBool,
) -> anyhow::Result<IdleResult> {
    let rss_before_kib = rss_kib(pids)?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut held = Vec::with_capacity(n);
    let mut buf = vec![0u8; 16 * 1024];
    for i in 0..n {
        if cancel.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("idle connection {i} of {n} to {addr}"))?;
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        let mut reader = ResponseReader::new(false);
        'response: loop {
            let got = stream
                .read(&mut buf)
                .with_context(|| format!("reading the response on idle connection {i}"))?;
            if got == 0 {
                bail!("{addr} closed idle connection {i} before answering");
            }
            let mut off = 0;
            while off < got {
                let (used, done) = reader.feed(&buf[off..got])?;
                off += used;
                if let Some(resp) = done {
                    if !(200..300).contains(&resp.status) || !resp.keep_alive {
                        bail!(
                            "idle connection {i}: status {} (keep-alive {})",
                            resp.status,
                            resp.keep_alive
                        );
                    }
                    break 'response;
                }
            }
        }
        held.push(stream);
    }
    // Let the proxy settle (lazily freed buffers, deferred work) before sampling.
    thread::sleep(Duration::from_secs(1));
    let rss_after_kib = rss_kib(pids)?;
    drop(held);
    Ok(IdleResult {
        connections: n,
        rss_before_kib,
        rss_after_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_arithmetic() {
        let r = IdleResult {
            connections: 1000,
            rss_before_kib: 1000,
            rss_after_kib: 1146,
        };
        assert!((r.bytes_per_connection() - 149.504).abs() < 1e-9);
        let shrank = IdleResult {
            rss_after_kib: 900,
            ..r
        };
        assert!(shrank.bytes_per_connection().abs() < f64::EPSILON);
    }
}
