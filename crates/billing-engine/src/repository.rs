//! cqrs-es's own traits over this engine's tables, for tools built on
//! cqrs-es (a `CqrsFramework` in an admin job, a migration, a replay).
//!
//! [`BillingEventRepository`] is a `PersistedEventRepository` that fixes
//! what docs/storage.md found wrong in postgres-es / sqlite-es 0.5:
//! sequences are 64-bit end to end; every append is one transaction whose
//! only check is the events' primary key (nothing is committed before a
//! check that can still fail); every event gets its link in the hash chain
//! and its idempotency key, exactly as the engine writes them. It offers no
//! snapshots: cqrs-es's snapshot and aggregate stores apply each event
//! twice before saving a snapshot (defect 1), so the repository ignores the
//! snapshots they send and they fall back to replaying events, which is
//! correct.
//!
//! Limits: a `KeyAdded` written through cqrs-es has no sealed secret (the
//! secret lives in the engine's services, not in the event), so BYO replies
//! cannot hand that key to the runtime. The engine is the supported writer.
//!
//! [`ProjectionQuery`] is a cqrs-es `Query` that applies committed events
//! to the projection tables. cqrs-es ignores its failures (it cannot return
//! them); the projector's catch-up from the log repairs whatever a failed
//! dispatch missed.

use async_trait::async_trait;
use billing_domain::{event_version_of, Workspace};
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::{Aggregate, EventEnvelope, Query};
use serde_json::Value;

use crate::chain::{self, GENESIS_HASH};
use crate::error::StoreError;
use crate::projection::{ProjectedEvent, Projector};
use crate::store::{decode_payload, AppendBatch, Cursor, NewEvent, Store, StoredEvent, AGGREGATE_TYPE};
use crate::writer::event_idempotency_key;

/// Events one page of a replay stream reads.
const STREAM_PAGE_EVENTS: u32 = 1_000;
/// Events a replay stream buffers ahead of its reader.
const STREAM_BUFFER_EVENTS: usize = 1_000;

pub struct BillingEventRepository {
    store: Store,
}

impl BillingEventRepository {
    pub fn new(store: Store) -> BillingEventRepository {
        BillingEventRepository { store }
    }
}

fn persistence(err: StoreError) -> PersistenceError {
    match err {
        StoreError::Conflict(_) => PersistenceError::OptimisticLockError,
        StoreError::Corrupt(cause) => PersistenceError::DeserializationError(cause.into()),
        StoreError::Unavailable(cause) | StoreError::Config(cause) => PersistenceError::ConnectionError(cause.into()),
    }
}

fn only_workspaces<A: Aggregate>() -> Result<(), PersistenceError> {
    if A::TYPE == AGGREGATE_TYPE {
        Ok(())
    } else {
        Err(PersistenceError::UnknownError(format!("this repository stores {AGGREGATE_TYPE} aggregates").into()))
    }
}

fn serialized(stored: StoredEvent) -> SerializedEvent {
    SerializedEvent {
        aggregate_id: stored.workspace_id,
        sequence: usize::try_from(stored.sequence).unwrap_or(usize::MAX),
        aggregate_type: AGGREGATE_TYPE.to_owned(),
        event_type: stored.event_type,
        event_version: stored.event_version,
        payload: stored.payload,
        metadata: stored.metadata,
    }
}

impl BillingEventRepository {
    async fn read_after(&self, aggregate_id: &str, after: u64) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let mut all = Vec::new();
        let mut after = after;
        loop {
            let page =
                self.store.workspace_events(aggregate_id, after, STREAM_PAGE_EVENTS).await.map_err(persistence)?;
            let Some(last) = page.last() else { return Ok(all) };
            after = last.sequence;
            all.extend(page.into_iter().map(serialized));
        }
    }

    /// The hash of event `sequence` of `aggregate_id`, or the genesis hash.
    async fn hash_at(&self, aggregate_id: &str, sequence: u64) -> Result<String, PersistenceError> {
        if sequence == 0 {
            return Ok(GENESIS_HASH.to_owned());
        }
        let page = self.store.workspace_events(aggregate_id, sequence - 1, 1).await.map_err(persistence)?;
        match page.first() {
            Some(event) if event.sequence == sequence => Ok(event.hash().unwrap_or(GENESIS_HASH).to_owned()),
            // The predecessor is not there: whoever wrote it has not
            // committed, or the caller's aggregate is stale.
            _ => Err(PersistenceError::OptimisticLockError),
        }
    }
}

impl PersistedEventRepository for BillingEventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        only_workspaces::<A>()?;
        self.read_after(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        only_workspaces::<A>()?;
        self.read_after(aggregate_id, last_sequence as u64).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        only_workspaces::<A>()?;
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        only_workspaces::<A>()?;
        let Some(first) = events.first() else { return Ok(()) };
        let mut prev = self.hash_at(&first.aggregate_id, first.sequence as u64 - 1).await?;
        let mut batch = AppendBatch::default();
        for event in events {
            let decoded =
                decode_payload(&event.event_type, &event.event_version, event.payload.clone()).map_err(persistence)?;
            let event_type = decoded.change.event_type();
            let event_version = event_version_of(event_type);
            let sequence = event.sequence as u64;
            let hash = chain::link(&prev, &event.aggregate_id, sequence, event_type, event_version, &event.payload);
            let mut metadata = chain::metadata(&prev, &hash);
            if let (Value::Object(ours), Value::Object(theirs)) = (&mut metadata, &event.metadata) {
                for (k, v) in theirs {
                    ours.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            batch.events.push(NewEvent {
                workspace: event.aggregate_id.clone(),
                sequence,
                event_type,
                event_version,
                payload: chain::canonical(&event.payload),
                metadata: metadata.to_string(),
                idempotency_key: event_idempotency_key(&decoded.change),
            });
            prev = hash;
        }
        self.store.append(&batch).await.map(|_| ()).map_err(persistence)
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        only_workspaces::<A>()?;
        let (mut feed, stream) = ReplayStream::new(STREAM_BUFFER_EVENTS);
        let store = self.store.clone();
        let aggregate_id = aggregate_id.to_owned();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                match store.workspace_events(&aggregate_id, after, STREAM_PAGE_EVENTS).await {
                    Ok(page) if page.is_empty() => return,
                    Ok(page) => {
                        for event in page {
                            after = event.sequence;
                            if feed.push(Ok(serialized(event))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        let _ = feed.push(Err(persistence(err))).await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        only_workspaces::<A>()?;
        let (mut feed, stream) = ReplayStream::new(STREAM_BUFFER_EVENTS);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut cursor = Cursor::START;
            loop {
                match store.events_after(cursor, STREAM_PAGE_EVENTS).await {
                    Ok(page) if page.is_empty() => return,
                    Ok(page) => {
                        for event in page {
                            cursor = event.cursor();
                            if feed.push(Ok(serialized(event))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        let _ = feed.push(Err(persistence(err))).await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

/// A cqrs-es `Query` that keeps the projection tables.
pub struct ProjectionQuery {
    projector: Projector,
}

impl ProjectionQuery {
    pub fn new(projector: Projector) -> ProjectionQuery {
        ProjectionQuery { projector }
    }
}

#[async_trait]
impl Query<Workspace> for ProjectionQuery {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<Workspace>]) {
        let events: Vec<ProjectedEvent> = events
            .iter()
            .map(|e| ProjectedEvent {
                workspace_id: aggregate_id.to_owned(),
                sequence: e.sequence as u64,
                event: e.payload.clone(),
            })
            .collect();
        if let Err(err) = self.projector.apply(&events, None).await {
            tracing::warn!(error = %err, aggregate_id, "projection dispatch failed; the catch-up will repair it");
        }
    }
}
