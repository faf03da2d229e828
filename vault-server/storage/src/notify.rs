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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coffer_core::VaultId;
use tokio::sync::watch;

/// The followed vaults and their channels.
#[derive(Default)]
pub(crate) struct CommitNotifier {
    vaults: Mutex<HashMap<VaultId, watch::Sender<i64>>>,
}

impl CommitNotifier {
    /// Tells the followers of `vault` that every change up to `seq` is
    /// committed and durable. Called by the committer after its
    /// transaction's `COMMIT` returned.
    pub(crate) fn notify(&self, vault: VaultId, seq: i64) {
        let vaults = self.vaults.lock().expect("commit notifier");
        if let Some(tx) = vaults.get(&vault) {
            tx.send_if_modified(|last| {
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
        let rx = vaults.entry(vault).or_insert_with(|| watch::channel(0).0).subscribe();
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
        if vaults.get(&self.vault).is_some_and(|tx| tx.receiver_count() == 0) {
            vaults.remove(&self.vault);
        }
    }
}
