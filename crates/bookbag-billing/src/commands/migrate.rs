//! `bookbag-billing migrate`: apply the database migrations and exit.

use crate::config::{redact_url, Config};
use crate::Failure;

pub async fn run(config: &Config) -> Result<(), Failure> {
    let store = super::open_store(config).await?;
    println!("migrations applied to {} ({})", redact_url(&config.database_url), store.backend().as_str());
    store.db().close().await;
    Ok(())
}
