//! The grant-confined catalog: the only tables a request's queries can name
//! are the ones its token names, each exposing only the granted columns and,
//! for `own` row scope, only the app's rows. The confinement is structural:
//! an ungranted table is not in the catalog, an ungranted column is not in
//! the table's schema, and the owner filter is part of every scan.
//!
//! The owner filter runs inside the scan, below a barrier the query's own
//! expressions cannot cross, so nothing of the caller's runs on a row it may
//! not see (see `coffer_query::FilterBarrier`).
//!
//! The same tables compute SQL writes: `INSERT` rows are checked against the
//! create right; `UPDATE` and `DELETE` find the rows that meet the
//! statement's condition among those the token may both read and write, and
//! produce one change per row, each conditional on the version read, so a
//! concurrent change is a conflict rather than a lost update. The SQL module
//! commits them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_auth::{Access, Action, Authorized, ColumnSet, RowScope};
use coffer_core::schema::VISIBLE_SYSTEM_COLUMNS;
use coffer_core::{Seq, TableName};
use coffer_query::VaultTableProvider;
use coffer_query::{LazySchema, TableOpener, base_context};
use coffer_storage::arrow_codec::arrow_type;
use coffer_storage::{InstalledTable, Mutation, Op, Values};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::caller::Caller;
use crate::error::GatewayError;
use crate::values::to_json;

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
    let ctx =
        base_context(caller.gateway().engine(), &caller.gateway().limits().query).map_err(GatewayError::internal)?;
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

/// The stored-schema indices of the columns a reading table exposes: the
/// visible system columns, then the user columns any of `visible` grants,
/// in table order.
pub(crate) fn exposed_indices(table: &InstalledTable, visible: &[&Access]) -> Result<Vec<usize>, GatewayError> {
    let system = VISIBLE_SYSTEM_COLUMNS.iter().copied();
    let user = table
        .def
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| visible.iter().any(|a| a.columns.contains(c)));
    system
        .chain(user)
        .map(|c| table.arrow.index_of(c).map_err(GatewayError::internal))
        .collect()
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
                let indices = exposed_indices(&installed, &visible)?;
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

    /// The trusted condition that keeps a scan within `scope`: for `own`,
    /// the rows this app created.
    fn restriction(&self, scope: RowScope) -> Option<Expr> {
        (scope == RowScope::Own).then(|| col("_created_by").eq(lit(self.caller.app().as_str())))
    }

    /// The rows within `scope`, as the exposed columns `projection` (all when
    /// `None`), with `filters` used for pruning. The rows come out of a
    /// [`coffer_query::FilterBarrier`]: none of the query's expressions has
    /// run on a row outside `scope`.
    async fn scan_within(
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
        let inner_projection: Vec<usize> = wanted
            .iter()
            .map(|&i| inner_schema.index_of(self.schema.field(i).name()))
            .collect::<Result<_, _>>()?;
        let restriction = self.restriction(scope);
        inner
            .scan_within(state, Some(&inner_projection), filters, restriction.as_ref())
            .await
    }

    /// The rows within `scope` that meet `condition`, as batches of all
    /// exposed columns; refuses more than [`MAX_ROWS_PER_WRITE`]. The
    /// condition runs over those rows only.
    async fn rows_matching(
        &self,
        state: &dyn Session,
        condition: Option<&Expr>,
        scope: RowScope,
    ) -> Result<Vec<RecordBatch>, GatewayError> {
        let pruning: Vec<Expr> = condition.into_iter().cloned().collect();
        let mut plan = self
            .scan_within(state, None, &pruning, scope)
            .await
            .map_err(crate::sql::from_datafusion)?;
        if let Some(condition) = condition {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone()).map_err(GatewayError::internal)?;
            let predicate = physical(state, condition.clone(), &df_schema).map_err(crate::sql::from_datafusion)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan).map_err(crate::sql::from_datafusion)?);
        }
        let mut stream = execute_stream(plan, state.task_ctx()).map_err(crate::sql::from_datafusion)?;
        let mut batches = Vec::new();
        let mut n = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(crate::sql::run_error)?;
            n += batch.num_rows();
            if n > MAX_ROWS_PER_WRITE {
                return Err(GatewayError::QueryLimit(format!(
                    "the statement would change more than {MAX_ROWS_PER_WRITE} rows; one statement may change at most {MAX_ROWS_PER_WRITE}"
                )));
            }
            batches.push(batch);
        }
        Ok(batches)
    }

    /// The deletions of `DELETE … WHERE condition`: one per row the token
    /// may both read and delete, each conditional on the version read.
    pub(crate) async fn delete_where(
        &self,
        state: &dyn Session,
        condition: Option<&Expr>,
    ) -> Result<Vec<Mutation>, GatewayError> {
        let access = self.caller.write_access(&self.table.name, Action::Delete, &[])?;
        let batches = self.rows_matching(state, condition, access.scope).await?;
        Ok(ids_and_seqs(&batches)
            .into_iter()
            .map(|(id, seq)| Mutation {
                table: self.table.name.clone(),
                op: Op::Delete { id, if_seq: Some(seq) },
            })
            .collect())
    }

    /// The changes of `UPDATE … SET assignments WHERE condition`: one per
    /// row the token may both read and update, each conditional on the
    /// version read. `assignments` lists every column; those assigned to
    /// themselves stay unchanged.
    pub(crate) async fn update_where(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        condition: Option<&Expr>,
    ) -> Result<Vec<Mutation>, GatewayError> {
        let changed: Vec<(String, Expr)> = assignments
            .into_iter()
            .filter(|(name, expr)| !matches!(expr, Expr::Column(c) if c.name == *name))
            .collect();
        let names: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(system) = names.iter().find(|n| VISIBLE_SYSTEM_COLUMNS.contains(n)) {
            return Err(GatewayError::InvalidSql(format!(
                "column `{system}` is maintained by the vault and cannot be set"
            )));
        }
        let access = self.caller.write_access(&self.table.name, Action::Update, &names)?;
        let batches = self.rows_matching(state, condition, access.scope).await?;
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone()).map_err(GatewayError::internal)?;
        let exprs: Vec<(String, Arc<dyn PhysicalExpr>)> = changed
            .into_iter()
            .map(|(name, e)| Ok((name, physical(state, e, &df_schema)?)))
            .collect::<Result<_>>()
            .map_err(crate::sql::from_datafusion)?;
        let mut mutations = Vec::new();
        for batch in &batches {
            let mut columns = Vec::with_capacity(exprs.len());
            for (name, expr) in &exprs {
                let array = expr
                    .evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(crate::sql::run_error)?;
                let field = self
                    .table
                    .arrow
                    .field_with_name(name)
                    .map_err(GatewayError::internal)?
                    .clone();
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
        Ok(mutations)
    }

    /// The inserts of `INSERT INTO … ` whose rows are `batches` (the table's
    /// insert columns): checks the create right for the columns given (not
    /// null) in any row.
    pub(crate) fn inserts(&self, batches: &[RecordBatch]) -> Result<Vec<Mutation>, GatewayError> {
        let mut rows: Vec<Values> = Vec::new();
        for batch in batches {
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
                return Err(GatewayError::QueryLimit(format!(
                    "one statement may insert at most {MAX_ROWS_PER_WRITE} rows"
                )));
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
        self.caller.check(&self.table.name, Action::Create, &given)?;
        Ok(rows
            .into_iter()
            .map(|values| Mutation {
                table: self.table.name.clone(),
                op: Op::Insert { values },
            })
            .collect())
    }
}

/// `expr` (from an analyzed but unoptimized plan) as a physical expression
/// over `schema`: simplified first, as the optimizer would (some functions,
/// like `coalesce`, exist only to be rewritten there). Simplifying an
/// expression keeps its meaning: a condition that folds to `false` stays a
/// condition.
fn physical(state: &dyn Session, expr: Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_current_time()
        .build();
    let simplified = ExprSimplifier::new(context).simplify(expr)?;
    state.create_physical_expr(simplified, schema)
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
        // The owner filter is applied inside the scan, before anything of
        // the query; the query's filters are applied above it by DataFusion
        // (inexact pushdown) and used below it only for pruning and where
        // they cannot fail.
        self.scan_within(state, projection, filters, read.row_scope()).await
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
