//! The one error type of the domain. Each variant is one code of the
//! contract; the HTTP edge maps `code()` and `status()` once.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    UnknownProvider(String),
    #[error("{0}")]
    InvalidKeyFormat(String),
    #[error("{0}")]
    InvalidAmount(String),
    #[error("workspace not found")]
    WorkspaceNotFound,
    #[error("this command needs an X-Actor-Id")]
    MissingActor,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The model asked for is not in the catalog. The error never repeats
    /// what the caller sent: it may be anything, a pasted key included.
    #[error("the model is not in the catalog")]
    UnknownModel,
    #[error("BYO is on and the workspace has no active {0} key")]
    NoKeyForProvider(String),
    #[error("the reply costs {cost} credits and the balance is {balance}")]
    InsufficientCredits { cost: u64, balance: u64 },
    #[error("the change would leave the workspace with no admin")]
    LastAdmin,
    #[error("no active key for {0}")]
    KeyNotFound(String),
    #[error("{0} is not a member of this workspace")]
    MemberNotFound(String),
    #[error("workspace already exists")]
    WorkspaceExists,
    /// A dependency (database, vault) failed; nothing was stored. The message
    /// is generic: causes are logged where they happen, never sent out.
    #[error("{0}")]
    Unavailable(String),
}

impl DomainError {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::InvalidInput(_) => "invalid_input",
            DomainError::UnknownProvider(_) => "unknown_provider",
            DomainError::InvalidKeyFormat(_) => "invalid_key_format",
            DomainError::InvalidAmount(_) => "invalid_amount",
            DomainError::WorkspaceNotFound => "workspace_not_found",
            DomainError::MissingActor => "missing_actor",
            DomainError::Forbidden(_) => "forbidden",
            DomainError::IdempotencyConflict(_) => "idempotency_conflict",
            DomainError::UnknownModel => "unknown_model",
            DomainError::NoKeyForProvider(_) => "no_key_for_provider",
            DomainError::InsufficientCredits { .. } => "insufficient_credits",
            DomainError::LastAdmin => "last_admin",
            DomainError::KeyNotFound(_) => "key_not_found",
            DomainError::MemberNotFound(_) => "member_not_found",
            DomainError::WorkspaceExists => "workspace_exists",
            DomainError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status the contract gives the code.
    pub fn status(&self) -> u16 {
        match self {
            DomainError::InvalidInput(_)
            | DomainError::UnknownProvider(_)
            | DomainError::InvalidKeyFormat(_)
            | DomainError::InvalidAmount(_)
            | DomainError::UnknownModel => 422,
            DomainError::MissingActor => 400,
            DomainError::Forbidden(_) => 403,
            DomainError::WorkspaceNotFound | DomainError::KeyNotFound(_) | DomainError::MemberNotFound(_) => 404,
            DomainError::IdempotencyConflict(_)
            | DomainError::NoKeyForProvider(_)
            | DomainError::LastAdmin
            | DomainError::WorkspaceExists => 409,
            DomainError::InsufficientCredits { .. } => 402,
            DomainError::Unavailable(_) => 503,
        }
    }
}
