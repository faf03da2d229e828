//! The Coffer query layer: DataFusion sessions whose catalog holds one
//! merge-on-read table provider per (vault, table).
#![forbid(unsafe_code)]

mod provider;
mod session;

pub use provider::VaultTableProvider;
pub use session::{LazySchema, QueryError, TableOpener, VaultQuery, base_context};
