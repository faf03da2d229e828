//! Core types shared by every Coffer crate: identifiers, the schema model and
//! the schema registry.
#![forbid(unsafe_code)]

pub mod ids;
pub mod schema;

pub use ids::{AppId, GrantId, Seq, UserId, VaultId};
pub use schema::{ColumnDef, ColumnType, SchemaDef, TableDef, TableName};
