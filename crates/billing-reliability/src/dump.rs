//! The text of every table of a database (every row of every column, as
//! text), and for SQLite the raw bytes of its files, for the secret sweep
//! and for failure reports.

use sqlx::Row;
use std::path::PathBuf;

/// Every table of a database, as text.
pub struct Dump {
    /// Table names and their row counts.
    pub tables: Vec<(String, u64)>,
    /// One line per row: `table<TAB>column values separated by TABs`.
    pub text: String,
    /// SQLite only: the bytes of the database file and its `-wal`, where
    /// deleted rows would linger if they were not overwritten.
    pub file_bytes: Vec<u8>,
}

impl Dump {
    pub fn rows_of(&self, table: &str) -> Option<u64> {
        self.tables.iter().find(|(name, _)| name == table).map(|(_, rows)| *rows)
    }
}

/// Runs one SQL statement on the database of `url`: for tests that put the
/// database in the state a fault would leave.
pub async fn execute(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path.split('?').next().unwrap_or(path));
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open");
        sqlx::query(sql).execute(&pool).await.expect("execute");
        pool.close().await;
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
        sqlx::query(sql).execute(&pool).await.expect("execute");
        pool.close().await;
    }
}

/// Dumps the database of `url` (`sqlite://PATH` or `postgres://...`).
pub async fn dump(url: &str) -> Dump {
    if let Some(path) = url.strip_prefix("sqlite://") {
        dump_sqlite(PathBuf::from(path.split('?').next().unwrap_or(path))).await
    } else {
        dump_postgres(url).await
    }
}

async fn dump_postgres(url: &str) -> Dump {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.expect("connect to dump");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    let mut dump = Dump { tables: Vec::new(), text: String::new(), file_bytes: Vec::new() };
    for name in names {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {name} t"))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("dump {name}: {e}"));
        for row in &rows {
            dump.text.push_str(&format!("{name}\t{row}\n"));
        }
        let short = name.rsplit('.').next().unwrap_or(&name).to_owned();
        dump.tables.push((short, rows.len() as u64));
    }
    pool.close().await;
    dump
}

async fn dump_sqlite(path: PathBuf) -> Dump {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.expect("open");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&pool)
        .await
        .expect("list tables");
    let mut dump = Dump { tables: Vec::new(), text: String::new(), file_bytes: Vec::new() };
    for name in names {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{name}\")"))
            .fetch_all(&pool)
            .await
            .expect("table info")
            .iter()
            .map(|row| row.get::<String, _>("name"))
            .collect();
        let cells: Vec<String> = columns.iter().map(|c| sqlite_cell(c)).collect();
        let sql = format!("SELECT {} FROM \"{name}\"", cells.join(" || char(9) || "));
        let rows: Vec<String> = if columns.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(&sql).fetch_all(&pool).await.unwrap_or_else(|e| panic!("dump {name}: {e}"))
        };
        for row in &rows {
            dump.text.push_str(&format!("{name}\t{row}\n"));
        }
        dump.tables.push((name, rows.len() as u64));
    }
    pool.close().await;
    for suffix in ["", "-wal"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        if let Ok(bytes) = std::fs::read(&file) {
            dump.file_bytes.extend_from_slice(&bytes);
        }
    }
    dump
}

/// One SQLite cell as text: blobs as lowercase hex (the sweep looks for
/// the hex spelling of every key too), everything else cast to text.
fn sqlite_cell(column: &str) -> String {
    format!(
        "CASE typeof(\"{column}\") WHEN 'blob' THEN lower(hex(\"{column}\")) WHEN 'null' THEN 'NULL' \
         ELSE CAST(\"{column}\" AS TEXT) END"
    )
}
