//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// Liveness: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the control database and the object store both answer.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.services.engine.check_ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/problem+json")],
            json!({
                "type": "https://coffer.dev/problems/not-ready",
                "title": "Not ready",
                "status": 503,
                "detail": e.to_string(),
            })
            .to_string(),
        )
            .into_response(),
    }
}
