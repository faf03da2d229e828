//! Row operations on one table (the rows API): list through the confined
//! catalog; get by id through the storage engine's point lookup, confined by
//! the same rules; insert, update and delete with the action, columns and
//! row scope checked before the storage engine's durable commit.

use std::sync::Arc;

use coffer_auth::{Action, ColumnSet, RowScope};
use coffer_core::schema::{SYSTEM_COLUMNS, VISIBLE_SYSTEM_COLUMNS};
use coffer_core::{Seq, TableName};
use coffer_query::base_context;
use coffer_storage::{InstalledTable, Mutation, Op, RowVersion, StorageError, Values};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use serde_json::{Map, Value};

use crate::caller::Caller;
use crate::catalog::{ConfinedTable, Use};
use crate::error::GatewayError;
use crate::filter::ListQuery;
use crate::sql::collect_bounded;
use crate::values::batch_to_objects;

/// Most rows one insert request may carry.
pub const MAX_BATCH_ROWS: usize = 1000;

/// A JSON row as the API returns it.
pub type Row = Map<String, Value>;

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// The rows.
    pub rows: Vec<Row>,
    /// The cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// Parses `schema.table` from a path; anything else is "no such table".
pub fn table_name(text: &str) -> Result<TableName, GatewayError> {
    text.parse().map_err(|_| GatewayError::TableNotFound(text.to_owned()))
}

/// Lists rows of `table` matching `query`, within the gateway's limits.
pub async fn list(caller: &Caller, table: &TableName, query: &ListQuery) -> Result<Page, GatewayError> {
    caller.bounded(list_unbounded(caller, table, query)).await
}

async fn list_unbounded(caller: &Caller, table: &TableName, query: &ListQuery) -> Result<Page, GatewayError> {
    let confined = ConfinedTable::open(caller, table, Use::Read).await?;
    if confined.read_access().is_none() {
        return Err(missing(table, Action::Read));
    }
    let schema = datafusion::catalog::TableProvider::schema(&confined);
    let name = table.to_string();
    let predicate = query.predicate(&schema, &name)?;
    let sort = query.sort_exprs(&schema, &name)?;
    let keys = query.sort_keys();
    // Columns out: the selection (with id), plus the sort keys for the cursor.
    let selected: Vec<String> = match &query.select {
        Some(cols) => {
            let mut out = vec!["id".to_owned()];
            for c in cols {
                if schema.field_with_name(c).is_err() {
                    return Err(GatewayError::UnknownColumn {
                        table: name.clone(),
                        column: c.clone(),
                    });
                }
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
            out
        }
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let mut read: Vec<String> = selected.clone();
    for k in &keys {
        if !read.contains(&k.column) {
            read.push(k.column.clone());
        }
    }
    let ctx =
        base_context(caller.gateway().engine(), &caller.gateway().limits().query).map_err(GatewayError::internal)?;
    let mut df = ctx.read_table(Arc::new(confined)).map_err(plan_error)?;
    if let Some(p) = predicate {
        df = df.filter(p).map_err(plan_error)?;
    }
    let columns: Vec<Expr> = read.iter().map(|c| Expr::Column(Column::new_unqualified(c))).collect();
    df = df
        .select(columns)
        .map_err(plan_error)?
        .sort(sort)
        .map_err(plan_error)?
        .limit(0, Some(query.limit + 1))
        .map_err(plan_error)?;
    let batches = collect_bounded(df, query.limit + 1).await?;
    let mut rows = Vec::new();
    for b in &batches {
        batch_to_objects(b, &mut rows);
    }
    let mut next_cursor = None;
    if rows.len() > query.limit {
        rows.truncate(query.limit);
        let last = rows.last().expect("limit >= 1");
        next_cursor = Some(query.encode_cursor(keys.iter().map(|k| last[&k.column].clone()).collect()));
    }
    if read.len() > selected.len() {
        for row in &mut rows {
            row.retain(|k, _| selected.contains(k));
        }
    }
    Ok(Page { rows, next_cursor })
}

/// One row by id (`select` limits the columns).
pub async fn get(caller: &Caller, table: &TableName, id: &str, select: Option<&[String]>) -> Result<Row, GatewayError> {
    let read = caller.check(table, Action::Read, &[])?;
    let installed = caller.gateway().engine().table(caller.vault(), table).await?;
    if let Some(cols) = select {
        for c in cols {
            if !is_visible(&installed, &read.access.columns, c) {
                return Err(GatewayError::UnknownColumn {
                    table: table.to_string(),
                    column: c.clone(),
                });
            }
        }
    }
    let row = current(caller, table, id, read.row_scope())
        .await?
        .ok_or_else(|| row_not_found(table, id))?;
    let mut out = project(&row, &installed, Some(&read.access.columns));
    if let Some(cols) = select {
        out.retain(|k, _| k == "id" || cols.contains(k));
    }
    Ok(out)
}

/// Inserts rows atomically; returns them as the token may read them.
pub async fn insert(caller: &Caller, table: &TableName, rows: Vec<Values>) -> Result<Vec<Row>, GatewayError> {
    if rows.is_empty() {
        return Err(GatewayError::InvalidBody("the batch holds no rows".into()));
    }
    if rows.len() > MAX_BATCH_ROWS {
        return Err(GatewayError::InvalidBody(format!(
            "one request may insert at most {MAX_BATCH_ROWS} rows"
        )));
    }
    let installed = open_for_write(caller, table).await?;
    let mut given: Vec<&str> = Vec::new();
    for row in &rows {
        for k in row.keys().filter(|k| *k != "id") {
            check_column(&installed, k)?;
            if !given.contains(&k.as_str()) {
                given.push(k);
            }
        }
    }
    caller.check(table, Action::Create, &given)?;
    let mutations = rows
        .into_iter()
        .map(|values| Mutation {
            table: table.clone(),
            op: Op::Insert { values },
        })
        .collect();
    let written = write(caller, mutations).await?;
    let readable = readable(caller, table)?;
    Ok(written
        .iter()
        .map(|r| project(r, &installed, readable.as_ref()))
        .collect())
}

/// Changes some columns of row `id`.
pub async fn update(
    caller: &Caller,
    table: &TableName,
    id: &str,
    patch: Values,
    if_seq: Option<Seq>,
) -> Result<Row, GatewayError> {
    let installed = open_for_write(caller, table).await?;
    for k in patch.keys() {
        if k == "id" {
            return Err(GatewayError::InvalidRow {
                column: "id".into(),
                reason: format!("{table}: a row's id cannot change"),
            });
        }
        check_column(&installed, k)?;
    }
    let columns: Vec<&str> = patch.keys().map(String::as_str).collect();
    let access = caller.write_access(table, Action::Update, &columns)?;
    let op = |if_seq| Op::Update {
        id: id.to_owned(),
        patch: patch.clone(),
        if_seq,
    };
    let row = change(caller, table, id, if_seq, access.scope, op).await?;
    Ok(project(
        &row,
        &installed,
        access.read.as_ref().map(|r| &r.access.columns),
    ))
}

/// One row's change in a batch update: the columns to set, optionally only
/// if the row's `_seq` is still `if_seq`.
#[derive(Clone, Debug)]
pub struct RowChange {
    /// The row id.
    pub id: String,
    /// The columns to change (an explicit null clears one).
    pub patch: Values,
    /// Change only if the row's current `_seq` is this.
    pub if_seq: Option<Seq>,
}

/// Changes several rows atomically: every change applies or none does. A
/// change without `if_seq` is last-write-wins for its row; one with it is a
/// conflict when the row changed since, answered with the row as the token
/// may read it now. Returns the rows after the change, in request order.
pub async fn update_many(
    caller: &Caller,
    table: &TableName,
    changes: Vec<RowChange>,
) -> Result<Vec<Row>, GatewayError> {
    if changes.is_empty() {
        return Err(GatewayError::InvalidBody("the batch holds no changes".into()));
    }
    if changes.len() > MAX_BATCH_ROWS {
        return Err(GatewayError::InvalidBody(format!(
            "one request may change at most {MAX_BATCH_ROWS} rows"
        )));
    }
    let installed = open_for_write(caller, table).await?;
    let mut columns: Vec<&str> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for change in &changes {
        if !ids.insert(change.id.as_str()) {
            return Err(GatewayError::InvalidBody(format!(
                "row `{}` appears more than once in the batch",
                change.id
            )));
        }
        for k in change.patch.keys() {
            if k == "id" {
                return Err(GatewayError::InvalidRow {
                    column: "id".into(),
                    reason: format!("{table}: a row's id cannot change"),
                });
            }
            check_column(&installed, k)?;
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let access = caller.write_access(table, Action::Update, &columns)?;
    for _ in 0..3 {
        let mut mutations = Vec::with_capacity(changes.len());
        for change in &changes {
            let mut expected = change.if_seq;
            // For `own` scope each row's owner is checked on the version
            // read, and its write made conditional on that version.
            if access.scope == RowScope::Own {
                let Some(now) = current(caller, table, &change.id, access.scope).await? else {
                    return Err(gone(table, &change.id, change.if_seq));
                };
                expected = Some(change.if_seq.unwrap_or(now.seq));
            }
            mutations.push(Mutation {
                table: table.clone(),
                op: Op::Update {
                    id: change.id.clone(),
                    patch: change.patch.clone(),
                    if_seq: expected,
                },
            });
        }
        let given = |id: &str| changes.iter().find(|c| c.id == id).and_then(|c| c.if_seq);
        match caller
            .gateway()
            .engine()
            .write(caller.vault(), caller.app(), mutations)
            .await
        {
            Ok(rows) => {
                let readable = access.read.as_ref().map(|r| &r.access.columns);
                return Ok(rows.iter().map(|r| project(r, &installed, readable)).collect());
            }
            // A version this request read, not one the client named,
            // changed: read again.
            Err(StorageError::Conflict { ref id, .. }) if given(id).is_none() => continue,
            Err(StorageError::RowNotFound { id, .. }) => return Err(gone(table, &id, given(&id))),
            Err(e) => {
                let id = match &e {
                    StorageError::Conflict { id, .. } => id.clone(),
                    _ => return Err(GatewayError::from(e)),
                };
                return Err(conflict_with_current(caller, table, &id, e).await);
            }
        }
    }
    Err(GatewayError::Conflict {
        reason: format!("{table}: the rows kept changing; try again"),
        current: Value::Null,
    })
}

/// Deletes row `id`.
pub async fn delete(caller: &Caller, table: &TableName, id: &str, if_seq: Option<Seq>) -> Result<(), GatewayError> {
    open_for_write(caller, table).await?;
    let access = caller.write_access(table, Action::Delete, &[])?;
    let op = |if_seq| Op::Delete {
        id: id.to_owned(),
        if_seq,
    };
    change(caller, table, id, if_seq, access.scope, op).await?;
    Ok(())
}

/// Applies an update or delete of row `id` within `scope` (the action's
/// rows that the token may also read). For `own` scope
/// the row's owner is checked on the version read, and the write is made
/// conditional on that version (retried if another write slipped in), so a
/// row cannot change owner between the check and the write.
async fn change(
    caller: &Caller,
    table: &TableName,
    id: &str,
    if_seq: Option<Seq>,
    scope: RowScope,
    op: impl Fn(Option<Seq>) -> Op,
) -> Result<RowVersion, GatewayError> {
    for _ in 0..3 {
        let mut expected = if_seq;
        if scope == RowScope::Own {
            let Some(now) = current(caller, table, id, scope).await? else {
                return Err(gone(table, id, if_seq));
            };
            expected = Some(if_seq.unwrap_or(now.seq));
        }
        let mutation = Mutation {
            table: table.clone(),
            op: op(expected),
        };
        match caller
            .gateway()
            .engine()
            .write(caller.vault(), caller.app(), vec![mutation])
            .await
        {
            Ok(mut rows) => return rows.pop().ok_or_else(|| GatewayError::internal("no row written")),
            Err(StorageError::Conflict { .. }) if if_seq.is_none() => continue,
            Err(StorageError::RowNotFound { .. }) => return Err(gone(table, id, if_seq)),
            Err(e) => return Err(conflict_with_current(caller, table, id, e).await),
        }
    }
    Err(GatewayError::Conflict {
        reason: format!("{table}: row `{id}` kept changing; try again"),
        current: Value::Null,
    })
}

/// The table for a write: it must be named by the token (any action).
async fn open_for_write(caller: &Caller, table: &TableName) -> Result<Arc<InstalledTable>, GatewayError> {
    if !caller.names_table(table) {
        return Err(GatewayError::TableNotFound(table.to_string()));
    }
    Ok(caller.gateway().engine().table(caller.vault(), table).await?)
}

async fn write(caller: &Caller, mutations: Vec<Mutation>) -> Result<Vec<RowVersion>, GatewayError> {
    caller
        .gateway()
        .engine()
        .write(caller.vault(), caller.app(), mutations)
        .await
        .map_err(GatewayError::from)
}

/// A write error, with the row's current readable version for conflicts.
async fn conflict_with_current(caller: &Caller, table: &TableName, id: &str, e: StorageError) -> GatewayError {
    let error = GatewayError::from(e);
    let GatewayError::Conflict { reason, .. } = error else {
        return error;
    };
    let current = match caller.check(table, Action::Read, &[]) {
        Ok(read) => match (
            current(caller, table, id, read.row_scope()).await,
            caller.gateway().engine().table(caller.vault(), table).await,
        ) {
            (Ok(Some(row)), Ok(installed)) => Value::Object(project(&row, &installed, Some(&read.access.columns))),
            _ => Value::Null,
        },
        Err(_) => Value::Null,
    };
    GatewayError::Conflict { reason, current }
}

/// The current version of row `id` if it exists and `scope` lets the caller see it.
async fn current(
    caller: &Caller,
    table: &TableName,
    id: &str,
    scope: RowScope,
) -> Result<Option<RowVersion>, GatewayError> {
    let row = caller.gateway().engine().get(caller.vault(), table, id).await?;
    Ok(row.filter(|r| scope == RowScope::All || r.created_by == caller.app().as_str()))
}

/// The readable columns of `table`, if the token may read it.
fn readable(caller: &Caller, table: &TableName) -> Result<Option<ColumnSet>, GatewayError> {
    Ok(caller.read_access(table)?.map(|a| a.access.columns))
}

/// `row` with the system columns and the `readable` user columns only
/// (none when the token may not read the table).
fn project(row: &RowVersion, table: &InstalledTable, readable: Option<&ColumnSet>) -> Row {
    let mut out = row.to_api_json(&table.def);
    out.retain(|k, _| VISIBLE_SYSTEM_COLUMNS.contains(&k.as_str()) || readable.is_some_and(|r| r.contains(k)));
    out
}

fn is_visible(table: &InstalledTable, readable: &ColumnSet, column: &str) -> bool {
    VISIBLE_SYSTEM_COLUMNS.contains(&column)
        || (table.def.columns.iter().any(|c| c.name == column) && readable.contains(column))
}

/// A written column must exist and not be a system column.
fn check_column(table: &InstalledTable, column: &str) -> Result<(), GatewayError> {
    if SYSTEM_COLUMNS.contains(&column) {
        return Err(GatewayError::InvalidRow {
            column: column.to_owned(),
            reason: format!("{}: column `{column}` is maintained by the vault", table.name),
        });
    }
    if !table.def.columns.iter().any(|c| c.name == column) {
        return Err(GatewayError::UnknownColumn {
            table: table.name.to_string(),
            column: column.to_owned(),
        });
    }
    Ok(())
}

fn missing(table: &TableName, action: Action) -> GatewayError {
    GatewayError::MissingRight {
        required: format!("{table}:{action}"),
    }
}

/// The row is not there: a conflict (with no current row) for a write that
/// expected a version, otherwise not found.
fn gone(table: &TableName, id: &str, if_seq: Option<Seq>) -> GatewayError {
    match if_seq {
        Some(seq) => GatewayError::Conflict {
            reason: format!("{table}: row `{id}` was deleted (expected seq {})", seq.0),
            current: Value::Null,
        },
        None => row_not_found(table, id),
    }
}

fn row_not_found(table: &TableName, id: &str) -> GatewayError {
    GatewayError::RowNotFound {
        table: table.to_string(),
        id: id.to_owned(),
    }
}

/// A DataFusion error, unwrapping the gateway errors raised inside plans.
pub(crate) fn plan_error(e: datafusion::error::DataFusionError) -> GatewayError {
    crate::sql::from_datafusion(e)
}
