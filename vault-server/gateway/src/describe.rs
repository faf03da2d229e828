//! What a token can see: its schemas, tables and columns (`GET /v1/schemas`)
//! and, per table, its actions with their columns and rows (`GET /v1/tables`).

use std::collections::BTreeMap;

use coffer_auth::Action;
use coffer_core::TableName;
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::error::GatewayError;
use coffer_core::schema::VISIBLE_SYSTEM_COLUMNS;

const ACTIONS: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

/// The granted tables (installed in the vault) with the schema they belong to.
async fn granted(caller: &Caller) -> Result<Vec<(TableName, u32)>, GatewayError> {
    let engine = caller.gateway().engine();
    let mut out = Vec::new();
    let mut tables: Vec<&TableName> = caller.grant().tables().collect();
    tables.dedup();
    for t in tables {
        match engine.table(caller.vault(), t).await {
            Ok(installed) => out.push((t.clone(), installed.schema_version)),
            Err(coffer_storage::StorageError::TableNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// `{"schemas": [...]}`: the granted tables of each schema with the columns
/// the token may use (for any action).
pub async fn schemas(caller: &Caller) -> Result<Value, GatewayError> {
    let registry = caller.gateway().engine().registry();
    let mut by_schema: BTreeMap<(String, u32), Vec<Value>> = BTreeMap::new();
    for (table, version) in granted(caller).await? {
        let Some(def) = registry.get(&table.schema, version) else {
            continue;
        };
        let Some(table_def) = def.table(&table.table) else {
            continue;
        };
        let columns: Vec<Value> = table_def
            .columns
            .iter()
            .filter(|c| {
                ACTIONS.iter().any(|a| {
                    caller
                        .grant()
                        .access(&table, *a)
                        .is_some_and(|x| x.columns.contains(&c.name))
                })
            })
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.ty.to_string(),
                    "nullable": c.nullable,
                    "description": c.description,
                })
            })
            .collect();
        by_schema
            .entry((table.schema.clone(), version))
            .or_default()
            .push(json!({
                "name": table.table,
                "description": table_def.description,
                "columns": columns,
            }));
    }
    let schemas: Vec<Value> = by_schema
        .into_iter()
        .map(|((name, version), tables)| {
            let description = registry
                .get(&name, version)
                .map(|d| d.description.clone())
                .unwrap_or_default();
            json!({ "name": name, "version": version, "description": description, "tables": tables })
        })
        .collect();
    Ok(json!({ "schemas": schemas, "system_columns": VISIBLE_SYSTEM_COLUMNS }))
}

/// `{"tables": [...]}`: each granted table with, per action, its columns and rows.
pub async fn tables(caller: &Caller) -> Result<Value, GatewayError> {
    let engine = caller.gateway().engine();
    let mut out = Vec::new();
    for (table, _) in granted(caller).await? {
        let installed = engine.table(caller.vault(), &table).await?;
        let mut actions = serde_json::Map::new();
        for action in ACTIONS {
            if let Some(access) = caller.grant().access(&table, action) {
                let columns: Vec<&str> = installed
                    .def
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|c| access.columns.contains(c))
                    .collect();
                actions.insert(
                    action.to_string(),
                    json!({ "columns": columns, "rows": access.row_scope.as_str() }),
                );
            }
        }
        out.push(json!({ "table": table.to_string(), "actions": actions }));
    }
    Ok(json!({ "tables": out }))
}
