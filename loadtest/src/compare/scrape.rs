//! Scrapes ringwall's `/metrics` every second while the comparison runs, as a Prometheus
//! server would (more often than its usual 15 s): ringwall is measured with its metrics on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often `/metrics` is read.
const EVERY: Duration = Duration::from_secs(1);

pub struct Scraper {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    /// Starts scraping `127.0.0.1:port/metrics`.
    pub fn start(port: u16) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, scrapes) = (stop.clone(), scrapes.clone());
            std::thread::spawn(move || {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                while !stop.load(Ordering::Relaxed) {
                    if scrape(addr).is_ok_and(|ok| ok) {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(EVERY);
                }
            })
        };
        Scraper {
            stop,
            scrapes,
            thread: Some(thread),
        }
    }

    /// Stops scraping; returns how many scrapes got a `200`.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.scrapes.load(Ordering::Relaxed)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `GET /metrics`; whether it answered 200.
fn scrape(addr: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response.starts_with(b"HTTP/1.1 200"))
}
