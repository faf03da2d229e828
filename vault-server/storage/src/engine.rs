//! The storage engine's public face: vaults, schemas, writes, point reads
//! and table snapshots for the query layer.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use coffer_core::schema::TableDef;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, TableName, VaultId};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use lru::LruCache;
use object_store::ObjectStore;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::arrow_codec::{batch_row, rows_to_batch, table_schema};
use crate::commit::{Committer, Op, Prepared, PreparedOp, WriteRequest};
use crate::control::{ControlDb, VaultKeyState};
use crate::crypto::{DataKey, MasterKey, VaultKeys};
use crate::error::StorageError;
use crate::files::{FileCache, LookupStats, Objects, PageCache, lookup};
use crate::layout::VaultPrefix;
use crate::manifest::Manifest;
use crate::row::{RowVersion, Values, normalize_values, validate_id};
use crate::tail::TailIndex;

/// Tuning of the storage engine. The defaults suit the embedded server.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Flush a table once this many changes wait in its log tail.
    pub flush_rows: i64,
    /// Flush any waiting changes at least this often.
    pub flush_interval: Duration,
    /// Most row versions written into one data file by a flush.
    pub flush_max_rows: i64,
    /// Merge delta files once a table has this many.
    pub compact_min_deltas: usize,
    /// Flushed log entries stay this long for change feeds.
    pub log_retention: Duration,
    /// Unwrapped vault keys kept in memory.
    pub key_cache: usize,
    /// Opened data files (metadata, bloom filter) kept in memory.
    pub file_cache: usize,
    /// Bytes of decoded data pages kept for point lookups.
    pub page_cache_bytes: usize,
    /// Run the background flusher, compactor and purger.
    pub background: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            flush_rows: 8192,
            flush_interval: Duration::from_secs(5),
            flush_max_rows: 1_000_000,
            compact_min_deltas: 4,
            log_retention: Duration::from_secs(24 * 3600),
            key_cache: 4096,
            file_cache: 4096,
            page_cache_bytes: 512 << 20,
            background: true,
        }
    }
}

/// A table installed in a vault.
#[derive(Debug)]
pub struct InstalledTable {
    /// `schema.table`.
    pub name: TableName,
    /// The schema version installed.
    pub schema_version: u32,
    /// Its definition.
    pub def: Arc<TableDef>,
    /// Its Arrow schema (system columns first).
    pub arrow: SchemaRef,
}

/// One mutation of a write batch.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// The table written.
    pub table: TableName,
    /// What to do.
    pub op: Op,
}

/// What a reader needs to read a table consistently: the manifest's files
/// and the unflushed tail (newest version per id, tombstones included).
pub struct TableSnapshot {
    /// The vault.
    pub vault: VaultId,
    /// The table.
    pub table: Arc<InstalledTable>,
    /// Data files.
    pub manifest: Arc<Manifest>,
    /// Unflushed changes, one newest version per id, sorted by id.
    pub tail: RecordBatch,
    /// The vault's keys (for decrypting the files).
    pub keys: Arc<VaultKeys>,
    /// The object store holding the files.
    pub objects: Objects,
    /// The engine's cache of opened files.
    pub files: Arc<FileCache>,
}

/// The installed tables of one vault.
pub(crate) type TableMap = HashMap<TableName, Arc<InstalledTable>>;

pub(crate) struct Shared {
    pub db: ControlDb,
    pub objects: Objects,
    pub master: MasterKey,
    pub registry: RwLock<SchemaRegistry>,
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
    /// Set once when the engine shuts down.
    pub shutdown: AtomicBool,
    /// Tells the committer to drain its queue and stop.
    pub stop_committer: Notify,
    /// When the worker last looked for vaults deleted by another process
    /// (µs since the epoch).
    pub deletions_seen: Mutex<i64>,
}

fn lru<K: std::hash::Hash + Eq, V>(n: usize) -> Mutex<LruCache<K, V>> {
    Mutex::new(LruCache::new(NonZeroUsize::new(n.max(1)).expect("non-zero")))
}

/// The storage engine. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Engine {
    /// Opens the engine over a control database, an object store and a
    /// master key, and starts its committer (and background worker).
    pub async fn open(
        db: ControlDb,
        store: Arc<dyn ObjectStore>,
        local_root: Option<PathBuf>,
        master: MasterKey,
        registry: SchemaRegistry,
        options: EngineOptions,
    ) -> Result<Self, StorageError> {
        let tail = TailIndex::default();
        for (vault, table, hash, seq) in db.unflushed_entries().await? {
            tail.record(vault, &table, hash, seq);
        }
        let shared = Arc::new(Shared {
            db,
            objects: Objects::new(store, local_root),
            master,
            registry: RwLock::new(registry),
            keys: lru(options.key_cache),
            tables: lru(options.key_cache),
            manifests: lru(options.file_cache),
            files: Arc::new(FileCache::new(options.file_cache)),
            lookups: LookupStats::default(),
            pages: PageCache::new(options.page_cache_bytes),
            tail,
            wake: Notify::new(),
            shutdown: Default::default(),
            stop_committer: Notify::new(),
            deletions_seen: Mutex::new(crate::control::now_micros()),
            options,
        });
        let (tx, rx) = mpsc::channel(4096);
        let mut tasks = vec![tokio::spawn(Committer::new(shared.clone(), rx).run())];
        if shared.options.background {
            tasks.push(tokio::spawn(crate::maintain::run(shared.clone())));
        }
        Ok(Self {
            shared,
            writer: tx,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// The control database.
    pub fn control(&self) -> &ControlDb {
        &self.shared.db
    }

    /// The object store.
    pub fn objects(&self) -> &Objects {
        &self.shared.objects
    }

    /// A copy of the schema registry.
    pub fn registry(&self) -> SchemaRegistry {
        self.shared.registry.read().expect("registry lock").clone()
    }

    /// Creates a vault: a new id and a fresh data key wrapped with the master
    /// key. Touches no object-store file.
    pub async fn create_vault(&self) -> Result<VaultId, StorageError> {
        let vault = VaultId::generate();
        let dek = DataKey::generate();
        let wrapped = self.shared.master.wrap(&dek)?;
        self.shared.db.insert_vault(vault, &wrapped).await?;
        self.shared
            .keys
            .lock()
            .expect("key cache")
            .put(vault, Arc::new(dek.derive()));
        Ok(vault)
    }

    /// Deletes a vault. The wrapped key is removed first (crypto-shred: from
    /// then on nothing of the vault can be decrypted), then the control
    /// database's write-ahead log is checkpointed so that the wrapped key is
    /// in no file any more (the database runs with `secure_delete`); the
    /// files under its prefix, its log and its manifests are deleted in the
    /// background ([`Engine::purge_deleted`]). A vault deleted already is
    /// deleted again without error. A checkpoint that readers kept busy is
    /// [`StorageError::CheckpointBusy`]; the vault is deleted all the same.
    pub async fn delete_vault(&self, vault: VaultId) -> Result<(), StorageError> {
        if !self.shared.db.shred_vault(vault).await? {
            return Err(StorageError::VaultNotFound(vault));
        }
        self.shared.forget_vault(vault);
        self.shared.wake.notify_one();
        self.shared.db.checkpoint().await
    }

    /// Installs every table of schema `name` (latest version unless given)
    /// into a vault. Idempotent.
    pub async fn install_schema(&self, vault: VaultId, name: &str, version: Option<u32>) -> Result<u32, StorageError> {
        self.shared.vault_keys(vault).await?;
        let def = {
            let registry = self.shared.registry.read().expect("registry lock");
            match version {
                Some(v) => registry.get(name, v),
                None => registry.latest(name),
            }
            .ok_or_else(|| StorageError::SchemaNotFound(name.to_owned()))?
        };
        let text = serde_json::to_string(&*def).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        if let Some(stored) = self.shared.db.schema_definition(&def.name, def.version).await? {
            let old = coffer_core::schema::registry::SchemaRegistry::parse(&stored, "control database")?;
            coffer_core::schema::registry::check_evolution(&old, &def, &format!("schema {}", def.name))?;
        }
        self.shared.db.put_schema(&def.name, def.version, &text).await?;
        let tables: Vec<(TableName, u32)> = def
            .tables
            .iter()
            .map(|t| (TableName::new(&def.name, &t.name), def.version))
            .collect();
        self.shared.db.install_tables(vault, &tables).await?;
        self.shared.tables.lock().expect("table cache").pop(&vault);
        Ok(def.version)
    }

    /// The tables installed in a vault: the tables of its installed schemas.
    /// The [system tables](crate::system), which every vault has, are not
    /// listed; [`Engine::table`] reaches them by name.
    pub async fn tables(&self, vault: VaultId) -> Result<Vec<Arc<InstalledTable>>, StorageError> {
        self.shared.vault_keys(vault).await?;
        let mut tables: Vec<_> = self
            .shared
            .installed(vault)
            .await?
            .values()
            .filter(|t| !crate::system::is_system_table(&t.name))
            .cloned()
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    /// One installed table, or one of the [system tables](crate::system).
    pub async fn table(&self, vault: VaultId, table: &TableName) -> Result<Arc<InstalledTable>, StorageError> {
        self.shared.vault_keys(vault).await?;
        self.shared.table(vault, table).await
    }

    /// Applies a batch of mutations atomically: every row is validated, the
    /// changes get the vault's next sequence numbers and are durable in the
    /// commit log before this returns. If any mutation fails, none is applied.
    /// Returns the new row versions, in mutation order.
    pub async fn write(
        &self,
        vault: VaultId,
        app: &AppId,
        mutations: Vec<Mutation>,
    ) -> Result<Vec<RowVersion>, StorageError> {
        let keys = self.shared.vault_keys(vault).await?;
        let mut ops = Vec::with_capacity(mutations.len());
        for m in mutations {
            let table = self.shared.table(vault, &m.table).await?;
            let prepared = match m.op {
                Op::Insert { mut values } => {
                    let (id, id_given) = match values.remove("id") {
                        Some(v) if !v.is_null() => (validate_id(&table.name, &v)?, true),
                        _ => (new_row_id(), false),
                    };
                    let values = normalize_values(&table.name, &table.def, &values, false)?;
                    Prepared::Insert { id, id_given, values }
                }
                Op::Update { id, patch, if_seq } => {
                    let patch = normalize_values(&table.name, &table.def, &patch, true)?;
                    Prepared::Update { id, patch, if_seq }
                }
                Op::Delete { id, if_seq } => Prepared::Delete { id, if_seq },
            };
            ops.push(PreparedOp { table, op: prepared });
        }
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(StorageError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteRequest {
                vault,
                keys,
                app: app.clone(),
                ops,
                reply,
            })
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        rx.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// Inserts one row; convenience over [`Engine::write`].
    pub async fn insert(
        &self,
        vault: VaultId,
        app: &AppId,
        table: &TableName,
        values: Values,
    ) -> Result<RowVersion, StorageError> {
        let mut rows = self
            .write(
                vault,
                app,
                vec![Mutation {
                    table: table.clone(),
                    op: Op::Insert { values },
                }],
            )
            .await?;
        rows.pop().ok_or(StorageError::ShuttingDown)
    }

    /// The current version of row `id`, or `None` if it does not exist or
    /// was deleted. Reads the log index and at most one page per file.
    pub async fn get(&self, vault: VaultId, table: &TableName, id: &str) -> Result<Option<RowVersion>, StorageError> {
        let keys = self.shared.vault_keys(vault).await?;
        let table = self.shared.table(vault, table).await?;
        Ok(self
            .shared
            .current_version(vault, &keys, &table, id)
            .await?
            .filter(|r| !r.deleted))
    }

    /// A consistent snapshot of a table for the query layer.
    pub async fn snapshot(&self, vault: VaultId, table: &TableName) -> Result<TableSnapshot, StorageError> {
        let keys = self.shared.vault_keys(vault).await?;
        let table = self.shared.table(vault, table).await?;
        // A flush may commit (and trim the log) between reading the manifest
        // and the tail: retry until both belong to the same manifest version.
        let (manifest, tail_rows) = loop {
            let manifest = self.shared.manifest(vault, &keys, &table.name).await?;
            let (rows, _) = self
                .shared
                .tail_versions(vault, &keys, &table, manifest.flushed_seq, i64::MAX)
                .await?;
            if self.shared.manifest(vault, &keys, &table.name).await?.version == manifest.version {
                break (manifest, rows);
            }
        };
        let tail = rows_to_batch(&table.def, &table.arrow, &tail_rows)?;
        Ok(TableSnapshot {
            vault,
            table,
            manifest,
            tail,
            keys,
            objects: self.shared.objects.clone(),
            files: self.shared.files.clone(),
        })
    }

    /// Flushes every waiting change of a table to a data file now, then
    /// trims the log entries older than the retention window.
    pub async fn flush_table(&self, vault: VaultId, table: &TableName) -> Result<(), StorageError> {
        let name = table.to_string();
        crate::maintain::flush_table(&self.shared, vault, &name).await?;
        crate::maintain::trim_log(&self.shared, vault, &name).await
    }

    /// Flushes every table with waiting changes.
    pub async fn flush_all(&self) -> Result<(), StorageError> {
        crate::maintain::flush_pending(&self.shared, 1).await
    }

    /// Merges a table's files now (full merge into one base file).
    pub async fn compact_table(&self, vault: VaultId, table: &TableName) -> Result<(), StorageError> {
        crate::maintain::compact_table(&self.shared, vault, &table.to_string(), true).await
    }

    /// Deletes the files of deleted vaults now.
    pub async fn purge_deleted(&self) -> Result<(), StorageError> {
        crate::maintain::purge_deleted(&self.shared).await
    }

    /// Counters of point lookups in data files.
    pub fn lookup_stats(&self) -> &LookupStats {
        &self.shared.lookups
    }

    /// Bytes of all objects under a vault's prefix.
    pub async fn vault_bytes(&self, vault: VaultId) -> Result<u64, StorageError> {
        self.shared.objects.bytes_under(&VaultPrefix::new(vault).path()).await
    }

    /// Stops the engine: writes already queued are committed, later writes
    /// fail with [`StorageError::ShuttingDown`], the background worker stops.
    pub async fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        self.shared.stop_committer.notify_one();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = t.await;
        }
        self.shared.db.close().await;
    }

    /// Bytes of the data files a table's manifest lists.
    pub async fn table_bytes(&self, vault: VaultId, table: &TableName) -> Result<u64, StorageError> {
        let keys = self.shared.vault_keys(vault).await?;
        Ok(self.shared.manifest(vault, &keys, table).await?.bytes())
    }

    /// Per-column compressed bytes of a table's data files (for operators
    /// and the benchmark's size report).
    pub async fn column_bytes(&self, vault: VaultId, table: &TableName) -> Result<Vec<(String, u64)>, StorageError> {
        let keys = self.shared.vault_keys(vault).await?;
        let manifest = self.shared.manifest(vault, &keys, table).await?;
        let mut totals: Vec<(String, u64)> = Vec::new();
        for file in &manifest.files {
            let open = self.shared.files.open(&self.shared.objects, &keys, file).await?;
            for (i, (name, bytes)) in open.column_bytes().into_iter().enumerate() {
                match totals.get_mut(i) {
                    Some(t) => t.1 += bytes,
                    None => totals.push((name, bytes)),
                }
            }
        }
        Ok(totals)
    }
}

/// A new row id: a ULID in lower case, monotonic within a millisecond.
pub fn new_row_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut g = GENERATOR.lock().expect("id generator");
    let g = g.get_or_insert_with(ulid::Generator::new);
    let id = g.generate().unwrap_or_else(|_| ulid::Ulid::new());
    id.to_string().to_ascii_lowercase()
}

impl Shared {
    /// Drops everything cached about a deleted vault: its keys, tables,
    /// manifests, opened files, pages and tail.
    pub(crate) fn forget_vault(&self, vault: VaultId) {
        self.keys.lock().expect("key cache").pop(&vault);
        self.tables.lock().expect("table cache").pop(&vault);
        {
            let mut manifests = self.manifests.lock().expect("manifest cache");
            let stale: Vec<_> = manifests
                .iter()
                .filter(|((v, _), _)| *v == vault)
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                manifests.pop(&key);
            }
        }
        self.files.forget_prefix(&format!("vaults/{vault}/"));
        self.pages.forget_prefix(&format!("vaults/{vault}/"));
        self.tail.forget_vault(vault);
    }

    /// Forgets the vaults another process (an operator command) deleted
    /// since the last call, so that this process stops serving them from
    /// its caches.
    pub(crate) async fn forget_deleted_elsewhere(&self) -> Result<(), StorageError> {
        let since = *self.deletions_seen.lock().expect("deletions clock");
        // Overlap by a minute: a deletion committed just before `since`
        // by a slower clock is still seen.
        let now = crate::control::now_micros();
        for vault in self.db.vaults_deleted_since(since - 60_000_000).await? {
            self.forget_vault(vault);
        }
        *self.deletions_seen.lock().expect("deletions clock") = now;
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

    pub async fn installed(
        &self,
        vault: VaultId,
    ) -> Result<Arc<HashMap<TableName, Arc<InstalledTable>>>, StorageError> {
        if let Some(t) = self.tables.lock().expect("table cache").get(&vault) {
            return Ok(t.clone());
        }
        let rows = self.db.installed_tables(vault).await?;
        // Every live vault has the system tables; nothing installs them.
        let mut map: HashMap<TableName, Arc<InstalledTable>> = crate::system::installed_tables()
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        for (name, version) in rows {
            let schema = {
                let registry = self.registry.read().expect("registry lock");
                registry.get(&name.schema, version)
            };
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
            let def = Arc::new(def.clone());
            let arrow = table_schema(&def);
            map.insert(
                name.clone(),
                Arc::new(InstalledTable {
                    name,
                    schema_version: version,
                    def,
                    arrow,
                }),
            );
        }
        let map = Arc::new(map);
        self.tables.lock().expect("table cache").put(vault, map.clone());
        Ok(map)
    }

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
        self.manifests
            .lock()
            .expect("manifest cache")
            .put((vault, name), manifest.clone());
        Ok(manifest)
    }

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

/// Associated data binding a log payload to its vault, table and sequence number.
pub(crate) fn log_aad(vault: VaultId, table: &str, seq: i64) -> String {
    format!("log\0{vault}\0{table}\0{seq}")
}

/// Associated data binding a manifest body to its vault, table and version.
pub(crate) fn manifest_aad(vault: VaultId, table: &str, version: i64) -> String {
    format!("manifest\0{vault}\0{table}\0{version}")
}

impl Engine {
    /// Checks that the control database and the object store answer.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        self.shared.db.ping().await?;
        use futures::StreamExt;
        let mut listing = self
            .shared
            .objects
            .store()
            .list(Some(&object_store::path::Path::from("vaults")));
        if let Some(Err(e)) = listing.next().await {
            return Err(e.into());
        }
        Ok(())
    }
}
