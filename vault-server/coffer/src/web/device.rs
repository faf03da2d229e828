//! The device verification page (RFC 8628 §3.3): a signed-in user types the
//! code a CLI or another device shows, sees the consent page, and answers.
//!
//! A user code has about 34.6 bits, so look-ups are limited: codes typed per
//! session, and failed look-ups of all sessions together (one attacker with
//! many sessions gets no more guesses). The consent page's answer carries a
//! random id bound to the session that looked the code up, never the code
//! itself: `POST /device/decision` answers only a code this session just
//! typed, so it cannot be used to try codes, nor to approve or deny a flow
//! whose code was learned some other way.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_consent_ui::{ConsentPage, DevicePage, DeviceState, fields};
use coffer_oauth::{Error, endpoints};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::consent::{app_view, approved_spec, consent_lines};
use super::respond::{self, error_page, html};
use super::session::{self, SignedIn, to_sign_in};
use crate::accounts::install_granted_schemas;

/// Where the device consent page posts.
pub const DECISION_PATH: &str = "/device/decision";

/// The key of the shared failed look-ups limit.
const GLOBAL: &str = "all sessions";

/// `?user_code=` from `verification_uri_complete`.
#[derive(Deserialize)]
pub struct CodeQuery {
    user_code: Option<String>,
}

fn view(signed_in: &SignedIn, state: DeviceState) -> DevicePage {
    DevicePage {
        state,
        code: String::new(),
        error: None,
        app_name: None,
        csrf_token: signed_in.session.csrf_token.clone(),
        form_action: endpoints::DEVICE_VERIFICATION.into(),
    }
}

/// `GET /device`: the code form, filled in from `user_code`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<CodeQuery>) -> Response {
    let signed_in = match session::signed_in(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let mut here = endpoints::DEVICE_VERIFICATION.to_owned();
            if let Some(code) = &q.user_code {
                here.push('?');
                here.push_str(
                    &url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("user_code", code)
                        .finish(),
                );
            }
            return to_sign_in(&here);
        }
        Err(response) => return response,
    };
    let mut page = view(&signed_in, DeviceState::Enter);
    page.code = q.user_code.unwrap_or_default().chars().take(12).collect();
    html(StatusCode::OK, state.pages.device(&page))
}

/// The limiter key of a session (not the token itself).
fn session_key(signed_in: &SignedIn) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(signed_in.token.as_bytes()))
}

/// `POST /device`: looks the typed code up and shows the consent page.
pub async fn enter_code(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (signed_in, form) = match session::signed_in_form(&state, &headers, &body, endpoints::DEVICE_VERIFICATION).await
    {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let typed: String = form.get(fields::USER_CODE).unwrap_or("").chars().take(12).collect();
    let retry = |error: String, status: StatusCode| {
        let mut page = view(&signed_in, DeviceState::Enter);
        page.code = typed.clone();
        page.error = Some(error);
        html(status, state.pages.device(&page))
    };
    let session = session_key(&signed_in);
    let too_many = |wait: std::time::Duration| {
        retry(
            format!(
                "Too many codes were typed. Wait {} minutes, then try again.",
                wait.as_secs().div_ceil(60).max(1)
            ),
            StatusCode::TOO_MANY_REQUESTS,
        )
    };
    if let Err(wait) = state.device_failures.check(GLOBAL) {
        return too_many(wait);
    }
    if let Err(wait) = state.device_limit.hit(&session) {
        return too_many(wait);
    }
    let oauth = &state.services.oauth;
    let request = match oauth.device_lookup(&typed).await {
        Ok(r) => r,
        Err(Error::NotFound(_)) => {
            // Counted only when it failed: people who type their code right
            // never use up the shared budget.
            let _ = state.device_failures.hit(GLOBAL);
            return retry(
                "We don't know that code, or it has expired. Check it on your device and type it again.".into(),
                StatusCode::BAD_REQUEST,
            );
        }
        Err(e) => return respond::server_error(&state, &e),
    };
    let Some(request_id) = state.device_bindings.bind(&session, &request.user_code) else {
        return error_page(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy",
            "Too many device codes are waiting for an answer right now.",
            Some("Try again in a few minutes."),
            None,
        );
    };
    let user = signed_in.session.user.id;
    let (check, app) = match tokio::try_join!(
        oauth.consent_needed(user, request.client_id.as_str(), &request.requested),
        oauth.app(request.client_id.as_str())
    ) {
        Ok(found) => found,
        Err(e) => return respond::server_error(&state, &e),
    };
    let (lines, existing) = consent_lines(&state, &request.requested, &check).await;
    let page = ConsentPage {
        app: app_view(&app, None),
        lines,
        existing,
        csrf_token: signed_in.session.csrf_token.clone(),
        request_id,
        form_action: DECISION_PATH.into(),
    };
    html(StatusCode::OK, state.pages.consent(&page))
}

/// `POST /device/decision`: the consent page's answer for a device.
pub async fn decide(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (signed_in, form) = match session::signed_in_form(&state, &headers, &body, endpoints::DEVICE_VERIFICATION).await
    {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let oauth = &state.services.oauth;
    let user = signed_in.session.user.id;
    let expired = || {
        html(
            StatusCode::BAD_REQUEST,
            state.pages.device(&view(&signed_in, DeviceState::Expired)),
        )
    };
    // Only a code this session looked up on the device page, once.
    let Some(code) = form
        .get(fields::REQUEST_ID)
        .and_then(|id| state.device_bindings.take(id, &session_key(&signed_in)))
    else {
        return expired();
    };
    let code = code.as_str();
    let request = match oauth.device_lookup(code).await {
        Ok(r) => r,
        Err(Error::NotFound(_)) => return expired(),
        Err(e) => return respond::server_error(&state, &e),
    };
    let answer = match form.get(fields::DECISION) {
        Some("allow") => {
            let check = match oauth
                .consent_needed(user, request.client_id.as_str(), &request.requested)
                .await
            {
                Ok(c) => c,
                Err(e) => return respond::server_error(&state, &e),
            };
            let approved = approved_spec(&state, &form, &request.requested, &check);
            let vault = signed_in.session.user.vault_id;
            if let Err(e) = install_granted_schemas(&state.services, vault, &approved).await {
                return respond::server_error(&state, &e);
            }
            oauth.device_approve(user, code, &approved).await.map(|a| !a.is_empty())
        }
        _ => oauth.device_deny(code).await.map(|()| false),
    };
    match answer {
        Ok(approved) => {
            let mut page = view(
                &signed_in,
                if approved {
                    DeviceState::Approved
                } else {
                    DeviceState::Denied
                },
            );
            page.app_name = Some(request.app_name);
            html(StatusCode::OK, state.pages.device(&page))
        }
        Err(Error::NotFound(_)) => expired(),
        Err(e) => respond::server_error(&state, &e),
    }
}
