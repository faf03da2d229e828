//! Grants: what one user allowed one app. Creating and widening (consent),
//! the dashboard's list, revoke and narrow, last access, and keeping the
//! [`coffer_auth::RevocationView`] current.

use chrono::{DateTime, Utc};
use coffer_auth::{GrantSpec, GrantStatus};
use coffer_core::{AppId, GrantId, UserId, VaultId};
use serde::Serialize;
use sqlx::{Sqlite, SqliteExecutor, Transaction};

use crate::store::grants::{self as store, GrantRow};
use crate::store::{access, families, refresh};
use crate::util::{from_micros, micros};
use crate::{Error, OAuthServer};

/// A grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The grant id (in every token minted for it).
    pub id: GrantId,
    /// The user who consented.
    pub user_id: UserId,
    /// The user's vault.
    pub vault_id: VaultId,
    /// The app.
    pub app_id: AppId,
    /// What it allows.
    pub spec: GrantSpec,
    /// Bumped on every change; tokens minted for older versions are refused.
    pub version: u64,
    /// Active or revoked.
    pub status: GrantStatus,
    /// When the user first consented.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the app last used it (see [`OAuthServer::touch_grant`]).
    pub last_access_at: Option<DateTime<Utc>>,
}

impl Grant {
    /// The canonical scope string of what it allows.
    pub fn scope(&self) -> String {
        self.spec.to_scope_string()
    }

    /// Whether it is in force.
    pub fn is_active(&self) -> bool {
        self.status == GrantStatus::Active
    }
}

/// What the dashboard shows about the app of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppSummary {
    /// The client id.
    pub client_id: AppId,
    /// The app's name.
    pub name: String,
    /// The app's homepage.
    pub homepage: Option<String>,
    /// The app's logo.
    pub logo_url: Option<String>,
}

/// A grant with its app, for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantWithApp {
    /// The grant.
    pub grant: Grant,
    /// Its app.
    pub app: AppSummary,
}

/// A stored grant that does not parse.
fn corrupt(what: &str) -> Error {
    Error::Internal(format!("stored grant: invalid {what}"))
}

/// A stored spec.
pub(crate) fn parse_spec(json: &str) -> Result<GrantSpec, Error> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored grant spec is invalid: {e}")))
}

/// A spec to store.
pub(crate) fn spec_json(spec: &GrantSpec) -> Result<String, Error> {
    serde_json::to_string(spec).map_err(|e| Error::Internal(format!("grant spec: {e}")))
}

/// A stored status: anything but `active` is revoked.
fn parse_status(status: &str) -> GrantStatus {
    if status == "active" {
        GrantStatus::Active
    } else {
        GrantStatus::Revoked
    }
}

impl GrantRow {
    /// The grant.
    pub(crate) fn into_grant(self) -> Result<Grant, Error> {
        Ok(Grant {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            user_id: self.user_id.parse().map_err(|_| corrupt("user"))?,
            vault_id: self.vault_id.parse().map_err(|_| corrupt("vault"))?,
            app_id: AppId::new(self.app_id),
            spec: parse_spec(&self.spec)?,
            version: u64::try_from(self.version).map_err(|_| corrupt("version"))?,
            status: parse_status(&self.status),
            created_at: from_micros(self.created_at),
            updated_at: from_micros(self.updated_at),
            last_access_at: self.last_access_at.map(from_micros),
        })
    }
}

/// The outcome of [`OAuthServer::upsert_grant`].
pub(crate) struct Upserted {
    /// The grant as it is now.
    pub grant: Grant,
    /// Whether the grant was created or its version bumped (the revocation
    /// view must learn it after commit).
    pub changed: bool,
}

impl OAuthServer {
    /// The active grant of `user` for `app`.
    pub(crate) async fn active_grant<'e>(
        ex: impl SqliteExecutor<'e>,
        user: UserId,
        app: &str,
    ) -> Result<Option<Grant>, Error> {
        store::find_active(ex, &user.to_string(), app)
            .await?
            .map(GrantRow::into_grant)
            .transpose()
    }

    /// The grant with this id.
    pub(crate) async fn load_grant<'e>(ex: impl SqliteExecutor<'e>, id: &str) -> Result<Option<Grant>, Error> {
        store::find(ex, id).await?.map(GrantRow::into_grant).transpose()
    }

    /// The grant `grant` of `user` ([`Error::NotFound`] if it is not
    /// theirs).
    async fn users_grant<'e>(ex: impl SqliteExecutor<'e>, user: UserId, grant: GrantId) -> Result<Grant, Error> {
        Self::load_grant(ex, &grant.to_string())
            .await?
            .filter(|g| g.user_id == user)
            .ok_or(Error::NotFound("grant"))
    }

    /// Creates the user's grant for the app, or widens the active one with
    /// `approved` (bumping its version if anything changed).
    pub(crate) async fn upsert_grant(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        user: UserId,
        vault: VaultId,
        app: &AppId,
        approved: &GrantSpec,
    ) -> Result<Upserted, Error> {
        let now = self.now();
        let existing = Self::active_grant(&mut **tx, user, app.as_str()).await?;
        match existing {
            None => {
                let grant = Grant {
                    id: GrantId::generate(),
                    user_id: user,
                    vault_id: vault,
                    app_id: app.clone(),
                    spec: approved.clone(),
                    version: 1,
                    status: GrantStatus::Active,
                    created_at: now,
                    updated_at: now,
                    last_access_at: None,
                };
                store::insert(&mut **tx, &grant, &spec_json(approved)?).await?;
                Ok(Upserted { grant, changed: true })
            }
            Some(mut grant) => {
                let merged = grant.spec.widen(approved);
                if merged == grant.spec {
                    return Ok(Upserted { grant, changed: false });
                }
                Self::set_spec(&mut **tx, &mut grant, merged, now).await?;
                Ok(Upserted { grant, changed: true })
            }
        }
    }

    /// One grant of `user` ([`Error::NotFound`] if it is not theirs).
    pub async fn grant(&self, user: UserId, grant: GrantId) -> Result<Grant, Error> {
        Self::users_grant(&self.pool, user, grant).await
    }

    /// Every grant of `user` (active first, then newest first), with its app.
    pub async fn grants_for_user(&self, user: UserId) -> Result<Vec<GrantWithApp>, Error> {
        store::list_with_apps(&self.pool, &user.to_string())
            .await?
            .into_iter()
            .map(|row| {
                let grant = row.grant.into_grant()?;
                Ok(GrantWithApp {
                    app: AppSummary {
                        client_id: grant.app_id.clone(),
                        name: row.name,
                        homepage: row.homepage,
                        logo_url: row.logo_url,
                    },
                    grant,
                })
            })
            .collect()
    }

    /// Revokes a grant of `user`: status revoked, version bumped, every token
    /// family of the grant revoked. The next authorizer check refuses its
    /// tokens. Rows the app wrote stay in the vault. Revoking twice is a
    /// no-op.
    pub async fn revoke_grant(&self, user: UserId, grant: GrantId) -> Result<Grant, Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut g = Self::users_grant(&mut *tx, user, grant).await?;
        if !g.is_active() {
            return Ok(g);
        }
        let now = self.now();
        g.version += 1;
        g.status = GrantStatus::Revoked;
        g.updated_at = now;
        store::revoke(&mut *tx, &grant.to_string(), version_i64(g.version)?, micros(now)).await?;
        let active = families::active_of_grant(&mut *tx, &grant.to_string()).await?;
        let mut revoked_ids = Vec::new();
        for family in active {
            revoked_ids.extend(self.revoke_family_in(&mut tx, &family).await?);
        }
        tx.commit().await?;
        self.revocation.set_grant(g.id, g.version, GrantStatus::Revoked);
        self.publish_revoked_ids(revoked_ids);
        Ok(g)
    }

    /// Narrows a grant of `user` to `spec`, which must be non-empty and
    /// within the current grant (`invalid_scope` otherwise; to remove
    /// everything, revoke). Bumps the version, so tokens minted before are
    /// refused at their next check; refresh tokens keep working and mint
    /// tokens for the narrowed grant.
    pub async fn narrow_grant(&self, user: UserId, grant: GrantId, spec: &GrantSpec) -> Result<Grant, Error> {
        if spec.is_empty() {
            return Err(Error::invalid_scope(
                "a grant cannot be narrowed to nothing; revoke it instead",
            ));
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut g = Self::users_grant(&mut *tx, user, grant).await?;
        if !g.is_active() {
            return Err(Error::invalid_request("the grant is revoked"));
        }
        if !spec.is_subset_of(&g.spec) {
            return Err(Error::invalid_scope("narrowing can only remove access, not add it"));
        }
        if *spec == g.spec {
            return Ok(g);
        }
        Self::set_spec(&mut *tx, &mut g, spec.clone(), self.now()).await?;
        tx.commit().await?;
        self.revocation.set_grant(g.id, g.version, GrantStatus::Active);
        Ok(g)
    }

    /// Records that the grant was used now (for the dashboard). Writes at
    /// most once a minute per grant, so the gateway may call it on every
    /// request.
    pub async fn touch_grant(&self, grant: GrantId) -> Result<(), Error> {
        let now = micros(self.now());
        Ok(store::touch(&self.pool, &grant.to_string(), now, now - 60_000_000).await?)
    }

    /// Fills the revocation view from the database: every grant's version
    /// and status, and the revoked access tokens that have not expired yet.
    /// Call it once at startup. Returns the number of grants loaded.
    pub async fn load_revocation_view(&self) -> Result<usize, Error> {
        let grants = store::versions(&self.pool).await?;
        for row in &grants {
            let id: GrantId = row.id.parse().map_err(|_| corrupt("id"))?;
            self.revocation
                .set_grant(id, u64::try_from(row.version).unwrap_or(0), parse_status(&row.status));
        }
        let revoked = access::revoked_unexpired(&self.pool, micros(self.now())).await?;
        self.publish_revoked_ids(
            revoked
                .into_iter()
                .map(|r| (r.revocation_id, from_micros(r.expires_at)))
                .collect(),
        );
        Ok(grants.len())
    }

    /// Loads one grant's version and status from the database into the
    /// revocation view, e.g. when the authorizer reports an unknown grant
    /// (`DeniedKind::UnknownGrant`). Returns whether the grant exists.
    pub async fn sync_grant(&self, grant: GrantId) -> Result<bool, Error> {
        let Some(row) = store::find(&self.pool, &grant.to_string()).await? else {
            return Ok(false);
        };
        self.revocation.set_grant(
            grant,
            u64::try_from(row.version).unwrap_or(0),
            parse_status(&row.status),
        );
        Ok(true)
    }

    /// What `grant` allows now, if it is active (`None`: revoked or
    /// unknown).
    pub async fn active_spec(&self, grant: GrantId) -> Result<Option<GrantSpec>, Error> {
        let Some(row) = store::find(&self.pool, &grant.to_string()).await? else {
            return Ok(None);
        };
        let grant = row.into_grant()?;
        Ok(grant.is_active().then_some(grant.spec))
    }

    /// Gives `grant` the spec `spec` at its next version.
    async fn set_spec<'e>(
        ex: impl SqliteExecutor<'e>,
        grant: &mut Grant,
        spec: GrantSpec,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        grant.spec = spec;
        grant.version += 1;
        grant.updated_at = now;
        let (id, version) = (grant.id.to_string(), version_i64(grant.version)?);
        Ok(store::set_spec(ex, &id, &spec_json(&grant.spec)?, version, micros(now)).await?)
    }

    /// Tells the revocation view about revoked access tokens.
    pub(crate) fn publish_revoked_ids(&self, ids: Vec<(Vec<u8>, DateTime<Utc>)>) {
        for (id, expires_at) in ids {
            self.revocation.revoke_token_ids([id], expires_at);
        }
    }

    /// Revokes a token family inside `tx`: the family, its refresh tokens and
    /// its unexpired access tokens. Returns the access tokens' revocation ids
    /// (publish them after commit).
    pub(crate) async fn revoke_family_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        family: &str,
    ) -> Result<Vec<(Vec<u8>, DateTime<Utc>)>, Error> {
        let now = micros(self.now());
        families::revoke(&mut **tx, family, now).await?;
        refresh::revoke_family(&mut **tx, family, now).await?;
        let ids = access::revoke_family(&mut **tx, family, now).await?;
        Ok(ids
            .into_iter()
            .map(|r| (r.revocation_id, from_micros(r.expires_at)))
            .collect())
    }
}

/// A version to store.
pub(crate) fn version_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Internal("grant version out of range".into()))
}
