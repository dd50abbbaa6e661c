//! The scenarios of the performance issue, each in a database of its own.

use billing_domain::*;
use billing_engine::projection::IN_PROCESS_PROJECTOR;
use billing_engine::{Db, Engine, EngineConfig, Outcome, Store};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::{closed_loop, open_loop, CpuSample, Run};
use crate::pgstat::{PerRequest, PgStats};
use crate::report::Report;

/// Concurrent callers of the contention scenarios.
pub const CALLERS: usize = 64;
/// Workspaces of the spread scenarios.
pub const WORKSPACES: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Postgres: engine vs out-of-the-box cqrs-es vs raw INSERT, 64 callers
    /// over 1,000 workspaces; then one hot workspace; then p99 at half rate.
    Postgres,
    /// A workspace with a long history against a new one.
    History,
    /// The embedded default: SQLite, 64 callers.
    Sqlite,
    /// `serve` over HTTP with a load generator in the same process.
    Http,
    /// Resident memory of `serve` with 100,000 workspaces loaded.
    Memory,
    /// `audit replay` of a long history: events/s and peak memory.
    Replay,
    /// What each design choice buys: the engine on Postgres with one of
    /// them turned off at a time, beside the engine as shipped.
    Choices,
    /// What the slowest percent at half rate waits for: the open loop with
    /// the projector's work moved out of its way, one variant at a time.
    Latency,
}

impl Scenario {
    /// In the order they run: replay measures its children's peak memory,
    /// so it runs before memory starts a large child of its own.
    pub const ALL: [Scenario; 8] = [
        Scenario::Postgres,
        Scenario::Choices,
        Scenario::Latency,
        Scenario::History,
        Scenario::Sqlite,
        Scenario::Http,
        Scenario::Replay,
        Scenario::Memory,
    ];

    pub fn parse(raw: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == raw)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Postgres => "postgres",
            Scenario::History => "history",
            Scenario::Sqlite => "sqlite",
            Scenario::Http => "http",
            Scenario::Memory => "memory",
            Scenario::Replay => "replay",
            Scenario::Choices => "choices",
            Scenario::Latency => "latency",
        }
    }
}

pub struct Options {
    /// Admin URL of the Postgres server the scenarios create databases on.
    pub postgres_admin_url: String,
    pub scenarios: Vec<Scenario>,
    /// Scales every request count (1.0: the documented run).
    pub scale: f64,
    /// The `bookbag-billing` executable, for the scenarios that measure a
    /// process of their own (memory, replay).
    pub executable: std::path::PathBuf,
}

impl Options {
    fn count(&self, full: u64) -> u64 {
        ((full as f64) * self.scale).max(100.0) as u64
    }
}

/// Runs the chosen scenarios and returns the table.
pub async fn run(options: &Options) -> Result<Report, String> {
    let mut report = Report::default();
    for scenario in &options.scenarios {
        eprintln!("== scenario {}", scenario.name());
        match scenario {
            Scenario::Postgres => postgres(options, &mut report).await?,
            Scenario::History => history(options, &mut report).await?,
            Scenario::Sqlite => sqlite(options, &mut report).await?,
            Scenario::Http => http(options, &mut report).await?,
            Scenario::Memory => memory(options, &mut report).await?,
            Scenario::Replay => replay(options, &mut report).await?,
            Scenario::Choices => choices(options, &mut report).await?,
            Scenario::Latency => latency(options, &mut report).await?,
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// Databases of the run

/// A database created for one scenario, dropped by [`BenchDb::drop_now`].
struct BenchDb {
    url: String,
    name: Option<String>,
    admin_url: String,
    _dir: Option<tempfile::TempDir>,
}

impl BenchDb {
    async fn postgres(admin_url: &str) -> Result<BenchDb, String> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(|e| e.to_string())?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.map_err(|e| e.to_string())?;
        admin.close().await;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
        let url = format!("{base}/{name}?sslmode=disable");
        Ok(BenchDb { url, name: Some(name), admin_url: admin_url.to_owned(), _dir: None })
    }

    fn sqlite() -> Result<BenchDb, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        Ok(BenchDb { url, name: None, admin_url: String::new(), _dir: Some(dir) })
    }

    async fn store(&self) -> Result<Store, String> {
        let db = Db::connect(&self.url).await.map_err(|e| e.to_string())?;
        db.migrate().await.map_err(|e| e.to_string())?;
        Ok(Store::new(db))
    }

    async fn drop_now(self) {
        if let Some(name) = &self.name {
            if let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&self.admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                admin.close().await;
            }
        }
    }
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("  {msg:<28} [{bar:30}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn vault() -> Arc<MasterKeyVault> {
    Arc::new(MasterKeyVault::new(&MasterKey::generate()))
}

async fn engine_on(store: &Store) -> Result<Engine, String> {
    engine_with(store, |_| {}).await
}

async fn engine_with(store: &Store, change: impl FnOnce(&mut EngineConfig)) -> Result<Engine, String> {
    let mut config = EngineConfig::new(Arc::new(Catalog::shipped()), Metering::Enabled, vault(), store);
    change(&mut config);
    Engine::start(store.clone(), config).await.map_err(|e| e.to_string())
}

fn ws(i: u64) -> WorkspaceId {
    WorkspaceId::parse(&format!("w{i}")).unwrap_or_else(|_| unreachable!("a valid id"))
}

/// Creates `count` workspaces (from `first`) with a grant that no run can
/// exhaust.
async fn prepare(engine: &Engine, first: u64, count: u64) -> Result<(), String> {
    let progress = bar(count, "creating workspaces");
    let engine = engine.clone();
    let run = closed_loop(
        CALLERS,
        count,
        move |i| {
            let engine = engine.clone();
            async move {
                let w = ws(first + i);
                let owner = UserId::parse("owner").unwrap_or_else(|_| unreachable!());
                let create = Action::CreateWorkspace { workspace_id: w.clone(), owner };
                let grant = Action::GrantCredits {
                    grant_id: GrantId::parse("bench").unwrap_or_else(|_| unreachable!()),
                    amount: Credits::new(1_000_000_000_000),
                    reason: "bench".into(),
                };
                engine.execute(w.clone(), None, Channel::Platform, create).await.is_ok()
                    && engine.execute(w, None, Channel::Platform, grant).await.is_ok()
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    if run.errors > 0 {
        return Err(format!("{} workspaces could not be prepared", run.errors));
    }
    Ok(())
}

/// The id of reply number `i`: a different one for every `i`, in no order
/// (a bijective mix of `i`), as the platform's random reply ids are. Ids in
/// counting order would all land at one end of the idempotency index and
/// hide what a long history costs it.
fn reply_id(i: u64) -> String {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("r{:016x}", z ^ (z >> 31))
}

fn reply_action(i: u64, model: &str) -> Action {
    Action::ServeReply {
        reply_id: ReplyId::parse(&reply_id(i)).unwrap_or_else(|_| unreachable!()),
        agent_id: AgentId::parse("agent").unwrap_or_else(|_| unreachable!()),
        model: model.to_owned(),
    }
}

/// `total` metered replies (1 credit each) from [`CALLERS`] callers, spread
/// over `workspaces` workspaces starting at `first`.
async fn engine_replies(engine: &Engine, first: u64, workspaces: u64, total: u64, what: &str) -> Run {
    let progress = bar(total, what);
    let engine = engine.clone();
    let run = closed_loop(
        CALLERS,
        total,
        move |i| {
            let engine = engine.clone();
            async move {
                let result = engine
                    .execute(ws(first + i % workspaces), None, Channel::Platform, reply_action(i, "gpt-4o-mini"))
                    .await;
                matches!(result, Ok(Outcome::Reply(ref a)) if !a.repeated)
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    run
}

/// The correctness checks at the end of a run: the log holds one
/// `ReplyServed` per acknowledged reply, and the projections' balances are
/// granted - charged >= 0 with charged equal to what the log says.
async fn check(report: &mut Report, store: &Store, engine: &Engine, acknowledged: u64, what: &str) {
    let Ok(()) = engine.read_your_writes().await else {
        report.check(false, format!("{what}: the projections did not catch up"));
        return;
    };
    let figures = log_figures(store).await;
    match figures {
        Ok((replies, charged, balance, granted, spent)) => {
            report.check(
                replies == acknowledged,
                format!("{what}: {replies} ReplyServed events for {acknowledged} acknowledged replies"),
            );
            report.check(spent == charged, format!("{what}: projections spent {spent}, the log charged {charged}"));
            report.check(
                balance == granted - spent && balance >= 0,
                format!("{what}: balance {balance} != granted {granted} - spent {spent}"),
            );
        }
        Err(err) => report.check(false, format!("{what}: cannot read the log: {err}")),
    }
}

async fn log_figures(store: &Store) -> Result<(u64, i64, i64, i64, i64), String> {
    let (count_sql, charged_sql) = match store.db() {
        Db::Postgres(_) => (
            "SELECT COUNT(*) FROM events WHERE event_type = 'ReplyServed'",
            "SELECT COALESCE(SUM((payload->>'credits_charged')::bigint), 0)::bigint FROM events WHERE event_type = 'ReplyServed'",
        ),
        Db::Sqlite(_) => (
            "SELECT COUNT(*) FROM events WHERE event_type = 'ReplyServed'",
            "SELECT COALESCE(SUM(json_extract(payload, '$.credits_charged')), 0) FROM events WHERE event_type = 'ReplyServed'",
        ),
    };
    let sums = "SELECT CAST(COALESCE(SUM(balance), 0) AS bigint), CAST(COALESCE(SUM(granted), 0) AS bigint), \
                CAST(COALESCE(SUM(spent), 0) AS bigint) FROM credit_balances";
    macro_rules! figures {
        ($pool:expr) => {{
            let replies: i64 = sqlx::query_scalar(count_sql).fetch_one($pool).await.map_err(|e| e.to_string())?;
            let charged: i64 = sqlx::query_scalar(charged_sql).fetch_one($pool).await.map_err(|e| e.to_string())?;
            let (balance, granted, spent): (i64, i64, i64) =
                sqlx::query_as(sums).fetch_one($pool).await.map_err(|e| e.to_string())?;
            Ok((replies as u64, charged, balance, granted, spent))
        }};
    }
    match store.db() {
        Db::Postgres(pg) => figures!(&pg.pool),
        Db::Sqlite(lite) => figures!(&lite.reader),
    }
}

/// A row of the CPU this process and `database`'s Postgres spent per
/// request since `before`.
fn cpu_row(report: &mut Report, measure: &str, before: &CpuSample, database: &str, requests: u64, target: &str) {
    let (own_us, pg_us) = CpuSample::now(database).per_request_us(before, requests);
    report.row(measure, format!("{own_us:.1} us + {pg_us:.1} us = {:.1} us", own_us + pg_us), target, None);
}

fn rate(run: &Run) -> String {
    format!(
        "{:.0}/s (p50 {:.2} ms, p99 {:.2} ms, n={})",
        run.rate(),
        run.percentile_ms(0.5),
        run.percentile_ms(0.99),
        run.ok
    )
}

// ---------------------------------------------------------------------------
// Postgres: the engine, out-of-the-box cqrs-es, the raw ceiling

async fn postgres(options: &Options, report: &mut Report) -> Result<(), String> {
    let engine_run = {
        let db = BenchDb::postgres(&options.postgres_admin_url).await?;
        let store = db.store().await?;
        let engine = engine_on(&store).await?;
        prepare(&engine, 0, WORKSPACES).await?;
        let database = db.name.clone().unwrap_or_default();
        let cpu_before = CpuSample::now(&database);
        let run = engine_replies(&engine, 0, WORKSPACES, options.count(300_000), "engine, 1,000 workspaces").await;
        let measure = "  CPU per reply: engine process + Postgres (2 cores = 2,000,000 us/s)";
        cpu_row(report, measure, &cpu_before, &database, run.requests, "<= 66 us for 30,000/s");
        check(report, &store, &engine, run.ok, "engine 1,000 workspaces").await;
        let hot = {
            prepare(&engine, 1_000_000, 1).await?;
            engine_replies(&engine, 1_000_000, 1, options.count(200_000), "engine, one hot workspace").await
        };
        check(report, &store, &engine, run.ok + hot.ok, "engine hot workspace").await;
        report.row(
            "replies/s, Postgres, 64 callers, one hot workspace",
            rate(&hot),
            ">= 10,000/s",
            Some(hot.rate() >= 10_000.0),
        );
        let stats = PgStats::connect(&options.postgres_admin_url, &database).await?;
        let before = stats.sample().await?;
        let half = open_rate(&engine, run.rate() / 2.0, options.count(150_000), run.ok + hot.ok).await;
        let cost = stats.sample().await?.per_request(&before, half.ok);
        stats.close().await;
        check(report, &store, &engine, run.ok + hot.ok + half.ok, "engine half rate").await;
        report.row(
            format!("p99 latency at half the maximum rate ({:.0}/s)", run.rate() / 2.0),
            format!(
                "{:.2} ms (p50 {:.2} ms, achieved {:.0}/s)",
                half.percentile_ms(0.99),
                half.percentile_ms(0.5),
                half.rate()
            ),
            "<= 10 ms",
            Some(half.percentile_ms(0.99) <= 10.0),
        );
        report.row("  Postgres during the half-rate loop", cost.to_string(), "", None);
        engine.shutdown().await;
        store.db().close().await;
        db.drop_now().await;
        run
    };
    let baseline = cqrs_baseline(options).await?;
    let raw = raw_ceiling(options).await?;
    let ratio = engine_run.rate() / baseline.rate().max(1e-9);
    report.row(
        "replies/s, Postgres, 64 callers over 1,000 workspaces (engine)",
        rate(&engine_run),
        ">= 30,000/s and >= 20x cqrs-es",
        Some(engine_run.rate() >= 30_000.0 && ratio >= 20.0),
    );
    report.row("  out-of-the-box cqrs-es + postgres-es, same workload", rate(&baseline), "baseline", None);
    report.row("  engine / cqrs-es", format!("{ratio:.1}x"), ">= 20x", Some(ratio >= 20.0));
    report.row("  raw multi-row INSERT of the same rows, no logic", format!("{raw:.0} rows/s"), "ceiling", None);
    report.row("  engine / raw ceiling", format!("{:.2}", engine_run.rate() / raw.max(1e-9)), "", None);
    Ok(())
}

// ---------------------------------------------------------------------------
// Choices: the engine with one design choice turned off at a time

/// One engine configuration of [`choices`].
struct Choice {
    name: &'static str,
    change: fn(&mut EngineConfig),
}

const CHOICES: [Choice; 5] = [
    Choice { name: "as shipped (2 shards, group commit, aggregates in memory)", change: |_| {} },
    Choice { name: "without group commit (one command per transaction)", change: |c| c.batch_commands_max = 1 },
    Choice { name: "one shard writer instead of 2", change: |c| c.shards = 1 },
    Choice { name: "four shard writers instead of 2", change: |c| c.shards = 4 },
    Choice {
        name: "without aggregates in memory (snapshot + tail read per batch)",
        change: |c| c.cached_workspaces_max = 0,
    },
];

/// The same workload as the Postgres scenario (64 callers over 1,000
/// workspaces), each configuration in a database of its own, the ratio
/// against the engine as shipped measured in the same run.
async fn choices(options: &Options, report: &mut Report) -> Result<(), String> {
    // Two rounds, configurations interleaved, the better run of each kept:
    // this machine's rate wanders by a fifth from one run to the next.
    let mut best: Vec<Option<Run>> = vec![None; CHOICES.len()];
    for round in 1..=CHOICE_ROUNDS {
        for (choice, best) in CHOICES.iter().zip(best.iter_mut()) {
            let db = BenchDb::postgres(&options.postgres_admin_url).await?;
            let store = db.store().await?;
            let engine = engine_with(&store, choice.change).await?;
            prepare(&engine, 0, WORKSPACES).await?;
            // The same count for each: the rate falls as the tables grow, so
            // runs of different lengths would not compare.
            let total = options.count(60_000);
            let what = format!("{} (round {round})", choice.name);
            let run = engine_replies(&engine, 0, WORKSPACES, total, &what).await;
            check(report, &store, &engine, run.ok, &what).await;
            if best.as_ref().is_none_or(|b| run.rate() > b.rate()) {
                *best = Some(run);
            }
            engine.shutdown().await;
            store.db().close().await;
            db.drop_now().await;
        }
    }
    let shipped = best[0].as_ref().map_or(0.0, Run::rate);
    for (choice, run) in CHOICES.iter().zip(best) {
        let run = run.unwrap_or_default();
        report.row(
            format!("choice: {}", choice.name),
            format!("{} = {:.2}x as shipped", rate(&run), run.rate() / shipped.max(1e-9)),
            "",
            None,
        );
    }
    Ok(())
}

/// Rounds of [`choices`].
const CHOICE_ROUNDS: u32 = 2;

/// One engine configuration of [`latency`].
struct LatencyVariant {
    name: &'static str,
    change: fn(&mut EngineConfig),
    /// A `CHECKPOINT` this long into the loop.
    checkpoint_after: Option<Duration>,
}

const LATENCY_VARIANTS: [LatencyVariant; 5] = [
    LatencyVariant {
        name: "as shipped (window 200 ms, chunks of 256 events, paused)",
        change: |_| {},
        checkpoint_after: None,
    },
    LatencyVariant {
        name: "a flush in one transaction, no pauses",
        change: |c| c.projector_chunk_events = usize::MAX,
        checkpoint_after: None,
    },
    LatencyVariant {
        name: "projector window 20 ms, one transaction",
        change: |c| {
            c.projector_window = Duration::from_millis(20);
            c.projector_chunk_events = usize::MAX;
        },
        checkpoint_after: None,
    },
    LatencyVariant {
        name: "no projector during the run (caught up after)",
        change: |c| c.run_projector = false,
        checkpoint_after: None,
    },
    LatencyVariant {
        name: "as shipped, a CHECKPOINT 3 s into the loop",
        change: |_| {},
        checkpoint_after: Some(Duration::from_secs(3)),
    },
];

/// Runs `CHECKPOINT` on the server after `after` (what a checkpoint
/// starting during a loop does to its latency).
fn checkpoint_later(admin_url: &str, after: Duration) -> tokio::task::JoinHandle<()> {
    let admin_url = admin_url.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        if let Ok(pool) = PgPoolOptions::new().max_connections(1).connect(&admin_url).await {
            if let Err(err) = sqlx::query("CHECKPOINT").execute(&pool).await {
                eprintln!("  CHECKPOINT failed: {err}");
            }
            pool.close().await;
        }
    })
}

/// The half-rate open loop of the Postgres scenario, each variant in a
/// database of its own at the same rate: half what the engine as shipped
/// answers in a closed loop on the same fresh database. The server's
/// counters say whether a checkpoint ran during the loop.
async fn latency(options: &Options, report: &mut Report) -> Result<(), String> {
    let mut rate_half = None;
    for variant in &LATENCY_VARIANTS {
        let db = BenchDb::postgres(&options.postgres_admin_url).await?;
        let store = db.store().await?;
        let engine = engine_with(&store, variant.change).await?;
        prepare(&engine, 0, WORKSPACES).await?;
        let warm = engine_replies(&engine, 0, WORKSPACES, options.count(60_000), "closed loop (warm-up)").await;
        let rate = *rate_half.get_or_insert(warm.rate() / 2.0);
        let stats = PgStats::connect(&options.postgres_admin_url, db.name.as_deref().unwrap_or_default()).await?;
        let before = stats.sample().await?;
        let checkpoint = variant.checkpoint_after.map(|after| checkpoint_later(&options.postgres_admin_url, after));
        let half = open_rate(&engine, rate, options.count(100_000), warm.ok).await;
        if let Some(checkpoint) = checkpoint {
            let _ = checkpoint.await;
        }
        let after = stats.sample().await?;
        stats.close().await;
        engine.shutdown().await;
        // What a projector-less run committed is projected now, before the checks.
        let projector = billing_engine::projection::Projector::new(store.clone(), IN_PROCESS_PROJECTOR);
        projector.catch_up(&store, |_| {}).await.map_err(|e| e.to_string())?;
        let engine = engine_on(&store).await?;
        check(report, &store, &engine, warm.ok + half.ok, variant.name).await;
        engine.shutdown().await;
        store.db().close().await;
        db.drop_now().await;
        let cost = after.per_request(&before, half.ok);
        let (checkpoints, autovacuums) = (cost.checkpoints, cost.autovacuums);
        report.row(
            format!("latency at {rate:.0}/s: {}", variant.name),
            format!(
                "p99 {:.2} ms, p99.9 {:.2} ms (p50 {:.2} ms; closed loop {:.0}/s; {checkpoints} checkpoints, {autovacuums} autovacuums, {:.3} full pages per reply)",
                half.percentile_ms(0.99),
                half.percentile_ms(0.999),
                half.percentile_ms(0.5),
                warm.rate(),
                cost.wal_fpi
            ),
            "p99 <= 10 ms",
            Some(half.percentile_ms(0.99) <= 10.0),
        );
    }
    Ok(())
}

/// An open loop at `rate` over the 1,000 workspaces, reply ids after `offset`.
async fn open_rate(engine: &Engine, rate: f64, total: u64, offset: u64) -> Run {
    let engine = engine.clone();
    eprintln!("  open loop at {rate:.0}/s, {total} replies");
    open_loop(CALLERS * 4, total, rate, move |i| {
        let engine = engine.clone();
        async move {
            let i = offset + 10_000_000 + i;
            let result =
                engine.execute(ws(i % WORKSPACES), None, Channel::Platform, reply_action(i, "gpt-4o-mini")).await;
            matches!(result, Ok(Outcome::Reply(ref a)) if !a.repeated)
        }
    })
    .await
}

/// The same workload through `postgres_cqrs` with its defaults.
async fn cqrs_baseline(options: &Options) -> Result<Run, String> {
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    // The crate's own pool, with its defaults (TLS negotiation included).
    let plain_url = db.url.replace("?sslmode=disable", "");
    db.store().await?.db().close().await; // the schema
    let pool = postgres_es::default_postgress_pool(&plain_url).await;
    let services = WorkspaceServices::new(Arc::new(Catalog::shipped()), Metering::Enabled, vault());
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<Workspace>(pool.clone(), vec![], services));
    let command =
        |action: Action| WorkspaceCommand { at: chrono::Utc::now(), actor: None, channel: Channel::Platform, action };
    let setup = bar(WORKSPACES, "cqrs-es: creating workspaces");
    for i in 0..WORKSPACES {
        let w = ws(i);
        let create = Action::CreateWorkspace {
            workspace_id: w.clone(),
            owner: UserId::parse("owner").unwrap_or_else(|_| unreachable!()),
        };
        let grant = Action::GrantCredits {
            grant_id: GrantId::parse("bench").unwrap_or_else(|_| unreachable!()),
            amount: Credits::new(1_000_000_000),
            reason: String::new(),
        };
        cqrs.execute(w.as_str(), command(create)).await.map_err(|e| e.to_string())?;
        cqrs.execute(w.as_str(), command(grant)).await.map_err(|e| e.to_string())?;
        setup.inc(1);
    }
    setup.finish_and_clear();
    let total = options.count(20_000);
    let progress = bar(total, "cqrs-es, 1,000 workspaces");
    let run = closed_loop(
        CALLERS,
        total,
        {
            let cqrs = cqrs.clone();
            move |i| {
                let cqrs = cqrs.clone();
                async move {
                    let w = ws(i % WORKSPACES);
                    let cmd = WorkspaceCommand {
                        at: chrono::Utc::now(),
                        actor: None,
                        channel: Channel::Platform,
                        action: reply_action(i, "gpt-4o-mini"),
                    };
                    cqrs.execute(w.as_str(), cmd).await.is_ok()
                }
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    pool.close().await;
    db.drop_now().await;
    Ok(run)
}

/// Multi-row INSERTs of event-shaped rows into the same table, no logic: 4
/// connections, 1,000 rows a statement, one statement a transaction.
async fn raw_ceiling(options: &Options) -> Result<f64, String> {
    const ROWS_PER_INSERT: u64 = 1_000;
    const CONNECTIONS: u64 = 4;
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    let store = db.store().await?;
    let Db::Postgres(pg) = store.db() else { return Err("raw ceiling needs Postgres".into()) };
    let payload = serde_json::json!({"at": "2026-01-01T00:00:00Z", "by": "platform", "type": "ReplyServed",
        "reply_id": "r", "agent_id": "a", "model": "gpt-4o-mini", "provider": "openai", "route": "credits",
        "key_id": null, "credits_charged": 1, "list_cost": 1, "balance_after": 1});
    let metadata = serde_json::json!({"prev_hash": "0".repeat(64), "hash": "0".repeat(64)});
    let total = options.count(300_000);
    let statements = total / ROWS_PER_INSERT;
    let progress = bar(statements * ROWS_PER_INSERT, "raw INSERT ceiling");
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let pool = pg.pool.clone();
            let (payload, metadata, progress) = (payload.clone(), metadata.clone(), progress.clone());
            tokio::spawn(async move {
                let mut s = c;
                while s < statements {
                    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, idempotency_key) ",
                    );
                    qb.push_values(0..ROWS_PER_INSERT, |mut b, r| {
                        let n = s * ROWS_PER_INSERT + r;
                        b.push_bind("Workspace")
                            .push_bind(format!("w{}", n % WORKSPACES))
                            .push_bind((n / WORKSPACES + 1) as i64)
                            .push_bind("ReplyServed")
                            .push_bind("1")
                            .push_bind(&payload)
                            .push_bind(&metadata)
                            .push_bind(format!("reply:{}", reply_id(n)));
                    });
                    if qb.build().execute(&pool).await.is_err() {
                        return false;
                    }
                    progress.inc(ROWS_PER_INSERT);
                    s += CONNECTIONS;
                }
                true
            })
        })
        .collect();
    for task in tasks {
        if !task.await.unwrap_or(false) {
            return Err("the raw INSERT ceiling failed".into());
        }
    }
    let rows_per_s = (statements * ROWS_PER_INSERT) as f64 / started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    store.db().close().await;
    db.drop_now().await;
    Ok(rows_per_s)
}

// ---------------------------------------------------------------------------
// History length, SQLite, HTTP

async fn history(options: &Options, report: &mut Report) -> Result<(), String> {
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    prepare(&engine, 0, 2).await?;
    let long = options.count(1_000_000);
    let build = bar(long, "building a long history");
    let builder = engine.clone();
    let built = closed_loop(
        CALLERS,
        long,
        move |i| {
            let engine = builder.clone();
            async move { engine.execute(ws(0), None, Channel::Platform, reply_action(i, "bookbag-local")).await.is_ok() }
        },
        {
            let build = build.clone();
            move || build.inc(1)
        },
    )
    .await;
    build.finish_and_clear();
    engine.shutdown().await;
    store.db().close().await;
    // Each run has an engine of its own (both workspaces are loaded from
    // the store) and starts from a checkpoint, so both pay the same
    // full-page images; the server's counters tell what each cost it.
    let stats = PgStats::connect(&options.postgres_admin_url, db.name.as_deref().unwrap_or_default()).await?;
    let n = options.count(100_000);
    let (long_runs, new_runs) = history_rounds(&db, &stats, n, 0..2, "").await?;
    // The same pair with the server compressing full-page images (a
    // superuser's setting, here for this database only).
    let compressed = match stats.set_database("wal_compression", "lz4").await {
        Ok(()) => Some(history_rounds(&db, &stats, n, 2..4, ", wal_compression lz4").await?),
        Err(err) => {
            eprintln!("  wal_compression = lz4 is not available here: {err}");
            None
        }
    };
    stats.close().await;
    let best = |runs: &[(Run, PerRequest)]| {
        runs.iter().max_by(|a, b| a.0.rate().total_cmp(&b.0.rate())).cloned().unwrap_or_default()
    };
    let ((long_run, long_cost), (new_run, new_cost)) = (best(&long_runs), best(&new_runs));
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    let compressed_runs = compressed.iter().flat_map(|(l, n)| l.iter().chain(n));
    let acknowledged = built.ok + long_runs.iter().chain(&new_runs).chain(compressed_runs).map(|r| r.0.ok).sum::<u64>();
    check(report, &store, &engine, acknowledged, "history").await;
    let ratio = long_run.rate() / new_run.rate().max(1e-9);
    report.row(
        format!("replies/s, workspace with {} events (hot, 64 callers)", built.ok),
        rate(&long_run),
        ">= 95% of new",
        Some(ratio >= 0.95),
    );
    report.row("  same, a new workspace", rate(&new_run), "baseline", None);
    report.row(
        "  long / new: rate, p99",
        format!(
            "{:.0}%, {:.2} ms vs {:.2} ms",
            ratio * 100.0,
            long_run.percentile_ms(0.99),
            new_run.percentile_ms(0.99)
        ),
        ">= 95%, same p99",
        Some(ratio >= 0.95 && long_run.percentile_ms(0.99) <= new_run.percentile_ms(0.99) * 1.25 + 0.5),
    );
    report.row("  Postgres cost, long history", long_cost.to_string(), "", None);
    report.row("  Postgres cost, new workspace", new_cost.to_string(), "", None);
    if let Some((long, new)) = &compressed {
        let ((long_run, long_cost), (new_run, new_cost)) = (best(long), best(new));
        report.row(
            "  with wal_compression = lz4: long / new",
            format!(
                "{:.0}% ({:.0}/s vs {:.0}/s), p99 {:.2} ms vs {:.2} ms",
                long_run.rate() / new_run.rate().max(1e-9) * 100.0,
                long_run.rate(),
                new_run.rate(),
                long_run.percentile_ms(0.99),
                new_run.percentile_ms(0.99)
            ),
            "a deployment choice",
            None,
        );
        report.row("  Postgres cost, long history, lz4", long_cost.to_string(), "", None);
        report.row("  Postgres cost, new workspace, lz4", new_cost.to_string(), "", None);
    }
    engine.shutdown().await;
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}

/// Rounds of a new workspace (1) then the long one (0), each a
/// [`counted_run`] of `n` replies with ids after the round's own offset:
/// (long runs, new runs).
async fn history_rounds(
    db: &BenchDb,
    stats: &PgStats,
    n: u64,
    rounds: std::ops::Range<u64>,
    label: &str,
) -> Result<(Vec<(Run, PerRequest)>, Vec<(Run, PerRequest)>), String> {
    let (mut long, mut new) = (Vec::new(), Vec::new());
    for round in rounds {
        let offset = 10_000_000 * (round + 1);
        new.push(counted_run(db, stats, 1, n, offset, &format!("new workspace{label}")).await?);
        long.push(counted_run(db, stats, 0, n, offset, &format!("workspace with a long history{label}")).await?);
    }
    Ok((long, new))
}

/// [`one_workspace`] on an engine of its own, from a checkpoint, with what
/// it cost the server (the engine's pool is closed before the second
/// sample, so every backend has reported its counters).
async fn counted_run(
    db: &BenchDb,
    stats: &PgStats,
    workspace: u64,
    total: u64,
    offset: u64,
    what: &str,
) -> Result<(Run, PerRequest), String> {
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    stats.checkpoint().await?;
    let before = stats.sample().await?;
    let run = one_workspace(&engine, workspace, total, offset, what).await;
    engine.shutdown().await;
    store.db().close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stats.sample().await?;
    let cost = after.per_request(&before, run.ok);
    eprintln!("  {what}: {}; {cost}", rate(&run));
    Ok((run, cost))
}

async fn one_workspace(engine: &Engine, workspace: u64, total: u64, offset: u64, what: &str) -> Run {
    let progress = bar(total, what);
    let engine = engine.clone();
    let run = closed_loop(
        CALLERS,
        total,
        move |i| {
            let engine = engine.clone();
            async move {
                let result = engine
                    .execute(ws(workspace), None, Channel::Platform, reply_action(offset + i, "gpt-4o-mini"))
                    .await;
                matches!(result, Ok(Outcome::Reply(ref a)) if !a.repeated)
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    run
}

async fn sqlite(options: &Options, report: &mut Report) -> Result<(), String> {
    let db = BenchDb::sqlite()?;
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    prepare(&engine, 0, WORKSPACES).await?;
    let cpu_before = CpuSample::now("");
    let started = Instant::now();
    let run = engine_replies(&engine, 0, WORKSPACES, options.count(300_000), "SQLite, 1,000 workspaces").await;
    let (own_us, _) = CpuSample::now("").per_request_us(&cpu_before, run.requests);
    // CPU seconds per second of the run, over the machine's cores: 1.0
    // would be every core busy all the time.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let used = own_us * run.requests as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9);
    report.row(
        "  CPU per reply, the one process (SQLite runs in it)",
        format!("{own_us:.1} us; {used:.2} of the {cores} cores busy on average"),
        "<= 66 us for 30,000/s",
        None,
    );
    check(report, &store, &engine, run.ok, "SQLite").await;
    report.row(
        "replies/s, SQLite embedded default, 64 callers",
        rate(&run),
        ">= 30,000/s",
        Some(run.rate() >= 30_000.0),
    );
    engine.shutdown().await;
    store.db().close().await;
    Ok(())
}

async fn http(options: &Options, report: &mut Report) -> Result<(), String> {
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    prepare(&engine, 0, WORKSPACES).await?;
    let (api, runtime) = ("bench-api-token-0123456789", "bench-runtime-token-0123456789");
    let tokens = billing_http::Tokens::new(api, runtime).map_err(|e| e.to_string())?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = billing_http::http_metrics(&mut registry);
    let state = billing_http::AppState::new(engine.clone(), tokens, Arc::new(registry), metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(billing_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(CALLERS).build().map_err(|e| e.to_string())?;
    let total = options.count(200_000);
    let database = db.name.clone().unwrap_or_default();
    let cpu_before = CpuSample::now(&database);
    let progress = bar(total, "HTTP, 1,000 workspaces");
    let run = closed_loop(
        CALLERS,
        total,
        move |i| {
            let client = client.clone();
            async move {
                let url = format!("http://{address}/v1/workspaces/w{}/replies", i % WORKSPACES);
                let body = format!(r#"{{"reply_id":"h{i}","agent_id":"agent","model":"gpt-4o-mini"}}"#);
                match client.post(url).bearer_auth(api).body(body).send().await {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    let measure = "  CPU per reply over HTTP: serve + load generator process, + Postgres";
    cpu_row(report, measure, &cpu_before, &database, run.requests, "<= 133 us for 15,000/s");
    let _ = stop.send(());
    let _ = server.await;
    check(report, &store, &engine, run.ok, "HTTP").await;
    report.row(
        "replies/s over HTTP (serve + load generator, same machine)",
        rate(&run),
        ">= 15,000/s",
        Some(run.rate() >= 15_000.0),
    );
    engine.shutdown().await;
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes of their own: memory of serve, replay

/// `VmRSS` of a process, in kB.
fn resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn memory(options: &Options, report: &mut Report) -> Result<(), String> {
    let count = options.count(100_000);
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    db.store().await?.db().close().await;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (api, runtime) = ("bench-api-token-0123456789", "bench-runtime-token-0123456789");
    let mut child = std::process::Command::new(&options.executable)
        .arg("serve")
        .env("BILLING_DATABASE_URL", &db.url)
        .env("BILLING_LISTEN", format!("127.0.0.1:{port}"))
        .env("BILLING_API_TOKEN", api)
        .env("BILLING_RUNTIME_TOKEN", runtime)
        .env("BILLING_MASTER_KEY", MasterKey::generate().to_base64())
        .env("BILLING_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", options.executable.display()))?;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_kb = resident_kb(child.id()).unwrap_or(0);
    let progress = bar(count, "loading workspaces into serve");
    let run = closed_loop(
        CALLERS,
        count,
        {
            let (client, base) = (client.clone(), base.clone());
            move |i| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let body = format!(r#"{{"workspace_id":"m{i}","owner":"owner"}}"#);
                    let created = client.post(format!("{base}/v1/workspaces")).bearer_auth(api).body(body).send().await;
                    let grant = r#"{"grant_id":"g","amount":100,"reason":"bench"}"#;
                    let granted = client
                        .post(format!("{base}/v1/workspaces/m{i}/credits/grants"))
                        .bearer_auth(api)
                        .body(grant)
                        .send()
                        .await;
                    let reply = r#"{"reply_id":"r","agent_id":"agent","model":"gpt-4o-mini"}"#;
                    let replied = client
                        .post(format!("{base}/v1/workspaces/m{i}/replies"))
                        .bearer_auth(api)
                        .body(reply)
                        .send()
                        .await;
                    [created, granted, replied].into_iter().all(|r| r.is_ok_and(|r| r.status().is_success()))
                }
            }
        },
        {
            let progress = progress.clone();
            move || progress.inc(1)
        },
    )
    .await;
    progress.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_kb = resident_kb(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    report.check(run.errors == 0, format!("memory: {} of {count} workspaces failed to load", run.errors));
    report.row(
        format!("resident memory of serve, {} workspaces loaded", run.ok),
        format!("{:.0} MiB (idle {:.0} MiB)", loaded_kb as f64 / 1024.0, idle_kb as f64 / 1024.0),
        "<= 1 GiB",
        Some(loaded_kb > 0 && loaded_kb <= 1024 * 1024),
    );
    db.drop_now().await;
    Ok(())
}

/// Peak resident memory of the largest child waited for so far, in kB.
fn children_peak_kb() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole struct rusage into the pointer.
    let done = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    if done != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

async fn replay(options: &Options, report: &mut Report) -> Result<(), String> {
    let db = BenchDb::postgres(&options.postgres_admin_url).await?;
    let store = db.store().await?;
    let engine = engine_on(&store).await?;
    prepare(&engine, 0, 2).await?;
    let sizes = [options.count(100_000), options.count(1_000_000)];
    let mut figures = Vec::new();
    for (w, size) in sizes.iter().enumerate() {
        let progress = bar(*size, "building a history");
        let builder = engine.clone();
        let w = w as u64;
        closed_loop(
            CALLERS,
            *size,
            move |i| {
                let engine = builder.clone();
                async move { engine.execute(ws(w), None, Channel::Platform, reply_action(i, "bookbag-local")).await.is_ok() }
            },
            {
                let progress = progress.clone();
                move || progress.inc(1)
            },
        )
        .await;
        progress.finish_and_clear();
    }
    engine.shutdown().await;
    for (w, size) in sizes.iter().enumerate() {
        eprintln!("  audit replay of {size} events");
        let started = Instant::now();
        let status = std::process::Command::new(&options.executable)
            .args(["audit", "replay", "--workspace", &format!("w{w}"), "--format", "csv"])
            .env("BILLING_DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        let took = started.elapsed();
        report.check(status.success(), format!("replay of w{w} failed"));
        figures.push((*size, took, children_peak_kb()));
    }
    let (small, large) = (figures[0], figures[1]);
    report.row(
        format!("audit replay, {} events", large.0),
        format!(
            "{:.1} s, {:.0} events/s, peak {:.0} MiB",
            large.1.as_secs_f64(),
            large.0 as f64 / large.1.as_secs_f64(),
            large.2 as f64 / 1024.0
        ),
        "seconds, flat memory",
        Some(large.1 < Duration::from_secs(60)),
    );
    report.row(
        format!("  audit replay, {} events", small.0),
        format!(
            "{:.1} s, {:.0} events/s, peak {:.0} MiB",
            small.1.as_secs_f64(),
            small.0 as f64 / small.1.as_secs_f64(),
            small.2 as f64 / 1024.0
        ),
        "peak within 25% of the long one",
        Some(large.2 as f64 <= small.2 as f64 * 1.25 + 8.0 * 1024.0),
    );
    store.db().close().await;
    db.drop_now().await;
    Ok(())
}
