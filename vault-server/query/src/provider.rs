//! A merge-on-read [`TableProvider`] over one table of one vault.
//!
//! The table's visible rows are the newest version of each id across the
//! unflushed log tail and the manifest's data files, tombstones hidden.
//! Within one source each id appears once, so the plan is a union of one
//! scan per source, each excluding the ids that a newer source shadows.
//! Filters and projections are pushed into the Parquet scans (row-group,
//! page and row pruning) — safe because shadowing is computed from the
//! newer sources' ids, never from filtered output.
//!
//! Rows a caller may not see never meet the caller's expressions: a
//! provider may carry a trusted *row restriction* (the owner filter of an
//! `own` grant), applied inside every source next to the tombstone and
//! shadowing filters; a query's own filters reach the sources only when they
//! cannot fail on any value ([`is_infallible`]); and the provider's output
//! passes through a [`FilterBarrier`], through which the physical optimizer
//! cannot push a query's filters down to the rows below. So an expression
//! that errors, casts or divides runs on visible rows only, and its error
//! can tell nothing about the others (nor about superseded versions).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_storage::TableSnapshot;
use coffer_storage::arrow_codec::{DELETED, ID};
use coffer_storage::files::read_ids;
use coffer_storage::layout::VaultPrefix;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::common::DFSchema;
use datafusion::common::config::EncryptionFactoryOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, in_list, lit, not};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;

use crate::barrier::FilterBarrier;
use object_store::path::Path;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;

/// The object-store URL under which the session sees the vault store.
pub const STORE_URL: &str = "coffer://objects/";

/// One table of one vault, as a snapshot taken when the query was planned.
pub struct VaultTableProvider {
    snapshot: TableSnapshot,
    /// The visible schema: the stored schema without `_deleted`.
    schema: SchemaRef,
    /// For each visible column, its index in the stored schema.
    visible: Vec<usize>,
    decryption: Arc<VaultDecryption>,
}

impl fmt::Debug for VaultTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultTableProvider({})", self.snapshot.table.name)
    }
}

impl VaultTableProvider {
    /// A provider over `snapshot`.
    pub fn new(snapshot: TableSnapshot) -> Result<Self> {
        let stored = snapshot.table.arrow.clone();
        let visible: Vec<usize> = (0..stored.fields().len()).filter(|&i| i != DELETED).collect();
        let schema = Arc::new(stored.project(&visible)?);
        let decryption = Arc::new(VaultDecryption {
            prefix: VaultPrefix::new(snapshot.vault),
            properties: snapshot
                .keys
                .parquet_decryption()
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
        });
        Ok(Self {
            snapshot,
            schema,
            visible,
            decryption,
        })
    }
}

/// Whether `expr` evaluates without error on every possible value of the
/// columns it reads: columns, literals, comparisons, boolean logic, null
/// tests, `IN` lists, `BETWEEN` and `LIKE` (casts of literals only). Only
/// such filters are evaluated below a provider's [`FilterBarrier`], where
/// they meet rows the query cannot see; anything else (casts of columns,
/// arithmetic, functions) runs above it.
pub fn is_infallible(expr: &Expr) -> bool {
    use datafusion::logical_expr::Operator;
    match expr {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::BinaryExpr(b) => {
            matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) && is_infallible(&b.left)
                && is_infallible(&b.right)
        }
        Expr::Not(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e)
        | Expr::IsNotUnknown(e) => is_infallible(e),
        Expr::Between(b) => is_infallible(&b.expr) && is_infallible(&b.low) && is_infallible(&b.high),
        Expr::InList(l) => is_infallible(&l.expr) && l.list.iter().all(is_infallible),
        Expr::Like(l) => {
            is_infallible(&l.expr) && matches!(l.pattern.as_ref(), Expr::Literal(..)) && l.escape_char.is_none()
        }
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Literal(..)),
        _ => false,
    }
}

/// Hands the vault's Parquet decryption properties to DataFusion's scans,
/// and only for files inside the vault's prefix.
#[derive(Debug)]
struct VaultDecryption {
    prefix: VaultPrefix,
    properties: Arc<FileDecryptionProperties>,
}

#[async_trait]
impl EncryptionFactory for VaultDecryption {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &SchemaRef,
        _file_path: &Path,
    ) -> Result<Option<Arc<FileEncryptionProperties>>> {
        Err(DataFusionError::NotImplemented("queries do not write files".into()))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &Path,
    ) -> Result<Option<Arc<FileDecryptionProperties>>> {
        if !file_path.as_ref().starts_with(self.prefix.as_str()) {
            return Err(DataFusionError::Execution(format!(
                "file {file_path} is outside the vault"
            )));
        }
        Ok(Some(self.properties.clone()))
    }
}

#[async_trait]
impl TableProvider for VaultTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Used for pruning inside each source; DataFusion re-applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.scan_within(state, projection, filters, None).await
    }
}

impl VaultTableProvider {
    /// The scan of [`TableProvider::scan`], with the rows restricted to those
    /// meeting `restriction`: a trusted predicate over the stored columns
    /// that cannot fail on any value (the owner filter of an `own` grant). It
    /// is applied inside every source, before anything of the query runs.
    pub async fn scan_within(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        restriction: Option<&Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let stored = self.snapshot.table.arrow.clone();
        let stored_df = DFSchema::try_from(stored.as_ref().clone())?;
        // Stored columns each source must produce: the projection, the
        // filters' columns, and id/_deleted for merging.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.visible[i]).collect(),
            None => self.visible.clone(),
        };
        // Below the barrier run only the trusted restriction and the
        // query's filters that cannot fail (for pruning and row filtering).
        let below: Vec<Expr> = restriction
            .into_iter()
            .chain(filters.iter().filter(|f| is_infallible(f)))
            .cloned()
            .collect();
        let mut read: BTreeSet<usize> = wanted.iter().copied().collect();
        for f in &below {
            for c in f.column_refs() {
                if let Ok(i) = stored.index_of(&c.name) {
                    read.insert(i);
                }
            }
        }
        read.insert(ID);
        read.insert(DELETED);
        let read: Vec<usize> = read.into_iter().collect();
        let read_schema = Arc::new(stored.project(&read)?);
        let read_df = DFSchema::try_from(read_schema.as_ref().clone())?;
        let pushed = below.iter().cloned().reduce(Expr::and);
        // What every source keeps: live rows within the restriction.
        let live = match restriction {
            Some(r) => not(col("_deleted")).and(r.clone()),
            None => not(col("_deleted")),
        };

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        // The tail shadows every file.
        let tail = &self.snapshot.tail;
        let tail_ids: Vec<String> = {
            use datafusion::arrow::array::AsArray;
            tail.column(ID)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_owned)
                .collect()
        };
        if tail.num_rows() > 0 {
            let exec = MemorySourceConfig::try_new_exec(&[vec![tail.clone()]], stored.clone(), Some(read.clone()))?;
            let visible = state.create_physical_expr(live.clone(), &read_df)?;
            inputs.push(Arc::new(FilterExec::try_new(visible, exec)?));
        }
        let objects = &self.snapshot.objects;
        let files = &self.snapshot.manifest.files;
        let mut newer_ids: Vec<(usize, Vec<String>)> = Vec::new();
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        for (i, file) in files.iter().enumerate() {
            // Ids of newer sources whose id range overlaps this file.
            let mut shadow: Vec<&str> = tail_ids
                .iter()
                .map(String::as_str)
                .filter(|id| file.may_contain(id))
                .collect();
            for (j, ids) in &newer_ids {
                if files[*j].overlaps(file) {
                    shadow.extend(ids.iter().map(String::as_str).filter(|id| file.may_contain(id)));
                }
            }
            let mut predicate = live.clone();
            if !shadow.is_empty() {
                predicate = predicate.and(in_list(col("id"), shadow.iter().map(|s| lit(*s)).collect(), true));
            }
            let mut source = ParquetSource::new(stored.clone())
                .with_encryption_factory(self.decryption.clone())
                .with_enable_page_index(true)
                .with_pushdown_filters(true);
            if let Some(p) = &pushed {
                source = source.with_predicate(state.create_physical_expr(p.clone(), &stored_df)?);
            }
            let config = FileScanConfigBuilder::new(store_url.clone(), Arc::new(source))
                .with_file(PartitionedFile::new(file.key.clone(), file.size))
                .with_projection_indices(Some(read.clone()))?
                .build();
            let scan = DataSourceExec::from_data_source(config);
            let predicate = state.create_physical_expr(predicate, &read_df)?;
            inputs.push(Arc::new(FilterExec::try_new(predicate, scan)?));
            // This file shadows older ones it overlaps.
            if files[i + 1..].iter().any(|older| older.overlaps(file)) {
                let open = self
                    .snapshot
                    .files
                    .open(objects, &self.snapshot.keys, file)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let ids = read_ids(objects, &open, &file.key)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                newer_ids.push((i, ids));
            }
        }
        let union: Arc<dyn ExecutionPlan> = if inputs.is_empty() {
            Arc::new(EmptyExec::new(read_schema.clone()))
        } else {
            UnionExec::try_new(inputs)?
        };
        // Project to what the query asked for, in its order.
        let exprs: Vec<(Arc<dyn datafusion::physical_plan::PhysicalExpr>, String)> = wanted
            .iter()
            .map(|&stored_idx| {
                let pos = read
                    .iter()
                    .position(|&r| r == stored_idx)
                    .expect("wanted columns are read");
                let name = stored.field(stored_idx).name().clone();
                (Arc::new(Column::new(&name, pos)) as _, name)
            })
            .collect();
        let projected = Arc::new(ProjectionExec::try_new(exprs, union)?);
        Ok(Arc::new(FilterBarrier::new(projected)))
    }
}
