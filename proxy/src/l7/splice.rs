//! Large bodies moved from socket to socket by splice(2), through a pipe, without a copy
//! into or out of user space.
//!
//! The pump ([`super::pump`]) hands a body here when nothing needs to see its bytes: a
//! `Content-Length` body going out with the same length, no body filter on the route, TCP on
//! both sides, and at least [`SPLICE_MIN`] bytes still to come once what was read with the
//! head has gone out. Each step splices up to a pipe's worth from the source into the pipe and
//! then all of it from the pipe into the destination (two ring operations, no buffer in user
//! space). Pipes are kept per worker ([`Pipes`]) and reused; one that an error left with bytes
//! in it is closed instead.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::unix::{new_pipe, Pipe};
use monoio::net::TcpStream;
use ringwall_runtime::{Stream, Timer};

use super::pump::Direction;
use super::transport::{Conn, IoFailure};
use super::tunnel::idle_for;
use crate::l7::ProxyError;

/// Bodies with less than this still to come are copied: below it, the pipe's two operations
/// per step cost more than the copies they save.
pub const SPLICE_MIN: u64 = 32 * 1024;
/// Bytes asked of the source per step: a pipe's default capacity (16 pages).
const STEP: u32 = 64 * 1024;
/// Idle pipes a worker keeps.
const KEEP: usize = 64;

/// One pipe: the end splices write into, and the end they read from.
struct PipePair {
    read: Pipe,
    write: Pipe,
}

/// A worker's idle pipes.
#[derive(Default)]
pub struct Pipes {
    idle: RefCell<Vec<PipePair>>,
}

impl Pipes {
    fn take(&self) -> Option<PipePair> {
        if let Some(pair) = self.idle.borrow_mut().pop() {
            return Some(pair);
        }
        match new_pipe() {
            Ok((read, write)) => Some(PipePair { read, write }),
            Err(e) => {
                tracing::debug!("cannot make a pipe for splice, copying instead: {e}");
                None
            }
        }
    }

    fn give_back(&self, pair: PipePair) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < KEEP {
            idle.push(pair);
        }
    }
}

/// What a splice is held to.
pub struct SpliceLimits<C> {
    pub direction: Direction,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Called with the bytes moved so far after every step (the slow-body check).
    pub check: C,
}

/// Moves `len` bytes from `src`'s socket to `dst`'s. `None` when a side is not TCP or no pipe
/// could be had (the caller copies instead); otherwise every byte moved, or the error that
/// stopped it.
pub async fn splice_body<R: Stream, W: Stream, C: Fn(u64) -> Result<(), ProxyError>>(
    pipes: &Pipes,
    src: &mut Conn<R>,
    dst: &mut Conn<W>,
    len: u64,
    limits: SpliceLimits<C>,
) -> Option<Result<(), ProxyError>> {
    let (Some(from), Some(to)) = (src.stream.tcp(), dst.stream.tcp()) else {
        return None;
    };
    let mut pipe = pipes.take()?;
    let ends = Ends {
        from,
        to,
        from_timer: &src.timer,
        to_timer: &dst.timer,
    };
    let result = steps(&mut pipe, ends, len, &limits).await;
    match result {
        Ok(()) => {
            pipes.give_back(pipe);
            Some(Ok(()))
        }
        Err(Failed::Read(f)) => Some(Err(limits.direction.read_failure(f))),
        Err(Failed::Write(f)) => Some(Err(limits.direction.write_failure(f))),
        Err(Failed::Check(e)) => Some(Err(e)),
    }
}

/// The two sockets, each with its connection's timer.
struct Ends<'a> {
    from: &'a mut TcpStream,
    to: &'a mut TcpStream,
    from_timer: &'a Timer,
    to_timer: &'a Timer,
}

enum Failed {
    Read(IoFailure),
    Write(IoFailure),
    Check(ProxyError),
}

async fn steps<C: Fn(u64) -> Result<(), ProxyError>>(
    pipe: &mut PipePair,
    ends: Ends<'_>,
    len: u64,
    limits: &SpliceLimits<C>,
) -> Result<(), Failed> {
    let (read_timeout, write_timeout) = (limits.read_timeout, limits.write_timeout);
    let Ends {
        from,
        to,
        from_timer,
        to_timer,
    } = ends;
    let mut left = len;
    while left > 0 {
        let want = left.min(u64::from(STEP)) as u32;
        let filled = from_timer
            .within(read_timeout, from.splice_to_pipe(&mut pipe.write, want))
            .await;
        let mut in_pipe = match filled {
            None => return Err(Failed::Read(IoFailure::Timeout)),
            Some(Err(e)) => return Err(Failed::Read(IoFailure::Io(e))),
            Some(Ok(0)) => return Err(Failed::Read(IoFailure::Closed)),
            Some(Ok(n)) => n,
        };
        left -= u64::from(in_pipe);
        while in_pipe > 0 {
            let drained = to_timer
                .within(write_timeout, to.splice_from_pipe(&mut pipe.read, in_pipe))
                .await;
            match drained {
                None => return Err(Failed::Write(IoFailure::Timeout)),
                Some(Err(e)) => return Err(Failed::Write(IoFailure::Io(e))),
                Some(Ok(0)) => return Err(Failed::Write(IoFailure::Closed)),
                Some(Ok(n)) => in_pipe -= n.min(in_pipe),
            }
        }
        (limits.check)(len - left).map_err(Failed::Check)?;
    }
    Ok(())
}

/// Relays two TCP connections both ways through pipes, with no copy into user space, until
/// both directions end or nothing moved for `idle`: the L4 forwarding of `tcp` listeners. A
/// side's end (FIN) is passed on as a shutdown of the other's write side while the other
/// direction goes on (half-close). Returns the bytes moved `a` → `b` and `b` → `a`; the
/// sockets back when no pipes could be had (the caller copies instead).
pub async fn splice_both(
    pipes: &Pipes,
    a: TcpStream,
    b: TcpStream,
    idle: Duration,
) -> Result<(u64, u64), (TcpStream, TcpStream)> {
    let Some(mut there) = pipes.take() else {
        return Err((a, b));
    };
    let Some(mut back) = pipes.take() else {
        pipes.give_back(there);
        return Err((a, b));
    };
    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, mut b_write) = b.into_split();
    let activity = Cell::new(Instant::now());
    let (mut up, mut down) = (0, 0);
    let mut clean = (false, false);
    {
        let both = async {
            monoio::join!(
                splice_until_end(&mut a_read, &mut b_write, &mut there, &activity, &mut up),
                splice_until_end(&mut b_read, &mut a_write, &mut back, &activity, &mut down),
            )
        };
        monoio::select! {
            ends = both => clean = ends,
            () = idle_for(&activity, idle) => {
                tracing::debug!("TCP connection idle for {idle:?}: closed");
            }
        }
    }
    // A pipe is reused only when its direction ended with nothing left in it.
    if clean.0 {
        pipes.give_back(there);
    }
    if clean.1 {
        pipes.give_back(back);
    }
    Ok((up, down))
}

/// Splices `src` into `dst` until `src` ends (then shuts `dst`'s write side) or either side
/// fails. `true` when it ended with the pipe empty.
async fn splice_until_end(
    src: &mut impl SpliceSource,
    dst: &mut (impl SpliceDestination + AsyncWriteRent),
    pipe: &mut PipePair,
    activity: &Cell<Instant>,
    moved: &mut u64,
) -> bool {
    let clean = loop {
        let mut in_pipe = match src.splice_to_pipe(&mut pipe.write, STEP).await {
            Ok(0) => break true,
            Ok(n) => n,
            Err(_) => break false,
        };
        activity.set(Instant::now());
        *moved += u64::from(in_pipe);
        let mut failed = false;
        while in_pipe > 0 {
            match dst.splice_from_pipe(&mut pipe.read, in_pipe).await {
                Ok(0) | Err(_) => {
                    failed = true;
                    break;
                }
                Ok(n) => in_pipe -= n.min(in_pipe),
            }
        }
        if failed {
            break false;
        }
        activity.set(Instant::now());
    };
    let _ = dst.shutdown().await;
    clean
}
