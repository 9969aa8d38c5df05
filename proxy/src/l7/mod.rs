//! The L7 request path: routing, upstream pools, and forwarding of HTTP/1.1 exchanges.
//!
//! Each worker builds one [`Worker`] from the configuration: its route table, its upstream
//! pools and its limits. Every connection the engine accepts on that worker is served by
//! [`serve`] (the phases are in `phases.rs`), which only ever touches that worker's state.

mod client_limit;
mod error;
mod forward;
mod phases;
mod router;
mod transport;
mod upstream;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use ringwall_runtime::Drain;

pub use client_limit::{ClientLimit, ClientSlot};
pub use error::{ProxyError, Side};
pub use phases::serve;
pub use router::{RouteEntry, RouteQuery, RouteTable};
pub use transport::{read_some, ReadSize};
pub use upstream::Upstreams;

use crate::config::{Config, Limits, Timeouts};
use crate::http1::HeadLimits;

/// One worker's view of the proxy: everything the request path reads, owned by that worker.
pub struct Worker {
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub request_limits: HeadLimits,
    pub response_limits: HeadLimits,
    pub routes: RouteTable,
    pub upstreams: Upstreams,
    pub drain: Drain,
    /// Open connections per client address, shared by all workers; `None` when unlimited.
    pub client_limit: Option<Arc<ClientLimit>>,
}

impl Worker {
    pub fn new(
        config: &Config,
        worker_id: usize,
        drain: Drain,
        client_limit: Option<Arc<ClientLimit>>,
    ) -> Self {
        let limits = config.limits.clone();
        Self {
            timeouts: config.timeouts.clone(),
            request_limits: HeadLimits {
                max_head: limits.max_request_head,
                max_headers: limits.max_headers,
                max_uri: limits.max_uri,
            },
            response_limits: HeadLimits {
                max_head: limits.max_response_head,
                max_headers: limits.max_headers,
                max_uri: limits.max_uri,
            },
            limits,
            routes: RouteTable::new(&config.routes),
            upstreams: Upstreams::new(config, worker_id),
            drain,
            client_limit,
        }
    }

    /// Runs on the worker until it drains: closes idle upstream connections past their idle
    /// timeout, and all of them when the worker drains.
    pub async fn sweep_idle_upstreams(self: Rc<Self>) {
        let interval = self.upstreams.sweep_interval();
        loop {
            monoio::select! {
                () = monoio::time::sleep(interval) => self.upstreams.sweep(Instant::now()),
                () = self.drain.wait() => break,
            }
        }
        self.upstreams.close_idle();
    }
}
