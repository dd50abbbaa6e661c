//! A stream per test, a relay per engine, and reading a stream back.

use async_nats::jetstream;
use billing_domain::*;
use billing_engine::Engine;
use billing_nats::message::EventMessage;
use billing_nats::{NatsConfig, Relay, RelayMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A stream (and subjects) no other test uses; deleted on drop.
pub struct TestStream {
    pub config: NatsConfig,
}

impl TestStream {
    pub fn on(url: &str) -> TestStream {
        let id = uuid::Uuid::new_v4().simple().to_string();
        TestStream {
            config: NatsConfig {
                url: url.to_owned(),
                stream: format!("BBTEST_{id}"),
                subject_prefix: format!("bbtest_{id}.events"),
            },
        }
    }

    pub async fn context(&self) -> jetstream::Context {
        let client =
            async_nats::connect(self.config.url.as_str()).await.expect("NATS (is nats-server up? .ci/services)");
        jetstream::new(client)
    }

    /// Every message of the stream, in stream order, with its message id.
    pub async fn messages(&self) -> Vec<(String, EventMessage)> {
        let js = self.context().await;
        let mut stream = js.get_stream(&self.config.stream).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut all = Vec::new();
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await.unwrap();
            let id = message.headers.get("Nats-Msg-Id").unwrap().as_str().to_owned();
            all.push((id, serde_json::from_slice(&message.payload).unwrap()));
        }
        all
    }

    /// Waits until the stream holds `count` messages (or the deadline).
    pub async fn wait_for(&self, count: u64, within: Duration) -> u64 {
        let js = self.context().await;
        let started = Instant::now();
        loop {
            let held = match js.get_stream(&self.config.stream).await {
                Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            };
            if held >= count || started.elapsed() > within {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(config.url.as_str()).await {
                    let _ = jetstream::new(client).delete_stream(&config.stream).await;
                }
            });
        })
        .join();
    }
}

/// A relay of `engine`'s log to `config`, running until the sender says stop.
pub fn start_relay(engine: &Engine, config: &NatsConfig) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let relay = Relay::new(
        engine.store().clone(),
        config.clone(),
        Arc::new(RelayMetrics::default()),
        Some(engine.commits()),
        stopped,
    );
    (stop, tokio::spawn(relay.run()))
}

/// Checks the stream holds exactly one message per stored event of every
/// workspace, in sequence order per workspace, and no plaintext key.
pub async fn assert_stream_mirrors_the_log(stream: &TestStream, engine: &Engine, workspaces: &[&str]) {
    let messages = stream.messages().await;
    let mut ids = std::collections::HashSet::new();
    for (id, body) in &messages {
        assert!(ids.insert(id.clone()), "message {id} is in the stream twice");
        assert_eq!(id, &format!("{}/{}", body.workspace_id, body.sequence));
    }
    let raw = serde_json::to_string(&messages.iter().map(|(_, m)| m).collect::<Vec<_>>()).unwrap();
    for key in billing_testkit::PLAINTEXT_KEYS.iter().chain(billing_testkit::key_fragments().iter()) {
        assert!(!raw.contains(key), "a plaintext key is in a NATS message");
    }
    let mut total = 0;
    for workspace in workspaces {
        let stored = engine.store().workspace_events(workspace, 0, 100_000).await.unwrap();
        let published: Vec<u64> =
            messages.iter().filter(|(_, m)| m.workspace_id == *workspace).map(|(_, m)| m.sequence).collect();
        let expected: Vec<u64> = stored.iter().map(|e| e.sequence).collect();
        assert_eq!(published, expected, "{workspace}: the stream is not the log, in order");
        for (event, (_, message)) in stored.iter().zip(messages.iter().filter(|(_, m)| m.workspace_id == *workspace)) {
            assert_eq!((&message.payload, &message.metadata), (&event.payload, &event.metadata));
        }
        total += stored.len();
    }
    assert_eq!(messages.len(), total, "messages that are no stored event");
}

pub fn ws(id: &str) -> WorkspaceId {
    WorkspaceId::parse(id).unwrap()
}

/// A mixed workload over `workspaces`: keys, BYO, grants and replies, from
/// `callers` concurrent tasks; returns how many commands succeeded.
pub async fn workload(engine: &Engine, workspaces: &[&str], replies_per_workspace: usize, callers: usize) -> usize {
    for w in workspaces {
        let create = Action::CreateWorkspace { workspace_id: ws(w), owner: UserId::parse("alice").unwrap() };
        engine.execute(ws(w), None, Channel::Platform, create).await.unwrap();
        let grant = Action::GrantCredits {
            grant_id: GrantId::parse("g").unwrap(),
            amount: Credits::new(1_000_000),
            reason: String::new(),
        };
        engine.execute(ws(w), None, Channel::Platform, grant).await.unwrap();
        let key = Action::AddKey {
            key_id: Engine::new_key_id(),
            provider: Provider::Openai,
            key: ProviderKey::parse(Provider::Openai, billing_testkit::OPENAI_KEY).unwrap(),
        };
        engine.execute(ws(w), Some(UserId::parse("alice").unwrap()), Channel::Platform, key).await.unwrap();
    }
    let jobs: Vec<(String, usize)> =
        workspaces.iter().flat_map(|w| (0..replies_per_workspace).map(move |i| (w.to_string(), i))).collect();
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let engine = engine.clone();
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                loop {
                    let Some((w, i)) = jobs.lock().unwrap().pop() else { return ok };
                    let action = if i % 50 == 7 {
                        Action::SetByo { enabled: i % 100 == 7 }
                    } else {
                        Action::ServeReply {
                            reply_id: ReplyId::parse(&format!("r{i}")).unwrap(),
                            agent_id: AgentId::parse("agent").unwrap(),
                            model: ["gpt-4o", "bookbag-local", "gpt-4o-mini"][i % 3].to_owned(),
                        }
                    };
                    let actor = Some(UserId::parse("alice").unwrap());
                    if engine.execute(ws(&w), actor, Channel::Platform, action).await.is_ok() {
                        ok += 1;
                    }
                }
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    ok
}
