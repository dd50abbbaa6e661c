//! One file per subcommand, each with its arguments and its run.

pub mod audit;
pub mod bench;
pub mod migrate;
pub mod project;
pub mod rebuild;
pub mod serve;

use billing_engine::{Db, Store};
use std::time::Duration;

use crate::config::{redact_url, Config};
use crate::Failure;

/// How long a command waits for the database to answer at start-up.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Connects to the configured database (retrying while it starts) and
/// applies the migrations.
pub async fn open_store(config: &Config) -> Result<Store, Failure> {
    let started = std::time::Instant::now();
    let db = loop {
        match Db::connect(&config.database_url).await {
            Ok(db) => break db,
            Err(billing_engine::StoreError::Config(message)) => return Err(Failure::Usage(message)),
            Err(err) if started.elapsed() < CONNECT_WAIT => {
                tracing::warn!(error = %err, database = %redact_url(&config.database_url), "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                return Err(Failure::Usage(format!(
                    "BILLING_DATABASE_URL: cannot reach {} ({err})",
                    redact_url(&config.database_url)
                )))
            }
        }
    };
    db.migrate().await.map_err(|e| Failure::Runtime(format!("migrations failed: {e}")))?;
    Ok(Store::new(db))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

/// A progress bar on a terminal, plain lines elsewhere.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
