//! `grants`: what one user allowed one app.

use sqlx::SqliteExecutor;

use crate::grants::Grant;
use crate::util::micros;

/// A grant as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    /// The grant id.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The user's vault.
    pub vault_id: String,
    /// The app.
    pub app_id: String,
    /// What it allows, as JSON.
    pub spec: String,
    /// Bumped on every change.
    pub version: i64,
    /// `active` or `revoked`.
    pub status: String,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Last change, microseconds.
    pub updated_at: i64,
    /// Last use, microseconds.
    pub last_access_at: Option<i64>,
}

/// A grant with what the dashboard shows of its app.
#[derive(sqlx::FromRow)]
pub(crate) struct GrantAppRow {
    /// The grant.
    #[sqlx(flatten)]
    pub grant: GrantRow,
    /// The app's name.
    pub name: String,
    /// The app's homepage.
    pub homepage: Option<String>,
    /// The app's logo.
    pub logo_url: Option<String>,
}

/// A grant's version and status, for the revocation view.
#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    /// The grant id.
    pub id: String,
    /// Bumped on every change.
    pub version: i64,
    /// `active` or `revoked`.
    pub status: String,
}

/// The columns of [`GrantRow`].
const COLUMNS: &str = "id, user_id, vault_id, app_id, spec, version, status, created_at, updated_at, last_access_at";

/// The grant with this id.
pub(crate) async fn find<'e>(ex: impl SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<GrantRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM grants WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(ex)
    .await
}

/// The active grant of a user for an app.
pub(crate) async fn find_active<'e>(
    ex: impl SqliteExecutor<'e>,
    user_id: &str,
    app_id: &str,
) -> sqlx::Result<Option<GrantRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM grants WHERE user_id = ? AND app_id = ? AND status = 'active'"
    )))
    .bind(user_id)
    .bind(app_id)
    .fetch_optional(ex)
    .await
}

/// Every grant of a user with its app: active first, then newest first.
pub(crate) async fn list_with_apps<'e>(ex: impl SqliteExecutor<'e>, user_id: &str) -> sqlx::Result<Vec<GrantAppRow>> {
    sqlx::query_as(
        "SELECT g.id, g.user_id, g.vault_id, g.app_id, g.spec, g.version, g.status, g.created_at, g.updated_at, \
         g.last_access_at, a.name, a.homepage, a.logo_url FROM grants g \
         JOIN apps a ON a.client_id = g.app_id WHERE g.user_id = ? \
         ORDER BY g.status = 'active' DESC, g.created_at DESC, g.id DESC",
    )
    .bind(user_id)
    .fetch_all(ex)
    .await
}

/// The ids of a user's grants.
pub(crate) async fn ids_of_user<'e>(ex: impl SqliteExecutor<'e>, user_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT id FROM grants WHERE user_id = ?")
        .bind(user_id)
        .fetch_all(ex)
        .await
}

/// Every grant's version and status.
pub(crate) async fn versions<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<Vec<VersionRow>> {
    sqlx::query_as("SELECT id, version, status FROM grants")
        .fetch_all(ex)
        .await
}

/// Creates a grant (new: version 1, active), with its spec as JSON.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, grant: &Grant, spec: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO grants (id, user_id, vault_id, app_id, spec, version, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, 1, 'active', ?, ?)",
    )
    .bind(grant.id.to_string())
    .bind(grant.user_id.to_string())
    .bind(grant.vault_id.to_string())
    .bind(grant.app_id.as_str())
    .bind(spec)
    .bind(micros(grant.created_at))
    .bind(micros(grant.updated_at))
    .execute(ex)
    .await?;
    Ok(())
}

/// Sets a grant's spec and version.
pub(crate) async fn set_spec<'e>(
    ex: impl SqliteExecutor<'e>,
    id: &str,
    spec: &str,
    version: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE grants SET spec = ?, version = ?, updated_at = ? WHERE id = ?")
        .bind(spec)
        .bind(version)
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Marks a grant revoked at a new version.
pub(crate) async fn revoke<'e>(ex: impl SqliteExecutor<'e>, id: &str, version: i64, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE grants SET status = 'revoked', version = ?, updated_at = ? WHERE id = ?")
        .bind(version)
        .bind(now)
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Sets a grant's last use to `now` if it was never set or set before
/// `cutoff`.
pub(crate) async fn touch<'e>(ex: impl SqliteExecutor<'e>, id: &str, now: i64, cutoff: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE grants SET last_access_at = ? WHERE id = ? AND (last_access_at IS NULL OR last_access_at < ?)")
        .bind(now)
        .bind(id)
        .bind(cutoff)
        .execute(ex)
        .await?;
    Ok(())
}
