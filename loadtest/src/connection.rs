//! One client connection's life: connect, send, read responses, record, reconnect.
//!
//! [`drive`] runs as a monoio task on a generator thread for the whole run. Closed loop, it
//! writes `pipeline` requests at once and reads their responses, again and again; open loop
//! (`--rate`), it waits for the intended send time of the next request on its [`Schedule`]
//! (sending at once when late), and records each latency from that intended time. Without
//! keep-alive, each request gets a fresh connection (and, on https, a fresh handshake). Every
//! outcome lands in the thread's [`ThreadStats`]; a failure is counted by kind and the
//! connection is replaced. At the end of the run no new request is sent, but responses already
//! due are still read, so that every request sent is either answered or counted as an error.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::timeout;
use rustls::pki_types::ServerName;

use crate::latency::LatencyRecorder;
use crate::pacing::Schedule;
use crate::report::{ErrorCounts, StatusCounts};
use crate::request::RequestSet;
use crate::response::ResponseReader;

/// Bytes asked for by each read.
const READ_BUFFER: usize = 64 * 1024;
/// Pause after a failed connect, so that a dead target is not hammered in a tight loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What every connection of the run shares (read-only).
pub(crate) struct Plan {
    pub addr: SocketAddr,
    pub requests: RequestSet,
    pub tls: Option<(monoio_rustls::TlsConnector, ServerName<'static>)>,
    pub connections: usize,
    pub pipeline: usize,
    pub keepalive: bool,
    pub timeout: Duration,
    pub rate: Option<f64>,
    /// When the first request may go; the schedule of an open-loop run counts from here.
    pub start: Instant,
    /// No request is sent at or after this.
    pub deadline: Instant,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Plan {
    fn stopped(&self) -> bool {
        Instant::now() >= self.deadline
            || self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// One generator thread's counts.
#[derive(Debug, Default)]
pub(crate) struct ThreadStats {
    pub latency: LatencyRecorder,
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub connections_opened: u64,
    pub status: StatusCounts,
    pub errors: ErrorCounts,
    pub last_response: Option<Instant>,
}

type Stats = Rc<RefCell<ThreadStats>>;

/// How a session on one connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// Open another connection and go on.
    Reconnect,
    /// The run is over.
    Stop,
}

/// What a connection keeps across reconnects.
struct ConnectionState {
    schedule: Option<Schedule>,
    /// Round-robin position in the request set.
    next_request: usize,
    buf: Vec<u8>,
}

/// Drives connection `index` of the run until the deadline.
pub(crate) async fn drive(plan: Arc<Plan>, index: usize, stats: Stats) {
    let mut conn = ConnectionState {
        schedule: plan
            .rate
            .map(|rate| Schedule::new(rate, plan.connections, index)),
        next_request: index,
        buf: Vec::with_capacity(READ_BUFFER),
    };
    loop {
        if plan.stopped() {
            return;
        }
        // Open loop without keep-alive: connecting is part of the request, so wait first.
        if !plan.keepalive {
            if let Some(s) = &conn.schedule {
                sleep_until((plan.start + s.next()).min(plan.deadline)).await;
                if plan.stopped() {
                    return;
                }
            }
        }
        let Ok(Ok(tcp)) = timeout(plan.timeout, TcpStream::connect_addr(plan.addr)).await else {
            stats.borrow_mut().errors.connect += 1;
            monoio::time::sleep(CONNECT_RETRY_PAUSE).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let end = match &plan.tls {
            None => {
                stats.borrow_mut().connections_opened += 1;
                session(&plan, &mut conn, tcp, &stats).await
            }
            Some((connector, name)) => {
                let handshake = timeout(plan.timeout, connector.connect(name.clone(), tcp)).await;
                let Ok(Ok(tls)) = handshake else {
                    stats.borrow_mut().errors.connect += 1;
                    monoio::time::sleep(CONNECT_RETRY_PAUSE).await;
                    continue;
                };
                stats.borrow_mut().connections_opened += 1;
                session(&plan, &mut conn, tls, &stats).await
            }
        };
        if end == SessionEnd::Stop {
            return;
        }
    }
}

async fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        monoio::time::sleep(t - now).await;
    }
}

/// Requests and responses on one open connection.
async fn session<S: AsyncReadRent + AsyncWriteRent>(
    plan: &Plan,
    conn: &mut ConnectionState,
    mut stream: S,
    stats: &Stats,
) -> SessionEnd {
    let mut reader = ResponseReader::new(plan.requests.head_method);
    let mut intended: VecDeque<Instant> = VecDeque::with_capacity(plan.pipeline);
    sleep_until(plan.start).await;
    loop {
        if plan.stopped() {
            return SessionEnd::Stop;
        }
        // Which requests go now, and when each was meant to go.
        if let Some(schedule) = &mut conn.schedule {
            let next = plan.start + schedule.next();
            if next > Instant::now() {
                sleep_until(next.min(plan.deadline)).await;
                if plan.stopped() {
                    return SessionEnd::Stop;
                }
            }
            let now = Instant::now().saturating_duration_since(plan.start);
            intended.extend(
                schedule
                    .take_due(now, plan.pipeline)
                    .into_iter()
                    .map(|d| plan.start + d),
            );
            if intended.is_empty() {
                // Woken a little early: wait again.
                continue;
            }
        } else {
            intended.extend(std::iter::repeat_n(Instant::now(), plan.pipeline));
        }
        let count = intended.len();
        let batch = plan.requests.batch(conn.next_request, count);
        conn.next_request += count;
        let len = batch.len() as u64;
        match timeout(plan.timeout, stream.write_all(batch)).await {
            Ok((Ok(_), _)) => stats.borrow_mut().bytes_written += len,
            Ok((Err(_), _)) => {
                stats.borrow_mut().errors.write += count as u64;
                return SessionEnd::Reconnect;
            }
            Err(_) => {
                stats.borrow_mut().errors.timeout += count as u64;
                return SessionEnd::Reconnect;
            }
        }
        match read_responses(plan, conn, &mut stream, &mut reader, &mut intended, stats).await {
            Ok(true) if plan.keepalive => {}
            Ok(_) | Err(()) => return SessionEnd::Reconnect,
        }
    }
}

/// Reads until every request in `intended` is answered. `Ok(keep_alive)` on success; `Err` when
/// the connection failed, with the unanswered requests counted as errors.
async fn read_responses<S: AsyncReadRent>(
    plan: &Plan,
    conn: &mut ConnectionState,
    stream: &mut S,
    reader: &mut ResponseReader,
    intended: &mut VecDeque<Instant>,
    stats: &Stats,
) -> Result<bool, ()> {
    while !intended.is_empty() {
        let buf = std::mem::take(&mut conn.buf);
        let Ok((result, buf)) = timeout(plan.timeout, stream.read(buf)).await else {
            // The cancelled read took the buffer with it.
            conn.buf = Vec::with_capacity(READ_BUFFER);
            stats.borrow_mut().errors.timeout += intended.len() as u64;
            intended.clear();
            return Err(());
        };
        conn.buf = buf;
        let now = Instant::now();
        let Ok(n) = result else {
            stats.borrow_mut().errors.read += intended.len() as u64;
            intended.clear();
            return Err(());
        };
        let mut s = stats.borrow_mut();
        if n == 0 {
            // Closed: a close-delimited body ends here; anything else still due is lost.
            if let Ok(Some(resp)) = reader.finish_at_eof() {
                record(&mut s, intended, resp.status, now);
            }
            s.errors.read += intended.len() as u64;
            intended.clear();
            return Err(());
        }
        s.bytes_read += n as u64;
        let mut off = 0;
        while off < n {
            match reader.feed(&conn.buf[off..n]) {
                Ok((used, Some(resp))) => {
                    off += used;
                    if intended.is_empty() {
                        // An answer to nothing we asked: the server is confused.
                        s.errors.protocol += 1;
                        return Err(());
                    }
                    record(&mut s, intended, resp.status, now);
                    if !resp.keep_alive {
                        s.errors.read += intended.len() as u64;
                        intended.clear();
                        return Ok(false);
                    }
                }
                Ok((_, None)) => break,
                Err(_) => {
                    s.errors.protocol += intended.len() as u64;
                    intended.clear();
                    return Err(());
                }
            }
        }
    }
    Ok(true)
}

/// Counts one response to the oldest outstanding request, completed at `now`.
fn record(s: &mut ThreadStats, intended: &mut VecDeque<Instant>, status: u16, now: Instant) {
    if let Some(t) = intended.pop_front() {
        s.latency.record(now.saturating_duration_since(t));
    }
    s.requests += 1;
    s.status.count(status);
    s.last_response = Some(now);
}
