//! The tail index: for every table with unflushed changes, which rows
//! changed and at which `seq`. A row found here has its newest version in
//! the commit log; any other row's newest version is in the data files.
//!
//! The committer records each commit before acknowledging it; the flusher
//! forgets what a committed manifest now covers. Memory is bounded by the
//! unflushed tail: a table with nothing waiting has no entry at all.

use std::collections::HashMap;
use std::sync::Mutex;

use coffer_core::VaultId;

/// Keyed hash of a row id (see [`crate::crypto::VaultKeys::row_hash`]).
pub type RowHash = [u8; 16];

/// Unflushed rows per (vault, table).
#[derive(Debug, Default)]
pub struct TailIndex {
    tables: Mutex<HashMap<(VaultId, String), HashMap<RowHash, i64>>>,
}

impl TailIndex {
    /// Records that `row` of `table` changed at `seq`.
    pub fn record(&self, vault: VaultId, table: &str, row: RowHash, seq: i64) {
        let mut tables = self.tables.lock().expect("tail index");
        let rows = tables.entry((vault, table.to_owned())).or_default();
        let entry = rows.entry(row).or_insert(seq);
        *entry = (*entry).max(seq);
    }

    /// The seq of the newest unflushed change of a row, if any.
    pub fn latest(&self, vault: VaultId, table: &str, row: &RowHash) -> Option<i64> {
        let tables = self.tables.lock().expect("tail index");
        tables
            .get(&(vault, table.to_owned()))
            .and_then(|rows| rows.get(row).copied())
    }

    /// Forgets changes with `seq <= upto`: a committed manifest holds them.
    pub fn flushed(&self, vault: VaultId, table: &str, upto: i64) {
        let mut tables = self.tables.lock().expect("tail index");
        let key = (vault, table.to_owned());
        if let Some(rows) = tables.get_mut(&key) {
            rows.retain(|_, seq| *seq > upto);
            if rows.is_empty() {
                tables.remove(&key);
            }
        }
    }

    /// Forgets a whole vault (deleted).
    pub fn forget_vault(&self, vault: VaultId) {
        self.tables.lock().expect("tail index").retain(|(v, _), _| *v != vault);
    }

    /// Tables with at least `min` unflushed rows.
    pub fn tables_with_at_least(&self, min: usize) -> Vec<(VaultId, String)> {
        let tables = self.tables.lock().expect("tail index");
        tables
            .iter()
            .filter(|(_, rows)| rows.len() >= min.max(1))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Unflushed rows of one table.
    pub fn len(&self, vault: VaultId, table: &str) -> usize {
        let tables = self.tables.lock().expect("tail index");
        tables.get(&(vault, table.to_owned())).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_seq_and_forgets_only_what_was_flushed() {
        let index = TailIndex::default();
        let v = VaultId::generate();
        index.record(v, "a.b", [1; 16], 5);
        index.record(v, "a.b", [1; 16], 3);
        index.record(v, "a.b", [2; 16], 7);
        assert_eq!(index.latest(v, "a.b", &[1; 16]), Some(5));
        index.flushed(v, "a.b", 5);
        assert_eq!(index.latest(v, "a.b", &[1; 16]), None);
        assert_eq!(index.latest(v, "a.b", &[2; 16]), Some(7));
        assert_eq!(index.tables_with_at_least(1), vec![(v, "a.b".to_owned())]);
        index.flushed(v, "a.b", 7);
        assert!(
            index.tables_with_at_least(1).is_empty(),
            "an empty table leaves no entry"
        );
    }
}
