//! `par_requests`: pushed authorization requests (RFC 9126).

use sqlx::SqliteExecutor;

/// A pushed request to store.
pub(crate) struct NewPushed<'a> {
    /// SHA-256 of the request URI.
    pub request_hash: &'a [u8],
    /// The client that pushed it.
    pub app_id: &'a str,
    /// The authorization parameters, as JSON.
    pub params: &'a str,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// Stores a pushed request.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewPushed<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO par_requests (request_hash, app_id, params, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(new.request_hash)
    .bind(new.app_id)
    .bind(new.params)
    .bind(new.created_at)
    .bind(new.expires_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// Marks the client's unused, unexpired request used and returns its
/// parameters; `None` if there is no such request.
pub(crate) async fn take<'e>(
    ex: impl SqliteExecutor<'e>,
    request_hash: &[u8],
    app_id: &str,
    now: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "UPDATE par_requests SET used_at = ? \
         WHERE request_hash = ? AND app_id = ? AND used_at IS NULL AND expires_at > ? RETURNING params",
    )
    .bind(now)
    .bind(request_hash)
    .bind(app_id)
    .bind(now)
    .fetch_optional(ex)
    .await
}
