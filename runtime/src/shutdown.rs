//! Graceful shutdown: the process-wide trigger and each worker's local drain signal.
//!
//! [`Shutdown`] is set once, from the signal thread (SIGINT / SIGTERM) or by a caller; a second
//! signal ends the process at once. Each worker watches it on its control tick and then begins
//! its own [`Drain`]: a single-threaded flag whose waiters (accept loops, idle keep-alive
//! connections) are woken without any cross-thread wake-up on the request path.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The process-wide shutdown trigger. Cheap to clone; every clone sees the same state.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    triggered: Arc<AtomicBool>,
    /// The listening sockets are shared with another process: a drain closes this process's
    /// handles only.
    shared_sockets: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins a graceful shutdown: workers stop accepting and drain.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::Release);
    }

    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Begins a graceful shutdown after another process took over the listening sockets (a
    /// binary upgrade): workers stop accepting and close their handles without taking the
    /// sockets out of the kernel's group, so what is queued on them is the new process's.
    pub fn hand_over(&self) {
        self.share_sockets(true);
        self.trigger();
    }

    /// Whether the listening sockets are shared with another process (a binary upgrade in
    /// progress): while they are, a drain leaves them listening for the other process.
    pub fn share_sockets(&self, shared: bool) {
        self.shared_sockets.store(shared, Ordering::Release);
    }

    pub fn sockets_shared(&self) -> bool {
        self.shared_sockets.load(Ordering::Acquire)
    }

    /// Starts a thread that turns the first SIGINT or SIGTERM into [`Shutdown::trigger`] and a
    /// second one into an immediate exit with status 1; SIGHUP (whose default action would end
    /// the process) and SIGUSR2 go to `control` as [`Signal::Reload`] and [`Signal::Upgrade`].
    pub fn install_signal_handlers(
        &self,
        control: crossbeam_channel::Sender<Signal>,
    ) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2])?;
        let this = self.clone();
        std::thread::Builder::new()
            .name("ringwall-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let asked = match signal {
                        SIGHUP => Some(Signal::Reload),
                        SIGUSR2 => Some(Signal::Upgrade),
                        _ => None,
                    };
                    if let Some(asked) = asked {
                        if control.send(asked).is_err() {
                            tracing::warn!(signal, "signal ignored: nothing handles it");
                        }
                        continue;
                    }
                    if this.is_triggered() {
                        tracing::warn!(signal, "second signal: exiting without draining");
                        std::process::exit(1);
                    }
                    tracing::info!(signal, "shutting down: no new connections, draining");
                    this.trigger();
                }
            })?;
        Ok(())
    }
}

/// What a signal asks of the running process, besides stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the configuration again.
    Reload,
    /// SIGUSR2: start a new process on the same listening sockets, then drain this one.
    Upgrade,
}

/// A worker's drain signal: set once when the worker begins to shut down. Not `Send`: it lives
/// on one worker and is shared by that worker's tasks.
#[derive(Clone, Default)]
pub struct Drain {
    inner: Rc<DrainInner>,
}

#[derive(Default)]
struct DrainInner {
    draining: Cell<bool>,
    waiters: RefCell<WaiterSlots>,
}

/// Wakers of the tasks waiting for the drain, in reusable slots so that a connection that waits
/// once per request does not grow the list.
#[derive(Default)]
struct WaiterSlots {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.inner.draining.get()
    }

    /// Sets the flag and wakes every waiter.
    pub fn begin(&self) {
        if self.inner.draining.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut waiters = self.inner.waiters.borrow_mut();
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once the drain has begun.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            inner: &self.inner,
            slot: None,
        }
    }
}

/// The future returned by [`Drain::wait`].
pub struct DrainWait<'a> {
    inner: &'a DrainInner,
    slot: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.draining.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.inner.waiters.borrow_mut();
        let waker = Some(cx.waker().clone());
        if let Some(slot) = self.slot {
            waiters.slots[slot] = waker;
        } else {
            let slot = if let Some(slot) = waiters.free.pop() {
                waiters.slots[slot] = waker;
                slot
            } else {
                waiters.slots.push(waker);
                waiters.slots.len() - 1
            };
            drop(waiters);
            self.slot = Some(slot);
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut waiters = self.inner.waiters.borrow_mut();
            waiters.slots[slot] = None;
            waiters.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_are_woken_and_slots_reused() {
        let drain = Drain::default();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut wait = Box::pin(drain.wait());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.inner.waiters.borrow().slots.len(), 1);
        let mut wait = Box::pin(drain.wait());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        drain.begin();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert!(drain.is_draining());
    }
}
