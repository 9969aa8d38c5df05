//! ringwall-load: a wrk-style HTTP/1.1 load generator, and the harness that compares ringwall
//! with nginx and HAProxy on one machine.
//!
//! [`run`] takes [`LoadOptions`] (URL, connections, threads, duration, closed loop or a fixed
//! `rate`, pipelining, keep-alive, TLS, processes to watch) and returns a [`LoadReport`]. Data
//! flows: `options` → `request` renders the request bytes once → `engine` starts one monoio
//! runtime per thread → `connection` drives each client connection, reading responses with the
//! `response` parser and pacing sends with the `pacing` schedule → counts and `latency`
//! histograms merge into the `report`, next to the CPU and RSS that `process_usage` read from
//! `/proc`. The binary (`main.rs`, `cli.rs`) is a thin shell over this.
#![forbid(unsafe_code)]
// Counts and durations become f64 for rates, ratios and percentages; none nears 2^52.
#![allow(clippy::cast_precision_loss)]
// The f64 -> integer casts are of non-negative, rounded measurements.
#![allow(clippy::cast_sign_loss)]

pub mod cli;
pub mod compare;
mod connection;
mod engine;
pub mod latency;
pub mod options;
pub mod pacing;
pub mod process_usage;
pub mod report;
pub mod request;
pub mod response;
pub mod target;
pub mod tls;

pub use engine::run;
pub use options::{IoDriver, LoadOptions};
pub use report::LoadReport;
