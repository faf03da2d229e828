//! Coffer authorization: the scope grammar, grants, the server's root key,
//! biscuit capability tokens, the per-request authorizer and the revocation
//! view.
//!
//! The flow: the OAuth server parses the requested [`ScopeSet`] (and/or RFC
//! 9396 `authorization_details`), [resolves](ScopeSet::resolve) it against the
//! schemas into a [`GrantSpec`], narrows it with what the user kept on the
//! consent page ([`GrantSpec::intersect`]), stores it, and [`mint`]s short-lived
//! tokens from it. The query gateway asks the [`Authorizer`] about every
//! request; the [`RevocationView`] makes revocation immediate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authorizer;
pub mod grant;
pub mod keys;
pub mod revocation;
pub mod scope;
pub mod token;

pub use authorizer::{Authorized, Authorizer, Denied, DeniedKind, Request, VerifiedToken};
pub use grant::{
    Access, Action, AuthorizationDetail, ColumnSet, DetailsError, GrantError, GrantSpec, ResolveError, RowScope,
    TablePermission,
};
pub use keys::{KeyError, RootKeyPair, RootPublicKey};
pub use revocation::{GrantState, GrantStatus, RevocationView, Revoked};
pub use scope::{ScopeError, ScopeErrorReason, ScopeSet, ScopeTarget, ScopeToken};
pub use token::{
    Attenuation, MAX_TOKEN_LIFETIME, TokenClaims, TokenError, attenuate, authority_revocation_id, bind_to_key, mint,
};
