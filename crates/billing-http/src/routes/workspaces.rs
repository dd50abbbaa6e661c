//! `POST /v1/workspaces` and the workspace's event log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing_domain::{Action, UserId, WorkspaceId};
use billing_engine::queries::EVENTS_PAGE_MAX;
use billing_engine::{Outcome, StoredEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::{PlatformOnly, PlatformOrRuntime};
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, Kind, Page, RequestBody, WorkspacePath};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceBody {
    #[schema(value_type = String)]
    pub workspace_id: WorkspaceId,
    /// Becomes the first admin.
    #[schema(value_type = String)]
    pub owner: UserId,
}

impl RequestBody for CreateWorkspaceBody {
    const FIELDS: &'static [Field] = &[Field::required("workspace_id", Kind::Id), Field::required("owner", Kind::Id)];
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceCreated {
    pub workspace_id: String,
    pub owner: String,
}

#[utoipa::path(
    post, path = "/v1/workspaces", tag = "workspaces",
    request_body = CreateWorkspaceBody,
    responses(
        (status = 201, description = "Created; `owner` is its first admin", body = WorkspaceCreated),
        (status = 400, description = "malformed_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden (runtime token)", body = ErrorBody),
        (status = 409, description = "workspace_exists", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "create_workspace", skip_all, fields(workspace = %crate::telemetry::log_id(&body.workspace_id)))]
pub async fn create(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    Body(body): Body<CreateWorkspaceBody>,
) -> Result<(StatusCode, Json<WorkspaceCreated>), HttpError> {
    let answer = WorkspaceCreated { workspace_id: body.workspace_id.to_string(), owner: body.owner.to_string() };
    let action = Action::CreateWorkspace { workspace_id: body.workspace_id.clone(), owner: body.owner };
    match state.engine.execute(body.workspace_id, caller.actor, caller.channel, action).await? {
        Outcome::Created => Ok((StatusCode::CREATED, Json(answer))),
        _ => Err(unexpected("create_workspace")),
    }
}

/// `GET .../events` pages when the caller names no `limit`.
pub const EVENTS_PAGE_DEFAULT: u32 = 100;

#[derive(Serialize, ToSchema)]
pub struct EventView {
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

impl From<StoredEvent> for EventView {
    fn from(event: StoredEvent) -> Self {
        EventView {
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventsView {
    pub events: Vec<EventView>,
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/events", tag = "workspaces",
    params(
        ("ws" = String, Path, description = "Workspace id"),
        ("after" = Option<u64>, Query, description = "Only events with a sequence above this (default 0)"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The workspace's events in order", body = EventsView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "events", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn events(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
    page: Page<EVENTS_PAGE_MAX, EVENTS_PAGE_DEFAULT>,
) -> Result<Json<EventsView>, HttpError> {
    let events = state.engine.events(&path.workspace, page.after, page.limit).await?;
    Ok(Json(EventsView { events: events.into_iter().map(EventView::from).collect() }))
}
