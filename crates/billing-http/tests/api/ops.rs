//! Health, readiness, metrics, the OpenAPI document, request ids and
//! graceful shutdown.

use billing_testkit::{both_backends, Backend, TestDb};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

async fn health_and_readiness(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    assert_eq!(app.get("/healthz").token(Token::None).send().await.expect(200).body, json!({"status": "ok"}));
    assert_eq!(app.get("/readyz").token(Token::None).send().await.expect(200).body, json!({"status": "ready"}));
    // The database goes away: not ready, and nothing is stored or read.
    app.engine.store().db().close().await;
    app.get("/readyz").token(Token::None).send().await.expect_error(503, "unavailable");
    app.get("/healthz").token(Token::None).send().await.expect(200);
    app.reply("acme", "r1", "bookbag-local", Token::Api).await.expect_error(503, "unavailable");
    app.get("/v1/workspaces/acme/credits").send().await.expect_error(503, "unavailable");
    app.post("/v1/workspaces")
        .json(json!({"workspace_id": "w2", "owner": "o"}))
        .send()
        .await
        .expect_error(503, "unavailable");
    app.stop().await;
}

async fn metrics_show_the_engine_and_the_http_layer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    app.create("acme", "alice").await;
    app.reply("acme", "r1", "bookbag-local", Token::Api).await.expect(200);
    app.get("/no/such/path").send().await.expect(404);
    let metrics = app.get("/metrics").token(Token::None).send().await.expect(200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = metrics.text;
    assert!(text.contains("billing_http_request_duration_seconds_count{"), "{text}");
    assert!(text.contains(r#"route="/v1/workspaces/{ws}/replies",status="200""#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("/no/such/path"), "concrete paths are no labels");
    assert!(text.contains("billing_http_requests_in_flight"), "{text}");
    assert!(text.contains(r#"billing_commands_total{command="serve_reply",outcome="ok"} 1"#), "{text}");
    assert!(text.ends_with("# EOF\n"));
    app.stop().await;
}

async fn every_answer_carries_a_request_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    let fresh = app.get("/v1/models").send().await.expect(200);
    let id = fresh.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let other = app.get("/v1/models").token(Token::None).send().await.expect(401);
    assert_ne!(other.headers["x-request-id"].to_str().unwrap(), id);
    let kept = app.get("/healthz").header("x-request-id", "trace-42.a").send().await;
    assert_eq!(kept.headers["x-request-id"], "trace-42.a");
    let replaced = app.get("/healthz").header("x-request-id", "not an id").send().await;
    assert_ne!(replaced.headers["x-request-id"], "not an id");
    app.stop().await;
}

/// The (method, path) pairs of every operation in the document.
fn documented() -> BTreeSet<(String, String)> {
    let document = billing_http::openapi();
    let mut operations = BTreeSet::new();
    for (path, item) in document.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
            ("HEAD", item.head.is_some()),
            ("OPTIONS", item.options.is_some()),
            ("TRACE", item.trace.is_some()),
        ];
        for (method, present) in methods {
            if present {
                operations.insert((method.to_owned(), path.clone()));
            }
        }
    }
    operations
}

/// The contract's HTTP API table, as written in api-contract.md.
const CONTRACT_ROUTES: [(&str, &str); 21] = [
    ("POST", "/v1/workspaces"),
    ("PUT", "/v1/workspaces/{ws}/members/{user}"),
    ("DELETE", "/v1/workspaces/{ws}/members/{user}"),
    ("PUT", "/v1/workspaces/{ws}/keys/{provider}"),
    ("DELETE", "/v1/workspaces/{ws}/keys/{provider}"),
    ("PUT", "/v1/workspaces/{ws}/byo"),
    ("POST", "/v1/workspaces/{ws}/credits/grants"),
    ("POST", "/v1/workspaces/{ws}/replies"),
    ("POST", "/v1/workspaces/{ws}/data-sources/{id}/trainings"),
    ("GET", "/v1/workspaces/{ws}/keys"),
    ("GET", "/v1/workspaces/{ws}/billing-mode"),
    ("GET", "/v1/workspaces/{ws}/credits"),
    ("GET", "/v1/workspaces/{ws}/credits/ledger"),
    ("GET", "/v1/workspaces/{ws}/usage"),
    // Added by the audit issue (docs/api.md).
    ("GET", "/v1/workspaces/{ws}/statement"),
    ("GET", "/v1/workspaces/{ws}/events"),
    ("GET", "/v1/models"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

async fn the_openapi_document_lists_every_route(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn(&db).await;
    let served: BTreeSet<(String, String)> =
        billing_http::routes().into_iter().map(|(m, p)| (m.to_string(), p.to_owned())).collect();
    assert_eq!(documented(), served);
    let contract: BTreeSet<(String, String)> =
        CONTRACT_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(served, contract);
    // Each route of the table is really served: none answers 404 or 405.
    for (method, path) in &served {
        let concrete =
            path.replace("{ws}", "acme").replace("{user}", "u").replace("{provider}", "openai").replace("{id}", "d");
        let answer = app.call(Method::from_bytes(method.as_bytes()).unwrap(), &concrete).send().await;
        assert!(
            ![404, 405].contains(&answer.status) || answer.code() == "workspace_not_found",
            "{method} {path}: {}",
            answer.text
        );
    }
    let served_doc = app.get("/openapi.json").token(Token::None).send().await.expect(200);
    assert!(served_doc.body["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(served_doc.body["paths"].as_object().unwrap().len(), 19);
    assert!(served_doc.body["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

async fn shutdown_answers_the_request_in_flight(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut app = spawn(&db).await;
    app.create("acme", "alice").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let body = br#"{"grant_id":"g1","amount":7}"#;
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/workspaces/acme/credits/grants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The request is in flight (its body half sent) when shutdown begins.
    let server = app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.is_finished(), "the server waits for the request in flight");
    stream.write_all(&body[10..]).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains(r#"{"balance":7}"#), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("stopped").unwrap().unwrap();
    // No new connection is accepted once stopped.
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());
    app.stop().await;
}

both_backends!(
    health_and_readiness,
    metrics_show_the_engine_and_the_http_layer,
    every_answer_carries_a_request_id,
    the_openapi_document_lists_every_route,
    shutdown_answers_the_request_in_flight,
);
