//! Configuration: the contract's `BILLING_*` variables, an optional TOML
//! file (`--config` / `BILLING_CONFIG`) that overrides them, and flags that
//! override both. Every value is checked here; a bad one stops start-up
//! with a message naming the variable and what it expects (exit 2).

use billing_domain::{Catalog, MasterKey, Metering};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where generated tokens and keys are kept when not configured.
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Shortest bearer token accepted: anything shorter can be guessed.
pub const TOKEN_LEN_MIN: usize = 16;

/// The settings every subcommand shares (flags; each also read from its
/// environment variable).
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// Database: sqlite://PATH (embedded, created if missing) or postgres://...
    #[arg(long, env = "BILLING_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Address and port of the HTTP API.
    #[arg(long, env = "BILLING_LISTEN", global = true, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Bearer token of the platform backend and dashboards (generated when unset).
    #[arg(long, env = "BILLING_API_TOKEN", global = true, hide_env_values = true, value_name = "TOKEN")]
    pub api_token: Option<String>,
    /// Bearer token of the agent runtime (generated when unset).
    #[arg(long, env = "BILLING_RUNTIME_TOKEN", global = true, hide_env_values = true, value_name = "TOKEN")]
    pub runtime_token: Option<String>,
    /// Base64 of 32 random bytes that encrypts stored provider keys (required with Postgres).
    #[arg(long, env = "BILLING_MASTER_KEY", global = true, hide_env_values = true, value_name = "BASE64")]
    pub master_key: Option<String>,
    /// TOML model catalog (default: the catalog shipped in the repository).
    #[arg(long, env = "BILLING_MODELS_FILE", global = true, value_name = "PATH")]
    pub models_file: Option<PathBuf>,
    /// `enabled` (hosted: credits enforced) or `disabled` (self-hosted: unmetered).
    #[arg(long, env = "BILLING_METERING", global = true, value_name = "enabled|disabled")]
    pub metering: Option<String>,
    /// NATS server with JetStream: every committed event is published there.
    #[arg(long, env = "BILLING_NATS_URL", global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// JetStream stream the relay publishes to and projectors read.
    #[arg(long, env = "BILLING_NATS_STREAM", global = true, value_name = "NAME")]
    pub nats_stream: Option<String>,
    /// Subject prefix: events go to <prefix>.<workspace_id>.<event_type>.
    #[arg(long, env = "BILLING_NATS_SUBJECT_PREFIX", global = true, value_name = "PREFIX")]
    pub nats_subject_prefix: Option<String>,
    /// Directory for generated tokens and keys (mode 0600).
    #[arg(long, env = "BILLING_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "BILLING_LOG_FORMAT", global = true, value_name = "text|json")]
    pub log_format: Option<String>,
    /// A TOML file of the same settings (keys as the flags, with underscores).
    #[arg(long, env = "BILLING_CONFIG", global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    listen: Option<String>,
    api_token: Option<String>,
    runtime_token: Option<String>,
    master_key: Option<String>,
    models_file: Option<PathBuf>,
    metering: Option<String>,
    nats_url: Option<String>,
    nats_stream: Option<String>,
    nats_subject_prefix: Option<String>,
    data_dir: Option<PathBuf>,
    log_format: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Checked configuration.
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub api_token: Option<String>,
    pub runtime_token: Option<String>,
    pub master_key: Option<MasterKey>,
    pub catalog: Catalog,
    pub metering: Metering,
    pub nats_url: Option<String>,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
}

/// A configuration that cannot work; the message names the variable.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Picks a setting: a flag on the command line, else the file, else the
/// environment variable (clap has already read it into `from_args`).
fn pick<T: Clone>(matches: &ArgMatches, id: &str, from_args: &Option<T>, from_file: &Option<T>) -> Option<T> {
    if matches.value_source(id) == Some(ValueSource::CommandLine) {
        return from_args.clone();
    }
    from_file.clone().or_else(|| from_args.clone())
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("BILLING_CONFIG: cannot read {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(format!("BILLING_CONFIG: {} is not a valid settings file: {e}", path.display())))
}

impl Config {
    pub fn load(args: &SettingsArgs, matches: &ArgMatches) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let database_url = pick(matches, "database_url", &args.database_url, &file.database_url)
            .unwrap_or_else(|| billing_engine::db::DEFAULT_DATABASE_URL.to_owned());
        check_database_url(&database_url)?;
        let listen_raw = pick(matches, "listen", &args.listen, &file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_raw.parse().map_err(|_| {
            ConfigError(format!("BILLING_LISTEN must be address:port, like {DEFAULT_LISTEN}; got {listen_raw:?}"))
        })?;
        let api_token = pick(matches, "api_token", &args.api_token, &file.api_token);
        let runtime_token = pick(matches, "runtime_token", &args.runtime_token, &file.runtime_token);
        check_token("BILLING_API_TOKEN", api_token.as_deref())?;
        check_token("BILLING_RUNTIME_TOKEN", runtime_token.as_deref())?;
        if api_token.is_some() && api_token == runtime_token {
            return Err(ConfigError("BILLING_API_TOKEN and BILLING_RUNTIME_TOKEN must differ".into()));
        }
        let master_key = pick(matches, "master_key", &args.master_key, &file.master_key)
            .map(|raw| MasterKey::from_base64(&raw).map_err(ConfigError))
            .transpose()?;
        let catalog = match pick(matches, "models_file", &args.models_file, &file.models_file) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("BILLING_MODELS_FILE: cannot read {}: {e}", path.display())))?;
                Catalog::from_toml(&text).map_err(|e| ConfigError(format!("BILLING_MODELS_FILE: {e}")))?
            }
            None => Catalog::shipped(),
        };
        let metering = match pick(matches, "metering", &args.metering, &file.metering).as_deref() {
            None | Some("enabled") => Metering::Enabled,
            Some("disabled") => Metering::Disabled,
            Some(other) => {
                return Err(ConfigError(format!("BILLING_METERING must be enabled or disabled; got {other:?}")))
            }
        };
        let nats_url = pick(matches, "nats_url", &args.nats_url, &file.nats_url).filter(|u| !u.is_empty());
        if let Some(url) = &nats_url {
            if !(url.starts_with("nats://") || url.starts_with("tls://") || url.contains(':')) {
                return Err(ConfigError(format!(
                    "BILLING_NATS_URL must be a NATS URL like nats://127.0.0.1:4222; got {url:?}"
                )));
            }
        }
        let nats_stream = pick(matches, "nats_stream", &args.nats_stream, &file.nats_stream)
            .unwrap_or_else(|| billing_nats::config::DEFAULT_STREAM.to_owned());
        if nats_stream.is_empty() || !nats_stream.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(ConfigError(format!(
                "BILLING_NATS_STREAM must be letters, digits, _ or -; got {nats_stream:?}"
            )));
        }
        let nats_subject_prefix =
            pick(matches, "nats_subject_prefix", &args.nats_subject_prefix, &file.nats_subject_prefix)
                .unwrap_or_else(|| billing_nats::config::DEFAULT_SUBJECT_PREFIX.to_owned());
        let prefix_ok = !nats_subject_prefix.is_empty()
            && nats_subject_prefix
                .split('.')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>'));
        if !prefix_ok {
            return Err(ConfigError(format!(
                "BILLING_NATS_SUBJECT_PREFIX must be dot-separated NATS tokens without wildcards; got {nats_subject_prefix:?}"
            )));
        }
        let data_dir =
            pick(matches, "data_dir", &args.data_dir, &file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let log_format = match pick(matches, "log_format", &args.log_format, &file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(ConfigError(format!("BILLING_LOG_FORMAT must be text or json; got {other:?}"))),
        };
        Ok(Config {
            database_url,
            listen,
            api_token,
            runtime_token,
            master_key,
            catalog,
            metering,
            nats_url,
            nats_stream,
            nats_subject_prefix,
            data_dir,
            log_format,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    /// The NATS settings, when `BILLING_NATS_URL` is set.
    pub fn nats(&self) -> Option<billing_nats::NatsConfig> {
        self.nats_url.as_ref().map(|url| billing_nats::NatsConfig {
            url: url.clone(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
        })
    }
}

fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let ok = url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "BILLING_DATABASE_URL must be sqlite://PATH or postgres://USER@HOST:PORT/DB; got {:?}",
            redact_url(url)
        )))
    }
}

fn check_token(variable: &str, token: Option<&str>) -> Result<(), ConfigError> {
    match token {
        Some(t) if t.len() < TOKEN_LEN_MIN || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ConfigError(format!("{variable} must be at least {TOKEN_LEN_MIN} printable characters without spaces")))
        }
        _ => Ok(()),
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact_url("postgres://bob:s3cret@db:5432/x"), "postgres://bob:***@db:5432/x");
        assert_eq!(redact_url("sqlite://./a.db"), "sqlite://./a.db");
        let err = check_database_url("mysql://bob:s3cret@db/x").unwrap_err();
        assert!(err.0.contains("BILLING_DATABASE_URL") && !err.0.contains("s3cret"), "{err}");
    }

    #[test]
    fn tokens_must_be_long_and_printable() {
        assert!(check_token("BILLING_API_TOKEN", Some("short")).is_err());
        assert!(check_token("BILLING_API_TOKEN", Some("a token with spaces in it")).is_err());
        assert!(check_token("BILLING_API_TOKEN", Some("0123456789abcdef")).is_ok());
        assert!(check_token("BILLING_API_TOKEN", None).is_ok());
    }
}
