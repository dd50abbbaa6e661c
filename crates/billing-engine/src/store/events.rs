//! Appending and reading events, snapshots and key secrets.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};

use super::record::{event_columns, Cursor, StoredEvent};
use super::{begin_write, Store, AGGREGATE_TYPE, ROWS_PER_STATEMENT_MAX};
use crate::db::Backend;
use crate::error::StoreError;
use crate::on_pool;

/// One event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub workspace: String,
    pub sequence: u64,
    pub event_type: &'static str,
    pub event_version: &'static str,
    pub payload: Value,
    pub metadata: Value,
    /// `reply:<id>` / `grant:<id>`: unique per workspace forever.
    pub idempotency_key: Option<String>,
}

/// A sealed provider key to store beside its `KeyAdded` event.
#[derive(Clone, Debug)]
pub struct NewSecret {
    pub workspace: String,
    pub key_id: String,
    pub provider: &'static str,
    pub sealed: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct NewSnapshot {
    pub workspace: String,
    pub last_sequence: u64,
    pub payload: Value,
    pub taken_at: DateTime<Utc>,
}

/// Everything one group commit writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct AppendBatch {
    pub events: Vec<NewEvent>,
    pub secrets_added: Vec<NewSecret>,
    /// (workspace, key id) of keys that ended: their secrets are deleted.
    pub secrets_ended: Vec<(String, String)>,
    pub snapshots: Vec<NewSnapshot>,
}

/// What a committed batch was given.
#[derive(Clone, Copy, Debug)]
pub struct AppendReceipt {
    /// The largest place in the global order the batch wrote.
    pub cursor: Cursor,
    pub recorded_at: DateTime<Utc>,
}

/// A workspace as the store has it: the latest snapshot, the events after
/// it, and the sealed secrets of its active keys.
#[derive(Debug, Default)]
pub struct LoadedWorkspace {
    pub snapshot: Option<(u64, Value)>,
    pub events: Vec<StoredEvent>,
    /// (key id, provider, sealed)
    pub secrets: Vec<(String, String, String)>,
    /// Event and snapshot rows read to build it: what a history-length test
    /// counts.
    pub rows_read: u64,
}

fn returning_clause(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " RETURNING position, (tx_id::text)::bigint",
        Backend::Sqlite => " RETURNING position, tx_id",
    }
}

fn as_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} does not fit a bigint")))
}

impl Store {
    /// Commits `batch` atomically. `StoreError::Conflict` means a unique
    /// index refused it (another writer got there first, or an id was
    /// already used); nothing of the batch is stored then.
    pub async fn append(&self, batch: &AppendBatch) -> Result<AppendReceipt, StoreError> {
        let backend = self.backend();
        let recorded_at = Utc::now();
        on_pool!(self.db(), writer, |pool| {
            let mut tx = pool.begin_with(begin_write(backend)).await?;
            let mut cursor = Cursor::START;
            for chunk in batch.events.chunks(ROWS_PER_STATEMENT_MAX) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                     payload, metadata, recorded_at, idempotency_key) ",
                );
                let mut rows = Vec::with_capacity(chunk.len());
                for e in chunk {
                    rows.push((e, as_i64(e.sequence)?));
                }
                qb.push_values(rows, |mut b, (e, sequence)| {
                    b.push_bind(AGGREGATE_TYPE)
                        .push_bind(e.workspace.as_str())
                        .push_bind(sequence)
                        .push_bind(e.event_type)
                        .push_bind(e.event_version)
                        .push_bind(&e.payload)
                        .push_bind(&e.metadata)
                        .push_bind(recorded_at)
                        .push_bind(e.idempotency_key.as_deref());
                });
                qb.push(returning_clause(backend));
                for row in qb.build().fetch_all(&mut *tx).await? {
                    let here = Cursor { position: row.try_get(0)?, tx_id: row.try_get(1)? };
                    cursor = cursor.max(here);
                }
            }
            for s in &batch.secrets_added {
                sqlx::query(
                    "INSERT INTO key_secrets (workspace_id, key_id, provider, sealed, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&s.workspace)
                .bind(&s.key_id)
                .bind(s.provider)
                .bind(&s.sealed)
                .bind(s.created_at)
                .execute(&mut *tx)
                .await?;
            }
            for (workspace, key_id) in &batch.secrets_ended {
                sqlx::query("DELETE FROM key_secrets WHERE workspace_id = $1 AND key_id = $2")
                    .bind(workspace)
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for s in &batch.snapshots {
                sqlx::query(
                    "INSERT INTO workspace_snapshots (workspace_id, last_sequence, payload, taken_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE SET \
                     last_sequence = excluded.last_sequence, payload = excluded.payload, taken_at = excluded.taken_at",
                )
                .bind(&s.workspace)
                .bind(as_i64(s.last_sequence)?)
                .bind(&s.payload)
                .bind(s.taken_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(AppendReceipt { cursor, recorded_at })
        })
    }

    /// The latest snapshot of `workspace` (unless `from_snapshot` is false),
    /// the events after it and the secrets of its active keys. Reads at most
    /// one snapshot row plus the events since it, whatever the length of the
    /// history.
    pub async fn load_workspace(&self, workspace: &str, from_snapshot: bool) -> Result<LoadedWorkspace, StoreError> {
        let columns = event_columns(self.backend());
        on_pool!(self.db(), reader, |pool| {
            let mut loaded = LoadedWorkspace::default();
            let snapshot = if from_snapshot {
                sqlx::query("SELECT last_sequence, payload FROM workspace_snapshots WHERE workspace_id = $1")
                    .bind(workspace)
                    .fetch_optional(pool)
                    .await?
            } else {
                None
            };
            let mut after: i64 = 0;
            if let Some(row) = snapshot {
                after = row.try_get(0)?;
                let payload: Value = row.try_get(1)?;
                loaded.snapshot = Some((u64::try_from(after).unwrap_or(0), payload));
                loaded.rows_read += 1;
            }
            let sql = format!(
                "SELECT {columns} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
                 ORDER BY sequence"
            );
            let rows = sqlx::query(&sql).bind(AGGREGATE_TYPE).bind(workspace).bind(after).fetch_all(pool).await?;
            for row in &rows {
                loaded.events.push(StoredEvent::from_row(row)?);
            }
            loaded.rows_read += rows.len() as u64;
            let secrets = sqlx::query("SELECT key_id, provider, sealed FROM key_secrets WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_all(pool)
                .await?;
            for row in secrets {
                loaded.secrets.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
            }
            Ok(loaded)
        })
    }

    /// The stored events whose idempotency keys are among `keys` (at most a
    /// batch's worth), for teaching the aggregate first answers it forgot.
    pub async fn events_by_idempotency_key(
        &self,
        workspace: &str,
        keys: &[String],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let columns = event_columns(self.backend());
        on_pool!(self.db(), reader, |pool| {
            let mut found = Vec::new();
            for chunk in keys.chunks(ROWS_PER_STATEMENT_MAX) {
                let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM events WHERE aggregate_type = "));
                qb.push_bind(AGGREGATE_TYPE).push(" AND aggregate_id = ").push_bind(workspace);
                qb.push(" AND idempotency_key IN (");
                let mut list = qb.separated(", ");
                for key in chunk {
                    list.push_bind(key.as_str());
                }
                qb.push(")");
                for row in qb.build().fetch_all(pool).await? {
                    found.push(StoredEvent::from_row(&row)?);
                }
            }
            Ok(found)
        })
    }

    /// Up to `limit` events of `workspace` with a sequence above `after`.
    pub async fn workspace_events(
        &self,
        workspace: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let columns = event_columns(self.backend());
        let sql = format!(
            "SELECT {columns} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
             ORDER BY sequence LIMIT $4"
        );
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query(&sql)
                .bind(AGGREGATE_TYPE)
                .bind(workspace)
                .bind(as_i64(after)?)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(StoredEvent::from_row).collect()
        })
    }

    /// Up to `limit` events after `cursor` in the global order, never one
    /// that a transaction still running could precede (gap-safe).
    pub async fn events_after(&self, cursor: Cursor, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let columns = event_columns(self.backend());
        let sql = match self.backend() {
            Backend::Postgres => format!(
                "SELECT {columns} FROM events WHERE aggregate_type = $1 \
                 AND (tx_id, position) > ((($2::bigint)::text)::xid8, $3) \
                 AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY tx_id, position LIMIT $4"
            ),
            Backend::Sqlite => format!(
                "SELECT {columns} FROM events WHERE aggregate_type = $1 AND position > $3 \
                 ORDER BY position LIMIT $4"
            ),
        };
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query(&sql)
                .bind(AGGREGATE_TYPE)
                .bind(cursor.tx_id)
                .bind(cursor.position)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(StoredEvent::from_row).collect()
        })
    }

    /// The place of the newest committed event in the global order.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => {
                "SELECT (tx_id::text)::bigint, position FROM events WHERE aggregate_type = $1 \
                 ORDER BY tx_id DESC, position DESC LIMIT 1"
            }
            Backend::Sqlite => {
                "SELECT tx_id, position FROM events WHERE aggregate_type = $1 ORDER BY position DESC LIMIT 1"
            }
        };
        on_pool!(self.db(), reader, |pool| {
            let row = sqlx::query(sql).bind(AGGREGATE_TYPE).fetch_optional(pool).await?;
            match row {
                Some(row) => Ok(Cursor { tx_id: row.try_get(0)?, position: row.try_get(1)? }),
                None => Ok(Cursor::START),
            }
        })
    }

    /// The last stored sequence of each of `workspaces` that has events.
    pub async fn versions(&self, workspaces: &[&str]) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let mut versions = std::collections::HashMap::with_capacity(workspaces.len());
        on_pool!(self.db(), reader, |pool| {
            for chunk in workspaces.chunks(ROWS_PER_STATEMENT_MAX) {
                let mut qb =
                    QueryBuilder::new("SELECT aggregate_id, MAX(sequence) FROM events WHERE aggregate_type = ");
                qb.push_bind(AGGREGATE_TYPE).push(" AND aggregate_id IN (");
                let mut list = qb.separated(", ");
                for workspace in chunk {
                    list.push_bind(*workspace);
                }
                qb.push(") GROUP BY aggregate_id");
                for row in qb.build().fetch_all(pool).await? {
                    let sequence: i64 = row.try_get(1)?;
                    versions.insert(row.try_get(0)?, u64::try_from(sequence).unwrap_or(0));
                }
            }
            Ok(versions)
        })
    }

    /// How many events the log holds.
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = $1")
                .bind(AGGREGATE_TYPE)
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Every workspace id that has events, in order.
    pub async fn workspace_ids(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query("SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 ORDER BY 1")
                .bind(AGGREGATE_TYPE)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| r.try_get(0).map_err(StoreError::from)).collect()
        })
    }
}
