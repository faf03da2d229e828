//! The JSON form of values, as apps see them: the one place each form is
//! written down.
//!
//! Timestamps are RFC 3339 UTC with microseconds (`2025-01-31T08:30:00.000000Z`),
//! dates `YYYY-MM-DD`, bytes standard base64, `json` columns the JSON value
//! itself, uuids lower-case hyphenated text, vectors arrays of numbers, and
//! floats JSON numbers (null when not finite). Text, integers and booleans
//! are their JSON counterparts; a null is `null`.
//!
//! Two paths build this form: [`crate::RowVersion::to_api_json`] from the
//! normalized commit-log form ([`from_normalized`]), and the gateway from
//! Arrow arrays (SQL results and listings); both call the functions here.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use coffer_core::schema::ColumnType;
use serde_json::Value;

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// A timestamp given in microseconds since the epoch, as RFC 3339 UTC text
/// with microsecond precision (the number as text if out of range).
pub fn timestamp(micros: i64) -> Value {
    Value::String(
        DateTime::<Utc>::from_timestamp_micros(micros)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_else(|| micros.to_string()),
    )
}

/// A date given in days since the epoch, as `YYYY-MM-DD` (the number as
/// text if out of range).
pub fn date(days: i64) -> Value {
    Value::String(
        NaiveDate::from_num_days_from_ce_opt((days + EPOCH_DAYS_FROM_CE) as i32)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| days.to_string()),
    )
}

/// Bytes as standard base64 text.
pub fn bytes(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A float as a JSON number, or null when it is not finite.
pub fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The stored text of a `json` column as the JSON value it holds (the text
/// itself if it does not parse).
pub fn json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

/// A normalized (commit-log) value of a column of type `ty` in its JSON
/// form. Only timestamps and dates differ: normalized bytes, uuids, vectors,
/// floats and `json` values are already in their JSON form.
pub fn from_normalized(ty: ColumnType, v: &Value) -> Value {
    match (ty, v) {
        (ColumnType::Timestamp, Value::Number(n)) => n.as_i64().map(timestamp).unwrap_or_else(|| v.clone()),
        (ColumnType::Date, Value::Number(n)) => n.as_i64().map(date).unwrap_or_else(|| v.clone()),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_has_its_form() {
        assert_eq!(timestamp(1_738_312_200_000_000), json!("2025-01-31T08:30:00.000000Z"));
        assert_eq!(timestamp(i64::MAX), json!(i64::MAX.to_string()));
        assert_eq!(date(20_119), json!("2025-01-31"));
        assert_eq!(date(-1), json!("1969-12-31"));
        assert_eq!(bytes(b"hi"), json!("aGk="));
        assert_eq!(float(1.5), json!(1.5));
        assert_eq!(float(f64::NAN), Value::Null);
        assert_eq!(json_text("{\"k\":[1]}"), json!({"k": [1]}));
        assert_eq!(json_text("not json"), json!("not json"));
        assert_eq!(from_normalized(ColumnType::Date, &json!(0)), json!("1970-01-01"));
        assert_eq!(from_normalized(ColumnType::Integer, &json!(0)), json!(0));
    }
}
