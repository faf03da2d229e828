//! The control database (SQLite in the embedded default): vaults and their
//! wrapped keys, the schema registry, installed tables, manifests and the
//! commit log. Every statement the engine runs against it lives here.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use coffer_core::{TableName, VaultId};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, Transaction};

use crate::error::StorageError;
use crate::private::{FILE_MODE, create_private_file, set_mode_if_exists};

/// How often a WAL checkpoint that readers keep from finishing is retried.
const CHECKPOINT_ATTEMPTS: u32 = 50;
/// Pause between those attempts.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(100);

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The key state of a vault.
pub enum VaultKeyState {
    /// The vault exists; its wrapped data key.
    Active(Vec<u8>),
    /// The vault was deleted (key shredded).
    Deleted,
    /// No such vault.
    NotFound,
}

/// A commit-log entry as stored (payload still sealed).
pub struct LogEntry {
    /// Change sequence number.
    pub seq: i64,
    /// The sealed row version.
    pub payload: Vec<u8>,
}

/// One row to append to the commit log.
pub struct LogAppend<'a> {
    /// The vault.
    pub vault: &'a str,
    /// Its sequence number.
    pub seq: i64,
    /// `schema.table`.
    pub table: &'a str,
    /// Keyed hash of the row id.
    pub row_hash: &'a [u8],
    /// Commit time.
    pub committed_at: i64,
    /// The sealed row version.
    pub payload: &'a [u8],
}

/// A stored manifest version.
pub struct StoredManifest {
    /// Manifest version.
    pub version: i64,
    /// Last change flushed into the files.
    pub flushed_seq: i64,
    /// Sealed manifest body.
    pub body: Vec<u8>,
}

/// A published schema version as stored.
pub struct PublishedRow {
    /// The schema's name (its namespace).
    pub name: String,
    /// The version.
    pub version: u32,
    /// The schema file's JSON text.
    pub definition: String,
    /// The client id of the app that published it; `None` for the operator.
    pub publisher: Option<String>,
    /// When this version was last published (µs since the epoch).
    pub published_at: i64,
}

/// Handle to the control database.
#[derive(Clone, Debug)]
pub struct ControlDb {
    pool: SqlitePool,
}

impl ControlDb {
    /// Opens (creating if needed) the SQLite control database at `path` and
    /// brings its schema up to date.
    ///
    /// The file is created mode 0600 before SQLite opens it, so that the
    /// `-wal` and `-shm` files SQLite creates beside it (with the database
    /// file's mode) are private too; existing files are made 0600. Every
    /// connection runs with `secure_delete` on: deleted rows (a shredded
    /// vault key, a purged vault's log) are overwritten with zeros rather
    /// than left in free pages (decision 0017).
    pub async fn open_sqlite(path: &Path) -> Result<Self, StorageError> {
        create_private_file(path)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            set_mode_if_exists(Path::new(&side), FILE_MODE)?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk (WAL fsynced) before it returns.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        // The control database's tables of other crates (coffer-oauth's)
        // come from their own folders, with versions distinct from these, in
        // the same migrations table: theirs are not missing here.
        let mut migrator = sqlx::migrate!("../../migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The SQLite pool, for other components that keep their tables in the
    /// control database (coffer-oauth, which migrates its own).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A connection of its own, for the committer: it writes every commit
    /// without waiting for the pool.
    pub async fn dedicated_connection(&self) -> Result<PoolConnection<Sqlite>, StorageError> {
        Ok(self.pool.acquire().await?)
    }

    /// Begins a write transaction that takes the write lock at once.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StorageError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Creates a vault row and its wrapped key.
    pub async fn insert_vault(&self, vault: VaultId, wrapped_dek: &[u8]) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO vaults (id, created_at) VALUES (?, ?)")
            .bind(vault.to_string())
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO vault_keys (vault_id, wrapped_dek) VALUES (?, ?)")
            .bind(vault.to_string())
            .bind(wrapped_dek)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The key state of a vault.
    pub async fn vault_key(&self, vault: VaultId) -> Result<VaultKeyState, StorageError> {
        let row = sqlx::query(
            "SELECT v.deleted_at, k.wrapped_dek FROM vaults v LEFT JOIN vault_keys k ON k.vault_id = v.id WHERE v.id = ?",
        )
        .bind(vault.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => VaultKeyState::NotFound,
            Some(row) => match row.try_get::<Option<Vec<u8>>, _>("wrapped_dek")? {
                Some(dek) if row.try_get::<Option<i64>, _>("deleted_at")?.is_none() => VaultKeyState::Active(dek),
                _ => VaultKeyState::Deleted,
            },
        })
    }

    /// Copies every committed page from the write-ahead log into the
    /// database file and truncates the log to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`). With `secure_delete` on, this is
    /// what removes deleted rows from the disk: until then, the log still
    /// holds the pages as they were before the delete. Readers holding an
    /// older snapshot make SQLite answer "busy"; the checkpoint is retried
    /// for up to 5 s, then fails with [`StorageError::CheckpointBusy`].
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        for _ in 0..CHECKPOINT_ATTEMPTS {
            // (busy, frames in the log, frames checkpointed)
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(CHECKPOINT_RETRY).await;
        }
        Err(StorageError::CheckpointBusy)
    }

    /// Crypto-shreds a vault: removes its wrapped key and marks it deleted,
    /// in one transaction. Returns false if the vault did not exist. The
    /// wrapped key is gone from the files only after a
    /// [`ControlDb::checkpoint`].
    pub async fn shred_vault(&self, vault: VaultId) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM vault_keys WHERE vault_id = ?")
            .bind(vault.to_string())
            .execute(&mut *tx)
            .await?;
        let updated = sqlx::query("UPDATE vaults SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?")
            .bind(now_micros())
            .bind(vault.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Vaults deleted but not yet purged.
    pub async fn vaults_to_purge(&self) -> Result<Vec<VaultId>, StorageError> {
        let rows = sqlx::query("SELECT id FROM vaults WHERE deleted_at IS NOT NULL AND purged_at IS NULL")
            .fetch_all(&self.pool)
            .await?;
        vault_ids(&rows)
    }

    /// Removes a deleted vault's remaining rows (log, manifests, tables) and
    /// marks it purged, then checkpoints the write-ahead log. The vault row
    /// stays so that reads say "deleted".
    pub async fn purge_vault_rows(&self, vault: VaultId) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        let id = vault.to_string();
        for sql in [
            "DELETE FROM commit_log WHERE vault_id = ?",
            "DELETE FROM commit_log_trimmed WHERE vault_id = ?",
            "DELETE FROM manifests WHERE vault_id = ?",
            "DELETE FROM vault_tables WHERE vault_id = ?",
        ] {
            sqlx::query(sql).bind(&id).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE vaults SET purged_at = ? WHERE id = ?")
            .bind(now_micros())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.checkpoint().await
    }

    /// Vaults deleted at or after `since` (µs since the epoch), for a
    /// process whose caches must forget vaults another process deleted.
    pub async fn vaults_deleted_since(&self, since: i64) -> Result<Vec<VaultId>, StorageError> {
        let rows = sqlx::query("SELECT id FROM vaults WHERE deleted_at >= ?")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        vault_ids(&rows)
    }

    /// The stored definition of a schema version, as JSON text.
    pub async fn schema_definition(&self, name: &str, version: u32) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT definition FROM schemas WHERE name = ? AND version = ?")
                .bind(name)
                .bind(i64::from(version))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every stored schema definition (JSON text).
    pub async fn schema_definitions(&self) -> Result<Vec<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT definition FROM schemas ORDER BY name, version")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Stores (or replaces) a schema definition.
    pub async fn put_schema(&self, name: &str, version: u32, definition: &str) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO schemas (name, version, definition, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name, version) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(i64::from(version))
        .bind(definition)
        .bind(now_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every published schema version with its publisher (the client id of
    /// an app; `None` for the operator), by name then version.
    pub async fn published_schemas(&self) -> Result<Vec<PublishedRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT p.name, p.version, p.definition, n.publisher, p.published_at
             FROM published_schemas p JOIN schema_namespaces n ON n.name = p.name
             ORDER BY p.name, p.version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                Ok(PublishedRow {
                    name: r.try_get("name")?,
                    version: u32::try_from(version)
                        .map_err(|_| StorageError::Corrupt(format!("schema version {version}")))?,
                    definition: r.try_get("definition")?,
                    publisher: r.try_get("publisher")?,
                    published_at: r.try_get("published_at")?,
                })
            })
            .collect()
    }

    /// Where the published schemas stand: how many versions there are and
    /// when the newest was published. Versions are only ever added or
    /// replaced (with a newer time), so an equal stamp means nothing changed.
    pub async fn published_stamp(&self) -> Result<(i64, i64), StorageError> {
        let row = sqlx::query("SELECT count(*) AS n, coalesce(max(published_at), 0) AS newest FROM published_schemas")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("n")?, row.try_get("newest")?))
    }

    /// Stores a published schema version in one transaction: claims the
    /// namespace `name` for `publisher` if nobody has, refuses a namespace
    /// another publisher holds ([`StorageError::NamespaceTaken`]), hands the
    /// stored versions of the name (version, JSON text) to `check`, and
    /// stores `definition` if `check` passes. Returns whether the version
    /// is new (false: an existing version was replaced or left unchanged).
    pub async fn publish_schema(
        &self,
        name: &str,
        version: u32,
        definition: &str,
        publisher: Option<&str>,
        check: impl FnOnce(&[(u32, String)]) -> Result<(), StorageError>,
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        sqlx::query(
            "INSERT INTO schema_namespaces (name, publisher, claimed_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(publisher)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT publisher FROM schema_namespaces WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if owner.as_deref() != publisher {
            return Err(StorageError::NamespaceTaken(name.to_owned()));
        }
        let stored: Vec<(u32, String)> =
            sqlx::query("SELECT version, definition FROM published_schemas WHERE name = ? ORDER BY version")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    let version: i64 = r.try_get("version")?;
                    Ok((u32::try_from(version).unwrap_or(0), r.try_get("definition")?))
                })
                .collect::<Result<_, StorageError>>()?;
        check(&stored)?;
        let new = !stored.iter().any(|(v, _)| *v == version);
        let unchanged = stored.iter().any(|(v, text)| *v == version && text == definition);
        if !unchanged {
            sqlx::query(
                "INSERT INTO published_schemas (name, version, definition, published_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (name, version) DO UPDATE SET definition = excluded.definition,
                     published_at = excluded.published_at",
            )
            .bind(name)
            .bind(i64::from(version))
            .bind(definition)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// How many schema names `publisher` holds.
    pub async fn namespaces_of(&self, publisher: Option<&str>) -> Result<i64, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM schema_namespaces WHERE publisher IS ?")
                .bind(publisher)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Records tables as installed in a vault (idempotent).
    pub async fn install_tables(&self, vault: VaultId, tables: &[(TableName, u32)]) -> Result<(), StorageError> {
        let mut tx = self.begin_write().await?;
        for (table, version) in tables {
            sqlx::query(
                "INSERT INTO vault_tables (vault_id, table_name, schema_version, installed_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (vault_id, table_name) DO NOTHING",
            )
            .bind(vault.to_string())
            .bind(table.to_string())
            .bind(i64::from(*version))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tables installed in a vault with their schema versions.
    pub async fn installed_tables(&self, vault: VaultId) -> Result<Vec<(TableName, u32)>, StorageError> {
        let rows =
            sqlx::query("SELECT table_name, schema_version FROM vault_tables WHERE vault_id = ? ORDER BY table_name")
                .bind(vault.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("table_name")?;
                let version: i64 = r.try_get("schema_version")?;
                let table = name.parse().map_err(|e| StorageError::Corrupt(format!("{e}")))?;
                Ok((table, version as u32))
            })
            .collect()
    }

    /// Reserves `count` sequence numbers of a live vault inside `tx`; returns
    /// the first, or `None` when the vault is deleted or missing.
    pub async fn reserve_seqs(tx: &mut SqliteConnection, vault: &str, count: i64) -> Result<Option<i64>, StorageError> {
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE vaults SET next_seq = next_seq + ? WHERE id = ? AND deleted_at IS NULL RETURNING next_seq",
        )
        .bind(count)
        .bind(vault)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(next.map(|n| n - count))
    }

    /// Appends entries to the commit log inside `tx`, many rows per statement.
    pub async fn append_log(tx: &mut SqliteConnection, entries: &[LogAppend<'_>]) -> Result<(), StorageError> {
        // SQLite allows 32766 bound parameters per statement; 6 per row.
        for chunk in entries.chunks(4096) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO commit_log (vault_id, seq, table_name, row_hash, committed_at, payload) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.vault)
                    .push_bind(e.seq)
                    .push_bind(e.table)
                    .push_bind(e.row_hash)
                    .push_bind(e.committed_at)
                    .push_bind(e.payload);
            });
            qb.build().execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Log entries of a table with `seq > after`, oldest first, at most `limit`.
    pub async fn log_tail(
        &self,
        vault: VaultId,
        table: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM commit_log WHERE vault_id = ? AND seq > ? AND table_name = ? ORDER BY seq LIMIT ?",
        )
        .bind(vault.to_string())
        .bind(after)
        .bind(table)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    seq: r.try_get("seq")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect()
    }

    /// Every unflushed log entry (seq above its table's manifest), as
    /// (vault, table, row hash, seq): the tail index at start-up.
    pub async fn unflushed_entries(&self) -> Result<Vec<(VaultId, String, [u8; 16], i64)>, StorageError> {
        let rows = sqlx::query(
            "SELECT l.vault_id AS vault_id, l.table_name AS table_name, l.row_hash AS row_hash, l.seq AS seq
             FROM commit_log l
             LEFT JOIN (SELECT vault_id, table_name, MAX(flushed_seq) AS flushed FROM manifests GROUP BY vault_id, table_name) m
               ON m.vault_id = l.vault_id AND m.table_name = l.table_name
             WHERE l.seq > COALESCE(m.flushed, 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let vault: String = r.try_get("vault_id")?;
                let vault = vault.parse().map_err(|e| StorageError::Corrupt(format!("{e}")))?;
                let hash: Vec<u8> = r.try_get("row_hash")?;
                let hash: [u8; 16] = hash
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("row hash of the wrong length".into()))?;
                Ok((vault, r.try_get("table_name")?, hash, r.try_get("seq")?))
            })
            .collect()
    }

    /// One log entry by its sequence number.
    pub async fn log_entry(&self, vault: VaultId, seq: i64) -> Result<Option<LogEntry>, StorageError> {
        let row = sqlx::query("SELECT seq, payload FROM commit_log WHERE vault_id = ? AND seq = ?")
            .bind(vault.to_string())
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(LogEntry {
                seq: r.try_get("seq")?,
                payload: r.try_get("payload")?,
            })
        })
        .transpose()
    }

    /// Deletes flushed log entries of a table committed before `cutoff`
    /// (the sync window keeps newer ones), oldest first, never past
    /// `flushed_seq`. Returns how many were removed.
    pub async fn trim_log(
        &self,
        vault: VaultId,
        table: &str,
        flushed_seq: i64,
        cutoff: i64,
    ) -> Result<u64, StorageError> {
        let mut tx = self.begin_write().await?;
        let upto: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM commit_log WHERE vault_id = ? AND table_name = ? AND seq <= ? AND committed_at < ?",
        )
        .bind(vault.to_string())
        .bind(table)
        .bind(flushed_seq)
        .bind(cutoff)
        .fetch_one(&mut *tx)
        .await?;
        let Some(upto) = upto else { return Ok(0) };
        let n = sqlx::query("DELETE FROM commit_log WHERE vault_id = ? AND seq <= ? AND table_name = ?")
            .bind(vault.to_string())
            .bind(upto)
            .bind(table)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // The change feed's horizon moves in the same transaction.
        sqlx::query(
            "INSERT INTO commit_log_trimmed (vault_id, table_name, upto) VALUES (?, ?, ?)
             ON CONFLICT (vault_id, table_name) DO UPDATE SET upto = MAX(upto, excluded.upto)",
        )
        .bind(vault.to_string())
        .bind(table)
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The last sequence number a vault has handed out (0 before its first
    /// write), or `None` for no such vault. Every change up to it is
    /// committed: sequence numbers are reserved in the transaction that
    /// appends their entries.
    pub async fn last_seq(&self, vault: VaultId) -> Result<Option<i64>, StorageError> {
        let next: Option<i64> = sqlx::query_scalar("SELECT next_seq FROM vaults WHERE id = ?")
            .bind(vault.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(next.map(|n| n - 1))
    }

    /// The log entries of a vault with `after < seq <= upto` in one of
    /// `tables`, oldest first, at most `limit`, as (seq, table, payload).
    pub async fn log_changes(
        &self,
        vault: VaultId,
        tables: &[String],
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StorageError> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT seq, table_name, payload FROM commit_log WHERE vault_id = ");
        qb.push_bind(vault.to_string())
            .push(" AND seq > ")
            .push_bind(after)
            .push(" AND seq <= ")
            .push_bind(upto)
            .push(" AND table_name IN (");
        let mut names = qb.separated(", ");
        for t in tables {
            names.push_bind(t);
        }
        qb.push(") ORDER BY seq LIMIT ").push_bind(limit);
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("table_name")?, r.try_get("payload")?)))
            .collect()
    }

    /// The sequence number of the newest change to `table` the log holds or
    /// held (what it kept, or how far it was trimmed; 0 when never written).
    pub async fn table_last_seq(&self, vault: VaultId, table: &str) -> Result<i64, StorageError> {
        let seq: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM commit_log WHERE vault_id = ?1 AND table_name = ?2), 0), \
                        COALESCE((SELECT upto FROM commit_log_trimmed WHERE vault_id = ?1 AND table_name = ?2), 0))",
        )
        .bind(vault.to_string())
        .bind(table)
        .fetch_one(&self.pool)
        .await?;
        Ok(seq)
    }

    /// How far the log of `tables` has been trimmed: the largest seq of
    /// theirs no longer in the log (0 when none was trimmed).
    pub async fn log_trimmed_upto(&self, vault: VaultId, tables: &[String]) -> Result<i64, StorageError> {
        if tables.is_empty() {
            return Ok(0);
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT COALESCE(MAX(upto), 0) FROM commit_log_trimmed WHERE vault_id = ");
        qb.push_bind(vault.to_string()).push(" AND table_name IN (");
        let mut names = qb.separated(", ");
        for t in tables {
            names.push_bind(t);
        }
        qb.push(")");
        Ok(qb.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// The newest manifest of a table.
    pub async fn current_manifest(&self, vault: VaultId, table: &str) -> Result<Option<StoredManifest>, StorageError> {
        let row = sqlx::query(
            "SELECT version, flushed_seq, body FROM manifests WHERE vault_id = ? AND table_name = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(vault.to_string())
        .bind(table)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredManifest {
                version: r.try_get("version")?,
                flushed_seq: r.try_get("flushed_seq")?,
                body: r.try_get("body")?,
            })
        })
        .transpose()
    }

    /// Commits manifest `version` if no other writer committed it first.
    /// Older versions beyond the last few are pruned. Returns false on a lost race.
    pub async fn commit_manifest(
        &self,
        vault: VaultId,
        table: &str,
        version: i64,
        flushed_seq: i64,
        body: &[u8],
    ) -> Result<bool, StorageError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO manifests (vault_id, table_name, version, flushed_seq, body, committed_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(vault.to_string())
        .bind(table)
        .bind(version)
        .bind(flushed_seq)
        .bind(body)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM manifests WHERE vault_id = ? AND table_name = ? AND version < ?")
            .bind(vault.to_string())
            .bind(table)
            .bind(version - 16)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `id` column of `rows` as vault ids.
fn vault_ids(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<VaultId>, StorageError> {
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>("id")?
                .parse()
                .map_err(|e| StorageError::Corrupt(format!("{e}")))
        })
        .collect()
}
