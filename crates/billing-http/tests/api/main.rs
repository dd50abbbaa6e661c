//! Integration tests of the HTTP API: the real router on a real socket,
//! over the real SQLite file and the real Postgres of this machine. Every
//! test runs on both backends.

mod helpers;

mod auth;
mod billing_mode;
mod credits;
mod input;
mod keys;
mod members;
mod ops;
mod read_your_writes;
mod replies;
mod restart;
mod rules;
mod secrets;
mod statement;
mod workspaces;
