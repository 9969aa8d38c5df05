//! Deadlines of a worker's connections: one timer per worker, not one per operation.
//!
//! monoio's `Sleep` is 640 bytes (its timer entry is cache-padded) and goes into the timer
//! wheel and out again for every timed operation: with one per read and per write, a small
//! request armed four of them. Here a connection owns a [`Timer`] (a slot in the worker's
//! slab), and each timed operation ([`Timer::within`]) writes its deadline into the slot. A
//! min-heap holds at most one entry per slot (one more only when a wait's deadline is earlier
//! than the queued one); [`Deadlines::run`], the worker's one sweeper, sleeps until the
//! earliest entry, ends the waits whose deadline passed, and puts back the entries of slots
//! whose deadline moved. A busy connection so pushes nothing per request: its entry is
//! re-queued about once per timeout.
//!
//! Idle waits ([`Timer::idle`]: a keep-alive connection waiting for its next request) also end
//! when the worker drains; timed operations of requests in flight go on to their deadlines.
//! Deadlines count in milliseconds.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::shutdown::Drain;

/// The longest the sweeper sleeps with nothing to wait for.
const IDLE_SWEEP: Duration = Duration::from_secs(3600);

/// A deadline: milliseconds since the deadlines were made, 0 for none. Eight bytes where an
/// `Option<Instant>` takes sixteen: the slab and the heap hold one per connection.
type Millis = u64;

/// One timer's state.
#[derive(Default)]
struct Slot {
    /// Non-zero while a wait runs.
    deadline: Millis,
    /// The deadline of this slot's live heap entry, 0 when it has none (older entries with
    /// other deadlines are stale).
    queued: Millis,
    /// The running wait is an idle one (ended by a drain too).
    idle: bool,
    /// The wait's deadline passed (or the worker drains an idle wait): it ends with `None`.
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
    free: Vec<u32>,
    heap: BinaryHeap<Entry>,
    draining: bool,
    /// When the sleeping sweeper wakes by itself (`Millis::MAX` while it is not sleeping), and
    /// its waker: a new deadline before that wakes it early.
    sweeper_at: Millis,
    sweeper: Option<Waker>,
}

impl State {
    /// `at` in milliseconds since the epoch, rounded up, and never 0.
    fn millis(&self, at: Instant) -> Millis {
        let since = at.saturating_duration_since(self.epoch);
        (since.as_millis() as u64).saturating_add(1)
    }

    fn instant(&self, millis: Millis) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }
}

/// The deadlines of one worker's connections (see the module doc).
pub struct Deadlines {
    state: RefCell<State>,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            state: RefCell::new(State {
                epoch: Instant::now(),
                slots: Vec::new(),
                free: Vec::new(),
                heap: BinaryHeap::new(),
                draining: false,
                sweeper_at: Millis::MAX,
                sweeper: None,
            }),
        }
    }
}

/// One connection's timer: at most one timed wait at a time. Frees its slot when dropped.
pub struct Timer {
    deadlines: Rc<Deadlines>,
    slot: u32,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let mut state = self.deadlines.state.borrow_mut();
        let slot = &mut state.slots[self.slot as usize];
        let generation = slot.generation.wrapping_add(1);
        *slot = Slot {
            generation,
            ..Slot::default()
        };
        state.free.push(self.slot);
    }
}

impl Timer {
    /// Runs `future` for at most `limit`: `None` when the time ran out first (then `future` is
    /// dropped).
    pub fn within<F: Future>(&self, limit: Duration, future: F) -> Within<'_, F> {
        self.wait(limit, future, false)
    }

    /// Like [`Self::within`], for a connection waiting between requests: the wait also ends
    /// (with `None`) when the worker drains, and does not start while it drains.
    pub fn idle<F: Future>(&self, limit: Duration, future: F) -> Within<'_, F> {
        self.wait(limit, future, true)
    }

    fn wait<F: Future>(&self, limit: Duration, future: F, idle: bool) -> Within<'_, F> {
        let armed = self.deadlines.arm(self.slot, Instant::now() + limit, idle);
        Within {
            timer: self,
            armed,
            future,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Timer::within`] and [`Timer::idle`].
    pub struct Within<'a, F> {
        timer: &'a Timer,
        // False when an idle wait was refused (the worker drains): it ends at once.
        armed: bool,
        #[pin]
        future: F,
    }

    impl<F> PinnedDrop for Within<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut state = this.timer.deadlines.state.borrow_mut();
            let slot = &mut state.slots[this.timer.slot as usize];
            slot.deadline = 0;
            slot.idle = false;
            slot.expired = false;
            slot.waker = None;
        }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.armed {
            return Poll::Ready(None);
        }
        {
            let mut state = this.timer.deadlines.state.borrow_mut();
            let slot = &mut state.slots[this.timer.slot as usize];
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

impl Deadlines {
    /// A timer for one connection.
    pub fn timer(self: &Rc<Self>) -> Timer {
        let mut state = self.state.borrow_mut();
        let slot = if let Some(slot) = state.free.pop() {
            slot
        } else {
            state.slots.push(Slot::default());
            (state.slots.len() - 1) as u32
        };
        Timer {
            deadlines: self.clone(),
            slot,
        }
    }

    /// Sets a slot's deadline, queuing it when the heap has no entry for it as early. False
    /// when `idle` and the worker drains.
    fn arm(&self, index: u32, at: Instant, idle: bool) -> bool {
        let wake = {
            let mut state = self.state.borrow_mut();
            if idle && state.draining {
                return false;
            }
            let deadline = state.millis(at);
            let slot = &mut state.slots[index as usize];
            slot.deadline = deadline;
            slot.idle = idle;
            slot.expired = false;
            // A later deadline than the queued one is found when that entry comes up; an
            // earlier one needs an entry of its own.
            if slot.queued != 0 && deadline >= slot.queued {
                return true;
            }
            slot.queued = deadline;
            let generation = slot.generation;
            state.heap.push(Entry {
                deadline,
                slot: index,
                generation,
            });
            if deadline < state.sweeper_at {
                state.sweeper.take()
            } else {
                None
            }
        };
        if let Some(sweeper) = wake {
            sweeper.wake();
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

    /// The worker drains: ends every idle wait now, and refuses later ones.
    pub fn drain_idle(&self) {
        let wake: Vec<Waker> = {
            let mut state = self.state.borrow_mut();
            state.draining = true;
            state
                .slots
                .iter_mut()
                .filter(|s| s.deadline != 0 && s.idle)
                .filter_map(|s| {
                    s.expired = true;
                    s.waker.take()
                })
                .collect()
        };
        for waker in wake {
            waker.wake();
        }
    }

    /// The sweeper: sleeps until the earliest deadline (or until a new, earlier one comes),
    /// expires what passed, and so on for as long as the worker runs. When the worker
    /// drains, the idle waits end at once.
    pub async fn run(self: Rc<Self>, drain: Drain) {
        let mut drained = false;
        loop {
            let next = {
                let mut state = self.state.borrow_mut();
                let next = state.heap.peek().map_or_else(
                    || Instant::now() + IDLE_SWEEP,
                    |e| state.instant(e.deadline),
                );
                state.sweeper_at = state.millis(next);
                next
            };
            let sleep = monoio::time::sleep_until(monoio::time::Instant::from_std(next));
            if drained {
                monoio::select! {
                    () = sleep => {},
                    () = self.woken() => {},
                }
            } else {
                monoio::select! {
                    () = sleep => {},
                    () = self.woken() => {},
                    () = drain.wait() => {
                        drained = true;
                        self.drain_idle();
                    },
                }
            }
            self.state.borrow_mut().sweeper_at = Millis::MAX;
            self.expire(Instant::now());
        }
    }

    /// Resolves when `arm` wakes the sleeping sweeper for an earlier deadline.
    fn woken(&self) -> impl Future<Output = ()> + '_ {
        let mut registered = false;
        poll_fn(move |cx| {
            let mut state = self.state.borrow_mut();
            if registered && state.sweeper.is_none() {
                return Poll::Ready(());
            }
            registered = true;
            state.sweeper = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Timers in use (for tests and metrics).
    pub fn registered(&self) -> usize {
        let state = self.state.borrow();
        state.slots.len() - state.free.len()
    }

    /// Entries in the heap: about one per timer.
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
            let deadlines = Rc::new(Deadlines::default());
            monoio::spawn(deadlines.clone().run(Drain::default()));
            let timer = deadlines.timer();
            assert_eq!(
                timer.within(Duration::from_secs(5), async { 7 }).await,
                Some(7)
            );
            // A shorter deadline than the one queued: it wakes the sweeper early.
            let started = Instant::now();
            let timed_out = timer
                .within(Duration::from_millis(30), pending::<()>())
                .await;
            assert_eq!(timed_out, None);
            assert!(started.elapsed() >= Duration::from_millis(30));
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }

    #[test]
    fn a_busy_connection_keeps_one_heap_entry() {
        let deadlines = Rc::new(Deadlines::default());
        let timer = deadlines.timer();
        run(async {
            for _ in 0..1000 {
                timer.within(Duration::from_secs(60), async {}).await;
            }
        });
        assert_eq!(deadlines.queued(), 1);
        // The entry's deadline passes while the connection is busy: it is dropped, not fired.
        deadlines.expire(Instant::now() + Duration::from_secs(61));
        assert_eq!(deadlines.queued(), 0);
    }

    #[test]
    fn a_moved_deadline_is_requeued_not_fired() {
        let deadlines = Rc::new(Deadlines::default());
        let timer = deadlines.timer();
        let now = Instant::now();
        assert!(deadlines.arm(timer.slot, now + Duration::from_secs(1), false));
        // The connection became busy and waits again with a later deadline.
        assert!(deadlines.arm(timer.slot, now + Duration::from_secs(10), false));
        deadlines.expire(now + Duration::from_secs(2));
        assert!(!deadlines.state.borrow().slots[timer.slot as usize].expired);
        assert_eq!(deadlines.queued(), 1);
        deadlines.expire(now + Duration::from_secs(10));
        assert!(deadlines.state.borrow().slots[timer.slot as usize].expired);
    }

    #[test]
    fn a_freed_slot_ignores_its_former_entry() {
        let deadlines = Rc::new(Deadlines::default());
        let now = Instant::now();
        let first = deadlines.timer();
        assert!(deadlines.arm(first.slot, now + Duration::from_secs(1), false));
        let index = first.slot;
        drop(first);
        let second = deadlines.timer();
        assert_eq!(second.slot, index);
        assert!(deadlines.arm(second.slot, now + Duration::from_secs(30), false));
        deadlines.expire(now + Duration::from_secs(2));
        assert!(!deadlines.state.borrow().slots[index as usize].expired);
        assert_eq!(deadlines.registered(), 1);
    }

    #[test]
    fn draining_ends_idle_waits_only() {
        run(async {
            let deadlines = Rc::new(Deadlines::default());
            let drain = Drain::default();
            monoio::spawn(deadlines.clone().run(drain.clone()));
            let spawn_wait = |idle: bool, limit: Duration| {
                let deadlines = deadlines.clone();
                monoio::spawn(async move {
                    let timer = deadlines.timer();
                    let wait = pending::<()>();
                    if idle {
                        timer.idle(limit, wait).await
                    } else {
                        timer.within(limit, wait).await
                    }
                })
            };
            let idle = spawn_wait(true, Duration::from_secs(3600));
            let busy = spawn_wait(false, Duration::from_millis(200));
            monoio::time::sleep(Duration::from_millis(10)).await;
            let drained_at = Instant::now();
            drain.begin();
            assert_eq!(idle.await, None);
            assert!(drained_at.elapsed() < Duration::from_millis(150));
            // The request's wait is not cut short by the drain: it runs to its deadline.
            assert_eq!(busy.await, None);
            assert!(drained_at.elapsed() >= Duration::from_millis(150));
            let timer = deadlines.timer();
            assert_eq!(timer.idle(Duration::from_secs(5), async { 1 }).await, None);
            assert_eq!(
                timer.within(Duration::from_secs(5), async { 2 }).await,
                Some(2)
            );
        });
    }
}
