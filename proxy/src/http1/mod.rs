//! The HTTP/1.x codec: turns connection bytes into message heads and body pieces, and writes
//! chunked framing back out.
//!
//! Bytes enter as a `BytesMut` the engine read into. [`parse_request`] / [`parse_response`]
//! split a complete head off its front and return a [`RequestHead`] / [`ResponseHead`] that
//! holds the frozen head bytes plus spans into them (modules `request` and `response`, around
//! one field pass shared by both roles). The head's [`BodyKind`] then builds a [`BodyDecoder`]
//! (module `body`), which hands the body out as `Bytes` split off the same buffer, without
//! copying, and stops at the body's end so pipelined requests stay in the buffer. Bodies leave
//! through the `write_*` helpers when they are re-framed as chunked. Heads leave through module
//! `encode`, which applies the [`HeadOverlay`] of edits that filters made; module `path`
//! normalizes request paths before routing. Every rejection is a [`CodecError`] (module
//! `error`) whose variant tells the request path which status to answer with.
//!
//! The codec is strict where a lenient reading could make the proxy and the origin disagree on
//! where a message ends (RFC 9112 §6.3, §11.2): one unambiguous framing per message, CRLF line
//! endings only, validated chunk framing, bounded everything.
//!
//! The files, by job:
//! - `head`: what both head parsers share: [`HeadLimits`], [`Version`], [`BodyKind`] and the
//!   steps around `httparse` (empty lines before the start line, header slots, its errors).
//! - `request`: [`parse_request`], [`RequestHead`] and [`Method`].
//! - `response`: [`parse_response`] and [`ResponseHead`].
//! - `target`: the request-target forms and the authority checks, for the target and `Host`.
//! - `fields`: the field pass: framing, `Connection`, what may be forwarded ([`is_hop_by_hop`]).
//! - `chars`: the byte tables of the grammar and `Span`, the byte range heads are indexed by.
//! - `body`: [`BodyDecoder`] and the chunked `write_*` helpers.
//! - `encode`: the heads ringwall writes, with the filters' [`HeadOverlay`] applied, and its
//!   own responses ([`LocalResponse`]).
//! - `path`: [`normalize_path`], the path's one form for routing and forwarding.
//! - `error`: [`CodecError`].
//! - `test_shortcuts` (tests only): the parse-and-unwrap helpers the head tests share.

mod body;
mod chars;
mod encode;
mod error;
mod fields;
mod head;
mod path;
mod request;
mod response;
mod target;
#[cfg(test)]
mod test_shortcuts;

pub use body::{write_chunk_end, write_chunk_header, write_last_chunk, BodyDecoder, Decoded};
pub use encode::{
    http_date, put_decimal, put_ip, put_origin_form, reason_phrase, write_local_response,
    write_request_head, write_response_head, Civil, FieldName, HeadOverlay, LocalResponse,
    OutFraming, RequestFraming, MONTHS,
};
pub use error::CodecError;
pub use fields::is_hop_by_hop;
pub use head::{BodyKind, HeadLimits, Version};
pub use path::{normalize_path, EscapedSlashes, PathOptions};
pub use request::{parse_request, Method, RequestHead};
pub use response::{parse_response, ResponseHead};
