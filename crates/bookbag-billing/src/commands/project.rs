//! `bookbag-billing project`: a standalone projector. It consumes the
//! JetStream stream (`BILLING_NATS_URL`, `BILLING_NATS_STREAM`) through a
//! durable consumer and maintains the projection tables in the database of
//! `BILLING_DATABASE_URL`, which may be another database than the event
//! store. Run several with the same `--name` for availability: they share
//! the consumer and never apply an event twice.

use billing_nats::projector::NatsProjector;
use clap::Args;
use std::time::{Duration, Instant};

use crate::config::{redact_url, Config};
use crate::Failure;

/// How often a running projector logs what it has done.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct ProjectArgs {
    /// The projector's name: its durable consumer is `projector-<name>`.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub name: String,
}

pub async fn run(config: &Config, args: &ProjectArgs) -> Result<(), Failure> {
    let Some(nats) = config.nats() else {
        return Err(Failure::Usage("BILLING_NATS_URL must be set: project reads the event stream from NATS".into()));
    };
    if args.name.is_empty() || !args.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(Failure::Usage(format!("--name must be letters, digits, _ or -; got {:?}", args.name)));
    }
    let store = super::open_store(config).await?;
    let projector = NatsProjector::new(nats.clone(), &args.name, store.clone());
    tracing::info!(
        stream = %nats.stream, consumer = projector.consumer_name(), target = %redact_url(&config.database_url),
        "projecting from NATS"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut applied = 0u64;
    let mut last_report = Instant::now();
    let result = projector
        .run(stopped, |stats| {
            applied += stats.applied;
            if last_report.elapsed() >= PROGRESS_EVERY {
                tracing::info!(applied, "projector progress");
                last_report = Instant::now();
            }
        })
        .await;
    store.db().close().await;
    match result {
        Ok(total) => {
            tracing::info!(applied = total.applied, skipped = total.skipped, "projector stopped");
            Ok(())
        }
        Err(err) => Err(Failure::Runtime(err.to_string())),
    }
}
