//! The Coffer storage engine.
//!
//! A vault is an object-store prefix plus a data key. Writes are appended to
//! the commit log in the control database (sealed with the vault key) and
//! acknowledged once durable; a flusher turns log tails into encrypted
//! Parquet files listed by table manifests; reads merge the newest version
//! of each row across files and the unflushed tail.
#![forbid(unsafe_code)]

mod aad;
pub mod arrow_codec;
mod cache;
pub mod changes;
mod commit;
pub mod control;
pub mod crypto;
mod embedded;
mod engine;
pub mod error;
pub mod files;
mod installed;
pub mod json_form;
pub mod layout;
mod maintain;
pub mod manifest;
mod notify;
mod options;
pub mod private;
pub mod row;
pub mod schemas;
mod shared;
pub mod system;
mod tail;

pub use commit::Op;
pub use embedded::{Embedded, open_embedded};
pub use engine::{Engine, Mutation, TableSnapshot, new_row_id};
pub use error::StorageError;
pub use installed::InstalledTable;
pub use notify::CommitWatch;
pub use options::EngineOptions;
pub use row::{RowVersion, Values};
pub use schemas::{KnownSchemas, Published, Publisher};
