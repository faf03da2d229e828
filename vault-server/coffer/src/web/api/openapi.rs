//! The OpenAPI 3.1 document of the data API, generated from the handlers'
//! annotations, served at `/v1/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// An RFC 9457 problem.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:coffer:problem:…`, stable.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short title of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, in plain words.
    pub detail: String,
    /// For `missing-right`: the right to ask for, e.g. `contacts.people:update`.
    pub required: Option<String>,
    /// For `invalid-token`: the refusal's short code (`expired`, `revoked`,
    /// `grant_changed`, `dpop_required`, `invalid_dpop_proof`, …).
    pub reason: Option<String>,
    /// For `table-not-found`, `row-not-found` and `unknown-column`: the table.
    pub table: Option<String>,
    /// For `row-not-found`: the row id.
    pub id: Option<String>,
    /// For `unknown-column` and `invalid-row`: the column.
    pub column: Option<String>,
    /// For `invalid-filter`: the query parameter.
    pub parameter: Option<String>,
    /// For `conflict`: the row as it is now, limited to what the token may
    /// read (`null` when deleted or not readable).
    #[schema(value_type = Option<Object>)]
    pub current: Option<Value>,
    /// For `body-too-large` (bytes) and `too-many-requests` (queries at once).
    pub limit: Option<u64>,
    /// For `query-timeout`: the time limit in seconds.
    pub limit_seconds: Option<f64>,
}

/// A page of rows.
#[derive(Serialize, ToSchema)]
pub struct RowsPage {
    /// The rows: `id`, granted columns, system columns.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A SQL request.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sql": "SELECT id, title FROM notes.notes WHERE title LIKE $1", "params": ["%a%"]}))]
pub struct SqlRequest {
    /// One statement; parameters as `$1`, `$2`, ….
    #[schema(min_length = 1, max_length = 65536)]
    pub sql: String,
    /// The parameters' values (`$1` is the first): strings, numbers,
    /// booleans or `null`; none when the statement has no parameters.
    #[schema(value_type = Option<Vec<Value>>)]
    pub params: Option<Vec<Value>>,
}

/// A result column.
#[derive(Serialize, ToSchema)]
pub struct SqlColumn {
    /// Its name.
    pub name: String,
    /// Its type (`text`, `integer`, `float`, `boolean`, `timestamp`, …).
    #[serde(rename = "type")]
    pub ty: String,
}

/// A SQL result.
#[derive(Serialize, ToSchema)]
pub struct SqlResponse {
    /// The columns.
    pub columns: Vec<SqlColumn>,
    /// The rows, each an array in column order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Value>,
    /// Rows returned, or changed by a write.
    pub row_count: u64,
}

/// `GET /v1/schemas`.
#[derive(Serialize, ToSchema)]
pub struct SchemasDoc {
    /// Schemas with their granted tables and columns.
    #[schema(value_type = Vec<Object>)]
    pub schemas: Vec<Value>,
}

/// `GET /v1/tables`.
#[derive(Serialize, ToSchema)]
pub struct TablesDoc {
    /// `{"table", "actions": {"read": {"columns", "rows"}, …}}` per table.
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<Value>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("biscuit")
                    .description(Some("The capability token from the OAuth flow"))
                    .build(),
            ),
        );
    }
}

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer data API", description = "Read and write a user's vault with a capability token."),
    paths(
        super::describe::schemas,
        super::describe::tables,
        super::rows::list,
        super::rows::get,
        super::rows::insert,
        super::rows::update,
        super::rows::delete,
        super::sql::execute,
    ),
    components(schemas(Problem, RowsPage, SqlRequest, SqlColumn, SqlResponse, SchemasDoc, TablesDoc)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document() -> impl IntoResponse {
    let body = ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body)
}
