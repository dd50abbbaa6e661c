//! A restart on the same database keeps everything: projections,
//! idempotency and the sealed keys.

use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY, OPENAI_KEY};
use serde_json::{json, Value};

use crate::helpers::*;

const QUERIES: [&str; 7] = [
    "/v1/workspaces/acme/keys",
    "/v1/workspaces/acme/billing-mode",
    "/v1/workspaces/acme/credits",
    "/v1/workspaces/acme/credits/ledger",
    "/v1/workspaces/acme/usage",
    "/v1/workspaces/acme/events?limit=1000",
    "/v1/models",
];

async fn snapshot(app: &TestApp) -> Vec<Value> {
    let mut answers = Vec::new();
    for path in QUERIES {
        answers.push(app.get(path).send().await.expect(200).body);
    }
    answers
}

async fn a_restart_keeps_everything(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    app.grant("acme", "g1", 20).await;
    let charged = app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    let byo = app.reply("acme", "r2", "claude-haiku-4", Token::Runtime).await.expect(200);
    let before = snapshot(&app).await;
    app.stop().await;

    let app = spawn(&db).await;
    assert_eq!(snapshot(&app).await, before);
    // Idempotency survives: the same answers, nothing charged again.
    assert_eq!(app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200).body, charged.body);
    assert_eq!(app.reply("acme", "r2", "claude-haiku-4", Token::Runtime).await.expect(200).body, byo.body);
    let grant =
        app.post("/v1/workspaces/acme/credits/grants").json(json!({"grant_id": "g1", "amount": 20})).send().await;
    assert_eq!(grant.expect(201).body, json!({"balance": 20}));
    app.post("/v1/workspaces/acme/credits/grants")
        .json(json!({"grant_id": "g1", "amount": 21}))
        .send()
        .await
        .expect_error(409, "idempotency_conflict");
    // Roles survive: mia is still a member only, alice still the admin.
    app.put("/v1/workspaces/acme/byo")
        .actor("mia")
        .json(json!({"enabled": false}))
        .send()
        .await
        .expect_error(403, "forbidden");
    app.post("/v1/workspaces")
        .json(json!({"workspace_id": "acme", "owner": "x"}))
        .send()
        .await
        .expect_error(409, "workspace_exists");
    // The sealed key still opens for the runtime.
    let next = app.reply("acme", "r3", "gpt-4o", Token::Runtime).await.expect(200);
    assert_eq!(next.body["api_key"], OPENAI_KEY);
    assert_eq!(
        app.get("/v1/workspaces/acme/credits").send().await.body,
        json!({"balance": 15, "granted": 20, "spent": 5})
    );
    app.stop().await;
}

both_backends!(a_restart_keeps_everything);
