//! The plans of the statements that read the whole log in its global order
//! (the projector's scan every few seconds, catch-up, the relay, the head):
//! Postgres must answer them from the `events_global_order` index, never by
//! reading and sorting the whole table, or their cost grows with the log.

use billing_engine::store::postgres_log_reads;
use billing_engine::Db;
use billing_testkit::{Backend, TestDb};

/// Every node of an `EXPLAIN (FORMAT JSON)` plan, with its children.
fn nodes<'a>(plan: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
    into.push(plan);
    if let Some(children) = plan.get("Plans").and_then(|p| p.as_array()) {
        for child in children {
            nodes(child, into);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_the_log_in_global_order_use_its_index_not_the_whole_table() {
    billing_testkit::init_logs();
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let Db::Postgres(pg) = store.db() else { unreachable!("a Postgres test database") };
    // 60,000 events in 30 transactions over 100 workspaces: enough rows that
    // a scan of the table costs far more than the index.
    for t in 0..30i64 {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT 'Workspace', 'w' || (n % 100), n / 100 + 1, 'ReplyServed', '1', '{}', '{}' \
             FROM generate_series($1::bigint, $2::bigint) n",
        )
        .bind(t * 2_000)
        .bind(t * 2_000 + 1_999)
        .execute(&pg.pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE events").execute(&pg.pool).await.unwrap();
    // A cursor in the middle of the log.
    let (tx_id, position): (i64, i64) = sqlx::query_as(
        "SELECT (tx_id::text)::bigint, position FROM events ORDER BY events.tx_id, events.position OFFSET 30000 LIMIT 1",
    )
    .fetch_one(&pg.pool)
    .await
    .unwrap();

    for (name, sql) in postgres_log_reads() {
        let plan: serde_json::Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .bind("Workspace")
            .bind(tx_id)
            .bind(position)
            .bind(2_000i64)
            .fetch_one(&pg.pool)
            .await
            .unwrap();
        let mut all = Vec::new();
        nodes(&plan[0]["Plan"], &mut all);
        let kind = |n: &serde_json::Value| n["Node Type"].as_str().unwrap_or_default().to_owned();
        let on_events = |n: &&&serde_json::Value| n["Relation Name"].as_str() == Some("events");
        let sorts: Vec<_> = all.iter().filter(|n| kind(n) == "Sort").collect();
        assert!(sorts.is_empty(), "{name}: the plan sorts rows: {plan:#}");
        let scans: Vec<String> = all.iter().filter(on_events).map(|n| kind(n)).collect();
        assert!(!scans.iter().any(|k| k.contains("Seq Scan")), "{name}: the plan scans the table: {plan:#}");
        let by_index = all.iter().filter(on_events).any(|n| n["Index Name"].as_str() == Some("events_global_order"));
        assert!(by_index, "{name}: the plan does not read events_global_order: {plan:#}");
    }
}
