//! Rows: validation of incoming values against a table's columns, the
//! normalized form kept in the commit log, and a row in the JSON form apps see
//! (each value's form is in [`crate::json_form`]).
//!
//! Normalized values are JSON values with one fixed encoding per column
//! type: timestamps as integer microseconds since the epoch (UTC), dates as
//! integer days since the epoch, bytes as standard base64, uuids in lower-case
//! hyphenated form, vectors as arrays of numbers. A null column is absent.

use base64::Engine as _;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use coffer_core::schema::{ColumnDef, ColumnType, TableDef};
use coffer_core::{Seq, TableName};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::StorageError;
use crate::json_form;

/// Values of a row's user columns, keyed by column name.
pub type Values = Map<String, Value>;

/// Longest accepted row id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// One version of one row, as stored: system columns plus normalized values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowVersion {
    /// The row's primary key.
    pub id: String,
    /// The change that produced this version.
    pub seq: Seq,
    /// Whether this version is a tombstone (the row was deleted).
    pub deleted: bool,
    /// The app that created the row.
    pub created_by: String,
    /// The app that wrote this version.
    pub updated_by: String,
    /// When the row was created, microseconds since the epoch.
    pub created_at: i64,
    /// When this version was written, microseconds since the epoch.
    pub updated_at: i64,
    /// Normalized user-column values; null columns are absent.
    pub values: Values,
}

impl RowVersion {
    /// The row as apps see it: system columns and user columns, each in its
    /// JSON form ([`crate::json_form`]).
    pub fn to_api_json(&self, table: &TableDef) -> Values {
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.clone()));
        for col in &table.columns {
            let v = self
                .values
                .get(&col.name)
                .map(|v| json_form::from_normalized(col.ty, v))
                .unwrap_or(Value::Null);
            out.insert(col.name.clone(), v);
        }
        out.insert("_seq".into(), Value::from(self.seq.0));
        out.insert("_created_by".into(), Value::String(self.created_by.clone()));
        out.insert("_updated_by".into(), Value::String(self.updated_by.clone()));
        out.insert("_created_at".into(), json_form::timestamp(self.created_at));
        out.insert("_updated_at".into(), json_form::timestamp(self.updated_at));
        out
    }
}

/// Checks a row id given by a client.
pub fn validate_id(table: &TableName, id: &Value) -> Result<String, StorageError> {
    let bad = |reason: &str| StorageError::InvalidRow {
        table: table.clone(),
        column: "id".into(),
        reason: reason.into(),
    };
    let s = id.as_str().ok_or_else(|| bad("expected a string"))?;
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(bad("must be 1 to 256 bytes long"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(s.to_owned())
}

/// Validates and normalizes the user-column values of an insert (`partial =
/// false`: every non-nullable column is required) or of an update's patch
/// (`partial = true`). `id` must have been removed from `input` already.
pub fn normalize_values(
    table_name: &TableName,
    table: &TableDef,
    input: &Values,
    partial: bool,
) -> Result<Values, StorageError> {
    let err = |column: &str, reason: String| StorageError::InvalidRow {
        table: table_name.clone(),
        column: column.to_owned(),
        reason,
    };
    let mut out = Map::new();
    for (name, value) in input {
        let Some(col) = table.column(name) else {
            if coffer_core::schema::SYSTEM_COLUMNS.contains(&name.as_str()) {
                return Err(err(name, "is a system column and cannot be written".into()));
            }
            return Err(err(
                name,
                format!("unknown column (table {table_name} has no such column)"),
            ));
        };
        if value.is_null() {
            if !col.nullable {
                return Err(err(name, "must not be null".into()));
            }
            if partial {
                // An explicit null in a patch clears the column.
                out.insert(name.clone(), Value::Null);
            }
            continue;
        }
        let v = normalize_value(col, value).map_err(|reason| err(name, reason))?;
        out.insert(name.clone(), v);
    }
    if !partial {
        check_required(table_name, table, &out)?;
    }
    Ok(out)
}

/// Fails when a non-nullable column is missing from `values`.
pub fn check_required(table_name: &TableName, table: &TableDef, values: &Values) -> Result<(), StorageError> {
    for col in &table.columns {
        if !col.nullable && values.get(&col.name).is_none_or(Value::is_null) {
            return Err(StorageError::InvalidRow {
                table: table_name.clone(),
                column: col.name.clone(),
                reason: "is required".into(),
            });
        }
    }
    Ok(())
}

/// Applies a normalized patch to normalized values (explicit nulls clear).
pub fn apply_patch(values: &mut Values, patch: Values) {
    for (k, v) in patch {
        if v.is_null() {
            values.remove(&k);
        } else {
            values.insert(k, v);
        }
    }
}

fn normalize_value(col: &ColumnDef, v: &Value) -> Result<Value, String> {
    match col.ty {
        ColumnType::Text => v.as_str().map(|_| v.clone()).ok_or_else(|| expected("a string", v)),
        ColumnType::Integer => match v {
            Value::Number(n) if n.as_i64().is_some() => Ok(v.clone()),
            Value::Number(_) => Err("expected a 64-bit integer, got a number out of range or with a fraction".into()),
            _ => Err(expected("an integer", v)),
        },
        ColumnType::Float => match v.as_f64() {
            Some(f) if f.is_finite() => Ok(Value::from(f)),
            _ => Err(expected("a number", v)),
        },
        ColumnType::Boolean => v.as_bool().map(Value::Bool).ok_or_else(|| expected("true or false", v)),
        ColumnType::Timestamp => {
            let s = v.as_str().ok_or_else(|| expected("an RFC 3339 timestamp string", v))?;
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("expected an RFC 3339 timestamp such as 2025-01-31T09:30:00Z: {e}"))?;
            Ok(Value::from(t.with_timezone(&Utc).timestamp_micros()))
        }
        ColumnType::Date => {
            let s = v.as_str().ok_or_else(|| expected("a date string YYYY-MM-DD", v))?;
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|e| format!("expected a date such as 2025-01-31: {e}"))?;
            Ok(Value::from(i64::from(d.num_days_from_ce()) - 719_163))
        }
        ColumnType::Json => Ok(v.clone()),
        ColumnType::Bytes => {
            let s = v.as_str().ok_or_else(|| expected("a base64 string", v))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("expected standard base64: {e}"))?;
            Ok(v.clone())
        }
        ColumnType::Uuid => {
            let s = v.as_str().ok_or_else(|| expected("a UUID string", v))?;
            normalize_uuid(s)
                .map(Value::String)
                .ok_or_else(|| format!("`{s}` is not a UUID"))
        }
        ColumnType::Vector(n) => {
            let items = v.as_array().ok_or_else(|| expected("an array of numbers", v))?;
            if items.len() != n as usize {
                return Err(format!("expected {n} numbers, got {}", items.len()));
            }
            items
                .iter()
                .map(|x| match x.as_f64() {
                    Some(f) if f.is_finite() && f.abs() <= f64::from(f32::MAX) => Ok(Value::from(f as f32 as f64)),
                    _ => Err(expected("finite numbers", x)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
    }
}

fn expected(what: &str, got: &Value) -> String {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("expected {what}, got {kind}")
}

fn normalize_uuid(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashed_ok = s.len() == 32 || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    if hex.len() != 32 || !dashed_ok || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> TableDef {
        TableDef::with_every_type()
    }

    fn name() -> TableName {
        TableName::new("s", "t")
    }

    #[test]
    fn normalizes_every_type_and_round_trips_to_api_form() {
        let input = json!({
            "name": "Ada", "n": 7, "f": 1.5, "b": true, "ts": "2025-01-31T09:30:00+01:00",
            "day": "2025-01-31", "j": {"k": [1, 2]}, "raw": "aGk=",
            "u": "6FA459EA-EE8A-3CA4-894E-DB77E160355E", "v": [1, 2.5, -3]
        });
        let values = normalize_values(&name(), &table(), input.as_object().unwrap(), false).unwrap();
        assert_eq!(values["ts"], json!(1_738_312_200_000_000i64));
        assert_eq!(values["u"], json!("6fa459ea-ee8a-3ca4-894e-db77e160355e"));
        let row = RowVersion {
            id: "r1".into(),
            seq: Seq(1),
            deleted: false,
            created_by: "a".into(),
            updated_by: "a".into(),
            created_at: 0,
            updated_at: 0,
            values,
        };
        let api = row.to_api_json(&table());
        assert_eq!(api["ts"], json!("2025-01-31T08:30:00.000000Z"));
        assert_eq!(api["day"], json!("2025-01-31"));
        assert_eq!(api["_created_at"], json!("1970-01-01T00:00:00.000000Z"));
    }

    #[test]
    fn refuses_bad_values_naming_the_column() {
        let cases = [
            (json!({"n": 1}), "name", "is required"),
            (json!({"name": 1}), "name", "expected a string"),
            (json!({"name": "x", "n": 1.5}), "n", "64-bit integer"),
            (json!({"name": "x", "ts": "yesterday"}), "ts", "RFC 3339"),
            (json!({"name": "x", "v": [1, 2]}), "v", "expected 3 numbers"),
            (json!({"name": "x", "u": "nope"}), "u", "not a UUID"),
            (json!({"name": "x", "raw": "***"}), "raw", "base64"),
            (json!({"name": "x", "nope": 1}), "nope", "unknown column"),
            (json!({"name": "x", "_seq": 1}), "_seq", "system column"),
            (json!({"name": null}), "name", "must not be null"),
        ];
        for (input, column, reason) in cases {
            match normalize_values(&name(), &table(), input.as_object().unwrap(), false) {
                Err(StorageError::InvalidRow {
                    column: c, reason: r, ..
                }) => {
                    assert_eq!(c, column, "{input}");
                    assert!(r.contains(reason), "{input}: {r}");
                }
                other => panic!("{input}: expected InvalidRow, got {other:?}"),
            }
        }
    }

    #[test]
    fn patches_may_omit_required_columns_and_null_clears() {
        let patch = normalize_values(&name(), &table(), json!({"n": null}).as_object().unwrap(), true).unwrap();
        let mut values = json!({"name": "x", "n": 3}).as_object().unwrap().clone();
        apply_patch(&mut values, patch);
        assert_eq!(values, *json!({"name": "x"}).as_object().unwrap());
    }
}
