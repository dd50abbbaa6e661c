//! Credits: whole, non-negative integers with checked arithmetic. There is no
//! float anywhere near a balance.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::DomainError;

/// Largest single grant the contract accepts (10^12 credits). Anything larger
/// is almost certainly a unit mistake upstream.
pub const GRANT_CREDITS_MAX: u64 = 1_000_000_000_000;

/// Largest balance (and total granted) a workspace may hold: the largest
/// signed 64-bit integer, so every amount fits a SQL `bigint` column.
pub const BALANCE_CREDITS_MAX: u64 = i64::MAX as u64;

/// An amount of credits. Never negative; every operation that could overflow
/// or underflow is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credits(u64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub const fn new(value: u64) -> Self {
        Credits(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// Adds, failing past [`BALANCE_CREDITS_MAX`].
    pub fn checked_add(self, other: Credits) -> Option<Credits> {
        self.0.checked_add(other.0).filter(|v| *v <= BALANCE_CREDITS_MAX).map(Credits)
    }

    /// The amount as a signed SQL integer; every amount the domain decides
    /// is at most [`BALANCE_CREDITS_MAX`].
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        self.0.checked_sub(other.0).map(Credits)
    }

    /// Parses a grant amount: a JSON integer from 1 to 10^12.
    pub fn parse_grant(value: &serde_json::Value) -> Result<Credits, DomainError> {
        match value.as_u64() {
            Some(n) if (1..=GRANT_CREDITS_MAX).contains(&n) => Ok(Credits(n)),
            _ => {
                Err(DomainError::InvalidAmount(format!("amount must be a JSON integer from 1 to {GRANT_CREDITS_MAX}")))
            }
        }
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grant_amounts_are_integers_in_range() {
        assert_eq!(Credits::parse_grant(&json!(1)).unwrap(), Credits::new(1));
        assert_eq!(Credits::parse_grant(&json!(GRANT_CREDITS_MAX)).unwrap().get(), GRANT_CREDITS_MAX);
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!(1e13),
            json!("10"),
            json!(null),
            json!(GRANT_CREDITS_MAX + 1),
            json!(u64::MAX),
        ] {
            assert!(Credits::parse_grant(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Credits::new(u64::MAX).checked_add(Credits::new(1)), None);
        assert_eq!(Credits::new(BALANCE_CREDITS_MAX).checked_add(Credits::new(1)), None);
        assert_eq!(Credits::new(1).checked_sub(Credits::new(2)), None);
        assert_eq!(Credits::new(5).checked_sub(Credits::new(2)), Some(Credits::new(3)));
    }
}
