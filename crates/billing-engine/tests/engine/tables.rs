//! Reading the database back for comparisons: the projections as a read
//! model, a fresh fold of the stored events, and a dump of every table.

use billing_domain::readmodel::ReadModel;
use billing_engine::projection::read_model;
use billing_engine::Store;
use sqlx::Row;

/// The projection rows of `workspace`.
pub async fn projected(store: &Store, workspace: &str) -> ReadModel {
    read_model(store, workspace).await.unwrap()
}

/// The read model a fresh fold of `workspace`'s stored events gives.
pub async fn fold_of_stored(store: &Store, workspace: &str) -> ReadModel {
    let mut model = ReadModel::default();
    let mut after = 0;
    loop {
        let events = store.workspace_events(workspace, after, 1000).await.unwrap();
        let Some(last) = events.last() else { return model };
        after = last.sequence;
        for stored in &events {
            model.apply(stored.sequence, &stored.decode().unwrap());
        }
    }
}

/// Every row of every table, one line each: `table {json}`.
pub async fn dump_all_tables(store: &Store) -> String {
    let mut out = String::new();
    match store.db() {
        billing_engine::Db::Postgres(pg) => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
                    .fetch_all(&pg.pool)
                    .await
                    .unwrap();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                    .fetch_all(&pg.pool)
                    .await
                    .unwrap();
                for row in rows {
                    out.push_str(&format!("{table} {row}\n"));
                }
            }
        }
        billing_engine::Db::Sqlite(lite) => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                    .fetch_all(&lite.reader)
                    .await
                    .unwrap();
            for table in tables {
                let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({table})"))
                    .fetch_all(&lite.reader)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("name"))
                    .collect();
                let pairs: Vec<String> = columns
                    .iter()
                    .map(|c| format!("'{c}', CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE {c} END"))
                    .collect();
                let sql = format!("SELECT json_object({}) FROM {table}", pairs.join(", "));
                let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&lite.reader).await.unwrap();
                for row in rows {
                    out.push_str(&format!("{table} {row}\n"));
                }
            }
        }
    }
    out
}
