//! The bare keep-alive byte forwarder on compio 0.19, with the same ring setup as ringwall's
//! monoio (`COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`, 1024 entries) and compio's buffer
//! pool: one io_uring provided-buffer ring per runtime (`--pool` buffers of `--buf` bytes,
//! registered with `register_buf_ring`), shared by every connection. Accept is multishot
//! (`TcpListener::incoming`, `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT`).
//!
//! `--mode multi`: each direction keeps one multishot receive (`AsyncReadMulti::read_multi`,
//! `RecvMulti` with `IOSQE_BUFFER_SELECT`) armed; the kernel picks a pool buffer only when
//! bytes arrive, so an idle direction holds no buffer.
//!
//! `--mode managed`: each direction posts a single-shot receive with buffer select
//! (`AsyncReadManaged::read_managed`) after each write.
//!
//! In both, the buffer goes back to the ring when the write of it completes. If the ring is
//! empty (`ENOBUFS`, reported as `ResourceBusy`), the direction sleeps 1 ms and retries, at
//! most 1000 times in a row, then closes its pair.
#![forbid(unsafe_code)]

use std::io;
use std::num::NonZeroU16;
use std::pin::pin;
use std::time::Duration;

use compio::buf::BufResult;
use compio::driver::ProactorBuilder;
use compio::io::{AsyncReadManaged, AsyncReadMulti, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::RuntimeBuilder;
use futures_util::StreamExt;
use ringwall_bakeoff::{bind, Args, Limit, Slot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Consecutive `ENOBUFS` retries (1 ms apart) before a direction gives up.
const MAX_EMPTY_RING_RETRIES: u32 = 1000;

fn main() {
    let args = Args::parse("multi", &["multi", "managed"]);
    let std_listener = bind(args.listen).expect("bind");
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(1024)
        .coop_taskrun(true)
        .single_issuer(true)
        .defer_taskrun(true)
        .buffer_pool_size(NonZeroU16::new(args.pool).expect("pool > 0"))
        .buffer_pool_buffer_len(args.buf);
    let rt = RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .expect("compio runtime");
    rt.block_on(async move {
        let listener = TcpListener::from_std(std_listener).expect("listener");
        // Create the pool (and its ring) now rather than at the first read.
        compio::runtime::Runtime::with_current(|rt| rt.buffer_pool().map(drop))
            .expect("buffer pool");
        println!(
            "fwd-compio mode={} pool={}x{} listening on {} -> {}",
            args.mode, args.pool, args.buf, args.listen, args.upstream
        );
        let multi = args.mode == "multi";
        let limit = Limit::new(args.max_conns);
        let mut incoming = listener.incoming();
        while let Some(accepted) = incoming.next().await {
            let Ok(client) = accepted else {
                continue;
            };
            let Some(slot) = limit.take() else {
                drop(client);
                continue;
            };
            let upstream = args.upstream;
            compio::runtime::spawn(async move {
                let _slot: Slot = slot;
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                if multi {
                    futures_util::future::join(copy_multi(&client, &up), copy_multi(&up, &client))
                        .await;
                } else {
                    futures_util::future::join(
                        copy_managed(&client, &up),
                        copy_managed(&up, &client),
                    )
                    .await;
                }
            })
            .detach();
        }
    });
}

fn ring_empty(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ResourceBusy
}

/// Copies `src` to `dst` through one multishot receive until `src` ends or either side fails,
/// then shuts `dst`'s write side.
async fn copy_multi(src: &TcpStream, dst: &TcpStream) {
    let mut reader = src;
    let mut writer = dst;
    let mut empty_ring = 0;
    {
        let mut bufs = pin!(reader.read_multi(0));
        while let Some(item) = bufs.next().await {
            match item {
                Ok(buf) => {
                    empty_ring = 0;
                    let BufResult(res, buf) = writer.write_all(buf).await;
                    drop(buf);
                    if res.is_err() {
                        break;
                    }
                }
                Err(e) if ring_empty(&e) && empty_ring < MAX_EMPTY_RING_RETRIES => {
                    empty_ring += 1;
                    compio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => break,
            }
        }
    }
    let _ = writer.shutdown().await;
}

/// Copies `src` to `dst`, one buffer-select receive at a time, until `src` ends or either side
/// fails, then shuts `dst`'s write side.
async fn copy_managed(src: &TcpStream, dst: &TcpStream) {
    let mut reader = src;
    let mut writer = dst;
    let mut empty_ring = 0;
    loop {
        match reader.read_managed(0).await {
            Ok(Some(buf)) if !buf.is_empty() => {
                empty_ring = 0;
                let BufResult(res, buf) = writer.write_all(buf).await;
                drop(buf);
                if res.is_err() {
                    break;
                }
            }
            Ok(_) => break,
            Err(e) if ring_empty(&e) && empty_ring < MAX_EMPTY_RING_RETRIES => {
                empty_ring += 1;
                compio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => break,
        }
    }
    let _ = writer.shutdown().await;
}
