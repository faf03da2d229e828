//! Newtype identifiers. Each one says what it identifies, so a vault id can
//! never be passed where an app id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Error returned when an identifier does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} id `{value}`")]
pub struct InvalidId {
    /// What kind of id was expected (`vault`, `grant`, …).
    pub kind: &'static str,
    /// The text that was given.
    pub value: String,
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Ulid);

        impl $name {
            /// A new, time-ordered, random id.
            pub fn generate() -> Self {
                Self(Ulid::new())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Lower case keeps object keys and URLs uniform.
                write!(f, "{}", self.0.to_string().to_ascii_lowercase())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(&s.to_ascii_uppercase())
                    .map(Self)
                    .map_err(|_| InvalidId { kind: $kind, value: s.to_owned() })
            }
        }
    };
}

ulid_id!(
    /// Identifies one vault: the object-store prefix `vaults/{vault_id}/` and its data key.
    VaultId,
    "vault"
);
ulid_id!(
    /// Identifies one user account.
    UserId,
    "user"
);
ulid_id!(
    /// Identifies one grant: what one user allowed one app on one vault.
    GrantId,
    "grant"
);

/// Identifies an app (an OAuth client). App ids are chosen at registration and
/// are also written into `_created_by` / `_updated_by` of the rows an app writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppId(pub String);

impl AppId {
    /// Wraps an app id string.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A per-vault change sequence number. Every committed row change gets the
/// vault's next `Seq`; sequence numbers start at 1 and never repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub i64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_id_round_trips_in_lower_case() {
        let id = VaultId::generate();
        let text = id.to_string();
        assert_eq!(text, text.to_ascii_lowercase());
        assert_eq!(text.parse::<VaultId>().unwrap(), id);
        assert!("not-an-id".parse::<VaultId>().is_err());
    }
}
