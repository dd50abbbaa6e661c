//! What a run cost the Postgres server, from its own statistics: WAL
//! written, full-page images in it, blocks read from outside shared
//! buffers, and checkpoints. The profile of the scenarios whose figure is
//! set by Postgres rather than by the engine.
//!
//! Backends report their counters when they end (and at most once a second
//! while busy), so a run's engine closes its pool before the second sample.

use sqlx::postgres::{PgPool, PgPoolOptions};

/// One sample of the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgCounters {
    /// Bytes of WAL the server has written (its insert position).
    pub wal_bytes: i64,
    /// Full-page images in the WAL: the first change to a page after a
    /// checkpoint writes the whole 8 kB page.
    pub wal_fpi: i64,
    /// Blocks of the database read from outside shared buffers.
    pub blks_read: i64,
    /// Blocks of the database found in shared buffers.
    pub blks_hit: i64,
    pub checkpoints: i64,
    /// Autovacuum and autoanalyze runs on the database's tables.
    pub autovacuums: i64,
}

/// A connection to the server's `postgres` database, apart from the run's,
/// and one to the run's database for its tables' counters.
pub struct PgStats {
    pool: PgPool,
    own: PgPool,
    database: String,
}

impl PgStats {
    pub async fn connect(admin_url: &str, database: &str) -> Result<PgStats, String> {
        let pool = PgPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(|e| e.to_string())?;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{base}/{database}"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(PgStats { pool, own, database: database.to_owned() })
    }

    pub async fn sample(&self) -> Result<PgCounters, String> {
        let (wal_bytes,): (i64,) = sqlx::query_as("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let (wal_fpi,): (i64,) =
            sqlx::query_as("SELECT wal_fpi FROM pg_stat_wal").fetch_one(&self.pool).await.map_err(|e| e.to_string())?;
        let (blks_read, blks_hit): (i64, i64) =
            sqlx::query_as("SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.database)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
        let (checkpoints,): (i64,) = sqlx::query_as("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let (autovacuums,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(autovacuum_count + autoanalyze_count), 0)::bigint FROM pg_stat_user_tables",
        )
        .fetch_one(&self.own)
        .await
        .map_err(|e| e.to_string())?;
        Ok(PgCounters { wal_bytes, wal_fpi, blks_read, blks_hit, checkpoints, autovacuums })
    }

    /// Writes every dirty buffer and starts the next WAL stretch from a
    /// checkpoint, so that runs compared with each other pay the same
    /// full-page images (the server's user must be a superuser or hold
    /// `pg_checkpoint`).
    pub async fn checkpoint(&self) -> Result<(), String> {
        sqlx::query("CHECKPOINT").execute(&self.pool).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sets a server parameter for the sessions that connect to this
    /// database from now on (`ALTER DATABASE ... SET`; a superuser's).
    pub async fn set_database(&self, parameter: &str, value: &str) -> Result<(), String> {
        let sql = format!("ALTER DATABASE \"{}\" SET {parameter} = '{value}'", self.database);
        sqlx::query(&sql).execute(&self.pool).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    pub async fn close(self) {
        self.own.close().await;
        self.pool.close().await;
    }
}

impl PgCounters {
    /// What happened between `earlier` and this sample, per `requests`:
    /// (WAL bytes, full-page images, blocks read, blocks hit).
    pub fn per_request(&self, earlier: &PgCounters, requests: u64) -> PerRequest {
        let n = requests.max(1) as f64;
        PerRequest {
            wal_bytes: (self.wal_bytes - earlier.wal_bytes) as f64 / n,
            wal_fpi: (self.wal_fpi - earlier.wal_fpi) as f64 / n,
            blks_read: (self.blks_read - earlier.blks_read) as f64 / n,
            blks_hit: (self.blks_hit - earlier.blks_hit) as f64 / n,
            checkpoints: self.checkpoints - earlier.checkpoints,
            autovacuums: self.autovacuums - earlier.autovacuums,
        }
    }
}

/// [`PgCounters`] differences divided by a run's requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerRequest {
    pub wal_bytes: f64,
    pub wal_fpi: f64,
    pub blks_read: f64,
    pub blks_hit: f64,
    /// Not divided: how many checkpoints ran.
    pub checkpoints: i64,
    /// Not divided: how many autovacuum or autoanalyze runs ended.
    pub autovacuums: i64,
}

impl std::fmt::Display for PerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} B WAL, {:.2} full pages, {:.2} blocks read + {:.1} hit per reply; {} checkpoints, {} autovacuums",
            self.wal_bytes, self.wal_fpi, self.blks_read, self.blks_hit, self.checkpoints, self.autovacuums
        )
    }
}
