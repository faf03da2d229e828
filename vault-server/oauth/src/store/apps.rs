//! `apps`: registered OAuth clients.

use sqlx::SqliteExecutor;

use crate::apps::App;
use crate::util::micros;

/// An app as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct AppRow {
    /// The client id.
    pub client_id: String,
    /// The name shown on the consent page.
    pub name: String,
    /// The app's homepage.
    pub homepage: Option<String>,
    /// The app's logo.
    pub logo_url: Option<String>,
    /// The redirect URIs, a JSON array.
    pub redirect_uris: String,
    /// The RFC 7591 name of how it authenticates.
    pub token_endpoint_auth_method: String,
    /// SHA-256 of the client secret (confidential clients).
    pub secret_hash: Option<Vec<u8>>,
    /// The grant types, a JSON array.
    pub grant_types: String,
    /// The scope asked for when a request names none.
    pub default_scope: String,
    /// Registration time, microseconds.
    pub created_at: i64,
    /// The registering user.
    pub registered_by: Option<String>,
}

/// Registers an app, with the hash of its secret (confidential clients).
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, app: &App, secret_hash: Option<&[u8]>) -> sqlx::Result<()> {
    let grant_types: Vec<&str> = app.grant_types.iter().map(|g| g.as_str()).collect();
    sqlx::query(
        "INSERT INTO apps (client_id, name, homepage, logo_url, redirect_uris, kind, token_endpoint_auth_method, \
         secret_hash, grant_types, default_scope, created_at, registered_by) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(app.client_id.as_str())
    .bind(&app.name)
    .bind(&app.homepage)
    .bind(&app.logo_url)
    .bind(serde_json::json!(app.redirect_uris).to_string())
    .bind(app.kind().as_str())
    .bind(app.auth_method.as_str())
    .bind(secret_hash)
    .bind(serde_json::json!(grant_types).to_string())
    .bind(&app.default_scope)
    .bind(micros(app.created_at))
    .bind(app.registered_by.map(|u| u.to_string()))
    .execute(ex)
    .await?;
    Ok(())
}

/// The app with this client id.
pub(crate) async fn find<'e>(ex: impl SqliteExecutor<'e>, client_id: &str) -> sqlx::Result<Option<AppRow>> {
    sqlx::query_as(
        "SELECT client_id, name, homepage, logo_url, redirect_uris, token_endpoint_auth_method, secret_hash, \
         grant_types, default_scope, created_at, registered_by FROM apps WHERE client_id = ?",
    )
    .bind(client_id)
    .fetch_optional(ex)
    .await
}

/// Every app, oldest first.
pub(crate) async fn list<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<Vec<AppRow>> {
    sqlx::query_as(
        "SELECT client_id, name, homepage, logo_url, redirect_uris, token_endpoint_auth_method, secret_hash, \
         grant_types, default_scope, created_at, registered_by FROM apps ORDER BY created_at, client_id",
    )
    .fetch_all(ex)
    .await
}

/// How many apps have no registering user.
pub(crate) async fn count_unowned<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM apps WHERE registered_by IS NULL")
        .fetch_one(ex)
        .await
}

/// Where the `apps` table stands: how many rows and the newest row id.
/// Apps are only ever added (never deleted, their redirect URIs never
/// changed), so each registration changes it.
#[derive(sqlx::FromRow)]
pub(crate) struct AppsMarkRow {
    /// How many apps there are.
    pub apps: i64,
    /// The largest row id (0 when there are none).
    pub newest: i64,
}

/// The table's mark: one small aggregate, no rows read out.
pub(crate) async fn mark<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<AppsMarkRow> {
    sqlx::query_as("SELECT COUNT(*) AS apps, COALESCE(MAX(rowid), 0) AS newest FROM apps")
        .fetch_one(ex)
        .await
}

/// One app's redirect URIs, with its row id.
#[derive(sqlx::FromRow)]
pub(crate) struct RedirectUrisRow {
    /// The row id (the mark's `newest` is the largest).
    pub rowid: i64,
    /// The redirect URIs, a JSON array.
    pub redirect_uris: String,
}

/// Every app's redirect URIs, in one statement (so the mark computed from
/// these rows is the mark of the same snapshot).
pub(crate) async fn all_redirect_uris<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<Vec<RedirectUrisRow>> {
    sqlx::query_as("SELECT rowid, redirect_uris FROM apps ORDER BY rowid")
        .fetch_all(ex)
        .await
}
