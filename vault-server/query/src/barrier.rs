//! A pass-through plan node that DataFusion's physical optimizer cannot push
//! filters through.
//!
//! A table provider's scan ends in a [`FilterBarrier`]: the rows above it are
//! the rows the caller may see, and the query's predicates stay above it. The
//! physical filter pushdown (and dynamic filters of joins and top-k) would
//! otherwise move a query's predicate into the Parquet row filter, where it
//! would run on rows of other apps and on superseded versions — and an
//! expression that fails there would tell what it failed on.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties};

/// Passes its input's rows through unchanged and refuses every filter a
/// parent offers to push below it (the trait's default for filter pushdown
/// is "unsupported", which is exactly what this node relies on).
#[derive(Debug, Clone)]
pub struct FilterBarrier {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl FilterBarrier {
    /// A barrier over `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::new(PlanProperties::clone(input.properties()));
        FilterBarrier { input, properties }
    }
}

impl DisplayAs for FilterBarrier {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FilterBarrier")
    }
}

impl ExecutionPlan for FilterBarrier {
    fn name(&self) -> &str {
        "FilterBarrier"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "FilterBarrier takes one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(FilterBarrier::new(children.swap_remove(0))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
