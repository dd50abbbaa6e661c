//! Connecting to the database named by `BILLING_DATABASE_URL`, and applying
//! the migrations of `migrations/<backend>/`.
//!
//! Both backends are driven by the same SQL text wherever the dialects agree
//! (`$N` placeholders work in both); [`on_pool!`] expands one body once per
//! backend so that the code is written once and type-checked twice.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::StoreError;

/// Connections a Postgres pool opens. On two cores ~10 beat 64 (see
/// shared/stack-facts.md); writers hold at most one each.
pub const PG_POOL_CONNECTIONS_MAX: u32 = 10;

/// Read connections to an SQLite file (WAL lets them read while one writes).
pub const SQLITE_READERS_MAX: u32 = 4;

/// How long a request waits for a connection before it answers 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an SQLite writer waits for the file's write lock.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The default database: an SQLite file beside the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./bookbag-billing.db";

/// How often a connection of its own copies SQLite's write-ahead log into
/// the database file (a `PASSIVE` checkpoint: it never takes the write
/// lock). The writer and the projector do not checkpoint themselves
/// (`wal_autocheckpoint = 0`): SQLite's automatic checkpoint runs inside
/// the commit that crosses 1,000 pages, on the one writer's path, so every
/// caller of that batch waits for it. Off that path: 5-14% more replies/s
/// and a p99 of 18-22 ms instead of 24-28 ms in four interleaved pairs of
/// `bench --scenarios sqlite` (docs/performance.md).
pub const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The database of one engine.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgDb),
    Sqlite(SqliteDb),
}

#[derive(Clone, Debug)]
pub struct PgDb {
    pub pool: PgPool,
}

/// SQLite has one writer at a time; the engine gives each role its own pool
/// so that the event writer keeps `synchronous=FULL` (an acknowledged reply
/// survives power loss) while the projector, whose work is redone from the
/// log after any crash, commits with `synchronous=NORMAL`.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub writer: SqlitePool,
    pub projector: SqlitePool,
    pub reader: SqlitePool,
    pub path: PathBuf,
    /// The background checkpoints ([`SQLITE_CHECKPOINT_EVERY`]); they stop
    /// when the last clone of this handle goes or the database is closed.
    checkpoints: std::sync::Arc<Checkpoints>,
}

/// Stops the checkpoint task when dropped.
#[derive(Debug)]
struct Checkpoints(tokio::task::AbortHandle);

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checkpoints the WAL of the database behind `options` every
/// [`SQLITE_CHECKPOINT_EVERY`] on a connection of its own.
async fn start_checkpoints(options: SqliteConnectOptions) -> Result<Checkpoints, StoreError> {
    let pool =
        SqlitePoolOptions::new().max_connections(1).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await?;
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // PASSIVE copies what no reader still needs and never waits; a
            // checkpoint that cannot finish now is simply done later.
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                tracing::debug!(error = %err, "SQLite checkpoint failed; trying again later");
            }
        }
    });
    Ok(Checkpoints(task.abort_handle()))
}

/// Runs `$body` with `$pool` bound to the pool of `$role` (`writer`,
/// `projector` or `reader`; Postgres has one pool for all three).
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $role:ident, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(pg) => {
                let $pool = &pg.pool;
                $body
            }
            $crate::db::Db::Sqlite(lite) => {
                let $pool = &lite.$role;
                $body
            }
        }
    };
}

impl Db {
    /// Opens the database of `url` (`sqlite://PATH` or `postgres://...`).
    /// SQLite files are created when missing.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        if url.starts_with("sqlite:") {
            connect_sqlite(url).await.map(Db::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            connect_postgres(url).await.map(Db::Postgres)
        } else {
            Err(StoreError::Config(
                "BILLING_DATABASE_URL must start with sqlite:// or postgres:// (or postgresql://)".into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the migrations this build carries. Safe to run concurrently
    /// (sqlx takes a lock) and on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match self {
            Db::Postgres(pg) => sqlx::migrate!("../../migrations/postgres").run(&pg.pool).await,
            Db::Sqlite(lite) => sqlx::migrate!("../../migrations/sqlite").run(&lite.writer).await,
        };
        result.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, reader, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(StoreError::from))
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pg) => pg.pool.close().await,
            Db::Sqlite(lite) => {
                lite.checkpoints.0.abort();
                lite.reader.close().await;
                lite.projector.close().await;
                lite.writer.close().await;
            }
        }
    }
}

async fn connect_postgres(url: &str) -> Result<PgDb, StoreError> {
    let mut options =
        PgConnectOptions::from_str(url).map_err(|e| StoreError::Config(format!("BILLING_DATABASE_URL: {e}")))?;
    // TLS on loopback costs a handshake per connection and buys nothing; an
    // explicit sslmode in the URL always wins.
    let loopback =
        ["127.0.0.1", "localhost", "::1"].contains(&options.get_host()) || options.get_host().starts_with('/');
    if loopback && !url.contains("sslmode=") {
        options = options.ssl_mode(PgSslMode::Disable);
    }
    let pool = PgPoolOptions::new()
        .max_connections(PG_POOL_CONNECTIONS_MAX)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A broken connection fails its query and is replaced; pinging on
        // every acquire doubles the round trips of the hot path.
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    Ok(PgDb { pool })
}

async fn connect_sqlite(url: &str) -> Result<SqliteDb, StoreError> {
    let base = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("BILLING_DATABASE_URL: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        // Deleted key secrets are overwritten in the file, not just unlinked.
        .pragma("secure_delete", "ON");
    let path = base.get_filename().to_path_buf();
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(base.clone().synchronous(SqliteSynchronous::Full).pragma("wal_autocheckpoint", "0"))
        .await?;
    let projector = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(base.clone().synchronous(SqliteSynchronous::Normal).pragma("wal_autocheckpoint", "0"))
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(SQLITE_READERS_MAX)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(base.clone().synchronous(SqliteSynchronous::Normal))
        .await?;
    let checkpoints = std::sync::Arc::new(start_checkpoints(base).await?);
    Ok(SqliteDb { writer, projector, reader, path, checkpoints })
}
