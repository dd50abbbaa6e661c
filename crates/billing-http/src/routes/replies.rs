//! Agent replies (API or runtime token): the engine routes and bills each
//! one; usage shows what they cost and saved.

use axum::extract::State;
use axum::Json;
use billing_domain::{Action, AgentId, Channel, ModelProvider, ReplyId, Route};
use billing_engine::queries::UsageView;
use billing_engine::{Outcome, ReplyAnswer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::unexpected;
use crate::auth::PlatformOrRuntime;
use crate::error::{ErrorBody, HttpError};
use crate::extract::{Body, Field, Kind, Period, RequestBody, WorkspacePath};
use crate::state::AppState;

/// Longest `model` read. A model id is not an identifier (anything the
/// catalog lacks is `unknown_model`), but caller text of unbounded length
/// must not reach the engine, its events' error paths or the logs.
pub const MODEL_LEN_MAX: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// Idempotency key: a repeat with the same agent and model answers as the first time.
    #[schema(value_type = String)]
    pub reply_id: ReplyId,
    #[schema(value_type = String)]
    pub agent_id: AgentId,
    /// A model id of the catalog (`GET /v1/models`).
    pub model: String,
}

impl RequestBody for ReplyBody {
    const FIELDS: &'static [Field] = &[
        Field::required("reply_id", Kind::Id),
        Field::required("agent_id", Kind::Id),
        Field::required("model", Kind::Text { bytes_max: MODEL_LEN_MAX }),
    ];
}

#[derive(Serialize, ToSchema)]
pub struct ReplyView {
    pub reply_id: String,
    #[schema(value_type = String)]
    pub route: Route,
    #[schema(value_type = String)]
    pub provider: ModelProvider,
    pub model: String,
    pub credits_charged: u64,
    /// What the reply costs on credits by the catalog, on every route.
    pub list_cost: u64,
    /// The balance right after the reply was first decided.
    pub balance: u64,
    /// The key that served a `byo` reply; null on other routes.
    pub key_id: Option<String>,
    /// Only for the runtime token on a `byo` reply: the decrypted key,
    /// or null when the key that served the reply is no longer active.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Option<String>>,
}

impl ReplyView {
    fn new(answer: ReplyAnswer, channel: Channel) -> ReplyView {
        let hands_key = channel == Channel::Runtime && answer.route == Route::Byo;
        ReplyView {
            reply_id: answer.reply_id.to_string(),
            route: answer.route,
            provider: answer.provider,
            model: answer.model,
            credits_charged: answer.credits_charged.get(),
            list_cost: answer.list_cost.get(),
            balance: answer.balance.get(),
            key_id: answer.key_id.map(|id| id.to_string()),
            api_key: hands_key.then(|| answer.api_key.as_ref().map(|key| key.expose().to_owned())),
        }
    }
}

#[utoipa::path(
    post, path = "/v1/workspaces/{ws}/replies", tag = "replies",
    params(("ws" = String, Path, description = "Workspace id")),
    request_body = ReplyBody,
    responses(
        (status = 200, description = "Routed and billed (a repeated reply_id with the same body answers the same, charging nothing)", body = ReplyView),
        (status = 400, description = "malformed_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 402, description = "insufficient_credits", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 409, description = "no_key_for_provider, idempotency_conflict", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "invalid_input, unknown_model", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "serve_reply", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace), reply = %crate::telemetry::log_id(&body.reply_id)))]
pub async fn serve(
    State(state): State<AppState>,
    PlatformOrRuntime(caller): PlatformOrRuntime,
    path: WorkspacePath,
    Body(body): Body<ReplyBody>,
) -> Result<Json<ReplyView>, HttpError> {
    let action = Action::ServeReply { reply_id: body.reply_id, agent_id: body.agent_id, model: body.model };
    match state.engine.execute(path.workspace, caller.actor, caller.channel, action).await? {
        Outcome::Reply(answer) => Ok(Json(ReplyView::new(answer, caller.channel))),
        _ => Err(unexpected("serve_reply")),
    }
}

#[utoipa::path(
    get, path = "/v1/workspaces/{ws}/usage", tag = "replies",
    params(
        ("ws" = String, Path, description = "Workspace id"),
        ("from" = Option<String>, Query, description = "RFC 3339; widened to the start of its UTC day"),
        ("to" = Option<String>, Query, description = "RFC 3339; widened to the end of its UTC day"),
    ),
    responses(
        (status = 200, description = "Replies, credits charged and list cost by route and by model", body = UsageView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "workspace_not_found", body = ErrorBody),
        (status = 422, description = "invalid_input", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "usage", skip_all, fields(workspace = %crate::telemetry::log_id(&path.workspace)))]
pub async fn usage(
    State(state): State<AppState>,
    _caller: PlatformOrRuntime,
    path: WorkspacePath,
    period: Period,
) -> Result<Json<UsageView>, HttpError> {
    Ok(Json(state.engine.usage(&path.workspace, period.from, period.to).await?))
}
