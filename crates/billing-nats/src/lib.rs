//! # billing-nats
//!
//! Every committed event of bookbag-billing on NATS JetStream, and a
//! projector that builds the dashboard tables from there. The event log in
//! the database stays the source of truth; NATS is how the read side
//! scales out.
//!
//! - [`config`]: which server, stream and subjects.
//! - [`message`]: an event as a JetStream message (subject, `Nats-Msg-Id`,
//!   body) and back.
//! - [`relay`]: the checkpointed relay inside `serve`: reads the log in its
//!   gap-safe order from a cursor kept in the database, publishes in a
//!   bounded window, and moves the cursor only past what JetStream
//!   acknowledged. A crash between commit and publish loses nothing; the
//!   message id lets JetStream drop what is published twice.
//! - [`projector`]: `bookbag-billing project`: a durable pull consumer
//!   feeding `billing_engine::projection::Projector`, exactly once per event
//!   per database.

pub mod config;
pub mod message;
pub mod projector;
pub mod relay;

pub use config::NatsConfig;
pub use relay::{Relay, RelayMetrics};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NatsError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] billing_engine::StoreError),
}

impl NatsError {
    pub(crate) fn nats(err: impl std::fmt::Display) -> NatsError {
        NatsError::Nats(err.to_string())
    }
}
