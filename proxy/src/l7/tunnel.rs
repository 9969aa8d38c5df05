//! The tunnel of an upgraded connection (WebSocket and any other `Upgrade`): after the origin
//! answered `101 Switching Protocols`, bytes are relayed both ways until both sides are done.
//!
//! Bytes that already arrived behind the heads (a client that sent its first frame right after
//! the request, an origin that sent one right after the 101) go first. Then each direction
//! reads and writes on its own half of the two connections (monoio's `Split`), concurrently on
//! the connection's task. A side that closes its sending half has that passed on (`shutdown`
//! of the other side's write half) while the other direction goes on; the tunnel ends when both
//! directions ended, or when no byte moved either way for the idle timeout.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use ringwall_runtime::Stream;

use super::transport::{write_bytes, Conn};

/// Bytes read per relayed read.
const RELAY_BUF: usize = 16 * 1024;

/// Relays between `client` and `upstream` until both directions end or the tunnel is idle for
/// `idle`. Returns the bytes relayed client → origin and origin → client.
pub async fn relay<C: Stream, U: Stream>(
    mut client: Conn<C>,
    upstream: Conn<U>,
    idle: Duration,
) -> (u64, u64) {
    // The 101 response head, still queued.
    if client.flush(idle).await.is_err() {
        return (0, 0);
    }
    let Conn {
        stream: mut client_stream,
        buf: client_early,
        ..
    } = client;
    let Conn {
        stream: mut upstream_stream,
        buf: upstream_early,
        ..
    } = upstream;
    // What the client sent after its request head, and the origin after its 101.
    let early_up = client_early.len() as u64;
    let early_down = upstream_early.len() as u64;
    if !upstream_early.is_empty()
        && write_bytes(&mut client_stream, upstream_early.freeze(), idle)
            .await
            .is_err()
    {
        return (0, 0);
    }
    if !client_early.is_empty()
        && write_bytes(&mut upstream_stream, client_early.freeze(), idle)
            .await
            .is_err()
    {
        return (0, early_down);
    }
    let (up, down) = relay_streams(client_stream, upstream_stream, idle).await;
    (early_up + up, early_down + down)
}

/// Relays between two streams, each direction on its own half, until both directions end or
/// nothing moved for `idle`; a side's end is passed on as a shutdown of the other's write side.
/// Returns the bytes moved `a` → `b` and `b` → `a`. (The L4 listeners use it too, for what
/// cannot be spliced.)
pub async fn relay_streams<A: Stream, B: Stream>(a: A, b: B, idle: Duration) -> (u64, u64) {
    let (mut client_read, mut client_write) = a.into_split();
    let (mut upstream_read, mut upstream_write) = b.into_split();
    let activity = Cell::new(Instant::now());
    let up = Cell::new(0);
    let down = Cell::new(0);
    let both = async {
        monoio::join!(
            copy(&mut client_read, &mut upstream_write, &activity, &up),
            copy(&mut upstream_read, &mut client_write, &activity, &down),
        );
    };
    monoio::select! {
        () = both => {}
        () = idle_for(&activity, idle) => tracing::debug!("tunnel idle for {idle:?}: closed"),
    }
    (up.get(), down.get())
}

/// Resolves once nothing moved for `idle`: `activity` is when something last did.
pub async fn idle_for(activity: &Cell<Instant>, idle: Duration) {
    loop {
        let left = idle.saturating_sub(activity.get().elapsed());
        if left.is_zero() {
            return;
        }
        monoio::time::sleep(left).await;
    }
}

/// Copies `src` to `dst` until `src` ends or either side fails, then shuts `dst`'s write side.
async fn copy(
    src: &mut impl AsyncReadRent,
    dst: &mut (impl AsyncWriteRent + AsyncWriteRentExt),
    activity: &Cell<Instant>,
    moved: &Cell<u64>,
) {
    let mut buf = BytesMut::with_capacity(RELAY_BUF);
    loop {
        buf.clear();
        let (result, returned) = src.read(buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                activity.set(Instant::now());
                moved.set(moved.get() + n as u64);
                let (written, returned) = dst.write_all(buf).await;
                buf = returned;
                if written.is_err() {
                    break;
                }
                activity.set(Instant::now());
            }
        }
    }
    let _ = dst.shutdown().await;
}
