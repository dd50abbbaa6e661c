//! Members and roles: admin only, never leaving a workspace without an admin.

use billing_testkit::{both_backends, Backend, TestDb};
use serde_json::json;

use crate::helpers::*;

async fn admins_set_and_remove_roles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let answer = app
        .put("/v1/workspaces/acme/members/mia")
        .actor("alice")
        .json(json!({"role": "member"}))
        .send()
        .await
        .expect(200);
    assert_eq!(answer.body, json!({"user": "mia", "role": "member"}));
    let promoted = app
        .put("/v1/workspaces/acme/members/mia")
        .actor("alice")
        .json(json!({"role": "admin"}))
        .send()
        .await
        .expect(200);
    assert_eq!(promoted.body["role"], "admin");
    // mia is an admin now: she may demote alice.
    app.set_role("acme", "mia", "alice", "member").await;
    let removed = app.delete("/v1/workspaces/acme/members/alice").actor("mia").send().await.expect(204);
    assert_eq!(removed.text, "");
    assert_eq!(
        app.event_types("acme").await,
        ["WorkspaceCreated", "MemberRoleSet", "MemberRoleSet", "MemberRoleSet", "MemberRemoved"]
    );
    // alice is no member any more.
    app.put("/v1/workspaces/acme/byo")
        .actor("alice")
        .json(json!({"enabled": true}))
        .send()
        .await
        .expect_error(403, "forbidden");
    app.stop().await;
}

async fn setting_the_current_role_stores_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    let before = app.event_count("acme").await;
    let answer = app
        .put("/v1/workspaces/acme/members/mia")
        .actor("alice")
        .json(json!({"role": "member"}))
        .send()
        .await
        .expect(200);
    assert_eq!(answer.body, json!({"user": "mia", "role": "member"}));
    app.put("/v1/workspaces/acme/members/alice").actor("alice").json(json!({"role": "admin"})).send().await.expect(200);
    assert_eq!(app.event_count("acme").await, before);
    app.stop().await;
}

async fn the_last_admin_stays(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.set_role("acme", "alice", "mia", "member").await;
    let before = app.event_count("acme").await;
    app.put("/v1/workspaces/acme/members/alice")
        .actor("alice")
        .json(json!({"role": "member"}))
        .send()
        .await
        .expect_error(409, "last_admin");
    app.delete("/v1/workspaces/acme/members/alice").actor("alice").send().await.expect_error(409, "last_admin");
    assert_eq!(app.event_count("acme").await, before);
    app.stop().await;
}

async fn removing_a_stranger_is_member_not_found(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.delete("/v1/workspaces/acme/members/ghost").actor("alice").send().await.expect_error(404, "member_not_found");
    for role in ["owner", "Admin", "", "admins"] {
        app.put("/v1/workspaces/acme/members/mia")
            .actor("alice")
            .json(json!({ "role": role }))
            .send()
            .await
            .expect_error(422, "invalid_input");
    }
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

both_backends!(
    admins_set_and_remove_roles,
    setting_the_current_role_stores_nothing,
    the_last_admin_stays,
    removing_a_stranger_is_member_not_found,
);
