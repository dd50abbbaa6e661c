//! Appending and reading events, snapshots and key secrets.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};

use super::record::{event_columns, Cursor, StoredEvent};
use super::{begin_write, Store, AGGREGATE_TYPE, ROWS_PER_STATEMENT_MAX};
use crate::db::{Backend, Db};
use crate::error::StoreError;
use crate::on_pool;

/// Where an event is, without what it says.
#[derive(Clone, Debug)]
pub struct EventKey {
    pub workspace_id: String,
    pub sequence: u64,
    pub cursor: Cursor,
    pub recorded_at: DateTime<Utc>,
}

/// One event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub workspace: String,
    pub sequence: u64,
    pub event_type: &'static str,
    pub event_version: &'static str,
    /// The payload's JSON text, in canonical form (`chain::canonical`).
    pub payload: String,
    /// The metadata's JSON text (`chain::metadata_text`).
    pub metadata: String,
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

/// The key secrets and snapshots of `$batch`, inside `$tx` (the same SQL on
/// both backends).
macro_rules! write_secrets_and_snapshots {
    ($tx:expr, $batch:expr) => {
        for s in &$batch.secrets_added {
            sqlx::query(
                "INSERT INTO key_secrets (workspace_id, key_id, provider, sealed, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&s.workspace)
            .bind(&s.key_id)
            .bind(s.provider)
            .bind(&s.sealed)
            .bind(s.created_at)
            .execute(&mut *$tx)
            .await?;
        }
        for (workspace, key_id) in &$batch.secrets_ended {
            sqlx::query("DELETE FROM key_secrets WHERE workspace_id = $1 AND key_id = $2")
                .bind(workspace)
                .bind(key_id)
                .execute(&mut *$tx)
                .await?;
        }
        for s in &$batch.snapshots {
            sqlx::query(
                "INSERT INTO workspace_snapshots (workspace_id, last_sequence, payload, taken_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE SET \
                 last_sequence = excluded.last_sequence, payload = excluded.payload, taken_at = excluded.taken_at",
            )
            .bind(&s.workspace)
            .bind(as_i64(s.last_sequence)?)
            .bind(&s.payload)
            .bind(s.taken_at)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Postgres: the oldest transaction of *this database* that was running
/// when the statement's snapshot was taken (or the snapshot's xmax when
/// none). A gap-safe reader reads only below it. Transactions of other
/// databases on the same server cannot write our log, so they are left out
/// when `pg_stat_activity` says where they run (if it cannot say, they
/// count: the reader waits a little longer, it never skips).
const PG_FRONTIER: &str = "(SELECT COALESCE(min(x), pg_snapshot_xmax(pg_current_snapshot())) \
     FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
     WHERE x::xid NOT IN (SELECT backend_xid FROM pg_stat_activity \
                          WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL))";

// The reads of the whole log in its global order. Each must be an index
// scan of `events_global_order`, never a scan of the table: they run every
// few seconds whatever the log's size. Their select lists turn `tx_id` into
// a bigint named `tx_id`, and an unqualified `ORDER BY tx_id` would then
// mean that output column, which no index holds: Postgres read and sorted
// the whole table on every call (1 s at 1,000,000 events). So the order is
// always written `events.tx_id`. `store_plans` in the engine's tests checks
// each plan.

/// Postgres: up to `$4` events after the cursor (`$2`, `$3`), gap-safe.
fn pg_events_after() -> String {
    let columns = event_columns(Backend::Postgres);
    format!(
        "SELECT {columns} FROM events WHERE aggregate_type = $1 \
         AND (tx_id, position) > ((($2::bigint)::text)::xid8, $3) AND tx_id < {PG_FRONTIER} \
         ORDER BY events.tx_id, events.position LIMIT $4"
    )
}

/// Postgres: the keys of up to `$4` events after the cursor, gap-safe.
fn pg_event_keys_after() -> String {
    format!(
        "SELECT aggregate_id, sequence, (tx_id::text)::bigint AS tx_id, position, recorded_at FROM events \
         WHERE aggregate_type = $1 AND (tx_id, position) > ((($2::bigint)::text)::xid8, $3) \
         AND tx_id < {PG_FRONTIER} ORDER BY events.tx_id, events.position LIMIT $4"
    )
}

/// Postgres: the newest event's place in the global order.
const PG_HEAD: &str = "SELECT (tx_id::text)::bigint AS tx_id, position FROM events WHERE aggregate_type = $1 \
     ORDER BY events.tx_id DESC, events.position DESC LIMIT 1";

/// The statements that read the whole log in its global order on Postgres,
/// by name, each taking `$1` aggregate type, `$2` tx id, `$3` position and
/// `$4` limit (the head ignores the last three). For tests of their plans.
#[doc(hidden)]
pub fn postgres_log_reads() -> [(&'static str, String); 3] {
    [("events_after", pg_events_after()), ("event_keys_after", pg_event_keys_after()), ("head", PG_HEAD.to_owned())]
}

/// Postgres: every event of a batch in one statement whose text never
/// changes (so it is prepared once), one array per column, the JSON sent as
/// text (validated by `json_in`, cheaper than a round trip through jsonb).
const PG_APPEND: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata, recorded_at, idempotency_key) \
     SELECT 'Workspace', u.ws, u.seq, u.et, u.ev, u.p::json, u.m::json, $8, u.ik \
     FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
     AS u(ws, seq, et, ev, p, m, ik) \
     RETURNING position, (tx_id::text)::bigint";

/// The Postgres append of `chunk`.
fn append_unnest(
    chunk: &[NewEvent],
    recorded_at: DateTime<Utc>,
) -> Result<sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>, StoreError> {
    let mut sequences = Vec::with_capacity(chunk.len());
    for e in chunk {
        sequences.push(as_i64(e.sequence)?);
    }
    Ok(sqlx::query(PG_APPEND)
        .bind(chunk.iter().map(|e| e.workspace.as_str()).collect::<Vec<_>>())
        .bind(sequences)
        .bind(chunk.iter().map(|e| e.event_type).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.event_version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.metadata.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.idempotency_key.as_deref()).collect::<Vec<_>>())
        .bind(recorded_at))
}

/// The SQLite append of `chunk`: a multi-row INSERT (preparing it is an
/// in-process parse, cheap whatever its length).
fn append_values(chunk: &[NewEvent], recorded_at: DateTime<Utc>) -> Result<QueryBuilder<'_, sqlx::Sqlite>, StoreError> {
    let mut rows = Vec::with_capacity(chunk.len());
    for e in chunk {
        rows.push((e, as_i64(e.sequence)?));
    }
    let mut qb = QueryBuilder::new(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, recorded_at, idempotency_key) ",
    );
    qb.push_values(rows, |mut b, (e, sequence)| {
        b.push_bind(AGGREGATE_TYPE)
            .push_bind(e.workspace.as_str())
            .push_bind(sequence)
            .push_bind(e.event_type)
            .push_bind(e.event_version)
            .push_bind(e.payload.as_str())
            .push_bind(e.metadata.as_str())
            .push_bind(recorded_at)
            .push_bind(e.idempotency_key.as_deref());
    });
    qb.push(" RETURNING position, tx_id");
    Ok(qb)
}

fn as_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} does not fit a bigint")))
}

impl Store {
    /// Commits `batch` atomically. `StoreError::Conflict` means a unique
    /// index refused it (another writer got there first, or an id was
    /// already used); nothing of the batch is stored then.
    pub async fn append(&self, batch: &AppendBatch) -> Result<AppendReceipt, StoreError> {
        let recorded_at = Utc::now();
        let mut cursor = Cursor::START;
        match self.db() {
            Db::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                for chunk in batch.events.chunks(ROWS_PER_STATEMENT_MAX) {
                    for row in append_unnest(chunk, recorded_at)?.fetch_all(&mut *tx).await? {
                        cursor = cursor.max(Cursor { position: row.try_get(0)?, tx_id: row.try_get(1)? });
                    }
                }
                write_secrets_and_snapshots!(tx, batch);
                tx.commit().await?;
            }
            Db::Sqlite(lite) => {
                let mut tx = lite.writer.begin_with(begin_write(Backend::Sqlite)).await?;
                for chunk in batch.events.chunks(ROWS_PER_STATEMENT_MAX) {
                    let mut qb = append_values(chunk, recorded_at)?;
                    for row in qb.build().fetch_all(&mut *tx).await? {
                        cursor = cursor.max(Cursor { position: row.try_get(0)?, tx_id: row.try_get(1)? });
                    }
                }
                write_secrets_and_snapshots!(tx, batch);
                tx.commit().await?;
            }
        }
        Ok(AppendReceipt { cursor, recorded_at })
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
            Backend::Postgres => pg_events_after(),
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

    /// Like [`Store::events_after`], but only each event's workspace,
    /// sequence, place and time: what a projector needs to see that the
    /// writers projected a page already.
    pub async fn event_keys_after(&self, cursor: Cursor, limit: u32) -> Result<Vec<EventKey>, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => pg_event_keys_after(),
            Backend::Sqlite => "SELECT aggregate_id, sequence, tx_id, position, recorded_at FROM events \
                 WHERE aggregate_type = $1 AND position > $3 ORDER BY position LIMIT $4"
                .to_owned(),
        };
        on_pool!(self.db(), reader, |pool| {
            let rows = sqlx::query(&sql)
                .bind(AGGREGATE_TYPE)
                .bind(cursor.tx_id)
                .bind(cursor.position)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in rows {
                let sequence: i64 = row.try_get(1)?;
                keys.push(EventKey {
                    workspace_id: row.try_get(0)?,
                    sequence: u64::try_from(sequence).unwrap_or(0),
                    cursor: Cursor { tx_id: row.try_get(2)?, position: row.try_get(3)? },
                    recorded_at: row.try_get(4)?,
                });
            }
            Ok(keys)
        })
    }

    /// The place of the newest committed event in the global order.
    pub async fn head(&self) -> Result<Cursor, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => PG_HEAD,
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
