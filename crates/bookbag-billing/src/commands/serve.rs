//! `bookbag-billing serve`: the HTTP API over the engine, the in-process
//! projector, and (with `BILLING_NATS_URL`) the relay to JetStream.
//!
//! Start-up: configuration and secrets, the database (migrations applied),
//! the engine, the relay, then the listener. Shutdown on SIGTERM/SIGINT:
//! stop accepting, answer what is in flight, let the writers commit and the
//! projector catch up, stop the relay, exit 0.

use billing_domain::MasterKeyVault;
use billing_engine::{Engine, EngineConfig, Metrics};
use billing_http::{http_metrics, AppState, Tokens};
use billing_nats::{Relay, RelayMetrics};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::sync::watch;

use crate::config::{redact_url, Config};
use crate::secrets::Secrets;
use crate::Failure;

pub async fn run(config: &Config) -> Result<(), Failure> {
    let secrets = Secrets::resolve(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let tokens = Tokens::new(&secrets.api_token, &secrets.runtime_token)
        .map_err(|e| Failure::Usage(format!("BILLING_API_TOKEN / BILLING_RUNTIME_TOKEN: {e}")))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Failure::Usage(format!("BILLING_LISTEN: cannot listen on {}: {e}", config.listen)))?;
    let store = super::open_store(config).await?;

    let mut registry = Registry::default();
    let engine_metrics = Arc::new(Metrics::new(&mut registry));
    let http = http_metrics(&mut registry);
    let relay_metrics = config.nats().map(|_| Arc::new(RelayMetrics::new(&mut registry)));

    let vault = Arc::new(MasterKeyVault::new(&secrets.master_key));
    let mut engine_config = EngineConfig::new(Arc::new(config.catalog.clone()), config.metering, vault, &store);
    engine_config.metrics = engine_metrics;
    let engine = Engine::start(store.clone(), engine_config)
        .await
        .map_err(|e| Failure::Runtime(format!("the engine cannot start: {e}")))?;

    let (stop_relay, relay_stopped) = watch::channel(false);
    let relay = match (config.nats(), relay_metrics) {
        (Some(nats), Some(metrics)) => {
            tracing::info!(url = %nats.url, stream = %nats.stream, "publishing every committed event to NATS");
            let relay = Relay::new(store.clone(), nats, metrics, Some(engine.commits()), relay_stopped);
            Some(tokio::spawn(relay.run()))
        }
        _ => None,
    };

    tracing::info!(
        database = %redact_url(&config.database_url),
        backend = store.backend().as_str(),
        metering = ?config.metering,
        "engine ready"
    );
    let state = AppState::new(engine.clone(), tokens, Arc::new(registry), http);
    let served = billing_http::serve(listener, state, super::shutdown_signal()).await;
    engine.shutdown().await;
    let _ = stop_relay.send(true);
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    store.db().close().await;
    served.map_err(|e| Failure::Runtime(format!("the HTTP server failed: {e}")))
}
