//! `GET /v1/changes`: the grant-filtered change feed (`docs/guides/sync.md`).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use coffer_gateway::Operation::Read;
use coffer_gateway::changes::{self, ChangesQuery};
use serde_json::json;

use super::openapi::{ChangesPage, Problem};
use super::{ApiCredentials, Done, query_pairs, serve};
use crate::web::AppState;

/// The changes after `since` to the tables the token may read, oldest first.
#[utoipa::path(
    get, path = "/v1/changes", tag = "changes", operation_id = "list_changes",
    params(
        ("since" = Option<String>, Query, description = "`cursor` of the previous page; without it the feed starts with a load of every row as it is now"),
        ("tables" = Option<String>, Query, description = "`schema.table`s, comma-separated (default: every table the token may read); keep the same for one cursor"),
        ("limit" = Option<u32>, Query, description = "Changes per page, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of changes", body = ChangesPage),
        (status = 400, description = "Bad `since`, `tables` or `limit`, or another parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A table in `tables` the grant names without reading", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A table in `tables` that does not exist (or is not granted)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor cannot resume (older than the changes the vault keeps, or given when the grant read less than it does now): load again without `since`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The load exceeds a limit (memory, result size)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The app already runs its maximum of queries at once; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The read ran past the time limit and was stopped", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn list(State(state): State<AppState>, credentials: ApiCredentials, RawQuery(raw): RawQuery) -> Response {
    let query = query_pairs(raw.as_deref()).and_then(|pairs| ChangesQuery::parse(&pairs));
    let tables = query.as_ref().ok().and_then(|q| q.tables.clone()).unwrap_or_default();
    serve(&state, &credentials, Read, tables, |caller| async move {
        let page = changes::changes(&caller, &query?).await?;
        let n = page.changes.len() as u64;
        let mut body = json!({ "changes": page.changes, "cursor": page.cursor, "more": page.more });
        // Only when the grant narrowed since the cursor was given.
        if !page.purge.is_empty() {
            body["purge"] = json!(page.purge);
        }
        Ok(Done {
            status: StatusCode::OK,
            body: Some(body),
            rows: n,
        })
    })
    .await
}
