//! Load generators: closed loops (N callers, each sending its next request
//! when the last is answered) and an open loop at a fixed rate, measuring
//! throughput and latency from the moment a request was due.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[index.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

/// Runs `total` requests from `callers` concurrent tasks; `request(i)`
/// sends request number `i` and says whether it succeeded. `tick` is told
/// of every answer (for a progress bar).
pub async fn closed_loop<F, Fut>(callers: usize, total: u64, request: F, tick: impl Fn() + Send + Sync + 'static) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let tick = Arc::new(tick);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (request, tick, next) = (request.clone(), tick.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut ok, mut errors) = (0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return (latencies, ok, errors);
                    }
                    let sent = Instant::now();
                    if request(i).await {
                        ok += 1;
                    } else {
                        errors += 1;
                    }
                    latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    tick();
                }
            })
        })
        .collect();
    collect(tasks, started).await
}

/// Sends `total` requests at `rate` per second from `callers` tasks, each
/// request due at its own instant; latency counts from that instant, so a
/// stall shows in the figures instead of slowing the load.
pub async fn open_loop<F, Fut>(callers: usize, total: u64, rate: f64, request: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut ok, mut errors) = (0u64, 0u64);
                let mut i = caller;
                while i < total {
                    let due = started + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    if request(i).await {
                        ok += 1;
                    } else {
                        errors += 1;
                    }
                    latencies.push(due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    i += callers as u64;
                }
                (latencies, ok, errors)
            })
        })
        .collect();
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, u64, u64)>>, started: Instant) -> Run {
    let mut run = Run::default();
    for task in tasks {
        if let Ok((latencies, ok, errors)) = task.await {
            run.latencies_us.extend(latencies);
            run.ok += ok;
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run.requests = run.ok + run.errors;
    run.latencies_us.sort_unstable();
    run
}

/// CPU time spent by this process and by every `postgres` process of the
/// machine, to tell what a run cost per request whatever else the machine
/// was doing.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSample {
    pub own: Duration,
    pub postgres: Duration,
}

impl CpuSample {
    /// Counts the Postgres backends of `database` and the server's shared
    /// processes (WAL writer, checkpointer, ...), not other databases'.
    pub fn now(database: &str) -> CpuSample {
        CpuSample { own: own_cpu(), postgres: postgres_cpu(database) }
    }

    /// Microseconds of each per `requests`, since `earlier`.
    pub fn per_request_us(&self, earlier: &CpuSample, requests: u64) -> (f64, f64) {
        let n = requests.max(1) as f64;
        let own = self.own.saturating_sub(earlier.own).as_secs_f64() * 1e6 / n;
        let pg = self.postgres.saturating_sub(earlier.postgres).as_secs_f64() * 1e6 / n;
        (own, pg)
    }
}

fn own_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole struct rusage into the pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// User and system time of the `postgres` processes serving `database`,
/// plus the server's shared ones, from /proc.
fn postgres_cpu(database: &str) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((name, rest)) = stat.split_once(") ") else { continue };
        if !name.ends_with("(postgres") {
            continue;
        }
        // A backend's title is "postgres: USER DATABASE HOST ..."; shared
        // processes have no database in theirs.
        let title = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
        let backend = title.contains("127.0.0.1(") || title.contains("[local]");
        if backend && !title.contains(database) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After "pid (comm) ": state is field 0; utime and stime are 11 and 12.
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    Duration::from_secs_f64(total)
}
