//! The HTTP server: the router, the state the handlers share, and the
//! security headers every response gets.
//!
//! | module | routes |
//! |---|---|
//! | [`health`] | `/healthz`, `/readyz` |
//! | [`accounts`] | `/sign-up`, `/sign-in`, `/sign-out`, `/` |
//! | [`oauth`] | metadata, `/oauth/token`, `/oauth/par`, `/oauth/device`, `/oauth/revoke`, `/oauth/introspect`, `/oauth/register` |
//! | [`consent`] | `/oauth/authorize` (GET: consent page, POST: the answer) |
//! | [`device`] | `/device`, `/device/decision` (RFC 8628 verification page) |
//! | [`dashboard`] | `/dashboard`, `/dashboard/access`, `/dashboard/revoke`, `/dashboard/delete-account` |
//! | [`api`] | the data API under `/v1` (bearer capability tokens) |
//!
//! [`cors`] lets browser apps on their registered origins call the data
//! API, the token endpoints and the metadata; the pages stay same-origin.

mod accounts;
mod api;
mod consent;
mod cors;
mod dashboard;
mod device;
mod forms;
mod health;
mod limits;
mod lines;
mod oauth;
mod request_log;
mod respond;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_consent_ui::{CONTENT_SECURITY_POLICY, Pages, STYLESHEET_PATH};
use coffer_oauth::endpoints;

use crate::services::Services;

pub use api::close_streams as close_change_streams;
pub use limits::{DeviceBindings, Limiter, PendingStore};

/// Schema versions one app may publish per hour.
const PUBLISHES_PER_HOUR: usize = 60;

/// Largest request body accepted (forms, OAuth requests, registrations).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Engine, OAuth server, schemas.
    pub services: Services,
    /// The page renderer.
    pub pages: Arc<Pages>,
    /// The public base URL (the OAuth issuer), without a trailing slash.
    pub base_url: Arc<str>,
    /// Whether cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Authorization requests waiting on the consent page's answer.
    pub pending: Arc<PendingStore>,
    /// Sign-in attempts per client address (on top of the per-email
    /// throttling of `coffer-oauth`).
    pub sign_in_limit: Arc<Limiter>,
    /// Sign-ups per client address (each creates a vault).
    pub sign_up_limit: Arc<Limiter>,
    /// Device codes typed per session (user codes have about 34.6 bits).
    pub device_limit: Arc<Limiter>,
    /// Failed device code look-ups of all sessions together: one attacker
    /// with many sessions (or many accounts) still gets few guesses.
    pub device_failures: Arc<Limiter>,
    /// The device codes each session looked up, which are the only ones
    /// `POST /device/decision` answers.
    pub device_bindings: Arc<DeviceBindings>,
    /// Dynamic client registrations per client address.
    pub register_limit: Arc<Limiter>,
    /// Largest data API request body, in bytes.
    pub api_body_limit: usize,
    /// The origins browser apps may call from (the registered apps'
    /// redirect URI origins), kept current by [`cors`].
    pub cors_origins: Arc<cors::AllowedOrigins>,
    /// Whether apps may publish schemas (`POST /v1/schemas`).
    pub app_schema_publishing: bool,
    /// Schema versions each app may publish per hour.
    pub publish_limit: Arc<Limiter>,
}

impl AppState {
    /// The state for a server reachable at `base_url`.
    pub fn new(services: Services, base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/');
        AppState {
            services,
            pages: Arc::new(Pages::new()),
            secure_cookies: base_url.starts_with("https://"),
            base_url: Arc::from(base_url),
            pending: Arc::new(PendingStore::new(Duration::from_secs(10 * 60), 10_000)),
            sign_in_limit: Arc::new(Limiter::new(30, Duration::from_secs(15 * 60))),
            sign_up_limit: Arc::new(Limiter::new(10, Duration::from_secs(60 * 60))),
            device_limit: Arc::new(Limiter::new(10, Duration::from_secs(10 * 60))),
            device_failures: Arc::new(Limiter::new(DEVICE_FAILURES_PER_WINDOW, Duration::from_secs(10 * 60))),
            device_bindings: Arc::new(DeviceBindings::new(Duration::from_secs(10 * 60), 10_000)),
            register_limit: Arc::new(Limiter::new(REGISTRATIONS_PER_HOUR, Duration::from_secs(60 * 60))),
            api_body_limit: crate::config::DEFAULT_API_BODY_LIMIT,
            cors_origins: Arc::new(cors::AllowedOrigins::default()),
            app_schema_publishing: true,
            publish_limit: Arc::new(Limiter::new(PUBLISHES_PER_HOUR, Duration::from_secs(60 * 60))),
        }
    }

    /// The same with app schema publishing (`POST /v1/schemas`) on or off.
    pub fn with_app_schema_publishing(mut self, on: bool) -> Self {
        self.app_schema_publishing = on;
        self
    }

    /// The same with the data API's request body limit set to `bytes`.
    pub fn with_api_body_limit(mut self, bytes: usize) -> Self {
        self.api_body_limit = bytes;
        self
    }

    /// The same with open registration (`/oauth/register`) on or off.
    pub fn with_open_registration(mut self, open: bool) -> Self {
        self.services.oauth = self.services.oauth.clone().with_open_registration(open);
        self
    }
}

/// Failed device code look-ups, of all sessions together, per 10 minutes.
/// A user code has about 34.6 bits and lives 10 minutes, so at this rate
/// guessing one of a few codes alive at once takes many thousands of years;
/// a person who mistypes a code is far below it.
pub const DEVICE_FAILURES_PER_WINDOW: usize = 100;

/// Dynamic client registrations per client address per hour.
pub const REGISTRATIONS_PER_HOUR: usize = 20;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let hsts = state.secure_cookies;
    let pages = Router::new()
        .route("/", get(accounts::home))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(STYLESHEET_PATH, get(stylesheet))
        .route("/sign-up", get(accounts::sign_up_page).post(accounts::sign_up))
        .route("/sign-in", get(accounts::sign_in_page).post(accounts::sign_in))
        .route("/sign-out", post(accounts::sign_out))
        .route(endpoints::METADATA, get(oauth::metadata))
        .route(endpoints::AUTHORIZE, get(consent::authorize).post(consent::decide))
        .route(endpoints::PAR, post(oauth::par))
        .route(endpoints::TOKEN, post(oauth::token))
        .route(endpoints::REVOKE, post(oauth::revoke))
        .route(endpoints::INTROSPECT, post(oauth::introspect))
        .route(endpoints::REGISTER, post(oauth::register))
        .route(endpoints::DEVICE_AUTHORIZATION, post(oauth::device_authorization))
        .route(
            endpoints::DEVICE_VERIFICATION,
            get(device::page).post(device::enter_code),
        )
        .route(device::DECISION_PATH, post(device::decide))
        .route(dashboard::PATH, get(dashboard::page))
        .route(dashboard::CHANGE_PATH, post(dashboard::change_access))
        .route(dashboard::REVOKE_PATH, post(dashboard::revoke))
        .route(
            dashboard::DELETE_ACCOUNT_PATH,
            get(dashboard::delete_account_page).post(dashboard::delete_account),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .merge(pages)
        .merge(api::router(state.api_body_limit))
        .fallback(respond::not_found)
        .method_not_allowed_fallback(respond::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(map_response(move |response: Response| security_headers(response, hsts)))
        .layer(axum::middleware::from_fn(request_log::log_request))
        .with_state(state)
}

/// The pages' stylesheet (the CSP allows styles from this origin only).
async fn stylesheet() -> impl IntoResponse {
    let (content_type, bytes) = coffer_consent_ui::stylesheet();
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
}

/// Adds the security headers to every response: the pages' strict CSP with
/// `frame-ancestors 'none'` (unless the handler set its own, stricter-or-equal
/// one: the consent page adds the app's origin to `form-action`), and
/// `X-Frame-Options` for older browsers,
/// `nosniff`, no referrer, and `Cache-Control: no-store` unless the handler
/// chose a cache policy (only the stylesheet does). When the public URL is
/// https, `Strict-Transport-Security` too (one year; not
/// `includeSubDomains`: the other names under the host are not the
/// server's to commit).
async fn security_headers(mut response: Response, hsts: bool) -> Response {
    let headers = response.headers_mut();
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
