//! A provider key reaches no log line and no answer, except the runtime
//! token's `api_key` on a byo reply; neither does a bearer token.

use billing_testkit::{
    both_backends, key_fragments, Backend, TestDb, ANTHROPIC_KEY, ANTHROPIC_KEY_2, OPENAI_KEY, OPENAI_KEY_2,
    PLAINTEXT_KEYS,
};
use serde_json::{json, Value};

use crate::helpers::*;

/// Everything a careless caller might do with a key, plus the normal life
/// of two keys per provider.
async fn use_and_misuse_keys(app: &TestApp) {
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 100).await;
    for (provider, key) in [("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY)] {
        app.add_key("acme", "alice", provider, key).await.expect(201);
        app.add_key("acme", "alice", provider, key).await.expect(200);
    }
    app.set_byo("acme", "alice", true).await;
    for (i, model) in ["gpt-4o", "claude-sonnet-4"].into_iter().enumerate() {
        app.reply("acme", &format!("r{i}"), model, Token::Runtime).await.expect(200);
        app.reply("acme", &format!("r{i}"), model, Token::Runtime).await.expect(200);
        app.reply("acme", &format!("r{i}"), model, Token::Api).await.expect(200);
    }
    app.add_key("acme", "alice", "openai", OPENAI_KEY_2).await.expect(201);
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY_2).await.expect(201);
    app.reply("acme", "r0", "gpt-4o", Token::Runtime).await.expect(200);
    app.delete("/v1/workspaces/acme/keys/anthropic").actor("alice").send().await.expect(204);

    // Keys in the wrong places.
    app.add_key("acme", "alice", "openai", ANTHROPIC_KEY).await.expect_error(422, "invalid_key_format");
    app.add_key("acme", "alice", "anthropic", OPENAI_KEY).await.expect_error(422, "invalid_key_format");
    app.add_key("acme", "alice", "mistral", OPENAI_KEY).await.expect_error(422, "unknown_provider");
    app.add_key("acme", "mia", "openai", OPENAI_KEY).await.expect_error(403, "forbidden");
    app.add_key("nope", "alice", "openai", OPENAI_KEY).await.expect_error(404, "workspace_not_found");
    app.add_key("acme", "alice", "openai", &format!("{OPENAI_KEY} ")).await.expect_error(422, "invalid_key_format");
    app.add_key("acme", "alice", "openai", &format!("{OPENAI_KEY}\n")).await.expect_error(422, "invalid_key_format");
    app.put("/v1/workspaces/acme/keys/openai")
        .token(Token::Runtime)
        .json(json!({"api_key": OPENAI_KEY}))
        .send()
        .await
        .expect_error(403, "forbidden");
    app.put("/v1/workspaces/acme/keys/openai")
        .token(Token::Wrong)
        .json(json!({"api_key": OPENAI_KEY}))
        .send()
        .await
        .expect_error(401, "unauthorized");
    let keyed_bodies = [
        json!({"api_key": OPENAI_KEY, "extra": 1}),
        json!({ OPENAI_KEY: OPENAI_KEY }),
        json!({"api_key": [OPENAI_KEY]}),
        json!({"key": OPENAI_KEY}),
    ];
    for body in keyed_bodies {
        app.put("/v1/workspaces/acme/keys/openai")
            .actor("alice")
            .json(body)
            .send()
            .await
            .expect_error(400, "malformed_request");
    }
    app.put("/v1/workspaces/acme/keys/openai")
        .actor("alice")
        .raw(format!("{{\"api_key\": \"{OPENAI_KEY}"))
        .send()
        .await
        .expect_error(400, "malformed_request");
    let mut huge = format!("{{\"api_key\": \"{OPENAI_KEY}\"}}").into_bytes();
    huge.resize(70_000, b' ');
    app.put("/v1/workspaces/acme/keys/openai")
        .actor("alice")
        .raw(huge)
        .send()
        .await
        .expect_error(413, "payload_too_large");
    app.put("/v1/workspaces/acme/byo")
        .actor("alice")
        .json(json!({"enabled": OPENAI_KEY}))
        .send()
        .await
        .expect_error(400, "malformed_request");
    app.reply("acme", "r9", OPENAI_KEY, Token::Runtime).await.expect_error(422, "unknown_model");
    app.reply("acme", "r9", &format!("{ANTHROPIC_KEY} {ANTHROPIC_KEY}"), Token::Api)
        .await
        .expect_error(422, "unknown_model");
    app.post("/v1/workspaces/acme/replies")
        .json(json!({"reply_id": "r9", "agent_id": "a", "model": 1, ANTHROPIC_KEY: 1}))
        .send()
        .await
        .expect_error(400, "malformed_request");
    app.post("/v1/workspaces/acme/credits/grants")
        .json(json!({"grant_id": "g9", "amount": OPENAI_KEY}))
        .send()
        .await
        .expect_error(422, "invalid_amount");
    app.post("/v1/workspaces")
        .json(json!({"workspace_id": format!("{OPENAI_KEY}!"), "owner": "o"}))
        .send()
        .await
        .expect_error(422, "invalid_input");
    // The reads a dashboard makes.
    for path in ["keys", "billing-mode", "events?limit=1000", "usage", "credits/ledger"] {
        app.get(&format!("/v1/workspaces/acme/{path}")).send().await.expect(200);
    }
}

/// The answer with the one place a key may be, removed: the `api_key` of
/// a byo reply answered to the runtime token.
fn without_handed_key(text: &str) -> String {
    let Ok(mut body) = serde_json::from_str::<Value>(text) else { return text.to_owned() };
    if let Some(object) = body.as_object_mut() {
        if object.get("route") == Some(&json!("byo")) {
            object.remove("api_key");
        }
    }
    body.to_string()
}

fn assert_clean(place: &str, text: &str) {
    for secret in PLAINTEXT_KEYS.iter().copied().chain(key_fragments()) {
        assert!(!text.contains(secret), "{place} contains {secret:?}: {text}");
    }
    for token in [API_TOKEN, RUNTIME_TOKEN] {
        assert!(!text.contains(token), "{place} contains a bearer token");
    }
}

async fn no_key_reaches_a_log_or_an_answer(backend: Backend) {
    let (answers, logs) = with_captured_logs(move || async move {
        let db = TestDb::new(backend).await;
        let app = spawn(&db).await;
        use_and_misuse_keys(&app).await;
        let answers = app.responses();
        app.stop().await;
        answers
    })
    .await;
    assert!(answers.len() > 40);
    // The runtime did get its keys, and only there.
    let handed: Vec<String> = answers
        .iter()
        .filter_map(|a| serde_json::from_str::<Value>(a).ok())
        .filter_map(|a| a.get("api_key").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(handed, [OPENAI_KEY, OPENAI_KEY, ANTHROPIC_KEY, ANTHROPIC_KEY]);
    for answer in &answers {
        assert_clean("an answer", &without_handed_key(answer));
    }
    // The capture works: every level of every crate, each request with its id.
    let key_routes = logs.lines().filter(|l| l.contains("route=/v1/workspaces/{ws}/keys/{provider}")).count();
    assert!(key_routes >= 10, "{logs}");
    assert!(
        logs.lines().filter(|l| l.contains(": answered status=")).all(|l| l.contains("request{request_id=")),
        "{logs}"
    );
    assert!(logs.contains(" TRACE billing_engine"), "{logs}");
    for line in logs.lines() {
        assert_clean("a log line", line);
    }
}

both_backends!(no_key_reaches_a_log_or_an_answer);
