//! Every way a proxied exchange can fail, and the one place that maps each to a status.
//!
//! An error says which side failed (the client, the origin, or ringwall itself) and so who is
//! to blame in the logs; [`ProxyError::status`] is the only mapping from failure to HTTP status
//! and [`ProxyError::response`] makes the response for it. Errors with no status (the client
//! went away) close the connection without a response.

use std::io;

use crate::http1::{CodecError, LocalResponse};

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
    #[error("plain HTTP sent to a TLS listener")]
    PlainHttpToTls,
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
    #[error("TLS with upstream {addr} failed: {reason}")]
    UpstreamTls {
        addr: std::net::SocketAddr,
        reason: String,
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
    #[error("no server of upstream group {0:?} takes requests (all down or ejected)")]
    NoHealthyServer(std::sync::Arc<str>),
    #[error("upstream group {0:?} is at its circuit breaker's limits")]
    Overflow(std::sync::Arc<str>),
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("only-if-cached, and nothing fresh is stored")]
    NotCached,
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
            | ProxyError::PlainHttpToTls
            | ProxyError::BodyTooLarge
            | ProxyError::ClientClosed
            | ProxyError::ClientIo(_)
            | ProxyError::ClientSendTimeout => Side::Downstream,
            ProxyError::NoRoute | ProxyError::Internal(_) | ProxyError::NotCached => Side::Internal,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::UpstreamConnectTimeout(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamInvalid(_)
            | ProxyError::UpstreamUnsupported(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::NoHealthyServer(_)
            | ProxyError::Overflow(_) => Side::Upstream,
        }
    }

    /// The status to answer with, or `None` when the client can no longer be answered.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ProxyError::BadRequest(e) => e.status(),
            ProxyError::BadRequestBody(_) | ProxyError::PlainHttpToTls => 400,
            ProxyError::HeaderTimeout | ProxyError::BodyTimeout | ProxyError::BodyTooSlow => 408,
            ProxyError::TooManyConnections => 429,
            ProxyError::BodyTooLarge => 413,
            ProxyError::NoRoute => 404,
            ProxyError::Internal(_) => 500,
            ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamInvalid(_)
            | ProxyError::UpstreamUnsupported(_)
            | ProxyError::UpstreamIo(_) => 502,
            ProxyError::UpstreamConnectTimeout(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::NotCached => 504,
            ProxyError::NoHealthyServer(_) | ProxyError::Overflow(_) => 503,
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
            ProxyError::UpstreamConnect { .. }
                | ProxyError::UpstreamTls { .. }
                | ProxyError::UpstreamConnectTimeout(_)
        )
    }

    /// The response for this error, or `None` when the client can no longer be answered.
    pub fn response(&self) -> Option<LocalResponse> {
        if let ProxyError::PlainHttpToTls = self {
            // nginx's words, which clients and people already know.
            return Some(LocalResponse::text(
                400,
                "The plain HTTP request was sent to HTTPS port\n",
            ));
        }
        if let ProxyError::Overflow(group) = self {
            return Some(LocalResponse::text(
                503,
                format!("Upstream group \"{group}\" is at its limits: try again later\n"),
            ));
        }
        if let ProxyError::NoHealthyServer(group) = self {
            return Some(LocalResponse::text(
                503,
                format!("No server of upstream group \"{group}\" is available\n"),
            ));
        }
        self.status().map(LocalResponse::status_page)
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
    fn an_unsupported_transfer_coding_is_501() {
        assert_eq!(
            ProxyError::BadRequest(CodecError::UnsupportedCoding).status(),
            Some(501)
        );
        assert_eq!(ProxyError::Internal("x").status(), Some(500));
    }

    #[test]
    fn the_response_says_the_reason() {
        let response = ProxyError::NoRoute.response().unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(&response.body[..], b"Not Found\n");
        assert!(ProxyError::ClientClosed.response().is_none());
    }
}
