//! # billing-http
//!
//! The HTTP API of bookbag-billing (axum 0.8): it parses every request at
//! the edge into the domain's newtypes, calls the one [`billing_engine::Engine`]
//! API, and maps every answer to the contract (`/work/shared/api-contract.md`).
//! The binary (`bookbag-billing serve`) builds an [`AppState`], installs the
//! tracing subscriber, handles signals and calls [`serve`].
//!
//! - [`startup`]: [`router`] and [`serve`] (graceful shutdown).
//! - [`routes`]: the route table and one file per resource (where a route
//!   is served); [`openapi`]: the document generated from them.
//! - [`auth`]: bearer tokens (constant-time) and `X-Actor-Id`.
//! - [`extract`]: path, query and body parsing, in the contract's order.
//! - [`error`]: [`HttpError`], the one mapping to status and code.
//! - [`telemetry`]: request id, span, bounds; [`metrics`]: latency histogram.
//! - [`drain`]: reading the rest of a refused body, so the caller reads the
//!   refusal instead of a connection reset.
//! - [`state`]: [`AppState`] and [`Tokens`].
//!
//! ## Check order
//! The contract's order is the order of each handler's extractors: the
//! token (middleware, every `/v1` path, known or not), the runtime token's
//! 403 and the `X-Actor-Id` header (first extractor), path identifiers,
//! query parameters or the body (size, JSON, identifiers, shape), then the
//! handler's stateless parses (provider, key format, amount, role), then the
//! engine (workspace, actor, idempotency, business rules).
//!
//! ## What this API adds to the contract (for docs/api.md)
//! - `GET /healthz` answers 200 `{"status":"ok"}` while the process runs;
//!   `GET /readyz` answers 200 `{"status":"ready"}` when the database
//!   answers, else 503 `unavailable`. `GET /metrics` (OpenMetrics text) and
//!   `GET /openapi.json` (OpenAPI 3.1) need no token.
//! - Unknown routes answer 404 `not_found`; a known route with another
//!   method answers 405 `method_not_allowed`. Under `/v1` a missing or wrong
//!   token answers 401 first, for unknown routes too. A 401 carries
//!   `WWW-Authenticate: Bearer`.
//! - Success bodies the contract leaves open: `POST /v1/workspaces` 201
//!   `{"workspace_id","owner"}`; member `PUT` 200 `{"user","role"}`;
//!   trainings 202 `{"data_source_id"}`; `DELETE`s 204 with no body.
//! - `PUT .../keys/{provider}` with the key that is already active stores
//!   nothing and answers **200** with the same body shape as the 201
//!   (`superseded_key_id` null).
//! - Bodies are strict: every field not listed for the route is 400
//!   `malformed_request`; a missing field or a field of the wrong JSON type
//!   is 400; `null` counts as absent for the optional `reason`. A `role`
//!   other than `admin`/`member` is 422 `invalid_input`. `model` longer
//!   than 256 bytes and `reason` longer than 1024 bytes are 422
//!   `invalid_input`. The body need not carry a JSON `Content-Type`.
//!   Bodies of `DELETE` and trainings are not read.
//! - Query strings are strict too: an unknown or repeated parameter is 422
//!   `invalid_input`. `after` is 0 to 2^63-1; `limit` is 1 to 1000 (default
//!   100) for the ledger and for events. `from` later than `to` is 422. A
//!   `+` offset sent unescaped (read as a space) is accepted as `+`.
//! - `X-Actor-Id`, when sent, must be one valid user id on every `/v1`
//!   route (422 `invalid_input`), and is passed to the engine as the actor.
//! - A reply's `api_key` is present only for the runtime token on a `byo`
//!   reply; it is `null` when the key that served the reply is no longer
//!   active (a repeated `reply_id` after the key was replaced or removed).
//! - Every answer carries `x-request-id`: the caller's, when it is 1 to 128
//!   characters of `A-Z a-z 0-9 _ - . :`, otherwise a fresh one.
//! - 503 `unavailable` also answers a request past 30 s (it may still have
//!   committed: retry with the same ids) and a request beyond 1,024 in
//!   flight. 500 `internal_error` answers a handler that panicked (a bug:
//!   never expected).
//! - The `unknown_model` message does not repeat the model sent.
//! - A body refused before it was read whole (401, 403, 413, a bad path
//!   identifier, a route that takes no body) is read and discarded up to
//!   1 MiB (for at most 1 s) so that the caller reads the refusal; beyond
//!   that the connection may close before the caller has read it.

pub mod auth;
pub mod drain;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use error::HttpError;
pub use metrics::{http_metrics, HttpMetrics};
pub use openapi::openapi;
pub use routes::routes;
pub use startup::{router, serve};
pub use state::{AppState, TokenError, Tokens};
