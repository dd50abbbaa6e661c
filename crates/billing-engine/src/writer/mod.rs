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
    event_version_of, Action, Change, Channel, DomainError, GrantId, GrantRecord, ProviderKey, ReplyId, ReplyRecord,
    UserId, Workspace, WorkspaceCommand, WorkspaceEvent, WorkspaceId, WorkspaceServices,
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
use crate::projection::feed::Feed;
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

/// After the database failed a batch, how long a shard answers 503 at once
/// instead of making every queued batch wait for a connection timeout (a
/// caller retrying learns in milliseconds, not seconds). The next batch
/// after it tries the database again.
pub const DOWN_ANSWER_FAST: std::time::Duration = std::time::Duration::from_millis(250);

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
    /// Reply and grant ids decided earlier in this batch (a hash of
    /// workspace and id, to the index of the event in `projection`), so that
    /// a repeat later in the same batch answers as the first even if the
    /// aggregate's bounded memory has already let it go.
    decided: HashMap<u64, usize>,
    /// First answers learned from the store after a conflict.
    known: Known,
    /// Workspaces whose commands were answered without an event from
    /// state this shard had cached before the batch (a refusal, a no-op):
    /// another engine process may have moved them on, and no write will
    /// tell, so their versions are checked against the store before the
    /// batch answers.
    verify: HashSet<WorkspaceId>,
    /// Workspaces loaded from the store during this batch: fresh already.
    loaded: HashSet<WorkspaceId>,
    /// Reply and grant ids the rules refused while the aggregate did not
    /// remember them: the store is asked whether they have a first answer.
    unknown_ids: Vec<(WorkspaceId, String)>,
    /// The batch's events, decoded, for the projector once committed.
    projection: Vec<ProjectedEvent>,
    /// Set when a decided command could not be planned (a bug, logged): the
    /// in-memory state is then ahead of the plan, so the whole batch is
    /// dropped and its workspaces reloaded.
    poisoned: bool,
}

/// First answers the store already held for ids of a batch, learned after
/// a conflict; they seed every later attempt at the batch.
#[derive(Clone, Default)]
struct Known {
    replies: HashMap<(WorkspaceId, ReplyId), ReplyRecord>,
    grants: HashMap<(WorkspaceId, GrantId), GrantRecord>,
}

impl Plan {
    fn seeded(known: &Known) -> Plan {
        Plan { known: known.clone(), ..Plan::default() }
    }
}

/// The key of `plan.decided` for an id of a workspace.
fn decided_key(workspace: &WorkspaceId, kind: u8, id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (workspace.as_str(), kind, id).hash(&mut hasher);
    hasher.finish()
}

pub(crate) struct ShardWriter {
    pub store: Store,
    pub services: Arc<WorkspaceServices>,
    /// How far this engine has committed (every batch).
    pub committed: Arc<watch::Sender<Cursor>>,
    /// Where committed batches go to the in-process projector.
    pub feed: Arc<Feed>,
    pub metrics: Arc<Metrics>,
    pub cache_max: usize,
    /// Most commands in one group commit.
    pub batch_max: usize,
    cache: HashMap<WorkspaceId, Entry>,
    /// Until when batches are answered 503 without trying the database.
    down_until: Option<std::time::Instant>,
}

impl ShardWriter {
    pub fn new(
        store: Store,
        services: Arc<WorkspaceServices>,
        committed: Arc<watch::Sender<Cursor>>,
        feed: Arc<Feed>,
        metrics: Arc<Metrics>,
        cache_max: usize,
        batch_max: usize,
    ) -> ShardWriter {
        ShardWriter {
            store,
            services,
            committed,
            feed,
            metrics,
            cache_max,
            batch_max,
            cache: HashMap::new(),
            down_until: None,
        }
    }

    /// Runs until every sender of `queue` is gone, then returns after the
    /// last batch has been committed and answered.
    pub async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.batch_max);
        while queue.recv_many(&mut jobs, self.batch_max).await > 0 {
            let batch = std::mem::take(&mut jobs);
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(&mut self, jobs: Vec<Job>) {
        self.metrics.batch_commands.observe(jobs.len() as f64);
        if self.down_until.is_some_and(|t| std::time::Instant::now() < t) {
            return answer_all(&self.metrics, jobs);
        }
        let mut known = Known::default();
        let mut attempt = 1;
        let started = std::time::Instant::now();
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
                    tracing::trace!(
                        commands = jobs.len(),
                        events = plan.batch.events.len(),
                        attempt,
                        took_us = started.elapsed().as_micros() as u64,
                        "group commit stored"
                    );
                    raise(&self.committed, receipt.cursor);
                    self.feed.committed(plan.projection);
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
                    if matches!(err, StoreError::Unavailable(_)) {
                        self.down_until = Some(std::time::Instant::now() + DOWN_ANSWER_FAST);
                    }
                    tracing::error!(error = %err, commands = jobs.len(), "group commit failed; nothing stored");
                    return answer_all(&self.metrics, jobs);
                }
            }
        }
    }

    /// Decides every job against the in-memory state, in order.
    async fn decide_all(&mut self, jobs: &[Job], known: &Known) -> (Plan, Vec<Result<Outcome, EngineError>>) {
        let mut plan = Plan::seeded(known);
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
        let mut stale = self.stale_versions(plan).await?;
        let mut asked: HashMap<&WorkspaceId, Vec<String>> = HashMap::new();
        for (workspace, key) in &plan.unknown_ids {
            asked.entry(workspace).or_default().push(key.clone());
        }
        for (workspace, keys) in asked {
            if !stale.contains(workspace)
                && !self.store.events_by_idempotency_key(workspace.as_str(), &keys).await?.is_empty()
            {
                stale.push(workspace.clone());
            }
        }
        Ok(stale)
    }

    async fn stale_versions(&self, plan: &Plan) -> Result<Vec<WorkspaceId>, StoreError> {
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
            if self.down_until.is_some_and(|t| std::time::Instant::now() < t) {
                return Err(EngineError::Unavailable);
            }
            let entry = match self.load(&job.workspace).await {
                Ok(entry) => entry,
                Err(err) => {
                    self.down_until = Some(std::time::Instant::now() + DOWN_ANSWER_FAST);
                    return Err(err);
                }
            };
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
        let api_key = open_runtime_key(entry, job, &services, &job.workspace)?;
        let id_known = id_in_memory(&entry.state, &job.action);
        let command = WorkspaceCommand {
            at: stamp(Utc::now(), entry.last_at),
            actor: job.actor.clone(),
            channel: job.channel,
            action: job.action.clone(),
        };
        let sink = EventSink::default();
        if let Err(refusal) = entry.state.handle(command, &services, &sink).await {
            if !id_known && !matches!(refusal, DomainError::IdempotencyConflict(_)) {
                // The rules refused an id the aggregate does not remember:
                // if the store has it, the first answer wins over the rules.
                if let Some(key) = idempotency_key(&job.action) {
                    plan.unknown_ids.push((job.workspace.clone(), key));
                }
            }
            return Err(EngineError::Domain(refusal));
        }
        let events = sink.collect().await;
        if events.is_empty() {
            return with_key(outcome(job, &events, entry, plan), api_key);
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
        if let Some(index) = plan.projection.len().checked_sub(1) {
            remember_in_plan(&job.workspace, &job.action, index, plan);
        }
        with_key(outcome(job, &events, entry, plan), api_key)
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

/// The event this batch already decided for the reply (`b'r'`) or grant
/// (`b'g'`) id `id` of `job`'s workspace.
fn first_in_batch(plan: &Plan, job: &Job, kind: u8, id: &str) -> Option<WorkspaceEvent> {
    plan.decided
        .get(&decided_key(&job.workspace, kind, id))
        .and_then(|i| plan.projection.get(*i))
        .filter(|e| e.workspace_id == job.workspace.as_str())
        .map(|e| e.event.clone())
}

/// Before deciding a reply or grant, gives the aggregate the first answer
/// of its id if this batch (or the store, after a conflict) already holds
/// one that the aggregate's bounded memory let go.
fn remember_from_plan(entry: &mut Entry, job: &Job, plan: &Plan) {
    match &job.action {
        Action::ServeReply { reply_id, .. } if entry.state.reply(reply_id).is_none() => {
            if let Some(event) = first_in_batch(plan, job, b'r', reply_id.as_str()) {
                remember_event(&mut entry.state, &event);
            } else if let Some(record) = plan.known.replies.get(&(job.workspace.clone(), reply_id.clone())) {
                entry.state.remember_reply(reply_id.clone(), record.clone());
            }
        }
        Action::GrantCredits { grant_id, .. } if entry.state.grant(grant_id).is_none() => {
            if let Some(event) = first_in_batch(plan, job, b'g', grant_id.as_str()) {
                remember_event(&mut entry.state, &event);
            } else if let Some(record) = plan.known.grants.get(&(job.workspace.clone(), grant_id.clone())) {
                entry.state.remember_grant(grant_id.clone(), record.clone());
            }
        }
        _ => {}
    }
}

/// Teaches `state` the first answer a decided event records, if it is a
/// reply or a grant (and that event is this id's: a hash collision of
/// `decided` must not answer another id).
fn remember_event(state: &mut Workspace, event: &WorkspaceEvent) {
    let mut known = Known::default();
    let workspace = state.id().cloned();
    let Some(workspace) = workspace else { return };
    known.learn(&workspace, event);
    for ((_, id), record) in known.replies {
        state.remember_reply(id, record);
    }
    for ((_, id), record) in known.grants {
        state.remember_grant(id, record);
    }
}

/// True when the aggregate remembers the id of a reply or grant action (or
/// the action has none).
fn id_in_memory(state: &Workspace, action: &Action) -> bool {
    match action {
        Action::ServeReply { reply_id, .. } => state.reply(reply_id).is_some(),
        Action::GrantCredits { grant_id, .. } => state.grant(grant_id).is_some(),
        _ => true,
    }
}

/// For a runtime reply that will be served on the workspace's own key:
/// opens that key now, before anything is decided, so that a key the
/// master key cannot open (a changed BILLING_MASTER_KEY) answers 503 with
/// nothing stored, instead of a reply stored and then refused.
fn open_runtime_key(
    entry: &Entry,
    job: &Job,
    services: &WorkspaceServices,
    workspace: &WorkspaceId,
) -> Result<Option<ProviderKey>, EngineError> {
    let Action::ServeReply { model, .. } = &job.action else { return Ok(None) };
    if job.channel != Channel::Runtime || !entry.state.byo_enabled() {
        return Ok(None);
    }
    let Some(provider) = services.catalog.get(model).and_then(|m| m.provider.key_provider()) else { return Ok(None) };
    let Some(sealed) = entry.sealed.get(&provider) else { return Ok(None) };
    match services.vault.open(workspace, sealed) {
        Ok(key) => Ok(Some(key)),
        Err(_) => {
            tracing::error!(%workspace, %provider, key_id = %sealed.key_id,
                "the active key cannot be opened with this master key; refusing the reply");
            Err(EngineError::Unavailable)
        }
    }
}

/// Puts the key opened before deciding into a byo answer of that key.
fn with_key(outcome: Result<Outcome, EngineError>, key: Option<ProviderKey>) -> Result<Outcome, EngineError> {
    let mut outcome = outcome?;
    if let (Outcome::Reply(answer), Some(key)) = (&mut outcome, key) {
        if answer.sealed.as_ref().is_some_and(|s| Some(&s.key_id) == answer.key_id.as_ref()) {
            answer.sealed = None;
            answer.api_key = Some(key);
        }
    }
    Ok(outcome)
}

/// Notes the event index of a reply or grant decided in this batch.
fn remember_in_plan(workspace: &WorkspaceId, action: &Action, index: usize, plan: &mut Plan) {
    let key = match action {
        Action::ServeReply { reply_id, .. } => decided_key(workspace, b'r', reply_id.as_str()),
        Action::GrantCredits { grant_id, .. } => decided_key(workspace, b'g', grant_id.as_str()),
        _ => return,
    };
    plan.decided.insert(key, index);
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
    plan.projection.push(ProjectedEvent { workspace_id: workspace.to_string(), sequence, event: event.clone() });
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
