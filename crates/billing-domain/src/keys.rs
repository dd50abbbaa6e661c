//! Provider keys: parsing, the masked form, the keyed fingerprint and the
//! vault that seals secrets with the master key.
//!
//! The plaintext lives only in [`ProviderKey`], whose `Debug` and `Display`
//! never print it and whose memory is wiped on drop. Events carry the key id,
//! the masked form and an HMAC fingerprint; the sealed secret is stored apart
//! from the events so that deleting it (crypto-shredding) makes the key
//! unrecoverable while the event log stays immutable. See docs/domain.md.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::DomainError;
use crate::ids::{KeyId, WorkspaceId};

/// Shortest key the contract accepts.
pub const KEY_LEN_MIN: usize = 20;
/// Longest key accepted: real provider keys are under 200 characters; the
/// bound keeps a pasted document from becoming a "key".
pub const KEY_LEN_MAX: usize = 512;

/// A provider that can hold a workspace key (the `local` model has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Anthropic,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Openai, Provider::Anthropic];

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw {
            "openai" => Ok(Provider::Openai),
            "anthropic" => Ok(Provider::Anthropic),
            _ => Err(DomainError::UnknownProvider("provider must be openai or anthropic".into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plaintext provider key, checked against its provider's format. It never
/// prints itself and is zeroed when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ProviderKey(String);

impl ProviderKey {
    /// Checks the contract's format for `provider`. The error message never
    /// contains the key itself.
    pub fn parse(provider: Provider, raw: &str) -> Result<Self, DomainError> {
        let shape_ok =
            raw.len() >= KEY_LEN_MIN && raw.len() <= KEY_LEN_MAX && raw.bytes().all(|b| b.is_ascii_graphic());
        let prefix_ok = match provider {
            Provider::Openai => raw.starts_with("sk-") && !raw.starts_with("sk-ant-"),
            Provider::Anthropic => raw.starts_with("sk-ant-"),
        };
        if shape_ok && prefix_ok {
            Ok(ProviderKey(raw.to_owned()))
        } else {
            let expected = match provider {
                Provider::Openai => "start with sk- (not sk-ant-)",
                Provider::Anthropic => "start with sk-ant-",
            };
            Err(DomainError::InvalidKeyFormat(format!(
                "an {provider} key must {expected}, be {KEY_LEN_MIN} to {KEY_LEN_MAX} characters and contain no whitespace"
            )))
        }
    }

    /// The plaintext. Only the vault and the runtime's answer use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form: the known prefix, `...`, then the last 4 characters.
    pub fn masked(&self) -> MaskedKey {
        let prefix = ["sk-ant-", "sk-proj-", "sk-"].into_iter().find(|p| self.0.starts_with(p)).unwrap_or("");
        // Keys are ASCII (checked in `parse`), so byte slicing is safe.
        let last4 = &self.0[self.0.len() - 4..];
        MaskedKey(format!("{prefix}...{last4}"))
    }
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderKey({})", self.masked().0)
    }
}

/// The masked form shown after entry, e.g. `sk-ant-...WXYZ`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaskedKey(String);

impl MaskedKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// HMAC-SHA256 of the key under a secret derived from the master key, scoped
/// to the workspace: recognises the same key added twice without revealing
/// anything about it to someone who lacks the master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A provider key encrypted with AES-256-GCM. Stored outside the event log,
/// one row per key id, deleted when the key ends.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    pub key_id: KeyId,
    /// base64 of nonce (12 bytes) followed by ciphertext and tag.
    pub sealed: String,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedKey({})", self.key_id)
    }
}

/// Seals and opens provider keys. The aggregate receives it through its
/// services so that the domain stays free of key material.
pub trait KeyVault: Send + Sync {
    fn fingerprint(&self, workspace: &WorkspaceId, key: &ProviderKey) -> Fingerprint;
    fn seal(&self, workspace: &WorkspaceId, key_id: &KeyId, key: &ProviderKey) -> Result<SealedKey, DomainError>;
    fn open(&self, workspace: &WorkspaceId, sealed: &SealedKey) -> Result<ProviderKey, DomainError>;
}

/// The master key: 32 random bytes, given as base64.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_base64(raw: &str) -> Result<Self, String> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .map_err(|_| "BILLING_MASTER_KEY must be base64 of 32 random bytes".to_string())?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "BILLING_MASTER_KEY must decode to exactly 32 bytes".to_string())?;
        Ok(MasterKey(array))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The production vault: two sub-keys derived from the master key by HMAC
/// (one to encrypt, one to fingerprint), AES-256-GCM with a random nonce and
/// the workspace and key id as associated data, so a sealed key moved to
/// another row does not open.
pub struct MasterKeyVault {
    seal_key: Zeroizing<[u8; 32]>,
    fingerprint_key: Zeroizing<[u8; 32]>,
}

type HmacSha256 = Hmac<Sha256>;

fn derive(master: &MasterKey, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&master.0).expect("HMAC takes any key length");
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

impl MasterKeyVault {
    pub fn new(master: &MasterKey) -> Self {
        MasterKeyVault {
            seal_key: derive(master, b"bookbag-billing seal v1"),
            fingerprint_key: derive(master, b"bookbag-billing fingerprint v1"),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.seal_key.as_slice()).expect("the derived key is 32 bytes")
    }
}

fn associated_data(workspace: &WorkspaceId, key_id: &KeyId) -> Vec<u8> {
    format!("{workspace}\0{key_id}").into_bytes()
}

const NONCE_LEN: usize = 12;

impl KeyVault for MasterKeyVault {
    fn fingerprint(&self, workspace: &WorkspaceId, key: &ProviderKey) -> Fingerprint {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.fingerprint_key.as_slice()).expect("HMAC takes any key length");
        mac.update(workspace.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(key.expose().as_bytes());
        let digest = mac.finalize().into_bytes();
        Fingerprint(format!("hmac-sha256:{}", hex(&digest[..16])))
    }

    fn seal(&self, workspace: &WorkspaceId, key_id: &KeyId, key: &ProviderKey) -> Result<SealedKey, DomainError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = associated_data(workspace, key_id);
        let ciphertext = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: key.expose().as_bytes(), aad: &aad })
            .map_err(|_| DomainError::Unavailable("the key vault could not seal a key".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(SealedKey { key_id: key_id.clone(), sealed: base64::engine::general_purpose::STANDARD.encode(blob) })
    }

    fn open(&self, workspace: &WorkspaceId, sealed: &SealedKey) -> Result<ProviderKey, DomainError> {
        let fail = || DomainError::Unavailable("a stored key could not be opened with the master key".into());
        let blob = base64::engine::general_purpose::STANDARD.decode(&sealed.sealed).map_err(|_| fail())?;
        if blob.len() <= NONCE_LEN {
            return Err(fail());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = associated_data(workspace, &sealed.key_id);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| fail())?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| fail())?;
        Ok(ProviderKey(text.to_owned()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPENAI: &str = "sk-proj-abcdefghijklmnop1234";
    const ANTHROPIC: &str = "sk-ant-api03-abcdefghijklmnopWXYZ";

    fn ws(id: &str) -> WorkspaceId {
        WorkspaceId::parse(id).unwrap()
    }

    #[test]
    fn formats_follow_the_contract() {
        assert!(ProviderKey::parse(Provider::Openai, OPENAI).is_ok());
        assert!(ProviderKey::parse(Provider::Openai, "sk-abcdefghijklmnopqrstu").is_ok());
        assert!(ProviderKey::parse(Provider::Anthropic, ANTHROPIC).is_ok());
        // An Anthropic key is not an OpenAI key and the other way round.
        assert!(ProviderKey::parse(Provider::Openai, ANTHROPIC).is_err());
        assert!(ProviderKey::parse(Provider::Anthropic, OPENAI).is_err());
        assert!(ProviderKey::parse(Provider::Openai, "sk-short").is_err());
        assert!(ProviderKey::parse(Provider::Openai, "sk-abcdefghij klmnopqrstu").is_err());
        assert!(ProviderKey::parse(Provider::Openai, "pk-abcdefghijklmnopqrstu").is_err());
    }

    #[test]
    fn errors_and_debug_never_contain_the_key() {
        let err = ProviderKey::parse(Provider::Anthropic, OPENAI).unwrap_err();
        assert!(!err.to_string().contains(OPENAI));
        let key = ProviderKey::parse(Provider::Openai, OPENAI).unwrap();
        assert!(!format!("{key:?}").contains(OPENAI));
    }

    #[test]
    fn masks_with_prefix_and_last_four() {
        let mask = |p, k| ProviderKey::parse(p, k).unwrap().masked().0;
        assert_eq!(mask(Provider::Openai, OPENAI), "sk-proj-...1234");
        assert_eq!(mask(Provider::Anthropic, ANTHROPIC), "sk-ant-...WXYZ");
        assert_eq!(mask(Provider::Openai, "sk-abcdefghijklmnopqrsTUVW"), "sk-...TUVW");
    }

    #[test]
    fn seal_round_trips_and_binds_workspace_and_key_id() {
        let vault = MasterKeyVault::new(&MasterKey::generate());
        let key = ProviderKey::parse(Provider::Openai, OPENAI).unwrap();
        let id = KeyId::parse("key_1").unwrap();
        let sealed = vault.seal(&ws("a"), &id, &key).unwrap();
        assert!(!sealed.sealed.contains(OPENAI));
        assert_eq!(vault.open(&ws("a"), &sealed).unwrap().expose(), OPENAI);
        assert!(vault.open(&ws("b"), &sealed).is_err(), "opened under another workspace");
        let moved = SealedKey { key_id: KeyId::parse("key_2").unwrap(), ..sealed.clone() };
        assert!(vault.open(&ws("a"), &moved).is_err(), "opened under another key id");
        let other = MasterKeyVault::new(&MasterKey::generate());
        assert!(other.open(&ws("a"), &sealed).is_err(), "opened with another master key");
    }

    #[test]
    fn fingerprints_recognise_the_same_key_per_workspace() {
        let vault = MasterKeyVault::new(&MasterKey::generate());
        let k1 = ProviderKey::parse(Provider::Openai, OPENAI).unwrap();
        let k2 = ProviderKey::parse(Provider::Openai, "sk-proj-abcdefghijklmnop9999").unwrap();
        assert_eq!(vault.fingerprint(&ws("a"), &k1), vault.fingerprint(&ws("a"), &k1.clone()));
        assert_ne!(vault.fingerprint(&ws("a"), &k1), vault.fingerprint(&ws("a"), &k2));
        assert_ne!(vault.fingerprint(&ws("a"), &k1), vault.fingerprint(&ws("b"), &k1));
        assert!(!vault.fingerprint(&ws("a"), &k1).0.contains("abcdefghijklmnop"));
    }

    #[test]
    fn master_key_parsing_is_strict() {
        let mk = MasterKey::generate();
        assert!(MasterKey::from_base64(&mk.to_base64()).is_ok());
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64("AAAA").is_err());
    }

    proptest! {
        #[test]
        fn masked_form_never_shows_more_than_four_trailing_characters(body in "[A-Za-z0-9_-]{17,60}") {
            let raw = format!("sk-{body}");
            let key = ProviderKey::parse(Provider::Openai, &raw).unwrap();
            let masked = key.masked();
            prop_assert!(masked.as_str().ends_with(&raw[raw.len() - 4..]));
            prop_assert!(masked.as_str().len() <= "sk-proj-...".len() + 4);
        }
    }
}
