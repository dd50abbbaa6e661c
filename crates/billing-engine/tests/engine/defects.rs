//! The weak points of cqrs-es 0.5 / postgres-es 0.5 / sqlite-es 0.5 that
//! docs/storage.md lists, each proven by running the crate, beside the
//! test that shows this engine does not share it.

use billing_domain::*;
use billing_engine::projection::{Projector, IN_PROCESS_PROJECTOR};
use billing_engine::repository::{BillingEventRepository, ProjectionQuery};
use billing_engine::store::{AppendBatch, NewEvent};
use billing_engine::{chain, Db, Store, StoreError};
use billing_testkit::{both_backends, engine, master_key, Backend, TestDb};
use chrono::{TimeZone, Utc};
use cqrs_es::persist::{
    GenericQuery, PersistedEventRepository, PersistedEventStore, PersistenceError, SerializedEvent,
};
use cqrs_es::{CqrsFramework, EventEnvelope, EventStore, View};
use postgres_es::{PostgresEventRepository, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlite_es::SqliteEventRepository;
use std::sync::Arc;

use crate::helpers::*;

/// postgres-es's snapshot table (from its repository's db/init.sql); the
/// engine does not use it, the crates need it.
const SNAPSHOTS_DDL: &str = "CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
    last_sequence bigint NOT NULL, current_snapshot bigint NOT NULL, payload json NOT NULL, \
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))";

fn services() -> WorkspaceServices {
    WorkspaceServices::new(
        Arc::new(Catalog::shipped()),
        Metering::Enabled,
        Arc::new(MasterKeyVault::new(&master_key())),
    )
}

fn command(action: Action) -> WorkspaceCommand {
    WorkspaceCommand {
        at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        actor: None,
        channel: Channel::Platform,
        action,
    }
}

fn create_cmd(workspace: &str) -> WorkspaceCommand {
    command(Action::CreateWorkspace { workspace_id: ws(workspace), owner: user("alice") })
}

fn grant_cmd(id: &str, amount: u64) -> WorkspaceCommand {
    command(Action::GrantCredits {
        grant_id: GrantId::parse(id).unwrap(),
        amount: Credits::new(amount),
        reason: String::new(),
    })
}

async fn setup(db: &TestDb) -> Store {
    let store = db.store().await;
    match store.db() {
        Db::Postgres(pg) => sqlx::query(SNAPSHOTS_DDL).execute(&pg.pool).await.map(|_| ()),
        Db::Sqlite(lite) => sqlx::query(SNAPSHOTS_DDL).execute(&lite.writer).await.map(|_| ()),
    }
    .unwrap();
    store
}

/// Runs create + grants of 10, 20, 30, 40, 50 (true balance 150) through
/// `cqrs`, then returns the balance a fresh store of the same kind loads.
async fn balance_through<ES: EventStore<Workspace>>(cqrs: CqrsFramework<Workspace, ES>, reload: ES, id: &str) -> u64 {
    cqrs.execute(id, create_cmd(id)).await.unwrap();
    for (i, amount) in [10, 20, 30, 40, 50].into_iter().enumerate() {
        cqrs.execute(id, grant_cmd(&format!("g{i}"), amount)).await.unwrap();
    }
    let mut context = reload.load_aggregate(id).await.unwrap();
    cqrs_es::AggregateContext::aggregate(&mut context).balance().get()
}

/// Defect 1, proven: the snapshot and aggregate stores apply every event
/// twice (once in `EventSink::write`, again in `commit` before saving), so
/// a reloaded workspace has more credits than it was granted. The plain
/// event store, which replays events, is right; so is the engine.
async fn snapshot_and_aggregate_stores_apply_events_twice(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = setup(&db).await;
    let (event, snapshot, aggregate) = match store.db() {
        Db::Postgres(pg) => {
            let repo = || PostgresEventRepository::new(pg.pool.clone());
            let event = balance_through(
                CqrsFramework::new(PersistedEventStore::new_event_store(repo()), vec![], services()),
                PersistedEventStore::new_event_store(repo()),
                "event-store",
            )
            .await;
            let snapshot = balance_through(
                CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo(), 2), vec![], services()),
                PersistedEventStore::new_snapshot_store(repo(), 2),
                "snapshot-store",
            )
            .await;
            let aggregate = balance_through(
                CqrsFramework::new(PersistedEventStore::new_aggregate_store(repo()), vec![], services()),
                PersistedEventStore::new_aggregate_store(repo()),
                "aggregate-store",
            )
            .await;
            (event, snapshot, aggregate)
        }
        Db::Sqlite(lite) => {
            let repo = || SqliteEventRepository::new(lite.writer.clone());
            let event = balance_through(
                CqrsFramework::new(PersistedEventStore::new_event_store(repo()), vec![], services()),
                PersistedEventStore::new_event_store(repo()),
                "event-store",
            )
            .await;
            let snapshot = balance_through(
                CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo(), 2), vec![], services()),
                PersistedEventStore::new_snapshot_store(repo(), 2),
                "snapshot-store",
            )
            .await;
            let aggregate = balance_through(
                CqrsFramework::new(PersistedEventStore::new_aggregate_store(repo()), vec![], services()),
                PersistedEventStore::new_aggregate_store(repo()),
                "aggregate-store",
            )
            .await;
            (event, snapshot, aggregate)
        }
    };
    eprintln!(
        "{backend:?}: true balance 150; event store {event}, snapshot store {snapshot}, aggregate store {aggregate}"
    );
    assert_eq!(event, 150, "the plain event store replays correctly");
    assert!(snapshot > 150, "snapshot store: expected the defect (balance above 150), got {snapshot}");
    assert!(aggregate > 150, "aggregate store: expected the defect (balance above 150), got {aggregate}");

    // The engine: snapshots are written from the state after each event is
    // applied once, and a fresh engine loads the same balance.
    let engine = billing_testkit::engine(&db).await;
    create(&engine, "engine", "alice").await.unwrap();
    for (i, amount) in [10, 20, 30, 40, 50].into_iter().enumerate() {
        grant(&engine, "engine", &format!("g{i}"), amount).await.unwrap();
    }
    engine.shutdown().await;
    let fresh = billing_testkit::engine(&db).await;
    // 150 covers exactly 25 replies at 6 credits; the 26th is refused.
    for i in 0..25 {
        reply(&fresh, "engine", &format!("r{i}"), "claude-sonnet-4").await.unwrap();
    }
    assert_eq!(code(reply(&fresh, "engine", "r25", "claude-sonnet-4").await), "insufficient_credits");
    fresh.shutdown().await;
}

fn raw_event(workspace: &str, sequence: usize, change: Change) -> SerializedEvent {
    let event = WorkspaceEvent { at: Utc::now(), by: Actor::Platform, change };
    SerializedEvent {
        aggregate_id: workspace.to_owned(),
        sequence,
        aggregate_type: "Workspace".to_owned(),
        event_type: cqrs_es::DomainEvent::event_type(&event),
        event_version: cqrs_es::DomainEvent::event_version(&event),
        payload: serde_json::to_value(&event).unwrap(),
        metadata: json!({}),
    }
}

fn created_change(workspace: &str) -> Change {
    Change::WorkspaceCreated { workspace_id: ws(workspace), owner: user("alice") }
}

fn granted_change(id: &str) -> Change {
    Change::CreditsGranted {
        grant_id: GrantId::parse(id).unwrap(),
        amount: Credits::new(1),
        reason: String::new(),
        balance_after: Credits::new(1),
    }
}

async fn stored_sequences(store: &Store, workspace: &str) -> Vec<u64> {
    store.workspace_events(workspace, 0, 1000).await.unwrap().iter().map(|e| e.sequence).collect()
}

/// Defect 2, proven: with a snapshot, postgres-es commits the events and
/// only then finds that the snapshot update matched no row. A writer whose
/// snapshot number is stale (another writer moved it between the two reads
/// of `load_aggregate`) is told `OptimisticLockError` while its event is
/// committed; a caller that retries applies the command twice. The engine
/// commits a batch only if every row of it is accepted.
async fn postgres_es_commits_before_it_checks_the_snapshot(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = setup(&db).await;
    let Db::Postgres(pg) = store.db() else { unreachable!() };
    let repo = PostgresEventRepository::new(pg.pool.clone());
    let snapshot = serde_json::to_value(Workspace::default()).unwrap();
    repo.persist::<Workspace>(&[raw_event("ws", 1, created_change("ws"))], Some(("ws".into(), snapshot.clone(), 1)))
        .await
        .unwrap();
    // Writer A moves the snapshot on (1 -> 2) with event 2.
    repo.persist::<Workspace>(&[raw_event("ws", 2, granted_change("a"))], Some(("ws".into(), snapshot.clone(), 2)))
        .await
        .unwrap();
    // Writer B read snapshot 1, then A's event 2: it writes event 3 and
    // believes it moves the snapshot 1 -> 2.
    let result =
        repo.persist::<Workspace>(&[raw_event("ws", 3, granted_change("b"))], Some(("ws".into(), snapshot, 2))).await;
    assert!(matches!(result, Err(PersistenceError::OptimisticLockError)), "{result:?}");
    assert_eq!(stored_sequences(&store, "ws").await, vec![1, 2, 3], "the refused write is committed anyway");

    // The engine's append: one refused row and nothing of the batch stays.
    let batch = |sequences: &[u64]| AppendBatch {
        events: sequences
            .iter()
            .map(|s| NewEvent {
                workspace: "other".into(),
                sequence: *s,
                event_type: "ByoEnabled",
                event_version: "1",
                payload: json!({"at": "2026-01-01T00:00:00Z", "by": "platform", "type": "ByoEnabled"}).to_string(),
                metadata: "{}".into(),
                idempotency_key: None,
            })
            .collect(),
        ..AppendBatch::default()
    };
    store.append(&batch(&[1])).await.unwrap();
    assert!(matches!(store.append(&batch(&[2, 1])).await, Err(StoreError::Conflict(_))));
    assert_eq!(stored_sequences(&store, "other").await, vec![1]);
}

/// Defect 3, proven: postgres-es and sqlite-es bind sequences as i32. An
/// event at sequence 4,294,967,300 is stored at sequence 4. The engine
/// keeps 64-bit sequences end to end.
async fn sequences_are_bound_as_i32(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = setup(&db).await;
    let big = 4_294_967_300usize;
    let event = raw_event("ws", big, created_change("ws"));
    match store.db() {
        Db::Postgres(pg) => PostgresEventRepository::new(pg.pool.clone()).persist::<Workspace>(&[event], None).await,
        Db::Sqlite(lite) => SqliteEventRepository::new(lite.writer.clone()).persist::<Workspace>(&[event], None).await,
    }
    .unwrap();
    assert_eq!(stored_sequences(&store, "ws").await, vec![4], "stored at the wrapped sequence");

    BillingEventRepository::new(store.clone())
        .persist::<Workspace>(&[raw_event("wide", big, created_change("wide"))], None)
        .await
        .unwrap_err(); // its predecessor is missing: refused, not wrapped
    let mut batch = AppendBatch::default();
    batch.events.push(NewEvent {
        workspace: "wide".into(),
        sequence: big as u64,
        event_type: "WorkspaceCreated",
        event_version: "1",
        payload: serde_json::to_string(&WorkspaceEvent {
            at: Utc::now(),
            by: Actor::Platform,
            change: created_change("wide"),
        })
        .unwrap(),
        metadata: "{}".into(),
        idempotency_key: None,
    });
    store.append(&batch).await.unwrap();
    assert_eq!(stored_sequences(&store, "wide").await, vec![big as u64]);
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct GrantsView {
    granted: u64,
}

impl View<Workspace> for GrantsView {
    fn update(&mut self, event: &EventEnvelope<Workspace>) {
        if let Change::CreditsGranted { amount, .. } = &event.payload.change {
            self.granted += amount.get();
        }
    }
}

/// Defect 4, proven: cqrs-es dispatches queries after the commit and drops
/// their errors. A view whose table is missing: `execute` answers Ok, the
/// event is committed, the view is never written, nothing says so. The
/// engine's projector follows the log instead: when its writes fail it
/// retries, and once the table is back it catches up on everything.
async fn query_errors_are_ignored_after_the_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = setup(&db).await;
    let Db::Postgres(pg) = store.db() else { unreachable!() };
    let view = PostgresViewRepository::<GrantsView, Workspace>::new("no_such_view", pg.pool.clone());
    let query = GenericQuery::new(Arc::new(view));
    let cqrs = CqrsFramework::new(
        PersistedEventStore::new_event_store(PostgresEventRepository::new(pg.pool.clone())),
        vec![Box::new(query)],
        services(),
    );
    cqrs.execute("crate", create_cmd("crate")).await.unwrap();
    cqrs.execute("crate", grant_cmd("g", 5)).await.expect("execute reports success although the view failed");
    assert_eq!(stored_sequences(&store, "crate").await, vec![1, 2]);

    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    engine.read_your_writes().await.unwrap();
    sqlx::query("ALTER TABLE credit_ledger RENAME TO credit_ledger_away").execute(&pg.pool).await.unwrap();
    grant(&engine, "ws", "g1", 7).await.expect("commands do not depend on the projections");
    grant(&engine, "ws", "g2", 8).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::query("ALTER TABLE credit_ledger_away RENAME TO credit_ledger").execute(&pg.pool).await.unwrap();
    let ledger = engine.ledger(&ws("ws"), 0, 10).await.unwrap();
    assert_eq!(ledger.entries.iter().map(|e| e.amount).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(engine.credits(&ws("ws")).await.unwrap().balance, 15);
    engine.shutdown().await;
}

/// Defect 5 (no global position, no chain), and cqrs-es's own traits done
/// right: a `CqrsFramework` over `BillingEventRepository` with the
/// `ProjectionQuery` writes events that carry positions, idempotency keys
/// and a valid hash chain, which the engine then serves from.
async fn cqrs_framework_over_the_billing_repository(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = setup(&db).await;
    let repo = BillingEventRepository::new(store.clone());
    let query = ProjectionQuery::new(Projector::new(store.clone(), IN_PROCESS_PROJECTOR));
    let cqrs = CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo, 2), vec![Box::new(query)], services());
    balance_through(
        cqrs,
        PersistedEventStore::new_snapshot_store(BillingEventRepository::new(store.clone()), 2),
        "tool",
    )
    .await;
    let events = store.workspace_events("tool", 0, 100).await.unwrap();
    assert_eq!(events.len(), 6);
    let mut prev = chain::GENESIS_HASH.to_owned();
    for e in &events {
        let expected = chain::link(&prev, "tool", e.sequence, &e.event_type, &e.event_version, &e.payload);
        assert_eq!(e.hash(), Some(expected.as_str()), "chain broken at {}", e.sequence);
        assert_eq!(e.prev_hash(), Some(prev.as_str()));
        prev = expected;
    }
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let engine = engine(&db).await;
    assert_eq!(engine.credits(&ws("tool")).await.unwrap().balance, 150);
    // The store's idempotency index also binds writes through cqrs-es.
    assert_eq!(code(grant(&engine, "tool", "g0", 11).await), "idempotency_conflict");
    engine.shutdown().await;
}

both_backends!(
    snapshot_and_aggregate_stores_apply_events_twice,
    sequences_are_bound_as_i32,
    cqrs_framework_over_the_billing_repository
);

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_es_commits_before_it_checks_the_snapshot() {
        billing_testkit::init_logs();
        super::postgres_es_commits_before_it_checks_the_snapshot(billing_testkit::Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn query_errors_are_ignored_after_the_commit() {
        billing_testkit::init_logs();
        super::query_errors_are_ignored_after_the_commit(billing_testkit::Backend::Postgres).await;
    }
}
