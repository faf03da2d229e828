//! Statements run without the query planner: the two shapes apps send most,
//! a point read `SELECT cols FROM schema.table WHERE id = $1` and a value
//! insert `INSERT INTO schema.table (cols) VALUES ($1, …), …`.
//!
//! Planning either through DataFusion costs milliseconds (a session, the
//! analyzer and optimizer passes, a merge-on-read scan over a snapshot),
//! where the engine answers a row by id, or takes a row, in tens of
//! microseconds. So a statement that is *exactly* one of these shapes runs
//! through the engine directly, with the same confinement as the planner's
//! path: the grant's readable columns and row scope for the read (as the
//! rows API's `GET …/rows/{id}`), the confined table's insert columns and
//! create check for the insert.
//!
//! Recognition is purely syntactic and conservative: the statement's whole
//! text must render back from the parts understood here, so any other
//! clause (`DISTINCT`, `LIMIT`, a join, a cast, hints, `RETURNING`, …) sends
//! it to the planner. So does anything whose answer the planner could give
//! differently: a table or column the caller cannot see (the planner's
//! refusal is the one answer), a parameter of another type than the column
//! (the planner casts), a literal that is not already the column's type.
//! Falling back is always correct; the direct path only answers what the
//! planner would answer, faster.

use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use coffer_auth::RowScope;
use coffer_core::TableName;
use coffer_storage::arrow_codec::rows_to_batch;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, SelectItem, SetExpr, Statement, TableFactor, TableObject,
    Value,
};
use lru::LruCache;

use super::{Prepared, SqlBatches};
use crate::caller::Caller;
use crate::catalog::{ConfinedTable, Use, exposed_indices};
use crate::error::GatewayError;
use crate::request::Operation;

/// Statement texts recognized as a direct shape: an app sends the same few
/// statements over and over, so the next time one runs without being
/// parsed at all. Keyed by the exact text; bounded.
static RECOGNIZED: LazyLock<Mutex<LruCache<String, Arc<Direct>>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(RECOGNIZED_TEXTS).expect("non-zero"))));

/// Statement texts [`RECOGNIZED`] keeps.
const RECOGNIZED_TEXTS: usize = 1024;

/// Texts longer than this are not kept (the shapes are short statements).
const MAX_KEPT_TEXT: usize = 2048;

/// The direct shape `sql` was recognized as before, if it was.
pub(super) fn recognized(sql: &str) -> Option<Arc<Direct>> {
    RECOGNIZED.lock().ok()?.get(sql).cloned()
}

/// Keeps `direct` as the shape of `sql` for [`recognized`].
pub(super) fn remember(sql: &str, direct: Direct) -> Arc<Direct> {
    let direct = Arc::new(direct);
    if sql.len() <= MAX_KEPT_TEXT
        && let Ok(mut kept) = RECOGNIZED.lock()
    {
        kept.put(sql.to_owned(), direct.clone());
    }
    direct
}

/// A statement of one of the shapes run without the planner.
#[derive(Debug, PartialEq)]
pub(super) enum Direct {
    /// `SELECT outputs FROM table WHERE id = key`.
    PointRead {
        table: TableName,
        outputs: Vec<Output>,
        key: Operand,
    },
    /// `INSERT INTO table (columns) VALUES rows`.
    Insert {
        table: TableName,
        columns: Vec<String>,
        rows: Vec<Vec<Operand>>,
    },
}

/// One item of a point read's select list.
#[derive(Debug, PartialEq)]
pub(super) enum Output {
    /// `*`: every exposed column.
    All,
    /// A column, answered under `name`.
    Column { column: String, name: String },
}

/// A value in a statement.
#[derive(Debug, PartialEq)]
pub(super) enum Operand {
    /// `$n` (1-based).
    Param(usize),
    /// `'text'`.
    Text(String),
    /// A number as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `NULL`.
    Null,
}

/// Recognizes `statement` as one of the direct shapes, or `None`.
pub(super) fn recognize(statement: &DfStatement) -> Option<Direct> {
    let DfStatement::Statement(inner) = statement else {
        return None;
    };
    let (direct, rendered) = match inner.as_ref() {
        Statement::Query(query) => point_read(query)?,
        Statement::Insert(insert) => value_insert(insert)?,
        _ => return None,
    };
    // Everything the statement says must be what was understood.
    (inner.to_string() == rendered).then_some(direct)
}

/// `SELECT … FROM t [AS a] WHERE id = key`, and its canonical text.
fn point_read(query: &datafusion::sql::sqlparser::ast::Query) -> Option<(Direct, String)> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return None;
    };
    let table = table_name(name)?;
    let (qualifier, relation) = match alias {
        Some(a) if a.columns.is_empty() && a.at.is_none() => (
            normalize(&a.name),
            format!("{name} {}{}", if a.explicit { "AS " } else { "" }, a.name),
        ),
        Some(_) => return None,
        None => (table.table.clone(), name.to_string()),
    };
    let column = |e: &Expr| -> Option<String> {
        match e {
            Expr::Identifier(c) => Some(normalize(c)),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] if normalize(q) == qualifier => Some(normalize(c)),
                _ => None,
            },
            _ => None,
        }
    };
    let mut outputs = Vec::new();
    let mut items = Vec::new();
    for item in &select.projection {
        let (output, text) = match item {
            SelectItem::UnnamedExpr(e) => {
                let c = column(e)?;
                (
                    Output::Column {
                        name: c.clone(),
                        column: c,
                    },
                    e.to_string(),
                )
            }
            SelectItem::ExprWithAlias { expr, alias } => (
                Output::Column {
                    column: column(expr)?,
                    name: normalize(alias),
                },
                format!("{expr} AS {alias}"),
            ),
            // Options (`EXCLUDE`, `REPLACE`, …) render after the star, so
            // the text check below refuses them.
            SelectItem::Wildcard(_) => (Output::All, "*".to_owned()),
            _ => return None,
        };
        outputs.push(output);
        items.push(text);
    }
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = select.selection.as_ref()?
    else {
        return None;
    };
    let key = match (column(left).as_deref(), column(right).as_deref()) {
        (Some("id"), _) => operand(right)?,
        (_, Some("id")) => operand(left)?,
        _ => return None,
    };
    let rendered = format!("SELECT {} FROM {relation} WHERE {left} = {right}", items.join(", "));
    Some((Direct::PointRead { table, outputs, key }, rendered))
}

/// `INSERT INTO t (cols) VALUES (…), …`, and its canonical text.
fn value_insert(insert: &datafusion::sql::sqlparser::ast::Insert) -> Option<(Direct, String)> {
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let table = table_name(name)?;
    if insert.columns.is_empty() {
        return None;
    }
    let mut columns: Vec<String> = Vec::new();
    for c in &insert.columns {
        let [ObjectNamePart::Identifier(ident)] = c.0.as_slice() else {
            return None;
        };
        let c = normalize(ident);
        if columns.contains(&c) {
            return None;
        }
        columns.push(c);
    }
    let source = insert.source.as_ref()?;
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let mut rows = Vec::with_capacity(values.rows.len());
    let mut rendered_rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.content.len() != columns.len() {
            return None;
        }
        rows.push(row.content.iter().map(operand).collect::<Option<Vec<_>>>()?);
        let items: Vec<String> = row.content.iter().map(ToString::to_string).collect();
        rendered_rows.push(format!("({})", items.join(", ")));
    }
    let names: Vec<String> = insert.columns.iter().map(ToString::to_string).collect();
    let rendered = format!(
        "INSERT INTO {name} ({}) VALUES {}",
        names.join(", "),
        rendered_rows.join(", ")
    );
    Some((Direct::Insert { table, columns, rows }, rendered))
}

/// A value the direct path reads without evaluating anything.
fn operand(e: &Expr) -> Option<Operand> {
    let Expr::Value(v) = e else {
        return None;
    };
    Some(match &v.value {
        Value::Placeholder(p) => {
            let n: usize = p.strip_prefix('$')?.parse().ok()?;
            if n == 0 {
                return None;
            }
            Operand::Param(n)
        }
        Value::SingleQuotedString(s) => Operand::Text(s.clone()),
        Value::Number(n, false) => Operand::Number(n.clone()),
        Value::Boolean(b) => Operand::Bool(*b),
        Value::Null => Operand::Null,
        _ => return None,
    })
}

/// An identifier as the planner resolves it: unquoted ones fold to lower case.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `schema.table` or `vault.schema.table`.
fn table_name(name: &ObjectName) -> Option<TableName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(normalize))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [schema, table] => Some(TableName::new(schema, table)),
        [catalog, schema, table] if catalog == "vault" => Some(TableName::new(schema, table)),
        _ => None,
    }
}

/// Runs `direct` as `caller`: `None` when the planner must answer instead.
pub(super) async fn run(
    caller: &Caller,
    direct: &Direct,
    params: &[ScalarValue],
) -> Result<Option<Prepared>, GatewayError> {
    match direct {
        Direct::PointRead { table, outputs, key } => point_get(caller, table.clone(), outputs, key, params).await,
        Direct::Insert { table, columns, rows } => insert_values(caller, table.clone(), columns, rows, params).await,
    }
}

/// The point read: the row by id from the engine, if the caller's scope
/// holds it, as the requested readable columns.
async fn point_get(
    caller: &Caller,
    table: TableName,
    outputs: &[Output],
    key: &Operand,
    params: &[ScalarValue],
) -> Result<Option<Prepared>, GatewayError> {
    if !caller.names_table(&table) {
        return Ok(None);
    }
    let Ok(Some(read)) = caller.read_access(&table) else {
        return Ok(None);
    };
    let id = match key {
        Operand::Text(s) => s.as_str(),
        Operand::Param(n) => match params.get(n - 1) {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => {
                s.as_str()
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let engine = caller.gateway().engine();
    let Ok(installed) = engine.table(caller.vault(), &table).await else {
        return Ok(None);
    };
    let exposed = exposed_indices(&installed, &[&read.access])?;
    let mut fields = Vec::new();
    let mut indices = Vec::new();
    for output in outputs {
        match output {
            Output::All => {
                for &i in &exposed {
                    fields.push(installed.arrow.field(i).clone());
                    indices.push(i);
                }
            }
            Output::Column { column, name } => {
                let Some(&i) = exposed.iter().find(|&&i| installed.arrow.field(i).name() == column) else {
                    return Ok(None);
                };
                fields.push(installed.arrow.field(i).clone().with_name(name));
                indices.push(i);
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let row = engine
        .get(caller.vault(), &table, id)
        .await?
        .filter(|r| read.row_scope() == RowScope::All || r.created_by == caller.app().as_str());
    let batches = match row {
        Some(row) => {
            let stored = rows_to_batch(&installed.def, &installed.arrow, std::slice::from_ref(&row))?;
            let columns: Vec<ArrayRef> = indices.iter().map(|&i| stored.column(i).clone()).collect();
            vec![RecordBatch::try_new(schema.clone(), columns).map_err(GatewayError::internal)?]
        }
        None => Vec::new(),
    };
    let row_count = batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
    Ok(Some(Prepared::Read(SqlBatches {
        kind: Operation::Read,
        tables: vec![table],
        schema,
        batches,
        row_count,
    })))
}

/// The value insert: the rows typed as the confined table's insert columns,
/// checked and turned into mutations as the planner's path does.
async fn insert_values(
    caller: &Caller,
    table: TableName,
    columns: &[String],
    rows: &[Vec<Operand>],
    params: &[ScalarValue],
) -> Result<Option<Prepared>, GatewayError> {
    if !caller.names_table(&table) {
        return Ok(None);
    }
    let Ok(confined) = ConfinedTable::open(caller, &table, Use::Insert).await else {
        return Ok(None);
    };
    let schema = datafusion::catalog::TableProvider::schema(&confined);
    let mut fields: Vec<Field> = Vec::with_capacity(columns.len());
    for c in columns {
        let Ok(field) = schema.field_with_name(c) else {
            return Ok(None);
        };
        fields.push(field.clone());
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, field) in fields.iter().enumerate() {
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(value) = typed(&row[i], field.data_type(), params) else {
                return Ok(None);
            };
            values.push(value);
        }
        arrays.push(ScalarValue::iter_to_array(values).map_err(GatewayError::internal)?);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(GatewayError::internal)?;
    let mutations = confined.inserts(&[batch])?;
    Ok(Some(Prepared::Write {
        kind: Operation::Insert,
        table: confined.name().clone(),
        mutations,
    }))
}

/// `operand` as a value of type `ty`, when it already is one (the planner
/// would cast anything else, with its own rules and errors).
fn typed(operand: &Operand, ty: &DataType, params: &[ScalarValue]) -> Option<ScalarValue> {
    let value = match (operand, ty) {
        (Operand::Null, _) => return ScalarValue::try_from(ty).ok(),
        (Operand::Param(n), _) => {
            let p = params.get(n - 1)?;
            if p.is_null() {
                return ScalarValue::try_from(ty).ok();
            }
            p.clone()
        }
        (Operand::Text(s), DataType::Utf8) => ScalarValue::Utf8(Some(s.clone())),
        (Operand::Number(n), DataType::Int64) => ScalarValue::Int64(Some(n.parse().ok()?)),
        (Operand::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        _ => return None,
    };
    (value.data_type() == *ty).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sql` is recognized as (`None` also when it does not parse).
    fn direct(sql: &str) -> Option<Direct> {
        recognize(&super::super::classify(sql).ok()?.statement)
    }

    fn read(table: &str, outputs: Vec<Output>, key: Operand) -> Option<Direct> {
        let (schema, table) = table.split_once('.').unwrap();
        Some(Direct::PointRead {
            table: TableName::new(schema, table),
            outputs,
            key,
        })
    }

    fn col(c: &str) -> Output {
        Output::Column {
            column: c.into(),
            name: c.into(),
        }
    }

    #[test]
    fn recognizes_point_reads() {
        let people = "contacts.people";
        assert_eq!(
            direct("SELECT * FROM contacts.people WHERE id = $1"),
            read(people, vec![Output::All], Operand::Param(1))
        );
        assert_eq!(
            direct("select Name, p.email AS \"E\" from Contacts.People p where 'x' = P.ID"),
            read(
                people,
                vec![
                    col("name"),
                    Output::Column {
                        column: "email".into(),
                        name: "E".into()
                    }
                ],
                Operand::Text("x".into())
            )
        );
        assert_eq!(
            direct("SELECT id FROM vault.contacts.people AS p WHERE p.id = $2"),
            read(people, vec![col("id")], Operand::Param(2))
        );
        assert_eq!(
            direct("SELECT \"Name\" FROM contacts.people WHERE id = $1"),
            read(people, vec![col("Name")], Operand::Param(1))
        );
    }

    #[test]
    fn anything_more_goes_to_the_planner() {
        for sql in [
            "SELECT DISTINCT * FROM contacts.people WHERE id = $1",
            "SELECT * FROM contacts.people WHERE id = $1 LIMIT 1",
            "SELECT * FROM contacts.people WHERE id = $1 ORDER BY name",
            "SELECT * FROM contacts.people WHERE (id = $1)",
            "SELECT * FROM contacts.people WHERE id = $1 AND name = 'a'",
            "SELECT * FROM contacts.people WHERE id <> $1",
            "SELECT * FROM contacts.people WHERE name = $1",
            "SELECT * FROM contacts.people WHERE id = $1::text",
            "SELECT * FROM contacts.people WHERE id = upper($1)",
            "SELECT * FROM contacts.people WHERE id = $0",
            "SELECT * FROM contacts.people WHERE id = ?",
            "SELECT * FROM contacts.people",
            "SELECT * FROM contacts.people GROUP BY id HAVING id = $1",
            "SELECT * FROM contacts.people WHERE id = $1 GROUP BY id",
            "SELECT * EXCLUDE (name) FROM contacts.people WHERE id = $1",
            "SELECT name || 'x' FROM contacts.people WHERE id = $1",
            "SELECT count(*) FROM contacts.people WHERE id = $1",
            "SELECT 1 FROM contacts.people WHERE id = $1",
            "SELECT p.* FROM contacts.people p WHERE id = $1",
            "SELECT q.name FROM contacts.people p WHERE id = $1",
            "SELECT people.name FROM contacts.people p WHERE id = $1",
            "SELECT * FROM contacts.people p (a, b) WHERE id = $1",
            "SELECT * FROM contacts.people, contacts.people WHERE id = $1",
            "SELECT * FROM contacts.people JOIN notes.notes ON true WHERE id = $1",
            "SELECT * FROM people WHERE id = $1",
            "SELECT * FROM other.contacts.people WHERE id = $1",
            "SELECT * FROM (SELECT * FROM contacts.people) WHERE id = $1",
            "WITH p AS (SELECT 1) SELECT * FROM contacts.people WHERE id = $1",
            "SELECT * FROM contacts.people WHERE id = $1 UNION SELECT * FROM contacts.people WHERE id = $2",
            "SELECT * FROM contacts.people WHERE id = $1 FOR UPDATE",
            "SELECT * FROM contacts.people WHERE id = -1",
            "SELECT * FROM contacts.people WHERE id = E'x'",
            "SELECT * FROM contacts.people WHERE id = $1 OFFSET 1",
            "SELECT * FROM contacts.people WHERE id = $1 FETCH FIRST 1 ROWS ONLY",
        ] {
            assert_eq!(direct(sql), None, "{sql}");
        }
    }

    #[test]
    fn recognizes_value_inserts() {
        assert_eq!(
            direct(
                "INSERT INTO contacts.people (Name, \"email\", starred) VALUES ($1, 'a@b', true), (NULL, $2, false)"
            ),
            Some(Direct::Insert {
                table: TableName::new("contacts", "people"),
                columns: vec!["name".into(), "email".into(), "starred".into()],
                rows: vec![
                    vec![Operand::Param(1), Operand::Text("a@b".into()), Operand::Bool(true)],
                    vec![Operand::Null, Operand::Param(2), Operand::Bool(false)],
                ],
            })
        );
        for sql in [
            "INSERT INTO contacts.people VALUES ($1)",
            "INSERT INTO contacts.people (name) VALUES ($1) RETURNING id",
            "INSERT INTO contacts.people (name) VALUES ($1) ON CONFLICT DO NOTHING",
            "INSERT INTO contacts.people (name) SELECT name FROM contacts.people",
            "INSERT INTO contacts.people (name) VALUES (($1))",
            "INSERT INTO contacts.people (name) VALUES ($1 || 'x')",
            "INSERT INTO contacts.people (name) VALUES ($1, $2)",
            "INSERT INTO contacts.people (name, name) VALUES ($1, $2)",
            "INSERT INTO contacts.people (name) VALUES (-1)",
            "INSERT INTO contacts.people (name) VALUES (CAST($1 AS text))",
            "INSERT INTO contacts.people AS p (name) VALUES ($1)",
            "INSERT INTO TABLE contacts.people (name) VALUES ($1)",
            "INSERT OVERWRITE TABLE contacts.people (name) VALUES ($1)",
            "INSERT INTO contacts.people (p.name) VALUES ($1)",
        ] {
            assert_eq!(direct(sql), None, "{sql}");
        }
    }

    #[test]
    fn values_are_taken_only_in_their_own_type() {
        let params = [
            ScalarValue::Utf8(Some("a".into())),
            ScalarValue::Int64(Some(5)),
            ScalarValue::Null,
        ];
        let p = |n| Operand::Param(n);
        assert_eq!(
            typed(&p(1), &DataType::Utf8, &params),
            Some(ScalarValue::Utf8(Some("a".into())))
        );
        assert_eq!(typed(&p(2), &DataType::Utf8, &params), None);
        assert_eq!(typed(&p(1), &DataType::Int64, &params), None);
        assert_eq!(typed(&p(3), &DataType::Int64, &params), Some(ScalarValue::Int64(None)));
        assert_eq!(typed(&p(4), &DataType::Utf8, &params), None);
        assert_eq!(
            typed(&Operand::Number("12".into()), &DataType::Int64, &params),
            Some(ScalarValue::Int64(Some(12)))
        );
        assert_eq!(typed(&Operand::Number("1.5".into()), &DataType::Int64, &params), None);
        assert_eq!(typed(&Operand::Number("1".into()), &DataType::Float64, &params), None);
        assert_eq!(
            typed(&Operand::Text("2024-01-01".into()), &DataType::Date32, &params),
            None
        );
        assert_eq!(
            typed(&Operand::Null, &DataType::Boolean, &params),
            Some(ScalarValue::Boolean(None))
        );
    }
}
