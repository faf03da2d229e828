//! Building responses: HTML pages, error pages, redirects, and OAuth JSON
//! (RFC 6749 §5.2 errors with the status `coffer-oauth` gives).

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use coffer_consent_ui::{CONTENT_SECURITY_POLICY, ErrorPage, Link, RenderError};
use serde::Serialize;

use super::AppState;
use super::api::problem::{is_api_path, no_such_route};

/// An HTML page with `status`; a page that fails to render is a 500.
pub fn html(status: StatusCode, page: Result<String, RenderError>) -> Response {
    match page {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be shown.").into_response()
        }
    }
}

/// The error page.
pub fn error_page(
    state: &AppState,
    status: StatusCode,
    title: &str,
    detail: &str,
    hint: Option<&str>,
    back: Option<(&str, &str)>,
) -> Response {
    let page = ErrorPage {
        title: title.to_owned(),
        detail: detail.to_owned(),
        hint: hint.map(str::to_owned),
        back: back.map(|(href, text)| Link {
            href: href.to_owned(),
            text: text.to_owned(),
        }),
    };
    html(status, state.pages.error(&page))
}

/// The page for a form whose CSRF token does not match: 403, nothing done.
pub fn csrf_refused(state: &AppState, back: &str) -> Response {
    error_page(
        state,
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form did not come from this page, or it is too old, so nothing was changed.",
        Some("Go back, reload the page and try again."),
        Some((back, "Go back")),
    )
}

/// A form posted without a session: refused, nothing changes.
pub fn signed_out(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::FORBIDDEN,
        "You are signed out",
        "Your session ended, so nothing was changed.",
        Some("Sign in and try again."),
        Some(("/sign-in", "Sign in")),
    )
}

/// The page for a failure of the server itself (logged, not detailed).
pub fn server_error(state: &AppState, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "request failed");
    error_page(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not finish this request. Nothing was shared with any app.",
        Some("Try again in a moment."),
        None,
    )
}

/// A `303 See Other` to `location`.
pub fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect").into_response(),
    }
}

/// 404 for every unknown path: problem JSON under the data API, the error
/// page elsewhere.
pub async fn not_found(axum::extract::State(state): axum::extract::State<AppState>, uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        return no_such_route(StatusCode::NOT_FOUND);
    }
    error_page(
        &state,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
        None,
        Some(("/dashboard", "Go to your vault")),
    )
}

/// 405 for a known path and a method it does not take: problem JSON under
/// the data API, an empty body elsewhere (the `Allow` header is axum's).
pub async fn method_not_allowed(uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        return no_such_route(StatusCode::METHOD_NOT_ALLOWED);
    }
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

/// A JSON body with `status` (never cached: `Cache-Control: no-store` is
/// added by the security headers, `Pragma: no-cache` here for HTTP/1.0
/// caches, as RFC 6749 §5.1 asks of token responses).
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json"), (header::PRAGMA, "no-cache")],
            bytes,
        )
            .into_response(),
        Err(e) => oauth_error(&coffer_oauth::Error::Internal(e.to_string())),
    }
}

/// An OAuth error as RFC 6749 §5.2 JSON with the library's status; a 401
/// (client authentication failed) says how to authenticate, a 429 when to
/// come back. Failures of the server are logged.
pub fn oauth_error(error: &coffer_oauth::Error) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!(error = %error, "OAuth request failed");
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json"), (header::PRAGMA, "no-cache")],
        error.to_json().to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"coffer\", charset=\"UTF-8\""),
        );
    }
    if let coffer_oauth::Error::Throttled { retry_after_secs } = error {
        set_retry_after(&mut response, *retry_after_secs);
    }
    response
}

/// Sets `Retry-After` to `secs` (at least one second).
pub fn set_retry_after(response: &mut Response, secs: u64) {
    if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// The pages' CSP with the origins of `redirect_uris` added to
/// `form-action`. Browsers check `form-action` on every redirect that
/// follows a form post, so a form whose answer ends at an app (the consent
/// page; sign-in on the way to an authorization the grant already covers)
/// must name the app's origin. A loopback redirect URI matches any port
/// (RFC 8252 §7.3), so its origin is allowed on any port. `None` when no
/// URI has a usable origin.
pub fn csp_with_form_targets(redirect_uris: &[String]) -> Option<HeaderValue> {
    let mut origins: Vec<String> = Vec::new();
    for uri in redirect_uris {
        let Ok(url) = url::Url::parse(uri) else { continue };
        let origin = url.origin();
        if !origin.is_tuple() {
            continue;
        }
        let loopback = url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1") | Some("[::1]"));
        let source = match (loopback, url.host_str()) {
            (true, Some(host)) => format!("http://{host}:*"),
            _ => origin.ascii_serialization(),
        };
        if !origins.contains(&source) {
            origins.push(source);
        }
    }
    if origins.is_empty() {
        return None;
    }
    let policy = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
    );
    HeaderValue::from_str(&policy).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_targets_are_origins_and_loopback_any_port() {
        let csp = csp_with_form_targets(&[
            "https://notes.example/cb?x=1".into(),
            "https://notes.example/other".into(),
            "http://127.0.0.1:8123/cb".into(),
            "not a url".into(),
        ])
        .unwrap();
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("form-action 'self' https://notes.example http://127.0.0.1:*;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp_with_form_targets(&["nope".into()]).is_none());
    }
}
