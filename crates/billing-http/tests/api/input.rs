//! Parsing at the edge and the contract's order of checks: identifiers,
//! body size and shape, routes and methods, query parameters.

use billing_testkit::{both_backends, Backend, TestDb, ANTHROPIC_KEY, OPENAI_KEY};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Path segments that are not identifiers (percent-encoded as sent).
const BAD_PATH_IDS: [&str; 6] = ["a%20b", "a%2Fb", "%C3%A9", "%FF", "a%00", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"];
/// Body values that are not identifiers.
const BAD_IDS: [&str; 5] = ["", "a b", "a/b", "é", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"];

async fn identifiers_in_paths_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    assert_eq!(BAD_PATH_IDS[5].len(), 129);
    for bad in BAD_PATH_IDS {
        let calls = [
            app.put(&format!("/v1/workspaces/{bad}/byo")).actor("alice").json(json!({"enabled": true})),
            app.put(&format!("/v1/workspaces/acme/members/{bad}")).actor("alice").json(json!({"role": "member"})),
            app.delete(&format!("/v1/workspaces/acme/members/{bad}")).actor("alice"),
            app.delete(&format!("/v1/workspaces/{bad}/keys/openai")).actor("alice"),
            app.post(&format!("/v1/workspaces/acme/data-sources/{bad}/trainings")).actor("alice"),
            app.post(&format!("/v1/workspaces/{bad}/replies"))
                .json(json!({"reply_id": "r", "agent_id": "a", "model": "gpt-4o"})),
            app.get(&format!("/v1/workspaces/{bad}/credits")),
            app.get(&format!("/v1/workspaces/{bad}/events")),
        ];
        for call in calls {
            call.send().await.expect_error(422, "invalid_input");
        }
    }
    // 128 characters is still an identifier.
    let longest = "a".repeat(128);
    app.get(&format!("/v1/workspaces/{longest}/credits")).send().await.expect_error(404, "workspace_not_found");
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

async fn identifiers_in_bodies_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for bad in BAD_IDS {
        let calls = [
            app.post("/v1/workspaces").json(json!({"workspace_id": bad, "owner": "o"})),
            app.post("/v1/workspaces").json(json!({"workspace_id": "ws", "owner": bad})),
            app.post("/v1/workspaces/acme/credits/grants").json(json!({"grant_id": bad, "amount": 1})),
            app.post("/v1/workspaces/acme/replies").json(json!({"reply_id": bad, "agent_id": "a", "model": "gpt-4o"})),
            app.post("/v1/workspaces/acme/replies").json(json!({"reply_id": "r", "agent_id": bad, "model": "gpt-4o"})),
        ];
        for call in calls {
            call.send().await.expect_error(422, "invalid_input");
        }
    }
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

async fn the_actor_header_must_be_a_user_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for bad in ["a b", "a/b", "", &"a".repeat(129)] {
        app.put("/v1/workspaces/acme/byo")
            .actor(bad)
            .json(json!({"enabled": true}))
            .send()
            .await
            .expect_error(422, "invalid_input");
        app.post("/v1/workspaces/acme/data-sources/d/trainings")
            .actor(bad)
            .send()
            .await
            .expect_error(422, "invalid_input");
        app.get("/v1/workspaces/acme/credits").actor(bad).send().await.expect_error(422, "invalid_input");
    }
    // Sent twice, it names no one user.
    app.put("/v1/workspaces/acme/byo")
        .actor("alice")
        .header("x-actor-id", "alice")
        .json(json!({"enabled": true}))
        .send()
        .await
        .expect_error(422, "invalid_input");
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

async fn bodies_must_be_json_of_the_expected_shape(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let routes: [(Method, &str, Value); 6] = [
        (Method::POST, "/v1/workspaces", json!({"workspace_id": "ws", "owner": "o"})),
        (Method::PUT, "/v1/workspaces/acme/members/tom", json!({"role": "member"})),
        (Method::PUT, "/v1/workspaces/acme/keys/openai", json!({"api_key": OPENAI_KEY})),
        (Method::PUT, "/v1/workspaces/acme/byo", json!({"enabled": true})),
        (Method::POST, "/v1/workspaces/acme/credits/grants", json!({"grant_id": "g", "amount": 1, "reason": "r"})),
        (Method::POST, "/v1/workspaces/acme/replies", json!({"reply_id": "r", "agent_id": "a", "model": "gpt-4o"})),
    ];
    for (method, path, good) in &routes {
        let call = || app.call(method.clone(), path).actor("alice");
        for raw in ["", "nope", "[1]", "\"text\"", "null", "{", "{}{}", "{\"a\":1} x"] {
            call().raw(raw).send().await.expect_error(400, "malformed_request");
        }
        let object = good.as_object().expect("an object");
        for field in object.keys() {
            let mut missing = object.clone();
            missing.remove(field);
            if field != "reason" {
                call().json(Value::Object(missing)).send().await.expect_error(400, "malformed_request");
            }
            for wrong in [json!(7), json!(["x"]), json!({"x": 1})] {
                let mut typed = object.clone();
                typed.insert(field.clone(), wrong);
                if field != "amount" {
                    call().json(Value::Object(typed)).send().await.expect_error(400, "malformed_request");
                }
            }
        }
        let mut extra = object.clone();
        extra.insert("extra".into(), json!(1));
        call().json(Value::Object(extra)).send().await.expect_error(400, "malformed_request");
    }
    // Nothing above stored anything.
    assert_eq!(app.event_count("acme").await, 1);
    app.stop().await;
}

/// A body of exactly `len` bytes: `body` padded with JSON whitespace.
fn padded(body: Value, len: usize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&body).unwrap();
    bytes.resize(len, b' ');
    bytes
}

/// Sends raw bytes over a fresh connection and returns the whole answer.
async fn raw_http(app: &TestApp, request: &[u8]) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn bodies_over_64_kib_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let limit = 64 * 1024;
    // Exactly 64 KiB is accepted.
    app.put("/v1/workspaces/acme/byo")
        .actor("alice")
        .raw(padded(json!({"enabled": true}), limit))
        .send()
        .await
        .expect(200);
    for path in ["/v1/workspaces", "/v1/workspaces/acme/credits/grants", "/v1/workspaces/acme/replies"] {
        app.post(path).raw(padded(json!({}), limit + 1)).send().await.expect_error(413, "payload_too_large");
    }
    app.put("/v1/workspaces/acme/byo")
        .actor("alice")
        .raw(padded(json!({"enabled": false}), limit + 1))
        .send()
        .await
        .expect_error(413, "payload_too_large");
    // A chunked body (no Content-Length) is cut off while it is read.
    let chunk = vec![b' '; 8 * 1024];
    let mut request = format!(
        "PUT /v1/workspaces/acme/byo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_TOKEN}\r\nx-actor-id: alice\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..9 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_http(&app, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    // Bodies refused before they are read still let the caller read the answer.
    let unread = vec![b'x'; 200_000];
    app.delete("/v1/workspaces/acme/keys/openai")
        .actor("alice")
        .raw(unread.clone())
        .send()
        .await
        .expect_error(404, "key_not_found");
    app.put("/v1/workspaces/acme/byo")
        .token(Token::None)
        .raw(unread.clone())
        .send()
        .await
        .expect_error(401, "unauthorized");
    app.put("/v1/workspaces/acme/byo")
        .token(Token::Runtime)
        .raw(unread.clone())
        .send()
        .await
        .expect_error(403, "forbidden");
    app.put("/v1/nope").raw(unread).send().await.expect_error(404, "not_found");
    // Only the first BYO change was stored.
    assert_eq!(app.event_types("acme").await, ["WorkspaceCreated", "ByoEnabled"]);
    app.stop().await;
}

async fn checks_run_in_the_contract_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    let huge = padded(json!({}), 70_000);
    // 2 before 3: identifiers answer before the body's size and shape.
    app.put("/v1/workspaces/a%20b/byo").actor("alice").raw("nope").send().await.expect_error(422, "invalid_input");
    app.put("/v1/workspaces/a%20b/byo")
        .actor("alice")
        .raw(huge.clone())
        .send()
        .await
        .expect_error(422, "invalid_input");
    app.put("/v1/workspaces/acme/byo").actor("a b").raw("nope").send().await.expect_error(422, "invalid_input");
    app.post("/v1/workspaces").json(json!({"workspace_id": "a b"})).send().await.expect_error(422, "invalid_input");
    app.post("/v1/workspaces/acme/replies")
        .json(json!({"reply_id": "a b", "model": 7, "extra": true}))
        .send()
        .await
        .expect_error(422, "invalid_input");
    // Within 3: size, then shape, then provider, key format and amount.
    app.put("/v1/workspaces/acme/keys/mistral")
        .actor("alice")
        .raw(huge)
        .send()
        .await
        .expect_error(413, "payload_too_large");
    app.put("/v1/workspaces/acme/keys/mistral")
        .actor("alice")
        .raw("nope")
        .send()
        .await
        .expect_error(400, "malformed_request");
    app.put("/v1/workspaces/acme/keys/mistral")
        .json(json!({"api_key": "x"}))
        .send()
        .await
        .expect_error(422, "unknown_provider");
    // 3 before 4: stateless body checks answer before the workspace is looked up.
    app.put("/v1/workspaces/nope/keys/mistral")
        .json(json!({"api_key": "x"}))
        .send()
        .await
        .expect_error(422, "unknown_provider");
    app.put("/v1/workspaces/nope/keys/openai")
        .json(json!({"api_key": ANTHROPIC_KEY}))
        .send()
        .await
        .expect_error(422, "invalid_key_format");
    app.delete("/v1/workspaces/nope/keys/mistral").send().await.expect_error(422, "unknown_provider");
    app.post("/v1/workspaces/nope/credits/grants")
        .json(json!({"grant_id": "g", "amount": 0}))
        .send()
        .await
        .expect_error(422, "invalid_amount");
    app.put("/v1/workspaces/nope/members/x")
        .json(json!({"role": "owner"}))
        .send()
        .await
        .expect_error(422, "invalid_input");
    // 4 before 5: the workspace before the actor.
    app.put("/v1/workspaces/nope/byo")
        .json(json!({"enabled": true}))
        .send()
        .await
        .expect_error(404, "workspace_not_found");
    app.put("/v1/workspaces/nope/byo")
        .actor("sam")
        .json(json!({"enabled": true}))
        .send()
        .await
        .expect_error(404, "workspace_not_found");
    // 5: missing actor, then forbidden, before any business rule.
    app.delete("/v1/workspaces/acme/keys/openai").send().await.expect_error(400, "missing_actor");
    app.delete("/v1/workspaces/acme/keys/openai").actor("sam").send().await.expect_error(403, "forbidden");
    app.delete("/v1/workspaces/acme/members/ghost").actor("sam").send().await.expect_error(403, "forbidden");
    app.delete("/v1/workspaces/acme/keys/openai").actor("alice").send().await.expect_error(404, "key_not_found");
    // 6 before 7: a known reply id answers before the rules are looked at again.
    app.grant("acme", "g1", 5).await;
    let first = app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    app.set_byo("acme", "alice", true).await;
    let again = app.reply("acme", "r1", "gpt-4o", Token::Api).await.expect(200);
    assert_eq!(again.body, first.body);
    app.reply("acme", "r1", "no-such-model", Token::Api).await.expect_error(409, "idempotency_conflict");
    app.reply("acme", "r2", "no-such-model", Token::Api).await.expect_error(422, "unknown_model");
    app.reply("acme", "r2", "gpt-4o", Token::Api).await.expect_error(409, "no_key_for_provider");
    app.stop().await;
}

async fn unknown_routes_and_methods_answer_json(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for path in ["/", "/nope", "/v1", "/v1/nope", "/v1/workspaces/acme/nope", "/v1/workspaces/acme/keys/openai/x"] {
        app.get(path).send().await.expect_error(404, "not_found");
    }
    let wrong_methods = [
        (Method::GET, "/v1/workspaces"),
        (Method::DELETE, "/v1/workspaces"),
        (Method::GET, "/v1/workspaces/acme/byo"),
        (Method::POST, "/v1/workspaces/acme/keys"),
        (Method::PATCH, "/v1/workspaces/acme/members/x"),
        (Method::GET, "/v1/workspaces/acme/replies"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/metrics"),
    ];
    for (method, path) in wrong_methods {
        let answer = app.call(method, path).send().await.expect_error(405, "method_not_allowed");
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    app.stop().await;
}

async fn query_parameters_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    for route in ["credits/ledger", "events"] {
        for good in ["", "?limit=1", "?limit=1000", "?after=0", "?after=9223372036854775807&limit=5"] {
            app.get(&format!("/v1/workspaces/acme/{route}{good}")).send().await.expect(200);
        }
        for bad in [
            "?limit=0",
            "?limit=1001",
            "?limit=-1",
            "?limit=ten",
            "?limit=",
            "?after=-1",
            "?after=1.5",
            "?after=9223372036854775808",
            "?after=1&after=2",
            "?limt=5",
        ] {
            app.get(&format!("/v1/workspaces/acme/{route}{bad}")).send().await.expect_error(422, "invalid_input");
        }
    }
    for good in [
        "",
        "?from=2026-01-01T00:00:00Z",
        "?to=2026-01-01T10:00:00%2B02:00",
        "?from=2026-01-01T00:00:00+01:00&to=2026-02-01T00:00:00Z",
    ] {
        app.get(&format!("/v1/workspaces/acme/usage{good}")).send().await.expect(200);
    }
    for bad in [
        "?from=yesterday",
        "?to=2026-13-01T00:00:00Z",
        "?from=2026-01-01",
        "?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "?since=2026-01-01T00:00:00Z",
    ] {
        app.get(&format!("/v1/workspaces/acme/usage{bad}")).send().await.expect_error(422, "invalid_input");
    }
    app.stop().await;
}

both_backends!(
    identifiers_in_paths_are_checked,
    identifiers_in_bodies_are_checked,
    the_actor_header_must_be_a_user_id,
    bodies_must_be_json_of_the_expected_shape,
    bodies_over_64_kib_are_refused,
    checks_run_in_the_contract_order,
    unknown_routes_and_methods_answer_json,
    query_parameters_are_checked,
);
