//! Sign-up (creates the user's vault), sign-in (Argon2id, throttled), and
//! sign-out.
//!
//! Sign-up does not say whether an email address already has an account
//! (decision 0020): a valid sign-up form gets the same answer either way,
//! after the same minimum time — a redirect to the sign-in page with a
//! neutral notice, and no session. A new address has its account by then;
//! for a taken one nothing changed, and its owner signs in with their own
//! password as usual.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_consent_ui::{SignInPage, SignUpErrors, SignUpPage, fields};
use coffer_oauth::Error;
use coffer_oauth::endpoints;
use serde::Deserialize;

use super::AppState;
use super::forms::FormPairs;
use super::respond::{self, csrf_refused, html, see_other};
use super::session::{
    self, form_cookie, is_token, random_token, safe_next, same, session_cookie, set_cookie, with_next,
};
use crate::accounts::create_account;

/// Shortest password accepted (`coffer-oauth` enforces it).
const MIN_PASSWORD_CHARS: usize = 8;

/// The least time a valid sign-up takes to answer, whether it created an
/// account or found the address taken, so that the time does not tell the
/// two apart (creating a vault and hashing the password take well under it).
pub const SIGN_UP_ANSWER_TIME: Duration = Duration::from_millis(1500);

/// What the sign-in page says after a sign-up, whatever happened.
pub const SIGNED_UP_NOTICE: &str = "Now sign in with the email address and password you chose. \
     If this address already had an account, nothing was changed: sign in with that account's password.";

/// What the sign-in page says after the user deleted their account.
pub const DELETED_NOTICE: &str = "Your account was deleted, and everything in your vault was erased. \
     You can sign up again with the same email address as a new, empty account.";

/// The query of the sign-up and sign-in pages: `next`, `signed_up=1` when
/// the sign-in page follows a sign-up, and `deleted=1` when it follows the
/// deletion of an account.
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    signed_up: Option<String>,
    deleted: Option<String>,
}

/// `/`: the dashboard (which sends visitors to sign in).
pub async fn home() -> Response {
    see_other(super::dashboard::PATH)
}

/// The form cookie's token, reused while valid; the header to set when new.
fn form_token(state: &AppState, headers: &HeaderMap) -> (String, Option<axum::http::HeaderValue>) {
    match session::cookie(headers, form_cookie(state)).filter(|t| is_token(t)) {
        Some(token) => (token, None),
        None => {
            let token = random_token();
            let cookie = set_cookie(state, form_cookie(state), &token, None);
            (token, Some(cookie))
        }
    }
}

/// Whether a sign-up or sign-in form carries the form cookie's token.
fn form_csrf_ok(state: &AppState, headers: &HeaderMap, form: &FormPairs) -> bool {
    match (session::cookie(headers, form_cookie(state)), form.get(fields::CSRF)) {
        (Some(cookie), Some(field)) => is_token(&cookie) && same(&cookie, field),
        _ => false,
    }
}

/// When the form leads on to an authorization request, the sign-in or
/// sign-up answer may end at the app (the grant already covers the request:
/// no consent page), and browsers check `form-action` on those redirects:
/// the page's CSP names the app's redirect URIs' origins.
async fn allow_app_targets(state: &AppState, mut response: Response, next: Option<&str>) -> Response {
    let Some(query) = next
        .and_then(|n| n.strip_prefix(endpoints::AUTHORIZE))
        .and_then(|q| q.strip_prefix('?'))
    else {
        return response;
    };
    let Some(client_id) = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
    else {
        return response;
    };
    if let Ok(app) = state.services.oauth.app(&client_id).await
        && let Some(csp) = respond::csp_with_form_targets(&app.redirect_uris)
    {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

fn with_cookie(mut response: Response, cookie: Option<axum::http::HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

fn sign_up_view(token: String, next: Option<String>, email: String, errors: SignUpErrors) -> SignUpPage {
    SignUpPage {
        csrf_token: token,
        form_action: "/sign-up".into(),
        email,
        errors,
        password_min_length: MIN_PASSWORD_CHARS,
        sign_in_href: with_next("/sign-in", next.as_deref()),
        next,
    }
}

fn sign_in_view(token: String, next: Option<String>, email: String) -> SignInPage {
    SignInPage {
        csrf_token: token,
        form_action: "/sign-in".into(),
        email,
        error: None,
        throttled: None,
        sign_up_href: with_next("/sign-up", next.as_deref()),
        next,
        notice: None,
    }
}

/// The sign-in page after a sign-up, keeping `next`.
fn after_sign_up(next: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("signed_up", "1");
    if let Some(n) = next {
        query.append_pair("next", n);
    }
    format!("/sign-in?{}", query.finish())
}

/// Starts a session for `user` and continues to `next` (or the dashboard).
async fn start_session(state: &AppState, user: &coffer_oauth::User, next: Option<String>) -> Response {
    match state.services.oauth.create_session(user.id).await {
        Ok(new) => {
            let max_age = (new.expires_at - state.services.oauth.now()).num_seconds();
            let mut response = see_other(next.as_deref().unwrap_or(super::dashboard::PATH));
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(state, session_cookie(state), &new.token, Some(max_age)),
            );
            // The form token has done its job; a new one comes with the next form.
            headers.append(header::SET_COOKIE, set_cookie(state, form_cookie(state), "", Some(0)));
            response
        }
        Err(e) => respond::server_error(state, &e),
    }
}

/// `GET /sign-up`.
pub async fn sign_up_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let (token, cookie) = form_token(&state, &headers);
    let page = sign_up_view(
        token,
        safe_next(q.next.as_deref()),
        String::new(),
        SignUpErrors::default(),
    );
    with_cookie(html(StatusCode::OK, state.pages.sign_up(&page)), cookie)
}

/// `POST /sign-up`: creates the vault and the account, then sends the
/// visitor to sign in. A taken address gets the very same answer (see the
/// module documentation).
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = tokio::time::Instant::now();
    let form = FormPairs::parse(&body);
    let next = safe_next(form.get(fields::NEXT));
    if !form_csrf_ok(&state, &headers, &form) {
        return csrf_refused(&state, &with_next("/sign-up", next.as_deref()));
    }
    let (token, _) = form_token(&state, &headers);
    let email = form.get(fields::EMAIL).unwrap_or("").trim().to_owned();
    let password = form.get(fields::PASSWORD).unwrap_or("");
    let confirm = form.get(fields::PASSWORD_CONFIRM).unwrap_or("");
    let mut errors = SignUpErrors::default();
    if email.is_empty() {
        errors.email = Some("Enter your email address.".into());
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        errors.password = Some(format!("Use at least {MIN_PASSWORD_CHARS} characters."));
    } else if password != confirm {
        errors.confirm = Some("The two passwords are not the same.".into());
    }
    if !errors.any() {
        if let Err(wait) = state.sign_up_limit.hit(&peer.ip().to_string()) {
            errors.form = Some(format!(
                "Too many new accounts from your network. Try again in {} minutes.",
                wait.as_secs().div_ceil(60).max(1)
            ));
        } else {
            match create_account(&state.services, &email, password).await {
                // The same answer, at the same time, for a new address and
                // a taken one.
                Ok(_) | Err(Error::EmailTaken) => {
                    tokio::time::sleep_until(started + SIGN_UP_ANSWER_TIME).await;
                    return see_other(&after_sign_up(next.as_deref()));
                }
                Err(Error::InvalidEmail) => errors.email = Some("Enter an email address like name@example.org.".into()),
                Err(Error::InvalidPassword(why)) => errors.password = Some(capitalized(&why)),
                Err(e) => return respond::server_error(&state, &e),
            }
        }
    }
    let status = if errors.form.is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = sign_up_view(token, next.clone(), email, errors);
    allow_app_targets(&state, html(status, state.pages.sign_up(&page)), next.as_deref()).await
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

/// `GET /sign-in`.
pub async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let (token, cookie) = form_token(&state, &headers);
    let next = safe_next(q.next.as_deref());
    let mut page = sign_in_view(token, next.clone(), String::new());
    if q.signed_up.as_deref() == Some("1") {
        page.notice = Some(SIGNED_UP_NOTICE.into());
    } else if q.deleted.as_deref() == Some("1") {
        page.notice = Some(DELETED_NOTICE.into());
    }
    let response = with_cookie(html(StatusCode::OK, state.pages.sign_in(&page)), cookie);
    allow_app_targets(&state, response, next.as_deref()).await
}

/// `POST /sign-in`: throttled per address here, and per (email, address)
/// by `coffer-oauth`.
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormPairs::parse(&body);
    let next = safe_next(form.get(fields::NEXT));
    if !form_csrf_ok(&state, &headers, &form) {
        return csrf_refused(&state, &with_next("/sign-in", next.as_deref()));
    }
    let (token, _) = form_token(&state, &headers);
    let email = form.get(fields::EMAIL).unwrap_or("").trim().to_owned();
    let password = form.get(fields::PASSWORD).unwrap_or("");
    let mut page = sign_in_view(token, next.clone(), email.clone());
    let minutes = |secs: u64| secs.div_ceil(60).max(1);
    if let Err(wait) = state.sign_in_limit.hit(&peer.ip().to_string()) {
        page.throttled = Some(format!(
            "Too many sign-in attempts from your network. Try again in {} minutes.",
            minutes(wait.as_secs())
        ));
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, state.pages.sign_in(&page));
        respond::set_retry_after(&mut response, wait.as_secs());
        return allow_app_targets(&state, response, next.as_deref()).await;
    }
    let response = match state.services.oauth.sign_in(&email, password, peer.ip()).await {
        Ok(user) => return start_session(&state, &user, next).await,
        Err(Error::InvalidCredentials) => {
            page.error = Some("That email and password don't match an account.".into());
            html(StatusCode::UNAUTHORIZED, state.pages.sign_in(&page))
        }
        Err(Error::Throttled { retry_after_secs }) => {
            page.throttled = Some(format!(
                "Too many attempts. Try again in {} minutes.",
                minutes(retry_after_secs)
            ));
            let mut response = html(StatusCode::TOO_MANY_REQUESTS, state.pages.sign_in(&page));
            respond::set_retry_after(&mut response, retry_after_secs);
            response
        }
        Err(e) => return respond::server_error(&state, &e),
    };
    allow_app_targets(&state, response, next.as_deref()).await
}

/// `POST /sign-out`: ends the session (CSRF-checked).
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = FormPairs::parse(&body);
    let signed_in = match session::signed_in(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/sign-in"),
        Err(response) => return response,
    };
    if !signed_in.check_csrf(form.get(fields::CSRF)) {
        return csrf_refused(&state, super::dashboard::PATH);
    }
    if let Err(e) = state.services.oauth.sign_out(&signed_in.token).await {
        return respond::server_error(&state, &e);
    }
    let mut response = see_other("/sign-in");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, session_cookie(&state), "", Some(0)),
    );
    response.into_response()
}
