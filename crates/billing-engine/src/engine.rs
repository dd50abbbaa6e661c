//! The engine API: one struct that the HTTP layer, the CLI and the
//! benchmarks share. Commands go to the shard writer that owns their
//! workspace; queries read the projections after the in-process projector
//! has caught up with every command this engine has answered
//! (read-your-writes).

use billing_domain::{
    Action, Catalog, Channel, DomainError, KeyId, KeyVault, Metering, UserId, WorkspaceId, WorkspaceServices,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{EngineError, StoreError};
use crate::metrics::Metrics;
use crate::projection::feed::{Fed, Feed};
use crate::projection::{ProjectedEvent, Projector, IN_PROCESS_PROJECTOR, PROJECT_BATCH_EVENTS_MAX};
use crate::queries::{BillingModeView, CreditsView, KeysView, LedgerPage, UsageView, EVENTS_PAGE_MAX};
use crate::store::{Cursor, Store, StoredEvent};
use crate::writer::{Job, Outcome, ShardWriter, BATCH_COMMANDS_MAX, CACHED_WORKSPACES_MAX, QUEUE_COMMANDS_MAX};

/// How long a query waits for the projections to show the commands this
/// engine has answered before it answers 503.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

/// How long a query waits for the projections while the projector's last
/// attempt failed (the database is likely down): a dashboard gets its 503
/// at once instead of after [`READ_YOUR_WRITES_WAIT`].
pub const READ_YOUR_WRITES_WAIT_FAILING: Duration = Duration::from_millis(250);

/// How often a waiting query looks again at whether the projector is
/// failing (and so at which of the two bounds above applies).
pub const READ_YOUR_WRITES_RECHECK: Duration = Duration::from_millis(50);

/// The longest pause between projector retries while the database is down.
pub const PROJECTOR_BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct EngineConfig {
    pub catalog: Arc<Catalog>,
    pub metering: Metering,
    pub vault: Arc<dyn KeyVault>,
    /// Shard writers. One is right for SQLite (one writer at a time). On
    /// Postgres two overlap one group's decisions with the other's commit;
    /// on 2 cores four were slower than two (`bench --scenarios choices`,
    /// docs/performance.md).
    pub shards: usize,
    pub cached_workspaces_max: usize,
    /// Most commands one group commit holds ([`crate::writer::BATCH_COMMANDS_MAX`];
    /// 1 turns group commit off, which only the benchmark's "with and
    /// without" rows do).
    pub batch_commands_max: usize,
    /// Run the in-process projector. Off only in tests that simulate a
    /// crash between commit and projection.
    pub run_projector: bool,
    /// How long handed-over events wait to be projected together
    /// ([`PROJECTOR_WINDOW`]).
    pub projector_window: Duration,
    /// Events one projector transaction applies from the hand-off at most
    /// ([`PROJECTOR_CHUNK_EVENTS`]; `usize::MAX`: a whole window in one).
    pub projector_chunk_events: usize,
    /// Committed batches the hand-off to the projector holds
    /// ([`crate::projection::feed::FEED_BATCHES_MAX`]); beyond it the
    /// projector reads them from the log. Tests make it tiny to overflow it.
    pub feed_batches_max: usize,
    pub metrics: Arc<Metrics>,
}

impl EngineConfig {
    /// The defaults for `store`'s backend.
    pub fn new(catalog: Arc<Catalog>, metering: Metering, vault: Arc<dyn KeyVault>, store: &Store) -> EngineConfig {
        EngineConfig {
            catalog,
            metering,
            vault,
            shards: match store.backend() {
                crate::db::Backend::Sqlite => 1,
                crate::db::Backend::Postgres => 2,
            },
            cached_workspaces_max: CACHED_WORKSPACES_MAX,
            batch_commands_max: BATCH_COMMANDS_MAX,
            run_projector: true,
            projector_window: PROJECTOR_WINDOW,
            projector_chunk_events: PROJECTOR_CHUNK_EVENTS,
            feed_batches_max: crate::projection::feed::FEED_BATCHES_MAX,
            metrics: Arc::new(Metrics::unregistered()),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: Arc<Catalog>,
    metering: Metering,
    vault: Arc<dyn KeyVault>,
    queues: Mutex<Vec<mpsc::Sender<Job>>>,
    committed: Arc<watch::Sender<Cursor>>,
    /// Committed batches on their way to the in-process projector.
    feed: Arc<Feed>,
    /// How many committed batches the projections show.
    projected: watch::Receiver<u64>,
    /// Tells the projector a query waits.
    flush_requested: Arc<tokio::sync::Notify>,
    /// The projector's last attempt to apply or read failed.
    projector_failing: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    projector: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the shard writers and the projector over a migrated store.
    pub async fn start(store: Store, config: EngineConfig) -> Result<Engine, StoreError> {
        // Queries must also see what was answered before a restart: the
        // projections catch up to today's head before the first query reads.
        let head = store.head().await?;
        let committed = Arc::new(watch::channel(head).0);
        let (feed, feed_rx) = Feed::new(config.run_projector, config.feed_batches_max);
        let feed = Arc::new(feed);
        let services = Arc::new(WorkspaceServices::new(config.catalog.clone(), config.metering, config.vault.clone()));
        let shards = config.shards.max(1);
        let mut queues = Vec::with_capacity(shards);
        let mut writers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = mpsc::channel(QUEUE_COMMANDS_MAX);
            let writer = ShardWriter::new(
                store.clone(),
                services.clone(),
                committed.clone(),
                feed.clone(),
                config.metrics.clone(),
                config.cached_workspaces_max.div_ceil(shards),
                config.batch_commands_max.clamp(1, BATCH_COMMANDS_MAX),
            );
            writers.push(tokio::spawn(writer.run(rx)));
            queues.push(tx);
        }
        let (projected_tx, projected) = watch::channel(0);
        let flush_requested = Arc::new(tokio::sync::Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let projector_failing = Arc::new(AtomicBool::new(false));
        let projector = feed_rx.map(|feed_rx| {
            let task = ProjectorTask {
                projector: Projector::new(store.clone(), IN_PROCESS_PROJECTOR),
                store: store.clone(),
                feed_rx,
                feed: feed.clone(),
                flush_requested: flush_requested.clone(),
                projected: projected_tx,
                cursor: Cursor::START,
                stop: stop_rx,
                failing: projector_failing.clone(),
                window: config.projector_window,
                chunk_events: config.projector_chunk_events,
                metrics: config.metrics.clone(),
            };
            tokio::spawn(task.run())
        });
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                catalog: config.catalog,
                metering: config.metering,
                vault: config.vault,
                queues: Mutex::new(queues),
                committed,
                feed,
                flush_requested,
                projector_failing,
                projected,
                stop,
                writers: Mutex::new(writers),
                projector: Mutex::new(projector),
                metrics: config.metrics,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn metering(&self) -> Metering {
        self.inner.metering
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Tells, on every group commit, how far the log has been committed by
    /// this engine (what the NATS relay waits on).
    pub fn commits(&self) -> watch::Receiver<Cursor> {
        self.inner.committed.subscribe()
    }

    /// A fresh id for a key about to be added.
    pub fn new_key_id() -> KeyId {
        let id = format!("key_{}", uuid::Uuid::new_v4().simple());
        KeyId::parse(&id).unwrap_or_else(|_| unreachable!("a uuid is a valid key id"))
    }

    /// Decides and durably commits one command; answers after the commit.
    pub async fn execute(
        &self,
        workspace: WorkspaceId,
        actor: Option<UserId>,
        channel: Channel,
        action: Action,
    ) -> Result<Outcome, EngineError> {
        let queue = {
            let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            if queues.is_empty() {
                return Err(EngineError::Unavailable);
            }
            queues[shard_of(&workspace, queues.len())].clone()
        };
        let (respond, answer) = oneshot::channel();
        let job = Job { workspace: workspace.clone(), actor, channel, action, respond };
        queue.send(job).await.map_err(|_| EngineError::Unavailable)?;
        let mut outcome = answer.await.map_err(|_| EngineError::Unavailable)??;
        if let Outcome::Reply(reply) = &mut outcome {
            if let Some(sealed) = reply.sealed.take() {
                reply.api_key = Some(self.inner.vault.open(&workspace, &sealed)?);
            }
        }
        Ok(outcome)
    }

    /// Waits until the projections show every command this engine has
    /// answered so far.
    pub async fn read_your_writes(&self) -> Result<(), EngineError> {
        let target = self.inner.feed.committed_count();
        let mut projected = self.inner.projected.clone();
        if *projected.borrow() >= target {
            return Ok(());
        }
        self.inner.flush_requested.notify_one();
        // The bound is looked at again while waiting: a projector that
        // starts failing after the query began (the database went away
        // during its flush) shortens the wait to the failing bound.
        let started = Instant::now();
        loop {
            let wait = if self.inner.projector_failing.load(Ordering::Relaxed) {
                READ_YOUR_WRITES_WAIT_FAILING
            } else {
                READ_YOUR_WRITES_WAIT
            };
            let Some(left) = wait.checked_sub(started.elapsed()).filter(|left| !left.is_zero()) else {
                tracing::warn!("projections did not catch up in time");
                return Err(EngineError::Unavailable);
            };
            match tokio::time::timeout(left.min(READ_YOUR_WRITES_RECHECK), projected.wait_for(|c| *c >= target)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) => return Err(EngineError::Unavailable),
                Err(_) => continue,
            }
        }
    }

    async fn existing(&self, workspace: &WorkspaceId) -> Result<(), EngineError> {
        self.read_your_writes().await?;
        if self.inner.store.projected_workspace_exists(workspace.as_str()).await? {
            Ok(())
        } else {
            Err(DomainError::WorkspaceNotFound.into())
        }
    }

    pub async fn keys(&self, workspace: &WorkspaceId) -> Result<KeysView, EngineError> {
        self.existing(workspace).await?;
        Ok(self.inner.store.query_keys(workspace.as_str()).await?)
    }

    pub async fn billing_mode(&self, workspace: &WorkspaceId) -> Result<BillingModeView, EngineError> {
        self.read_your_writes().await?;
        self.inner
            .store
            .query_billing_mode(workspace.as_str(), self.inner.metering)
            .await?
            .ok_or(EngineError::Domain(DomainError::WorkspaceNotFound))
    }

    pub async fn credits(&self, workspace: &WorkspaceId) -> Result<CreditsView, EngineError> {
        self.existing(workspace).await?;
        Ok(self.inner.store.query_credits(workspace.as_str()).await?)
    }

    pub async fn ledger(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<LedgerPage, EngineError> {
        self.existing(workspace).await?;
        Ok(self.inner.store.query_ledger(workspace.as_str(), after, limit).await?)
    }

    pub async fn usage(
        &self,
        workspace: &WorkspaceId,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<UsageView, EngineError> {
        self.existing(workspace).await?;
        Ok(self.inner.store.query_usage(workspace.as_str(), from, to).await?)
    }

    /// The workspace's statement over `[from, to)`, folded from its events
    /// (not the projections), so it needs no read-your-writes wait.
    pub async fn statement(
        &self,
        workspace: &WorkspaceId,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<crate::audit::StatementView, EngineError> {
        if self.inner.store.versions(&[workspace.as_str()]).await?.is_empty() {
            return Err(DomainError::WorkspaceNotFound.into());
        }
        let range = crate::audit::Range { from, to, as_of: None };
        Ok(crate::audit::statement(&self.inner.store, workspace.as_str(), range).await?)
    }

    /// The workspace's stored events with a sequence above `after`.
    pub async fn events(
        &self,
        workspace: &WorkspaceId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, EngineError> {
        let limit = limit.clamp(1, EVENTS_PAGE_MAX);
        let events = self.inner.store.workspace_events(workspace.as_str(), after, limit).await?;
        if events.is_empty() && self.inner.store.workspace_events(workspace.as_str(), 0, 1).await?.is_empty() {
            return Err(DomainError::WorkspaceNotFound.into());
        }
        Ok(events)
    }

    /// True when the database answers.
    pub async fn ready(&self) -> bool {
        self.inner.store.db().ping().await.is_ok()
    }

    /// Stops taking commands, lets the writers finish and answer what they
    /// hold, lets the projector catch up, and stops it.
    pub async fn shutdown(&self) {
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let writers: Vec<_> = std::mem::take(&mut *self.inner.writers.lock().unwrap_or_else(|p| p.into_inner()));
        for writer in writers {
            let _ = writer.await;
        }
        let projector = self.inner.projector.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(projector) = projector {
            let target = self.inner.feed.committed_count();
            let mut projected = self.inner.projected.clone();
            self.inner.flush_requested.notify_one();
            let caught_up = tokio::time::timeout(READ_YOUR_WRITES_WAIT, projected.wait_for(|c| *c >= target))
                .await
                .is_ok_and(|r| r.is_ok());
            if !caught_up {
                tracing::warn!("stopping before the projections caught up; they will at the next start");
            }
            let _ = self.inner.stop.send(true);
            let _ = projector.await;
        }
    }
}

/// Resolves once the engine is stopping (at once if it already is).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// The shard that owns `workspace` (FNV-1a of its id).
fn shard_of(workspace: &WorkspaceId, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in workspace.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards as u64) as usize
}

/// How often the projector reads the log itself, for whatever the
/// hand-off did not bring: events committed by other processes (or by one
/// that crashed before projecting), and anything left out.
pub const PROJECTOR_SCAN_EVERY: Duration = Duration::from_secs(2);

/// Events one projector transaction takes from the hand-off at most.
pub const PROJECTOR_FEED_EVENTS_MAX: usize = 20_000;

/// How long handed-over events wait to be projected together when no query
/// asks for them sooner. The longer, the more of a workspace's events one
/// balance, usage and offset update covers; a query never waits for it (it
/// asks the projector to apply at once).
pub const PROJECTOR_WINDOW: Duration = Duration::from_millis(200);

/// Events one projector transaction applies from the hand-off at most: a
/// flush of a whole window is cut into transactions of this size, with a
/// pause between them as long as the last one took (at most
/// [`PROJECTOR_PAUSE_MAX`]), so that the projector never holds Postgres for
/// long while the writers' callers wait (the p99 at half rate,
/// `bench --scenarios latency`, docs/performance.md).
pub const PROJECTOR_CHUNK_EVENTS: usize = 256;

/// The longest pause between two chunks of a flush.
pub const PROJECTOR_PAUSE_MAX: Duration = Duration::from_millis(10);

/// Handed-over events not yet applied.
#[derive(Default)]
struct Pending {
    /// The number of the newest batch among them.
    number: u64,
    /// When the oldest of them was committed.
    oldest: Option<Instant>,
    events: Vec<ProjectedEvent>,
}

impl Pending {
    fn push(&mut self, fed: Fed) {
        self.number = fed.number;
        self.oldest.get_or_insert(fed.committed_at);
        self.events.extend(fed.events);
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The in-process projector: applies what the writers hand over, batching
/// whatever has piled up, and follows the log itself as the safety net.
struct ProjectorTask {
    projector: Projector,
    store: Store,
    feed_rx: mpsc::Receiver<Fed>,
    feed: Arc<Feed>,
    /// A query is waiting: apply what is pending now.
    flush_requested: Arc<tokio::sync::Notify>,
    /// How many committed batches the projections show.
    projected: watch::Sender<u64>,
    /// How far the log itself has been followed.
    cursor: Cursor,
    stop: watch::Receiver<bool>,
    /// Shared with [`Inner::projector_failing`].
    failing: Arc<AtomicBool>,
    window: Duration,
    chunk_events: usize,
    metrics: Arc<Metrics>,
}

impl ProjectorTask {
    async fn run(mut self) {
        // Start-up: everything committed before this process started
        // (batch number 1 of the hand-off) comes from the log.
        self.cursor = match self.retrying(|task| Box::pin(task.projector.cursor())).await {
            Some(cursor) => cursor,
            None => return,
        };
        if !self.scan_until_stopped().await {
            return;
        }
        self.projected.send_replace(1);
        let mut scan = tokio::time::interval(PROJECTOR_SCAN_EVERY);
        scan.tick().await;
        let mut pending = Pending::default();
        let mut last_head = None;
        loop {
            let deadline = pending.oldest.map(|t| t + self.window);
            tokio::select! {
                fed = self.feed_rx.recv() => match fed {
                    Some(fed) => {
                        pending.push(fed);
                        if pending.events.len() >= PROJECTOR_FEED_EVENTS_MAX {
                            self.flush(&mut pending).await;
                        }
                    }
                    None => return,
                },
                _ = self.flush_requested.notified(), if !pending.events.is_empty() => self.flush(&mut pending).await,
                _ = sleep_until_or_forever(deadline) => self.flush(&mut pending).await,
                _ = scan.tick() => {
                    // The pass goes to the head the previous tick saw, not
                    // today's: whatever this process committed below that
                    // head reached the hand-off long ago and is applied, so
                    // the pass reads only keys. (Today's head also holds
                    // batches committed a moment ago whose hand-off is still
                    // on its way; the pass would apply them again from the
                    // log, in one burst, while the writers' callers wait.)
                    // What other processes commit is applied one tick later.
                    let target = last_head;
                    last_head = self.store.head().await.ok();
                    if let Some(target) = target {
                        self.flush(&mut pending).await;
                        let _ = self.scan_to(target, true).await;
                    }
                }
                _ = stopping(&mut self.stop) => {
                    while let Ok(fed) = self.feed_rx.try_recv() {
                        pending.push(fed);
                    }
                    self.flush(&mut pending).await;
                    let _ = self.scan().await;
                    return;
                }
            }
            // An overflow that no flush has seen yet (a batch found the
            // hand-off full while nothing else was pending): the same pass.
            if self.feed.take_overflow() {
                let shown = *self.projected.borrow();
                self.advance(shown, false).await;
            }
        }
    }

    /// Applies every pending handed-over event, and every batch already
    /// waiting in the hand-off, in chunks of [`PROJECTOR_CHUNK_EVENTS`];
    /// anything left out (or a failure) is taken from the log instead.
    /// Taking what waits keeps a projector that fell behind from flushing
    /// one old batch at a time (each past its window at once), which it
    /// could never catch up from.
    async fn flush(&mut self, pending: &mut Pending) {
        while pending.events.len() < PROJECTOR_FEED_EVENTS_MAX {
            match self.feed_rx.try_recv() {
                Ok(fed) => pending.push(fed),
                Err(_) => break,
            }
        }
        if pending.events.is_empty() {
            return;
        }
        let Pending { number, oldest, mut events } = std::mem::take(pending);
        self.feed.taken(events.len() as u64);
        if let Some(oldest) = oldest {
            self.metrics.projection_lag_seconds.set(oldest.elapsed().as_secs_f64());
        }
        // A workspace's events stay in their order (the sort is stable) and
        // mostly in one chunk, so each of its balance, usage and offset rows
        // is still written once per flush.
        events.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
        let mut complete = true;
        let chunks = events.chunks(self.chunk_events.max(1));
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let started = Instant::now();
            match self.projector.apply_leaving_holes(chunk).await {
                Ok(applied) => {
                    self.metrics.projected_events.inc_by(applied.applied);
                    tracing::trace!(
                        events = chunk.len(),
                        applied = applied.applied,
                        left = applied.left,
                        took_us = started.elapsed().as_micros() as u64,
                        "projected handed-over events"
                    );
                    complete &= applied.left == 0;
                }
                Err(err) => {
                    self.failing.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %err, "projecting handed-over events failed; reading the log instead");
                    complete = false;
                    break;
                }
            }
            // Between chunks, the writers get the cores back for as long as
            // the chunk took, unless the hand-off is filling up.
            let keeping_up = self.feed.queued_events() < PROJECTOR_FEED_EVENTS_MAX as u64 / 2;
            if i + 1 < count && keeping_up {
                tokio::time::sleep(started.elapsed().min(PROJECTOR_PAUSE_MAX)).await;
            }
        }
        self.advance(number, complete).await;
        self.observe_lag();
    }

    /// The projections show every batch up to `number`: at once when
    /// `complete` (everything handed over up to it is applied), after a
    /// pass over the log otherwise. A batch that found the hand-off full
    /// set the overflow flag before any later batch was handed over (both
    /// happen under the hand-off's lock, in number order), so if the flag
    /// is up now, a batch below `number` may be only in the log: the pass
    /// must bring it before the number moves, or a query waiting for that
    /// batch would read without it. (A flush drains the hand-off while the
    /// writers refill it, so it can hold batches numbered after one that
    /// overflowed; the check after each turn of the main loop comes too
    /// late for a query woken by this number.)
    /// The pass also covers every batch committed before it started, so
    /// after one the number moves to those too: a batch that overflowed
    /// after `number` was handed over may have no later batch to move it.
    async fn advance(&mut self, number: u64, complete: bool) {
        let overflowed = self.feed.take_overflow();
        let covered = if complete && !overflowed {
            number
        } else {
            let committed = self.feed.committed_count();
            if !self.scan_until_stopped().await {
                return;
            }
            number.max(committed)
        };
        self.projected.send_if_modified(|p| std::mem::replace(p, (*p).max(covered)) < covered);
    }

    /// [`ProjectorTask::scan`] until it succeeds; false when stopped first.
    async fn scan_until_stopped(&mut self) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.scan().await {
                Ok(()) => {
                    self.failing.store(false, Ordering::Relaxed);
                    return true;
                }
                Err(err) => {
                    self.failing.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %err, "projector cannot follow the log; retrying");
                    if self.pause(backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(PROJECTOR_BACKOFF_MAX);
                }
            }
        }
    }

    /// Follows the log from the cursor to the head it finds, applying what
    /// no projector has applied yet. Reads only the events' keys unless a
    /// page has something to apply.
    async fn scan(&mut self) -> Result<(), StoreError> {
        let target = self.store.head().await?;
        self.scan_to(target, false).await
    }

    /// [`ProjectorTask::scan`] up to `target`.
    /// `paced`: the periodic pass pauses after each page as long as the
    /// page took (at most [`PROJECTOR_PAUSE_MAX`]), as a flush does between
    /// its chunks, so the writers' callers never wait behind a run of pages.
    async fn scan_to(&mut self, target: Cursor, paced: bool) -> Result<(), StoreError> {
        let started = Instant::now();
        while self.cursor < target {
            let page_started = Instant::now();
            let keys = self.store.event_keys_after(self.cursor, PROJECT_BATCH_EVENTS_MAX).await?;
            let Some(last) = keys.last() else {
                // Behind a transaction of this database still open. A pass
                // that stops short of its target must not count as done:
                // the caller would tell waiting queries that batches below
                // the target are applied.
                if started.elapsed() > READ_YOUR_WRITES_WAIT {
                    tracing::warn!(cursor = ?self.cursor, ?target, "the log's pass waited too long for an open transaction");
                    return Err(StoreError::Unavailable("an open transaction holds back the log's order".into()));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let next = last.cursor;
            let mut workspaces: Vec<&str> = keys.iter().map(|k| k.workspace_id.as_str()).collect();
            workspaces.sort_unstable();
            workspaces.dedup();
            let offsets = self.projector.offsets_of(&workspaces).await?;
            let behind = keys.iter().any(|k| k.sequence > offsets.get(&k.workspace_id).copied().unwrap_or(0));
            if behind {
                let stored = self.store.events_after(self.cursor, PROJECT_BATCH_EVENTS_MAX).await?;
                let events = stored
                    .iter()
                    .filter(|e| e.cursor() <= next)
                    .map(ProjectedEvent::from_stored)
                    .collect::<Result<Vec<_>, _>>()?;
                let applied = self.projector.apply(&events, None).await?;
                self.metrics.projected_events.inc_by(applied.applied);
                tracing::trace!(events = events.len(), applied = applied.applied, "projected events read from the log");
            }
            self.cursor = next;
            if paced && self.cursor < target {
                tokio::time::sleep(page_started.elapsed().min(PROJECTOR_PAUSE_MAX)).await;
            }
        }
        self.projector.save_cursor(self.cursor).await?;
        self.observe_lag();
        Ok(())
    }

    fn observe_lag(&self) {
        let queued = self.feed.queued_events();
        self.metrics.projection_lag_events.set(i64::try_from(queued).unwrap_or(i64::MAX));
        if queued == 0 {
            self.metrics.projection_lag_seconds.set(0.0);
        }
    }

    /// Runs `op` until it succeeds (`None` when stopped first).
    async fn retrying<T>(
        &mut self,
        op: impl for<'a> Fn(
            &'a ProjectorTask,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>,
    ) -> Option<T> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match op(self).await {
                Ok(value) => return Some(value),
                Err(err) => {
                    self.failing.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %err, "projector cannot start; retrying");
                    if self.pause(backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(PROJECTOR_BACKOFF_MAX);
                }
            }
        }
    }

    /// Sleeps `wait`; true (at once) when the engine is stopping. (Looks
    /// at the value, not for a change: the main loop may have seen the
    /// change already, and a retry loop after it must not wait forever.)
    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = stopping(&mut self.stop) => true,
        }
    }
}
