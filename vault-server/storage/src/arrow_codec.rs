//! Mapping between rows and Arrow: the Arrow schema of a table and the
//! conversion of row versions to and from record batches.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use coffer_core::Seq;
use coffer_core::schema::{ColumnType, TableDef};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, FixedSizeListBuilder, Float32Builder,
    Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use serde_json::{Map, Value};

use crate::error::StorageError;
use crate::row::RowVersion;

/// Column index of `id` in every table's Arrow schema.
pub const ID: usize = 0;
/// Column index of `_seq`.
pub const SEQ: usize = 1;
/// Column index of `_deleted`.
pub const DELETED: usize = 6;
/// Number of system columns, which come first in every table's Arrow schema.
pub const SYSTEM_COLUMN_COUNT: usize = 7;

/// Field metadata key holding the Coffer column type (`json`, `uuid`, …).
pub const TYPE_METADATA_KEY: &str = "coffer.type";

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow type that stores a column type.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Text | ColumnType::Json | ColumnType::Uuid => DataType::Utf8,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Timestamp => timestamp_type(),
        ColumnType::Date => DataType::Date32,
        ColumnType::Bytes => DataType::Binary,
        ColumnType::Vector(n) => {
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), n as i32)
        }
    }
}

/// The Arrow schema of a table: the system columns, then the user columns.
pub fn table_schema(table: &TableDef) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("_seq", DataType::Int64, false),
        Field::new("_created_by", DataType::Utf8, false),
        Field::new("_updated_by", DataType::Utf8, false),
        Field::new("_created_at", timestamp_type(), false),
        Field::new("_updated_at", timestamp_type(), false),
        Field::new("_deleted", DataType::Boolean, false),
    ];
    for col in &table.columns {
        // User columns are nullable in storage even when the schema says not
        // null: tombstones carry no values.
        let field = Field::new(&col.name, arrow_type(col.ty), true)
            .with_metadata(HashMap::from([(TYPE_METADATA_KEY.to_owned(), col.ty.to_string())]));
        fields.push(field);
    }
    Arc::new(Schema::new(fields))
}

/// Builds a record batch (in `rows` order) with the table's schema.
pub fn rows_to_batch(table: &TableDef, schema: &SchemaRef, rows: &[RowVersion]) -> Result<RecordBatch, StorageError> {
    let n = rows.len();
    let mut id = StringBuilder::with_capacity(n, n * 26);
    let mut seq = Int64Builder::with_capacity(n);
    let mut cb = StringBuilder::with_capacity(n, n * 8);
    let mut ub = StringBuilder::with_capacity(n, n * 8);
    let mut ca = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut ua = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut del = BooleanBuilder::with_capacity(n);
    for r in rows {
        id.append_value(&r.id);
        seq.append_value(r.seq.0);
        cb.append_value(&r.created_by);
        ub.append_value(&r.updated_by);
        ca.append_value(r.created_at);
        ua.append_value(r.updated_at);
        del.append_value(r.deleted);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(seq.finish()),
        Arc::new(cb.finish()),
        Arc::new(ub.finish()),
        Arc::new(ca.finish()),
        Arc::new(ua.finish()),
        Arc::new(del.finish()),
    ];
    for col in &table.columns {
        let cells = rows.iter().map(|r| r.values.get(&col.name).filter(|v| !v.is_null()));
        columns.push(
            build_column(col.ty, n, cells)
                .map_err(|reason| StorageError::Corrupt(format!("column {}: {reason}", col.name)))?,
        );
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn build_column<'a>(
    ty: ColumnType,
    n: usize,
    cells: impl Iterator<Item = Option<&'a Value>>,
) -> Result<ArrayRef, String> {
    macro_rules! build {
        ($builder:expr, $conv:expr) => {{
            let mut b = $builder;
            for cell in cells {
                match cell {
                    None => b.append_null(),
                    Some(v) => b.append_value($conv(v).ok_or_else(|| format!("bad stored value {v}"))?),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        ColumnType::Text | ColumnType::Uuid => {
            build!(StringBuilder::with_capacity(n, n * 16), |v: &Value| v
                .as_str()
                .map(str::to_owned))
        }
        ColumnType::Json => build!(StringBuilder::with_capacity(n, n * 16), |v: &Value| Some(v.to_string())),
        ColumnType::Integer => build!(Int64Builder::with_capacity(n), |v: &Value| v.as_i64()),
        ColumnType::Float => build!(Float64Builder::with_capacity(n), |v: &Value| v.as_f64()),
        ColumnType::Boolean => build!(BooleanBuilder::with_capacity(n), |v: &Value| v.as_bool()),
        ColumnType::Timestamp => build!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            |v: &Value| v.as_i64()
        ),
        ColumnType::Date => build!(Date32Builder::with_capacity(n), |v: &Value| v
            .as_i64()
            .and_then(|d| i32::try_from(d).ok())),
        ColumnType::Bytes => build!(BinaryBuilder::with_capacity(n, n * 16), |v: &Value| v
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())),
        ColumnType::Vector(dim) => {
            let mut b = FixedSizeListBuilder::with_capacity(Float32Builder::new(), dim as i32, n)
                .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
            for cell in cells {
                match cell.and_then(Value::as_array) {
                    Some(items) if items.len() == dim as usize => {
                        for x in items {
                            b.values().append_value(x.as_f64().ok_or("bad vector item")? as f32);
                        }
                        b.append(true);
                    }
                    Some(_) => return Err("vector of the wrong length".into()),
                    None => {
                        for _ in 0..dim {
                            b.values().append_value(0.0);
                        }
                        b.append(false);
                    }
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// Reads row `i` of a batch that has the table's schema (or a projection of
/// it that keeps every column) back into a row version.
pub fn batch_row(table: &TableDef, batch: &RecordBatch, i: usize) -> Result<RowVersion, StorageError> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| StorageError::Corrupt(format!("file lacks column {name}")))
    };
    let text = |name: &str| -> Result<String, StorageError> { Ok(col(name)?.as_string::<i32>().value(i).to_owned()) };
    let ts = |name: &str| -> Result<i64, StorageError> {
        Ok(col(name)?.as_primitive::<TimestampMicrosecondType>().value(i))
    };
    let mut values = Map::new();
    for c in &table.columns {
        // A column added later (additive schema change) is absent from older files.
        let Some(array) = batch.column_by_name(&c.name) else {
            continue;
        };
        if array.is_null(i) {
            continue;
        }
        values.insert(c.name.clone(), cell_value(c.ty, array.as_ref(), i));
    }
    Ok(RowVersion {
        id: text("id")?,
        seq: Seq(col("_seq")?.as_primitive::<Int64Type>().value(i)),
        deleted: col("_deleted")?.as_boolean().value(i),
        created_by: text("_created_by")?,
        updated_by: text("_updated_by")?,
        created_at: ts("_created_at")?,
        updated_at: ts("_updated_at")?,
        values,
    })
}

/// The normalized JSON value of one non-null cell.
pub fn cell_value(ty: ColumnType, array: &dyn Array, i: usize) -> Value {
    match ty {
        ColumnType::Text | ColumnType::Uuid => Value::String(array.as_string::<i32>().value(i).to_owned()),
        ColumnType::Json => {
            let s = array.as_string::<i32>().value(i);
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
        }
        ColumnType::Integer => Value::from(array.as_primitive::<Int64Type>().value(i)),
        ColumnType::Float => Value::from(array.as_primitive::<Float64Type>().value(i)),
        ColumnType::Boolean => Value::Bool(array.as_boolean().value(i)),
        ColumnType::Timestamp => Value::from(array.as_primitive::<TimestampMicrosecondType>().value(i)),
        ColumnType::Date => Value::from(i64::from(array.as_primitive::<Date32Type>().value(i))),
        ColumnType::Bytes => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(array.as_binary::<i32>().value(i)))
        }
        ColumnType::Vector(_) => {
            let list = array.as_fixed_size_list().value(i);
            let floats = list.as_primitive::<Float32Type>();
            Value::Array(floats.values().iter().map(|f| Value::from(f64::from(*f))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_survive_a_round_trip_through_arrow() {
        let table = TableDef::with_every_type();
        let schema = table_schema(&table);
        let rows = vec![
            RowVersion {
                id: "a".into(),
                seq: Seq(3),
                deleted: false,
                created_by: "app".into(),
                updated_by: "app2".into(),
                created_at: 10,
                updated_at: 20,
                values: json!({"name": "x", "j": {"k": 1}, "day": 5, "raw": "aGk=", "v": [1.0, 2.5, -3.0]})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            RowVersion {
                id: "b".into(),
                seq: Seq(4),
                deleted: true,
                created_by: "app".into(),
                updated_by: "app".into(),
                created_at: 11,
                updated_at: 21,
                values: Map::new(),
            },
        ];
        let batch = rows_to_batch(&table, &schema, &rows).unwrap();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(&batch_row(&table, &batch, i).unwrap(), row);
        }
    }
}
