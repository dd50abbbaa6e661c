//! # billing-engine
//!
//! Storage, projections and the engine API of bookbag-billing, over SQLite
//! (the embedded default) or Postgres. It sits between the pure domain
//! (`billing-domain`) and the edges (`billing-http`, the `bookbag-billing`
//! binary).
//!
//! - [`db`]: connecting to `BILLING_DATABASE_URL`, migrations, and the
//!   [`on_pool!`] macro that runs one body of SQL code on either backend.
//! - [`store`]: the event log (group-commit append, snapshot loads, the
//!   gap-safe global read), key secrets and snapshots.
//! - [`chain`]: the per-workspace SHA-256 hash chain in every event's
//!   metadata.
//! - [`writer`]: the shard writers that decide commands in memory and
//!   commit them in groups (where a command is decided).
//! - [`projection`]: the projector that maintains the dashboard tables
//!   exactly once per event (where a projection is built).
//! - [`queries`]: the contract's queries over those tables.
//! - [`audit`]: statements replayed from the events, and `audit verify`
//!   (hash chains and projections against a fresh fold).
//! - [`engine`]: [`Engine`], the one API the HTTP layer and the CLI share.
//! - [`repository`]: a cqrs-es `PersistedEventRepository` over the same
//!   tables, for tools built on cqrs-es.
//! - [`metrics`], [`error`].

pub mod audit;
pub mod chain;
pub mod db;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod projection;
pub mod queries;
pub mod repository;
pub mod store;
pub mod writer;

pub use db::{Backend, Db};
pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, StoreError};
pub use metrics::Metrics;
pub use store::{Cursor, Store, StoredEvent};
pub use writer::{Outcome, ReplyAnswer};
