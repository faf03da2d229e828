//! Arrow values as apps see them in JSON: the same forms the storage engine
//! gives a row ([`coffer_storage::RowVersion::to_api_json`]): timestamps as
//! RFC 3339, dates as `YYYY-MM-DD`, bytes as standard base64, `json` columns
//! as JSON, vectors as arrays of numbers.

use base64::Engine as _;
use coffer_storage::arrow_codec::TYPE_METADATA_KEY;
use coffer_storage::row::{format_date, format_timestamp};
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
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
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
            Value::String(format_timestamp(micros))
        }
        DataType::Date32 => Value::String(format_date(i64::from(array.as_primitive::<Date32Type>().value(row)))),
        DataType::Date64 => Value::String(format_date(array.as_primitive::<Date64Type>().value(row) / 86_400_000)),
        DataType::Binary => bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => bytes(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => bytes(array.as_binary_view().value(row)),
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

fn text(s: &str, is_json: bool) -> Value {
    if is_json {
        serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
    } else {
        Value::String(s.to_owned())
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn bytes(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
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

    use datafusion::arrow::array::{NullArray, StringArray};

    use super::*;

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
