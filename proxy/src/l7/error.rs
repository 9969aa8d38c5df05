//! Every way a proxied exchange can fail, and the one place that maps each to a status.
//!
//! An error says which side failed (the client, the origin, or ringwall itself) and so who is
//! to blame in the logs; [`ProxyError::status`] is the only mapping from failure to HTTP status
//! and [`ProxyError::response`] renders it. Errors with no status (the client went away) close
//! the connection without a response.

use std::io;

use crate::http1::CodecError;

/// Which side of the proxy an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("malformed request: {0}")]
    BadRequest(CodecError),
    #[error("request body malformed: {0}")]
    BadRequestBody(CodecError),
    #[error("request head not received in time")]
    HeaderTimeout,
    #[error("request body stalled")]
    BodyTimeout,
    #[error("request body arrives slower than the minimum rate")]
    BodyTooSlow,
    #[error("too many connections from this client address")]
    TooManyConnections,
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("client closed the connection mid-request")]
    ClientClosed,
    #[error("client i/o: {0}")]
    ClientIo(io::Error),
    #[error("client did not read the response in time")]
    ClientSendTimeout,
    #[error("no route for this request")]
    NoRoute,
    #[error("cannot connect to upstream {addr}: {source}")]
    UpstreamConnect {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("upstream {0} did not accept the connection in time")]
    UpstreamConnectTimeout(std::net::SocketAddr),
    #[error("upstream did not respond in time")]
    UpstreamTimeout,
    #[error("upstream closed the connection before the response was complete")]
    UpstreamClosed,
    #[error("invalid response from upstream: {0}")]
    UpstreamInvalid(CodecError),
    #[error("upstream sent an unsupported response: {0}")]
    UpstreamUnsupported(&'static str),
    #[error("upstream i/o: {0}")]
    UpstreamIo(io::Error),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BadRequestBody(_)
            | ProxyError::HeaderTimeout
            | ProxyError::BodyTimeout
            | ProxyError::BodyTooSlow
            | ProxyError::TooManyConnections
            | ProxyError::BodyTooLarge
            | ProxyError::ClientClosed
            | ProxyError::ClientIo(_)
            | ProxyError::ClientSendTimeout => Side::Downstream,
            ProxyError::NoRoute => Side::Internal,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamConnectTimeout(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamInvalid(_)
            | ProxyError::UpstreamUnsupported(_)
            | ProxyError::UpstreamIo(_) => Side::Upstream,
        }
    }

    /// The status to answer with, or `None` when the client can no longer be answered.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ProxyError::BadRequest(e) => e.status(),
            ProxyError::BadRequestBody(_) => 400,
            ProxyError::HeaderTimeout | ProxyError::BodyTimeout | ProxyError::BodyTooSlow => 408,
            ProxyError::TooManyConnections => 429,
            ProxyError::BodyTooLarge => 413,
            ProxyError::NoRoute => 404,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamInvalid(_)
            | ProxyError::UpstreamUnsupported(_)
            | ProxyError::UpstreamIo(_) => 502,
            ProxyError::UpstreamConnectTimeout(_) | ProxyError::UpstreamTimeout => 504,
            ProxyError::ClientClosed | ProxyError::ClientIo(_) | ProxyError::ClientSendTimeout => {
                return None
            }
        })
    }

    /// Whether the request may be sent again to an origin: only when no byte of it can have
    /// been acted on (the connection was never made).
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamConnectTimeout(_)
        )
    }

    /// The complete response for this error, closing the connection when `close` is set.
    pub fn response(&self, close: bool) -> Option<Vec<u8>> {
        let status = self.status()?;
        let reason = reason_phrase(status);
        let connection = if close { "close" } else { "keep-alive" };
        Some(
            format!(
                "HTTP/1.1 {status} {reason}\r\nServer: ringwall\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n{reason}\n",
                len = reason.len() + 1
            )
            .into_bytes(),
        )
    }
}

/// The reason phrase ringwall writes for the statuses it generates itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_one_status() {
        assert_eq!(ProxyError::NoRoute.status(), Some(404));
        assert_eq!(ProxyError::HeaderTimeout.status(), Some(408));
        assert_eq!(ProxyError::BodyTooLarge.status(), Some(413));
        assert_eq!(ProxyError::UpstreamTimeout.status(), Some(504));
        assert_eq!(ProxyError::UpstreamClosed.status(), Some(502));
        assert_eq!(ProxyError::ClientClosed.status(), None);
    }

    #[test]
    fn response_is_complete_http() {
        let r = String::from_utf8(ProxyError::NoRoute.response(false).unwrap()).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 10\r\n"));
        assert!(r.ends_with("\r\n\r\nNot Found\n"));
    }
}
