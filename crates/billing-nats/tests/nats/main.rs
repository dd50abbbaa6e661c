//! Integration tests against the real nats-server (JetStream) of this
//! machine, and throw-away servers the tests start themselves. Every test
//! has a stream and subjects of its own and deletes them afterwards.

mod helpers;
mod projector;
mod relay;
