//! The dashboard: the apps the user allowed, what each may do in plain
//! words, when it was allowed and last used; "Change access" (untick lines
//! to narrow) and "Revoke access" (one click, then a confirmation).
//! Revoking stops the app's tokens at once and keeps every row it wrote.
//! Below the apps, the vault's access log: the latest requests, newest
//! first, in plain words, filterable by app (a GET form, `?app=`).

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::HashMap;

use coffer_consent_ui::{
    AccessLogRow, AppChoice, ConnectedApp, DashboardActions, DashboardPage, DeleteAccountPage, RevokeConfirmPage,
    TimeView, fields, homepage_domain,
};
use coffer_core::{AppId, GrantId};
use coffer_gateway::AccessEntry;
use coffer_oauth::{Error, Grant, GrantWithApp};
use serde::Deserialize;

use super::AppState;
use super::forms::FormPairs;
use super::lines::{described, ticked};
use super::respond::{self, error_page, html, see_other};
use super::session::{self, SignedIn, to_sign_in};

/// The dashboard.
pub const PATH: &str = "/dashboard";
/// "Change access" form.
pub const CHANGE_PATH: &str = "/dashboard/access";
/// "Revoke access" form and its confirmation.
pub const REVOKE_PATH: &str = "/dashboard/revoke";

/// "Delete my account": the page that asks for the password, and its form.
pub const DELETE_ACCOUNT_PATH: &str = "/dashboard/delete-account";

/// Access log entries the dashboard shows.
pub const ACCESS_LOG_ROWS: usize = 50;

/// Which change the dashboard confirms after a redirect, and which app the
/// access log is filtered by.
#[derive(Deserialize)]
pub struct NoticeQuery {
    revoked: Option<String>,
    changed: Option<String>,
    /// [`fields::FILTER_APP`]: an app id, empty for every app.
    app: Option<String>,
}

/// The domain the dashboard shows for an app: its homepage's, else its
/// first redirect URI's.
async fn app_domain(state: &AppState, g: &GrantWithApp) -> String {
    if let Some(home) = &g.app.homepage {
        return homepage_domain(home);
    }
    match state.services.oauth.app(g.app.client_id.as_str()).await {
        Ok(app) if !app.redirect_uris.is_empty() => homepage_domain(&app.redirect_uris[0]),
        _ => "no website given".into(),
    }
}

/// `GET /dashboard`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NoticeQuery>) -> Response {
    let signed_in = match session::signed_in(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(PATH),
        Err(response) => return response,
    };
    let user = &signed_in.session.user;
    let grants = match state.services.oauth.grants_for_user(user.id).await {
        Ok(g) => g,
        Err(e) => return respond::server_error(&state, &e),
    };
    let name_of = |id: &Option<String>| {
        let id = id.as_deref()?;
        grants
            .iter()
            .find(|g| g.grant.id.to_string() == id)
            .map(|g| g.app.name.clone())
    };
    let notice = if let Some(name) = name_of(&q.revoked) {
        Some(format!(
            "{name} can no longer use your data. The data it wrote stays in your vault."
        ))
    } else {
        name_of(&q.changed).map(|name| format!("Saved. {name} may now do only what is ticked."))
    };
    let mut apps = Vec::new();
    for g in grants.iter().filter(|g| g.grant.is_active()) {
        let lines = described(&state.services, &g.grant.spec).await;
        apps.push(ConnectedApp {
            grant_id: g.grant.id.to_string(),
            name: g.app.name.clone(),
            homepage_domain: app_domain(&state, g).await,
            granted_at: TimeView::from_utc(g.grant.created_at),
            last_access: g.grant.last_access_at.map(TimeView::from_utc),
            lines,
        });
    }
    // The log filter: one of the apps offered, else every app.
    let app_choices = app_choices(&grants);
    let filter_app = q
        .app
        .as_deref()
        .map(str::trim)
        .filter(|a| app_choices.iter().any(|c| c.value == *a))
        .map(AppId::new);
    let (access_log, access_log_unavailable) = match state
        .services
        .access_log
        .recent(user.vault_id, filter_app.as_ref(), ACCESS_LOG_ROWS)
        .await
    {
        Ok(entries) => (log_rows(&state, &grants, entries).await, false),
        Err(e) => {
            tracing::warn!(vault = %user.vault_id, error = %e, "reading the access log failed");
            (Vec::new(), true)
        }
    };
    let page = DashboardPage {
        user_email: user.email.clone(),
        apps,
        access_log,
        access_log_unavailable,
        access_log_dropped: state.services.access_log.dropped(user.vault_id),
        filter_app: filter_app.map(|a| a.0),
        app_choices,
        csrf_token: signed_in.session.csrf_token.clone(),
        actions: DashboardActions::default(),
        notice,
    };
    html(StatusCode::OK, state.pages.dashboard(&page))
}

/// The apps the access log can be filtered by: every app the user ever
/// allowed (a revoked app's past requests stay in the log), by name; two
/// apps of the same name also show their website.
fn app_choices(grants: &[GrantWithApp]) -> Vec<AppChoice> {
    let mut apps: Vec<&GrantWithApp> = Vec::new();
    for g in grants {
        if !apps.iter().any(|a| a.app.client_id == g.app.client_id) {
            apps.push(g);
        }
    }
    apps.iter()
        .map(|g| {
            let same_name = apps.iter().filter(|a| a.app.name == g.app.name).count() > 1;
            let label = match (&g.app.homepage, same_name) {
                (Some(home), true) => format!("{} ({})", g.app.name, homepage_domain(home)),
                (None, true) => format!("{} ({})", g.app.name, g.app.client_id),
                (_, false) => g.app.name.clone(),
            };
            AppChoice {
                value: g.app.client_id.to_string(),
                label,
            }
        })
        .collect()
}

/// The access log in plain words, each app by its name.
async fn log_rows(state: &AppState, grants: &[GrantWithApp], entries: Vec<AccessEntry>) -> Vec<AccessLogRow> {
    let mut names: HashMap<AppId, String> = grants
        .iter()
        .map(|g| (g.app.client_id.clone(), g.app.name.clone()))
        .collect();
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        if !names.contains_key(&entry.app) {
            let name = match state.services.oauth.app(entry.app.as_str()).await {
                Ok(app) => app.name,
                Err(_) => "An app no longer registered".to_owned(),
            };
            names.insert(entry.app.clone(), name);
        }
        let tables: Vec<String> = entry.tables.iter().map(|t| t.to_string()).collect();
        rows.push(AccessLogRow::describe(
            TimeView::from_utc(entry.at),
            names[&entry.app].clone(),
            &entry.operation,
            &tables,
            entry.rows,
            &entry.outcome,
        ));
    }
    rows
}

/// The signed-in user, the posted form and the grant it names, after the
/// CSRF check; or the response that refuses.
async fn form_grant(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SignedIn, FormPairs, Grant), Response> {
    let (signed_in, form) = session::signed_in_form(state, headers, body, PATH).await?;
    let not_found = || {
        error_page(
            state,
            StatusCode::NOT_FOUND,
            "App not found",
            "This app is not connected to your vault.",
            None,
            Some((PATH, "Back to your vault")),
        )
    };
    let Some(id) = form.get(fields::GRANT_ID).and_then(|id| id.parse::<GrantId>().ok()) else {
        return Err(not_found());
    };
    match state.services.oauth.grant(signed_in.session.user.id, id).await {
        Ok(grant) if grant.is_active() => Ok((signed_in, form, grant)),
        Ok(_) | Err(Error::NotFound(_)) => Err(not_found()),
        Err(e) => Err(respond::server_error(state, &e)),
    }
}

fn dashboard_with(key: &str, grant: &Grant) -> String {
    format!("{PATH}?{key}={}", grant.id)
}

/// The "Revoke access for …?" page.
async fn confirm_revoke(state: &AppState, signed_in: &SignedIn, grant: &Grant) -> Response {
    let app = match state.services.oauth.app(grant.app_id.as_str()).await {
        Ok(app) => app,
        Err(e) => return respond::server_error(state, &e),
    };
    let domain = match (&app.homepage, app.redirect_uris.first()) {
        (Some(home), _) => homepage_domain(home),
        (None, Some(uri)) => homepage_domain(uri),
        (None, None) => "no website given".into(),
    };
    let lines = described(&state.services, &grant.spec).await;
    let page = RevokeConfirmPage {
        grant_id: grant.id.to_string(),
        app_name: app.name,
        homepage_domain: domain,
        lines,
        csrf_token: signed_in.session.csrf_token.clone(),
        form_action: REVOKE_PATH.into(),
        cancel_href: PATH.into(),
    };
    html(StatusCode::OK, state.pages.revoke_confirm(&page))
}

/// `POST /dashboard/access`: narrows a grant to the lines still ticked.
/// Unticking every line asks to revoke instead.
pub async fn change_access(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (signed_in, form, grant) = match form_grant(&state, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let kept = ticked(&state.services.registry(), &form.all(fields::LINE)).intersect(&grant.spec);
    if kept.is_empty() {
        return confirm_revoke(&state, &signed_in, &grant).await;
    }
    if kept == grant.spec {
        return see_other(PATH);
    }
    match state
        .services
        .oauth
        .narrow_grant(signed_in.session.user.id, grant.id, &kept)
        .await
    {
        Ok(narrowed) => see_other(&dashboard_with("changed", &narrowed)),
        Err(e) => respond::server_error(&state, &e),
    }
}

/// `POST /dashboard/revoke`: without `confirm=yes` the confirmation page;
/// with it, revokes.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (signed_in, form, grant) = match form_grant(&state, &headers, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if form.get(fields::CONFIRM) != Some("yes") {
        return confirm_revoke(&state, &signed_in, &grant).await;
    }
    match state
        .services
        .oauth
        .revoke_grant(signed_in.session.user.id, grant.id)
        .await
    {
        Ok(revoked) => see_other(&dashboard_with("revoked", &revoked)),
        Err(e) => respond::server_error(&state, &e),
    }
}

/// The "Delete your account?" page for `signed_in`, with the names of the
/// apps that lose access.
async fn delete_account_view(state: &AppState, signed_in: &SignedIn) -> Result<DeleteAccountPage, Error> {
    let grants = state.services.oauth.grants_for_user(signed_in.session.user.id).await?;
    let mut apps: Vec<String> = grants
        .iter()
        .filter(|g| g.grant.is_active())
        .map(|g| g.app.name.clone())
        .collect();
    apps.sort();
    apps.dedup();
    Ok(DeleteAccountPage {
        user_email: signed_in.session.user.email.clone(),
        apps,
        error: None,
        throttled: None,
        csrf_token: signed_in.session.csrf_token.clone(),
        form_action: DELETE_ACCOUNT_PATH.into(),
        cancel_href: PATH.into(),
    })
}

/// `GET /dashboard/delete-account`: what deleting the account does, and
/// the password field that confirms it.
pub async fn delete_account_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = match session::signed_in(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(DELETE_ACCOUNT_PATH),
        Err(response) => return response,
    };
    match delete_account_view(&state, &signed_in).await {
        Ok(page) => html(StatusCode::OK, state.pages.delete_account(&page)),
        Err(e) => respond::server_error(&state, &e),
    }
}

/// `POST /dashboard/delete-account`: with `confirm=yes` and the account's
/// password (checked and throttled as at sign-in), deletes the account
/// (decision 0017: the vault key shredded, the account, its grants, tokens
/// and sessions removed, the vault's files and log purged) and goes to the
/// sign-in page with the session cookie cleared. Apps' tokens are refused
/// from then on, and their open change streams end at their next check.
pub async fn delete_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (signed_in, form) = match session::signed_in_form(&state, &headers, &body, DELETE_ACCOUNT_PATH).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let mut page = match delete_account_view(&state, &signed_in).await {
        Ok(page) => page,
        Err(e) => return respond::server_error(&state, &e),
    };
    if form.get(fields::CONFIRM) != Some("yes") {
        return html(StatusCode::OK, state.pages.delete_account(&page));
    }
    let user = signed_in.session.user.clone();
    let password = form.get(fields::PASSWORD).unwrap_or("");
    let throttled = |page: &mut DeleteAccountPage, secs: u64| {
        page.throttled = Some(format!(
            "Too many attempts. Try again in {} minutes.",
            secs.div_ceil(60).max(1)
        ));
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, state.pages.delete_account(page));
        respond::set_retry_after(&mut response, secs);
        response
    };
    if let Err(wait) = state.sign_in_limit.hit(&peer.ip().to_string()) {
        return throttled(&mut page, wait.as_secs());
    }
    match state.services.oauth.sign_in(&user.email, password, peer.ip()).await {
        Ok(checked) if checked.id == user.id => {}
        Ok(_) | Err(Error::InvalidCredentials) => {
            page.error = Some("That password is not right. Nothing was deleted.".into());
            return html(StatusCode::UNAUTHORIZED, state.pages.delete_account(&page));
        }
        Err(Error::Throttled { retry_after_secs }) => return throttled(&mut page, retry_after_secs),
        Err(e) => return respond::server_error(&state, &e),
    }
    // Its own task: a client that goes away, or the request time limit,
    // does not stop an erasure half way.
    let services = state.services.clone();
    let deleted = tokio::spawn(async move { crate::accounts::delete_account(&services, &user).await }).await;
    match deleted {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return respond::server_error(&state, &format!("{e:#}")),
        Err(e) => return respond::server_error(&state, &e),
    }
    let mut response = see_other("/sign-in?deleted=1");
    response.headers_mut().append(
        axum::http::header::SET_COOKIE,
        session::set_cookie(&state, session::session_cookie(&state), "", Some(0)),
    );
    response
}
