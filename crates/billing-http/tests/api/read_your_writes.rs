//! "After a command has answered success, a query to the same server shows
//! it": every command, immediately followed by the query that shows it.

use billing_testkit::{both_backends, Backend, TestDb, OPENAI_KEY, OPENAI_KEY_2};
use serde_json::json;

use crate::helpers::*;

async fn last_event_type(app: &TestApp, ws: &str) -> String {
    app.event_types(ws).await.pop().unwrap_or_default()
}

async fn every_command_shows_in_its_query_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    for round in 0..3 {
        let ws = format!("ws{round}");
        let path = |rest: &str| format!("/v1/workspaces/{ws}/{rest}");
        app.create(&ws, "alice").await;
        assert_eq!(app.get(&path("billing-mode")).send().await.expect(200).body["byo_enabled"], false);
        assert_eq!(app.get(&path("credits")).send().await.expect(200).body["balance"], 0);

        app.grant(&ws, "g1", 10).await;
        assert_eq!(app.get(&path("credits")).send().await.body["balance"], 10);
        assert_eq!(app.get(&path("credits/ledger")).send().await.body["entries"][0]["grant_id"], "g1");

        let key = app.add_key(&ws, "alice", "openai", OPENAI_KEY).await.expect(201);
        assert_eq!(app.get(&path("keys")).send().await.body["keys"][0]["key_id"], key.body["key_id"]);
        let mode = app.get(&path("billing-mode")).send().await;
        assert_eq!(mode.body["providers"]["openai"]["active_key"], "sk-proj-...1111");

        let second = app.add_key(&ws, "alice", "openai", OPENAI_KEY_2).await.expect(201);
        let keys = app.get(&path("keys")).send().await.body["keys"].clone();
        assert_eq!(
            (keys[0]["key_id"].clone(), keys[1]["status"].clone()),
            (second.body["key_id"].clone(), json!("superseded"))
        );

        app.set_byo(&ws, "alice", true).await;
        assert_eq!(app.get(&path("billing-mode")).send().await.body["byo_enabled"], true);

        app.reply(&ws, "r1", "gpt-4o", Token::Runtime).await.expect(200);
        assert_eq!(app.get(&path("usage")).send().await.body["routes"]["byo"]["replies"], 1);

        app.set_byo(&ws, "alice", false).await;
        app.reply(&ws, "r2", "gpt-4o", Token::Api).await.expect(200);
        assert_eq!(app.get(&path("credits")).send().await.body["balance"], 5);
        assert_eq!(app.get(&path("credits/ledger")).send().await.body["entries"][1]["reply_id"], "r2");
        assert_eq!(app.get(&path("usage")).send().await.body["routes"]["credits"]["replies"], 1);

        app.delete(&path("keys/openai")).actor("alice").send().await.expect(204);
        assert_eq!(app.get(&path("keys")).send().await.body["keys"][0]["status"], "removed");
        assert_eq!(app.get(&path("billing-mode")).send().await.body["providers"]["openai"]["active_key"], json!(null));

        app.set_role(&ws, "alice", "mia", "member").await;
        assert_eq!(last_event_type(&app, &ws).await, "MemberRoleSet");
        app.delete(&path("members/mia")).actor("alice").send().await.expect(204);
        assert_eq!(last_event_type(&app, &ws).await, "MemberRemoved");
        app.post(&path("data-sources/docs/trainings")).actor("alice").send().await.expect(202);
        assert_eq!(last_event_type(&app, &ws).await, "DataSourceTrained");
    }
    app.stop().await;
}

both_backends!(every_command_shows_in_its_query_at_once);
