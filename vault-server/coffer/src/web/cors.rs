//! CORS (the Fetch standard's cross-origin protocol) for browser apps on
//! their own origin: single-page apps that use PKCE and call the data API
//! from the browser, with no server of their own.
//!
//! - Which paths: the data API (`/v1` and below), `/oauth/token`,
//!   `/oauth/revoke`, `/oauth/par` and the metadata document
//!   (`/.well-known/oauth-authorization-server`) — [`applies_to`]. Never the
//!   pages (sign-in, consent, device, dashboard) nor the endpoints a browser
//!   app has no use for (registration, device authorization,
//!   introspection): those stay same-origin only.
//! - Which origins: the origins (`scheme://host[:port]`) of every
//!   registered app's redirect URIs, exactly — no wildcard, and no
//!   "any port" for loopback URIs ([`coffer_oauth::redirect_origin`]). An
//!   allowed origin is echoed in `Access-Control-Allow-Origin`; any other
//!   gets no CORS header at all, so the browser keeps the answer from the
//!   page. Every answer on these paths says `Vary: Origin`.
//! - No `Access-Control-Allow-Credentials`: the API and the token endpoints
//!   take their credentials from the `Authorization` and `DPoP` headers
//!   (and the form), never from cookies, and cookies must not ride along.
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) is answered here, `204`, without
//!   reaching the routes: for an allowed origin with the methods and request
//!   headers the API reads and `Access-Control-Max-Age` (10 minutes, so the
//!   browser asks once per request shape); for any other origin with no
//!   allow header.
//!
//! This is a small middleware rather than tower-http's `CorsLayer`: that
//! layer answers every `OPTIONS` request itself (a preflight or not, `200`),
//! and sends its allowed methods, headers and max age to a preflight from
//! any origin, checking only `Access-Control-Allow-Origin` against the
//! predicate; here an origin that is not allowed gets none of them.
//!
//! The origin set is kept current without a cache keyed by the (attacker
//! controlled) `Origin` header: see [`AllowedOrigins`].

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coffer_oauth::{OAuthServer, RedirectOrigins, endpoints};

use super::AppState;

/// Longest `Origin` header looked up. A serialized origin is at most
/// `https://` + a 253-byte DNS name + `:65535` (267 bytes); anything longer
/// is no origin a browser sends and is refused without a look-up.
pub const MAX_ORIGIN_LEN: usize = 300;

/// How long a browser may cache a preflight's answer, in seconds.
pub const MAX_AGE_SECS: u32 = 600;

/// The methods of the paths this module serves.
const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE";

/// The request headers the API and the OAuth endpoints read beyond the
/// CORS-safelisted ones: the credentials (`Authorization`, `DPoP`), the
/// body's type (`Content-Type: application/json` is not safelisted), where
/// a change stream resumes (`Last-Event-ID`) and the tag of a change feed
/// answer the app holds (`If-None-Match`).
const ALLOW_HEADERS: &str = "authorization, content-type, dpop, last-event-id, if-none-match";

/// The response headers a browser app may read beyond the safelisted ones:
/// the challenge of a refused token (`WWW-Authenticate`: which scheme, which
/// error), how long to wait after a `429` or `503` (`Retry-After`), and the
/// tag of a change feed answer (`ETag`). The server sends no `Location` or
/// `DPoP-Nonce`.
const EXPOSE_HEADERS: &str = "www-authenticate, retry-after, etag";

/// Whether browser apps on other origins may call `path`.
pub fn applies_to(path: &str) -> bool {
    path == "/v1"
        || path.starts_with("/v1/")
        || [endpoints::TOKEN, endpoints::REVOKE, endpoints::PAR, endpoints::METADATA].contains(&path)
}

/// The allowed origins, as last read from the registered apps.
///
/// Each cross-origin request asks coffer-oauth for the apps' version (one
/// aggregate over the small `apps` table, [`OAuthServer::apps_version`]) and
/// reads the origins again only when it changed. So an app's origin works
/// on its first request after registration — also when it was registered by
/// another process on the same database (`coffer app register` while the
/// server runs), which an in-process "invalidate on registration" would
/// miss — while the redirect URIs are parsed once per registration, not
/// per request. The set holds only registered origins (at most 16 per app):
/// its size follows the apps, never the `Origin` headers received.
#[derive(Default)]
pub struct AllowedOrigins {
    known: Mutex<Option<Arc<RedirectOrigins>>>,
}

impl AllowedOrigins {
    /// Whether `origin` is the origin of a registered app's redirect URI.
    pub async fn allows(&self, oauth: &OAuthServer, origin: &str) -> Result<bool, coffer_oauth::Error> {
        let version = oauth.apps_version().await?;
        let cached = self.known.lock().expect("origins").clone();
        let current = match cached {
            Some(known) if known.version == version => known,
            _ => {
                let fresh = Arc::new(oauth.redirect_origins().await?);
                *self.known.lock().expect("origins") = Some(fresh.clone());
                fresh
            }
        };
        Ok(current.origins.contains(origin))
    }
}

/// The request's origin if it is one to answer with CORS headers: exactly
/// one plausible `Origin` header naming an allowed origin. A failed look-up
/// is logged and answered as "not allowed" (the request itself still runs).
async fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(header::ORIGIN).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    if value.len() > MAX_ORIGIN_LEN {
        return None;
    }
    let origin = value.to_str().ok().filter(|o| *o != "null")?;
    match state.cors_origins.allows(&state.services.oauth, origin).await {
        Ok(true) => Some(value.clone()),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading the registered apps' origins failed");
            None
        }
    }
}

/// The CORS middleware (see the module documentation); other paths pass
/// through untouched.
pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !applies_to(request.uri().path()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let preflight = request.method() == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = if headers.contains_key(header::ORIGIN) {
        allowed_origin(&state, headers).await
    } else {
        None
    };
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = allowed {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        }
        response
    } else {
        let mut response = next.run(request).await;
        if let Some(origin) = allowed {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        response
    };
    // The answer depends on the Origin header (with or without one), so a
    // cache must not hand one origin's answer to another.
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::applies_to;

    #[test]
    fn only_the_api_the_token_endpoints_and_metadata_get_cors() {
        for path in [
            "/v1",
            "/v1/tables",
            "/v1/tables/notes.notes/rows",
            "/v1/openapi.json",
            "/v1/no-such-route",
            "/oauth/token",
            "/oauth/revoke",
            "/oauth/par",
            "/.well-known/oauth-authorization-server",
        ] {
            assert!(applies_to(path), "{path}");
        }
        for path in [
            "/",
            "/sign-in",
            "/sign-up",
            "/dashboard",
            "/device",
            "/oauth/authorize",
            "/oauth/register",
            "/oauth/device",
            "/oauth/introspect",
            "/v1x",
            "/oauth/token/x",
            "/healthz",
        ] {
            assert!(!applies_to(path), "{path}");
        }
    }
}
