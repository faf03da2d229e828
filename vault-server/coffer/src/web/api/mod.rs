//! The data API under `/v1`: apps read and write the vault with a
//! capability token, sent as `Authorization: Bearer <token>` or, for a token
//! bound to a DPoP key (RFC 9449), as `Authorization: DPoP <token>` with a
//! `DPoP` proof header. Handlers are thin: they parse, hand the request to the
//! query gateway (`coffer-gateway`, the one code path every front end
//! shares; it authenticates, runs and records the request in the vault's
//! access log), and answer JSON or RFC 9457 problem JSON ([`problem`] maps
//! the gateway's refusals).
//!
//! | module | routes |
//! |---|---|
//! | [`changes`] | `GET /v1/changes` |
//! | [`changes_stream`] | `GET /v1/changes/stream` |
//! | [`describe`] | `GET /v1/schemas` (with a token), `GET /v1/tables` |
//! | [`schemas`] | `POST /v1/schemas`, `GET /v1/schemas` (without a token), `GET /v1/schemas/{name}[/{version}]` |
//! | [`rows`] | `/v1/tables/{table}/rows`, `/v1/tables/{table}/rows/{id}` |
//! | [`sql`] | `POST /v1/sql` |
//! | [`openapi`] | `GET /v1/openapi.json` |

mod changes;
mod changes_stream;
mod describe;
mod openapi;
pub(super) mod problem;
mod rows;
mod schemas;
mod sql;

use std::convert::Infallible;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_core::TableName;
use coffer_gateway::{Caller, Credentials, DpopHeader, GatewayError, Logged, Operation, Scheme};
use serde_json::Value;

pub use self::changes_stream::close_streams;
use self::problem::problem;

use super::AppState;

/// The data API's routes, with the configured body limit.
pub fn router(body_limit: usize) -> Router<AppState> {
    // The limit is enforced by the body extractor, which reports it as a
    // rejection that `json_body` turns into problem JSON.
    Router::new()
        .route(openapi::PATH, get(openapi::document))
        .route("/v1/schemas", get(describe::schemas).post(schemas::publish))
        .route("/v1/schemas/{name}", get(schemas::versions))
        .route("/v1/schemas/{name}/{version}", get(schemas::file))
        .route("/v1/tables", get(describe::tables))
        .route(
            "/v1/tables/{table}/rows",
            get(rows::list).post(rows::insert).patch(rows::update_many),
        )
        .route(
            "/v1/tables/{table}/rows/{id}",
            get(rows::get).patch(rows::update).delete(rows::delete),
        )
        .route("/v1/sql", post(sql::execute))
        .route("/v1/changes", get(changes::list))
        .route("/v1/changes/stream", get(changes_stream::stream))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// A JSON response.
fn json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The credentials a data API request carried, read from its
/// `Authorization` and `DPoP` headers, method and path (or why they are
/// unusable, answered by [`serve`]).
pub(super) struct ApiCredentials(Result<Credentials, GatewayError>);

impl FromRequestParts<AppState> for ApiCredentials {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // The API's routes are merged into the root router (not nested), so
        // the URI's path is the path the client addressed.
        Ok(ApiCredentials(credentials(
            state,
            &parts.headers,
            parts.method.as_str(),
            parts.uri.path(),
        )))
    }
}

/// Reads `Authorization: Bearer <token>` or `Authorization: DPoP <token>`
/// with the `DPoP` proof, which must be for `method {base_url}{path}`
/// (RFC 9449 §4.3). No or another scheme is an empty bearer token (refused
/// as missing).
fn credentials(state: &AppState, headers: &HeaderMap, method: &str, path: &str) -> Result<Credentials, GatewayError> {
    let invalid_proof = |reason: &str| GatewayError::InvalidToken {
        code: "invalid_dpop_proof",
        reason: reason.to_owned(),
    };
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("dpop") {
        let token = if scheme.eq_ignore_ascii_case("bearer") {
            token
        } else {
            ""
        };
        return Ok(Credentials::bearer(token));
    }
    let mut proofs = headers.get_all("dpop").iter();
    let proof = proofs.next();
    if proofs.next().is_some() {
        return Err(invalid_proof("send one DPoP header"));
    }
    let proof = proof
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid_proof("the DPoP header is not a JWT"))
                .map(|jwt| DpopHeader {
                    jwt: jwt.to_owned(),
                    method: method.to_owned(),
                    url: format!("{}{path}", state.base_url),
                })
        })
        .transpose()?;
    Ok(Credentials::dpop(token, proof))
}

/// What a handler answers on success, and the rows it counts for the access
/// log.
struct Done {
    status: StatusCode,
    body: Option<Value>,
    rows: u64,
}

impl Logged for Done {
    fn rows(&self) -> u64 {
        self.rows
    }
}

/// Runs `op` through the gateway, which authenticates the request and
/// records it in the vault's access log as `operation` on `tables`, and
/// answers its result.
async fn serve<T, F, Fut>(
    state: &AppState,
    credentials: &ApiCredentials,
    operation: Operation,
    tables: Vec<TableName>,
    op: F,
) -> Response
where
    T: Logged,
    Done: From<T>,
    F: FnOnce(Caller) -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    let credentials = match &credentials.0 {
        Ok(c) => c,
        Err(e) => return problem(e, Scheme::Dpop),
    };
    let served = state.services.gateway.run(credentials, operation, tables, op).await;
    let mut response = match served.result.map(Done::from) {
        Ok(done) => match done.body {
            Some(body) => json(done.status, &body),
            None => done.status.into_response(),
        },
        Err(e) => problem(&e, credentials.scheme),
    };
    if let Some(app) = served.app {
        response.extensions_mut().insert(super::request_log::AnsweredApp(app));
    }
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
