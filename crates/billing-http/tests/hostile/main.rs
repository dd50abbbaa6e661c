//! Hostile input against the real router on a real socket, over the real
//! SQLite file and the real Postgres of this machine:
//!
//! - [`fuzz`]: a proptest-driven HTTP fuzzer over every route (random
//!   methods, paths, headers, JSON bodies, huge numbers, deep nesting,
//!   invalid UTF-8, oversized bodies), with the database up and stopped;
//! - [`tenancy`]: every route x token x actor x workspace, generated from
//!   the route table and the OpenAPI document, expectations derived from
//!   the contract's rules;
//! - [`known_bugs`]: engine defects these suites found, each pinned by the
//!   test that failed before the fix.
//!
//! Every test ends with the secret sweep: answers, every log line of every
//! crate at every level, panic messages, and every table of the database.
//! `BILLING_CI_LONG=1` runs the heavy versions.

mod fuzz;
mod harness;
mod known_bugs;
mod routes;
mod tenancy;
