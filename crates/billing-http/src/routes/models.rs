//! `GET /v1/models`: the catalog the engine routes with.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::PlatformOrRuntime;
use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ModelView {
    pub id: String,
    /// `openai`, `anthropic` or `local`.
    pub provider: &'static str,
    /// Whole credits per reply.
    pub credit_cost: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ModelsView {
    pub models: Vec<ModelView>,
}

#[utoipa::path(
    get, path = "/v1/models", tag = "models",
    responses(
        (status = 200, description = "Every model of the catalog", body = ModelsView),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "models", skip_all)]
pub async fn list(State(state): State<AppState>, _caller: PlatformOrRuntime) -> Json<ModelsView> {
    let models = state
        .engine
        .catalog()
        .models()
        .map(|m| ModelView { id: m.id.to_string(), provider: m.provider.as_str(), credit_cost: m.credit_cost.get() })
        .collect();
    Json(ModelsView { models })
}
