//! `GET /v1/workspaces/{ws}/statement`: the history folded from the events,
//! the same fold as `audit replay`.

use billing_testkit::{both_backends, Backend, TestDb, OPENAI_KEY};
use serde_json::json;

use crate::helpers::*;

async fn a_statement_explains_every_credit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.grant("acme", "g1", 20).await;
    app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.add_key("acme", "alice", "openai", OPENAI_KEY).await;
    app.set_byo("acme", "alice", true).await;
    app.reply("acme", "r2", "gpt-4o", Token::Runtime).await.expect(200);
    app.reply("acme", "r3", "bookbag-local", Token::Api).await.expect(200);

    let all = app.get("/v1/workspaces/acme/statement").token(Token::Runtime).send().await.expect(200);
    let lines = all.body["lines"].as_array().unwrap();
    let types: Vec<&str> = lines.iter().map(|l| l["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["WorkspaceCreated", "CreditsGranted", "ReplyServed", "KeyAdded", "ByoEnabled", "ReplyServed", "ReplyServed"]
    );
    let balances: Vec<u64> = lines.iter().map(|l| l["balance_after"].as_u64().unwrap()).collect();
    assert_eq!(balances, [0, 20, 15, 15, 15, 15, 15]);
    assert_eq!(
        (lines[2]["credits"].clone(), lines[5]["route"].clone(), lines[5]["list_cost"].clone()),
        (json!(-5), json!("byo"), json!(5))
    );
    assert_eq!(all.body["totals"]["routes"]["byo"], json!({"replies": 1, "credits_charged": 0, "list_cost": 5}));
    assert_eq!(all.body["totals"]["routes"]["local"]["replies"], 1);
    assert_eq!((all.body["opening_balance"].clone(), all.body["closing_balance"].clone()), (json!(0), json!(15)));
    assert_eq!(all.body["state"]["byo_enabled"], true);
    assert_eq!(all.body["state"]["keys"][0]["masked"], "sk-proj-...1111");
    assert!(!all.text.contains(OPENAI_KEY));
    assert_eq!(all.body["lines_truncated"], false);

    // A range: lines from the first reply on, opening at the balance then.
    let from = lines[2]["at"].as_str().unwrap().to_owned();
    let ranged = app.get(&format!("/v1/workspaces/acme/statement?from={from}")).send().await.expect(200);
    assert_eq!(ranged.body["lines"].as_array().unwrap().len(), 5);
    assert_eq!(ranged.body["opening_balance"], 20);

    app.get("/v1/workspaces/nope/statement").send().await.expect_error(404, "workspace_not_found");
    app.get("/v1/workspaces/acme/statement?from=yesterday").send().await.expect_error(422, "invalid_input");
    app.get("/v1/workspaces/acme/statement").token(Token::None).send().await.expect_error(401, "unauthorized");
    app.stop().await;
}

both_backends!(a_statement_explains_every_credit);
