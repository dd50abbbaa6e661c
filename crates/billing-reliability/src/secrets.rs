//! The secret sweep: the plaintext provider keys the suites use (and their
//! distinctive middles, and their hex and base64 spellings) must appear in
//! no table, log line, NATS message, panic message or HTTP answer; the one
//! exception is the `api_key` of a `byo` reply answered to the runtime
//! token, which [`without_handed_key`] takes out before a sweep.
//!
//! A finding never prints the secret it found: the report names the
//! needle by number, so that the sweep itself cannot leak into test output.

use serde_json::Value;

/// What to look for.
pub struct Sweep {
    needles: Vec<(String, Vec<u8>)>,
}

impl Default for Sweep {
    fn default() -> Self {
        Sweep::new()
    }
}

impl Sweep {
    /// Every test key of `billing_testkit`, its middle, hex and base64.
    pub fn new() -> Sweep {
        let mut sweep = Sweep { needles: Vec::new() };
        for (i, key) in billing_testkit::PLAINTEXT_KEYS.iter().enumerate() {
            sweep.push(format!("test key #{i}"), key.as_bytes().to_vec());
            sweep.push(format!("hex of test key #{i}"), hex(key.as_bytes()).into_bytes());
            sweep.push(format!("base64 of test key #{i}"), base64(key.as_bytes()).into_bytes());
        }
        for (i, fragment) in billing_testkit::key_fragments().iter().enumerate() {
            sweep.push(format!("the middle of test key #{i}"), fragment.as_bytes().to_vec());
        }
        sweep
    }

    /// Also looks for `secret` (a bearer token, the master key, ...).
    pub fn with(mut self, name: &str, secret: &str) -> Sweep {
        self.push(name.to_owned(), secret.as_bytes().to_vec());
        self
    }

    fn push(&mut self, name: String, needle: Vec<u8>) {
        self.needles.push((name, needle));
    }

    /// The names of the needles `haystack` holds.
    pub fn findings(&self, haystack: &[u8]) -> Vec<&str> {
        self.needles.iter().filter(|(_, needle)| contains(haystack, needle)).map(|(name, _)| name.as_str()).collect()
    }

    /// Panics, naming `place` and what was found (never the secret), when
    /// `haystack` holds any needle.
    #[track_caller]
    pub fn assert_clean(&self, place: &str, haystack: &[u8]) {
        let found = self.findings(haystack);
        assert!(found.is_empty(), "{place} holds {}", found.join(", "));
    }
}

/// `text` without the `api_key` of a `byo` reply: the one place the
/// runtime is handed a key. Any other text is returned unchanged.
pub fn without_handed_key(text: &str) -> String {
    let Ok(mut body) = serde_json::from_str::<Value>(text) else { return text.to_owned() };
    match body.as_object_mut() {
        Some(object) if object.get("route") == Some(&Value::from("byo")) => {
            object.remove("api_key");
            body.to_string()
        }
        _ => text.to_owned(),
    }
}

/// Substring search that skips quickly over bytes that cannot start the
/// needle (database files are mostly zeros).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return false };
    let Some(last_start) = haystack.len().checked_sub(needle.len()) else { return false };
    haystack[..=last_start].iter().enumerate().any(|(i, &b)| b == first && &haystack[i + 1..i + needle.len()] == rest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_their_spellings_but_never_prints_them() {
        let sweep = Sweep::new().with("the API token", "tok-123456789");
        let key = billing_testkit::OPENAI_KEY;
        assert!(sweep.findings(b"nothing here").is_empty());
        for text in [key.to_owned(), hex(key.as_bytes()), base64(key.as_bytes()), format!("..{}..", &key[8..24])] {
            let found = sweep.findings(text.as_bytes());
            assert!(!found.is_empty());
            assert!(found.iter().all(|name| !name.contains(&key[8..24])));
        }
        assert_eq!(sweep.findings(b"Bearer tok-123456789"), ["the API token"]);
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn only_a_byo_answer_loses_its_key() {
        let byo = r#"{"route":"byo","api_key":"k"}"#;
        assert_eq!(without_handed_key(byo), r#"{"route":"byo"}"#);
        let credits = r#"{"route":"credits","api_key":"k"}"#;
        assert_eq!(without_handed_key(credits), credits);
    }
}
