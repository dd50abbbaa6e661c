//! The careful client and its load: concurrent replies, grants and key
//! changes against a server that may die or lose its database at any
//! moment.
//!
//! A careful client (the contract's advice) treats a refused connection, a
//! cut answer and a 503 alike: it sends the same request again, with the
//! same `reply_id` / `grant_id`, until it gets a definite answer.
//! Idempotency makes that safe, so every operation ends with exactly one
//! definite answer, which the [`Journal`] keeps beside every attempt's
//! count. The books check ([`crate::books`]) then compares the journal
//! with the stored events.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use crate::secrets::{without_handed_key, Sweep};

/// Attempts of one operation before the client gives up (the check then
/// reports it as lost). A restart takes well under a second; 2,000 attempts
/// at 50-200 ms cover minutes of outage.
pub const ATTEMPTS_MAX: u32 = 2_000;

/// A client waits longer than the server's own 30 s bound on a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// The catalog's models, so replies take every route (local, credits, byo).
pub const MODELS: [&str; 5] = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4", "bookbag-local"];

/// The keys a load rotates through, two per provider.
pub const KEYS: [(&str, &str); 4] = [
    ("openai", billing_testkit::OPENAI_KEY),
    ("openai", billing_testkit::OPENAI_KEY_2),
    ("anthropic", billing_testkit::ANTHROPIC_KEY),
    ("anthropic", billing_testkit::ANTHROPIC_KEY_2),
];

/// Where the server is and what it takes. The base can change when a
/// restart had to take another port.
pub struct Target {
    base: RwLock<String>,
    pub api_token: String,
    pub runtime_token: String,
    client: reqwest::Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Api,
    Runtime,
}

/// One operation of the load.
#[derive(Clone, Debug)]
pub enum Op {
    CreateWorkspace { ws: String, owner: String },
    Reply { ws: String, reply_id: String, agent_id: String, model: String, token: Token },
    Grant { ws: String, grant_id: String, amount: u64 },
    AddKey { ws: String, admin: String, provider: &'static str, key: &'static str },
    RemoveKey { ws: String, admin: String, provider: &'static str },
    SetByo { ws: String, admin: String, enabled: bool },
}

impl Op {
    fn request(&self) -> (Method, String, Option<Value>, Token, Option<&str>) {
        match self {
            Op::CreateWorkspace { ws, owner } => (
                Method::POST,
                "/v1/workspaces".into(),
                Some(json!({"workspace_id": ws, "owner": owner})),
                Token::Api,
                None,
            ),
            Op::Reply { ws, reply_id, agent_id, model, token } => (
                Method::POST,
                format!("/v1/workspaces/{ws}/replies"),
                Some(json!({"reply_id": reply_id, "agent_id": agent_id, "model": model})),
                *token,
                None,
            ),
            Op::Grant { ws, grant_id, amount } => (
                Method::POST,
                format!("/v1/workspaces/{ws}/credits/grants"),
                Some(json!({"grant_id": grant_id, "amount": amount, "reason": "reliability"})),
                Token::Api,
                None,
            ),
            Op::AddKey { ws, admin, provider, key } => (
                Method::PUT,
                format!("/v1/workspaces/{ws}/keys/{provider}"),
                Some(json!({ "api_key": key })),
                Token::Api,
                Some(admin.as_str()),
            ),
            Op::RemoveKey { ws, admin, provider } => {
                (Method::DELETE, format!("/v1/workspaces/{ws}/keys/{provider}"), None, Token::Api, Some(admin.as_str()))
            }
            Op::SetByo { ws, admin, enabled } => (
                Method::PUT,
                format!("/v1/workspaces/{ws}/byo"),
                Some(json!({ "enabled": enabled })),
                Token::Api,
                Some(admin.as_str()),
            ),
        }
    }

    pub fn workspace(&self) -> &str {
        match self {
            Op::CreateWorkspace { ws, .. }
            | Op::Reply { ws, .. }
            | Op::Grant { ws, .. }
            | Op::AddKey { ws, .. }
            | Op::RemoveKey { ws, .. }
            | Op::SetByo { ws, .. } => ws,
        }
    }
}

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// One attempt's outcome: an answer, or nothing (refused, reset, timed out).
pub type Attempt = Option<Answer>;

impl Target {
    pub fn new(base: &str, api_token: &str, runtime_token: &str) -> Arc<Target> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client");
        Arc::new(Target {
            base: RwLock::new(base.to_owned()),
            api_token: api_token.to_owned(),
            runtime_token: runtime_token.to_owned(),
            client,
        })
    }

    pub fn set_base(&self, base: &str) {
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = base.to_owned();
    }

    pub fn base(&self) -> String {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One request; `None` when no answer came back.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Token,
        actor: Option<&str>,
    ) -> Attempt {
        let bearer = match token {
            Token::Api => &self.api_token,
            Token::Runtime => &self.runtime_token,
        };
        let mut request = self.client.request(method, format!("{}{path}", self.base())).bearer_auth(bearer);
        if let Some(actor) = actor {
            request = request.header("x-actor-id", actor);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.ok()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Some(Answer { status, body, text })
    }

    /// A query with the API token, retried like a command until it answers
    /// 200 (the server may be restarting). Panics after [`ATTEMPTS_MAX`].
    pub async fn get_ok(&self, path: &str) -> Value {
        for _ in 0..ATTEMPTS_MAX {
            if let Some(answer) = self.send(Method::GET, path, None, Token::Api, None).await {
                if answer.status == 200 {
                    return answer.body;
                }
                assert_eq!(answer.status, 503, "GET {path}: {}", answer.text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("GET {path} never answered 200");
    }
}

/// An operation and its first definite answer.
#[derive(Clone, Debug)]
pub struct Record {
    pub op: Op,
    /// `None`: no definite answer within [`ATTEMPTS_MAX`] (lost).
    pub answer: Option<Answer>,
    pub attempts: u32,
}

/// Everything the load did. Shared by every client task.
#[derive(Default)]
pub struct Journal {
    pub records: Mutex<Vec<Record>>,
    /// Every HTTP request sent, attempts and repeats included.
    pub requests: AtomicU64,
    /// Attempts that got no answer (connection refused or cut).
    pub no_answer: AtomicU64,
    /// Attempts answered 503.
    pub unavailable: AtomicU64,
    /// Attempts answered with a 5xx other than 503 (a bug, always).
    pub server_errors: AtomicU64,
    /// Acknowledged replies sent again on purpose, and those whose second
    /// answer differed from the first.
    pub repeats: AtomicU64,
    pub repeat_mismatches: Mutex<Vec<String>>,
    /// Answers that held a secret (outside a byo answer's `api_key`).
    pub leaks: Mutex<Vec<String>>,
}

impl Journal {
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn push(&self, record: Record) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    }
}

/// Sends `op` until it gets a definite answer (anything but no answer or
/// 503), and journals it.
pub async fn send_carefully(target: &Target, journal: &Journal, sweep: &Sweep, op: Op) -> Record {
    let (method, path, body, token, actor) = op.request();
    let mut attempts = 0;
    let mut answer = None;
    while attempts < ATTEMPTS_MAX {
        attempts += 1;
        journal.requests.fetch_add(1, Ordering::Relaxed);
        match target.send(method.clone(), &path, body.as_ref(), token, actor).await {
            None => {
                journal.no_answer.fetch_add(1, Ordering::Relaxed);
            }
            Some(a) if a.status == 503 => {
                journal.unavailable.fetch_add(1, Ordering::Relaxed);
                sweep_answer(journal, sweep, &a);
            }
            Some(a) => {
                if a.status >= 500 {
                    journal.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                sweep_answer(journal, sweep, &a);
                answer = Some(a);
                break;
            }
        }
        let pause_ms = 50 + (u64::from(attempts) * 10).min(150);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    let record = Record { op, answer, attempts };
    journal.push(record.clone());
    record
}

fn sweep_answer(journal: &Journal, sweep: &Sweep, answer: &Answer) {
    let found = sweep.findings(without_handed_key(&answer.text).as_bytes());
    if !found.is_empty() {
        journal.leaks.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
            "an answer ({}) holds {}",
            answer.status,
            found.join(", ")
        ));
    }
}

/// A workspace of the load: its id and its admin.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub id: String,
    pub admin: String,
}

/// Creates the workspaces and grants each `initial_credits` (journaled,
/// so the books count the grants).
pub async fn set_up(target: &Target, journal: &Journal, sweep: &Sweep, workspaces: &[Workspace], initial_credits: u64) {
    for ws in workspaces {
        let created =
            send_carefully(target, journal, sweep, Op::CreateWorkspace { ws: ws.id.clone(), owner: ws.admin.clone() })
                .await;
        let status = created.answer.as_ref().map(|a| a.status);
        assert!(matches!(status, Some(201)), "create {}: {:?}", ws.id, created.answer);
        let grant = Op::Grant { ws: ws.id.clone(), grant_id: format!("{}-initial", ws.id), amount: initial_credits };
        send_carefully(target, journal, sweep, grant).await;
    }
}

/// The mix of one load client, in percent of operations.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub grants: u32,
    pub key_changes: u32,
    pub byo_toggles: u32,
    /// Of the replies: sent again after their answer, to compare.
    pub repeats: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { grants: 4, key_changes: 8, byo_toggles: 4, repeats: 5 }
    }
}

/// A load: where it goes, what it journals, the workspaces it uses.
pub struct Load {
    pub target: Arc<Target>,
    pub journal: Journal,
    pub sweep: Sweep,
    pub workspaces: Vec<Workspace>,
    pub mix: Mix,
    /// Starts every reply and grant id of the load: unique per run.
    pub prefix: String,
}

impl Load {
    /// `clients` tasks, each sending operations one after another, each
    /// carefully, until `stop` is set.
    pub fn spawn_clients(self: &Arc<Self>, clients: u64, seed: u64, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
        (0..clients)
            .map(|i| {
                let load = Arc::clone(self);
                let stop = Arc::clone(stop);
                tokio::spawn(async move { load.client(i, seed.wrapping_add(i), &stop).await })
            })
            .collect()
    }

    async fn client(&self, client: u64, seed: u64, stop: &AtomicBool) {
        let (target, journal, sweep, mix, prefix) = (&self.target, &self.journal, &self.sweep, self.mix, &self.prefix);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut acked: Vec<(Op, Answer)> = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let ws = &self.workspaces[rng.gen_range(0..self.workspaces.len())];
            let roll = rng.gen_range(0..100);
            let op = if roll < mix.grants {
                Op::Grant {
                    ws: ws.id.clone(),
                    grant_id: format!("{prefix}-{client}-g{n}"),
                    amount: rng.gen_range(1..=40),
                }
            } else if roll < mix.grants + mix.key_changes {
                let (provider, key) = KEYS[rng.gen_range(0..KEYS.len())];
                if rng.gen_bool(0.7) {
                    Op::AddKey { ws: ws.id.clone(), admin: ws.admin.clone(), provider, key }
                } else {
                    Op::RemoveKey { ws: ws.id.clone(), admin: ws.admin.clone(), provider }
                }
            } else if roll < mix.grants + mix.key_changes + mix.byo_toggles {
                Op::SetByo { ws: ws.id.clone(), admin: ws.admin.clone(), enabled: rng.gen_bool(0.5) }
            } else if !acked.is_empty() && rng.gen_range(0..100) < mix.repeats {
                let (op, first) = acked[rng.gen_range(0..acked.len())].clone();
                repeat(target, journal, &op, &first).await;
                continue;
            } else {
                Op::Reply {
                    ws: ws.id.clone(),
                    reply_id: format!("{prefix}-{client}-r{n}"),
                    agent_id: format!("agent-{}", rng.gen_range(0..4)),
                    model: MODELS[rng.gen_range(0..MODELS.len())].into(),
                    token: if rng.gen_bool(0.5) { Token::Runtime } else { Token::Api },
                }
            };
            let record = send_carefully(target, journal, sweep, op).await;
            if let (Op::Reply { .. }, Some(answer)) = (&record.op, &record.answer) {
                if answer.status == 200 {
                    if acked.len() == REPEAT_WINDOW {
                        acked.remove(0);
                    }
                    acked.push((record.op.clone(), answer.clone()));
                }
            }
        }
    }
}

/// The newest acknowledged replies a client may send again. Kept well
/// inside the engine's memory of 128 reply ids per workspace: a repeat of an
/// older id that the rules would now refuse answers the refusal instead of
/// the first answer (a known engine bug, pinned by the ignored test
/// `known_bugs::a_repeated_reply_older_than_memory_answers_as_the_first_time`
/// of `crates/billing-http/tests/hostile`), and this suite is about crashes.
const REPEAT_WINDOW: usize = 16;

/// Sends an acknowledged reply again: the answer must be the first one
/// (the `api_key` aside: it depends on the token and on whether the key
/// is still active).
async fn repeat(target: &Target, journal: &Journal, op: &Op, first: &Answer) {
    let (method, path, body, token, actor) = op.request();
    journal.repeats.fetch_add(1, Ordering::Relaxed);
    for attempt in 0..ATTEMPTS_MAX {
        journal.requests.fetch_add(1, Ordering::Relaxed);
        match target.send(method.clone(), &path, body.as_ref(), token, actor).await {
            Some(again) if again.status != 503 => {
                let strip = |mut v: Value| {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("api_key");
                    }
                    v
                };
                if again.status != first.status || strip(again.body.clone()) != strip(first.body.clone()) {
                    let id = match op {
                        Op::Reply { reply_id, .. } => reply_id.as_str(),
                        _ => "",
                    };
                    journal.repeat_mismatches.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                        "reply {id}: first {} {}, again {} {}",
                        first.status,
                        strip(first.body.clone()),
                        again.status,
                        strip(again.body.clone())
                    ));
                }
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(50 + u64::from(attempt.min(15)) * 10)).await,
        }
    }
}

/// A seed for a run: `BILLING_RELIABILITY_SEED` when set (to replay a
/// failure), else fresh; printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("BILLING_RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("seed: BILLING_RELIABILITY_SEED={seed}");
    seed
}

/// A little time passing, for logs and figures.
pub fn millis_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
