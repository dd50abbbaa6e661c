//! Errors of the engine crate. `StoreError` is what the database layer
//! says; `EngineError` is what callers of the engine see. Infrastructure
//! causes are kept for the log and never put in an answer.

use billing_domain::DomainError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The configuration cannot work (bad URL, ...).
    #[error("{0}")]
    Config(String),
    /// A unique index refused a write: another writer appended to the same
    /// workspace, or an idempotency key is already stored.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or refused to work; nothing was stored.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row cannot be read back (bad JSON, impossible value).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                StoreError::Corrupt(err.to_string())
            }
            _ => StoreError::Unavailable(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Corrupt(err.to_string())
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    /// A rule of the domain refused the command; nothing was stored.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database (or another dependency) could not do its part; nothing
    /// was stored. The cause has been logged.
    #[error("the billing database is unavailable")]
    Unavailable,
}

impl EngineError {
    /// The contract's code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Domain(e) => e.code(),
            EngineError::Unavailable => "unavailable",
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error");
        EngineError::Unavailable
    }
}
