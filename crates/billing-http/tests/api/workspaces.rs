//! Creating workspaces and reading their event log.

use billing_testkit::{both_backends, Backend, TestDb};
use serde_json::json;

use crate::helpers::*;

async fn a_workspace_is_created_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    let answer =
        app.post("/v1/workspaces").json(json!({"workspace_id": "acme", "owner": "alice"})).send().await.expect(201);
    assert_eq!(answer.body, json!({"workspace_id": "acme", "owner": "alice"}));
    app.post("/v1/workspaces")
        .json(json!({"workspace_id": "acme", "owner": "bob"}))
        .send()
        .await
        .expect_error(409, "workspace_exists");
    assert_eq!(app.event_types("acme").await, ["WorkspaceCreated"]);
    // The owner is the first admin: an admin-only command works for them.
    app.set_byo("acme", "alice", true).await;
    app.put("/v1/workspaces/acme/byo")
        .actor("bob")
        .json(json!({"enabled": false}))
        .send()
        .await
        .expect_error(403, "forbidden");
    app.stop().await;
}

async fn every_workspace_route_knows_when_the_workspace_is_missing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for route in ["keys", "billing-mode", "credits", "credits/ledger", "usage", "events"] {
        app.get(&format!("/v1/workspaces/nope/{route}")).send().await.expect_error(404, "workspace_not_found");
    }
    let commands = [
        app.put("/v1/workspaces/nope/members/x").actor("alice").json(json!({"role": "member"})),
        app.delete("/v1/workspaces/nope/members/x").actor("alice"),
        app.put("/v1/workspaces/nope/keys/openai").actor("alice").json(json!({"api_key": billing_testkit::OPENAI_KEY})),
        app.delete("/v1/workspaces/nope/keys/openai").actor("alice"),
        app.put("/v1/workspaces/nope/byo").actor("alice").json(json!({"enabled": true})),
        app.post("/v1/workspaces/nope/credits/grants").json(json!({"grant_id": "g", "amount": 1})),
        app.post("/v1/workspaces/nope/replies").json(json!({"reply_id": "r", "agent_id": "a", "model": "gpt-4o"})),
        app.post("/v1/workspaces/nope/data-sources/d/trainings").actor("alice"),
    ];
    for call in commands {
        call.send().await.expect_error(404, "workspace_not_found");
    }
    app.stop().await;
}

async fn events_are_listed_in_order_and_paged(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for i in 0..5 {
        app.grant("acme", &format!("g{i}"), 10).await;
    }
    let all = app.get("/v1/workspaces/acme/events").send().await.expect(200);
    let events = all.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    for (i, event) in events.iter().enumerate() {
        let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["event_type", "event_version", "metadata", "payload", "sequence"]);
        assert_eq!(event["sequence"], i as u64 + 1);
    }
    assert_eq!(events[0]["event_type"], "WorkspaceCreated");
    assert_eq!(events[1]["event_type"], "CreditsGranted");
    assert_eq!(events[1]["payload"]["amount"], 10);
    let page = app.get("/v1/workspaces/acme/events?after=2&limit=2").send().await.expect(200);
    let sequences: Vec<u64> =
        page.body["events"].as_array().unwrap().iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, [3, 4]);
    let end = app.get("/v1/workspaces/acme/events?after=6").send().await.expect(200);
    assert_eq!(end.body, json!({"events": []}));
    app.stop().await;
}

both_backends!(
    a_workspace_is_created_once,
    every_workspace_route_knows_when_the_workspace_is_missing,
    events_are_listed_in_order_and_paged,
);
