//! What one query may use: memory (no spilling to disk: spill files would be
//! plaintext vault data), table functions and recursive CTEs (off: both turn
//! a few bytes of SQL into endless rows), and the functions whose output or
//! work grows faster than their input (`repeat`, `lpad`, `rpad`, `replace`,
//! `levenshtein`), which are wrapped so that one call cannot allocate
//! gigabytes or hold a core for minutes inside one batch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// The resources one query may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Bytes of memory the query's operators (sorts, joins, aggregates) may
    /// hold at once; past it the query fails with "resources exhausted".
    pub memory_bytes: usize,
    /// Bytes one call of an expanding string function may produce for one
    /// batch of rows.
    pub function_output_bytes: u64,
    /// Character comparisons one `levenshtein` call may make for one batch.
    pub function_work: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 256 * 1024 * 1024,
            function_output_bytes: 64 * 1024 * 1024,
            function_work: 200_000_000,
        }
    }
}

impl QueryLimits {
    /// A runtime with a memory pool of [`Self::memory_bytes`] and no disk
    /// manager (operators that would spill fail instead).
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.memory_bytes)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()
    }

    /// The built-in functions replaced by bounded versions of themselves.
    pub fn bounded_functions(&self) -> Vec<ScalarUDF> {
        use datafusion::functions::{string, unicode};
        let output = self.function_output_bytes;
        vec![
            Bounded::wrap(string::repeat(), output, "bytes", repeat_cost),
            Bounded::wrap(string::replace(), output, "bytes", replace_cost),
            Bounded::wrap(unicode::lpad(), output, "bytes", pad_cost),
            Bounded::wrap(unicode::rpad(), output, "bytes", pad_cost),
            Bounded::wrap(
                string::levenshtein(),
                self.function_work,
                "comparisons",
                levenshtein_cost,
            ),
        ]
    }
}

/// What one call of a function would cost for a batch, from its arguments.
type Cost = fn(&[ColumnarValue], usize) -> Result<u64>;

/// A built-in function that refuses calls whose cost exceeds a limit,
/// before doing any of the work.
#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    limit: u64,
    unit: &'static str,
    cost: Cost,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.limit == other.limit
    }
}
impl Eq for Bounded {}
impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.limit.hash(state);
    }
}

impl Bounded {
    fn wrap(inner: Arc<ScalarUDF>, limit: u64, unit: &'static str, cost: Cost) -> ScalarUDF {
        ScalarUDF::new_from_impl(Bounded {
            inner,
            limit,
            unit,
            cost,
        })
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let cost = (self.cost)(&args.args, args.number_rows)?;
        if cost > self.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would need {cost} {} for one batch; the limit is {}",
                self.inner.name(),
                self.unit,
                self.limit
            )));
        }
        self.inner.invoke_with_args(args)
    }
}

/// Byte length of argument `arg` at each of `rows` rows (null: 0).
fn lengths(arg: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    Ok(match arg {
        ColumnarValue::Scalar(s) => {
            let n = match s {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_ref().map_or(0, String::len)
                }
                _ => 0,
            };
            vec![n as u64; rows]
        }
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::LargeUtf8)?;
            a.as_string::<i64>()
                .iter()
                .map(|v| v.map_or(0, str::len) as u64)
                .collect()
        }
    })
}

/// Integer argument `arg` at each of `rows` rows (null or negative: 0).
fn counts(arg: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    Ok(match arg {
        ColumnarValue::Scalar(s) => {
            let n = match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) => n.max(0) as u64,
                _ => 0,
            };
            vec![n; rows]
        }
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| if a.is_null(i) { 0 } else { a.value(i).max(0) as u64 })
                .collect()
        }
    })
}

fn arg(args: &[ColumnarValue], i: usize) -> Result<&ColumnarValue> {
    args.get(i)
        .ok_or_else(|| DataFusionError::Plan(format!("missing argument {}", i + 1)))
}

/// `repeat(s, n)`: `len(s) × n` bytes per row.
fn repeat_cost(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let (s, n) = (lengths(arg(args, 0)?, rows)?, counts(arg(args, 1)?, rows)?);
    Ok(s.iter()
        .zip(&n)
        .fold(0u64, |t, (s, n)| t.saturating_add(s.saturating_mul(*n))))
}

/// `lpad(s, n [, fill])`: `n` characters of up to 4 bytes per row.
fn pad_cost(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let n = counts(arg(args, 1)?, rows)?;
    Ok(n.iter().fold(0u64, |t, n| t.saturating_add(n.saturating_mul(4))))
}

/// `replace(s, from, to)`: at most `len(s)/len(from) + 1` replacements of
/// `len(to)` bytes each, plus `s`.
fn replace_cost(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let s = lengths(arg(args, 0)?, rows)?;
    let from = lengths(arg(args, 1)?, rows)?;
    let to = lengths(arg(args, 2)?, rows)?;
    Ok((0..rows).fold(0u64, |t, i| {
        let replacements = s[i] / from[i].max(1) + 1;
        t.saturating_add(s[i])
            .saturating_add(replacements.saturating_mul(to[i]))
    }))
}

/// `levenshtein(a, b)`: `len(a) × len(b)` comparisons per row.
fn levenshtein_cost(args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let (a, b) = (lengths(arg(args, 0)?, rows)?, lengths(arg(args, 1)?, rows)?);
    Ok(a.iter()
        .zip(&b)
        .fold(0u64, |t, (a, b)| t.saturating_add(a.saturating_mul(*b))))
}
