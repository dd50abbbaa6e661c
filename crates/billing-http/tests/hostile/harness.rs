//! The app under attack, and a raw HTTP/1.1 client that can send what no
//! well-behaved client library would (invalid UTF-8 in paths and headers,
//! lying or doubled headers).
//!
//! The app runs on a runtime of its own whose every thread logs every
//! event of every crate at every level into a buffer, and whose thread
//! names let the panic hook tell the server's panics from the test's. The
//! test drives it from a plain thread, so proptest's runner stays
//! synchronous.

use billing_domain::Metering;
use billing_engine::{Engine, Metrics, Store};
use billing_http::{http_metrics, AppState, Tokens};
use billing_reliability::secrets::{without_handed_key, Sweep};
use billing_testkit::{engine_config, LogBuffer};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tokio::sync::oneshot;

pub const API_TOKEN: &str = "hostile-api-token-0123456789";
pub const RUNTIME_TOKEN: &str = "hostile-runtime-token-0123456789";

/// How long the raw client waits for an answer. Far beyond any answer of
/// a live server; a hang is a finding.
const READ_TIMEOUT: Duration = Duration::from_secs(40);

/// Largest answer read (the statement of a small workspace is far below).
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Panic messages of every server thread, by thread name. The hook is
/// installed once per test binary and keeps the default hook's output.
static SERVER_PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();
static HARNESSES: AtomicU64 = AtomicU64::new(0);

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            if thread.starts_with("hostile-server-") {
                SERVER_PANICS.lock().unwrap_or_else(|p| p.into_inner()).push((thread, info.to_string()));
            }
            previous(info);
        }));
    });
}

/// An answer as it came off the socket.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The router over an engine over `url`, served on 127.0.0.1.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    pub engine: Engine,
    pub store: Store,
    thread_prefix: String,
    logs: LogBuffer,
    shutdown: Option<oneshot::Sender<()>>,
    /// Every answer's text, for the sweep.
    answers: Mutex<Vec<u8>>,
}

impl Harness {
    /// Starts the app over the database of `url` (migrating it first).
    pub fn start(url: &str) -> Harness {
        install_panic_hook();
        let thread_prefix = format!("hostile-server-{}-", HARNESSES.fetch_add(1, Ordering::Relaxed));
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);
        let prefix = thread_prefix.clone();
        let counter = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name_fn(move || format!("{prefix}{}", counter.fetch_add(1, Ordering::Relaxed)))
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
            .build()
            .expect("a runtime");
        let url = url.to_owned();
        let (engine, store, addr, shutdown) = runtime.block_on(async move {
            let db = billing_engine::Db::connect(&url).await.expect("connect");
            db.migrate().await.expect("migrate");
            let store = Store::new(db);
            let mut registry = Registry::default();
            let mut config = engine_config(&store, Metering::Enabled);
            config.metrics = Arc::new(Metrics::new(&mut registry));
            let engine = Engine::start(store.clone(), config).await.expect("start the engine");
            let metrics = http_metrics(&mut registry);
            let tokens = Tokens::new(API_TOKEN, RUNTIME_TOKEN).expect("valid tokens");
            let state = AppState::new(engine.clone(), tokens, Arc::new(registry), metrics);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let (shutdown, stop) = oneshot::channel::<()>();
            tokio::spawn(billing_http::serve(listener, state, async move {
                let _ = stop.await;
            }));
            (engine, store, addr, shutdown)
        });
        Harness {
            runtime,
            addr,
            engine,
            store,
            thread_prefix,
            logs,
            shutdown: Some(shutdown),
            answers: Mutex::default(),
        }
    }

    /// Sends `request` as it is and reads the answer; `None` when the
    /// connection closed without one (hyper refuses some garbage that way).
    pub fn raw(&self, request: &[u8]) -> Option<RawAnswer> {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the app");
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(READ_TIMEOUT)).expect("timeout");
        // The server may answer (413, 401) and close before reading it all.
        let _ = stream.write_all(request);
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    bytes.extend_from_slice(&chunk[..n]);
                    assert!(bytes.len() <= ANSWER_BYTES_MAX, "an answer over {ANSWER_BYTES_MAX} bytes");
                }
                Err(err)
                    if err.kind() == std::io::ErrorKind::WouldBlock || err.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("no answer within {READ_TIMEOUT:?}")
                }
                Err(_) => break,
            }
        }
        let answer = parse_answer(&bytes)?;
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers.extend_from_slice(without_handed_key(&answer.text()).as_bytes());
        answers.push(b'\n');
        Some(answer)
    }

    /// A well-formed request: method, path, headers, body.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> RawAnswer {
        let bytes = build_request(method.as_bytes(), path.as_bytes(), headers, body);
        self.raw(&bytes).unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    pub fn event_count(&self) -> u64 {
        self.runtime.block_on(self.store.event_count()).expect("count the events")
    }

    /// Every event of `ws`, as the store holds them.
    pub fn events_of(&self, ws: &str) -> Vec<billing_engine::StoredEvent> {
        self.runtime.block_on(self.store.workspace_events(ws, 0, 1_000_000)).expect("read the events")
    }

    /// Panics of this harness's server threads so far.
    pub fn panics(&self) -> Vec<String> {
        SERVER_PANICS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(thread, _)| thread.starts_with(&self.thread_prefix))
            .map(|(_, message)| message.clone())
            .collect()
    }

    /// Every line the app logged so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The sweep every test ends with: no server panic, and no secret in
    /// any answer (but a byo answer's `api_key`), log line, panic message or
    /// table. Returns the number of log lines read.
    pub fn sweep(&self, url: &str) -> u64 {
        let sweep = Sweep::new().with("the API token", API_TOKEN).with("the runtime token", RUNTIME_TOKEN);
        let panics = self.panics();
        for message in &panics {
            sweep.assert_clean("a panic message", message.as_bytes());
        }
        assert!(panics.is_empty(), "the server panicked {} times", panics.len());
        sweep.assert_clean("an answer", &self.answers.lock().unwrap_or_else(|p| p.into_inner()));
        let logs = self.logs();
        sweep.assert_clean("a log line", logs.as_bytes());
        let dump = self.runtime.block_on(billing_reliability::dump::dump(url));
        sweep.assert_clean("a table", dump.text.as_bytes());
        sweep.assert_clean("the database file", &dump.file_bytes);
        logs.lines().count() as u64
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let engine = self.engine.clone();
        self.runtime.block_on(async move { engine.shutdown().await });
    }
}

/// An HTTP/1.1 request with `Host`, `Connection: close` and, when there is
/// a body and the caller set none, `Content-Length`.
pub fn build_request(method: &[u8], path: &[u8], headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(method);
    bytes.push(b' ');
    bytes.extend_from_slice(path);
    bytes.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let declared = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if let (Some(body), false) = (body, declared) {
        bytes.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

fn parse_answer(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(RawAnswer { status, headers, body })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}
