//! A Postgres cluster of one test's own: `initdb` into a temporary
//! directory, `postgres` on a free port of 127.0.0.1 with its socket in that
//! directory. A test may stop it (`pg_ctl stop -m immediate`: the crash of
//! a database server) and start it again; dropping the guard stops it and
//! removes every file, also when the test fails. The shared server on 5432
//! is never touched.
//!
//! Tests run as root and `initdb` refuses root, so every Postgres program
//! runs as the `postgres` user (`runuser`), in a directory it owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "60";

/// The operating-system user Postgres programs run as.
const PG_USER: &str = "postgres";

pub struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
}

impl ThrowawayPostgres {
    /// initdb, then start. Panics (after cleaning up) when either fails.
    pub fn start() -> ThrowawayPostgres {
        let bin = postgres_bin().expect("PostgreSQL server programs under /usr/lib/postgresql/*/bin");
        let dir = tempfile::Builder::new().prefix("bbpg-").tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("socket")).expect("the socket directory");
        let chown = Command::new("chown").arg("-R").arg(format!("{PG_USER}:")).arg(dir.path()).output();
        assert!(chown.is_ok_and(|o| o.status.success()), "chown of the cluster directory to {PG_USER}");
        let mut cluster = ThrowawayPostgres { dir, bin, port: crate::free_port(), running: false };
        let data = cluster.data_dir();
        let init = cluster.run_as_postgres(
            "initdb",
            &["-D", path_str(&data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        cluster.start_again();
        cluster
    }

    /// `postgres://` URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }

    /// Starts the stopped server (crash recovery runs first after an
    /// immediate stop) and waits until it accepts connections.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=40 -c shared_buffers=32MB",
            self.port,
            path_str(&self.dir.path().join("socket"))
        );
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let out = self.run_as_postgres(
            "pg_ctl",
            &["-D", path_str(&data), "-l", path_str(&log), "-w", "-t", PG_CTL_WAIT_SECS, "-o", &options, "start"],
        );
        assert!(out.status.success(), "pg_ctl start failed: {}{}", String::from_utf8_lossy(&out.stderr), self.log());
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: every backend is killed at once, nothing
    /// is flushed beyond what was committed; the next start recovers from
    /// the WAL. Returns once the server is gone.
    pub fn stop_immediate(&mut self) {
        let data = self.data_dir();
        let out = self.run_as_postgres(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECS, "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
        self.running = false;
        // The port must really be closed before the caller counts the outage.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the throw-away Postgres still listens on {} after stop", self.port);
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_as_postgres(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", PG_USER, "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("runuser {program}: {e}"))
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self.run_as_postgres("pg_ctl", &["-D", path_str(&data), "-m", "immediate", "-w", "stop"]);
        }
        // The TempDir removes every file when it drops, right after this.
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The newest installed major version's server programs.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
