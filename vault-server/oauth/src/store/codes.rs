//! `authorization_codes` as the token endpoint reads them.

use sqlx::SqliteExecutor;

/// What a code exchange needs of an authorization code.
#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    /// The client it was issued to.
    pub app_id: String,
    /// The grant.
    pub grant_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// Whether the request named the redirect URI.
    pub redirect_uri_given: bool,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
    /// The token family the code starts.
    pub family_id: String,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// When it was presented first, microseconds.
    pub used_at: Option<i64>,
}

/// The code with this hash.
pub(crate) async fn find<'e>(ex: impl SqliteExecutor<'e>, code_hash: &[u8]) -> sqlx::Result<Option<CodeRow>> {
    sqlx::query_as(
        "SELECT app_id, grant_id, redirect_uri, redirect_uri_given, code_challenge, dpop_jkt, family_id, \
             expires_at, used_at FROM authorization_codes WHERE code_hash = ?",
    )
    .bind(code_hash)
    .fetch_optional(ex)
    .await
}

/// Burns a code.
pub(crate) async fn mark_used<'e>(ex: impl SqliteExecutor<'e>, code_hash: &[u8], now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE authorization_codes SET used_at = ? WHERE code_hash = ?")
        .bind(now)
        .bind(code_hash)
        .execute(ex)
        .await?;
    Ok(())
}

/// An authorization code to store.
pub(crate) struct NewCode<'a> {
    /// SHA-256 of the code.
    pub code_hash: &'a [u8],
    /// The client.
    pub app_id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The grant.
    pub grant_id: &'a str,
    /// The grant's version at approval.
    pub grant_version: i64,
    /// The redirect URI of the authorization request.
    pub redirect_uri: &'a str,
    /// Whether the request named the redirect URI.
    pub redirect_uri_given: bool,
    /// The PKCE S256 challenge.
    pub code_challenge: &'a str,
    /// The DPoP key the code is bound to.
    pub dpop_jkt: Option<&'a str>,
    /// The token family the code starts.
    pub family_id: &'a str,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// Stores a new authorization code.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewCode<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, app_id, user_id, grant_id, grant_version, redirect_uri, \
         redirect_uri_given, code_challenge, dpop_jkt, family_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.code_hash)
    .bind(new.app_id)
    .bind(new.user_id)
    .bind(new.grant_id)
    .bind(new.grant_version)
    .bind(new.redirect_uri)
    .bind(new.redirect_uri_given)
    .bind(new.code_challenge)
    .bind(new.dpop_jkt)
    .bind(new.family_id)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}
