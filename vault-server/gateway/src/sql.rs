//! One SQL statement over the confined catalog: `SELECT` (joins,
//! aggregates, subqueries across granted tables), `INSERT`, `UPDATE` and
//! `DELETE`, with `$n` parameters bound from JSON values, never spliced.

use std::collections::BTreeSet;

use coffer_core::TableName;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan, WriteOp};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Statement, TableObject};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use serde_json::Value;

use crate::caller::Caller;
use crate::catalog::{Use, confined_context};
use crate::error::GatewayError;
use crate::values::{batch_to_arrays, type_name};

/// Longest SQL text accepted.
pub const MAX_SQL_LEN: usize = 64 * 1024;
/// Most rows a query result may hold.
pub const MAX_RESULT_ROWS: usize = 10_000;

/// What a statement does, for the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// `SELECT`.
    Read,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl StatementKind {
    /// `read`, `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
        }
    }
}

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
    /// The statement's kind.
    pub kind: StatementKind,
    /// The tables it read or wrote.
    pub tables: Vec<TableName>,
    /// The result's columns.
    pub columns: Vec<ResultColumn>,
    /// The rows, each an array in column order.
    pub rows: Vec<Value>,
    /// Rows returned (reads) or changed (writes).
    pub row_count: u64,
}

/// What `sql` would do, if it parses as one allowed statement.
pub fn kind_of(sql: &str) -> Option<StatementKind> {
    classify(sql).ok().map(|(_, kind, _)| kind)
}

/// Parses one statement and says what it is and which table it writes.
fn classify(sql: &str) -> Result<(DfStatement, StatementKind, Option<TableName>), GatewayError> {
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
    let (kind, target) = match &statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) => (StatementKind::Read, None),
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => (StatementKind::Insert, Some(object_table(&name.to_string())?)),
                _ => {
                    return Err(GatewayError::InvalidSql(
                        "INSERT takes a table name (`INSERT INTO schema.table …`)".into(),
                    ));
                }
            },
            Statement::Update(_) => (StatementKind::Update, None),
            Statement::Delete(_) => (StatementKind::Delete, None),
            _ => return Err(only_dml()),
        },
        _ => return Err(only_dml()),
    };
    Ok((statement, kind, target))
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

/// Runs `sql` with `params` as `caller`.
pub async fn execute(caller: &Caller, sql: &str, params: &[Value]) -> Result<SqlResult, GatewayError> {
    let (statement, kind, target) = classify(sql)?;
    let target_use = target.as_ref().map(|t| (t, Use::Insert));
    if let Some(t) = &target
        && !caller.names_table(t)
    {
        return Err(GatewayError::TableNotFound(t.to_string()));
    }
    let ctx = confined_context(caller, target_use)?;
    let state = ctx.state();
    let plan = state.statement_to_plan(statement).await.map_err(from_datafusion)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(kind != StatementKind::Read)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| GatewayError::InvalidSql(e.to_string()))?;
    let plan = bind(plan, params)?;
    check_write_conditions(&plan)?;
    let tables = referenced_tables(&plan);
    let df = ctx.execute_logical_plan(plan).await.map_err(from_datafusion)?;
    let schema = df.schema().as_arrow().clone();
    let df = if kind == StatementKind::Read {
        df.limit(0, Some(MAX_RESULT_ROWS + 1)).map_err(from_datafusion)?
    } else {
        df
    };
    let batches = df.collect().await.map_err(from_datafusion)?;
    let mut rows = Vec::new();
    for b in &batches {
        batch_to_arrays(b, &mut rows);
    }
    if rows.len() > MAX_RESULT_ROWS {
        return Err(GatewayError::InvalidSql(format!(
            "the result has more than {MAX_RESULT_ROWS} rows; add a LIMIT or use the rows API's pages"
        )));
    }
    let row_count = if kind == StatementKind::Read {
        rows.len() as u64
    } else {
        rows.first().and_then(|r| r.get(0)).and_then(Value::as_u64).unwrap_or(0)
    };
    let columns = schema
        .fields()
        .iter()
        .map(|f| ResultColumn {
            name: f.name().clone(),
            ty: type_name(f),
        })
        .collect();
    Ok(SqlResult {
        kind,
        tables,
        columns,
        rows,
        row_count,
    })
}

/// Binds `$1…$n` to `params`, each cast to the type the plan expects.
fn bind(plan: LogicalPlan, params: &[Value]) -> Result<LogicalPlan, GatewayError> {
    let types = plan.get_parameter_types().map_err(from_datafusion)?;
    if types.is_empty() && params.is_empty() {
        return Ok(plan);
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let scalar = match p {
            Value::Null => ScalarValue::Null,
            Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ScalarValue::Int64(Some(i)),
                None => ScalarValue::Float64(n.as_f64()),
            },
            Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
            other => ScalarValue::Utf8(Some(other.to_string())),
        };
        let expected = types.get(&format!("${}", i + 1)).cloned().flatten();
        let scalar = match expected {
            Some(DataType::Null) | None => scalar,
            Some(dt) if scalar.is_null() => ScalarValue::try_from(&dt).map_err(from_datafusion)?,
            Some(dt) => scalar
                .cast_to(&dt)
                .map_err(|e| GatewayError::InvalidSql(format!("parameter ${}: {e}", i + 1)))?,
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

/// `UPDATE` and `DELETE` conditions may use the target table's columns
/// only: no other table, no subquery. (DataFusion hands a table provider
/// only the conditions on the target's own columns; a condition on another
/// table would be dropped and the write would reach more rows than asked.)
fn check_write_conditions(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(());
    };
    if !matches!(dml.op, WriteOp::Update | WriteOp::Delete) {
        return Ok(());
    }
    let mut scans = 0;
    let mut subqueries = false;
    let _ = dml.input.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::TableScan(_)) {
            scans += 1;
        }
        for e in node.expressions() {
            if e.exists(|x| {
                Ok(matches!(
                    x,
                    Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
                ))
            })
            .unwrap_or(true)
            {
                subqueries = true;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if scans != 1 || subqueries {
        return Err(GatewayError::InvalidSql(
            "UPDATE and DELETE conditions may only use the columns of the table written (no joins or subqueries)"
                .into(),
        ));
    }
    Ok(())
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
/// raised come back as they were; a missing table is table-not-found; the
/// server's own failures are internal; everything else is the SQL's fault.
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
        DataFusionError::Shared(shared) => match shared.find_root() {
            DataFusionError::External(inner) => match inner.downcast_ref::<GatewayError>() {
                Some(g) => GatewayError::InvalidSql(g.to_string()),
                None => GatewayError::Internal(inner.to_string()),
            },
            other => GatewayError::InvalidSql(other.to_string()),
        },
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_)
        | DataFusionError::Internal(_) => GatewayError::Internal(e.to_string()),
        other => {
            let message = other.to_string();
            match missing_table(&message) {
                Some(name) => GatewayError::TableNotFound(name.strip_prefix("vault.").unwrap_or(name).to_owned()),
                None => GatewayError::InvalidSql(message),
            }
        }
    }
}

/// The table named by DataFusion's "table '…' not found".
fn missing_table(message: &str) -> Option<&str> {
    let start = message.find("table '")? + "table '".len();
    let len = message[start..].find("' not found")?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statements() {
        assert_eq!(classify("SELECT 1").unwrap().1, StatementKind::Read);
        let (_, kind, target) = classify("INSERT INTO \"contacts\".people (name) VALUES ('a')").unwrap();
        assert_eq!(kind, StatementKind::Insert);
        assert_eq!(target.unwrap(), TableName::new("contacts", "people"));
        assert_eq!(
            classify("DELETE FROM contacts.people WHERE id = 'x'").unwrap().1,
            StatementKind::Delete
        );
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
            assert_eq!(classify(bad).unwrap_err().code(), "invalid-sql", "{bad}");
        }
    }
}
