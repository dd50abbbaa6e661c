//! Reply routing: the heart of the engine, written once and used by the
//! aggregate, the projections and the audit alike.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::catalog::{ModelProvider, ModelSpec};
use crate::error::DomainError;
use crate::ids::KeyId;
use crate::money::Credits;

/// How a reply was billed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Credits,
    Byo,
    Local,
    Unmetered,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Credits, Route::Byo, Route::Local, Route::Unmetered];

    pub fn parse(raw: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Credits => "credits",
            Route::Byo => "byo",
            Route::Local => "local",
            Route::Unmetered => "unmetered",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hosted (`enabled`) or self-hosted open-source build (`disabled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metering {
    Enabled,
    Disabled,
}

/// What routing decided for one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDecision {
    pub route: Route,
    pub key_id: Option<KeyId>,
    pub credits_charged: Credits,
    pub list_cost: Credits,
}

/// The contract's routing steps 2 to 5 (step 1, the catalog look-up, happens
/// before: the caller passes the model it found). `active_key` is the active
/// key of the model's provider, if any.
pub fn route_reply(
    model: &ModelSpec,
    byo_enabled: bool,
    active_key: Option<&KeyId>,
    metering: Metering,
    balance: Credits,
) -> Result<RouteDecision, DomainError> {
    let list_cost = model.credit_cost;
    let free = |route, key_id| RouteDecision { route, key_id, credits_charged: Credits::ZERO, list_cost };
    if model.provider == ModelProvider::Local {
        return Ok(free(Route::Local, None));
    }
    if byo_enabled {
        // BYO never falls back to credits: no key means the agent cannot run.
        return match active_key {
            Some(key_id) => Ok(free(Route::Byo, Some(key_id.clone()))),
            None => Err(DomainError::NoKeyForProvider(model.provider.as_str().to_owned())),
        };
    }
    if metering == Metering::Disabled {
        return Ok(free(Route::Unmetered, None));
    }
    if balance < list_cost {
        return Err(DomainError::InsufficientCredits { cost: list_cost.get(), balance: balance.get() });
    }
    Ok(RouteDecision { route: Route::Credits, key_id: None, credits_charged: list_cost, list_cost })
}
