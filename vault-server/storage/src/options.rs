//! Tuning of the storage engine.

use std::time::Duration;

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
