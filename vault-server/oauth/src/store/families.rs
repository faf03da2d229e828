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
