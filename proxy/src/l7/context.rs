//! The state one request carries through the phases, and only while it is in flight.
//!
//! A [`RequestContext`] is made when a request head has been read and dropped when its
//! exchange ends; filters read and write it (the real client address, the request id), the
//! phases fill in what happened (route, chosen server, attempts, timings, status, bytes), and
//! the logging phase sees the whole of it.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// What is known about one request in flight.
pub struct RequestContext {
    /// Which listener accepted the connection (index into the configuration's listeners).
    pub listener: usize,
    /// `http` or `https`, from the listener's kind.
    pub scheme: &'static str,
    /// The peer connected to ringwall.
    pub remote_addr: SocketAddr,
    /// The client: the peer, or the address a trusted proxy in front forwarded for.
    pub client_ip: IpAddr,
    /// The matched route's name, once routed.
    pub route: Option<Rc<str>>,
    /// The request id, when the route passes request ids on.
    pub request_id: Option<Bytes>,
    /// The upstream server the request went to (the last one tried).
    pub upstream_addr: Option<SocketAddr>,
    /// The upstream server (its index in the worker's generation) the request went to last.
    pub server: Option<usize>,
    /// Servers tried (a refused connection moves on to the next server).
    pub attempts: u32,
    /// When the request head was complete.
    pub started: Instant,
    /// From the request head to the origin's response head (connecting and sending included).
    pub upstream_time: Option<Duration>,
    /// From `started` to the end of the response, once the request is done (one clock read
    /// for the counters and the access log).
    pub duration: Option<Duration>,
    /// The status sent to the client (0 until one is).
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// The TLS version and SNI, on TLS listeners.
    pub tls: Option<ringwall_runtime::TlsInfo>,
    /// What the gateway's policies noted; `None` until one does (most requests), so that
    /// the context stays small.
    pub notes: Option<Box<PolicyNotes>>,
    /// Who the request comes from, once authenticated (here, not in `notes`: an authenticated
    /// request needs no allocation for it).
    pub consumer: Option<std::sync::Arc<crate::auth::ConsumerInfo>>,
    /// The compressor of a response being compressed (the `compress` filter's), which the
    /// route's body filters end with.
    pub encoder: Option<Box<crate::filters::Encoder>>,
    /// A response being gathered for the cache as it goes to the client.
    pub fill: Option<Box<crate::cache::Fill>>,
}

/// What the gateway's policies note about one request.
#[derive(Default)]
pub struct PolicyNotes {
    /// Places held under concurrency limits, given back when the context goes.
    pub held: Vec<crate::filters::Held>,
    /// For the `RateLimit` fields of the response: the lowest remaining quota of the limits
    /// that send them, that limit's `RateLimit-Policy` and `RateLimit` values.
    pub rate_limit: Option<(u64, Bytes, Bytes)>,
    /// Why a policy refused the request (`auth`, `rate`, `quota`), for the counters.
    pub rejected: Option<&'static str>,
}

impl RequestContext {
    /// Marks the request done; returns how long it took.
    pub fn finish(&mut self) -> Duration {
        let took = self.started.elapsed();
        self.duration = Some(took);
        took
    }

    pub fn new(listener: usize, scheme: &'static str, remote_addr: SocketAddr) -> Self {
        Self {
            listener,
            scheme,
            remote_addr,
            client_ip: remote_addr.ip(),
            route: None,
            request_id: None,
            upstream_addr: None,
            server: None,
            attempts: 0,
            started: Instant::now(),
            upstream_time: None,
            duration: None,
            status: 0,
            bytes_received: 0,
            bytes_sent: 0,
            tls: None,
            notes: None,
            consumer: None,
            encoder: None,
            fill: None,
        }
    }

    /// The policies' notes, made on first use.
    pub fn notes(&mut self) -> &mut PolicyNotes {
        self.notes.get_or_insert_with(Box::default)
    }
}
