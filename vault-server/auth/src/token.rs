//! Capability tokens: minting the access token a grant allows,
//! attenuating a token by appending restriction blocks, and binding a token
//! to a DPoP key.
//!
//! # Authority block (signed by the root key)
//!
//! ```text
//! vault("01j…"); app("com.example.notes"); grant("01j…"); grant_version(3);
//! issued_at(2030-01-01T00:00:00Z); expires_at(2030-01-01T00:15:00Z);
//! right("contacts.people", "read");                  // one per granted pair
//! columns("contacts.people", "read", {"email", "name"});   // or:
//! all_columns("contacts.people", "read");
//! rows("contacts.people", "read", "all");            // or "own"
//! check if time($time), $time < 2030-01-01T00:15:00Z;
//! ```
//!
//! # Attenuation blocks (appended by any holder, never widen)
//!
//! Each restriction is a `limit_*` fact plus a check that reads it. A block's
//! checks see the authority block, the block itself and the request; facts a
//! block adds are invisible to the authorizer's policies and to every other
//! block, so a block can only add conditions, never rights.
//!
//! ```text
//! limit_actions({"read"});
//! reject if operation($op), limit_actions($ops), !$ops.contains($op);
//! limit_tables({"contacts.people"});
//! reject if table($t), limit_tables($ts), !$ts.contains($t);
//! limit_table_actions("contacts.people", {"read"});
//! reject if table($t), operation($op), limit_table_actions($t, $ops), !$ops.contains($op);
//! limit_columns("contacts.people", {"name"});
//! reject if table($t), column($c), limit_columns($t, $cols), !$cols.contains($c);
//! limit_expires_at(2030-01-01T00:05:00Z);
//! check if time($time), $time < 2030-01-01T00:05:00Z;
//! ```
//!
//! # DPoP binding block (appended by the OAuth server right after minting)
//!
//! A token bound to a DPoP key (RFC 9449 `cnf.jkt`) by [`bind_to_key`]
//! carries the key's RFC 7638 thumbprint, and a check that passes only when
//! the request proved possession of that key (the verifier supplies
//! `dpop_jkt`, see [`Request::with_dpop_jkt`](crate::Request::with_dpop_jkt)):
//!
//! ```text
//! cnf_jkt("<thumbprint>");
//! check if dpop_jkt("<thumbprint>");
//! ```
//!
//! Like an attenuation it only restricts, and a holder cannot remove it;
//! [`VerifiedToken::dpop_jkt`](crate::VerifiedToken::dpop_jkt) reads it back,
//! and a token bound to two different keys is refused as malformed.

use std::collections::{BTreeMap, BTreeSet};

use biscuit_auth::UnverifiedBiscuit;
use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::macros::{biscuit, biscuit_merge, block, block_merge};
use chrono::{DateTime, TimeDelta, Utc};
use coffer_core::schema::{TableName, is_identifier};
use coffer_core::{AppId, GrantId, VaultId};

use crate::grant::{Action, ColumnSet, GrantSpec, is_system_column};
use crate::keys::RootKeyPair;

/// The longest lifetime of an access token: 15 minutes.
pub const MAX_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// Longest token accepted, in bytes of its base64 text.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most blocks (authority + attenuations) a token may have.
pub const MAX_TOKEN_BLOCKS: usize = 16;

/// Error for minting or attenuating a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `expires_at` is not after `issued_at`, or more than 15 minutes after it.
    #[error("a token must expire after it is issued and within 15 minutes")]
    Lifetime,
    /// The grant allows nothing.
    #[error("the grant is empty; a token must carry at least one right")]
    EmptyGrant,
    /// The grant version does not fit a token integer.
    #[error("grant version {0} is too large")]
    VersionRange(u64),
    /// The attenuation restricts nothing.
    #[error("the attenuation restricts nothing")]
    EmptyAttenuation,
    /// The attenuation names an invalid column.
    #[error("invalid attenuation: {0}")]
    InvalidAttenuation(String),
    /// The token text is not a capability token or is too large.
    #[error("not a capability token: {0}")]
    Malformed(String),
    /// Biscuit could not build or sign the token.
    #[error("could not build the token: {0}")]
    Biscuit(String),
}

fn biscuit_error(e: biscuit_auth::error::Token) -> TokenError {
    TokenError::Biscuit(e.to_string())
}

/// A biscuit date term (whole seconds since the Unix epoch; earlier times
/// become the epoch).
pub(crate) fn date_term(t: DateTime<Utc>) -> Term {
    Term::Date(u64::try_from(t.timestamp()).unwrap_or(0))
}

/// A biscuit set of strings.
pub(crate) fn string_set<I, S>(items: I) -> Term
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Term::Set(items.into_iter().map(|s| Term::Str(s.into())).collect())
}

/// `t` rounded down to a whole second (token times have second precision).
pub(crate) fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// What an access token says: whose vault, which app, which grant, what it
/// allows, and when it is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The vault the token is for.
    pub vault: VaultId,
    /// The app (OAuth client) holding the token.
    pub app: AppId,
    /// The grant the token encodes.
    pub grant_id: GrantId,
    /// The grant's version when the token was minted.
    pub grant_version: u64,
    /// What the grant allows.
    pub grant: GrantSpec,
    /// When the token was issued (the server clock).
    pub issued_at: DateTime<Utc>,
    /// When it expires; at most [`MAX_TOKEN_LIFETIME`] after `issued_at`.
    pub expires_at: DateTime<Utc>,
}

impl TokenClaims {
    /// Claims for a token issued `now` that lives for `lifetime`
    /// (at most [`MAX_TOKEN_LIFETIME`], checked by [`mint`]).
    pub fn new(
        vault: VaultId,
        app: AppId,
        grant_id: GrantId,
        grant_version: u64,
        grant: GrantSpec,
        now: DateTime<Utc>,
        lifetime: TimeDelta,
    ) -> Self {
        TokenClaims {
            vault,
            app,
            grant_id,
            grant_version,
            grant,
            issued_at: now,
            expires_at: now + lifetime,
        }
    }
}

/// Mints an access token (biscuit, URL-safe base64) signed by the root key.
/// Refuses an empty grant and a lifetime that is not in (0, 15 min]. Times
/// are rounded down to whole seconds.
pub fn mint(root: &RootKeyPair, claims: &TokenClaims) -> Result<String, TokenError> {
    let issued_at = whole_seconds(claims.issued_at);
    let expires_at = whole_seconds(claims.expires_at);
    if expires_at <= issued_at || expires_at - issued_at > MAX_TOKEN_LIFETIME {
        return Err(TokenError::Lifetime);
    }
    if claims.grant.is_empty() {
        return Err(TokenError::EmptyGrant);
    }
    let version = i64::try_from(claims.grant_version).map_err(|_| TokenError::VersionRange(claims.grant_version))?;
    let mut builder = biscuit!(
        r#"
        vault({vault});
        app({app});
        grant({grant});
        grant_version({version});
        issued_at({issued});
        expires_at({expires});
        check if time($time), $time < {expires};
        "#,
        vault = claims.vault.to_string(),
        app = claims.app.as_str(),
        grant = claims.grant_id.to_string(),
        version = version,
        issued = date_term(issued_at),
        expires = date_term(expires_at),
    );
    for (table, action, access) in claims.grant.pairs() {
        let name = table.to_string();
        let t = name.as_str();
        let a = action.as_str();
        let r = access.row_scope.as_str();
        builder = biscuit_merge!(builder, r#"right({t}, {a}); rows({t}, {a}, {r});"#);
        builder = match &access.columns {
            ColumnSet::All => biscuit_merge!(builder, r#"all_columns({t}, {a});"#),
            ColumnSet::Only(set) => {
                let cols = string_set(set.iter().cloned());
                biscuit_merge!(builder, r#"columns({t}, {a}, {cols});"#)
            }
        };
    }
    builder
        .build(root.key_pair())
        .and_then(|token| token.to_base64())
        .map_err(biscuit_error)
}

/// Restrictions a holder appends to a token. Each one only narrows; an
/// empty attenuation is refused. Calling a method twice narrows further.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attenuation {
    actions: Option<BTreeSet<Action>>,
    tables: Option<BTreeSet<TableName>>,
    table_actions: BTreeMap<TableName, BTreeSet<Action>>,
    columns: BTreeMap<TableName, BTreeSet<String>>,
    expires_at: Option<DateTime<Utc>>,
}

impl Attenuation {
    /// No restriction yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `read`, on every table.
    pub fn read_only(self) -> Self {
        self.actions([Action::Read])
    }

    /// Only these actions, on every table.
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        let new: BTreeSet<Action> = actions.into_iter().collect();
        self.actions = Some(match self.actions {
            Some(old) => old.intersection(&new).copied().collect(),
            None => new,
        });
        self
    }

    /// Only these tables.
    pub fn tables(mut self, tables: impl IntoIterator<Item = TableName>) -> Self {
        let new: BTreeSet<TableName> = tables.into_iter().collect();
        self.tables = Some(match self.tables {
            Some(old) => old.intersection(&new).cloned().collect(),
            None => new,
        });
        self
    }

    /// Only these actions on `table` (other tables unaffected).
    pub fn table_actions(mut self, table: TableName, actions: impl IntoIterator<Item = Action>) -> Self {
        let new: BTreeSet<Action> = actions.into_iter().collect();
        let merged = match self.table_actions.remove(&table) {
            Some(old) => old.intersection(&new).copied().collect(),
            None => new,
        };
        self.table_actions.insert(table, merged);
        self
    }

    /// Only these columns of `table`, for every action (system columns stay
    /// allowed).
    pub fn columns<I, S>(mut self, table: TableName, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let new: BTreeSet<String> = columns.into_iter().map(Into::into).collect();
        let merged = match self.columns.remove(&table) {
            Some(old) => old.intersection(&new).cloned().collect(),
            None => new,
        };
        self.columns.insert(table, merged);
        self
    }

    /// Expire no later than `at` (second precision, rounded down).
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        let at = whole_seconds(at);
        self.expires_at = Some(self.expires_at.map_or(at, |old| old.min(at)));
        self
    }

    /// Whether nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self == &Attenuation::default()
    }

    fn block(&self) -> Result<BlockBuilder, TokenError> {
        let mut b = BlockBuilder::new();
        if let Some(actions) = &self.actions {
            let ops = string_set(actions.iter().map(|a| a.as_str()));
            b = block_merge!(
                b,
                r#"
                limit_actions({ops});
                reject if operation($op), limit_actions($ops), !$ops.contains($op);
                "#
            );
        }
        if let Some(tables) = &self.tables {
            let ts = string_set(tables.iter().map(|t| t.to_string()));
            b = block_merge!(
                b,
                r#"
                limit_tables({ts});
                reject if table($t), limit_tables($ts), !$ts.contains($t);
                "#
            );
        }
        if !self.table_actions.is_empty() {
            for (table, actions) in &self.table_actions {
                let t = table.to_string();
                let ops = string_set(actions.iter().map(|a| a.as_str()));
                b = block_merge!(b, r#"limit_table_actions({t}, {ops});"#);
            }
            b = block_merge!(
                b,
                r#"reject if table($t), operation($op), limit_table_actions($t, $ops), !$ops.contains($op);"#
            );
        }
        if !self.columns.is_empty() {
            for (table, columns) in &self.columns {
                if let Some(bad) = columns.iter().find(|c| !is_identifier(c) || is_system_column(c)) {
                    return Err(TokenError::InvalidAttenuation(format!(
                        "`{}` is not a user column name",
                        crate::scope::printable(bad)
                    )));
                }
                let t = table.to_string();
                let cols = string_set(columns.iter().cloned());
                b = block_merge!(b, r#"limit_columns({t}, {cols});"#);
            }
            b = block_merge!(
                b,
                r#"reject if table($t), column($c), limit_columns($t, $cols), !$cols.contains($c);"#
            );
        }
        if let Some(at) = self.expires_at {
            let exp = date_term(at);
            b = block_merge!(
                b,
                r#"
                limit_expires_at({exp});
                check if time($time), $time < {exp};
                "#
            );
        }
        Ok(b)
    }
}

/// Appends `attenuation` as a new block to `token` (no root key needed: the
/// block is signed with a fresh key chained to the token, as biscuit does).
/// The result can do at most what `token` could.
pub fn attenuate(token: &str, attenuation: &Attenuation) -> Result<String, TokenError> {
    if attenuation.is_empty() {
        return Err(TokenError::EmptyAttenuation);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("token too long".into()));
    }
    let unverified = UnverifiedBiscuit::from_base64(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if unverified.block_count() >= MAX_TOKEN_BLOCKS {
        return Err(TokenError::Malformed("token has too many blocks".into()));
    }
    unverified
        .append(attenuation.block()?)
        .and_then(|t| t.to_base64())
        .map_err(biscuit_error)
}

/// Binds `token` to the DPoP key whose RFC 7638 thumbprint is `jkt`, by
/// appending the binding block (see the module documentation). Like
/// [`attenuate`] it needs no root key; the authorizer refuses the result if
/// `token` was not signed by the root key or is already bound to another key.
pub fn bind_to_key(token: &str, jkt: &str) -> Result<String, TokenError> {
    let unverified = UnverifiedBiscuit::from_base64(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    unverified
        .append(block!(r#"cnf_jkt({jkt}); check if dpop_jkt({jkt});"#))
        .and_then(|t| t.to_base64())
        .map_err(biscuit_error)
}

/// The revocation id of a token's authority block: revoking it revokes the
/// token and every token derived from it (attenuated or bound).
pub fn authority_revocation_id(token: &str) -> Result<Vec<u8>, TokenError> {
    UnverifiedBiscuit::from_base64(token)
        .map_err(|e| TokenError::Malformed(e.to_string()))?
        .revocation_identifiers()
        .into_iter()
        .next()
        .ok_or_else(|| TokenError::Malformed("the token has no block".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::DeniedKind;
    use crate::authorizer::{Authorizer, Request};
    use crate::grant::TablePermission;
    use crate::revocation::{GrantStatus, RevocationView};

    fn table() -> TableName {
        "contacts.people".parse().unwrap()
    }

    fn claims() -> TokenClaims {
        let grant = GrantSpec::from_permissions([TablePermission::new(table(), [Action::Read])]).unwrap();
        let now = Utc::now();
        TokenClaims::new(
            VaultId::generate(),
            AppId::new("app"),
            GrantId::generate(),
            1,
            grant,
            now,
            TimeDelta::minutes(5),
        )
    }

    fn authorizer(root: &RootKeyPair, claims: &TokenClaims) -> Authorizer {
        let view = Arc::new(RevocationView::new());
        view.set_grant(claims.grant_id, claims.grant_version, GrantStatus::Active);
        Authorizer::new(root.public_key(), view)
    }

    fn read(claims: &TokenClaims) -> Request {
        Request::new(claims.vault, table(), Action::Read, Utc::now())
    }

    #[test]
    fn a_bound_token_carries_the_thumbprint_and_needs_its_key() {
        let root = RootKeyPair::generate();
        let claims = claims();
        let authz = authorizer(&root, &claims);
        let token = mint(&root, &claims).unwrap();
        let bound = bind_to_key(&token, "key-1").unwrap();
        let verified = authz.verify(&bound).unwrap();
        assert_eq!(verified.dpop_jkt(), Some("key-1"));
        assert_eq!(verified.block_count(), 2);
        assert!(authz.check(&verified, &read(&claims).with_dpop_jkt("key-1")).is_ok());
        for request in [read(&claims), read(&claims).with_dpop_jkt("key-2")] {
            assert_eq!(
                authz.check(&verified, &request).unwrap_err().kind,
                DeniedKind::DpopRequired
            );
        }
        // Binding keeps the authority block, so its revocation id too.
        assert_eq!(
            authority_revocation_id(&bound).unwrap(),
            authority_revocation_id(&token).unwrap()
        );
        assert_eq!(verified.revocation_ids()[0], authority_revocation_id(&token).unwrap());
    }

    #[test]
    fn binding_twice_or_a_forged_token_is_refused() {
        let root = RootKeyPair::generate();
        let claims = claims();
        let authz = authorizer(&root, &claims);
        let once = bind_to_key(&mint(&root, &claims).unwrap(), "key-1").unwrap();
        let twice = bind_to_key(&once, "key-2").unwrap();
        assert_eq!(authz.verify(&twice).unwrap_err().kind, DeniedKind::Malformed);

        let forged = bind_to_key(&mint(&RootKeyPair::generate(), &claims).unwrap(), "key-1").unwrap();
        assert!(authz.verify(&forged).is_err());
        assert!(matches!(
            bind_to_key("not a token", "key-1"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            authority_revocation_id("not a token"),
            Err(TokenError::Malformed(_))
        ));
    }
}
