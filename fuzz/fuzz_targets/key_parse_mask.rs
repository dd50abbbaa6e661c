//! Provider key parsing and masking, on any bytes.
//!
//! The first byte picks the provider; the rest is what a caller pasted.
//! - `Provider::parse` takes exactly `openai` and `anthropic`;
//! - an accepted key has the contract's format (prefix, 20 to 512 visible
//!   ASCII characters) and is kept unchanged;
//! - its masked form is exactly the known prefix, `...` and the last 4
//!   characters, and neither it nor `Debug` holds the key;
//! - a refusal is `invalid_key_format` with the same message whatever was
//!   sent: it cannot quote the key.
#![no_main]

use billing_domain::keys::{KEY_LEN_MAX, KEY_LEN_MIN};
use billing_domain::{Provider, ProviderKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(raw) = std::str::from_utf8(rest) else {
        // Keys arrive as JSON strings: always UTF-8. Still, a lossy copy
        // must not panic the parser.
        let _ = ProviderKey::parse(Provider::Openai, &String::from_utf8_lossy(rest));
        return;
    };
    if let Ok(provider) = Provider::parse(raw) {
        assert_eq!(provider.as_str(), raw);
    }
    let provider = if selector & 1 == 0 { Provider::Openai } else { Provider::Anthropic };
    match ProviderKey::parse(provider, raw) {
        Ok(key) => {
            assert_eq!(key.expose(), raw);
            assert!((KEY_LEN_MIN..=KEY_LEN_MAX).contains(&raw.len()));
            assert!(raw.bytes().all(|b| b.is_ascii_graphic()));
            match provider {
                Provider::Openai => assert!(raw.starts_with("sk-") && !raw.starts_with("sk-ant-")),
                Provider::Anthropic => assert!(raw.starts_with("sk-ant-")),
            }
            let prefix = ["sk-ant-", "sk-proj-", "sk-"].into_iter().find(|p| raw.starts_with(p)).expect("a prefix");
            let masked = key.masked();
            assert_eq!(masked.as_str(), format!("{prefix}...{}", &raw[raw.len() - 4..]));
            let debug = format!("{key:?}");
            assert!(!debug.contains(raw), "Debug shows the key");
            assert!(debug.contains(masked.as_str()));
        }
        Err(err) => {
            assert_eq!(err.code(), "invalid_key_format");
            let fixed = ProviderKey::parse(provider, "").expect_err("an empty key is refused");
            assert_eq!(err.to_string(), fixed.to_string(), "the message depends on the input");
        }
    }
});
