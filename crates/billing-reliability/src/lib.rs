//! # billing-reliability
//!
//! Test-only helpers shared by the reliability suites (this crate is never
//! published and nothing of the product depends on it):
//!
//! - [`scale`]: the default (light) and `BILLING_CI_LONG=1` (heavy) sizes of
//!   every suite, and the figures file a run writes for docs/reliability.md.
//! - [`postgres`]: a throw-away Postgres cluster of a test's own (initdb on a
//!   free port), that a test may stop and start; never the shared one.
//! - [`nats`]: a nats-server of a test's own, and a unique stream on any
//!   server that a test reads back.
//! - [`serve`]: a `bookbag-billing serve` child process a test can SIGKILL
//!   and restart on the same database.
//! - [`load`]: the careful client: concurrent replies, grants and key changes
//!   that retry with the same ids after a crash or an outage, and a journal of
//!   every first definite answer.
//! - [`books`]: the books check: every acknowledged reply in the events
//!   exactly once, nothing refused stored, balance = grants - charges.
//! - [`secrets`]: the sweep for plaintext keys and tokens, and [`dump`]: the
//!   text of every table of a database.
//!
//! The suites themselves are test binaries of the crates they drive:
//! `crates/bookbag-billing/tests/reliability/` (the real binary: crashes,
//! outages, logs) and `crates/billing-http/tests/hostile/` (the router in
//! process: fuzzing, the tenancy matrix). See docs/reliability.md.

pub mod books;
pub mod dump;
pub mod load;
pub mod nats;
pub mod postgres;
pub mod scale;
pub mod secrets;
pub mod serve;

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
