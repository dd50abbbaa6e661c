//! The JSON command decoder (`billing_http::extract::Body`) of every
//! command body, on any bytes, plus the amount parser of grants.
//!
//! - it never panics;
//! - a body over 64 KiB is `payload_too_large`, whatever it holds;
//! - an accepted body is a JSON object of only the fields its route takes;
//! - a refusal is 400 `malformed_request`, 413 or 422 `invalid_input`, and its
//!   message does not depend on the text of any string or unknown field
//!   name the body held (either may be a pasted key): the same body with
//!   every such text replaced by filler of the same length and validity
//!   is refused with the same message;
//! - an accepted amount is 1 to 10^12.
#![no_main]

use axum::extract::FromRequest;
use billing_http::extract::{Body, RequestBody, BODY_BYTES_MAX};
use billing_http::routes::{billing_mode, credits, keys, members, replies, workspaces};
use billing_http::HttpError;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn decode<T: RequestBody + Send + 'static>(data: &[u8]) -> Result<T, HttpError> {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/")
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a request");
    futures::executor::block_on(Body::<T>::from_request(request, &())).map(|Body(body)| body)
}

/// `value` with every string replaced by filler of the same byte length
/// that is a valid identifier exactly when the original was, and every
/// object key that no body takes replaced by another unknown name.
fn neutral(value: &Value, known: &[&str]) -> Value {
    match value {
        Value::String(s) if billing_domain::is_valid_id(s) => Value::from("a".repeat(s.len())),
        Value::String(s) => Value::from(" ".repeat(s.len())),
        Value::Array(items) => Value::Array(items.iter().map(|v| neutral(v, known)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let key = if known.contains(&k.as_str()) { k.clone() } else { format!("~unknown{i}~") };
                    (key, neutral(v, known))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every field name any command body takes.
const KNOWN: [&str; 11] = [
    "workspace_id",
    "owner",
    "role",
    "api_key",
    "enabled",
    "grant_id",
    "amount",
    "reason",
    "reply_id",
    "agent_id",
    "model",
];

fn check<T: RequestBody + Send + 'static>(data: &[u8], parsed: Option<&Value>) -> Option<T> {
    match decode::<T>(data) {
        Ok(body) => {
            assert!(data.len() <= BODY_BYTES_MAX);
            let object = parsed.and_then(Value::as_object).expect("accepted: a JSON object");
            assert!(object.keys().all(|k| T::FIELDS.iter().any(|f| f.name == k)), "an unknown field was accepted");
            Some(body)
        }
        Err(err) => {
            if data.len() > BODY_BYTES_MAX {
                assert_eq!(err.code(), "payload_too_large");
            }
            let status = err.status().as_u16();
            assert!(matches!(status, 400 | 413 | 422), "status {status}");
            assert!(matches!(err.code(), "malformed_request" | "payload_too_large" | "invalid_input"));
            let message = err.to_string();
            match parsed {
                None if err.code() == "malformed_request" => {
                    // Not JSON: the message names a line and a column, nothing else.
                    let place = message.strip_prefix("the body is not JSON (line ").unwrap_or(&message);
                    assert!(place.bytes().all(|b| b.is_ascii_digit() || b", column)".contains(&b)), "{message}");
                }
                Some(value) if data.len() <= BODY_BYTES_MAX => {
                    let filler = serde_json::to_vec(&neutral(value, &KNOWN)).expect("JSON");
                    if filler.len() <= BODY_BYTES_MAX {
                        let again = decode::<T>(&filler).err().map(|e| e.to_string());
                        assert_eq!(again.as_deref(), Some(message.as_str()), "the message depends on the body's text");
                    }
                }
                _ => {}
            }
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    let parsed = parsed.as_ref();
    if let Some(reply) = check::<replies::ReplyBody>(data, parsed) {
        assert!(reply.model.len() <= replies::MODEL_LEN_MAX);
    }
    if let Some(grant) = check::<credits::GrantBody>(data, parsed) {
        if let Ok(amount) = billing_domain::Credits::parse_grant(&grant.amount) {
            assert!((1..=1_000_000_000_000).contains(&amount.get()));
            assert_eq!(grant.amount.as_u64(), Some(amount.get()));
        }
    }
    check::<keys::AddKeyBody>(data, parsed);
    check::<members::SetRoleBody>(data, parsed);
    check::<billing_mode::SetByoBody>(data, parsed);
    check::<workspaces::CreateWorkspaceBody>(data, parsed);
});
