//! What Coffer's integration tests share, so each test file says only what
//! it tests:
//!
//! - [`engine`]: a throwaway storage engine (a new data directory in a
//!   [`tempfile::TempDir`], the built-in schemas, its own master key, no
//!   background worker) and a vault with schemas installed;
//! - [`gateway`]: a control-plane stub and a [`gateway::World`], the gateway
//!   in-process over a throwaway engine with real tokens;
//! - [`files_containing`]: which files of a data directory hold some bytes
//!   (the tests that nothing is stored in the clear);
//! - [`html`]: reading the server-rendered pages.
//!
//! Only integration tests (`tests/`) use this crate; unit tests inside a
//! crate's `src/` cannot (they would see a second copy of that crate).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod gateway;
pub mod html;

use std::path::{Path, PathBuf};

use coffer_core::TableName;
use coffer_storage::Values;
use serde_json::Value;

/// `contacts.people`, the table most tests write to.
pub fn people() -> TableName {
    TableName::new("contacts", "people")
}

/// The row values of a JSON object (panics on anything else).
pub fn values(v: Value) -> Values {
    v.as_object().expect("row values are a JSON object").clone()
}

/// Every regular file below `dir` whose bytes contain `needle`. A file that
/// vanishes while it is searched (a running server's staging file) counts
/// as not containing it.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}
