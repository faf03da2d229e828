//! Loads, validates and indexes schema definitions.
//!
//! A definition is checked with [`validate`] before it enters a
//! [`SchemaRegistry`]. Redefining a schema version that is already known (a
//! newer copy of a file, or a definition stored by an earlier run) is allowed
//! only when the change is additive, see [`check_evolution`].
//!
//! A version N ≥ 2 may relate its tables to version N−1 (`from_previous`,
//! see [`super::lens`]); the registry checks each such lens against N−1 as
//! soon as both versions are present, whichever comes first. A version whose
//! predecessor is missing is taken, and reported by
//! [`SchemaRegistry::missing_predecessors`] and
//! [`SchemaRegistry::check_complete`].
//!
//! Every error names where the definition came from (usually a file name),
//! and the table and column the problem is in, so that a message can be acted
//! on without reading the code.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::lens::{check_lens, check_stable, validate_ops};
use super::{ColumnDef, ColumnType, SYSTEM_COLUMNS, SchemaDef, TableDef, TableName, is_identifier};

/// The built-in schema files, embedded so the binary works from any directory.
/// Each entry is the file's name as shown in messages, and its text.
const BUILTIN: &[(&str, &str)] = &[
    (
        "schemas/bookmarks.json",
        include_str!("../../../../schemas/bookmarks.json"),
    ),
    (
        "schemas/calendar.json",
        include_str!("../../../../schemas/calendar.json"),
    ),
    (
        "schemas/contacts.json",
        include_str!("../../../../schemas/contacts.json"),
    ),
    ("schemas/health.json", include_str!("../../../../schemas/health.json")),
    ("schemas/journal.json", include_str!("../../../../schemas/journal.json")),
    ("schemas/notes.json", include_str!("../../../../schemas/notes.json")),
    ("schemas/tasks.json", include_str!("../../../../schemas/tasks.json")),
];

/// How identifiers are spelled, for error messages.
const IDENTIFIER_RULE: &str = "use 1 to 63 lower case letters a-z, digits and _, starting with a letter";

/// Where in a schema definition a problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Where the definition came from: a file name such as
    /// `schemas/contacts.json`, or another origin such as `control database`.
    pub source: String,
    /// The table, when the problem is in one.
    pub table: Option<String>,
    /// The column, when the problem is in one.
    pub column: Option<String>,
}

impl Location {
    /// The whole definition from `source`.
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            table: None,
            column: None,
        }
    }

    /// Table `table` of the definition from `source`.
    pub fn table(source: &str, table: &str) -> Self {
        Self {
            table: Some(table.to_owned()),
            ..Self::new(source)
        }
    }

    /// Column `column` of table `table` of the definition from `source`.
    pub fn column(source: &str, table: &str, column: &str) -> Self {
        Self {
            column: Some(column.to_owned()),
            ..Self::table(source, table)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(table) = &self.table {
            write!(f, ": table {}", shown(table))?;
        }
        if let Some(column) = &self.column {
            let sep = if self.table.is_some() { "," } else { ":" };
            write!(f, "{sep} column {}", shown(column))?;
        }
        Ok(())
    }
}

/// A name as shown in a location: quoted only when it would be hard to read.
fn shown(name: &str) -> String {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == ',') {
        format!("{name:?}")
    } else {
        name.to_owned()
    }
}

/// Error for an ill-formed schema or a forbidden change between two
/// definitions of the same schema version.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A schema file could not be read.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
    /// The text is not JSON, or does not have the shape of a schema file. The
    /// message ends with serde_json's line and column when it has one.
    #[error("{at}: {message}")]
    Parse {
        /// The file, and the table and column when they could be found.
        at: Location,
        /// What is wrong, as serde_json reports it.
        message: String,
    },
    /// The definition is well-formed JSON but breaks a rule of the format.
    #[error("{at}: {reason}")]
    Invalid {
        /// The file, table and column the problem is in.
        at: Location,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A redefinition of a known schema version is not additive.
    #[error("{at}: {reason}; a change that is not additive needs a new schema version")]
    NotAdditive {
        /// The file, table and column the change is in.
        at: Location,
        /// The change.
        reason: String,
    },
}

impl SchemaError {
    /// Where the problem is, when it is in a definition (not for I/O errors).
    pub fn location(&self) -> Option<&Location> {
        match self {
            SchemaError::Io { .. } => None,
            SchemaError::Parse { at, .. } | SchemaError::Invalid { at, .. } | SchemaError::NotAdditive { at, .. } => {
                Some(at)
            }
        }
    }
}

pub(crate) fn invalid(at: Location, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        at,
        reason: reason.into(),
    }
}

fn not_additive(at: Location, reason: impl Into<String>) -> SchemaError {
    SchemaError::NotAdditive {
        at,
        reason: reason.into(),
    }
}

/// Checks that a definition follows the rules of the schema format: names are
/// identifiers and unique, user columns do not use system names, every
/// schema, table and column is described, references are well-formed, and so
/// on. `source` names where the definition came from, for messages.
///
/// References into other schemas are checked for form only, as the other
/// schema may not be known yet.
pub fn validate(def: &SchemaDef, source: &str) -> Result<(), SchemaError> {
    let at = || Location::new(source);
    if !is_identifier(&def.name) {
        return Err(invalid(
            at(),
            format!(
                "schema name {:?} is not a valid identifier: {IDENTIFIER_RULE}",
                def.name
            ),
        ));
    }
    if def.version < 1 {
        return Err(invalid(
            at(),
            format!("schema {} has version {}; versions start at 1", def.name, def.version),
        ));
    }
    if def.description.trim().is_empty() {
        return Err(invalid(
            at(),
            format!(
                "schema {} has an empty description; describe in plain words what it holds",
                def.name
            ),
        ));
    }
    if def.tables.is_empty() {
        return Err(invalid(
            at(),
            format!("schema {} has no tables; a schema needs at least one", def.name),
        ));
    }
    let mut tables = HashSet::new();
    for table in &def.tables {
        let at = || Location::table(source, &table.name);
        if !is_identifier(&table.name) {
            return Err(invalid(
                at(),
                format!(
                    "table name {:?} is not a valid identifier: {IDENTIFIER_RULE}",
                    table.name
                ),
            ));
        }
        if !tables.insert(table.name.as_str()) {
            return Err(invalid(at(), "the table is defined more than once"));
        }
        if table.description.trim().is_empty() {
            return Err(invalid(
                at(),
                "the table has an empty description; say in plain words what a row is, \
                 it is shown on the consent page",
            ));
        }
        if table.columns.is_empty() {
            return Err(invalid(at(), "the table has no columns; a table needs at least one"));
        }
        let mut columns = HashSet::new();
        for column in &table.columns {
            validate_column(def, table, column, source)?;
            if !columns.insert(column.name.as_str()) {
                return Err(invalid(
                    Location::column(source, &table.name, &column.name),
                    "the column is declared more than once",
                ));
            }
        }
    }
    validate_ops(def, source)
}

fn validate_column(def: &SchemaDef, table: &TableDef, column: &ColumnDef, source: &str) -> Result<(), SchemaError> {
    let at = || Location::column(source, &table.name, &column.name);
    let name = column.name.as_str();
    if SYSTEM_COLUMNS.contains(&name) {
        return Err(invalid(
            at(),
            format!(
                "{name} is a system column that every table already has ({}); do not declare it",
                SYSTEM_COLUMNS.join(", ")
            ),
        ));
    }
    if name.starts_with('_') {
        return Err(invalid(
            at(),
            format!("column name {name:?} starts with _, which is reserved for system columns"),
        ));
    }
    if !is_identifier(name) {
        return Err(invalid(
            at(),
            format!("column name {name:?} is not a valid identifier: {IDENTIFIER_RULE}"),
        ));
    }
    if column.description.trim().is_empty() {
        return Err(invalid(
            at(),
            "the column has an empty description; say in plain words what it holds, \
             it is shown on the consent page",
        ));
    }
    if let Some(label) = &column.sensitive
        && label.trim().is_empty()
    {
        return Err(invalid(
            at(),
            "the sensitive label is empty; name the kind of data (for example \"health\" \
             or \"location\") or leave the field out",
        ));
    }
    if let Some(target) = &column.references {
        let Ok(target_name) = target.parse::<TableName>() else {
            return Err(invalid(
                at(),
                format!("references {target:?}, which is not of the form schema.table"),
            ));
        };
        if target_name.schema == def.name && def.table(&target_name.table).is_none() {
            return Err(invalid(
                at(),
                format!(
                    "references {target_name}, but schema {} has no table {}",
                    def.name, target_name.table
                ),
            ));
        }
        if column.ty != ColumnType::Text {
            return Err(invalid(
                at(),
                format!(
                    "references {target_name} but has type {}; a reference holds a row id, \
                     so its type must be text",
                    column.ty
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `new` may replace `old`, two definitions of the same schema
/// name and version. Within a version only additive changes are allowed:
/// every old table and column must still exist, each column with the same
/// type, nullability and reference; columns added to an existing table must
/// be nullable (rows stored earlier have no value for them). New tables are
/// allowed, and descriptions and sensitive labels may change. A table's
/// `from_previous` keeps every operation it had (they say how stored rows
/// read); operations may be added, for columns added in either version.
///
/// `source` names where `new` came from, for messages.
pub fn check_evolution(old: &SchemaDef, new: &SchemaDef, source: &str) -> Result<(), SchemaError> {
    if old.name != new.name || old.version != new.version {
        return Err(invalid(
            Location::new(source),
            format!(
                "schema {} version {} cannot replace schema {} version {}: only two \
                 definitions of the same schema version can be compared",
                new.name, new.version, old.name, old.version
            ),
        ));
    }
    for old_table in &old.tables {
        let Some(new_table) = new.table(&old_table.name) else {
            return Err(not_additive(
                Location::table(source, &old_table.name),
                format!("the table was removed from schema {} version {}", new.name, new.version),
            ));
        };
        for old_col in &old_table.columns {
            let at = || Location::column(source, &old_table.name, &old_col.name);
            let Some(new_col) = new_table.column(&old_col.name) else {
                return Err(not_additive(at(), "the column was removed"));
            };
            if new_col.ty != old_col.ty {
                return Err(not_additive(
                    at(),
                    format!("the type changed from {} to {}", old_col.ty, new_col.ty),
                ));
            }
            if new_col.nullable != old_col.nullable {
                let reason = if old_col.nullable {
                    "the column was nullable and is now not nullable"
                } else {
                    "the column was not nullable and is now nullable"
                };
                return Err(not_additive(at(), reason));
            }
            if new_col.references != old_col.references {
                let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "nothing".into());
                return Err(not_additive(
                    at(),
                    format!(
                        "the reference changed from {} to {}",
                        show(&old_col.references),
                        show(&new_col.references)
                    ),
                ));
            }
        }
        if let Some(op) = old_table
            .from_previous
            .iter()
            .find(|op| !new_table.from_previous.contains(op))
        {
            return Err(not_additive(
                Location::table(source, &old_table.name),
                format!("the operation {op} was removed from from_previous"),
            ));
        }
        for new_col in &new_table.columns {
            if old_table.column(&new_col.name).is_none() && !new_col.nullable {
                return Err(not_additive(
                    Location::column(source, &new_table.name, &new_col.name),
                    "the column is new and not nullable, but rows stored before it was added \
                     have no value for it (make it nullable)",
                ));
            }
        }
    }
    Ok(())
}

/// The set of known schemas, by name and version.
#[derive(Clone, Debug, Default)]
pub struct SchemaRegistry {
    schemas: BTreeMap<(String, u32), Arc<SchemaDef>>,
    /// Where each definition came from, for messages about its lens.
    sources: BTreeMap<(String, u32), String>,
}

impl SchemaRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in schemas of the repository's `schemas/` folder, embedded in
    /// the binary at build time.
    pub fn builtin() -> Result<Self, SchemaError> {
        let mut registry = Self::new();
        for (source, json) in BUILTIN {
            let def = Self::parse(json, source)?;
            registry.insert(def, source)?;
        }
        registry.check_complete()?;
        Ok(registry)
    }

    /// Loads every `*.json` file of directory `dir` (in file name order).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, SchemaError> {
        let dir = dir.as_ref();
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |error| SchemaError::Io { path, error }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.extension().is_some_and(|e| e == "json") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut registry = Self::new();
        for path in files {
            let json = std::fs::read_to_string(&path).map_err(io(&path))?;
            let source = path.display().to_string();
            let def = Self::parse(&json, &source)?;
            registry.insert(def, &source)?;
        }
        registry.check_complete()?;
        Ok(registry)
    }

    /// Parses and [`validate`]s the text of a schema file. `source` names
    /// where the text came from, for messages.
    pub fn parse(json: &str, source: &str) -> Result<SchemaDef, SchemaError> {
        let def: SchemaDef = serde_json::from_str(json).map_err(|e| SchemaError::Parse {
            at: locate_parse_error(json, source, &e).unwrap_or_else(|| Location::new(source)),
            message: e.to_string(),
        })?;
        validate(&def, source)?;
        Ok(def)
    }

    /// Adds a schema after [`validate`]-ing it. If the registry already has
    /// the same name and version, the new definition replaces it only if the
    /// change is additive ([`check_evolution`]).
    ///
    /// Versions may come in any order. When the previous version is
    /// present, the definition's lens is checked against it
    /// ([`check_lens`]); when the next version is present, the next
    /// version's lens is checked against the definition (an error then names
    /// the next version's source). A table may not come back after a version
    /// that lacks it. A missing previous version is not an error here, see
    /// [`check_complete`](Self::check_complete).
    pub fn insert(&mut self, def: SchemaDef, source: &str) -> Result<(), SchemaError> {
        validate(&def, source)?;
        let key = (def.name.clone(), def.version);
        if let Some(old) = self.schemas.get(&key) {
            check_evolution(old, &def, source)?;
        }
        if let Some(prev) = def.version.checked_sub(1).and_then(|v| self.get(&def.name, v)) {
            check_lens(&prev, &def, source)?;
        }
        if let Some(next) = def.version.checked_add(1).and_then(|v| self.get(&def.name, v)) {
            check_lens(&def, &next, self.source(&def.name, next.version))?;
        }
        self.check_tables_do_not_return(&def, source)?;
        if self.schemas.contains_key(&key) {
            // Additive changes of each version may still move a stored
            // column of a family: compare the families before and after.
            let name = def.name.clone();
            let mut next = self.clone();
            next.put(key, def, source);
            check_stable(self, &next, &name).map_err(|e| not_additive(Location::new(source), e.to_string()))?;
            *self = next;
        } else {
            self.put(key, def, source);
        }
        Ok(())
    }

    fn put(&mut self, key: (String, u32), def: SchemaDef, source: &str) {
        self.sources.insert(key.clone(), source.to_owned());
        self.schemas.insert(key, Arc::new(def));
    }

    /// Where the definition of `name` at `version` came from.
    fn source(&self, name: &str, version: u32) -> &str {
        self.sources
            .get(&(name.to_owned(), version))
            .map_or("unknown source", String::as_str)
    }

    /// Checks that, with `def` in the registry, every table of the schema is
    /// in a run of versions without a hole: a table that a version dropped
    /// does not come back in a later one (it would share the stored rows of
    /// a table it has nothing to do with).
    fn check_tables_do_not_return(&self, def: &SchemaDef, source: &str) -> Result<(), SchemaError> {
        let mut versions: BTreeMap<u32, (&SchemaDef, &str)> = self
            .versions(&def.name)
            .map(|s| (s.version, (s.as_ref(), self.source(&s.name, s.version))))
            .collect();
        versions.insert(def.version, (def, source));
        for (&version, &(later, later_source)) in &versions {
            let Some(&(prev, _)) = version.checked_sub(1).and_then(|v| versions.get(&v)) else {
                continue;
            };
            for table in &later.tables {
                if prev.table(&table.name).is_some() {
                    continue;
                }
                if let Some((&old, _)) = versions
                    .range(..version - 1)
                    .rev()
                    .find(|(_, (s, _))| s.table(&table.name).is_some())
                {
                    return Err(invalid(
                        Location::table(later_source, &table.name),
                        format!(
                            "version {old} has a table {0} and version {1} does not, so version \
                             {version} cannot have one again: a table that a version drops does \
                             not come back; give the table another name",
                            table.name,
                            version - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every schema version N ≥ 2 whose version N−1 is missing, as
    /// (name, N), sorted. A version needs its predecessor: its lens says how
    /// its rows relate to the predecessor's.
    pub fn missing_predecessors(&self) -> Vec<(String, u32)> {
        self.schemas
            .keys()
            .filter(|(name, version)| *version >= 2 && !self.schemas.contains_key(&(name.clone(), version - 1)))
            .cloned()
            .collect()
    }

    /// Fails for the first version N ≥ 2 whose version N−1 is missing (see
    /// [`missing_predecessors`](Self::missing_predecessors)). Loading
    /// ([`builtin`](Self::builtin), [`from_dir`](Self::from_dir)) runs it
    /// once every file is in.
    pub fn check_complete(&self) -> Result<(), SchemaError> {
        match self.missing_predecessors().first() {
            Some((name, version)) => Err(invalid(
                Location::new(self.source(name, *version)),
                format!(
                    "schema {name} version {version} needs version {} of the schema, which is missing",
                    version - 1
                ),
            )),
            None => Ok(()),
        }
    }

    /// Every version of schema `name`, oldest first.
    pub fn versions(&self, name: &str) -> impl Iterator<Item = &Arc<SchemaDef>> + '_ {
        self.schemas
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .map(|(_, def)| def)
    }

    /// The schema `name` at `version`.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<SchemaDef>> {
        self.schemas.get(&(name.to_owned(), version)).cloned()
    }

    /// The highest version of schema `name`.
    pub fn latest(&self, name: &str) -> Option<Arc<SchemaDef>> {
        self.latest_ref(name).cloned()
    }

    fn latest_ref(&self, name: &str) -> Option<&Arc<SchemaDef>> {
        self.schemas
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .next_back()
            .map(|(_, def)| def)
    }

    /// Every schema, every version, sorted by name then version.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SchemaDef>> + '_ {
        self.schemas.values()
    }

    /// The table `name` in the latest version of its schema, with that schema.
    pub fn table(&self, name: &TableName) -> Option<(Arc<SchemaDef>, &TableDef)> {
        let schema = self.latest_ref(&name.schema)?;
        let table = schema.table(&name.table)?;
        Some((schema.clone(), table))
    }

    /// The number of schema versions known.
    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    /// Whether no schema is known.
    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }
}

/// Finds the table and column a serde_json data error (unknown column type,
/// missing or unknown field, wrong value type) is in, by deserializing the
/// document again piece by piece. Returns `None` for syntax errors, or when
/// the piece that fails does not report the same error as the whole document
/// did (the message then only names the file, with serde_json's position).
fn locate_parse_error(json: &str, source: &str, err: &serde_json::Error) -> Option<Location> {
    if err.classify() != serde_json::error::Category::Data {
        return None;
    }
    let whole = err.to_string();
    let same = |e: serde_json::Error| {
        whole == format!("{e} at line {} column {}", err.line(), err.column()) || whole == e.to_string()
    };
    let doc: Value = serde_json::from_str(json).ok()?;
    let (top, tables) = without_array(&doc, "tables");
    if let Err(e) = SchemaDef::deserialize(&top) {
        return same(e).then(|| Location::new(source));
    }
    for (i, table) in tables.iter().enumerate() {
        let table_name = piece_name(table, i);
        let (shallow, columns) = without_array(table, "columns");
        if let Err(e) = TableDef::deserialize(&shallow) {
            return same(e).then(|| Location::table(source, &table_name));
        }
        for (j, column) in columns.iter().enumerate() {
            if let Err(e) = ColumnDef::deserialize(column) {
                return same(e).then(|| Location::column(source, &table_name, &piece_name(column, j)));
            }
        }
    }
    None
}

/// A copy of object `value` whose array field `field` is emptied, and the
/// items of that array. Anything else is returned unchanged, with no items.
fn without_array<'a>(value: &'a Value, field: &str) -> (Value, &'a [Value]) {
    let mut copy = value.clone();
    if let (Value::Object(map), Some(Value::Array(items))) = (&mut copy, value.get(field)) {
        map.insert(field.to_owned(), Value::Array(Vec::new()));
        return (copy, items.as_slice());
    }
    (copy, &[])
}

/// The `name` of a table or column object, or its position when it has none.
fn piece_name(piece: &Value, index: usize) -> String {
    match piece.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => format!("#{}", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    const SRC: &str = "schemas/test.json";

    /// A small valid schema: `parents` and `children`, children referencing
    /// parents.
    fn base() -> Value {
        json!({
            "name": "test",
            "version": 1,
            "description": "Test data.",
            "tables": [
                {
                    "name": "parents",
                    "description": "Parents.",
                    "columns": [
                        {"name": "name", "type": "text", "nullable": false, "description": "Name."},
                        {"name": "score", "type": "integer", "description": "Score.", "sensitive": "health"}
                    ]
                },
                {
                    "name": "children",
                    "description": "Children.",
                    "columns": [
                        {"name": "parent_id", "type": "text", "references": "test.parents", "description": "Parent."},
                        {"name": "label", "type": "text", "description": "Label."}
                    ]
                }
            ]
        })
    }

    fn def(v: Value) -> SchemaDef {
        serde_json::from_value(v).expect("test definition has the file format's shape")
    }

    fn column(v: &mut Value, table: usize, column: usize) -> &mut Value {
        &mut v["tables"][table]["columns"][column]
    }

    /// The message of the validation error for `v`; panics if `v` is valid.
    fn rejected(v: Value) -> String {
        let err = validate(&def(v), SRC).expect_err("definition should be rejected");
        assert!(matches!(err, SchemaError::Invalid { .. }), "{err:?}");
        err.to_string()
    }

    fn assert_contains(message: &str, parts: &[&str]) {
        for part in parts {
            assert!(message.contains(part), "{message:?} should contain {part:?}");
        }
    }

    // ---- built-in schemas ----

    fn schemas_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
    }

    #[test]
    fn builtin_schemas_load_and_validate() {
        let registry = SchemaRegistry::builtin().expect("built-in schemas are valid");
        let names: Vec<_> = registry.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "bookmarks",
            "calendar",
            "contacts",
            "health",
            "journal",
            "notes",
            "tasks",
        ] {
            assert!(names.contains(&name), "missing built-in schema {name}");
        }
        for (source, json) in BUILTIN {
            let def = SchemaRegistry::parse(json, source).expect("parses");
            validate(&def, source).expect("validates");
            assert_eq!(def.version, 1, "{source}");
            let file_stem = source.trim_start_matches("schemas/").trim_end_matches(".json");
            assert_eq!(def.name, file_stem, "{source}: file name and schema name differ");
            assert_eq!(registry.get(&def.name, 1).as_deref(), Some(&def));
        }
    }

    #[test]
    fn every_schema_file_is_embedded() {
        let on_disk: BTreeSet<String> = std::fs::read_dir(schemas_dir())
            .expect("schemas directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .map(|n| format!("schemas/{n}"))
            .collect();
        let embedded: BTreeSet<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, embedded, "BUILTIN must list every file of schemas/");
    }

    #[test]
    fn from_dir_matches_builtin() {
        let from_dir = SchemaRegistry::from_dir(schemas_dir()).expect("loads");
        let builtin = SchemaRegistry::builtin().expect("loads");
        let a: Vec<_> = from_dir.iter().collect();
        let b: Vec<_> = builtin.iter().collect();
        assert_eq!(a, b);
    }

    #[test]
    fn builtin_schemas_use_every_column_type() {
        let registry = SchemaRegistry::builtin().expect("loads");
        let used: HashSet<String> = registry
            .iter()
            .flat_map(|s| s.tables.iter())
            .flat_map(|t| t.columns.iter())
            .map(|c| match c.ty {
                ColumnType::Vector(_) => "vector".to_owned(),
                ty => ty.to_string(),
            })
            .collect();
        for ty in [
            "text",
            "integer",
            "float",
            "boolean",
            "timestamp",
            "date",
            "json",
            "bytes",
            "uuid",
            "vector",
        ] {
            assert!(used.contains(ty), "no built-in column has type {ty}");
        }
    }

    #[test]
    fn builtin_references_resolve() {
        let registry = SchemaRegistry::builtin().expect("loads");
        for schema in registry.iter() {
            for table in &schema.tables {
                for col in &table.columns {
                    if let Some(target) = &col.references {
                        let name: TableName = target.parse().expect("validated");
                        assert!(
                            registry.table(&name).is_some(),
                            "{}.{}.{} references unknown table {target}",
                            schema.name,
                            table.name,
                            col.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn builtin_contains_the_documented_columns() {
        let registry = SchemaRegistry::builtin().expect("loads");
        let has = |table: &str, column: &str, ty: &str| {
            let name: TableName = table.parse().expect("table name");
            let (_, t) = registry.table(&name).unwrap_or_else(|| panic!("no table {table}"));
            let c = t.column(column).unwrap_or_else(|| panic!("no column {table}.{column}"));
            assert_eq!(c.ty.to_string(), ty, "{table}.{column}");
            c.clone()
        };
        has("contacts.people", "display_name", "text");
        assert_eq!(
            has("contacts.people", "birthday", "date").sensitive.as_deref(),
            Some("date of birth")
        );
        has("contacts.people", "photo", "bytes");
        has("calendar.events", "starts_at", "timestamp");
        has("calendar.events", "all_day", "boolean");
        assert_eq!(
            has("calendar.events", "location", "text").sensitive.as_deref(),
            Some("location")
        );
        has("notes.notes", "embedding", "vector(384)");
        has("notes.notes", "pinned", "boolean");
        let list = has("tasks.items", "list_id", "text");
        assert_eq!(list.references.as_deref(), Some("tasks.lists"));
        has("tasks.items", "priority", "integer");
        has("bookmarks.bookmarks", "favicon", "bytes");
        has("bookmarks.bookmarks", "visited_at", "timestamp");
    }

    // ---- validation ----

    #[test]
    fn valid_definition_is_accepted() {
        validate(&def(base()), SRC).expect("valid");
    }

    #[test]
    fn rejects_bad_schema_name() {
        let mut v = base();
        v["name"] = json!("My Schema");
        assert_contains(
            &rejected(v),
            &[SRC, "schema name \"My Schema\"", "not a valid identifier"],
        );
    }

    #[test]
    fn rejects_version_zero() {
        let mut v = base();
        v["version"] = json!(0);
        assert_contains(&rejected(v), &[SRC, "schema test", "version 0", "start at 1"]);
    }

    #[test]
    fn rejects_empty_schema_description() {
        let mut v = base();
        v["description"] = json!("  ");
        assert_contains(&rejected(v), &[SRC, "schema test", "empty description"]);
    }

    #[test]
    fn rejects_schema_without_tables() {
        let mut v = base();
        v["tables"] = json!([]);
        assert_contains(&rejected(v), &[SRC, "schema test has no tables"]);
    }

    #[test]
    fn rejects_bad_table_name() {
        let mut v = base();
        v["tables"][0]["name"] = json!("Parents");
        v["tables"][1]["columns"][0]["references"] = json!("test.other");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table Parents: ",
                "table name \"Parents\"",
                "not a valid identifier",
            ],
        );
    }

    #[test]
    fn rejects_duplicate_table() {
        let mut v = base();
        let copy = v["tables"][1].clone();
        v["tables"].as_array_mut().expect("array").push(copy);
        assert_contains(&rejected(v), &["schemas/test.json: table children: ", "more than once"]);
    }

    #[test]
    fn rejects_empty_table_description() {
        let mut v = base();
        v["tables"][1]["description"] = json!("");
        assert_contains(
            &rejected(v),
            &["schemas/test.json: table children: ", "empty description"],
        );
    }

    #[test]
    fn rejects_table_without_columns() {
        let mut v = base();
        v["tables"][1]["columns"] = json!([]);
        assert_contains(&rejected(v), &["schemas/test.json: table children: ", "no columns"]);
    }

    #[test]
    fn rejects_bad_column_name() {
        let mut v = base();
        column(&mut v, 0, 1)["name"] = json!("e-mail");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table parents, column e-mail: ",
                "not a valid identifier",
            ],
        );
    }

    #[test]
    fn rejects_column_starting_with_underscore() {
        let mut v = base();
        column(&mut v, 0, 1)["name"] = json!("_secret");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table parents, column _secret: ",
                "reserved for system columns",
            ],
        );
    }

    #[test]
    fn rejects_system_columns() {
        for system in SYSTEM_COLUMNS {
            let mut v = base();
            column(&mut v, 1, 1)["name"] = json!(system);
            assert_contains(
                &rejected(v),
                &[
                    &format!("schemas/test.json: table children, column {system}: "),
                    "system column",
                    "do not declare it",
                ],
            );
        }
    }

    #[test]
    fn rejects_duplicate_column() {
        let mut v = base();
        column(&mut v, 0, 1)["name"] = json!("name");
        assert_contains(
            &rejected(v),
            &["schemas/test.json: table parents, column name: ", "more than once"],
        );
    }

    #[test]
    fn rejects_empty_column_description() {
        let mut v = base();
        column(&mut v, 1, 1)["description"] = json!(" \n");
        assert_contains(
            &rejected(v),
            &["schemas/test.json: table children, column label: ", "empty description"],
        );
    }

    #[test]
    fn rejects_empty_sensitive_label() {
        let mut v = base();
        column(&mut v, 0, 1)["sensitive"] = json!("");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table parents, column score: ",
                "sensitive label is empty",
            ],
        );
    }

    #[test]
    fn rejects_malformed_reference() {
        for bad in ["parents", "test.", "test.parents.name", "Test.Parents", ""] {
            let mut v = base();
            column(&mut v, 1, 0)["references"] = json!(bad);
            assert_contains(
                &rejected(v),
                &[
                    "schemas/test.json: table children, column parent_id: ",
                    &format!("references {bad:?}"),
                    "schema.table",
                ],
            );
        }
    }

    #[test]
    fn rejects_reference_to_missing_table_of_same_schema() {
        let mut v = base();
        column(&mut v, 1, 0)["references"] = json!("test.parnets");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table children, column parent_id: ",
                "references test.parnets, but schema test has no table parnets",
            ],
        );
    }

    #[test]
    fn rejects_reference_that_is_not_text() {
        let mut v = base();
        column(&mut v, 1, 0)["type"] = json!("integer");
        assert_contains(
            &rejected(v),
            &[
                "schemas/test.json: table children, column parent_id: ",
                "type integer",
                "must be text",
            ],
        );
    }

    #[test]
    fn accepts_references_into_other_schemas_and_to_itself() {
        let mut v = base();
        column(&mut v, 1, 0)["references"] = json!("contacts.people");
        column(&mut v, 1, 1)["references"] = json!("test.children");
        validate(&def(v), SRC).expect("valid");
    }

    // ---- parsing ----

    fn parse_error(v: &str) -> String {
        let err = SchemaRegistry::parse(v, SRC).expect_err("should not parse");
        assert!(matches!(err, SchemaError::Parse { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let message = parse_error("{\n  \"name\": \"test\",\n  \"version\": 1,,\n}");
        assert_contains(&message, &["schemas/test.json: ", "line 3 column"]);
    }

    #[test]
    fn unknown_column_type_names_table_and_column() {
        let mut v = base();
        column(&mut v, 0, 1)["type"] = json!("strng");
        let text = serde_json::to_string_pretty(&v).expect("json");
        let message = parse_error(&text);
        assert_contains(
            &message,
            &[
                "schemas/test.json: table parents, column score: ",
                "unknown column type `strng`",
                "at line ",
            ],
        );
        let mut v = base();
        column(&mut v, 1, 1)["type"] = json!("vector(0)");
        let message = parse_error(&v.to_string());
        assert_contains(
            &message,
            &[
                "schemas/test.json: table children, column label: ",
                "unknown column type `vector(0)`",
            ],
        );
    }

    #[test]
    fn unknown_or_missing_fields_name_table_and_column() {
        let mut v = base();
        column(&mut v, 1, 1)["nullible"] = json!(false);
        assert_contains(
            &parse_error(&v.to_string()),
            &[
                "schemas/test.json: table children, column label: ",
                "unknown field `nullible`",
            ],
        );

        let mut v = base();
        column(&mut v, 1, 1)
            .as_object_mut()
            .expect("object")
            .remove("description");
        assert_contains(
            &parse_error(&v.to_string()),
            &[
                "schemas/test.json: table children, column label: ",
                "missing field `description`",
            ],
        );

        let mut v = base();
        v["tables"][0].as_object_mut().expect("object").remove("description");
        assert_contains(
            &parse_error(&v.to_string()),
            &["schemas/test.json: table parents: ", "missing field `description`"],
        );

        let mut v = base();
        column(&mut v, 0, 0).as_object_mut().expect("object").remove("name");
        assert_contains(
            &parse_error(&v.to_string()),
            &["schemas/test.json: table parents, column #1: ", "missing field `name`"],
        );

        let mut v = base();
        v["version"] = json!("1");
        let message = parse_error(&v.to_string());
        assert_contains(&message, &["schemas/test.json: invalid type", "line 1"]);
        assert!(!message.contains("table"), "{message}");
    }

    #[test]
    fn parse_validates() {
        let mut v = base();
        column(&mut v, 0, 0)["name"] = json!("id");
        let err = SchemaRegistry::parse(&v.to_string(), SRC).expect_err("invalid");
        assert_contains(
            &err.to_string(),
            &["schemas/test.json: table parents, column id: ", "system column"],
        );
        assert_eq!(err.location(), Some(&Location::column(SRC, "parents", "id")));
    }

    // ---- evolution ----

    fn evolve(change: impl FnOnce(&mut Value)) -> Result<(), SchemaError> {
        let old = def(base());
        let mut v = base();
        change(&mut v);
        let new = def(v);
        validate(&new, SRC).expect("the changed definition is valid on its own");
        check_evolution(&old, &new, SRC)
    }

    fn not_additive_message(change: impl FnOnce(&mut Value)) -> String {
        let err = evolve(change).expect_err("change should be rejected");
        assert!(matches!(err, SchemaError::NotAdditive { .. }), "{err:?}");
        let message = err.to_string();
        assert_contains(&message, &["a change that is not additive needs a new schema version"]);
        message
    }

    #[test]
    fn additive_changes_are_accepted() {
        evolve(|_| {}).expect("no change");
        evolve(|v| {
            v["tables"][0]["columns"]
                .as_array_mut()
                .expect("array")
                .push(json!({"name": "nickname", "type": "text", "description": "Nickname."}));
        })
        .expect("new nullable column");
        evolve(|v| {
            v["tables"].as_array_mut().expect("array").push(json!({
                "name": "pets",
                "description": "Pets.",
                "columns": [
                    {"name": "name", "type": "text", "nullable": false, "description": "Name."},
                    {"name": "owner_id", "type": "text", "nullable": false,
                     "references": "test.parents", "description": "Owner."}
                ]
            }));
        })
        .expect("new table, with non-nullable columns");
        evolve(|v| {
            v["description"] = json!("Test data, described better.");
            v["tables"][0]["description"] = json!("The parents.");
            column(v, 0, 0)["description"] = json!("The parent's name.");
        })
        .expect("changed descriptions");
        evolve(|v| {
            column(v, 0, 1)["sensitive"] = json!("fitness");
            column(v, 1, 1)["sensitive"] = json!("location");
        })
        .expect("changed and added sensitive labels");
        evolve(|v| {
            v["tables"][0]["columns"].as_array_mut().expect("array").reverse();
        })
        .expect("reordered columns");
    }

    #[test]
    fn removed_column_is_rejected() {
        let message = not_additive_message(|v| {
            v["tables"][0]["columns"].as_array_mut().expect("array").remove(1);
        });
        assert_contains(
            &message,
            &["schemas/test.json: table parents, column score: ", "removed"],
        );
    }

    #[test]
    fn removed_table_is_rejected() {
        let message = not_additive_message(|v| {
            v["tables"].as_array_mut().expect("array").remove(1);
        });
        assert_contains(&message, &["schemas/test.json: table children: ", "table was removed"]);
    }

    #[test]
    fn changed_type_is_rejected() {
        let message = not_additive_message(|v| column(v, 0, 1)["type"] = json!("float"));
        assert_contains(
            &message,
            &[
                "schemas/test.json: table parents, column score: ",
                "type changed from integer to float",
            ],
        );

        // A vector's length is part of its type.
        let with_vector = |n: u32| {
            let mut v = base();
            column(&mut v, 1, 1)["type"] = json!(format!("vector({n})"));
            def(v)
        };
        let err = check_evolution(&with_vector(384), &with_vector(768), SRC).expect_err("changed vector length");
        assert_contains(
            &err.to_string(),
            &[
                "schemas/test.json: table children, column label: ",
                "type changed from vector(384) to vector(768)",
                "not additive",
            ],
        );
    }

    #[test]
    fn changed_nullability_is_rejected() {
        let message = not_additive_message(|v| column(v, 0, 1)["nullable"] = json!(false));
        assert_contains(
            &message,
            &[
                "schemas/test.json: table parents, column score: ",
                "was nullable and is now not nullable",
            ],
        );
        let message = not_additive_message(|v| column(v, 0, 0)["nullable"] = json!(true));
        assert_contains(
            &message,
            &[
                "schemas/test.json: table parents, column name: ",
                "was not nullable and is now nullable",
            ],
        );
    }

    #[test]
    fn new_non_nullable_column_is_rejected() {
        let message = not_additive_message(|v| {
            v["tables"][1]["columns"]
                .as_array_mut()
                .expect("array")
                .push(json!({"name": "age", "type": "integer", "nullable": false, "description": "Age."}));
        });
        assert_contains(
            &message,
            &[
                "schemas/test.json: table children, column age: ",
                "new and not nullable",
            ],
        );
    }

    #[test]
    fn changed_reference_is_rejected() {
        let message = not_additive_message(|v| column(v, 1, 0)["references"] = json!("test.children"));
        assert_contains(
            &message,
            &[
                "schemas/test.json: table children, column parent_id: ",
                "reference changed from test.parents to test.children",
            ],
        );
        let message = not_additive_message(|v| {
            column(v, 1, 0).as_object_mut().expect("object").remove("references");
        });
        assert!(message.contains("from test.parents to nothing"), "{message}");
        let message = not_additive_message(|v| column(v, 1, 1)["references"] = json!("test.parents"));
        assert!(
            message.contains("table children, column label: the reference changed from nothing"),
            "{message}"
        );
    }

    #[test]
    fn comparing_different_schemas_is_an_error() {
        let old = def(base());
        let mut v = base();
        v["version"] = json!(2);
        let err = check_evolution(&old, &def(v), SRC).expect_err("different versions");
        assert_contains(&err.to_string(), &[SRC, "same schema version"]);
    }

    // ---- registry ----

    #[test]
    fn insert_replaces_only_additively() {
        let mut registry = SchemaRegistry::new();
        registry.insert(def(base()), SRC).expect("insert");

        let mut v = base();
        column(&mut v, 1, 1)["description"] = json!("A better label.");
        registry.insert(def(v), "schemas/test2.json").expect("additive");
        let current = registry.get("test", 1).expect("present");
        assert_eq!(current.tables[1].columns[1].description, "A better label.");

        let mut v = base();
        column(&mut v, 1, 1)["type"] = json!("json");
        let err = registry.insert(def(v), "schemas/test3.json").expect_err("not additive");
        assert_contains(
            &err.to_string(),
            &["schemas/test3.json: table children, column label: ", "not additive"],
        );
        let current = registry.get("test", 1).expect("present");
        assert_eq!(current.tables[1].columns[1].ty, ColumnType::Text);

        let mut v = base();
        v["tables"][0]["description"] = json!("");
        registry.insert(def(v), SRC).expect_err("invalid");
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn versions_get_latest_iter_and_table() {
        let mut registry = SchemaRegistry::new();
        assert!(registry.is_empty());
        let mut v2 = base();
        v2["version"] = json!(2);
        v2["tables"][0]["columns"][1]["type"] = json!("float");
        // A new column named like one it replaces: the lens says so.
        v2["tables"][0]["from_previous"] = json!([{"drop": "score"}, {"add": "score"}]);
        v2["tables"].as_array_mut().expect("array").remove(1);
        registry.insert(def(v2), SRC).expect("v2");
        registry.insert(def(base()), SRC).expect("v1");
        let mut other = base();
        other["name"] = json!("alpha");
        column(&mut other, 1, 0)["references"] = json!("alpha.parents");
        registry.insert(def(other), SRC).expect("alpha");

        assert_eq!(registry.len(), 3);
        let order: Vec<_> = registry.iter().map(|s| (s.name.clone(), s.version)).collect();
        assert_eq!(order, [("alpha".into(), 1), ("test".into(), 1), ("test".into(), 2)]);
        assert_eq!(registry.latest("test").map(|s| s.version), Some(2));
        assert_eq!(registry.get("test", 1).map(|s| s.version), Some(1));
        assert!(registry.get("test", 3).is_none());
        assert!(registry.latest("tes").is_none());
        assert!(registry.latest("test_more").is_none());

        let (schema, table) = registry.table(&TableName::new("test", "parents")).expect("table");
        assert_eq!(schema.version, 2);
        assert_eq!(table.column("score").map(|c| c.ty), Some(ColumnType::Float));
        // `children` only exists in version 1; tables resolve against the latest.
        assert!(registry.table(&TableName::new("test", "children")).is_none());
        assert!(registry.table(&TableName::new("nope", "parents")).is_none());
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "coffer-core-registry-{}-{}",
                std::process::id(),
                ulid::Ulid::new()
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn from_dir_loads_json_files_and_names_bad_ones() {
        let dir = TempDir::new();
        std::fs::write(dir.0.join("test.json"), base().to_string()).expect("write");
        std::fs::write(dir.0.join("README.md"), "not a schema").expect("write");
        let registry = SchemaRegistry::from_dir(&dir.0).expect("loads");
        assert_eq!(registry.len(), 1);
        assert!(registry.get("test", 1).is_some());

        let mut bad = base();
        column(&mut bad, 0, 0)["type"] = json!("strng");
        let bad_path = dir.0.join("zz_bad.json");
        std::fs::write(&bad_path, bad.to_string()).expect("write");
        let err = SchemaRegistry::from_dir(&dir.0).expect_err("bad file");
        assert_contains(
            &err.to_string(),
            &[
                &format!("{}: table parents, column name: ", bad_path.display()),
                "unknown column type `strng`",
            ],
        );
    }

    #[test]
    fn from_dir_reports_missing_directory() {
        let dir = TempDir::new();
        let missing = dir.0.join("missing");
        let err = SchemaRegistry::from_dir(&missing).expect_err("missing");
        assert!(matches!(err, SchemaError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read", missing.display())),
            "{err}"
        );
    }
}
