//! `POST /v1/sql`: one statement with bound parameters.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use coffer_gateway::GatewayError;
use coffer_gateway::sql;
use serde_json::{Value, json};

use super::openapi::{Problem, SqlRequest, SqlResponse};
use super::{ApiCredentials, Done, authenticate, finish, json_body};
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
    let caller = match authenticate(&state, &credentials).await {
        Ok(c) => c,
        Err(response) => return response,
    };
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
    let (sql, params) = match request {
        Ok(r) => r,
        Err(e) => return finish(&state, &caller, "read", Vec::new(), Err(e)),
    };
    match sql::execute(&caller, &sql, &params).await {
        Ok(result) => {
            let body = json!({
                "columns": result.columns,
                "rows": result.rows,
                "row_count": result.row_count,
            });
            let done = Done {
                status: StatusCode::OK,
                body: Some(body),
                rows: result.row_count,
            };
            finish(&state, &caller, result.kind.as_str(), result.tables, Ok(done))
        }
        Err(e) => {
            let kind = sql::kind_of(&sql);
            finish(&state, &caller, kind.as_str(), Vec::new(), Err(e))
        }
    }
}
