//! The in-memory revocation view the authorizer consults on every check.
//!
//! It maps each grant to its current version and status, and holds the
//! biscuit revocation ids of revoked token families. The server keeps it
//! current from the control database (and, across nodes, from notifications);
//! a change is seen by the very next check.
//!
//! The view fails closed: a grant it does not know is refused (with its own
//! denial kind, so the caller can load the grant from the database and retry).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use coffer_core::GrantId;

/// Whether a grant is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantStatus {
    /// The grant is in force.
    Active,
    /// The user revoked the grant.
    Revoked,
}

/// A grant's current version and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantState {
    /// The current version; tokens minted for an older version are refused.
    pub version: u64,
    /// The current status.
    pub status: GrantStatus,
}

/// Why the revocation view refuses a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    /// The view does not know the grant.
    #[error("the token's grant is not known to this server")]
    UnknownGrant,
    /// The grant was revoked.
    #[error("the grant was revoked")]
    GrantRevoked,
    /// The grant changed after the token was minted.
    #[error("the grant changed (token version {token_version}, current {current_version}); get a new token")]
    GrantVersionSuperseded {
        /// The token's grant version.
        token_version: u64,
        /// The grant's current version.
        current_version: u64,
    },
    /// One of the token's biscuit revocation ids was revoked.
    #[error("the token was revoked")]
    TokenRevoked,
}

#[derive(Debug, Default)]
struct State {
    grants: HashMap<GrantId, GrantState>,
    /// Revoked biscuit revocation ids, each with the time after which it may
    /// be forgotten (the revoked token has expired by then).
    revoked_ids: HashMap<Vec<u8>, DateTime<Utc>>,
}

/// The revocation view: thread-safe, cheap to read.
#[derive(Debug, Default)]
pub struct RevocationView {
    state: RwLock<State>,
}

impl RevocationView {
    /// An empty view (every grant unknown).
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave `State` half-updated (each
    // write is a single map operation), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a grant's version and status. Updates are monotonic so that
    /// notifications arriving out of order cannot undo a change: the update
    /// applies if `version` is newer than the known one, or equal with status
    /// `Revoked` (revocation is sticky within a version). Returns whether it
    /// applied.
    pub fn set_grant(&self, id: GrantId, version: u64, status: GrantStatus) -> bool {
        let mut state = self.write();
        let new = GrantState { version, status };
        match state.grants.get(&id) {
            Some(old) if version < old.version || (version == old.version && status == GrantStatus::Active) => false,
            _ => {
                state.grants.insert(id, new);
                true
            }
        }
    }

    /// Forgets a grant (e.g. deleted); its tokens are then refused as unknown.
    pub fn remove_grant(&self, id: GrantId) -> bool {
        self.write().grants.remove(&id).is_some()
    }

    /// The grant's current state, if known.
    pub fn grant(&self, id: GrantId) -> Option<GrantState> {
        self.read().grants.get(&id).copied()
    }

    /// Revokes biscuit revocation ids (a token and every token attenuated
    /// from it share the id of its authority block). `forget_after` is when
    /// the ids may be pruned: the tokens' expiry, at most 15 minutes ahead.
    pub fn revoke_token_ids<I>(&self, ids: I, forget_after: DateTime<Utc>)
    where
        I: IntoIterator,
        I::Item: Into<Vec<u8>>,
    {
        let mut state = self.write();
        for id in ids {
            let entry = state.revoked_ids.entry(id.into()).or_insert(forget_after);
            *entry = (*entry).max(forget_after);
        }
    }

    /// Whether a biscuit revocation id is revoked.
    pub fn is_token_id_revoked(&self, id: &[u8]) -> bool {
        self.read().revoked_ids.contains_key(id)
    }

    /// Drops revoked ids whose tokens have expired by `now`; returns how many.
    pub fn prune(&self, now: DateTime<Utc>) -> usize {
        let mut state = self.write();
        let before = state.revoked_ids.len();
        state.revoked_ids.retain(|_, until| *until > now);
        before - state.revoked_ids.len()
    }

    /// Checks a token's grant id and version and its revocation ids.
    pub fn check(&self, grant: GrantId, token_version: u64, token_ids: &[Vec<u8>]) -> Result<(), Revoked> {
        let state = self.read();
        if token_ids.iter().any(|id| state.revoked_ids.contains_key(id)) {
            return Err(Revoked::TokenRevoked);
        }
        let current = state.grants.get(&grant).ok_or(Revoked::UnknownGrant)?;
        if current.status == GrantStatus::Revoked {
            return Err(Revoked::GrantRevoked);
        }
        if token_version < current.version {
            return Err(Revoked::GrantVersionSuperseded {
                token_version,
                current_version: current.version,
            });
        }
        // A newer token version means this node has not yet heard of the
        // change; the token was minted from the database, so it is accepted.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn updates_are_monotonic() {
        let view = RevocationView::new();
        let g = GrantId::generate();
        assert_eq!(view.check(g, 1, &[]), Err(Revoked::UnknownGrant));
        assert!(view.set_grant(g, 2, GrantStatus::Active));
        // Older notification arrives late: ignored.
        assert!(!view.set_grant(g, 1, GrantStatus::Active));
        assert_eq!(view.grant(g).map(|s| s.version), Some(2));
        // Revocation at the same version applies; un-revoking at it does not.
        assert!(view.set_grant(g, 2, GrantStatus::Revoked));
        assert!(!view.set_grant(g, 2, GrantStatus::Active));
        assert_eq!(view.check(g, 2, &[]), Err(Revoked::GrantRevoked));
        // A new version may re-activate.
        assert!(view.set_grant(g, 3, GrantStatus::Active));
        assert_eq!(
            view.check(g, 2, &[]),
            Err(Revoked::GrantVersionSuperseded {
                token_version: 2,
                current_version: 3
            })
        );
        assert_eq!(view.check(g, 3, &[]), Ok(()));
        assert_eq!(view.check(g, 4, &[]), Ok(()));
        assert!(view.remove_grant(g));
        assert_eq!(view.check(g, 3, &[]), Err(Revoked::UnknownGrant));
    }

    #[test]
    fn revoked_ids_are_pruned_after_expiry() {
        let view = RevocationView::new();
        let g = GrantId::generate();
        view.set_grant(g, 1, GrantStatus::Active);
        let now = Utc::now();
        view.revoke_token_ids([vec![1u8, 2, 3]], now + TimeDelta::minutes(15));
        assert_eq!(view.check(g, 1, &[vec![9], vec![1, 2, 3]]), Err(Revoked::TokenRevoked));
        assert_eq!(view.prune(now), 0);
        assert_eq!(view.prune(now + TimeDelta::minutes(16)), 1);
        assert!(!view.is_token_id_revoked(&[1, 2, 3]));
    }
}
