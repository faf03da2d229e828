//! The tables installed in a vault, as the engine holds them.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_core::TableName;
use coffer_core::schema::TableDef;
use datafusion::arrow::datatypes::SchemaRef;

use crate::arrow_codec::table_schema;

/// A table installed in a vault.
#[derive(Debug)]
pub struct InstalledTable {
    /// `schema.table`.
    pub name: TableName,
    /// The schema version installed.
    pub schema_version: u32,
    /// Its definition.
    pub def: Arc<TableDef>,
    /// Its Arrow schema (system columns first).
    pub arrow: SchemaRef,
}

impl InstalledTable {
    /// `def` installed as `name` at `schema_version`, with its Arrow schema.
    pub(crate) fn new(name: TableName, schema_version: u32, def: &TableDef) -> Arc<Self> {
        let def = Arc::new(def.clone());
        Arc::new(Self {
            name,
            schema_version,
            arrow: table_schema(&def),
            def,
        })
    }
}

/// The installed tables of one vault.
pub(crate) type TableMap = HashMap<TableName, Arc<InstalledTable>>;
