//! Result column names as Postgres gives them. The planner names a column
//! it computes after its expression (`count(*)`, `Int64(1)`); Postgres
//! names it after the function (`count`), the column a cast or a
//! parenthesis wraps, or `?column?`. Drivers that return rows as objects
//! (node `pg`'s `rows[0].count`, psycopg's dict rows) key them by these
//! names, so the wire uses Postgres's. Only the select list of a plain
//! `SELECT` without `*` is renamed; an alias, a column and anything else
//! keep the planner's name.

use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The name Postgres gives an unnamed expression that is not a column.
const UNNAMED: &str = "?column?";

/// `planned` (the planner's names of the result columns of `sql`) with
/// each computed column renamed as Postgres names it.
pub fn postgres_names(sql: &str, planned: Vec<String>) -> Vec<String> {
    // The planner names a plain column by the column alone; only a name
    // with a call, an operator or a qualifier may need renaming, so a
    // statement of plain columns (the common case) is not parsed again.
    if !planned.iter().any(|name| name.contains(['(', ' ', '.'])) {
        return planned;
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return planned;
    };
    let Some(Statement::Query(query)) = statements.pop() else {
        return planned;
    };
    let SetExpr::Select(select) = *query.body else {
        return planned;
    };
    if select.projection.len() != planned.len() {
        return planned;
    }
    planned
        .into_iter()
        .zip(&select.projection)
        .map(|(name, item)| match item {
            SelectItem::UnnamedExpr(expr) => name_of(expr).unwrap_or(name),
            _ => name,
        })
        .collect()
}

/// Postgres's name of `expr`, or `None` where the planner's name is it
/// already (a column).
fn name_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        Expr::Function(f) => Some(
            f.name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map_or_else(|| UNNAMED.to_owned(), folded),
        ),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => {
            Some(name_of(expr).unwrap_or_else(|| column_name(expr).unwrap_or_else(|| UNNAMED.to_owned())))
        }
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        _ => Some(UNNAMED.to_owned()),
    }
}

/// The column `expr` names, if it is one.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(folded(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(folded),
        _ => None,
    }
}

/// An identifier as Postgres reads it: folded to lower case unless quoted.
fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str, planned: &[&str]) -> Vec<String> {
        postgres_names(sql, planned.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn computed_columns_are_named_as_postgres_names_them() {
        assert_eq!(
            names(
                "SELECT count(*), SUM(x), 1, display_name, p.email, count(*) AS n, (given_name), \
                 birthday::text, CASE WHEN true THEN 1 END, now()::date FROM contacts.people p",
                &[
                    "count(*)",
                    "sum(p.x)",
                    "Int64(1)",
                    "display_name",
                    "email",
                    "n",
                    "given_name",
                    "p.birthday",
                    "CASE WHEN Boolean(true) THEN Int64(1) END",
                    "now()",
                ]
            ),
            [
                "count",
                "sum",
                "?column?",
                "display_name",
                "email",
                "n",
                "given_name",
                "birthday",
                "case",
                "now"
            ]
        );
    }

    #[test]
    fn stars_set_operations_and_other_statements_keep_the_planned_names() {
        for (sql, planned) in [
            ("SELECT *, count(*) FROM t", vec!["a", "b", "count(*)"]),
            ("SELECT count(*) FROM t UNION SELECT 1", vec!["count(*)"]),
            ("INSERT INTO t VALUES (1)", vec!["count"]),
            ("not sql at all", vec!["count(*)"]),
            ("SELECT count(*), 2 FROM t", vec!["count(*)"]),
        ] {
            let planned: Vec<String> = planned.into_iter().map(str::to_owned).collect();
            assert_eq!(postgres_names(sql, planned.clone()), planned, "{sql}");
        }
    }
}
