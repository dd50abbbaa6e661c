//! `bookbag-billing projections rebuild`: empty every projection table and
//! replay the whole log through the projector, with a progress bar. Safe
//! beside a running `serve` (projectors share per-workspace offsets), but
//! dashboards see empty tables until it finishes: prefer a quiet moment.

use billing_engine::projection::{Projector, IN_PROCESS_PROJECTOR};

use crate::config::Config;
use crate::Failure;

pub async fn run(config: &Config) -> Result<(), Failure> {
    let store = super::open_store(config).await?;
    let total = store.event_count().await.map_err(|e| Failure::Runtime(e.to_string()))?;
    let projector = Projector::new(store.clone(), IN_PROCESS_PROJECTOR);
    projector.reset().await.map_err(|e| Failure::Runtime(e.to_string()))?;
    let bar = super::progress(total, "projecting");
    let result = projector.catch_up(&store, |n| bar.inc(n)).await;
    bar.finish();
    result.map_err(|e| Failure::Runtime(format!("rebuild stopped: {e}")))?;
    println!("projections rebuilt from {} events", bar.position());
    store.db().close().await;
    Ok(())
}
