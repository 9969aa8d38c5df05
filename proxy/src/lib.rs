//! ringwall: a thread-per-core HTTP/1.1 reverse proxy on io_uring.
//!
//! The crate is the product: the HTTP/1 codec (`http1`), the request path (`l7`), the
//! features that plug into it (`filters`), the configuration (`config`, `cli`) and the built-in demo origins (`demo`). Bytes enter through
//! the engine in `ringwall-runtime`, become requests in `http1`, are routed and forwarded in
//! `l7`, and leave again through the engine.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cache_disk;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod filters;
pub mod http1;
pub mod l4;
pub mod l7;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod upgrade;
pub mod worker;
