//! `bookbag-billing project`: the dashboard tables, built from JetStream in
//! any database.
//!
//! A durable pull consumer hands out the stream's messages; each fetched
//! batch is applied in one transaction of the target database
//! (`Projector::durable`, which also moves the per-workspace offsets in that
//! transaction), and only then acknowledged. A message delivered again
//! (after a crash, a restart, a lost ack, or to another instance) is at or
//! below its workspace's offset and is skipped; so several instances can
//! share the consumer for availability without applying anything twice.
//! A message whose predecessor has not been applied yet (possible when
//! instances share the work) is handed back with a short delay.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use billing_engine::projection::{ProjectedEvent, Projector};
use billing_engine::{Store, StoreError};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::watch;

use crate::config::NatsConfig;
use crate::message::incoming;
use crate::NatsError;

/// Messages fetched (and applied in one transaction) at most.
pub const FETCH_MESSAGES_MAX: usize = 500;
/// How long a fetch waits for messages before returning what it has.
pub const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long JetStream waits for an ack before delivering a message again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages delivered but not yet acknowledged, per consumer.
pub const ACK_PENDING_MAX: i64 = 5_000;
/// How long a message that arrived before its predecessor waits to return.
pub const OUT_OF_ORDER_DELAY: Duration = Duration::from_millis(200);

/// What one projector run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectorStats {
    pub applied: u64,
    pub skipped: u64,
    pub delayed: u64,
}

pub struct NatsProjector {
    config: NatsConfig,
    consumer_name: String,
    projector: Projector,
}

impl NatsProjector {
    /// A projector named `name` (its durable consumer is `projector-<name>`)
    /// writing into `target`.
    pub fn new(config: NatsConfig, name: &str, target: Store) -> NatsProjector {
        NatsProjector {
            config,
            consumer_name: format!("projector-{name}"),
            projector: Projector::durable(target, &format!("nats:{name}")),
        }
    }

    pub fn consumer_name(&self) -> &str {
        &self.consumer_name
    }

    /// Runs until `stop` turns true; `progress` is told what each batch did.
    pub async fn run(
        &self,
        mut stop: watch::Receiver<bool>,
        mut progress: impl FnMut(ProjectorStats),
    ) -> Result<ProjectorStats, NatsError> {
        let client = self.config.connect().await?;
        let js = self.config.jetstream(client, FETCH_MESSAGES_MAX);
        let stream = self.config.ensure_stream(&js).await?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &self.consumer_name,
                pull::Config {
                    durable_name: Some(self.consumer_name.clone()),
                    filter_subject: self.config.all_subjects(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: ACK_PENDING_MAX,
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(NatsError::nats)?;
        let mut total = ProjectorStats::default();
        while !*stop.borrow() {
            let fetched = tokio::select! {
                fetched = consumer.fetch().max_messages(FETCH_MESSAGES_MAX).expires(FETCH_WAIT).messages() => fetched,
                _ = stop.changed() => break,
            };
            let mut batch = fetched.map_err(NatsError::nats)?;
            let mut messages = Vec::new();
            while let Some(message) = batch.next().await {
                messages.push(message.map_err(NatsError::nats)?);
            }
            if messages.is_empty() {
                continue;
            }
            let stats = self.apply(&messages).await?;
            total.applied += stats.applied;
            total.skipped += stats.skipped;
            total.delayed += stats.delayed;
            progress(stats);
        }
        Ok(total)
    }

    /// Applies a fetched batch: all in one transaction when it can, one
    /// message at a time when one of them must wait for its predecessor.
    async fn apply(&self, messages: &[jetstream::Message]) -> Result<ProjectorStats, NatsError> {
        let mut events = Vec::with_capacity(messages.len());
        let mut stats = ProjectorStats::default();
        for message in messages {
            match incoming(&message.payload) {
                Ok(event) => events.push(Some(event)),
                Err(err) => {
                    // Not ours to project: say so and never see it again.
                    tracing::error!(error = %err, subject = %message.subject, "unreadable message dropped");
                    message.ack_with(AckKind::Term).await.map_err(NatsError::nats)?;
                    events.push(None);
                }
            }
        }
        let readable: Vec<ProjectedEvent> = events.iter().flatten().cloned().collect();
        match self.projector.apply(&readable, None).await {
            Ok(applied) => {
                for (message, event) in messages.iter().zip(&events) {
                    if event.is_some() {
                        message.ack().await.map_err(NatsError::nats)?;
                    }
                }
                stats.applied = applied.applied;
                stats.skipped = applied.skipped;
                Ok(stats)
            }
            Err(StoreError::Corrupt(_)) => self.apply_one_by_one(messages, &events).await,
            Err(err) => Err(err.into()),
        }
    }

    async fn apply_one_by_one(
        &self,
        messages: &[jetstream::Message],
        events: &[Option<ProjectedEvent>],
    ) -> Result<ProjectorStats, NatsError> {
        let mut stats = ProjectorStats::default();
        for (message, event) in messages.iter().zip(events) {
            let Some(event) = event else { continue };
            match self.projector.apply(std::slice::from_ref(event), None).await {
                Ok(applied) => {
                    stats.applied += applied.applied;
                    stats.skipped += applied.skipped;
                    message.ack().await.map_err(NatsError::nats)?;
                }
                Err(StoreError::Corrupt(cause)) => {
                    tracing::debug!(%cause, "event arrived before its predecessor; handing it back");
                    stats.delayed += 1;
                    message.ack_with(AckKind::Nak(Some(OUT_OF_ORDER_DELAY))).await.map_err(NatsError::nats)?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(stats)
    }
}
