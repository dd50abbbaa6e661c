//! The route table: every route the router serves, in one list that the
//! router, `/openapi.json` and the tests all read.
//!
//! One file per resource; each handler's extractors run in the contract's
//! order of checks (token and actor header, path, query or body), and the
//! handler parses what needs the body before calling the engine.

use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};

use crate::error::HttpError;
use crate::state::AppState;

pub mod billing_mode;
pub mod credits;
pub mod keys;
pub mod members;
pub mod models;
pub mod ops;
pub mod replies;
pub mod statement;
pub mod trainings;
pub mod workspaces;

/// Every route: method, path template (axum's and OpenAPI's syntax), handler.
pub(crate) fn endpoints() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::POST, "/v1/workspaces", post(workspaces::create)),
        (Method::GET, "/v1/workspaces/{ws}/events", get(workspaces::events)),
        (Method::PUT, "/v1/workspaces/{ws}/members/{user}", put(members::set_role)),
        (Method::DELETE, "/v1/workspaces/{ws}/members/{user}", delete(members::remove)),
        (Method::GET, "/v1/workspaces/{ws}/keys", get(keys::list)),
        (Method::PUT, "/v1/workspaces/{ws}/keys/{provider}", put(keys::add)),
        (Method::DELETE, "/v1/workspaces/{ws}/keys/{provider}", delete(keys::remove)),
        (Method::PUT, "/v1/workspaces/{ws}/byo", put(billing_mode::set_byo)),
        (Method::GET, "/v1/workspaces/{ws}/billing-mode", get(billing_mode::show)),
        (Method::POST, "/v1/workspaces/{ws}/credits/grants", post(credits::grant)),
        (Method::GET, "/v1/workspaces/{ws}/credits", get(credits::balance)),
        (Method::GET, "/v1/workspaces/{ws}/credits/ledger", get(credits::ledger)),
        (Method::POST, "/v1/workspaces/{ws}/replies", post(replies::serve)),
        (Method::GET, "/v1/workspaces/{ws}/usage", get(replies::usage)),
        (Method::GET, "/v1/workspaces/{ws}/statement", get(statement::show)),
        (Method::POST, "/v1/workspaces/{ws}/data-sources/{id}/trainings", post(trainings::train)),
        (Method::GET, "/v1/models", get(models::list)),
        (Method::GET, "/healthz", get(ops::healthz)),
        (Method::GET, "/readyz", get(ops::readyz)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/openapi.json", get(ops::openapi_json)),
    ]
}

/// Every (method, path template) the router serves.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(method, path, _)| (method, path)).collect()
}

/// The engine answered a command with another command's outcome: a broken
/// engine contract, answered as the engine answers its own (503, logged)
/// rather than with a panic.
pub(crate) fn unexpected(action: &'static str) -> HttpError {
    tracing::error!(action, "the engine answered with the outcome of another command");
    HttpError::Unavailable
}

pub(crate) async fn not_found() -> HttpError {
    HttpError::RouteNotFound
}

pub(crate) async fn method_not_allowed() -> HttpError {
    HttpError::MethodNotAllowed
}
