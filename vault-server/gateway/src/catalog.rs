//! The grant-confined catalog: the only tables a request's queries can name
//! are the ones its token names, each exposing only the granted columns and,
//! for `own` row scope, only the app's rows. The confinement is structural:
//! an ungranted table is not in the catalog, an ungranted column is not in
//! the table's schema, and the owner filter is part of every scan.
//!
//! The same tables take SQL writes: `INSERT` goes through a sink that
//! commits the rows with the storage engine; `UPDATE` and `DELETE` scan the
//! matching rows (with the action's row scope) and commit one change per row,
//! each conditional on the version scanned, so a concurrent change is a
//! conflict rather than a lost update.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_auth::{Access, Action, Authorized, ColumnSet, RowScope};
use coffer_core::{Seq, TableName};
use coffer_query::VaultTableProvider;
use coffer_query::{LazySchema, TableOpener, base_context};
use coffer_storage::arrow_codec::arrow_type;
use coffer_storage::{InstalledTable, Mutation, Op, Values};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, collect};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::caller::Caller;
use crate::error::GatewayError;
use crate::values::to_json;

/// System columns every readable table exposes, in this order, before the
/// user columns (`_deleted` is never exposed: tombstones are not rows).
pub const SYSTEM_COLUMNS: [&str; 6] = ["id", "_seq", "_created_by", "_updated_by", "_created_at", "_updated_at"];

/// Most rows one SQL write may change.
pub const MAX_ROWS_PER_WRITE: usize = 10_000;

/// How a statement uses a table, which decides the columns it exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Read by queries (also the target of `UPDATE` and `DELETE`, whose
    /// conditions read it): the readable columns.
    Read,
    /// The target of an `INSERT`: `id` and the columns the grant lets the app
    /// create.
    Insert,
}

/// Wraps a gateway error so it survives DataFusion's error type.
pub(crate) fn df_error(e: GatewayError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Builds a DataFusion session whose only catalog is the caller's confined
/// view of its vault. `target` is the table an `INSERT` writes, if any.
pub fn confined_context(caller: &Caller, target: Option<(&TableName, Use)>) -> Result<SessionContext, GatewayError> {
    let ctx = base_context(caller.gateway().engine()).map_err(GatewayError::internal)?;
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let mut schemas: HashMap<String, Vec<String>> = HashMap::new();
    for t in caller.grant().tables() {
        let tables = schemas.entry(t.schema.clone()).or_default();
        if !tables.contains(&t.table) {
            tables.push(t.table.clone());
        }
    }
    for (schema, tables) in schemas {
        let (caller, name) = (caller.clone(), schema.clone());
        let target = target.map(|(t, u)| (t.clone(), u));
        let open: TableOpener = Arc::new(move |table| {
            let (caller, table) = (caller.clone(), TableName::new(&name, table));
            let table_use = match &target {
                Some((t, u)) if *t == table => *u,
                _ => Use::Read,
            };
            Box::pin(async move {
                let provider = ConfinedTable::open(&caller, &table, table_use)
                    .await
                    .map_err(df_error)?;
                Ok(Arc::new(provider) as Arc<dyn TableProvider>)
            })
        });
        catalog
            .register_schema(&schema, Arc::new(LazySchema::new(schema.clone(), tables, open)))
            .map_err(GatewayError::internal)?;
    }
    ctx.register_catalog("vault", catalog);
    Ok(ctx)
}

/// One table as a request may see it.
pub struct ConfinedTable {
    caller: Caller,
    table: Arc<InstalledTable>,
    /// The exposed columns.
    schema: SchemaRef,
    /// What the token may read; `None`: named for other actions only.
    read: Option<Authorized>,
    /// The merge-on-read provider over a snapshot (readable tables only).
    inner: Option<Arc<VaultTableProvider>>,
}

impl fmt::Debug for ConfinedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfinedTable({})", self.table.name)
    }
}

/// The user columns of `table` that `columns` allows, in table order.
fn allowed_columns<'a>(table: &'a InstalledTable, columns: &'a ColumnSet) -> impl Iterator<Item = &'a str> + 'a {
    table
        .def
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(move |c| columns.contains(c))
}

impl ConfinedTable {
    /// Opens `table` for `caller`: fails with table-not-found when the token
    /// does not name it.
    pub async fn open(caller: &Caller, table: &TableName, table_use: Use) -> Result<Self, GatewayError> {
        if !caller.names_table(table) {
            return Err(GatewayError::TableNotFound(table.to_string()));
        }
        let engine = caller.gateway().engine();
        let installed = engine.table(caller.vault(), table).await?;
        let read = caller.read_access(table)?;
        let schema = match table_use {
            Use::Insert => {
                let create = caller.check(table, Action::Create, &[])?;
                let mut fields = vec![Field::new("id", DataType::Utf8, true)];
                for name in allowed_columns(&installed, &create.access.columns) {
                    let field = installed.arrow.field_with_name(name).map_err(GatewayError::internal)?;
                    fields.push(field.clone().with_nullable(true));
                }
                Arc::new(Schema::new(fields))
            }
            Use::Read => {
                let mut indices: Vec<usize> = SYSTEM_COLUMNS
                    .iter()
                    .map(|c| installed.arrow.index_of(c))
                    .collect::<Result<_, _>>()
                    .map_err(GatewayError::internal)?;
                // Without read, the table still has the columns the token
                // names for its other actions, so a query plans and its scan
                // answers "missing right: read" rather than "no such column".
                let visible: Vec<&Access> = match &read {
                    Some(r) => vec![&r.access],
                    None => [Action::Create, Action::Update, Action::Delete]
                        .iter()
                        .filter_map(|a| caller.grant().access(table, *a))
                        .collect(),
                };
                for column in &installed.def.columns {
                    if visible.iter().any(|a| a.columns.contains(&column.name)) {
                        indices.push(installed.arrow.index_of(&column.name).map_err(GatewayError::internal)?);
                    }
                }
                Arc::new(installed.arrow.project(&indices).map_err(GatewayError::internal)?)
            }
        };
        let inner = match (&read, table_use) {
            (Some(_), Use::Read) => {
                let snapshot = engine.snapshot(caller.vault(), table).await?;
                Some(Arc::new(
                    VaultTableProvider::new(snapshot).map_err(GatewayError::internal)?,
                ))
            }
            _ => None,
        };
        Ok(ConfinedTable {
            caller: caller.clone(),
            table: installed,
            schema,
            read,
            inner,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &TableName {
        &self.table.name
    }

    /// The installed table (definition and stored schema).
    pub fn installed(&self) -> &Arc<InstalledTable> {
        &self.table
    }

    /// What the token may read, if anything.
    pub fn read_access(&self) -> Option<&Authorized> {
        self.read.as_ref()
    }

    fn missing_read(&self) -> DataFusionError {
        df_error(GatewayError::MissingRight {
            required: format!("{}:read", self.table.name),
        })
    }

    /// Scans the rows `scope` allows, filtered exactly by `filters`,
    /// producing the exposed columns `projection` (all when `None`).
    async fn scan_exact(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        scope: RowScope,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = self.inner.as_ref().ok_or_else(|| self.missing_read())?;
        let inner_schema = inner.schema();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut inner_projection: Vec<usize> = wanted
            .iter()
            .map(|&i| inner_schema.index_of(self.schema.field(i).name()))
            .collect::<Result<_, _>>()?;
        let mut conditions: Vec<Expr> = filters.to_vec();
        if scope == RowScope::Own {
            conditions.push(col("_created_by").eq(lit(self.caller.app().as_str())));
        }
        // Columns the exact filters read, after the wanted ones.
        for c in conditions.iter().flat_map(|f| f.column_refs()) {
            let i = inner_schema.index_of(&c.name)?;
            if !inner_projection.contains(&i) {
                inner_projection.push(i);
            }
        }
        let mut plan = inner.scan(state, Some(&inner_projection), &conditions, None).await?;
        if let Some(predicate) = conditions.into_iter().reduce(Expr::and) {
            let df_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        if inner_projection.len() > wanted.len() {
            let schema = plan.schema();
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..wanted.len())
                .map(|i| {
                    let name = schema.field(i).name().clone();
                    (Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>, name)
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(plan)
    }

    /// Rows matching `filters` within the scope of `action`, as batches of
    /// all exposed columns; refuses more than [`MAX_ROWS_PER_WRITE`].
    async fn rows_to_change(&self, state: &dyn Session, filters: &[Expr], action: Action) -> Result<Vec<RecordBatch>> {
        let authorized = self.caller.check(&self.table.name, action, &[]).map_err(df_error)?;
        let plan = self.scan_exact(state, None, filters, authorized.row_scope()).await?;
        let batches = collect(plan, state.task_ctx()).await?;
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if n > MAX_ROWS_PER_WRITE {
            return Err(df_error(GatewayError::InvalidSql(format!(
                "the statement would change {n} rows; one statement may change at most {MAX_ROWS_PER_WRITE}"
            ))));
        }
        Ok(batches)
    }
}

/// Commits `mutations` as one atomic, durable write; returns how many.
async fn commit(caller: &Caller, mutations: Vec<Mutation>) -> Result<u64> {
    let n = mutations.len() as u64;
    if n > 0 {
        caller
            .gateway()
            .engine()
            .write(caller.vault(), caller.app(), mutations)
            .await
            .map_err(|e| df_error(e.into()))?;
    }
    Ok(n)
}

/// A one-row `count` result, as DataFusion's DML statements return.
fn count_plan(n: u64) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(vec![n]))])?;
    Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?)
}

/// `(id, _seq)` of every row of `batches` (the first two exposed columns).
fn ids_and_seqs(batches: &[RecordBatch]) -> Vec<(String, Seq)> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column(0).as_string::<i32>();
        let seqs = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((ids.value(i).to_owned(), Seq(seqs.value(i))));
        }
    }
    out
}

#[async_trait]
impl TableProvider for ConfinedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let read = self.read.as_ref().ok_or_else(|| self.missing_read())?;
        // The query's filters prune the Parquet scans and are applied here
        // (DataFusion applies them again above: inexact pushdown); the owner
        // filter is applied here only, and always.
        self.scan_exact(state, projection, filters, read.row_scope()).await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(df_error(GatewayError::InvalidSql(format!(
                "{insert_op} is not supported; use INSERT INTO"
            ))));
        }
        let sink = InsertSink {
            caller: self.caller.clone(),
            table: self.table.clone(),
            schema: self.schema.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(&self, state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.rows_to_change(state, &filters, Action::Delete).await?;
        let mutations = ids_and_seqs(&batches)
            .into_iter()
            .map(|(id, seq)| Mutation {
                table: self.table.name.clone(),
                op: Op::Delete { id, if_seq: Some(seq) },
            })
            .collect();
        count_plan(commit(&self.caller, mutations).await?)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // DataFusion lists every column; the ones assigned to themselves are
        // unchanged.
        let changed: Vec<(String, Expr)> = assignments
            .into_iter()
            .filter(|(name, expr)| !matches!(expr, Expr::Column(c) if c.name == *name))
            .collect();
        let names: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(system) = names.iter().find(|n| SYSTEM_COLUMNS.contains(n)) {
            return Err(df_error(GatewayError::InvalidSql(format!(
                "column `{system}` is maintained by the vault and cannot be set"
            ))));
        }
        self.caller
            .check(&self.table.name, Action::Update, &names)
            .map_err(df_error)?;
        let batches = self.rows_to_change(state, &filters, Action::Update).await?;
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let exprs: Vec<(String, Arc<dyn PhysicalExpr>)> = changed
            .into_iter()
            .map(|(name, e)| Ok((name, state.create_physical_expr(e, &df_schema)?)))
            .collect::<Result<_>>()?;
        let mut mutations = Vec::new();
        for batch in &batches {
            let mut columns = Vec::with_capacity(exprs.len());
            for (name, expr) in &exprs {
                let array = expr.evaluate(batch)?.into_array(batch.num_rows())?;
                let field = self.table.arrow.field_with_name(name)?.clone();
                columns.push((name, field, array));
            }
            let ids = batch.column(0).as_string::<i32>();
            let seqs = batch.column(1).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let mut patch = Values::new();
                for (name, field, array) in &columns {
                    patch.insert((*name).clone(), to_json(field, array, row));
                }
                mutations.push(Mutation {
                    table: self.table.name.clone(),
                    op: Op::Update {
                        id: ids.value(row).to_owned(),
                        patch,
                        if_seq: Some(Seq(seqs.value(row))),
                    },
                });
            }
        }
        count_plan(commit(&self.caller, mutations).await?)
    }
}

/// The sink of an `INSERT`: collects the rows, checks the create right for
/// the columns given, and commits them in one atomic batch.
struct InsertSink {
    caller: Caller,
    table: Arc<InstalledTable>,
    schema: SchemaRef,
}

impl fmt::Debug for InsertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsertSink({})", self.table.name)
    }
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsertSink: {}", self.table.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let mut rows: Vec<Values> = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let schema = batch.schema();
            for row in 0..batch.num_rows() {
                let mut values = Values::new();
                for (field, array) in schema.fields().iter().zip(batch.columns()) {
                    if array.is_null(row) {
                        continue;
                    }
                    // Type the value as the stored column, so `json` columns
                    // come back as JSON.
                    let stored = self.table.arrow.field_with_name(field.name()).unwrap_or(field.as_ref());
                    values.insert(field.name().clone(), to_json(stored, array, row));
                }
                rows.push(values);
            }
            if rows.len() > MAX_ROWS_PER_WRITE {
                return Err(df_error(GatewayError::InvalidSql(format!(
                    "one statement may insert at most {MAX_ROWS_PER_WRITE} rows"
                ))));
            }
        }
        let mut given: Vec<&str> = Vec::new();
        for values in &rows {
            for k in values.keys() {
                if k != "id" && !given.contains(&k.as_str()) {
                    given.push(k);
                }
            }
        }
        self.caller
            .check(&self.table.name, Action::Create, &given)
            .map_err(df_error)?;
        let mutations = rows
            .into_iter()
            .map(|values| Mutation {
                table: self.table.name.clone(),
                op: Op::Insert { values },
            })
            .collect();
        commit(&self.caller, mutations).await
    }
}

/// The Arrow type a user column of `table` is stored as (for typing filter values).
pub fn column_type(table: &InstalledTable, column: &str) -> Option<DataType> {
    table
        .def
        .columns
        .iter()
        .find(|c| c.name == column)
        .map(|c| arrow_type(c.ty))
}
