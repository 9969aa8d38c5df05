//! The end-to-end harness: the real `ringwall` binary on loopback, scripted origin servers and
//! a raw-socket client that reports exactly what came back.
//!
//! [`Proxy`] starts the binary (from flags or a TOML file), waits for its `listening on` log
//! line and kills it when dropped. [`Origin`] is an HTTP/1.1 server on `std::net`, one thread
//! per connection, that counts the connections and requests it accepts and answers through a
//! handler the test supplies ([`echo`] sends back the request head it received); a
//! [`RawOrigin`] hands its connections, unread, to the test for failures below HTTP (resets,
//! garbage, stalls). [`Client`] writes raw bytes and parses what comes back into a
//! [`Response`]. Both sides read through [`Wire`]. Every socket has read and write timeouts and
//! every wait has a deadline, so a proxy that hangs fails a test instead of stalling the suite.
//! [`Proxy::open_fds`] counts the proxy's open descriptors, for the tests that look for leaks.
//!
//! The harness is split by job, and everything is re-exported here, so a test names no file:
//! `use common::{...}`. Module `wire` is the client side and the HTTP/1.1 reading both sides share
//! ([`Wire`], [`Head`], [`Client`], [`Response`], [`get`]); module `origins` holds the servers
//! behind the proxy ([`Origin`], [`echo`], [`RawOrigin`]) and raw-socket helpers ([`read_through`],
//! [`wait_peer_close`], [`closed_port`]); module `process` runs ringwall and watches it ([`Proxy`],
//! [`run_ringwall`], [`open_fds`], [`RssSampler`], [`wait_until`], [`ureq_agent`]).

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

mod origins;
mod process;
mod prometheus;
mod tls;
mod wire;

// Each test binary uses a part of these; the others are unused there.
#[allow(unused_imports)]
pub use origins::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use prometheus::*;
#[allow(unused_imports)]
pub use tls::*;
#[allow(unused_imports)]
pub use wire::*;
