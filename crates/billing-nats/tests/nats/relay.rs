//! The relay: every stored event on the stream exactly once, in order,
//! through crashes of the relay and outages of NATS.

use billing_domain::Metering;
use billing_engine::Engine;
use billing_reliability::nats::OwnNats;
use billing_testkit::{both_backends, engine, engine_config, Backend, TestDb};
use std::time::Duration;

use crate::helpers::*;

const WORKSPACES: [&str; 4] = ["w1", "w2", "w.3", "w:4"];

async fn a_workload_reaches_the_stream_once_and_in_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    let stream = TestStream::on(SHARED_NATS);
    let (stop, relay) = start_relay(&engine, &stream.config);
    workload(&engine, &WORKSPACES, 150, 16).await;
    let total = engine.store().event_count().await.unwrap();
    assert_eq!(stream.wait_for(total, Duration::from_secs(30)).await, total);
    assert_stream_mirrors_the_log(&stream, &engine, &WORKSPACES).await;
    stop.send(true).unwrap();
    relay.await.unwrap();
    engine.shutdown().await;
}

/// The relay dies at a random moment while it is behind, and its cursor is
/// lost as if it died between publishing and saving it; events keep being
/// committed meanwhile. After a restart every event is on the stream once.
async fn a_relay_killed_while_behind_publishes_everything_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    let stream = TestStream::on(SHARED_NATS);
    // Committed with no relay running: the relay starts far behind.
    workload(&engine, &WORKSPACES[..2], 1_500, 16).await;
    for kill_after_ms in [5u64, 40] {
        let (_stop, relay) = start_relay(&engine, &stream.config);
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        relay.abort();
        let _ = relay.await;
        let store = engine.store();
        let name = format!("nats:{}", stream.config.stream);
        // Forget the cursor: the stream's last message must be enough.
        match store.db() {
            billing_engine::Db::Postgres(pg) => {
                sqlx::query("DELETE FROM relay_cursors").execute(&pg.pool).await.map(|_| ())
            }
            billing_engine::Db::Sqlite(lite) => {
                sqlx::query("DELETE FROM relay_cursors").execute(&lite.writer).await.map(|_| ())
            }
        }
        .unwrap();
        assert_eq!(store.relay_cursor(&name).await.unwrap(), billing_engine::Cursor::START);
        workload(&engine, &[["w.3", "w:4"][(kill_after_ms % 2) as usize]], 50, 4).await;
    }
    let (stop, relay) = start_relay(&engine, &stream.config);
    let total = engine.store().event_count().await.unwrap();
    assert_eq!(stream.wait_for(total, Duration::from_secs(30)).await, total);
    assert_stream_mirrors_the_log(&stream, &engine, &WORKSPACES).await;
    stop.send(true).unwrap();
    relay.await.unwrap();
    engine.shutdown().await;
}

async fn commands_keep_succeeding_while_nats_is_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let engine = Engine::start(store.clone(), engine_config(&store, Metering::Enabled)).await.unwrap();
    let mut nats = tokio::task::block_in_place(OwnNats::start);
    let stream = TestStream::on(&nats.url());
    let (stop, relay) = start_relay(&engine, &stream.config);
    workload(&engine, &WORKSPACES[..2], 100, 8).await;
    stream.wait_for(engine.store().event_count().await.unwrap(), Duration::from_secs(20)).await;
    nats.stop();
    // Every command succeeds while NATS is gone.
    let during = workload(&engine, &WORKSPACES[2..], 100, 8).await;
    assert_eq!(during, 2 * 100);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| nats.start_again());
    let total = engine.store().event_count().await.unwrap();
    assert_eq!(stream.wait_for(total, Duration::from_secs(60)).await, total, "the stream did not catch up");
    assert_stream_mirrors_the_log(&stream, &engine, &WORKSPACES).await;
    stop.send(true).unwrap();
    relay.await.unwrap();
    engine.shutdown().await;
}

both_backends!(
    a_workload_reaches_the_stream_once_and_in_order,
    a_relay_killed_while_behind_publishes_everything_once,
    commands_keep_succeeding_while_nats_is_down
);
