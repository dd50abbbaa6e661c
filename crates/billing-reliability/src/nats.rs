//! NATS for the suites: a nats-server of a test's own (on a free port, with
//! JetStream in a temporary directory) for tests that stop it, and a stream
//! name of a test's own on any server, read back whole at the end.

use async_nats::jetstream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The machine's shared nats-server (started by `.ci/services`).
pub const SHARED_NATS_URL: &str = "nats://127.0.0.1:4222";

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A nats-server of one test's own; killed on drop.
pub struct OwnNats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    pub fn start() -> OwnNats {
        let mut server =
            OwnNats { port: crate::free_port(), dir: tempfile::tempdir().expect("a temporary directory"), child: None };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not start on {}", self.port);
    }

    /// SIGKILL: the broker is gone at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message of a stream: its `Nats-Msg-Id` and its body.
pub struct StreamMessage {
    pub id: String,
    pub body: serde_json::Value,
    pub raw: String,
}

/// A stream and subject prefix no other test uses; deleted on drop.
pub struct TestStream {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

impl TestStream {
    pub fn on(url: &str) -> TestStream {
        let id = uuid::Uuid::new_v4().simple().to_string();
        TestStream { url: url.to_owned(), stream: format!("BBREL_{id}"), subject_prefix: format!("bbrel_{id}.events") }
    }

    /// The `BILLING_NATS_*` variables that make `serve` publish here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BILLING_NATS_URL".into(), self.url.clone()),
            ("BILLING_NATS_STREAM".into(), self.stream.clone()),
            ("BILLING_NATS_SUBJECT_PREFIX".into(), self.subject_prefix.clone()),
        ]
    }

    async fn context(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url.as_str()).await.expect("NATS (is nats-server up? .ci/services)");
        jetstream::new(client)
    }

    /// Creates the stream beforehand as the relay would, but with a
    /// duplicate window of `window`: a test that deletes messages to play a
    /// broker that lost them must also let their message ids be forgotten
    /// (a broker that lost messages has lost their ids with them).
    pub async fn create_with_duplicate_window(&self, window: Duration) {
        let js = self.context().await;
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: window,
            ..jetstream::stream::Config::default()
        })
        .await
        .expect("create the stream");
    }

    /// Messages the stream holds now (0 when it does not exist yet).
    pub async fn held(&self) -> u64 {
        let js = self.context().await;
        match js.get_stream(&self.stream).await {
            Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Waits until the stream holds `count` messages or `within` passed;
    /// returns what it holds.
    pub async fn wait_for(&self, count: u64, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let held = self.held().await;
            if held >= count || tokio::time::Instant::now() > deadline {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes one message of the stream, as a broker that lost it would
    /// show it.
    pub async fn delete_message(&self, sequence: u64) {
        let js = self.context().await;
        let stream = js.get_stream(&self.stream).await.expect("the stream");
        stream.delete_message(sequence).await.expect("delete a message");
    }

    /// Plays a NATS server that came back from a crash without the newest
    /// messages it had acknowledged: the stream is made anew (with the
    /// relay's configuration) holding only its first `keep` messages, with
    /// their subjects and headers, at their sequences.
    pub async fn keep_only_first(&self, keep: u64) {
        let js = self.context().await;
        let mut stream = js.get_stream(&self.stream).await.expect("the stream");
        let config = stream.info().await.expect("stream info").config.clone();
        let mut kept = Vec::new();
        for seq in 1..=keep {
            kept.push(stream.get_raw_message(seq).await.expect("a message to keep"));
        }
        js.delete_stream(&self.stream).await.expect("delete the stream");
        js.create_stream(config).await.expect("create the stream again");
        for message in kept {
            let ack = js
                .publish_with_headers(message.subject.clone(), message.headers.clone(), message.payload.clone())
                .await
                .expect("publish a kept message");
            assert_eq!(ack.await.expect("acknowledged").sequence, message.sequence);
        }
    }

    /// Every message, in stream order.
    pub async fn messages(&self) -> Vec<StreamMessage> {
        let js = self.context().await;
        let Ok(mut stream) = js.get_stream(&self.stream).await else { return Vec::new() };
        let last = stream.info().await.expect("stream info").state.last_sequence;
        let mut all = Vec::with_capacity(last as usize);
        for seq in 1..=last {
            // A deleted message leaves its sequence empty.
            let Ok(message) = stream.get_raw_message(seq).await else { continue };
            let id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
            let raw = String::from_utf8_lossy(&message.payload).into_owned();
            let body = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
            all.push(StreamMessage { id, body, raw });
        }
        all
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}
