//! The committer: the one task that appends changes to the commit log.
//!
//! Writers hand it prepared batches through a channel. It takes every batch
//! that is waiting (group commit), resolves each mutation against the current
//! row (updates merge their patch, `if_seq` is checked, inserts with a given
//! id must not collide), reserves sequence numbers per vault, and appends all
//! of it in one database transaction, so one fsync acknowledges the group.
//! Once that transaction is durable, the followers of each vault written are
//! notified (`notify.rs`), then the writers are answered.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_core::{AppId, Seq, VaultId};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::aad::log_aad;
use crate::changes::LogChange;
use crate::control::{ControlDb, LogAppend, now_micros};
use crate::crypto::VaultKeys;
use crate::error::StorageError;
use crate::installed::InstalledTable;
use crate::row::{RowVersion, Values, apply_patch, check_required};
use crate::shared::Shared;
use crate::system::is_system_table;

/// Most mutations committed in one group.
const MAX_GROUP_OPS: usize = 16 * 1024;
/// Scheduler turns the committer waits for writers to come back.
const MAX_IDLE_TURNS: u32 = 8;

/// A mutation as a caller states it.
#[derive(Clone, Debug)]
pub enum Op {
    /// Insert a row; `values` may carry an `id` (otherwise one is generated).
    Insert {
        /// Column values in their JSON form.
        values: Values,
    },
    /// Change some columns of a row (an explicit null clears a column).
    Update {
        /// The row id.
        id: String,
        /// The columns to change.
        patch: Values,
        /// Refuse the change unless the row's current `_seq` is this.
        if_seq: Option<Seq>,
    },
    /// Delete a row (a tombstone version is written).
    Delete {
        /// The row id.
        id: String,
        /// Refuse the change unless the row's current `_seq` is this.
        if_seq: Option<Seq>,
    },
}

/// A validated, normalized mutation.
pub(crate) enum Prepared {
    Insert {
        id: String,
        id_given: bool,
        values: Values,
    },
    Update {
        id: String,
        patch: Values,
        if_seq: Option<Seq>,
    },
    Delete {
        id: String,
        if_seq: Option<Seq>,
    },
}

pub(crate) struct PreparedOp {
    pub table: Arc<InstalledTable>,
    pub op: Prepared,
}

pub(crate) struct WriteRequest {
    pub vault: VaultId,
    pub keys: Arc<VaultKeys>,
    pub app: AppId,
    pub ops: Vec<PreparedOp>,
    pub reply: oneshot::Sender<Result<Vec<RowVersion>, StorageError>>,
}

type RowKey = (VaultId, String, String);

/// A log entry ready to append: vault, seq, table, row hash, sealed payload.
type SealedEntry = (String, i64, String, [u8; 16], Vec<u8>);

pub(crate) struct Committer {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<WriteRequest>,
    /// The committer's own database connection, opened on first use.
    conn: Option<PoolConnection<Sqlite>>,
    /// Mutations in the last group: the next group waits briefly for as
    /// many writers to come back before it commits.
    last_group_ops: usize,
}

impl Committer {
    pub fn new(shared: Arc<Shared>, rx: mpsc::Receiver<WriteRequest>) -> Self {
        Self {
            shared,
            rx,
            conn: None,
            last_group_ops: 0,
        }
    }

    pub async fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let first = tokio::select! {
                req = self.rx.recv() => match req {
                    Some(req) => req,
                    None => return,
                },
                _ = shared.stop_committer.notified() => {
                    // Commit what is queued, then stop.
                    self.rx.close();
                    while let Some(req) = self.rx.recv().await {
                        self.commit_group(vec![req]).await;
                    }
                    return;
                }
            };
            let mut ops = first.ops.len();
            let mut group = vec![first];
            // Group commit: take what is waiting; when the last group was
            // large, give its writers a few scheduler turns to come back, so
            // one fsync acknowledges them all again.
            let mut idle_turns = 0;
            while ops < MAX_GROUP_OPS {
                match self.rx.try_recv() {
                    Ok(req) => {
                        ops += req.ops.len();
                        group.push(req);
                        idle_turns = 0;
                    }
                    Err(_) if ops < self.last_group_ops && idle_turns < MAX_IDLE_TURNS => {
                        idle_turns += 1;
                        tokio::task::yield_now().await;
                    }
                    Err(_) => break,
                }
            }
            self.last_group_ops = ops.min(MAX_GROUP_OPS) * 3 / 4;
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&mut self, group: Vec<WriteRequest>) {
        // 1. Resolve every request against current rows; a failing request
        //    is answered at once and leaves no trace in the group.
        let mut overlay: HashMap<RowKey, RowVersion> = HashMap::new();
        let mut ready: Vec<(WriteRequest, Vec<RowVersion>)> = Vec::with_capacity(group.len());
        for req in group {
            let mut local: HashMap<RowKey, RowVersion> = HashMap::new();
            match self.resolve(&req, &overlay, &mut local).await {
                Ok(rows) => {
                    overlay.extend(local);
                    ready.push((req, rows));
                }
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        // 2. One transaction for the whole group.
        match self.append(&mut ready).await {
            Ok(failed) => {
                // Durable now: tell the vaults' followers before answering.
                // Writes to the engine's own tables (the access log, written
                // after every request) wake nobody: no grant can follow them.
                let mut last: HashMap<VaultId, i64> = HashMap::new();
                for (i, (req, rows)) in ready.iter().enumerate() {
                    if failed.contains(&i) {
                        continue;
                    }
                    for (op, row) in req.ops.iter().zip(rows) {
                        if !is_system_table(&op.table.name) {
                            self.shared
                                .versions
                                .changed(req.vault, &op.table.name.to_string(), row.seq.0);
                            let seq = last.entry(req.vault).or_insert(0);
                            *seq = (*seq).max(row.seq.0);
                        }
                    }
                }
                for (vault, seq) in last {
                    // The vault's user-table changes of this group, oldest
                    // first, kept for its followers (only if it has any).
                    let changes = || {
                        let mut changes: Vec<LogChange> = ready
                            .iter()
                            .enumerate()
                            .filter(|(i, (req, _))| req.vault == vault && !failed.contains(i))
                            .flat_map(|(_, (req, rows))| req.ops.iter().zip(rows))
                            .filter(|(op, _)| !is_system_table(&op.table.name))
                            .map(|(op, row)| LogChange {
                                table: op.table.name.clone(),
                                version: row.clone(),
                            })
                            .collect();
                        changes.sort_by_key(|c| c.version.seq.0);
                        changes
                    };
                    self.shared.commits.notify(vault, seq, changes);
                }
                let mut wake = false;
                for (i, (req, rows)) in ready.into_iter().enumerate() {
                    if failed.contains(&i) {
                        let _ = req.reply.send(Err(StorageError::VaultDeleted(req.vault)));
                        continue;
                    }
                    for (op, row) in req.ops.iter().zip(&rows) {
                        let table = op.table.name.to_string();
                        self.shared
                            .tail
                            .record(req.vault, &table, req.keys.row_hash(&table, &row.id), row.seq.0);
                        wake |= self.shared.tail.len(req.vault, &table) as i64 >= self.shared.options.flush_rows;
                    }
                    let _ = req.reply.send(Ok(rows));
                }
                if wake {
                    self.shared.wake.notify_one();
                }
            }
            Err(e) => {
                let message = e.to_string();
                for (req, _) in ready {
                    let _ = req
                        .reply
                        .send(Err(StorageError::Corrupt(format!("commit failed: {message}"))));
                }
            }
        }
    }

    /// Computes the new row versions of a request (sequence numbers still 0).
    async fn resolve(
        &self,
        req: &WriteRequest,
        overlay: &HashMap<RowKey, RowVersion>,
        local: &mut HashMap<RowKey, RowVersion>,
    ) -> Result<Vec<RowVersion>, StorageError> {
        let now = now_micros();
        let app = req.app.as_str();
        let mut out = Vec::with_capacity(req.ops.len());
        for op in &req.ops {
            let table = &op.table;
            let id = match &op.op {
                Prepared::Insert { id, .. } | Prepared::Update { id, .. } | Prepared::Delete { id, .. } => id,
            };
            let key: RowKey = (req.vault, table.name.to_string(), id.clone());
            let needs_current = !matches!(op.op, Prepared::Insert { id_given: false, .. });
            let current = if !needs_current {
                None
            } else if let Some(v) = local.get(&key).or_else(|| overlay.get(&key)) {
                Some(v.clone())
            } else {
                self.shared.current_version(req.vault, &req.keys, table, id).await?
            }
            .filter(|v| !v.deleted);
            let check_seq = |current: &RowVersion, if_seq: &Option<Seq>| match if_seq {
                Some(expected) if *expected != current.seq => Err(StorageError::Conflict {
                    table: table.name.clone(),
                    id: id.clone(),
                    expected: *expected,
                    current: current.seq,
                }),
                _ => Ok(()),
            };
            let not_found = || StorageError::RowNotFound {
                table: table.name.clone(),
                id: id.clone(),
            };
            let version = match &op.op {
                Prepared::Insert { values, .. } => {
                    if current.is_some() {
                        return Err(StorageError::RowExists {
                            table: table.name.clone(),
                            id: id.clone(),
                        });
                    }
                    RowVersion {
                        id: id.clone(),
                        seq: Seq(0),
                        deleted: false,
                        created_by: app.to_owned(),
                        updated_by: app.to_owned(),
                        created_at: now,
                        updated_at: now,
                        values: values.clone(),
                    }
                }
                Prepared::Update { patch, if_seq, .. } => {
                    let current = current.ok_or_else(not_found)?;
                    check_seq(&current, if_seq)?;
                    let mut values = current.values;
                    apply_patch(&mut values, patch.clone());
                    check_required(&table.name, &table.def, &values)?;
                    RowVersion {
                        seq: Seq(0),
                        updated_by: app.to_owned(),
                        updated_at: now,
                        values,
                        ..current
                    }
                }
                Prepared::Delete { if_seq, .. } => {
                    let current = current.ok_or_else(not_found)?;
                    check_seq(&current, if_seq)?;
                    RowVersion {
                        seq: Seq(0),
                        deleted: true,
                        updated_by: app.to_owned(),
                        updated_at: now,
                        values: Values::new(),
                        ..current
                    }
                }
            };
            local.insert(key, version.clone());
            out.push(version);
        }
        Ok(out)
    }

    /// Reserves sequence numbers, seals and appends every row of the group
    /// in one transaction. Returns the indexes of requests whose vault was
    /// deleted meanwhile (nothing of them was written).
    async fn append(&mut self, ready: &mut [(WriteRequest, Vec<RowVersion>)]) -> Result<Vec<usize>, StorageError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.shared.db.dedicated_connection().await?),
        };
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut counts: HashMap<VaultId, i64> = HashMap::new();
        for (req, rows) in ready.iter() {
            *counts.entry(req.vault).or_insert(0) += rows.len() as i64;
        }
        let mut next: HashMap<VaultId, Option<i64>> = HashMap::new();
        for (vault, count) in counts {
            next.insert(
                vault,
                ControlDb::reserve_seqs(&mut tx, &vault.to_string(), count).await?,
            );
        }
        let now = now_micros();
        let mut failed = Vec::new();
        let mut sealed: Vec<SealedEntry> = Vec::new();
        for (i, (req, rows)) in ready.iter_mut().enumerate() {
            let Some(Some(seq)) = next.get_mut(&req.vault) else {
                failed.push(i);
                continue;
            };
            let vault_text = req.vault.to_string();
            for (op, row) in req.ops.iter().zip(rows.iter_mut()) {
                row.seq = Seq(*seq);
                *seq += 1;
                let table = op.table.name.to_string();
                let plain = serde_json::to_vec(&*row).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                let payload = req.keys.seal(log_aad(req.vault, &table, row.seq.0).as_bytes(), &plain);
                let hash = req.keys.row_hash(&table, &row.id);
                sealed.push((vault_text.clone(), row.seq.0, table, hash, payload));
            }
        }
        let entries: Vec<LogAppend<'_>> = sealed
            .iter()
            .map(|(vault, seq, table, hash, payload)| LogAppend {
                vault,
                seq: *seq,
                table,
                row_hash: hash,
                committed_at: now,
                payload,
            })
            .collect();
        ControlDb::append_log(&mut tx, &entries).await?;
        tx.commit().await?;
        Ok(failed)
    }
}
