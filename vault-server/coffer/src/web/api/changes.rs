//! `GET /v1/changes`: the grant-filtered change feed (`docs/guides/sync.md`).

use axum::extract::{RawQuery, State};
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
        ("filter[schema.table]" = Option<String>, Query, description = "A subset of one table: `column=op.value` in the rows API's grammar (repeat for more; all must hold); keep the same for one cursor"),
        ("select[schema.table]" = Option<String>, Query, description = "The columns sent of one table, comma-separated (`id` always); keep the same for one cursor"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of an answer to the same request: `304` when it is still a right answer"),
    ),
    responses(
        (status = 200, description = "A page of changes (with an `ETag`)", body = ChangesPage),
        (status = 304, description = "The answer whose `ETag` was given in `If-None-Match` is still a right one"),
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
pub async fn list(
    State(state): State<AppState>,
    credentials: ApiCredentials,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = query_pairs(raw.as_deref()).and_then(|pairs| ChangesQuery::parse(&pairs));
    let tables = query.as_ref().ok().and_then(|q| q.tables.clone()).unwrap_or_default();
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let tag = Mutex::new(None);
    let tag_out = &tag;
    let mut response = serve(&state, &credentials, Read, tables, |caller| async move {
        let query = query?;
        let etag = changes::etag(&caller, &query).await?;
        *tag_out.lock().expect("etag") = Some(etag.clone());
        // The client's copy of this answer is still a right one: no read.
        if if_none_match.is_some_and(|given| given.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            return Ok(Done {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                rows: 0,
            });
        }
        let page = changes::changes(&caller, &query).await?;
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
    .await;
    let status = response.status();
    if let Some(etag) = tag.into_inner().expect("etag")
        && (status == StatusCode::OK || status == StatusCode::NOT_MODIFIED)
        && let Ok(value) = HeaderValue::from_str(&etag)
    {
        let headers = response.headers_mut();
        headers.insert(header::ETAG, value);
        // Kept by the client only, and checked with the server each time.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    }
    response
}
