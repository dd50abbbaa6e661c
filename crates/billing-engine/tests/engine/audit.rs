//! The audit: replayed statements agree with the projections and with the
//! aggregate at every instant, tampering of any kind is found and named,
//! old event shapes still replay, and the table output is stable.

use billing_domain::*;
use billing_engine::audit::{replay, verify, Format, Problem, Range, Renderer, WorkspaceState};
use billing_engine::store::{AppendBatch, NewEvent};
use billing_engine::{chain, Db, Engine, Store};
use billing_testkit::{both_backends, engine, master_key, Backend, TestDb, OPENAI_KEY};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::Aggregate;
use serde_json::json;

use crate::helpers::*;

/// Appends `events` to `workspace` as the engine would: sequences from 1,
/// chained, `version` per event type unless `version` overrides it.
async fn append_history(store: &Store, workspace: &str, events: &[(serde_json::Value, &'static str, &'static str)]) {
    let mut batch = AppendBatch::default();
    let mut prev = chain::GENESIS_HASH.to_owned();
    for (i, (payload, event_type, version)) in events.iter().enumerate() {
        let sequence = i as u64 + 1;
        let hash = chain::link(&prev, workspace, sequence, event_type, version, payload);
        batch.events.push(NewEvent {
            workspace: workspace.to_owned(),
            sequence,
            event_type,
            event_version: version,
            payload: chain::canonical(payload),
            metadata: chain::metadata_text(&prev, &hash),
            idempotency_key: None,
        });
        prev = hash;
    }
    store.append(&batch).await.unwrap();
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + Duration::minutes(minute)
}

fn event(minute: i64, by: Actor, change: Change) -> (serde_json::Value, &'static str, &'static str) {
    let event = WorkspaceEvent { at: at(minute), by, change };
    let event_type = event.change.event_type();
    (serde_json::to_value(&event).unwrap(), event_type, event_version_of(event_type))
}

fn fixed_history() -> Vec<(serde_json::Value, &'static str, &'static str)> {
    let vault = MasterKeyVault::new(&master_key());
    let key = ProviderKey::parse(Provider::Openai, OPENAI_KEY).unwrap();
    let alice = || Actor::User(user("alice"));
    let served =
        |reply: &str, model: &str, provider, route, key_id: Option<&str>, charged, list, balance| Change::ReplyServed {
            reply_id: ReplyId::parse(reply).unwrap(),
            agent_id: AgentId::parse("support-bot").unwrap(),
            model: model.into(),
            provider,
            route,
            key_id: key_id.map(|k| KeyId::parse(k).unwrap()),
            credits_charged: Credits::new(charged),
            list_cost: Credits::new(list),
            balance_after: Credits::new(balance),
        };
    vec![
        event(0, Actor::Platform, Change::WorkspaceCreated { workspace_id: ws("acme"), owner: user("alice") }),
        event(
            1,
            Actor::Platform,
            Change::CreditsGranted {
                grant_id: GrantId::parse("plan-2026-03").unwrap(),
                amount: Credits::new(100),
                reason: "monthly plan".into(),
                balance_after: Credits::new(100),
            },
        ),
        event(2, Actor::Runtime, served("r1", "gpt-4o", ModelProvider::Openai, Route::Credits, None, 5, 5, 95)),
        event(3, Actor::Runtime, served("r2", "bookbag-local", ModelProvider::Local, Route::Local, None, 0, 1, 95)),
        event(
            4,
            alice(),
            Change::KeyAdded {
                key_id: KeyId::parse("key_1").unwrap(),
                provider: Provider::Openai,
                masked: key.masked(),
                fingerprint: vault.fingerprint(&ws("acme"), &key),
            },
        ),
        event(5, alice(), Change::ByoEnabled),
        event(6, Actor::Runtime, served("r3", "gpt-4o", ModelProvider::Openai, Route::Byo, Some("key_1"), 0, 5, 95)),
        event(7, alice(), Change::ByoDisabled),
        event(8, Actor::Runtime, served("r4", "gpt-4o-mini", ModelProvider::Openai, Route::Credits, None, 1, 1, 94)),
    ]
}

async fn statement_table_matches_the_golden_file(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    append_history(&store, "acme", &fixed_history()).await;
    let mut renderer = Renderer::new(Vec::new(), Format::Table);
    renderer.begin("acme").unwrap();
    let range = Range { as_of: Some(at(60)), ..Range::default() };
    let summary = replay(&store, "acme", range, |line| renderer.line(line).unwrap(), |_| {}).await.unwrap();
    let text = String::from_utf8(renderer.end(&summary).unwrap()).unwrap();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/engine/golden/statement.txt");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file (BLESS=1 writes it)");
    assert_eq!(text, expected, "statement table changed; rerun with BLESS=1 if intended");
    assert!(!text.contains(OPENAI_KEY));
}

/// A `CreditsGranted` stored years ago in shape 1 (no `reason`) still
/// replays, and the workspace still takes commands.
async fn a_version_one_event_still_replays(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let created = event(0, Actor::Platform, Change::WorkspaceCreated { workspace_id: ws("old"), owner: user("alice") });
    let v1_grant = json!({
        "at": "2021-06-01T10:00:00Z", "by": "platform", "type": "CreditsGranted",
        "grant_id": "g-2021", "amount": 40, "balance_after": 40
    });
    append_history(&store, "old", &[created, (v1_grant, "CreditsGranted", "1")]).await;
    let mut lines = Vec::new();
    let summary = replay(&store, "old", Range::default(), |l| lines.push(l.clone()), |_| {}).await.unwrap();
    assert_eq!(summary.closing_balance, 40);
    assert_eq!(lines[1].change, "grant g-2021: 40 credits");
    assert!(verify(&store, Some("old"), |_| {}).await.unwrap().problems.is_empty());
    let engine = engine(&db).await;
    assert_eq!(answer(reply(&engine, "old", "r", "gpt-4o").await.unwrap()).balance.get(), 35);
    engine.shutdown().await;
}

/// The state a fold of every event at or before `t` gives, by the aggregate.
fn aggregate_state_at(events: &[(u64, WorkspaceEvent)], t: DateTime<Utc>) -> WorkspaceState {
    let mut state = Workspace::default();
    let mut sequence = 0;
    for (seq, event) in events.iter().filter(|(_, e)| e.at <= t) {
        state.apply(event.clone());
        sequence = *seq;
    }
    WorkspaceState::of(&state, sequence, t)
}

async fn replay_agrees_with_projections_and_with_the_aggregate_at_every_instant(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g1", 40).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let caller = engine.clone();
        let model = ["gpt-4o", "claude-haiku-4", "bookbag-local", "gpt-4o-mini"][i % 4];
        tasks.push(tokio::spawn(async move { reply(&caller, "ws", &format!("r{i}"), model).await }));
        if i == 12 {
            add_key(&engine, "ws", "alice", Provider::Anthropic, billing_testkit::ANTHROPIC_KEY).await.unwrap();
            set_byo(&engine, "ws", "alice", true).await.unwrap();
        }
        if i == 20 {
            set_byo(&engine, "ws", "alice", false).await.unwrap();
            grant(&engine, "ws", "g2", 25).await.unwrap();
        }
    }
    for task in tasks {
        let _ = task.await.unwrap();
    }
    let store = engine.store().clone();
    let summary = replay(&store, "ws", Range::default(), |_| {}, |_| {}).await.unwrap();
    let credits = engine.credits(&ws("ws")).await.unwrap();
    assert_eq!(
        (summary.closing_balance, summary.state.granted, summary.state.spent),
        (credits.balance, credits.granted, credits.spent)
    );
    let usage = engine.usage(&ws("ws"), None, None).await.unwrap();
    for (route, totals) in &summary.totals.routes {
        let projected = &usage.routes[route];
        assert_eq!(
            (totals.replies, totals.credits_charged, totals.list_cost),
            (projected.replies, projected.credits_charged, projected.list_cost),
            "{route}"
        );
    }
    let mode = engine.billing_mode(&ws("ws")).await.unwrap();
    assert_eq!(summary.state.byo_enabled, mode.byo_enabled);

    let stored: Vec<(u64, WorkspaceEvent)> = store
        .workspace_events("ws", 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.sequence, e.decode().unwrap()))
        .collect();
    for (_, event) in &stored {
        let range = Range { as_of: Some(event.at), ..Range::default() };
        let as_of = replay(&store, "ws", range, |_| {}, |_| {}).await.unwrap().state;
        assert_eq!(as_of, aggregate_state_at(&stored, event.at), "as of {}", event.at);
    }
    engine.shutdown().await;
}

async fn sql(store: &Store, statement: &str) {
    match store.db() {
        Db::Postgres(pg) => sqlx::query(statement).execute(&pg.pool).await.map(|_| ()),
        Db::Sqlite(lite) => sqlx::query(statement).execute(&lite.writer).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A workspace with a little of everything, projected; then a clean verify.
async fn audited_workspace(db: &TestDb) -> (Engine, Store) {
    let engine = engine(db).await;
    create(&engine, "ws", "alice").await.unwrap();
    grant(&engine, "ws", "g1", 50).await.unwrap(); // seq 2
    for i in 0..6 {
        reply(&engine, "ws", &format!("r{i}"), "gpt-4o").await.unwrap(); // seq 3..8
    }
    grant(&engine, "ws", "g2", 10).await.unwrap(); // seq 9
    engine.read_your_writes().await.unwrap();
    let store = engine.store().clone();
    let report = verify(&store, None, |_| {}).await.unwrap();
    assert!(report.is_clean(), "an untouched database: {:?}", report.problems);
    (engine, store)
}

fn payload_column_update(backend: Backend, sequence: u64, set: &str) -> String {
    match backend {
        Backend::Postgres => format!(
            "UPDATE events SET payload = (payload::jsonb || '{set}'::jsonb)::json WHERE aggregate_id = 'ws' AND sequence = {sequence}"
        ),
        Backend::Sqlite => {
            format!("UPDATE events SET payload = json_patch(payload, '{set}') WHERE aggregate_id = 'ws' AND sequence = {sequence}")
        }
    }
}

async fn tampering_with_an_amount_is_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (engine, store) = audited_workspace(&db).await;
    sql(&store, &payload_column_update(backend, 2, r#"{"amount": 5000}"#)).await;
    let report = verify(&store, None, |_| {}).await.unwrap();
    assert!(
        report.problems.contains(&Problem::PayloadChanged { workspace: "ws".into(), sequence: 2 }),
        "{:?}",
        report.problems
    );
    assert!(report.problems.iter().all(|p| !matches!(p, Problem::PayloadChanged { sequence, .. } if *sequence != 2)));
    engine.shutdown().await;
}

async fn a_deleted_event_is_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (engine, store) = audited_workspace(&db).await;
    sql(&store, "DELETE FROM events WHERE aggregate_id = 'ws' AND sequence = 5").await;
    let report = verify(&store, None, |_| {}).await.unwrap();
    assert!(
        report.problems.contains(&Problem::EventMissing { workspace: "ws".into(), sequence: 5 }),
        "{:?}",
        report.problems
    );
    // Cutting off the newest event is found too: the projections saw it.
    sql(&store, "DELETE FROM events WHERE aggregate_id = 'ws' AND sequence = 9").await;
    let report = verify(&store, None, |_| {}).await.unwrap();
    assert!(
        report.problems.contains(&Problem::EventMissing { workspace: "ws".into(), sequence: 9 }),
        "{:?}",
        report.problems
    );
    engine.shutdown().await;
}

async fn swapped_payloads_are_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (engine, store) = audited_workspace(&db).await;
    // Through a copy: an UPDATE that reads the rows it writes would not swap.
    sql(&store, "CREATE TABLE swap_copy AS SELECT sequence, payload FROM events WHERE aggregate_id = 'ws' AND sequence IN (3, 6)").await;
    let swap = "UPDATE events SET payload = (SELECT s.payload FROM swap_copy s \
         WHERE s.sequence = CASE events.sequence WHEN 3 THEN 6 ELSE 3 END) \
         WHERE aggregate_id = 'ws' AND sequence IN (3, 6)";
    sql(&store, swap).await;
    let report = verify(&store, None, |_| {}).await.unwrap();
    for sequence in [3, 6] {
        assert!(
            report.problems.contains(&Problem::PayloadChanged { workspace: "ws".into(), sequence }),
            "{:?}",
            report.problems
        );
    }
    engine.shutdown().await;
}

async fn reordered_events_are_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (engine, store) = audited_workspace(&db).await;
    for statement in [
        "UPDATE events SET sequence = 1000 WHERE aggregate_id = 'ws' AND sequence = 4",
        "UPDATE events SET sequence = 4 WHERE aggregate_id = 'ws' AND sequence = 7",
        "UPDATE events SET sequence = 7 WHERE aggregate_id = 'ws' AND sequence = 1000",
    ] {
        sql(&store, statement).await;
    }
    let report = verify(&store, None, |_| {}).await.unwrap();
    for sequence in [4, 7] {
        assert!(
            report.problems.contains(&Problem::OrderChanged { workspace: "ws".into(), sequence }),
            "{:?}",
            report.problems
        );
    }
    engine.shutdown().await;
}

async fn an_edited_projection_row_is_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (engine, store) = audited_workspace(&db).await;
    sql(&store, "UPDATE credit_balances SET balance = balance + 100 WHERE workspace_id = 'ws'").await;
    sql(&store, "UPDATE credit_ledger SET amount = -1 WHERE workspace_id = 'ws' AND seq = 4").await;
    let report = verify(&store, None, |_| {}).await.unwrap();
    let tables: Vec<&str> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::ProjectionDisagrees { table, .. } => Some(*table),
            _ => None,
        })
        .collect();
    assert!(tables.contains(&"credit_balances") && tables.contains(&"credit_ledger"), "{:?}", report.problems);
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(text.iter().any(|t| t.contains("credit_ledger seq 4")), "{text:?}");
    assert_eq!(report.problems.len(), 2, "nothing else: {text:?}");
    engine.shutdown().await;
}

both_backends!(
    statement_table_matches_the_golden_file,
    a_version_one_event_still_replays,
    replay_agrees_with_projections_and_with_the_aggregate_at_every_instant,
    tampering_with_an_amount_is_found,
    a_deleted_event_is_found,
    swapped_payloads_are_found,
    reordered_events_are_found,
    an_edited_projection_row_is_found
);
