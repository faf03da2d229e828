//! Grants: what one user allowed one app. Creating and widening (consent),
//! the dashboard's list, revoke and narrow, last access, and keeping the
//! [`coffer_auth::RevocationView`] current.

use chrono::{DateTime, Utc};
use coffer_auth::{GrantSpec, GrantStatus};
use coffer_core::{AppId, GrantId, UserId, VaultId};
use serde::Serialize;
use sqlx::{Sqlite, Transaction};

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

#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    id: String,
    user_id: String,
    vault_id: String,
    app_id: String,
    spec: String,
    version: i64,
    status: String,
    created_at: i64,
    updated_at: i64,
    last_access_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct GrantAppRow {
    #[sqlx(flatten)]
    grant: GrantRow,
    name: String,
    homepage: Option<String>,
    logo_url: Option<String>,
}

pub(crate) const GRANT_COLUMNS: &str =
    "id, user_id, vault_id, app_id, spec, version, status, created_at, updated_at, last_access_at";

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("stored grant: invalid {what}"))
}

pub(crate) fn parse_spec(json: &str) -> Result<GrantSpec, Error> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored grant spec is invalid: {e}")))
}

pub(crate) fn spec_json(spec: &GrantSpec) -> Result<String, Error> {
    serde_json::to_string(spec).map_err(|e| Error::Internal(format!("grant spec: {e}")))
}

impl GrantRow {
    pub(crate) fn into_grant(self) -> Result<Grant, Error> {
        Ok(Grant {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            user_id: self.user_id.parse().map_err(|_| corrupt("user"))?,
            vault_id: self.vault_id.parse().map_err(|_| corrupt("vault"))?,
            app_id: AppId::new(self.app_id),
            spec: parse_spec(&self.spec)?,
            version: u64::try_from(self.version).map_err(|_| corrupt("version"))?,
            status: match self.status.as_str() {
                "active" => GrantStatus::Active,
                _ => GrantStatus::Revoked,
            },
            created_at: from_micros(self.created_at),
            updated_at: from_micros(self.updated_at),
            last_access_at: self.last_access_at.map(from_micros),
        })
    }
}

/// The outcome of [`OAuthServer::upsert_grant`].
pub(crate) struct Upserted {
    pub grant: Grant,
    /// Whether the grant was created or its version bumped (the revocation
    /// view must learn it after commit).
    pub changed: bool,
}

impl OAuthServer {
    pub(crate) async fn active_grant(&self, user: UserId, app: &str) -> Result<Option<Grant>, Error> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE user_id = ? AND app_id = ? AND status = 'active'");
        sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(app)
            .fetch_optional(&self.pool)
            .await?
            .map(GrantRow::into_grant)
            .transpose()
    }

    pub(crate) async fn grant_in(tx: &mut Transaction<'static, Sqlite>, id: &str) -> Result<Option<Grant>, Error> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?");
        sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .map(GrantRow::into_grant)
            .transpose()
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
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE user_id = ? AND app_id = ? AND status = 'active'");
        let existing = sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(app.as_str())
            .fetch_optional(&mut **tx)
            .await?
            .map(GrantRow::into_grant)
            .transpose()?;
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
                sqlx::query(
                    "INSERT INTO grants (id, user_id, vault_id, app_id, spec, version, status, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, 1, 'active', ?, ?)",
                )
                .bind(grant.id.to_string())
                .bind(user.to_string())
                .bind(vault.to_string())
                .bind(app.as_str())
                .bind(spec_json(approved)?)
                .bind(micros(now))
                .bind(micros(now))
                .execute(&mut **tx)
                .await?;
                Ok(Upserted { grant, changed: true })
            }
            Some(mut grant) => {
                let merged = grant.spec.widen(approved);
                if merged == grant.spec {
                    return Ok(Upserted { grant, changed: false });
                }
                grant.spec = merged;
                grant.version += 1;
                grant.updated_at = now;
                sqlx::query("UPDATE grants SET spec = ?, version = ?, updated_at = ? WHERE id = ?")
                    .bind(spec_json(&grant.spec)?)
                    .bind(version_i64(grant.version)?)
                    .bind(micros(now))
                    .bind(grant.id.to_string())
                    .execute(&mut **tx)
                    .await?;
                Ok(Upserted { grant, changed: true })
            }
        }
    }

    /// One grant of `user` ([`Error::NotFound`] if it is not theirs).
    pub async fn grant(&self, user: UserId, grant: GrantId) -> Result<Grant, Error> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ? AND user_id = ?");
        sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql))
            .bind(grant.to_string())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("grant"))?
            .into_grant()
    }

    /// Every grant of `user` (active first, then newest first), with its app.
    pub async fn grants_for_user(&self, user: UserId) -> Result<Vec<GrantWithApp>, Error> {
        let rows: Vec<GrantAppRow> = sqlx::query_as(
            "SELECT g.id, g.user_id, g.vault_id, g.app_id, g.spec, g.version, g.status, g.created_at, g.updated_at, \
             g.last_access_at, a.name, a.homepage, a.logo_url FROM grants g \
             JOIN apps a ON a.client_id = g.app_id WHERE g.user_id = ? \
             ORDER BY g.status = 'active' DESC, g.created_at DESC, g.id DESC",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
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
        let mut g = Self::grant_in(&mut tx, &grant.to_string())
            .await?
            .filter(|g| g.user_id == user)
            .ok_or(Error::NotFound("grant"))?;
        if !g.is_active() {
            return Ok(g);
        }
        let now = self.now();
        g.version += 1;
        g.status = GrantStatus::Revoked;
        g.updated_at = now;
        sqlx::query("UPDATE grants SET status = 'revoked', version = ?, updated_at = ? WHERE id = ?")
            .bind(version_i64(g.version)?)
            .bind(micros(now))
            .bind(grant.to_string())
            .execute(&mut *tx)
            .await?;
        let families: Vec<String> =
            sqlx::query_scalar("SELECT id FROM token_families WHERE grant_id = ? AND revoked_at IS NULL")
                .bind(grant.to_string())
                .fetch_all(&mut *tx)
                .await?;
        let mut revoked_ids = Vec::new();
        for family in families {
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
        let mut g = Self::grant_in(&mut tx, &grant.to_string())
            .await?
            .filter(|g| g.user_id == user)
            .ok_or(Error::NotFound("grant"))?;
        if !g.is_active() {
            return Err(Error::invalid_request("the grant is revoked"));
        }
        if !spec.is_subset_of(&g.spec) {
            return Err(Error::invalid_scope("narrowing can only remove access, not add it"));
        }
        if *spec == g.spec {
            return Ok(g);
        }
        let now = self.now();
        g.spec = spec.clone();
        g.version += 1;
        g.updated_at = now;
        sqlx::query("UPDATE grants SET spec = ?, version = ?, updated_at = ? WHERE id = ?")
            .bind(spec_json(spec)?)
            .bind(version_i64(g.version)?)
            .bind(micros(now))
            .bind(grant.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.revocation.set_grant(g.id, g.version, GrantStatus::Active);
        Ok(g)
    }

    /// Records that the grant was used now (for the dashboard). Writes at
    /// most once a minute per grant, so the gateway may call it on every
    /// request.
    pub async fn touch_grant(&self, grant: GrantId) -> Result<(), Error> {
        let now = micros(self.now());
        sqlx::query(
            "UPDATE grants SET last_access_at = ? WHERE id = ? AND (last_access_at IS NULL OR last_access_at < ?)",
        )
        .bind(now)
        .bind(grant.to_string())
        .bind(now - 60_000_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fills the revocation view from the database: every grant's version
    /// and status, and the revoked access tokens that have not expired yet.
    /// Call it once at startup. Returns the number of grants loaded.
    pub async fn load_revocation_view(&self) -> Result<usize, Error> {
        let grants: Vec<(String, i64, String)> = sqlx::query_as("SELECT id, version, status FROM grants")
            .fetch_all(&self.pool)
            .await?;
        for (id, version, status) in &grants {
            let id: GrantId = id.parse().map_err(|_| corrupt("id"))?;
            let status = if status == "active" {
                GrantStatus::Active
            } else {
                GrantStatus::Revoked
            };
            self.revocation
                .set_grant(id, u64::try_from(*version).unwrap_or(0), status);
        }
        let revoked: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT revocation_id, expires_at FROM access_tokens WHERE revoked_at IS NOT NULL AND expires_at > ?",
        )
        .bind(micros(self.now()))
        .fetch_all(&self.pool)
        .await?;
        self.publish_revoked_ids(revoked.into_iter().map(|(id, exp)| (id, from_micros(exp))).collect());
        Ok(grants.len())
    }

    /// Loads one grant's version and status from the database into the
    /// revocation view, e.g. when the authorizer reports an unknown grant
    /// (`DeniedKind::UnknownGrant`). Returns whether the grant exists.
    pub async fn sync_grant(&self, grant: GrantId) -> Result<bool, Error> {
        let row: Option<(i64, String)> = sqlx::query_as("SELECT version, status FROM grants WHERE id = ?")
            .bind(grant.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some((version, status)) = row else {
            return Ok(false);
        };
        let status = if status == "active" {
            GrantStatus::Active
        } else {
            GrantStatus::Revoked
        };
        self.revocation
            .set_grant(grant, u64::try_from(version).unwrap_or(0), status);
        Ok(true)
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
        sqlx::query("UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(family)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(family)
            .execute(&mut **tx)
            .await?;
        let ids: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "UPDATE access_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL AND expires_at > ? \
             RETURNING revocation_id, expires_at",
        )
        .bind(now)
        .bind(family)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        Ok(ids.into_iter().map(|(id, exp)| (id, from_micros(exp))).collect())
    }
}

pub(crate) fn version_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Internal("grant version out of range".into()))
}
