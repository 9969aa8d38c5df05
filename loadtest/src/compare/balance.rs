//! `ringwall-load compare --scenarios balance`: load balancing in front of a slow origin.
//!
//! Three origins run in this process, on one event loop on the load core: two answer at once,
//! one 50 ms late.
//! Seven proxies sit in front of all three, one per balancing choice: ringwall's
//! `round-robin`, `p2c` and `peak-ewma` (its default), nginx's `least_conn` and `random two
//! least_conn`, HAProxy's `balance leastconn` and `balance random(2)`; one worker or thread each,
//! keep-alive pools to the origins as in the other scenarios. Each gets the same open-loop load
//! (a fixed rate, latency counted from the intended send times), rounds interleaved; the
//! table gives each one's share of requests on the slow origin and its latency percentiles
//! (medians of the rounds).

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::processes::{finish_scenario, interleaved_rounds, start_proxies, ProxySpec, Server};
use super::results::median;
use super::scenario::Proxy;
use super::CompareArgs;
use crate::options::LoadOptions;

/// The slow origin's added latency.
pub const SLOW_BY: Duration = Duration::from_millis(50);
/// Client connections of the load.
const CONNECTIONS: usize = 256;
/// The load's rate when `--rate` is not given, requests/s.
const DEFAULT_RATE: f64 = 1000.0;

/// One balancing choice of one proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub proxy: Proxy,
    /// What its configuration says (`lb = ...`, the `upstream` directive, `balance ...`).
    pub choice: &'static str,
}

/// Every variant, in the order of a round.
pub const VARIANTS: [Variant; 7] = [
    Variant {
        proxy: Proxy::Ringwall,
        choice: "round-robin",
    },
    Variant {
        proxy: Proxy::Ringwall,
        choice: "p2c",
    },
    Variant {
        proxy: Proxy::Ringwall,
        choice: "peak-ewma",
    },
    Variant {
        proxy: Proxy::Nginx,
        choice: "least_conn",
    },
    Variant {
        proxy: Proxy::Nginx,
        choice: "random two least_conn",
    },
    Variant {
        proxy: Proxy::Haproxy,
        choice: "leastconn",
    },
    Variant {
        proxy: Proxy::Haproxy,
        choice: "random(2)",
    },
];

impl Variant {
    pub fn label(&self) -> String {
        format!("{} {}", self.proxy, self.choice)
    }

    /// A name for its files.
    fn file_stem(&self) -> String {
        let choice: String = self
            .choice
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("{}-{choice}", self.proxy.name().to_ascii_lowercase())
    }
}

/// The configuration of `variant` listening on `port` in front of `origins` (the slow one
/// last), with its files under `dir`; and its command line.
pub fn config(
    variant: &Variant,
    port: u16,
    origins: &[u16; 3],
    dir: &Path,
) -> (String, Vec<String>) {
    let stem = variant.file_stem();
    let file = |suffix: &str| dir.join(format!("{stem}{suffix}")).display().to_string();
    match variant.proxy {
        Proxy::Ringwall => {
            let servers: Vec<String> = origins
                .iter()
                .map(|p| format!("\"127.0.0.1:{p}\""))
                .collect();
            let text = format!(
                "# ringwall-load compare balance: {label}\nlog_level = \"warn\"\n\n\
                 [[listener]]\naddress = \"127.0.0.1:{port}\"\n\n\
                 [timeouts]\nclient_keepalive = \"300s\"\n\n\
                 [[upstream]]\nname = \"origin\"\nservers = [{servers}]\nlb = \"{lb}\"\n\
                 max_idle_per_server = 64\n\n[[route]]\nupstream = \"origin\"\n",
                label = variant.label(),
                servers = servers.join(", "),
                lb = variant.choice,
            );
            let args = vec![
                "--config".into(),
                file(".toml"),
                "--workers".into(),
                "1".into(),
                "--no-pin".into(),
            ];
            (text, args)
        }
        Proxy::Nginx => {
            let mut servers = String::new();
            for p in origins {
                let _ = writeln!(servers, "        server 127.0.0.1:{p};");
            }
            let text = format!(
                "# ringwall-load compare balance: {label}\ndaemon off;\nmaster_process on;\n\
                 worker_processes 1;\npid {pid};\nerror_log {log} warn;\n\
                 events {{ worker_connections 4096; }}\nhttp {{\n    access_log off;\n\
                 \x20   keepalive_requests 1000000;\n    keepalive_timeout 300s;\n\
                 \x20   upstream origin {{\n        {choice};\n{servers}\
                 \x20       keepalive 64;\n        keepalive_requests 1000000;\n    }}\n\
                 \x20   server {{\n        listen 127.0.0.1:{port} backlog=4096;\n\
                 \x20       location / {{\n            proxy_pass http://origin;\n\
                 \x20           proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n",
                label = variant.label(),
                pid = file(".pid"),
                log = file("-error.log"),
                choice = variant.choice,
            );
            let args = vec![
                "-c".into(),
                file(".conf"),
                "-p".into(),
                dir.display().to_string(),
                "-e".into(),
                file("-error.log"),
            ];
            (text, args)
        }
        Proxy::Haproxy => {
            let mut servers = String::new();
            for (i, p) in origins.iter().enumerate() {
                let _ = writeln!(servers, "    server o{i} 127.0.0.1:{p}");
            }
            let text = format!(
                "# ringwall-load compare balance: {label}\nglobal\n    nbthread 1\n    maxconn 4096\n\n\
                 defaults\n    mode http\n    timeout connect 5s\n    timeout client 300s\n\
                 \x20   timeout server 300s\n    timeout http-keep-alive 300s\n    http-reuse always\n\n\
                 frontend http_in\n    bind 127.0.0.1:{port} backlog 4096\n    default_backend origin\n\n\
                 backend origin\n    balance {choice}\n{servers}",
                label = variant.label(),
                choice = variant.choice,
            );
            let args = vec!["-f".into(), file(".cfg"), "-db".into()];
            (text, args)
        }
    }
}

/// Where `variant`'s configuration is written.
fn config_path(variant: &Variant, dir: &Path) -> PathBuf {
    let suffix = match variant.proxy {
        Proxy::Ringwall => ".toml",
        Proxy::Nginx => ".conf",
        Proxy::Haproxy => ".cfg",
    };
    dir.join(format!("{}{suffix}", variant.file_stem()))
}

/// The three origins: each answers `hello world\n` to every request, the last one
/// [`SLOW_BY`] late. One event loop (monoio, epoll) on a thread pinned to the load core serves
/// all three, so that the fast ones answer at once whatever the slow one holds.
pub(super) struct Origins {
    pub(super) ports: [u16; 3],
    served: [Arc<AtomicU64>; 3],
    stop: Arc<AtomicBool>,
}

impl Origins {
    pub(super) fn start(core: usize) -> anyhow::Result<Origins> {
        let stop = Arc::new(AtomicBool::new(false));
        let served: [Arc<AtomicU64>; 3] = std::array::from_fn(|_| Arc::new(AtomicU64::new(0)));
        let mut listeners = Vec::new();
        let mut ports = [0; 3];
        for port in &mut ports {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding an origin")?;
            listener.set_nonblocking(true)?;
            *port = listener.local_addr()?.port();
            listeners.push(listener);
        }
        let (stop_flag, counters) = (stop.clone(), served.clone());
        std::thread::Builder::new()
            .name("balance-origins".into())
            .spawn(move || {
                let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                let mut runtime = match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return eprintln!("balance: the origins cannot start: {e}"),
                };
                runtime.block_on(async move {
                    let mut accepting = Vec::new();
                    for (i, listener) in listeners.into_iter().enumerate() {
                        let Ok(listener) = monoio::net::TcpListener::from_std(listener) else {
                            return eprintln!("balance: an origin cannot listen");
                        };
                        let delay = (i == 2).then_some(SLOW_BY);
                        let served = counters[i].clone();
                        let stop = stop_flag.clone();
                        accepting.push(monoio::spawn(async move {
                            while !stop.load(Ordering::Relaxed) {
                                let Ok((stream, _)) = listener.accept().await else {
                                    continue;
                                };
                                monoio::spawn(serve_origin(stream, delay, served.clone()));
                            }
                        }));
                    }
                    for task in accepting {
                        task.await;
                    }
                });
            })
            .context("starting the origins' thread")?;
        Ok(Origins {
            ports,
            served,
            stop,
        })
    }

    fn counts(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.served[i].load(Ordering::Relaxed))
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for port in self.ports {
            let _ = TcpStream::connect(("127.0.0.1", port));
        }
    }
}

/// Answers every request head on `stream` (GETs without bodies) until the peer closes.
async fn serve_origin(
    mut stream: monoio::net::TcpStream,
    delay: Option<Duration>,
    served: Arc<AtomicU64>,
) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            let (read, buf) = stream.read(chunk).await;
            chunk = buf;
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        pending.drain(..end + 4);
        if let Some(delay) = delay {
            monoio::time::sleep(delay).await;
        }
        let response: &'static [u8] =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n";
        let (written, _) = stream.write_all(response).await;
        if written.is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
    }
}

/// One run of one variant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BalanceRun {
    pub variant: String,
    pub round: usize,
    pub requests: u64,
    /// Share of the origins' requests that the slow origin served.
    pub slow_share: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors: u64,
}

/// What the balance scenario found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Balance {
    pub rate: f64,
    pub connections: usize,
    pub duration_seconds: f64,
    pub rounds: usize,
    pub runs: Vec<BalanceRun>,
}

impl Balance {
    /// The table: per variant, the medians of its rounds.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Balancing in front of a slow origin: three origins, one {} ms slower; open loop at \
             {:.0} requests/s over {} connections, {} s per run, medians of {} rounds \
             (rounds interleaved). Latency from the intended send times.\n\n\
             | proxy and balancing | slow origin's share | p50 | p99 | p99.9 | failed |\n\
             |---|---:|---:|---:|---:|---:|\n",
            SLOW_BY.as_millis(),
            self.rate,
            self.connections,
            self.duration_seconds,
            self.rounds
        );
        for variant in VARIANTS {
            let label = variant.label();
            let runs: Vec<&BalanceRun> = self.runs.iter().filter(|r| r.variant == label).collect();
            if runs.is_empty() {
                continue;
            }
            let med = |f: fn(&BalanceRun) -> f64| {
                median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
            };
            let ms = |us: f64| format!("{:.2} ms", us / 1000.0);
            let _ = writeln!(
                out,
                "| {label} | {:.2} % | {} | {} | {} | {} |",
                med(|r| r.slow_share) * 100.0,
                ms(med(|r| r.p50_us as f64)),
                ms(med(|r| r.p99_us as f64)),
                ms(med(|r| r.p999_us as f64)),
                runs.iter().map(|r| r.errors).sum::<u64>()
            );
        }
        out
    }
}

/// Writes every variant's configuration into `dir` and starts it on the proxy core; returns
/// the servers and their ports, in [`VARIANTS`] order.
fn start_variants(
    args: &CompareArgs,
    origins: &Origins,
    dir: &Path,
) -> anyhow::Result<(Vec<Server>, Vec<u16>)> {
    start_proxies(args, dir, VARIANTS.len(), |i, port| {
        let variant = &VARIANTS[i];
        let (config, command) = config(variant, port, &origins.ports, dir);
        Ok(ProxySpec {
            label: variant.label(),
            stem: variant.file_stem(),
            proxy: variant.proxy,
            config_path: config_path(variant, dir),
            config,
            command,
        })
    })
}

/// Runs the balance scenario and writes `balance.md` and `balance.json` into `--out`.
pub fn run(args: &CompareArgs, cancel: &Arc<AtomicBool>) -> anyhow::Result<Balance> {
    if !args.ringwall.is_file() {
        bail!(
            "no ringwall binary at {} (build it with `cargo build --release -p ringwall`, or pass --ringwall PATH)",
            args.ringwall.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("ringwall-load-balance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let origins = Origins::start(args.load_cpu)?;
    let (mut servers, ports) = start_variants(args, &origins, &dir)?;
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    let options = |port: u16, duration: Duration| LoadOptions {
        url: format!("http://127.0.0.1:{port}/"),
        connections: CONNECTIONS,
        threads: 1,
        duration,
        rate: Some(rate),
        keepalive: true,
        timeout: Duration::from_secs(5),
        cpus: vec![args.load_cpu],
        cancel: Some(cancel.clone()),
        ..LoadOptions::default()
    };
    // Warm-up: pools filled, the latency estimates learned.
    for (variant, &port) in VARIANTS.iter().zip(&ports) {
        eprintln!("balance: warming up {}", variant.label());
        crate::run(&options(port, Duration::from_secs(2)))
            .with_context(|| format!("warming up {}", variant.label()))?;
    }
    let labels: Vec<String> = VARIANTS.iter().map(Variant::label).collect();
    let runs = interleaved_rounds(
        args,
        cancel,
        "balance",
        &labels,
        &mut servers,
        |i, round, _| {
            let before = origins.counts();
            let report = crate::run(&options(ports[i], args.duration))
                .with_context(|| format!("balance against {}", labels[i]))?;
            let after = origins.counts();
            let served: Vec<u64> = (0..3).map(|k| after[k] - before[k]).collect();
            let total: u64 = served.iter().sum();
            Ok(BalanceRun {
                variant: labels[i].clone(),
                round,
                requests: report.requests,
                slow_share: if total == 0 {
                    0.0
                } else {
                    served[2] as f64 / total as f64
                },
                p50_us: report.latency.p50_us,
                p99_us: report.latency.p99_us,
                p999_us: report.latency.p999_us,
                errors: report.errors.total() + report.status.non_2xx_3xx() + report.status.s3xx,
            })
        },
    )?;
    servers.clear();
    let balance = Balance {
        rate,
        connections: CONNECTIONS,
        duration_seconds: args.duration.as_secs_f64(),
        rounds: args.rounds,
        runs,
    };
    finish_scenario(args, "balance", &balance.markdown(), &balance, &dir)?;
    Ok(balance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_configured_with_its_choice_and_all_three_origins() {
        let dir = Path::new("/tmp/x");
        for variant in VARIANTS {
            let (text, args) = config(&variant, 8080, &[1, 2, 3], dir);
            assert!(text.contains(variant.choice), "{text}");
            for port in [":1", ":2", ":3", ":8080"] {
                assert!(text.contains(port), "{}: {text}", variant.label());
            }
            assert!(args.iter().any(|a| a.starts_with("/tmp/x/")), "{args:?}");
        }
        let (nginx, _) = config(&VARIANTS[4], 8080, &[1, 2, 3], dir);
        assert!(nginx.contains("random two least_conn;"), "{nginx}");
        assert!(nginx.contains("keepalive 64;"), "{nginx}");
        let (haproxy, _) = config(&VARIANTS[6], 8080, &[1, 2, 3], dir);
        assert!(haproxy.contains("balance random(2)"), "{haproxy}");
    }

    #[test]
    fn the_table_shows_medians_per_variant() {
        let run = |variant: &str, round, share, p99| BalanceRun {
            variant: variant.to_owned(),
            round,
            requests: 1000,
            slow_share: share,
            p50_us: 300,
            p99_us: p99,
            p999_us: p99 * 2,
            errors: 0,
        };
        let b = Balance {
            rate: 1000.0,
            connections: 32,
            duration_seconds: 10.0,
            rounds: 3,
            runs: vec![
                run("ringwall p2c", 1, 0.01, 900),
                run("ringwall p2c", 2, 0.03, 1100),
                run("ringwall p2c", 3, 0.02, 1000),
            ],
        };
        let md = b.markdown();
        assert!(
            md.contains("| ringwall p2c | 2.00 % | 0.30 ms | 1.00 ms | 2.00 ms | 0 |"),
            "{md}"
        );
        assert!(!md.contains("nginx"), "{md}");
    }
}
