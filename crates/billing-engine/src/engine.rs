//! The engine API: one struct that the HTTP layer, the CLI and the
//! benchmarks share. Commands go to the shard writer that owns their
//! workspace; queries read the projections after the in-process projector
//! has caught up with every command this engine has answered
//! (read-your-writes).

use billing_domain::{
    Action, Catalog, Channel, DomainError, KeyId, KeyVault, Metering, UserId, WorkspaceId, WorkspaceServices,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{EngineError, StoreError};
use crate::metrics::Metrics;
use crate::projection::{ProjectedEvent, Projector, IN_PROCESS_PROJECTOR, PROJECT_BATCH_EVENTS_MAX};
use crate::queries::{BillingModeView, CreditsView, KeysView, LedgerPage, UsageView, EVENTS_PAGE_MAX};
use crate::store::{Cursor, Store, StoredEvent};
use crate::writer::{Job, Outcome, ShardWriter, CACHED_WORKSPACES_MAX, QUEUE_COMMANDS_MAX};

/// How long a query waits for the projections to show the commands this
/// engine has answered before it answers 503.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

/// How often the projector looks for events other processes committed.
pub const PROJECTOR_POLL: Duration = Duration::from_millis(250);

/// The longest pause between projector retries while the database is down.
pub const PROJECTOR_BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct EngineConfig {
    pub catalog: Arc<Catalog>,
    pub metering: Metering,
    pub vault: Arc<dyn KeyVault>,
    /// Shard writers. One is right for SQLite (one writer at a time);
    /// Postgres commits several groups at once.
    pub shards: usize,
    pub cached_workspaces_max: usize,
    /// Run the in-process projector. Off only in tests that simulate a
    /// crash between commit and projection.
    pub run_projector: bool,
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
                crate::db::Backend::Postgres => 4,
            },
            cached_workspaces_max: CACHED_WORKSPACES_MAX,
            run_projector: true,
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
    /// Commits the writers could not project themselves: what queries wait
    /// for the projector to reach.
    unprojected: Arc<watch::Sender<Cursor>>,
    projected: watch::Receiver<Cursor>,
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
        let unprojected = Arc::new(watch::channel(head).0);
        let services = Arc::new(WorkspaceServices::new(config.catalog.clone(), config.metering, config.vault.clone()));
        let shards = config.shards.max(1);
        let mut queues = Vec::with_capacity(shards);
        let mut writers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = mpsc::channel(QUEUE_COMMANDS_MAX);
            let writer = ShardWriter::new(
                store.clone(),
                services.clone(),
                (committed.clone(), unprojected.clone()),
                config.run_projector,
                config.metrics.clone(),
                config.cached_workspaces_max.div_ceil(shards),
            );
            writers.push(tokio::spawn(writer.run(rx)));
            queues.push(tx);
        }
        let (projected_tx, projected) = watch::channel(Cursor::START);
        let (stop, stop_rx) = watch::channel(false);
        let projector = if config.run_projector {
            let projector = Projector::new(store.clone(), IN_PROCESS_PROJECTOR);
            let task = ProjectorTask {
                projector,
                store: store.clone(),
                unprojected: unprojected.subscribe(),
                committed: committed.subscribe(),
                projected: projected_tx,
                cursor_saved: Instant::now(),
                stop: stop_rx,
                metrics: config.metrics.clone(),
            };
            Some(tokio::spawn(task.run()))
        } else {
            None
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                catalog: config.catalog,
                metering: config.metering,
                vault: config.vault,
                queues: Mutex::new(queues),
                committed,
                unprojected,
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
        let target = *self.inner.unprojected.borrow();
        let mut projected = self.inner.projected.clone();
        if *projected.borrow() >= target {
            return Ok(());
        }
        let caught_up = tokio::time::timeout(READ_YOUR_WRITES_WAIT, projected.wait_for(|c| *c >= target))
            .await
            .is_ok_and(|r| r.is_ok());
        if caught_up {
            Ok(())
        } else {
            tracing::warn!("projections did not catch up in time");
            Err(EngineError::Unavailable)
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
            let target = *self.inner.unprojected.borrow();
            let mut projected = self.inner.projected.clone();
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

/// The shard that owns `workspace` (FNV-1a of its id).
fn shard_of(workspace: &WorkspaceId, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in workspace.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards as u64) as usize
}

/// How often the projector saves its cursor when it only passes over events
/// the writers projected themselves (a restart re-reads at most this much).
pub const PROJECTOR_CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);

/// The in-process projector: follows the log, applies what the writers did
/// not project themselves, and tells queries how far the projections are.
struct ProjectorTask {
    projector: Projector,
    store: Store,
    /// Commits the writers left for the projector (wakes it).
    unprojected: watch::Receiver<Cursor>,
    /// Every commit (for the lag figures).
    committed: watch::Receiver<Cursor>,
    projected: watch::Sender<Cursor>,
    stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    cursor_saved: Instant,
}

impl ProjectorTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut cursor = loop {
            match self.projector.cursor().await {
                Ok(cursor) => break cursor,
                Err(err) => {
                    tracing::warn!(error = %err, "projector cannot read its cursor; retrying");
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(PROJECTOR_BACKOFF_MAX);
                }
            }
        };
        self.projected.send_replace(cursor);
        loop {
            match self.step(cursor).await {
                Ok(Some(next)) => {
                    cursor = next;
                    backoff = Duration::from_millis(50);
                    self.projected.send_replace(cursor);
                    continue;
                }
                Ok(None) => {
                    self.metrics.projection_lag_events.set(0);
                    self.metrics.projection_lag_seconds.set(0.0);
                    if self.idle(cursor).await {
                        let _ = self.projector.save_cursor(cursor).await;
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "projector failed a batch; retrying");
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(PROJECTOR_BACKOFF_MAX);
                }
            }
        }
    }

    /// Passes over the next page of the log; `None` when there was nothing.
    /// Only the events' keys are read unless some workspace of the page is
    /// behind (most pages were projected by the writers already).
    async fn step(&mut self, cursor: Cursor) -> Result<Option<Cursor>, StoreError> {
        let keys = self.store.event_keys_after(cursor, PROJECT_BATCH_EVENTS_MAX).await?;
        let Some(last) = keys.last() else { return Ok(None) };
        let next = last.cursor;
        let mut workspaces: Vec<&str> = keys.iter().map(|k| k.workspace_id.as_str()).collect();
        workspaces.sort_unstable();
        workspaces.dedup();
        let offsets = self.projector.offsets_of(&workspaces).await?;
        let behind = keys.iter().any(|k| k.sequence > offsets.get(&k.workspace_id).copied().unwrap_or(0));
        if behind {
            let started = Instant::now();
            let stored = self.store.events_after(cursor, PROJECT_BATCH_EVENTS_MAX).await?;
            let events = stored
                .iter()
                .filter(|e| e.cursor() <= next)
                .map(ProjectedEvent::from_stored)
                .collect::<Result<Vec<_>, _>>()?;
            let applied = self.projector.apply(&events, Some(next)).await?;
            self.metrics.projected_events.inc_by(applied.applied);
            self.cursor_saved = Instant::now();
            tracing::trace!(events = events.len(), took_us = started.elapsed().as_micros() as u64, "projected");
        } else if self.cursor_saved.elapsed() >= PROJECTOR_CURSOR_SAVE_EVERY {
            self.projector.save_cursor(next).await?;
            self.cursor_saved = Instant::now();
        }
        let head = *self.committed.borrow();
        self.metrics.projection_lag_events.set(head.position.saturating_sub(next.position).max(0));
        let age = (chrono::Utc::now() - last.recorded_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.metrics.projection_lag_seconds.set(if head > next { age } else { 0.0 });
        Ok(Some(next))
    }

    /// Waits for work, the poll interval, or the stop signal (true).
    async fn idle(&mut self, cursor: Cursor) -> bool {
        if *self.unprojected.borrow() > cursor {
            // Committed but not yet readable: an older transaction of
            // another writer is still open. It ends within milliseconds.
            return self.pause(Duration::from_millis(1)).await;
        }
        tokio::select! {
            _ = self.unprojected.changed() => false,
            _ = tokio::time::sleep(PROJECTOR_POLL) => false,
            _ = self.stop.changed() => true,
        }
    }

    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.changed() => true,
        }
    }
}
