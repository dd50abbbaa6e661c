//! Engine defects found by these suites, each pinned by a test that failed
//! before the engine was fixed and now guards the fix (docs/reliability.md,
//! "What the suites found").
//!
//! ## A repeat of a reply id older than the engine's memory can be refused
//!
//! The contract's check order puts idempotency (step 6) before the business
//! rules (step 7): a known `reply_id` with the same body answers as the
//! first time. The engine keeps the newest 128 reply ids per workspace in
//! memory and relies on the store's unique index for older ones; but a
//! repeat that the rules now refuse (402 `insufficient_credits`, 409
//! `no_key_for_provider`) writes nothing, so the index never sees it, and
//! the caller is told 402 about a reply that was served and charged. A
//! careful client retrying after a crash can then wrongly believe the
//! reply was never charged. Found by the crash suite's repeated replies
//! (`crates/bookbag-billing/tests/reliability/crash.rs`), which now repeats
//! only recent ids.

use billing_testkit::{Backend, TestDb};
use serde_json::json;

use crate::harness::*;

/// Replies the engine remembers per workspace
/// (`billing_domain::REPLIES_REMEMBERED_MAX`), and one more.
const BEYOND_MEMORY: usize = billing_domain::REPLIES_REMEMBERED_MAX + 1;

fn a_repeat_older_than_memory(backend: Backend) {
    let db = tokio::runtime::Runtime::new().expect("a runtime").block_on(TestDb::new(backend));
    let app = Harness::start(&db.url);
    let auth = format!("Bearer {API_TOKEN}");
    let post = |path: &str, body: serde_json::Value| {
        app.request("POST", path, &[("authorization", &auth)], Some(&serde_json::to_vec(&body).expect("JSON")))
    };
    assert_eq!(post("/v1/workspaces", json!({"workspace_id": "acme", "owner": "alice"})).status, 201);
    assert_eq!(post("/v1/workspaces/acme/credits/grants", json!({"grant_id": "g", "amount": 5})).status, 201);
    let reply = json!({"reply_id": "first", "agent_id": "a", "model": "gpt-4o"});
    let first = post("/v1/workspaces/acme/replies", reply.clone());
    assert_eq!((first.status, first.json()["credits_charged"].clone()), (200, json!(5)), "{}", first.text());
    // Within memory the repeat answers as the first time, balance 0 or not.
    assert_eq!(post("/v1/workspaces/acme/replies", reply.clone()).json(), first.json());
    for i in 0..BEYOND_MEMORY {
        let local = json!({"reply_id": format!("local-{i}"), "agent_id": "a", "model": "bookbag-local"});
        assert_eq!(post("/v1/workspaces/acme/replies", local).status, 200);
    }
    let again = post("/v1/workspaces/acme/replies", reply);
    assert_eq!(
        (again.status, again.json()),
        (200, first.json()),
        "a repeat of a served and charged reply was answered {}",
        again.text()
    );
}

#[test]
fn a_repeated_reply_older_than_memory_answers_as_the_first_time_on_sqlite() {
    a_repeat_older_than_memory(Backend::Sqlite);
}

#[test]
fn a_repeated_reply_older_than_memory_answers_as_the_first_time_on_postgres() {
    a_repeat_older_than_memory(Backend::Postgres);
}
