//! The gateway's refusals as HTTP answers: each [`GatewayError`] variant's
//! status, title and members in an RFC 9457 problem document whose `type`
//! ends with the refusal's stable code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_gateway::{GatewayError, Scheme};
use serde_json::{Map, Value, json};

/// A problem JSON response (RFC 9457) for `error` of a request that sent its
/// token with `scheme`; a 401 says how to authenticate (RFC 6750 §3, or a
/// DPoP challenge, RFC 9449 §7.1). Server failures are logged.
pub fn problem(error: &GatewayError, scheme: Scheme) -> Response {
    let status = status(error);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %error, "data API request failed");
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        document(error).to_string(),
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

/// Whether `path` is under the data API (`/v1`), whose every answer is
/// problem JSON, even for a route or method that does not exist.
pub fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// The problem of a request to a data API path that has no such route
/// (404, `no-such-route`) or not this method (405, `method-not-allowed`).
pub fn no_such_route(status: StatusCode) -> Response {
    let (code, title, detail) = if status == StatusCode::METHOD_NOT_ALLOWED {
        (
            "method-not-allowed",
            "Method not allowed",
            "this route does not take this method; the Allow header and /v1/openapi.json list the ones it takes",
        )
    } else {
        (
            "no-such-route",
            "No such route",
            "the data API has no route at this path; /v1/openapi.json lists its routes",
        )
    };
    plain(status, code, title, detail, json!({}))
}

/// A problem document of the data API that is not a gateway refusal:
/// `code` becomes the type `urn:coffer:problem:{code}`, and the members of
/// object `extra` are added.
pub fn plain(status: StatusCode, code: &str, title: &str, detail: &str, extra: Value) -> Response {
    let mut body = json!({
        "type": format!("urn:coffer:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Value::Object(doc), Value::Object(extra)) = (&mut body, extra) {
        doc.extend(extra);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
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

/// The HTTP status of a refusal.
fn status(error: &GatewayError) -> StatusCode {
    match error {
        GatewayError::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
        GatewayError::MissingRight { .. } => StatusCode::FORBIDDEN,
        GatewayError::TableNotFound(_) | GatewayError::RowNotFound { .. } => StatusCode::NOT_FOUND,
        GatewayError::UnknownColumn { .. }
        | GatewayError::InvalidFilter { .. }
        | GatewayError::InvalidBody(_)
        | GatewayError::InvalidSql(_) => StatusCode::BAD_REQUEST,
        GatewayError::InvalidRow { .. } | GatewayError::QueryLimit(_) => StatusCode::UNPROCESSABLE_ENTITY,
        GatewayError::Conflict { .. } | GatewayError::IdInUse { .. } => StatusCode::CONFLICT,
        GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        GatewayError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        GatewayError::QueryTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
        GatewayError::ResyncRequired => StatusCode::GONE,
        GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short human title for the problem type.
fn title(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::InvalidToken { .. } => "The access token is not valid",
        GatewayError::MissingRight { .. } => "The grant does not allow this",
        GatewayError::TableNotFound(_) => "No such table",
        GatewayError::RowNotFound { .. } => "No such row",
        GatewayError::UnknownColumn { .. } => "No such column",
        GatewayError::InvalidFilter { .. } => "Invalid query parameter",
        GatewayError::InvalidBody(_) => "Invalid request body",
        GatewayError::InvalidRow { .. } => "Invalid row",
        GatewayError::Conflict { .. } => "The row changed",
        GatewayError::IdInUse { .. } => "The id is in use",
        GatewayError::InvalidSql(_) => "Invalid SQL",
        GatewayError::BodyTooLarge { .. } => "Request body too large",
        GatewayError::QueryLimit(_) => "The query exceeds a limit",
        GatewayError::QueryTimeout { .. } => "The query took too long",
        GatewayError::TooManyRequests { .. } => "Too many queries at once",
        GatewayError::ResyncRequired => "Load the changes again",
        GatewayError::Internal(_) => "Server error",
    }
}

/// The problem's extension members: what an app can act on.
fn members(error: &GatewayError) -> Value {
    match error {
        GatewayError::InvalidToken { code, .. } => json!({ "reason": code }),
        GatewayError::MissingRight { required } => json!({ "required": required }),
        GatewayError::TableNotFound(table) => json!({ "table": table }),
        GatewayError::RowNotFound { table, id } | GatewayError::IdInUse { table, id } => {
            json!({ "table": table, "id": id })
        }
        GatewayError::UnknownColumn { table, column } => json!({ "table": table, "column": column }),
        GatewayError::InvalidFilter { parameter, .. } => json!({ "parameter": parameter }),
        GatewayError::InvalidRow { column, .. } => json!({ "column": column }),
        GatewayError::Conflict { current, .. } => json!({ "current": current }),
        GatewayError::BodyTooLarge { limit } | GatewayError::TooManyRequests { limit } => json!({ "limit": limit }),
        GatewayError::QueryTimeout { seconds } => json!({ "limit_seconds": seconds }),
        GatewayError::InvalidBody(_)
        | GatewayError::InvalidSql(_)
        | GatewayError::QueryLimit(_)
        | GatewayError::ResyncRequired
        | GatewayError::Internal(_) => json!({}),
    }
}

/// The RFC 9457 problem document. A server failure's text is logged, not
/// answered.
fn document(error: &GatewayError) -> Value {
    let mut doc = Map::new();
    doc.insert("type".into(), format!("urn:coffer:problem:{}", error.code()).into());
    doc.insert("title".into(), title(error).into());
    doc.insert("status".into(), status(error).as_u16().into());
    let detail = match error {
        GatewayError::Internal(_) => "The server could not finish this request; nothing was changed.".to_owned(),
        other => other.to_string(),
    };
    doc.insert("detail".into(), detail.into());
    if let Value::Object(members) = members(error) {
        doc.extend(members);
    }
    Value::Object(doc)
}
