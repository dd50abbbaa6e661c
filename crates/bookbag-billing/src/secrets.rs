//! Bearer tokens and the master key: taken from the configuration, or
//! generated on first start into the data directory (mode 0600) and read
//! back on every later start. Paths are logged, values never.

use billing_domain::MasterKey;
use rand::RngCore;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

pub const API_TOKEN_FILE: &str = "api-token";
pub const RUNTIME_TOKEN_FILE: &str = "runtime-token";
pub const MASTER_KEY_FILE: &str = "master-key";

pub struct Secrets {
    pub api_token: String,
    pub runtime_token: String,
    pub master_key: MasterKey,
}

impl Secrets {
    pub fn resolve(config: &Config) -> Result<Secrets, ConfigError> {
        let api_token = match &config.api_token {
            Some(token) => token.clone(),
            None => kept(&config.data_dir, API_TOKEN_FILE, "BILLING_API_TOKEN", generate_token)?,
        };
        let runtime_token = match &config.runtime_token {
            Some(token) => token.clone(),
            None => kept(&config.data_dir, RUNTIME_TOKEN_FILE, "BILLING_RUNTIME_TOKEN", generate_token)?,
        };
        if api_token == runtime_token {
            return Err(ConfigError("BILLING_API_TOKEN and BILLING_RUNTIME_TOKEN must differ".into()));
        }
        let master_key = match &config.master_key {
            Some(key) => key.clone(),
            None if config.is_postgres() => {
                return Err(ConfigError(
                    "BILLING_MASTER_KEY is required with Postgres: base64 of 32 random bytes \
                     (e.g. `head -c32 /dev/urandom | base64`)"
                        .into(),
                ))
            }
            None => {
                let raw = kept(&config.data_dir, MASTER_KEY_FILE, "BILLING_MASTER_KEY", || {
                    MasterKey::generate().to_base64()
                })?;
                MasterKey::from_base64(&raw)
                    .map_err(|e| ConfigError(format!("{}: {e}", config.data_dir.join(MASTER_KEY_FILE).display())))?
            }
        };
        Ok(Secrets { api_token, runtime_token, master_key })
    }
}

fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value kept in `dir/name`, created with `make` on first use.
fn kept(dir: &Path, name: &str, variable: &str, make: impl FnOnce() -> String) -> Result<String, ConfigError> {
    let path: PathBuf = dir.join(name);
    let fail = |what: &str, e: std::io::Error| {
        ConfigError(format!("{variable} is unset and {} cannot be {what}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(value) => {
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "secret file is readable by others; chmod 600 it");
                }
            }
            tracing::info!(path = %path.display(), "{variable} read from the data directory");
            Ok(value.trim().to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| fail("created", e))?;
            let value = make();
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| fail("created", e))?;
            file.write_all(value.as_bytes()).and_then(|_| file.sync_all()).map_err(|e| fail("written", e))?;
            tracing::info!(path = %path.display(), "{variable} was unset: generated one into the data directory");
            Ok(value)
        }
        Err(e) => Err(fail("read", e)),
    }
}
