//! CPU time and memory of processes, read from `/proc`, before and after a run.
//!
//! A [`ProcessSample`] sums `utime + stime` over every thread in `/proc/PID/task/*/stat` and
//! reads `VmRSS` from `/proc/PID/status`. Two samples and the run's request and byte counts give a
//! [`ProcessUsage`]: CPU µs per request, CPU µs per MiB, RSS before and after. Clock ticks are
//! converted with `getconf CLK_TCK` ([`ClockTicks`]), or 100 (Linux's value everywhere in
//! practice) when `getconf` is missing, and the report says which. The generator's own CPU comes
//! from `/proc/self/stat`, which counts every thread of this process, finished ones included.
//! The parsers are pure functions over the files' text.

use std::fs;
use std::io;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Clock ticks per second for the `stat` files' time fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockTicks {
    pub per_second: u64,
    /// `getconf CLK_TCK` was unavailable and 100 was assumed.
    pub assumed: bool,
}

impl ClockTicks {
    /// Asks `getconf CLK_TCK`; assumes 100 if that fails.
    pub fn detect() -> Self {
        let asked = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0);
        match asked {
            Some(per_second) => ClockTicks {
                per_second,
                assumed: false,
            },
            None => ClockTicks {
                per_second: 100,
                assumed: true,
            },
        }
    }

    pub fn to_seconds(self, ticks: u64) -> f64 {
        ticks as f64 / self.per_second as f64
    }
}

/// `utime + stime` (clock ticks) from one `stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    parse_stat_user_system(stat).map(|(user, system)| user + system)
}

/// `utime` and `stime` (fields 14 and 15) from one `stat` line, in clock ticks.
pub fn parse_stat_user_system(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the comm: state(3) ppid(4) ... utime(14) stime(15); index 0 here is field 3.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The parent pid (field 4) from one `stat` line.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU ticks and RSS of one process at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessSample {
    /// `utime + stime` summed over the threads alive now.
    pub cpu_ticks: u64,
    /// `utime` alone: the part of `cpu_ticks` spent in user space.
    pub user_ticks: u64,
    pub rss_kib: u64,
    pub threads: usize,
}

impl ProcessSample {
    /// Samples `/proc/PID`. Threads that vanish while being read are skipped.
    pub fn take(pid: u32) -> io::Result<Self> {
        let mut sample = ProcessSample::default();
        for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(entry) = entry else { continue };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((user, system)) = parse_stat_user_system(&stat) {
                sample.cpu_ticks += user + system;
                sample.user_ticks += user;
                sample.threads += 1;
            }
        }
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        sample.rss_kib = parse_vm_rss_kib(&status).unwrap_or(0);
        Ok(sample)
    }
}

/// The command name of a process (`/proc/PID/comm`), or `?`.
pub fn process_name(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| "?".to_string(), |s| s.trim().to_string())
}

/// The CPU ticks of this whole process (every thread, finished ones included).
pub fn self_cpu_ticks() -> u64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat_cpu_ticks(&s))
        .unwrap_or(0)
}

/// The pids of the children of `parent` (one level), from every `/proc/*/stat`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut kids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat_ppid(&s))
                == Some(parent)
        })
        .collect();
    kids.sort_unstable();
    kids
}

/// What one target process used during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub pid: u32,
    pub name: String,
    pub threads: usize,
    /// CPU seconds (user + system) spent during the run.
    pub cpu_seconds: f64,
    /// Share of one core over the run, in percent.
    pub cpu_percent: f64,
    pub cpu_us_per_request: Option<f64>,
    pub cpu_us_per_mib: Option<f64>,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

/// What a run moved, for the per-request and per-MiB figures.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    pub requests: u64,
    /// Bytes sent plus bytes received by the generator.
    pub bytes: u64,
    pub elapsed_seconds: f64,
}

impl ProcessUsage {
    /// Usage from two samples.
    pub fn between(
        pid: u32,
        name: String,
        before: ProcessSample,
        after: ProcessSample,
        ticks: ClockTicks,
        work: Work,
    ) -> Self {
        // Threads that exited during the run take their ticks with them; never go negative.
        let cpu_seconds = ticks.to_seconds(after.cpu_ticks.saturating_sub(before.cpu_ticks));
        let (per_request, per_mib) = per_unit(cpu_seconds, work);
        ProcessUsage {
            pid,
            name,
            threads: after.threads,
            cpu_seconds,
            cpu_percent: percent_of_core(cpu_seconds, work.elapsed_seconds),
            cpu_us_per_request: per_request,
            cpu_us_per_mib: per_mib,
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
        }
    }
}

/// CPU µs per request and per MiB, `None` where nothing was done.
pub fn per_unit(cpu_seconds: f64, work: Work) -> (Option<f64>, Option<f64>) {
    let us = cpu_seconds * 1e6;
    let per_request = (work.requests > 0).then(|| us / work.requests as f64);
    let mib = work.bytes as f64 / (1024.0 * 1024.0);
    let per_mib = (work.bytes > 0).then(|| us / mib);
    (per_request, per_mib)
}

/// CPU seconds over wall seconds, as a percentage of one core.
pub fn percent_of_core(cpu_seconds: f64, elapsed_seconds: f64) -> f64 {
    if elapsed_seconds > 0.0 {
        100.0 * cpu_seconds / elapsed_seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (nginx: worker) process) S 4241 4241 4241 0 -1 4194624 1200 0 0 0 150 37 0 0 20 0 1 0 123456 12345678 2000 18446744073709551615";

    #[test]
    fn stat_fields_after_a_tricky_comm() {
        assert_eq!(parse_stat_cpu_ticks(STAT), Some(187));
        assert_eq!(parse_stat_ppid(STAT), Some(4241));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn vm_rss_from_status() {
        let status = "Name:\tnginx\nVmPeak:\t  10000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss_kib(status), Some(5120));
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn usage_per_request_and_per_mib() {
        let ticks = ClockTicks {
            per_second: 100,
            assumed: false,
        };
        let before = ProcessSample {
            cpu_ticks: 1000,
            rss_kib: 4000,
            threads: 1,
            ..ProcessSample::default()
        };
        let after = ProcessSample {
            cpu_ticks: 1150,
            rss_kib: 4100,
            threads: 1,
            ..ProcessSample::default()
        };
        let work = Work {
            requests: 100_000,
            bytes: 300 * 1024 * 1024,
            elapsed_seconds: 2.0,
        };
        let u = ProcessUsage::between(7, "p".into(), before, after, ticks, work);
        assert!((u.cpu_seconds - 1.5).abs() < 1e-12);
        assert!((u.cpu_percent - 75.0).abs() < 1e-9);
        assert!((u.cpu_us_per_request.unwrap() - 15.0).abs() < 1e-9);
        assert!((u.cpu_us_per_mib.unwrap() - 5000.0).abs() < 1e-9);
        assert_eq!((u.rss_before_kib, u.rss_after_kib), (4000, 4100));
        let idle = Work {
            requests: 0,
            bytes: 0,
            elapsed_seconds: 0.0,
        };
        assert_eq!(per_unit(1.0, idle), (None, None));
        assert!(percent_of_core(1.0, 0.0).abs() < f64::EPSILON);
    }

    #[test]
    fn sampling_this_process() {
        let s = ProcessSample::take(std::process::id()).unwrap();
        assert!(s.threads >= 1);
        assert!(s.rss_kib > 0);
        assert!(ClockTicks::detect().per_second > 0);
        assert!(!process_name(std::process::id()).is_empty());
    }
}
