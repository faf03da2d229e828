//! Table manifests: the list of data files that make up a table.
//!
//! A manifest version is immutable; committing a flush or a compaction
//! inserts the next version. Readers take the newest version and read exactly
//! the files it lists, so an orphan file under the prefix is never read.

use serde::{Deserialize, Serialize};

/// One version of a table's manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest version (0 = no manifest committed yet).
    pub version: i64,
    /// Every change of the table with `seq <= flushed_seq` is in `files`.
    pub flushed_seq: i64,
    /// The data files, newest first (by `max_seq`). Within one file each id
    /// appears at most once; across files the newer file wins.
    pub files: Vec<DataFile>,
}

/// One Parquet data file of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Object key of the file (inside the vault's prefix).
    pub key: String,
    /// File size in bytes.
    pub size: u64,
    /// Number of row versions in the file.
    pub rows: u64,
    /// How many of them are tombstones.
    pub tombstones: u64,
    /// Smallest `_seq` in the file.
    pub min_seq: i64,
    /// Largest `_seq` in the file.
    pub max_seq: i64,
    /// Smallest row id in the file.
    pub min_id: String,
    /// Largest row id in the file.
    pub max_id: String,
    /// Whether this file is a base: it was produced by merging every older
    /// file, so no older file exists and it holds no tombstones.
    pub base: bool,
}

impl DataFile {
    /// Whether `id` falls within this file's id range.
    pub fn may_contain(&self, id: &str) -> bool {
        self.min_id.as_str() <= id && id <= self.max_id.as_str()
    }

    /// Whether the id ranges of two files overlap.
    pub fn overlaps(&self, other: &DataFile) -> bool {
        self.min_id <= other.max_id && other.min_id <= self.max_id
    }
}

impl Manifest {
    /// Total number of row versions over all files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Total bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Keeps `files` ordered newest first.
    pub fn sort_files(&mut self) {
        self.files.sort_by_key(|f| std::cmp::Reverse(f.max_seq));
    }
}
