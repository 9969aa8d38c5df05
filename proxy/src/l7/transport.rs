//! Reading and writing one connection with a deadline, and coalescing small writes.
//!
//! Everything here is generic over [`Stream`]: TCP today, TLS and in-memory streams next.
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
use ringwall_runtime::Stream;

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

/// One connection: the stream, what was read from it and not yet consumed, and what waits to
/// be written to it.
pub struct Conn<S> {
    pub stream: S,
    pub buf: BytesMut,
    pub out: WriteQueue,
}

impl<S: Stream> Conn<S> {
    pub fn new(stream: S, buf_capacity: usize) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(buf_capacity),
            out: WriteQueue::default(),
        }
    }

    // These return the inner futures rather than being `async fn`s of their own: an extra
    // state machine per call would be one more move of a future per read and write.

    /// Reads whatever arrives next into the buffer; see [`read_some`].
    pub fn read(
        &mut self,
        limit: Duration,
        size: ReadSize,
    ) -> impl Future<Output = Result<usize, IoFailure>> + '_ {
        read_some(&mut self.stream, &mut self.buf, limit, size)
    }

    /// Writes everything queued.
    pub fn flush(&mut self, limit: Duration) -> impl Future<Output = Result<(), IoFailure>> + '_ {
        self.out.flush(&mut self.stream, limit)
    }

    /// Queues `data` (see [`WriteQueue::push`]).
    pub fn push(
        &mut self,
        data: Bytes,
        limit: Duration,
    ) -> impl Future<Output = Result<(), IoFailure>> + '_ {
        self.out.push(&mut self.stream, data, limit)
    }
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

/// Reads whatever arrives next into `buf` (appending). Returns the number of bytes read.
pub async fn read_some<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Duration,
    size: ReadSize,
) -> Result<usize, IoFailure> {
    if buf.capacity() - buf.len() < size.min_room() {
        buf.reserve(size.grow_by());
    }
    // monoio reads a `BytesMut` from its start; the read must go after what is buffered.
    let owned = std::mem::take(buf);
    let (filled, capacity) = (owned.len(), owned.capacity());
    let spare = owned.slice_mut(filled..capacity);
    match monoio::time::timeout(limit, stream.read(spare)).await {
        Err(_) => Err(IoFailure::Timeout),
        Ok((result, spare)) => {
            *buf = spare.into_inner();
            match result {
                Ok(0) => Err(IoFailure::Closed),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFailure::Io(e)),
            }
        }
    }
}

/// Writes all of `data` or fails.
pub async fn write_bytes<S: AsyncWriteRent>(
    stream: &mut S,
    data: Bytes,
    limit: Duration,
) -> Result<(), IoFailure> {
    match monoio::time::timeout(limit, stream.write_all(data)).await {
        Err(_) => Err(IoFailure::Timeout),
        Ok((Ok(_), _)) => Ok(()),
        Ok((Err(e), _)) => Err(IoFailure::Io(e)),
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

    /// Queues `data`: copied if small, otherwise written at once after what is queued.
    pub async fn push<S: AsyncWriteRent>(
        &mut self,
        stream: &mut S,
        data: Bytes,
        limit: Duration,
    ) -> Result<(), IoFailure> {
        if data.len() <= COPY_LIMIT {
            self.buf().extend_from_slice(&data);
            return Ok(());
        }
        self.flush(stream, limit).await?;
        write_bytes(stream, data, limit).await
    }

    /// Writes everything queued.
    pub async fn flush<S: AsyncWriteRent>(
        &mut self,
        stream: &mut S,
        limit: Duration,
    ) -> Result<(), IoFailure> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let owned = std::mem::take(&mut self.pending);
        match monoio::time::timeout(limit, stream.write_all(owned)).await {
            Err(_) => Err(IoFailure::Timeout),
            Ok((result, mut owned)) => {
                owned.clear();
                self.pending = owned;
                result.map(|_| ()).map_err(IoFailure::Io)
            }
        }
    }
}
