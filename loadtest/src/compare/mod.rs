//! `ringwall-load compare`: ringwall, nginx and HAProxy side by side, with equal settings, on one
//! machine, in one run.
//!
//! [`execute`] checks that nginx, HAProxy and taskset are installed (naming the Debian packages
//! if not, and stopping before anything runs), writes every configuration into a temp dir
//! (`configs`), starts the origin on the load core and the three proxies on the proxy core
//! (`processes`), then runs every selected [`Scenario`] for every proxy that supports it, rounds
//! interleaved (ringwall, nginx, HAProxy, ringwall, nginx, HAProxy, ...), with the in-process
//! generator pinned to the load core and the proxy's processes sampled for CPU and RSS. Results
//! (`results`) become a markdown table (stdout and a file), a JSON file and an SVG chart
//! (`svg`). Every server started is stopped when the run ends, fails, or is interrupted.

pub mod balance;
pub mod cache;
pub mod configs;
pub mod gateway;
pub mod idle;
pub mod processes;
pub mod profile;
pub mod results;
pub mod scenario;
pub mod scrape;
pub mod svg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use self::configs::{Layout, Logging, ProxyPorts, NGINX_STREAM_MODULE, STATIC_FILES};
use self::processes::{free_port, Server};
use self::results::{Comparison, RunFigures};
use self::scenario::{Listener, Proxy, Scenario};
use crate::options::{parse_duration, LoadOptions};
use crate::process_usage::children_of;
use crate::tls::SelfSigned;

/// The flags of `ringwall-load compare`.
#[derive(Clone, Debug, Args)]
pub struct CompareArgs {
    /// Scenarios to run, comma-separated, or "all": small-16, small-256, small-rate, body-4k,
    /// body-64k, post-1m, new-conn, tls, l4-1m, idle; and balance (seven balancing choices in
    /// front of three origins, one 50 ms slower) and gateway (CPU per request of rate limits,
    /// API keys and JWTs beside nginx `limit_req` and HAProxy stick tables) and cache (cache
    /// hits beside nginx `proxy_cache`, gzip and brotli beside nginx `gzip on`), not part of
    /// "all".
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub scenarios: String,

    /// Rounds of every scenario (the table shows medians; use at least 3).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub rounds: usize,

    /// Length of each load run.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration_arg, value_name = "DUR")]
    pub duration: Duration,

    /// Requests/s of the fixed-rate scenario [default: half of nginx's closed-loop rate].
    #[arg(short = 'R', long, value_name = "N")]
    pub rate: Option<f64>,

    /// The ringwall binary.
    #[arg(long, default_value = "target/release/ringwall", value_name = "PATH")]
    pub ringwall: PathBuf,

    /// Core for the proxy under test.
    #[arg(long, default_value_t = 0, value_name = "CORE")]
    pub proxy_cpu: usize,

    /// Core for the load generator and the origin.
    #[arg(long, default_value_t = 1, value_name = "CORE")]
    pub load_cpu: usize,

    /// Connections of the idle scenario.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub idle_connections: usize,

    /// Directory for compare.md, compare.json, compare.svg (and compare.png).
    #[arg(long, default_value = "compare-results", value_name = "DIR")]
    pub out: PathBuf,

    /// Keep the temp dir with the configs and server logs.
    #[arg(long)]
    pub keep_temp: bool,

    /// After each scenario's rounds, profile every proxy on it (one run under `perf stat`, one
    /// under `perf record -g`, neither counted in the medians) and write profile.md and the
    /// perf reports into DIR.
    #[arg(long, value_name = "DIR")]
    pub profile: Option<PathBuf>,

    /// Run nothing: re-render the table and chart from a compare.json into --out.
    #[arg(long, value_name = "FILE")]
    pub render: Option<PathBuf>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// The servers of a comparison; dropping it stops them all.
struct Servers {
    origin: Server,
    ringwall: Option<Server>,
    nginx: Option<Server>,
    haproxy: Option<Server>,
    /// What the running proxies were started with.
    logging: Logging,
}

impl Servers {
    fn server(&mut self, proxy: Proxy) -> Option<&mut Server> {
        match proxy {
            Proxy::Ringwall => self.ringwall.as_mut(),
            Proxy::Nginx => self.nginx.as_mut(),
            Proxy::Haproxy => self.haproxy.as_mut(),
        }
    }

    /// The processes whose CPU and RSS count for `proxy`: nginx's master and workers.
    fn pids(&mut self, proxy: Proxy) -> Vec<u32> {
        let Some(server) = self.server(proxy) else {
            return Vec::new();
        };
        let pid = server.pid();
        let mut pids = vec![pid];
        pids.extend(children_of(pid));
        pids
    }

    /// Fails with the server's log when one has died.
    fn check(&mut self) -> anyhow::Result<()> {
        let all = [
            Some(&mut self.origin),
            self.ringwall.as_mut(),
            self.nginx.as_mut(),
            self.haproxy.as_mut(),
        ];
        for server in all.into_iter().flatten() {
            if !server.is_running() {
                bail!(
                    "{} stopped; its output:\n{}",
                    server.name,
                    server.log_tail()
                );
            }
        }
        Ok(())
    }
}

/// Runs the comparison.
pub fn execute(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    if let Some(json) = &args.render {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let comparison: Comparison = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a compare.json", json.display()))?;
        write_outputs(args, &comparison)?;
        return Ok(ExitCode::SUCCESS);
    }
    // `balance`, `gateway` and `cache` run apart: their own origins and proxies (see each
    // module), after the others.
    let names: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let apart: Vec<&str> = APART
        .iter()
        .copied()
        .filter(|n| names.contains(n))
        .collect();
    let rest: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !APART.contains(n))
        .collect();
    if !apart.is_empty() && rest.iter().all(|n| n.is_empty()) {
        if !programs_present(false) {
            return Ok(ExitCode::from(2));
        }
        run_apart(args, &apart, &crate::cli::interrupt_flag()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut scenarios = scenario::parse_list(&rest.join(",")).map_err(anyhow::Error::msg)?;
    scenarios.sort();
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if args.rounds < 3 {
        eprintln!(
            "note: medians of fewer than 3 rounds are not robust (--rounds {})",
            args.rounds
        );
    }
    let needs_l4 = scenarios.iter().any(|s| s.listener() == Listener::L4);
    if !programs_present(needs_l4) {
        return Ok(ExitCode::from(2));
    }
    if !args.ringwall.is_file() {
        bail!(
            "no ringwall binary at {} (build it with `cargo build --release -p ringwall`, or pass --ringwall PATH)",
            args.ringwall.display()
        );
    }

    let mut idle_connections = args.idle_connections;
    // Raised for the servers too: they inherit it.
    let limit = processes::raise_nofile_limit();
    if scenarios.contains(&Scenario::Idle) {
        let fit = Layout::idle_capacity(limit).max(1);
        if fit < idle_connections {
            eprintln!(
                "note: the open-file limit is {limit} and cannot be raised further (ulimit -Hn); \
                 HAProxy needs two descriptors per connection, so the idle scenario uses {fit} \
                 connections instead of {idle_connections}. Raise the hard limit (e.g. \
                 `ulimit -Hn 65536` as root, or LimitNOFILE) for more."
            );
            idle_connections = fit;
        }
    }

    let dir = std::env::temp_dir().join(format!("ringwall-load-compare-{}", std::process::id()));
    let layout = prepare(&dir, idle_connections, limit)?;
    let cancel = crate::cli::interrupt_flag()?;
    let outcome = run_all(args, &scenarios, &layout, idle_connections, &cancel);
    if outcome.is_ok() && !args.keep_temp {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("configs and server logs kept in {}", dir.display());
    }
    let comparison = outcome?;
    write_outputs(args, &comparison)?;
    run_apart(args, &apart, &cancel)?;
    Ok(ExitCode::SUCCESS)
}

/// The scenarios that start their own origins and proxies, in the order they run.
const APART: [&str; 3] = ["balance", "gateway", "cache"];

/// Runs each of `names` (of [`APART`]).
fn run_apart(
    args: &CompareArgs,
    names: &[&str],
    cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    for &name in names {
        match name {
            "balance" => {
                balance::run(args, cancel)?;
            }
            "gateway" => {
                gateway::run(args, cancel)?;
            }
            _ => {
                cache::run(args, cancel)?;
            }
        }
    }
    Ok(())
}

/// Whether nginx, HAProxy and taskset (and nginx's stream module, for `needs_l4`) are
/// installed; when not, says which packages to install.
fn programs_present(needs_l4: bool) -> bool {
    let missing = processes::missing_programs(needs_l4, Path::new(NGINX_STREAM_MODULE));
    if !missing.is_empty() {
        eprintln!(
            "ringwall-load compare: {}",
            processes::install_hint(&missing)
        );
    }
    missing.is_empty()
}

/// Writes the temp dir: certificate, origin files, configs. Picks the ports.
fn prepare(dir: &Path, idle_connections: usize, nofile_limit: u64) -> anyhow::Result<Layout> {
    std::fs::create_dir_all(dir.join("www"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let ports = || -> anyhow::Result<ProxyPorts> {
        Ok(ProxyPorts {
            http: free_port()?,
            tls: free_port()?,
            l4: free_port()?,
        })
    };
    let stream_module = Path::new(NGINX_STREAM_MODULE);
    let layout = Layout {
        dir: dir.to_path_buf(),
        origin_port: free_port()?,
        ringwall: ports()?,
        ringwall_admin: free_port()?,
        nginx: ports()?,
        haproxy: ports()?,
        max_connections: idle_connections,
        nofile_limit,
        nginx_stream_module: (stream_module.is_file() && !processes::nginx_has_static_stream())
            .then(|| stream_module.to_path_buf()),
    };
    let cert = SelfSigned::generate()?;
    std::fs::write(layout.cert(), &cert.cert_pem)?;
    std::fs::write(layout.key(), &cert.key_pem)?;
    std::fs::write(
        layout.cert_and_key(),
        format!("{}{}", cert.cert_pem, cert.key_pem),
    )?;
    for (name, size) in STATIC_FILES {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(layout.www().join(name), body)?;
    }
    std::fs::write(layout.file("origin.conf"), configs::nginx_origin(&layout))?;
    for logging in [Logging::Off, Logging::On] {
        let conf = |name: &str| layout.file(&logging.conf(name));
        std::fs::write(conf("nginx.conf"), configs::nginx_proxy(&layout, logging))?;
        std::fs::write(conf("haproxy.cfg"), configs::haproxy(&layout, logging))?;
        std::fs::write(conf("ringwall.toml"), configs::ringwall(&layout, logging))?;
    }
    Ok(layout)
}

fn nginx_args(l: &Layout, conf: &str) -> Vec<String> {
    vec![
        "-c".to_string(),
        l.file(conf).display().to_string(),
        "-p".to_string(),
        l.dir.display().to_string(),
        "-e".to_string(),
        l.file(&conf.replace(".conf", "-error.log"))
            .display()
            .to_string(),
    ]
}

fn start_servers(args: &CompareArgs, l: &Layout) -> anyhow::Result<Servers> {
    let nginx = processes::find_program("nginx").context("nginx")?;
    let origin = Server::start(
        "origin nginx",
        args.load_cpu,
        &nginx,
        &nginx_args(l, "origin.conf"),
        &l.file("origin.out"),
        l.origin_port,
    )?;
    let (ringwall, nginx, haproxy) = start_proxies(args, l, Logging::Off)?;
    Ok(Servers {
        origin,
        ringwall: Some(ringwall),
        nginx: Some(nginx),
        haproxy: Some(haproxy),
        logging: Logging::Off,
    })
}

/// Starts the three proxies on the proxy core.
fn start_proxies(
    args: &CompareArgs,
    l: &Layout,
    logging: Logging,
) -> anyhow::Result<(Server, Server, Server)> {
    let nginx_bin = processes::find_program("nginx").context("nginx")?;
    let haproxy_bin = processes::find_program("haproxy").context("haproxy")?;
    let nginx = Server::start(
        "nginx",
        args.proxy_cpu,
        &nginx_bin,
        &nginx_args(l, &logging.conf("nginx.conf")),
        &l.file("nginx.out"),
        l.nginx.http,
    )?;
    let haproxy = Server::start(
        "HAProxy",
        args.proxy_cpu,
        &haproxy_bin,
        &[
            "-f".to_string(),
            l.file(&logging.conf("haproxy.cfg")).display().to_string(),
            "-db".to_string(),
        ],
        &l.file("haproxy.out"),
        l.haproxy.http,
    )?;
    let ringwall = Server::start(
        "ringwall",
        args.proxy_cpu,
        &args.ringwall,
        &configs::ringwall_args(l, logging),
        &l.file("ringwall.out"),
        l.ringwall.http,
    )?;
    Ok((ringwall, nginx, haproxy))
}

impl Servers {
    /// Stops the proxies and starts them afresh (the origin keeps running), so that a
    /// memory figure is not shaped by what earlier scenarios left in their allocators.
    fn restart_proxies(
        &mut self,
        args: &CompareArgs,
        l: &Layout,
        logging: Logging,
    ) -> anyhow::Result<()> {
        // Stopped first, so that their listening ports are free again.
        self.ringwall = None;
        self.nginx = None;
        self.haproxy = None;
        let (ringwall, nginx, haproxy) = start_proxies(args, l, logging)?;
        self.ringwall = Some(ringwall);
        self.nginx = Some(nginx);
        self.haproxy = Some(haproxy);
        Ok(())
    }
}

/// The URL of `proxy`'s listener for `scenario`.
fn url(l: &Layout, proxy: Proxy, s: Scenario) -> String {
    let ports = match proxy {
        Proxy::Ringwall => l.ringwall,
        Proxy::Nginx => l.nginx,
        Proxy::Haproxy => l.haproxy,
    };
    let (scheme, port) = match s.listener() {
        Listener::Http => ("http", ports.http),
        Listener::Tls => ("https", ports.tls),
        Listener::L4 => ("http", ports.l4),
    };
    format!("{scheme}://127.0.0.1:{port}{}", s.path())
}

/// The load of one run.
fn load_options(
    args: &CompareArgs,
    l: &Layout,
    proxy: Proxy,
    s: Scenario,
    rate: Option<f64>,
    duration: Duration,
) -> LoadOptions {
    let post = s == Scenario::Post1m;
    LoadOptions {
        url: url(l, proxy, s),
        connections: s.connections(),
        threads: 1,
        duration,
        method: if post { "POST" } else { "GET" }.to_string(),
        body: post.then(|| vec![b'x'; 1 << 20]),
        rate: if s == Scenario::SmallRate { rate } else { None },
        keepalive: !matches!(s, Scenario::NewConnection | Scenario::TlsHandshake),
        tls_resume: s != Scenario::TlsHandshake,
        timeout: Duration::from_secs(5),
        insecure: s.listener() == Listener::Tls,
        cpus: vec![args.load_cpu],
        ..LoadOptions::default()
    }
}

/// Every scenario, round and proxy; returns the medians.
fn run_all(
    args: &CompareArgs,
    scenarios: &[Scenario],
    l: &Layout,
    idle_connections: usize,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<Comparison> {
    let mut servers = start_servers(args, l)?;
    let metrics = scrape::Scraper::start(l.ringwall_admin);
    let total_runs = scenarios.len() * Proxy::ALL.len() * args.rounds;
    let warmup = (args.duration / 5).min(Duration::from_secs(1));
    let started = Instant::now();
    let mut done = 0usize;
    let mut runs: Vec<RunFigures> = Vec::new();
    let mut rates = Vec::new();
    let mut profiled = profile::Profile::default();
    for &s in scenarios {
        let rate = if s == Scenario::SmallRate {
            let r = fixed_rate(args, l, &runs, &mut servers, cancel)?;
            rates.push((s, r));
            Some(r)
        } else {
            None
        };
        let proxies = Proxy::ALL;
        // The logging scenario runs on proxies that log; the others on proxies that do not.
        let logging = if s == Scenario::SmallLogged {
            Logging::On
        } else {
            Logging::Off
        };
        if logging != servers.logging {
            servers.restart_proxies(args, l, logging)?;
            servers.logging = logging;
        }
        // Warm every proxy up for this scenario (pools filled, caches hot), unrecorded.
        if s != Scenario::Idle && !warmup.is_zero() {
            for &p in &proxies {
                let mut opts = load_options(args, l, p, s, rate, warmup);
                opts.cancel = Some(cancel.clone());
                crate::run(&opts).with_context(|| format!("warming up {p} for {}", s.name()))?;
            }
        }
        for round in 1..=args.rounds {
            if s == Scenario::Idle {
                servers.restart_proxies(args, l, Logging::Off)?;
            }
            for &p in &proxies {
                if cancel.load(Ordering::Relaxed) {
                    bail!("interrupted");
                }
                servers.check()?;
                progress(s, round, args.rounds, p, done, total_runs, started);
                let pids = servers.pids(p);
                let figures = if s == Scenario::Idle {
                    let addr: SocketAddr = url(l, p, s)
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                        .parse()?;
                    let r = idle::measure(addr, idle_connections, &pids, cancel)?;
                    idle_figures(s, p, round, &r)
                } else {
                    let mut opts = load_options(args, l, p, s, rate, args.duration);
                    opts.pids = pids;
                    opts.cancel = Some(cancel.clone());
                    let report =
                        crate::run(&opts).with_context(|| format!("{} against {p}", s.name()))?;
                    if cancel.load(Ordering::Relaxed) {
                        bail!("interrupted");
                    }
                    RunFigures::from_report(s, p, round, &report)
                };
                runs.push(figures);
                done += 1;
            }
        }
        if let (Some(dir), false) = (&args.profile, s == Scenario::Idle) {
            for &p in &proxies {
                eprintln!("profiling {p} on {}", s.name());
                let pids = servers.pids(p);
                let row = profile::profile_scenario(dir, s.name(), &p.to_string(), &pids, || {
                    let mut opts = load_options(args, l, p, s, rate, args.duration);
                    opts.cancel = Some(cancel.clone());
                    Ok(crate::run(&opts)?.requests)
                })
                .with_context(|| format!("profiling {p} on {}", s.name()))?;
                profiled.rows.push(row);
            }
            std::fs::write(dir.join("profile.md"), profiled.markdown())?;
            std::fs::write(
                dir.join("profile.json"),
                serde_json::to_string_pretty(&profiled)?,
            )?;
        }
    }
    eprintln!(
        "done: {total_runs} runs in {}",
        format_eta(started.elapsed())
    );
    let scraped = metrics.stop();
    eprintln!("ringwall's /metrics was scraped {scraped} times during the runs (every second)");
    Ok(Comparison::from_runs(
        scenarios,
        runs,
        args.rounds,
        args.duration.as_secs_f64(),
        &rates,
    ))
}

fn idle_figures(s: Scenario, p: Proxy, round: usize, r: &idle::IdleResult) -> RunFigures {
    RunFigures {
        scenario: s.name().to_string(),
        proxy: p.name().to_string(),
        round,
        requests: r.connections as u64,
        requests_per_second: 0.0,
        mib_per_second: 0.0,
        cpu_us_per_request: None,
        cpu_us_per_mib: None,
        proxy_cpu_percent: 0.0,
        latency: crate::latency::LatencySummary::default(),
        rss_per_connection_bytes: Some(r.bytes_per_connection()),
        generator_cpu_percent: 0.0,
        errors: 0,
        non_2xx: 0,
    }
}

/// The rate of the fixed-rate scenario: `--rate`, else half of nginx's closed-loop rate for
/// small GETs (measured earlier in this run, or by a short probe now).
fn fixed_rate(
    args: &CompareArgs,
    l: &Layout,
    runs: &[RunFigures],
    servers: &mut Servers,
    cancel: &Arc<AtomicBool>,
) -> anyhow::Result<f64> {
    if let Some(r) = args.rate {
        return Ok(r);
    }
    let measured: Vec<f64> = runs
        .iter()
        .filter(|r| {
            r.proxy == Proxy::Nginx.name()
                && (r.scenario == Scenario::Small16.name()
                    || r.scenario == Scenario::Small256.name())
        })
        .map(|r| r.requests_per_second)
        .collect();
    let saturation = if let Some(m) = results::median(&measured) {
        m
    } else {
        servers.check()?;
        eprintln!(
            "measuring nginx's saturation rate for small-rate (closed loop, 64 connections)..."
        );
        let mut opts = load_options(
            args,
            l,
            Proxy::Nginx,
            Scenario::Small16,
            None,
            args.duration.min(Duration::from_secs(3)),
        );
        opts.connections = 64;
        opts.cancel = Some(cancel.clone());
        crate::run(&opts)?.requests_per_second
    };
    let rate = (saturation / 2.0).round().max(1.0);
    eprintln!("small-rate: {rate:.0} requests/s (half of nginx's {saturation:.0}/s)");
    Ok(rate)
}

fn progress(
    s: Scenario,
    round: usize,
    rounds: usize,
    p: Proxy,
    done: usize,
    total: usize,
    started: Instant,
) {
    let left = if done == 0 {
        "estimating".to_string()
    } else {
        let per_run = started.elapsed() / u32::try_from(done).unwrap_or(u32::MAX);
        format!(
            "about {} left",
            format_eta(per_run * u32::try_from(total - done).unwrap_or(u32::MAX))
        )
    };
    eprintln!(
        "[{}/{total}] {} round {round}/{rounds}: {p} ({left})",
        done + 1,
        s.name()
    );
}

/// `3m 20s`, `45s`.
pub fn format_eta(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// compare.md (also printed), compare.json, compare.svg, and compare.png when rsvg-convert is
/// installed.
fn write_outputs(args: &CompareArgs, c: &Comparison) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let md = c.markdown();
    print!("{md}");
    let md_path = args.out.join("compare.md");
    std::fs::write(&md_path, &md)?;
    let json_path = args.out.join("compare.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(c)?)?;
    let svg_path = args.out.join("compare.svg");
    std::fs::write(&svg_path, svg::chart(c))?;
    let png_path = args.out.join("compare.png");
    let png = Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png_path)
        .arg(&svg_path)
        .status()
        .is_ok_and(|s| s.success());
    eprintln!(
        "wrote {}, {}, {}{}",
        md_path.display(),
        json_path.display(),
        svg_path.display(),
        if png {
            format!(", {}", png_path.display())
        } else {
            " (install librsvg2-bin for a PNG)".to_string()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_load_per_scenario() {
        let l = Layout {
            dir: PathBuf::from("/tmp/x"),
            origin_port: 1,
            ringwall: ProxyPorts {
                http: 2,
                tls: 3,
                l4: 4,
            },
            ringwall_admin: 5,
            nginx: ProxyPorts {
                http: 10,
                tls: 11,
                l4: 12,
            },
            haproxy: ProxyPorts {
                http: 20,
                tls: 21,
                l4: 22,
            },
            max_connections: 100,
            nofile_limit: 1024,
            nginx_stream_module: None,
        };
        assert_eq!(
            url(&l, Proxy::Ringwall, Scenario::Small16),
            "http://127.0.0.1:2/"
        );
        assert_eq!(
            url(&l, Proxy::Nginx, Scenario::Tls),
            "https://127.0.0.1:11/"
        );
        assert_eq!(
            url(&l, Proxy::Haproxy, Scenario::L4Body1m),
            "http://127.0.0.1:22/1m"
        );
        assert_eq!(
            url(&l, Proxy::Nginx, Scenario::Body64k),
            "http://127.0.0.1:10/64k"
        );
        let args = CompareArgs {
            scenarios: "all".into(),
            rounds: 3,
            duration: Duration::from_secs(10),
            rate: None,
            ringwall: PathBuf::from("ringwall"),
            proxy_cpu: 0,
            load_cpu: 1,
            idle_connections: 100,
            out: PathBuf::from("out"),
            keep_temp: false,
            render: None,
            profile: None,
        };
        let d = Duration::from_secs(1);
        let post = load_options(&args, &l, Proxy::Nginx, Scenario::Post1m, None, d);
        assert_eq!(
            (post.method.as_str(), post.body.as_ref().map(Vec::len)),
            ("POST", Some(1 << 20))
        );
        assert_eq!(post.cpus, vec![1]);
        let nc = load_options(&args, &l, Proxy::Nginx, Scenario::NewConnection, None, d);
        assert!(!nc.keepalive);
        let rate = load_options(
            &args,
            &l,
            Proxy::Nginx,
            Scenario::SmallRate,
            Some(5000.0),
            d,
        );
        assert_eq!(rate.rate, Some(5000.0));
        let small = load_options(&args, &l, Proxy::Nginx, Scenario::Small256, Some(5000.0), d);
        assert_eq!((small.rate, small.connections), (None, 256));
        assert!(load_options(&args, &l, Proxy::Nginx, Scenario::Tls, None, d).insecure);
        assert_eq!(format_eta(Duration::from_secs(200)), "3m 20s");
        assert_eq!(format_eta(Duration::from_secs(45)), "45s");
    }
}
