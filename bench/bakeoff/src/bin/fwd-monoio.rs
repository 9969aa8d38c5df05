//! The bare keep-alive byte forwarder on monoio 0.2.4, with ringwall's ring setup
//! (`COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`, 1024 entries, timer on).
//!
//! `--mode posted` (today's way): each direction keeps a `recv` posted with its own 16 KiB
//! buffer, idle or not; the pair is split with `into_split` as ringwall's tunnel does.
//!
//! `--mode readable`: each direction waits with `TcpStream::readable(false)` (an io_uring
//! `PollAdd`, no buffer), then takes a buffer from a per-thread free list, reads, writes, and
//! gives it back. monoio offers `readable` only on a whole `TcpStream` and writes need
//! `&mut`, so the reading and the writing direction of a socket each get their own handle: a
//! `dup` of the socket made with std's safe `try_clone`. That needs a std socket, so in this
//! mode the listener is polled with `readable` and accepted with std's non-blocking `accept`,
//! and the upstream is connected with a non-blocking socket2 `connect` + `writable`. Only
//! connection setup differs; the keep-alive loop is readable → read → write.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, RuntimeBuilder};
use ringwall_bakeoff::{bind, Args, Limit, Slot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = Args::parse("posted", &["posted", "readable"]);
    let std_listener = bind(args.listen).expect("bind");
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let mut rt = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(urb)
        .enable_timer()
        .build()
        .expect("io_uring runtime (COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN)");
    rt.block_on(async move {
        println!(
            "fwd-monoio mode={} listening on {} -> {}",
            args.mode, args.listen, args.upstream
        );
        if args.mode == "posted" {
            serve_posted(std_listener, args).await;
        } else {
            serve_readable(std_listener, args).await;
        }
    });
}

// ---- (a) posted: today's way -------------------------------------------------------------

async fn serve_posted(std_listener: std::net::TcpListener, args: Args) {
    let listener = TcpListener::from_std(std_listener).expect("listener");
    let limit = Limit::new(args.max_conns);
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Some(slot) = limit.take() else {
            drop(client);
            continue;
        };
        let (upstream, buf) = (args.upstream, args.buf);
        monoio::spawn(async move {
            let _slot: Slot = slot;
            let Ok(up) = TcpStream::connect_addr(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (mut cr, mut cw) = client.into_split();
            let (mut ur, mut uw) = up.into_split();
            monoio::join!(
                copy_posted(&mut cr, &mut uw, buf),
                copy_posted(&mut ur, &mut cw, buf)
            );
        });
    }
}

/// Copies `src` to `dst` until `src` ends or either side fails, then shuts `dst`'s write side.
async fn copy_posted(src: &mut impl AsyncReadRent, dst: &mut impl AsyncWriteRent, size: usize) {
    let mut buf = Vec::with_capacity(size);
    loop {
        buf.clear();
        let (res, b) = src.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let (res, b) = dst.write_all(buf).await;
                buf = b;
                if res.is_err() {
                    break;
                }
            }
        }
    }
    let _ = dst.shutdown().await;
}

// ---- (b) readable first, then a buffer -----------------------------------------------------

/// Free read buffers, taken for one read + write and given back (at most `keep` kept).
struct BufPool {
    free: RefCell<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl BufPool {
    fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    fn give(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            buf.clear();
            free.push(buf);
        }
    }
}

async fn serve_readable(std_listener: std::net::TcpListener, args: Args) {
    std_listener.set_nonblocking(true).expect("nonblocking");
    let poller =
        TcpListener::from_std(std_listener.try_clone().expect("dup listener")).expect("listener");
    let limit = Limit::new(args.max_conns);
    let pool = Rc::new(BufPool {
        free: RefCell::new(Vec::new()),
        size: args.buf,
        keep: 1024,
    });
    loop {
        if poller.readable(false).await.is_err() {
            continue;
        }
        // Accept what is queued; stop at WouldBlock (bounded by the backlog).
        for _ in 0..1024 {
            let client = match std_listener.accept() {
                Ok((c, _)) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            let Some(slot) = limit.take() else {
                drop(client);
                continue;
            };
            let (upstream, pool) = (args.upstream, pool.clone());
            monoio::spawn(async move {
                let _slot: Slot = slot;
                let _ = pair_readable(client, upstream, &pool).await;
            });
        }
    }
}

async fn connect_std(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let std_stream: std::net::TcpStream = socket.into();
    let probe = TcpStream::from_std(std_stream.try_clone()?)?;
    probe.writable(false).await?;
    drop(probe);
    if let Some(e) = std_stream.take_error()? {
        return Err(e);
    }
    Ok(std_stream)
}

/// `EINPROGRESS` on Linux: a non-blocking `connect` that has started.
const EINPROGRESS: i32 = 115;

async fn pair_readable(
    client: std::net::TcpStream,
    upstream: SocketAddr,
    pool: &BufPool,
) -> io::Result<()> {
    let up = connect_std(upstream).await?;
    for s in [&client, &up] {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
    }
    let client_w = TcpStream::from_std(client.try_clone()?)?;
    let up_w = TcpStream::from_std(up.try_clone()?)?;
    let client_r = TcpStream::from_std(client)?;
    let up_r = TcpStream::from_std(up)?;
    let (mut client_w, mut up_w, mut client_r, mut up_r) = (client_w, up_w, client_r, up_r);
    monoio::join!(
        copy_readable(&mut client_r, &mut up_w, pool),
        copy_readable(&mut up_r, &mut client_w, pool)
    );
    Ok(())
}

/// Waits for `src` to be readable, then reads into a pooled buffer and writes it to `dst`;
/// until `src` ends or either side fails, then shuts `dst`'s write side.
async fn copy_readable(src: &mut TcpStream, dst: &mut TcpStream, pool: &BufPool) {
    loop {
        if src.readable(false).await.is_err() {
            break;
        }
        let (res, buf) = src.read(pool.take()).await;
        match res {
            Ok(0) | Err(_) => {
                pool.give(buf);
                break;
            }
            Ok(_) => {
                let (res, buf) = dst.write_all(buf).await;
                pool.give(buf);
                if res.is_err() {
                    break;
                }
            }
        }
    }
    let _ = dst.shutdown().await;
}
