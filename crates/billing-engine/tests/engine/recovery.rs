//! Crashes between the commit and the projection, long histories, and
//! crypto-shredding: what the store guarantees beyond one happy process.

use billing_domain::{Metering, Provider};
use billing_engine::writer::SNAPSHOT_EVERY_EVENTS;
use billing_engine::{Engine, Metrics};
use billing_testkit::{both_backends, engine, engine_config, Backend, TestDb, OPENAI_KEY, OPENAI_KEY_2};
use std::sync::Arc;

use crate::helpers::*;
use crate::tables::{dump_all_tables, fold_of_stored, projected};

async fn projections_catch_up_after_a_crash_between_commit_and_projection(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // The first process commits and "dies" before projecting anything.
    let mut config = engine_config(&store, Metering::Enabled);
    config.run_projector = false;
    let crashed = Engine::start(store.clone(), config).await.unwrap();
    create(&crashed, "ws", "alice").await.unwrap();
    grant(&crashed, "ws", "g", 30).await.unwrap();
    add_key(&crashed, "ws", "alice", Provider::Openai, OPENAI_KEY).await.unwrap();
    for i in 0..5 {
        reply(&crashed, "ws", &format!("r{i}"), "gpt-4o").await.unwrap();
    }
    crashed.shutdown().await;
    assert!(!store.projected_workspace_exists("ws").await.unwrap(), "nothing was projected");
    let events = store.workspace_events("ws", 0, 100).await.unwrap();
    assert_eq!(events.len(), 8);

    let restarted = engine(&db).await;
    let credits = restarted.credits(&ws("ws")).await.unwrap();
    assert_eq!((credits.balance, credits.spent), (5, 25));
    assert_eq!(projected(&store, "ws").await, fold_of_stored(&store, "ws").await);
    restarted.shutdown().await;
}

async fn loading_a_long_history_reads_a_snapshot_and_a_short_tail(backend: Backend) {
    const EVENTS: usize = 100_000;
    const CALLERS: usize = 64;
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "long", "alice").await.unwrap();
    create(&engine, "short", "alice").await.unwrap();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in (caller..EVENTS - 1).step_by(CALLERS) {
                    reply(&engine, "long", &format!("r{i}"), "bookbag-local").await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    engine.shutdown().await;
    let store = db.store().await;
    assert_eq!(store.versions(&["long"]).await.unwrap()["long"], EVENTS as u64);

    // A fresh engine has nothing in memory: its first command loads.
    let rows_read = |metrics: &Metrics| metrics.load_rows_read.get();
    for (workspace, bound) in [("long", SNAPSHOT_EVERY_EVENTS + 1), ("short", 2)] {
        let metrics = Arc::new(Metrics::unregistered());
        let mut config = engine_config(&store, Metering::Enabled);
        config.metrics = metrics.clone();
        let fresh = Engine::start(store.clone(), config).await.unwrap();
        let answer = answer(reply(&fresh, workspace, "after-restart", "bookbag-local").await.unwrap());
        assert!(!answer.repeated);
        let read = rows_read(&metrics);
        assert!(read >= 1 && read <= bound, "{workspace}: loading read {read} rows (bound {bound})");
        fresh.shutdown().await;
    }
}

async fn removing_a_key_leaves_no_recoverable_secret(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    add_key(&engine, "ws", "alice", Provider::Openai, OPENAI_KEY).await.unwrap();
    let store = engine.store().clone();
    let sealed_first = dump_all_tables(&store).await;
    let secret_row = |dump: &str| dump.lines().find(|l| l.starts_with("key_secrets")).map(str::to_owned);
    let first_secret = secret_row(&sealed_first).expect("a sealed secret is stored while the key is active");
    // The row holds a ciphertext, never the key.
    assert!(!first_secret.contains(OPENAI_KEY));
    let ciphertext = sealed_value(&first_secret);

    add_key(&engine, "ws", "alice", Provider::Openai, OPENAI_KEY_2).await.unwrap();
    let after_supersede = dump_all_tables(&store).await;
    assert!(!after_supersede.contains(&ciphertext), "the superseded key's ciphertext is still stored");
    let second_ciphertext = sealed_value(&secret_row(&after_supersede).unwrap());
    remove_key(&engine, "ws", "alice", Provider::Openai).await.unwrap();
    engine.shutdown().await;
    let after_remove = dump_all_tables(&store).await;
    assert!(secret_row(&after_remove).is_none(), "a secret survived its key");
    for text in [ciphertext.as_str(), second_ciphertext.as_str(), OPENAI_KEY, OPENAI_KEY_2] {
        assert!(!after_remove.contains(text), "{text} is still in the database");
    }
    if let Some(path) = db.sqlite_path() {
        // secure_delete overwrote the freed pages: not even the file's bytes
        // hold the ciphertexts once the WAL is checkpointed (SQLite does it
        // as the WAL grows and when the last connection closes; a fresh
        // connection forces it here, whatever the pools were doing).
        store.db().close().await;
        let url = format!("sqlite://{}", path.display());
        let last = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&last).await.unwrap();
        last.close().await;
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for needle in [ciphertext.as_bytes(), second_ciphertext.as_bytes()] {
            for file in [&bytes, &wal] {
                assert!(!file.windows(needle.len()).any(|w| w == needle), "ciphertext left in the SQLite file");
            }
        }
    }
}

/// The `sealed` value of a dumped key_secrets row.
fn sealed_value(row: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(row.split_once(' ').unwrap().1).unwrap();
    json["sealed"].as_str().unwrap().to_owned()
}

both_backends!(
    projections_catch_up_after_a_crash_between_commit_and_projection,
    loading_a_long_history_reads_a_snapshot_and_a_short_tail,
    removing_a_key_leaves_no_recoverable_secret
);

/// The gap-safe reader waits only for transactions of its own database: a
/// long transaction of another application on the same Postgres server
/// never stalls the projections (one in this database does, and must).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_elsewhere_on_the_server_does_not_stall_readers() {
    billing_testkit::init_logs();
    let db = TestDb::new(Backend::Postgres).await;
    let elsewhere = TestDb::new(Backend::Postgres).await;
    let other = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&elsewhere.url).await.unwrap();
    let mut open = other.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *open).await.unwrap();

    let store = db.store().await;
    let mut config = engine_config(&store, Metering::Enabled);
    config.run_projector = false;
    let engine = Engine::start(store.clone(), config).await.unwrap();
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g", 10).await.unwrap();
    engine.shutdown().await;
    let projector = billing_engine::projection::Projector::new(store.clone(), "check");
    let caught_up = tokio::time::timeout(std::time::Duration::from_secs(5), projector.catch_up(&store, |_| {})).await;
    assert!(caught_up.is_ok(), "a transaction of another database stalled the projector");
    assert_eq!(projected(&store, "ws").await.balance.balance.get(), 10);
    open.rollback().await.unwrap();
}

/// SQLite: the writer never checkpoints the WAL itself (that would stall
/// the batch whose commit crosses the threshold); a connection of its own
/// does, in the background. Read with `immutable=1`, which ignores the WAL,
/// the database file alone holds every committed event soon after the
/// writes, although they are far fewer than the 1,000 pages SQLite's own
/// automatic checkpoint would wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_in_the_background_not_in_the_writer() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    billing_testkit::init_logs();
    let db = TestDb::new(Backend::Sqlite).await;
    let engine = engine(&db).await;
    let store = engine.store().clone();
    let billing_engine::db::Db::Sqlite(lite) = store.db() else { unreachable!("a SQLite test database") };
    let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&lite.writer).await.unwrap();
    assert_eq!(autocheckpoint, 0, "the writer's commits never checkpoint");
    create(&engine, "ws", "alice").await.unwrap();
    for i in 0..50 {
        reply(&engine, "ws", &format!("r{i}"), "bookbag-local").await.unwrap();
    }
    engine.shutdown().await;

    let path = db.sqlite_path().unwrap();
    let file_only = SqliteConnectOptions::new().filename(&path).read_only(true).immutable(true);
    let started = std::time::Instant::now();
    loop {
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(file_only.clone()).await.unwrap();
        let in_file: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap_or(0);
        pool.close().await;
        if in_file == 51 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the file holds {in_file} of 51 events");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.db().close().await;
}
