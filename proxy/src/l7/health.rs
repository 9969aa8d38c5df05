//! Active health checks: one worker checks each group's servers (the group's index modulo the
//! number of workers picks it), decides by the group's rise and fall thresholds
//! (`ringwall_policies::health::Checked`), applies every change at once, and the worker posts
//! it to the others on the message path at its next tick.
//!
//! A check is a connection (TCP, or TLS for `https://` servers), and for `http` checks one
//! request with `Connection: close` whose status (and, if asked, body) decides. Checks are
//! not pooled and not counted as the server's connects: `/metrics` counts them apart.

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use ringwall_policies::balance::Rng;
use ringwall_policies::health::{next_check, Checked};

use super::transport::{IoFailure, ReadSize};
use super::upstream::Dialer;
use super::Worker;
use crate::config::{CheckKind, Config, HealthCheck};
use crate::http1::{parse_response, Method};

/// How much of a response body an `http` check reads to find the text it expects.
const BODY_WINDOW: usize = 64 * 1024;

/// Starts the checks this worker runs for `config`'s groups: those whose index modulo
/// `workers` is `worker_id`. Each server gets a task of its own; it ends when its generation
/// is no longer the newest (the next one checks anew, from the health it kept) or the worker
/// drains.
pub fn start_checks<D: Dialer>(
    worker: &Rc<Worker<D>>,
    config: &Config,
    worker_id: usize,
    workers: usize,
) {
    for (group, settings) in config.upstreams.iter().enumerate() {
        let Some(check) = &settings.health_check else {
            continue;
        };
        if group % workers.max(1) != worker_id {
            continue;
        }
        for position in 0..settings.servers.len() {
            let server = worker.upstreams.server_of(group, position);
            let seed = seed(worker_id, group, position);
            monoio::spawn(check_server(
                Rc::downgrade(worker),
                server,
                check.clone(),
                Rng::new(seed),
            ));
        }
    }
}

fn seed(worker: usize, group: usize, position: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((worker as u64) << 48) ^ ((group as u64) << 24) ^ position as u64
}

/// Checks one server until its generation is replaced or the worker drains.
async fn check_server<D: Dialer>(
    worker: Weak<Worker<D>>,
    server: usize,
    check: HealthCheck,
    mut rng: Rng,
) {
    let Some(drain) = worker.upgrade().map(|w| w.drain.clone()) else {
        return;
    };
    let mut state: Option<Checked> = None;
    // The first check soon after the start, spread over the jitter (at least 1 ms).
    let spread = u64::try_from(check.jitter.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1_000_000);
    let mut wait = Duration::from_nanos(rng.next_u64() % spread);
    loop {
        monoio::select! {
            () = monoio::time::sleep(wait) => {}
            () = drain.wait() => return,
        }
        let Some(worker) = worker.upgrade() else {
            return;
        };
        if !worker.is_newest() || worker.drain.is_draining() {
            return;
        }
        let upstreams = &worker.upstreams;
        let state = state.get_or_insert_with(|| Checked::new(upstreams.is_up(server)));
        let outcome = run_check(&worker, server, &check).await;
        let counters = upstreams.stats(server);
        crate::metrics::ServerStats::count(&counters.checks);
        if outcome.is_err() {
            crate::metrics::ServerStats::count(&counters.check_failures);
        }
        if let Some(up) = state.record(outcome.is_ok(), check.thresholds) {
            let group = upstreams.group_of(server);
            let group = upstreams.group_name(group);
            let label = upstreams.label(server);
            if up {
                crate::metrics::ServerStats::count(&counters.went_up);
                tracing::info!(upstream = %group, server = label, "upstream server is up again");
            } else {
                crate::metrics::ServerStats::count(&counters.went_down);
                let reason = outcome.as_ref().err().map_or("", String::as_str);
                tracing::warn!(upstream = %group, server = label, reason, "upstream server is down");
            }
            upstreams.set_up(server, up, Instant::now());
        }
        wait = next_check(check.interval, check.jitter, &mut rng);
    }
}

/// One check of `server`: `Ok` when it passes, else why not.
async fn run_check<D: Dialer>(
    worker: &Worker<D>,
    server: usize,
    check: &HealthCheck,
) -> Result<(), String> {
    let upstreams = &worker.upstreams;
    let started = Instant::now();
    let left = || check.timeout.saturating_sub(started.elapsed());
    let tls = !matches!(check.kind, CheckKind::Tcp);
    let mut conn = upstreams
        .dial_check(server, tls, check.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let CheckKind::Http {
        method,
        path,
        host,
        status,
        body,
    } = &check.kind
    else {
        return Ok(());
    };
    let host = host.clone().unwrap_or_else(|| upstreams.host_name(server));
    let out = conn.out.buf();
    for piece in [
        method.as_bytes(),
        b" ",
        path.as_bytes(),
        b" HTTP/1.1\r\nHost: ",
        host.as_bytes(),
        b"\r\nUser-Agent: ringwall-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    ] {
        out.extend_from_slice(piece);
    }
    conn.flush(left()).await.map_err(describe)?;
    let method = Method::from_token(method.as_bytes());
    let head = loop {
        let parsed = parse_response(&mut conn.buf, &worker.response_limits, method)
            .map_err(|e| format!("invalid response: {e}"))?;
        match parsed {
            Some(head) if head.is_informational() => {}
            Some(head) => break head,
            None => {
                conn.read(left(), ReadSize::Head).await.map_err(describe)?;
            }
        }
    };
    let code = head.status();
    if !(status.0..=status.1).contains(&code) {
        return Err(format!("status {code}"));
    }
    let Some(expected) = body else {
        return Ok(());
    };
    let expected = expected.as_bytes();
    loop {
        if conn.buf.windows(expected.len()).any(|w| w == expected) {
            return Ok(());
        }
        if conn.buf.len() >= BODY_WINDOW {
            break;
        }
        match conn.read(left(), ReadSize::Body).await {
            Ok(_) => {}
            Err(IoFailure::Closed) => break,
            Err(e) => return Err(describe(e)),
        }
    }
    Err(format!(
        "the body does not contain {:?}",
        String::from_utf8_lossy(expected)
    ))
}

fn describe(failure: IoFailure) -> String {
    match failure {
        IoFailure::Timeout => "timed out".to_owned(),
        IoFailure::Closed => "closed the connection".to_owned(),
        IoFailure::Io(e) => e.to_string(),
    }
}
