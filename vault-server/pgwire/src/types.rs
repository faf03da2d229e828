//! Postgres types of Coffer's values, and their text and binary forms.
//!
//! | Coffer type | Arrow | Postgres |
//! |---|---|---|
//! | `text` | Utf8 | `text` (25) |
//! | `integer` | Int64 | `int8` (20) |
//! | `float` | Float64 | `float8` (701) |
//! | `boolean` | Boolean | `bool` (16) |
//! | `timestamp` | Timestamp(µs, UTC) | `timestamptz` (1184) |
//! | `date` | Date32 | `date` (1082) |
//! | `json` | Utf8 + `coffer.type` = `json` | `jsonb` (3802) |
//! | `bytes` | Binary | `bytea` (17) |
//! | `uuid` | Utf8 + `coffer.type` = `uuid` | `uuid` (2950) |
//! | `vector(n)` | FixedSizeList(Float32, n) | `float4[]` (1021) |
//!
//! Computed columns follow their Arrow type (`int2`/`int4`/`float4`,
//! `timestamp` without a zone, …); a type with no Postgres counterpart here
//! is sent as `text` in Arrow's display form.

use std::error::Error;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate};
use coffer_gateway::values::type_name;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormat};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

/// Microseconds from 1970-01-01 to 2000-01-01, Postgres's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The Postgres type of a result column.
pub fn pg_type(field: &Field) -> Type {
    let coffer = type_name(field);
    match coffer.as_str() {
        "json" if is_text(field.data_type()) => return Type::JSONB,
        "uuid" if is_text(field.data_type()) => return Type::UUID,
        _ => {}
    }
    pg_type_of(field.data_type())
}

/// The Postgres type of an Arrow type (a parameter the plan expects, or a
/// computed column).
pub fn pg_type_of(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::FixedSizeList(item, _) | DataType::List(item) | DataType::LargeList(item)
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16) =>
        {
            Type::FLOAT4_ARRAY
        }
        _ => Type::TEXT,
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// One value on its way to the wire, in the form its Postgres type takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// `text`, `jsonb`, `uuid` (by the column's type) and anything sent as
    /// text.
    Text(String),
    /// `bool`.
    Bool(bool),
    /// `int2`, `int4`, `int8`.
    Int(i64),
    /// `float4`, `float8`.
    Float(f64),
    /// `timestamptz` / `timestamp`: microseconds since 1970-01-01 UTC.
    Micros(i64),
    /// `date`: days since 1970-01-01.
    Days(i32),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `float4[]`.
    Floats(Vec<Option<f32>>),
}

/// Value `row` of `array` as a [`Cell`].
pub fn cell(array: &ArrayRef, row: usize) -> Cell {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row).to_owned()),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Cell::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Cell::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Cell::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => match i64::try_from(array.as_primitive::<UInt64Type>().value(row)) {
            Ok(v) => Cell::Int(v),
            Err(_) => Cell::Text(array.as_primitive::<UInt64Type>().value(row).to_string()),
        },
        DataType::Float16 => Cell::Float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => Cell::Float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Cell::Micros(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        // Other units (`now()` is in nanoseconds) through Arrow's own cast;
        // a value microseconds cannot hold is NULL.
        DataType::Timestamp(_, zone) => {
            match cast(
                &array.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            ) {
                Ok(micros) if !micros.is_null(0) => {
                    Cell::Micros(micros.as_primitive::<TimestampMicrosecondType>().value(0))
                }
                _ => Cell::Null,
            }
        }
        DataType::Date32 => Cell::Days(array.as_primitive::<Date32Type>().value(row)),
        DataType::Binary => Cell::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Cell::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => Cell::Bytes(array.as_binary_view().value(row).to_vec()),
        DataType::FixedSizeList(item, _) if matches!(item.data_type(), DataType::Float32) => {
            floats(&array.as_fixed_size_list().value(row))
        }
        DataType::List(item) if matches!(item.data_type(), DataType::Float32) => {
            floats(&array.as_list::<i32>().value(row))
        }
        _ => {
            let options = ArrowFormat::default();
            match ArrayFormatter::try_new(array.as_ref(), &options) {
                Ok(f) => Cell::Text(f.value(row).to_string()),
                Err(_) => Cell::Null,
            }
        }
    }
}

fn floats(values: &ArrayRef) -> Cell {
    let values = values.as_primitive::<Float32Type>();
    Cell::Floats(
        (0..values.len())
            .map(|i| (!values.is_null(i)).then(|| values.value(i)))
            .collect(),
    )
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Cell {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Cell::Null => return Ok(IsNull::Yes),
            Cell::Text(s) => match *ty {
                Type::JSONB => {
                    out.put_u8(1);
                    out.put_slice(s.as_bytes());
                }
                Type::UUID => out.put_slice(&uuid_bytes(s).ok_or("a uuid value is not a valid uuid")?),
                _ => out.put_slice(s.as_bytes()),
            },
            Cell::Bool(b) => out.put_u8(u8::from(*b)),
            Cell::Int(v) => match *ty {
                Type::INT2 => out.put_i16(i16::try_from(*v)?),
                Type::INT4 => out.put_i32(i32::try_from(*v)?),
                _ => out.put_i64(*v),
            },
            Cell::Float(v) => match *ty {
                Type::FLOAT4 => out.put_f32(*v as f32),
                _ => out.put_f64(*v),
            },
            Cell::Micros(us) => out.put_i64(us.saturating_sub(PG_EPOCH_MICROS)),
            Cell::Days(d) => out.put_i32(d.saturating_sub(PG_EPOCH_DAYS)),
            Cell::Bytes(b) => out.put_slice(b),
            Cell::Floats(values) => {
                let len = i32::try_from(values.len())?;
                if values.is_empty() {
                    out.put_i32(0);
                    out.put_i32(0);
                    out.put_u32(Type::FLOAT4.oid());
                } else {
                    out.put_i32(1);
                    out.put_i32(i32::from(values.iter().any(Option::is_none)));
                    out.put_u32(Type::FLOAT4.oid());
                    out.put_i32(len);
                    out.put_i32(1);
                    for v in values {
                        match v {
                            Some(v) => {
                                out.put_i32(4);
                                out.put_f32(*v);
                            }
                            None => out.put_i32(-1),
                        }
                    }
                }
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for Cell {
    fn to_sql_text(&self, _ty: &Type, out: &mut BytesMut, _options: &FormatOptions) -> Result<IsNull, BoxError> {
        let text = match self {
            Cell::Null => return Ok(IsNull::Yes),
            Cell::Text(s) => {
                out.put_slice(s.as_bytes());
                return Ok(IsNull::No);
            }
            Cell::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
            Cell::Int(v) => v.to_string(),
            Cell::Float(v) => float_text(*v),
            Cell::Micros(us) => timestamp_text(*us, matches!(*_ty, Type::TIMESTAMPTZ)),
            Cell::Days(d) => date_text(*d),
            Cell::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
            Cell::Floats(values) => {
                let items: Vec<String> = values
                    .iter()
                    .map(|v| v.map_or_else(|| "NULL".to_owned(), |v| float_text(f64::from(v))))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        };
        out.put_slice(text.as_bytes());
        Ok(IsNull::No)
    }
}

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.to_string()
    }
}

/// `2025-01-31 08:30:00.123456+00` (Postgres's ISO output, trailing zeros of
/// the fraction dropped).
fn timestamp_text(us: i64, zone: bool) -> String {
    let Some(t) = DateTime::from_timestamp_micros(us) else {
        return if us < 0 { "-infinity" } else { "infinity" }.into();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = us.rem_euclid(1_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    if zone {
        s.push_str("+00");
    }
    s
}

fn date_text(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163))
        .map_or_else(|| "infinity".into(), |d| d.format("%Y-%m-%d").to_string())
}

fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn uuid_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why a parameter value could not be read (the value itself is never
/// repeated), with its SQLSTATE: `22007` for a date or time Postgres
/// would not read either, `22P02` for any other value.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BadParameter {
    /// The SQLSTATE.
    pub code: &'static str,
    message: String,
}

impl BadParameter {
    fn new(message: String) -> BadParameter {
        BadParameter { code: "22P02", message }
    }
}

/// Reads a parameter sent as `ty` in the binary (`binary`) or text format
/// as the typed value the gateway binds. `None` is SQL NULL.
pub fn parameter(ty: &Type, binary: bool, value: Option<&[u8]>) -> Result<ScalarValue, BadParameter> {
    let Some(value) = value else {
        return Ok(ScalarValue::Null);
    };
    let bad = |what: &str| BadParameter::new(format!("is not a valid {} {what}", ty.name()));
    if binary {
        return match *ty {
            Type::BOOL => match value {
                [b] => Ok(ScalarValue::Boolean(Some(*b != 0))),
                _ => Err(bad("value")),
            },
            Type::INT2 => Ok(ScalarValue::Int64(Some(
                i16::from_be_bytes(value.try_into().map_err(|_| bad("value"))?).into(),
            ))),
            Type::INT4 => Ok(ScalarValue::Int64(Some(
                i32::from_be_bytes(value.try_into().map_err(|_| bad("value"))?).into(),
            ))),
            Type::INT8 => Ok(ScalarValue::Int64(Some(i64::from_be_bytes(
                value.try_into().map_err(|_| bad("value"))?,
            )))),
            Type::FLOAT4 => Ok(ScalarValue::Float64(Some(
                f32::from_be_bytes(value.try_into().map_err(|_| bad("value"))?).into(),
            ))),
            Type::FLOAT8 => Ok(ScalarValue::Float64(Some(f64::from_be_bytes(
                value.try_into().map_err(|_| bad("value"))?,
            )))),
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let pg = i64::from_be_bytes(value.try_into().map_err(|_| bad("value"))?);
                let us = pg.checked_add(PG_EPOCH_MICROS).ok_or_else(|| bad("value"))?;
                Ok(ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into())))
            }
            Type::DATE => {
                let pg = i32::from_be_bytes(value.try_into().map_err(|_| bad("value"))?);
                Ok(ScalarValue::Date32(Some(
                    pg.checked_add(PG_EPOCH_DAYS).ok_or_else(|| bad("value"))?,
                )))
            }
            Type::BYTEA => Ok(ScalarValue::Binary(Some(value.to_vec()))),
            Type::UUID if value.len() == 16 => Ok(ScalarValue::Utf8(Some(uuid_text(value)))),
            Type::UUID => Err(bad("value")),
            Type::JSONB => match value.split_first() {
                Some((1, rest)) => utf8(rest).map_err(|_| bad("value")),
                _ => Err(bad("value")),
            },
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
                utf8(value).map_err(|_| bad("value (not UTF-8)"))
            }
            Type::FLOAT4_ARRAY => {
                let items =
                    <Vec<Option<f32>> as postgres_types::FromSql>::from_sql(ty, value).map_err(|_| bad("value"))?;
                vector(items.into_iter().map(|x| x.map(f64::from)), &bad)
            }
            Type::FLOAT8_ARRAY => {
                let items =
                    <Vec<Option<f64>> as postgres_types::FromSql>::from_sql(ty, value).map_err(|_| bad("value"))?;
                vector(items.into_iter(), &bad)
            }
            _ => Err(BadParameter::new(format!(
                "has type {} in the binary format, which this server does not read; send it as text",
                ty.name()
            ))),
        };
    }
    let text = std::str::from_utf8(value).map_err(|_| bad("value (not UTF-8)"))?;
    if text.contains('\0') {
        return Err(bad("value (it contains a NUL byte)"));
    }
    match *ty {
        Type::BOOL => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
            "f" | "false" | "no" | "n" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
            _ => Err(bad("value")),
        },
        Type::INT2 | Type::INT4 | Type::INT8 => text
            .trim()
            .parse::<i64>()
            .map(|v| ScalarValue::Int64(Some(v)))
            .map_err(|_| bad("value")),
        Type::FLOAT4 | Type::FLOAT8 => text
            .trim()
            .parse::<f64>()
            .map(|v| ScalarValue::Float64(Some(v)))
            .map_err(|_| bad("value")),
        Type::BYTEA => match text.strip_prefix("\\x") {
            Some(hex) if hex.len() % 2 == 0 => {
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| hex.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
                    .collect();
                bytes.map(|b| ScalarValue::Binary(Some(b))).ok_or_else(|| bad("value"))
            }
            Some(_) => Err(bad("value")),
            None => Ok(ScalarValue::Binary(Some(text.as_bytes().to_vec()))),
        },
        Type::TIMESTAMPTZ | Type::TIMESTAMP => timestamp_param(text).ok_or_else(|| BadParameter {
            code: "22007",
            message: format!(
                "is not a valid {} value (write it as 2025-01-31 08:30:00+00)",
                ty.name()
            ),
        }),
        Type::DATE => date_param(text)
            .map(|d| ScalarValue::Date32(Some(days_since_1970(d))))
            .ok_or_else(|| BadParameter {
                code: "22007",
                message: "is not a valid date value (write it as 2025-01-31)".to_owned(),
            }),
        Type::FLOAT4_ARRAY | Type::FLOAT8_ARRAY => {
            let inner = text
                .trim()
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .ok_or_else(|| bad("value (write it as {1.5,2,-0.25})"))?;
            if inner.trim().is_empty() {
                return vector(std::iter::empty(), &bad);
            }
            let items: Vec<Option<f64>> = inner
                .split(',')
                .map(|item| match item.trim() {
                    i if i.eq_ignore_ascii_case("null") => Ok(None),
                    i => i.parse::<f64>().map(Some).map_err(|_| bad("value")),
                })
                .collect::<Result<_, _>>()?;
            vector(items.into_iter(), &bad)
        }
        _ => Ok(ScalarValue::Utf8(Some(text.to_owned()))),
    }
}

/// A `float4[]`/`float8[]` parameter as the list of `float4` a `vector(n)`
/// column is cast from (the gateway checks its length against `n`). A
/// vector has no NULL elements.
fn vector(
    items: impl Iterator<Item = Option<f64>>,
    bad: &dyn Fn(&str) -> BadParameter,
) -> Result<ScalarValue, BadParameter> {
    let values = items
        .map(|x| match x {
            Some(x) if x.is_finite() => Ok(ScalarValue::Float32(Some(x as f32))),
            Some(_) => Err(bad("value (a vector's numbers must be finite)")),
            None => Err(bad("value (a vector has no NULL elements)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values,
        &DataType::Float32,
    )))
}

fn utf8(bytes: &[u8]) -> Result<ScalarValue, std::str::Utf8Error> {
    let s = std::str::from_utf8(bytes)?;
    Ok(ScalarValue::Utf8(Some(s.to_owned())))
}

/// Days from 1970-01-01 to `d` (Arrow's `Date32`).
fn days_since_1970(d: NaiveDate) -> i32 {
    (d - DateTime::UNIX_EPOCH.date_naive()).num_days() as i32
}

/// A date or time in Postgres's ISO text forms (`2025-01-31`,
/// `2025-01-31 08:30:00+00`, with `T`, with or without a zone): the date and
/// time as written, and the zone's offset when one is given.
fn iso_datetime(text: &str) -> Option<(chrono::NaiveDateTime, Option<chrono::FixedOffset>)> {
    let t = text.trim();
    ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
        .iter()
        .find_map(|f| DateTime::parse_from_str(t, f).ok())
        .or_else(|| DateTime::parse_from_rfc3339(t).ok())
        .map(|d| (d.naive_local(), Some(*d.offset())))
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
                .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))
                .map(|d| (d, None))
        })
}

/// A date: the date as written of an ISO date or timestamp
/// (`2025-01-31T00:00:00.000+01:00` is 2025-01-31, as Postgres reads it;
/// node `pg` sends a `Date` so).
fn date_param(text: &str) -> Option<NaiveDate> {
    iso_datetime(text).map(|(local, _)| local.date())
}

/// A timestamp: an ISO date or timestamp, UTC when no zone is given (a
/// date alone is its midnight).
fn timestamp_param(text: &str) -> Option<ScalarValue> {
    let (local, offset) = iso_datetime(text)?;
    let utc = match offset {
        Some(offset) => local - offset,
        None => local,
    };
    let micros = utc.and_utc().timestamp_micros();
    Some(ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(cell: &Cell, ty: &Type) -> String {
        let mut out = BytesMut::new();
        cell.to_sql_text(ty, &mut out, &FormatOptions::default()).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn text_forms_are_postgres_ones() {
        assert_eq!(
            text(&Cell::Micros(1_738_312_200_123_456), &Type::TIMESTAMPTZ),
            "2025-01-31 08:30:00.123456+00"
        );
        assert_eq!(
            text(&Cell::Micros(1_738_312_200_000_000), &Type::TIMESTAMPTZ),
            "2025-01-31 08:30:00+00"
        );
        assert_eq!(
            text(&Cell::Micros(1_500_000), &Type::TIMESTAMP),
            "1970-01-01 00:00:01.5"
        );
        assert_eq!(text(&Cell::Days(-1), &Type::DATE), "1969-12-31");
        assert_eq!(text(&Cell::Bytes(vec![0, 255]), &Type::BYTEA), "\\x00ff");
        assert_eq!(text(&Cell::Bool(true), &Type::BOOL), "t");
        assert_eq!(text(&Cell::Float(f64::INFINITY), &Type::FLOAT8), "Infinity");
        assert_eq!(
            text(&Cell::Floats(vec![Some(1.0), Some(2.5), None]), &Type::FLOAT4_ARRAY),
            "{1,2.5,NULL}"
        );
    }

    #[test]
    fn binary_parameters_round_trip() {
        let mut out = BytesMut::new();
        Cell::Micros(1_738_312_200_123_456)
            .to_sql(&Type::TIMESTAMPTZ, &mut out)
            .unwrap();
        assert_eq!(
            parameter(&Type::TIMESTAMPTZ, true, Some(&out)).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_738_312_200_123_456), Some("UTC".into()))
        );
        let mut out = BytesMut::new();
        Cell::Days(20_000).to_sql(&Type::DATE, &mut out).unwrap();
        assert_eq!(
            parameter(&Type::DATE, true, Some(&out)).unwrap(),
            ScalarValue::Date32(Some(20_000))
        );
        let id = "6fa459ea-ee8a-3ca4-894e-db77e160355e";
        let mut out = BytesMut::new();
        Cell::Text(id.into()).to_sql(&Type::UUID, &mut out).unwrap();
        assert_eq!(out.len(), 16);
        assert_eq!(
            parameter(&Type::UUID, true, Some(&out)).unwrap(),
            ScalarValue::Utf8(Some(id.into()))
        );
    }

    #[test]
    fn bad_parameters_do_not_repeat_the_value() {
        let e = parameter(&Type::INT8, false, Some(b"secret-value")).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(parameter(&Type::TEXT, false, Some(b"a\0b")).is_err());
        assert!(parameter(&Type::INT8, true, Some(b"123")).is_err());
        assert_eq!(parameter(&Type::INT8, true, None).unwrap(), ScalarValue::Null);
    }

    #[test]
    fn dates_and_times_in_text_take_the_iso_forms_and_others_are_22007() {
        let micros = |t: &str| parameter(&Type::TIMESTAMPTZ, false, Some(t.as_bytes())).unwrap();
        let at = ScalarValue::TimestampMicrosecond(Some(1_738_312_200_000_000), Some("UTC".into()));
        for form in [
            "2025-01-31 08:30:00+00",
            "2025-01-31T08:30:00Z",
            "2025-01-31T09:30:00+01:00",
            "2025-01-31 08:30:00",
        ] {
            assert_eq!(micros(form), at, "{form}");
        }
        for form in ["1969-12-31", "1969-12-31T00:00:00.000+01:00", "1969-12-31 23:59:59"] {
            assert_eq!(
                parameter(&Type::DATE, false, Some(form.as_bytes())).unwrap(),
                ScalarValue::Date32(Some(-1)),
                "{form}"
            );
        }
        for (ty, bad) in [
            (Type::TIMESTAMPTZ, "yesterday at noon"),
            (Type::DATE, "2025-02-30"),
            (Type::DATE, "31/01/2025"),
        ] {
            let e = parameter(&ty, false, Some(bad.as_bytes())).unwrap_err();
            assert_eq!(e.code, "22007", "{bad}");
            assert!(!e.to_string().contains(bad), "{e}");
        }
        assert_eq!(parameter(&Type::INT8, false, Some(b"x")).unwrap_err().code, "22P02");
    }

    #[test]
    fn vectors_in_text_and_binary_are_lists_of_float4() {
        let list = |xs: &[f32]| {
            let values: Vec<ScalarValue> = xs.iter().map(|x| ScalarValue::Float32(Some(*x))).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float32))
        };
        assert_eq!(
            parameter(&Type::FLOAT4_ARRAY, false, Some(b"{1.5, 2,-0.25}")).unwrap(),
            list(&[1.5, 2.0, -0.25])
        );
        let mut out = BytesMut::new();
        vec![1.5f64, 2.0].to_sql(&Type::FLOAT8_ARRAY, &mut out).unwrap();
        assert_eq!(
            parameter(&Type::FLOAT8_ARRAY, true, Some(&out)).unwrap(),
            list(&[1.5, 2.0])
        );
        for bad in ["1,2", "{1,NULL}", "{1,x}", "{NaN}"] {
            let e = parameter(&Type::FLOAT4_ARRAY, false, Some(bad.as_bytes())).unwrap_err();
            assert_eq!(e.code, "22P02", "{bad}");
        }
    }
}
