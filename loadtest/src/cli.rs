//! The command line: `ringwall-load [OPTIONS] URL` (wrk's flags) and `ringwall-load compare`.
//!
//! [`Cli`] only parses (clap derive); [`LoadArgs::to_options`] reads the files that flags name
//! (`--body-file`, `--paths`) and builds [`LoadOptions`]; [`execute`] runs and prints. Ctrl-C
//! stops a run early and still prints what it measured, as wrk does; a second Ctrl-C exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::options::{parse_duration, parse_header, IoDriver, LoadOptions};

/// ringwall-load: a wrk-style HTTP/1.1 load generator on io_uring.
///
/// Closed loop by default; with --rate, open loop with latency measured from each request's
/// intended send time (wrk2's correction for coordinated omission).
#[derive(Debug, Parser)]
#[command(
    name = "ringwall-load",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ringwall, nginx and HAProxy side by side and compare them (see docs/loadtest.md).
    Compare(crate::compare::CompareArgs),
}

/// The flags of a single load run.
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// Target URL, http:// or https://.
    #[arg(required = true, value_name = "URL")]
    pub url: Option<String>,

    /// Connections to keep open, over all threads.
    #[arg(short = 'c', long, default_value_t = 64, value_name = "N")]
    pub connections: usize,

    /// Generator threads (one io_uring runtime each).
    #[arg(short = 't', long, default_value_t = 1, value_name = "N")]
    pub threads: usize,

    /// How long to send requests: 10s, 500ms, 2m, or seconds.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration_arg, value_name = "DUR")]
    pub duration: Duration,

    /// Request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Print the latency percentile table.
    #[arg(long)]
    pub latency: bool,

    /// Request method.
    #[arg(short = 'm', long, default_value = "GET", value_name = "METHOD")]
    pub method: String,

    /// Request body.
    #[arg(long, value_name = "STRING", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body, read from a file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// File of request paths, one per line, used round robin ('#' lines and blanks skipped).
    #[arg(long, value_name = "FILE")]
    pub paths: Option<PathBuf>,

    /// Open loop: total requests per second over all connections (wrk2-style).
    #[arg(short = 'R', long, value_name = "N")]
    pub rate: Option<f64>,

    /// Requests written back to back on a connection before reading the responses.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pipeline: usize,

    /// A new connection for every request, sent with "Connection: close".
    #[arg(long)]
    pub no_keepalive: bool,

    /// Longest wait for a connection, a write, or the next bytes of a response.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg, value_name = "DUR")]
    pub timeout: Duration,

    /// Accept any TLS certificate (for self-signed test certificates).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Make a full TLS handshake on every new connection (no session resumption).
    #[arg(long)]
    pub no_tls_resume: bool,

    /// PEM file of CA certificates to trust for https [default: the system bundle].
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Pin generator threads to these cores: "1", "0,2", "2-3" (thread i on the i-th core).
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Process whose CPU time (all threads) and RSS are sampled before and after (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// I/O driver of the generator threads.
    #[arg(long, value_enum, default_value_t = IoDriver::Auto)]
    pub io_driver: IoDriver,
}

/// A list of core ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Parses "1", "0,2", "2-3", "0,2-3".
pub fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad core list {s:?}: use e.g. 1 or 0,2 or 2-3");
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            cpus.extend(a..=b);
        } else {
            cpus.push(part.parse().map_err(|_| bad())?);
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty core list {s:?}"));
    }
    Ok(CpuList(cpus))
}

/// Reads a `--paths` file: one path per line, blanks and `#` comments skipped.
pub fn read_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

impl LoadArgs {
    /// The options these flags describe (reads `--body-file` and `--paths`).
    pub fn to_options(&self) -> anyhow::Result<LoadOptions> {
        let Some(url) = self.url.clone() else {
            bail!("a URL is required");
        };
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Some(b.clone().into_bytes()),
            (None, Some(f)) => {
                Some(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?)
            }
            (None, None) => None,
        };
        let paths = match &self.paths {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let paths = read_paths(&text);
                if paths.is_empty() {
                    bail!("{} holds no paths", f.display());
                }
                paths
            }
            None => Vec::new(),
        };
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(LoadOptions {
            url,
            connections: self.connections,
            threads: self.threads,
            duration: self.duration,
            headers,
            method: self.method.to_ascii_uppercase(),
            body,
            paths,
            rate: self.rate,
            pipeline: self.pipeline,
            keepalive: !self.no_keepalive,
            timeout: self.timeout,
            insecure: self.insecure,
            tls_resume: !self.no_tls_resume,
            ca_file: self.cacert.clone(),
            cpus: self.cpus.clone().map(|c| c.0).unwrap_or_default(),
            pids: self.pids.clone(),
            io_driver: self.io_driver,
            cancel: None,
        })
    }
}

/// Ctrl-C and SIGTERM set the returned flag; a second one exits at once.
pub fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Runs what the command line asks for.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Compare(args)) = cli.command {
        return crate::compare::execute(&args);
    }
    let mut opts = cli.load.to_options()?;
    opts.cancel = Some(interrupt_flag()?);
    let report = crate::run(&opts)?;
    if cli.load.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text(cli.load.latency));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_paths() {
        assert_eq!(parse_cpu_list("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpu_list("0,2-3"), Ok(CpuList(vec![0, 2, 3])));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(read_paths("/a\n\n# c\n  /b  \n"), vec!["/a", "/b"]);
    }

    #[test]
    fn wrk_style_command_lines() {
        let cli = Cli::try_parse_from([
            "ringwall-load",
            "-c",
            "16",
            "-t",
            "2",
            "-d",
            "3s",
            "-H",
            "X-A: 1",
            "--latency",
            "-R",
            "500",
            "--cpus",
            "1",
            "--pid",
            "42",
            "http://127.0.0.1:8080/",
        ])
        .unwrap();
        let o = cli.load.to_options().unwrap();
        assert_eq!((o.connections, o.threads), (16, 2));
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(o.rate, Some(500.0));
        assert_eq!((o.cpus, o.pids), (vec![1], vec![42]));
        assert!(cli.load.latency && o.keepalive);
        assert!(Cli::try_parse_from(["ringwall-load"]).is_err());
        assert!(Cli::try_parse_from([
            "ringwall-load",
            "--body",
            "a",
            "--body-file",
            "f",
            "http://x/"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["ringwall-load", "compare", "--rounds", "1"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Compare(_))));
    }
}
