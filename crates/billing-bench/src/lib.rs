//! # billing-bench
//!
//! The scenarios of `bookbag-billing bench` (see docs/performance.md). Each
//! runs against a database of its own, created for it on this machine's
//! Postgres (or a temporary SQLite file) and dropped afterwards, and ends
//! with the correctness checks: every acknowledged reply is in the log
//! exactly once, and balance == granted - charged >= 0.
//!
//! - [`load`]: closed- and open-loop load generators with latency figures.
//! - [`scenarios`]: the engine, out-of-the-box cqrs-es + postgres-es, the
//!   raw database, HTTP, long histories, memory and replay.
//! - [`pgstat`]: what a run cost the Postgres server (WAL, full pages,
//!   blocks read), from its statistics.
//! - [`report`]: the table, with every figure beside its baseline.

pub mod load;
pub mod pgstat;
pub mod report;
pub mod scenarios;

pub use report::{Report, Row};
pub use scenarios::{run, Options, Scenario};
