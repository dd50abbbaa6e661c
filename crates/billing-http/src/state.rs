//! What every handler shares: the engine, the two bearer tokens, the
//! metrics registry and the bound on requests in flight.

use billing_domain::Channel;
use billing_engine::Engine;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::metrics::HttpMetrics;
use crate::telemetry::REQUESTS_IN_FLIGHT_MAX;

/// The two bearer tokens, kept only as SHA-256 digests: comparing digests
/// in constant time compares equal-length values, so neither the content
/// nor the length of a token leaks through timing, and the plaintext is not
/// kept in memory longer than start-up.
pub struct Tokens {
    api: [u8; 32],
    runtime: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("a bearer token must be 1 to {TOKEN_LEN_MAX} visible ASCII characters")]
    Shape,
    #[error("the API token and the runtime token must differ")]
    Same,
}

/// Longest token accepted: far above any generated token, far below
/// hyper's header limits.
pub const TOKEN_LEN_MAX: usize = 1024;

impl Tokens {
    /// `api`: the platform backend and dashboards (`BILLING_API_TOKEN`);
    /// `runtime`: the agent runtime (`BILLING_RUNTIME_TOKEN`). They must
    /// differ, or a request could not say which caller it is.
    pub fn new(api: &str, runtime: &str) -> Result<Tokens, TokenError> {
        for token in [api, runtime] {
            let visible = token.bytes().all(|b| b.is_ascii_graphic());
            if token.is_empty() || token.len() > TOKEN_LEN_MAX || !visible {
                return Err(TokenError::Shape);
            }
        }
        if api == runtime {
            return Err(TokenError::Same);
        }
        Ok(Tokens { api: digest(api.as_bytes()), runtime: digest(runtime.as_bytes()) })
    }

    /// The channel `presented` opens, if any. Both digests are always
    /// compared, so the timing does not tell which token was close.
    pub fn channel_of(&self, presented: &[u8]) -> Option<Channel> {
        let presented = digest(presented);
        let api = presented.ct_eq(&self.api);
        let runtime = presented.ct_eq(&self.runtime);
        if bool::from(api) {
            Some(Channel::Platform)
        } else if bool::from(runtime) {
            Some(Channel::Runtime)
        } else {
            None
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The state of the router. Cheap to clone: everything is shared.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub tokens: Arc<Tokens>,
    /// Everything `/metrics` serves: the engine's metrics and
    /// [`HttpMetrics`], registered by the caller before it froze the
    /// registry in an `Arc`.
    pub registry: Arc<Registry>,
    pub metrics: Arc<HttpMetrics>,
    pub(crate) in_flight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(engine: Engine, tokens: Tokens, registry: Arc<Registry>, metrics: HttpMetrics) -> AppState {
        AppState {
            engine,
            tokens: Arc::new(tokens),
            registry,
            metrics: Arc::new(metrics),
            in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_opens_its_own_channel() {
        let tokens = Tokens::new("api-secret", "runtime-secret").unwrap();
        assert_eq!(tokens.channel_of(b"api-secret"), Some(Channel::Platform));
        assert_eq!(tokens.channel_of(b"runtime-secret"), Some(Channel::Runtime));
        for wrong in [&b""[..], b"api-secre", b"api-secret ", b"API-SECRET", b"runtime-secret\0"] {
            assert_eq!(tokens.channel_of(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn tokens_must_be_visible_and_distinct() {
        assert_eq!(Tokens::new("same", "same").unwrap_err(), TokenError::Same);
        assert_eq!(Tokens::new("", "x").unwrap_err(), TokenError::Shape);
        assert_eq!(Tokens::new("a b", "x").unwrap_err(), TokenError::Shape);
        assert_eq!(Tokens::new(&"a".repeat(TOKEN_LEN_MAX + 1), "x").unwrap_err(), TokenError::Shape);
        assert!(!format!("{:?}", Tokens::new("visible", "other").unwrap()).contains("visible"));
    }
}
