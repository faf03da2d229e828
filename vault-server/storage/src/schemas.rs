//! The schemas an engine knows: the base set it was opened with (the
//! built-in files and an operator's `--schemas-dir`) and the schemas
//! published at run time, which live in the control database
//! (`published_schemas`, decision 0031). Each schema name has one
//! [`Publisher`]; a published name is a namespace its first publisher
//! holds.
//!
//! Readers take a [`KnownSchemas`] snapshot (an `Arc`, cheap); publishing
//! and [`refresh`](crate::Engine::refresh_schemas) swap in a new one, so a
//! version published by another process on the same control database
//! (`coffer schema publish` while the server runs) is seen at the next
//! refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use coffer_core::TableName;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::schema::{SchemaDef, TableDef};

use crate::control::ControlDb;
use crate::error::StorageError;

/// Who published a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// Built into Coffer (the repository's `schemas/` files).
    Coffer,
    /// The operator of this server: a `--schemas-dir` file, or
    /// `coffer schema publish` without an app.
    Operator,
    /// An app, by client id.
    App(String),
}

/// Bounds on what one publisher may put into the registry. Built-in and
/// operator files are not bounded; apps are, so that one app cannot make
/// every consent page, listing or codegen run heavy.
pub mod limits {
    /// Tables in one schema version.
    pub const MAX_TABLES: usize = 32;
    /// Columns in one table.
    pub const MAX_COLUMNS: usize = 128;
    /// Characters in one description.
    pub const MAX_DESCRIPTION: usize = 1_000;
    /// Characters in one `sensitive` label.
    pub const MAX_SENSITIVE_LABEL: usize = 60;
    /// Versions of one schema name.
    pub const MAX_VERSIONS: u32 = 100;
    /// Schema names one app holds.
    pub const MAX_NAMESPACES_PER_APP: i64 = 20;
}

/// Names no one can publish under, besides the base schemas' names: the
/// names Postgres clients take for their own catalogs, and the server's.
fn is_reserved_name(name: &str) -> bool {
    name.starts_with("pg_") || name.starts_with("coffer") || matches!(name, "information_schema" | "public" | "vault")
}

/// The names of the built-in schemas, read once (every reload of the
/// known schemas asks).
static BUILTIN_NAMES: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    SchemaRegistry::builtin()
        .map(|r| r.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default()
});

/// A snapshot of the schemas an engine knows.
#[derive(Clone, Debug)]
pub struct KnownSchemas {
    registry: Arc<SchemaRegistry>,
    publishers: BTreeMap<String, Publisher>,
    /// The names of the base schemas, which nobody can publish under.
    base: BTreeSet<String>,
    /// The control database's published stamp this snapshot was built at.
    stamp: (i64, i64),
}

impl KnownSchemas {
    /// The registry: every version of every schema.
    pub fn registry(&self) -> &Arc<SchemaRegistry> {
        &self.registry
    }

    /// Who published schema `name` (`None` when it is unknown).
    pub fn publisher(&self, name: &str) -> Option<&Publisher> {
        self.publishers.get(name)
    }

    /// The base schemas (built-in and operator files) and those published in
    /// `db`. A published schema whose name a base schema has is left out (the
    /// operator's file wins), as is one that no longer loads; both are
    /// logged.
    pub(crate) async fn load(base: &SchemaRegistry, db: &ControlDb) -> Result<Self, StorageError> {
        let mut publishers: BTreeMap<String, Publisher> = base
            .iter()
            .map(|s| {
                let who = if BUILTIN_NAMES.contains(&s.name) {
                    Publisher::Coffer
                } else {
                    Publisher::Operator
                };
                (s.name.clone(), who)
            })
            .collect();
        let stamp = db.published_stamp().await?;
        let mut registry = base.clone();
        for row in db.published_schemas().await? {
            if base.latest(&row.name).is_some() {
                tracing::warn!(schema = %row.name, "a published schema has the name of a built-in or --schemas-dir schema; the file wins");
                continue;
            }
            let source = format!("published schema {} version {}", row.name, row.version);
            let loaded = SchemaRegistry::parse(&row.definition, &source).and_then(|def| registry.insert(def, &source));
            if let Err(e) = loaded {
                tracing::warn!(error = %e, "a published schema no longer loads; it is left out");
                continue;
            }
            publishers.insert(
                row.name.clone(),
                row.publisher.map_or(Publisher::Operator, Publisher::App),
            );
        }
        Ok(Self {
            registry: Arc::new(registry),
            publishers,
            base: base.iter().map(|s| s.name.clone()).collect(),
            stamp,
        })
    }

    /// Whether the control database's published schemas moved on since this
    /// snapshot.
    pub(crate) async fn is_stale(&self, db: &ControlDb) -> Result<bool, StorageError> {
        Ok(db.published_stamp().await? != self.stamp)
    }
}

/// What [`crate::Engine::publish_schema`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The schema's name.
    pub name: String,
    /// The version stored.
    pub version: u32,
    /// True for a new version; false when an existing version was replaced
    /// by an additive change (or published again unchanged).
    pub created: bool,
}

/// Checks the publishing rules that the schema format itself does not
/// have: the name is free to claim, an app stays within [`limits`], a
/// version follows the one before it, and references to other schemas name
/// tables that exist. `known` is the current snapshot; `stored` the
/// versions of this name already published.
pub(crate) fn check_publishable(
    def: &SchemaDef,
    publisher: &Publisher,
    known: &KnownSchemas,
    stored: &[(u32, String)],
) -> Result<(), StorageError> {
    let refuse = |reason: String| Err(StorageError::Unpublishable(reason));
    if known.base.contains(&def.name) {
        return Err(StorageError::NamespaceTaken(def.name.clone()));
    }
    if is_reserved_name(&def.name) {
        return refuse(format!(
            "the schema name {} is reserved (names starting with pg_ or coffer, public, vault and \
             information_schema are); choose a name of your own, such as yourapp_{}",
            def.name, def.name
        ));
    }
    if matches!(publisher, Publisher::App(_)) {
        check_limits(def)?;
    }
    let newest = stored.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if def.version > newest + 1 {
        return refuse(if newest == 0 {
            format!(
                "schema {} has no published version yet, so this one must be version 1, not {}",
                def.name, def.version
            )
        } else {
            format!(
                "schema {} has versions up to {newest}; the next one is {}, not {}",
                def.name,
                newest + 1,
                def.version
            )
        });
    }
    if def.version > limits::MAX_VERSIONS {
        return refuse(format!(
            "schema {} would have more than {} versions",
            def.name,
            limits::MAX_VERSIONS
        ));
    }
    for table in &def.tables {
        for column in &table.columns {
            let Some(target) = column.references.as_deref().and_then(|r| r.parse::<TableName>().ok()) else {
                continue;
            };
            if target.schema != def.name && known.registry().table(&target).is_none() {
                return refuse(format!(
                    "table {}, column {}: references {target}, which no known schema has",
                    table.name, column.name
                ));
            }
        }
    }
    Ok(())
}

/// The bounds of [`limits`], for an app's schema.
fn check_limits(def: &SchemaDef) -> Result<(), StorageError> {
    let refuse = |reason: String| Err(StorageError::Unpublishable(reason));
    if def.tables.len() > limits::MAX_TABLES {
        return refuse(format!(
            "schema {} has {} tables; at most {} are allowed",
            def.name,
            def.tables.len(),
            limits::MAX_TABLES
        ));
    }
    let long = |text: &str| text.chars().count() > limits::MAX_DESCRIPTION;
    if long(&def.description) {
        return refuse(format!(
            "the description of schema {} is longer than {} characters",
            def.name,
            limits::MAX_DESCRIPTION
        ));
    }
    for table in &def.tables {
        check_table_limits(table, long)?;
    }
    Ok(())
}

fn check_table_limits(table: &TableDef, long: impl Fn(&str) -> bool) -> Result<(), StorageError> {
    let refuse = |reason: String| Err(StorageError::Unpublishable(reason));
    if table.columns.len() > limits::MAX_COLUMNS {
        return refuse(format!(
            "table {} has {} columns; at most {} are allowed",
            table.name,
            table.columns.len(),
            limits::MAX_COLUMNS
        ));
    }
    if long(&table.description) {
        return refuse(format!(
            "the description of table {} is longer than {} characters",
            table.name,
            limits::MAX_DESCRIPTION
        ));
    }
    for column in &table.columns {
        if long(&column.description) {
            return refuse(format!(
                "table {}, column {}: the description is longer than {} characters",
                table.name,
                column.name,
                limits::MAX_DESCRIPTION
            ));
        }
        if column
            .sensitive
            .as_deref()
            .is_some_and(|l| l.chars().count() > limits::MAX_SENSITIVE_LABEL)
        {
            return refuse(format!(
                "table {}, column {}: the sensitive label is longer than {} characters",
                table.name,
                column.name,
                limits::MAX_SENSITIVE_LABEL
            ));
        }
    }
    Ok(())
}
