//! Deadlines of idle connections: one timer per worker, not one per connection.
//!
//! A connection waiting for its next request holds no read buffer (it waits for readability,
//! [`crate::Stream::readable`]) and, with this, no timer either: monoio's `Sleep` is 640 bytes
//! (its timer entry is cache-padded), more than everything else an idle connection keeps. Here
//! a connection registers once ([`IdleTimers::register`], a slot in a slab), and each wait
//! ([`IdleTimers::wait`]) writes its deadline into the slot. A min-heap holds at most one entry
//! per slot; [`IdleTimers::run`], the worker's one sweeper, wakes on a tick, expires the slots
//! whose deadline passed, and puts back the entries of slots whose deadline moved (a busy
//! connection pushes nothing per request: its entry is re-queued once per timeout). When the
//! worker drains, every wait ends at once.
//!
//! Precision is the tick (100 ms by default), which is what keep-alive and header timeouts of
//! seconds need.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::shutdown::Drain;

/// How often the sweeper looks at the deadlines.
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// A deadline: milliseconds since the timers were made, 0 for none. Eight bytes where an
/// `Option<Instant>` takes sixteen: the slab and the heap hold one per connection.
type Millis = u64;

/// One registered connection's state.
#[derive(Default)]
struct Slot {
    /// Non-zero while the connection waits.
    deadline: Millis,
    /// The deadline of this slot's live heap entry, 0 when it has none (older entries with
    /// other deadlines are stale).
    queued: Millis,
    /// The wait's deadline passed (or the worker drains): the wait ends with `None`.
    expired: bool,
    waker: Option<Waker>,
    /// Bumped when the slot is freed, so that a heap entry of its former owner is ignored.
    generation: u32,
}

/// A heap entry: the earliest deadline first.
struct Entry {
    deadline: Millis,
    slot: u32,
    generation: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        other.deadline.cmp(&self.deadline)
    }
}

struct State {
    /// What the millisecond deadlines count from.
    epoch: Instant,
    slots: Vec<Slot>,
    free: Vec<usize>,
    heap: BinaryHeap<Entry>,
    draining: bool,
}

/// The idle deadlines of one worker's connections (see the module doc).
pub struct IdleTimers {
    state: RefCell<State>,
}

impl Default for IdleTimers {
    fn default() -> Self {
        Self {
            state: RefCell::new(State {
                epoch: Instant::now(),
                slots: Vec::new(),
                free: Vec::new(),
                heap: BinaryHeap::new(),
                draining: false,
            }),
        }
    }
}

impl State {
    /// `at` in milliseconds since the epoch, rounded up, and never 0.
    fn millis(&self, at: Instant) -> Millis {
        let since = at.saturating_duration_since(self.epoch);
        (since.as_millis() as u64).saturating_add(1)
    }
}

/// A connection's registration; frees its slot when dropped.
pub struct IdleKey<'t> {
    timers: &'t IdleTimers,
    slot: usize,
}

impl Drop for IdleKey<'_> {
    fn drop(&mut self) {
        let mut state = self.timers.state.borrow_mut();
        let slot = &mut state.slots[self.slot];
        let generation = slot.generation.wrapping_add(1);
        *slot = Slot {
            generation,
            ..Slot::default()
        };
        state.free.push(self.slot);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`IdleTimers::wait`].
    pub struct IdleWait<'a, F> {
        timers: &'a IdleTimers,
        slot: usize,
        // False when the worker was draining at the start: the wait ends at once.
        armed: bool,
        #[pin]
        future: F,
    }

    impl<F> PinnedDrop for IdleWait<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut state = this.timers.state.borrow_mut();
            let slot = &mut state.slots[*this.slot];
            slot.deadline = 0;
            slot.expired = false;
            slot.waker = None;
        }
    }
}

impl<F: Future> Future for IdleWait<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.armed {
            return Poll::Ready(None);
        }
        {
            let mut state = this.timers.state.borrow_mut();
            let slot = &mut state.slots[*this.slot];
            if slot.expired {
                return Poll::Ready(None);
            }
            match &slot.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slot.waker = Some(cx.waker().clone()),
            }
        }
        this.future.poll(cx).map(Some)
    }
}

impl IdleTimers {
    /// Registers a connection.
    pub fn register(&self) -> IdleKey<'_> {
        let mut state = self.state.borrow_mut();
        let slot = if let Some(slot) = state.free.pop() {
            slot
        } else {
            state.slots.push(Slot::default());
            state.slots.len() - 1
        };
        IdleKey { timers: self, slot }
    }

    /// Runs `future` for at most `timeout`: `None` when the time ran out first or the worker
    /// drains (then `future` is dropped). One small future, with `future` inline: it is what
    /// every idle connection holds.
    pub fn wait<'a, F: Future>(
        &'a self,
        key: &'a IdleKey<'_>,
        timeout: Duration,
        future: F,
    ) -> IdleWait<'a, F> {
        let armed = self.arm(key.slot, Instant::now() + timeout);
        IdleWait {
            timers: self,
            slot: key.slot,
            armed,
            future,
        }
    }

    /// Sets a slot's deadline, queuing it when the heap has no entry for it. False when the
    /// worker drains.
    fn arm(&self, index: usize, at: Instant) -> bool {
        let mut state = self.state.borrow_mut();
        if state.draining {
            return false;
        }
        let deadline = state.millis(at);
        let slot = &mut state.slots[index];
        slot.deadline = deadline;
        slot.expired = false;
        // A later deadline than the queued one is found when that entry comes up; an earlier
        // one needs an entry of its own.
        if slot.queued == 0 || deadline < slot.queued {
            slot.queued = deadline;
            let generation = slot.generation;
            state.heap.push(Entry {
                deadline,
                slot: index as u32,
                generation,
            });
        }
        true
    }

    /// Ends the waits whose deadline is at or before `now`.
    pub fn expire(&self, now: Instant) {
        let mut wake = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            let now = state.millis(now);
            while state.heap.peek().is_some_and(|e| e.deadline <= now) {
                let Some(entry) = state.heap.pop() else { break };
                let slot = &mut state.slots[entry.slot as usize];
                if slot.generation != entry.generation || slot.queued != entry.deadline {
                    continue;
                }
                slot.queued = 0;
                match slot.deadline {
                    0 => {}
                    deadline if deadline <= now => {
                        slot.expired = true;
                        wake.extend(slot.waker.take());
                    }
                    deadline => {
                        slot.queued = deadline;
                        state.heap.push(Entry {
                            deadline,
                            slot: entry.slot,
                            generation: entry.generation,
                        });
                    }
                }
            }
        }
        for waker in wake {
            waker.wake();
        }
    }

    /// Ends every wait now, and every later one at once: the worker drains.
    pub fn expire_all(&self) {
        let wake: Vec<Waker> = {
            let mut state = self.state.borrow_mut();
            state.draining = true;
            state.heap.clear();
            state
                .slots
                .iter_mut()
                .filter(|s| s.deadline != 0)
                .filter_map(|s| {
                    s.expired = true;
                    s.queued = 0;
                    s.waker.take()
                })
                .collect()
        };
        for waker in wake {
            waker.wake();
        }
    }

    /// The sweeper: expires deadlines every `tick` until the worker drains, then ends every
    /// wait.
    pub async fn run(self: Rc<Self>, tick: Duration, drain: Drain) {
        loop {
            monoio::select! {
                () = monoio::time::sleep(tick) => self.expire(Instant::now()),
                () = drain.wait() => break,
            }
        }
        self.expire_all();
    }

    /// Registered connections (for tests and metrics).
    pub fn registered(&self) -> usize {
        let state = self.state.borrow();
        state.slots.len() - state.free.len()
    }

    /// Entries in the heap: at most one per registered connection.
    pub fn queued(&self) -> usize {
        self.state.borrow().heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use std::future::pending;

    #[test]
    fn a_wait_ends_with_its_future_or_its_deadline() {
        run(async {
            let timers = Rc::new(IdleTimers::default());
            monoio::spawn(
                timers
                    .clone()
                    .run(Duration::from_millis(5), Drain::default()),
            );
            let key = timers.register();
            assert_eq!(
                timers.wait(&key, Duration::from_secs(5), async { 7 }).await,
                Some(7)
            );
            let started = Instant::now();
            let timed_out = timers
                .wait(&key, Duration::from_millis(30), pending::<()>())
                .await;
            assert_eq!(timed_out, None);
            assert!(started.elapsed() >= Duration::from_millis(30));
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn a_busy_connection_keeps_one_heap_entry() {
        let timers = IdleTimers::default();
        let key = timers.register();
        run(async {
            for _ in 0..1000 {
                timers.wait(&key, Duration::from_secs(60), async {}).await;
            }
        });
        assert_eq!(timers.queued(), 1);
        // The entry's deadline passes while the connection is busy: it is dropped, not fired.
        timers.expire(Instant::now() + Duration::from_secs(61));
        assert_eq!(timers.queued(), 0);
    }

    #[test]
    fn a_moved_deadline_is_requeued_not_fired() {
        let timers = IdleTimers::default();
        let key = timers.register();
        let now = Instant::now();
        assert!(timers.arm(key.slot, now + Duration::from_secs(1)));
        // The connection became busy and waits again with a later deadline.
        assert!(timers.arm(key.slot, now + Duration::from_secs(10)));
        timers.expire(now + Duration::from_secs(2));
        assert!(!timers.state.borrow().slots[key.slot].expired);
        assert_eq!(timers.queued(), 1);
        timers.expire(now + Duration::from_secs(10));
        assert!(timers.state.borrow().slots[key.slot].expired);
    }

    #[test]
    fn a_freed_slot_ignores_its_former_entry() {
        let timers = IdleTimers::default();
        let now = Instant::now();
        let first = timers.register();
        assert!(timers.arm(first.slot, now + Duration::from_secs(1)));
        let index = first.slot;
        drop(first);
        let second = timers.register();
        assert_eq!(second.slot, index);
        assert!(timers.arm(second.slot, now + Duration::from_secs(30)));
        timers.expire(now + Duration::from_secs(2));
        assert!(!timers.state.borrow().slots[index].expired);
        assert_eq!(timers.registered(), 1);
    }

    #[test]
    fn draining_ends_every_wait_and_refuses_new_ones() {
        run(async {
            let timers = Rc::new(IdleTimers::default());
            let drain = Drain::default();
            monoio::spawn(timers.clone().run(Duration::from_secs(60), drain.clone()));
            let waiter = {
                let timers = timers.clone();
                monoio::spawn(async move {
                    let key = timers.register();
                    timers
                        .wait(&key, Duration::from_secs(3600), pending::<()>())
                        .await
                })
            };
            monoio::time::sleep(Duration::from_millis(10)).await;
            drain.begin();
            assert_eq!(waiter.await, None);
            let key = timers.register();
            assert_eq!(
                timers.wait(&key, Duration::from_secs(5), async { 1 }).await,
                None
            );
        });
    }
}
