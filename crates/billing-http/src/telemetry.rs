//! The request span, the request id, the latency metric and the bounds on
//! every request: one middleware, [`observe`], outermost on every route.
//!
//! What is logged: the request id, the method, the route template, the
//! status, the error code and the latency; handlers add the identifiers
//! they parsed. What is never logged: header values (the `Authorization`
//! token) and bodies (provider keys travel in bodies). The binary installs
//! the subscriber; this crate only emits events.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_domain::{Provider, ProviderKey};
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::error::{ErrorCode, HttpError};
use crate::metrics::{RequestLabels, UNMATCHED_ROUTE};
use crate::state::AppState;

/// The header carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Requests answered at once at most; past it a request is refused with 503
/// at once rather than queued without bound. The engine's own command
/// queues are bounded too; this bounds the queries and the bodies being
/// read.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 1_024;

/// The longest a request may take, body reading included (a client that
/// trickles a body is cut off). Far above a command waiting for its group
/// commit and above the engine's read-your-writes wait (5 s), so that it
/// only ends requests that are stuck. A command cut off here may still
/// commit: retrying with the same ids is safe, the contract's ids are
/// idempotent.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Middleware: runs the request inside a span carrying its request id,
/// bounds it, measures it, logs its answer and returns the request id.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request_id(request.headers());
    let method = method_label(request.method());
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %request_id, method, route = %route);
    let started = Instant::now();
    let mut response = bounded(&state, request, next).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe(&RequestLabels { method: method.to_owned(), route, status }, took);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    span.in_scope(|| log_answer(status, code, took));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn bounded(state: &AppState, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.try_acquire() else {
        return HttpError::Busy.into_response();
    };
    let _gauge = InFlight::enter(&state.metrics.requests_in_flight);
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => HttpError::Timeout.into_response(),
    }
}

/// Counts a request in flight until it is answered or dropped (a client
/// that hangs up drops it mid-way).
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn log_answer(status: u16, code: Option<&'static str>, took: Duration) {
    let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let code = code.unwrap_or("");
    if status >= 500 {
        tracing::warn!(status, code, took_us, "answered");
    } else {
        tracing::info!(status, code, took_us, "answered");
    }
}

/// The caller's `x-request-id` when it is a well-formed identifier (so it
/// can be followed across services), otherwise a fresh one: a request id
/// ends up in every log line, so caller text of any shape is not one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| billing_domain::is_valid_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// The method as a metric label; extension methods share one label so that
/// callers cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|m| *m == method).map_or("other", |m| m.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_request_id_is_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("req-42"));
        assert_eq!(request_id(&headers), "req-42");
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&headers), "has space");
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}

/// An identifier as the logs show it: as it is, unless it has the shape of
/// a provider key (a caller pasted a key where an id goes; the contract's
/// alphabet allows it). Then only its length is shown, so that no log line
/// holds a key, whatever field it arrived in.
pub struct LogId(String);

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// See [`LogId`].
pub fn log_id(value: &impl std::fmt::Display) -> LogId {
    let text = value.to_string();
    let key_shaped = [Provider::Openai, Provider::Anthropic].into_iter().any(|p| ProviderKey::parse(p, &text).is_ok());
    if key_shaped {
        LogId(format!("<an id shaped like a provider key, {} bytes>", text.len()))
    } else {
        LogId(text)
    }
}

#[cfg(test)]
mod log_id_tests {
    use super::log_id;

    #[test]
    fn an_id_shaped_like_a_key_is_shown_by_its_length_only() {
        let key = "sk-proj-TESTSECRETopenaiAAAA1111";
        let shown = log_id(&key).to_string();
        assert!(!shown.contains("TESTSECRET"), "{shown}");
        assert!(shown.contains(&key.len().to_string()), "{shown}");
        assert_eq!(log_id(&"acme-prod").to_string(), "acme-prod");
        assert_eq!(log_id(&"sk-short").to_string(), "sk-short");
    }
}
