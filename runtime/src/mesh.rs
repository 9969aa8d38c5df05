//! Messages between workers: how cores that share nothing on the request path tell each other
//! what changed (health, consumption of process-wide limits, configuration generations, metric
//! scrapes).
//!
//! A [`Mesh`] is made before the workers start and gives each worker its [`Postbox`]. Every
//! worker has an inbox: a lock-free queue (crossbeam's) and a doorbell, one end of a Unix
//! datagram socket pair. Sending puts the message in the queue and rings the bell (a one-byte
//! non-blocking `send`; a bell that already rings is left alone); the receiving worker's
//! [`Postbox::run`] task waits on its end of the bell, so a message is handled as soon as the
//! receiver's loop gets to it, and it also wakes every `tick` to drain the queue and let its
//! owner send what it batched. Nothing is locked, and nothing here wakes a task from another
//! thread through a waker (monoio without its `sync` feature would panic): the bell is a file
//! descriptor the receiver's own ring reads.
//!
//! What a message costs: one queue push and pop (a few atomic operations on the queue's
//! cache lines), and, when the bell was quiet, a `send` on the sending core and a completed read
//! on the receiving one. That is for the tick, not for a request: callers batch per tick what
//! happens per request (docs/architecture.md, "Cores that talk").

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::shutdown::Drain;

/// The inboxes of every worker; one [`Postbox`] per worker from it.
pub struct Mesh<M> {
    doors: Arc<[Door<M>]>,
    boxes: Vec<(Receiver<M>, UnixDatagram)>,
}

/// What another worker needs to post to a worker: its queue and its bell.
struct Door<M> {
    queue: Sender<M>,
    bell: UnixDatagram,
}

impl<M: Send + 'static> Mesh<M> {
    /// Inboxes for `workers` workers.
    pub fn new(workers: usize) -> io::Result<Self> {
        let mut doors = Vec::with_capacity(workers);
        let mut boxes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (queue, inbox) = crossbeam_channel::unbounded();
            let (bell, listen) = UnixDatagram::pair()?;
            bell.set_nonblocking(true)?;
            listen.set_nonblocking(true)?;
            doors.push(Door { queue, bell });
            boxes.push((inbox, listen));
        }
        Ok(Self {
            doors: doors.into(),
            boxes,
        })
    }

    /// A sender for a thread that is not a worker (the control thread).
    pub fn outside(&self) -> Outside<M> {
        Outside {
            doors: self.doors.clone(),
        }
    }

    /// The postboxes, worker 0's first: each goes to its worker's thread.
    pub fn into_postboxes(self) -> Vec<Postbox<M>> {
        let doors = self.doors;
        self.boxes
            .into_iter()
            .enumerate()
            .map(|(id, (inbox, bell))| Postbox {
                id,
                doors: doors.clone(),
                inbox,
                bell,
            })
            .collect()
    }
}

/// Posts to workers from a thread that is not one.
pub struct Outside<M> {
    doors: Arc<[Door<M>]>,
}

impl<M: Send + 'static> Outside<M> {
    /// Posts `message` to worker `to`.
    pub fn send(&self, to: usize, message: M) {
        post(&self.doors[to], message);
    }

    pub fn workers(&self) -> usize {
        self.doors.len()
    }
}

/// Puts `message` in the queue and rings the bell.
fn post<M>(door: &Door<M>, message: M) {
    if door.queue.send(message).is_ok() {
        // Full means the bell already rings; either way the message is in the queue.
        let _ = door.bell.send(&[1]);
    }
}

/// One worker's end of the mesh: its inbox, and the doors of every worker.
pub struct Postbox<M> {
    id: usize,
    doors: Arc<[Door<M>]>,
    inbox: Receiver<M>,
    bell: UnixDatagram,
}

impl<M: Send + 'static> Postbox<M> {
    /// The worker this postbox belongs to.
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many workers the mesh joins.
    pub fn workers(&self) -> usize {
        self.doors.len()
    }

    /// Posts `message` to worker `to` (possibly this one).
    pub fn send(&self, to: usize, message: M) {
        post(&self.doors[to], message);
    }

    /// Posts a copy of `message` to every other worker.
    pub fn broadcast(&self, message: &M)
    where
        M: Clone,
    {
        self.broadcast_with(|| message.clone());
    }

    /// Posts a message made by `make` to every other worker (for messages that are not
    /// `Clone`).
    pub fn broadcast_with(&self, make: impl Fn() -> M) {
        for to in (0..self.doors.len()).filter(|&to| to != self.id) {
            self.send(to, make());
        }
    }

    /// Runs on the worker until it drains: hands every message that arrives to `on_message`
    /// (as soon as the bell rings, and at every tick), and calls `on_tick` every `tick` (where
    /// the owner sends what it batched).
    pub async fn run(
        self: std::rc::Rc<Self>,
        tick: Duration,
        drain: Drain,
        mut on_message: impl FnMut(M),
        mut on_tick: impl FnMut(&Self),
    ) {
        let bell = match self
            .bell
            .try_clone()
            .and_then(monoio::net::unix::UnixDatagram::from_std)
        {
            Ok(bell) => bell,
            Err(e) => {
                tracing::error!(worker = self.id, "cannot listen for messages: {e}");
                return;
            }
        };
        let mut ring = Vec::with_capacity(64);
        let mut next_tick = std::time::Instant::now() + tick;
        loop {
            let left = next_tick.saturating_duration_since(std::time::Instant::now());
            monoio::select! {
                (_, returned) = bell.recv(ring) => ring = returned,
                () = monoio::time::sleep(left) => {
                    ring = Vec::with_capacity(64);
                }
                () = drain.wait() => break,
            }
            ring.clear();
            while let Ok(message) = self.inbox.try_recv() {
                on_message(message);
            }
            if std::time::Instant::now() >= next_tick {
                on_tick(&self);
                next_tick = std::time::Instant::now() + tick;
            }
        }
        // What arrived before the drain is still handled.
        while let Ok(message) = self.inbox.try_recv() {
            on_message(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Instant;

    use super::*;

    /// Runs each postbox's loop on a thread and runtime of its own, as workers do. The tick is
    /// long (2 s): messages that arrive well before it came by the bell.
    #[test]
    fn messages_cross_threads_at_once_by_the_bell() {
        let boxes = Mesh::<u64>::new(2).unwrap().into_postboxes();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for postbox in boxes {
            let done = done_tx.clone();
            threads.push(std::thread::spawn(move || {
                crate::test_support::run(async move {
                    let postbox = Rc::new(postbox);
                    let me = postbox.id();
                    let drain = Drain::default();
                    let got = Rc::new(RefCell::new(Vec::new()));
                    let ticks = Rc::new(Cell::new(0u32));
                    let runner = monoio::spawn(postbox.clone().run(
                        Duration::from_secs(2),
                        drain.clone(),
                        {
                            let got = got.clone();
                            move |m| got.borrow_mut().push(m)
                        },
                        {
                            let ticks = ticks.clone();
                            move |_| ticks.set(ticks.get() + 1)
                        },
                    ));
                    // Each worker sends 100 numbers to the other, then waits for all of the
                    // other's.
                    let start = Instant::now();
                    for i in 0..100 {
                        postbox.send(1 - me, me as u64 * 1000 + i);
                    }
                    while got.borrow().len() < 100 && start.elapsed() < Duration::from_secs(5) {
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let took = start.elapsed();
                    drain.begin();
                    runner.await;
                    let got = got.borrow().clone();
                    done.send((me, got, ticks.get(), took)).unwrap();
                });
            }));
        }
        drop(done_tx);
        for thread in threads {
            thread.join().unwrap();
        }
        let results: Vec<_> = done_rx.iter().collect();
        assert_eq!(results.len(), 2);
        for (me, got, ticks, took) in results {
            let other = (1 - me) as u64;
            let expected: Vec<u64> = (0..100).map(|i| other * 1000 + i).collect();
            assert_eq!(got, expected, "worker {me} got every message, in order");
            assert_eq!(
                ticks, 0,
                "worker {me}: the messages did not wait for a tick"
            );
            assert!(took < Duration::from_secs(1), "worker {me}: {took:?}");
        }
    }

    #[test]
    fn ticks_come_and_the_owner_sends_on_them() {
        let mut boxes = Mesh::<u32>::new(1).unwrap().into_postboxes();
        let postbox = Rc::new(boxes.remove(0));
        crate::test_support::run(async move {
            let drain = Drain::default();
            let got = Rc::new(Cell::new(0u32));
            let runner = monoio::spawn(postbox.clone().run(
                Duration::from_millis(10),
                drain.clone(),
                {
                    let got = got.clone();
                    move |m| got.set(got.get() + m)
                },
                // Each tick posts to itself: what a worker batched goes out on its tick.
                |postbox| postbox.send(0, 1),
            ));
            monoio::time::sleep(Duration::from_millis(100)).await;
            drain.begin();
            runner.await;
            assert!(got.get() >= 3, "{} ticks' messages", got.get());
        });
    }

    #[test]
    fn a_thread_that_is_no_worker_posts_too() {
        let mesh = Mesh::<u8>::new(2).unwrap();
        let outside = mesh.outside();
        let boxes = mesh.into_postboxes();
        outside.send(1, 7);
        assert_eq!(outside.workers(), 2);
        assert!(boxes[0].inbox.try_recv().is_err());
        assert_eq!(boxes[1].inbox.try_recv().ok(), Some(7));
        // The bell rang: the worker's loop wakes for it.
        let mut ring = [0u8; 4];
        assert_eq!(boxes[1].bell.recv(&mut ring).unwrap(), 1);
    }

    #[test]
    fn a_broadcast_reaches_every_other_worker() {
        let boxes = Mesh::<&'static str>::new(3).unwrap().into_postboxes();
        boxes[1].broadcast(&"generation 2");
        assert!(boxes[0].inbox.try_recv().is_ok());
        assert!(boxes[1].inbox.try_recv().is_err());
        assert!(boxes[2].inbox.try_recv().is_ok());
        assert_eq!(boxes[2].workers(), 3);
    }
}
