//! The schema registry over HTTP (decision 0031): `POST /v1/schemas`
//! publishes a schema as an app, `GET /v1/schemas` without a token lists
//! every schema this server offers, and `GET /v1/schemas/{name}` and
//! `GET /v1/schemas/{name}/{version}` show one. Schema files are public:
//! they say what kinds of data exist, never anything of a vault.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use coffer_core::schema::SchemaDef;
use coffer_core::schema::registry::{SchemaError, SchemaRegistry};
use coffer_oauth::{ClientCredentials, ClientKind};
use coffer_storage::{KnownSchemas, Publisher, StorageError};
use serde_json::{Value, json};

use super::json;
use super::openapi::{Problem, PublishedDoc, SchemaVersionsDoc};
use super::problem::plain;
use crate::web::AppState;

/// The listing of `GET /v1/schemas` (asked without a token): every schema
/// version with its publisher and table names, oldest name first.
pub async fn list(state: &AppState) -> Response {
    let known = fresh_schemas(state).await;
    let mut app_names = BTreeMap::new();
    let mut schemas = Vec::new();
    for def in known.registry().iter() {
        schemas.push(summary(state, &known, def, &mut app_names).await);
    }
    json(StatusCode::OK, &json!({ "schemas": schemas }))
}

/// The known schemas, with what another process published since the last
/// look (`coffer schema publish` while the server runs).
async fn fresh_schemas(state: &AppState) -> Arc<KnownSchemas> {
    if let Err(e) = state.services.engine.refresh_schemas().await {
        tracing::warn!(error = %e, "reloading the published schemas failed");
    }
    state.services.engine.schemas()
}

/// `GET /v1/schemas/{name}`: every version of one schema.
#[utoipa::path(
    get, path = "/v1/schemas/{name}", tag = "schemas",
    params(("name" = String, Path, description = "The schema's name, e.g. `contacts`")),
    responses(
        (status = 200, description = "Every version of the schema", body = SchemaVersionsDoc),
        (status = 404, description = "No such schema", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn versions(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let known = fresh_schemas(&state).await;
    let mut app_names = BTreeMap::new();
    let mut versions = Vec::new();
    for def in known.registry().iter().filter(|d| d.name == name) {
        versions.push(summary(&state, &known, def, &mut app_names).await);
    }
    if versions.is_empty() {
        return unknown_schema(&name);
    }
    json(StatusCode::OK, &json!({ "name": name, "versions": versions }))
}

/// `GET /v1/schemas/{name}/{version}`: the schema file of one version, as
/// it was published (the format of docs/schemas.md).
#[utoipa::path(
    get, path = "/v1/schemas/{name}/{version}", tag = "schemas",
    params(
        ("name" = String, Path, description = "The schema's name"),
        ("version" = String, Path, description = "The major version, e.g. `1`"),
    ),
    responses(
        (status = 200, description = "The schema file (docs/schemas.md)", body = Object),
        (status = 404, description = "No such schema version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn file(State(state): State<AppState>, Path((name, version)): Path<(String, String)>) -> Response {
    let known = fresh_schemas(&state).await;
    match version.parse::<u32>().ok().and_then(|v| known.registry().get(&name, v)) {
        Some(def) => json(StatusCode::OK, &json!(*def)),
        None => unknown_schema(&format!("{name} version {version}")),
    }
}

/// `POST /v1/schemas`: an app publishes a schema file. The app
/// authenticates with its client id and secret (HTTP Basic, as at the
/// token endpoint); the schema's name is a namespace the first publisher
/// holds.
#[utoipa::path(
    post, path = "/v1/schemas", tag = "schemas",
    request_body(content = Object, description = "A schema file (docs/schemas.md)", content_type = "application/json"),
    responses(
        (status = 201, description = "A new version was published", body = PublishedDoc,
            headers(("location" = String, description = "`/v1/schemas/{name}/{version}`"))),
        (status = 200, description = "An existing version was redefined (additive change) or sent again", body = PublishedDoc),
        (status = 400, description = "Not a valid schema file (`invalid-schema`, `invalid-body`); the problem names the table and column", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong client credentials (`invalid-client`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Publishing is off, the client is public, or the name is another publisher's (`publishing-disabled`, `public-client`, `namespace-taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A redefinition of a version that is not additive (`not-additive`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A publishing rule is broken (`unpublishable`: a limit, a reserved name, a missing earlier version, an unknown referenced table)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many versions published lately", body = Problem, content_type = "application/problem+json"),
    ),
    security(("client" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !state.app_schema_publishing {
        return plain(
            StatusCode::FORBIDDEN,
            "publishing-disabled",
            "Publishing is off",
            "this server does not let apps publish schemas; its operator adds them",
            json!({}),
        );
    }
    let app = match authenticate(&state, &headers).await {
        Ok(app) => app,
        Err(response) => return response,
    };
    if let Err(wait) = state.publish_limit.hit(app.client_id.as_str()) {
        let mut response = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            &format!(
                "this app published too many schema versions lately; try again in {} minute(s)",
                wait.as_secs().max(1).div_ceil(60)
            ),
            json!({}),
        );
        crate::web::respond::set_retry_after(&mut response, wait.as_secs());
        return response;
    }
    let def = match parse_body(&state, body) {
        Ok(def) => def,
        Err(response) => return *response,
    };
    let publisher = Publisher::App(app.client_id.to_string());
    match state.services.engine.publish_schema(def, &publisher).await {
        Ok(published) => {
            let location = format!("/v1/schemas/{}/{}", published.name, published.version);
            let status = if published.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut response = json(
                status,
                &json!({
                    "name": published.name,
                    "version": published.version,
                    "created": published.created,
                    "publisher": publisher_json(&publisher, Some(&app.name)),
                }),
            );
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => refused(&e),
    }
}

/// The publishing app, from `Authorization: Basic` (client id and secret).
/// Public clients have no secret, so they cannot prove who they are.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<coffer_oauth::App, Response> {
    let unauthorized = |detail: &str| {
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "invalid-client",
            "App authentication failed",
            detail,
            json!({}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"coffer\", charset=\"UTF-8\""),
        );
        response
    };
    let Some(authorization) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized(
            "send the app's client id and secret as HTTP Basic credentials",
        ));
    };
    let credentials =
        ClientCredentials::from_request(Some(authorization), None, None).map_err(|e| unauthorized(&e.description()))?;
    let registered = state.services.oauth.app(&credentials.client_id).await;
    if registered.is_ok_and(|app| app.kind() != ClientKind::Confidential) {
        return Err(plain(
            StatusCode::FORBIDDEN,
            "public-client",
            "A public client cannot publish",
            "this app has no client secret, so nothing proves a request comes from it; publish with a \
             confidential client, or ask the operator to run `coffer schema publish FILE --app CLIENT_ID`",
            json!({}),
        ));
    }
    state
        .services
        .oauth
        .authenticate_client(&credentials)
        .await
        .map_err(|_| unauthorized("the client id or secret is wrong"))
}

/// The request body as a checked schema file, or the problem to answer.
fn parse_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<SchemaDef, Box<Response>> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                &format!("the body is larger than {} bytes", state.api_body_limit),
                json!({ "limit": state.api_body_limit }),
            )
        } else {
            invalid_body(&rejection.body_text())
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid_body("the body is not UTF-8 text"))?;
    SchemaRegistry::parse(text, "the schema file").map_err(|e| Box::new(invalid_schema(&e)))
}

fn invalid_body(detail: &str) -> Response {
    plain(
        StatusCode::BAD_REQUEST,
        "invalid-body",
        "Invalid request body",
        detail,
        json!({}),
    )
}

/// A schema file that breaks a rule of the format: the message names the
/// table and column, and so do the problem's members.
fn invalid_schema(error: &SchemaError) -> Response {
    let mut members = json!({});
    if let Some(at) = error.location() {
        if let Some(table) = &at.table {
            members["table"] = json!(table);
        }
        if let Some(column) = &at.column {
            members["column"] = json!(column);
        }
    }
    let (status, code, title) = match error {
        SchemaError::NotAdditive { .. } => (StatusCode::CONFLICT, "not-additive", "The change needs a new version"),
        _ => (StatusCode::BAD_REQUEST, "invalid-schema", "Invalid schema file"),
    };
    plain(status, code, title, &error.to_string(), members)
}

/// The problem for a refused publication.
fn refused(error: &StorageError) -> Response {
    match error {
        StorageError::Schema(e) => invalid_schema(e),
        StorageError::NamespaceTaken(name) => plain(
            StatusCode::FORBIDDEN,
            "namespace-taken",
            "The schema name belongs to another publisher",
            &error.to_string(),
            json!({ "name": name }),
        ),
        StorageError::Unpublishable(reason) => plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unpublishable",
            "The schema cannot be published",
            reason,
            json!({}),
        ),
        other => {
            tracing::error!(error = %other, "publishing a schema failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Server error",
                "The server could not finish this request; nothing was changed.",
                json!({}),
            )
        }
    }
}

fn unknown_schema(what: &str) -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "schema-not-found",
        "No such schema",
        &format!("this server has no schema {what}; GET /v1/schemas lists the ones it has"),
        json!({}),
    )
}

/// One schema version in a listing. `app_names` keeps the names of the
/// publishing apps already looked up by this listing (one look-up per app,
/// not per version).
async fn summary(
    state: &AppState,
    known: &KnownSchemas,
    def: &SchemaDef,
    app_names: &mut BTreeMap<String, Option<String>>,
) -> Value {
    let publisher = known.publisher(&def.name).cloned().unwrap_or(Publisher::Operator);
    let app_name = match &publisher {
        Publisher::App(client_id) => {
            if !app_names.contains_key(client_id) {
                let name = state.services.oauth.app(client_id).await.ok().map(|a| a.name);
                app_names.insert(client_id.clone(), name);
            }
            app_names.get(client_id).cloned().flatten()
        }
        _ => None,
    };
    json!({
        "name": def.name,
        "version": def.version,
        "description": def.description,
        "publisher": publisher_json(&publisher, app_name.as_deref()),
        "tables": def.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "href": format!("/v1/schemas/{}/{}", def.name, def.version),
    })
}

/// `{"kind": "coffer" | "operator" | "app", "client_id", "name"}`.
fn publisher_json(publisher: &Publisher, app_name: Option<&str>) -> Value {
    match publisher {
        Publisher::Coffer => json!({ "kind": "coffer" }),
        Publisher::Operator => json!({ "kind": "operator" }),
        Publisher::App(client_id) => json!({ "kind": "app", "client_id": client_id, "name": app_name }),
    }
}
