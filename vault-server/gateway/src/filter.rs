//! The rows API's query grammar (PostgREST style): `col=op.value` filters,
//! `select=`, `order=`, `limit=` and keyset `cursor=`s, parsed into a
//! [`ListQuery`] and turned into DataFusion expressions typed by the table's
//! columns.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, SortExpr, in_list, lit, not};
use serde_json::Value;

use crate::error::GatewayError;

/// Rows a page holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// Most rows a page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Most filters one listing may combine (each is one more level of the
/// condition's expression tree).
pub const MAX_FILTERS: usize = 64;
/// Most values one `in.(…)` list may hold.
pub const MAX_IN_VALUES: usize = 1000;
/// Most sort keys one `order` may name.
pub const MAX_ORDER_KEYS: usize = 16;

/// A parsed list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `select=`: the columns asked for (`None`: every readable column).
    pub select: Option<Vec<String>>,
    /// Column filters; all must hold.
    pub filters: Vec<Filter>,
    /// `order=` keys, without the implicit `id` tie-breaker.
    pub order: Vec<OrderKey>,
    /// Rows per page.
    pub limit: usize,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One `col=[not.]op.value` filter.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// `not.` prefix.
    pub negated: bool,
    /// The test.
    pub op: FilterOp,
}

/// A filter's test.
#[derive(Clone, Debug)]
pub enum FilterOp {
    /// `eq`, `neq`, `gt`, `gte`, `lt`, `lte` with a value.
    Compare(Comparison, String),
    /// `like` / `ilike` with a pattern (`*` and `%` match any run).
    Like {
        /// `ilike`.
        case_insensitive: bool,
        /// The pattern as given.
        pattern: String,
    },
    /// `in.(a,b,…)`.
    In(Vec<String>),
    /// `is.null`, `is.true`, `is.false`.
    Is(IsValue),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `=`
    Eq,
    /// `<>`
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

/// What `is.` tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsValue {
    /// `is.null`
    Null,
    /// `is.true`
    True,
    /// `is.false`
    False,
}

/// One `order=` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderKey {
    /// The column.
    pub column: String,
    /// `.desc`.
    pub descending: bool,
    /// Nulls before values (default: last ascending, first descending).
    pub nulls_first: bool,
}

impl OrderKey {
    fn spec(&self) -> String {
        format!(
            "{}.{}.{}",
            self.column,
            if self.descending { "desc" } else { "asc" },
            if self.nulls_first { "nullsfirst" } else { "nullslast" }
        )
    }
}

impl ListQuery {
    /// Parses the query string's pairs (repeats kept, in order).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, GatewayError> {
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            ..Default::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "select" => {
                    let cols: Vec<String> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if cols.is_empty() {
                        return Err(GatewayError::filter("select", "name at least one column"));
                    }
                    q.select = Some(cols);
                }
                "order" => q.order = parse_order(value)?,
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| GatewayError::filter("limit", format!("expected 1 to {MAX_LIMIT}")))?;
                }
                "cursor" => q.cursor = Some(value.clone()),
                column => {
                    if q.filters.len() == MAX_FILTERS {
                        return Err(GatewayError::QueryLimit(format!(
                            "a listing may combine at most {MAX_FILTERS} filters"
                        )));
                    }
                    q.filters.push(parse_filter(column, value)?)
                }
            }
        }
        Ok(q)
    }

    /// The sort keys with `id` appended as the tie-breaker.
    pub fn sort_keys(&self) -> Vec<OrderKey> {
        let mut keys = self.order.clone();
        if !keys.iter().any(|k| k.column == "id") {
            keys.push(OrderKey {
                column: "id".into(),
                descending: false,
                nulls_first: false,
            });
        }
        keys
    }

    /// The order as a string a cursor is bound to.
    fn order_spec(&self) -> String {
        self.sort_keys()
            .iter()
            .map(OrderKey::spec)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cursor naming the sort key `values` of a page's last row.
    pub fn encode_cursor(&self, values: Vec<Value>) -> String {
        let doc = serde_json::json!({ "o": self.order_spec(), "k": values });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
    }

    /// The sort expressions over `schema`.
    pub fn sort_exprs(&self, schema: &Schema, table: &str) -> Result<Vec<SortExpr>, GatewayError> {
        self.sort_keys()
            .iter()
            .map(|k| {
                let field = field(schema, table, &k.column)?;
                if !sortable(field) {
                    return Err(GatewayError::filter(
                        "order",
                        format!("column `{}` cannot be sorted", k.column),
                    ));
                }
                Ok(column(&k.column).sort(!k.descending, k.nulls_first))
            })
            .collect()
    }

    /// The filters (and the cursor's keyset condition) as one expression.
    pub fn predicate(&self, schema: &Schema, table: &str) -> Result<Option<Expr>, GatewayError> {
        let mut exprs = Vec::new();
        for f in &self.filters {
            exprs.push(f.to_expr(schema, table)?);
        }
        if let Some(cursor) = &self.cursor {
            exprs.push(self.after_cursor(cursor, schema, table)?);
        }
        Ok(exprs.into_iter().reduce(Expr::and))
    }

    /// Rows strictly after the cursor's row in the sort order.
    fn after_cursor(&self, cursor: &str, schema: &Schema, table: &str) -> Result<Expr, GatewayError> {
        let bad = || GatewayError::filter("cursor", "not a cursor of this listing; start again without `cursor`");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| bad())?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if doc["o"].as_str() != Some(self.order_spec().as_str()) {
            return Err(bad());
        }
        let values = doc["k"].as_array().ok_or_else(bad)?;
        let keys = self.sort_keys();
        if values.len() != keys.len() {
            return Err(bad());
        }
        let mut alternatives = Vec::new();
        let mut equal_before: Vec<Expr> = Vec::new();
        for (key, value) in keys.iter().zip(values) {
            let field = field(schema, table, &key.column)?;
            let c = column(&key.column);
            let scalar = match value {
                Value::Null => None,
                Value::String(s) => Some(typed(field, s).map_err(|_| bad())?),
                other => Some(typed(field, &other.to_string()).map_err(|_| bad())?),
            };
            let after = match &scalar {
                Some(v) => {
                    let beyond = if key.descending {
                        c.clone().lt(lit(v.clone()))
                    } else {
                        c.clone().gt(lit(v.clone()))
                    };
                    if key.nulls_first {
                        beyond
                    } else {
                        beyond.or(c.clone().is_null())
                    }
                }
                None if key.nulls_first => c.clone().is_not_null(),
                None => lit(false),
            };
            alternatives.push(equal_before.iter().cloned().fold(after, Expr::and));
            equal_before.push(match scalar {
                Some(v) => c.eq(lit(v)),
                None => c.is_null(),
            });
        }
        alternatives.into_iter().reduce(Expr::or).ok_or_else(bad)
    }
}

/// A column reference that never parses the name (names may hold dots or capitals).
fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn field<'a>(schema: &'a Schema, table: &str, name: &str) -> Result<&'a Field, GatewayError> {
    schema.field_with_name(name).map_err(|_| GatewayError::UnknownColumn {
        table: table.to_owned(),
        column: name.to_owned(),
    })
}

fn is_json(field: &Field) -> bool {
    field
        .metadata()
        .get(coffer_storage::arrow_codec::TYPE_METADATA_KEY)
        .is_some_and(|t| t == "json")
}

fn sortable(field: &Field) -> bool {
    !is_json(field)
        && matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::Int64
                | DataType::Float64
                | DataType::Boolean
                | DataType::Timestamp(..)
                | DataType::Date32
        )
}

fn parse_order(value: &str) -> Result<Vec<OrderKey>, GatewayError> {
    let mut keys = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if keys.len() == MAX_ORDER_KEYS {
            return Err(GatewayError::filter(
                "order",
                format!("name at most {MAX_ORDER_KEYS} columns"),
            ));
        }
        let mut pieces = part.split('.');
        let column = pieces.next().unwrap_or_default().to_owned();
        let mut direction: Option<bool> = None;
        let mut nulls: Option<bool> = None;
        for modifier in pieces {
            let (slot, value) = match modifier {
                "asc" => (&mut direction, false),
                "desc" => (&mut direction, true),
                "nullsfirst" => (&mut nulls, true),
                "nullslast" => (&mut nulls, false),
                other => {
                    return Err(GatewayError::filter(
                        "order",
                        format!("unknown modifier `{other}`; use asc, desc, nullsfirst or nullslast"),
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(GatewayError::filter(
                    "order",
                    format!("`{part}` gives the direction or the nulls position twice"),
                ));
            }
        }
        let descending = direction.unwrap_or(false);
        if column.is_empty() || keys.iter().any(|k: &OrderKey| k.column == column) {
            return Err(GatewayError::filter(
                "order",
                format!("bad or repeated column in `{part}`"),
            ));
        }
        keys.push(OrderKey {
            column,
            descending,
            nulls_first: nulls.unwrap_or(descending),
        });
    }
    if keys.is_empty() {
        return Err(GatewayError::filter("order", "name at least one column"));
    }
    Ok(keys)
}

pub(crate) fn parse_filter(column: &str, value: &str) -> Result<Filter, GatewayError> {
    let err = |reason: String| GatewayError::filter(column, reason);
    let (negated, rest) = match value.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (op, operand) = rest
        .split_once('.')
        .ok_or_else(|| err(format!("expected `op.value` (e.g. `eq.1`), got `{value}`")))?;
    let compare = |c| Ok(FilterOp::Compare(c, operand.to_owned()));
    let op = match op {
        "eq" => compare(Comparison::Eq),
        "neq" => compare(Comparison::Neq),
        "gt" => compare(Comparison::Gt),
        "gte" => compare(Comparison::Gte),
        "lt" => compare(Comparison::Lt),
        "lte" => compare(Comparison::Lte),
        "like" | "ilike" => Ok(FilterOp::Like {
            case_insensitive: op == "ilike",
            pattern: operand.to_owned(),
        }),
        "in" => parse_list(operand).map(FilterOp::In).map_err(err),
        "is" => match operand {
            "null" => Ok(FilterOp::Is(IsValue::Null)),
            "true" => Ok(FilterOp::Is(IsValue::True)),
            "false" => Ok(FilterOp::Is(IsValue::False)),
            other => Err(err(format!("`is.` takes null, true or false, not `{other}`"))),
        },
        other => Err(err(format!(
            "unknown operator `{other}`; use eq, neq, gt, gte, lt, lte, like, ilike, in or is"
        ))),
    }?;
    if let FilterOp::Compare(_, v) = &op
        && v.is_empty()
    {
        return Err(err("the value is empty".into()));
    }
    Ok(Filter {
        column: column.to_owned(),
        negated,
        op,
    })
}

/// `(a,b,"c,d")` → `[a, b, c,d]`.
fn parse_list(operand: &str) -> Result<Vec<String>, String> {
    let inner = operand
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| "expected `in.(a,b,…)`".to_owned())?;
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err("unterminated quote in `in.(…)`".into()),
                }
            }
            match chars.next() {
                None => {
                    items.push(item);
                    break;
                }
                Some(',') => items.push(item),
                Some(c) => return Err(format!("unexpected `{c}` after a quoted value")),
            }
            if items.len() > MAX_IN_VALUES {
                return Err(format!("`in.(…)` may list at most {MAX_IN_VALUES} values"));
            }
        } else {
            let mut ended = true;
            for c in chars.by_ref() {
                if c == ',' {
                    ended = false;
                    break;
                }
                item.push(c);
            }
            items.push(item);
            if ended {
                break;
            }
            if items.len() > MAX_IN_VALUES {
                return Err(format!("`in.(…)` may list at most {MAX_IN_VALUES} values"));
            }
        }
    }
    if items.iter().all(String::is_empty) {
        return Err("`in.()` needs at least one value".into());
    }
    Ok(items)
}

/// `s` as a value of `field`'s type.
fn typed(field: &Field, s: &str) -> Result<ScalarValue, String> {
    let bad = |what: &str| format!("`{s}` is not {what}");
    Ok(match field.data_type() {
        DataType::Utf8 => ScalarValue::Utf8(Some(s.to_owned())),
        DataType::Int64 => ScalarValue::Int64(Some(s.parse().map_err(|_| bad("an integer"))?)),
        DataType::Float64 => ScalarValue::Float64(Some(s.parse().map_err(|_| bad("a number"))?)),
        DataType::Boolean => ScalarValue::Boolean(Some(s.parse().map_err(|_| bad("true or false"))?)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let micros = match DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.timestamp_micros(),
                Err(_) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| bad("an RFC 3339 timestamp"))?
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc()
                    .timestamp_micros(),
            };
            ScalarValue::TimestampMicrosecond(Some(micros), tz.clone())
        }
        DataType::Date32 => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad("a date (YYYY-MM-DD)"))?;
            let days = d.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"));
            ScalarValue::Date32(Some(days.num_days() as i32))
        }
        other => return Err(format!("columns of type {other} can only be tested with `is.null`")),
    })
}

impl Filter {
    /// The filter over `schema` (whose fields are the columns the request may see).
    pub fn to_expr(&self, schema: &Schema, table: &str) -> Result<Expr, GatewayError> {
        let field = field(schema, table, &self.column)?;
        let c = column(&self.column);
        let err = |reason: String| GatewayError::filter(&self.column, reason);
        let value = |s: &str| {
            if is_json(field) {
                return Err(err("json columns can only be tested with `is.null`".into()));
            }
            typed(field, s).map(lit).map_err(err)
        };
        let expr = match &self.op {
            FilterOp::Compare(op, v) => {
                let v = value(v)?;
                match op {
                    Comparison::Eq => c.eq(v),
                    Comparison::Neq => c.not_eq(v),
                    Comparison::Gt => c.gt(v),
                    Comparison::Gte => c.gt_eq(v),
                    Comparison::Lt => c.lt(v),
                    Comparison::Lte => c.lt_eq(v),
                }
            }
            FilterOp::Like {
                case_insensitive,
                pattern,
            } => {
                if field.data_type() != &DataType::Utf8 || is_json(field) {
                    return Err(err("`like` and `ilike` apply to text columns".into()));
                }
                let pattern = lit(pattern.replace('*', "%"));
                if *case_insensitive {
                    c.ilike(pattern)
                } else {
                    c.like(pattern)
                }
            }
            FilterOp::In(items) => {
                let values = items.iter().map(|s| value(s)).collect::<Result<Vec<_>, _>>()?;
                in_list(c, values, false)
            }
            FilterOp::Is(IsValue::Null) => c.is_null(),
            FilterOp::Is(v) => {
                if field.data_type() != &DataType::Boolean {
                    return Err(err("`is.true` and `is.false` apply to boolean columns".into()));
                }
                if *v == IsValue::True { c.is_true() } else { c.is_false() }
            }
        };
        Ok(if self.negated { not(expr) } else { expr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parses_filters_order_limit() {
        let q = ListQuery::parse(&pairs(&[
            ("age", "gte.18"),
            ("age", "lt.65"),
            ("name", "not.ilike.*ada*"),
            ("tag", r#"in.(a,"b,c",d)"#),
            ("order", "age.desc,name.nullsfirst"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(q.filters.len(), 4);
        assert!(q.filters[2].negated);
        match &q.filters[3].op {
            FilterOp::In(items) => assert_eq!(items, &["a", "b,c", "d"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.limit, 10);
        assert_eq!(q.sort_keys().len(), 3);
        assert!(q.order[0].descending && q.order[0].nulls_first);
        assert!(!q.order[1].descending && q.order[1].nulls_first);
    }

    #[test]
    fn refuses_malformed_input() {
        for (k, v) in [
            ("name", "zz.x"),
            ("age", "gt."),
            ("tag", "in.(a"),
            ("tag", r#"in.("a)"#),
            ("flag", "is.maybe"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "x"),
            ("order", "name.sideways"),
            ("order", "title.asc.desc"),
            ("order", "title.nullsfirst.nullslast"),
            ("order", ""),
            ("name", "eq"),
        ] {
            let e = ListQuery::parse(&pairs(&[(k, v)])).unwrap_err();
            assert_eq!(e.code(), "invalid-filter", "{k}={v}");
        }
    }
}
