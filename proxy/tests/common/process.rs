//! The `ringwall` process under test: starting it, watching it and stopping it.
//!
//! [`Proxy`] starts the binary on `127.0.0.1:0` from flags or from a TOML configuration (written to
//! a [`TempFile`]), learns its port from the `listening on` log line, keeps its stderr for the test
//! and for the report of a failed one, and kills it when dropped; it can also send SIGTERM and wait
//! for the exit. [`run_ringwall`] runs the binary to completion and returns its [`Run`]: exit
//! status, stdout and stderr. [`open_fds`], [`rss_kib`] and [`RssSampler`] read `/proc` for the
//! tests that look for leaks, [`wait_until`] polls a condition against a deadline, and
//! [`ureq_agent`] is an independent HTTP client to check ringwall with.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::wire::{Client, IO_TIMEOUT};

/// How long ringwall may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `done` every 10 ms for at most `timeout`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A TOML file under Cargo's per-test temporary directory, removed when dropped.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ringwall-e2e-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temporary file");
        TempFile { path }
    }

    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running `ringwall`; killed and reaped when dropped.
pub struct Proxy {
    child: Child,
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in listener order.
    pub addrs: Vec<SocketAddr>,
    logs: Receiver<String>,
    log_lines: RefCell<Vec<String>>,
    exited: Option<ExitStatus>,
    _config: Option<TempFile>,
}

fn ringwall_command(args: &[String]) -> Command {
    // RINGWALL_TEST_BIN runs the suite against another build (an older one, to show that a
    // test fails without its fix).
    let binary = std::env::var_os("RINGWALL_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_ringwall").into());
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("RINGWALL_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

impl Proxy {
    /// Starts ringwall on `127.0.0.1:0` in front of `upstreams` (the `default` group), with
    /// 2 unpinned workers unless `extra` says otherwise.
    pub fn start(upstreams: &[SocketAddr], extra: &[&str]) -> Proxy {
        let mut args: Vec<String> = Vec::new();
        for upstream in upstreams {
            args.push("--upstream".into());
            args.push(upstream.to_string());
        }
        Proxy::spawn(args, extra, None)
    }

    /// Starts ringwall from a TOML configuration (listen address and workers still come from
    /// the flags, so that the port is chosen by the kernel).
    pub fn with_config(toml: &str, extra: &[&str]) -> Proxy {
        let file = TempFile::new("ringwall.toml", toml);
        let args = vec!["--config".to_string(), file.display()];
        Proxy::spawn(args, extra, Some(file))
    }

    /// Starts ringwall from a TOML configuration whose own listeners (on port 0) are kept:
    /// no `--listen` is added.
    pub fn with_config_listeners(toml: &str, extra: &[&str]) -> Proxy {
        let file = TempFile::new("ringwall.toml", toml);
        let args = vec!["--config".to_string(), file.display()];
        Proxy::spawn_with(args, extra, Some(file), false)
    }

    /// Starts ringwall on a configuration file the test owns (and may rewrite, to reload);
    /// `listen`: add `--listen 127.0.0.1:0` (the file's listeners are then replaced).
    pub fn with_config_path(path: &str, extra: &[&str], listen: bool) -> Proxy {
        let args = vec!["--config".to_string(), path.to_string()];
        Proxy::spawn_with(args, extra, None, listen)
    }

    /// Sends SIGHUP (a reload) and waits for the log to say how the reload went: `Ok` with
    /// the "reloaded" line, `Err` with the "refused" one.
    pub fn reload(&self) -> Result<String, String> {
        let before = self
            .logs()
            .matches("reading the configuration again")
            .count();
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed: {status}");
        self.reload_result(before)
    }

    /// Waits for the outcome of the reload after the `before`-th.
    pub fn reload_result(&self, before: usize) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            let attempts: Vec<&str> = logs
                .split("reading the configuration again")
                .skip(before + 1)
                .collect();
            if let Some(after) = attempts.first() {
                for line in after.lines() {
                    if line.contains("configuration reloaded") {
                        return Ok(line.to_owned());
                    }
                    if line.contains("reload refused") {
                        return Err(line.to_owned());
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no reload outcome logged within 10 s:\n{logs}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many reloads were begun so far (a count to give [`Proxy::reload_result`]).
    pub fn reloads_begun(&self) -> usize {
        self.logs()
            .matches("reading the configuration again")
            .count()
    }

    fn spawn(args: Vec<String>, extra: &[&str], config: Option<TempFile>) -> Proxy {
        Proxy::spawn_with(args, extra, config, true)
    }

    fn spawn_with(
        mut args: Vec<String>,
        extra: &[&str],
        config: Option<TempFile>,
        listen: bool,
    ) -> Proxy {
        if listen {
            args.extend(["--listen", "127.0.0.1:0"].map(String::from));
        }
        if !extra.contains(&"--workers") {
            args.extend(["--workers", "2"].map(String::from));
        }
        args.push("--no-pin".into());
        args.extend(extra.iter().map(ToString::to_string));
        let mut child = ringwall_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringwall");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            addrs: Vec::new(),
            logs,
            log_lines: RefCell::new(Vec::new()),
            exited: None,
            _config: config,
        };
        proxy.addrs = proxy.wait_listening(&args);
        proxy.addr = proxy.addrs[0];
        proxy.check_driver(&args);
        proxy
    }

    /// When the suite runs on a driver named by `RINGWALL_IO_DRIVER` (CI's second pass runs
    /// it on epoll), every proxy started without its own `--io-driver` must be on that driver:
    /// a pass that silently ran on another would prove nothing.
    fn check_driver(&mut self, args: &[String]) {
        let Ok(driver) = std::env::var("RINGWALL_IO_DRIVER") else {
            return;
        };
        if args.iter().any(|a| a == "--io-driver") || driver == "auto" {
            return;
        }
        let expected = match driver.as_str() {
            "epoll" => "I/O driver: epoll",
            _ => "I/O driver: io_uring",
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.logs().contains("I/O driver: ") {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.logs.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "ringwall {args:?} did not name its I/O driver ({e}):\n{}",
                    self.logs()
                )
            });
            self.log_lines.borrow_mut().push(line);
        }
        assert!(
            self.logs().contains(expected),
            "RINGWALL_IO_DRIVER={driver}, but ringwall {args:?} runs on another driver:\n{}",
            self.logs()
        );
    }

    /// Every listening address, in listener order (the line naming the driver follows them).
    fn wait_listening(&mut self, args: &[String]) -> Vec<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addrs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    let addr = listening_addr(&line);
                    let done = line.contains("I/O driver: ");
                    self.log_lines.borrow_mut().push(line);
                    addrs.extend(addr);
                    if done && !addrs.is_empty() {
                        return addrs;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "ringwall {args:?} did not log `listening on` within {START_TIMEOUT:?}; stderr:\n{}",
                    self.logs()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(2));
                    panic!(
                        "ringwall {args:?} exited ({status:?}) before listening; stderr:\n{}",
                        self.logs()
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything ringwall logged so far.
    pub fn logs(&self) -> String {
        let mut lines = self.log_lines.borrow_mut();
        while let Ok(line) = self.logs.try_recv() {
            lines.push(line);
        }
        lines.join("\n")
    }

    /// The admin listener's address, from the log line that names it.
    pub fn admin_addr(&self) -> SocketAddr {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("admin listener on http://"))
            .expect("the admin address is logged");
        line.rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (through `kill(1)`: the tests hold no `unsafe`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The number of file descriptors the process has open (entries of `/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        open_fds(self.pid()).expect("/proc/PID/fd of ringwall")
    }

    /// The open descriptor count once it has held still for 300 ms (sampled every 25 ms, for
    /// at most 5 s; the last sample if it never settles).
    pub fn settled_fds(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.open_fds();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(25));
            let now = self.open_fds();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_millis(300) {
                break;
            }
        }
        last
    }

    /// The resident set size of the process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).expect("VmRSS of ringwall")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- ringwall stderr ---\n{}\n---", self.logs());
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    // `http://`, `https://`, `tcp://`, `tls://`.
    let (_, rest) = rest.split_once("://")?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

/// Open file descriptors of a process: the entries of `/proc/PID/fd`.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process's RSS every 20 ms on a thread until stopped; reports the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::SeqCst);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The outcome of a `ringwall` run that is expected to exit by itself.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ringwall args…` to completion (killed after 10 s).
pub fn run_ringwall(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let mut child = ringwall_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringwall");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringwall {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A ureq agent with timeouts, no proxy from the environment, and 4xx/5xx as plain responses.
pub fn ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(IO_TIMEOUT))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// What the admin endpoint's `/status` says of the upstream server at `addr` (its label ends
/// with the address: `127.0.0.1:9001`, `https://name@127.0.0.1:9001`).
pub fn server_state(admin: SocketAddr, addr: SocketAddr) -> String {
    let status = Client::connect(admin).request("GET /status HTTP/1.1\r\nHost: admin\r\n\r\n");
    let text = status.text();
    let needle = format!("{addr}\",\"state\":\"");
    let Some(at) = text.find(&needle) else {
        return format!("not in /status: {text}");
    };
    let rest = &text[at + needle.len()..];
    rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
}
