//! Parsing at the edge: path identifiers, query parameters and JSON bodies
//! become the domain's newtypes here, in the contract's order of checks
//! (identifiers, then the body's size and shape). Nothing here needs state.
//!
//! axum's own `Path`, `Query` and `Json` extractors are not used for
//! input: their rejections are plain text, and serde's messages quote the
//! offending value, which may be a provider key in the wrong field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Uri};
use billing_domain::{DataSourceId, DomainError, WorkspaceId, ID_LEN_MAX};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::error::HttpError;

/// Largest request body: the contract's 64 KiB. A command body is a few
/// hundred bytes; the bound keeps a client from making the server buffer
/// more.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// What a body field must hold.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An identifier of the contract's alphabet (422 `invalid_input`).
    Id,
    /// A string of at most `bytes_max` bytes (422 `invalid_input` beyond).
    Text {
        bytes_max: usize,
    },
    /// A string checked later by its own parser, never quoted back.
    Secret,
    Bool,
    /// Any JSON value, checked later by its own parser (e.g. `amount`).
    Any,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// An optional field may be absent or `null`.
    pub required: bool,
}

impl Field {
    pub const fn required(name: &'static str, kind: Kind) -> Field {
        Field { name, kind, required: true }
    }

    pub const fn optional(name: &'static str, kind: Kind) -> Field {
        Field { name, kind, required: false }
    }
}

/// A JSON body of a command. `FIELDS` lists every field it takes: any
/// other field is refused (400), so a misspelt optional field cannot be
/// silently ignored.
pub trait RequestBody: DeserializeOwned {
    const FIELDS: &'static [Field];
}

/// A body read within [`BODY_BYTES_MAX`], checked against
/// `T::FIELDS`, then deserialized.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: RequestBody> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_bounded(request).await?;
        parse_body(&bytes).map(Body)
    }
}

/// The body's checks in the contract's order: identifiers and bounded text
/// (422), then the shape (400).
fn parse_body<T: RequestBody>(bytes: &[u8]) -> Result<T, HttpError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|err| {
        // Line and column only: the parser's message may quote the input.
        HttpError::Malformed(format!("the body is not JSON (line {}, column {})", err.line(), err.column()))
    })?;
    let Value::Object(object) = value else {
        return Err(HttpError::Malformed("the body must be a JSON object".into()));
    };
    check_values(&object, T::FIELDS)?;
    check_shape(&object, T::FIELDS)?;
    serde_json::from_value(Value::Object(object))
        .map_err(|_| HttpError::Malformed("the body does not have the expected shape".into()))
}

/// Step 2: every identifier and bounded text that is present as a string.
fn check_values(object: &Map<String, Value>, fields: &[Field]) -> Result<(), HttpError> {
    for field in fields {
        let Some(Value::String(raw)) = object.get(field.name) else { continue };
        match field.kind {
            Kind::Id if !billing_domain::is_valid_id(raw) => return Err(invalid_id(field.name, "the body")),
            Kind::Text { bytes_max } if raw.len() > bytes_max => {
                return Err(HttpError::InvalidInput(format!("`{}` is longer than {bytes_max} bytes", field.name)))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Step 3: no unknown field, every required field, every type.
fn check_shape(object: &Map<String, Value>, fields: &[Field]) -> Result<(), HttpError> {
    if object.keys().any(|key| !fields.iter().any(|f| f.name == key)) {
        // The unknown name is not quoted: it is caller text of any length.
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        return Err(HttpError::Malformed(format!("unknown field; this body takes only: {}", names.join(", "))));
    }
    for field in fields {
        let value = object.get(field.name);
        let absent = matches!(value, None | Some(Value::Null));
        if absent && !field.required {
            continue;
        }
        let Some(value) = value else {
            return Err(HttpError::Malformed(format!("`{}` is missing", field.name)));
        };
        let fits = match field.kind {
            Kind::Id | Kind::Text { .. } | Kind::Secret => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Any => true,
        };
        if !fits {
            let expected = if matches!(field.kind, Kind::Bool) { "true or false" } else { "a string" };
            return Err(HttpError::Malformed(format!("`{}` must be {expected}", field.name)));
        }
    }
    Ok(())
}

/// Reads the body, refusing it as soon as it is known to be too large:
/// from `Content-Length` before reading anything, or while reading a
/// chunked body.
async fn read_bounded(request: Request) -> Result<Bytes, HttpError> {
    let declared = content_length(request.headers());
    if declared.is_some_and(|len| len > BODY_BYTES_MAX) {
        return Err(HttpError::PayloadTooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = request.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| HttpError::Malformed("the body could not be read".into()))?;
        if body.len() + chunk.len() > BODY_BYTES_MAX {
            return Err(HttpError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn invalid_id(name: &str, place: &str) -> HttpError {
    HttpError::InvalidInput(format!("`{name}` in {place} must be 1 to {ID_LEN_MAX} characters of A-Z a-z 0-9 _ - . :"))
}

/// `/v1/workspaces/{ws}/...`
pub struct WorkspacePath {
    pub workspace: WorkspaceId,
}

/// `/v1/workspaces/{ws}/members/{user}`
pub struct MemberPath {
    pub workspace: WorkspaceId,
    pub user: billing_domain::UserId,
}

/// `/v1/workspaces/{ws}/keys/{provider}`. The provider is not an
/// identifier: it is parsed by the handler after the body (anything but
/// `openai` and `anthropic` is 422 `unknown_provider`, step 3).
pub struct KeyPath {
    pub workspace: WorkspaceId,
    pub provider: String,
}

/// `/v1/workspaces/{ws}/data-sources/{id}/...`
pub struct DataSourcePath {
    pub workspace: WorkspaceId,
    pub data_source: DataSourceId,
}

/// The percent-decoded path parameters of the matched route.
async fn path_params(parts: &mut Parts) -> Result<BTreeMap<String, String>, HttpError> {
    let raw = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| HttpError::InvalidInput("the path is not valid UTF-8".into()))?;
    Ok(raw.iter().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
}

fn path_id<T>(
    params: &BTreeMap<String, String>,
    name: &str,
    parse: fn(&str) -> Result<T, DomainError>,
) -> Result<T, HttpError> {
    let raw = params.get(name).map(String::as_str).unwrap_or_default();
    parse(raw).map_err(|_| invalid_id(name, "the path"))
}

impl<S: Send + Sync> FromRequestParts<S> for WorkspacePath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        Ok(WorkspacePath { workspace: path_id(&params, "ws", WorkspaceId::parse)? })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        Ok(MemberPath {
            workspace: path_id(&params, "ws", WorkspaceId::parse)?,
            user: path_id(&params, "user", billing_domain::UserId::parse)?,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut params = path_params(parts).await?;
        Ok(KeyPath {
            workspace: path_id(&params, "ws", WorkspaceId::parse)?,
            provider: params.remove("provider").unwrap_or_default(),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DataSourcePath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts).await?;
        Ok(DataSourcePath {
            workspace: path_id(&params, "ws", WorkspaceId::parse)?,
            data_source: path_id(&params, "id", DataSourceId::parse)?,
        })
    }
}

/// The query string as named parameters, each at most once, each one the
/// route takes (a misspelt `limit` must not silently become the default).
fn query_params(uri: &Uri, allowed: &[&'static str]) -> Result<BTreeMap<&'static str, String>, HttpError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| HttpError::InvalidInput("the query string cannot be read".into()))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs {
        let Some(known) = allowed.iter().find(|a| **a == name) else {
            return Err(HttpError::InvalidInput(format!(
                "unknown query parameter; this route takes only: {}",
                allowed.join(", ")
            )));
        };
        if params.insert(*known, value).is_some() {
            return Err(HttpError::InvalidInput(format!("`{known}` is given twice")));
        }
    }
    Ok(params)
}

/// `?after=N&limit=M`: `after` is exclusive (default 0), `limit` is 1 to
/// `MAX` (default `DEFAULT`). Out of range is 422, never clamped: a caller
/// asking for 5,000 rows should learn that it gets at most 1,000.
pub struct Page<const MAX: u32, const DEFAULT: u32> {
    pub after: u64,
    pub limit: u32,
}

impl<S: Send + Sync, const MAX: u32, const DEFAULT: u32> FromRequestParts<S> for Page<MAX, DEFAULT> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = query_params(&parts.uri, &["after", "limit"])?;
        // Sequences are stored as signed 64-bit integers.
        let after =
            match params.get("after") {
                None => 0,
                Some(raw) => raw.parse::<u64>().ok().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
                    HttpError::InvalidInput(format!("`after` must be an integer from 0 to {}", i64::MAX))
                })?,
            };
        let limit = match params.get("limit") {
            None => DEFAULT,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX).contains(n))
                .ok_or_else(|| HttpError::InvalidInput(format!("`limit` must be an integer from 1 to {MAX}")))?,
        };
        Ok(Page { after, limit })
    }
}

/// `?from=T&to=T`, RFC 3339 instants, both optional, `from <= to`.
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Period {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = query_params(&parts.uri, &["from", "to"])?;
        let from = params.get("from").map(|raw| instant("from", raw)).transpose()?;
        let to = params.get("to").map(|raw| instant("to", raw)).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(HttpError::InvalidInput("`from` is after `to`".into()));
            }
        }
        Ok(Period { from, to })
    }
}

/// An RFC 3339 instant. A `+` offset sent unescaped arrives as a space
/// (form decoding); RFC 3339 has no other place for a space after the
/// seconds, so it is read back as the `+` the caller meant.
fn instant(name: &str, raw: &str) -> Result<DateTime<Utc>, HttpError> {
    let parse = |text: &str| DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc));
    parse(raw).or_else(|_| parse(&raw.replace(' ', "+"))).map_err(|_| {
        HttpError::InvalidInput(format!("`{name}` must be an RFC 3339 instant, e.g. 2026-01-31T00:00:00Z"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        id: billing_domain::UserId,
        note: Option<String>,
        flag: bool,
    }

    impl RequestBody for Sample {
        const FIELDS: &'static [Field] = &[
            Field::required("id", Kind::Id),
            Field::optional("note", Kind::Text { bytes_max: 4 }),
            Field::required("flag", Kind::Bool),
        ];
    }

    fn code(body: &str) -> &'static str {
        match parse_body::<Sample>(body.as_bytes()) {
            Ok(_) => "ok",
            Err(err) => err.code(),
        }
    }

    #[test]
    fn bodies_are_checked_in_the_contract_order() {
        assert_eq!(code(r#"{"id":"a","flag":true}"#), "ok");
        assert_eq!(code(r#"{"id":"a","flag":true,"note":null}"#), "ok");
        assert_eq!(code("nope"), "malformed_request");
        assert_eq!(code("[1]"), "malformed_request");
        assert_eq!(code(r#"{"id":"a"}"#), "malformed_request");
        assert_eq!(code(r#"{"id":"a","flag":"yes"}"#), "malformed_request");
        assert_eq!(code(r#"{"id":7,"flag":true}"#), "malformed_request");
        assert_eq!(code(r#"{"id":"a","flag":true,"extra":1}"#), "malformed_request");
        // Identifiers answer before the shape.
        assert_eq!(code(r#"{"id":"a b"}"#), "invalid_input");
        assert_eq!(code(r#"{"id":"a","note":"too long","extra":1}"#), "invalid_input");
    }

    #[test]
    fn shape_messages_never_quote_the_input() {
        for body in [r#"{"id":"a","flag":"sk-secret-value"}"#, r#"{"sk-secret-value":1}"#, "sk-secret-value"] {
            let err = parse_body::<Sample>(body.as_bytes()).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn instants_accept_an_unescaped_plus() {
        assert!(instant("from", "2026-01-01T00:00:00Z").is_ok());
        assert!(instant("from", "2026-01-01T00:00:00 02:00").is_ok());
        assert!(instant("from", "yesterday").is_err());
    }

    #[test]
    fn query_parameters_are_known_and_single() {
        let uri: Uri = "/x?after=1&limit=2".parse().unwrap();
        assert_eq!(query_params(&uri, &["after", "limit"]).unwrap().len(), 2);
        let twice: Uri = "/x?after=1&after=2".parse().unwrap();
        assert!(query_params(&twice, &["after"]).is_err());
        let unknown: Uri = "/x?limt=2".parse().unwrap();
        assert!(query_params(&unknown, &["limit"]).is_err());
    }
}
