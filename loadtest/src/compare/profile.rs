//! `compare --profile DIR`: where each proxy's time goes, per request, on the same load.
//!
//! After the measured rounds of a scenario, every proxy gets two more runs of it that do not
//! count toward the medians (tracing costs CPU of its own):
//!
//! 1. under `perf stat` attached to the proxy's processes, counting system calls (all, and the
//!    ones a proxy's data path makes), io_uring operations submitted, context switches and page
//!    faults; user and kernel CPU time are read from `/proc` around the run;
//! 2. under `perf record -g` (sampling on the CPU clock), whose report by shared object and by
//!    symbol is kept as text.
//!
//! Every count is divided by the requests that run completed. [`Profile::markdown`] is the
//! table `docs/benchmarks.md` quotes; the raw `perf stat` output and the reports stay in DIR.

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::process_usage::{ClockTicks, ProcessSample};

/// The events counted, with the column each one becomes (per request).
pub const EVENTS: [(&str, &str); 16] = [
    ("raw_syscalls:sys_enter", "syscalls"),
    ("syscalls:sys_enter_io_uring_enter", "io_uring_enter"),
    ("syscalls:sys_enter_epoll_wait", "epoll_wait"),
    ("syscalls:sys_enter_epoll_pwait", "epoll_pwait"),
    ("syscalls:sys_enter_epoll_ctl", "epoll_ctl"),
    ("syscalls:sys_enter_recvfrom", "recvfrom"),
    ("syscalls:sys_enter_sendto", "sendto"),
    ("syscalls:sys_enter_read", "read"),
    ("syscalls:sys_enter_write", "write"),
    ("syscalls:sys_enter_readv", "readv"),
    ("syscalls:sys_enter_writev", "writev"),
    ("syscalls:sys_enter_splice", "splice"),
    ("io_uring:io_uring_submit_req", "ring ops"),
    ("io_uring:io_uring_poll_arm", "ring polls armed"),
    ("context-switches", "context switches"),
    ("page-faults", "page faults"),
];

/// One proxy's profile on one scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileRow {
    pub scenario: String,
    pub proxy: String,
    pub requests: u64,
    pub user_us_per_request: f64,
    pub system_us_per_request: f64,
    /// Per request, in the order of [`EVENTS`]; `None` where perf could not count the event.
    pub per_request: Vec<Option<f64>>,
    /// The text reports of the sampled run, relative to the profile directory.
    pub report_by_dso: String,
    pub report_by_symbol: String,
}

/// All rows of one `compare --profile` run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    pub rows: Vec<ProfileRow>,
}

impl Profile {
    /// The per-request table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "Per request, from one extra run per proxy under `perf stat` (counts) and one under \
             `perf record -g` (where time goes; reports linked). User and kernel time come from \
             /proc around the counting run; tracing adds to both, so compare rows with each \
             other, not with the medians.\n\n| scenario | proxy | requests | user µs | kernel µs |",
        );
        for (_, column) in EVENTS {
            let _ = write!(out, " {column} |");
        }
        out.push_str(" reports |\n|---|---|---:|---:|---:|");
        for _ in EVENTS {
            out.push_str("---:|");
        }
        out.push_str("---|\n");
        for row in &self.rows {
            let _ = write!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} |",
                row.scenario,
                row.proxy,
                row.requests,
                row.user_us_per_request,
                row.system_us_per_request
            );
            for value in &row.per_request {
                match value {
                    Some(v) => {
                        let _ = write!(out, " {v:.2} |");
                    }
                    None => out.push_str(" – |"),
                }
            }
            let _ = writeln!(
                out,
                " [dso]({}), [symbols]({}) |",
                row.report_by_dso, row.report_by_symbol
            );
        }
        out
    }
}

/// CPU ticks of `pids` (all their threads): (user, system).
fn user_system_ticks(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|&pid| ProcessSample::take(pid).ok())
        .fold((0, 0), |(user, system), sample| {
            (
                user + sample.user_ticks,
                system + sample.cpu_ticks - sample.user_ticks,
            )
        })
}

fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts `perf` attached to `pids` with `args` before them, and waits until it is attached.
fn attach(args: &[String], pids: &[u32], log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log)?;
    let child = Command::new("perf")
        .args(args)
        .arg("-p")
        .arg(pid_list(pids))
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .context("starting perf (install linux-perf)")?;
    // perf needs a moment to open its events on every thread.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

/// Stops an attached `perf` the way Ctrl-C does, so that it writes its output.
fn detach(mut child: Child, what: &str) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    for _ in 0..200 {
        if let Some(status) = child.try_wait()? {
            // perf ends with the status of SIGINT (signal 2, or exit code 130) when stopped by it.
            let interrupted = status.code() == Some(130) || status.signal() == Some(2);
            if !status.success() && !interrupted {
                bail!("perf {what} failed ({status})");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    bail!("perf {what} did not stop within 10 s")
}

/// Parses `perf stat -x,` output: event name → count (`None` when not counted).
pub fn parse_perf_stat_csv(text: &str) -> Vec<(String, Option<f64>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let event = fields.get(2)?.trim().to_string();
            let value = fields[0].trim().parse::<f64>().ok();
            Some((event, value))
        })
        .collect()
}

/// Profiles one run of a scenario: counts, then samples. `run` performs the load and returns
/// the requests it completed.
pub fn profile_scenario(
    dir: &Path,
    scenario: &str,
    proxy: &str,
    pids: &[u32],
    mut run: impl FnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<ProfileRow> {
    std::fs::create_dir_all(dir)?;
    let tag = format!("{scenario}-{}", proxy.to_ascii_lowercase());
    let ticks = ClockTicks::detect();

    let stat_file = dir.join(format!("{tag}-perf-stat.csv"));
    let mut args = vec!["stat".to_string(), "-x,".to_string(), "-o".to_string()];
    args.push(stat_file.display().to_string());
    for (event, _) in EVENTS {
        args.push("-e".into());
        args.push(event.into());
    }
    let perf = attach(&args, pids, &dir.join(format!("{tag}-perf-stat.log")))?;
    let before = user_system_ticks(pids);
    let requests = run();
    let after = user_system_ticks(pids);
    detach(perf, "stat")?;
    let requests = requests?.max(1);
    let counted = parse_perf_stat_csv(&std::fs::read_to_string(&stat_file)?);
    let per_request = EVENTS
        .iter()
        .map(|(event, _)| {
            counted
                .iter()
                .find(|(name, _)| name == event)
                .and_then(|(_, value)| *value)
                .map(|v| v / requests as f64)
        })
        .collect();
    let us = |t: u64| t as f64 / ticks.per_second as f64 * 1e6 / requests as f64;

    let data = dir.join(format!("{tag}.perf.data"));
    let args: Vec<String> = ["record", "-g", "-F", "1999", "-o"]
        .iter()
        .map(ToString::to_string)
        .chain([data.display().to_string()])
        .collect();
    let perf = attach(&args, pids, &dir.join(format!("{tag}-perf-record.log")))?;
    let sampled = run();
    detach(perf, "record")?;
    sampled?;
    let by_dso = report(&data, dir, &format!("{tag}-by-dso.txt"), &["--sort", "dso"])?;
    let by_symbol = report(
        &data,
        dir,
        &format!("{tag}-by-symbol.txt"),
        &["--sort", "dso,symbol", "--percent-limit", "0.5"],
    )?;
    let _ = std::fs::remove_file(&data);

    Ok(ProfileRow {
        scenario: scenario.to_string(),
        proxy: proxy.to_string(),
        requests,
        user_us_per_request: us(after.0.saturating_sub(before.0)),
        system_us_per_request: us(after.1.saturating_sub(before.1)),
        per_request,
        report_by_dso: by_dso,
        report_by_symbol: by_symbol,
    })
}

/// Writes `perf report --stdio` of `data` with `sort` into `dir/name`; returns `name`.
fn report(data: &Path, dir: &Path, name: &str, sort: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "--no-children", "-g", "none"])
        .args(sort)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, &out.stdout)?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_stat_csv_parses_counts_and_uncounted_events() {
        let text = "# started on Tue Dec  1 09:00:00 2026\n\n\
                    123456,,raw_syscalls:sys_enter,5000000000,100.00,,\n\
                    <not counted>,,io_uring:io_uring_submit_req,0,100.00,,\n\
                    42,,context-switches,5000000000,100.00,,\n";
        let parsed = parse_perf_stat_csv(text);
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[0],
            ("raw_syscalls:sys_enter".to_string(), Some(123_456.0))
        );
        assert_eq!(parsed[1].1, None);
        assert_eq!(parsed[2], ("context-switches".to_string(), Some(42.0)));
    }

    #[test]
    fn the_table_has_a_column_per_event() {
        let profile = Profile {
            rows: vec![ProfileRow {
                scenario: "small-16".into(),
                proxy: "nginx".into(),
                requests: 10,
                user_us_per_request: 1.0,
                system_us_per_request: 2.0,
                per_request: vec![Some(1.0); EVENTS.len()],
                report_by_dso: "a.txt".into(),
                report_by_symbol: "b.txt".into(),
            }],
        };
        let md = profile.markdown();
        let header = md.lines().find(|l| l.starts_with("| scenario")).unwrap();
        let row = md.lines().find(|l| l.starts_with("| small-16")).unwrap();
        assert_eq!(header.matches('|').count(), row.matches('|').count());
        assert!(row.contains("[dso](a.txt)"));
    }
}
