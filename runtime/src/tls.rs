//! TLS over any [`Stream`]: rustls's buffered connection driven over monoio's owned buffers.
//!
//! [`TlsStream`] wraps a stream (TCP in the proxy) and a rustls connection (server side for
//! terminated listeners, client side toward `https://` origins). It is a [`Stream`] itself, so
//! the request path, the pools and the tunnel run over it unchanged; only splice is off
//! (there is no socket to splice from: every byte is decrypted in user space).
//!
//! Bytes move like this: ciphertext is read from the socket into `rx` (16 KiB reads, one TLS
//! record's worth), handed to rustls (`read_tls`, which copies it into its deframer and
//! decrypts in place), and the plaintext copied once into the caller's buffer. Writes go the
//! other way: the caller's plaintext into rustls (`writer`, which encrypts into its record
//! queue), the records into `tx`, `tx` to the socket in one write. A `writev` of several pieces
//! becomes one socket write. An idle connection (waiting in [`Stream::readable`]) gives `rx`
//! back.
//!
//! The stream is [`Split`]: the tunnel of an upgraded (WebSocket) connection reads and writes at
//! once. Reading can make rustls want to write (a TLS 1.3 key update, an alert), so writes to
//! the socket take turns behind a small lock ([`WriteTurn`]); the rustls connection is in a
//! `RefCell` borrowed only between awaits.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, BufRead, Write};
use std::ops::DerefMut;
use std::task::{Poll, Waker};

use bytes::{Buf, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::BufResult;
use rustls::ConnectionCommon;

use crate::stream::{read_through, readv_through, Stream};

/// Room for one full TLS record (16 KiB of plaintext plus its header and tag).
const RECORD_ROOM: usize = 16 * 1024 + 512;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's first bytes are not a TLS record but look like a plain-text request (a
    /// client speaking HTTP to a TLS port); nothing was sent to it yet.
    #[error("the client sent plain text to a TLS port")]
    PlainText,
    /// The peer broke the protocol, offered nothing in common, or failed verification; rustls
    /// has sent it the matching alert.
    #[error("{0}")]
    Tls(rustls::Error),
    /// The peer closed the connection before the handshake completed.
    #[error("closed during the handshake")]
    Closed,
    #[error("{0}")]
    Io(io::Error),
}

/// A TLS connection over `S`; `C` is rustls's `ServerConnection` or `ClientConnection`.
pub struct TlsStream<S, C> {
    io: S,
    /// Ciphertext read from `io` that rustls has not taken yet. Touched by the read side only.
    rx: BytesMut,
    state: RefCell<State<C>>,
}

struct State<C> {
    conn: C,
    /// Encrypted records on their way out; the allocation is reused (taken while a write to
    /// the socket is in flight).
    tx: Vec<u8>,
    turn: WriteTurn,
}

/// Whose turn it is to write to the socket: the read side (replies rustls owes the peer) and
/// the write side of a split stream may both want to, and two writes must not interleave.
#[derive(Default)]
struct WriteTurn {
    taken: bool,
    waiting: Vec<Waker>,
}

impl<S, C, D> TlsStream<S, C>
where
    S: Stream,
    C: DerefMut<Target = ConnectionCommon<D>> + 'static,
    D: 'static,
{
    /// Wraps `io`; nothing is sent or read until [`Self::handshake`] (or the first read or
    /// write, which complete the handshake on the way).
    pub fn new(io: S, conn: C) -> Self {
        Self::with_buffered(io, conn, BytesMut::new())
    }

    /// Like [`Self::new`], for a connection whose first bytes were already read (after a
    /// PROXY protocol header, say): `buffered` is where the TLS stream starts.
    pub fn with_buffered(io: S, conn: C, buffered: BytesMut) -> Self {
        Self {
            io,
            rx: buffered,
            state: RefCell::new(State {
                conn,
                tx: Vec::new(),
                turn: WriteTurn::default(),
            }),
        }
    }

    /// Runs the handshake to its end (and sends what follows it, such as TLS 1.3 session
    /// tickets). Untimed: the caller bounds it.
    pub async fn handshake(&mut self) -> Result<(), HandshakeError> {
        let mut first = true;
        loop {
            let (handshaking, wants_write) = {
                let state = self.state.borrow();
                (state.conn.is_handshaking(), state.conn.wants_write())
            };
            if wants_write {
                self.flush_tls().await.map_err(HandshakeError::Io)?;
                continue;
            }
            if !handshaking {
                return Ok(());
            }
            let n = if first && !self.rx.is_empty() {
                self.rx.len()
            } else {
                self.fill_rx().await.map_err(HandshakeError::Io)?
            };
            if first && looks_like_plain_text(&self.rx) {
                return Err(HandshakeError::PlainText);
            }
            first = false;
            if n == 0 {
                return Err(HandshakeError::Closed);
            }
            if let Err(e) = self.feed() {
                self.send_alert().await;
                return Err(match e {
                    FeedError::Tls(e) => HandshakeError::Tls(e),
                    FeedError::Io(e) => HandshakeError::Io(e),
                });
            }
        }
    }

    /// The stream under the TLS layer (for a plain-text refusal after
    /// [`HandshakeError::PlainText`]).
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Reads more ciphertext into `rx`; returns how much (0: the peer closed).
    async fn fill_rx(&mut self) -> io::Result<usize> {
        if self.rx.capacity() - self.rx.len() < RECORD_ROOM / 4 {
            self.rx.reserve(RECORD_ROOM);
        }
        let owned = std::mem::take(&mut self.rx);
        let (filled, capacity) = (owned.len(), owned.capacity());
        let (result, spare) = self.io.read(owned.slice_mut(filled..capacity)).await;
        self.rx = spare.into_inner();
        result
    }

    /// Hands what `rx` holds to rustls and lets it process the records (an empty `rx` tells
    /// rustls the peer closed).
    fn feed(&mut self) -> Result<(), FeedError> {
        let mut state = self.state.borrow_mut();
        if self.rx.is_empty() {
            state
                .conn
                .read_tls(&mut io::empty())
                .map_err(FeedError::Io)?;
        }
        while !self.rx.is_empty() {
            let mut reader = &self.rx[..];
            let n = state.conn.read_tls(&mut reader).map_err(FeedError::Io)?;
            self.rx.advance(n);
            let io_state = state.conn.process_new_packets().map_err(FeedError::Tls)?;
            // Plaintext waits to be read: the rest of `rx` stays until it is (rustls holds
            // a bounded amount of plaintext and refuses more records meanwhile).
            if n == 0 || io_state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        if self.rx.is_empty() {
            state.conn.process_new_packets().map_err(FeedError::Tls)?;
        }
        Ok(())
    }

    /// Copies decrypted bytes into `dst[..len]` once there are some; 0 at the end of the
    /// stream.
    async fn read_plain(&mut self, dst: *mut u8, len: usize) -> io::Result<usize> {
        loop {
            {
                let mut state = self.state.borrow_mut();
                let mut reader = state.conn.reader();
                match reader.fill_buf() {
                    Ok(chunk) if !chunk.is_empty() || len == 0 => {
                        let n = chunk.len().min(len);
                        // SAFETY: `dst` points at `len` writable bytes of the caller's buffer,
                        // which the caller owns until this future completes; `n <= len`, and
                        // `chunk` is rustls's memory, not the caller's.
                        #[allow(unsafe_code)]
                        unsafe {
                            std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, n);
                        }
                        reader.consume(n);
                        return Ok(n);
                    }
                    // The peer sent `close_notify`: the end of the stream.
                    Ok(_) => return Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // Replies rustls owes the peer (a key update, say) go out before waiting; when the
            // other half is writing, its write sends them once it is done.
            let owes = {
                let state = self.state.borrow();
                state.conn.wants_write() && !state.turn.taken
            };
            if owes {
                self.flush_tls().await?;
            }
            if self.rx.is_empty() {
                self.fill_rx().await?;
            }
            if let Err(e) = self.feed() {
                self.send_alert().await;
                return Err(match e {
                    FeedError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
                    FeedError::Io(e) => e,
                });
            }
        }
    }

    /// Encrypts `pieces` (pointer, length) in order and writes the records to the socket;
    /// returns how many plaintext bytes were taken (all of them unless rustls's buffer limit
    /// stopped it).
    async fn write_plain(
        &mut self,
        pieces: impl Iterator<Item = (*const u8, usize)>,
    ) -> io::Result<usize> {
        self.take_turn().await;
        let mut taken = 0;
        let outcome = 'encrypt: {
            let mut state = self.state.borrow_mut();
            for (ptr, len) in pieces {
                // SAFETY: each piece points at `len` initialised bytes of the caller's buffer,
                // owned by the caller until this future completes.
                #[allow(unsafe_code)]
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                match state.conn.writer().write(data) {
                    Ok(n) => {
                        taken += n;
                        if n < len {
                            break;
                        }
                    }
                    Err(e) => break 'encrypt Err(e),
                }
            }
            Ok(())
        };
        let flushed = match outcome {
            Ok(()) => self.write_records().await,
            Err(e) => Err(e),
        };
        self.give_turn();
        flushed.map(|()| taken)
    }

    /// After an error, sends the alert rustls queued to tell the peer why, unless a write is
    /// in flight on the other half (then waiting could wait on a peer that reads nothing).
    async fn send_alert(&mut self) {
        if !self.state.borrow().turn.taken {
            let _ = self.flush_tls().await;
        }
    }

    /// Writes every record rustls has queued, taking the write turn for it.
    async fn flush_tls(&mut self) -> io::Result<()> {
        self.take_turn().await;
        let flushed = self.write_records().await;
        self.give_turn();
        flushed
    }

    /// Writes every record rustls has queued; the caller holds the write turn.
    async fn write_records(&mut self) -> io::Result<()> {
        loop {
            let out = {
                let mut state = self.state.borrow_mut();
                if !state.conn.wants_write() {
                    return Ok(());
                }
                let mut out = std::mem::take(&mut state.tx);
                out.clear();
                while state.conn.wants_write() {
                    state.conn.write_tls(&mut out)?;
                }
                out
            };
            let (result, out) = self.io.write_all(out).await;
            self.state.borrow_mut().tx = out;
            result?;
        }
    }

    async fn take_turn(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.turn.taken {
                state.turn.waiting.push(cx.waker().clone());
                Poll::Pending
            } else {
                state.turn.taken = true;
                Poll::Ready(())
            }
        })
        .await;
    }

    fn give_turn(&self) {
        let mut state = self.state.borrow_mut();
        state.turn.taken = false;
        for waker in state.turn.waiting.drain(..) {
            waker.wake();
        }
    }

    /// True when decrypted bytes or undecrypted ciphertext wait to be read.
    fn has_buffered(&self) -> bool {
        if !self.rx.is_empty() {
            return true;
        }
        let mut state = self.state.borrow_mut();
        matches!(state.conn.reader().fill_buf(), Ok(chunk) if !chunk.is_empty())
    }
}

enum FeedError {
    Tls(rustls::Error),
    Io(io::Error),
}

/// A TLS connection starts with a handshake record (0x16); a plain-text HTTP request starts
/// with an upper-case method.
fn looks_like_plain_text(first: &[u8]) -> bool {
    first.first().is_some_and(u8::is_ascii_uppercase)
}

impl<S, C, D> AsyncReadRent for TlsStream<S, C>
where
    S: Stream,
    C: DerefMut<Target = ConnectionCommon<D>> + 'static,
    D: 'static,
{
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        read_through(buf, |ptr, len| self.read_plain(ptr, len)).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        readv_through(buf, |ptr, len| self.read_plain(ptr, len)).await
    }
}

impl<S, C, D> AsyncWriteRent for TlsStream<S, C>
where
    S: Stream,
    C: DerefMut<Target = ConnectionCommon<D>> + 'static,
    D: 'static,
{
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = self
            .write_plain(std::iter::once((buf.read_ptr(), buf.bytes_init())))
            .await;
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (ptr, count) = (buf.read_iovec_ptr(), buf.read_iovec_len());
        // SAFETY: `buf` guarantees `count` valid iovecs behind `ptr`, each pointing at
        // initialised bytes, for as long as it lives (until this call returns it).
        #[allow(unsafe_code)]
        let iovecs = unsafe { std::slice::from_raw_parts(ptr, count) };
        let pieces = iovecs
            .iter()
            .map(|v| (v.iov_base.cast_const().cast::<u8>(), v.iov_len));
        let result = self.write_plain(pieces).await;
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    /// Sends `close_notify`, then shuts the socket's write side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.state.borrow_mut().conn.send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}

// SAFETY: under a split, the read side touches `rx` and `io`'s read operations, the write side
// `io`'s write operations; `io` is itself `Split`. What both touch, the rustls connection and
// `tx`, sits in a `RefCell` that neither holds across an await, and writes to `io` from either
// side take turns through `WriteTurn`.
#[allow(unsafe_code)]
unsafe impl<S: Split, C> Split for TlsStream<S, C> {}

impl<S, C, D> Stream for TlsStream<S, C>
where
    S: Stream,
    C: DerefMut<Target = ConnectionCommon<D>> + PeerName + 'static,
    D: 'static,
{
    fn tls_info(&self) -> Option<TlsInfo> {
        let state = self.state.borrow();
        let version = match state.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        Some(TlsInfo {
            version,
            sni: state.conn.peer_server_name().map(std::rc::Rc::from),
        })
    }

    fn is_idle_clean(&self) -> bool {
        !self.has_buffered() && self.io.is_idle_clean()
    }

    fn set_nodelay(&self) {
        self.io.set_nodelay();
    }

    async fn readable(&mut self) -> io::Result<()> {
        if self.has_buffered() {
            return Ok(());
        }
        // Idle: hold no ciphertext buffer while waiting.
        self.rx = BytesMut::new();
        self.io.readable().await
    }
}

/// What the request path may know of a connection's TLS: the version, and the name its
/// client asked for (server side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2` (nginx's `$ssl_protocol` spelling).
    pub version: &'static str,
    pub sni: Option<std::rc::Rc<str>>,
}

/// The server name the peer of a connection asked for, on the server side.
pub trait PeerName {
    fn peer_server_name(&self) -> Option<&str> {
        None
    }
}

impl PeerName for rustls::ServerConnection {
    fn peer_server_name(&self) -> Option<&str> {
        self.server_name()
    }
}

impl PeerName for rustls::ClientConnection {}

/// A connection that is plain or TLS, decided when it is made: what an upstream group of
/// `http://` or `https://` servers hands out. The TLS side is boxed, so plain connections stay
/// small.
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<TlsStream<S, rustls::ClientConnection>>),
}

impl<S: Stream> AsyncReadRent for MaybeTls<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            MaybeTls::Plain(s) => s.read(buf).await,
            MaybeTls::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            MaybeTls::Plain(s) => s.readv(buf).await,
            MaybeTls::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<S: Stream> AsyncWriteRent for MaybeTls<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            MaybeTls::Plain(s) => s.write(buf).await,
            MaybeTls::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            MaybeTls::Plain(s) => s.writev(buf).await,
            MaybeTls::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.flush().await,
            MaybeTls::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.shutdown().await,
            MaybeTls::Tls(s) => s.shutdown().await,
        }
    }
}

// SAFETY: each variant is `Split` (`TlsStream` when its stream is), and a split of the enum
// splits the one variant it holds.
#[allow(unsafe_code)]
unsafe impl<S: Split> Split for MaybeTls<S> {}

impl<S: Stream> Stream for MaybeTls<S> {
    fn is_idle_clean(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_idle_clean(),
            MaybeTls::Tls(s) => s.is_idle_clean(),
        }
    }

    fn set_nodelay(&self) {
        match self {
            MaybeTls::Plain(s) => s.set_nodelay(),
            MaybeTls::Tls(s) => s.set_nodelay(),
        }
    }

    fn tcp(&mut self) -> Option<&mut monoio::net::TcpStream> {
        match self {
            MaybeTls::Plain(s) => s.tcp(),
            MaybeTls::Tls(_) => None,
        }
    }

    fn into_tcp(self) -> Result<monoio::net::TcpStream, Self> {
        match self {
            MaybeTls::Plain(s) => s.into_tcp().map_err(MaybeTls::Plain),
            tls @ MaybeTls::Tls(_) => Err(tls),
        }
    }

    async fn readable(&mut self) -> io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.readable().await,
            MaybeTls::Tls(s) => s.readable().await,
        }
    }
}

#[cfg(test)]
mod tests;
