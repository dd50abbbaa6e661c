//! Credit grants (API token), the balance and the ledger.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing_domain::{Action, Credits, GrantId, REASON_LEN_MAX};
use billing_engine::queries::{CreditsView, LedgerPage, LEDGER_PAGE_DEFAULT, LEDGER_PAGE_MAX};
use billing_engine::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::{PlatformOnly, PlatformOrRuntime};
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, Kind, Page, RequestBody, WorkspacePath};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Idempotency key: a repeat with the same amount answers as the first time.
    #[schema(value_type = String)]
    pub grant_id: GrantId,
    /// A JSON integer from 1 to 10^12 (anything else is `invalid_amount`).
    #[schema(value_type = u64)]
    pub amount: serde_json::Value,
    /// Optional note kept in the event, at most 1024 bytes.
    pub reason: Option<String>,
}

impl RequestBody for GrantBody {
    const FIELDS: &'static [Field] = &[
        Field::required("grant_id", Kind::Id),
        Field::required("amount", Kind::Any),
        Field::optional("reason", Kind::Text { bytes_max: REASON_LEN_MAX }),
    ];
}

#[derive(Serialize, ToSchema)]
pub struct GrantAnswer {
    /// The balance right after this grant was first made.
    pub balance: u64,
}

#[utoipa::path(
    post, path = "/v1/workspaces/{ws}/credits/grants", tag = "credits",
    params(("ws" = String, Path, description = "Workspace id")),
    request_body = GrantBody,
    responses(
        (status = 201, description = "Granted (a repeated grant_id with the same amount answers the same)", body = GrantAnswer),
        (status = 400, description = "malformed_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (runtime token)", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input, invalid_amount", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "grant_credits", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), grant = %crate::telemetry::log_id(&body.grant_id)))]
pub async fn grant(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: WorkspacePath,
    Body(body): Body<GrantBody>,
) -> Result<(StatusCode, Json<GrantAnswer>), HttpError> {
    let amount = Credits::parse_grant(&body.amount)?;
    let action = Action::GrantCredits { grant_id: body.grant_id, amount, reason: body.reason.unwrap_or_default() };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::Granted { balance, .. } => Ok((StatusCode::CREATED, Json(GrantAnswer { balance: balance.get() }))),
        _ => Err(unexpected("grant_credits")),
    }
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/credits", tag = "credits",
    params(("ws" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Balance, total granted and total spent", body = CreditsView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "credits", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn balance(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
) -> Result<Json<CreditsView>, HttpError> {
    Ok(Json(state.engine.credits(&path.workspace).await?))
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/credits/ledger", tag = "credits",
    params(
        ("ws" = String, Path, description = "Workspace id"),
        ("after" = Option<u64>, Query, description = "Only entries with a seq above this (default 0)"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "Credit-metered grants and charges, oldest first", body = LedgerPage),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "ledger", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn ledger(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
    page: Page<LEDGER_PAGE_MAX, LEDGER_PAGE_DEFAULT>,
) -> Result<Json<LedgerPage>, HttpError> {
    Ok(Json(state.engine.ledger(&path.workspace, page.after, page.limit).await?))
}
