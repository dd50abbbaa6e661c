//! The BYO toggle and the billing-mode query.

use billing_domain::Metering;
use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY};
use serde_json::json;

use crate::helpers::*;

async fn byo_is_toggled_and_shown(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(
        mode.body,
        json!({
            "byo_enabled": false,
            "changed_at": null,
            "changed_by": null,
            "metering": "enabled",
            "providers": {"openai": {"active_key": null}, "anthropic": {"active_key": null}},
        })
    );
    let answer =
        app.put("/v1/workspaces/acme/byo").actor("alice").json(json!({"enabled": true})).send().await.expect(200);
    assert_eq!(answer.body, json!({"byo_enabled": true}));
    app.add_key("acme", "alice", "anthropic", ANTHROPIC_KEY).await.expect(201);
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(mode.body["byo_enabled"], true);
    assert_eq!(mode.body["changed_by"], "alice");
    assert!(mode.body["changed_at"].is_string());
    assert_eq!(mode.body["providers"]["anthropic"]["active_key"], "sk-ant-...3333");
    let off =
        app.put("/v1/workspaces/acme/byo").actor("alice").json(json!({"enabled": false})).send().await.expect(200);
    assert_eq!(off.body, json!({"byo_enabled": false}));
    assert_eq!(app.get("/v1/workspaces/acme/billing-mode").send().await.body["byo_enabled"], false);
    app.stop().await;
}

async fn setting_byo_to_its_value_stores_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let off =
        app.put("/v1/workspaces/acme/byo").actor("alice").json(json!({"enabled": false})).send().await.expect(200);
    assert_eq!(off.body, json!({"byo_enabled": false}));
    assert_eq!(app.event_count("acme").await, 1);
    app.set_byo("acme", "alice", true).await;
    let on = app.put("/v1/workspaces/acme/byo").actor("alice").json(json!({"enabled": true})).send().await.expect(200);
    assert_eq!(on.body, json!({"byo_enabled": true}));
    assert_eq!(app.event_types("acme").await, ["WorkspaceCreated", "ByoEnabled"]);
    app.stop().await;
}

async fn metering_disabled_shows_in_the_billing_mode(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_with(&db, Metering::Disabled).await;
    app.create("acme", "alice").await;
    let mode = app.get("/v1/workspaces/acme/billing-mode").send().await.expect(200);
    assert_eq!(mode.body["metering"], "disabled");
    app.stop().await;
}

both_backends!(
    byo_is_toggled_and_shown,
    setting_byo_to_its_value_stores_nothing,
    metering_disabled_shows_in_the_billing_mode,
);
