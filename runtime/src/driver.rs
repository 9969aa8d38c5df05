//! Building a worker's monoio runtime on the best I/O driver the kernel allows.
//!
//! The ring is what makes io_uring pay: a plain ring costs more CPU per request than nginx's
//! epoll loop, `COOP_TASKRUN` removes the inter-processor interrupts for completions, and
//! `SINGLE_ISSUER + DEFER_TASKRUN` (kernel 6.1+) runs completion work only when the worker asks
//! for it. [`DriverChoice::Auto`] tries those setups from the fastest down and falls back to
//! monoio's epoll driver where io_uring is missing or disabled (`io_uring_disabled`).

use std::fmt;
use std::future::Future;
use std::io;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder};

/// Which I/O driver a worker should run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// The fastest io_uring setup the kernel accepts, else epoll.
    Auto,
    /// io_uring with `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`, or fail.
    UringDefer,
    /// io_uring with `COOP_TASKRUN`, or fail.
    UringCoop,
    /// io_uring with no setup flags, or fail.
    UringPlain,
    /// io_uring with `SQPOLL` (a kernel thread polls the submission queue), or fail. Never
    /// tried by `Auto`: the poller takes a core of its own.
    UringSqpoll,
    /// monoio's epoll driver.
    Epoll,
}

/// The driver a worker actually runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    UringDefer,
    UringCoop,
    UringPlain,
    UringSqpoll,
    Epoll,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::UringDefer => "io_uring (COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN)",
            DriverKind::UringCoop => "io_uring (COOP_TASKRUN)",
            DriverKind::UringPlain => "io_uring (no setup flags)",
            DriverKind::UringSqpoll => "io_uring (SQPOLL)",
            DriverKind::Epoll => "epoll (monoio legacy driver)",
        })
    }
}

/// A built runtime of either driver family.
pub(crate) enum WorkerRuntime {
    Uring(Runtime<TimeDriver<IoUringDriver>>),
    Epoll(Runtime<TimeDriver<LegacyDriver>>),
}

impl WorkerRuntime {
    /// Builds the runtime for `choice` on the calling thread (a ring with `SINGLE_ISSUER` must be
    /// driven by the thread that created it). Returns the driver it got and, for `Auto`, the
    /// reasons the faster setups were refused.
    pub(crate) fn build(
        choice: DriverChoice,
        ring_entries: u32,
    ) -> io::Result<(WorkerRuntime, DriverKind, Vec<String>)> {
        let candidates: &[DriverKind] = match choice {
            DriverChoice::Auto => &[
                DriverKind::UringDefer,
                DriverKind::UringCoop,
                DriverKind::UringPlain,
                DriverKind::Epoll,
            ],
            DriverChoice::UringDefer => &[DriverKind::UringDefer],
            DriverChoice::UringCoop => &[DriverKind::UringCoop],
            DriverChoice::UringPlain => &[DriverKind::UringPlain],
            DriverChoice::UringSqpoll => &[DriverKind::UringSqpoll],
            DriverChoice::Epoll => &[DriverKind::Epoll],
        };
        let mut refused = Vec::new();
        let mut last_err = None;
        for &kind in candidates {
            match Self::build_kind(kind, ring_entries) {
                Ok(rt) => return Ok((rt, kind, refused)),
                Err(e) => {
                    refused.push(format!("{kind}: {e}"));
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no I/O driver to try")))
    }

    fn build_kind(kind: DriverKind, ring_entries: u32) -> io::Result<WorkerRuntime> {
        let mut urb = io_uring::IoUring::builder();
        match kind {
            DriverKind::UringDefer => {
                urb.setup_coop_taskrun()
                    .setup_single_issuer()
                    .setup_defer_taskrun();
            }
            DriverKind::UringCoop => {
                urb.setup_coop_taskrun();
            }
            DriverKind::UringPlain => {}
            DriverKind::UringSqpoll => {
                // The poller sleeps after a second without submissions.
                urb.setup_sqpoll(1000);
            }
            DriverKind::Epoll => {
                let rt = RuntimeBuilder::<LegacyDriver>::new()
                    .with_entries(ring_entries)
                    .enable_timer()
                    .build()?;
                return Ok(WorkerRuntime::Epoll(rt));
            }
        }
        let rt = RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(ring_entries)
            .uring_builder(urb)
            .enable_timer()
            .build()?;
        Ok(WorkerRuntime::Uring(rt))
    }

    pub(crate) fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        match self {
            WorkerRuntime::Uring(rt) => rt.block_on(fut),
            WorkerRuntime::Epoll(rt) => rt.block_on(fut),
        }
    }
}
