//! Background maintenance: flushing log tails to data files, compacting
//! files, trimming the log past the sync window, and purging deleted vaults.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coffer_core::{TableName, VaultId};
use datafusion::arrow::array::RecordBatch;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use ulid::Ulid;

use crate::aad::manifest_aad;
use crate::arrow_codec::rows_to_batch;
use crate::control::now_micros;
use crate::error::StorageError;
use crate::files::{merge_newest, read_file, write_file};
use crate::layout::VaultPrefix;
use crate::manifest::{DataFile, Manifest};
use crate::shared::Shared;

/// Files replaced by a compaction stay this long for readers still using
/// an older manifest.
const REPLACED_FILE_GRACE: Duration = Duration::from_secs(120);

/// A table name from the tail index (system tables included).
fn stored_table_name(table: &str) -> Result<TableName, StorageError> {
    crate::system::parse_stored_table_name(table)
        .ok_or_else(|| StorageError::Corrupt(format!("invalid table name `{table}`")))
}

/// The background worker: flushes on a timer or when a table's tail grows
/// past the threshold, compacts what it flushed, and purges deleted vaults.
pub(crate) async fn run(shared: Arc<Shared>) {
    let interval = shared.options.flush_interval;
    loop {
        let _ = tokio::time::timeout(interval, shared.wake.notified()).await;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = shared.refresh_schemas().await {
            tracing::warn!(error = %e, "reloading the published schemas failed");
        }
        if let Err(e) = shared.forget_deleted_elsewhere().await {
            tracing::warn!(error = %e, "looking for deleted vaults failed");
        }
        if let Err(e) = flush_pending(&shared, 1).await {
            tracing::warn!(error = %e, "flush failed");
        }
        if let Err(e) = purge_deleted(&shared).await {
            tracing::warn!(error = %e, "purging deleted vaults failed");
        }
    }
}

/// Flushes (then compacts and trims) every table with at least `min` rows waiting.
pub(crate) async fn flush_pending(shared: &Arc<Shared>, min: usize) -> Result<(), StorageError> {
    let due = shared.tail.tables_with_at_least(min);
    for (vault, table) in due {
        let result = async {
            flush_table(shared, vault, &table).await?;
            compact_table(shared, vault, &table, false).await?;
            trim_log(shared, vault, &table).await
        }
        .await;
        match result {
            Ok(()) => {}
            Err(StorageError::VaultDeleted(_) | StorageError::VaultNotFound(_) | StorageError::TableNotFound(_)) => {
                shared.tail.forget_vault(vault);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seals and commits a new manifest version; on a lost race the new files
/// are deleted again and `false` is returned.
async fn commit_manifest(
    shared: &Shared,
    vault: VaultId,
    table: &str,
    keys: &crate::crypto::VaultKeys,
    manifest: Manifest,
    new_files: &[DataFile],
) -> Result<bool, StorageError> {
    let body = serde_json::to_vec(&manifest).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let sealed = keys.seal(manifest_aad(vault, table, manifest.version).as_bytes(), &body);
    let committed = shared
        .db
        .commit_manifest(vault, table, manifest.version, manifest.flushed_seq, &sealed)
        .await?;
    if committed {
        shared.set_manifest(vault, table, Arc::new(manifest));
    } else {
        for f in new_files {
            let _ = shared.objects.store().delete(&Path::from(f.key.as_str())).await;
        }
    }
    Ok(committed)
}

/// Writes a table's waiting log tail to new data files, committing a
/// manifest version after each file.
pub(crate) async fn flush_table(shared: &Arc<Shared>, vault: VaultId, table: &str) -> Result<(), StorageError> {
    let name = stored_table_name(table)?;
    let keys = shared.vault_keys(vault).await?;
    let installed = shared.table(vault, &name).await?;
    let prefix = VaultPrefix::new(vault);
    loop {
        let manifest = shared.manifest(vault, &keys, &name).await?;
        let limit = shared.options.flush_max_rows;
        let (rows, last_seq) = shared
            .tail_versions(vault, &keys, &installed, manifest.flushed_seq, limit)
            .await?;
        let Some(last_seq) = last_seq else { break };
        let batch = rows_to_batch(&installed.def, &installed.arrow, &rows)?;
        drop(rows);
        let key = prefix.table_file(&name, installed.schema_version, Ulid::new())?;
        let file = write_file(&shared.objects, &keys, table, &batch, key, manifest.files.is_empty()).await?;
        let mut next = Manifest {
            version: manifest.version + 1,
            flushed_seq: last_seq,
            files: manifest.files.clone(),
        };
        if file.base && file.tombstones > 0 {
            // A first file holding tombstones hides nothing: still a base,
            // but keep the flag honest.
            next.files.push(DataFile {
                base: false,
                ..file.clone()
            });
        } else {
            next.files.push(file.clone());
        }
        next.sort_files();
        if !commit_manifest(shared, vault, table, &keys, next, &[file]).await? {
            break;
        }
        // The manifest (already in the cache) now holds these changes.
        shared.tail.flushed(vault, table, last_seq);
        // Loop: more may have waited beyond `limit`.
    }
    Ok(())
}

/// Merges a table's files. With `force`, or when the newer (delta) files
/// have grown to a quarter of the base, every file is merged into one base
/// (tombstones dropped); otherwise, once there are `compact_min_deltas`
/// deltas, just the deltas are merged into one.
pub(crate) async fn compact_table(
    shared: &Arc<Shared>,
    vault: VaultId,
    table: &str,
    force: bool,
) -> Result<(), StorageError> {
    let name = stored_table_name(table)?;
    let keys = shared.vault_keys(vault).await?;
    let installed = shared.table(vault, &name).await?;
    let manifest = shared.manifest(vault, &keys, &name).await?;
    if manifest.files.is_empty() || (manifest.files.len() == 1 && manifest.files[0].base) {
        return Ok(());
    }
    let base_rows: u64 = manifest.files.iter().filter(|f| f.base).map(|f| f.rows).sum();
    let deltas: Vec<&DataFile> = manifest.files.iter().filter(|f| !f.base).collect();
    let delta_rows: u64 = deltas.iter().map(|f| f.rows).sum();
    let full = force || base_rows == 0 || delta_rows * 4 >= base_rows;
    let merge: Vec<&DataFile> = if full {
        manifest.files.iter().collect()
    } else if deltas.len() >= shared.options.compact_min_deltas {
        deltas
    } else {
        return Ok(());
    };
    if merge.len() < 2 && !(full && merge.iter().any(|f| f.tombstones > 0 || !f.base)) {
        return Ok(());
    }
    // Files are newest first, so the first version seen of an id wins.
    let mut batches: Vec<RecordBatch> = Vec::with_capacity(merge.len());
    for f in &merge {
        let open = shared.files.open(&shared.objects, &keys, f).await?;
        batches.push(read_file(&shared.objects, &open, &f.key).await?);
    }
    let merged = merge_newest(&installed.arrow, &batches, full)?;
    drop(batches);
    let key = VaultPrefix::new(vault).table_file(&name, installed.schema_version, Ulid::new())?;
    let mut file = write_file(&shared.objects, &keys, table, &merged, key, full).await?;
    // Keep the seq range of what was merged, so ordering stays correct.
    file.min_seq = merge.iter().map(|f| f.min_seq).min().unwrap_or(file.min_seq);
    file.max_seq = merge.iter().map(|f| f.max_seq).max().unwrap_or(file.max_seq);
    let replaced: Vec<String> = merge.iter().map(|f| f.key.clone()).collect();
    let mut files: Vec<DataFile> = manifest
        .files
        .iter()
        .filter(|f| !replaced.contains(&f.key))
        .cloned()
        .collect();
    if file.rows > 0 {
        files.push(file.clone());
    }
    let mut next = Manifest {
        version: manifest.version + 1,
        flushed_seq: manifest.flushed_seq,
        files,
    };
    next.sort_files();
    if commit_manifest(shared, vault, table, &keys, next, std::slice::from_ref(&file)).await? {
        let store = shared.objects.store().clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPLACED_FILE_GRACE).await;
            for key in replaced {
                let _ = store.delete(&Path::from(key.as_str())).await;
            }
        });
    }
    Ok(())
}

/// Removes flushed log entries older than the sync window.
pub(crate) async fn trim_log(shared: &Arc<Shared>, vault: VaultId, table: &str) -> Result<(), StorageError> {
    let name = stored_table_name(table)?;
    let keys = shared.vault_keys(vault).await?;
    let manifest = shared.manifest(vault, &keys, &name).await?;
    let cutoff = now_micros() - shared.options.log_retention.as_micros() as i64;
    shared.db.trim_log(vault, table, manifest.flushed_seq, cutoff).await?;
    Ok(())
}

/// Deletes every object under the prefix of each deleted vault, then its
/// remaining control rows.
pub(crate) async fn purge_deleted(shared: &Arc<Shared>) -> Result<(), StorageError> {
    for vault in shared.db.vaults_to_purge().await? {
        let removed = shared.objects.delete_prefix(&VaultPrefix::new(vault).path()).await?;
        shared.db.purge_vault_rows(vault).await?;
        shared.forget_vault(vault);
        tracing::info!(%vault, objects = removed, "purged deleted vault");
    }
    Ok(())
}
