//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /openapi.json`. A test checks that it
//! lists exactly the routes of [`crate::routes`].

use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{billing_mode, credits, keys, members, models, ops, replies, statement, trainings, workspaces};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bookbag-billing",
        description = "Credits, bring-your-own-keys and Local model billing of agent replies. \
                       Every error is {\"error\":{\"code\",\"message\"}}."
    ),
    paths(
        workspaces::create,
        workspaces::events,
        members::set_role,
        members::remove,
        keys::list,
        keys::add,
        keys::remove,
        billing_mode::set_byo,
        billing_mode::show,
        credits::grant,
        credits::balance,
        credits::ledger,
        replies::serve,
        replies::usage,
        statement::show,
        trainings::train,
        models::list,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi_json,
    ),
    modifiers(&BearerToken)
)]
struct ApiDoc;

/// Declares the `bearer` scheme the `/v1` operations name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, built anew.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document `GET /openapi.json` serves, built once.
pub(crate) fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(openapi)
}
