//! The event store: the only code that writes or reads the `events`,
//! `workspace_snapshots` and `key_secrets` tables.
//!
//! - [`Store::append`] commits a whole batch of decided events (many
//!   workspaces, many commands) in one transaction: the group commit of the
//!   hot path. The events' primary key is the optimistic-concurrency guard
//!   against a second engine process, and the idempotency index makes a
//!   reply or grant id unique per workspace forever.
//! - [`Store::load_workspace`] reads the latest snapshot and the bounded
//!   tail after it, never the whole history.
//! - [`Store::events_after`] reads the whole log in its gap-safe global
//!   order, for the projector, the NATS relay and the audit.

mod events;
mod record;
mod relay;

pub use events::{
    postgres_log_reads, AppendBatch, AppendReceipt, EventKey, LoadedWorkspace, NewEvent, NewSecret, NewSnapshot,
};
pub use record::{decode_payload, upcasters, Cursor, StoredEvent};
pub use relay::Leadership;

use crate::db::{Backend, Db};

/// The aggregate type every row of this engine carries (`Workspace::TYPE`).
pub const AGGREGATE_TYPE: &str = "Workspace";

/// Rows one multi-row INSERT carries at most: far below the bind-parameter
/// limits of both backends (65,535 for Postgres, 32,766 for SQLite) at nine
/// parameters a row.
pub const ROWS_PER_STATEMENT_MAX: usize = 1_000;

/// The event store over one database.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Store {
        Store { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }
}

/// The statement that opens a write transaction. SQLite must take the write
/// lock up front: a deferred transaction that reads first and then writes
/// can fail with SQLITE_BUSY instead of waiting.
pub(crate) fn begin_write(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "BEGIN",
        Backend::Sqlite => "BEGIN IMMEDIATE",
    }
}
