//! `POST /v1/sql`: one statement with bound parameters.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use coffer_gateway::sql::{self, SqlResult};
use coffer_gateway::{GatewayError, Operation};
use serde_json::{Value, json};

use super::openapi::{Problem, SqlRequest, SqlResponse};
use super::{ApiCredentials, Done, json_body, serve};
use crate::web::AppState;

/// Runs one SELECT, INSERT, UPDATE or DELETE over the granted tables.
#[utoipa::path(
    post, path = "/v1/sql", tag = "sql",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "Columns with their types and rows as arrays; a write answers one `count` column", body = SqlResponse),
        (status = 400, description = "SQL that does not parse or plan, or is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grant does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A table that does not exist (or is not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`id-in-use`: an `INSERT` named an id already in use (the same answer whoever holds it); `conflict`: a row changed while the statement ran", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value does not fit its column, or the query exceeds a limit (depth, memory, result size)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The app already runs its maximum of queries at once; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The query ran past the time limit and was stopped", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn execute(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = json_body(&state, body).and_then(|v| {
        let sql = v.get("sql").and_then(Value::as_str).map(str::to_owned);
        let params = match v.get("params") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(p)) => Ok(p.clone()),
            Some(_) => Err(GatewayError::InvalidBody("`params` must be an array".into())),
        }?;
        sql.map(|s| (s, params))
            .ok_or_else(|| GatewayError::InvalidBody("expected {\"sql\": \"…\", \"params\": [...]}".into()))
    });
    let operation = request.as_ref().map_or(Operation::Read, |(sql, _)| sql::kind_of(sql));
    serve(&state, &credentials, operation, Vec::new(), |caller| async move {
        let (sql, params) = request?;
        sql::execute(&caller, &sql, &params).await
    })
    .await
}

impl From<SqlResult> for Done {
    fn from(result: SqlResult) -> Done {
        Done {
            status: StatusCode::OK,
            body: Some(json!({
                "columns": result.columns,
                "rows": result.rows,
                "row_count": result.row_count,
            })),
            rows: result.row_count,
        }
    }
}
