//! Integration tests of the engine against the real SQLite file and the
//! real Postgres of this machine. Every test runs on both backends.

mod audit;
mod concurrency;
mod defects;
mod helpers;
mod idempotency;
mod lifecycle;
mod plans;
mod recovery;
mod sequences;
mod tables;
