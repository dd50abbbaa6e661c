//! Replies: the answer's shape, idempotency, the decrypted key for the
//! runtime only, and usage.

use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY, ANTHROPIC_KEY_2, OPENAI_KEY};
use serde_json::json;

use crate::helpers::*;

async fn a_credits_reply_answers_the_contract_shape(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 12).await;
    let answer = app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    assert_eq!(
        answer.body,
        json!({
            "reply_id": "r1",
            "route": "credits",
            "provider": "openai",
            "model": "gpt-4o",
            "credits_charged": 5,
            "list_cost": 5,
            "balance": 7,
            "key_id": null,
        })
    );
    // The runtime token gets no api_key off the byo route.
    let runtime = app.reply("acme", "r2", "gpt-4o", Token::Runtime).await.expect(200);
    assert!(runtime.body.get("api_key").is_none(), "{}", runtime.text);
    assert_eq!(runtime.body["balance"], 2);
    app.reply("acme", "r3", "gpt-4o", Token::Api).await.expect_error(402, "insufficient_credits");
    app.stop().await;
}

async fn a_repeated_reply_answers_as_the_first_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 10).await;
    let first = app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.reply("acme", "r2", "gpt-4o", Token::Api).await.expect(200);
    // The balance is now 0: a repeat is not charged and not refused.
    let again = app.reply("acme", "r1", "gpt-4o", Token::Runtime).await.expect(200);
    assert_eq!(again.body, first.body);
    assert_eq!(app.get("/v1/workspaces/acme/credits").send().await.body["balance"], 0);
    let conflict = app
        .post("/v1/workspaces/acme/replies")
        .json(json!({"reply_id": "r1", "agent_id": "another-agent", "model": "gpt-4o"}))
        .send()
        .await;
    conflict.expect_error(409, "idempotency_conflict");
    app.reply("acme", "r1", "gpt-4o-mini", Token::Api).await.expect_error(409, "idempotency_conflict");
    assert_eq!(app.event_types("acme").await.iter().filter(|t| *t == "ReplyServed").count(), 2);
    app.stop().await;
}

async fn only_the_runtime_gets_the_key_of_a_byo_reply(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let key = app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    let runtime = app.reply("acme", "r1", "claude-sonnet-4", Token::Runtime).await.expect(200);
    assert_eq!(runtime.body["route"], "byo");
    assert_eq!(runtime.body["api_key"], ANTHROPIC_KEY);
    assert_eq!(runtime.body["key_id"], key.body["key_id"]);
    assert_eq!((runtime.body["credits_charged"].as_u64(), runtime.body["list_cost"].as_u64()), (Some(0), Some(6)));
    let platform = app.reply("acme", "r2", "claude-sonnet-4", Token::Api).await.expect(200);
    assert_eq!(platform.body["route"], "byo");
    assert!(platform.body.get("api_key").is_none(), "{}", platform.text);
    // A repeat: the key only for the runtime token.
    let repeat_platform = app.reply("acme", "r1", "claude-sonnet-4", Token::Api).await.expect(200);
    assert!(repeat_platform.body.get("api_key").is_none());
    let repeat_runtime = app.reply("acme", "r2", "claude-sonnet-4", Token::Runtime).await.expect(200);
    assert_eq!(repeat_runtime.body["api_key"], ANTHROPIC_KEY);
    // Once the key that served the reply is replaced, a repeat hands out null.
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY_2).await.expect(201);
    let after_rotation = app.reply("acme", "r1", "claude-sonnet-4", Token::Runtime).await.expect(200);
    assert_eq!(after_rotation.body["api_key"], json!(null));
    assert_eq!(after_rotation.body["key_id"], key.body["key_id"]);
    let new_reply = app.reply("acme", "r3", "claude-sonnet-4", Token::Runtime).await.expect(200);
    assert_eq!(new_reply.body["api_key"], ANTHROPIC_KEY_2);
    app.stop().await;
}

async fn models_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 10).await;
    for model in ["gpt-5", "", "GPT-4O", "gpt-4o ", OPENAI_KEY, &"m".repeat(256)] {
        let answer = app.reply("acme", "r1", model, Token::Api).await.expect_error(422, "unknown_model");
        assert!(!answer.text.contains("TESTSECRET"), "{}", answer.text);
    }
    app.reply("acme", "r1", &"m".repeat(257), Token::Api).await.expect_error(422, "invalid_input");
    let models = app.get("/v1/models").send().await.expect(200);
    let listed = models.body["models"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.contains(&json!({"id": "gpt-4o", "provider": "openai", "credit_cost": 5})));
    assert!(listed.contains(&json!({"id": "bookbag-local", "provider": "local", "credit_cost": 1})));
    app.stop().await;
}

async fn usage_counts_every_route(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 100).await;
    app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.reply("acme", "r2", "bookbag-local", Token::Api).await.expect(200);
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    app.reply("acme", "r3", "gpt-4o-mini", Token::Runtime).await.expect(200);
    let usage = app.get("/v1/workspaces/acme/usage").send().await.expect(200);
    assert_eq!(usage.body["from"], json!(null));
    assert_eq!(usage.body["to"], json!(null));
    let routes = &usage.body["routes"];
    assert_eq!(routes["credits"], json!({"replies": 1, "credits_charged": 5, "list_cost": 5}));
    assert_eq!(routes["local"], json!({"replies": 1, "credits_charged": 0, "list_cost": 1}));
    assert_eq!(routes["byo"], json!({"replies": 1, "credits_charged": 0, "list_cost": 1}));
    assert_eq!(routes["unmetered"], json!({"replies": 0, "credits_charged": 0, "list_cost": 0}));
    assert_eq!(usage.body["models"]["gpt-4o-mini"]["replies"], 1);
    // A period that ends before today counts nothing; one around today counts all.
    let past = app.get("/v1/workspaces/acme/usage?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").send().await;
    let past = past.expect(200);
    assert_eq!(past.body["routes"]["credits"]["replies"], 0);
    assert_eq!(past.body["from"], "2000-01-01T00:00:00Z");
    let now = chrono::Utc::now();
    let around = format!(
        "/v1/workspaces/acme/usage?from={}&to={}",
        (now - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let around = app.get(&around).send().await.expect(200);
    assert_eq!(around.body["routes"], usage.body["routes"]);
    app.stop().await;
}

both_backends!(
    a_credits_reply_answers_the_contract_shape,
    a_repeated_reply_answers_as_the_first_time,
    only_the_runtime_gets_the_key_of_a_byo_reply,
    models_are_checked,
    usage_counts_every_route,
);
