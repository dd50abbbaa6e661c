//! The relay: every committed event, published to JetStream, at least once
//! and in the log's order, whatever crashes between commit and publish.
//!
//! It reads the log in the gap-safe global order, publishes up to
//! [`RELAY_WINDOW_MAX`] messages without waiting, then awaits their
//! acknowledgements in order. Every message says which stream sequence must
//! precede it (`Nats-Expected-Last-Sequence`), so JetStream accepts a
//! window only as a gapless prefix: if one message is lost (a connection
//! cut, a server killed), every later one of the window is refused, and the
//! relay publishes again from the first refused. The stream is therefore
//! always a prefix of the log, in the log's order, and the relay resumes
//! exactly after the stream's last message (its `Billing-Position` header):
//! nothing is published twice, nothing is skipped, even when NATS lost
//! messages it had acknowledged or the relay was down for longer than the
//! duplicate window. The cursor kept in the database (`relay_cursors`) is
//! what a relay resumes from when the stream is new or its last message
//! carries no position.
//!
//! NATS being down or slow never touches a command: the relay is its own
//! task, retries with back-off, and catches up. On Postgres one relay per
//! database publishes (an advisory lock); others wait to take over.

use async_nats::jetstream;
use billing_engine::{Cursor, Store, StoredEvent};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::config::NatsConfig;
use crate::message::{outgoing, position};
use crate::NatsError;

/// Messages published before their acknowledgements are awaited. Below
/// async-nats's default of 5,000 unacknowledged publishes, after which a
/// publish would wait for acks nobody is awaiting yet.
pub const RELAY_WINDOW_MAX: usize = 1_000;
/// How often an idle relay looks for events committed by other processes.
pub const RELAY_POLL: Duration = Duration::from_millis(250);
/// The longest pause between retries while NATS or the database is down.
pub const RELAY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a waiting relay tries to become the publishing one.
pub const LEADERSHIP_RETRY: Duration = Duration::from_secs(2);
/// How often an idle relay asks the stream for its last sequence. A NATS
/// server killed (SIGKILL) can come back without the newest messages it had
/// acknowledged (JetStream writes behind its acks); a busy relay learns it
/// from its next publish, which expects the lost sequence and is refused,
/// but an idle one has nothing to publish. When the stream's last sequence
/// is not the one the relay's acknowledgements gave, the relay starts over
/// after the stream's newest message, republishing what was lost.
pub const RELAY_VERIFY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct RelayMetrics {
    pub published: Counter,
    pub failures: Counter,
    pub lag_events: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

impl RelayMetrics {
    pub fn new(registry: &mut Registry) -> RelayMetrics {
        let metrics = RelayMetrics::default();
        let r = registry.sub_registry_with_prefix("billing_relay");
        r.register("published", "Events published to JetStream and acknowledged", metrics.published.clone());
        r.register("failures", "Publish attempts that failed (retried)", metrics.failures.clone());
        r.register("lag_events", "Events committed but not yet acknowledged by JetStream", metrics.lag_events.clone());
        r.register("lag_seconds", "Age of the oldest event not yet acknowledged", metrics.lag_seconds.clone());
        metrics
    }
}

pub struct Relay {
    store: Store,
    config: NatsConfig,
    metrics: Arc<RelayMetrics>,
    /// Commits of the engine in this process, to publish without waiting
    /// for the poll.
    commits: Option<watch::Receiver<Cursor>>,
    stop: watch::Receiver<bool>,
}

impl Relay {
    pub fn new(
        store: Store,
        config: NatsConfig,
        metrics: Arc<RelayMetrics>,
        commits: Option<watch::Receiver<Cursor>>,
        stop: watch::Receiver<bool>,
    ) -> Relay {
        Relay { store, config, metrics, commits, stop }
    }

    /// The name of this relay's cursor: one per stream.
    pub fn name(&self) -> String {
        format!("nats:{}", self.config.stream)
    }

    /// Runs until `stop` turns true.
    pub async fn run(mut self) {
        let client = match self.config.connect().await {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "relay cannot create a NATS client; events stay in the database");
                return;
            }
        };
        let js = self.config.jetstream(client, RELAY_WINDOW_MAX);
        let mut backoff = Duration::from_millis(100);
        while !*self.stop.borrow() {
            match self.lead_and_publish(&js).await {
                Ok(()) => return,
                Err(err) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %err, "relay failed; retrying");
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(RELAY_BACKOFF_MAX);
                }
            }
        }
    }

    /// Becomes the publishing relay, then publishes until stopped (`Ok`) or
    /// until something fails (`Err`, retried by `run`).
    async fn lead_and_publish(&mut self, js: &jetstream::Context) -> Result<(), NatsError> {
        let name = self.name();
        let mut leadership = loop {
            if let Some(leadership) = self.store.try_lead(&name).await? {
                break leadership;
            }
            if self.pause(LEADERSHIP_RETRY).await {
                return Ok(());
            }
        };
        let mut stream = self.config.ensure_stream(js).await?;
        let (published, mut stream_sequence) = last_published(&stream).await?;
        let mut verified = tokio::time::Instant::now();
        let mut cursor = match published {
            Some(position) => position,
            None => self.store.relay_cursor(&name).await?,
        };
        tracing::info!(relay = %name, ?cursor, stream_sequence, "relay publishing");
        loop {
            if *self.stop.borrow() {
                return Ok(());
            }
            let events = self.store.events_after(cursor, RELAY_WINDOW_MAX as u32).await?;
            if events.is_empty() {
                self.metrics.lag_events.set(0);
                self.metrics.lag_seconds.set(0.0);
                if !leadership.alive().await {
                    return Err(NatsError::Nats("lost the relay lock with the database session".into()));
                }
                if verified.elapsed() >= RELAY_VERIFY_EVERY {
                    verified = tokio::time::Instant::now();
                    let last = stream.info().await.map_err(NatsError::nats)?.state.last_sequence;
                    if last != stream_sequence {
                        return Err(NatsError::Nats(format!(
                            "the stream's last sequence is {last}, not the {stream_sequence} acknowledged: \
                             publishing again after its newest message"
                        )));
                    }
                }
                if self.idle(cursor).await {
                    return Ok(());
                }
                continue;
            }
            let (confirmed, failure) = self.publish_window(js, &events, &mut stream_sequence).await;
            if confirmed > 0 {
                cursor = events[confirmed - 1].cursor();
                self.store.save_relay_cursor(&name, cursor).await?;
                self.metrics.published.inc_by(confirmed as u64);
            }
            self.observe_lag(&events, confirmed).await;
            if let Some(err) = failure {
                return Err(err);
            }
        }
    }

    /// Publishes `events`, each expecting the stream sequence the previous
    /// one will get, and returns how many of them, from the first, are
    /// acknowledged, and the failure that stopped the rest.
    /// `stream_sequence` follows the acknowledgements.
    async fn publish_window(
        &self,
        js: &jetstream::Context,
        events: &[StoredEvent],
        stream_sequence: &mut u64,
    ) -> (usize, Option<NatsError>) {
        let mut acks = Vec::with_capacity(events.len());
        let mut failure = None;
        for (i, event) in events.iter().enumerate() {
            let mut message = match outgoing(&self.config, event) {
                Ok(message) => message,
                Err(err) => {
                    failure = Some(NatsError::nats(err));
                    break;
                }
            };
            let expected = (*stream_sequence + i as u64).to_string();
            message.headers.insert("Nats-Expected-Last-Sequence", expected.as_str());
            match js.publish_with_headers(message.subject, message.headers, message.body).await {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    failure = Some(NatsError::nats(err));
                    break;
                }
            }
        }
        let mut confirmed = 0;
        for ack in acks {
            match ack.await {
                Ok(ack) => {
                    *stream_sequence = ack.sequence;
                    confirmed += 1;
                }
                Err(err) => {
                    failure = Some(NatsError::nats(err));
                    break;
                }
            }
        }
        (confirmed, failure)
    }

    async fn observe_lag(&self, events: &[StoredEvent], confirmed: usize) {
        let head = match &self.commits {
            Some(commits) => *commits.borrow(),
            None => self.store.head().await.unwrap_or_default(),
        };
        let done = confirmed.checked_sub(1).map_or(Cursor::START, |i| events[i].cursor());
        self.metrics.lag_events.set(head.position.saturating_sub(done.position).max(0));
        let oldest = events.get(confirmed).map(|e| e.recorded_at);
        let age = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        self.metrics.lag_seconds.set(age);
    }

    /// Waits for a commit, the poll interval or the stop signal (true).
    async fn idle(&mut self, cursor: Cursor) -> bool {
        let committed_ahead = self.commits.as_ref().is_some_and(|c| *c.borrow() > cursor);
        if committed_ahead {
            // Committed but not yet readable in the gap-safe order: an
            // older transaction is still open. It ends within milliseconds.
            return self.pause(Duration::from_millis(1)).await;
        }
        let stop = &mut self.stop;
        match &mut self.commits {
            Some(commits) => tokio::select! {
                _ = commits.changed() => false,
                _ = tokio::time::sleep(RELAY_POLL) => false,
                _ = stop.changed() => true,
            },
            None => tokio::select! {
                _ = tokio::time::sleep(RELAY_POLL) => false,
                _ = stop.changed() => true,
            },
        }
    }

    async fn pause(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.changed() => true,
        }
    }
}

/// Stream messages a starting relay looks back over for the newest one it
/// can read (the newest may have been deleted or lost).
pub const LOOK_BACK_MESSAGES_MAX: u64 = 10_000;

/// The log position of the newest readable message of the stream (`None`
/// when there is none within [`LOOK_BACK_MESSAGES_MAX`]), and the stream's
/// last sequence (what the next message must expect).
async fn last_published(stream: &jetstream::stream::Stream) -> Result<(Option<Cursor>, u64), NatsError> {
    let mut stream = stream.clone();
    let info = stream.info().await.map_err(NatsError::nats)?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let oldest = first.max(last.saturating_sub(LOOK_BACK_MESSAGES_MAX)).max(1);
    let mut sequence = last;
    while sequence >= oldest && sequence > 0 {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if let Some(cursor) = position(Some(&message.headers)) {
                return Ok((Some(cursor), last));
            }
        }
        sequence -= 1;
    }
    Ok((None, last))
}
