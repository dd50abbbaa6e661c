//! Members and their roles (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing_domain::{Action, Role};
use billing_engine::Outcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::PlatformOnly;
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, Kind, MemberPath, RequestBody};
use crate::state::AppState;

/// Longest text read as a role: the longest role name, with room to spare.
const ROLE_LEN_MAX: usize = 16;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleBody {
    /// `admin` or `member`.
    pub role: String,
}

impl RequestBody for SetRoleBody {
    const FIELDS: &'static [Field] = &[Field::required("role", Kind::Text { bytes_max: ROLE_LEN_MAX })];
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user: String,
    #[schema(value_type = String)]
    pub role: Role,
}

fn parse_role(raw: &str) -> Result<Role, HttpError> {
    match raw {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        _ => Err(HttpError::InvalidInput("`role` must be admin or member".into())),
    }
}

#[utoipa::path(
    put, path = "/v1/workspaces/{ws}/members/{user}", tag = "members",
    params(("ws" = String, Path, description = "Workspace id"), ("user" = String, Path, description = "User id")),
    request_body = SetRoleBody,
    responses(
        (status = 200, description = "The member's role (also when it already was that role: nothing stored)", body = MemberView),
        (status = 400, description = "malformed_request, missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 409, description = "last_admin", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "set_member_role", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), user = %crate::telemetry::log_id(&path.user)))]
pub async fn set_role(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: MemberPath,
    Body(body): Body<SetRoleBody>,
) -> Result<Json<MemberView>, HttpError> {
    let role = parse_role(&body.role)?;
    let answer = MemberView { user: path.user.to_string(), role };
    let action = Action::SetMemberRole { user: path.user, role };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::RoleSet { .. } => Ok(Json(answer)),
        _ => Err(unexpected("set_member_role")),
    }
}

#[utoipa::path(
    delete, path = "/v1/workspaces/{ws}/members/{user}", tag = "members",
    params(("ws" = String, Path, description = "Workspace id"), ("user" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found, member_not_found", body = ErrorBody),
        (status = 409, description = "last_admin", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "remove_member", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), user = %crate::telemetry::log_id(&path.user)))]
pub async fn remove(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: MemberPath,
) -> Result<StatusCode, HttpError> {
    let action = Action::RemoveMember { user: path.user };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::MemberRemoved => Ok(StatusCode::NO_CONTENT),
        _ => Err(unexpected("remove_member")),
    }
}
