//! Reading and writing one connection with a deadline, and coalescing small writes.
//!
//! Everything here is generic over [`Stream`]: TCP, TLS and the in-memory streams of the tests.
//! A [`Conn`] is one connection with its read buffer and write queue, the same shape on the
//! client side and the upstream side. monoio's I/O takes buffers by value (the kernel owns them while io_uring works), so these
//! helpers move a connection's `BytesMut` into the operation and back. A timed-out operation
//! loses its buffer: that is fine, because a timeout always ends the connection.
//! [`WriteQueue`] gathers small pieces (a head, a chunk header, a short body) into one write and
//! sends large `Bytes` as they are, without copying.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use ringwall_runtime::{Gather, Stream, Timer};

/// How much room a read gets. Heads are small and a connection waiting for its next request
/// should hold little memory; bodies stream best in large reads.
#[derive(Clone, Copy, Debug)]
pub enum ReadSize {
    Head,
    Body,
}

impl ReadSize {
    /// Below this much free room the buffer grows before the read is posted.
    fn min_room(self) -> usize {
        match self {
            ReadSize::Head => 256,
            ReadSize::Body => 4 * 1024,
        }
    }

    /// How much the buffer grows by when it must.
    fn grow_by(self) -> usize {
        match self {
            ReadSize::Head => 4 * 1024,
            ReadSize::Body => 32 * 1024,
        }
    }
}

/// One connection: the stream, what was read from it and not yet consumed, what waits to be
/// written to it, and its timer (every read and write is timed by it: one slot in the
/// worker's [`ringwall_runtime::Deadlines`], not a timer of its own per operation).
pub struct Conn<S> {
    pub stream: S,
    pub buf: BytesMut,
    pub out: WriteQueue,
    pub timer: Timer,
}

impl<S: Stream> Conn<S> {
    pub fn new(stream: S, buf_capacity: usize, timer: Timer) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(buf_capacity),
            out: WriteQueue::default(),
            timer,
        }
    }

    // These return the inner futures rather than being `async fn`s of their own: an extra
    // state machine per call would be one more move of a future per read and write.

    /// Reads whatever arrives next into the buffer (appending), within `limit`. Returns the
    /// number of bytes read.
    pub async fn read(&mut self, limit: Duration, size: ReadSize) -> Result<usize, IoFailure> {
        let read = read_into(&mut self.stream, &mut self.buf, size);
        timed(self.timer.within(limit, read).await)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self, limit: Duration) -> Result<(), IoFailure> {
        let Some(write) = self.out.write_pending(&mut self.stream) else {
            return Ok(());
        };
        timed(self.timer.within(limit, write).await)
    }

    /// Queues `data`: copied if small, otherwise written at once after what is queued, in
    /// the same write (a `writev` of both, the large piece not copied).
    pub async fn push(&mut self, data: Bytes, limit: Duration) -> Result<(), IoFailure> {
        let Some(large) = self.out.queue_small(data) else {
            return Ok(());
        };
        if self.out.pending.is_empty() {
            let write = write_all(&mut self.stream, large);
            return timed(self.timer.within(limit, write).await);
        }
        let gather = Gather::new(std::mem::take(&mut self.out.pending), large);
        let write = async {
            let (result, gather) = self.stream.write_vectored_all(gather).await;
            let mut head = gather.into_head();
            head.clear();
            self.out.pending = head;
            result.map(|_| ()).map_err(IoFailure::Io)
        };
        timed(self.timer.within(limit, write).await)
    }
}

/// Makes room for a read of `size` in `buf`.
fn reserve(buf: &mut BytesMut, size: ReadSize) {
    if buf.capacity() - buf.len() < size.min_room() {
        buf.reserve(size.grow_by());
    }
}

/// A timed operation's result: `None` from the timer is a timeout.
fn timed<T>(outcome: Option<Result<T, IoFailure>>) -> Result<T, IoFailure> {
    outcome.unwrap_or(Err(IoFailure::Timeout))
}

/// Pieces up to this size are copied into the write queue; larger ones are written as they are.
const COPY_LIMIT: usize = 8 * 1024;
/// What an empty write queue takes when something is first queued.
const QUEUE_START: usize = 1024;

/// How a read or write failed.
#[derive(Debug)]
pub enum IoFailure {
    /// The deadline passed.
    Timeout,
    /// The peer closed its side (a read returned 0).
    Closed,
    Io(io::Error),
}

/// Reads whatever arrives next into `buf` (appending), within `limit` (a monoio timer: for
/// streams without a [`Conn`], as the demo's origins). Returns the number of bytes read.
pub async fn read_some<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Duration,
    size: ReadSize,
) -> Result<usize, IoFailure> {
    monoio::time::timeout(limit, read_into(stream, buf, size))
        .await
        .unwrap_or(Err(IoFailure::Timeout))
}

/// Reads whatever arrives next into `buf` (appending), untimed. A read that is dropped
/// before it completes loses the buffer: that is fine, because a timeout always ends the
/// connection.
async fn read_into<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    size: ReadSize,
) -> Result<usize, IoFailure> {
    reserve(buf, size);
    // monoio reads a `BytesMut` from its start; the read must go after what is buffered.
    let owned = std::mem::take(buf);
    let (filled, capacity) = (owned.len(), owned.capacity());
    let spare = owned.slice_mut(filled..capacity);
    let (result, spare) = stream.read(spare).await;
    *buf = spare.into_inner();
    match result {
        Ok(0) => Err(IoFailure::Closed),
        Ok(n) => Ok(n),
        Err(e) => Err(IoFailure::Io(e)),
    }
}

/// Writes all of `data` within `limit` (a monoio timer, for the tunnel's halves).
pub async fn write_bytes<S: AsyncWriteRent>(
    stream: &mut S,
    data: Bytes,
    limit: Duration,
) -> Result<(), IoFailure> {
    monoio::time::timeout(limit, write_all(stream, data))
        .await
        .unwrap_or(Err(IoFailure::Timeout))
}

/// Writes all of `data`, untimed.
async fn write_all<S: AsyncWriteRent>(stream: &mut S, data: Bytes) -> Result<(), IoFailure> {
    match stream.write_all(data).await {
        (Ok(_), _) => Ok(()),
        (Err(e), _) => Err(IoFailure::Io(e)),
    }
}

/// Small writes gathered into one buffer, flushed as one write.
#[derive(Default)]
pub struct WriteQueue {
    pending: BytesMut,
}

impl WriteQueue {
    /// The buffer to append small pieces to directly (heads, chunk framing).
    pub fn buf(&mut self) -> &mut BytesMut {
        if self.pending.capacity() == 0 {
            // Room for a response head and a small body at once, rather than growing a few
            // bytes at a time.
            self.pending.reserve(QUEUE_START);
        }
        &mut self.pending
    }

    /// Frees the queue's buffer when nothing waits in it (a connection going idle).
    pub fn release(&mut self) {
        if self.pending.is_empty() {
            self.pending = BytesMut::new();
        }
    }

    /// Queues `data` when it is small enough to copy; gives it back otherwise (then
    /// [`Self::push`] writes it).
    pub fn queue_small(&mut self, data: Bytes) -> Option<Bytes> {
        if data.len() <= COPY_LIMIT {
            self.buf().extend_from_slice(&data);
            None
        } else {
            Some(data)
        }
    }

    /// The write of everything queued, or `None` when nothing is. The queue's buffer comes
    /// back, emptied, when the write completes.
    fn write_pending<'a, S: AsyncWriteRent>(
        &'a mut self,
        stream: &'a mut S,
    ) -> Option<impl Future<Output = Result<(), IoFailure>> + 'a> {
        if self.pending.is_empty() {
            return None;
        }
        let owned = std::mem::take(&mut self.pending);
        Some(async move {
            let (result, mut owned) = stream.write_all(owned).await;
            owned.clear();
            self.pending = owned;
            result.map(|_| ()).map_err(IoFailure::Io)
        })
    }
}
