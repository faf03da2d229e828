//! One log line per request at `info`: method, route template (never the
//! path with its ids, nor the query, a body or a token), status, latency
//! and, for the data API, the app that asked. `--log-level warn` (or
//! `COFFER_LOG=warn`) turns it off.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use coffer_core::AppId;

/// The app a data API response answered, for the request log (set by the
/// handler once it has authenticated the request).
#[derive(Clone, Debug)]
pub struct AnsweredApp(pub AppId);

/// Logs the request once the response is ready.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let app = response.extensions().get::<AnsweredApp>().map(|a| a.0.to_string());
    tracing::info!(
        target: "coffer::request",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = %format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        app = %app.as_deref().unwrap_or("-"),
        "request"
    );
    response
}
