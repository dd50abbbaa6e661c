//! Projections: the dashboard tables, built from the event log.
//!
//! A [`Projector`] applies events to the five tables of one database
//! (`key_view`, `billing_mode`, `credit_balances`, `credit_ledger`,
//! `usage_daily`) through the one fold of `billing_domain::readmodel`. Each
//! batch is one transaction that also moves `projection_offsets` (per
//! workspace: the last sequence applied) and the projector's cursor, so an
//! event is applied exactly once: a re-delivered event is at or below its
//! workspace's offset and is skipped, and a crash loses nothing because the
//! cursor only moves with the rows.
//!
//! The in-process projector follows the event store in its gap-safe global
//! order ([`Projector::catch_up`]); the NATS projector (`project`) feeds the
//! same [`Projector::apply`] from JetStream.

pub mod feed;
pub mod read;
pub(crate) mod sql;

pub use read::read_model;

use billing_domain::WorkspaceEvent;
use chrono::Utc;
use sqlx::Row;
use std::collections::HashMap;

use crate::db::Backend;
use crate::error::StoreError;
use crate::on_pool;
use crate::store::{begin_write, Cursor, Store, StoredEvent};

/// Events one projection transaction applies at most.
pub const PROJECT_BATCH_EVENTS_MAX: u32 = 2_000;

/// The name of the projector that runs inside `serve`.
pub const IN_PROCESS_PROJECTOR: &str = "engine";

/// An event as a projector receives it.
#[derive(Clone, Debug)]
pub struct ProjectedEvent {
    pub workspace_id: String,
    pub sequence: u64,
    pub event: WorkspaceEvent,
}

impl ProjectedEvent {
    pub fn from_stored(stored: &StoredEvent) -> Result<ProjectedEvent, StoreError> {
        Ok(ProjectedEvent {
            workspace_id: stored.workspace_id.clone(),
            sequence: stored.sequence,
            event: stored.decode()?,
        })
    }
}

/// What one [`Projector::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events applied to the tables.
    pub applied: u64,
    /// Events skipped because their workspace's offset was already past them.
    pub skipped: u64,
    /// Events left for the projector because an earlier one of their
    /// workspace was not yet applied (only when the writer projects).
    pub left: u64,
}

/// Applies events to the projection tables of `store`'s database.
#[derive(Clone, Debug)]
pub struct Projector {
    store: Store,
    name: String,
    durable: bool,
}

impl Projector {
    /// A projector whose source is the event log itself: after a crash it
    /// re-reads what it lost, so its commits need not wait for the disk.
    pub fn new(store: Store, name: &str) -> Projector {
        Projector { store, name: name.to_owned(), durable: false }
    }

    /// A projector whose source forgets what it acknowledged (JetStream):
    /// every commit must be on disk before the source is told.
    pub fn durable(store: Store, name: &str) -> Projector {
        Projector { store, name: name.to_owned(), durable: true }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this projector resumes reading the log.
    pub async fn cursor(&self) -> Result<Cursor, StoreError> {
        on_pool!(self.store.db(), reader, |pool| {
            let row = sqlx::query("SELECT tx_id, position FROM projector_cursors WHERE projector = $1")
                .bind(&self.name)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Cursor { tx_id: row.try_get(0)?, position: row.try_get(1)? }),
                None => Ok(Cursor::START),
            }
        })
    }

    /// Saves where this projector resumes reading the log.
    pub async fn save_cursor(&self, cursor: Cursor) -> Result<(), StoreError> {
        on_pool!(self.store.db(), projector, |pool| {
            sqlx::query(
                "INSERT INTO projector_cursors (projector, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (projector) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
                 updated_at = excluded.updated_at",
            )
            .bind(&self.name)
            .bind(cursor.tx_id)
            .bind(cursor.position)
            .bind(Utc::now())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The offsets of `workspaces` (absent: nothing applied yet).
    pub async fn offsets_of(&self, workspaces: &[&str]) -> Result<HashMap<String, u64>, StoreError> {
        let mut offsets = HashMap::with_capacity(workspaces.len());
        if let crate::db::Db::Postgres(pg) = self.store.db() {
            // One array parameter: the statement's text never changes, so it
            // is prepared once (an IN list of n parameters is a new
            // statement for every n).
            let rows =
                sqlx::query("SELECT workspace_id, last_sequence FROM projection_offsets WHERE workspace_id = ANY($1)")
                    .bind(workspaces)
                    .fetch_all(&pg.pool)
                    .await?;
            for row in rows {
                let sequence: i64 = row.try_get(1)?;
                offsets.insert(row.try_get(0)?, u64::try_from(sequence).unwrap_or(0));
            }
            return Ok(offsets);
        }
        on_pool!(self.store.db(), reader, |pool| {
            for chunk in workspaces.chunks(crate::store::ROWS_PER_STATEMENT_MAX) {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT workspace_id, last_sequence FROM projection_offsets WHERE workspace_id IN (",
                );
                let mut list = qb.separated(", ");
                for workspace in chunk {
                    list.push_bind(*workspace);
                }
                qb.push(")");
                for row in qb.build().fetch_all(pool).await? {
                    let sequence: i64 = row.try_get(1)?;
                    offsets.insert(row.try_get(0)?, u64::try_from(sequence).unwrap_or(0));
                }
            }
            Ok(offsets)
        })
    }

    /// Applies `events` (in per-workspace sequence order) in one transaction,
    /// and moves this projector's cursor to `cursor` in the same transaction
    /// when given. Events at or below their workspace's offset are skipped.
    /// An event that would leave a hole (its predecessor was never applied)
    /// fails the whole batch: the projection must never skip history.
    pub async fn apply(&self, events: &[ProjectedEvent], cursor: Option<Cursor>) -> Result<Applied, StoreError> {
        self.apply_with(events, cursor, sql::Holes::Refuse).await
    }

    /// Like [`Projector::apply`], but an event whose predecessor is not yet
    /// applied is left out (counted in `left`) instead of failing the
    /// batch: for events handed over in memory, which may arrive before an
    /// older event of their workspace was read from the log.
    pub async fn apply_leaving_holes(&self, events: &[ProjectedEvent]) -> Result<Applied, StoreError> {
        self.apply_with(events, None, sql::Holes::Leave).await
    }

    async fn apply_with(
        &self,
        events: &[ProjectedEvent],
        cursor: Option<Cursor>,
        holes: sql::Holes,
    ) -> Result<Applied, StoreError> {
        let backend = self.store.backend();
        on_pool!(self.store.db(), projector, |pool| {
            let mut tx = pool.begin_with(begin_write(backend)).await?;
            if backend == Backend::Postgres {
                // One lock per database keeps concurrent projectors from
                // interleaving (SQLite's write lock already does).
                sqlx::query("SELECT pg_advisory_xact_lock(7406118229)").execute(&mut *tx).await?;
                if !self.durable {
                    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
                }
            }
            let offsets = sql::load_offsets!(tx, events, backend);
            let (plan, applied) = sql::plan(events, &offsets, backend, holes)?;
            sql::execute!(tx, &plan);
            if let Some(cursor) = cursor {
                sqlx::query(
                    "INSERT INTO projector_cursors (projector, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (projector) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
                     updated_at = excluded.updated_at",
                )
                .bind(&self.name)
                .bind(cursor.tx_id)
                .bind(cursor.position)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(applied)
        })
    }

    /// Reads the log from this projector's cursor and applies everything
    /// committed when it started, batch by batch. Returns the cursor
    /// reached; `progress` is told how many events each batch held.
    pub async fn catch_up(&self, source: &Store, mut progress: impl FnMut(u64)) -> Result<Cursor, StoreError> {
        let mut cursor = self.cursor().await?;
        let target = source.head().await?;
        let mut waited = std::time::Instant::now();
        loop {
            let stored = source.events_after(cursor, PROJECT_BATCH_EVENTS_MAX).await?;
            let Some(last) = stored.last() else {
                if cursor >= target {
                    return Ok(cursor);
                }
                // Committed, but behind a transaction of this database that
                // is still open: the gap-safe order cannot pass it yet.
                if waited.elapsed() >= std::time::Duration::from_secs(5) {
                    tracing::warn!("catch-up waits for an open transaction older than the log's head");
                    waited = std::time::Instant::now();
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let next = last.cursor();
            let events = stored.iter().map(ProjectedEvent::from_stored).collect::<Result<Vec<_>, _>>()?;
            self.apply(&events, Some(next)).await?;
            progress(events.len() as u64);
            cursor = next;
        }
    }

    /// Empties every projection table and this database's offsets and
    /// cursors, so that the next catch-up rebuilds everything from the log.
    pub async fn reset(&self) -> Result<(), StoreError> {
        let backend = self.store.backend();
        on_pool!(self.store.db(), projector, |pool| {
            let mut tx = pool.begin_with(begin_write(backend)).await?;
            for table in sql::PROJECTION_TABLES {
                sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The last sequence applied per workspace.
    pub async fn offsets(&self) -> Result<HashMap<String, u64>, StoreError> {
        on_pool!(self.store.db(), reader, |pool| {
            let rows =
                sqlx::query("SELECT workspace_id, last_sequence FROM projection_offsets").fetch_all(pool).await?;
            let mut offsets = HashMap::with_capacity(rows.len());
            for row in rows {
                let sequence: i64 = row.try_get(1)?;
                offsets.insert(row.try_get(0)?, u64::try_from(sequence).unwrap_or(0));
            }
            Ok(offsets)
        })
    }
}
