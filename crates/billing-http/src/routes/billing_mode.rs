//! The BYO toggle (admin only) and the billing mode it shows in.

use axum::extract::State;
use axum::Json;
use billing_domain::Action;
use billing_engine::queries::BillingModeView;
use billing_engine::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::{PlatformOnly, PlatformOrRuntime};
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, Kind, RequestBody, WorkspacePath};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetByoBody {
    pub enabled: bool,
}

impl RequestBody for SetByoBody {
    const FIELDS: &'static [Field] = &[Field::required("enabled", Kind::Bool)];
}

#[derive(Serialize, ToSchema)]
pub struct ByoAnswer {
    pub byo_enabled: bool,
}

#[utoipa::path(
    put, path = "/v1/workspaces/{ws}/byo", tag = "billing mode",
    params(("ws" = String, Path, description = "Workspace id")),
    request_body = SetByoBody,
    responses(
        (status = 200, description = "The flag (also when it already had that value: nothing stored)", body = ByoAnswer),
        (status = 400, description = "malformed_request, missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "set_byo", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), enabled = body.enabled))]
pub async fn set_byo(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: WorkspacePath,
    Body(body): Body<SetByoBody>,
) -> Result<Json<ByoAnswer>, HttpError> {
    let action = Action::SetByo { enabled: body.enabled };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::Byo { enabled, .. } => Ok(Json(ByoAnswer { byo_enabled: enabled })),
        _ => Err(unexpected("set_byo")),
    }
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/billing-mode", tag = "billing mode",
    params(("ws" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "BYO flag, metering and each provider's masked active key", body = BillingModeView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "billing_mode", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
) -> Result<Json<BillingModeView>, HttpError> {
    Ok(Json(state.engine.billing_mode(&path.workspace).await?))
}
