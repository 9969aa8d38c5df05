//! The bake-off's bare keep-alive byte forwarder written directly on the `io-uring` crate
//! (bench/bakeoff/README.md): one thread, one ring (`COOP_TASKRUN | SINGLE_ISSUER |
//! DEFER_TASKRUN`, 1024 entries), no async runtime.
//!
//! - a multishot accept (`AcceptMulti`) on the listener;
//! - per client connection one upstream connection, connected at accept (`Connect`);
//! - per direction one multishot receive (`RecvMulti`) taking buffers from one provided-buffer
//!   ring (`register_buf_ring`, 1024 buffers of 16 KiB, buffer group 0) shared by all pairs; the
//!   bytes are sent from that buffer (`Send`) and the buffer goes back to the ring when the
//!   send completes;
//! - an end of stream on one side shuts the other side's write half once its queue is sent; an
//!   error shuts both sockets of that pair, and the pair is freed once no operation of it is in
//!   the kernel.
//!
//! ```text
//! cargo build --release -p ringwall-runtime --example uring_forwarder
//! target/release/examples/uring_forwarder --listen 127.0.0.1:19812 --upstream 127.0.0.1:19811
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

/// Buffers in the provided-buffer ring (a power of two).
const BUFFERS: u16 = 1024;
/// Bytes per buffer (ringwall's relay and upstream buffers are 16 KiB).
const BUF_LEN: u32 = 16 * 1024;
/// The buffer group every receive selects from.
const GROUP: u16 = 0;
/// At most this many pairs at once; more client connections are closed at accept.
const MAX_PAIRS: usize = 10_000;

/// What a completion is for: the low 3 bits of `user_data`, the pair index above them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Accept = 0,
    Connect = 1,
    /// Receive on the client (direction 0) or the upstream (direction 1).
    Recv0 = 2,
    Recv1 = 3,
    /// Send of direction 0 (to the upstream) or direction 1 (to the client).
    Send0 = 4,
    Send1 = 5,
}

impl Kind {
    fn from_bits(bits: u64) -> Option<Kind> {
        Some(match bits {
            0 => Kind::Accept,
            1 => Kind::Connect,
            2 => Kind::Recv0,
            3 => Kind::Recv1,
            4 => Kind::Send0,
            5 => Kind::Send1,
            _ => return None,
        })
    }
}

fn user_data(kind: Kind, pair: usize) -> u64 {
    ((pair as u64) << 3) | kind as u64
}

/// Received bytes waiting to be sent: a ring buffer's id, its length and how much is sent.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    bid: u16,
    len: u32,
    sent: u32,
}

#[derive(Default, Debug)]
struct Direction {
    queue: VecDeque<Chunk>,
    sending: bool,
    recv_armed: bool,
    /// The source ended (or the ring ran dry and the receive waits for buffers).
    eof: bool,
    wants_recv: bool,
    shut: bool,
}

#[derive(Debug)]
struct Pair {
    client: OwnedFd,
    upstream: Socket,
    in_flight: u32,
    dirs: [Direction; 2],
    failed: bool,
}

impl Pair {
    fn src(&self, dir: usize) -> RawFd {
        if dir == 0 {
            self.client.as_raw_fd()
        } else {
            self.upstream.as_raw_fd()
        }
    }

    fn dst(&self, dir: usize) -> RawFd {
        self.src(1 - dir)
    }

    /// Shuts `how` of the socket direction `dir` writes to.
    fn shutdown_dst(&self, dir: usize, how: Shutdown) {
        let _ = if dir == 0 {
            self.upstream.shutdown(how)
        } else {
            SockRef::from(&self.client).shutdown(how)
        };
    }
}

/// The unsafe parts: the provided-buffer ring's memory and pushing entries that point at it.
mod uring {
    #![allow(unsafe_code)] // io_uring's buffer ring is shared memory with the kernel; no safe API

    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::{squeue, types::BufRingEntry, IoUring};

    /// An anonymous private mapping, unmapped on drop.
    #[derive(Debug)]
    struct Mapping {
        ptr: *mut u8,
        len: usize,
    }

    impl Mapping {
        fn new(len: usize) -> io::Result<Mapping> {
            // SAFETY: a fresh anonymous mapping: no address hint, no fd; the kernel checks `len`.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Mapping {
                ptr: ptr.cast(),
                len,
            })
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, unmapped only here.
            unsafe {
                libc::munmap(self.ptr.cast(), self.len);
            }
        }
    }

    /// The provided-buffer ring and its buffers, registered with one `IoUring` as group `group`.
    /// It must outlive the ring's use of it: `Forwarder` declares (so drops) the ring first.
    #[derive(Debug)]
    pub struct BufRing {
        entries: Mapping,
        buffers: Mapping,
        count: u16,
        buf_len: u32,
        tail: u16,
    }

    impl BufRing {
        /// Maps `count` (a power of two) entries and buffers of `buf_len` bytes, registers the
        /// ring with `ring` and hands every buffer to the kernel.
        pub fn new(ring: &IoUring, count: u16, buf_len: u32, group: u16) -> io::Result<BufRing> {
            assert!(count.is_power_of_two());
            let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
            let buffers = Mapping::new(usize::from(count) * buf_len as usize)?;
            let mut this = BufRing {
                entries,
                buffers,
                count,
                buf_len,
                tail: 0,
            };
            // SAFETY: the entries mapping is page-aligned, zeroed (a valid empty ring: tail 0),
            // `count` entries long, and lives as long as `this`, which outlives the ring's use.
            unsafe {
                ring.submitter()
                    .register_buf_ring(this.entries.ptr as u64, count, group)?;
            }
            for bid in 0..count {
                this.give_back(bid);
            }
            Ok(this)
        }

        /// The address of buffer `bid`'s byte `offset`.
        pub fn addr(&self, bid: u16, offset: u32) -> *const u8 {
            debug_assert!(bid < self.count && offset <= self.buf_len);
            // SAFETY: `bid < count` and `offset <= buf_len`, so the result stays within (or one
            // past the end of) the buffers mapping.
            unsafe {
                self.buffers
                    .ptr
                    .add(usize::from(bid) * self.buf_len as usize + offset as usize)
            }
        }

        /// Hands buffer `bid` back to the kernel: writes the entry at the tail, then publishes
        /// the new tail with a release store.
        pub fn give_back(&mut self, bid: u16) {
            let slot = usize::from(self.tail & (self.count - 1));
            #[allow(clippy::cast_ptr_alignment)] // the mapping is page-aligned
            let base = self.entries.ptr.cast::<BufRingEntry>();
            // SAFETY: `slot < count`, so the entry is inside the mapping; the kernel reads only
            // entries between its head and the published tail, and this one is past the tail.
            let entry = unsafe { &mut *base.add(slot) };
            entry.set_addr(self.addr(bid, 0) as u64);
            entry.set_len(self.buf_len);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            // SAFETY: the tail field is the `resv` of entry 0, a 2-byte-aligned u16 inside the
            // mapping; the kernel only reads it, so an atomic view of it is sound.
            let tail = unsafe { &*BufRingEntry::tail(base).cast::<AtomicU16>() };
            tail.store(self.tail, Ordering::Release);
        }
    }

    /// Takes ownership of a descriptor an accept completion returned (`fd >= 0`).
    pub fn adopt(fd: RawFd) -> OwnedFd {
        assert!(fd >= 0);
        // SAFETY: the kernel has just installed `fd` for this accept; nothing else in the
        // process knows it, so it has exactly one owner from here on.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// Pushes `entry`, submitting first if the submission queue is full.
    ///
    /// Every entry this program builds points only at memory that outlives the operation: the
    /// buffer ring (alive until after the ring is dropped) and the upstream address (alive for
    /// the whole event loop).
    pub fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: see above: the entry's pointers stay valid until its completion.
            if unsafe { ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            ring.submit()?;
        }
    }
}

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut upstream = None;
    let mut it = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (it.next(), it.next()) {
        match flag.as_str() {
            "--listen" => listen = value.parse().ok(),
            "--upstream" => upstream = value.parse().ok(),
            _ => {}
        }
    }
    if let (Some(listen), Some(upstream)) = (listen, upstream) {
        Args { listen, upstream }
    } else {
        eprintln!("usage: uring_forwarder --listen ADDR --upstream ADDR");
        std::process::exit(2);
    }
}

fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let mut tries = 0;
    loop {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()) {
            // A previous forwarder's ring may keep its listener alive for a moment.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
            Ok(()) => {
                socket.listen(1024)?;
                return Ok(socket);
            }
        }
    }
}

struct Forwarder {
    ring: IoUring,
    bufs: uring::BufRing,
    listener: Socket,
    upstream: SockAddr,
    upstream_domain: Domain,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
    /// Receives stopped by an empty buffer ring, re-armed when a buffer comes back.
    starved: Vec<(usize, usize)>,
}

impl Forwarder {
    fn arm_accept(&mut self) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .build()
            .user_data(user_data(Kind::Accept, 0));
        uring::push(&mut self.ring, &entry)
    }

    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more {
            self.arm_accept()?;
        }
        if res < 0 {
            return Ok(());
        }
        let client = uring::adopt(res);
        let Some(idx) = self.free.pop().or_else(|| {
            (self.pairs.len() < MAX_PAIRS).then(|| {
                self.pairs.push(None);
                self.pairs.len() - 1
            })
        }) else {
            return Ok(()); // at the limit: `client` drops, closing it
        };
        let Ok(upstream) = Socket::new(self.upstream_domain, Type::STREAM, Some(Protocol::TCP))
        else {
            self.free.push(idx);
            return Ok(());
        };
        let entry = opcode::Connect::new(
            types::Fd(upstream.as_raw_fd()),
            self.upstream.as_ptr(),
            self.upstream.len(),
        )
        .build()
        .user_data(user_data(Kind::Connect, idx));
        self.pairs[idx] = Some(Pair {
            client,
            upstream,
            in_flight: 1,
            dirs: [Direction::default(), Direction::default()],
            failed: false,
        });
        uring::push(&mut self.ring, &entry)
    }

    fn arm_recv(&mut self, idx: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return Ok(());
        };
        let kind = if dir == 0 { Kind::Recv0 } else { Kind::Recv1 };
        let entry = opcode::RecvMulti::new(types::Fd(pair.src(dir)), GROUP)
            .build()
            .user_data(user_data(kind, idx));
        pair.dirs[dir].recv_armed = true;
        pair.dirs[dir].wants_recv = false;
        pair.in_flight += 1;
        uring::push(&mut self.ring, &entry)
    }

    fn send_next(&mut self, idx: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return Ok(());
        };
        let d = &mut pair.dirs[dir];
        if d.sending || pair.failed {
            return Ok(());
        }
        let Some(chunk) = d.queue.front().copied() else {
            if d.eof && !d.shut && !d.recv_armed && !d.wants_recv {
                d.shut = true;
                // The source ended and everything it sent is out: pass the end on.
                pair.shutdown_dst(dir, Shutdown::Write);
                if pair.dirs.iter().all(|d| d.shut) {
                    self.fail(idx);
                }
            }
            return Ok(());
        };
        d.sending = true;
        let kind = if dir == 0 { Kind::Send0 } else { Kind::Send1 };
        let entry = opcode::Send::new(
            types::Fd(pair.dst(dir)),
            self.bufs.addr(chunk.bid, chunk.sent),
            chunk.len - chunk.sent,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(kind, idx));
        pair.in_flight += 1;
        uring::push(&mut self.ring, &entry)
    }

    /// Closes the pair: shuts both sockets so that its operations in the kernel complete, gives
    /// its queued buffers back, and frees it once nothing of it is in flight.
    fn fail(&mut self, idx: usize) {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return;
        };
        if !pair.failed {
            pair.failed = true;
            pair.shutdown_dst(0, Shutdown::Both);
            pair.shutdown_dst(1, Shutdown::Both);
            for d in &mut pair.dirs {
                // A chunk being sent is the kernel's until its send completes.
                let keep = usize::from(d.sending);
                for chunk in d.queue.drain(keep..) {
                    self.bufs.give_back(chunk.bid);
                }
            }
        }
        self.release_if_idle(idx);
    }

    fn release_if_idle(&mut self, idx: usize) {
        if self.pairs[idx]
            .as_ref()
            .is_some_and(|p| p.failed && p.in_flight == 0)
        {
            self.pairs[idx] = None; // closes both sockets
            self.free.push(idx);
        }
    }

    fn on_connect(&mut self, idx: usize, res: i32) -> io::Result<()> {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return Ok(());
        };
        pair.in_flight -= 1;
        if res < 0 || pair.failed {
            self.fail(idx);
            return Ok(());
        }
        let _ = pair.upstream.set_nodelay(true);
        let _ = socket2::SockRef::from(&pair.client).set_nodelay(true);
        self.arm_recv(idx, 0)?;
        self.arm_recv(idx, 1)
    }

    fn on_recv(&mut self, idx: usize, dir: usize, res: i32, flags: u32) -> io::Result<()> {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return Ok(());
        };
        let more = cqueue::more(flags);
        if !more {
            pair.in_flight -= 1;
            pair.dirs[dir].recv_armed = false;
        }
        let bid = cqueue::buffer_select(flags);
        match u32::try_from(res) {
            Ok(len) if len > 0 => {
                let Some(bid) = bid else {
                    self.fail(idx);
                    return Ok(());
                };
                if pair.failed {
                    self.bufs.give_back(bid);
                } else {
                    pair.dirs[dir].queue.push_back(Chunk { bid, len, sent: 0 });
                    if !more {
                        self.arm_recv(idx, dir)?;
                    }
                    self.send_next(idx, dir)?;
                }
            }
            Ok(_) => {
                // End of stream.
                if let Some(bid) = bid {
                    self.bufs.give_back(bid);
                }
                pair.dirs[dir].eof = true;
                self.send_next(idx, dir)?;
            }
            Err(_) if -res == libc::ENOBUFS && !pair.failed => {
                // The ring ran dry: receive again when a send gives a buffer back.
                pair.dirs[dir].wants_recv = true;
                self.starved.push((idx, dir));
            }
            Err(_) => self.fail(idx),
        }
        self.release_if_idle(idx);
        Ok(())
    }

    fn on_send(&mut self, idx: usize, dir: usize, res: i32) -> io::Result<()> {
        let Some(pair) = self.pairs[idx].as_mut() else {
            return Ok(());
        };
        pair.in_flight -= 1;
        let d = &mut pair.dirs[dir];
        d.sending = false;
        let Ok(n) = u32::try_from(res) else {
            if let Some(chunk) = d.queue.pop_front() {
                self.bufs.give_back(chunk.bid);
            }
            self.fail(idx);
            return Ok(());
        };
        if pair.failed {
            if let Some(chunk) = d.queue.pop_front() {
                self.bufs.give_back(chunk.bid);
            }
            self.release_if_idle(idx);
            return Ok(());
        }
        if let Some(chunk) = d.queue.front_mut() {
            chunk.sent += n;
            if chunk.sent >= chunk.len {
                let bid = chunk.bid;
                d.queue.pop_front();
                self.bufs.give_back(bid);
                self.rearm_starved()?;
            }
        }
        self.send_next(idx, dir)
    }

    /// Re-arms the receives that stopped on an empty ring, now that a buffer is back.
    fn rearm_starved(&mut self) -> io::Result<()> {
        while let Some((idx, dir)) = self.starved.pop() {
            let starved = self.pairs[idx]
                .as_ref()
                .is_some_and(|p| !p.failed && p.dirs[dir].wants_recv);
            if starved {
                self.arm_recv(idx, dir)?;
            }
        }
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, res, flags) in &done {
                let idx = usize::try_from(data >> 3).unwrap_or(usize::MAX);
                match Kind::from_bits(data & 7) {
                    Some(Kind::Accept) => self.on_accept(res, cqueue::more(flags))?,
                    Some(Kind::Connect) => self.on_connect(idx, res)?,
                    Some(Kind::Recv0) => self.on_recv(idx, 0, res, flags)?,
                    Some(Kind::Recv1) => self.on_recv(idx, 1, res, flags)?,
                    Some(Kind::Send0) => self.on_send(idx, 0, res)?,
                    Some(Kind::Send1) => self.on_send(idx, 1, res)?,
                    None => {}
                }
            }
        }
    }
}

fn main() -> io::Result<()> {
    let args = parse_args();
    let listener = bind(args.listen)?;
    let mut builder = IoUring::<squeue::Entry, cqueue::Entry>::builder();
    builder
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let ring = builder.build(1024)?;
    let bufs = uring::BufRing::new(&ring, BUFFERS, BUF_LEN, GROUP)?;
    println!(
        "uring_forwarder listening on {} -> {} ({BUFFERS} x {BUF_LEN} B buffer ring)",
        args.listen, args.upstream
    );
    let mut fwd = Forwarder {
        ring,
        bufs,
        listener,
        upstream: args.upstream.into(),
        upstream_domain: Domain::for_address(args.upstream),
        pairs: Vec::new(),
        free: Vec::new(),
        starved: Vec::new(),
    };
    fwd.run()
}
