//! Every SQL statement of coffer-oauth, one file per table group, with
//! named row structs. Callers pass an executor (the pool or a transaction's
//! connection) and get typed rows back; the checks and decisions stay with
//! the callers. The tables come from `migrations/sqlite/oauth`,
//! applied by [`migrate`].
//!
//! | module | tables |
//! |---|---|
//! | [`accounts`] | `users`, `sessions`, `login_attempts` (and deleting an account) |
//! | [`apps`] | `apps` |
//! | [`grants`] | `grants` |
//! | [`par`] | `par_requests` |
//! | [`codes`] | `authorization_codes` |
//! | [`device`] | `device_codes` |
//! | [`families`] | `token_families` |
//! | [`refresh`] | `refresh_tokens` |
//! | [`access`] | `access_tokens` |
//! | [`dpop`] | `dpop_proofs` |

use sqlx::SqlitePool;

pub(crate) mod access;
pub(crate) mod accounts;
pub(crate) mod apps;
pub(crate) mod codes;
pub(crate) mod device;
pub(crate) mod dpop;
pub(crate) mod families;
pub(crate) mod grants;
pub(crate) mod par;
pub(crate) mod refresh;

/// Brings coffer-oauth's tables in the control database up to date: applies
/// the migrations of `migrations/sqlite/oauth` that have not run yet.
/// Run it after the storage engine has opened the database (the `users`
/// table refers to `vaults`). Both keep their versions in sqlx's one
/// migrations table, with distinct version numbers, so each ignores the
/// other's (decision 0023). A database whose tables were made when all
/// migrations were in one folder is already up to date.
pub async fn migrate(pool: &SqlitePool) -> Result<(), crate::Error> {
    let mut migrator = sqlx::migrate!("../../migrations/sqlite/oauth");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.map_err(sqlx::Error::from)?;
    Ok(())
}

/// Deletes the short-lived rows that expired before `now` (codes, PAR
/// requests, device codes, sessions, DPoP replay entries, refresh tokens,
/// access token records) and the sign-in failures before `login_cutoff`;
/// how many rows went.
pub(crate) async fn purge_expired(pool: &SqlitePool, now: i64, login_cutoff: i64) -> sqlx::Result<u64> {
    let mut total = 0;
    for (sql, cutoff) in [
        ("DELETE FROM authorization_codes WHERE expires_at < ?", now),
        ("DELETE FROM par_requests WHERE expires_at < ?", now),
        ("DELETE FROM device_codes WHERE expires_at < ?", now),
        ("DELETE FROM sessions WHERE expires_at < ?", now),
        ("DELETE FROM login_attempts WHERE at < ?", login_cutoff),
        ("DELETE FROM dpop_proofs WHERE expires_at < ?", now),
        ("DELETE FROM refresh_tokens WHERE expires_at < ?", now),
        ("DELETE FROM access_tokens WHERE expires_at < ?", now),
    ] {
        total += sqlx::query(sql).bind(cutoff).execute(pool).await?.rows_affected();
    }
    Ok(total)
}
