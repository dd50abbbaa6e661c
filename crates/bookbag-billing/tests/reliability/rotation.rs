//! Rotating the master key, as docs/security.md tells an operator to do it
//! today (there is no re-seal command yet): restart with the new key, then
//! every workspace admin puts each provider key again. The same plaintext
//! under a new master key has a new fingerprint, so it supersedes the old
//! key: its ciphertext (sealed under the old master key) is deleted in the
//! same transaction, and the new one is sealed under the new master key.

use billing_reliability::dump::dump;
use billing_reliability::load::{Target, Token};
use billing_testkit::{Backend, TestDb, OPENAI_KEY};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// A second master key (base64 of 32 bytes), the one rotated to.
const NEW_MASTER_KEY: &str = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=";

async fn call(target: &Target, method: Method, path: &str, token: Token, actor: Option<&str>, body: Value) -> Value {
    let answer = target.send(method.clone(), path, Some(&body), token, actor).await.expect("an answer");
    assert!(answer.status < 300, "{method} {path}: {}", answer.text);
    answer.body
}

fn with_master_key(settings: &mut Settings, key: &str) {
    for (name, value) in settings.env.iter_mut() {
        if name == "BILLING_MASTER_KEY" {
            *value = key.to_owned();
        }
    }
}

/// Serves, adds a key, turns BYO on and has the runtime take the key.
async fn before_rotation(settings: &Settings) -> (billing_reliability::serve::ServeProcess, String) {
    let mut server = settings.start();
    let target = settings.target(&server);
    call(&target, Method::POST, "/v1/workspaces", Token::Api, None, json!({"workspace_id": "acme", "owner": "alice"}))
        .await;
    let added = call(
        &target,
        Method::PUT,
        "/v1/workspaces/acme/keys/openai",
        Token::Api,
        Some("alice"),
        json!({ "api_key": OPENAI_KEY }),
    )
    .await;
    call(&target, Method::PUT, "/v1/workspaces/acme/byo", Token::Api, Some("alice"), json!({"enabled": true})).await;
    let reply = json!({"reply_id": "before", "agent_id": "a", "model": "gpt-4o"});
    let served = call(&target, Method::POST, "/v1/workspaces/acme/replies", Token::Runtime, None, reply).await;
    assert_eq!(served["api_key"], OPENAI_KEY);
    assert_eq!(server.terminate(), Some(0));
    (server, added["key_id"].as_str().expect("a key id").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_by_putting_every_key_again() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = Settings::new(&db.url, None);
    let (_first, old_key_id) = before_rotation(&settings).await;

    with_master_key(&mut settings, NEW_MASTER_KEY);
    let mut server_b = settings.start();
    let target = settings.target(&server_b);
    let again = call(
        &target,
        Method::PUT,
        "/v1/workspaces/acme/keys/openai",
        Token::Api,
        Some("alice"),
        json!({ "api_key": OPENAI_KEY }),
    )
    .await;
    assert_eq!(again["superseded_key_id"], old_key_id.as_str(), "the same key under a new master key supersedes");
    let reply = json!({"reply_id": "after", "agent_id": "a", "model": "gpt-4o"});
    let served = call(&target, Method::POST, "/v1/workspaces/acme/replies", Token::Runtime, None, reply).await;
    assert_eq!(served["api_key"], OPENAI_KEY, "the runtime gets the key sealed under the new master key");
    assert_eq!(server_b.terminate(), Some(0));

    // Only the new ciphertext is left; the old one is gone from the file.
    let tables = dump(&db.url).await;
    assert_eq!(tables.rows_of("key_secrets"), Some(1));
    let new_key_id = again["key_id"].as_str().expect("a key id");
    assert!(tables.text.lines().any(|l| l.starts_with("key_secrets\t") && l.contains(new_key_id)));
    assert!(!tables.text.lines().any(|l| l.starts_with("key_secrets\t") && l.contains(&old_key_id)));
    audit_verify(&server_b);
    let journal = billing_reliability::load::Journal::default();
    sweep_everything(&settings, &server_b, &journal, None).await;
}

/// Between the restart with a new master key and the admins putting their
/// keys again, the runtime's byo reply cannot be handed its key. The
/// contract's 503 says "nothing was stored", so it must be true: the engine
/// once committed the reply before it opened the key, and the event log
/// held a reply the runtime was told had failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byo_reply_whose_key_cannot_be_opened_stores_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = Settings::new(&db.url, None);
    let (_server, _) = before_rotation(&settings).await;
    with_master_key(&mut settings, NEW_MASTER_KEY);
    let mut server = settings.start();
    let target = settings.target(&server);
    let reply = json!({"reply_id": "between", "agent_id": "a", "model": "gpt-4o"});
    let path = "/v1/workspaces/acme/replies";
    let answer = target.send(Method::POST, path, Some(&reply), Token::Runtime, None).await.expect("an answer");
    let events = billing_reliability::books::events(&target, "acme").await;
    let stored = events.iter().filter(|e| e["payload"]["reply_id"] == "between").count();
    assert_eq!(server.terminate(), Some(0));
    assert!(
        (answer.status == 503 && stored == 0) || (answer.status < 500 && stored == 1),
        "answered {} ({}) with {stored} events stored",
        answer.status,
        answer.text
    );
}
