//! # billing-domain
//!
//! The pure core of bookbag-billing: no database, no HTTP, no clock.
//!
//! - [`ids`], [`money`], [`keys`]: values parsed at the edge (identifiers,
//!   credits, provider keys) and the [`keys::KeyVault`] that seals keys.
//! - [`catalog`]: the model catalog (TOML).
//! - [`routing`]: the one function that decides how a reply is billed.
//! - [`aggregate`]: the `Workspace` aggregate (cqrs-es): its commands, its
//!   events and the rules of `reference/bring-your-own-keys.md`.
//! - [`readmodel`]: the one fold from events to the dashboard projections,
//!   shared by the SQL projector, the audit and the tests.
//! - [`error`]: the one error type, one variant per contract code.
//!
//! The storage and engine crate (`billing-engine`) persists the events and
//! builds projections; `billing-http` serves them; `bookbag-billing` is the
//! binary.

pub mod aggregate;
pub mod catalog;
pub mod error;
pub mod ids;
pub mod keys;
pub mod money;
pub mod readmodel;
pub mod routing;

pub use aggregate::*;
pub use catalog::{Catalog, ModelProvider, ModelSpec};
pub use error::DomainError;
pub use ids::*;
pub use keys::{Fingerprint, KeyVault, MaskedKey, MasterKey, MasterKeyVault, Provider, ProviderKey, SealedKey};
pub use money::Credits;
pub use routing::{route_reply, Metering, Route, RouteDecision};
