//! `access_tokens`: the record of every access token minted.

use sqlx::SqliteExecutor;

/// An access token to record.
pub(crate) struct NewAccessToken<'a> {
    /// The authority block's revocation id.
    pub revocation_id: &'a [u8],
    /// The token family.
    pub family_id: &'a str,
    /// The client.
    pub app_id: &'a str,
    /// The grant.
    pub grant_id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The DPoP key it is bound to.
    pub dpop_jkt: Option<&'a str>,
    /// Issue time, microseconds.
    pub issued_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// What introspection needs of an access token's record.
#[derive(sqlx::FromRow)]
pub(crate) struct AccessTokenRow {
    /// The user.
    pub user_id: String,
    /// The DPoP key it is bound to.
    pub dpop_jkt: Option<String>,
    /// When it was revoked, microseconds.
    pub revoked_at: Option<i64>,
}

/// Records a minted access token.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewAccessToken<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO access_tokens (revocation_id, family_id, app_id, grant_id, user_id, dpop_jkt, issued_at, \
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.revocation_id)
    .bind(new.family_id)
    .bind(new.app_id)
    .bind(new.grant_id)
    .bind(new.user_id)
    .bind(new.dpop_jkt)
    .bind(new.issued_at)
    .bind(new.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// Revokes the access token with this revocation id (if not yet revoked).
pub(crate) async fn revoke<'e>(ex: impl SqliteExecutor<'e>, revocation_id: &[u8], now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE access_tokens SET revoked_at = ? WHERE revocation_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(revocation_id)
        .execute(ex)
        .await?;
    Ok(())
}

/// The record of the access token with this revocation id.
pub(crate) async fn find<'e>(
    ex: impl SqliteExecutor<'e>,
    revocation_id: &[u8],
) -> sqlx::Result<Option<AccessTokenRow>> {
    sqlx::query_as("SELECT user_id, dpop_jkt, revoked_at FROM access_tokens WHERE revocation_id = ?")
        .bind(revocation_id)
        .fetch_optional(ex)
        .await
}

/// A revoked access token that has not expired yet.
#[derive(sqlx::FromRow)]
pub(crate) struct RevokedRow {
    /// The authority block's revocation id.
    pub revocation_id: Vec<u8>,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// Revokes a family's unexpired access tokens (that are not yet revoked);
/// returns them.
pub(crate) async fn revoke_family<'e>(
    ex: impl SqliteExecutor<'e>,
    family_id: &str,
    now: i64,
) -> sqlx::Result<Vec<RevokedRow>> {
    sqlx::query_as(
        "UPDATE access_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL AND expires_at > ? \
         RETURNING revocation_id, expires_at",
    )
    .bind(now)
    .bind(family_id)
    .bind(now)
    .fetch_all(ex)
    .await
}

/// The revoked access tokens that have not expired at `now`.
pub(crate) async fn revoked_unexpired<'e>(ex: impl SqliteExecutor<'e>, now: i64) -> sqlx::Result<Vec<RevokedRow>> {
    sqlx::query_as(
        "SELECT revocation_id, expires_at FROM access_tokens WHERE revoked_at IS NOT NULL AND expires_at > ?",
    )
    .bind(now)
    .fetch_all(ex)
    .await
}
