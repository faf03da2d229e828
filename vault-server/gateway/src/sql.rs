//! One SQL statement over the confined catalog: `SELECT` (joins,
//! aggregates, subqueries across granted tables), `INSERT`, `UPDATE` and
//! `DELETE`, with `$n` parameters bound from JSON values, never spliced.

use std::any::Any;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use coffer_core::TableName;
use coffer_storage::Mutation;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::source_as_provider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Query, Statement, TableFactor, TableObject, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::StreamExt;
use serde_json::Value;

use crate::caller::Caller;
use crate::catalog::{ConfinedTable, MAX_ROWS_PER_WRITE, Use, confined_context};
use crate::error::GatewayError;
use crate::request::{Logged, Operation};
use crate::values::{batch_to_arrays, type_name};

mod direct;

/// Longest SQL text accepted.
pub const MAX_SQL_LEN: usize = 64 * 1024;
/// Most rows a query result may hold.
pub const MAX_RESULT_ROWS: usize = 10_000;

/// A result column.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ResultColumn {
    /// Its name.
    pub name: String,
    /// Its Coffer type (`text`, `integer`, `timestamp`, …).
    #[serde(rename = "type")]
    pub ty: String,
}

/// What a statement returned.
#[derive(Debug)]
pub struct SqlResult {
    /// What the statement did.
    pub kind: Operation,
    /// The tables it read or wrote.
    pub tables: Vec<TableName>,
    /// The result's columns.
    pub columns: Vec<ResultColumn>,
    /// The rows, each an array in column order.
    pub rows: Vec<Value>,
    /// Rows returned (reads) or changed (writes).
    pub row_count: u64,
}

impl Logged for SqlResult {
    fn rows(&self) -> u64 {
        self.row_count
    }

    fn learned(&self) -> Option<(Operation, &[TableName])> {
        Some((self.kind, &self.tables))
    }
}

/// What a statement returned, as Arrow batches: for front ends that encode
/// values themselves (pgwire) rather than as JSON.
#[derive(Debug)]
pub struct SqlBatches {
    /// What the statement did.
    pub kind: Operation,
    /// The tables it read or wrote.
    pub tables: Vec<TableName>,
    /// The result's schema (empty for a write).
    pub schema: SchemaRef,
    /// The result's rows (none for a write).
    pub batches: Vec<RecordBatch>,
    /// Rows returned (reads) or changed (writes).
    pub row_count: u64,
}

impl Logged for SqlBatches {
    fn rows(&self) -> u64 {
        self.row_count
    }

    fn learned(&self) -> Option<(Operation, &[TableName])> {
        Some((self.kind, &self.tables))
    }
}

impl From<SqlBatches> for SqlResult {
    fn from(result: SqlBatches) -> SqlResult {
        if result.kind != Operation::Read {
            return SqlResult {
                kind: result.kind,
                tables: result.tables,
                columns: vec![ResultColumn {
                    name: "count".into(),
                    ty: "integer".into(),
                }],
                rows: vec![Value::Array(vec![result.row_count.into()])],
                row_count: result.row_count,
            };
        }
        let mut rows = Vec::new();
        for b in &result.batches {
            batch_to_arrays(b, &mut rows);
        }
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|f| ResultColumn {
                name: f.name().clone(),
                ty: type_name(f),
            })
            .collect();
        SqlResult {
            kind: result.kind,
            tables: result.tables,
            columns,
            row_count: rows.len() as u64,
            rows,
        }
    }
}

/// What a statement would take and return, found by planning it over the
/// caller's confined catalog without running it.
#[derive(Debug)]
pub struct Described {
    /// What the statement does.
    pub kind: Operation,
    /// The type the plan expects for each parameter `$1…$n` (`None` where
    /// the plan does not say).
    pub params: Vec<Option<DataType>>,
    /// The result's schema; `None` for a write, which returns no rows.
    pub schema: Option<SchemaRef>,
}

impl Logged for Described {
    fn rows(&self) -> u64 {
        0
    }
}

/// Deepest expression nesting a statement may have (operators, function
/// calls, `CASE`, subqueries). Past it the statement is refused before it is
/// planned: planning, optimizing and even dropping an expression tree
/// recurse over its depth.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Statements longer than this are parsed on a thread with a large stack:
/// a long chain like `1+1+1+…` parses into a tree as deep as it is long, and
/// dropping that tree after refusing it recurses over its depth.
const INLINE_PARSE_LEN: usize = 4 * 1024;

/// A statement that parsed as one allowed statement.
struct Parsed {
    statement: DfStatement,
    kind: Operation,
    /// The table an `INSERT` writes.
    target: Option<TableName>,
    /// Whether an `UPDATE` or `DELETE` has a `WHERE` clause.
    has_where: bool,
}

/// What `sql` would do, by its first keyword: the label of a refused
/// statement in the access log (no second parse of text already refused).
pub fn kind_of(sql: &str) -> Operation {
    let word = sql.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    match word.as_str() {
        "insert" => Operation::Insert,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        _ => Operation::Read,
    }
}

/// Whether `sql` has one of the shapes that run without the planner (a
/// point read by id, a value insert; see [`direct`]). Whether a given
/// caller's statement then does also depends on its grant and parameters.
pub fn runs_directly(sql: &str) -> bool {
    classify(sql).is_ok_and(|p| direct::recognize(&p.statement).is_some())
}

/// Parses `sql`: inline when short, else on a thread with a stack large
/// enough for the deepest tree the length allows.
async fn parse(sql: &str) -> Result<Parsed, GatewayError> {
    if sql.len() <= INLINE_PARSE_LEN {
        return classify(sql);
    }
    if sql.len() > MAX_SQL_LEN {
        return Err(GatewayError::InvalidSql(format!(
            "the statement is longer than {MAX_SQL_LEN} bytes"
        )));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let text = sql.to_owned();
    std::thread::Builder::new()
        .name("coffer-sql-parse".into())
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let _ = tx.send(classify(&text));
        })
        .map_err(GatewayError::internal)?;
    rx.await.map_err(GatewayError::internal)?
}

/// Parses one statement and says what it is and which table it writes.
fn classify(sql: &str) -> Result<Parsed, GatewayError> {
    if sql.len() > MAX_SQL_LEN {
        return Err(GatewayError::InvalidSql(format!(
            "the statement is longer than {MAX_SQL_LEN} bytes"
        )));
    }
    let mut statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
        .map_err(|e| GatewayError::InvalidSql(e.to_string()))?;
    if statements.len() != 1 {
        return Err(GatewayError::InvalidSql(format!(
            "send exactly one statement (got {})",
            statements.len()
        )));
    }
    let statement = statements.pop_front().expect("one statement");
    let DfStatement::Statement(inner) = &statement else {
        return Err(only_dml());
    };
    check_depth(inner)?;
    let (kind, target, has_where) = match inner.as_ref() {
        Statement::Query(_) => (Operation::Read, None, false),
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => (Operation::Insert, Some(object_table(&name.to_string())?), false),
            _ => {
                return Err(GatewayError::InvalidSql(
                    "INSERT takes a table name (`INSERT INTO schema.table …`)".into(),
                ));
            }
        },
        Statement::Update(update) => (Operation::Update, None, update.selection.is_some()),
        Statement::Delete(delete) => (Operation::Delete, None, delete.selection.is_some()),
        _ => return Err(only_dml()),
    };
    Ok(Parsed {
        statement,
        kind,
        target,
        has_where,
    })
}

/// Refuses a statement whose expressions or queries nest deeper than
/// [`MAX_EXPR_DEPTH`]. The walk stops at the first level past the limit, so
/// it never recurses deeper than that itself.
fn check_depth(statement: &Statement) -> Result<(), GatewayError> {
    struct Depth {
        now: usize,
    }
    impl Depth {
        fn enter(&mut self) -> ControlFlow<()> {
            self.now += 1;
            if self.now > MAX_EXPR_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn leave(&mut self) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
            self.enter()
        }
        fn post_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
            self.leave()
        }
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.enter()
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.leave()
        }
    }
    match statement.visit(&mut Depth { now: 0 }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(GatewayError::QueryLimit(format!(
            "the statement nests expressions deeper than {MAX_EXPR_DEPTH} levels"
        ))),
    }
}

fn only_dml() -> GatewayError {
    GatewayError::InvalidSql("only SELECT, INSERT, UPDATE and DELETE statements are allowed".into())
}

/// `contacts.people`, `"contacts"."people"` or `vault.contacts.people`.
fn object_table(name: &str) -> Result<TableName, GatewayError> {
    let plain = name.replace('"', "");
    let parts: Vec<&str> = plain.split('.').collect();
    let (schema, table) = match parts.as_slice() {
        [schema, table] | ["vault", schema, table] => (*schema, *table),
        _ => return Err(GatewayError::TableNotFound(plain.clone())),
    };
    Ok(TableName::new(schema, table))
}

/// What a statement produced before anything is committed.
enum Prepared {
    /// A query's result.
    Read(SqlBatches),
    /// A write's changes, to commit.
    Write {
        kind: Operation,
        table: TableName,
        mutations: Vec<Mutation>,
    },
}

/// Runs `sql` with `params` as `caller`. Planning and evaluation run within
/// the gateway's limits (time, concurrency, memory); a write's changes are
/// then committed as one atomic, durable write, which is not cut short. A
/// point read by id or a value insert runs without the planner
/// ([`direct`]), with the same answer.
pub async fn execute(caller: &Caller, sql: &str, params: &[Value]) -> Result<SqlResult, GatewayError> {
    let params: Vec<ScalarValue> = params.iter().map(json_scalar).collect();
    execute_batches(caller, sql, &params).await.map(SqlResult::from)
}

/// [`execute`] with parameters that are already typed values, answering the
/// result as Arrow batches.
pub async fn execute_batches(caller: &Caller, sql: &str, params: &[ScalarValue]) -> Result<SqlBatches, GatewayError> {
    let prepared = caller
        .bounded(async {
            // A text seen before as a direct shape runs without a parse.
            let seen = direct::recognized(sql);
            if let Some(shape) = &seen
                && let Some(prepared) = direct::run(caller, shape, params).await?
            {
                return Ok(prepared);
            }
            let parsed = parse_for(caller, sql).await?;
            if seen.is_none()
                && let Some(shape) = direct::recognize(&parsed.statement)
                && let Some(prepared) = direct::run(caller, &direct::remember(sql, shape), params).await?
            {
                return Ok(prepared);
            }
            prepare(caller, parsed, params).await
        })
        .await?;
    match prepared {
        Prepared::Read(result) => Ok(result),
        Prepared::Write { kind, table, mutations } => {
            let n = mutations.len() as u64;
            if n > 0 {
                caller
                    .gateway()
                    .engine()
                    .write(caller.vault(), caller.app(), mutations)
                    .await
                    .map_err(GatewayError::from)?;
            }
            Ok(SqlBatches {
                kind,
                tables: vec![table],
                schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                batches: Vec::new(),
                row_count: n,
            })
        }
    }
}

/// Plans `sql` as `caller` without running it: its parameters' types and
/// its result's schema, within the gateway's limits. The same refusals as
/// [`execute`] (a table or column outside the grant does not exist).
pub async fn describe(caller: &Caller, sql: &str) -> Result<Described, GatewayError> {
    caller
        .bounded(async {
            let parsed = parse_for(caller, sql).await?;
            let kind = parsed.kind;
            let (_, _, plan) = plan_statement(caller, parsed.statement, kind, parsed.target.as_ref()).await?;
            check_reads(&plan)?;
            let types = plan.get_parameter_types().map_err(from_datafusion)?;
            let count = types
                .keys()
                .filter_map(|k| k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
                .max()
                .unwrap_or(0);
            let params = (1..=count)
                .map(|i| types.get(&format!("${i}")).cloned().flatten())
                .collect();
            let schema = (kind == Operation::Read).then(|| Arc::new(plan.schema().as_arrow().clone()));
            Ok(Described { kind, params, schema })
        })
        .await
}

/// Parses `sql` and refuses an `INSERT` into a table the token does not
/// name (as if it did not exist).
async fn parse_for(caller: &Caller, sql: &str) -> Result<Parsed, GatewayError> {
    let parsed = parse(sql).await?;
    if let Some(t) = &parsed.target
        && !caller.names_table(t)
    {
        return Err(GatewayError::TableNotFound(t.to_string()));
    }
    Ok(parsed)
}

/// Plans `statement` over a new confined session for `caller` (`target`:
/// the table an `INSERT` writes): its tables checked to exist first, and the
/// plan checked to be a query, or a write when `kind` is one.
async fn plan_statement(
    caller: &Caller,
    statement: DfStatement,
    kind: Operation,
    target: Option<&TableName>,
) -> Result<(SessionContext, SessionState, LogicalPlan), GatewayError> {
    let ctx = confined_context(caller, target.map(|t| (t, Use::Insert)))?;
    let state = ctx.state();
    check_tables(&state, &statement)?;
    let plan = state.statement_to_plan(statement).await.map_err(from_datafusion)?;
    let plan = type_limit_parameters(plan)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(kind != Operation::Read)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| GatewayError::InvalidSql(e.to_string()))?;
    Ok((ctx, state, plan))
}

/// Gives a `LIMIT $n` or `OFFSET $n` parameter, which the planner leaves
/// untyped, the type PostgreSQL gives it (`bigint`), so a client that sends
/// it as text (node `pg` sends every parameter so) has it read as a number.
fn type_limit_parameters(plan: LogicalPlan) -> Result<LogicalPlan, GatewayError> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Limit(mut limit) = node else {
            return Ok(Transformed::no(node));
        };
        let mut typed = false;
        for bound in [&mut limit.skip, &mut limit.fetch].into_iter().flatten() {
            if let Expr::Placeholder(p) = bound.as_mut()
                && p.field.is_none()
            {
                p.field = Some(Arc::new(Field::new(&p.id, DataType::Int64, true)));
                typed = true;
            }
        }
        Ok(Transformed::new_transformed(LogicalPlan::Limit(limit), typed))
    })
    .map(|t| t.data)
    .map_err(from_datafusion)
}

/// Plans `parsed` over the caller's confined catalog and evaluates it: the
/// rows of a query, or the changes of a write.
async fn prepare(caller: &Caller, parsed: Parsed, params: &[ScalarValue]) -> Result<Prepared, GatewayError> {
    let Parsed {
        statement,
        kind,
        target,
        has_where,
    } = parsed;
    let (ctx, state, plan) = plan_statement(caller, statement, kind, target.as_ref()).await?;
    let plan = bind(plan, params)?;
    check_reads(&plan)?;
    let LogicalPlan::Dml(dml) = plan else {
        return read(&ctx, plan, kind).await.map(Prepared::Read);
    };
    // Writes are evaluated here, not by DataFusion's DML planning: the
    // analyzed (unoptimized) plan still holds the statement's condition as
    // written, so a condition that folds to false or NULL stays one.
    let plan = state
        .analyzer()
        .execute_and_check(LogicalPlan::Dml(dml), state.config_options(), |_, _| {})
        .map_err(from_datafusion)?;
    let LogicalPlan::Dml(dml) = plan else {
        return Err(GatewayError::internal("the analyzer changed a write into another plan"));
    };
    let provider = source_as_provider(&dml.target).map_err(from_datafusion)?;
    let table = (provider.as_ref() as &dyn Any)
        .downcast_ref::<ConfinedTable>()
        .ok_or_else(|| GatewayError::internal("a write's target is not a vault table"))?;
    let mutations = match dml.op {
        WriteOp::Insert(InsertOp::Append) => {
            let input = ctx
                .execute_logical_plan(dml.input.as_ref().clone())
                .await
                .map_err(from_datafusion)?;
            let batches = collect_bounded(input, MAX_ROWS_PER_WRITE).await?;
            table.inserts(&batches)?
        }
        WriteOp::Insert(other) => {
            return Err(GatewayError::InvalidSql(format!(
                "{other} is not supported; use INSERT INTO"
            )));
        }
        WriteOp::Delete => {
            let write = WritePlan::of(&dml.input, false, has_where)?;
            table.delete_where(&state, write.condition.as_ref()).await?
        }
        WriteOp::Update => {
            let write = WritePlan::of(&dml.input, true, has_where)?;
            table
                .update_where(&state, write.assignments, write.condition.as_ref())
                .await?
        }
        _ => return Err(only_dml()),
    };
    Ok(Prepared::Write {
        kind,
        table: table.name().clone(),
        mutations,
    })
}

/// Runs a query plan and collects its result (at most [`MAX_RESULT_ROWS`]).
async fn read(ctx: &SessionContext, plan: LogicalPlan, kind: Operation) -> Result<SqlBatches, GatewayError> {
    let tables = referenced_tables(&plan);
    let df = ctx.execute_logical_plan(plan).await.map_err(from_datafusion)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let df = df.limit(0, Some(MAX_RESULT_ROWS + 1)).map_err(from_datafusion)?;
    let batches = collect_bounded(df, MAX_RESULT_ROWS + 1).await?;
    let row_count: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if row_count > MAX_RESULT_ROWS {
        return Err(GatewayError::QueryLimit(format!(
            "the result has more than {MAX_RESULT_ROWS} rows; add a LIMIT or use the rows API's pages"
        )));
    }
    Ok(SqlBatches {
        kind,
        tables,
        schema,
        batches,
        row_count: row_count as u64,
    })
}

/// Largest result, in bytes of Arrow memory, one request may collect.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// Collects `df`'s batches, refusing more than `max_rows` rows or
/// [`MAX_RESULT_BYTES`]; execution errors are described without the values
/// they failed on.
pub(crate) async fn collect_bounded(df: DataFrame, max_rows: usize) -> Result<Vec<RecordBatch>, GatewayError> {
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.map_err(from_datafusion)?;
    let mut stream = execute_stream(plan, task).map_err(run_error)?;
    let (mut rows, mut bytes) = (0, 0);
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(run_error)?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        if bytes > MAX_RESULT_BYTES {
            return Err(GatewayError::QueryLimit(format!(
                "the result is larger than {} MiB; select fewer columns or rows",
                MAX_RESULT_BYTES >> 20
            )));
        }
        batches.push(batch);
        if rows > max_rows {
            break;
        }
    }
    Ok(batches)
}

/// An `UPDATE` or `DELETE` as the gateway runs it: the condition (the
/// statement's `WHERE`, exactly) and, for `UPDATE`, every column's new value.
struct WritePlan {
    condition: Option<Expr>,
    assignments: Vec<(String, Expr)>,
}

impl WritePlan {
    /// Reads the analyzed input of a DML node: `[Projection] → Filter* →
    /// [SubqueryAlias] → TableScan`, nothing else. The condition and the
    /// values may use the target table's columns only: no other table, no
    /// subquery, no aggregate.
    fn of(input: &LogicalPlan, update: bool, has_where: bool) -> Result<WritePlan, GatewayError> {
        let refused = || {
            GatewayError::InvalidSql(
                "UPDATE and DELETE may only use the columns of the table written (no joins or subqueries)".into(),
            )
        };
        let mut node = input;
        let mut assignments = Vec::new();
        if update {
            let LogicalPlan::Projection(projection) = node else {
                return Err(refused());
            };
            for e in &projection.expr {
                let (name, value) = match e {
                    Expr::Alias(alias) => (alias.name.clone(), alias.expr.as_ref().clone()),
                    Expr::Column(c) => (c.name.clone(), e.clone()),
                    _ => return Err(refused()),
                };
                if !row_local(&value) {
                    return Err(refused());
                }
                assignments.push((name, unnormalize_col(value)));
            }
            node = projection.input.as_ref();
        }
        let mut conditions = Vec::new();
        loop {
            match node {
                LogicalPlan::Filter(filter) => {
                    if !row_local(&filter.predicate) {
                        return Err(refused());
                    }
                    conditions.push(unnormalize_col(filter.predicate.clone()));
                    node = filter.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(alias) => node = alias.input.as_ref(),
                LogicalPlan::TableScan(scan) if scan.filters.is_empty() => break,
                _ => return Err(refused()),
            }
        }
        if has_where && conditions.is_empty() {
            return Err(GatewayError::internal(
                "the statement's WHERE clause was lost in planning",
            ));
        }
        Ok(WritePlan {
            condition: conditions.into_iter().reduce(Expr::and),
            assignments,
        })
    }
}

/// Whether `expr` reads only the current row: no subquery of any kind, no
/// aggregate or window, no outer reference.
fn row_local(expr: &Expr) -> bool {
    !expr
        .exists(|e| {
            Ok(!matches!(
                e,
                Expr::Alias(_)
                    | Expr::Column(_)
                    | Expr::Literal(..)
                    | Expr::BinaryExpr(_)
                    | Expr::Like(_)
                    | Expr::SimilarTo(_)
                    | Expr::Not(_)
                    | Expr::IsNotNull(_)
                    | Expr::IsNull(_)
                    | Expr::IsTrue(_)
                    | Expr::IsFalse(_)
                    | Expr::IsUnknown(_)
                    | Expr::IsNotTrue(_)
                    | Expr::IsNotFalse(_)
                    | Expr::IsNotUnknown(_)
                    | Expr::Negative(_)
                    | Expr::Between(_)
                    | Expr::Case(_)
                    | Expr::Cast(_)
                    | Expr::TryCast(_)
                    | Expr::ScalarFunction(_)
                    | Expr::InList(_)
            ))
        })
        .unwrap_or(true)
}

/// A JSON parameter as a typed value: numbers as `Int64` (or `Float64`),
/// strings and other JSON as `Utf8`.
fn json_scalar(p: &Value) -> ScalarValue {
    match p {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => ScalarValue::Utf8(Some(other.to_string())),
    }
}

/// Binds `$1…$n` to `params`, each cast to the type the plan expects.
fn bind(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan, GatewayError> {
    let types = plan.get_parameter_types().map_err(from_datafusion)?;
    if types.is_empty() && params.is_empty() {
        return Ok(plan);
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, scalar) in params.iter().enumerate() {
        let scalar = scalar.clone();
        let expected = types.get(&format!("${}", i + 1)).cloned().flatten();
        let scalar = match expected {
            Some(DataType::Null) | None => scalar,
            Some(dt) if scalar.is_null() => ScalarValue::try_from(&dt).map_err(from_datafusion)?,
            // The cast's own error repeats the value; the caller is told
            // only which parameter and type.
            Some(dt) => scalar.cast_to(&dt).map_err(|_| {
                GatewayError::InvalidSql(format!(
                    "parameter ${}: the value cannot be read as {dt} (the value is not shown)",
                    i + 1
                ))
            })?,
        };
        values.push(scalar);
    }
    if types.len() > values.len() {
        return Err(GatewayError::InvalidSql(format!(
            "the statement has {} parameters but {} were given",
            types.len(),
            values.len()
        )));
    }
    plan.with_param_values(ParamValues::List(values.into_iter().map(Into::into).collect()))
        .map_err(|e| GatewayError::InvalidSql(e.to_string()))
}

/// Refuses a statement that names a table the confined catalog does not
/// hold (one that does not exist or that the token does not name: the same
/// answer), before it is planned. Names called as table functions are left
/// to the planner, which has none to offer.
fn check_tables(state: &SessionState, statement: &DfStatement) -> Result<(), GatewayError> {
    let options = state.config_options();
    struct Functions {
        normalize: bool,
        names: Vec<TableReference>,
    }
    impl Visitor for Functions {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name, args: Some(_), ..
            } = factor
                && let Ok(reference) = object_name_to_table_reference(name.clone(), self.normalize)
            {
                self.names.push(reference);
            }
            ControlFlow::Continue(())
        }
    }
    let mut functions = Functions {
        normalize: options.sql_parser.enable_ident_normalization,
        names: Vec::new(),
    };
    if let DfStatement::Statement(inner) = statement {
        let _ = inner.visit(&mut functions);
    }
    let (catalog, schema) = (&options.catalog.default_catalog, &options.catalog.default_schema);
    for reference in state.resolve_table_references(statement).map_err(from_datafusion)? {
        if functions.names.contains(&reference) {
            continue;
        }
        let name = reference.resolve(catalog, schema);
        let exists = state
            .catalog_list()
            .catalog(&name.catalog)
            .and_then(|c| c.schema(&name.schema))
            .is_some_and(|s| s.table_exist(&name.table));
        if !exists {
            return Err(GatewayError::TableNotFound(match name.catalog.as_ref() {
                "vault" => format!("{}.{}", name.schema, name.table),
                _ => name.to_string(),
            }));
        }
    }
    Ok(())
}

/// Refuses a plan that scans a table the token may not read, before it is
/// optimized (the optimizer may fold a scan away, and the answer must not
/// depend on that).
fn check_reads(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let mut refused = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = (provider.as_ref() as &dyn Any).downcast_ref::<ConfinedTable>()
            && table.read_access().is_none()
        {
            refused = Some(GatewayError::MissingRight {
                required: format!("{}:read", table.name()),
            });
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    refused.map_or(Ok(()), Err)
}

/// The vault tables a plan scans or writes (subqueries included).
fn referenced_tables(plan: &LogicalPlan) -> Vec<TableName> {
    let mut names = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        let name = match node {
            LogicalPlan::TableScan(scan) => Some(scan.table_name.to_string()),
            LogicalPlan::Dml(dml) => Some(dml.table_name.to_string()),
            _ => None,
        };
        if let Some(name) = name
            && let Ok(t) = object_table(&name)
        {
            names.insert(t);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

/// Maps a DataFusion error to the gateway's: errors the confined catalog
/// raised come back as they were; the server's own failures are internal;
/// everything else is the SQL's fault (a missing table was refused before
/// planning, by [`check_tables`]).
pub(crate) fn from_datafusion(e: DataFusionError) -> GatewayError {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<GatewayError>() {
            Ok(g) => *g,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(df) => from_datafusion(*df),
                Err(other) => GatewayError::Internal(other.to_string()),
            },
        },
        DataFusionError::Context(_, inner) => from_datafusion(*inner),
        // Shared errors come from running plans (a join's build side).
        e @ DataFusionError::Shared(_) => run_error(e),
        DataFusionError::ResourcesExhausted(m) => resources(&m),
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::Internal(_) => GatewayError::Internal(e.to_string()),
        other => GatewayError::InvalidSql(other.to_string()),
    }
}

/// Maps an error raised while a plan *runs*. Such errors can depend on the
/// values the plan met, so their text is never passed on: the caller learns
/// the kind of failure only. (The gateway's own errors, resource limits and
/// server failures pass as they are; a server failure's text is logged, not
/// answered.)
pub(crate) fn run_error(e: DataFusionError) -> GatewayError {
    let what = match e {
        DataFusionError::External(inner) => match inner.downcast::<GatewayError>() {
            Ok(g) => return *g,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(df) => return run_error(*df),
                Err(other) => return GatewayError::Internal(other.to_string()),
            },
        },
        DataFusionError::Context(_, inner) => return run_error(*inner),
        DataFusionError::Shared(shared) => match shared.find_root() {
            DataFusionError::External(inner) => match inner.downcast_ref::<GatewayError>() {
                Some(g) => return GatewayError::InvalidSql(g.to_string()),
                None => return GatewayError::Internal(inner.to_string()),
            },
            DataFusionError::ResourcesExhausted(m) => return resources(m),
            _ => "a value could not be processed",
        },
        DataFusionError::ResourcesExhausted(m) => return resources(&m),
        DataFusionError::ArrowError(e, _) => match *e {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => {
                "a value could not be converted to the type asked for"
            }
            ArrowError::DivideByZero => "division by zero",
            ArrowError::ArithmeticOverflow(_) => "arithmetic overflow",
            ArrowError::IoError(..) | ArrowError::ExternalError(_) => {
                return GatewayError::Internal(e.to_string());
            }
            _ => "a value could not be processed",
        },
        e @ (DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::Internal(_)) => return GatewayError::Internal(e.to_string()),
        _ => "a value could not be processed",
    };
    GatewayError::InvalidSql(format!(
        "the statement failed while running: {what} (the value is not shown)"
    ))
}

fn resources(message: &str) -> GatewayError {
    GatewayError::QueryLimit(format!("the query needs more than one request may use: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statements() {
        assert_eq!(classify("SELECT 1").unwrap().kind, Operation::Read);
        let insert = classify("INSERT INTO \"contacts\".people (name) VALUES ('a')").unwrap();
        assert_eq!(insert.kind, Operation::Insert);
        assert_eq!(insert.target.unwrap(), TableName::new("contacts", "people"));
        let delete = classify("DELETE FROM contacts.people WHERE id = 'x'").unwrap();
        assert_eq!(delete.kind, Operation::Delete);
        assert!(delete.has_where);
        assert!(!classify("DELETE FROM contacts.people").unwrap().has_where);
        for bad in [
            "SELECT 1; SELECT 2",
            "",
            "CREATE TABLE t (a int)",
            "DROP TABLE contacts.people",
            "COPY contacts.people TO '/tmp/x'",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "SET datafusion.execution.batch_size = 1",
            "EXPLAIN SELECT 1",
            "SELEC 1",
        ] {
            assert_eq!(
                classify(bad).map(|p| p.kind).unwrap_err().code(),
                "invalid-sql",
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_deep_nesting_before_planning() {
        let shallow = format!("SELECT 1{}", "+1".repeat(MAX_EXPR_DEPTH - 2));
        assert!(classify(&shallow).is_ok());
        let deep = format!("SELECT 1{}", "+1".repeat(MAX_EXPR_DEPTH + 1));
        assert_eq!(classify(&deep).map(|p| p.kind).unwrap_err().code(), "query-limit");
    }
}
