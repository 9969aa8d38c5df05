//! The run: generator threads, one monoio runtime each, and the report built from their counts.
//!
//! [`run`] validates the options, renders the requests, resolves the target and sets up TLS once,
//! then starts `threads` threads. Each pins itself to its core when `cpus` is given, builds its
//! runtime on the fastest driver the kernel allows (io_uring with `COOP_TASKRUN |
//! SINGLE_ISSUER | DEFER_TASKRUN`, then `COOP_TASKRUN`, then a plain ring, then monoio's epoll
//! driver, as ringwall's own workers do) and drives its share of the connections
//! (`connection::drive`). The calling thread samples the `--pid` processes and itself at the
//! start and after the threads have finished, and merges everything into a [`LoadReport`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};

use crate::connection::{self, Plan, ThreadStats};
use crate::options::{IoDriver, LoadOptions};
use crate::process_usage::{
    per_unit, percent_of_core, process_name, self_cpu_ticks, ClockTicks, ProcessSample,
    ProcessUsage, Work,
};
use crate::report::{GeneratorUsage, LoadReport};
use crate::request::RequestSet;
use crate::target::{Scheme, Target};
use crate::tls;

/// Time between starting the threads and the first request: threads build their runtimes and
/// connections connect in it, so that neither counts against the first requests' latency.
const START_GRACE: Duration = Duration::from_millis(100);
/// Submission queue entries of each generator ring.
const RING_ENTRIES: u32 = 1024;

/// Runs the load described by `opts` and reports what it measured.
pub fn run(opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    opts.validate()?;
    let target = Target::parse(&opts.url)?;
    let ticks = ClockTicks::detect();
    let plan = Arc::new(make_plan(opts, &target)?);
    let start = plan.start;

    let mut handles = Vec::with_capacity(opts.threads);
    for t in 0..opts.threads {
        let plan = plan.clone();
        let threads = opts.threads;
        let cpu = (!opts.cpus.is_empty()).then(|| opts.cpus[t % opts.cpus.len()]);
        let driver = opts.io_driver;
        let handle = thread::Builder::new()
            .name(format!("ringwall-load-{t}"))
            .spawn(move || generator_thread(&plan, t, threads, cpu, driver))
            .context("spawning a generator thread")?;
        handles.push(handle);
    }

    // Sample at the start line, not before: connection setup is not part of the run.
    let now = Instant::now();
    if start > now {
        thread::sleep(start - now);
    }
    let before: Vec<Option<ProcessSample>> = opts
        .pids
        .iter()
        .map(|&pid| ProcessSample::take(pid).ok())
        .collect();
    let self_before = self_cpu_ticks();

    let mut stats = ThreadStats::default();
    let mut drivers = Vec::new();
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok((s, driver))) => {
                merge(&mut stats, &s);
                drivers.push(driver);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("a generator thread panicked")),
        }
    }
    let joined = Instant::now();
    let self_after = self_cpu_ticks();
    if let Some(e) = failure {
        return Err(e);
    }

    // The run lasted until the last response, or the deadline if responses stopped before it
    // (timeouts at the end do not stretch it); a cancelled run ends when it was cancelled.
    let end = stats
        .last_response
        .unwrap_or(start)
        .max(joined.min(plan.deadline));
    let elapsed = end.saturating_duration_since(start).as_secs_f64();
    let work = Work {
        requests: stats.requests,
        bytes: stats.bytes_read + stats.bytes_written,
        elapsed_seconds: elapsed,
    };
    let mut processes = Vec::new();
    for (&pid, before) in opts.pids.iter().zip(before) {
        let before = before.with_context(|| format!("cannot read /proc/{pid} (--pid {pid})"))?;
        let after = ProcessSample::take(pid)
            .with_context(|| format!("process {pid} exited during the run"))?;
        processes.push(ProcessUsage::between(
            pid,
            process_name(pid),
            before,
            after,
            ticks,
            work,
        ));
    }
    let generator_cpu = ticks.to_seconds(self_after.saturating_sub(self_before));
    Ok(assemble(
        opts,
        &target,
        &stats,
        drivers.first().cloned().unwrap_or_default(),
        elapsed,
        work,
        processes,
        generator_cpu,
        ticks,
    ))
}

/// Resolves the target, renders the requests, sets up TLS and fixes the start time.
fn make_plan(opts: &LoadOptions, target: &Target) -> anyhow::Result<Plan> {
    let tls = match target.scheme {
        Scheme::Http => None,
        Scheme::Https => {
            let mut config = tls::client_config(opts.insecure, opts.ca_file.as_deref())?;
            if !opts.tls_resume {
                config.resumption = rustls::client::Resumption::disabled();
            }
            Some((
                monoio_rustls::TlsConnector::from(config),
                tls::server_name(&target.host)?,
            ))
        }
    };
    let start = Instant::now() + START_GRACE;
    Ok(Plan {
        addr: target.socket_addr()?,
        requests: RequestSet::new(opts, target),
        tls,
        connections: opts.connections,
        pipeline: opts.pipeline,
        keepalive: opts.keepalive,
        timeout: opts.timeout,
        rate: opts.rate,
        start,
        deadline: start + opts.duration,
        cancel: opts.cancel.clone(),
    })
}

/// The report of a finished run.
#[allow(clippy::too_many_arguments)] // the figures of one run, gathered in `run` in turn
fn assemble(
    opts: &LoadOptions,
    target: &Target,
    stats: &ThreadStats,
    io_driver: String,
    elapsed: f64,
    work: Work,
    processes: Vec<ProcessUsage>,
    generator_cpu: f64,
    ticks: ClockTicks,
) -> LoadReport {
    let per_second = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let latency = stats.latency.summary();
    LoadReport {
        url: target.to_string(),
        method: opts.method.clone(),
        connections: opts.connections,
        threads: opts.threads,
        pipeline: opts.pipeline,
        keepalive: opts.keepalive,
        rate: opts.rate,
        io_driver,
        duration_seconds: opts.duration.as_secs_f64(),
        elapsed_seconds: elapsed,
        requests: stats.requests,
        requests_per_second: per_second(stats.requests),
        bytes_read: stats.bytes_read,
        bytes_written: stats.bytes_written,
        read_mib_per_second: per_second(stats.bytes_read) / (1024.0 * 1024.0),
        connections_opened: stats.connections_opened,
        latency_within_stdev_percent: latency.within_stdev(&stats.latency),
        latency,
        status: stats.status,
        errors: stats.errors,
        clock_ticks: ticks,
        processes,
        generator: GeneratorUsage {
            cpu_seconds: generator_cpu,
            cpu_percent: percent_of_core(generator_cpu, elapsed),
            cpu_us_per_request: per_unit(generator_cpu, work).0,
        },
    }
}

fn merge(into: &mut ThreadStats, s: &ThreadStats) {
    into.latency.merge(&s.latency);
    into.requests += s.requests;
    into.bytes_read += s.bytes_read;
    into.bytes_written += s.bytes_written;
    into.connections_opened += s.connections_opened;
    into.status.merge(&s.status);
    into.errors.merge(&s.errors);
    into.last_response = into.last_response.max(s.last_response);
}

/// One generator thread: pin, build the runtime, drive connections `t, t + threads, ...`.
fn generator_thread(
    plan: &Arc<Plan>,
    t: usize,
    threads: usize,
    cpu: Option<usize>,
    driver: IoDriver,
) -> anyhow::Result<(ThreadStats, String)> {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            bail!("cannot pin generator thread {t} to core {id}");
        }
    }
    let (mut rt, kind) = GeneratorRuntime::build(driver)?;
    let stats = rt.block_on(async {
        let stats = Rc::new(RefCell::new(ThreadStats::default()));
        let tasks: Vec<_> = (t..plan.connections)
            .step_by(threads)
            .map(|i| monoio::spawn(connection::drive(plan.clone(), i, stats.clone())))
            .collect();
        for task in tasks {
            task.await;
        }
        stats
    });
    let stats = Rc::try_unwrap(stats)
        .map_err(|_| anyhow::anyhow!("connection tasks outlived the run"))?
        .into_inner();
    Ok((stats, kind.to_string()))
}

/// The runtime of one generator thread.
enum GeneratorRuntime {
    Uring(Runtime<TimeDriver<IoUringDriver>>),
    Epoll(Runtime<TimeDriver<LegacyDriver>>),
}

impl GeneratorRuntime {
    /// Tries the ring setups from the cheapest per request down, then epoll (for `Auto`).
    fn build(choice: IoDriver) -> anyhow::Result<(Self, &'static str)> {
        const DEFER: &str = "io_uring (COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN)";
        const COOP: &str = "io_uring (COOP_TASKRUN)";
        const PLAIN: &str = "io_uring";
        const EPOLL: &str = "epoll";
        let candidates: &[&'static str] = match choice {
            IoDriver::Auto => &[DEFER, COOP, PLAIN, EPOLL],
            IoDriver::Uring => &[DEFER, COOP, PLAIN],
            IoDriver::Epoll => &[EPOLL],
        };
        let mut refused = Vec::new();
        for &kind in candidates {
            let built = if kind == EPOLL {
                RuntimeBuilder::<LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .map(GeneratorRuntime::Epoll)
            } else {
                let mut urb = io_uring::IoUring::builder();
                if kind == DEFER {
                    urb.setup_coop_taskrun()
                        .setup_single_issuer()
                        .setup_defer_taskrun();
                } else if kind == COOP {
                    urb.setup_coop_taskrun();
                }
                RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .uring_builder(urb)
                    .enable_timer()
                    .build()
                    .map(GeneratorRuntime::Uring)
            };
            match built {
                Ok(rt) => return Ok((rt, kind)),
                Err(e) => refused.push(format!("{kind}: {e}")),
            }
        }
        bail!("no I/O driver could be built: {}", refused.join("; "))
    }

    fn block_on<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        match self {
            GeneratorRuntime::Uring(rt) => rt.block_on(fut),
            GeneratorRuntime::Epoll(rt) => rt.block_on(fut),
        }
    }
}
