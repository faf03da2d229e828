//! System tables: tables the server itself keeps in every vault, stored and
//! encrypted like any other table (commit log, Parquet files, manifests),
//! but never part of the schema registry and never grantable to an app.
//!
//! They live in the schema [`SYSTEM_SCHEMA`] (`_coffer`). Schema, table and
//! column names that apps, scopes and schema files can use are identifiers
//! starting with a letter ([`coffer_core::schema::is_identifier`]); a name
//! starting with `_` is reserved for the system. So no scope, RFC 9396
//! detail, schema file or `schema.table` path can name a system table: the
//! grammar refuses it before any lookup. Inside the engine a system table is
//! built with [`TableName::new`] and is present in every live vault without
//! being installed (existing vaults have it too); [`crate::Engine::tables`]
//! does not list it, [`crate::Engine::table`], [`crate::Engine::write`] and
//! [`crate::Engine::snapshot`] reach it by name.

use std::sync::{Arc, LazyLock};

use coffer_core::TableName;
use coffer_core::schema::{SchemaDef, is_identifier};

use crate::installed::InstalledTable;

/// The schema holding the system tables. Starts with `_`, so it is not an
/// identifier that a scope or a schema file may use.
pub const SYSTEM_SCHEMA: &str = "_coffer";

/// Version of the system schema. Changes to it follow the same rule as
/// registry schemas: additive (new nullable columns, new tables) only.
pub const SYSTEM_SCHEMA_VERSION: u32 = 1;

/// The app id the server writes system rows as (`_created_by`,
/// `_updated_by`). App ids handed out at registration are ULIDs, so no app
/// can be called this.
pub const SYSTEM_APP: &str = "coffer";

/// The access log's table name within [`SYSTEM_SCHEMA`].
pub const ACCESS_LOG: &str = "access_log";

const DEFINITION: &str = r#"{
  "name": "_coffer",
  "version": 1,
  "description": "Records the server keeps about the vault itself.",
  "tables": [
    {
      "name": "access_log",
      "description": "One request an app made to the vault.",
      "columns": [
        {"name": "at", "type": "timestamp", "nullable": false, "description": "When the request was made."},
        {"name": "app", "type": "text", "nullable": false, "description": "The app that made it (its client id)."},
        {"name": "operation", "type": "text", "nullable": false, "description": "read, insert, update, delete or describe."},
        {"name": "tables", "type": "json", "nullable": false, "description": "The tables it named, as a list of schema.table."},
        {"name": "rows", "type": "integer", "nullable": false, "description": "Rows returned (read) or written."},
        {"name": "outcome", "type": "text", "nullable": false, "description": "ok, or the problem code of the refusal or failure."}
      ]
    }
  ]
}"#;

static SCHEMA: LazyLock<Arc<SchemaDef>> =
    LazyLock::new(|| Arc::new(serde_json::from_str(DEFINITION).expect("the system schema definition parses")));

static TABLES: LazyLock<Vec<Arc<InstalledTable>>> = LazyLock::new(|| {
    SCHEMA
        .tables
        .iter()
        .map(|t| InstalledTable::new(TableName::new(SYSTEM_SCHEMA, &t.name), SYSTEM_SCHEMA_VERSION, t))
        .collect()
});

/// The definition of the system schema.
pub fn system_schema() -> Arc<SchemaDef> {
    SCHEMA.clone()
}

/// `_coffer.access_log`: the vault's access log.
pub fn access_log_table() -> TableName {
    TableName::new(SYSTEM_SCHEMA, ACCESS_LOG)
}

/// Whether `table` is a system table (its schema is reserved for the system).
pub fn is_system_table(table: &TableName) -> bool {
    is_system_schema(&table.schema)
}

/// Whether a schema name is reserved for the system (starts with `_`).
pub fn is_system_schema(name: &str) -> bool {
    name.starts_with('_')
}

/// The system tables, as every live vault has them.
pub(crate) fn installed_tables() -> &'static [Arc<InstalledTable>] {
    &TABLES
}

/// Whether `s` may be a schema or table part of a stored table name: an
/// identifier, or the system schema's name.
pub(crate) fn is_stored_name(s: &str) -> bool {
    is_identifier(s) || s == SYSTEM_SCHEMA
}

/// Parses a `schema.table` name read back from the control database or the
/// tail index, where system tables appear too.
pub(crate) fn parse_stored_table_name(s: &str) -> Option<TableName> {
    let (schema, table) = s.split_once('.')?;
    (is_stored_name(schema) && is_identifier(table)).then(|| TableName::new(schema, table))
}

#[cfg(test)]
mod tests {
    use coffer_core::schema::registry::{SchemaRegistry, validate};

    use super::*;

    #[test]
    fn the_system_schema_is_well_formed_but_no_registry_can_hold_it() {
        let def = system_schema();
        // Apart from its reserved name, it follows every rule of the format.
        let renamed = SchemaDef {
            name: "coffer".into(),
            ..(*def).clone()
        };
        validate(&renamed, "system schema").expect("well-formed");
        // Its name is not an identifier, so no schema file, registry or
        // scope can name it.
        assert!(!is_identifier(SYSTEM_SCHEMA));
        assert!(validate(&def, "system schema").is_err());
        let text = serde_json::to_string(&*def).unwrap();
        assert!(SchemaRegistry::parse(&text, "system schema").is_err());
        assert!(SchemaRegistry::new().insert((*def).clone(), "system schema").is_err());
        assert!("_coffer.access_log".parse::<TableName>().is_err());
    }

    #[test]
    fn stored_names_accept_system_tables_and_nothing_odd() {
        assert_eq!(parse_stored_table_name("_coffer.access_log"), Some(access_log_table()));
        assert_eq!(
            parse_stored_table_name("contacts.people"),
            Some(TableName::new("contacts", "people"))
        );
        for bad in [
            "_other.access_log",
            "_coffer._x",
            "contacts",
            "../x.y",
            "_coffer.",
            ".t",
        ] {
            assert_eq!(parse_stored_table_name(bad), None, "{bad}");
        }
        assert!(is_system_table(&access_log_table()));
        assert!(!is_system_table(&TableName::new("contacts", "people")));
        assert_eq!(installed_tables().len(), 1);
        assert_eq!(installed_tables()[0].name, access_log_table());
    }
}
