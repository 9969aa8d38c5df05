//! The one body pump: moves a message body from one connection to the other, through the
//! route's body filters, re-framed as ringwall decided.
//!
//! Both directions use [`pump`]: the request body from the client to the origin, the response
//! body from the origin to the client. A [`Leg`] says what differs: which side failed when a
//! read, a write or the framing goes wrong ([`Direction`]), the timeouts, and the request-only
//! limits (largest body, slowest rate). Data is decoded off the source's buffer as `Bytes`
//! without copying, handed to the body filters (only when the chain has some), and queued on
//! the destination with chunk framing when the output is chunked. Before the pump reads more
//! it flushes what is queued, so a slow source never holds back bytes already received.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwall_runtime::Stream;

use super::context::RequestContext;
use super::error::ProxyError;
use super::phases::{client_failure, client_send_failure, upstream_failure, Progress};
use super::splice::{splice_body, Pipes, SpliceLimits, SPLICE_MIN};
use super::transport::{Conn, IoFailure, ReadSize};
use crate::filters::FilterChain;
use crate::http1::{
    write_chunk_end, write_chunk_header, write_last_chunk, BodyDecoder, CodecError, Decoded,
    OutFraming,
};

/// A request body is not held to the minimum rate during its first seconds.
const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Which body is pumped, and so who is to blame when something fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → origin.
    Request,
    /// Origin → client.
    Response,
}

impl Direction {
    pub(super) fn framing_error(self, error: CodecError) -> ProxyError {
        match self {
            Direction::Request => ProxyError::BadRequestBody(error),
            Direction::Response => ProxyError::UpstreamInvalid(error),
        }
    }

    pub(super) fn read_failure(self, failure: IoFailure) -> ProxyError {
        match self {
            Direction::Request => client_failure(failure, ProxyError::BodyTimeout),
            Direction::Response => upstream_failure(failure),
        }
    }

    pub(super) fn write_failure(self, failure: IoFailure) -> ProxyError {
        match self {
            Direction::Request => upstream_failure(failure),
            Direction::Response => client_send_failure(failure),
        }
    }
}

/// One body's way through the pump.
pub struct Leg {
    pub direction: Direction,
    pub decoder: BodyDecoder,
    /// How the body is framed on the way out.
    pub framing: OutFraming,
    /// The longest wait for the next bytes from the source.
    pub read_timeout: Duration,
    /// The longest a write to the destination may take.
    pub write_timeout: Duration,
    /// Largest body accepted (413); requests only.
    pub max_body: Option<u64>,
    /// Least average rate after a grace period (408), 0 for none; requests only.
    pub min_rate: u64,
}

/// How a pumped body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// At the end its framing gave.
    Complete,
    /// The source closed the connection: the end of a close-delimited body. The connection
    /// cannot be reused.
    SourceClosed,
}

/// Pumps one body from `src` to `dst`; see the module doc.
pub async fn pump<R: Stream, W: Stream>(
    src: &mut Conn<R>,
    dst: &mut Conn<W>,
    mut leg: Leg,
    filters: &FilterChain,
    pipes: &Pipes,
    ctx: &mut RequestContext,
    progress: &mut Progress,
) -> Result<BodyEnd, ProxyError> {
    let direction = leg.direction;
    let body_filters = match direction {
        Direction::Request => filters.filters_request_body(),
        Direction::Response => filters.filters_response_body(ctx),
    };
    // Nothing needs to see the bytes of a body that keeps its length: the rest of a large
    // one may go from socket to socket (`splice.rs`).
    // Nor one the cache is gathering.
    let mut splice =
        !body_filters && ctx.fill.is_none() && matches!(leg.framing, OutFraming::Length(_));
    let mut received: u64 = 0;
    let mut trailers: Option<Bytes> = None;
    let started = Instant::now();
    let end = loop {
        match leg
            .decoder
            .decode(&mut src.buf)
            .map_err(|e| direction.framing_error(e))?
        {
            Decoded::Data(data) => {
                received += data.len() as u64;
                if leg.max_body.is_some_and(|max| received > max) {
                    return Err(ProxyError::BodyTooLarge);
                }
                if direction == Direction::Response {
                    if let Some(fill) = &mut ctx.fill {
                        fill.push(&data);
                    }
                }
                let mut chunk = Some(data);
                if body_filters {
                    filter(filters, direction, &mut chunk, false, ctx);
                }
                if let Some(large) = stage(dst, &leg, chunk, ctx, progress) {
                    send_large(dst, &leg, large).await?;
                }
            }
            Decoded::Trailers(fields) => trailers = Some(fields),
            Decoded::End => break BodyEnd::Complete,
            Decoded::NeedMore => {
                if direction == Direction::Response {
                    progress.response_started = true;
                }
                dst.flush(leg.write_timeout)
                    .await
                    .map_err(|f| direction.write_failure(f))?;
                if direction == Direction::Request {
                    too_slow(leg.min_rate, received, started)?;
                }
                let large = leg.decoder.remaining_length().filter(|&n| n >= SPLICE_MIN);
                if let (true, Some(left)) = (splice, large) {
                    let (min_rate, before) = (leg.min_rate, received);
                    let limits = SpliceLimits {
                        direction,
                        read_timeout: leg.read_timeout,
                        write_timeout: leg.write_timeout,
                        check: |moved| match direction {
                            Direction::Request => too_slow(min_rate, before + moved, started),
                            Direction::Response => Ok(()),
                        },
                    };
                    match splice_body(pipes, src, dst, left, limits).await {
                        Some(moved) => {
                            moved?;
                            leg.decoder.skip(left);
                            received += left;
                            count(direction, left, ctx, progress);
                            continue;
                        }
                        // Not TCP both ways, or no pipe to be had: copy.
                        None => splice = false,
                    }
                }
                match src.read(leg.read_timeout, ReadSize::Body).await {
                    Ok(_) => {}
                    Err(IoFailure::Closed) => match leg.decoder.eof() {
                        Ok(_) => break BodyEnd::SourceClosed,
                        Err(_) => return Err(direction.read_failure(IoFailure::Closed)),
                    },
                    Err(other) => return Err(direction.read_failure(other)),
                }
            }
        }
    };
    if body_filters {
        let mut last = None;
        filter(filters, direction, &mut last, true, ctx);
        if let Some(large) = stage(dst, &leg, last, ctx, progress) {
            send_large(dst, &leg, large).await?;
        }
    }
    if leg.framing == OutFraming::Chunked {
        // Trailers pass when the body goes out chunked; a body re-framed for an HTTP/1.0 client
        // loses them (RFC 9112 §7.1.2).
        write_last_chunk(trailers.as_deref(), dst.out.buf());
    }
    match direction {
        Direction::Request => progress.request_done = true,
        Direction::Response => progress.response_started = true,
    }
    dst.flush(leg.write_timeout)
        .await
        .map_err(|f| direction.write_failure(f))?;
    Ok(end)
}

fn filter(
    filters: &FilterChain,
    direction: Direction,
    chunk: &mut Option<Bytes>,
    end: bool,
    ctx: &mut RequestContext,
) {
    match direction {
        Direction::Request => filters.request_body_filter(chunk, end, ctx),
        Direction::Response => filters.response_body_filter(chunk, end, ctx),
    }
}

/// Queues one piece on the destination, framed. A small piece is copied into the write queue
/// (with its chunk framing) and `None` returned; a large one is returned after its chunk
/// header, for [`send_large`] to write.
fn stage<W: Stream>(
    dst: &mut Conn<W>,
    leg: &Leg,
    chunk: Option<Bytes>,
    ctx: &mut RequestContext,
    progress: &mut Progress,
) -> Option<Bytes> {
    let data = chunk.filter(|d| !d.is_empty())?;
    count(leg.direction, data.len() as u64, ctx, progress);
    let chunked = leg.framing == OutFraming::Chunked;
    if chunked {
        write_chunk_header(data.len(), dst.out.buf());
    }
    let large = dst.out.queue_small(data);
    if chunked && large.is_none() {
        write_chunk_end(dst.out.buf());
    }
    large
}

/// Counts `n` body bytes as moved: received from the client, or sent to it (and then the
/// response has started).
fn count(direction: Direction, n: u64, ctx: &mut RequestContext, progress: &mut Progress) {
    match direction {
        Direction::Request => ctx.bytes_received += n,
        Direction::Response => {
            ctx.bytes_sent += n;
            progress.response_started = true;
        }
    }
}

/// Writes a piece [`stage`] gave back, after what is queued, and closes its chunk.
async fn send_large<W: Stream>(
    dst: &mut Conn<W>,
    leg: &Leg,
    data: Bytes,
) -> Result<(), ProxyError> {
    dst.push(data, leg.write_timeout)
        .await
        .map_err(|f| leg.direction.write_failure(f))?;
    if leg.framing == OutFraming::Chunked {
        write_chunk_end(dst.out.buf());
    }
    Ok(())
}

/// The slow-body check: after the grace period, a body must have averaged `min_rate` bytes
/// per second since it began (0 turns the check off).
fn too_slow(min_rate: u64, received: u64, started: Instant) -> Result<(), ProxyError> {
    let elapsed = started.elapsed();
    if min_rate == 0 || elapsed < BODY_RATE_GRACE {
        return Ok(());
    }
    let expected = u128::from(min_rate) * elapsed.as_millis() / 1000;
    if u128::from(received) < expected {
        return Err(ProxyError::BodyTooSlow);
    }
    Ok(())
}
