//! The OpenAPI 3.1 document of the data API, generated from the handlers'
//! annotations, served at `/v1/openapi.json`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Value, json};
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
    /// For `table-not-found`, `row-not-found`, `id-in-use` and
    /// `unknown-column`: the table.
    pub table: Option<String>,
    /// For `row-not-found`: the row id; for `id-in-use`: the id an insert
    /// named that is already in use (whoever holds it; nothing of that row
    /// is told).
    pub id: Option<String>,
    /// For `unknown-column` and `invalid-row`: the column.
    pub column: Option<String>,
    /// For `invalid-filter`: the query parameter.
    pub parameter: Option<String>,
    /// For `conflict` (an `if_seq` that did not match): the row as it is
    /// now, limited to what the token may read (`null` when it was deleted
    /// or is not readable). `id-in-use` has no `current`.
    #[schema(value_type = Option<Object>)]
    pub current: Option<Value>,
    /// For `body-too-large` (bytes) and `too-many-requests` (queries at once).
    pub limit: Option<u64>,
    /// For `query-timeout`: the time limit in seconds.
    pub limit_seconds: Option<f64>,
    /// For `namespace-taken`: the schema name.
    pub name: Option<String>,
}

/// The description of the list filters, for generated clients and readers.
pub const FILTERS_DESCRIPTION: &str = "Filters on columns, all of which must hold. Each member of this object is sent as \
its own query parameter, `column=[not.]op.value` (`style: form`, `explode: true`: the name `filters` is \
never sent), e.g. `?given_name=eq.Ada&priority=gte.1&priority=lt.4`. `op` is `eq`, `neq`, `gt`, `gte`, \
`lt` or `lte` with a value typed by the column; `like` or `ilike` with a pattern (`*` or `%` any run \
of characters, `_` one); `in.(a,b,\"c,d\")` (double quotes around a value holding `,` or `)`); or \
`is.null`, `is.true`, `is.false`. `not.` negates any of them. A list of values filters the same \
column more than once (`priority: [\"gte.1\", \"lt.4\"]` is a range). `select`, `order`, `limit` \
and `cursor` are not column names. At most 64 filters and 1000 `in` values.";

/// One filter's value, `[not.]op.value`, or a list of them for a column
/// filtered more than once (each becomes its own `column=…` parameter).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "describes the document; the handler reads the raw request")]
pub enum FilterValue {
    /// One filter on the column, e.g. `eq.Ada`.
    One(String),
    /// Several filters on the column, all of which must hold, e.g.
    /// `["gte.1", "lt.4"]`.
    Many(Vec<String>),
}

/// The body of an insert: one row (an object of column values, `id`
/// optional), or a batch of rows (an array), written atomically.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "describes the document; the handler reads the raw request")]
pub enum InsertBody {
    /// One row; the answer is the row written.
    One(HashMap<String, Value>),
    /// A batch; the answer is `{"rows": [...]}`, in the same order.
    Many(Vec<HashMap<String, Value>>),
}

/// One row's change in a batch update.
#[derive(Serialize, ToSchema)]
#[allow(dead_code, reason = "describes the document; the handler reads the raw request")]
pub struct RowChangeDoc {
    /// The row id.
    pub id: String,
    /// The columns to change (`null` clears one).
    #[schema(value_type = Object)]
    pub set: HashMap<String, Value>,
    /// Change only if the row's `_seq` is still this; without it the
    /// change is last-write-wins for its row.
    pub if_seq: Option<i64>,
}

/// A batch update: every change applies or none does; a row at most once.
#[derive(Serialize, ToSchema)]
#[allow(dead_code, reason = "describes the document; the handler reads the raw request")]
pub struct UpdateBatch(pub Vec<RowChangeDoc>);

/// A page of rows.
#[derive(Serialize, ToSchema)]
pub struct RowsPage {
    /// The rows: `id`, granted columns, system columns.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One change of the feed.
#[derive(Serialize, ToSchema)]
pub struct ChangeDoc {
    /// `insert` (the row appeared: created, or first seen in the load),
    /// `update` or `delete` (the row is gone, or left the token's rows).
    #[schema(pattern = "^(insert|update|delete)$")]
    pub op: String,
    /// `schema.table`.
    pub table: String,
    /// The row id.
    pub id: String,
    /// The change's sequence number (the row's `_seq` after it).
    pub seq: i64,
    /// The row after the change (`id`, granted columns, system columns);
    /// `null` for a delete.
    #[schema(value_type = Option<Object>)]
    pub row: Option<Value>,
}

/// A page of the change feed.
#[derive(Serialize, ToSchema)]
pub struct ChangesPage {
    /// The changes, oldest first.
    pub changes: Vec<ChangeDoc>,
    /// Pass as `since` for the next page. Opaque, bound to the vault, the
    /// app and `tables`.
    pub cursor: String,
    /// Whether more changes may wait now: ask again at once; when `false`,
    /// poll later with the same cursor.
    pub more: bool,
    /// Present only when the grant narrowed since the cursor was given:
    /// what to remove from the app's copy before applying `changes`.
    pub purge: Option<Vec<PurgeDoc>>,
}

/// What to remove from an app's copy of its tables.
#[derive(Serialize, ToSchema)]
pub struct PurgeDoc {
    /// `schema.table`.
    pub table: String,
    /// `table`: every row; `columns`: the columns named, from every row;
    /// `rows`: the rows another app created (`_created_by`), now that the
    /// grant covers only the app's own.
    #[schema(pattern = "^(table|columns|rows)$")]
    pub drop: String,
    /// The columns to remove (for `columns`).
    pub columns: Option<Vec<String>>,
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
    #[schema(value_type = Vec<Vec<Value>>)]
    pub rows: Vec<Value>,
    /// Rows returned, or changed by a write.
    pub row_count: u64,
}

/// `GET /v1/schemas`.
#[derive(Serialize, ToSchema)]
pub struct SchemasDoc {
    /// With a token: schemas with their granted tables and columns
    /// (`{"name", "version", "description", "tables": [{"name",
    /// "description", "columns"}]}`). Without: every schema version the
    /// server offers (`{"name", "version", "description", "publisher":
    /// {"kind": "coffer" | "operator" | "app", "client_id", "name"},
    /// "tables": ["name", …], "href"}`).
    #[schema(value_type = Vec<Object>)]
    pub schemas: Vec<Value>,
}

/// `GET /v1/schemas/{name}`.
#[derive(Serialize, ToSchema)]
pub struct SchemaVersionsDoc {
    /// The schema's name.
    pub name: String,
    /// Each version, as in the listing of `GET /v1/schemas` without a token.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<Value>,
}

/// `POST /v1/schemas`.
#[derive(Serialize, ToSchema)]
pub struct PublishedDoc {
    /// The schema's name.
    pub name: String,
    /// The version stored.
    pub version: u32,
    /// Whether the version is new (`201`); `false` when an existing version
    /// was redefined by an additive change (`200`).
    pub created: bool,
    /// `{"kind": "app", "client_id", "name"}`.
    #[schema(value_type = Object)]
    pub publisher: Value,
}

/// `GET /v1/tables`.
#[derive(Serialize, ToSchema)]
pub struct TablesDoc {
    /// `{"table", "actions": {"read": {"columns", "rows"}, …}}` per table.
    #[schema(value_type = Vec<Object>)]
    pub tables: Vec<Value>,
}

/// The `bearer` security scheme; `dpop` is added by [`document_json`]
/// (utoipa has no `DPoP` HTTP scheme).
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
                    .description(Some(
                        "The capability token from the OAuth flow: `Authorization: Bearer <access token>`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An app's client id and secret (a confidential client), as at the token endpoint",
                    ))
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
        super::rows::update_many,
        super::rows::delete,
        super::sql::execute,
        super::changes::list,
        super::changes_stream::stream,
        super::schemas::publish,
        super::schemas::versions,
        super::schemas::file,
    ),
    components(schemas(Problem, RowsPage, ChangeDoc, ChangesPage, PurgeDoc, FilterValue, InsertBody, RowChangeDoc, UpdateBatch, SqlRequest, SqlColumn, SqlResponse, SchemasDoc, TablesDoc, SchemaVersionsDoc, PublishedDoc)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The `dpop` security scheme: a DPoP-bound token (RFC 9449).
fn dpop_scheme() -> Value {
    json!({
        "type": "http",
        "scheme": "DPoP",
        "description": "A token bound to a DPoP key (RFC 9449): `Authorization: DPoP <access token>` \
            with a `DPoP` header holding a fresh proof of that key for this request's method and URL \
            (and `ath`, the token's hash). An unbound token may be sent this way too.",
    })
}

/// The whole document as JSON: utoipa's, with the `dpop` scheme that every
/// operation's security names beside `bearer`.
pub fn document_json() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    if let Some(schemes) = doc
        .pointer_mut("/components/securitySchemes")
        .and_then(Value::as_object_mut)
    {
        schemes.insert("dpop".into(), dpop_scheme());
    }
    doc
}

/// Serves the document.
pub async fn document() -> impl IntoResponse {
    static BODY: LazyLock<String> = LazyLock::new(|| document_json().to_string());
    ([(header::CONTENT_TYPE, "application/json")], BODY.as_str())
}
