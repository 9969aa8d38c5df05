//! The HTTP/1.x codec: turns connection bytes into message heads and body pieces, and writes
//! chunked framing back out.
//!
//! Bytes enter as a `BytesMut` the engine read into. [`parse_request`] / [`parse_response`]
//! split a complete head off its front and return a [`RequestHead`] / [`ResponseHead`] that
//! holds the frozen head bytes plus spans into them (module `head`, one field pass shared by
//! both roles). The head's [`BodyKind`] then builds a [`BodyDecoder`] (module `body`), which
//! hands the body out as `Bytes` split off the same buffer, without copying, and stops at the
//! body's end so pipelined requests stay in the buffer. Bodies leave through the `write_*`
//! helpers when they are re-framed as chunked. Every rejection is a [`CodecError`] (module
//! `error`) whose variant tells the request path which status to answer with.
//!
//! The codec is strict where a lenient reading could make the proxy and the origin disagree on
//! where a message ends (RFC 9112 §6.3, §11.2): one unambiguous framing per message, CRLF line
//! endings only, validated chunk framing, bounded everything.

mod body;
mod error;
mod head;

pub use body::{write_chunk_end, write_chunk_header, write_last_chunk, BodyDecoder, Decoded};
pub use error::CodecError;
pub use head::{
    is_hop_by_hop, parse_request, parse_response, BodyKind, HeadLimits, Method, RequestHead,
    ResponseHead, Version,
};
