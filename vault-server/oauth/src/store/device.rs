//! `device_codes`: RFC 8628 device requests.

use sqlx::SqliteExecutor;

/// A device request to store (status `pending`).
pub(crate) struct NewDeviceCode<'a> {
    /// SHA-256 of the device code.
    pub device_code_hash: &'a [u8],
    /// The user code, normalized.
    pub user_code: &'a str,
    /// The app.
    pub app_id: &'a str,
    /// The requested spec, as JSON.
    pub spec: &'a str,
    /// Creation time, microseconds.
    pub created_at: i64,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// Seconds between polls.
    pub interval_secs: i64,
}

/// A pending request with its app's name, for the verification page.
#[derive(sqlx::FromRow)]
pub(crate) struct PendingRow {
    /// The app.
    pub app_id: String,
    /// The app's name.
    #[sqlx(rename = "name")]
    pub app_name: String,
    /// The requested spec, as JSON.
    pub spec: String,
    /// Expiry, microseconds.
    pub expires_at: i64,
}

/// What a poll needs of a device request.
#[derive(sqlx::FromRow)]
pub(crate) struct PollRow {
    /// The app.
    pub app_id: String,
    /// `pending`, `approved`, `denied` or `used`.
    pub status: String,
    /// The grant, once approved.
    pub grant_id: Option<String>,
    /// The token family, once approved.
    pub family_id: Option<String>,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// Seconds between polls.
    pub interval_secs: i64,
    /// The previous poll, microseconds.
    pub last_poll_at: Option<i64>,
}

/// Stores a new request. A taken user code is a unique violation.
pub(crate) async fn insert<'e>(ex: impl SqliteExecutor<'e>, new: &NewDeviceCode<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO device_codes (device_code_hash, user_code, app_id, spec, status, created_at, expires_at, \
         interval_secs) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
    )
    .bind(new.device_code_hash)
    .bind(new.user_code)
    .bind(new.app_id)
    .bind(new.spec)
    .bind(new.created_at)
    .bind(new.expires_at)
    .bind(new.interval_secs)
    .execute(ex)
    .await?;
    Ok(())
}

/// Deletes the requests that expired before `now`.
pub(crate) async fn delete_expired<'e>(ex: impl SqliteExecutor<'e>, now: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM device_codes WHERE expires_at < ?")
        .bind(now)
        .execute(ex)
        .await?;
    Ok(())
}

/// The pending, unexpired request of a (normalized) user code.
pub(crate) async fn find_pending<'e>(
    ex: impl SqliteExecutor<'e>,
    user_code: &str,
    now: i64,
) -> sqlx::Result<Option<PendingRow>> {
    sqlx::query_as(
        "SELECT d.app_id, a.name, d.spec, d.expires_at FROM device_codes d JOIN apps a ON a.client_id = d.app_id \
         WHERE d.user_code = ? AND d.status = 'pending' AND d.expires_at > ?",
    )
    .bind(user_code)
    .bind(now)
    .fetch_optional(ex)
    .await
}

/// Marks a pending request approved for a grant and family; the number of
/// rows changed (1, or 0 if it was not pending any more).
pub(crate) async fn approve<'e>(
    ex: impl SqliteExecutor<'e>,
    user_code: &str,
    now: i64,
    user_id: &str,
    grant_id: &str,
    family_id: &str,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE device_codes SET status = 'approved', user_id = ?, grant_id = ?, family_id = ? \
         WHERE user_code = ? AND status = 'pending' AND expires_at > ?",
    )
    .bind(user_id)
    .bind(grant_id)
    .bind(family_id)
    .bind(user_code)
    .bind(now)
    .execute(ex)
    .await?
    .rows_affected())
}

/// Marks a pending request denied; the number of rows changed.
pub(crate) async fn deny<'e>(ex: impl SqliteExecutor<'e>, user_code: &str, now: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE device_codes SET status = 'denied' WHERE user_code = ? AND status = 'pending' AND expires_at > ?",
    )
    .bind(user_code)
    .bind(now)
    .execute(ex)
    .await?
    .rows_affected())
}

/// The request of a device code, for a poll.
pub(crate) async fn find_for_poll<'e>(
    ex: impl SqliteExecutor<'e>,
    device_code_hash: &[u8],
) -> sqlx::Result<Option<PollRow>> {
    sqlx::query_as(
        "SELECT app_id, status, grant_id, family_id, expires_at, interval_secs, last_poll_at \
         FROM device_codes WHERE device_code_hash = ?",
    )
    .bind(device_code_hash)
    .fetch_optional(ex)
    .await
}

/// A poll came too fast: the interval grows by 5 s.
pub(crate) async fn slow_down<'e>(ex: impl SqliteExecutor<'e>, device_code_hash: &[u8], now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE device_codes SET interval_secs = interval_secs + 5, last_poll_at = ? WHERE device_code_hash = ?",
    )
    .bind(now)
    .bind(device_code_hash)
    .execute(ex)
    .await?;
    Ok(())
}

/// Records the time of a poll.
pub(crate) async fn record_poll<'e>(
    ex: impl SqliteExecutor<'e>,
    device_code_hash: &[u8],
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE device_codes SET last_poll_at = ? WHERE device_code_hash = ?")
        .bind(now)
        .bind(device_code_hash)
        .execute(ex)
        .await?;
    Ok(())
}

/// Marks a request used (its tokens were issued).
pub(crate) async fn mark_used<'e>(ex: impl SqliteExecutor<'e>, device_code_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("UPDATE device_codes SET status = 'used' WHERE device_code_hash = ?")
        .bind(device_code_hash)
        .execute(ex)
        .await?;
    Ok(())
}
