//! The write path: shard writers that decide commands in memory and commit
//! them in groups.
//!
//! Each workspace belongs to one shard (by hash of its id); each shard is
//! one task that owns its workspaces' aggregates, so a command is decided
//! without reading the store and without locks. A shard takes every command
//! waiting in its queue (up to [`BATCH_COMMANDS_MAX`]), decides them one
//! after another against the in-memory state, and commits all their events
//! in one transaction: one fsync for the whole group. Callers are answered
//! only after that commit (durable), and are answered 503 if it fails.
//!
//! Optimistic concurrency still guards the store: if another engine process
//! appended to one of the batch's workspaces, the events' primary key
//! refuses the batch; the shard forgets the workspaces it touched, reloads
//! them, re-learns the first answers of any reply or grant ids the store
//! already holds, and decides the batch again, at most
//! [`APPEND_TRIES_MAX`] times. Callers never see the conflict.

mod entry;
mod outcome;

pub use entry::SNAPSHOT_EVERY_EVENTS;
pub use outcome::{Outcome, ReplyAnswer};

use billing_domain::{
    event_version_of, Action, Change, Channel, DomainError, GrantId, GrantRecord, ReplyId, ReplyRecord, UserId,
    Workspace, WorkspaceCommand, WorkspaceEvent, WorkspaceId, WorkspaceServices,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

use self::entry::Entry;
use self::outcome::outcome_of;
use crate::chain;
use crate::error::{EngineError, StoreError};
use crate::metrics::Metrics;
use crate::projection::ProjectedEvent;
use crate::store::{AppendBatch, Cursor, NewEvent, NewSecret, NewSnapshot, Store};

/// Most commands one group commit decides. Bounds a transaction's size and
/// the time the first caller of a batch waits for the last one.
pub const BATCH_COMMANDS_MAX: usize = 1_024;

/// Commands a shard's queue holds before callers wait to enqueue.
pub const QUEUE_COMMANDS_MAX: usize = 16_384;

/// How many times a batch is decided again after a conflict before its
/// callers are answered 503.
pub const APPEND_TRIES_MAX: u32 = 5;

/// Workspaces a shard keeps in memory; beyond it, arbitrary ones are
/// forgotten (and reloaded from their snapshot when they come back).
pub const CACHED_WORKSPACES_MAX: usize = 1_000_000;

/// One command waiting for its shard.
pub(crate) struct Job {
    pub workspace: WorkspaceId,
    pub actor: Option<UserId>,
    pub channel: Channel,
    pub action: Action,
    pub respond: oneshot::Sender<Result<Outcome, EngineError>>,
}

/// What a batch will write, and what each of its commands will answer.
#[derive(Default)]
struct Plan {
    batch: AppendBatch,
    touched: HashSet<WorkspaceId>,
    /// Reply and grant ids decided earlier in this batch, so that a repeat
    /// later in the same batch answers as the first even if the aggregate's
    /// bounded memory has already let it go.
    replies: HashMap<(WorkspaceId, ReplyId), ReplyRecord>,
    grants: HashMap<(WorkspaceId, GrantId), GrantRecord>,
    /// Workspaces whose commands were answered without an event from
    /// state this shard had cached before the batch (a refusal, a no-op):
    /// another engine process may have moved them on, and no write will
    /// tell, so their versions are checked against the store before the
    /// batch answers.
    verify: HashSet<WorkspaceId>,
    /// Workspaces loaded from the store during this batch: fresh already.
    loaded: HashSet<WorkspaceId>,
    /// Project the batch's events in its own transaction.
    project: bool,
    /// Set when a decided command could not be planned (a bug, logged): the
    /// in-memory state is then ahead of the plan, so the whole batch is
    /// dropped and its workspaces reloaded.
    poisoned: bool,
}

/// First answers the store already held for ids of a batch, learned after
/// a conflict; they seed every later attempt at the batch.
#[derive(Default)]
struct Known {
    replies: HashMap<(WorkspaceId, ReplyId), ReplyRecord>,
    grants: HashMap<(WorkspaceId, GrantId), GrantRecord>,
}

impl Plan {
    fn seeded(known: &Known, project: bool) -> Plan {
        Plan { replies: known.replies.clone(), grants: known.grants.clone(), project, ..Plan::default() }
    }
}

pub(crate) struct ShardWriter {
    pub store: Store,
    pub services: Arc<WorkspaceServices>,
    /// How far this engine has committed (every batch).
    pub committed: Arc<watch::Sender<Cursor>>,
    /// How far this engine has committed batches that it could not project
    /// itself: what queries wait for the projector to reach.
    pub unprojected: Arc<watch::Sender<Cursor>>,
    /// Project each batch in its own transaction.
    pub project: bool,
    pub metrics: Arc<Metrics>,
    pub cache_max: usize,
    cache: HashMap<WorkspaceId, Entry>,
}

impl ShardWriter {
    pub fn new(
        store: Store,
        services: Arc<WorkspaceServices>,
        watermarks: (Arc<watch::Sender<Cursor>>, Arc<watch::Sender<Cursor>>),
        project: bool,
        metrics: Arc<Metrics>,
        cache_max: usize,
    ) -> ShardWriter {
        let (committed, unprojected) = watermarks;
        ShardWriter { store, services, committed, unprojected, project, metrics, cache_max, cache: HashMap::new() }
    }

    /// Runs until every sender of `queue` is gone, then returns after the
    /// last batch has been committed and answered.
    pub async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(BATCH_COMMANDS_MAX);
        while queue.recv_many(&mut jobs, BATCH_COMMANDS_MAX).await > 0 {
            let batch = std::mem::take(&mut jobs);
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(&mut self, jobs: Vec<Job>) {
        self.metrics.batch_commands.observe(jobs.len() as f64);
        let mut known = Known::default();
        let mut attempt = 1;
        loop {
            let (plan, results) = self.decide_all(&jobs, &known).await;
            if plan.poisoned {
                self.forget(&plan.touched);
                return answer_all(&self.metrics, jobs);
            }
            let stale = match self.stale(&plan).await {
                Ok(stale) => stale,
                Err(err) => {
                    self.forget(&plan.touched);
                    tracing::error!(error = %err, "could not check cached versions; nothing stored");
                    return answer_all(&self.metrics, jobs);
                }
            };
            let outcome = if !stale.is_empty() {
                Err(StoreError::Conflict(format!("{} cached workspaces were behind the store", stale.len())))
            } else if plan.batch.events.is_empty() {
                return answer(&self.metrics, jobs, results);
            } else {
                self.store.append(&plan.batch).await
            };
            match outcome {
                Ok(receipt) => {
                    raise(&self.committed, receipt.cursor);
                    if !receipt.projected {
                        raise(&self.unprojected, receipt.cursor);
                    }
                    self.metrics.events_committed.inc_by(plan.batch.events.len() as u64);
                    self.trim_cache();
                    return answer(&self.metrics, jobs, results);
                }
                Err(StoreError::Conflict(cause)) if attempt < APPEND_TRIES_MAX => {
                    tracing::info!(%cause, attempt, "batch met another writer's events; deciding it again");
                    self.metrics.append_conflicts.inc();
                    attempt += 1;
                    let mut reload = plan.touched.clone();
                    reload.extend(stale);
                    if let Err(err) = self.recover(&jobs, &reload, &mut known).await {
                        self.forget(&reload);
                        tracing::error!(error = %err, "could not reload after a conflict");
                        return answer_all(&self.metrics, jobs);
                    }
                }
                Err(err) => {
                    self.forget(&plan.touched);
                    tracing::error!(error = %err, commands = jobs.len(), "group commit failed; nothing stored");
                    return answer_all(&self.metrics, jobs);
                }
            }
        }
    }

    /// Decides every job against the in-memory state, in order.
    async fn decide_all(&mut self, jobs: &[Job], known: &Known) -> (Plan, Vec<Result<Outcome, EngineError>>) {
        let mut plan = Plan::seeded(known, self.project);
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = self.decide(job, &mut plan).await;
            if needs_fresh_state(&result) && !plan.loaded.contains(&job.workspace) {
                plan.verify.insert(job.workspace.clone());
            }
            results.push(result);
        }
        (plan, results)
    }

    /// The workspaces of `plan.verify` that the store has moved past the
    /// version this shard decided from. (Workspaces the batch writes to are
    /// checked by the append itself.)
    async fn stale(&self, plan: &Plan) -> Result<Vec<WorkspaceId>, StoreError> {
        let check: Vec<&WorkspaceId> = plan.verify.iter().filter(|w| !plan.touched.contains(*w)).collect();
        if check.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = check.iter().map(|w| w.as_str()).collect();
        let versions = self.store.versions(&ids).await?;
        Ok(check
            .into_iter()
            .filter(|w| {
                let cached = self.cache.get(*w).map_or(0, |e| e.version);
                versions.get(w.as_str()).copied().unwrap_or(0) != cached
            })
            .cloned()
            .collect())
    }

    async fn decide(&mut self, job: &Job, plan: &mut Plan) -> Result<Outcome, EngineError> {
        let creating = matches!(job.action, Action::CreateWorkspace { .. });
        if !self.cache.contains_key(&job.workspace) {
            let entry = self.load(&job.workspace).await?;
            plan.loaded.insert(job.workspace.clone());
            if !entry.state.exists() && !creating {
                return Err(DomainError::WorkspaceNotFound.into());
            }
            self.cache.insert(job.workspace.clone(), entry);
        }
        let services = Arc::clone(&self.services);
        let Some(entry) = self.cache.get_mut(&job.workspace) else {
            return Err(EngineError::Unavailable);
        };
        remember_from_plan(entry, job, plan);
        let command = WorkspaceCommand {
            at: stamp(Utc::now(), entry.last_at),
            actor: job.actor.clone(),
            channel: job.channel,
            action: job.action.clone(),
        };
        let sink = EventSink::default();
        entry.state.handle(command, &services, &sink).await.map_err(EngineError::Domain)?;
        let events = sink.collect().await;
        if events.is_empty() {
            return outcome(job, &events, entry, plan);
        }
        plan.touched.insert(job.workspace.clone());
        for event in &events {
            if let Err(err) = plan_event(entry, &job.workspace, event, &services, plan) {
                tracing::error!(error = %err, "could not plan a decided event");
                plan.poisoned = true;
                return Err(EngineError::Unavailable);
            }
        }
        if entry.snapshot_due() {
            match entry.snapshot_payload() {
                Ok(payload) => plan.batch.snapshots.push(NewSnapshot {
                    workspace: job.workspace.to_string(),
                    last_sequence: entry.version,
                    payload,
                    taken_at: Utc::now(),
                }),
                Err(err) => {
                    tracing::error!(error = %err, "could not encode a snapshot");
                    plan.poisoned = true;
                    return Err(EngineError::Unavailable);
                }
            }
            entry.snapshot_version = entry.version;
        }
        remember_in_plan(&job.workspace, &job.action, &entry.state, plan);
        outcome(job, &events, entry, plan)
    }

    /// Loads a workspace from its snapshot and the events after it.
    async fn load(&self, workspace: &WorkspaceId) -> Result<Entry, EngineError> {
        let loaded = self.store.load_workspace(workspace.as_str(), true).await?;
        self.metrics.load_rows_read.inc_by(loaded.rows_read);
        if let Some(entry) = Entry::from_loaded(loaded)? {
            return Ok(entry);
        }
        tracing::warn!(%workspace, "snapshot of another shape; rebuilding from every event");
        let loaded = self.store.load_workspace(workspace.as_str(), false).await?;
        self.metrics.load_rows_read.inc_by(loaded.rows_read);
        Entry::from_loaded(loaded)?.ok_or(EngineError::Unavailable)
    }

    /// After a conflict: forget the workspaces in `reload`, load them
    /// again, and learn the first answers the store already holds for the
    /// batch's reply and grant ids.
    async fn recover(
        &mut self,
        jobs: &[Job],
        reload: &HashSet<WorkspaceId>,
        known: &mut Known,
    ) -> Result<(), EngineError> {
        self.forget(reload);
        let mut keys: HashMap<&WorkspaceId, Vec<String>> = HashMap::new();
        for job in jobs {
            if let Some(key) = idempotency_key(&job.action) {
                keys.entry(&job.workspace).or_default().push(key);
            }
        }
        for workspace in reload {
            let entry = self.load(workspace).await?;
            let wanted = keys.get(workspace).map(Vec::as_slice).unwrap_or_default();
            for stored in self.store.events_by_idempotency_key(workspace.as_str(), wanted).await? {
                known.learn(workspace, &stored.decode()?);
            }
            self.cache.insert(workspace.clone(), entry);
        }
        Ok(())
    }

    fn forget(&mut self, workspaces: &HashSet<WorkspaceId>) {
        for workspace in workspaces {
            self.cache.remove(workspace);
        }
    }

    fn trim_cache(&mut self) {
        while self.cache.len() > self.cache_max {
            let Some(victim) = self.cache.keys().next().cloned() else { break };
            self.cache.remove(&victim);
        }
    }
}

/// Moves a watermark forward (never back).
fn raise(watermark: &watch::Sender<Cursor>, to: Cursor) {
    watermark.send_if_modified(|c| {
        let newer = to > *c;
        if newer {
            *c = to;
        }
        newer
    });
}

/// The time a command is decided at: now, cut to the microsecond (what both
/// databases keep), and never before the workspace's previous event, so
/// that a workspace's history is ordered in time as in sequence.
fn stamp(now: DateTime<Utc>, last: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(now);
    now.max(last)
}

/// The store's idempotency key of an action, if it has one.
pub(crate) fn idempotency_key(action: &Action) -> Option<String> {
    match action {
        Action::ServeReply { reply_id, .. } => Some(format!("reply:{reply_id}")),
        Action::GrantCredits { grant_id, .. } => Some(format!("grant:{grant_id}")),
        _ => None,
    }
}

pub(crate) fn event_idempotency_key(change: &Change) -> Option<String> {
    match change {
        Change::ReplyServed { reply_id, .. } => Some(format!("reply:{reply_id}")),
        Change::CreditsGranted { grant_id, .. } => Some(format!("grant:{grant_id}")),
        _ => None,
    }
}

impl Known {
    /// Keeps the first answer a stored event recorded.
    fn learn(&mut self, workspace: &WorkspaceId, event: &WorkspaceEvent) {
        match &event.change {
            Change::ReplyServed {
                reply_id,
                agent_id,
                model,
                provider,
                route,
                key_id,
                credits_charged,
                list_cost,
                balance_after,
            } => {
                let record = ReplyRecord {
                    agent_id: agent_id.clone(),
                    model: model.clone(),
                    provider: *provider,
                    route: *route,
                    key_id: key_id.clone(),
                    credits_charged: *credits_charged,
                    list_cost: *list_cost,
                    balance_after: *balance_after,
                };
                self.replies.insert((workspace.clone(), reply_id.clone()), record);
            }
            Change::CreditsGranted { grant_id, amount, balance_after, .. } => {
                let record = GrantRecord { amount: *amount, balance_after: *balance_after };
                self.grants.insert((workspace.clone(), grant_id.clone()), record);
            }
            _ => {}
        }
    }
}

/// True for an answer decided from state without writing anything, whose
/// truth depends on that state being current: a refusal by a rule, or a
/// no-op. A repeated id's first answer never changes, so it does not count.
fn needs_fresh_state(result: &Result<Outcome, EngineError>) -> bool {
    match result {
        Err(EngineError::Domain(DomainError::IdempotencyConflict(_))) => false,
        Err(EngineError::Domain(_)) => true,
        Err(EngineError::Unavailable) => false,
        Ok(Outcome::RoleSet { changed }) | Ok(Outcome::Byo { changed, .. }) | Ok(Outcome::KeyAdded { changed, .. }) => {
            !changed
        }
        Ok(_) => false,
    }
}

fn remember_from_plan(entry: &mut Entry, job: &Job, plan: &Plan) {
    match &job.action {
        Action::ServeReply { reply_id, .. } if entry.state.reply(reply_id).is_none() => {
            if let Some(record) = plan.replies.get(&(job.workspace.clone(), reply_id.clone())) {
                entry.state.remember_reply(reply_id.clone(), record.clone());
            }
        }
        Action::GrantCredits { grant_id, .. } if entry.state.grant(grant_id).is_none() => {
            if let Some(record) = plan.grants.get(&(job.workspace.clone(), grant_id.clone())) {
                entry.state.remember_grant(grant_id.clone(), record.clone());
            }
        }
        _ => {}
    }
}

/// Keeps the first answer of a reply or grant decided in this batch.
fn remember_in_plan(workspace: &WorkspaceId, action: &Action, state: &Workspace, plan: &mut Plan) {
    match action {
        Action::ServeReply { reply_id, .. } => {
            if let Some(record) = state.reply(reply_id) {
                plan.replies.insert((workspace.clone(), reply_id.clone()), record.clone());
            }
        }
        Action::GrantCredits { grant_id, .. } => {
            if let Some(record) = state.grant(grant_id) {
                plan.grants.insert((workspace.clone(), grant_id.clone()), record.clone());
            }
        }
        _ => {}
    }
}

fn outcome(job: &Job, events: &[WorkspaceEvent], entry: &Entry, plan: &mut Plan) -> Result<Outcome, EngineError> {
    outcome_of(&job.action, job.channel, events, entry).ok_or_else(|| {
        tracing::error!(action = job.action.name(), "a decided command lacks the state it implies");
        plan.poisoned = true;
        EngineError::Unavailable
    })
}

/// Appends one decided event to the plan: its sequence, its link in the
/// hash chain, its idempotency key and the key secret it stores or ends.
fn plan_event(
    entry: &mut Entry,
    workspace: &WorkspaceId,
    event: &WorkspaceEvent,
    services: &WorkspaceServices,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    let sequence = entry.version + 1;
    let event_type = event.change.event_type();
    let event_version = event_version_of(event_type);
    let payload = chain::canonical(&serde_json::to_value(event)?);
    let hash =
        chain::link_canonical(&entry.last_hash, workspace.as_str(), sequence, event_type, event_version, &payload);
    plan.batch.events.push(NewEvent {
        workspace: workspace.to_string(),
        sequence,
        event_type,
        event_version,
        payload,
        metadata: chain::metadata_text(&entry.last_hash, &hash),
        idempotency_key: event_idempotency_key(&event.change),
    });
    if plan.project {
        plan.batch.projection.push(ProjectedEvent {
            workspace_id: workspace.to_string(),
            sequence,
            event: event.clone(),
        });
    }
    entry.version = sequence;
    entry.last_hash = hash;
    entry.last_at = event.at;
    match &event.change {
        Change::KeyAdded { key_id, provider, .. } => {
            let sealed = services
                .take_sealed(key_id)
                .ok_or_else(|| StoreError::Corrupt(format!("no sealed secret for key {key_id}")))?;
            plan.batch.secrets_added.push(NewSecret {
                workspace: workspace.to_string(),
                key_id: key_id.to_string(),
                provider: provider.as_str(),
                sealed: sealed.sealed.clone(),
                created_at: event.at,
            });
            entry.sealed.insert(*provider, sealed);
        }
        Change::KeySuperseded { key_id, provider, .. } | Change::KeyRemoved { key_id, provider } => {
            plan.batch.secrets_ended.push((workspace.to_string(), key_id.to_string()));
            if entry.sealed.get(provider).is_some_and(|s| &s.key_id == key_id) {
                entry.sealed.remove(provider);
            }
        }
        _ => {}
    }
    Ok(())
}

fn answer(metrics: &Metrics, jobs: Vec<Job>, results: Vec<Result<Outcome, EngineError>>) {
    for (job, result) in jobs.into_iter().zip(results) {
        metrics.record_outcome(&job.action, result.as_ref());
        // A caller that gave up (dropped its future) is not an error.
        let _ = job.respond.send(result);
    }
}

/// Answers every job 503: the batch stored nothing.
fn answer_all(metrics: &Metrics, jobs: Vec<Job>) {
    for job in jobs {
        let result = Err(EngineError::Unavailable);
        metrics.record_outcome(&job.action, result.as_ref());
        let _ = job.respond.send(result);
    }
}
