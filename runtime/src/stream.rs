//! The byte streams the request path runs over, and an in-memory one for tests.
//!
//! [`Stream`] is what the proxy's connection code is generic over: monoio's rent-based
//! `AsyncReadRent + AsyncWriteRent`, `Split` (so an upgraded connection can be relayed in both
//! directions at once), and a non-blocking look at whether an idle pooled connection is still
//! in step. `TcpStream` implements it, `TlsStream` (`tls.rs`) too. [`memory_pair`] makes two
//! connected [`MemoryStream`]s: the request path's phases and filters are unit-tested over them,
//! with no socket and no kernel in the way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::idle_probe::idle_connection_is_clean;

/// A connection the request path can serve or forward over.
pub trait Stream: AsyncReadRent + AsyncWriteRent + Split + 'static {
    /// True when nothing (no data, no end of stream, no error) waits on an idle connection, so
    /// that it may be used for the next exchange.
    fn is_idle_clean(&self) -> bool;

    /// Sends small writes at once (`TCP_NODELAY`); streams without Nagle ignore it.
    fn set_nodelay(&self) {}

    /// The TCP socket under this stream, when bytes may move between it and another one by
    /// splice(2) without passing through user space (not for TLS or in-memory streams).
    fn tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }

    /// The TLS version and SNI of a terminated connection; `None` for plain streams.
    fn tls_info(&self) -> Option<crate::tls::TlsInfo> {
        None
    }

    /// The TCP socket itself, when this stream is one (to be split into halves that splice);
    /// otherwise the stream back.
    fn into_tcp(self) -> Result<TcpStream, Self>
    where
        Self: Sized,
    {
        Err(self)
    }

    /// Resolves once a read would not wait (data, the end of the stream, or an error are
    /// there), holding no buffer meanwhile: how an idle connection waits for its next request.
    fn readable(&mut self) -> impl std::future::Future<Output = io::Result<()>>;
}

impl Stream for TcpStream {
    fn is_idle_clean(&self) -> bool {
        idle_connection_is_clean(self)
    }

    fn tcp(&mut self) -> Option<&mut TcpStream> {
        Some(self)
    }

    fn into_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }

    fn readable(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        // A poll operation under io_uring; under epoll, `relaxed = false` asks the kernel
        // (poll(2)) rather than trusting a readiness left over from the last read.
        TcpStream::readable(&*self, false)
    }

    fn set_nodelay(&self) {
        let _ = TcpStream::set_nodelay(self, true);
    }
}

/// Bytes one direction of a [`MemoryStream`] pair holds before its writer waits.
const PIPE_CAPACITY: usize = 64 * 1024;

/// One direction of a memory pair.
#[derive(Default)]
struct Pipe {
    bytes: VecDeque<u8>,
    /// The writer shut down or went away: reads return 0 once `bytes` is empty.
    write_closed: bool,
    /// The reader went away: writes fail.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// One end of an in-memory, single-threaded duplex connection (see [`memory_pair`]).
pub struct MemoryStream {
    read: Rc<RefCell<Pipe>>,
    write: Rc<RefCell<Pipe>>,
}

/// Two connected streams: what one writes, the other reads. For tests on one monoio runtime.
pub fn memory_pair() -> (MemoryStream, MemoryStream) {
    let a_to_b = Rc::new(RefCell::new(Pipe::default()));
    let b_to_a = Rc::new(RefCell::new(Pipe::default()));
    (
        MemoryStream {
            read: b_to_a.clone(),
            write: a_to_b.clone(),
        },
        MemoryStream {
            read: a_to_b,
            write: b_to_a,
        },
    )
}

impl MemoryStream {
    /// Copies up to `len` bytes into `dst` once some are there (or the writer closed).
    async fn read_into(&self, dst: *mut u8, len: usize) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut pipe = self.read.borrow_mut();
            if pipe.bytes.is_empty() {
                if pipe.write_closed || len == 0 {
                    return Poll::Ready(Ok(0));
                }
                pipe.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = len.min(pipe.bytes.len());
            for (i, byte) in pipe.bytes.drain(..n).enumerate() {
                // SAFETY: `dst` points at `len` writable bytes owned by the caller's buffer,
                // which the caller holds until this future completes; `i < n <= len`.
                #[allow(unsafe_code)]
                unsafe {
                    dst.add(i).write(byte);
                }
            }
            if let Some(writer) = pipe.writer.take() {
                writer.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }

    /// Copies up to `len` bytes from `src` once there is room (or fails if the reader left).
    async fn write_from(&self, src: *const u8, len: usize) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut pipe = self.write.borrow_mut();
            if pipe.read_closed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if pipe.write_closed {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            }
            let room = PIPE_CAPACITY.saturating_sub(pipe.bytes.len());
            if room == 0 && len > 0 {
                pipe.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = len.min(room);
            // SAFETY: `src` points at `len` initialised bytes of the caller's buffer, held by
            // the caller until this future completes; `n <= len`.
            #[allow(unsafe_code)]
            let data = unsafe { std::slice::from_raw_parts(src, n) };
            pipe.bytes.extend(data);
            if let Some(reader) = pipe.reader.take() {
                reader.wake();
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        let mut write = self.write.borrow_mut();
        write.write_closed = true;
        if let Some(reader) = write.reader.take() {
            reader.wake();
        }
        drop(write);
        let mut read = self.read.borrow_mut();
        read.read_closed = true;
        if let Some(writer) = read.writer.take() {
            writer.wake();
        }
    }
}

impl AsyncReadRent for MemoryStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_through(buf, |ptr, len| self.read_into(ptr, len)).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_through(buf, |ptr, len| self.read_into(ptr, len)).await
    }
}

/// A rent-based read for a stream whose bytes are copied in by `fill(ptr, len)` (the memory
/// pair's, TLS's decrypted ones): `fill` writes at most `len` bytes at `ptr` and returns how
/// many, which then count as initialised.
pub(crate) async fn read_through<T, F, Fut>(mut buf: T, fill: F) -> BufResult<usize, T>
where
    T: IoBufMut,
    F: FnOnce(*mut u8, usize) -> Fut,
    Fut: std::future::Future<Output = io::Result<usize>>,
{
    let (ptr, len) = (buf.write_ptr(), buf.bytes_total());
    let result = fill(ptr, len).await;
    if let Ok(n) = result {
        // SAFETY: `fill` initialised the first `n` bytes behind `write_ptr`.
        #[allow(unsafe_code)]
        unsafe {
            buf.set_init(n);
        }
    }
    (result, buf)
}

/// [`read_through`] for a vectored read: the first iovec is filled.
pub(crate) async fn readv_through<T, F, Fut>(mut buf: T, fill: F) -> BufResult<usize, T>
where
    T: IoVecBufMut,
    F: FnOnce(*mut u8, usize) -> Fut,
    Fut: std::future::Future<Output = io::Result<usize>>,
{
    // SAFETY: the first iovec of `buf`, which lives until the read completes.
    #[allow(unsafe_code)]
    let first = unsafe { RawBuf::new_from_iovec_mut(&mut buf) };
    let Some(mut raw) = first else {
        return (Ok(0), buf);
    };
    let result = fill(raw.write_ptr(), raw.bytes_total()).await;
    if let Ok(n) = result {
        // SAFETY: `fill` initialised the first `n` bytes of the first iovec.
        #[allow(unsafe_code)]
        unsafe {
            buf.set_init(n);
        }
    }
    (result, buf)
}

impl AsyncWriteRent for MemoryStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = self.write_from(buf.read_ptr(), buf.bytes_init()).await;
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the first iovec of `buf`, which lives until the write completes.
        #[allow(unsafe_code)]
        let first = unsafe { RawBuf::new_from_iovec(&buf) };
        let Some(raw) = first else {
            return (Ok(0), buf);
        };
        let result = self.write_from(raw.read_ptr(), raw.bytes_init()).await;
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        let mut pipe = self.write.borrow_mut();
        pipe.write_closed = true;
        if let Some(reader) = pipe.reader.take() {
            reader.wake();
        }
        Ok(())
    }
}

// SAFETY: the read side only touches `read` and the write side only `write`: two different
// pipes, so a read and a write may be in flight at the same time.
#[allow(unsafe_code)]
unsafe impl Split for MemoryStream {}

impl Stream for MemoryStream {
    fn is_idle_clean(&self) -> bool {
        let pipe = self.read.borrow();
        pipe.bytes.is_empty() && !pipe.write_closed
    }

    async fn readable(&mut self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut pipe = self.read.borrow_mut();
            if !pipe.bytes.is_empty() || pipe.write_closed {
                return Poll::Ready(Ok(()));
            }
            pipe.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run;
    use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt};

    #[test]
    fn bytes_cross_and_shutdown_ends_the_reader() {
        run(async {
            let (mut a, mut b) = memory_pair();
            let (written, _) = a.write_all(b"hello".to_vec()).await;
            written.unwrap();
            let (read, buf) = b.read_exact(vec![0u8; 5]).await;
            read.unwrap();
            assert_eq!(buf, b"hello");
            assert!(b.is_idle_clean());
            a.shutdown().await.unwrap();
            assert!(!b.is_idle_clean());
            let (n, _) = b.read(Vec::with_capacity(8)).await;
            assert_eq!(n.unwrap(), 0);
        });
    }

    #[test]
    fn a_large_write_waits_for_the_reader() {
        run(async {
            let (mut a, mut b) = memory_pair();
            let total = 3 * PIPE_CAPACITY + 17;
            let writer = monoio::spawn(async move {
                let (result, _) = a.write_all(vec![7u8; total]).await;
                result.unwrap();
            });
            let (read, buf) = b.read_exact(vec![0u8; total]).await;
            read.unwrap();
            assert!(buf.iter().all(|&x| x == 7));
            writer.await;
        });
    }

    #[test]
    fn writing_to_a_dropped_peer_fails() {
        run(async {
            let (mut a, b) = memory_pair();
            drop(b);
            let (result, _) = a.write(b"x".to_vec()).await;
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        });
    }
}
