//! Which NATS server, stream and subjects; and opening the stream.

use async_nats::jetstream::{self, stream};
use std::time::Duration;

use crate::NatsError;

/// The contract's stream.
pub const DEFAULT_STREAM: &str = "BILLING_EVENTS";
/// The contract's subjects: `billing.events.<workspace_id>.<event_type>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "billing.events";
/// How long JetStream remembers message ids to drop duplicates. The relay
/// also resumes from the stream's last message after a restart, so a
/// restart longer than this window still publishes nothing twice.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a publish or request waits for the server.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

impl NatsConfig {
    /// The contract's stream and subjects on `url`.
    pub fn new(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
        }
    }

    pub fn subject(&self, workspace: &str, event_type: &str) -> String {
        format!("{}.{workspace}.{event_type}", self.subject_prefix)
    }

    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// Connects, retrying in the background while the server is down (so a
    /// process can start before NATS does).
    pub async fn connect(&self) -> Result<async_nats::Client, NatsError> {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(REQUEST_TIMEOUT)
            .name("bookbag-billing")
            .connect(self.url.as_str())
            .await
            .map_err(NatsError::nats)
    }

    /// A JetStream context whose publishes wait (rather than fail) when too
    /// many acknowledgements are outstanding.
    pub fn jetstream(&self, client: async_nats::Client, inflight_max: usize) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(inflight_max)
            .backpressure_on_inflight(true)
            .build(client)
    }

    /// The stream, created when missing (file storage, our subjects, the
    /// duplicate window). Works on nats-server 2.9.
    pub async fn ensure_stream(&self, js: &jetstream::Context) -> Result<stream::Stream, NatsError> {
        js.get_or_create_stream(stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.all_subjects()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..stream::Config::default()
        })
        .await
        .map_err(NatsError::nats)
    }
}
