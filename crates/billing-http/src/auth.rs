//! Who is calling: the bearer token (step 1 of the contract's check order)
//! and the `X-Actor-Id` header.
//!
//! [`authenticate`] runs on every request under `/v1`, known route or not,
//! so that a request without a valid token learns nothing else (not even
//! whether the route exists). Handlers then declare which tokens they take
//! with their first extractor, [`PlatformOnly`] or [`PlatformOrRuntime`],
//! which also parse `X-Actor-Id`. Being the first extractor makes the order
//! of checks the order of the handler's arguments: token, then path, then
//! body.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_domain::{Channel, UserId};

use crate::error::HttpError;
use crate::state::AppState;

/// The header naming the user a role-gated command acts for.
pub const ACTOR_HEADER: &str = "x-actor-id";

/// The prefix every authenticated route lives under.
pub const API_PREFIX: &str = "/v1";

/// The authenticated caller of a `/v1` request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub channel: Channel,
    /// The `X-Actor-Id`, already parsed. The engine decides its role.
    pub actor: Option<UserId>,
}

/// A handler that only the API token may call.
pub struct PlatformOnly(pub Caller);

/// A handler that either token may call (replies and queries).
pub struct PlatformOrRuntime(pub Caller);

/// Middleware: checks the bearer token of every request under `/v1` and
/// leaves the [`Channel`] it opens in the request's extensions.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !is_under_api(request.uri().path()) {
        return next.run(request).await;
    }
    match bearer(request.headers()).and_then(|token| state.tokens.channel_of(token)) {
        Some(channel) => {
            request.extensions_mut().insert(channel);
            next.run(request).await
        }
        None => HttpError::Unauthorized.into_response(),
    }
}

fn is_under_api(path: &str) -> bool {
    path.strip_prefix(API_PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 7235); `None` when absent, repeated or of another
/// scheme.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let (scheme, token) = bytes.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

fn caller(parts: &Parts, runtime_allowed: bool) -> Result<Caller, HttpError> {
    // Only reachable without the extension if a route were served outside
    // `/v1`; refusing is the safe answer.
    let channel = *parts.extensions.get::<Channel>().ok_or(HttpError::Unauthorized)?;
    if channel == Channel::Runtime && !runtime_allowed {
        return Err(HttpError::RuntimeForbidden);
    }
    Ok(Caller { channel, actor: actor(&parts.headers)? })
}

/// The `X-Actor-Id`, if sent: one header holding a valid user id.
fn actor(headers: &HeaderMap) -> Result<Option<UserId>, HttpError> {
    let mut values = headers.get_all(ACTOR_HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(HttpError::InvalidInput("send X-Actor-Id once".into()));
    }
    let raw = value.to_str().map_err(|_| HttpError::InvalidInput("X-Actor-Id must be a user id".into()))?;
    UserId::parse(raw).map(Some).map_err(|_| {
        HttpError::InvalidInput(format!(
            "X-Actor-Id must be 1 to {} characters of A-Z a-z 0-9 _ - . :",
            billing_domain::ID_LEN_MAX
        ))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for PlatformOnly {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        caller(parts, false).map(PlatformOnly)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PlatformOrRuntime {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        caller(parts, true).map(PlatformOrRuntime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(bearer(&headers(&[("authorization", "Bearer abc")])), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers(&[("authorization", "bearer abc")])), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer")])), None);
        assert_eq!(bearer(&headers(&[])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")])), None);
    }

    #[test]
    fn only_paths_under_v1_need_a_token() {
        assert!(is_under_api("/v1"));
        assert!(is_under_api("/v1/models"));
        assert!(!is_under_api("/v10/models"));
        assert!(!is_under_api("/healthz"));
    }

    #[test]
    fn the_actor_header_must_be_one_valid_user_id() {
        assert_eq!(actor(&headers(&[])).unwrap(), None);
        assert_eq!(actor(&headers(&[("x-actor-id", "alice")])).unwrap().unwrap().as_str(), "alice");
        assert!(actor(&headers(&[("x-actor-id", "a b")])).is_err());
        assert!(actor(&headers(&[("x-actor-id", "a"), ("x-actor-id", "b")])).is_err());
    }
}
