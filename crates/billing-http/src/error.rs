//! The one error type of the HTTP layer, mapped once to the contract's
//! status and code. Every refusal of this crate, of the engine and of the
//! domain becomes an [`HttpError`], and every [`HttpError`] answers
//! `{"error":{"code","message"}}`.
//!
//! Messages are written here or by the domain, never taken from a parser:
//! serde's messages quote the offending value, and the offending value may be
//! a provider key pasted into the wrong field.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use billing_domain::DomainError;
use billing_engine::EngineError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No bearer token, or one that is neither of the two.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The runtime token on a command other than replies.
    #[error("the runtime token may only serve replies and read queries")]
    RuntimeForbidden,
    /// A malformed identifier, query parameter or bounded text.
    #[error("{0}")]
    InvalidInput(String),
    #[error("the body is larger than {} bytes", crate::extract::BODY_BYTES_MAX)]
    PayloadTooLarge,
    /// The body is not JSON, or not of the expected shape.
    #[error("{0}")]
    Malformed(String),
    #[error("no such route")]
    RouteNotFound,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// A rule of the domain or the engine refused the request.
    #[error(transparent)]
    Domain(DomainError),
    /// A model not in the catalog. Answered with a message of our own that
    /// never repeats what the caller sent (it may be a pasted key).
    #[error("the model is not in the catalog (GET /v1/models lists it)")]
    UnknownModel,
    /// A dependency could not do its part; nothing was stored. The cause has
    /// been logged where it happened.
    #[error("the billing service is unavailable; nothing was stored, retrying is safe")]
    Unavailable,
    /// `GET /readyz` while the database does not answer.
    #[error("the billing database cannot be reached")]
    NotReady,
    /// More requests in flight than [`crate::telemetry::REQUESTS_IN_FLIGHT_MAX`].
    #[error("too many requests in flight; retry shortly")]
    Busy,
    /// The request did not finish within [`crate::telemetry::REQUEST_TIMEOUT`].
    #[error("the request took too long; retrying with the same ids is safe")]
    Timeout,
    /// A handler panicked. Never expected; the panic is logged.
    #[error("internal error")]
    Internal,
}

impl HttpError {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Unauthorized => "unauthorized",
            HttpError::RuntimeForbidden => "forbidden",
            HttpError::InvalidInput(_) => "invalid_input",
            HttpError::PayloadTooLarge => "payload_too_large",
            HttpError::Malformed(_) => "malformed_request",
            HttpError::RouteNotFound => "not_found",
            HttpError::MethodNotAllowed => "method_not_allowed",
            HttpError::Domain(err) => err.code(),
            HttpError::UnknownModel => "unknown_model",
            HttpError::Unavailable | HttpError::NotReady | HttpError::Busy | HttpError::Timeout => "unavailable",
            HttpError::Internal => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::RuntimeForbidden => StatusCode::FORBIDDEN,
            HttpError::InvalidInput(_) | HttpError::UnknownModel => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Malformed(_) => StatusCode::BAD_REQUEST,
            HttpError::RouteNotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Domain(err) => StatusCode::from_u16(err.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            HttpError::Unavailable | HttpError::NotReady | HttpError::Busy | HttpError::Timeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DomainError> for HttpError {
    fn from(err: DomainError) -> Self {
        match err {
            // Its text names the internal cause (vault, database).
            DomainError::Unavailable(_) => HttpError::Unavailable,
            DomainError::UnknownModel => HttpError::UnknownModel,
            other => HttpError::Domain(other),
        }
    }
}

impl From<EngineError> for HttpError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Domain(err) => err.into(),
            EngineError::Unavailable => HttpError::Unavailable,
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of the contract's codes, e.g. `insufficient_credits`.
    pub code: &'static str,
    pub message: String,
}

/// Put on every error response so that the request log can name the code
/// without reading the body.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = ErrorBody { error: ErrorDetail { code, message: self.to_string() } };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, HttpError::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_code_keeps_its_contract_status() {
        let cases = [
            (DomainError::InsufficientCredits { cost: 5, balance: 1 }, 402, "insufficient_credits"),
            (DomainError::LastAdmin, 409, "last_admin"),
            (DomainError::MissingActor, 400, "missing_actor"),
            (DomainError::WorkspaceNotFound, 404, "workspace_not_found"),
        ];
        for (err, status, code) in cases {
            let err = HttpError::from(err);
            assert_eq!((err.status().as_u16(), err.code()), (status, code));
        }
    }

    #[test]
    fn unknown_model_names_the_catalog() {
        let err = HttpError::from(DomainError::UnknownModel);
        assert_eq!(err.code(), "unknown_model");
        assert!(err.to_string().contains("GET /v1/models"));
    }

    #[test]
    fn internal_causes_never_reach_the_message() {
        let err = HttpError::from(DomainError::Unavailable("vault key 1234 broke".into()));
        assert_eq!((err.status().as_u16(), err.code()), (503, "unavailable"));
        assert!(!err.to_string().contains("1234"));
    }
}
