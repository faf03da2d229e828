//! `users`, `sessions` and `login_attempts`: accounts, sign-in throttling
//! and sessions.

use sqlx::{SqliteConnection, SqliteExecutor};

use crate::accounts::User;
use crate::util::micros;

/// A user as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    /// The user id.
    pub id: String,
    /// The email address as typed.
    pub email: String,
    /// The user's vault.
    pub vault_id: String,
    /// Creation time, microseconds.
    pub created_at: i64,
}

/// A user with the hash to check a password against.
#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    /// The user.
    #[sqlx(flatten)]
    pub user: UserRow,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// A session with its user.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    /// The session's CSRF token.
    pub csrf_token: String,
    /// Start, microseconds.
    pub session_created_at: i64,
    /// End, microseconds.
    pub expires_at: i64,
    /// The signed-in user.
    #[sqlx(flatten)]
    pub user: UserRow,
}

/// A session to start.
pub(crate) struct NewSessionRow<'a> {
    /// SHA-256 of the session token.
    pub token_hash: &'a [u8],
    /// The user.
    pub user_id: &'a str,
    /// The session's CSRF token.
    pub csrf_token: &'a str,
    /// Start, microseconds.
    pub created_at: i64,
    /// End, microseconds.
    pub expires_at: i64,
}

/// Whether a user has this email key.
pub(crate) async fn email_taken<'e>(ex: impl SqliteExecutor<'e>, email_key: &str) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE email_key = ?")
        .bind(email_key)
        .fetch_optional(ex)
        .await?;
    Ok(found.is_some())
}

/// Creates a user, with its email key and password hash. A taken email key
/// or vault is a unique violation.
pub(crate) async fn insert_user<'e>(
    ex: impl SqliteExecutor<'e>,
    user: &User,
    email_key: &str,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, email_key, password_hash, vault_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(user.id.to_string())
    .bind(&user.email)
    .bind(email_key)
    .bind(password_hash)
    .bind(user.vault_id.to_string())
    .bind(micros(user.created_at))
    .execute(ex)
    .await?;
    Ok(())
}

/// The user of an email key, with the password hash.
pub(crate) async fn find_credentials<'e>(
    ex: impl SqliteExecutor<'e>,
    email_key: &str,
) -> sqlx::Result<Option<CredentialsRow>> {
    sqlx::query_as("SELECT id, email, vault_id, password_hash, created_at FROM users WHERE email_key = ?")
        .bind(email_key)
        .fetch_optional(ex)
        .await
}

/// One user.
pub(crate) async fn find_user<'e>(ex: impl SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT id, email, vault_id, created_at FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// Every user, oldest first.
pub(crate) async fn list_users<'e>(ex: impl SqliteExecutor<'e>) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as("SELECT id, email, vault_id, created_at FROM users ORDER BY created_at, id")
        .fetch_all(ex)
        .await
}

/// The times of the newest `limit` failed sign-ins for an email key and
/// address after `since`, newest first.
pub(crate) async fn recent_failures<'e>(
    ex: impl SqliteExecutor<'e>,
    email_key: &str,
    client_ip: &str,
    since: i64,
    limit: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT at FROM login_attempts WHERE email_key = ? AND client_ip = ? AND at > ? ORDER BY at DESC LIMIT ?",
    )
    .bind(email_key)
    .bind(client_ip)
    .bind(since)
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Records a failed sign-in.
pub(crate) async fn record_failure<'e>(
    ex: impl SqliteExecutor<'e>,
    email_key: &str,
    client_ip: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO login_attempts (email_key, client_ip, at) VALUES (?, ?, ?)")
        .bind(email_key)
        .bind(client_ip)
        .bind(at)
        .execute(ex)
        .await?;
    Ok(())
}

/// Forgets the failed sign-ins of an email key and address.
pub(crate) async fn clear_failures<'e>(
    ex: impl SqliteExecutor<'e>,
    email_key: &str,
    client_ip: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_attempts WHERE email_key = ? AND client_ip = ?")
        .bind(email_key)
        .bind(client_ip)
        .execute(ex)
        .await?;
    Ok(())
}

/// Starts a session.
pub(crate) async fn insert_session<'e>(ex: impl SqliteExecutor<'e>, new: &NewSessionRow<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(new.token_hash)
    .bind(new.user_id)
    .bind(new.csrf_token)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// The session of a token hash, with its user.
pub(crate) async fn find_session<'e>(
    ex: impl SqliteExecutor<'e>,
    token_hash: &[u8],
) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT s.csrf_token, s.created_at AS session_created_at, s.expires_at, u.id, u.email, u.vault_id, \
         u.created_at FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(ex)
    .await
}

/// Ends the session of a token hash.
pub(crate) async fn delete_session<'e>(ex: impl SqliteExecutor<'e>, token_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(ex)
        .await?;
    Ok(())
}

/// Ends every session of a user; how many there were.
pub(crate) async fn delete_sessions_of<'e>(ex: impl SqliteExecutor<'e>, user_id: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .execute(ex)
        .await?
        .rows_affected())
}

/// The email key of a user.
pub(crate) async fn email_key_of<'e>(ex: impl SqliteExecutor<'e>, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT email_key FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(ex)
        .await
}

/// Deletes a user and every row that names it or its grants, children
/// before parents (foreign keys are on); apps it registered stay but no
/// longer name it. How many rows went (the user's included; the apps'
/// updates not).
pub(crate) async fn delete_user(conn: &mut SqliteConnection, id: &str, email_key: &str) -> sqlx::Result<u64> {
    let mut rows = 0;
    for sql in [
        "DELETE FROM access_tokens WHERE user_id = ?1 \
         OR grant_id IN (SELECT id FROM grants WHERE user_id = ?1)",
        "DELETE FROM refresh_tokens WHERE family_id IN (SELECT id FROM token_families WHERE user_id = ?1) \
         OR grant_id IN (SELECT id FROM grants WHERE user_id = ?1)",
        "DELETE FROM authorization_codes WHERE user_id = ?1",
        "DELETE FROM device_codes WHERE user_id = ?1 \
         OR grant_id IN (SELECT id FROM grants WHERE user_id = ?1)",
        "DELETE FROM token_families WHERE user_id = ?1",
        "DELETE FROM sessions WHERE user_id = ?1",
        "DELETE FROM grants WHERE user_id = ?1",
    ] {
        rows += sqlx::query(sql).bind(id).execute(&mut *conn).await?.rows_affected();
    }
    rows += sqlx::query("DELETE FROM login_attempts WHERE email_key = ?")
        .bind(email_key)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("UPDATE apps SET registered_by = NULL WHERE registered_by = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    rows += sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(rows)
}
