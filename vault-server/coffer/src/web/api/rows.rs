//! `/v1/tables/{table}/rows` and `/v1/tables/{table}/rows/{id}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use coffer_core::{Seq, TableName};
use coffer_gateway::Operation::{self, Delete, Insert, Read, Update};
use coffer_gateway::filter::ListQuery;
use coffer_gateway::rows::{self, table_name};
use coffer_gateway::{Caller, GatewayError};
use coffer_storage::Values;
use serde_json::{Value, json};

use super::openapi::{FILTERS_DESCRIPTION, FilterValue, InsertBody, Problem, RowsPage, UpdateBatch};
use super::{ApiCredentials, Done, json_body, query_pairs, serve};
use crate::web::AppState;

/// Runs `op` through the gateway on the table named in the path; `op`
/// returns what to answer.
async fn on_table<F, Fut>(
    state: &AppState,
    credentials: &ApiCredentials,
    table: &str,
    operation: Operation,
    op: F,
) -> Response
where
    F: FnOnce(Caller, TableName) -> Fut,
    Fut: Future<Output = Result<Done, GatewayError>>,
{
    let table = table_name(table);
    let tables = table.iter().cloned().collect();
    serve(state, credentials, operation, tables, |caller| async move {
        op(caller, table?).await
    })
    .await
}

/// `if_seq` from the query string.
fn if_seq(raw: Option<&str>) -> Result<Option<Seq>, GatewayError> {
    for (k, v) in query_pairs(raw)? {
        if k == "if_seq" {
            return v
                .parse::<i64>()
                .map(|n| Some(Seq(n)))
                .map_err(|_| GatewayError::InvalidFilter {
                    parameter: "if_seq".into(),
                    reason: format!("`{v}` is not a sequence number"),
                });
        }
    }
    Ok(None)
}

fn object(value: Value) -> Result<Values, GatewayError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(GatewayError::InvalidBody(
            "expected a JSON object of column values".into(),
        )),
    }
}

/// Lists rows: filters `col=op.value`, `select`, `order`, `limit`, `cursor`.
#[utoipa::path(
    get, path = "/v1/tables/{table}/rows", tag = "rows",
    params(
        ("table" = String, Path, description = "`schema.table`, e.g. `contacts.people`", example = "notes.notes"),
        ("select" = Option<String>, Query, description = "Columns, comma-separated (`id` is always included)"),
        ("order" = Option<String>, Query, description = "`col[.asc|.desc][.nullsfirst|.nullslast]`, comma-separated"),
        ("limit" = Option<u32>, Query, description = "Rows per page, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("filters" = Option<HashMap<String, FilterValue>>, Query, style = Form, explode, description = FILTERS_DESCRIPTION),
    ),
    responses(
        (status = 200, description = "A page of rows", body = RowsPage),
        (status = 400, description = "Bad filter, order, limit, cursor or column", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow reading", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table (or not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The query exceeds a limit (filters, memory, result size)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The app already runs its maximum of queries at once; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The query ran past the time limit and was stopped", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    on_table(&state, &credentials, &table, Read, |caller, table| async move {
        let query = ListQuery::parse(&query_pairs(raw.as_deref())?)?;
        let page = rows::list(&caller, &table, &query).await?;
        let n = page.rows.len() as u64;
        Ok(Done {
            status: StatusCode::OK,
            body: Some(json!({ "rows": page.rows, "next_cursor": page.next_cursor })),
            rows: n,
        })
    })
    .await
}

/// One row by id.
#[utoipa::path(
    get, path = "/v1/tables/{table}/rows/{id}", tag = "rows",
    params(
        ("table" = String, Path, description = "`schema.table`", example = "notes.notes"),
        ("id" = String, Path, description = "The row id"),
        ("select" = Option<String>, Query, description = "Columns, comma-separated"),
    ),
    responses(
        (status = 200, description = "The row", body = Object),
        (status = 400, description = "A `select` naming a column that does not exist (or is not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow reading", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table or row", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path((table, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    on_table(&state, &credentials, &table, Read, |caller, table| async move {
        let mut select = None;
        for (k, v) in query_pairs(raw.as_deref())? {
            match k.as_str() {
                "select" => select = Some(v.split(',').map(|c| c.trim().to_owned()).collect::<Vec<_>>()),
                other => {
                    return Err(GatewayError::InvalidFilter {
                        parameter: other.to_owned(),
                        reason: "a single row takes only `select`".into(),
                    });
                }
            }
        }
        let row = rows::get(&caller, &table, &id, select.as_deref()).await?;
        Ok(Done {
            status: StatusCode::OK,
            body: Some(Value::Object(row)),
            rows: 1,
        })
    })
    .await
}

/// Inserts one row (an object) or a batch (an array), atomically.
#[utoipa::path(
    post, path = "/v1/tables/{table}/rows", tag = "rows",
    params(("table" = String, Path, description = "`schema.table`", example = "notes.notes")),
    request_body(content = InsertBody, description = "A row (object of column values; `id` optional) or an array of rows"),
    responses(
        (status = 201, description = "The row written, or `{\"rows\": [...]}` for a batch", body = Object),
        (status = 400, description = "Bad body or unknown column", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow creating (these columns)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table (or not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`id-in-use`: a row with this id exists (the same answer whoever holds it)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value does not fit its column", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn insert(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path(table): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = json_body(&state, body);
    on_table(&state, &credentials, &table, Insert, |caller, table| async move {
        let (batch, values) = match body? {
            Value::Array(items) => (true, items.into_iter().map(object).collect::<Result<Vec<_>, _>>()?),
            other => (false, vec![object(other)?]),
        };
        let mut written = rows::insert(&caller, &table, values).await?;
        let n = written.len() as u64;
        let body = if batch {
            json!({ "rows": written })
        } else {
            Value::Object(written.pop().unwrap_or_default())
        };
        Ok(Done {
            status: StatusCode::CREATED,
            body: Some(body),
            rows: n,
        })
    })
    .await
}

/// Changes several rows atomically: each item names a row, the columns to
/// set and optionally the `_seq` it must still have.
#[utoipa::path(
    patch, path = "/v1/tables/{table}/rows", tag = "rows", operation_id = "update_rows",
    params(("table" = String, Path, description = "`schema.table`", example = "notes.notes")),
    request_body(content = UpdateBatch, description = "The changes: every one applies or none does"),
    responses(
        (status = 200, description = "`{\"rows\": [...]}`: the rows after the change, in request order", body = Object),
        (status = 400, description = "Bad body, unknown column, or a row named twice", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow updating (these columns)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table or row", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: a row changed (its `_seq` is not its `if_seq`) and nothing was written; `current` holds that row as it is now, or `null` if it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value does not fit its column", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn update_many(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path(table): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = json_body(&state, body);
    on_table(&state, &credentials, &table, Update, |caller, table| async move {
        let changes = row_changes(body?)?;
        let written = rows::update_many(&caller, &table, changes).await?;
        let n = written.len() as u64;
        Ok(Done {
            status: StatusCode::OK,
            body: Some(json!({ "rows": written })),
            rows: n,
        })
    })
    .await
}

/// The items of a batch update: `[{"id": …, "set": {…}, "if_seq": n}]`.
fn row_changes(body: Value) -> Result<Vec<rows::RowChange>, GatewayError> {
    let Value::Array(items) = body else {
        return Err(GatewayError::InvalidBody(
            "expected an array of changes, each {\"id\": …, \"set\": {…}, \"if_seq\": n}".into(),
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |what: &str| GatewayError::InvalidBody(format!("change {i}: {what}"));
            let Value::Object(mut item) = item else {
                return Err(bad("expected an object {\"id\": …, \"set\": {…}}"));
            };
            let id = match item.remove("id") {
                Some(Value::String(id)) => id,
                _ => return Err(bad("`id` must be the row's id, a string")),
            };
            let patch = match item.remove("set") {
                Some(Value::Object(set)) => set,
                _ => return Err(bad("`set` must be an object of column values")),
            };
            let if_seq = match item.remove("if_seq") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Seq(v
                    .as_i64()
                    .ok_or_else(|| bad("`if_seq` must be a sequence number"))?)),
            };
            if let Some(other) = item.keys().next() {
                return Err(bad(&format!(
                    "unknown field `{}` (a change has `id`, `set` and `if_seq`)",
                    other.chars().take(64).collect::<String>()
                )));
            }
            Ok(rows::RowChange { id, patch, if_seq })
        })
        .collect()
}

/// Changes some columns of a row (`null` clears one).
#[utoipa::path(
    patch, path = "/v1/tables/{table}/rows/{id}", tag = "rows",
    params(
        ("table" = String, Path, description = "`schema.table`", example = "notes.notes"),
        ("id" = String, Path, description = "The row id"),
        ("if_seq" = Option<i64>, Query, description = "Change only if the row's `_seq` is this"),
    ),
    request_body(content = Object, description = "Column values to change"),
    responses(
        (status = 200, description = "The row after the change", body = Object),
        (status = 400, description = "Bad body or unknown column", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow updating (these columns)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table or row", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the row changed (its `_seq` is not `if_seq`); `current` holds it as it is now, or `null` if it was deleted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value does not fit its column", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path((table, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = json_body(&state, body);
    on_table(&state, &credentials, &table, Update, |caller, table| async move {
        let expected = if_seq(raw.as_deref())?;
        let patch = object(body?)?;
        let row = rows::update(&caller, &table, &id, patch, expected).await?;
        Ok(Done {
            status: StatusCode::OK,
            body: Some(Value::Object(row)),
            rows: 1,
        })
    })
    .await
}

/// Deletes a row.
#[utoipa::path(
    delete, path = "/v1/tables/{table}/rows/{id}", tag = "rows",
    params(
        ("table" = String, Path, description = "`schema.table`", example = "notes.notes"),
        ("id" = String, Path, description = "The row id"),
        ("if_seq" = Option<i64>, Query, description = "Delete only if the row's `_seq` is this"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An `if_seq` that is not a sequence number", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow deleting", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such table or row", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`conflict`: the row changed (its `_seq` is not `if_seq`); `current` holds it as it is now, or `null` if it was deleted", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    Path((table, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    on_table(&state, &credentials, &table, Delete, |caller, table| async move {
        let expected = if_seq(raw.as_deref())?;
        rows::delete(&caller, &table, &id, expected).await?;
        Ok(Done {
            status: StatusCode::NO_CONTENT,
            body: None,
            rows: 1,
        })
    })
    .await
}
