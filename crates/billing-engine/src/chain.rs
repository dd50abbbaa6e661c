//! The hash chain that makes each workspace's history tamper-evident.
//!
//! Every stored event carries `metadata.hash = SHA-256(prev_hash, workspace,
//! sequence, event_type, event_version, canonical(payload))` and
//! `metadata.prev_hash`, the hash of the event before it (64 zeros for the
//! first). Changing, removing or reordering any event breaks every hash
//! after it. The canonical form does not depend on how a database stores
//! JSON: object keys sorted by their UTF-8 bytes, no whitespace, strings
//! escaped as serde_json escapes them, numbers as integers.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// `prev_hash` of a workspace's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one event, chained to `prev_hash`.
pub fn link(
    prev_hash: &str,
    workspace: &str,
    sequence: u64,
    event_type: &str,
    event_version: &str,
    payload: &Value,
) -> String {
    link_canonical(prev_hash, workspace, sequence, event_type, event_version, &canonical(payload))
}

/// The canonical form of `value`: what is hashed, and the text the engine
/// stores as the payload.
pub fn canonical(value: &Value) -> String {
    let mut text = String::with_capacity(320);
    write_canonical(value, &mut text);
    text
}

/// [`link`] over a payload already in canonical form.
pub fn link_canonical(
    prev_hash: &str,
    workspace: &str,
    sequence: u64,
    event_type: &str,
    event_version: &str,
    canonical: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [prev_hash, workspace, &sequence.to_string(), event_type, event_version] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(canonical.as_bytes());
    hex(&hasher.finalize())
}

/// The metadata stored with an event: its hash and its predecessor's.
pub fn metadata(prev_hash: &str, hash: &str) -> Value {
    serde_json::json!({ "prev_hash": prev_hash, "hash": hash })
}

/// [`metadata`] as the JSON text stored.
pub fn metadata_text(prev_hash: &str, hash: &str) -> String {
    // Both hashes are lowercase hex: nothing to escape.
    format!("{{\"hash\":\"{hash}\",\"prev_hash\":\"{prev_hash}\"}}")
}

/// Appends the canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap();
        let (mut ca, mut cb) = (String::new(), String::new());
        write_canonical(&a, &mut ca);
        write_canonical(&b, &mut cb);
        assert_eq!(ca, cb);
        assert_eq!(ca, r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
    }

    #[test]
    fn metadata_text_is_the_metadata() {
        let text = metadata_text(GENESIS_HASH, "ab12");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), metadata(GENESIS_HASH, "ab12"));
    }

    #[test]
    fn every_part_changes_the_hash() {
        let payload = json!({"amount": 5});
        let base = link(GENESIS_HASH, "ws", 1, "CreditsGranted", "1", &payload);
        assert_eq!(base.len(), 64);
        assert_ne!(base, link(&base, "ws", 1, "CreditsGranted", "1", &payload));
        assert_ne!(base, link(GENESIS_HASH, "wt", 1, "CreditsGranted", "1", &payload));
        assert_ne!(base, link(GENESIS_HASH, "ws", 2, "CreditsGranted", "1", &payload));
        assert_ne!(base, link(GENESIS_HASH, "ws", 1, "ReplyServed", "1", &payload));
        assert_ne!(base, link(GENESIS_HASH, "ws", 1, "CreditsGranted", "2", &payload));
        assert_ne!(base, link(GENESIS_HASH, "ws", 1, "CreditsGranted", "1", &json!({"amount": 6})));
        // Separators keep parts from sliding into each other.
        assert_ne!(link(GENESIS_HASH, "ws1", 1, "X", "1", &payload), link(GENESIS_HASH, "ws", 11, "X", "1", &payload));
    }
}
