//! Tests of the `bookbag-billing` binary as users run it: configuration,
//! the README's walk-through against a real `serve`, the audit commands'
//! exit codes, and the compose file.

mod bench;
mod compose;
mod config;
mod helpers;
mod serve;
