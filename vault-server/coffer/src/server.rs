//! The HTTP server: routes and their handlers.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coffer_storage::Engine;
use serde_json::json;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The storage engine.
    pub engine: Engine,
}

/// All routes of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the control database and the object store both answer.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.check_ready().await {
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
