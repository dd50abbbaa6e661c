//! Grants, the balance and the ledger.

use billing_testkit::{both_backends, Backend, TestDb};
use serde_json::{json, Value};

use crate::helpers::*;

async fn grants_add_to_the_balance_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let path = "/v1/workspaces/acme/credits/grants";
    let first =
        app.post(path).json(json!({"grant_id": "g1", "amount": 100, "reason": "welcome"})).send().await.expect(201);
    assert_eq!(first.body, json!({"balance": 100}));
    let second = app.post(path).json(json!({"grant_id": "g2", "amount": 50})).send().await.expect(201);
    assert_eq!(second.body, json!({"balance": 150}));
    // A repeat answers exactly as the first time, whatever came since.
    let repeat =
        app.post(path).json(json!({"grant_id": "g1", "amount": 100, "reason": "welcome"})).send().await.expect(201);
    assert_eq!(repeat.body, first.body);
    let repeat_other_reason = app.post(path).json(json!({"grant_id": "g1", "amount": 100})).send().await.expect(201);
    assert_eq!(repeat_other_reason.body, first.body);
    app.post(path)
        .json(json!({"grant_id": "g1", "amount": 101}))
        .send()
        .await
        .expect_error(409, "idempotency_conflict");
    assert_eq!(app.event_types("acme").await, ["WorkspaceCreated", "CreditsGranted", "CreditsGranted"]);
    let credits = app.get("/v1/workspaces/acme/credits").send().await.expect(200);
    assert_eq!(credits.body, json!({"balance": 150, "granted": 150, "spent": 0}));
    app.stop().await;
}

async fn amounts_are_integers_from_1_to_10_pow_12(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let path = "/v1/workspaces/acme/credits/grants";
    let bad: [Value; 9] = [
        json!(0),
        json!(-5),
        json!(1.5),
        json!(1e3),
        json!("10"),
        json!(null),
        json!(true),
        json!(1_000_000_000_001_u64),
        json!(u64::MAX),
    ];
    for amount in bad {
        app.post(path)
            .json(json!({"grant_id": "g", "amount": amount}))
            .send()
            .await
            .expect_error(422, "invalid_amount");
    }
    let answer =
        app.post(path).json(json!({"grant_id": "max", "amount": 1_000_000_000_000_u64})).send().await.expect(201);
    assert_eq!(answer.body["balance"], 1_000_000_000_000_u64);
    app.stop().await;
}

async fn reasons_are_optional_and_bounded(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let path = "/v1/workspaces/acme/credits/grants";
    app.post(path).json(json!({"grant_id": "g1", "amount": 1, "reason": null})).send().await.expect(201);
    app.post(path).json(json!({"grant_id": "g2", "amount": 1, "reason": "x".repeat(1024)})).send().await.expect(201);
    app.post(path)
        .json(json!({"grant_id": "g3", "amount": 1, "reason": "x".repeat(1025)}))
        .send()
        .await
        .expect_error(422, "invalid_input");
    let events = app.get("/v1/workspaces/acme/events").send().await.expect(200).body["events"].clone();
    assert_eq!(events[2]["payload"]["reason"].as_str().map(str::len), Some(1024));
    app.stop().await;
}

async fn the_ledger_pages_credit_activity(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 20).await;
    app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.reply("acme", "r2", "bookbag-local", Token::Api).await.expect(200);
    app.reply("acme", "r3", "gpt-4o-mini", Token::Runtime).await.expect(200);
    let ledger = app.get("/v1/workspaces/acme/credits/ledger").send().await.expect(200);
    let entries = ledger.body["entries"].as_array().unwrap();
    assert_eq!(ledger.body["next_after"], json!(null));
    // The local reply is not credit-metered: it is not in the ledger.
    let amounts: Vec<i64> = entries.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [20, -5, -1]);
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["grant", "charge", "charge"]);
    assert_eq!(entries[0]["grant_id"], "g1");
    assert_eq!(entries[1]["reply_id"], "r1");
    assert_eq!(entries[1]["model"], "gpt-4o");
    assert_eq!(entries[2]["balance_after"], 14);
    let first = app.get("/v1/workspaces/acme/credits/ledger?limit=2").send().await.expect(200);
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 2);
    let next = first.body["next_after"].as_u64().expect("more follow");
    assert_eq!(next, first.body["entries"][1]["seq"].as_u64().unwrap());
    let rest = app.get(&format!("/v1/workspaces/acme/credits/ledger?after={next}&limit=2")).send().await.expect(200);
    assert_eq!(rest.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["entries"][0]["reply_id"], "r3");
    assert_eq!(rest.body["next_after"], json!(null));
    let credits = app.get("/v1/workspaces/acme/credits").send().await.expect(200);
    assert_eq!(credits.body, json!({"balance": 14, "granted": 20, "spent": 6}));
    app.stop().await;
}

both_backends!(
    grants_add_to_the_balance_once,
    amounts_are_integers_from_1_to_10_pow_12,
    reasons_are_optional_and_bounded,
    the_ledger_pages_credit_activity,
);
