//! `pg_catalog` and `information_schema` as the caller's confined catalog
//! shows them: the queries psql sends for `\dt`, `\d table`, `\dn` and
//! `\l` (and simple ones of tools alike) are answered here, from the tables
//! and columns the session's token may use in SQL — the same columns the
//! gateway's confined tables expose, opened the same way. Nothing else of
//! the vault is looked at, so an ungranted table or column is in none of
//! these views.
//!
//! A catalog query is not run as SQL: it is read for its select list (the
//! result's columns, by alias or column name), its main relation (the first
//! one its `FROM` names) and the conditions psql puts in it (`relname ~
//! 'pattern'`, `nspname ~ 'pattern'`, `oid = 'n'`, `attrelid = 'n'`,
//! `relkind IN (…)`, and names compared with `=`: `relname`, `nspname`,
//! `attname`, `table_schema`, `table_name`, `column_name`, `schema_name`).
//! Each row is built from the catalog object it describes, each column from
//! its name; a column this module does not know is an empty string. A query
//! about any other relation (indexes, constraints, policies, triggers,
//! inheritance, …) answers no rows: the vault has none of them.
//!
//! | relation | rows |
//! |---|---|
//! | `pg_database` | one: `vault` |
//! | `pg_namespace`, `information_schema.schemata` | the schemas of the granted tables |
//! | `pg_class`, `information_schema.tables` | the granted tables (kind `r`, owner `vault`) |
//! | `pg_attribute`, `information_schema.columns` | the columns SQL shows of a granted table |
//!
//! Object ids are given per query, in name order: tables from
//! [`FIRST_TABLE_OID`], schemas from [`FIRST_SCHEMA_OID`].

use std::collections::BTreeSet;
use std::sync::LazyLock;

use coffer_core::TableName;
use coffer_gateway::catalog::{ConfinedTable, Use};
use coffer_gateway::sql::MAX_SQL_LEN;
use coffer_gateway::{Caller, GatewayError, Logged};
use datafusion::catalog::TableProvider;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use pgwire::api::Type;
use regex::{Regex, RegexBuilder};

use crate::DATABASE;
use crate::types::pg_type;

/// The object id of the first table (in name order).
pub const FIRST_TABLE_OID: u32 = 16_384;
/// The object id of the first schema (in name order).
pub const FIRST_SCHEMA_OID: u32 = 16_000;
/// The owner every object is shown with.
const OWNER: &str = "vault";
/// The owner's object id (as `relowner`, `nspowner`, `datdba`).
const OWNER_OID: &str = "10";
/// Largest compiled pattern, in bytes (a pattern comes from the client).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Most conditions (name patterns, oids, names) one catalog query may hold.
pub const MAX_CONDITIONS: usize = 64;

/// The rows of a catalog query: every value as text.
#[derive(Debug)]
pub struct CatalogRows {
    /// The result's column names.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<String>>,
}

impl Logged for CatalogRows {
    fn rows(&self) -> u64 {
        self.rows.len() as u64
    }
}

/// Whether `statement` reads `pg_catalog` or `information_schema`: it
/// names a relation of one of them (`pg_catalog.pg_class`, not a function
/// such as `pg_catalog.version()`).
pub fn is_catalog_query(statement: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, statement).tokenize() else {
        return false;
    };
    let words: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    if !matches!(words.first(), Some(Token::Word(w)) if w.keyword == Keyword::SELECT) {
        return false;
    }
    words.windows(3).enumerate().any(|(i, w)| match w {
        [Token::Word(schema), Token::Period, Token::Word(_)] => {
            let schema = schema.value.to_ascii_lowercase();
            (schema == "pg_catalog" || schema == "information_schema") && words.get(i + 3) != Some(&&Token::LParen)
        }
        _ => false,
    })
}

/// The column names of a catalog query's result (its select list).
pub fn columns(statement: &str) -> Vec<String> {
    Query::read(statement).items.into_iter().map(|i| i.name).collect()
}

/// Answers the catalog query `statement` as `caller`.
/// A statement longer than the gateway's [`MAX_SQL_LEN`] is refused, as
/// one holding more than [`MAX_CONDITIONS`] conditions is.
pub async fn answer(caller: &Caller, statement: &str) -> Result<CatalogRows, GatewayError> {
    if statement.len() > MAX_SQL_LEN {
        return Err(GatewayError::QueryLimit(format!(
            "the statement is longer than {MAX_SQL_LEN} bytes"
        )));
    }
    let query = Query::read(statement);
    let objects = Objects::of(caller).await?;
    let rows = query.rows(&objects)?;
    Ok(CatalogRows {
        columns: query.items.iter().map(|i| i.name.clone()).collect(),
        rows,
    })
}

/// One item of a select list.
struct Item {
    /// The result column's name, as Postgres would give it.
    name: String,
    /// The name lower-cased, to find its value by.
    key: String,
}

/// What this module reads of a catalog query.
struct Query {
    items: Vec<Item>,
    /// The relations the top-level `FROM` names (`pg_class`, `tables`, …),
    /// the main one first, each with its schema.
    from: Vec<(String, String)>,
    text: String,
}

static RELATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\b(pg_catalog|information_schema)\s*\.\s*"?(\w+)"?"#).expect("a regex"));
static MATCHES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(relname|nspname|attname)\s+(?:OPERATOR\s*\(\s*pg_catalog\s*\.\s*~\s*\)|~)\s*'((?:[^']|'')*)'")
        .expect("a regex")
});
static OID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\b(oid|attrelid)\s*=\s*'?(\d+)'?").expect("a regex"));
static RELKIND: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)\brelkind\s+IN\s*\(([^)]*)\)").expect("a regex"));
static EQUALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(table_schema|table_name|column_name|schema_name|relname|nspname|attname)\s*=\s*'((?:[^']|'')*)'",
    )
    .expect("a regex")
});

impl Query {
    fn read(statement: &str) -> Query {
        let tokens: Vec<Token> = Tokenizer::new(&PostgreSqlDialect {}, statement)
            .tokenize()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
        // The top-level select list and FROM clause.
        let (mut depth, mut select, mut from, mut end) = (0usize, None, None, tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                _ if depth > 0 => {}
                _ if select.is_none() && keyword(t, Keyword::SELECT) => select = Some(i + 1),
                _ if from.is_none() && select.is_some() && keyword(t, Keyword::FROM) => from = Some(i),
                _ if from.is_some()
                    && [
                        Keyword::WHERE,
                        Keyword::ORDER,
                        Keyword::GROUP,
                        Keyword::LIMIT,
                        Keyword::UNION,
                    ]
                    .iter()
                    .any(|k| keyword(t, *k)) =>
                {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let list_end = from.unwrap_or(tokens.len());
        let list = select.map_or(&tokens[0..0], |s| &tokens[s.min(list_end)..list_end]);
        let mut items = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, t) in list.iter().enumerate() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Comma if depth == 0 => {
                    items.push(item(&list[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < list.len() {
            items.push(item(&list[start..]));
        }
        let from_text: String = from.map_or(String::new(), |f| {
            tokens[f..end.max(f)].iter().map(|t| format!("{t} ")).collect()
        });
        let from: Vec<(String, String)> = RELATION
            .captures_iter(&from_text)
            .map(|c| (c[1].to_ascii_lowercase(), c[2].to_ascii_lowercase()))
            .collect();
        // `*` (or `alias.*`) is the main relation's columns.
        let star = from.first().map_or(&[][..], |(_, r)| star_columns(r));
        let items = items
            .into_iter()
            .flat_map(|i| match i.key.as_str() {
                "*" => star
                    .iter()
                    .map(|c| Item {
                        name: (*c).to_owned(),
                        key: (*c).to_owned(),
                    })
                    .collect(),
                _ => vec![i],
            })
            .collect();
        Query {
            items,
            from,
            text: statement.to_owned(),
        }
    }

    /// The rows of the query over `objects`.
    fn rows(&self, objects: &Objects) -> Result<Vec<Vec<String>>, GatewayError> {
        let Some((schema, relation)) = self.from.first() else {
            return Ok(Vec::new());
        };
        // Joins that only decorate the main relation; any other (an
        // inheritance, index or constraint list) has no rows here.
        let decorating = ["pg_namespace", "pg_am", "pg_class", "pg_description", "pg_tablespace"];
        if self.from[1..].iter().any(|(_, r)| !decorating.contains(&r.as_str())) {
            return Ok(Vec::new());
        }
        let conditions = MATCHES.find_iter(&self.text).count()
            + OID.find_iter(&self.text).count()
            + EQUALS.find_iter(&self.text).count();
        if conditions > MAX_CONDITIONS {
            return Err(GatewayError::QueryLimit(format!(
                "a catalog query may hold at most {MAX_CONDITIONS} conditions"
            )));
        }
        let mut patterns: Vec<(String, Regex)> = Vec::new();
        for c in MATCHES.captures_iter(&self.text) {
            let pattern = c[2].replace("''", "'");
            let regex = RegexBuilder::new(&pattern)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|_| GatewayError::InvalidSql("invalid regular expression in a catalog query".into()))?;
            patterns.push((c[1].to_ascii_lowercase(), regex));
        }
        let equals: Vec<(String, String)> = EQUALS
            .captures_iter(&self.text)
            .map(|c| (c[1].to_ascii_lowercase(), c[2].replace("''", "'")))
            .collect();
        let equal = |what: &str, value: &str| equals.iter().filter(|(w, _)| w == what).all(|(_, v)| v == value);
        let matching = |what: &str, value: &str| {
            patterns
                .iter()
                .filter(|(w, _)| w == what)
                .all(|(_, r)| r.is_match(value))
                && equal(what, value)
        };
        let oids: Vec<(String, u32)> = OID
            .captures_iter(&self.text)
            .filter_map(|c| Some((c[1].to_ascii_lowercase(), c[2].parse().ok()?)))
            .collect();
        let oid_is = |what: &str, oid: u32| oids.iter().filter(|(w, _)| w == what).all(|(_, o)| *o == oid);
        let tables_wanted = RELKIND.captures(&self.text).is_none_or(|c| c[1].contains("'r'"));
        let mut rows = Vec::new();
        match (schema.as_str(), relation.as_str()) {
            ("pg_catalog", "pg_database") => rows.push(self.row(database)),
            ("pg_catalog", "pg_namespace") => {
                for (i, s) in objects.schemas.iter().enumerate() {
                    if matching("nspname", s) && oid_is("oid", schema_oid(i)) {
                        rows.push(self.row(|key| namespace(key, s, schema_oid(i))));
                    }
                }
            }
            ("information_schema", "schemata") => {
                for s in &objects.schemas {
                    if equal("schema_name", s) {
                        rows.push(self.row(|key| namespace(key, s, 0)));
                    }
                }
            }
            ("pg_catalog", "pg_class") if tables_wanted => {
                for (i, t) in objects.tables.iter().enumerate() {
                    let oid = table_oid(i);
                    if matching("relname", &t.name.table) && matching("nspname", &t.name.schema) && oid_is("oid", oid) {
                        rows.push(self.row(|key| class(key, t, oid, objects)));
                    }
                }
            }
            ("information_schema", "tables") => {
                for t in &objects.tables {
                    if equal("table_schema", &t.name.schema) && equal("table_name", &t.name.table) {
                        rows.push(self.row(|key| class(key, t, 0, objects)));
                    }
                }
            }
            ("pg_catalog", "pg_attribute") => {
                for (i, t) in objects.tables.iter().enumerate() {
                    if !oid_is("attrelid", table_oid(i)) || !oids.iter().any(|(w, _)| w == "attrelid") {
                        continue;
                    }
                    for (n, c) in t.columns.iter().enumerate() {
                        if matching("attname", &c.name) {
                            rows.push(self.row(|key| attribute(key, t, table_oid(i), c, n + 1)));
                        }
                    }
                }
            }
            ("information_schema", "columns") => {
                for t in &objects.tables {
                    if !equal("table_schema", &t.name.schema) || !equal("table_name", &t.name.table) {
                        continue;
                    }
                    for (n, c) in t.columns.iter().enumerate() {
                        if equal("column_name", &c.name) {
                            rows.push(self.row(|key| attribute(key, t, 0, c, n + 1)));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(rows)
    }

    fn row(&self, value: impl Fn(&str) -> Option<String>) -> Vec<String> {
        self.items.iter().map(|i| value(&i.key).unwrap_or_default()).collect()
    }
}

/// A select-list item's name: its alias, else the column or function it is,
/// else `?column?`.
fn item(tokens: &[Token]) -> Item {
    let word = |t: Option<&Token>| match t {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    };
    let n = tokens.len();
    if tokens.last() == Some(&Token::Mul) && (n == 1 || tokens[n - 2] == Token::Period) {
        return Item {
            name: "*".into(),
            key: "*".into(),
        };
    }
    let is_as =
        n >= 2 && matches!(&tokens[n - 2], Token::Word(w) if w.keyword == Keyword::AS && w.quote_style.is_none());
    let name = if is_as || n == 1 || (n >= 2 && tokens[n - 2] == Token::Period) {
        word(tokens.last())
    } else {
        tokens
            .iter()
            .position(|t| *t == Token::LParen)
            .filter(|&p| p > 0)
            .and_then(|p| word(tokens.get(p - 1)))
    };
    let name = name.unwrap_or_else(|| "?column?".to_owned());
    Item {
        key: name.to_ascii_lowercase(),
        name,
    }
}

/// The columns `SELECT *` gives of a catalog relation (the ones this module
/// fills, of those Postgres has).
fn star_columns(relation: &str) -> &'static [&'static str] {
    match relation {
        "pg_database" => &["oid", "datname", "datdba", "encoding", "datcollate", "datctype"],
        "pg_namespace" => &["oid", "nspname", "nspowner"],
        "pg_class" => &[
            "oid",
            "relname",
            "relnamespace",
            "relowner",
            "relkind",
            "relpersistence",
        ],
        "pg_attribute" => &["attrelid", "attname", "atttypid", "attnum", "attnotnull"],
        "schemata" => &["catalog_name", "schema_name", "schema_owner"],
        "tables" => &["table_catalog", "table_schema", "table_name", "table_type"],
        "columns" => &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position",
            "is_nullable",
            "data_type",
        ],
        _ => &[],
    }
}

/// A granted table as SQL shows it to the caller.
struct Table {
    name: TableName,
    description: String,
    columns: Vec<Column>,
}

/// A column of a [`Table`].
struct Column {
    name: String,
    ty: Type,
    nullable: bool,
    description: String,
}

/// The catalog objects the caller may know of: the granted tables the vault
/// holds, in name order, and their schemas.
struct Objects {
    tables: Vec<Table>,
    schemas: Vec<String>,
}

impl Objects {
    async fn of(caller: &Caller) -> Result<Objects, GatewayError> {
        let names: BTreeSet<&TableName> = caller.grant().tables().collect();
        let mut tables = Vec::new();
        for name in names {
            // The same table SQL plans over: only its exposed columns.
            let table = match ConfinedTable::open(caller, name, Use::Read).await {
                Ok(t) => t,
                Err(GatewayError::TableNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let def = &table.installed().def;
            let columns = table
                .schema()
                .fields()
                .iter()
                .map(|f| Column {
                    name: f.name().clone(),
                    ty: pg_type(f),
                    nullable: f.is_nullable(),
                    description: def
                        .columns
                        .iter()
                        .find(|c| c.name == *f.name())
                        .map(|c| c.description.clone())
                        .unwrap_or_default(),
                })
                .collect();
            tables.push(Table {
                name: name.clone(),
                description: def.description.clone(),
                columns,
            });
        }
        let schemas: BTreeSet<String> = tables.iter().map(|t| t.name.schema.clone()).collect();
        Ok(Objects {
            tables,
            schemas: schemas.into_iter().collect(),
        })
    }

    fn schema_oid(&self, schema: &str) -> u32 {
        self.schemas.iter().position(|s| s == schema).map_or(0, schema_oid)
    }
}

fn table_oid(i: usize) -> u32 {
    FIRST_TABLE_OID + u32::try_from(i).unwrap_or(u32::MAX - FIRST_TABLE_OID)
}

fn schema_oid(i: usize) -> u32 {
    FIRST_SCHEMA_OID + u32::try_from(i).unwrap_or(0)
}

fn yes(b: bool) -> Option<String> {
    Some(if b { "t" } else { "f" }.to_owned())
}

fn database(key: &str) -> Option<String> {
    let v = match key {
        "datname" | "name" | "table_catalog" | "catalog_name" => DATABASE,
        "oid" => "16383",
        "owner" | "pg_get_userbyid" => OWNER,
        "datdba" | "nspowner" | "relowner" => OWNER_OID,
        "encoding" | "pg_encoding_to_char" => "UTF8",
        "collate" | "ctype" | "datcollate" | "datctype" => "C",
        "locale provider" => "libc",
        "tablespace" => "pg_default",
        _ => return None,
    };
    Some(v.to_owned())
}

fn namespace(key: &str, schema: &str, oid: u32) -> Option<String> {
    match key {
        "nspname" | "name" | "schema_name" => Some(schema.to_owned()),
        "oid" => Some(oid.to_string()),
        "owner" | "pg_get_userbyid" | "schema_owner" => Some(OWNER.to_owned()),
        _ => database(key),
    }
}

fn class(key: &str, table: &Table, oid: u32, objects: &Objects) -> Option<String> {
    let v = match key {
        "oid" => oid.to_string(),
        "relname" | "name" | "table_name" => table.name.table.clone(),
        "nspname" | "schema" | "table_schema" => table.name.schema.clone(),
        "relnamespace" => objects.schema_oid(&table.name.schema).to_string(),
        "type" => "table".into(),
        "table_type" => "BASE TABLE".into(),
        "relkind" => "r".into(),
        "relchecks" | "reltablespace" | "reloftype" => "0".into(),
        "relpersistence" => "p".into(),
        "persistence" => "permanent".into(),
        "relreplident" => "d".into(),
        "amname" | "access method" => "heap".into(),
        "description" | "obj_description" => table.description.clone(),
        "relhasindex"
        | "relhasrules"
        | "relhastriggers"
        | "relrowsecurity"
        | "relforcerowsecurity"
        | "relhasoids"
        | "relispartition" => return yes(false),
        _ => return namespace(key, &table.name.schema, objects.schema_oid(&table.name.schema)),
    };
    Some(v)
}

fn attribute(key: &str, table: &Table, oid: u32, column: &Column, number: usize) -> Option<String> {
    let v = match key {
        "attrelid" => oid.to_string(),
        "attname" | "column_name" => column.name.clone(),
        "attnum" | "ordinal_position" => number.to_string(),
        "description" | "col_description" => column.description.clone(),
        "format_type" | "type" => format_type(&column.ty),
        "data_type" => data_type(&column.ty),
        "atttypid" => column.ty.oid().to_string(),
        "attnotnull" => return yes(!column.nullable),
        "attstorage" => match column.ty {
            Type::TEXT | Type::JSONB | Type::BYTEA | Type::FLOAT4_ARRAY => "x",
            _ => "p",
        }
        .into(),
        "is_nullable" => if column.nullable { "YES" } else { "NO" }.into(),
        "relname" | "table_name" => table.name.table.clone(),
        "nspname" | "table_schema" => table.name.schema.clone(),
        "table_catalog" => DATABASE.into(),
        _ => return None,
    };
    Some(v)
}

/// The type's name as `format_type` gives it.
fn format_type(ty: &Type) -> String {
    match *ty {
        Type::INT2 => "smallint".into(),
        Type::INT4 => "integer".into(),
        Type::INT8 => "bigint".into(),
        Type::FLOAT4 => "real".into(),
        Type::FLOAT8 => "double precision".into(),
        Type::BOOL => "boolean".into(),
        Type::TIMESTAMPTZ => "timestamp with time zone".into(),
        Type::TIMESTAMP => "timestamp without time zone".into(),
        Type::FLOAT4_ARRAY => "real[]".into(),
        _ => ty.name().to_owned(),
    }
}

/// The type's name as `information_schema.columns.data_type` gives it.
fn data_type(ty: &Type) -> String {
    match *ty {
        Type::FLOAT4_ARRAY => "ARRAY".into(),
        _ => format_type(ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_catalog_queries_and_their_columns() {
        assert!(is_catalog_query("SELECT n.nspname FROM pg_catalog.pg_namespace n"));
        assert!(is_catalog_query("SELECT table_name FROM information_schema.tables"));
        assert!(!is_catalog_query("SELECT pg_catalog.version()"));
        assert!(!is_catalog_query("SELECT * FROM contacts.people"));
        assert!(!is_catalog_query("INSERT INTO pg_catalog.pg_class VALUES (1)"));
        assert_eq!(
            columns("SELECT n.nspname AS \"Name\", pg_catalog.pg_get_userbyid(n.nspowner), c.oid, 1 + 1 FROM x"),
            vec!["Name", "pg_get_userbyid", "oid", "?column?"]
        );
    }
}
