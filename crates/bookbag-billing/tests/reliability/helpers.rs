//! What the suites of this binary share: the binary's path, the settings of
//! a `serve` under test, and the sweep every test ends with.

use billing_reliability::dump::dump;
use billing_reliability::load::{Journal, Target};
use billing_reliability::nats::TestStream;
use billing_reliability::secrets::Sweep;
use billing_reliability::serve::{tail, ServeProcess};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_bookbag-billing");

/// Log filter of a server under test: every level of our own crates, so the
/// sweep reads everything they could ever write.
const RUST_LOG: &str = "info,billing_engine=trace,billing_http=trace,billing_domain=trace,billing_nats=trace,\
                        bookbag_billing=trace,sqlx=warn";

/// Settings of one `serve` under test: its own tokens, the fixed master key,
/// JSON logs.
pub struct Settings {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub api_token: String,
    pub runtime_token: String,
    pub env: Vec<(String, String)>,
}

impl Settings {
    pub fn new(database_url: &str, nats: Option<&TestStream>) -> Settings {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let id = format!("{:016x}", rand::random::<u64>());
        let api_token = format!("rel-api-{id}");
        let runtime_token = format!("rel-runtime-{id}");
        let mut env: Vec<(String, String)> = [
            ("BILLING_DATABASE_URL", database_url.to_owned()),
            ("BILLING_API_TOKEN", api_token.clone()),
            ("BILLING_RUNTIME_TOKEN", runtime_token.clone()),
            ("BILLING_MASTER_KEY", billing_testkit::master_key().to_base64()),
            ("BILLING_DATA_DIR", dir.path().join("data").display().to_string()),
            ("BILLING_LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", RUST_LOG.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(stream) = nats {
            env.extend(stream.env());
        }
        Settings { dir, database_url: database_url.to_owned(), api_token, runtime_token, env }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `serve` (blocking the calling worker until it is ready).
    pub fn start(&self) -> ServeProcess {
        tokio::task::block_in_place(|| ServeProcess::start(&PathBuf::from(BIN), self.path(), &self.env))
    }

    pub fn target(&self, server: &ServeProcess) -> std::sync::Arc<Target> {
        Target::new(&server.base(), &self.api_token, &self.runtime_token)
    }

    /// Every secret of this server: the test keys, both tokens, the master key.
    pub fn sweep(&self) -> Sweep {
        Sweep::new()
            .with("the API token", &self.api_token)
            .with("the runtime token", &self.runtime_token)
            .with("the master key", &billing_testkit::master_key().to_base64())
    }
}

/// `audit verify` over the server's database: exit 0 and its report.
pub fn audit_verify(server: &ServeProcess) {
    let out = tokio::task::block_in_place(|| server.run(&["audit", "verify"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "audit verify found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sweep every test ends with: the load's answers, the server's whole
/// log (every incarnation, panics included), every table of the database
/// (and the SQLite file's bytes), and the NATS messages, if any. Also: no
/// panic in the log, and no 5xx other than 503 in any answer.
pub async fn sweep_everything(
    settings: &Settings,
    server: &ServeProcess,
    journal: &Journal,
    stream: Option<&TestStream>,
) -> SweepFigures {
    let sweep = settings.sweep();
    let leaks = journal.leaks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(leaks.is_empty(), "answers held secrets: {leaks:?}");
    assert_eq!(journal.server_errors.load(Ordering::Relaxed), 0, "a 5xx other than 503 was answered");
    let log = server.log();
    sweep.assert_clean("the server's log", log.as_bytes());
    assert!(!log.contains("panicked"), "the server panicked:\n{}", tail(&log));
    let dump = dump(&settings.database_url).await;
    sweep.assert_clean("a table of the database", dump.text.as_bytes());
    sweep.assert_clean("the database file", &dump.file_bytes);
    let mut messages = 0;
    if let Some(stream) = stream {
        let all = stream.messages().await;
        for message in &all {
            sweep.assert_clean("a NATS message", message.raw.as_bytes());
        }
        messages = all.len() as u64;
    }
    SweepFigures { log_lines: log.lines().count() as u64, rows: dump.tables.iter().map(|(_, n)| n).sum(), messages }
}

pub struct SweepFigures {
    pub log_lines: u64,
    pub rows: u64,
    pub messages: u64,
}

/// How the stream compares with the log.
pub struct StreamCheck {
    pub events: u64,
    pub messages: u64,
    /// Stored events that are not on the stream.
    pub missing: u64,
    /// One line per workspace whose stream is not its log.
    pub problems: Vec<String>,
    /// The server's relay metrics, for the failure message.
    pub relay_metrics: String,
}

impl StreamCheck {
    /// Every stored event is on the stream.
    #[track_caller]
    pub fn assert_complete(&self) {
        assert!(
            self.problems.is_empty(),
            "the stream holds {} messages for {} events:\n{}\nrelay metrics:\n{}",
            self.messages,
            self.events,
            self.problems.join("\n"),
            self.relay_metrics
        );
    }
}

/// Compares the stream with the log of `workspaces`, after waiting up to a
/// minute for the relay to catch up. Asserts what holds even when the relay
/// skipped events: no message twice (by `Nats-Msg-Id` `<ws>/<sequence>`),
/// sequences rising per workspace, nothing that is not in the log.
/// Completeness is [`StreamCheck::assert_complete`]. `target` is the
/// running server.
pub async fn compare_stream(stream: &TestStream, target: &Target, workspaces: &[String]) -> StreamCheck {
    let mut stored = std::collections::BTreeMap::new();
    for ws in workspaces {
        stored.insert(ws.clone(), billing_reliability::books::events(target, ws).await.len() as u64);
    }
    let events: u64 = stored.values().sum();
    stream.wait_for(events, Duration::from_secs(60)).await;
    let messages = stream.messages().await;
    let mut seen = HashSet::new();
    let mut per_ws: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    for message in &messages {
        assert!(seen.insert(message.id.clone()), "message {} is in the stream twice", message.id);
        let ws = message.body["workspace_id"].as_str().unwrap_or_default().to_owned();
        let sequence = message.body["sequence"].as_u64().unwrap_or_default();
        assert_eq!(message.id, format!("{ws}/{sequence}"));
        per_ws.entry(ws).or_default().push(sequence);
    }
    let (mut missing, mut problems) = (0, Vec::new());
    for (ws, count) in &stored {
        let published = per_ws.remove(ws).unwrap_or_default();
        assert!(published.windows(2).all(|w| w[0] < w[1]), "{ws}: the stream is out of order");
        assert!(published.iter().all(|s| (1..=*count).contains(s)), "{ws}: the stream holds events the log lacks");
        missing += count - published.len() as u64;
        if published.len() as u64 != *count {
            problems.push(format!("{ws}: {count} events, on the stream: {}", ranges(&published)));
        }
    }
    assert!(per_ws.is_empty(), "the stream holds workspaces the load never touched");
    let metrics =
        target.send(reqwest::Method::GET, "/metrics", None, billing_reliability::load::Token::Api, None).await;
    let relay_metrics = metrics
        .map(|m| m.text.lines().filter(|l| l.starts_with("billing_relay")).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    StreamCheck { events, messages: messages.len() as u64, missing, problems, relay_metrics }
}

/// `1-5, 7-9` for `[1, 2, 3, 4, 5, 7, 8, 9]`.
fn ranges(sequences: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = sequences.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(", ")
}
