//! Identifier newtypes. Each can only be built through `parse`, so the rest of
//! the engine never re-checks a raw string.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

use crate::error::DomainError;

/// Longest identifier the contract accepts. Bounded so that ids cannot be
/// used to grow events, indexes or memory without limit.
pub const ID_LEN_MAX: usize = 128;

/// True when `raw` is 1 to 128 characters of `A-Z a-z 0-9 _ - . :`.
pub fn is_valid_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= ID_LEN_MAX
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier of the contract's alphabet and length.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                if is_valid_id(raw) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(DomainError::InvalidInput(format!(
                        "{} must be 1 to {} characters of A-Z a-z 0-9 _ - . :",
                        stringify!($name),
                        ID_LEN_MAX
                    )))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Deserializing goes through `parse`, so a stored or received value
        // that breaks the alphabet can never become an identifier.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A workspace: the aggregate id and the tenant boundary.
    WorkspaceId
);
identifier!(
    /// A platform user, member of zero or more workspaces.
    UserId
);
identifier!(
    /// The caller's id for one agent reply; unique per workspace forever.
    ReplyId
);
identifier!(
    /// The platform's id for one credit grant; unique per workspace forever.
    GrantId
);
identifier!(
    /// The agent that produced a reply.
    AgentId
);
identifier!(
    /// A data source of an agent.
    DataSourceId
);
identifier!(
    /// The engine's id for one stored provider key.
    KeyId
);
identifier!(
    /// A model id of the catalog, as an agent asks for it.
    ModelId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        assert!(WorkspaceId::parse("ws_1-a.b:c").is_ok());
        assert!(WorkspaceId::parse(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for bad in ["", "a b", "a/b", "é", "a\0", &"a".repeat(129)] {
            assert!(WorkspaceId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializing_checks_the_alphabet() {
        assert!(serde_json::from_str::<UserId>("\"a/b\"").is_err());
        assert_eq!(serde_json::from_str::<UserId>("\"alice\"").unwrap().as_str(), "alice");
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_alphabet(raw in "\\PC{0,140}") {
            let expected = !raw.is_empty() && raw.len() <= 128 && raw.chars().all(|c|
                c.is_ascii_alphanumeric() || "_-.:".contains(c));
            prop_assert_eq!(ReplyId::parse(&raw).is_ok(), expected);
        }
    }
}
