//! The standalone projector: fed from the stream into another database, it
//! ends with the same tables as the engine's own projector, however often it
//! is killed, and with two instances sharing the work.

use billing_engine::projection::read_model;
use billing_nats::projector::NatsProjector;
use billing_testkit::{engine, Backend, TestDb};
use std::time::Duration;
use tokio::sync::watch;

use crate::helpers::*;

const WORKSPACES: [&str; 3] = ["p1", "p.2", "p3"];

async fn tables_built_from_the_stream_equal_the_engines(source: Backend, target: Backend) {
    let source_db = TestDb::new(source).await;
    let engine = engine(&source_db).await;
    let stream = TestStream::on(SHARED_NATS);
    let (stop_relay, relay) = start_relay(&engine, &stream.config);
    workload(&engine, &WORKSPACES, 400, 16).await;
    let total = engine.store().event_count().await.unwrap();
    assert_eq!(stream.wait_for(total, Duration::from_secs(30)).await, total);

    let target_db = TestDb::new(target).await;
    let target_store = target_db.store().await;
    // First instance: killed after its first batches.
    let first = NatsProjector::new(stream.config.clone(), "dash", target_store.clone());
    let (_stop, stopped) = watch::channel(false);
    let killed = tokio::spawn(async move { first.run(stopped, |_| {}).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    killed.abort();
    let _ = killed.await;
    // Then two instances share the consumer until everything is applied.
    let (stop, stopped) = watch::channel(false);
    let instances: Vec<_> = (0..2)
        .map(|_| {
            let projector = NatsProjector::new(stream.config.clone(), "dash", target_store.clone());
            let stopped = stopped.clone();
            tokio::spawn(async move { projector.run(stopped, |_| {}).await })
        })
        .collect();
    let offsets = billing_engine::projection::Projector::new(target_store.clone(), "check");
    let expected: Vec<u64> = {
        let mut v = Vec::new();
        for w in WORKSPACES {
            v.push(engine.store().versions(&[w]).await.unwrap()[w]);
        }
        v
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = offsets.offsets().await.unwrap();
        if WORKSPACES.iter().zip(&expected).all(|(w, e)| have.get(*w) == Some(e)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the projector did not catch up: {have:?} vs {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    for instance in instances {
        instance.await.unwrap().unwrap();
    }
    engine.read_your_writes().await.unwrap();
    for w in WORKSPACES {
        let in_process = read_model(engine.store(), w).await.unwrap();
        let from_stream = read_model(&target_store, w).await.unwrap();
        assert_eq!(from_stream, in_process, "{w}: the stream-fed tables differ");
    }
    stop_relay.send(true).unwrap();
    relay.await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sqlite_into_postgres() {
    billing_testkit::init_logs();
    tables_built_from_the_stream_equal_the_engines(Backend::Sqlite, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_postgres_into_sqlite() {
    billing_testkit::init_logs();
    tables_built_from_the_stream_equal_the_engines(Backend::Postgres, Backend::Sqlite).await;
}
