//! Spawns the real router on a random port over a throw-away database and
//! talks to it over a real socket with reqwest.

use billing_domain::Metering;
use billing_engine::{Engine, Metrics};
use billing_http::{http_metrics, AppState, Tokens};
use billing_testkit::{engine_config, LogBuffer, TestDb};
use prometheus_client::registry::Registry;
use reqwest::Method;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const API_TOKEN: &str = "test-api-token-0123456789";
pub const RUNTIME_TOKEN: &str = "test-runtime-token-0123456789";

/// Runs `scenario` on a runtime of its own, every thread of which logs
/// every event at every level (ours and our dependencies') into a buffer;
/// returns the scenario's output and everything logged.
///
/// A runtime of its own, because the test binary's global subscriber is
/// installed by `both_backends!` and the server's tasks run on many
/// threads: making the capturing subscriber every thread's default is the
/// only way to see all of them.
pub async fn with_captured_logs<T, F, Fut>(scenario: F) -> (T, String)
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let thread = std::thread::spawn(move || {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);
        let for_workers = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&for_workers)))
            .build()
            .expect("a runtime");
        let output = tracing::dispatcher::with_default(&dispatch, || runtime.block_on(scenario()));
        drop(runtime);
        let logs = buffer.text();
        (output, logs)
    });
    tokio::task::spawn_blocking(move || thread.join()).await.expect("joined").expect("the scenario passed")
}

/// Which bearer token a call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    None,
    Wrong,
    Runtime,
    Api,
}

impl Token {
    pub const ALL: [Token; 4] = [Token::None, Token::Wrong, Token::Runtime, Token::Api];
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub engine: Engine,
    /// The text of every answer this app gave, for the secrets test.
    responses: Mutex<Vec<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// The app over `db` with metering enabled (the hosted build).
pub async fn spawn(db: &TestDb) -> TestApp {
    spawn_with(db, Metering::Enabled).await
}

pub async fn spawn_with(db: &TestDb, metering: Metering) -> TestApp {
    let store = db.store().await;
    let mut registry = Registry::default();
    let mut config = engine_config(&store, metering);
    config.metrics = Arc::new(Metrics::new(&mut registry));
    let engine = Engine::start(store, config).await.expect("start the engine");
    let metrics = http_metrics(&mut registry);
    let tokens = Tokens::new(API_TOKEN, RUNTIME_TOKEN).expect("valid tokens");
    let state = AppState::new(engine.clone(), tokens, Arc::new(registry), metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a random port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(billing_http::serve(listener, state, async move {
        let _ = stop.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        engine,
        responses: Mutex::new(Vec::new()),
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// Stops the server (graceful), then the engine, as the binary does.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("the server stopped cleanly");
        }
        self.engine.shutdown().await;
    }

    /// Signals the server to stop, without waiting.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.take().expect("the server runs")
    }

    pub fn responses(&self) -> Vec<String> {
        self.responses.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call { app: self, method, path: path.to_owned(), token: Token::Api, actor: None, body: None, headers: vec![] }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Creates `ws` with `owner` as its first admin.
    pub async fn create(&self, ws: &str, owner: &str) {
        self.post("/v1/workspaces").json(json!({"workspace_id": ws, "owner": owner})).send().await.expect(201);
    }

    pub async fn set_role(&self, ws: &str, admin: &str, user: &str, role: &str) {
        self.put(&format!("/v1/workspaces/{ws}/members/{user}"))
            .actor(admin)
            .json(json!({ "role": role }))
            .send()
            .await
            .expect(200);
    }

    /// Grants `amount` and returns the balance after it.
    pub async fn grant(&self, ws: &str, grant_id: &str, amount: u64) -> u64 {
        let answer = self
            .post(&format!("/v1/workspaces/{ws}/credits/grants"))
            .json(json!({"grant_id": grant_id, "amount": amount, "reason": "test"}))
            .send()
            .await
            .expect(201);
        answer.body["balance"].as_u64().expect("a balance")
    }

    pub async fn add_key(&self, ws: &str, admin: &str, provider: &str, key: &str) -> Answer {
        self.put(&format!("/v1/workspaces/{ws}/keys/{provider}"))
            .actor(admin)
            .json(json!({ "api_key": key }))
            .send()
            .await
    }

    pub async fn set_byo(&self, ws: &str, admin: &str, enabled: bool) {
        self.put(&format!("/v1/workspaces/{ws}/byo"))
            .actor(admin)
            .json(json!({ "enabled": enabled }))
            .send()
            .await
            .expect(200);
    }

    pub async fn reply(&self, ws: &str, reply_id: &str, model: &str, token: Token) -> Answer {
        self.post(&format!("/v1/workspaces/{ws}/replies"))
            .token(token)
            .json(json!({"reply_id": reply_id, "agent_id": "agent-1", "model": model}))
            .send()
            .await
    }

    /// The `event_type` of every event of `ws`, in order.
    pub async fn event_types(&self, ws: &str) -> Vec<String> {
        let answer = self.get(&format!("/v1/workspaces/{ws}/events?limit=1000")).send().await.expect(200);
        answer.body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event_type"].as_str().expect("event_type").to_owned())
            .collect()
    }

    pub async fn event_count(&self, ws: &str) -> usize {
        self.event_types(ws).await.len()
    }
}

pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    token: Token,
    actor: Option<String>,
    body: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Call<'_> {
    pub fn token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    pub fn json(self, body: Value) -> Self {
        self.raw(serde_json::to_vec(&body).expect("JSON"))
    }

    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub async fn send(self) -> Answer {
        let url = format!("{}{}", self.app.base, self.path);
        let mut request = self.app.client.request(self.method.clone(), &url);
        match self.token {
            Token::None => {}
            Token::Wrong => request = request.bearer_auth("not-a-token"),
            Token::Runtime => request = request.bearer_auth(RUNTIME_TOKEN),
            Token::Api => request = request.bearer_auth(API_TOKEN),
        }
        if let Some(actor) = &self.actor {
            request = request.header("x-actor-id", actor);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = self.body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{} {url}: {e}", self.method));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        self.app.responses.lock().unwrap_or_else(|p| p.into_inner()).push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { method: self.method, path: self.path, status, body, text, headers }
    }
}

#[derive(Debug)]
pub struct Answer {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// Asserts the status and returns the answer.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{} {}: {}", self.method, self.path, self.text);
        self
    }

    /// Asserts an error answer of the contract's shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!((self.status, self.code()), (status, code), "{} {}: {}", self.method, self.path, self.text);
        assert!(self.body["error"]["message"].is_string(), "no message: {}", self.text);
        assert_eq!(self.body.as_object().map(|o| o.len()), Some(1), "extra top-level fields: {}", self.text);
        self
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}
