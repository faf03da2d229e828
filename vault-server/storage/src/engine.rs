//! The storage engine's public face: vaults, schemas, writes, point reads
//! and table snapshots for the query layer.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use coffer_core::schema::SchemaDef;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, TableName, VaultId};
use datafusion::arrow::array::RecordBatch;
use object_store::ObjectStore;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::arrow_codec::rows_to_batch;
use crate::cache::lru;
use crate::commit::{Committer, Op, Prepared, PreparedOp, WriteRequest};
use crate::control::{ControlDb, now_micros};
use crate::crypto::{DataKey, MasterKey, VaultKeys};
use crate::error::StorageError;
use crate::files::{FileCache, LookupStats, Objects, PageCache};
use crate::installed::InstalledTable;
use crate::layout::{self, VaultPrefix};
use crate::manifest::Manifest;
use crate::notify::CommitWatch;
use crate::options::EngineOptions;
use crate::row::{RowVersion, Values, normalize_values, validate_id};
use crate::schemas::{KnownSchemas, Published, Publisher};
use crate::shared::Shared;
use crate::tail::TailIndex;

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

/// The storage engine. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Engine {
    /// Opens the engine over a control database, an object store and a
    /// master key, with the tail index rebuilt from the unflushed log, and
    /// starts its committer (and background worker).
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
        let schemas = RwLock::new(Arc::new(KnownSchemas::load(&registry, &db).await?));
        let shared = Arc::new(Shared {
            db,
            objects: Objects::new(store, local_root),
            master,
            base: registry,
            schemas,
            keys: lru(options.key_cache),
            tables: lru(options.key_cache),
            manifests: lru(options.file_cache),
            files: Arc::new(FileCache::new(options.file_cache)),
            lookups: LookupStats::default(),
            pages: PageCache::new(options.page_cache_bytes),
            tail,
            wake: Notify::new(),
            commits: Arc::default(),
            versions: Default::default(),
            shutdown: Default::default(),
            stop_committer: Notify::new(),
            deletions_seen: Mutex::new(now_micros()),
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

    /// The state the engine shares with its committer and worker, for the
    /// crate's other modules (the change feed's reads).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Follows the commits of `vault`: the returned watch wakes after each
    /// commit of a write to the vault, once it is durable (several commits
    /// while nobody waits wake it once). It carries no row data; read the
    /// log ([`crate::changes`]) from your own position when woken. Vaults
    /// are followed only while a watch of theirs lives.
    pub fn watch_commits(&self, vault: VaultId) -> CommitWatch {
        self.shared.commits.subscribe(vault)
    }

    /// How many vaults are followed by a [`watch_commits`](Self::watch_commits)
    /// now (each costs one channel).
    pub fn followed_vaults(&self) -> usize {
        self.shared.commits.followed()
    }

    /// The control database.
    pub fn control(&self) -> &ControlDb {
        &self.shared.db
    }

    /// The object store.
    pub fn objects(&self) -> &Objects {
        &self.shared.objects
    }

    /// The schema registry as known now (built-in, operator and published
    /// schemas).
    pub fn registry(&self) -> Arc<SchemaRegistry> {
        self.shared.known_schemas().registry().clone()
    }

    /// The schemas known now, with who published each.
    pub fn schemas(&self) -> Arc<KnownSchemas> {
        self.shared.known_schemas()
    }

    /// Picks up schemas published by another process on the same control
    /// database since the last look (the background worker also does this
    /// once per flush interval). Cheap when nothing changed: one query.
    pub async fn refresh_schemas(&self) -> Result<(), StorageError> {
        self.shared.refresh_schemas().await
    }

    /// Publishes a schema version (decision 0031): checks it as the
    /// built-in loader does, then the publishing rules (the name is not a
    /// base schema's or reserved, an app stays within
    /// [`limits`](crate::schemas::limits), a version follows the one before
    /// it, a redefinition of a version is additive, references name known
    /// tables), and stores it in the control database, claiming the name
    /// for `publisher` if it is new. Vaults get its tables when a grant
    /// names them ([`Engine::install_schema`]).
    pub async fn publish_schema(&self, def: SchemaDef, publisher: &Publisher) -> Result<Published, StorageError> {
        let source = format!("schema {} version {}", def.name, def.version);
        coffer_core::schema::registry::validate(&def, &source)?;
        let text = serde_json::to_string(&def).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let owner = match publisher {
            Publisher::App(client_id) => Some(client_id.as_str()),
            Publisher::Operator => None,
            Publisher::Coffer => {
                return Err(StorageError::Unpublishable(
                    "built-in schemas are not published; they ship with the server".into(),
                ));
            }
        };
        if def.version > 1 {
            return Err(StorageError::Unpublishable(format!(
                "schema {} version {}: versions above 1 are not served yet (the gateway does not \
                 yet translate shared rows between versions); publish version 1",
                def.name, def.version
            )));
        }
        self.refresh_schemas().await?;
        let known = self.schemas();
        if let Publisher::App(_) = publisher
            && known.publisher(&def.name).is_none()
            && self.shared.db.namespaces_of(owner).await? >= crate::schemas::limits::MAX_NAMESPACES_PER_APP
        {
            return Err(StorageError::Unpublishable(format!(
                "an app may hold at most {} schema names",
                crate::schemas::limits::MAX_NAMESPACES_PER_APP
            )));
        }
        let created = self
            .shared
            .db
            .publish_schema(&def.name, def.version, &text, owner, |stored| {
                crate::schemas::check_publishable(&def, publisher, &known, stored)?;
                // The stored versions and this one must load together, as
                // the registry loads them: a redefined version additive, a
                // new major version consistent with the one before it.
                let mut family = SchemaRegistry::new();
                for (version, text) in stored {
                    let stored_source = format!("schema {} version {version}", def.name);
                    family.insert(SchemaRegistry::parse(text, &stored_source)?, &stored_source)?;
                }
                family.insert(def.clone(), &source)?;
                Ok(())
            })
            .await?;
        self.shared.refresh_schemas().await?;
        Ok(Published {
            name: def.name.clone(),
            version: def.version,
            created,
        })
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
            let known = self.shared.known_schemas();
            match version {
                Some(v) => known.registry().get(name, v),
                None => known.registry().latest(name),
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

    /// Checks that the control database and the object store answer.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        self.shared.db.ping().await?;
        use futures::StreamExt;
        let mut listing = self
            .shared
            .objects
            .store()
            .list(Some(&object_store::path::Path::from(layout::VAULTS)));
        if let Some(Err(e)) = listing.next().await {
            return Err(e.into());
        }
        Ok(())
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
