//! Provider keys: formats, masking, superseding, removal.

use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY, ANTHROPIC_KEY_2, OPENAI_KEY, OPENAI_KEY_2};
use serde_json::json;

use crate::helpers::*;

async fn a_key_is_stored_masked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let added = app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    let fields: Vec<&String> = added.body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["key_id", "masked", "provider", "superseded_key_id"]);
    assert_eq!(added.body["provider"], "openai");
    assert_eq!(added.body["masked"], "sk-proj-...1111");
    assert_eq!(added.body["superseded_key_id"], json!(null));
    let anthropic = app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    assert_eq!(anthropic.body["masked"], "sk-ant-...3333");
    let listed = app.get("/v1/workspaces/acme/keys").send().await.expect(200);
    let keys = listed.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["provider"], "anthropic", "newest first");
    assert_eq!(keys[1]["key_id"], added.body["key_id"]);
    assert_eq!(keys[1]["status"], "active");
    assert_eq!(keys[1]["added_by"], "alice");
    assert_eq!(keys[1]["ended_at"], json!(null));
    app.stop().await;
}

async fn the_same_key_again_stores_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let first = app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    let before = app.event_count("acme").await;
    let again = app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(200);
    assert_eq!(again.body, first.body);
    assert_eq!(app.event_count("acme").await, before);
    app.stop().await;
}

async fn a_new_key_supersedes_the_active_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let first = app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    let second = app.add_key("acme", "alice", "openai", OPENAI_KEY_2).await.expect(201);
    assert_eq!(second.body["superseded_key_id"], first.body["key_id"]);
    assert_ne!(second.body["key_id"], first.body["key_id"]);
    assert_eq!(second.body["masked"], "sk-...2222");
    assert_eq!(app.event_types("acme").await, ["WorkspaceCreated", "KeyAdded", "KeySuperseded", "KeyAdded"]);
    let keys = app.get("/v1/workspaces/acme/keys").send().await.expect(200).body["keys"].clone();
    let statuses: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["active", "superseded"]);
    assert!(keys[1]["ended_at"].is_string());
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(mode.body["providers"]["openai"]["active_key"], "sk-...2222");
    app.stop().await;
}

async fn keys_are_removed_and_only_active_ones_can_be(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.delete("/v1/workspaces/acme/keys/anthropic").actor("alice").send().await.expect_error(404, "key_not_found");
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY_2).await.expect(201);
    let removed = app.delete("/v1/workspaces/acme/keys/anthropic").actor("alice").send().await.expect(204);
    assert_eq!(removed.text, "");
    app.delete("/v1/workspaces/acme/keys/anthropic").actor("alice").send().await.expect_error(404, "key_not_found");
    let keys = app.get("/v1/workspaces/acme/keys").send().await.expect(200).body["keys"].clone();
    assert_eq!(keys[0]["status"], "removed");
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(mode.body["providers"]["anthropic"]["active_key"], json!(null));
    app.stop().await;
}

async fn keys_must_fit_their_provider(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for provider in ["mistral", "OpenAI", "local", "openai%20", "a%20b"] {
        app.add_key("acme", "alice", provider, OPENAI_KEY).await.expect_error(422, "unknown_provider");
        app.delete(&format!("/v1/workspaces/acme/keys/{provider}"))
            .actor("alice")
            .send()
            .await
            .expect_error(422, "unknown_provider");
    }
    let bad_openai =
        [ANTHROPIC_KEY, "sk-short", "pk-proj-TESTSECRETopenaiAAAA1111", "sk-proj-TEST SECRET openai AAAA", ""];
    for key in bad_openai {
        app.add_key("acme", "alice", "openai", key).await.expect_error(422, "invalid_key_format");
    }
    for key in [OPENAI_KEY, "sk-ant-short", "sk-ant-TESTSECRET\tanthropicC3333"] {
        app.add_key("acme", "alice", "anthropic", key).await.expect_error(422, "invalid_key_format");
    }
    let long = format!("sk-{}", "a".repeat(600));
    app.add_key("acme", "alice", "openai", &long).await.expect_error(422, "invalid_key_format");
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

both_backends!(
    a_key_is_stored_masked,
    the_same_key_again_stores_nothing,
    a_new_key_supersedes_the_active_one,
    keys_are_removed_and_only_active_ones_can_be,
    keys_must_fit_their_provider,
);
