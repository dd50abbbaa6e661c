//! A `bookbag-billing serve` child process that a test can SIGKILL at any
//! moment and start again on the same database, data directory and port.
//!
//! The binary's path comes from the test (`env!("CARGO_BIN_EXE_bookbag-billing")`
//! is only known inside the binary's own crate). Every start appends the
//! process's standard error and output to `serve.log` in its directory, so
//! that the secret sweep reads every line every incarnation wrote,
//! including any panic message.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails (migrations, loading).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Starts tried on fresh ports when the old one was taken meanwhile.
const START_TRIES_MAX: u32 = 3;

pub struct ServeProcess {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    child: Option<Child>,
    /// How many times the process was started.
    pub starts: u32,
}

impl ServeProcess {
    /// Starts `serve` in `dir` (its working and data directory) with `env`
    /// (and no `BILLING_*` variable of the test's own environment), and
    /// waits until `/readyz` answers 200.
    pub fn start(bin: &Path, dir: &Path, env: &[(String, String)]) -> ServeProcess {
        let mut server = ServeProcess {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            env: env.to_vec(),
            port: crate::free_port(),
            child: None,
            starts: 0,
        };
        server.start_again();
        server
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// Everything every incarnation logged.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Starts the process again (after [`kill`](Self::kill) or
    /// [`terminate`](Self::terminate)) on the same port when it is free.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "serve is already running");
        for attempt in 0..START_TRIES_MAX {
            if attempt > 0 {
                self.port = crate::free_port();
            }
            self.spawn();
            if self.wait_ready() {
                self.starts += 1;
                return;
            }
        }
        panic!("serve did not become ready in {START_TRIES_MAX} tries; its log:\n{}", tail(&self.log()));
    }

    /// SIGKILL: no shutdown code runs; whatever was in flight is cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (graceful shutdown); returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve did not stop on SIGTERM within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A one-shot command of the binary (`audit verify`, ...) with the same
    /// settings as the server.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args);
        command.output().expect("run bookbag-billing")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        for (name, _) in std::env::vars() {
            if name.starts_with("BILLING_") {
                command.env_remove(name);
            }
        }
        command.current_dir(&self.dir).env("RUST_LOG", "info");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("serve.log");
        let mut command = self.command();
        command
            .arg("serve")
            .env("BILLING_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdout(log.try_clone().expect("serve.log"))
            .stderr(log);
        self.child = Some(command.spawn().expect("spawn bookbag-billing serve"));
    }

    /// True once `/readyz` answers 200; false when the process exited.
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < READY_WITHIN {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if readyz(self.port) == Some(200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill();
        false
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status of `GET /readyz` on `port`, or `None` when nothing answers.
pub fn readyz(port: u16) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split(' ').nth(1)?.parse().ok()
}

/// The last lines of a log, for a failure message.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
