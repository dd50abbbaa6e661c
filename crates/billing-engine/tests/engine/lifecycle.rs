//! A workspace's life through the engine: commands are durable, queries
//! read the projections and see every answered command.

use billing_domain::{Channel, Provider, Route};
use billing_testkit::{both_backends, engine, Backend, TestDb, ANTHROPIC_KEY, OPENAI_KEY};

use crate::helpers::*;

async fn credits_byo_and_local_replies_end_to_end(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "acme", "alice").await.unwrap();
    grant(&engine, "acme", "g1", 12).await.unwrap();
    let metered = answer(reply(&engine, "acme", "r1", "gpt-4o").await.unwrap());
    assert_eq!((metered.route, metered.credits_charged.get(), metered.balance.get()), (Route::Credits, 5, 7));
    let local = answer(reply(&engine, "acme", "r2", "bookbag-local").await.unwrap());
    assert_eq!((local.route, local.credits_charged.get(), local.list_cost.get()), (Route::Local, 0, 1));

    add_key(&engine, "acme", "alice", Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    set_byo(&engine, "acme", "alice", true).await.unwrap();
    let byo = answer(reply_as(&engine, "acme", "r3", "claude-sonnet-4", Channel::Runtime).await.unwrap());
    assert_eq!(byo.route, Route::Byo);
    assert_eq!(byo.api_key.as_ref().map(|k| k.expose()), Some(ANTHROPIC_KEY));
    assert_eq!(code(reply(&engine, "acme", "r4", "gpt-4o").await), "no_key_for_provider");

    let credits = engine.credits(&ws("acme")).await.unwrap();
    assert_eq!((credits.balance, credits.granted, credits.spent), (7, 12, 5));
    let ledger = engine.ledger(&ws("acme"), 0, 100).await.unwrap();
    let amounts: Vec<i64> = ledger.entries.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, vec![12, -5]);
    assert_eq!(ledger.next_after, None);
    let mode = engine.billing_mode(&ws("acme")).await.unwrap();
    assert!(mode.byo_enabled);
    assert_eq!(mode.providers["anthropic"].active_key.as_deref(), Some("sk-ant-...3333"));
    assert_eq!(mode.providers["openai"].active_key, None);
    let usage = engine.usage(&ws("acme"), None, None).await.unwrap();
    assert_eq!(usage.routes["byo"].replies, 1);
    assert_eq!(usage.routes["byo"].list_cost, 6);
    assert_eq!(usage.routes["credits"].credits_charged, 5);
    assert_eq!(usage.routes["local"].replies, 1);
    engine.shutdown().await;
}

async fn a_key_added_again_supersedes_and_removal_shreds(backend: Backend) {
    let db = TestDb::new(backend).await;
    let engine = engine(&db).await;
    create(&engine, "acme", "alice").await.unwrap();
    add_key(&engine, "acme", "alice", Provider::Openai, OPENAI_KEY).await.unwrap();
    add_key(&engine, "acme", "alice", Provider::Openai, billing_testkit::OPENAI_KEY_2).await.unwrap();
    let keys = engine.keys(&ws("acme")).await.unwrap().keys;
    let statuses: Vec<&str> = keys.iter().map(|k| k.status.as_str()).collect();
    assert_eq!(statuses, vec!["active", "superseded"], "newest first");
    remove_key(&engine, "acme", "alice", Provider::Openai).await.unwrap();
    let keys = engine.keys(&ws("acme")).await.unwrap().keys;
    assert_eq!(keys[0].status.as_str(), "removed");
    assert_eq!(code(remove_key(&engine, "acme", "alice", Provider::Openai).await), "key_not_found");
    engine.shutdown().await;
}

both_backends!(credits_byo_and_local_replies_end_to_end, a_key_added_again_supersedes_and_removal_shreds);
