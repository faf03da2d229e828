//! The authorization endpoint in a browser: `GET /oauth/authorize` validates
//! the request (an unknown client or a redirect URI that does not match is
//! an error page, never a redirect), sends a visitor to sign in, skips the
//! page when the active grant already allows everything asked, and otherwise
//! shows the consent page with only what is new. `POST /oauth/authorize` is
//! the page's answer: the ticked lines, Allow or Deny.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use coffer_auth::GrantSpec;
use coffer_consent_ui::{AppView, ConsentLine, ConsentPage, fields};
use coffer_oauth::{App, AuthorizeError, AuthorizeParams, ConsentCheck, Error, endpoints};

use super::AppState;
use super::forms::{FormPairs, oauth_params};
use super::lines::{describe, label_publishers, ticked};
use super::respond::{self, error_page, html, see_other};
use super::session::{self, to_sign_in};
use crate::accounts::install_granted_schemas;

/// How the consent page names and identifies the app. Anyone can register
/// any name and any homepage, so the page always shows where the code would
/// go (the redirect URI's host), and marks a homepage on another host as not
/// verified.
pub fn app_view(app: &App, redirect_uri: Option<&str>) -> AppView {
    let view = AppView::new(
        app.name.clone(),
        app.homepage.clone().unwrap_or_default(),
        app.logo_url.clone(),
    );
    match redirect_uri {
        Some(uri) => view.with_redirect_uri(uri),
        None => view,
    }
}

/// The consent page's lines: the new pairs as checkboxes, the requested
/// pairs the grant already allows as "already allowed", and the rest of the
/// grant under "You already allowed".
pub async fn consent_lines(
    state: &AppState,
    requested: &GrantSpec,
    check: &ConsentCheck,
) -> (Vec<ConsentLine>, Vec<ConsentLine>) {
    let registry = &state.services.registry();
    let mut lines = describe(registry, &check.new);
    let mut already = describe(registry, &requested.without(&check.new));
    for line in &mut already {
        line.already_granted = true;
        line.checked = false;
    }
    lines.extend(already);
    let mut existing = match &check.existing {
        Some(grant) => describe(registry, &grant.spec.without(requested)),
        None => Vec::new(),
    };
    label_publishers(&state.services, &mut lines).await;
    label_publishers(&state.services, &mut existing).await;
    (lines, existing)
}

/// What the user allows: the ticked lines plus what the active grant
/// already allows of the request (not shown as checkboxes).
pub fn approved_spec(state: &AppState, form: &FormPairs, requested: &GrantSpec, check: &ConsentCheck) -> GrantSpec {
    let ticked = ticked(&state.services.registry(), &form.all(fields::LINE));
    ticked.union(&requested.without(&check.new))
}

/// An error page for a request that must not go back to the app.
fn display_error(state: &AppState, error: &Error) -> Response {
    if error.http_status() >= 500 {
        return respond::server_error(state, error);
    }
    error_page(
        state,
        StatusCode::BAD_REQUEST,
        "We did not send you back to the app",
        &format!("The app's request is not valid: {}.", error.description()),
        Some("Nothing was shared. Go back to the app and try again; if this keeps happening, tell the app's makers."),
        Some(("/dashboard", "Go to your vault")),
    )
}

/// `GET /oauth/authorize`.
pub async fn authorize(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let params: AuthorizeParams = match oauth_params(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => return display_error(&state, &e),
    };
    let signed_in = match session::signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let here = format!("{}?{query}", endpoints::AUTHORIZE);
    // A pushed request can be taken once only: sign in first.
    if params.request_uri.is_some() && signed_in.is_none() {
        return to_sign_in(&here);
    }
    let oauth = &state.services.oauth;
    let pending = match oauth.validate_authorize_request(&params).await {
        Ok(p) => p,
        Err(AuthorizeError::Display(e)) => return display_error(&state, &e),
        Err(AuthorizeError::Redirect { location, error }) => {
            tracing::debug!(error = %error, "authorization request refused");
            return see_other(&location);
        }
    };
    let Some(signed_in) = signed_in else {
        return to_sign_in(&here);
    };
    let user = signed_in.session.user.id;
    let check = match oauth.consent_needed(user, &pending.client_id, &pending.requested).await {
        Ok(c) => c,
        Err(e) => return respond::server_error(&state, &e),
    };
    if !check.needed() {
        // Everything asked is inside the active grant: no page.
        let vault = signed_in.session.user.vault_id;
        if let Err(e) = install_granted_schemas(&state.services, vault, &pending.requested).await {
            return respond::server_error(&state, &e);
        }
        return match oauth.approve(user, &pending.requested, &pending).await {
            Ok(response) => see_other(&response.location),
            Err(e) => respond::server_error(&state, &e),
        };
    }
    let app = match oauth.app(&pending.client_id).await {
        Ok(app) => app,
        Err(e) => return respond::server_error(&state, &e),
    };
    let (lines, existing) = consent_lines(&state, &pending.requested, &check).await;
    let view = app_view(&app, Some(&pending.redirect_uri));
    let redirect_uri = pending.redirect_uri.clone();
    let Some(request_id) = state.pending.put(user, pending) else {
        return error_page(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy",
            "Too many requests are waiting for an answer right now.",
            Some("Try again in a few minutes."),
            None,
        );
    };
    let page = ConsentPage {
        app: view,
        lines,
        existing,
        csrf_token: signed_in.session.csrf_token.clone(),
        request_id,
        form_action: endpoints::AUTHORIZE.into(),
    };
    let mut response = html(StatusCode::OK, state.pages.consent(&page));
    // The answer is a redirect to the app, and browsers check `form-action`
    // on the redirects after a form post too.
    if let Some(csp) = respond::csp_with_form_targets(&[redirect_uri]) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `POST /oauth/authorize`: the consent page's answer.
pub async fn decide(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (signed_in, form) = match session::signed_in_form(&state, &headers, &body, super::dashboard::PATH).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let user = signed_in.session.user.id;
    let Some(pending) = form.get(fields::REQUEST_ID).and_then(|id| state.pending.take(id, user)) else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This request has expired",
            "The app's request was already answered, or it waited too long.",
            Some("Go back to the app and start again."),
            Some(("/dashboard", "Go to your vault")),
        );
    };
    let oauth = &state.services.oauth;
    match form.get(fields::DECISION) {
        Some("allow") => {
            let check = match oauth.consent_needed(user, &pending.client_id, &pending.requested).await {
                Ok(c) => c,
                Err(e) => return respond::server_error(&state, &e),
            };
            let approved = approved_spec(&state, &form, &pending.requested, &check);
            let vault = signed_in.session.user.vault_id;
            if let Err(e) = install_granted_schemas(&state.services, vault, &approved).await {
                return respond::server_error(&state, &e);
            }
            match oauth.approve(user, &approved, &pending).await {
                Ok(response) => see_other(&response.location),
                Err(e) => respond::server_error(&state, &e),
            }
        }
        Some("deny") => match oauth.deny(&pending).await {
            Ok(location) => see_other(&location),
            Err(e) => respond::server_error(&state, &e),
        },
        _ => error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Choose Allow or Deny",
            "The form was sent without an answer, so nothing was shared.",
            Some("Go back to the app and start again."),
            None,
        ),
    }
}
