//! Subsets of the change feed ("shapes"): per table, filters in the rows
//! API's grammar and a column selection, so an app follows only the rows
//! and columns it shows.
//!
//! `filter[schema.table]=column=op.value` (repeatable, all must hold) and
//! `select[schema.table]=a,b`. The filters are the rows API's
//! ([`crate::filter`]), typed by the columns the token may read, so a
//! filter can only test what the app could read anyway.
//!
//! A load reads only the matching rows. In the log, each version is tested
//! as it was written: a matching version is sent as it is (`insert` or
//! `update`); a version that does not match is sent as a `delete` when it
//! updates a row (the row may have matched before: it leaves the subset),
//! and not at all when it creates one (it never was in the subset). The log
//! does not say whether the version before matched, so a row updated while
//! outside the subset is also sent as a `delete`, which an app applies as
//! "drop this id if you hold it".

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_core::TableName;
use coffer_storage::RowVersion;
use coffer_storage::arrow_codec::rows_to_batch;
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::{create_physical_expr, execution_props::ExecutionProps};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::filter::{Filter, MAX_FILTERS, parse_filter};

/// What an app follows of one table: the rows its filters match, with the
/// columns it selected.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// `filter[table]=…`: all must hold.
    pub filters: Vec<Filter>,
    /// The filters as given, which the feed's cursor is bound to.
    texts: Vec<String>,
    /// `select[table]=…`: the columns sent (`None`: every readable column).
    pub select: Option<Vec<String>>,
}

/// Reads `key=value` into `shapes` if the key is `filter[…]` or
/// `select[…]`; `Ok(false)` for any other key.
pub(super) fn parse_param(
    key: &str,
    value: &str,
    shapes: &mut BTreeMap<TableName, Shape>,
) -> Result<bool, GatewayError> {
    let (kind, table) = match key
        .strip_suffix(']')
        .and_then(|k| k.split_once('['))
        .filter(|(kind, _)| *kind == "filter" || *kind == "select")
    {
        Some(parts) => parts,
        None => return Ok(false),
    };
    let table: TableName = table
        .parse()
        .map_err(|_| GatewayError::TableNotFound(table.to_owned()))?;
    if !shapes.contains_key(&table) && shapes.len() == super::MAX_TABLES {
        return Err(GatewayError::filter(
            key,
            format!("at most {} tables", super::MAX_TABLES),
        ));
    }
    let shape = shapes.entry(table).or_default();
    if kind == "select" {
        if shape.select.is_some() {
            return Err(GatewayError::filter(key, "given more than once"));
        }
        let columns: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if columns.is_empty() {
            return Err(GatewayError::filter(key, "name at least one column"));
        }
        shape.select = Some(columns);
        return Ok(true);
    }
    if shape.filters.len() == MAX_FILTERS {
        return Err(GatewayError::QueryLimit(format!(
            "a table's subset may combine at most {MAX_FILTERS} filters"
        )));
    }
    let (column, test) = value
        .split_once('=')
        .ok_or_else(|| GatewayError::filter(key, "expected `column=op.value`, as in the rows API"))?;
    shape.filters.push(parse_filter(column, test)?);
    shape.texts.push(value.to_owned());
    Ok(true)
}

/// What a cursor is bound to of `shapes`: a digest of their filters and
/// selections as given (empty without shapes, so a cursor without them
/// keeps its form).
pub(super) fn key(shapes: &BTreeMap<TableName, Shape>) -> String {
    if shapes.is_empty() {
        return String::new();
    }
    let mut hasher = Sha256::new();
    for (table, shape) in shapes {
        hasher.update(table.to_string().as_bytes());
        for text in &shape.texts {
            hasher.update(b"\x01");
            hasher.update(text.as_bytes());
        }
        hasher.update(b"\x02");
        for column in shape.select.iter().flatten() {
            hasher.update(column.as_bytes());
            hasher.update(b"\x03");
        }
        hasher.update(b"\x00");
    }
    hasher.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A shape made ready for one table: its filters as one predicate over the
/// columns the token reads, and its checked selection.
#[derive(Debug)]
pub(super) struct Compiled {
    /// The filters (`None`: every row).
    pub predicate: Option<Expr>,
    /// The columns sent (`id` first).
    select: Option<Vec<String>>,
}

impl Compiled {
    /// Checks `shape` against `readable` (the schema of the columns the
    /// token reads of `table`): an unknown or unreadable column is refused
    /// as the rows API refuses it.
    pub fn new(shape: &Shape, readable: &Schema, table: &TableName) -> Result<Compiled, GatewayError> {
        let name = table.to_string();
        let predicate = shape
            .filters
            .iter()
            .map(|f| f.to_expr(readable, &name))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .reduce(Expr::and);
        let select = match &shape.select {
            Some(columns) => {
                let mut out = vec!["id".to_owned()];
                for c in columns {
                    if readable.field_with_name(c).is_err() {
                        return Err(GatewayError::UnknownColumn {
                            table: name,
                            column: c.clone(),
                        });
                    }
                    if !out.contains(c) {
                        out.push(c.clone());
                    }
                }
                Some(out)
            }
            None => None,
        };
        Ok(Compiled { predicate, select })
    }

    /// Keeps the selected columns of `row`.
    pub fn project(&self, row: &mut Map<String, Value>) {
        if let Some(select) = &self.select {
            row.retain(|k, _| select.contains(k));
        }
    }

    /// Which of `versions` (none a tombstone) the filters match, tested on
    /// the versions as stored (`schema`: the table's whole stored schema).
    pub fn matching(
        &self,
        def: &coffer_core::schema::TableDef,
        schema: &Arc<Schema>,
        versions: &[RowVersion],
    ) -> Result<Vec<bool>, GatewayError> {
        let Some(predicate) = &self.predicate else {
            return Ok(vec![true; versions.len()]);
        };
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        let batch = rows_to_batch(def, schema, versions)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(GatewayError::internal)?;
        let physical = create_physical_expr(
            predicate,
            &df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .map_err(GatewayError::internal)?;
        let result = physical
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(GatewayError::internal)?;
        let matched = result
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| GatewayError::internal("a subset's filter is not a condition"))?;
        Ok((0..matched.len())
            .map(|i| matched.is_valid(i) && matched.value(i))
            .collect())
    }
}
