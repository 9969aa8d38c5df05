//! L4: TCP listeners that forward whole connections to an upstream group, and UDP listeners
//! that forward datagrams ([`serve_udp`]).
//!
//! A `tcp` listener forwards bytes as they are, spliced both ways through pipes (no copy into
//! user space), and may route TLS it does not terminate by the SNI of the `ClientHello`
//! ([`client_hello`]); a `tls` listener terminates TLS and forwards the plain bytes. Both use
//! the L7 side's upstream groups, balancing and dialing (`l7::Upstreams`): one place that
//! picks and connects. Either may send a PROXY protocol header to the origin, and every
//! listener kind may take one from trusted load balancers in front ([`proxy_protocol`]).

mod client_hello;
pub mod proxy_protocol;
mod tcp;
mod udp;

pub use client_hello::{peek_sni, Hello};
pub use proxy_protocol::ProxyVersion;
pub use tcp::{read_proxy_header, serve_tcp};
pub use udp::serve_udp;
