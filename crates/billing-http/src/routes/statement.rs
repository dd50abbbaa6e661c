//! A workspace's statement: its billing history folded from the stored
//! events (the same fold as `bookbag-billing audit replay`), for dashboards.

use axum::extract::State;
use axum::Json;
use billing_engine::audit::StatementView;

use crate::auth::PlatformOrRuntime;
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Period, WorkspacePath};
use crate::state::AppState;

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/statement", tag = "audit",
    params(
        ("ws" = String, Path, description = "Workspace id"),
        ("from" = Option<String>, Query, description = "RFC 3339: lines at or after this instant"),
        ("to" = Option<String>, Query, description = "RFC 3339: lines before this instant"),
    ),
    responses(
        (status = 200, description = "Every event of the range with actor, change, route, model, list cost, credits \
            and running balance; opening and closing balance; totals per route; the state at the end", body = StatementView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "statement", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
    period: Period,
) -> Result<Json<StatementView>, HttpError> {
    Ok(Json(state.engine.statement(&path.workspace, period.from, period.to).await?))
}
