//! The data API under `/v1`: apps read and write the vault with a
//! capability token, sent as `Authorization: Bearer <token>` or, for a token
//! bound to a DPoP key (RFC 9449), as `Authorization: DPoP <token>` with a
//! `DPoP` proof header. Handlers are thin: they authenticate, parse, call the
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

use std::convert::Infallible;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use coffer_core::TableName;
use coffer_gateway::{AccessEntry, Caller, Credentials, DpopHeader, GatewayError, Scheme};
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

/// A problem JSON response (RFC 9457) for `error` of a request that sent its
/// token with `scheme`; a 401 says how to authenticate (RFC 6750 §3, or a
/// DPoP challenge, RFC 9449 §7.1). Server failures are logged.
pub fn problem(error: &GatewayError, scheme: Scheme) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %error, "data API request failed");
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        error.to_problem().to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge(error, scheme));
    }
    if matches!(
        error,
        GatewayError::TooManyRequests { .. } | GatewayError::QueryTimeout { .. }
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The `WWW-Authenticate` challenge of a 401: DPoP (with the algorithms
/// proofs may use) when the proof was refused, the token needs one, or the
/// request used the DPoP scheme; Bearer otherwise.
fn challenge(error: &GatewayError, scheme: Scheme) -> HeaderValue {
    let code = match error {
        GatewayError::InvalidToken { code, .. } => *code,
        _ => "",
    };
    HeaderValue::from_static(match (code, scheme) {
        ("invalid_dpop_proof", _) => "DPoP realm=\"coffer\", error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA\"",
        ("dpop_required", _) | (_, Scheme::Dpop) => {
            "DPoP realm=\"coffer\", error=\"invalid_token\", algs=\"ES256 EdDSA\""
        }
        (_, Scheme::Bearer) => "Bearer realm=\"coffer\", error=\"invalid_token\"",
    })
}

/// A JSON response.
fn json(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The credentials a data API request carried, read from its
/// `Authorization` and `DPoP` headers, method and path (or why they are
/// unusable, answered by [`authenticate`]).
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

/// Authenticates the request's credentials.
async fn authenticate(state: &AppState, credentials: &ApiCredentials) -> Result<Caller, Response> {
    let credentials = credentials.0.as_ref().map_err(|e| problem(e, Scheme::Dpop))?;
    state
        .services
        .gateway
        .authenticate(credentials)
        .await
        .map_err(|e| problem(&e, credentials.scheme))
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
    let (mut response, rows, outcome) = match result {
        Ok(done) => {
            let response = match &done.body {
                Some(body) => json(done.status, body),
                None => done.status.into_response(),
            };
            (response, done.rows, "ok")
        }
        Err(e) => {
            let scheme = if caller.dpop_jkt().is_some() {
                Scheme::Dpop
            } else {
                Scheme::Bearer
            };
            (problem(&e, scheme), 0, e.code())
        }
    };
    response
        .extensions_mut()
        .insert(super::request_log::AnsweredApp(caller.app().clone()));
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
