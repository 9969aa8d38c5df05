//! Starting and stopping the servers of a comparison, and the checks before it starts.
//!
//! [`Server::start`] runs a program under `taskset -c CORE` in a process group of its own (so a
//! terminal's Ctrl-C reaches only the harness, which then stops it), with its output in a log
//! file, and waits until its port accepts connections. Dropping a [`Server`] sends SIGTERM to
//! the whole group (nginx's workers too), waits up to two seconds, then SIGKILLs the group:
//! servers go away on success, on error, on a panic and after Ctrl-C alike.
//! [`missing_programs`] names the Debian packages to install when nginx, HAProxy, taskset or
//! nginx's stream module are absent, and [`raise_nofile_limit`] lifts `RLIMIT_NOFILE` to its hard
//! limit for the idle-connection scenario (children inherit it).

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{kill_process_group, Pid, Signal};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server that is stopped when dropped.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `program args` pinned to `core`, logging to `log`, and waits for `port`.
    pub fn start(
        name: &str,
        core: usize,
        program: &Path,
        args: &[String],
        log: &Path,
        port: u16,
    ) -> anyhow::Result<Server> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let mut server = Server {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        };
        server.wait_for_port(port)?;
        Ok(server)
    }

    /// The pid of the program (taskset execs it, so it is the child's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_port(&mut self, port: u16) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); its output:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within {START_TIMEOUT:?}; its output:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(group) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = kill_process_group(group, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; make sure no worker of its group stays behind.
                let _ = kill_process_group(group, Signal::KILL);
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = kill_process_group(group, Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound and released; the servers start right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds `name` on `PATH` (and in the sbin directories, where Debian puts nginx and HAProxy).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What a comparison needs that is not installed: (what, Debian package).
pub fn missing_programs(need_stream_module: bool, stream_module: &Path) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("nginx", "nginx"),
        ("haproxy", "haproxy"),
        ("taskset", "util-linux"),
    ] {
        if find_program(program).is_none() {
            missing.push((program.to_string(), package.to_string()));
        }
    }
    if need_stream_module
        && find_program("nginx").is_some()
        && !stream_module_present(stream_module)
    {
        missing.push((
            "nginx stream module (for the L4 scenario)".to_string(),
            "libnginx-mod-stream".to_string(),
        ));
    }
    missing
}

/// Whether nginx has `stream {}`: built in, or as the dynamic module at `module`.
pub fn stream_module_present(module: &Path) -> bool {
    module.is_file() || nginx_has_static_stream()
}

/// nginx was configured `--with-stream` (not `=dynamic`).
pub fn nginx_has_static_stream() -> bool {
    let Some(nginx) = find_program("nginx") else {
        return false;
    };
    Command::new(nginx).arg("-V").output().is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stderr).into_owned();
        text.split_ascii_whitespace().any(|w| w == "--with-stream")
    })
}

/// The install line for missing packages.
pub fn install_hint(missing: &[(String, String)]) -> String {
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
    packages.dedup();
    let what: Vec<&str> = missing.iter().map(|(w, _)| w.as_str()).collect();
    format!(
        "not installed: {}. Install with:\n    apt-get install -y {}",
        what.join(", "),
        packages.join(" ")
    )
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if rustix::process::setrlimit(rustix::process::Resource::Nofile, wanted).is_ok() {
        limit.maximum.unwrap_or(u64::MAX)
    } else {
        limit.current.unwrap_or(u64::MAX)
    }
}

/// One proxy of a scenario that starts its own: what it is called, its configuration file and
/// text, and its command line.
pub struct ProxySpec {
    pub label: String,
    pub stem: String,
    pub proxy: super::scenario::Proxy,
    pub config_path: PathBuf,
    pub config: String,
    pub command: Vec<String>,
}

/// Starts `count` proxies on the proxy core, each on a free port, as `spec(index, port)` says
/// (its configuration written under `dir` first); the servers and their ports, in order.
pub fn start_proxies(
    args: &super::CompareArgs,
    dir: &Path,
    count: usize,
    spec: impl Fn(usize, u16) -> anyhow::Result<ProxySpec>,
) -> anyhow::Result<(Vec<Server>, Vec<u16>)> {
    let nginx = find_program("nginx").context("nginx")?;
    let haproxy = find_program("haproxy").context("haproxy")?;
    let mut servers = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for index in 0..count {
        let port = free_port()?;
        let spec = spec(index, port)?;
        std::fs::write(&spec.config_path, &spec.config)?;
        let program = match spec.proxy {
            super::scenario::Proxy::Ringwall => args.ringwall.clone(),
            super::scenario::Proxy::Nginx => nginx.clone(),
            super::scenario::Proxy::Haproxy => haproxy.clone(),
        };
        let log = dir.join(format!("{}.out", spec.stem));
        servers.push(Server::start(
            &spec.label,
            args.proxy_cpu,
            &program,
            &spec.command,
            &log,
            port,
        )?);
        ports.push(port);
    }
    Ok((servers, ports))
}

/// The end of a scenario that starts its own proxies: prints `markdown`, writes it and `json`
/// as `{name}.md` and `{name}.json` into `--out`, and keeps `dir` (configs, server logs) when
/// `--keep-temp` says so, else removes it.
pub fn finish_scenario(
    args: &super::CompareArgs,
    name: &str,
    markdown: &str,
    json: &impl serde::Serialize,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    print!("{markdown}");
    std::fs::write(args.out.join(format!("{name}.md")), markdown)?;
    std::fs::write(
        args.out.join(format!("{name}.json")),
        serde_json::to_string_pretty(json)?,
    )?;
    if args.keep_temp {
        eprintln!("configs and server logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_hint_names_packages() {
        let hint = install_hint(&[
            ("nginx".into(), "nginx".into()),
            ("haproxy".into(), "haproxy".into()),
        ]);
        assert!(hint.contains("apt-get install -y nginx haproxy"), "{hint}");
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-xyz").is_none());
        assert!(raise_nofile_limit() > 0);
    }

    #[test]
    fn server_is_stopped_when_dropped() {
        let port = free_port().unwrap();
        let dir = std::env::temp_dir();
        let log = dir.join(format!(
            "ringwall-load-server-test-{}.log",
            std::process::id()
        ));
        let python = find_program("python3");
        let Some(python) = python else {
            eprintln!("skipped: python3 not installed");
            return;
        };
        let args = vec![
            "-m".to_string(),
            "http.server".to_string(),
            "--bind".to_string(),
            "127.0.0.1".to_string(),
            port.to_string(),
        ];
        let server = Server::start("python http.server", 0, &python, &args, &log, port).unwrap();
        let pid = server.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(server);
        // Reaped: its /proc entry is gone.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_file(log);
    }
}

/// A name for a proxy's files made from its `label`: lowercase letters and digits, the rest `-`.
pub fn file_stem(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// The configuration of one ringwall of a scenario that starts its own: one listener on
/// `port`, keep-alive as the other proxies, `extra` (its feature's tables), and one route to
/// the group of `origin`; and its command line (one worker, unpinned), reading `path`.
pub fn ringwall_single(
    comment: &str,
    port: u16,
    origin: u16,
    extra: &str,
    path: &str,
) -> (String, Vec<String>) {
    let text = format!(
        "# ringwall-load compare {comment}\nlog_level = \"warn\"\n\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\n\n\
         [timeouts]\nclient_keepalive = \"300s\"\n\n{extra}\
         [[upstream]]\nname = \"origin\"\nservers = [\"127.0.0.1:{origin}\"]\n\
         max_idle_per_server = 64\n\n[[route]]\nupstream = \"origin\"\n"
    );
    let args = vec![
        "--config".into(),
        path.to_owned(),
        "--workers".into(),
        "1".into(),
        "--no-pin".into(),
    ];
    (text, args)
}

/// What an nginx of a scenario that starts its own adds to the common configuration.
pub struct NginxExtra<'a> {
    /// Lines in `http {}`.
    pub http: &'a str,
    /// Lines in `location / {}`, before `proxy_pass`.
    pub location: &'a str,
}

/// The configuration of one nginx of a scenario that starts its own (one worker, keep-alive
/// as the other proxies, a pool of 64 to `origin`, `extra` added), its files named by `stem`
/// under `dir`; and its command line, reading `path`.
pub fn nginx_single(
    comment: &str,
    port: u16,
    origin: u16,
    extra: &NginxExtra<'_>,
    dir: &Path,
    stem: &str,
    path: &str,
) -> (String, Vec<String>) {
    let file = |suffix: &str| dir.join(format!("{stem}{suffix}")).display().to_string();
    let (http, location) = (extra.http, extra.location);
    let text = format!(
        "# ringwall-load compare {comment}\ndaemon off;\nmaster_process on;\n\
         worker_processes 1;\npid {pid};\nerror_log {log} warn;\n\
         events {{ worker_connections 4096; }}\nhttp {{\n    access_log off;\n\
         \x20   keepalive_requests 1000000;\n    keepalive_timeout 300s;\n{http}\
         \x20   upstream origin {{\n        server 127.0.0.1:{origin};\n\
         \x20       keepalive 64;\n        keepalive_requests 1000000;\n    }}\n\
         \x20   server {{\n        listen 127.0.0.1:{port} backlog=4096;\n\
         \x20       location / {{\n{location}            proxy_pass http://origin;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n        }}\n    }}\n}}\n",
        pid = file(".pid"),
        log = file("-error.log"),
    );
    let args = vec![
        "-c".into(),
        path.to_owned(),
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        file("-error.log"),
    ];
    (text, args)
}

/// Rounds of a scenario that starts its own proxies: `measure(index, round)` for each of
/// `servers` (named `labels`) in turn, `args.rounds` times, rounds interleaved; stops at Ctrl-C
/// or when a server stopped (with its output). `scenario` names the progress lines.
pub fn interleaved_rounds<R>(
    args: &super::CompareArgs,
    cancel: &std::sync::atomic::AtomicBool,
    scenario: &str,
    labels: &[String],
    servers: &mut [Server],
    mut measure: impl FnMut(usize, usize, &Server) -> anyhow::Result<R>,
) -> anyhow::Result<Vec<R>> {
    let mut runs = Vec::with_capacity(args.rounds * labels.len());
    for round in 1..=args.rounds {
        for (i, label) in labels.iter().enumerate() {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                bail!("interrupted");
            }
            if !servers[i].is_running() {
                bail!("{label} stopped; its output:\n{}", servers[i].log_tail());
            }
            eprintln!("{scenario}: round {round}/{} {label}", args.rounds);
            runs.push(measure(i, round, &servers[i])?);
        }
    }
    Ok(runs)
}

/// One closed-loop run of one proxy, with the CPU its processes used.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CpuRun {
    pub variant: String,
    pub round: usize,
    pub requests: u64,
    pub requests_per_second: f64,
    pub cpu_us_per_request: f64,
    pub failed: u64,
}

impl CpuRun {
    /// The run of `label` in `round` that `report` describes.
    pub fn of(label: &str, round: usize, report: &crate::report::LoadReport) -> CpuRun {
        let cpu_seconds: f64 = report.processes.iter().map(|p| p.cpu_seconds).sum();
        CpuRun {
            variant: label.to_owned(),
            round,
            requests: report.requests,
            requests_per_second: report.requests_per_second,
            cpu_us_per_request: if report.requests == 0 {
                0.0
            } else {
                cpu_seconds * 1e6 / report.requests as f64
            },
            failed: report.errors.total() + report.status.non_2xx_3xx(),
        }
    }

    /// The median over the runs of `label` of `f`.
    pub fn median_of(runs: &[CpuRun], label: &str, f: fn(&CpuRun) -> f64) -> Option<f64> {
        let values: Vec<f64> = runs.iter().filter(|r| r.variant == label).map(f).collect();
        super::results::median(&values)
    }
}

/// The processes whose CPU a run of the server `pid` counts: it and its children, but not
/// nginx's cache loader, which exits once it has read the cache directory (its cache manager,
/// which stays, is counted).
pub fn measured_pids(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    pids.extend(
        crate::process_usage::children_of(pid)
            .into_iter()
            .filter(|child| {
                !std::fs::read_to_string(format!("/proc/{child}/cmdline"))
                    .unwrap_or_default()
                    .contains("cache loader")
            }),
    );
    pids
}

/// The closed-loop rounds of a scenario whose figure is CPU per request: every server in turn
/// under the load `options(index, pids, duration)` describes, `args.rounds` times.
pub fn cpu_rounds(
    args: &super::CompareArgs,
    cancel: &std::sync::atomic::AtomicBool,
    scenario: &str,
    labels: &[String],
    servers: &mut [Server],
    options: impl Fn(usize, Vec<u32>, Duration) -> crate::options::LoadOptions,
) -> anyhow::Result<Vec<CpuRun>> {
    interleaved_rounds(
        args,
        cancel,
        scenario,
        labels,
        servers,
        |i, round, server| {
            let load = options(i, measured_pids(server.pid()), args.duration);
            let report =
                crate::run(&load).with_context(|| format!("{scenario} against {}", labels[i]))?;
            Ok(CpuRun::of(&labels[i], round, &report))
        },
    )
}
