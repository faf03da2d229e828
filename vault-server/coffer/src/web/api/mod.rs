//! The data API under `/v1`: apps read and write the vault with a bearer
//! capability token. Handlers are thin: they authenticate, parse, call the
//! query gateway (`coffer-gateway`, the one code path every front end
//! shares), answer JSON or RFC 9457 problem JSON, and record the request in
//! the vault's access log.
//!
//! | module | routes |
//! |---|---|
//! | [`describe`] | `GET /v1/schemas`, `GET /v1/tables` |
//! | [`rows`] | `/v1/tables/{table}/rows`, `/v1/tables/{table}/rows/{id}` |
//! | [`sql`] | `POST /v1/sql` |
//! | [`openapi`] | `GET /v1/openapi.json` |

mod describe;
mod openapi;
mod rows;
mod sql;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use coffer_core::TableName;
use coffer_gateway::{AccessEntry, Caller, GatewayError};
use serde_json::Value;

use super::AppState;

/// The data API's routes, with the configured body limit.
pub fn router(body_limit: usize) -> Router<AppState> {
    // The limit is enforced by the body extractor, which reports it as a
    // rejection that `json_body` turns into problem JSON.
    Router::new()
        .route(openapi::PATH, get(openapi::document))
        .route("/v1/schemas", get(describe::schemas))
        .route("/v1/tables", get(describe::tables))
        .route("/v1/tables/{table}/rows", get(rows::list).post(rows::insert))
        .route(
            "/v1/tables/{table}/rows/{id}",
            get(rows::get).patch(rows::update).delete(rows::delete),
        )
        .route("/v1/sql", post(sql::execute))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// A problem JSON response (RFC 9457) for `error`; a 401 says how to
/// authenticate (RFC 6750 §3). Server failures are logged.
pub fn problem(error: &GatewayError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %error, "data API request failed");
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        error.to_problem().to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"coffer\", error=\"invalid_token\""),
        );
    }
    response
}

/// A JSON response.
fn json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Authenticates the request's bearer token.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .unwrap_or("");
    state
        .services
        .gateway
        .authenticate(token)
        .await
        .map_err(|e| problem(&e))
}

/// What a handler did, for the answer and the access log.
struct Done {
    status: StatusCode,
    body: Option<Value>,
    rows: u64,
}

/// Answers `result` and records it in the caller's vault access log.
fn finish(
    state: &AppState,
    caller: &Caller,
    operation: &str,
    tables: Vec<TableName>,
    result: Result<Done, GatewayError>,
) -> Response {
    let (response, rows, outcome) = match result {
        Ok(done) => {
            let response = match &done.body {
                Some(body) => json(done.status, body),
                None => done.status.into_response(),
            };
            (response, done.rows, "ok")
        }
        Err(e) => (problem(&e), 0, e.code()),
    };
    state.services.gateway.access_log().record(
        caller.vault(),
        AccessEntry {
            at: Utc::now(),
            app: caller.app().clone(),
            operation: operation.to_owned(),
            tables,
            rows,
            outcome: outcome.to_owned(),
        },
    );
    response
}

/// A JSON request body, or the problem to answer.
fn json_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Value, GatewayError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::BodyTooLarge {
                limit: state.api_body_limit,
            }
        } else {
            GatewayError::InvalidBody(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::InvalidBody(format!("the body is not valid JSON: {e}")))
}

/// The query string as `(key, value)` pairs, repeats kept.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, GatewayError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| GatewayError::InvalidFilter {
        parameter: "query".into(),
        reason: e.to_string(),
    })
}
