//! The one error type of the HTTP/1 codec.
//!
//! Every way a head or a body can be rejected is a variant of [`CodecError`]. Each variant names
//! what was wrong with the bytes, not what to do about it: the request path owns the mapping to
//! an HTTP status (and to "close the connection" or "fail the upstream"), and the doc comment of
//! each variant says which status the variant is meant for when the bytes came from a client.
//! When the bytes came from an upstream, every variant means the origin misbehaved (502).

use thiserror::Error;

/// Why the codec refused a message. Cheap to copy; the payload strings are static and short.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// The start line or a field line breaks the HTTP/1.1 grammar, or a request's `Host` is
    /// missing, repeated or invalid. For a request: 400 Bad Request.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The request-target is longer than `HeadLimits::max_uri`. For a request: 414 URI Too Long.
    #[error("request-target too long")]
    UriTooLong,
    /// The head is longer than `HeadLimits::max_head`. For a request: 431 Request Header Fields
    /// Too Large.
    #[error("message head too large")]
    HeadTooLarge,
    /// The head has more field lines than `HeadLimits::max_headers`. For a request: 431.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The message claims an HTTP version other than 1.0 or 1.1. For a request: 505 HTTP Version
    /// Not Supported.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// The body framing is ambiguous or unsupported: `Content-Length` and `Transfer-Encoding`
    /// together, an invalid or conflicting `Content-Length`, or a `Transfer-Encoding` that is not
    /// exactly `chunked` on HTTP/1.1. For a request: 400 (then close: the framing is unknown).
    #[error("bad message framing: {0}")]
    BadFraming(&'static str),
    /// A request names a transfer-coding ringwall does not implement before its final
    /// `chunked` (`gzip, chunked`). For a request: 501 Not Implemented (RFC 9112 §6.1), then
    /// close.
    #[error("unsupported transfer-coding")]
    UnsupportedCoding,
    /// A request carries an `Expect` other than `100-continue`. For a request: 417 Expectation
    /// Failed.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// The chunked body coding is broken (size line, extensions, CRLF after data, trailers).
    /// For a request body: 400, then close.
    #[error("bad chunked body: {0}")]
    BadChunk(&'static str),
    /// The peer closed the connection before the body was complete. No response can be sent on
    /// that connection; for an upstream it means a truncated response (502 if nothing was sent
    /// yet, otherwise abort the client connection).
    #[error("connection closed before the body ended")]
    Truncated,
}

impl CodecError {
    /// The status this error calls for when the bytes came from a client, as documented on
    /// each variant. (`Truncated` says 400, but a client that closed cannot be answered.)
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::BadFraming(_) | Self::BadChunk(_) | Self::Truncated => 400,
            Self::UriTooLong => 414,
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedVersion => 505,
            Self::ExpectationFailed => 417,
            Self::UnsupportedCoding => 501,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CodecError;

    #[test]
    fn each_error_maps_to_one_client_status() {
        let cases = [
            (CodecError::Malformed("x"), 400),
            (CodecError::BadFraming("x"), 400),
            (CodecError::BadChunk("x"), 400),
            (CodecError::UriTooLong, 414),
            (CodecError::HeadTooLarge, 431),
            (CodecError::TooManyHeaders, 431),
            (CodecError::UnsupportedVersion, 505),
            (CodecError::ExpectationFailed, 417),
            (CodecError::UnsupportedCoding, 501),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
        }
    }

    #[test]
    fn messages_say_what_was_wrong() {
        assert_eq!(
            CodecError::Malformed("duplicate Host").to_string(),
            "malformed message: duplicate Host"
        );
        assert_eq!(
            CodecError::BadChunk("invalid chunk size").to_string(),
            "bad chunked body: invalid chunk size"
        );
        assert_eq!(
            CodecError::Truncated.to_string(),
            "connection closed before the body ended"
        );
    }
}
