//! The schema model: a schema is a named, versioned set of typed tables that
//! many apps share. Schema files live in the repository's `schemas/` folder as
//! JSON; [`registry`] loads and validates them.

pub mod lens;
pub mod registry;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The system columns every row shows, in this order, before its user
/// columns: its id, the change that wrote this version, the apps that
/// created and last updated it, and when.
pub const VISIBLE_SYSTEM_COLUMNS: [&str; 6] =
    ["id", "_seq", "_created_by", "_updated_by", "_created_at", "_updated_at"];

/// The tombstone flag of a deleted row's last version: stored, never shown
/// (tombstones are not rows).
pub const DELETED_COLUMN: &str = "_deleted";

/// Names of the system columns every table carries, in storage order: the
/// [`VISIBLE_SYSTEM_COLUMNS`], then [`DELETED_COLUMN`].
pub const SYSTEM_COLUMNS: [&str; 7] = {
    let mut all = [DELETED_COLUMN; 7];
    let mut i = 0;
    while i < VISIBLE_SYSTEM_COLUMNS.len() {
        all[i] = VISIBLE_SYSTEM_COLUMNS[i];
        i += 1;
    }
    all
};

/// A schema definition, as written in a `schemas/*.json` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// Schema name, e.g. `contacts`. Lower case letters, digits and `_`;
    /// app-published schemas use a namespace prefix such as `acme_notes`.
    pub name: String,
    /// Major version. Within a version only additive changes are allowed.
    pub version: u32,
    /// What this schema holds, in plain words.
    pub description: String,
    /// The tables of the schema.
    pub tables: Vec<TableDef>,
}

impl SchemaDef {
    /// The table called `name`, if the schema has one.
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// One table of a schema. Every table also has the [`SYSTEM_COLUMNS`], which
/// are not listed in `columns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// Table name within the schema, e.g. `people`.
    pub name: String,
    /// What a row of this table is, in plain words for the consent page.
    pub description: String,
    /// In version 2 and later: how the table relates to the table of the
    /// same name in the previous version, see [`lens`]. Empty in version 1,
    /// and for a table the previous version does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_previous: Vec<lens::LensOp>,
    /// The user-visible columns, in order.
    pub columns: Vec<ColumnDef>,
}

impl TableDef {
    /// The column called `name`, if the table has one.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A table `t` with a column of every type: `name` (text, required),
    /// `n` integer, `f` float, `b` boolean, `ts` timestamp, `day` date,
    /// `j` json, `raw` bytes, `u` uuid, `v` vector(3) and `none` (text).
    /// The one fixture of the tests of values and their forms.
    pub fn with_every_type() -> TableDef {
        let types = [
            ("name", ColumnType::Text),
            ("n", ColumnType::Integer),
            ("f", ColumnType::Float),
            ("b", ColumnType::Boolean),
            ("ts", ColumnType::Timestamp),
            ("day", ColumnType::Date),
            ("j", ColumnType::Json),
            ("raw", ColumnType::Bytes),
            ("u", ColumnType::Uuid),
            ("v", ColumnType::Vector(3)),
            ("none", ColumnType::Text),
        ];
        TableDef {
            name: "t".into(),
            description: "A column of every type.".into(),
            from_previous: Vec::new(),
            columns: types
                .into_iter()
                .map(|(name, ty)| ColumnDef {
                    name: name.into(),
                    ty,
                    nullable: name != "name",
                    description: format!("A {ty} column."),
                    sensitive: None,
                    references: None,
                })
                .collect(),
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Column name. Lower case letters, digits and `_`, not starting with `_`
    /// (names starting with `_` are reserved for system columns).
    pub name: String,
    /// The column's type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether the column may be null (absent). Defaults to true.
    #[serde(default = "default_true")]
    pub nullable: bool,
    /// What the column holds, in plain words for the consent page.
    pub description: String,
    /// Set for data a person would consider sensitive (health, location,
    /// finances, …); the consent page marks such columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<String>,
    /// A reference to another table's `id`, written `schema.table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit floating point number.
    Float,
    /// true or false.
    Boolean,
    /// An instant, microsecond precision, UTC (RFC 3339 in JSON).
    Timestamp,
    /// A calendar date (`YYYY-MM-DD` in JSON).
    Date,
    /// Any JSON value.
    Json,
    /// Binary data (base64 in JSON).
    Bytes,
    /// A UUID in its canonical text form.
    Uuid,
    /// A fixed-length vector of 32-bit floats, e.g. an embedding.
    Vector(u32),
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Text => f.write_str("text"),
            ColumnType::Integer => f.write_str("integer"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::Bytes => f.write_str("bytes"),
            ColumnType::Uuid => f.write_str("uuid"),
            ColumnType::Vector(n) => write!(f, "vector({n})"),
        }
    }
}

/// Error for a type name that is not one of the column types.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown column type `{0}` (expected text, integer, float, boolean, timestamp, date, json, bytes, uuid or vector(N))"
)]
pub struct UnknownColumnType(pub String);

impl FromStr for ColumnType {
    type Err = UnknownColumnType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "text" => ColumnType::Text,
            "integer" => ColumnType::Integer,
            "float" => ColumnType::Float,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            "json" => ColumnType::Json,
            "bytes" => ColumnType::Bytes,
            "uuid" => ColumnType::Uuid,
            other => {
                let n = other
                    .strip_prefix("vector(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .filter(|n| (1..=65_536).contains(n))
                    .ok_or_else(|| UnknownColumnType(other.to_owned()))?;
                ColumnType::Vector(n)
            }
        })
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A fully qualified table name, `schema.table`, e.g. `contacts.people`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema part.
    pub schema: String,
    /// The table part.
    pub table: String,
}

impl TableName {
    /// Builds a table name from its two parts.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Error for a table name that is not `schema.table`.
#[derive(Debug, thiserror::Error)]
#[error("invalid table name `{0}`: expected `schema.table`")]
pub struct InvalidTableName(pub String);

impl FromStr for TableName {
    type Err = InvalidTableName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (schema, table) = s
            .split_once('.')
            .filter(|(a, b)| is_identifier(a) && is_identifier(b))
            .ok_or_else(|| InvalidTableName(s.to_owned()))?;
        Ok(Self::new(schema, table))
    }
}

impl Serialize for TableName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TableName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `s` is a valid schema, table or column identifier: 1–63 characters
/// of lower case ASCII letters, digits and `_`, starting with a letter.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z')) && s.len() <= 63 && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}
