//! The vault's access log: one entry per request an app made (time, app,
//! operation, tables, rows returned or written, outcome), stored in the vault
//! itself as a system table encrypted like any other.
//!
//! The table is `_coffer.access_log` ([`coffer_storage::system`]): every live
//! vault has it, no scope can name it, and its rows are written by the
//! reserved app [`SYSTEM_APP`] (`coffer`).
//!
//! [`AccessLog::record`] only queues the entry. Each vault has its own
//! bounded queue ([`VAULT_QUEUE_CAPACITY`]): an app that floods one vault
//! with requests fills only that vault's queue, never another vault's. When
//! a vault's queue is full its new entries are dropped, counted per vault
//! ([`AccessLog::dropped`], shown on the user's dashboard) and logged. A
//! background appender takes what is queued, waits up to [`LINGER`] for
//! more, and writes each vault's batch with one [`Engine::write`]; the
//! writes of one round go to the engine together, so its committer appends
//! them in one transaction. A burst of requests costs about one commit,
//! whatever the number of requests and vaults. The price: a crash loses the
//! entries of the last fraction of a second (decision 0008).
//! [`AccessLog::flush`] waits until everything recorded before it is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use coffer_core::{AppId, TableName, VaultId};
use coffer_query::{QueryError, VaultQuery, VaultTableProvider};
use coffer_storage::system::{SYSTEM_APP, SYSTEM_SCHEMA, access_log_table};
use coffer_storage::{Engine, Mutation, Op, StorageError, Values};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::{col, lit};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

/// Entries one vault's queue holds before [`AccessLog::record`] starts
/// dropping that vault's entries. The appender empties every queue each
/// round (at least every [`LINGER`]), so only a vault receiving thousands
/// of requests a tenth of a second reaches it. Memory is bounded by this
/// times the number of vaults with requests in flight.
pub const VAULT_QUEUE_CAPACITY: usize = 4096;
/// How long the appender waits for more entries after the first one of a
/// round, before it writes (a flush request cuts the wait short).
pub const LINGER: Duration = Duration::from_millis(100);
/// Vault batches of one round handed to the engine at the same time.
const CONCURRENT_VAULTS: usize = 256;

/// One request an app made to a vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    /// When the request was made.
    pub at: DateTime<Utc>,
    /// The app that made it.
    pub app: AppId,
    /// "read", "insert", "update", "delete" or "describe" (listing
    /// schemas/tables): an [`Operation`](crate::Operation)'s name.
    pub operation: String,
    /// The tables the request named.
    pub tables: Vec<TableName>,
    /// Rows returned (read) or written.
    pub rows: u64,
    /// "ok", or the short problem code of the refusal or failure
    /// ("missing-right", "table-not-found", "invalid-filter", "conflict",
    /// "server-error", …).
    pub outcome: String,
}

/// Counters of an [`AccessLog`], since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessLogStats {
    /// Entries accepted into a queue.
    pub recorded: u64,
    /// Entries written to their vault.
    pub written: u64,
    /// Entries dropped: their vault's queue was full, the vault was
    /// deleted, or the write failed.
    pub dropped: u64,
    /// Vault batches written ([`Engine::write`] calls).
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    /// Set while some vault's queue overflows, so that one warning covers a
    /// burst.
    overflowing: AtomicBool,
}

/// What waits for the appender: each vault's entries, and flush requests.
#[derive(Default)]
struct Queues {
    vaults: HashMap<VaultId, Vec<AccessEntry>>,
    waiters: Vec<oneshot::Sender<()>>,
    /// Every [`AccessLog`] handle is gone: write what is left, then stop.
    closed: bool,
}

/// The state the handles and the appender share.
#[derive(Default)]
struct Shared {
    queues: Mutex<Queues>,
    /// Wakes the appender (a permit is kept when it is not waiting).
    wake: Notify,
    counters: Counters,
    /// Entries dropped per vault since start.
    dropped: Mutex<HashMap<VaultId, u64>>,
}

impl Shared {
    // Each critical section is a few map operations that cannot leave the
    // state half-updated, so a poisoned lock is still usable.
    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_dropped(&self, vault: VaultId, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        *self
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(vault)
            .or_default() += n;
    }
}

/// Tells the appender to finish once the last [`AccessLog`] clone is gone.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.queues().closed = true;
        self.0.wake.notify_one();
    }
}

/// The access log of every vault of one engine. Cheap to clone; all clones
/// share the queues and one background appender.
#[derive(Clone)]
pub struct AccessLog {
    engine: Engine,
    shared: Arc<Shared>,
    _handle: Arc<Handle>,
}

impl AccessLog {
    /// Starts the log: spawns the background appender on the current tokio
    /// runtime (so call it inside one). The appender stops once every clone
    /// of the returned log is dropped (after writing what is queued).
    pub fn start(engine: coffer_storage::Engine) -> AccessLog {
        let shared = Arc::new(Shared::default());
        tokio::spawn(append(engine.clone(), shared.clone()));
        AccessLog {
            engine,
            _handle: Arc::new(Handle(shared.clone())),
            shared,
        }
    }

    /// Records one request of an app to `vault`. Never blocks and never
    /// fails the request: the entry is queued for the appender. Each vault's
    /// queue is bounded ([`VAULT_QUEUE_CAPACITY`]); when it is full the entry
    /// is dropped, counted for the vault ([`AccessLog::dropped`]) and in
    /// [`AccessLogStats::dropped`], and a warning is logged. Other vaults'
    /// entries are not affected.
    pub fn record(&self, vault: VaultId, entry: AccessEntry) {
        let shared = &self.shared;
        {
            let mut queues = shared.queues();
            let queue = queues.vaults.entry(vault).or_default();
            if queue.len() < VAULT_QUEUE_CAPACITY {
                queue.push(entry);
                shared.counters.recorded.fetch_add(1, Ordering::Relaxed);
                drop(queues);
                shared.wake.notify_one();
                return;
            }
        }
        shared.count_dropped(vault, 1);
        if !shared.counters.overflowing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %vault,
                capacity = VAULT_QUEUE_CAPACITY,
                "a vault's access log queue is full: dropping its entries until it drains"
            );
        }
    }

    /// Waits until every entry recorded before the call is durable (for tests
    /// and shutdown). "Durable" means committed to the vault's commit log,
    /// or given up on (vault deleted, engine shutting down), which is logged
    /// and counted in [`AccessLogStats::dropped`]. Call it before
    /// [`Engine::shutdown`].
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.shared.queues().waiters.push(done);
        self.shared.wake.notify_one();
        let _ = wait.await;
    }

    /// Entries of `vault` dropped since the log started (its queue was
    /// full, or writing them failed). The dashboard shows it to the user.
    pub fn dropped(&self, vault: VaultId) -> u64 {
        self.shared
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vault)
            .copied()
            .unwrap_or(0)
    }

    /// The latest `limit` entries of a vault's log, newest first; `app`
    /// filters to one app. Reads the log as of now (a snapshot of the table:
    /// its data files and its unflushed tail); it never waits for the
    /// appender, so entries still queued are not in the answer.
    pub async fn recent(
        &self,
        vault: VaultId,
        app: Option<&AppId>,
        limit: usize,
    ) -> Result<Vec<AccessEntry>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let table = access_log_table();
        // The unconfined server-side catalog of the vault, plus the system
        // schema (which `VaultQuery` leaves out, as `Engine::tables` does).
        let ctx = VaultQuery::new(self.engine.clone(), vault)
            .context()
            .await
            .map_err(query_error)?;
        let provider = VaultTableProvider::new(self.engine.snapshot(vault, &table).await?).map_err(datafusion_error)?;
        let schema = Arc::new(MemorySchemaProvider::new());
        schema
            .register_table(table.table.clone(), Arc::new(provider))
            .map_err(datafusion_error)?;
        ctx.catalog("vault")
            .ok_or_else(|| StorageError::Corrupt("the vault catalog is missing".into()))?
            .register_schema(SYSTEM_SCHEMA, schema)
            .map_err(datafusion_error)?;
        let mut df = ctx
            .table(TableReference::full("vault", SYSTEM_SCHEMA, table.table.as_str()))
            .await
            .map_err(datafusion_error)?;
        if let Some(app) = app {
            df = df.filter(col("app").eq(lit(app.as_str()))).map_err(datafusion_error)?;
        }
        let batches = df
            .sort(vec![col("at").sort(false, false), col("id").sort(false, false)])
            .and_then(|df| df.limit(0, Some(limit)))
            .and_then(|df| df.select_columns(&["at", "app", "operation", "tables", "rows", "outcome"]))
            .map_err(datafusion_error)?
            .collect()
            .await
            .map_err(datafusion_error)?;
        let mut entries = Vec::new();
        for batch in &batches {
            entries.extend(decode(batch)?);
        }
        Ok(entries)
    }

    /// Counters since [`AccessLog::start`].
    pub fn stats(&self) -> AccessLogStats {
        let c = &self.shared.counters;
        AccessLogStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }
}

/// The background appender: one round at a time, wait for an entry (or a
/// flush request), linger up to [`LINGER`] for more unless a flush request
/// waits, take every vault's queue, write it, then answer the flush
/// requests taken with it.
async fn append(engine: Engine, shared: Arc<Shared>) {
    loop {
        loop {
            {
                let queues = shared.queues();
                if !queues.vaults.is_empty() || !queues.waiters.is_empty() {
                    break;
                }
                if queues.closed {
                    return;
                }
            }
            shared.wake.notified().await;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        loop {
            {
                let queues = shared.queues();
                if !queues.waiters.is_empty() || queues.closed {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, shared.wake.notified()).await.is_err() {
                break;
            }
        }
        let (vaults, waiters) = {
            let mut queues = shared.queues();
            (std::mem::take(&mut queues.vaults), std::mem::take(&mut queues.waiters))
        };
        write_round(&engine, vaults, &shared).await;
        shared.counters.overflowing.store(false, Ordering::Relaxed);
        for done in waiters {
            let _ = done.send(());
        }
    }
}

/// Writes one round: one [`Engine::write`] per vault, all handed to the
/// engine at once so that its committer commits them together.
async fn write_round(engine: &Engine, vaults: HashMap<VaultId, Vec<AccessEntry>>, shared: &Shared) {
    let counters = &shared.counters;
    let table = access_log_table();
    let app = AppId::new(SYSTEM_APP);
    futures::stream::iter(vaults)
        .map(|(vault, entries)| {
            let app = &app;
            let mutations: Vec<Mutation> = entries
                .iter()
                .map(|entry| Mutation {
                    table: table.clone(),
                    op: Op::Insert { values: row(entry) },
                })
                .collect();
            async move {
                let n = mutations.len() as u64;
                match engine.write(vault, app, mutations).await {
                    Ok(_) => {
                        counters.written.fetch_add(n, Ordering::Relaxed);
                        counters.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        shared.count_dropped(vault, n);
                        match e {
                            StorageError::VaultDeleted(_) | StorageError::VaultNotFound(_) => {
                                tracing::warn!(%vault, entries = n, "access log entries for a deleted vault dropped");
                            }
                            e => tracing::warn!(%vault, entries = n, error = %e, "access log entries could not be written"),
                        }
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENT_VAULTS)
        .collect::<()>()
        .await;
}

/// The access log row of an entry, in the form [`Engine::write`] takes.
fn row(entry: &AccessEntry) -> Values {
    let mut values = Values::new();
    values.insert(
        "at".into(),
        Value::String(entry.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
    );
    values.insert("app".into(), Value::String(entry.app.as_str().to_owned()));
    values.insert("operation".into(), Value::String(entry.operation.clone()));
    values.insert(
        "tables".into(),
        Value::Array(entry.tables.iter().map(|t| Value::String(t.to_string())).collect()),
    );
    values.insert("rows".into(), Value::from(entry.rows.min(i64::MAX as u64)));
    values.insert("outcome".into(), Value::String(entry.outcome.clone()));
    values
}

/// Entries from a result batch of `at, app, operation, tables, rows, outcome`.
fn decode(batch: &RecordBatch) -> Result<Vec<AccessEntry>, StorageError> {
    let column = |name: &str, ty: &DataType| -> Result<ArrayRef, StorageError> {
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| StorageError::Corrupt(format!("access log: no column {name}")))?;
        Ok(cast(array, ty)?)
    };
    let at = column("at", &DataType::Int64)?;
    let at = at.as_primitive::<Int64Type>();
    let rows = column("rows", &DataType::Int64)?;
    let rows = rows.as_primitive::<Int64Type>();
    let app = column("app", &DataType::Utf8)?;
    let app = app.as_string::<i32>();
    let operation = column("operation", &DataType::Utf8)?;
    let operation = operation.as_string::<i32>();
    let tables = column("tables", &DataType::Utf8)?;
    let tables = tables.as_string::<i32>();
    let outcome = column("outcome", &DataType::Utf8)?;
    let outcome = outcome.as_string::<i32>();
    let text = |a: &datafusion::arrow::array::StringArray, i: usize| {
        if a.is_null(i) {
            String::new()
        } else {
            a.value(i).to_owned()
        }
    };
    (0..batch.num_rows())
        .map(|i| {
            let micros = if at.is_null(i) { 0 } else { at.value(i) };
            let at = DateTime::<Utc>::from_timestamp_micros(micros)
                .ok_or_else(|| StorageError::Corrupt(format!("access log: time {micros} out of range")))?;
            let names: Vec<String> = if tables.is_null(i) {
                Vec::new()
            } else {
                serde_json::from_str(tables.value(i))
                    .map_err(|e| StorageError::Corrupt(format!("access log: tables: {e}")))?
            };
            Ok(AccessEntry {
                at,
                app: AppId::new(text(app, i)),
                operation: text(operation, i),
                tables: names.iter().map(String::as_str).map(table_name).collect(),
                rows: if rows.is_null(i) {
                    0
                } else {
                    rows.value(i).max(0) as u64
                },
                outcome: text(outcome, i),
            })
        })
        .collect()
}

/// A logged table name; a name that is not `schema.table` is kept whole as
/// the schema part rather than lost.
fn table_name(name: &str) -> TableName {
    name.parse().unwrap_or_else(|_| match name.split_once('.') {
        Some((schema, table)) => TableName::new(schema, table),
        None => TableName::new(name, ""),
    })
}

fn query_error(e: QueryError) -> StorageError {
    match e {
        QueryError::Storage(e) => e,
        QueryError::DataFusion(e) => datafusion_error(e),
    }
}

/// Gives back the storage error a DataFusion error carries, if any.
fn datafusion_error(e: DataFusionError) -> StorageError {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<StorageError>() {
            Ok(e) => *e,
            Err(other) => StorageError::Corrupt(format!("reading the access log: {other}")),
        },
        DataFusionError::ArrowError(e, _) => StorageError::Arrow(*e),
        DataFusionError::ParquetError(e) => StorageError::Parquet(*e),
        DataFusionError::Context(_, inner) => datafusion_error(*inner),
        e => StorageError::Corrupt(format!("reading the access log: {e}")),
    }
}
