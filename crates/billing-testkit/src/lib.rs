//! # billing-testkit
//!
//! What every test binary of bookbag-billing shares:
//! - [`TestDb`]: a throw-away database on this machine's real SQLite (a
//!   file in a temporary directory) or Postgres (a database of its own on
//!   127.0.0.1:5432, dropped afterwards), so tests run in parallel and
//!   never see each other's rows;
//! - [`both_backends!`]: one test body, run once per backend;
//! - plaintext provider keys that tests later search for everywhere.

use billing_domain::{Catalog, MasterKey, MasterKeyVault, Metering};
use billing_engine::{Db, Engine, EngineConfig, Store};
use std::sync::{Arc, Mutex};

/// The shared Postgres server's admin URL (trust auth on this machine).
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// Plaintext keys tests add, then search for in every place a key must
/// never reach.
pub const OPENAI_KEY: &str = "sk-proj-TESTSECRETopenaiAAAA1111";
pub const OPENAI_KEY_2: &str = "sk-TESTSECRETopenaiBBBBBBBB2222";
pub const ANTHROPIC_KEY: &str = "sk-ant-TESTSECRETanthropicC3333";
pub const ANTHROPIC_KEY_2: &str = "sk-ant-TESTSECRETanthropicD4444";
pub const PLAINTEXT_KEYS: [&str; 4] = [OPENAI_KEY, OPENAI_KEY_2, ANTHROPIC_KEY, ANTHROPIC_KEY_2];

/// The distinctive middle of each test key: a leak of part of a key is
/// still a leak.
pub fn key_fragments() -> Vec<&'static str> {
    PLAINTEXT_KEYS.iter().map(|k| &k[8..24]).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("billing.db").display());
                TestDb { backend, url, pg_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let name = format!("bbtest_{}", uuid::Uuid::new_v4().simple());
                let admin = admin_pool().await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("CREATE DATABASE (is PostgreSQL up? .ci/services starts it)");
                admin.close().await;
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable");
                TestDb { backend, url, pg_name: Some(name), _dir: None }
            }
        }
    }

    /// The SQLite file, for tests that read its bytes.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("billing.db"))
    }

    /// Connects and migrates.
    pub async fn store(&self) -> Store {
        let db = Db::connect(&self.url).await.expect("connect to the test database");
        db.migrate().await.expect("migrate the test database");
        Store::new(db)
    }
}

async fn admin_pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(POSTGRES_ADMIN_URL).await.expect("Postgres admin")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs outside any async context we can rely on: use a thread
        // with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let admin = admin_pool().await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                admin.close().await;
            });
        })
        .join();
    }
}

/// Sends the engine's logs to the test output (shown for failing tests);
/// `RUST_LOG` filters them (default `warn`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// A fixed master key, so tests can open what they sealed.
pub fn master_key() -> MasterKey {
    MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("a valid master key")
}

/// The engine configuration tests start from.
pub fn engine_config(store: &Store, metering: Metering) -> EngineConfig {
    EngineConfig::new(Arc::new(Catalog::shipped()), metering, Arc::new(MasterKeyVault::new(&master_key())), store)
}

/// A started engine over `db` with the default configuration.
pub async fn engine(db: &TestDb) -> Engine {
    let store = db.store().await;
    let config = engine_config(&store, Metering::Enabled);
    Engine::start(store, config).await.expect("start the engine")
}

/// Runs an `async fn(Backend)` test once on SQLite and once on Postgres.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::init_logs();
                    super::$name($crate::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::init_logs();
                    super::$name($crate::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// A writer into a shared buffer, for a subscriber that captures logs (the
/// secret sweeps read everything logged).
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
