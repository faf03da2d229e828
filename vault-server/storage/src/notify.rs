//! Commit notifications: once the committer's transaction is durable, it
//! tells whoever follows a vault that the vault's log moved on. A
//! notification carries the vault's last committed sequence number and
//! nothing of the rows: a follower (the change feed's live stream) reads the
//! log from its own position when woken, so the log stays the one source of
//! what changed, and a missed or merged notification loses nothing.
//!
//! One `watch` channel per followed vault, made when its first follower
//! subscribes and dropped with its last one: the memory is bounded by the
//! vaults being followed, and a commit to a vault nobody follows costs one
//! map look-up. A `watch` keeps only the newest value, so a burst of commits
//! wakes a follower once, and a follower that is busy never makes the
//! committer wait or queue. Commits that touch only the engine's own tables
//! (the access log, written after every request) notify nobody: no grant can
//! name them, so no follower reads them.
//!
//! **Recent changes.** Beside its channel, a followed vault keeps the
//! newest changes the committer made durable, as the committer had them
//! ([`RecentChanges`], at most [`RECENT_CHANGES`] of them and about
//! [`RECENT_BYTES`]). Every follower woken by a commit reads the same few
//! changes; served from here, a thousand followers of one vault cost no
//! read of the control database and no decryption each. A read that starts
//! before what is kept goes to the log as before ([`crate::changes`]).
//!
//! **Table versions.** The committer also records, per table, the sequence
//! number of its newest change ([`TableVersions`]), so that "has this table
//! changed since" costs a map look-up; the change feed's `ETag`s are built
//! on it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use coffer_core::{TableName, VaultId};
use lru::LruCache;
use serde_json::Value;
use tokio::sync::watch;

use crate::cache::pop_where;
use crate::changes::{LogChange, LogRead};
use crate::row::RowVersion;

/// Most changes a followed vault keeps in memory for its followers.
pub const RECENT_CHANGES: usize = 1024;
/// About how many bytes of changes a followed vault keeps in memory (a
/// single change larger than this is not kept: its followers read it from
/// the log).
pub const RECENT_BYTES: usize = 256 * 1024;

/// The newest durable changes of one followed vault's user tables: every
/// such change with `from < seq <= upto` is here, oldest first.
#[derive(Default)]
pub(crate) struct RecentChanges {
    /// `(from, upto)`; `None` until the first commit since the vault was
    /// followed.
    span: Option<(i64, i64)>,
    changes: VecDeque<(Arc<LogChange>, usize)>,
    bytes: usize,
}

impl RecentChanges {
    /// Appends one commit's changes to the vault's user tables, oldest
    /// first, then forgets the oldest beyond the bounds.
    fn push(&mut self, changes: Vec<LogChange>) {
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return;
        };
        let (first, last) = (first.version.seq.0, last.version.seq.0);
        let from = match self.span {
            Some((from, _)) => from,
            // Every change of the vault's earlier commits has a smaller
            // sequence number: this commit's are the first kept.
            None => first - 1,
        };
        self.span = Some((from, last));
        for change in changes {
            let size = approximate_size(&change.version);
            if size > RECENT_BYTES {
                // Too large to keep: what is kept now starts after it.
                self.changes.clear();
                self.bytes = 0;
                self.span = Some((change.version.seq.0, last));
                continue;
            }
            self.bytes += size;
            self.changes.push_back((Arc::new(change), size));
        }
        while self.changes.len() > RECENT_CHANGES || self.bytes > RECENT_BYTES {
            let Some((oldest, size)) = self.changes.pop_front() else {
                break;
            };
            self.bytes -= size;
            if let Some((from, upto)) = &mut self.span {
                *from = (*from).max(oldest.version.seq.0);
                *upto = (*upto).max(*from);
            }
        }
    }

    /// The changes of `tables` with `after < seq <= upto` (at most `limit`),
    /// if every one of them is kept here.
    fn read(&self, tables: &[TableName], after: i64, upto: i64, limit: usize) -> Option<LogRead> {
        let (from, kept_upto) = self.span?;
        if after < from {
            return None;
        }
        let upto = upto.min(kept_upto).max(after);
        let limit = limit.max(1);
        let start = self.changes.partition_point(|(c, _)| c.version.seq.0 <= after);
        let mut changes = Vec::new();
        for (change, _) in self.changes.range(start..) {
            if change.version.seq.0 > upto {
                break;
            }
            if tables.contains(&change.table) {
                changes.push(Arc::clone(change));
                if changes.len() == limit {
                    return Some(LogRead::Page {
                        through: change.version.seq.0,
                        changes,
                    });
                }
            }
        }
        Some(LogRead::Page { changes, through: upto })
    }
}

/// A rough size in memory of a row version (its strings and values).
fn approximate_size(version: &RowVersion) -> usize {
    fn value_size(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() + 24,
            Value::Array(items) => items.iter().map(value_size).sum::<usize>() + 24,
            Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>() + 48,
            _ => 16,
        }
    }
    128 + version.id.len()
        + version.created_by.len()
        + version.updated_by.len()
        + version
            .values
            .iter()
            .map(|(k, v)| k.len() + value_size(v) + 32)
            .sum::<usize>()
}

/// One followed vault: its channel and its recent changes.
struct Followed {
    tx: watch::Sender<i64>,
    recent: RecentChanges,
}

/// The followed vaults and their channels.
#[derive(Default)]
pub(crate) struct CommitNotifier {
    vaults: Mutex<HashMap<VaultId, Followed>>,
}

impl CommitNotifier {
    /// Tells the followers of `vault` that every change up to `seq` is
    /// committed and durable, after keeping the commit's changes to the
    /// vault's user tables (`changes`, oldest first, made only when the
    /// vault is followed). Called by the committer after its transaction's
    /// `COMMIT` returned, in commit order.
    pub(crate) fn notify(&self, vault: VaultId, seq: i64, changes: impl FnOnce() -> Vec<LogChange>) {
        let mut vaults = self.vaults.lock().expect("commit notifier");
        if let Some(followed) = vaults.get_mut(&vault) {
            followed.recent.push(changes());
            followed.tx.send_if_modified(|last| {
                let newer = seq > *last;
                if newer {
                    *last = seq;
                }
                newer
            });
        }
    }

    /// A follower of `vault`'s commits from now on.
    pub(crate) fn subscribe(self: &Arc<Self>, vault: VaultId) -> CommitWatch {
        let mut vaults = self.vaults.lock().expect("commit notifier");
        let rx = vaults
            .entry(vault)
            .or_insert_with(|| Followed {
                tx: watch::channel(0).0,
                recent: RecentChanges::default(),
            })
            .tx
            .subscribe();
        CommitWatch {
            vault,
            rx: Some(rx),
            notifier: self.clone(),
        }
    }

    /// How many vaults have followers now.
    pub(crate) fn followed(&self) -> usize {
        self.vaults.lock().expect("commit notifier").len()
    }

    /// The changes of `tables` with `after < seq <= upto`, at most `limit`,
    /// from the recent changes of a followed vault, when they are all kept
    /// there (`None`: read the log).
    pub(crate) fn read_recent(
        &self,
        vault: VaultId,
        tables: &[TableName],
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Option<LogRead> {
        let vaults = self.vaults.lock().expect("commit notifier");
        vaults.get(&vault)?.recent.read(tables, after, upto, limit)
    }

    /// The sequence number of the newest change to the user tables of a
    /// followed vault that its recent changes hold (`None`: the vault is not
    /// followed, or nothing was committed to it since).
    pub(crate) fn recent_upto(&self, vault: VaultId) -> Option<i64> {
        let vaults = self.vaults.lock().expect("commit notifier");
        vaults.get(&vault)?.recent.span.map(|(_, upto)| upto)
    }

    /// Forgets the recent changes of a vault (erased or deleted).
    pub(crate) fn forget_vault(&self, vault: VaultId) {
        let mut vaults = self.vaults.lock().expect("commit notifier");
        if let Some(followed) = vaults.get_mut(&vault) {
            followed.recent = RecentChanges::default();
        }
    }
}

/// Table versions a [`TableVersions`] remembers (the least recently
/// changed or asked are forgotten first, and read again from the log).
pub const TABLE_VERSIONS: usize = 65_536;

/// The sequence number of each table's newest change, for the tables
/// changed or asked about lately.
pub(crate) struct TableVersions {
    versions: Mutex<LruCache<(VaultId, String), i64>>,
}

impl Default for TableVersions {
    fn default() -> Self {
        TableVersions {
            versions: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(TABLE_VERSIONS).expect("non-zero"),
            )),
        }
    }
}

impl TableVersions {
    /// Records that `table` of `vault` changed at `seq`: by the committer,
    /// once the change is durable, or by a reader that read the version
    /// from the log (a change the committer recorded meanwhile is newer, so
    /// the larger of the two is kept).
    pub(crate) fn changed(&self, vault: VaultId, table: &str, seq: i64) {
        let mut versions = self.versions.lock().expect("table versions");
        let key = (vault, table.to_owned());
        match versions.get_mut(&key) {
            Some(v) => *v = (*v).max(seq),
            None => {
                versions.put(key, seq);
            }
        }
    }

    /// The remembered version of `table`.
    pub(crate) fn get(&self, vault: VaultId, table: &str) -> Option<i64> {
        self.versions
            .lock()
            .expect("table versions")
            .get(&(vault, table.to_owned()))
            .copied()
    }

    /// Forgets a vault's tables (erased or deleted).
    pub(crate) fn forget_vault(&self, vault: VaultId) {
        pop_where(&mut self.versions.lock().expect("table versions"), |(v, _)| *v == vault);
    }
}

/// Follows one vault's commits ([`crate::Engine::watch_commits`]).
/// Dropping the last follower of a vault drops its channel.
pub struct CommitWatch {
    vault: VaultId,
    /// Always `Some` until dropped (taken under the notifier's lock).
    rx: Option<watch::Receiver<i64>>,
    notifier: Arc<CommitNotifier>,
}

impl std::fmt::Debug for CommitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitWatch")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl CommitWatch {
    /// The vault followed.
    pub fn vault(&self) -> VaultId {
        self.vault
    }

    /// Marks every commit notified so far as seen. Call it *before* reading
    /// the log: a commit that lands after the read began then still wakes
    /// the next [`changed`](Self::changed).
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.mark_unchanged();
        }
    }

    /// Waits for a commit notified after the last [`mark_seen`] (or after
    /// the last `changed`, or the subscription) and returns the vault's
    /// last committed sequence number then. Several commits while nobody
    /// waited wake it once.
    ///
    /// [`mark_seen`]: Self::mark_seen
    pub async fn changed(&mut self) -> i64 {
        let Some(rx) = &mut self.rx else {
            return std::future::pending().await;
        };
        // The sender lives in the notifier's map while this receiver does,
        // so it is never closed under a live follower.
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        *rx.borrow_and_update()
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        let mut vaults = self.notifier.vaults.lock().expect("commit notifier");
        // Dropped under the lock, so two last followers dropped at once
        // cannot both see the other one still there.
        drop(self.rx.take());
        if vaults.get(&self.vault).is_some_and(|f| f.tx.receiver_count() == 0) {
            vaults.remove(&self.vault);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_core::Seq;

    fn change(table: &str, seq: i64, text: &str) -> LogChange {
        let mut values = serde_json::Map::new();
        values.insert("note".into(), Value::String(text.to_owned()));
        LogChange {
            table: table.parse().unwrap(),
            version: RowVersion {
                id: format!("r{seq}"),
                seq: Seq(seq),
                deleted: false,
                created_by: "app".into(),
                updated_by: "app".into(),
                created_at: 1,
                updated_at: 1,
                values,
            },
        }
    }

    fn seqs(read: Option<LogRead>) -> Option<(Vec<i64>, i64)> {
        match read? {
            LogRead::Page { changes, through } => Some((changes.iter().map(|c| c.version.seq.0).collect(), through)),
            LogRead::Trimmed => panic!("recent changes are never trimmed"),
        }
    }

    #[test]
    fn serves_only_reads_it_holds_every_change_of() {
        let a: TableName = "a.x".parse().unwrap();
        let b: TableName = "b.y".parse().unwrap();
        let mut recent = RecentChanges::default();
        assert!(
            recent.read(std::slice::from_ref(&a), 0, 10, 10).is_none(),
            "nothing kept yet"
        );
        // Seq 6 is another table's; 8 is the access log's, never pushed.
        recent.push(vec![
            change("a.x", 5, "1"),
            change("b.y", 6, "2"),
            change("a.x", 7, "3"),
        ]);
        recent.push(vec![change("a.x", 9, "4")]);
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&a), 4, 100, 10)),
            Some((vec![5, 7, 9], 9))
        );
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&a), 5, 8, 10)),
            Some((vec![7], 8))
        );
        assert_eq!(
            seqs(recent.read(&[a.clone(), b.clone()], 4, 100, 2)),
            Some((vec![5, 6], 6))
        );
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&b), 9, 100, 10)),
            Some((vec![], 9))
        );
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&a), 12, 100, 10)),
            Some((vec![], 12))
        );
        assert!(
            recent.read(std::slice::from_ref(&a), 3, 100, 10).is_none(),
            "before the first kept"
        );
    }

    #[test]
    fn forgets_the_oldest_beyond_its_bounds() {
        let a: TableName = "a.x".parse().unwrap();
        let mut recent = RecentChanges::default();
        let n = RECENT_CHANGES as i64 + 10;
        recent.push((1..=n).map(|seq| change("a.x", seq, "x")).collect());
        assert!(recent.read(std::slice::from_ref(&a), 0, n, 10).is_none());
        assert!(recent.read(std::slice::from_ref(&a), 9, n, 10).is_none());
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&a), 10, n, 2)),
            Some((vec![11, 12], 12))
        );
        // A change too large to keep: what is kept starts after it.
        recent.push(vec![
            change("a.x", n + 1, &"x".repeat(RECENT_BYTES)),
            change("a.x", n + 2, "y"),
        ]);
        assert!(recent.read(std::slice::from_ref(&a), n, n + 2, 10).is_none());
        assert_eq!(
            seqs(recent.read(std::slice::from_ref(&a), n + 1, n + 2, 10)),
            Some((vec![n + 2], n + 2))
        );
        assert!(recent.bytes <= RECENT_BYTES);
    }
}
