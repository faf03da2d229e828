//! The Coffer query layer: DataFusion sessions whose catalog holds one
//! merge-on-read table provider per (vault, table).
#![forbid(unsafe_code)]

mod barrier;
mod limits;
mod provider;
mod session;

pub use barrier::FilterBarrier;
pub use limits::QueryLimits;
pub use provider::{VaultTableProvider, is_infallible};
pub use session::{LazySchema, QueryError, TableOpener, VaultQuery, base_context};
