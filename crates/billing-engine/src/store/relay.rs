//! What a relay of the log (to NATS) keeps in the store: its cursor, and on
//! Postgres the lock that makes one relay per database the publisher.

use chrono::Utc;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

use super::record::Cursor;
use super::Store;
use crate::db::Db;
use crate::error::StoreError;
use crate::on_pool;

/// Held while this process is the relay named; dropping it lets another
/// process take over (Postgres: a session advisory lock on a connection of
/// its own; SQLite: one process per file, nothing to hold).
pub struct Leadership {
    connection: Option<PoolConnection<Postgres>>,
}

impl Leadership {
    /// False once the session holding the lock is gone (the database
    /// restarted): another process may lead now.
    pub async fn alive(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(connection) => sqlx::query("SELECT 1").execute(&mut **connection).await.is_ok(),
        }
    }
}

impl Store {
    pub async fn relay_cursor(&self, relay: &str) -> Result<Cursor, StoreError> {
        on_pool!(self.db(), reader, |pool| {
            let row = sqlx::query("SELECT tx_id, position FROM relay_cursors WHERE relay = $1")
                .bind(relay)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Cursor { tx_id: row.try_get(0)?, position: row.try_get(1)? }),
                None => Ok(Cursor::START),
            }
        })
    }

    /// Moves the relay's cursor forward (never back).
    pub async fn save_relay_cursor(&self, relay: &str, cursor: Cursor) -> Result<(), StoreError> {
        on_pool!(self.db(), projector, |pool| {
            sqlx::query(
                "INSERT INTO relay_cursors (relay, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (relay) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
                 updated_at = excluded.updated_at \
                 WHERE (relay_cursors.tx_id, relay_cursors.position) < (excluded.tx_id, excluded.position)",
            )
            .bind(relay)
            .bind(cursor.tx_id)
            .bind(cursor.position)
            .bind(Utc::now())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Tries to become the one publishing relay named `relay`.
    pub async fn try_lead(&self, relay: &str) -> Result<Option<Leadership>, StoreError> {
        match self.db() {
            Db::Sqlite(_) => Ok(Some(Leadership { connection: None })),
            Db::Postgres(pg) => {
                let mut connection = pg.pool.acquire().await?;
                let key = relay.bytes().fold(0x6269_6c6c_i64, |h, b| h.wrapping_mul(31).wrapping_add(i64::from(b)));
                let got: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *connection).await?;
                if !got {
                    return Ok(None);
                }
                // The lock lives as long as this session: never hand the
                // connection back to the pool with it.
                connection.close_on_drop();
                Ok(Some(Leadership { connection: Some(connection) }))
            }
        }
    }
}
