//! Arrow values as apps see them in JSON: this module walks Arrow arrays
//! (SQL results and listings) and gives each value the form
//! [`coffer_storage::json_form`] defines, the same form
//! [`coffer_storage::RowVersion::to_api_json`] gives a stored row.

use coffer_storage::arrow_codec::TYPE_METADATA_KEY;
use coffer_storage::json_form;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

/// The Coffer type name of a result column: the schema's type when the
/// column comes straight from a table, otherwise derived from Arrow.
pub fn type_name(field: &Field) -> String {
    if let Some(t) = field.metadata().get(TYPE_METADATA_KEY) {
        return t.clone();
    }
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "integer".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float".into(),
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            "numeric".into()
        }
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "bytes".into()
        }
        DataType::FixedSizeList(_, n) => format!("vector({n})"),
        DataType::List(_) | DataType::LargeList(_) => "array".into(),
        DataType::Null => "null".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// Value `row` of `array` (whose field is `field`) as JSON.
pub fn to_json(field: &Field, array: &ArrayRef, row: usize) -> Value {
    // A `NullArray` has no validity buffer: `is_null` says false for it.
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Value::Null;
    }
    let is_json = field.metadata().get(TYPE_METADATA_KEY).is_some_and(|t| t == "json");
    match array.data_type() {
        DataType::Utf8 => text(array.as_string::<i32>().value(row), is_json),
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(row), is_json),
        DataType::Utf8View => text(array.as_string_view().value(row), is_json),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => json_form::float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => json_form::float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => json_form::float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
            };
            json_form::timestamp(micros)
        }
        DataType::Date32 => json_form::date(i64::from(array.as_primitive::<Date32Type>().value(row))),
        DataType::Date64 => json_form::date(array.as_primitive::<Date64Type>().value(row) / 86_400_000),
        DataType::Binary => json_form::bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => json_form::bytes(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => json_form::bytes(array.as_binary_view().value(row)),
        DataType::FixedSizeList(item, _) => list(item, &array.as_fixed_size_list().value(row)),
        DataType::List(item) => list(item, &array.as_list::<i32>().value(row)),
        DataType::LargeList(item) => list(item, &array.as_list::<i64>().value(row)),
        _ => {
            let options = FormatOptions::default();
            match ArrayFormatter::try_new(array.as_ref(), &options) {
                Ok(f) => Value::String(f.value(row).to_string()),
                Err(_) => Value::Null,
            }
        }
    }
}

/// Text of a column, parsed when the column's type is `json`.
fn text(s: &str, is_json: bool) -> Value {
    if is_json {
        json_form::json_text(s)
    } else {
        Value::String(s.to_owned())
    }
}

fn list(item: &Field, values: &ArrayRef) -> Value {
    Value::Array((0..values.len()).map(|i| to_json(item, values, i)).collect())
}

/// Every row of `batch` as a JSON object keyed by column name.
pub fn batch_to_objects(batch: &RecordBatch, out: &mut Vec<Map<String, Value>>) {
    let schema = batch.schema();
    for row in 0..batch.num_rows() {
        let mut obj = Map::with_capacity(schema.fields().len());
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            obj.insert(field.name().clone(), to_json(field, array, row));
        }
        out.push(obj);
    }
}

/// Every row of `batch` as a JSON array in column order.
pub fn batch_to_arrays(batch: &RecordBatch, out: &mut Vec<Value>) {
    let schema = batch.schema();
    for row in 0..batch.num_rows() {
        out.push(Value::Array(
            schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, array)| to_json(field, array, row))
                .collect(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coffer_core::Seq;
    use coffer_core::schema::TableDef;
    use coffer_storage::RowVersion;
    use coffer_storage::arrow_codec::{rows_to_batch, table_schema};
    use datafusion::arrow::array::{NullArray, StringArray};
    use serde_json::json;

    use super::*;

    /// A stored row read through `RowVersion::to_api_json` and the same row
    /// read from an Arrow batch give the same JSON, for every column type
    /// and for nulls.
    #[test]
    fn arrow_and_stored_rows_give_the_same_json() {
        let table = TableDef::with_every_type();
        let row = RowVersion {
            id: "r1".into(),
            seq: Seq(7),
            deleted: false,
            created_by: "app".into(),
            updated_by: "other".into(),
            created_at: 1_738_312_200_000_001,
            updated_at: -1,
            values: json!({
                "name": "Ada", "n": -7, "f": 1.25, "b": true, "ts": 1_738_312_200_123_456i64,
                "day": -1, "j": {"k": [1, 2.5, "x", null]}, "raw": "aGk=",
                "u": "6fa459ea-ee8a-3ca4-894e-db77e160355e", "v": [1.0, 2.5, -3.0]
            })
            .as_object()
            .unwrap()
            .clone(),
        };
        let stored = row.to_api_json(&table);
        let batch = rows_to_batch(&table, &table_schema(&table), std::slice::from_ref(&row)).unwrap();
        let mut read = Vec::new();
        batch_to_objects(&batch, &mut read);
        let mut from_arrow = read.pop().unwrap();
        assert_eq!(from_arrow.remove("_deleted"), Some(Value::Bool(false)));
        assert_eq!(from_arrow, stored);
        assert_eq!(stored["ts"], json!("2025-01-31T08:30:00.123456Z"));
        assert_eq!(stored["day"], json!("1969-12-31"));
        assert_eq!(stored["none"], Value::Null);
    }

    #[test]
    fn nulls_are_json_null_whatever_the_array_type() {
        let untyped: ArrayRef = Arc::new(NullArray::new(2));
        let field = Field::new("z", DataType::Null, true);
        assert_eq!(to_json(&field, &untyped, 1), Value::Null);
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        let field = Field::new("t", DataType::Utf8, true);
        assert_eq!(to_json(&field, &text, 0), Value::String("a".into()));
        assert_eq!(to_json(&field, &text, 1), Value::Null);
    }
}
