//! `refresh_tokens` as the token endpoint uses them.

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteExecutor};

/// A refresh token to store.
pub(crate) struct NewRefreshToken<'a> {
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// The token family.
    pub family_id: &'a str,
    /// The client.
    pub app_id: &'a str,
    /// The grant.
    pub grant_id: &'a str,
    /// The hash of the token this one replaces.
    pub parent_hash: Option<&'a [u8]>,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// What a refresh needs of a refresh token.
#[derive(sqlx::FromRow)]
pub(crate) struct RefreshRow {
    /// The token family.
    pub family_id: String,
    /// The client.
    pub app_id: String,
    /// The grant.
    pub grant_id: String,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// When it was rotated, microseconds.
    pub used_at: Option<i64>,
    /// When it was revoked, microseconds.
    pub revoked_at: Option<i64>,
}

/// Who a refresh token belongs to, for revocation.
#[derive(sqlx::FromRow)]
pub(crate) struct OwnerRow {
    /// The token family.
    pub family_id: String,
    /// The client.
    pub app_id: String,
}

/// A refresh token with its family, for introspection.
pub(crate) struct IntrospectRow {
    /// The client.
    pub app_id: String,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// When it was rotated, microseconds.
    pub used_at: Option<i64>,
    /// When it was revoked, microseconds.
    pub revoked_at: Option<i64>,
    /// The family's user.
    pub user_id: String,
    /// The family's spec, as JSON.
    pub spec: String,
    /// The DPoP key the family is bound to.
    pub dpop_jkt: Option<String>,
    /// When the family was revoked, microseconds.
    pub family_revoked_at: Option<i64>,
    /// The family's grant.
    pub grant_id: String,
}

// By position: the query selects both tables' `revoked_at`.
impl FromRow<'_, SqliteRow> for IntrospectRow {
    fn from_row(row: &SqliteRow) -> sqlx::Result<Self> {
        Ok(Self {
            app_id: row.try_get(0)?,
            created_at: row.try_get(1)?,
            expires_at: row.try_get(2)?,
            used_at: row.try_get(3)?,
            revoked_at: row.try_get(4)?,
            user_id: row.try_get(5)?,
            spec: row.try_get(6)?,
            dpop_jkt: row.try_get(7)?,
            family_revoked_at: row.try_get(8)?,
            grant_id: row.try_get(9)?,
        })
    }
}

/// Stores a new refresh token.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewRefreshToken<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, app_id, grant_id, parent_hash, created_at, \
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.token_hash)
    .bind(new.family_id)
    .bind(new.app_id)
    .bind(new.grant_id)
    .bind(new.parent_hash)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// The refresh token with this hash.
pub(crate) async fn find<'e>(ex: impl SqliteExecutor<'e>, token_hash: &[u8]) -> sqlx::Result<Option<RefreshRow>> {
    sqlx::query_as(
        "SELECT family_id, app_id, grant_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(ex)
    .await
}

/// Marks a refresh token rotated.
pub(crate) async fn mark_used<'e>(ex: impl SqliteExecutor<'e>, token_hash: &[u8], now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?")
        .bind(now)
        .bind(token_hash)
        .execute(ex)
        .await?;
    Ok(())
}

/// The family and client of the refresh token with this hash.
pub(crate) async fn find_owner<'e>(ex: impl SqliteExecutor<'e>, token_hash: &[u8]) -> sqlx::Result<Option<OwnerRow>> {
    sqlx::query_as("SELECT family_id, app_id FROM refresh_tokens WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_optional(ex)
        .await
}

/// The refresh token with this hash and its family.
pub(crate) async fn find_with_family<'e>(
    ex: impl SqliteExecutor<'e>,
    token_hash: &[u8],
) -> sqlx::Result<Option<IntrospectRow>> {
    sqlx::query_as(
        "SELECT r.app_id, r.created_at, r.expires_at, r.used_at, r.revoked_at, f.user_id, f.spec, f.dpop_jkt, \
         f.revoked_at, f.grant_id, r.family_id FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
         WHERE r.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(ex)
    .await
}

/// Revokes every refresh token of a family (that is not yet revoked).
pub(crate) async fn revoke_family<'e>(ex: impl SqliteExecutor<'e>, family_id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(family_id)
        .execute(ex)
        .await?;
    Ok(())
}
