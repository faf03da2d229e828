//! `dpop_proofs`: the proofs seen, against replay.

use sqlx::SqliteExecutor;

/// Records a proof; `false` if it was recorded before (a replay).
pub(crate) async fn record_proof<'e>(
    ex: impl SqliteExecutor<'e>,
    jti_hash: &[u8],
    expires_at: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query("INSERT INTO dpop_proofs (jti_hash, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(jti_hash)
        .bind(expires_at)
        .execute(ex)
        .await?
        .rows_affected();
    Ok(inserted > 0)
}
