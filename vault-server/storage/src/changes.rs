//! The change feed's read of the commit log: the versions of some tables
//! with `seq` after a position, oldest first, as long as the log still holds
//! every one of them (decision 0025).
//!
//! Sequence numbers are per vault, so one position orders the changes of
//! every table. The log keeps each table's flushed entries for the
//! retention window; [`ControlDb::log_trimmed_upto`] says how far a trim
//! went, and a position before that is [`LogRead::Trimmed`].
//!
//! [`ControlDb::log_trimmed_upto`]: crate::control::ControlDb::log_trimmed_upto

use std::sync::Arc;

use coffer_core::{TableName, VaultId};

use crate::aad::log_aad;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::row::RowVersion;

/// Most sequence numbers one read looks through: a read past a long run of
/// other tables' changes stops there and says how far it got.
pub const SCAN_WINDOW: i64 = 100_000;

/// One change read from the log.
#[derive(Clone, Debug)]
pub struct LogChange {
    /// The table changed.
    pub table: TableName,
    /// The new version (a tombstone for a delete).
    pub version: RowVersion,
}

/// What one read of the log found.
#[derive(Debug)]
pub enum LogRead {
    /// The changes after the position, and how far they go.
    Page {
        /// At most the asked number of changes, oldest first (shared: the
        /// followers of a vault read the same recent changes).
        changes: Vec<Arc<LogChange>>,
        /// Every change of the tables with `seq <= through` has been
        /// returned now or was before the position.
        through: i64,
    },
    /// The log no longer holds every change after the position.
    Trimmed,
}

/// The last sequence number the vault has handed out (0 before its first
/// write). Every change up to it is committed.
pub async fn last_seq(engine: &Engine, vault: VaultId) -> Result<i64, StorageError> {
    engine
        .control()
        .last_seq(vault)
        .await?
        .ok_or(StorageError::VaultNotFound(vault))
}

/// How far a follower of the vault may read now: the sequence number of the
/// newest change to its user tables that the followers' recent changes
/// hold, when the vault is followed; otherwise [`last_seq`]. Every change
/// up to it is committed.
pub async fn log_upto(engine: &Engine, vault: VaultId) -> Result<i64, StorageError> {
    match engine.shared().commits.recent_upto(vault) {
        Some(upto) => Ok(upto),
        None => last_seq(engine, vault).await,
    }
}

/// A version of `tables` together: the sequence number of the newest change
/// to any of them, so it grows whenever one of them is written and stays
/// the same otherwise (a trim of the log does not move it). Read from
/// memory for tables changed or asked about lately, else from the log.
pub async fn tables_version(engine: &Engine, vault: VaultId, tables: &[TableName]) -> Result<i64, StorageError> {
    let shared = engine.shared();
    let mut version = 0;
    for table in tables {
        let name = table.to_string();
        let seq = match shared.versions.get(vault, &name) {
            Some(seq) => seq,
            None => {
                let seq = shared.db.table_last_seq(vault, &name).await?;
                shared.versions.changed(vault, &name, seq);
                seq
            }
        };
        version = version.max(seq);
    }
    Ok(version)
}

/// How far the log of `tables` has been trimmed: the largest sequence
/// number of theirs no longer in the log (0 when none was trimmed).
pub async fn log_trimmed_upto(engine: &Engine, vault: VaultId, tables: &[TableName]) -> Result<i64, StorageError> {
    let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
    engine.control().log_trimmed_upto(vault, &names).await
}

/// Whether the log still holds every change of `tables` after `after`.
pub async fn log_holds_after(
    engine: &Engine,
    vault: VaultId,
    tables: &[TableName],
    after: i64,
) -> Result<bool, StorageError> {
    Ok(log_trimmed_upto(engine, vault, tables).await? <= after)
}

/// The changes of `tables` after `after`, oldest first, at most `limit`,
/// looking through at most [`SCAN_WINDOW`] sequence numbers and never past
/// `upto` (a [`last_seq`] read before).
pub async fn read_log(
    engine: &Engine,
    vault: VaultId,
    tables: &[TableName],
    after: i64,
    upto: i64,
    limit: usize,
) -> Result<LogRead, StorageError> {
    // Served from the followers' recent changes when they hold them all:
    // they are newer than any trim (a trim only removes what was in the
    // log before them).
    if let Some(read) = engine.shared().commits.read_recent(vault, tables, after, upto, limit) {
        return Ok(read);
    }
    let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
    let keys = engine.shared().vault_keys(vault).await?;
    let db = engine.control();
    if db.log_trimmed_upto(vault, &names).await? > after {
        return Ok(LogRead::Trimmed);
    }
    let upto = upto.min(after.saturating_add(SCAN_WINDOW));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX).max(1);
    let entries = db.log_changes(vault, &names, after, upto, limit).await?;
    // A trim may have committed between the check and the read.
    if db.log_trimmed_upto(vault, &names).await? > after {
        return Ok(LogRead::Trimmed);
    }
    let through = match entries.last() {
        Some((seq, _, _)) if entries.len() as i64 == limit => *seq,
        _ => upto.max(after),
    };
    let mut changes = Vec::with_capacity(entries.len());
    for (seq, table, payload) in entries {
        let plain = keys.open(log_aad(vault, &table, seq).as_bytes(), &payload)?;
        let version: RowVersion =
            serde_json::from_slice(&plain).map_err(|e| StorageError::Corrupt(format!("log entry {seq}: {e}")))?;
        let table = tables
            .iter()
            .find(|t| t.to_string() == table)
            .cloned()
            .ok_or_else(|| StorageError::Corrupt(format!("log entry {seq} of an unasked table")))?;
        changes.push(Arc::new(LogChange { table, version }));
    }
    Ok(LogRead::Page { changes, through })
}

/// A keyed tag over a change-feed cursor: bound to the vault (its keys) and
/// to `app`, so that a cursor made up, altered, or taken from another vault
/// or app does not verify. The domain cannot collide with a row hash: no
/// table name contains NUL.
pub async fn cursor_tag(engine: &Engine, vault: VaultId, app: &str, cursor: &str) -> Result<[u8; 16], StorageError> {
    let keys = engine.shared().vault_keys(vault).await?;
    Ok(keys.row_hash(&format!("\0change-cursor\0{app}"), cursor))
}
