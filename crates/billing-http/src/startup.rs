//! Building the router and serving it with graceful shutdown.

use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::any::Any;
use std::future::Future;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::authenticate;
use crate::drain::drain_unread_body;
use crate::error::HttpError;
use crate::routes::{endpoints, method_not_allowed, not_found};
use crate::state::AppState;
use crate::telemetry::observe;

/// The whole HTTP API over `state`.
///
/// Layers, outermost first: [`observe`] (request id, span, bounds,
/// metrics), a panic catcher (a panic still answers the contract's JSON),
/// [`drain_unread_body`] (the caller reads early answers), [`authenticate`]
/// (the bearer token of everything under `/v1`), then the route's handler.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (_, path, handler) in endpoints() {
        router = router.route(path, handler);
    }
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), authenticate))
        .layer(from_fn(drain_unread_body))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The panic's payload is not logged: it may quote whatever the handler
/// held.
fn panicked(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    HttpError::Internal.into_response()
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting connections and returns once the requests in flight have
/// been answered (each is bounded by [`crate::telemetry::REQUEST_TIMEOUT`]).
/// The engine is not shut down here: the caller does that after this
/// returns, so that in-flight commands can still commit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving the HTTP API");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
    tracing::info!("the HTTP API stopped; every request in flight was answered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};

    #[test]
    fn a_panic_answers_the_contract_json() {
        let response = panicked(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
