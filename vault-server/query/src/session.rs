//! DataFusion sessions over one vault: a catalog whose schemas are the
//! vault's installed schemas and whose tables are merge-on-read providers,
//! each snapshotted the first time a query names it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coffer_core::{TableName, VaultId};
use coffer_storage::{Engine, StorageError};
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::parser::ParserError;
use futures::future::BoxFuture;

use crate::limits::QueryLimits;
use crate::provider::{STORE_URL, VaultTableProvider};

/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The storage engine failed (vault deleted, …).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Planning or execution failed (unknown table, bad SQL, …).
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
}

impl From<ParserError> for QueryError {
    fn from(e: ParserError) -> Self {
        QueryError::DataFusion(DataFusionError::SQL(Box::new(e), None))
    }
}

/// A DataFusion session with no catalog of its own (no default catalog, no
/// information_schema, no URL tables) that can read the engine's object
/// store, bounded by `limits`: a memory pool and no disk spilling, no table
/// functions (`range`, `generate_series`), no recursive CTEs, and bounded
/// versions of the functions whose output outgrows their input. Callers
/// register the one catalog a query may reach.
pub fn base_context(engine: &Engine, limits: &QueryLimits) -> Result<SessionContext, DataFusionError> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema("vault", "public")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false)
        .with_target_partitions(2);
    config.options_mut().execution.enable_recursive_ctes = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(limits.runtime()?)
        .with_default_features()
        .with_table_functions(HashMap::new())
        .build();
    let ctx = SessionContext::new_with_state(state);
    for f in limits.bounded_functions() {
        ctx.register_udf(f);
    }
    ctx.register_object_store(
        ObjectStoreUrl::parse(STORE_URL)?.as_ref(),
        engine.objects().store().clone(),
    );
    Ok(ctx)
}

/// Runs queries against one vault's tables.
#[derive(Clone)]
pub struct VaultQuery {
    engine: Engine,
    vault: VaultId,
}

impl VaultQuery {
    /// Queries over `vault`.
    pub fn new(engine: Engine, vault: VaultId) -> Self {
        Self { engine, vault }
    }

    /// A DataFusion session whose catalog holds exactly the vault's
    /// installed tables, as `schema.table`. No information_schema, no DDL,
    /// no URL tables: the catalog is all a query can reach.
    pub async fn context(&self) -> Result<SessionContext, QueryError> {
        let ctx = base_context(&self.engine, &QueryLimits::default())?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let mut schemas: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.engine.tables(self.vault).await? {
            schemas
                .entry(t.name.schema.clone())
                .or_default()
                .push(t.name.table.clone());
        }
        for (schema, tables) in schemas {
            let (engine, vault, name) = (self.engine.clone(), self.vault, schema.clone());
            let open: TableOpener = Arc::new(move |table| {
                let (engine, table) = (engine.clone(), TableName::new(&name, table));
                Box::pin(async move {
                    let snapshot = engine
                        .snapshot(vault, &table)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    Ok(Arc::new(VaultTableProvider::new(snapshot)?) as Arc<dyn TableProvider>)
                })
            });
            catalog.register_schema(&schema, Arc::new(LazySchema::new(schema.clone(), tables, open)))?;
        }
        ctx.register_catalog("vault", catalog);
        Ok(ctx)
    }

    /// Runs one read-only SQL statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let ctx = self.context().await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        Ok(df.collect().await?)
    }
}

/// Opens one table of a [`LazySchema`] by name.
pub type TableOpener =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Arc<dyn TableProvider>, DataFusionError>> + Send + Sync>;

/// A DataFusion schema over a fixed list of tables, each opened (for a vault
/// table: snapshotted) the first time a query of the session names it, and
/// once only, so a self-join sees one snapshot.
pub struct LazySchema {
    schema: String,
    tables: Vec<String>,
    open: TableOpener,
    opened: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl LazySchema {
    /// A schema named `schema` holding `tables`, opened with `open`.
    pub fn new(schema: impl Into<String>, tables: Vec<String>, open: TableOpener) -> Self {
        LazySchema {
            schema: schema.into(),
            tables,
            open,
            opened: Mutex::default(),
        }
    }
}

impl fmt::Debug for LazySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LazySchema({})", self.schema)
    }
}

#[async_trait]
impl SchemaProvider for LazySchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        if let Some(p) = self.opened.lock().expect("opened").get(name) {
            return Ok(Some(p.clone()));
        }
        let provider = (self.open)(name.to_owned()).await?;
        self.opened
            .lock()
            .expect("opened")
            .insert(name.to_owned(), provider.clone());
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}
