//! `token_families` as the token endpoint reads them.

use sqlx::SqliteExecutor;

/// A token family: one authorization and the tokens issued for it.
#[derive(sqlx::FromRow)]
pub(crate) struct FamilyRow {
    /// The family id.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// What the family allows, as JSON.
    pub spec: String,
    /// The DPoP key the family is bound to.
    pub dpop_jkt: Option<String>,
    /// When it was revoked, microseconds.
    pub revoked_at: Option<i64>,
}

/// The family with this id.
pub(crate) async fn find<'e>(ex: impl SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<FamilyRow>> {
    sqlx::query_as("SELECT id, user_id, spec, dpop_jkt, revoked_at FROM token_families WHERE id = ?")
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// Binds a family to a DPoP key.
pub(crate) async fn bind_key<'e>(ex: impl SqliteExecutor<'e>, id: &str, jkt: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE token_families SET dpop_jkt = ? WHERE id = ?")
        .bind(jkt)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// A token family to start.
pub(crate) struct NewFamily<'a> {
    /// The family id.
    pub id: &'a str,
    /// The client.
    pub app_id: &'a str,
    /// The grant.
    pub grant_id: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// What the family allows, as JSON.
    pub spec: &'a str,
    /// Creation time, microseconds.
    pub created_at: i64,
}

/// Starts a token family.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewFamily<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO token_families (id, app_id, grant_id, user_id, spec, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(new.id)
    .bind(new.app_id)
    .bind(new.grant_id)
    .bind(new.user_id)
    .bind(new.spec)
    .bind(new.created_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// The ids of a grant's families that are not revoked.
pub(crate) async fn active_of_grant<'e>(ex: impl SqliteExecutor<'e>, grant_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT id FROM token_families WHERE grant_id = ? AND revoked_at IS NULL")
        .bind(grant_id)
        .fetch_all(ex)
        .await
}

/// Revokes a family (if not yet revoked).
pub(crate) async fn revoke<'e>(ex: impl SqliteExecutor<'e>, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}
