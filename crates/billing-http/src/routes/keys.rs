//! Provider keys: add (or replace), remove, list masked. Admin only for
//! changes; the plaintext goes in, only its masked form comes out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use billing_domain::{Action, Provider, ProviderKey};
use billing_engine::queries::KeysView;
use billing_engine::{Engine, Outcome};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;
use zeroize::Zeroize;

use super::unexpected;
use crate::auth::{PlatformOnly, PlatformOrRuntime};
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, KeyPath, Kind, RequestBody, WorkspacePath};
use crate::state::AppState;

/// A key as the caller sent it, before `ProviderKey::parse`. It never
/// prints itself (handler spans, error paths) and is wiped when dropped.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct SubmittedKey(String);

impl fmt::Debug for SubmittedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmittedKey(..)")
    }
}

impl Drop for SubmittedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKeyBody {
    /// The plaintext provider key; never shown again.
    #[schema(value_type = String)]
    pub api_key: SubmittedKey,
}

impl RequestBody for AddKeyBody {
    const FIELDS: &'static [Field] = &[Field::required("api_key", Kind::Secret)];
}

#[derive(Serialize, ToSchema)]
pub struct KeyAnswer {
    pub key_id: String,
    #[schema(value_type = String)]
    pub provider: Provider,
    /// e.g. `sk-ant-...WXYZ`.
    pub masked: String,
    /// The key this one replaced, if the provider had one.
    pub superseded_key_id: Option<String>,
}

#[utoipa::path(
    put, path = "/v1/workspaces/{ws}/keys/{provider}", tag = "keys",
    params(("ws" = String, Path, description = "Workspace id"), ("provider" = String, Path, description = "openai or anthropic")),
    request_body = AddKeyBody,
    responses(
        (status = 201, description = "Stored; a previous key of the provider is superseded", body = KeyAnswer),
        (status = 200, description = "The same key was already active: nothing stored", body = KeyAnswer),
        (status = 400, description = "malformed_request, missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input, unknown_provider, invalid_key_format", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "add_key", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn add(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: KeyPath,
    Body(body): Body<AddKeyBody>,
) -> Result<(StatusCode, Json<KeyAnswer>), HttpError> {
    let provider = Provider::parse(&path.provider)?;
    let key = ProviderKey::parse(provider, &body.api_key.0)?;
    drop(body);
    let action = Action::AddKey { key_id: Engine::new_key_id(), provider, key };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::KeyAdded { key_id, provider, masked, superseded_key_id, changed } => {
            let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
            let answer = KeyAnswer {
                key_id: key_id.to_string(),
                provider,
                masked: masked.as_str().to_owned(),
                superseded_key_id: superseded_key_id.map(|id| id.to_string()),
            };
            Ok((status, Json(answer)))
        }
        _ => Err(unexpected("add_key")),
    }
}

#[utoipa::path(
    delete, path = "/v1/workspaces/{ws}/keys/{provider}", tag = "keys",
    params(("ws" = String, Path, description = "Workspace id"), ("provider" = String, Path, description = "openai or anthropic")),
    responses(
        (status = 204, description = "Removed; its secret is deleted"),
        (status = 400, description = "missing_actor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden", body = ErrorBody),
        (status = 404, description = "workspace_not_found, key_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input, unknown_provider", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "remove_key", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn remove(
    State(state): State<AppState>,
    PlatformOnly(caller): PlatformOnly,
    path: KeyPath,
) -> Result<StatusCode, HttpError> {
    let provider = Provider::parse(&path.provider)?;
    let action = Action::RemoveKey { provider };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::KeyRemoved { .. } => Ok(StatusCode::NO_CONTENT),
        _ => Err(unexpected("remove_key")),
    }
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/keys", tag = "keys",
    params(("ws" = String, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "Every key the workspace has had, masked, newest first", body = KeysView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "list_keys", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
) -> Result<Json<KeysView>, HttpError> {
    Ok(Json(state.engine.keys(&path.workspace).await?))
}
