//! `COPY schema.table [(columns)] FROM STDIN` in the text format or CSV:
//! the data is collected (at most [`MAX_COPY_BYTES`]), read into rows by
//! the columns' types, and inserted as one atomic write through the
//! gateway's row insert (the create right checked for every column named;
//! at most [`MAX_BATCH_ROWS`] rows per `COPY`).

use std::fmt::Debug;

use async_trait::async_trait;
use coffer_auth::Action;
use coffer_core::TableName;
use coffer_core::schema::ColumnType;
use coffer_gateway::rows::{self, MAX_BATCH_ROWS};
use coffer_gateway::{Caller, GatewayError, Logged, Operation};
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use serde_json::{Map, Value};

use crate::connection::Connection;
use crate::errors::{ERROR, statement_error, wire};

/// Most bytes one `COPY … FROM STDIN` may send.
pub const MAX_COPY_BYTES: usize = 16 * 1024 * 1024;

/// A `COPY … FROM STDIN` waiting for its data.
pub(crate) struct Pending {
    table: TableName,
    columns: Vec<(String, Option<ColumnType>)>,
    csv: bool,
    header: bool,
    data: Vec<u8>,
    too_large: bool,
}

impl Pending {
    /// How many columns each line holds.
    pub fn width(&self) -> usize {
        self.columns.len()
    }
}

/// Checks a `COPY … FROM STDIN` before its data comes: the table must be
/// one the token names (else it does not exist), the columns the table's.
pub(crate) async fn start(
    caller: &Caller,
    table: &str,
    columns: Option<&[String]>,
    csv: bool,
    header: bool,
) -> Result<Pending, GatewayError> {
    let plain = table.replace('"', "");
    let name = match plain.split('.').collect::<Vec<_>>().as_slice() {
        [schema, table] | ["vault", schema, table] => TableName::new(*schema, *table),
        _ => return Err(GatewayError::TableNotFound(plain.clone())),
    };
    if !caller.names_table(&name) {
        return Err(GatewayError::TableNotFound(name.to_string()));
    }
    let installed = caller.gateway().engine().table(caller.vault(), &name).await?;
    let of = |column: &str| installed.def.columns.iter().find(|c| c.name == column).map(|c| c.ty);
    let columns = match columns {
        None => installed
            .def
            .columns
            .iter()
            .map(|c| (c.name.clone(), Some(c.ty)))
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                if n == "id" {
                    out.push((n.clone(), None));
                } else {
                    let ty = of(n).ok_or_else(|| GatewayError::UnknownColumn {
                        table: name.to_string(),
                        column: n.clone(),
                    })?;
                    out.push((n.clone(), Some(ty)));
                }
            }
            out
        }
    };
    // The create right for every column named, before any data comes.
    let named: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "id").collect();
    caller.check(&name, Action::Create, &named)?;
    Ok(Pending {
        table: name,
        columns,
        csv,
        header,
        data: Vec::new(),
        too_large: false,
    })
}

/// Rows a `COPY` wrote, for the access log.
struct Copied(u64);

impl Logged for Copied {
    fn rows(&self) -> u64 {
        self.0
    }
}

fn bad(line: usize, what: impl std::fmt::Display) -> GatewayError {
    GatewayError::InvalidBody(format!("COPY data, line {line}: {what}"))
}

/// The fields of each line of the text format (`\N` is NULL, backslash
/// escapes as Postgres writes them); ends at `\.`.
fn text_lines(data: &str) -> Result<Vec<Vec<Option<String>>>, GatewayError> {
    let mut out = Vec::new();
    for (n, line) in data.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() && n + 1 == data.split('\n').count() {
            continue;
        }
        let mut fields = Vec::new();
        for raw in line.split('\t') {
            if raw == "\\N" {
                fields.push(None);
                continue;
            }
            let mut value = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    value.push(c);
                    continue;
                }
                match chars.next() {
                    Some('t') => value.push('\t'),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('b') => value.push('\u{8}'),
                    Some('f') => value.push('\u{c}'),
                    Some('v') => value.push('\u{b}'),
                    Some(other) => value.push(other),
                    None => return Err(bad(n + 1, "a line ends with a backslash")),
                }
            }
            fields.push(Some(value));
        }
        out.push(fields);
    }
    Ok(out)
}

/// The fields of each record of CSV (`,`, `"` quotes, an unquoted empty
/// field is NULL).
fn csv_lines(data: &str) -> Result<Vec<Vec<Option<String>>>, GatewayError> {
    let mut out = Vec::new();
    let mut record: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut was_quoted, mut line) = (false, false, 1usize);
    let mut chars = data.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                was_quoted = true;
                at_start = false;
            }
            ',' => {
                record.push(take(&mut field, &mut was_quoted));
                at_start = false;
            }
            '\r' => {}
            '\n' => {
                if field == "\\." && record.is_empty() {
                    return Ok(out);
                }
                if !(at_start && field.is_empty()) {
                    record.push(take(&mut field, &mut was_quoted));
                    out.push(std::mem::take(&mut record));
                }
                at_start = true;
                line += 1;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err(bad(line, "a quoted field is not closed"));
    }
    if !(at_start && field.is_empty()) && field != "\\." {
        record.push(take(&mut field, &mut was_quoted));
        out.push(record);
    }
    Ok(out)
}

fn take(field: &mut String, was_quoted: &mut bool) -> Option<String> {
    let value = std::mem::take(field);
    let quoted = std::mem::replace(was_quoted, false);
    if value.is_empty() && !quoted { None } else { Some(value) }
}

/// A field's text as the JSON value its column takes.
fn value(ty: Option<&ColumnType>, text: &str, line: usize, column: &str) -> Result<Value, GatewayError> {
    let wrong = |what: &str| bad(line, format!("column `{column}`: expected {what}"));
    Ok(match ty {
        None | Some(ColumnType::Text | ColumnType::Uuid | ColumnType::Date) => Value::String(text.to_owned()),
        Some(ColumnType::Integer) => Value::from(text.trim().parse::<i64>().map_err(|_| wrong("an integer"))?),
        Some(ColumnType::Float) => Value::from(text.trim().parse::<f64>().map_err(|_| wrong("a number"))?),
        Some(ColumnType::Boolean) => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Value::Bool(true),
            "f" | "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => return Err(wrong("true or false")),
        },
        Some(ColumnType::Timestamp) => {
            let t = text.trim();
            let parsed = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
                .iter()
                .find_map(|f| chrono::DateTime::parse_from_str(t, f).ok())
                .ok_or_else(|| wrong("a timestamp with a zone, such as 2025-01-31 08:30:00+00"))?;
            Value::String(parsed.with_timezone(&chrono::Utc).to_rfc3339())
        }
        Some(ColumnType::Json) => serde_json::from_str(text).map_err(|_| wrong("JSON"))?,
        Some(ColumnType::Bytes) => {
            let hex = text
                .strip_prefix("\\x")
                .ok_or_else(|| wrong("bytes as \\x followed by hex digits"))?;
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
                .collect();
            let bytes = bytes.ok_or_else(|| wrong("bytes as \\x followed by hex digits"))?;
            Value::String(base64_encode(&bytes))
        }
        Some(ColumnType::Vector(_)) => {
            let inner = text
                .trim()
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .ok_or_else(|| wrong("a vector such as {1,2.5}"))?;
            let items: Result<Vec<Value>, _> = inner
                .split(',')
                .map(|v| v.trim().parse::<f64>().map(Value::from))
                .collect();
            Value::Array(items.map_err(|_| wrong("a vector such as {1,2.5}"))?)
        }
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The rows of `pending`'s data, as the row insert takes them.
fn rows_of(pending: &Pending) -> Result<Vec<Map<String, Value>>, GatewayError> {
    let data = std::str::from_utf8(&pending.data).map_err(|_| bad(0, "the data is not UTF-8"))?;
    if data.contains('\0') {
        return Err(bad(0, "the data contains a NUL byte"));
    }
    let mut lines = if pending.csv {
        csv_lines(data)?
    } else {
        text_lines(data)?
    };
    let skip = usize::from(pending.header && pending.csv);
    if skip > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    if lines.len() > MAX_BATCH_ROWS {
        return Err(GatewayError::QueryLimit(format!(
            "one COPY may insert at most {MAX_BATCH_ROWS} rows; split the data"
        )));
    }
    let mut out = Vec::with_capacity(lines.len());
    for (i, fields) in lines.into_iter().enumerate() {
        let line = i + 1 + skip;
        if fields.len() != pending.columns.len() {
            return Err(bad(
                line,
                format!(
                    "{} fields, but the COPY names {} columns",
                    fields.len(),
                    pending.columns.len()
                ),
            ));
        }
        let mut row = Map::new();
        for ((name, ty), field) in pending.columns.iter().zip(fields) {
            if let Some(text) = field {
                row.insert(name.clone(), value(ty.as_ref(), &text, line, name)?);
            }
        }
        out.push(row);
    }
    Ok(out)
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.touch();
        let mut pending = self.copy_in.lock().expect("copy in");
        if let Some(p) = pending.as_mut() {
            if p.data.len() + data.data.len() > MAX_COPY_BYTES {
                p.too_large = true;
                p.data = Vec::new();
            } else if !p.too_large {
                p.data.extend_from_slice(&data.data);
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.touch();
        let pending = self.copy_in.lock().expect("copy in").take();
        let Some(pending) = pending else {
            return Err(wire(ERROR, "08P01", "no COPY is in progress"));
        };
        if pending.too_large {
            return Err(wire(
                ERROR,
                "54000",
                format!("one COPY may send at most {MAX_COPY_BYTES} bytes; split the data"),
            ));
        }
        let session = self
            .session()
            .ok_or_else(|| wire(ERROR, "08P01", "not authenticated"))?;
        let table = pending.table.clone();
        let parsed = rows_of(&pending);
        let served = self
            .gateway()
            .run(
                &session.credentials,
                Operation::Insert,
                vec![table.clone()],
                |caller| async move {
                    let rows = parsed?;
                    if rows.is_empty() {
                        return Ok(Copied(0));
                    }
                    let written = rows::insert(&caller, &table, rows).await?;
                    Ok(Copied(written.len() as u64))
                },
            )
            .await;
        match served.result {
            Ok(Copied(n)) => {
                let tag = Tag::new("COPY").with_rows(usize::try_from(n).unwrap_or(usize::MAX));
                client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
                Ok(())
            }
            Err(e) => Err(PgWireError::UserError(Box::new(statement_error(&e)))),
        }
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy_in.lock().expect("copy in").take();
        wire(ERROR, "57014", format!("COPY from stdin failed: {}", fail.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_text_format_and_csv() {
        assert_eq!(
            text_lines("a\\tb\t\\N\nc\td\n\\.\nignored\n").unwrap(),
            vec![
                vec![Some("a\tb".into()), None],
                vec![Some("c".into()), Some("d".into())]
            ]
        );
        assert_eq!(
            csv_lines("id,name\n1,\"Ada, \"\"the\"\" Countess\"\n2,\n3,\"\"\n").unwrap(),
            vec![
                vec![Some("id".into()), Some("name".into())],
                vec![Some("1".into()), Some("Ada, \"the\" Countess".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some(String::new())],
            ]
        );
        assert!(csv_lines("1,\"open\n").is_err());
        assert_eq!(base64_encode(&[0, 1, 2, 255]), "AAEC/w==");
        assert_eq!(base64_encode(b"hi"), "aGk=");
    }

    #[test]
    fn values_take_their_column_types() {
        assert_eq!(
            value(Some(&ColumnType::Integer), "42", 1, "n").unwrap(),
            Value::from(42)
        );
        assert_eq!(
            value(Some(&ColumnType::Boolean), "t", 1, "b").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            value(Some(&ColumnType::Timestamp), "2025-01-31 08:30:00+00", 1, "t").unwrap(),
            Value::String("2025-01-31T08:30:00+00:00".into())
        );
        assert_eq!(
            value(Some(&ColumnType::Json), "{\"a\":[1]}", 1, "j").unwrap(),
            serde_json::json!({"a": [1]})
        );
        let e = value(Some(&ColumnType::Integer), "not-a-number", 3, "n").unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("`n`"), "{e}");
    }
}
