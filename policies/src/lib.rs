//! ringwall-policies: the decisions of the proxy as pure code, without I/O: the time and a
//! seeded random source are passed in, so every decision is tested exactly, with virtual time.
//!
//! - [`balance`]: choosing a server of a group (power of two choices, peak-EWMA, round robin,
//!   smooth weighted round robin, least connections, random) and the peak-EWMA estimate;
//! - [`health`]: active checks' rise and fall, passive ejection with its back-off, slow
//!   start;
//! - [`retry`]: the retry budget, and a limit's share per worker;
//! - [`ratelimit`]: token buckets, sliding windows and concurrency limits per key, kept per
//!   worker and reconciled between workers into one limit for the process;
//! - [`hash`]: consistent hashing (Maglev) with a hash that is the same on every worker and
//!   node.

pub mod balance;
pub mod hash;
pub mod health;
pub mod ratelimit;
pub mod retry;
