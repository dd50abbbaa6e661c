//! Reliability of the real binary: `bookbag-billing serve` SIGKILLed at
//! random moments under a load of concurrent replies and key changes, on
//! SQLite and on Postgres; a Postgres of the test's own stopped and started
//! under load; NATS stopped under load. After each: the books balance
//! (every acknowledged reply stored exactly once, nothing refused stored,
//! balance = grants - charges), `audit verify` passes, and no plaintext key
//! is in any table, log line, NATS message or answer.
//!
//! Light by default; `BILLING_CI_LONG=1` (`.ci/long`) runs the heavy
//! versions. The figures of a run go to `BILLING_RELIABILITY_FIGURES`
//! when set (docs/reliability.md). The helpers shared with the hostile-input
//! suite are in `crates/billing-reliability`.

mod crash;
mod helpers;
mod outage;
mod rotation;
