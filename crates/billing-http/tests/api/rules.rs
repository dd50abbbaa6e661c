//! Every rule of `reference/bring-your-own-keys.md`, end to end over HTTP.

use billing_domain::Metering;
use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY, OPENAI_KEY, OPENAI_KEY_2};
use serde_json::json;

use crate::helpers::*;

async fn balance(app: &TestApp) -> u64 {
    app.get("/v1/workspaces/acme/credits").send().await.expect(200).body["balance"].as_u64().unwrap()
}

/// "While it's on, replies that use a provider-backed model bypass credit
/// metering entirely ... Your Bookbag credit balance is untouched."
async fn byo_on_routes_provider_replies_to_the_key_for_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 3).await;
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    // Costlier than the balance: BYO does not look at credits.
    for (i, model) in ["gpt-4o", "claude-sonnet-4", "gpt-4o-mini", "claude-haiku-4"].into_iter().enumerate() {
        let answer = app.reply("acme", &format!("r{i}"), model, Token::Runtime).await.expect(200);
        assert_eq!(answer.body["route"], "byo", "{model}");
        assert_eq!(answer.body["credits_charged"], 0);
        assert_eq!(answer.body["balance"], 3);
        assert!(answer.body["key_id"].is_string());
    }
    assert_eq!(balance(&app).await, 3);
    // "BYO replies don't appear [in the ledger] because they aren't metered."
    let ledger = app.get("/v1/workspaces/acme/credits/ledger").send().await.expect(200);
    assert_eq!(ledger.body["entries"].as_array().unwrap().len(), 1);
    app.stop().await;
}

/// "If BYO is on but you have no key for the provider a given agent's
/// model needs, that agent won't be able to run on that provider."
async fn byo_without_the_providers_key_never_falls_back_to_credits(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 100).await;
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    let before = app.event_count("acme").await;
    app.reply("acme", "r1", "gpt-4o", Token::Runtime).await.expect_error(409, "no_key_for_provider");
    assert_eq!(app.event_count("acme").await, before);
    assert_eq!(balance(&app).await, 100);
    app.reply("acme", "r2", "claude-haiku-4", Token::Runtime).await.expect(200);
    // Removing the key stops that provider too.
    app.delete("/v1/workspaces/acme/keys/anthropic").actor("alice").send().await.expect(204);
    app.reply("acme", "r3", "claude-haiku-4", Token::Runtime).await.expect_error(409, "no_key_for_provider");
    assert_eq!(balance(&app).await, 100);
    app.stop().await;
}

/// "Replies on the Bookbag Local model never use external keys and aren't
/// metered either way."
async fn local_replies_are_never_metered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    // No credits at all, BYO off: still free.
    let off = app.reply("acme", "r1", "bookbag-local", Token::Runtime).await.expect(200);
    assert_eq!((off.body["route"].as_str(), off.body["credits_charged"].as_u64()), (Some("local"), Some(0)));
    assert_eq!(off.body["list_cost"], 1);
    assert!(off.body.get("api_key").is_none());
    // BYO on, no key at all: still local, still free.
    app.set_byo("acme", "alice", true).await;
    let on = app.reply("acme", "r2", "bookbag-local", Token::Runtime).await.expect(200);
    assert_eq!((on.body["route"].as_str(), on.body["key_id"].clone()), (Some("local"), json!(null)));
    assert!(on.body.get("api_key").is_none());
    assert_eq!(app.get("/v1/workspaces/acme/credits/ledger").send().await.body["entries"], json!([]));
    app.stop().await;
}

/// "With it off, provider-backed replies go back to running on Bookbag's
/// infrastructure and metering credits."
async fn byo_off_goes_back_to_credits(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 10).await;
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    app.reply("acme", "r1", "gpt-4o", Token::Runtime).await.expect(200);
    app.set_byo("acme", "alice", false).await;
    let answer = app.reply("acme", "r2", "gpt-4o", Token::Runtime).await.expect(200);
    assert_eq!(answer.body["route"], "credits");
    assert_eq!(answer.body["credits_charged"], 5);
    assert_eq!(answer.body["key_id"], json!(null));
    assert!(answer.body.get("api_key").is_none(), "no key off the byo route");
    assert_eq!(balance(&app).await, 5);
    app.reply("acme", "r3", "gpt-4o", Token::Runtime).await.expect(200);
    app.reply("acme", "r4", "gpt-4o", Token::Runtime).await.expect_error(402, "insufficient_credits");
    assert_eq!(balance(&app).await, 0);
    app.stop().await;
}

/// "Once saved, a key is shown only as a masked value — you can replace or
/// delete it but not read it back."
async fn keys_are_only_ever_shown_masked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    let reads = [
        "/v1/workspaces/acme/keys",
        "/v1/workspaces/acme/billing-mode",
        "/v1/workspaces/acme/events?limit=1000",
        "/v1/workspaces/acme/usage",
    ];
    for path in reads {
        for token in [Token::Api, Token::Runtime] {
            let answer = app.get(path).token(token).send().await.expect(200);
            for secret in [OPENAI_KEY, ANTHROPIC_KEY] {
                assert!(!answer.text.contains(secret), "{path} shows a key: {}", answer.text);
                assert!(!answer.text.contains(&secret[8..24]), "{path} shows part of a key: {}", answer.text);
            }
        }
    }
    let keys = app.get("/v1/workspaces/acme/keys").send().await.body["keys"].clone();
    let masked: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["masked"].as_str().unwrap()).collect();
    assert_eq!(masked, ["sk-ant-...3333", "sk-proj-...1111"]);
    app.stop().await;
}

/// "Add one active key per provider. Adding a new key for a provider
/// deactivates the previous one."
async fn a_new_key_deactivates_the_previous_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    let second = app.add_key("acme", "alice", "openai", OPENAI_KEY_2).await.expect(201);
    let answer = app.reply("acme", "r1", "gpt-4o", Token::Runtime).await.expect(200);
    assert_eq!(answer.body["key_id"], second.body["key_id"]);
    assert_eq!(answer.body["api_key"], OPENAI_KEY_2);
    let keys = app.get("/v1/workspaces/acme/keys").send().await.body["keys"].clone();
    let active = keys.as_array().unwrap().iter().filter(|k| k["status"] == "active").count();
    assert_eq!(active, 1);
    app.stop().await;
}

/// "Adding, replacing, or removing keys and toggling BYO requires an admin
/// role." (The full matrix is in `auth.rs`.)
async fn keys_and_byo_are_admin_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    app.add_key("acme", "mia", "openai", OPENAI_KEY).await.expect_error(403, "forbidden");
    app.put("/v1/workspaces/acme/byo")
        .actor("mia")
        .json(json!({"enabled": true}))
        .send()
        .await
        .expect_error(403, "forbidden");
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.delete("/v1/workspaces/acme/keys/openai").actor("mia").send().await.expect_error(403, "forbidden");
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(mode.body["byo_enabled"], false);
    assert_eq!(mode.body["providers"]["openai"]["active_key"], "sk-proj-...1111");
    app.stop().await;
}

/// "Adding and retraining data sources is always free — it never spent
/// credits in the first place."
async fn training_data_sources_is_free(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    for (who, source) in [("alice", "docs"), ("mia", "docs"), ("mia", "faq")] {
        let answer = app.post(&format!("/v1/workspaces/acme/data-sources/{source}/trainings")).actor(who).send().await;
        assert_eq!(answer.expect(202).body, json!({ "data_source_id": source }));
    }
    assert_eq!(app.event_types("acme").await.iter().filter(|t| *t == "DataSourceTrained").count(), 3);
    assert_eq!(
        app.get("/v1/workspaces/acme/credits").send().await.body,
        json!({"balance": 0, "granted": 0, "spent": 0})
    );
    app.stop().await;
}

/// "The self-hosted open-source build of Bookbag is unmetered — credits
/// aren't enforced and usage is unlimited."
async fn metering_disabled_serves_unmetered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_with(&db, Metering::Disabled).await;
    app.create("acme", "alice").await;
    for i in 0..3 {
        let answer = app.reply("acme", &format!("r{i}"), "gpt-4o", Token::Api).await.expect(200);
        assert_eq!(answer.body["route"], "unmetered");
        assert_eq!(answer.body["credits_charged"], 0);
        assert_eq!(answer.body["list_cost"], 5);
    }
    // Local is still local; BYO still wins over unmetered.
    assert_eq!(app.reply("acme", "l1", "bookbag-local", Token::Api).await.expect(200).body["route"], "local");
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    assert_eq!(app.reply("acme", "b1", "gpt-4o", Token::Api).await.expect(200).body["route"], "byo");
    app.reply("acme", "b2", "claude-haiku-4", Token::Api).await.expect_error(409, "no_key_for_provider");
    let usage = app.get("/v1/workspaces/acme/usage").send().await.expect(200);
    assert_eq!(usage.body["routes"]["unmetered"], json!({"replies": 3, "credits_charged": 0, "list_cost": 15}));
    assert_eq!(app.get("/v1/workspaces/acme/credits/ledger").send().await.body["entries"], json!([]));
    app.stop().await;
}

/// "The toggle is per workspace": one workspace's BYO and keys do not
/// change another's replies.
async fn byo_and_keys_are_workspace_scoped(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.create("globex", "bob").await;
    app.grant("globex", "g1", 10).await;
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await.expect(201);
    app.set_byo("acme", "alice", true).await;
    let other = app.reply("globex", "r1", "gpt-4o", Token::Runtime).await.expect(200);
    assert_eq!(other.body["route"], "credits");
    assert!(other.body.get("api_key").is_none());
    app.delete("/v1/workspaces/globex/keys/openai").actor("bob").send().await.expect_error(404, "key_not_found");
    app.stop().await;
}

both_backends!(
    byo_on_routes_provider_replies_to_the_key_for_nothing,
    byo_without_the_providers_key_never_falls_back_to_credits,
    local_replies_are_never_metered,
    byo_off_goes_back_to_credits,
    keys_are_only_ever_shown_masked,
    a_new_key_deactivates_the_previous_one,
    keys_and_byo_are_admin_only,
    training_data_sources_is_free,
    metering_disabled_serves_unmetered,
    byo_and_keys_are_workspace_scoped,
);
