//! The state the engine, its committer and its background worker share
//! (control database, object store, master key, caches, tail index), and the
//! reads built on it. It depends on none of the three; `Engine::open`
//! builds it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{TableName, VaultId};
use lru::LruCache;
use tokio::sync::Notify;

use crate::aad::{log_aad, manifest_aad};
use crate::arrow_codec::batch_row;
use crate::cache::pop_where;
use crate::control::{ControlDb, VaultKeyState, now_micros};
use crate::crypto::{MasterKey, VaultKeys};
use crate::error::StorageError;
use crate::files::{FileCache, LookupStats, Objects, PageCache, lookup};
use crate::installed::{InstalledTable, TableMap};
use crate::layout::VaultPrefix;
use crate::manifest::Manifest;
use crate::notify::{CommitNotifier, TableVersions};
use crate::options::EngineOptions;
use crate::row::RowVersion;
use crate::schemas::KnownSchemas;
use crate::tail::TailIndex;

/// What one engine's committer, background worker and readers share.
pub(crate) struct Shared {
    pub db: ControlDb,
    pub objects: Objects,
    pub master: MasterKey,
    /// The schemas opened with (built-in and operator files).
    pub base: SchemaRegistry,
    /// Those and the published ones, as last loaded.
    pub schemas: RwLock<Arc<KnownSchemas>>,
    pub keys: Mutex<LruCache<VaultId, Arc<VaultKeys>>>,
    pub tables: Mutex<LruCache<VaultId, Arc<TableMap>>>,
    pub manifests: Mutex<LruCache<(VaultId, String), Arc<Manifest>>>,
    pub files: Arc<FileCache>,
    pub lookups: LookupStats,
    pub pages: PageCache,
    pub options: EngineOptions,
    /// Which rows have unflushed changes, per (vault, table).
    pub tail: TailIndex,
    /// Wakes the background worker.
    pub wake: Notify,
    /// Tells the followers of a vault that its log moved on.
    pub commits: Arc<CommitNotifier>,
    /// The sequence number of each table's newest change, lately.
    pub versions: TableVersions,
    /// Set once when the engine shuts down.
    pub shutdown: AtomicBool,
    /// Tells the committer to drain its queue and stop.
    pub stop_committer: Notify,
    /// When the worker last looked for vaults deleted by another process
    /// (µs since the epoch).
    pub deletions_seen: Mutex<i64>,
}

impl Shared {
    /// Drops everything cached about a deleted vault: its keys, tables,
    /// manifests, opened files, pages and tail.
    pub(crate) fn forget_vault(&self, vault: VaultId) {
        self.keys.lock().expect("key cache").pop(&vault);
        self.tables.lock().expect("table cache").pop(&vault);
        pop_where(&mut self.manifests.lock().expect("manifest cache"), |(v, _)| {
            *v == vault
        });
        let prefix = VaultPrefix::new(vault);
        self.files.forget_prefix(prefix.as_str());
        self.pages.forget_prefix(prefix.as_str());
        self.tail.forget_vault(vault);
        self.commits.forget_vault(vault);
        self.versions.forget_vault(vault);
    }

    /// Forgets the vaults another process (an operator command) deleted
    /// since the last call, so that this process stops serving them from
    /// its caches.
    pub(crate) async fn forget_deleted_elsewhere(&self) -> Result<(), StorageError> {
        let since = *self.deletions_seen.lock().expect("deletions clock");
        // Overlap by a minute: a deletion committed just before `since`
        // by a slower clock is still seen.
        let now = now_micros();
        for vault in self.db.vaults_deleted_since(since - 60_000_000).await? {
            self.forget_vault(vault);
        }
        *self.deletions_seen.lock().expect("deletions clock") = now;
        Ok(())
    }

    /// The schemas known now.
    pub fn known_schemas(&self) -> Arc<KnownSchemas> {
        self.schemas.read().expect("schemas lock").clone()
    }

    /// Reloads the known schemas when the control database's published ones
    /// changed since they were loaded.
    pub(crate) async fn refresh_schemas(&self) -> Result<(), StorageError> {
        if self.known_schemas().is_stale(&self.db).await? {
            let fresh = Arc::new(KnownSchemas::load(&self.base, &self.db).await?);
            *self.schemas.write().expect("schemas lock") = fresh;
            // A redefined version (a column or table added) changes the
            // definitions the vaults' cached tables were built from.
            self.tables.lock().expect("table cache").clear();
        }
        Ok(())
    }

    /// The working keys of a live vault (unwrapping and caching them).
    pub async fn vault_keys(&self, vault: VaultId) -> Result<Arc<VaultKeys>, StorageError> {
        if let Some(k) = self.keys.lock().expect("key cache").get(&vault) {
            return Ok(k.clone());
        }
        match self.db.vault_key(vault).await? {
            VaultKeyState::Active(wrapped) => {
                let keys = Arc::new(self.master.unwrap(&wrapped)?.derive());
                self.keys.lock().expect("key cache").put(vault, keys.clone());
                Ok(keys)
            }
            VaultKeyState::Deleted => Err(StorageError::VaultDeleted(vault)),
            VaultKeyState::NotFound => Err(StorageError::VaultNotFound(vault)),
        }
    }

    /// The tables installed in a vault, system tables included (cached).
    pub async fn installed(&self, vault: VaultId) -> Result<Arc<TableMap>, StorageError> {
        if let Some(t) = self.tables.lock().expect("table cache").get(&vault) {
            return Ok(t.clone());
        }
        let rows = self.db.installed_tables(vault).await?;
        // Every live vault has the system tables; nothing installs them.
        let mut map: TableMap = crate::system::installed_tables()
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        for (name, version) in rows {
            let schema = self.known_schemas().registry().get(&name.schema, version);
            let schema = match schema {
                Some(s) => s,
                None => {
                    let text = self
                        .db
                        .schema_definition(&name.schema, version)
                        .await?
                        .ok_or_else(|| StorageError::SchemaNotFound(name.schema.clone()))?;
                    Arc::new(SchemaRegistry::parse(&text, "control database")?)
                }
            };
            let Some(def) = schema.table(&name.table) else {
                continue;
            };
            map.insert(name.clone(), InstalledTable::new(name, version, def));
        }
        let map = Arc::new(map);
        self.tables.lock().expect("table cache").put(vault, map.clone());
        Ok(map)
    }

    /// One table of [`Shared::installed`].
    pub async fn table(&self, vault: VaultId, table: &TableName) -> Result<Arc<InstalledTable>, StorageError> {
        self.installed(vault)
            .await?
            .get(table)
            .cloned()
            .ok_or_else(|| StorageError::TableNotFound(table.clone()))
    }

    /// The newest manifest of a table (cached).
    pub async fn manifest(
        &self,
        vault: VaultId,
        keys: &VaultKeys,
        table: &TableName,
    ) -> Result<Arc<Manifest>, StorageError> {
        let name = table.to_string();
        if let Some(m) = self
            .manifests
            .lock()
            .expect("manifest cache")
            .get(&(vault, name.clone()))
        {
            return Ok(m.clone());
        }
        let manifest = match self.db.current_manifest(vault, &name).await? {
            None => Manifest::default(),
            Some(stored) => {
                let body = keys.open(manifest_aad(vault, &name, stored.version).as_bytes(), &stored.body)?;
                serde_json::from_slice(&body).map_err(|e| StorageError::Corrupt(format!("manifest: {e}")))?
            }
        };
        let manifest = Arc::new(manifest);
        self.set_manifest(vault, &name, manifest.clone());
        Ok(manifest)
    }

    /// Caches `manifest` as the newest manifest of `table`.
    pub fn set_manifest(&self, vault: VaultId, table: &str, manifest: Arc<Manifest>) {
        self.manifests
            .lock()
            .expect("manifest cache")
            .put((vault, table.to_owned()), manifest);
    }

    /// Decodes a sealed log payload.
    pub fn open_log(
        &self,
        vault: VaultId,
        keys: &VaultKeys,
        table: &str,
        seq: i64,
        payload: &[u8],
    ) -> Result<RowVersion, StorageError> {
        let plain = keys.open(log_aad(vault, table, seq).as_bytes(), payload)?;
        serde_json::from_slice(&plain).map_err(|e| StorageError::Corrupt(format!("log entry {seq}: {e}")))
    }

    /// The log tail of a table after `after` (at most `limit` entries):
    /// newest version per id sorted by id, and the last entry's seq.
    pub async fn tail_versions(
        &self,
        vault: VaultId,
        keys: &VaultKeys,
        table: &InstalledTable,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<RowVersion>, Option<i64>), StorageError> {
        let name = table.name.to_string();
        let entries = self.db.log_tail(vault, &name, after, limit).await?;
        let last = entries.last().map(|e| e.seq);
        let mut newest: HashMap<String, RowVersion> = HashMap::with_capacity(entries.len());
        for e in entries {
            let row = self.open_log(vault, keys, &name, e.seq, &e.payload)?;
            newest.insert(row.id.clone(), row);
        }
        let mut rows: Vec<RowVersion> = newest.into_values().collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((rows, last))
    }

    /// The newest version of a row, tombstones included.
    pub async fn current_version(
        &self,
        vault: VaultId,
        keys: &VaultKeys,
        table: &InstalledTable,
        id: &str,
    ) -> Result<Option<RowVersion>, StorageError> {
        let name = table.name.to_string();
        let hash = keys.row_hash(&name, id);
        if let Some(seq) = self.tail.latest(vault, &name, &hash) {
            let entry = self
                .db
                .log_entry(vault, seq)
                .await?
                .ok_or_else(|| StorageError::Corrupt(format!("log entry {seq} is missing")))?;
            let row = self.open_log(vault, keys, &name, entry.seq, &entry.payload)?;
            if row.id != id {
                return Err(StorageError::Corrupt(format!(
                    "log entry {} is not row {id}",
                    entry.seq
                )));
            }
            return Ok(Some(row));
        }
        let manifest = self.manifest(vault, keys, &table.name).await?;
        for file in manifest.files.iter().filter(|f| f.may_contain(id)) {
            let open = self.files.open(&self.objects, keys, file).await?;
            if let Some(batch) = lookup(&self.lookups, &self.pages, &self.objects, &open, &file.key, &hash, id).await? {
                return batch_row(&table.def, &batch, 0).map(Some);
            }
        }
        Ok(None)
    }
}
