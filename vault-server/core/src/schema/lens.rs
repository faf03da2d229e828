//! Lenses between major versions of a schema.
//!
//! A table of version N ≥ 2 may say, in its `from_previous` list, how it
//! relates to the table of the same name in version N−1 (see [`LensOp`]).
//! With these lists, the versions of a table form one *family* that shares
//! one set of stored rows: apps built for version 1 and apps built for
//! version 2 read and write the same rows, each in its own columns.
//!
//! This module is pure and storage independent:
//!
//! - [`check_lens`] checks a version's lists against the previous version
//!   (the registry runs it, see [`SchemaRegistry::insert`]);
//! - [`TableFamily`] compiles a family: its physical table
//!   ([`TableFamily::physical`], also [`family_table`]) and, per version, a
//!   [`VersionView`] with a [`ReadExpr`] over physical columns for each
//!   column of the version, and the translation of writes
//!   ([`VersionView::write_row`], [`VersionView::replace_row`],
//!   [`VersionView::write_patch`]).
//!
//! [`check_stable`] checks that new definitions keep every stored column
//! where it is.
//!
//! Physical columns are named as in the version where they first appeared.
//! A later version's new column whose name is already taken gets the name
//! `{name}_v{version}` (then `{name}_v{version}_2`, `_3`, …).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::registry::{Location, SchemaError, SchemaRegistry, invalid};
use super::{ColumnDef, ColumnType, SYSTEM_COLUMNS, SchemaDef, TableDef};

/// The three integer columns that hold the parts of a date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateParts {
    /// The column of the year.
    pub year: String,
    /// The column of the month, 1 to 12.
    pub month: String,
    /// The column of the day of the month, 1 to 31.
    pub day: String,
}

impl DateParts {
    /// The three column names, year first.
    pub fn names(&self) -> [&str; 3] {
        [&self.year, &self.month, &self.day]
    }
}

/// One operation of a table's `from_previous` list: how a column of version
/// N relates to the table of the same name in version N−1. Columns with the
/// same name, type, nullability and reference in both versions are carried
/// over without an operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LensOp {
    /// `{"rename": "old", "to": "new"}`: the same column under a new name.
    Rename {
        /// The column of version N−1.
        rename: String,
        /// Its name in version N.
        to: String,
    },
    /// `{"split": "birthday", "into": {"year": …, "month": …, "day": …}}`: a
    /// date of version N−1 held as three integer columns in version N.
    Split {
        /// The date column of version N−1.
        split: String,
        /// The integer columns of version N.
        into: DateParts,
    },
    /// `{"merge": {"year": …, "month": …, "day": …}, "into": "birthday"}`:
    /// three integer columns of version N−1 held as one date in version N.
    Merge {
        /// The integer columns of version N−1.
        merge: DateParts,
        /// The date column of version N.
        into: String,
    },
    /// `{"add": "pronouns", "default": …}`: a column new in version N. Rows
    /// with no value for it read `default` (a column without a default must
    /// be nullable).
    Add {
        /// The new column of version N.
        add: String,
        /// The value read when none is stored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<Value>,
    },
    /// `{"drop": "nickname"}`: a column of version N−1 that version N does
    /// not have. Rows keep it, and version N−1 still reads and writes it.
    Drop {
        /// The column of version N−1.
        drop: String,
    },
}

const OP_KINDS: [&str; 5] = ["rename", "split", "merge", "add", "drop"];

impl<'de> Deserialize<'de> for LensOp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Rename {
            rename: String,
            to: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Split {
            split: String,
            into: DateParts,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Merge {
            merge: DateParts,
            into: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Add {
            add: String,
            #[serde(default)]
            default: Option<Value>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Drop {
            drop: String,
        }
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let kinds: Vec<&str> = match &value {
            Value::Object(map) => OP_KINDS.into_iter().filter(|k| map.contains_key(*k)).collect(),
            _ => Vec::new(),
        };
        let op = match kinds.as_slice() {
            ["rename"] => serde_json::from_value::<Rename>(value).map(|o| LensOp::Rename {
                rename: o.rename,
                to: o.to,
            }),
            ["split"] => serde_json::from_value::<Split>(value).map(|o| LensOp::Split {
                split: o.split,
                into: o.into,
            }),
            ["merge"] => serde_json::from_value::<Merge>(value).map(|o| LensOp::Merge {
                merge: o.merge,
                into: o.into,
            }),
            ["add"] => serde_json::from_value::<Add>(value).map(|o| LensOp::Add {
                add: o.add,
                default: o.default,
            }),
            ["drop"] => serde_json::from_value::<Drop>(value).map(|o| LensOp::Drop { drop: o.drop }),
            [] => {
                return Err(D::Error::custom(format!(
                    "unknown operation {value}: expected an object with one of {}",
                    OP_KINDS.join(", ")
                )));
            }
            _ => {
                return Err(D::Error::custom(format!(
                    "an operation has only one of {}, this one has {}",
                    OP_KINDS.join(", "),
                    kinds.join(" and ")
                )));
            }
        };
        op.map_err(|e| D::Error::custom(format!("in a {} operation: {e}", kinds[0])))
    }
}

impl fmt::Display for LensOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

/// A part of a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatePart {
    /// The year.
    Year,
    /// The month, 1 to 12.
    Month,
    /// The day of the month, 1 to 31.
    Day,
}

impl DatePart {
    const ALL: [DatePart; 3] = [DatePart::Year, DatePart::Month, DatePart::Day];

    /// The part's name, as in SQL's `date_part`: `year`, `month` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
            DatePart::Day => "day",
        }
    }

    /// This part of `date`.
    pub fn of(self, date: NaiveDate) -> i64 {
        match self {
            DatePart::Year => i64::from(date.year()),
            DatePart::Month => i64::from(date.month()),
            DatePart::Day => i64::from(date.day()),
        }
    }
}

/// How a column of a version is read from the physical columns of its
/// family. Each form maps to one DataFusion expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadExpr {
    /// The physical column of this name (null when the row has no value).
    Column(String),
    /// A constant.
    Literal(Value),
    /// The first expression, or the second when the first is null.
    Coalesce(Box<ReadExpr>, Box<ReadExpr>),
    /// A part of a date, as a 64-bit integer (SQL's `date_part`, cast);
    /// null when the date is null.
    DatePart {
        /// Which part.
        part: DatePart,
        /// The date.
        of: Box<ReadExpr>,
    },
    /// The date of three integers; null when any of them is null or they
    /// do not form a date (month 13, 30 February). Note that DataFusion's
    /// `make_date` fails on such values, so the gateway needs a guarded form.
    MakeDate {
        /// The year.
        year: Box<ReadExpr>,
        /// The month.
        month: Box<ReadExpr>,
        /// The day.
        day: Box<ReadExpr>,
    },
}

impl ReadExpr {
    /// Evaluates the expression over a physical row (absent columns are
    /// null).
    pub fn eval(&self, row: &Map<String, Value>) -> Value {
        match self {
            ReadExpr::Column(name) => row.get(name).cloned().unwrap_or(Value::Null),
            ReadExpr::Literal(value) => value.clone(),
            ReadExpr::Coalesce(a, b) => match a.eval(row) {
                Value::Null => b.eval(row),
                v => v,
            },
            ReadExpr::DatePart { part, of } => parse_date(&of.eval(row)).map_or(Value::Null, |d| part.of(d).into()),
            ReadExpr::MakeDate { year, month, day } => make_date([year.eval(row), month.eval(row), day.eval(row)]),
        }
    }

    /// The physical columns the expression reads, each once.
    pub fn physical_columns(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match self {
            ReadExpr::Column(name) => {
                out.insert(name);
            }
            ReadExpr::Literal(_) => {}
            ReadExpr::Coalesce(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            ReadExpr::DatePart { of, .. } => of.collect(out),
            ReadExpr::MakeDate { year, month, day } => {
                year.collect(out);
                month.collect(out);
                day.collect(out);
            }
        }
    }
}

impl fmt::Display for ReadExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadExpr::Column(name) => f.write_str(name),
            ReadExpr::Literal(value) => write!(f, "{value}"),
            ReadExpr::Coalesce(a, b) => write!(f, "coalesce({a}, {b})"),
            ReadExpr::DatePart { part, of } => write!(f, "{}({of})", part.as_str()),
            ReadExpr::MakeDate { year, month, day } => write!(f, "make_date({year}, {month}, {day})"),
        }
    }
}

/// The date of a `"YYYY-MM-DD"` value.
fn parse_date(value: &Value) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.as_str()?, "%Y-%m-%d").ok()
}

/// The `"YYYY-MM-DD"` date of three integer values, or null.
fn make_date([year, month, day]: [Value; 3]) -> Value {
    let part = |v: &Value| v.as_i64();
    let (Some(y), Some(m), Some(d)) = (part(&year), part(&month), part(&day)) else {
        return Value::Null;
    };
    let (Ok(y), Ok(m), Ok(d)) = (i32::try_from(y), u32::try_from(m), u32::try_from(d)) else {
        return Value::Null;
    };
    NaiveDate::from_ymd_opt(y, m, d).map_or(Value::Null, |date| date.format("%Y-%m-%d").to_string().into())
}

/// Error for a family that cannot be compiled, or a write a version cannot
/// translate.
#[derive(Debug, thiserror::Error)]
pub enum LensError {
    /// No version of the schema has the table.
    #[error("no version of schema {schema} has a table {table}")]
    UnknownTable {
        /// The schema.
        schema: String,
        /// The table.
        table: String,
    },
    /// The version is not known, or does not have the table.
    #[error("schema {schema} version {version} has no table {table}")]
    NotInVersion {
        /// The schema.
        schema: String,
        /// The version.
        version: u32,
        /// The table.
        table: String,
    },
    /// A version between the table's first and last is missing.
    #[error("schema {schema} version {version} is missing; version {next} needs it")]
    MissingVersion {
        /// The schema.
        schema: String,
        /// The missing version.
        version: u32,
        /// The version after it.
        next: u32,
    },
    /// The lens of a version does not fit the previous version.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A write names a column the version does not have.
    #[error("table {table} of version {version} has no column {column}")]
    UnknownColumn {
        /// The version.
        version: u32,
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A date value that is not a `"YYYY-MM-DD"` date had to be split.
    #[error("column {column}: {value} is not a date of the form \"YYYY-MM-DD\"")]
    InvalidDate {
        /// The column written.
        column: String,
        /// The value.
        value: Value,
    },
    /// A new set of definitions would store an existing column of a family
    /// elsewhere, or as another type.
    #[error("table {schema}.{table}: {reason}")]
    Unstable {
        /// The schema.
        schema: String,
        /// The table.
        table: String,
        /// What would move.
        reason: String,
    },
}

// ---- checking ----

/// Checks the `from_previous` lists of `def` on their own: version 1 has
/// none, each list names columns of its own table with the types the
/// operations need, and defaults fit their columns. The registry runs this
/// in [`super::registry::validate`]; [`check_lens`] checks the lists against
/// the previous version.
pub fn validate_ops(def: &SchemaDef, source: &str) -> Result<(), SchemaError> {
    for table in &def.tables {
        if table.from_previous.is_empty() {
            continue;
        }
        if def.version == 1 {
            return Err(invalid(
                Location::table(source, &table.name),
                "from_previous relates a table to the previous version of the schema, but this is \
                 version 1; remove it",
            ));
        }
        let mut named = BTreeSet::new();
        for op in &table.from_previous {
            for name in new_side(op) {
                let at = || Location::column(source, &table.name, name);
                let Some(column) = table.column(name) else {
                    return Err(invalid(
                        at(),
                        format!(
                            "{op} names column {name}, but table {} of version {} has no such column",
                            table.name, def.version
                        ),
                    ));
                };
                if !named.insert(name) {
                    return Err(invalid(
                        at(),
                        "more than one operation of from_previous names the column",
                    ));
                }
                match op {
                    LensOp::Split { .. } if column.ty != ColumnType::Integer => {
                        return Err(invalid(
                            at(),
                            format!(
                                "{op} splits a date into parts, which must be integer columns, not {}",
                                column.ty
                            ),
                        ));
                    }
                    LensOp::Merge { .. } if column.ty != ColumnType::Date => {
                        return Err(invalid(
                            at(),
                            format!(
                                "{op} merges parts into a date, so the column must be a date, not {}",
                                column.ty
                            ),
                        ));
                    }
                    LensOp::Add { default: None, .. } if !column.nullable => {
                        return Err(invalid(
                            at(),
                            "the column is added in this version and not nullable, but rows stored by \
                             earlier versions have no value for it: make it nullable or give the add \
                             operation a default",
                        ));
                    }
                    LensOp::Add {
                        default: Some(value), ..
                    } if !fits(column.ty, value) => {
                        return Err(invalid(
                            at(),
                            format!("the default {value} is not a value of type {}", column.ty),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// The columns of version N an operation names.
fn new_side(op: &LensOp) -> Vec<&str> {
    match op {
        LensOp::Rename { to, .. } => vec![to],
        LensOp::Split { into, .. } => into.names().to_vec(),
        LensOp::Merge { into, .. } => vec![into],
        LensOp::Add { add, .. } => vec![add],
        LensOp::Drop { .. } => Vec::new(),
    }
}

/// The columns of version N−1 an operation names.
fn old_side(op: &LensOp) -> Vec<&str> {
    match op {
        LensOp::Rename { rename, .. } => vec![rename],
        LensOp::Split { split, .. } => vec![split],
        LensOp::Merge { merge, .. } => merge.names().to_vec(),
        LensOp::Add { .. } => Vec::new(),
        LensOp::Drop { drop } => vec![drop],
    }
}

/// Whether `value` is a JSON value of a column of type `ty` (not null).
fn fits(ty: ColumnType, value: &Value) -> bool {
    match (ty, value) {
        (_, Value::Null) => false,
        (ColumnType::Json, _) => true,
        (ColumnType::Text, Value::String(_)) | (ColumnType::Boolean, Value::Bool(_)) => true,
        (ColumnType::Integer, v) => v.as_i64().is_some(),
        (ColumnType::Float, Value::Number(_)) => true,
        (ColumnType::Date, v) => parse_date(v).is_some(),
        (ColumnType::Timestamp, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        (ColumnType::Bytes, Value::String(s)) => {
            s.len() % 4 == 0
                && s.trim_end_matches('=')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        }
        (ColumnType::Uuid, Value::String(s)) => {
            s.len() == 36
                && s.char_indices().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_hexdigit(),
                })
        }
        (ColumnType::Vector(n), Value::Array(items)) => {
            items.len() == n as usize && items.iter().all(|v| matches!(v, Value::Number(_)))
        }
        _ => false,
    }
}

/// Checks the `from_previous` lists of version `next` against version
/// `prev` (its version must be `next`'s minus one). For every table of both
/// versions, every column of each is accounted for exactly once: by an
/// operation, or carried over with the same name, type, nullability and
/// reference. A table of `next` that `prev` does not have is new and has no
/// list. `source` names where `next` came from, for messages.
pub fn check_lens(prev: &SchemaDef, next: &SchemaDef, source: &str) -> Result<(), SchemaError> {
    if prev.name != next.name || prev.version.checked_add(1) != Some(next.version) {
        return Err(invalid(
            Location::new(source),
            format!(
                "schema {} version {} cannot follow schema {} version {}",
                next.name, next.version, prev.name, prev.version
            ),
        ));
    }
    validate_ops(next, source)?;
    for table in &next.tables {
        match prev.table(&table.name) {
            Some(old) => check_table_lens(old, table, prev.version, source)?,
            None if !table.from_previous.is_empty() => {
                return Err(invalid(
                    Location::table(source, &table.name),
                    format!(
                        "the table is new in version {} (version {} has no table {}), so it has no \
                         from_previous",
                        next.version, prev.version, table.name
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(())
}

fn check_table_lens(old: &TableDef, new: &TableDef, prev_version: u32, source: &str) -> Result<(), SchemaError> {
    let version = prev_version + 1;
    let at = |column: &str| Location::column(source, &new.name, column);
    let old_column = |op: &LensOp, name: &str| {
        old.column(name).ok_or_else(|| {
            invalid(
                at(name),
                format!(
                    "{op} names column {name} of version {prev_version}, but table {} of version \
                     {prev_version} has no such column",
                    old.name
                ),
            )
        })
    };
    let new_column = |name: &str| {
        new.column(name)
            .expect("validate_ops checked the columns of this version")
    };
    let mut old_used = BTreeSet::new();
    let mut new_used = BTreeSet::new();
    for op in &new.from_previous {
        for name in old_side(op) {
            old_column(op, name)?;
            if !old_used.insert(name) {
                return Err(invalid(
                    at(name),
                    format!("more than one operation of from_previous names column {name} of version {prev_version}"),
                ));
            }
        }
        for name in new_side(op) {
            if !new_used.insert(name) {
                return Err(invalid(
                    at(name),
                    "more than one operation of from_previous names the column",
                ));
            }
        }
        match op {
            LensOp::Rename { rename, to } => {
                same_column(
                    old_column(op, rename)?,
                    new_column(to),
                    prev_version,
                    source,
                    &new.name,
                    Some(op),
                )?;
            }
            LensOp::Split { split, into } => {
                let date = old_column(op, split)?;
                let parts: Vec<&ColumnDef> = into.names().into_iter().map(new_column).collect();
                date_and_parts(op, date, &parts, prev_version, at(split))?;
            }
            LensOp::Merge { merge, into } => {
                let parts = merge
                    .names()
                    .into_iter()
                    .map(|p| old_column(op, p))
                    .collect::<Result<Vec<_>, _>>()?;
                date_and_parts(op, new_column(into), &parts, prev_version, at(into))?;
            }
            LensOp::Add { .. } => {}
            LensOp::Drop { drop } => {
                if !old_column(op, drop)?.nullable {
                    return Err(invalid(
                        at(drop),
                        format!(
                            "{op} drops a column that is not nullable in version {prev_version}: rows \
                             written by version {version} would have no value for it"
                        ),
                    ));
                }
            }
        }
    }
    for column in &new.columns {
        if new_used.contains(column.name.as_str()) {
            continue;
        }
        let here = || at(&column.name);
        let Some(previous) = old.column(&column.name) else {
            return Err(invalid(
                here(),
                format!(
                    "the column is not in version {prev_version}: say where it comes from in \
                     from_previous, for example {{\"add\": \"{0}\"}} or {{\"rename\": \"…\", \"to\": \"{0}\"}}",
                    column.name
                ),
            ));
        };
        if old_used.contains(column.name.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "column {} of version {prev_version} is used by another operation of \
                     from_previous, so this column needs its own, such as {{\"add\": \"{}\"}}",
                    column.name, column.name
                ),
            ));
        }
        same_column(previous, column, prev_version, source, &new.name, None)?;
        old_used.insert(&previous.name);
    }
    for column in &old.columns {
        if !old_used.contains(column.name.as_str()) {
            return Err(invalid(
                at(&column.name),
                format!(
                    "column {0} of version {prev_version} is not in version {version}: say what \
                     became of it in from_previous, for example {{\"drop\": \"{0}\"}} or \
                     {{\"rename\": \"{0}\", \"to\": \"…\"}}",
                    column.name
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `new` (of version `prev_version + 1`) holds what `old` holds:
/// the same type, nullability and reference.
fn same_column(
    old: &ColumnDef,
    new: &ColumnDef,
    prev_version: u32,
    source: &str,
    table: &str,
    op: Option<&LensOp>,
) -> Result<(), SchemaError> {
    let at = || Location::column(source, table, &new.name);
    let what = match op {
        Some(op) => format!("{op} renames a column, so both must be alike, but "),
        None => String::new(),
    };
    let fix = match op {
        Some(_) => String::new(),
        None => format!(
            "; a change needs an operation in from_previous, such as {{\"drop\": \"{0}\"}} and \
             {{\"add\": \"{0}\"}} for a new column of the same name",
            old.name
        ),
    };
    if old.ty != new.ty {
        return Err(invalid(
            at(),
            format!(
                "{what}the type changed from {} in version {prev_version} to {}{fix}",
                old.ty, new.ty
            ),
        ));
    }
    if old.nullable != new.nullable {
        let (was, is) = if old.nullable {
            ("nullable", "not nullable")
        } else {
            ("not nullable", "nullable")
        };
        return Err(invalid(
            at(),
            format!("{what}the column was {was} in version {prev_version} and is now {is}{fix}"),
        ));
    }
    if old.references != new.references {
        let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "nothing".into());
        return Err(invalid(
            at(),
            format!(
                "{what}the reference changed from {} in version {prev_version} to {}{fix}",
                show(&old.references),
                show(&new.references)
            ),
        ));
    }
    Ok(())
}

/// Checks a split or merge: a date and three integer parts, all four of the
/// same nullability (a write of either side must give the other a value).
fn date_and_parts(
    op: &LensOp,
    date: &ColumnDef,
    parts: &[&ColumnDef],
    prev_version: u32,
    at: Location,
) -> Result<(), SchemaError> {
    if date.ty != ColumnType::Date {
        return Err(invalid(
            at,
            format!("{op} needs column {} to be a date, but it is {}", date.name, date.ty),
        ));
    }
    if let Some(part) = parts.iter().find(|p| p.ty != ColumnType::Integer) {
        return Err(invalid(
            at,
            format!(
                "{op} needs column {} to be an integer, but it is {}",
                part.name, part.ty
            ),
        ));
    }
    let mismatched: Vec<&str> = parts
        .iter()
        .filter(|p| p.nullable != date.nullable)
        .map(|p| p.name.as_str())
        .collect();
    if !mismatched.is_empty() {
        let (is, isnt) = if date.nullable {
            ("nullable", "not nullable")
        } else {
            ("not nullable", "nullable")
        };
        return Err(invalid(
            at,
            format!(
                "{op}: the date {} is {is} but {} {} {isnt}; the date and its parts must all be \
                 nullable or all not nullable (versions {prev_version} and {})",
                date.name,
                mismatched.join(", "),
                if mismatched.len() == 1 { "is" } else { "are" },
                prev_version + 1
            ),
        ));
    }
    Ok(())
}

// ---- compiling ----

/// How a column of one version of a family relates to the version before.
#[derive(Clone, Debug)]
enum Link {
    /// Stored in its own physical column: a column of the table's first
    /// version, or one added by `add`.
    Own { phys: String, default: Option<Value> },
    /// The same value as column `prev` of the version before (carried over
    /// or renamed).
    Same { prev: String },
    /// Part `part` of date `source` of the version before, also stored in
    /// physical column `phys`. `group` is the three part columns of this
    /// version, year first.
    SplitPart {
        source: String,
        part: DatePart,
        group: [String; 3],
        phys: String,
    },
    /// The date of the three integer columns `parts` of the version before
    /// (year first). Not stored: the parts hold it.
    Merged { parts: [String; 3] },
}

/// One version of a family.
#[derive(Debug)]
struct Level {
    version: u32,
    table: TableDef,
    /// Per column of `table`, in order.
    links: Vec<Link>,
    /// Per column of `table`, in order.
    reads: Vec<ReadExpr>,
}

impl Level {
    fn index(&self, column: &str) -> Option<usize> {
        self.table.columns.iter().position(|c| c.name == column)
    }

    fn read(&self, column: &str) -> &ReadExpr {
        &self.reads[self.index(column).expect("a column of the level")]
    }
}

/// Where a physical column comes from: the version that introduced it, and
/// its name there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The version.
    pub version: u32,
    /// The column's name in that version.
    pub column: String,
}

#[derive(Debug)]
struct FamilyInner {
    schema: String,
    physical: TableDef,
    origins: Vec<Origin>,
    levels: Vec<Level>,
}

/// The versions of one table of a schema that share one set of stored rows,
/// compiled: the physical table and one [`VersionView`] per version.
#[derive(Clone, Debug)]
pub struct TableFamily(Arc<FamilyInner>);

impl TableFamily {
    /// Compiles the family of table `table` of schema `schema` from every
    /// version of the schema in `registry` that has the table. The versions
    /// must follow each other with no gap, and their lenses must be valid
    /// (the registry checks them when it takes each version).
    pub fn build(registry: &SchemaRegistry, schema: &str, table: &str) -> Result<Self, LensError> {
        let versions: Vec<_> = registry.versions(schema).filter(|s| s.table(table).is_some()).collect();
        let Some(first) = versions.first() else {
            return Err(LensError::UnknownTable {
                schema: schema.into(),
                table: table.into(),
            });
        };
        if first.version > 1 && registry.get(schema, first.version - 1).is_none() {
            return Err(LensError::MissingVersion {
                schema: schema.into(),
                version: first.version - 1,
                next: first.version,
            });
        }
        for (expected, def) in (first.version..).zip(&versions) {
            if def.version != expected {
                return Err(LensError::MissingVersion {
                    schema: schema.into(),
                    version: expected,
                    next: def.version,
                });
            }
        }
        for pair in versions.windows(2) {
            check_lens(
                pair[0],
                pair[1],
                &format!("schema {schema} version {}", pair[1].version),
            )?;
        }
        let defs: Vec<&TableDef> = versions.iter().map(|s| s.table(table).expect("filtered")).collect();
        Ok(Self::compile(schema, first.version, &defs))
    }

    fn compile(schema: &str, first_version: u32, defs: &[&TableDef]) -> Self {
        let mut physical: Vec<ColumnDef> = Vec::new();
        let mut origins: Vec<Origin> = Vec::new();
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut levels: Vec<Level> = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            let version = first_version + i as u32;
            let mut new_phys = |column: &ColumnDef, nullable: bool| -> String {
                let mut name = column.name.clone();
                if taken.contains(&name) {
                    name = format!("{}_v{version}", column.name);
                    let mut n = 2;
                    while taken.contains(&name) {
                        name = format!("{}_v{version}_{n}", column.name);
                        n += 1;
                    }
                }
                taken.insert(name.clone());
                physical.push(ColumnDef {
                    name: name.clone(),
                    nullable,
                    ..column.clone()
                });
                origins.push(Origin {
                    version,
                    column: column.name.clone(),
                });
                name
            };
            let mut links = Vec::with_capacity(def.columns.len());
            for column in &def.columns {
                let link = if i == 0 {
                    Link::Own {
                        phys: new_phys(column, column.nullable),
                        default: None,
                    }
                } else {
                    let op = def
                        .from_previous
                        .iter()
                        .find(|op| new_side(op).contains(&column.name.as_str()));
                    match op {
                        None => Link::Same {
                            prev: column.name.clone(),
                        },
                        Some(LensOp::Rename { rename, .. }) => Link::Same { prev: rename.clone() },
                        Some(LensOp::Add { default, .. }) => Link::Own {
                            phys: new_phys(column, true),
                            default: default.clone(),
                        },
                        Some(LensOp::Split { split, into }) => {
                            let names = into.names();
                            let at = names.iter().position(|n| *n == column.name).expect("named");
                            Link::SplitPart {
                                source: split.clone(),
                                part: DatePart::ALL[at],
                                group: names.map(str::to_owned),
                                phys: new_phys(column, true),
                            }
                        }
                        Some(LensOp::Merge { merge, .. }) => Link::Merged {
                            parts: merge.names().map(str::to_owned),
                        },
                        Some(LensOp::Drop { .. }) => unreachable!("a drop names no column of the new version"),
                    }
                };
                links.push(link);
            }
            let reads = links
                .iter()
                .map(|link| match link {
                    Link::Own { phys, default: None } => ReadExpr::Column(phys.clone()),
                    Link::Own {
                        phys,
                        default: Some(value),
                    } => ReadExpr::Coalesce(
                        Box::new(ReadExpr::Column(phys.clone())),
                        Box::new(ReadExpr::Literal(value.clone())),
                    ),
                    Link::Same { prev } => levels[i - 1].read(prev).clone(),
                    Link::SplitPart { source, part, phys, .. } => ReadExpr::Coalesce(
                        Box::new(ReadExpr::Column(phys.clone())),
                        Box::new(ReadExpr::DatePart {
                            part: *part,
                            of: Box::new(levels[i - 1].read(source).clone()),
                        }),
                    ),
                    Link::Merged { parts } => {
                        let read = |p: &String| Box::new(levels[i - 1].read(p).clone());
                        ReadExpr::MakeDate {
                            year: read(&parts[0]),
                            month: read(&parts[1]),
                            day: read(&parts[2]),
                        }
                    }
                })
                .collect();
            levels.push(Level {
                version,
                table: (*def).clone(),
                links,
                reads,
            });
        }
        let last = defs.last().expect("a family has a version");
        Self(Arc::new(FamilyInner {
            schema: schema.to_owned(),
            physical: TableDef {
                name: last.name.clone(),
                description: last.description.clone(),
                from_previous: Vec::new(),
                columns: physical,
            },
            origins,
            levels,
        }))
    }

    /// The physical table: every stored column of the family, in the order
    /// the versions introduced them. Columns of the table's first version
    /// keep their name and nullability; columns introduced later are
    /// nullable (rows written before have no value for them) and keep the
    /// type, description, label and reference of the column that introduced
    /// them. The table's description is the newest version's.
    pub fn physical(&self) -> &TableDef {
        &self.0.physical
    }

    /// Where physical column `phys` comes from.
    pub fn origin(&self, phys: &str) -> Option<&Origin> {
        let at = self.0.physical.columns.iter().position(|c| c.name == phys)?;
        Some(&self.0.origins[at])
    }

    /// The versions of the family, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.levels.iter().map(|l| l.version)
    }

    /// The view of version `version`.
    pub fn view(&self, version: u32) -> Result<VersionView, LensError> {
        let level = self
            .0
            .levels
            .iter()
            .position(|l| l.version == version)
            .ok_or_else(|| LensError::NotInVersion {
                schema: self.0.schema.clone(),
                version,
                table: self.0.physical.name.clone(),
            })?;
        let mut view = VersionView {
            family: self.0.clone(),
            level,
            writes: BTreeMap::new(),
            needs_current: BTreeSet::new(),
        };
        for column in &self.0.levels[level].table.columns {
            let probe = Map::from_iter([(column.name.clone(), Value::Null)]);
            let (out, consulted) = view.write(&probe, None).expect("null is written to any column");
            view.writes
                .insert(column.name.clone(), out.into_iter().map(|(k, _)| k).collect());
            if consulted {
                view.needs_current.insert(column.name.clone());
            }
        }
        Ok(view)
    }
}

/// Checks that the families of schema `schema` keep their stored columns
/// from the definitions of `old` to those of `new`: every physical column of
/// `old` is in `new` under the same name, with the same type, and comes from
/// the same column of the same version. Additive changes of each version
/// ([`super::registry::check_evolution`]) do not ensure it alone: a column
/// added to an older version can take a physical name that a newer version
/// used. Run it whenever stored definitions are replaced; families that do
/// not compile in `old` are skipped.
pub fn check_stable(old: &SchemaRegistry, new: &SchemaRegistry, schema: &str) -> Result<(), LensError> {
    let tables: BTreeSet<&str> = old
        .versions(schema)
        .flat_map(|s| s.tables.iter().map(|t| t.name.as_str()))
        .collect();
    for table in tables {
        let Ok(before) = TableFamily::build(old, schema, table) else {
            continue;
        };
        let after = TableFamily::build(new, schema, table)?;
        let unstable = |reason: String| LensError::Unstable {
            schema: schema.to_owned(),
            table: table.to_owned(),
            reason,
        };
        for column in &before.physical().columns {
            let origin = before.origin(&column.name).expect("a physical column");
            let Some(now) = after.physical().column(&column.name) else {
                return Err(unstable(format!(
                    "the stored column {} (column {} of version {}) would no longer be stored",
                    column.name, origin.column, origin.version
                )));
            };
            let now_origin = after.origin(&column.name).expect("a physical column");
            if now.ty != column.ty || now_origin != origin {
                return Err(unstable(format!(
                    "the stored column {} holds column {} of version {} ({}), and would hold column {} \
                     of version {} ({}); change the newer version's column name",
                    column.name,
                    origin.column,
                    origin.version,
                    column.ty,
                    now_origin.column,
                    now_origin.version,
                    now.ty
                )));
            }
        }
    }
    Ok(())
}

/// The physical table of the family of `table` of schema `schema`, see
/// [`TableFamily::physical`].
pub fn family_table(registry: &SchemaRegistry, schema: &str, table: &str) -> Result<TableDef, LensError> {
    Ok(TableFamily::build(registry, schema, table)?.physical().clone())
}

/// The view of `table` of schema `schema` as version `version` has it, see
/// [`TableFamily::view`].
pub fn version_view(
    registry: &SchemaRegistry,
    schema: &str,
    version: u32,
    table: &str,
) -> Result<VersionView, LensError> {
    TableFamily::build(registry, schema, table)?.view(version)
}

/// One version's view of a family's rows: how each of its columns reads
/// from the physical columns, and how its writes become physical values.
#[derive(Clone, Debug)]
pub struct VersionView {
    family: Arc<FamilyInner>,
    level: usize,
    /// Per column of the version: the physical columns a write of it sets.
    writes: BTreeMap<String, Vec<String>>,
    /// The columns whose patch needs the row's current values.
    needs_current: BTreeSet<String>,
}

impl VersionView {
    fn here(&self) -> &Level {
        &self.family.levels[self.level]
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.here().version
    }

    /// The table as this version defines it.
    pub fn table(&self) -> &TableDef {
        &self.here().table
    }

    /// The physical table of the family.
    pub fn physical(&self) -> &TableDef {
        &self.family.physical
    }

    /// The columns of the version, in its order, each with how it reads.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &ReadExpr)> + '_ {
        let here = self.here();
        here.table.columns.iter().map(|c| c.name.as_str()).zip(&here.reads)
    }

    /// How column `column` of the version reads.
    pub fn read_expr(&self, column: &str) -> Option<&ReadExpr> {
        let here = self.here();
        here.index(column).map(|i| &here.reads[i])
    }

    /// The physical column that column `column` of the version is, when it
    /// is exactly one (no default, no derivation): filters and column grants
    /// on it can use the physical column directly.
    pub fn physical_column(&self, column: &str) -> Option<&str> {
        match self.read_expr(column)? {
            ReadExpr::Column(phys) => Some(phys),
            _ => None,
        }
    }

    /// The columns of the version whose value depends on physical column
    /// `phys`, in the version's order: what a change of `phys` changes for
    /// this version.
    pub fn columns_fed_by<'a>(&'a self, phys: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.columns()
            .filter(move |(_, read)| read.physical_columns().contains(phys))
            .map(|(name, _)| name)
    }

    /// The physical columns a write of column `column` of the version sets
    /// (for example a version 1 write of a date also sets the parts a later
    /// version split it into).
    pub fn physical_written_by(&self, column: &str) -> Option<&[String]> {
        self.writes.get(column).map(Vec::as_slice)
    }

    /// Whether [`write_patch`](Self::write_patch) of `patch` needs the row's
    /// current values (it writes part of a split or merged date). When it
    /// does not, an empty map may be passed as the current row.
    pub fn needs_current(&self, patch: &Map<String, Value>) -> bool {
        patch.keys().any(|k| self.needs_current.contains(k))
    }

    /// The row as the version sees it: the system columns of `physical`
    /// unchanged, then every column of the version (null when it has no
    /// value).
    pub fn read_row(&self, physical: &Map<String, Value>) -> Map<String, Value> {
        let mut row = Map::new();
        for name in SYSTEM_COLUMNS {
            if let Some(value) = physical.get(name) {
                row.insert(name.to_owned(), value.clone());
            }
        }
        for (name, read) in self.columns() {
            row.insert(name.to_owned(), read.eval(physical));
        }
        row
    }

    /// The physical values of a new row written by the version: every
    /// column of the version is written, those absent from `values` as null.
    /// The physical columns that no column of the version reaches are left
    /// out (the row has no value for them). System columns pass through.
    pub fn write_row(&self, values: &Map<String, Value>) -> Result<Map<String, Value>, LensError> {
        self.replace_row(&Map::new(), values)
    }

    /// The physical values that replace stored row `current` when the
    /// version writes it whole: as [`write_row`](Self::write_row), but what
    /// the version cannot see is kept. Physical columns the version does not
    /// reach are left out (the row keeps them), and a split date that the
    /// version sees only some parts of takes the others from `current`.
    pub fn replace_row(
        &self,
        current: &Map<String, Value>,
        values: &Map<String, Value>,
    ) -> Result<Map<String, Value>, LensError> {
        self.check_columns(values)?;
        let mut all = values.clone();
        for column in &self.here().table.columns {
            all.entry(column.name.clone()).or_insert(Value::Null);
        }
        Ok(self.write(&all, Some(current))?.0)
    }

    /// The physical values a patch of the version sets: the columns of
    /// `patch`, and every physical column derived from them. `current` is
    /// the row's physical values before the patch; it is read only when the
    /// patch writes part of a split or merged date (see
    /// [`needs_current`](Self::needs_current)), to recompute the other side
    /// from all the parts. System columns pass through.
    pub fn write_patch(
        &self,
        current: &Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Map<String, Value>, LensError> {
        self.check_columns(patch)?;
        Ok(self.write(patch, Some(current))?.0)
    }

    fn check_columns(&self, values: &Map<String, Value>) -> Result<(), LensError> {
        let here = self.here();
        match values
            .keys()
            .find(|k| !SYSTEM_COLUMNS.contains(&k.as_str()) && here.index(k).is_none())
        {
            Some(column) => Err(LensError::UnknownColumn {
                version: here.version,
                table: here.table.name.clone(),
                column: column.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Translates the values written at this view's version into physical
    /// values: down through the older versions (to the physical columns
    /// they own), and up through the newer ones (to the parts of split
    /// dates they store). Also says whether a current value was needed.
    fn write(
        &self,
        written: &Map<String, Value>,
        current: Option<&Map<String, Value>>,
    ) -> Result<(Map<String, Value>, bool), LensError> {
        let levels = &self.family.levels;
        let empty = Map::new();
        let mut consulted = false;
        let mut current_value = |level: &Level, column: &str| {
            consulted = true;
            level.read(column).eval(current.unwrap_or(&empty))
        };
        let mut out = Map::new();
        let mut user = Map::new();
        for (name, value) in written {
            if SYSTEM_COLUMNS.contains(&name.as_str()) {
                out.insert(name.clone(), value.clone());
            } else {
                user.insert(name.clone(), value.clone());
            }
        }
        // Down: from this version to the oldest.
        let mut values = user.clone();
        for k in (0..=self.level).rev() {
            let level = &levels[k];
            let mut below = Map::new();
            let mut split_done = BTreeSet::new();
            for (column, link) in level.table.columns.iter().zip(&level.links) {
                let value = values.get(&column.name);
                match link {
                    Link::Own { phys, .. } => {
                        if let Some(v) = value {
                            out.insert(phys.clone(), v.clone());
                        }
                    }
                    Link::Same { prev } => {
                        if let Some(v) = value {
                            below.insert(prev.clone(), v.clone());
                        }
                    }
                    Link::Merged { parts } => {
                        if let Some(v) = value {
                            for (name, part) in parts.iter().zip(date_parts(&column.name, v)?) {
                                below.insert(name.clone(), part);
                            }
                        }
                    }
                    Link::SplitPart { source, group, .. } => {
                        if !group.iter().any(|g| values.contains_key(g)) || !split_done.insert(source) {
                            continue;
                        }
                        let parts = group.clone().map(|g| match values.get(&g) {
                            Some(v) => v.clone(),
                            None => current_value(level, &g),
                        });
                        for (name, part) in group.iter().zip(&parts) {
                            let i = level.index(name).expect("a column of the level");
                            if let Link::SplitPart { phys, .. } = &level.links[i] {
                                out.insert(phys.clone(), part.clone());
                            }
                        }
                        below.insert(source.clone(), make_date(parts));
                    }
                }
            }
            values = below;
        }
        // Up: from this version to the newest.
        let mut values = user;
        for k in self.level + 1..levels.len() {
            let (prev, level) = (&levels[k - 1], &levels[k]);
            let mut above = Map::new();
            for (column, link) in level.table.columns.iter().zip(&level.links) {
                match link {
                    Link::Own { .. } => {}
                    Link::Same { prev } => {
                        if let Some(v) = values.get(prev) {
                            above.insert(column.name.clone(), v.clone());
                        }
                    }
                    Link::SplitPart { source, part, phys, .. } => {
                        if let Some(v) = values.get(source) {
                            let i = part_index(*part);
                            let value = date_parts(source, v)?[i].clone();
                            out.insert(phys.clone(), value.clone());
                            above.insert(column.name.clone(), value);
                        }
                    }
                    Link::Merged { parts } => {
                        if parts.iter().any(|p| values.contains_key(p)) {
                            let parts = parts.clone().map(|p| match values.get(&p) {
                                Some(v) => v.clone(),
                                None => current_value(prev, &p),
                            });
                            above.insert(column.name.clone(), make_date(parts));
                        }
                    }
                }
            }
            values = above;
        }
        Ok((out, consulted))
    }
}

fn part_index(part: DatePart) -> usize {
    DatePart::ALL.iter().position(|p| *p == part).expect("one of the parts")
}

/// The year, month and day of date value `value` of column `column` (all
/// null for null).
fn date_parts(column: &str, value: &Value) -> Result<[Value; 3], LensError> {
    if value.is_null() {
        return Ok([Value::Null, Value::Null, Value::Null]);
    }
    let date = parse_date(value).ok_or_else(|| LensError::InvalidDate {
        column: column.to_owned(),
        value: value.clone(),
    })?;
    Ok(DatePart::ALL.map(|p| Value::from(p.of(date))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const V1: &str = "schemas/contacts.json";
    const V2: &str = "schemas/contacts_v2.json";
    const V3: &str = "schemas/contacts_v3.json";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// The built-in `contacts` version 1, as JSON.
    fn v1() -> Value {
        let registry = SchemaRegistry::builtin().expect("built-in schemas");
        serde_json::to_value(&*registry.get("contacts", 1).expect("contacts v1")).expect("json")
    }

    fn columns(v: &mut Value, table: usize) -> &mut Vec<Value> {
        v["tables"][table]["columns"].as_array_mut().expect("columns")
    }

    fn position(v: &Value, table: usize, name: &str) -> usize {
        v["tables"][table]["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .position(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// `contacts` version 2: `people` renames `display_name` to `name`,
    /// splits `birthday` into `birth_year`, `birth_month` and `birth_day`,
    /// drops `nickname` and adds `pronouns`. The other tables are unchanged.
    fn v2() -> Value {
        let mut v = v1();
        v["version"] = json!(2);
        let at = position(&v, 0, "display_name");
        columns(&mut v, 0)[at]["name"] = json!("name");
        let at = position(&v, 0, "nickname");
        columns(&mut v, 0).remove(at);
        let at = position(&v, 0, "birthday");
        let part = |name: &str, what: &str| {
            json!({"name": name, "type": "integer", "sensitive": "date of birth",
                   "description": format!("The {what} the person was born.")})
        };
        columns(&mut v, 0).splice(
            at..=at,
            [
                part("birth_year", "year"),
                part("birth_month", "month"),
                part("birth_day", "day of the month"),
            ],
        );
        columns(&mut v, 0).push(json!({"name": "pronouns", "type": "text",
            "description": "The pronouns the person uses."}));
        v["tables"][0]["from_previous"] = json!([
            {"rename": "display_name", "to": "name"},
            {"split": "birthday", "into": {"year": "birth_year", "month": "birth_month", "day": "birth_day"}},
            {"drop": "nickname"},
            {"add": "pronouns"}
        ]);
        v
    }

    /// `contacts` version 3: `people` renames `name` to `full_name`, merges
    /// the birth parts back into a date `born`, and adds `language`, which
    /// reads "en" when no value is stored.
    fn v3() -> Value {
        let mut v = v2();
        v["version"] = json!(3);
        let at = position(&v, 0, "name");
        columns(&mut v, 0)[at]["name"] = json!("full_name");
        let at = position(&v, 0, "birth_year");
        columns(&mut v, 0).splice(
            at..at + 3,
            [json!({"name": "born", "type": "date", "sensitive": "date of birth",
                    "description": "The person's birthday."})],
        );
        columns(&mut v, 0).push(json!({"name": "language", "type": "text", "nullable": false,
            "description": "The language you write to the person in."}));
        v["tables"][0]["from_previous"] = json!([
            {"rename": "name", "to": "full_name"},
            {"merge": {"year": "birth_year", "month": "birth_month", "day": "birth_day"}, "into": "born"},
            {"add": "language", "default": "en"}
        ]);
        v
    }

    fn def(v: Value) -> SchemaDef {
        serde_json::from_value(v).expect("test definition has the file format's shape")
    }

    fn registry(versions: &[(Value, &str)]) -> Result<SchemaRegistry, SchemaError> {
        let mut registry = SchemaRegistry::builtin().expect("built-in schemas");
        for (v, source) in versions {
            registry.insert(def(v.clone()), source)?;
        }
        Ok(registry)
    }

    fn family(versions: &[(Value, &str)]) -> TableFamily {
        let registry = registry(versions).expect("valid versions");
        TableFamily::build(&registry, "contacts", "people").expect("family")
    }

    fn people() -> TableFamily {
        family(&[(v2(), V2)])
    }

    fn assert_contains(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "{message:?} should contain {part:?}");
        }
    }

    /// Applies a patch of `view` to a stored row, as storage would.
    fn patch(view: &VersionView, stored: &mut Map<String, Value>, patch: Value) {
        let values = view.write_patch(stored, &obj(patch)).expect("patch");
        stored.extend(values);
    }

    /// Applies physical values to a stored row, as storage would.
    fn apply(row: &mut Map<String, Value>, values: Map<String, Value>) {
        row.extend(values);
    }

    // ---- the worked example ----

    #[test]
    fn family_table_has_v1_names_then_the_columns_v2_introduced() {
        let registry = registry(&[(v2(), V2)]).expect("v2 is valid");
        let table = family_table(&registry, "contacts", "people").expect("family");
        let v1 = registry.get("contacts", 1).expect("v1");
        let v1_people = v1.table("people").expect("people");
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let mut expected: Vec<&str> = v1_people.columns.iter().map(|c| c.name.as_str()).collect();
        expected.extend(["birth_year", "birth_month", "birth_day", "pronouns"]);
        assert_eq!(names, expected);
        for column in &v1_people.columns {
            assert_eq!(table.column(&column.name), Some(column), "{}", column.name);
        }
        for name in ["birth_year", "birth_month", "birth_day", "pronouns"] {
            assert!(table.column(name).expect(name).nullable, "{name}");
        }
        assert_eq!(table.column("birth_month").expect("column").ty, ColumnType::Integer);
        let family = TableFamily::build(&registry, "contacts", "people").expect("family");
        assert_eq!(family.versions().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            family.origin("pronouns"),
            Some(&Origin {
                version: 2,
                column: "pronouns".into()
            })
        );
        // Tables the lens does not mention are one family too.
        let groups = family_table(&registry, "contacts", "groups").expect("groups");
        assert_eq!(groups.columns, v1.table("groups").expect("groups").columns);
    }

    #[test]
    fn read_expressions_of_v2() {
        let v2 = people().view(2).expect("v2");
        let shown: Vec<(&str, String)> = v2.columns().map(|(c, e)| (c, e.to_string())).collect();
        assert_eq!(shown[0], ("name", "display_name".to_owned()));
        let read = |c: &str| v2.read_expr(c).expect(c).to_string();
        assert_eq!(read("birth_year"), "coalesce(birth_year, year(birthday))");
        assert_eq!(read("birth_month"), "coalesce(birth_month, month(birthday))");
        assert_eq!(read("pronouns"), "pronouns");
        assert_eq!(v2.physical_column("name"), Some("display_name"));
        assert_eq!(v2.physical_column("notes"), Some("notes"));
        assert_eq!(v2.physical_column("birth_day"), None);
        assert_eq!(v2.physical_column("nickname"), None);
        let fed: Vec<&str> = v2.columns_fed_by("birthday").collect();
        assert_eq!(fed, ["birth_year", "birth_month", "birth_day"]);
        assert_eq!(v2.columns_fed_by("display_name").collect::<Vec<_>>(), ["name"]);
        assert_eq!(v2.columns_fed_by("nickname").count(), 0);
        assert_eq!(
            v2.physical_written_by("birth_month").expect("column"),
            ["birth_day", "birth_month", "birth_year", "birthday"]
        );
        assert_eq!(v2.physical_written_by("name").expect("column"), ["display_name"]);
        assert!(v2.needs_current(&obj(json!({"birth_month": 5}))));
        assert!(!v2.needs_current(&obj(json!({"notes": "x", "name": "Ada"}))));

        let v1 = people().view(1).expect("v1");
        assert_eq!(v1.physical_column("birthday"), Some("birthday"));
        assert_eq!(v1.physical_column("nickname"), Some("nickname"));
        assert_eq!(
            v1.physical_written_by("birthday").expect("column"),
            ["birth_day", "birth_month", "birth_year", "birthday"]
        );
        assert!(!v1.needs_current(&obj(json!({"birthday": null}))));
    }

    #[test]
    fn v1_write_is_read_by_v2() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let physical = v1
            .write_row(&obj(json!({
                "id": "p1", "display_name": "Ada Lovelace", "nickname": "Ada",
                "birthday": "1815-12-10", "notes": "Met at the salon."
            })))
            .expect("write");
        assert_eq!(physical["id"], "p1");
        assert_eq!(physical["display_name"], "Ada Lovelace");
        assert_eq!(physical["birthday"], "1815-12-10");
        assert_eq!(physical["birth_year"], 1815);
        assert_eq!(physical["birth_month"], 12);
        assert_eq!(physical["birth_day"], 10);
        assert!(!physical.contains_key("pronouns"), "v1 cannot reach pronouns");

        let row = v2.read_row(&physical);
        assert_eq!(row["id"], "p1");
        assert_eq!(row["name"], "Ada Lovelace");
        assert_eq!(row["birth_year"], 1815);
        assert_eq!(row["birth_month"], 12);
        assert_eq!(row["birth_day"], 10);
        assert_eq!(row["notes"], "Met at the salon.");
        assert_eq!(row["pronouns"], Value::Null);
        assert_eq!(row["email"], Value::Null);
        assert!(!row.contains_key("nickname"));
        assert!(!row.contains_key("display_name"));
        assert!(!row.contains_key("birthday"));
        let expected: BTreeSet<&str> = v2
            .table()
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .chain(["id"])
            .collect();
        assert_eq!(row.keys().map(String::as_str).collect::<BTreeSet<_>>(), expected);
    }

    #[test]
    fn v2_write_is_read_by_v1() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let physical = v2
            .write_row(&obj(json!({
                "id": "p2", "name": "Grace Hopper", "birth_year": 1906, "birth_month": 12,
                "birth_day": 9, "pronouns": "she/her", "_seq": 7
            })))
            .expect("write");
        assert_eq!(physical["display_name"], "Grace Hopper");
        assert_eq!(physical["birthday"], "1906-12-09");
        assert_eq!(physical["pronouns"], "she/her");
        assert_eq!(physical["_seq"], 7);
        assert!(!physical.contains_key("nickname"), "v2 cannot reach nickname");
        assert_eq!(
            physical["notes"],
            Value::Null,
            "a whole row writes every column of its version"
        );

        let row = v1.read_row(&physical);
        assert_eq!(row["display_name"], "Grace Hopper");
        assert_eq!(row["birthday"], "1906-12-09");
        assert_eq!(row["nickname"], Value::Null);
        assert_eq!(row["_seq"], 7);
        assert!(!row.contains_key("pronouns"));
        assert!(!row.contains_key("birth_month"));
        // And v2 reads back what it wrote.
        let back = v2.read_row(&physical);
        assert_eq!(back["birth_month"], 12);
        assert_eq!(back["pronouns"], "she/her");
    }

    #[test]
    fn v1_patch_of_notes_keeps_v2_only_data() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let mut stored = v2
            .write_row(&obj(
                json!({"name": "Grace", "birth_month": 12, "birth_day": 9, "pronouns": "she/her"}),
            ))
            .expect("write");
        let patch = obj(json!({"notes": "Admiral."}));
        assert!(!v1.needs_current(&patch));
        let values = v1.write_patch(&Map::new(), &patch).expect("patch");
        assert_eq!(values, obj(json!({"notes": "Admiral."})));
        apply(&mut stored, values);
        let row = v2.read_row(&stored);
        assert_eq!(row["notes"], "Admiral.");
        assert_eq!(row["pronouns"], "she/her");
        assert_eq!(row["birth_month"], 12);
        assert_eq!(row["birth_day"], 9);
        assert_eq!(row["birth_year"], Value::Null);
        // A v2 patch keeps what only v1 sees.
        apply(
            &mut stored,
            v1.write_patch(&Map::new(), &obj(json!({"nickname": "Amazing Grace"})))
                .expect("patch"),
        );
        let values = v2
            .write_patch(&stored, &obj(json!({"name": "Grace Hopper"})))
            .expect("patch");
        assert_eq!(values, obj(json!({"display_name": "Grace Hopper"})));
        apply(&mut stored, values);
        assert_eq!(v1.read_row(&stored)["nickname"], "Amazing Grace");
    }

    #[test]
    fn v2_month_and_day_without_year() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let physical = v2
            .write_row(&obj(json!({"name": "Someone", "birth_month": 2, "birth_day": 29})))
            .expect("write");
        assert_eq!(physical["birthday"], Value::Null);
        assert_eq!(v1.read_row(&physical)["birthday"], Value::Null);
        let row = v2.read_row(&physical);
        assert_eq!(row["birth_year"], Value::Null);
        assert_eq!(row["birth_month"], 2);
        assert_eq!(row["birth_day"], 29);

        // The year comes later, by a patch: the date is made from all parts.
        let mut stored = physical;
        let patch = obj(json!({"birth_year": 1996}));
        assert!(v2.needs_current(&patch));
        let values = v2.write_patch(&stored, &patch).expect("patch");
        assert_eq!(values["birthday"], "1996-02-29");
        assert_eq!(values["birth_month"], 2);
        apply(&mut stored, values);
        assert_eq!(v1.read_row(&stored)["birthday"], "1996-02-29");
    }

    #[test]
    fn rows_stored_before_v2_read_in_v2() {
        let family = people();
        let v2 = family.view(2).expect("v2");
        // Written by a v1 app before v2 existed: no parts are stored.
        let mut stored = obj(json!({"id": "old", "display_name": "Alan", "birthday": "1912-06-23", "nickname": "Al"}));
        let row = v2.read_row(&stored);
        assert_eq!(row["name"], "Alan");
        assert_eq!(row["birth_year"], 1912);
        assert_eq!(row["birth_month"], 6);
        assert_eq!(row["birth_day"], 23);
        assert_eq!(row["pronouns"], Value::Null);

        // A v2 patch of one part takes the others from the stored date.
        let values = v2.write_patch(&stored, &obj(json!({"birth_day": 24}))).expect("patch");
        assert_eq!(
            values,
            obj(json!({"birth_year": 1912, "birth_month": 6, "birth_day": 24, "birthday": "1912-06-24"}))
        );
        apply(&mut stored, values);
        assert_eq!(family.view(1).expect("v1").read_row(&stored)["birthday"], "1912-06-24");
        assert_eq!(v2.read_row(&stored)["birth_day"], 24);
    }

    #[test]
    fn parts_that_are_no_date_keep_the_parts_and_null_the_date() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        for (month, day) in [(13, 1), (2, 30), (0, 1)] {
            let physical = v2
                .write_row(&obj(
                    json!({"name": "X", "birth_year": 2001, "birth_month": month, "birth_day": day}),
                ))
                .expect("write");
            assert_eq!(v1.read_row(&physical)["birthday"], Value::Null, "{month}-{day}");
            let row = v2.read_row(&physical);
            assert_eq!(
                (row["birth_month"].clone(), row["birth_day"].clone()),
                (json!(month), json!(day))
            );
            assert_eq!(row["birth_year"], 2001);
        }
    }

    #[test]
    fn v1_clearing_the_date_clears_the_parts() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let mut stored = v2
            .write_row(&obj(json!({"name": "X", "birth_month": 5, "birth_day": 4})))
            .expect("write");
        patch(&v1, &mut stored, json!({"birthday": null}));
        let row = v2.read_row(&stored);
        assert_eq!(
            (row["birth_month"].clone(), row["birth_day"].clone()),
            (Value::Null, Value::Null)
        );
        patch(&v1, &mut stored, json!({"birthday": "2000-01-31"}));
        assert_eq!(v2.read_row(&stored)["birth_day"], 31);
    }

    #[test]
    fn writes_of_unknown_columns_and_bad_dates_are_errors() {
        let family = people();
        let (v1, v2) = (family.view(1).expect("v1"), family.view(2).expect("v2"));
        let err = v2
            .write_row(&obj(json!({"name": "X", "nickname": "Y"})))
            .expect_err("v2 has no nickname");
        assert!(matches!(err, LensError::UnknownColumn { .. }), "{err:?}");
        assert_eq!(err.to_string(), "table people of version 2 has no column nickname");
        let err = v1
            .write_patch(&Map::new(), &obj(json!({"birthday": "10/12/1815"})))
            .expect_err("not a date");
        assert_eq!(
            err.to_string(),
            "column birthday: \"10/12/1815\" is not a date of the form \"YYYY-MM-DD\""
        );
        let err = family.view(3).expect_err("no version 3");
        assert_eq!(err.to_string(), "schema contacts version 3 has no table people");
        let registry = registry(&[]).expect("builtin");
        let err = TableFamily::build(&registry, "contacts", "pets").expect_err("no such table");
        assert_eq!(err.to_string(), "no version of schema contacts has a table pets");
    }

    // ---- chains and physical names ----

    #[test]
    fn three_version_chain_composes() {
        let family = family(&[(v2(), V2), (v3(), V3)]);
        let names: Vec<&str> = family.physical().columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names[names.len() - 5..],
            ["birth_year", "birth_month", "birth_day", "pronouns", "language"]
        );
        assert!(!names.contains(&"born") && !names.contains(&"full_name"), "{names:?}");
        let (v1, v2, v3) = (
            family.view(1).expect("v1"),
            family.view(2).expect("v2"),
            family.view(3).expect("v3"),
        );
        assert_eq!(v3.physical_column("full_name"), Some("display_name"));
        assert_eq!(
            v3.read_expr("born").expect("born").to_string(),
            "make_date(coalesce(birth_year, year(birthday)), coalesce(birth_month, month(birthday)), \
             coalesce(birth_day, day(birthday)))"
        );
        assert_eq!(
            v3.read_expr("language").expect("language").to_string(),
            "coalesce(language, \"en\")"
        );

        // A row stored by v1 before the other versions existed.
        let mut stored = obj(json!({"display_name": "Alan", "birthday": "1912-06-23"}));
        let row = v3.read_row(&stored);
        assert_eq!(row["full_name"], "Alan");
        assert_eq!(row["born"], "1912-06-23");
        assert_eq!(row["language"], "en");
        assert_eq!(row["pronouns"], Value::Null);

        // v3 writes the date: v1 sees it, v2 sees its parts.
        let values = v3.write_patch(&stored, &obj(json!({"born": "1912-06-24", "language": "de"})));
        let values = values.expect("patch");
        assert_eq!(
            values,
            obj(
                json!({"birthday": "1912-06-24", "birth_year": 1912, "birth_month": 6, "birth_day": 24,
                       "language": "de"})
            )
        );
        assert!(!v3.needs_current(&obj(json!({"born": null}))));
        apply(&mut stored, values);
        assert_eq!(v1.read_row(&stored)["birthday"], "1912-06-24");
        assert_eq!(v2.read_row(&stored)["birth_day"], 24);
        assert_eq!(v3.read_row(&stored)["language"], "de");

        // v2 writes month and day only: v1 and v3, which need a whole date, see none.
        patch(&v2, &mut stored, json!({"birth_year": null}));
        assert_eq!(v1.read_row(&stored)["birthday"], Value::Null);
        assert_eq!(v3.read_row(&stored)["born"], Value::Null);
        assert_eq!(v2.read_row(&stored)["birth_month"], 6);

        // v1 writes: every version reads it.
        let physical = v1
            .write_row(&obj(json!({"display_name": "Ada", "birthday": "1815-12-10"})))
            .expect("write");
        assert_eq!(v3.read_row(&physical)["born"], "1815-12-10");
        assert_eq!(v3.read_row(&physical)["full_name"], "Ada");
        assert_eq!(v2.read_row(&physical)["birth_month"], 12);

        // v3 writes a whole row: v1 sees its name and date.
        let physical = v3
            .write_row(&obj(
                json!({"full_name": "Grace", "born": "1906-12-09", "language": "en"}),
            ))
            .expect("write");
        let row = v1.read_row(&physical);
        assert_eq!(
            (row["display_name"].clone(), row["birthday"].clone()),
            (json!("Grace"), json!("1906-12-09"))
        );
        assert_eq!(v2.read_row(&physical)["name"], "Grace");
        assert_eq!(v3.physical_written_by("born").expect("born").len(), 4);
    }

    /// A small schema `t` whose table `items` has `a` (text) and `a_v2`.
    fn small(version: u32, columns: Value, from_previous: Value) -> Value {
        json!({
            "name": "t", "version": version, "description": "Test data.",
            "tables": [{"name": "items", "description": "Items.", "columns": columns,
                        "from_previous": from_previous}]
        })
    }

    #[test]
    fn a_new_column_named_like_an_older_one_gets_a_versioned_physical_name() {
        let col = |name: &str, ty: &str| json!({"name": name, "type": ty, "description": "A column."});
        let mut registry = SchemaRegistry::new();
        registry
            .insert(
                def(small(1, json!([col("a", "text"), col("a_v2", "text")]), json!([]))),
                "t1.json",
            )
            .expect("v1");
        // v2 replaces text `a` by an integer `a`; `a_v2` is taken too.
        registry
            .insert(
                def(small(
                    2,
                    json!([col("a", "integer"), col("a_v2", "text")]),
                    json!([{"drop": "a"}, {"add": "a"}]),
                )),
                "t2.json",
            )
            .expect("v2");
        // v3 replaces `a` again, and brings back the name `b` it never had.
        registry
            .insert(
                def(small(
                    3,
                    json!([col("a", "boolean"), col("a_v2", "text"), col("b", "text")]),
                    json!([{"drop": "a"}, {"add": "a"}, {"add": "b"}]),
                )),
                "t3.json",
            )
            .expect("v3");
        let family = TableFamily::build(&registry, "t", "items").expect("family");
        let physical: Vec<(&str, String)> = family
            .physical()
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty.to_string()))
            .collect();
        assert_eq!(
            physical,
            [
                ("a", "text".to_owned()),
                ("a_v2", "text".to_owned()),
                ("a_v2_2", "integer".to_owned()),
                ("a_v3", "boolean".to_owned()),
                ("b", "text".to_owned()),
            ]
        );
        assert_eq!(family.view(1).expect("v1").physical_column("a"), Some("a"));
        assert_eq!(family.view(2).expect("v2").physical_column("a"), Some("a_v2_2"));
        assert_eq!(family.view(2).expect("v2").physical_column("a_v2"), Some("a_v2"));
        assert_eq!(family.view(3).expect("v3").physical_column("a"), Some("a_v3"));
        let v2 = family.view(2).expect("v2");
        let physical = v2.write_row(&obj(json!({"a": 5, "a_v2": "x"}))).expect("write");
        assert_eq!(physical, obj(json!({"a_v2_2": 5, "a_v2": "x"})));
        assert_eq!(family.view(1).expect("v1").read_row(&physical)["a"], Value::Null);
        // The names do not depend on the order the files come in.
        let mut reversed = SchemaRegistry::new();
        for v in registry.iter().collect::<Vec<_>>().into_iter().rev() {
            reversed.insert((**v).clone(), "again.json").expect("any order");
        }
        let again = TableFamily::build(&reversed, "t", "items").expect("family");
        assert_eq!(again.physical(), family.physical());
    }

    #[test]
    fn stored_columns_stay_where_they_are() {
        let col = |name: &str| json!({"name": name, "type": "text", "description": "A column."});
        let load = |files: &[Value]| {
            let mut registry = SchemaRegistry::new();
            for v in files {
                registry.insert(def(v.clone()), "t.json").expect("valid");
            }
            registry
        };
        let old = load(&[
            small(1, json!([col("a")]), json!([])),
            small(2, json!([col("a"), col("x")]), json!([{"add": "x"}])),
        ]);
        check_stable(&old, &old, "t").expect("the same definitions");
        // Each version changes additively, but version 1's new `x` would take
        // the stored column of version 2's `x`.
        let new = load(&[
            small(1, json!([col("a"), col("x")]), json!([])),
            small(2, json!([col("a"), col("x")]), json!([{"add": "x"}, {"drop": "x"}])),
        ]);
        let err = check_stable(&old, &new, "t").expect_err("moved");
        assert_eq!(
            err.to_string(),
            "table t.items: the stored column x holds column x of version 2 (text), and would hold column x \
             of version 1 (text); change the newer version's column name"
        );
        let grown = load(&[
            small(1, json!([col("a"), col("y")]), json!([])),
            small(2, json!([col("a"), col("x")]), json!([{"add": "x"}, {"drop": "y"}])),
        ]);
        check_stable(&old, &grown, "t").expect("a new name moves nothing");
    }

    #[test]
    fn a_replacement_keeps_the_parts_a_version_cannot_see() {
        let col = |name: &str, ty: &str| json!({"name": name, "type": ty, "description": "A column."});
        let mut registry = SchemaRegistry::new();
        for v in [
            small(1, json!([col("label", "text"), col("d", "date")]), json!([])),
            small(
                2,
                json!([
                    col("label", "text"),
                    col("y", "integer"),
                    col("m", "integer"),
                    col("dd", "integer")
                ]),
                json!([{"split": "d", "into": {"year": "y", "month": "m", "day": "dd"}}]),
            ),
            small(
                3,
                json!([col("label", "text"), col("m", "integer"), col("dd", "integer")]),
                json!([{"drop": "y"}]),
            ),
        ] {
            registry.insert(def(v), "t.json").expect("valid");
        }
        let family = TableFamily::build(&registry, "t", "items").expect("family");
        let (v1, v3) = (family.view(1).expect("v1"), family.view(3).expect("v3"));
        let mut stored = v1
            .write_row(&obj(json!({"label": "x", "d": "2020-03-04"})))
            .expect("write");
        let values = v3
            .replace_row(&stored, &obj(json!({"label": "y", "m": 3, "dd": 5})))
            .expect("replace");
        assert_eq!(
            values,
            obj(json!({"label": "y", "y": 2020, "m": 3, "dd": 5, "d": "2020-03-05"}))
        );
        apply(&mut stored, values);
        assert_eq!(v1.read_row(&stored)["d"], "2020-03-05");
        // As a new row, the year v3 cannot see is unknown.
        let values = v3
            .write_row(&obj(json!({"label": "z", "m": 3, "dd": 5})))
            .expect("write");
        assert_eq!(values["d"], Value::Null);
        assert!(v3.needs_current(&obj(json!({"m": 1}))));
    }

    // ---- checks ----

    /// The message of the error for `contacts` v2 changed by `change`.
    fn rejected(change: impl FnOnce(&mut Value)) -> String {
        let mut v = v2();
        change(&mut v);
        let err = registry(&[(v, V2)]).expect_err("the lens should be rejected");
        assert!(matches!(err, SchemaError::Invalid { .. }), "{err:?}");
        err.to_string()
    }

    fn ops(v: &mut Value) -> &mut Vec<Value> {
        v["tables"][0]["from_previous"].as_array_mut().expect("ops")
    }

    fn column_mut<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
        let at = position(v, 0, name);
        &mut columns(v, 0)[at]
    }

    #[test]
    fn the_worked_example_is_valid_in_any_order() {
        registry(&[(v2(), V2), (v3(), V3)]).expect("v1, v2, v3");
        let mut registry = SchemaRegistry::new();
        registry.insert(def(v3()), V3).expect("v3 first");
        registry.insert(def(v2()), V2).expect("then v2");
        registry.insert(def(v1()), V1).expect("then v1");
        registry.check_complete().expect("complete");
    }

    #[test]
    fn from_previous_in_version_1_is_an_error() {
        let mut v = v1();
        v["tables"][1]["from_previous"] = json!([{"add": "name"}]);
        let err = SchemaRegistry::new().insert(def(v), V1).expect_err("version 1");
        assert_contains(
            &err.to_string(),
            &["schemas/contacts.json: table groups: ", "this is version 1"],
        );
    }

    #[test]
    fn an_operation_naming_a_missing_old_column_is_an_error() {
        let message = rejected(|v| ops(v)[0] = json!({"rename": "display_nam", "to": "name"}));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column display_nam: ",
                "names column display_nam of version 1, but table people of version 1 has no such column",
            ],
        );
    }

    #[test]
    fn an_operation_naming_a_missing_new_column_is_an_error() {
        let message = rejected(|v| ops(v)[3] = json!({"add": "pronoun"}));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column pronoun: ",
                "names column pronoun, but table people of version 2 has no such column",
            ],
        );
    }

    #[test]
    fn a_new_column_without_an_operation_is_an_error() {
        let message = rejected(|v| {
            ops(v).remove(3);
        });
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column pronouns: ",
                "not in version 1",
                "{\"add\": \"pronouns\"}",
            ],
        );
    }

    #[test]
    fn an_old_column_without_an_operation_is_an_error() {
        let message = rejected(|v| {
            ops(v).remove(2);
        });
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column nickname: ",
                "column nickname of version 1 is not in version 2",
                "{\"drop\": \"nickname\"}",
            ],
        );
    }

    #[test]
    fn a_type_changed_without_an_operation_is_an_error() {
        let message = rejected(|v| column_mut(v, "favorite")["type"] = json!("integer"));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column favorite: ",
                "the type changed from boolean in version 1 to integer",
                "needs an operation",
            ],
        );
    }

    #[test]
    fn a_nullability_changed_without_an_operation_is_an_error() {
        let message = rejected(|v| column_mut(v, "email")["nullable"] = json!(false));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column email: ",
                "was nullable in version 1 and is now not nullable",
            ],
        );
    }

    #[test]
    fn a_reference_changed_without_an_operation_is_an_error() {
        let message = rejected(|v| v["tables"][2]["columns"][1]["references"] = json!("contacts.people"));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table memberships, column group_id: ",
                "reference changed from contacts.groups in version 1 to contacts.people",
            ],
        );
    }

    #[test]
    fn a_rename_that_changes_the_type_is_an_error() {
        let message = rejected(|v| column_mut(v, "name")["type"] = json!("json"));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column name: ",
                "renames a column",
                "the type changed from text in version 1 to json",
            ],
        );
    }

    #[test]
    fn a_split_of_a_column_that_is_no_date_is_an_error() {
        let message = rejected(|v| ops(v)[1]["split"] = json!("notes"));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column notes: ",
                "needs column notes to be a date, but it is text",
            ],
        );
    }

    #[test]
    fn a_split_into_columns_that_are_no_integers_is_an_error() {
        let message = rejected(|v| column_mut(v, "birth_month")["type"] = json!("text"));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column birth_month: ",
                "must be integer columns, not text",
            ],
        );
    }

    #[test]
    fn a_split_with_parts_of_another_nullability_is_an_error() {
        let message = rejected(|v| column_mut(v, "birth_day")["nullable"] = json!(false));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column birthday: ",
                "the date birthday is nullable but birth_day is not nullable",
            ],
        );
    }

    #[test]
    fn a_merge_into_a_column_that_is_no_date_is_an_error() {
        let mut v = v3();
        let at = position(&v, 0, "born");
        columns(&mut v, 0)[at]["type"] = json!("timestamp");
        let err = registry(&[(v2(), V2), (v, V3)]).expect_err("invalid");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/contacts_v3.json: table people, column born: ",
                "so the column must be a date, not timestamp",
            ],
        );
    }

    #[test]
    fn a_merge_of_columns_that_are_no_integers_is_an_error() {
        let mut v2 = v2();
        column_mut(&mut v2, "birth_day")["type"] = json!("float");
        // The registry would reject v2's own split first: check the merge alone.
        let err = check_lens(&def(v2), &def(v3()), V3).expect_err("invalid");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/contacts_v3.json: table people, column born: ",
                "needs column birth_day to be an integer, but it is float",
            ],
        );
    }

    #[test]
    fn an_added_column_that_is_not_nullable_needs_a_default() {
        let message = rejected(|v| column_mut(v, "pronouns")["nullable"] = json!(false));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column pronouns: ",
                "make it nullable or give the add operation a default",
            ],
        );
        let mut ok = v2();
        column_mut(&mut ok, "pronouns")["nullable"] = json!(false);
        ops(&mut ok)[3]["default"] = json!("they/them");
        registry(&[(ok, V2)]).expect("with a default");
    }

    #[test]
    fn a_default_of_another_type_is_an_error() {
        let message = rejected(|v| ops(v)[3]["default"] = json!(3));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column pronouns: ",
                "the default 3 is not a value of type text",
            ],
        );
    }

    #[test]
    fn a_drop_of_a_column_that_is_not_nullable_is_an_error() {
        let message = rejected(|v| {
            let at = position(v, 2, "group_id");
            columns(v, 2).remove(at);
            v["tables"][2]["from_previous"] = json!([{"drop": "group_id"}]);
        });
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table memberships, column group_id: ",
                "drops a column that is not nullable in version 1",
            ],
        );
    }

    #[test]
    fn a_column_named_by_two_operations_is_an_error() {
        let message = rejected(|v| ops(v).push(json!({"drop": "display_name"})));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column display_name: ",
                "more than one operation of from_previous names column display_name of version 1",
            ],
        );
        let message = rejected(|v| ops(v).push(json!({"add": "name"})));
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table people, column name: ",
                "more than one operation",
            ],
        );
    }

    #[test]
    fn a_new_table_has_no_from_previous() {
        let message = rejected(|v| {
            v["tables"].as_array_mut().expect("tables").push(json!({
                "name": "pets", "description": "Pets.",
                "columns": [{"name": "name", "type": "text", "description": "Name."}],
                "from_previous": [{"add": "name"}]
            }));
        });
        assert_contains(
            &message,
            &[
                "schemas/contacts_v2.json: table pets: ",
                "the table is new in version 2",
            ],
        );
    }

    #[test]
    fn a_dropped_table_does_not_come_back() {
        let mut without = v2();
        without["tables"].as_array_mut().expect("tables").remove(2);
        let mut v3 = v2();
        v3["version"] = json!(3);
        v3["tables"][0]["from_previous"] = json!([]);
        let err = registry(&[(without.clone(), V2), (v3.clone(), V3)]).expect_err("comes back");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/contacts_v3.json: table memberships: ",
                "version 1 has a table memberships and version 2 does not",
            ],
        );
        // The same, whatever the order.
        let mut registry = SchemaRegistry::new();
        registry.insert(def(v1()), V1).expect("v1");
        registry.insert(def(v3), V3).expect("v3 alone");
        let err = registry.insert(def(without), V2).expect_err("v2 between");
        assert_contains(&err.to_string(), &["schemas/contacts_v3.json: table memberships: "]);
    }

    #[test]
    fn a_bad_lens_is_found_whichever_version_comes_first() {
        let mut v = v2();
        ops(&mut v).remove(2);
        let mut registry = SchemaRegistry::new();
        registry.insert(def(v), V2).expect("v2 alone cannot be checked");
        let err = registry.insert(def(v1()), V1).expect_err("v1 shows the problem");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/contacts_v2.json: table people, column nickname: ",
                "is not in version 2",
            ],
        );
        assert!(registry.get("contacts", 1).is_none(), "nothing was inserted");
    }

    #[test]
    fn a_version_needs_its_predecessor() {
        let mut v = v3();
        v["version"] = json!(4);
        let mut registry = registry(&[]).expect("builtin");
        registry.insert(def(v), "schemas/contacts_v4.json").expect("taken");
        assert_eq!(registry.missing_predecessors(), [("contacts".to_owned(), 4)]);
        let err = registry.check_complete().expect_err("v3 missing");
        assert_eq!(
            err.to_string(),
            "schemas/contacts_v4.json: schema contacts version 4 needs version 3 of the schema, which is missing"
        );
        let err = TableFamily::build(&registry, "contacts", "people").expect_err("gap");
        assert_eq!(
            err.to_string(),
            "schema contacts version 2 is missing; version 4 needs it"
        );
        let mut alone = SchemaRegistry::new();
        alone.insert(def(v2()), V2).expect("v2 alone");
        let err = TableFamily::build(&alone, "contacts", "people").expect_err("no v1");
        assert_eq!(
            err.to_string(),
            "schema contacts version 1 is missing; version 2 needs it"
        );
    }

    #[test]
    fn a_redefinition_keeps_its_operations() {
        let mut registry = registry(&[(v2(), V2)]).expect("v2");
        let mut v = v2();
        ops(&mut v).remove(3);
        ops(&mut v).push(json!({"add": "pronouns", "default": "they/them"}));
        let err = registry.insert(def(v), V2).expect_err("changed operation");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/contacts_v2.json: table people: ",
                "the operation {\"add\":\"pronouns\"} was removed from from_previous",
                "not additive",
            ],
        );
        // Adding a column to v2 with its operation is additive.
        let mut v = v2();
        columns(&mut v, 0).push(json!({"name": "mastodon", "type": "text", "description": "Fediverse handle."}));
        ops(&mut v).push(json!({"add": "mastodon"}));
        registry.insert(def(v), V2).expect("additive");
    }

    #[test]
    fn operations_parse_and_print() {
        let text = r#"[{"rename": "a", "to": "b"},
            {"split": "d", "into": {"year": "y", "month": "m", "day": "dd"}},
            {"merge": {"year": "y", "month": "m", "day": "dd"}, "into": "d"},
            {"add": "c", "default": 1}, {"add": "e"}, {"drop": "f"}]"#;
        let ops: Vec<LensOp> = serde_json::from_str(text).expect("parses");
        assert_eq!(ops.len(), 6);
        assert_eq!(
            ops[4],
            LensOp::Add {
                add: "e".into(),
                default: None
            }
        );
        let back: Vec<LensOp> = serde_json::from_value(serde_json::to_value(&ops).expect("json")).expect("parses");
        assert_eq!(back, ops);
        assert_eq!(ops[0].to_string(), r#"{"rename":"a","to":"b"}"#);
        for (bad, expected) in [
            (r#"{"rename": "a"}"#, "in a rename operation: missing field `to`"),
            (r#"{"rename": "a", "to": "b", "tp": "c"}"#, "unknown field `tp`"),
            (r#"{"move": "a"}"#, "unknown operation"),
            (
                r#"{"add": "a", "drop": "b"}"#,
                "only one of rename, split, merge, add, drop, this one has add and drop",
            ),
            (
                r#"{"split": "d", "into": {"year": "y", "month": "m"}}"#,
                "missing field `day`",
            ),
        ] {
            let err = serde_json::from_str::<LensOp>(bad).expect_err(bad);
            assert!(err.to_string().contains(expected), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_operation_in_a_file_names_the_table() {
        let mut v = v2();
        ops(&mut v)[0] = json!({"renam": "display_name", "to": "name"});
        let err = SchemaRegistry::parse(&serde_json::to_string_pretty(&v).expect("json"), V2).expect_err("bad");
        assert_contains(
            &err.to_string(),
            &["schemas/contacts_v2.json: table people: ", "unknown operation"],
        );
    }
}
