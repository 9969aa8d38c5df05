//! Reading and writing one socket with a deadline, and coalescing small writes.
//!
//! monoio's I/O takes buffers by value (the kernel owns them while io_uring works), so these
//! helpers move a connection's `BytesMut` into the operation and back. A timed-out operation
//! loses its buffer: that is fine, because a timeout always ends the connection.
//! [`WriteQueue`] gathers small pieces (a head, a chunk header, a short body) into one write and
//! sends large `Bytes` as they are, without copying.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

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
/// Pieces up to this size are copied into the write queue; larger ones are written as they are.
const COPY_LIMIT: usize = 8 * 1024;

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
pub async fn read_some(
    stream: &mut TcpStream,
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
pub async fn write_bytes(
    stream: &mut TcpStream,
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
        &mut self.pending
    }

    /// Frees the queue's buffer when it is empty and has grown past `limit`.
    pub fn release_if_larger(&mut self, limit: usize) {
        if self.pending.is_empty() && self.pending.capacity() > limit {
            self.pending = BytesMut::new();
        }
    }

    /// Queues `data`: copied if small, otherwise written at once after what is queued.
    pub async fn push(
        &mut self,
        stream: &mut TcpStream,
        data: Bytes,
        limit: Duration,
    ) -> Result<(), IoFailure> {
        if data.len() <= COPY_LIMIT {
            self.pending.extend_from_slice(&data);
            return Ok(());
        }
        self.flush(stream, limit).await?;
        write_bytes(stream, data, limit).await
    }

    /// Writes everything queued.
    pub async fn flush(
        &mut self,
        stream: &mut TcpStream,
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
