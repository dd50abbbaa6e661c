//! Training a data source: any member, never costs credits.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing_domain::Action;
use billing_engine::Outcome;
use serde::Serialize;
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::PlatformOnly;
use crate::error::{ErrorBody, HttpError};
use crate::extract::DataSourcePath;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct TrainingAccepted {
    pub data_source_id: String,
}

#[utoipa::path(
    post, path = "/v1/workspaces/{ws}/data-sources/{id}/trainings", tag = "data sources",
    params(("ws" = String, Path, description = "Workspace id"), ("id" = String, Path, description = "Data source id")),
    responses(
        (status = 202, description = "Recorded; costs no credits", body = TrainingAccepted),
        (status = 400, description = "missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "train_data_source", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), data_source = %crate::telemetry::log_id(&path.data_source)))]
pub async fn train(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: DataSourcePath,
) -> Result<(StatusCode, Json<TrainingAccepted>), HttpError> {
    let answer = TrainingAccepted { data_source_id: path.data_source.to_string() };
    let action = Action::TrainDataSource { data_source_id: path.data_source };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::Trained => Ok((StatusCode::ACCEPTED, Json(answer))),
        _ => Err(unexpected("train_data_source")),
    }
}
