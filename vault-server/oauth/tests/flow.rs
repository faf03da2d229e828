//! Authorization code flow, tokens, grants, PAR, registration and
//! introspection: the happy path and the security checklist.

mod common;

use chrono::TimeDelta;
use coffer_auth::{Action, DeniedKind, GrantStatus};
use coffer_core::schema::TableName;
use coffer_oauth::{
    App, AuthorizeError, AuthorizeParams, ClientCredentials, ClientMetadata, ErrorCode, Grant, NewApp, TokenResponse,
    User,
};
use common::*;

/// What the app asks for in the happy path; the user unticks "read notes".
const ASKED: &str = "contacts.people:read+create notes.notes:read";
const KEPT: &str = "contacts.people:read+create";

/// The user is asked for [`ASKED`] and unticks "read notes": the redirect
/// location and the PKCE verifier.
async fn approve_unticked(env: &Env, user: &User, app: &App) -> (String, String) {
    let (pending, verifier) = env.pending(app, ASKED).await;
    let mut approved = pending.requested.clone();
    assert!(approved.remove(&"notes.notes".parse::<TableName>().unwrap(), Action::Read));
    let response = env.server.approve(user.id, &approved, &pending).await.unwrap();
    (response.location, verifier)
}

/// [`approve_unticked`], then the code redeemed through the token endpoint.
async fn unticked_tokens(env: &Env, user: &User, app: &App) -> TokenResponse {
    let (location, verifier) = approve_unticked(env, user, app).await;
    let params = code_grant(query_param(&location, "code").unwrap(), Some(verifier));
    env.server.token(&public_client(app), &params, None).await.unwrap()
}

#[tokio::test]
async fn first_request_needs_consent_for_everything() {
    let (env, user, app) = with_user_and_app().await;
    let (pending, _) = env.pending(&app, ASKED).await;
    assert_eq!(pending.scope(), ASKED);
    assert_eq!(pending.app_name, "Notes Pro");
    let consent = env.consent(&user, &app, &pending).await;
    assert!(consent.needed());
    assert!(consent.existing.is_none());
    assert_eq!(consent.new, pending.requested);
}

#[tokio::test]
async fn approval_redirects_with_code_state_and_iss() {
    let (env, user, app) = with_user_and_app().await;
    let (location, _) = approve_unticked(&env, &user, &app).await;
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&location, "iss").as_deref(), Some(ISSUER));
    assert!(query_param(&location, "code").is_some());
}

#[tokio::test]
async fn tokens_carry_only_the_approved_rights() {
    let (env, user, app) = with_user_and_app().await;
    let tokens = unticked_tokens(&env, &user, &app).await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.scope, KEPT);
    assert!(tokens.expires_in > 0 && tokens.expires_in <= 15 * 60);
    let access = tokens.access_token.as_str();
    env.assert_allows(&user, access, "contacts.people", Action::Read);
    env.assert_allows(&user, access, "contacts.people", Action::Create);
    let denied = env.denied(&user, access, "contacts.people", Action::Delete);
    assert!(matches!(denied, DeniedKind::MissingRight { .. }));
    let denied = env.denied(&user, access, "notes.notes", Action::Read);
    assert!(matches!(denied, DeniedKind::MissingRight { .. }));
}

#[tokio::test]
async fn the_grant_is_listed_on_the_dashboard() {
    let (env, user, app) = with_user_and_app().await;
    unticked_tokens(&env, &user, &app).await;
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].app.name, "Notes Pro");
    assert_eq!(grants[0].grant.scope(), KEPT);
    assert_eq!(grants[0].grant.version, 1);
    env.server.touch_grant(grants[0].grant.id).await.unwrap();
    let g = env.server.grant(user.id, grants[0].grant.id).await.unwrap();
    assert!(g.last_access_at.is_some());
}

#[tokio::test]
async fn refresh_rotates() {
    let (env, user, app) = with_user_and_app().await;
    let client = public_client(&app);
    let tokens = unticked_tokens(&env, &user, &app).await;
    let refresh = tokens.refresh_token.clone().unwrap();
    env.advance(TimeDelta::minutes(20));
    assert!(
        env.check(&user, &tokens.access_token, "contacts.people", Action::Read)
            .is_err()
    );
    let rotated = env.refresh(&client, &refresh).await.unwrap();
    let new_refresh = rotated.refresh_token.clone().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(rotated.scope, KEPT);
    env.assert_allows(&user, &rotated.access_token, "contacts.people", Action::Read);
    // And again with the new one.
    let again = env.refresh(&client, &new_refresh).await.unwrap();
    env.assert_allows(&user, &again.access_token, "contacts.people", Action::Create);
}

#[tokio::test]
async fn consent_is_asked_only_for_lines_beyond_the_grant() {
    let (env, user, app) = with_user_and_app().await;
    unticked_tokens(&env, &user, &app).await;
    // A repeat request inside the grant needs no consent.
    let (pending, _) = env.pending(&app, "contacts.people:read").await;
    assert!(!env.consent(&user, &app, &pending).await.needed());
    // Asking for more shows only the new line.
    let (pending, _) = env.pending(&app, "contacts.people:read notes.notes:read").await;
    let consent = env.consent(&user, &app, &pending).await;
    assert_eq!(consent.new.to_scope_string(), "notes.notes:read");
    // Approving it widens the grant and bumps its version.
    env.approve_all(&user, &pending).await;
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants[0].grant.version, 2);
    assert_eq!(grants[0].grant.scope(), ASKED);
}

/// Why a public app's request for `scope`, changed by `change`, is refused.
async fn refusal(scope: &str, change: impl FnOnce(&mut AuthorizeParams)) -> AuthorizeError {
    let (env, app) = with_app().await;
    let mut params = authorize_params(&app, scope, &pkce().1);
    change(&mut params);
    env.authorize_err(&params).await
}

#[tokio::test]
async fn missing_pkce_challenge_redirects_with_invalid_request() {
    let err = refusal("notes.notes:read", |p| {
        p.code_challenge = None;
        p.code_challenge_method = None;
    })
    .await;
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
    let location = err.redirect_location().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));
}

#[tokio::test]
async fn plain_pkce_is_refused() {
    let err = refusal("notes.notes:read", |p| p.code_challenge_method = Some("plain".into())).await;
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
    assert!(err.error().description().contains("plain"));
}

#[tokio::test]
async fn pkce_method_without_challenge_is_refused() {
    let err = refusal("notes.notes:read", |p| p.code_challenge = None).await;
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn malformed_pkce_challenge_is_refused() {
    let err = refusal("notes.notes:read", |p| p.code_challenge = Some("too-short".into())).await;
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn wrong_code_verifier_is_refused() {
    let (env, user, app) = with_user_and_app().await;
    let (code, _verifier) = env.code(&user, &app, "notes.notes:read").await;
    let (other_verifier, _) = pkce();
    let refused = env.exchange(&public_client(&app), &code, &other_verifier, None).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn missing_code_verifier_is_refused() {
    let (env, user, app) = with_user_and_app().await;
    // Through the endpoint dispatcher.
    let (code, _) = env.code(&user, &app, "notes.notes:read").await;
    let params = code_grant(code, None);
    let refused = env.server.token(&public_client(&app), &params, None).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidRequest);
}

/// An authorization request for `app` to return to `redirect_uri`.
fn redirect_to(app: &App, redirect_uri: &str) -> AuthorizeParams {
    AuthorizeParams {
        redirect_uri: Some(redirect_uri.into()),
        ..authorize_params(app, "notes.notes:read", &pkce().1)
    }
}

#[tokio::test]
async fn redirect_mismatch_never_redirects() {
    let (env, app) = with_app().await;
    for bad in [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://evil.example/callback",
        "http://app.example/callback",
        "https://APP.example/callback",
    ] {
        let err = env.authorize_err(&redirect_to(&app, bad)).await;
        assert!(matches!(err, AuthorizeError::Display(_)), "{bad} must not redirect");
        assert!(err.redirect_location().is_none());
    }
    // Even with other errors in the request, a bad redirect URI wins.
    let params = AuthorizeParams {
        scope: Some("no_such.table:read".into()),
        response_type: Some("token".into()),
        ..redirect_to(&app, "https://evil.example/")
    };
    assert!(matches!(env.authorize_err(&params).await, AuthorizeError::Display(_)));
}

#[tokio::test]
async fn loopback_redirect_matches_any_port_but_not_another_path() {
    let env = env().await;
    // Registered without a port, any port matches; path must match.
    let cli = env
        .server
        .register_app(NewApp::public(
            "CLI",
            vec!["http://127.0.0.1/cb".into(), "http://[::1]:8080/cb".into()],
        ))
        .await
        .unwrap()
        .app;
    for ok in [
        "http://127.0.0.1:53123/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:1234/cb",
    ] {
        let pending = env
            .server
            .validate_authorize_request(&redirect_to(&cli, ok))
            .await
            .unwrap();
        assert_eq!(pending.redirect_uri, ok);
    }
    for bad in [
        "http://127.0.0.1:53123/other",
        "http://localhost:53123/cb",
        "https://127.0.0.1:53123/cb",
    ] {
        let err = env.authorize_err(&redirect_to(&cli, bad)).await;
        assert!(matches!(err, AuthorizeError::Display(_)), "{bad}");
    }
}

#[tokio::test]
async fn token_request_must_repeat_the_redirect_uri() {
    let (env, user, app) = with_user_and_app().await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let (client, other) = (public_client(&app), Some("https://app.example/other"));
    let refused = env.server.exchange_code(&client, &code, other, &verifier, None).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn unknown_client_never_redirects() {
    let env = env().await;
    let params = AuthorizeParams {
        response_type: Some("code".into()),
        client_id: Some("01hzzzzzzzzzzzzzzzzzzzzzzz".into()),
        redirect_uri: Some(REDIRECT.into()),
        scope: Some("notes.notes:read".into()),
        code_challenge: Some(pkce().1),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeParams::default()
    };
    let err = env.authorize_err(&params).await;
    assert!(matches!(err, AuthorizeError::Display(_)));
    assert_eq!(err.error().code(), ErrorCode::InvalidClient);
    let params = AuthorizeParams {
        client_id: None,
        ..params
    };
    assert!(matches!(env.authorize_err(&params).await, AuthorizeError::Display(_)));
}

#[tokio::test]
async fn unsupported_response_type_redirects_with_state_and_iss() {
    let err = refusal("contacts.people:read", |p| p.response_type = Some("token".into())).await;
    let location = err.redirect_location().unwrap();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(query_param(location, "iss").as_deref(), Some(ISSUER));
}

#[tokio::test]
async fn unknown_scope_redirects_with_invalid_scope() {
    let err = refusal("nosuch.table:read", |_| {}).await;
    assert_eq!(
        query_param(err.redirect_location().unwrap(), "error").as_deref(),
        Some("invalid_scope")
    );
}

#[tokio::test]
async fn bad_authorization_details_are_refused() {
    let err = refusal("", |p| {
        p.scope = None;
        p.authorization_details =
            Some(r#"[{"type":"coffer_table","table":"contacts.people","actions":["read"],"columns":["nope"]}]"#.into());
    })
    .await;
    assert_eq!(err.error().code(), ErrorCode::InvalidAuthorizationDetails);
}

/// A request for reading notes with `authorization_details` asking for
/// display names of the user's own contacts.
async fn pending_with_details(env: &Env, app: &App) -> coffer_oauth::PendingAuthorization {
    let mut params = authorize_params(app, "notes.notes:read", &pkce().1);
    params.authorization_details = Some(
        r#"[{"type":"coffer_table","table":"contacts.people","actions":["read"],"columns":["display_name"],"rows":"own"}]"#
            .into(),
    );
    env.server.validate_authorize_request(&params).await.unwrap()
}

#[tokio::test]
async fn authorization_details_add_to_the_scope() {
    let (env, app) = with_app().await;
    let pending = pending_with_details(&env, &app).await;
    assert_eq!(
        pending.scope(),
        "contacts.people(display_name):read:own notes.notes:read"
    );
}

#[tokio::test]
async fn denial_redirects_with_access_denied() {
    let (env, app) = with_app().await;
    let pending = pending_with_details(&env, &app).await;
    let location = env.server.deny(&pending).await.unwrap();
    assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
}

#[tokio::test]
async fn approving_nothing_is_a_denial() {
    let (env, user, app) = with_user_and_app().await;
    let pending = pending_with_details(&env, &app).await;
    let response = env
        .server
        .approve(user.id, &coffer_auth::GrantSpec::new(), &pending)
        .await
        .unwrap();
    assert_eq!(
        query_param(&response.location, "error").as_deref(),
        Some("access_denied")
    );
    assert!(response.approved.is_empty());
}

#[tokio::test]
async fn code_reuse_is_refused_and_revokes_its_tokens() {
    let (env, user, app) = with_user_and_app().await;
    let client = public_client(&app);
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let tokens = env.exchange(&client, &code, &verifier, None).await.unwrap();
    env.assert_allows(&user, &tokens.access_token, "notes.notes", Action::Read);

    let reused = env.exchange(&client, &code, &verifier, None).await;
    assert_eq!(reused.unwrap_err().code(), ErrorCode::InvalidGrant);
    // The refresh token and the access token issued from the code are dead.
    let refused = env.refresh(&client, tokens.refresh_token.as_deref().unwrap()).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
    let denied = env.denied(&user, &tokens.access_token, "notes.notes", Action::Read);
    assert_eq!(denied, DeniedKind::Revoked);
}

#[tokio::test]
async fn another_client_cannot_redeem_a_code_nor_burn_it() {
    let (env, user, app) = with_user_and_app().await;
    let other = env.public_app().await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let refused = env.exchange(&public_client(&other), &code, &verifier, None).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
    env.exchange(&public_client(&app), &code, &verifier, None)
        .await
        .unwrap();
}

/// Tokens for reading tasks: the env, the user, the app, its credentials and
/// the refresh token.
async fn task_tokens() -> (Env, User, App, ClientCredentials, String) {
    let (env, user, app) = with_user_and_app().await;
    let r1 = env.tokens(&user, &app, "tasks.items:read").await.refresh_token.unwrap();
    let client = public_client(&app);
    (env, user, app, client, r1)
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let (env, user, app, client, r1) = task_tokens().await;
    let second = env.refresh(&client, &r1).await.unwrap();
    let r2 = second.refresh_token.unwrap();

    // An attacker replays r1: refused, and the whole family dies.
    let err = env.refresh(&client, &r1).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    let err = env.refresh(&client, &r2).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(
        env.denied(&user, &second.access_token, "tasks.items", Action::Read),
        DeniedKind::Revoked
    );
    // Other families of the same grant are unaffected.
    let other = env.tokens(&user, &app, "tasks.items:read").await;
    env.refresh(&client, other.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_redemptions_of_one_refresh_token_let_one_win_and_kill_the_family() {
    let (env, _, _, client, r1) = task_tokens().await;
    let (a, b) = tokio::join!(env.refresh(&client, &r1), env.refresh(&client, &r1));
    let winner = match (a, b) {
        (Ok(t), Err(e)) | (Err(e), Ok(t)) => {
            assert_eq!(e.code(), ErrorCode::InvalidGrant);
            t
        }
        other => panic!("exactly one redemption must win: {other:?}"),
    };
    // The loser looked like a replay, so the winner's tokens are revoked too.
    let refused = env.refresh(&client, winner.refresh_token.as_deref().unwrap()).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_let_one_win() {
    let (env, user, app) = with_user_and_app().await;
    let client = public_client(&app);
    let (code, verifier) = env.code(&user, &app, "tasks.items:read").await;
    let (a, b) = tokio::join!(
        env.exchange(&client, &code, &verifier, None),
        env.exchange(&client, &code, &verifier, None)
    );
    assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
}

#[tokio::test]
async fn refresh_can_narrow_scope_but_not_widen() {
    let (env, user, app) = with_user_and_app().await;
    let client = public_client(&app);
    let first = env.tokens(&user, &app, "tasks.items:read+create").await;
    let narrow = |refresh: Option<String>, scope: &'static str| {
        let (server, client) = (env.server.clone(), client.clone());
        async move { server.refresh(&client, &refresh.unwrap(), Some(scope), None).await }
    };
    let narrowed = narrow(first.refresh_token, "tasks.items:read").await.unwrap();
    assert_eq!(narrowed.scope, "tasks.items:read");
    let err = narrow(narrowed.refresh_token, "tasks.items:delete").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn expired_code_is_refused() {
    let (env, user, app) = with_user_and_app().await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    env.advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    let refused = env.exchange(&public_client(&app), &code, &verifier, None).await;
    let err = refused.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert!(err.description().contains("expired"));
}

#[tokio::test]
async fn confidential_client_needs_its_secret() {
    let (env, user, _) = with_user_and_app().await;
    let registered = env
        .server
        .register_app(NewApp::confidential("Server App", vec![REDIRECT.into()]))
        .await
        .unwrap();
    let secret = registered.client_secret.clone().unwrap();
    assert!(!format!("{registered:?}").contains(&secret));
    let app = registered.app;
    let id = app.client_id.as_str();

    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    for creds in [
        ClientCredentials::public(id),
        ClientCredentials::with_secret(id, "wrong"),
        ClientCredentials::with_secret(id, format!("{secret}x")),
    ] {
        let err = env.exchange(&creds, &code, &verifier, None).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidClient);
        assert_eq!(err.http_status(), 401);
    }
    // Failed authentication did not burn the code.
    let tokens = env
        .exchange(&ClientCredentials::with_secret(id, &secret), &code, &verifier, None)
        .await
        .unwrap();
    env.assert_allows(&user, &tokens.access_token, "notes.notes", Action::Read);
}

#[tokio::test]
async fn client_secret_by_http_basic() {
    let env = env().await;
    let (app, client) = env.confidential_app().await;
    let id = app.client_id.as_str();
    let secret = client.client_secret.as_deref().unwrap();
    // HTTP Basic, form-urlencoded.
    use base64::Engine;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let creds = ClientCredentials::from_request(Some(&header), None, None).unwrap();
    assert_eq!(creds, client);
    env.server.authenticate_client(&creds).await.unwrap();
    assert_eq!(
        ClientCredentials::from_request(Some(&header), None, Some("also"))
            .unwrap_err()
            .code(),
        ErrorCode::InvalidClient
    );
}

#[tokio::test]
async fn public_client_sending_a_secret_is_refused() {
    let (env, public) = with_app().await;
    let refused = env
        .server
        .authenticate_client(&ClientCredentials::with_secret(public.client_id.as_str(), "x"))
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidClient);
}

/// Tokens for reading contacts, then the user revokes their grant.
async fn revoked_grant() -> (Env, User, App, TokenResponse, Grant) {
    let (env, user, app) = with_user_and_app().await;
    let tokens = env.tokens(&user, &app, "contacts.people:read").await;
    env.assert_allows(&user, &tokens.access_token, "contacts.people", Action::Read);
    let grant = env.first_grant(&user).await;
    let revoked = env.server.revoke_grant(user.id, grant.id).await.unwrap();
    (env, user, app, tokens, revoked)
}

#[tokio::test]
async fn revoked_grant_fails_on_the_next_check() {
    let (env, user, app, tokens, revoked) = revoked_grant().await;
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(revoked.version, 2);
    assert_eq!(
        env.denied(&user, &tokens.access_token, "contacts.people", Action::Read),
        DeniedKind::Revoked
    );
    let refused = env
        .refresh(&public_client(&app), tokens.refresh_token.as_deref().unwrap())
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn revoking_again_is_a_no_op_and_another_user_cannot() {
    let (env, user, _, _, grant) = revoked_grant().await;
    env.server.revoke_grant(user.id, grant.id).await.unwrap();
    let mallory = env.user("m@example.org").await;
    assert!(matches!(
        env.server.revoke_grant(mallory.id, grant.id).await.unwrap_err(),
        coffer_oauth::Error::NotFound(_)
    ));
}

#[tokio::test]
async fn a_fresh_revocation_view_loaded_from_the_database_agrees() {
    let (env, _, _, _, grant) = revoked_grant().await;
    let fresh = std::sync::Arc::new(coffer_auth::RevocationView::new());
    let server2 = coffer_oauth::OAuthServer::new(
        env.pool.clone(),
        std::sync::Arc::new(coffer_auth::RootKeyPair::generate()),
        fresh.clone(),
        std::sync::Arc::new(|_: &str| None),
        coffer_oauth::OAuthConfig::new(ISSUER),
    )
    .unwrap();
    assert_eq!(server2.load_revocation_view().await.unwrap(), 1);
    assert_eq!(
        fresh.grant(grant.id).map(|s| (s.version, s.status)),
        Some((2, GrantStatus::Revoked))
    );
}

#[tokio::test]
async fn consenting_again_after_revocation_makes_a_new_grant() {
    let (env, user, app, _, _) = revoked_grant().await;
    let again = env.tokens(&user, &app, "contacts.people:read").await;
    env.assert_allows(&user, &again.access_token, "contacts.people", Action::Read);
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants[0].grant.is_active() && !grants[1].grant.is_active());
}

#[tokio::test]
async fn narrowing_refuses_widening_and_nothing() {
    let (env, user, app) = with_user_and_app().await;
    env.tokens(&user, &app, "contacts.people:read+create").await;
    let grant = env.first_grant(&user).await;
    for spec in [
        env.spec("contacts.people:read+create+delete"),
        coffer_auth::GrantSpec::new(),
    ] {
        let err = env.server.narrow_grant(user.id, grant.id, &spec).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidScope, "{}", spec.to_scope_string());
    }
}

/// Tokens for reading and creating contacts; then the user narrows the
/// grant to reading.
async fn narrowed() -> (Env, User, App, TokenResponse, Grant) {
    let (env, user, app) = with_user_and_app().await;
    let tokens = env.tokens(&user, &app, "contacts.people:read+create").await;
    let grant = env.first_grant(&user).await;
    let narrowed = env
        .server
        .narrow_grant(user.id, grant.id, &env.spec("contacts.people:read"))
        .await
        .unwrap();
    (env, user, app, tokens, narrowed)
}

#[tokio::test]
async fn narrowing_bumps_the_version_and_old_tokens_fail() {
    let (env, user, _, tokens, narrowed) = narrowed().await;
    assert_eq!(narrowed.version, 2);
    let denied = env.denied(&user, &tokens.access_token, "contacts.people", Action::Read);
    assert_eq!(denied, DeniedKind::GrantChanged { current_version: 2 });
}

#[tokio::test]
async fn refresh_after_narrowing_mints_for_the_narrowed_grant() {
    let (env, user, app, tokens, _) = narrowed().await;
    let fresh = env
        .refresh(&public_client(&app), tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(fresh.scope, "contacts.people:read");
    env.assert_allows(&user, &fresh.access_token, "contacts.people", Action::Read);
    assert!(matches!(
        env.denied(&user, &fresh.access_token, "contacts.people", Action::Create),
        DeniedKind::MissingRight { .. }
    ));
}

/// A confidential app's pushed request for reading notes: the env, the app,
/// its credentials, the request and its PKCE verifier.
async fn par() -> (Env, App, ClientCredentials, AuthorizeParams, String) {
    let env = env().await;
    let (app, client) = env.confidential_app().await;
    let (verifier, challenge) = pkce();
    let params = pushed_params(&app, "notes.notes:read", &challenge);
    (env, app, client, params, verifier)
}

#[tokio::test]
async fn par_request_uri_is_single_use() {
    let (env, app, client, params, verifier) = par().await;
    let user = env.user("a@example.org").await;
    let pushed = env
        .server
        .push_authorization_request(&client, params, None)
        .await
        .unwrap();
    assert!(pushed.request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed.expires_in, 60);
    let by_reference = by_reference(app.client_id.as_str(), pushed.request_uri);
    let pending = env.server.validate_authorize_request(&by_reference).await.unwrap();
    assert_eq!(pending.scope(), "notes.notes:read");
    assert_eq!(pending.state.as_deref(), Some("xyz"));
    // Second use refused, without redirect.
    let err = env.authorize_err(&by_reference).await;
    assert!(matches!(err, AuthorizeError::Display(_)));
    assert_eq!(err.error().code(), ErrorCode::InvalidRequestUri);
    // The code works.
    let code = env.approve_all(&user, &pending).await;
    env.exchange(&client, &code, &verifier, None).await.unwrap();
}

#[tokio::test]
async fn par_request_uri_expires_after_60_seconds() {
    let (env, app, client, params, _) = par().await;
    let request_uri = env.push(&client, &params, None).await;
    env.advance(TimeDelta::seconds(61));
    let by_reference = by_reference(app.client_id.as_str(), request_uri);
    assert_eq!(
        env.authorize_err(&by_reference).await.error().code(),
        ErrorCode::InvalidRequestUri
    );
}

#[tokio::test]
async fn another_client_cannot_use_the_request_uri() {
    let (env, _, client, params, _) = par().await;
    let request_uri = env.push(&client, &params, None).await;
    let other = env.public_app().await;
    let stolen = by_reference(other.client_id.as_str(), request_uri);
    assert!(matches!(env.authorize_err(&stolen).await, AuthorizeError::Display(_)));
}

#[tokio::test]
async fn par_validates_like_the_authorization_endpoint_but_answers_directly() {
    let (env, app, client, params, _) = par().await;
    let plain = AuthorizeParams {
        code_challenge_method: Some("plain".into()),
        ..params.clone()
    };
    let evil = AuthorizeParams {
        redirect_uri: Some("https://evil.example/".into()),
        ..params.clone()
    };
    let wrong_secret = ClientCredentials::with_secret(app.client_id.as_str(), "nope");
    for (what, creds, params, code) in [
        ("plain PKCE", &client, plain, ErrorCode::InvalidRequest),
        ("another redirect URI", &client, evil, ErrorCode::InvalidRequest),
        ("a wrong secret", &wrong_secret, params, ErrorCode::InvalidClient),
    ] {
        let err = env
            .server
            .push_authorization_request(creds, params, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{what}");
    }
}

/// Dynamic registration of a public client by the name `name`.
fn registration(name: &str) -> ClientMetadata {
    ClientMetadata {
        redirect_uris: vec![REDIRECT.into()],
        token_endpoint_auth_method: Some("none".into()),
        client_name: Some(name.into()),
        ..ClientMetadata::default()
    }
}

/// Dynamic registration of the public client "Agent" with `uris`.
fn agent(uris: &[&str]) -> ClientMetadata {
    ClientMetadata {
        redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
        ..registration("Agent")
    }
}

#[tokio::test]
async fn registration_accepts_https_and_loopback_redirect_uris() {
    let env = env().await;
    let ok = env
        .server
        .register_client(agent(&[
            "https://agent.example/cb",
            "http://127.0.0.1/cb",
            "http://[::1]/cb",
        ]))
        .await
        .unwrap();
    assert!(ok.client_secret.is_none());
    let json = serde_json::to_value(&ok).unwrap();
    assert_eq!(json["token_endpoint_auth_method"], "none");
    assert_eq!(
        json["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(json["response_types"], serde_json::json!(["code"]));
    assert!(json.get("client_secret").is_none());
    let app = env.server.app(&ok.client_id).await.unwrap();
    assert_eq!(app.kind(), coffer_oauth::ClientKind::Public);
}

#[tokio::test]
async fn registration_refuses_redirect_uris() {
    let env = env().await;
    for bad in [
        "http://agent.example/cb",
        "http://localhost:8080/cb",
        "https://agent.example/cb#frag",
        "https://user:pw@agent.example/cb",
        "com.example.app:/cb",
        "javascript:alert(1)",
        "/relative",
    ] {
        let err = env.server.register_client(agent(&[bad])).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRedirectUri, "{bad}");
    }
    // The code grant needs a redirect URI.
    assert_eq!(
        env.server.register_client(agent(&[])).await.unwrap_err().code(),
        ErrorCode::InvalidRedirectUri
    );
}

#[tokio::test]
async fn registration_refuses_metadata() {
    let env = env().await;
    type Change = fn(&mut ClientMetadata);
    let refused: [(&str, Change); 6] = [
        ("private_key_jwt", |m| {
            m.token_endpoint_auth_method = Some("private_key_jwt".into())
        }),
        ("implicit grant", |m| m.grant_types = Some(vec!["implicit".into()])),
        ("token response", |m| m.response_types = Some(vec!["token".into()])),
        ("no name", |m| m.client_name = None),
        ("http logo", |m| {
            m.logo_uri = Some("http://agent.example/logo.png".into())
        }),
        ("scope not in lower case", |m| {
            m.scope = Some("Contacts.People:READ".into())
        }),
    ];
    for (what, change) in refused {
        let mut m = agent(&["https://agent.example/cb"]);
        change(&mut m);
        assert_eq!(
            env.server.register_client(m).await.unwrap_err().code(),
            ErrorCode::InvalidClientMetadata,
            "{what}"
        );
    }
}

#[tokio::test]
async fn registered_clients_are_confidential_by_default_with_a_secret_shown_once() {
    let env = env().await;
    let mut m = agent(&["https://agent.example/cb"]);
    m.token_endpoint_auth_method = None;
    let conf = env.server.register_client(m).await.unwrap();
    let secret = conf.client_secret.clone().unwrap();
    assert_eq!(serde_json::to_value(&conf).unwrap()["client_secret_expires_at"], 0);
    env.server
        .authenticate_client(&ClientCredentials::with_secret(&conf.client_id, secret))
        .await
        .unwrap();
}

#[tokio::test]
async fn device_only_clients_need_no_redirect_uri() {
    let env = env().await;
    let mut m = agent(&[]);
    m.grant_types = Some(vec![
        "urn:ietf:params:oauth:grant-type:device_code".into(),
        "refresh_token".into(),
    ]);
    m.response_types = Some(vec![]);
    env.server.register_client(m).await.unwrap();
}

/// A confidential app's tokens for reading events: the env, the user, the
/// app's credentials and the tokens.
async fn confidential_tokens() -> (Env, User, ClientCredentials, TokenResponse) {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let (app, client) = env.confidential_app().await;
    let (code, verifier) = env.code(&user, &app, "calendar.events:read").await;
    let tokens = env.exchange(&client, &code, &verifier, None).await.unwrap();
    (env, user, client, tokens)
}

#[tokio::test]
async fn introspection_of_active_tokens() {
    let (env, user, client, tokens) = confidential_tokens().await;
    let info = env.server.introspect(&client, &tokens.access_token).await.unwrap();
    assert!(info.active);
    assert_eq!(info.scope.as_deref(), Some("calendar.events:read"));
    assert_eq!(info.client_id.as_deref(), Some(client.client_id.as_str()));
    assert_eq!(info.sub, Some(user.id.to_string()));
    assert_eq!(info.token_type.as_deref(), Some("Bearer"));
    assert_eq!(info.vault_id, Some(user.vault_id.to_string()));
    assert!(info.exp.unwrap() > info.iat.unwrap());
    let info = env
        .server
        .introspect(&client, tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert!(info.active);
    assert_eq!(info.token_type.as_deref(), Some("refresh_token"));
}

#[tokio::test]
async fn introspection_tells_another_client_nothing_and_garbage_is_inactive() {
    let (env, _, client, tokens) = confidential_tokens().await;
    let other = public_client(&env.public_app().await);
    assert!(!env.active(&other, &tokens.access_token).await);
    assert!(!env.active(&client, "not-a-token").await);
    assert_eq!(
        serde_json::to_value(env.server.introspect(&client, "x").await.unwrap()).unwrap(),
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn another_clients_revocation_request_is_ignored() {
    let (env, _, client, tokens) = confidential_tokens().await;
    let other = public_client(&env.public_app().await);
    env.server.revoke(&other, &tokens.access_token).await.unwrap();
    assert!(env.active(&client, &tokens.access_token).await);
}

#[tokio::test]
async fn revoking_the_access_token() {
    // RFC 7009.
    let (env, user, client, tokens) = confidential_tokens().await;
    env.server.revoke(&client, &tokens.access_token).await.unwrap();
    assert!(!env.active(&client, &tokens.access_token).await);
    assert_eq!(
        env.denied(&user, &tokens.access_token, "calendar.events", Action::Read),
        DeniedKind::Revoked
    );
    assert!(env.active(&client, tokens.refresh_token.as_deref().unwrap()).await);
}

#[tokio::test]
async fn revoking_the_refresh_token_kills_the_family() {
    let (env, _, client, tokens) = confidential_tokens().await;
    let refresh = tokens.refresh_token.unwrap();
    let rotated = env.refresh(&client, &refresh).await.unwrap();
    assert!(!env.active(&client, &refresh).await, "a used refresh token is inactive");
    let rotated_refresh = rotated.refresh_token.as_deref().unwrap();
    env.server.revoke(&client, rotated_refresh).await.unwrap();
    assert!(!env.active(&client, rotated_refresh).await);
    assert!(!env.active(&client, &rotated.access_token).await);
}

#[tokio::test]
async fn unknown_tokens_revoke_fine() {
    let (env, _, client, _) = confidential_tokens().await;
    env.server.revoke(&client, "unknown").await.unwrap();
}

#[tokio::test]
async fn an_expired_access_token_is_inactive() {
    let (env, _, client, tokens) = confidential_tokens().await;
    env.advance(TimeDelta::minutes(16));
    assert!(!env.active(&client, &tokens.access_token).await);
}

#[tokio::test]
async fn metadata_lists_endpoints_and_the_root_key() {
    let env = env().await;
    let doc = env.server.authorization_server_metadata();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["authorization_endpoint"], format!("{ISSUER}/oauth/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(
        doc["pushed_authorization_request_endpoint"],
        format!("{ISSUER}/oauth/par")
    );
    assert_eq!(doc["revocation_endpoint"], format!("{ISSUER}/oauth/revoke"));
    assert_eq!(doc["introspection_endpoint"], format!("{ISSUER}/oauth/introspect"));
    assert_eq!(doc["registration_endpoint"], format!("{ISSUER}/oauth/register"));
    assert_eq!(doc["device_authorization_endpoint"], format!("{ISSUER}/oauth/device"));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(
        doc["authorization_details_types_supported"],
        serde_json::json!(["coffer_table"])
    );
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA"])
    );
    assert_eq!(
        doc["coffer_biscuit_public_key"],
        env.server.authorizer().root_public_key().to_hex()
    );
    assert!(doc.get("scopes_supported").is_none());
    let e = coffer_oauth::Error::invalid_grant("a \"quoted\" thing");
    assert_eq!(
        e.to_json(),
        serde_json::json!({"error": "invalid_grant", "error_description": "a 'quoted' thing"})
    );
}

#[tokio::test]
async fn revoking_an_attenuated_token_revokes_its_parent_until_the_parents_expiry() {
    let (env, user, app) = with_user_and_app().await;
    let parent = env.tokens(&user, &app, "notes.notes:read").await.access_token;
    // The holder hands out a copy that lives one minute; the parent lives ten.
    let child = coffer_auth::attenuate(
        &parent,
        &coffer_auth::Attenuation::new().expires_at(env.server.now() + TimeDelta::minutes(1)),
    )
    .unwrap();
    env.assert_allows(&user, &child, "notes.notes", Action::Read);

    env.server.revoke(&public_client(&app), &child).await.unwrap();
    for token in [&parent, &child] {
        let denied = env.check(&user, token, "notes.notes", Action::Read).unwrap_err();
        assert_eq!(denied.kind, DeniedKind::Revoked, "{denied:?}");
    }

    // Past the child's expiry the server prunes expired revocations (every
    // minute); the parent, still within its own lifetime, stays revoked.
    env.advance(TimeDelta::minutes(2));
    env.server.revocation_view().prune(env.server.now());
    let denied = env.check(&user, &parent, "notes.notes", Action::Read).unwrap_err();
    assert_eq!(denied.kind, DeniedKind::Revoked, "{denied:?}");
    // After the parent's own expiry the entry may go: nothing it covers lives.
    env.advance(TimeDelta::minutes(9));
    assert_eq!(env.server.revocation_view().prune(env.server.now()), 1);
}

#[tokio::test]
async fn registration_refuses_invisible_and_bidi_characters_in_the_name() {
    let env = env().await;
    for (what, name) in [
        ("right-to-left override", "Notes \u{202E}orP"),
        ("zero-width space", "No\u{200B}tes"),
        ("first strong isolate", "Notes \u{2068}Pro\u{2069}"),
        ("left-to-right isolate", "\u{2066}Notes"),
        ("byte order mark", "\u{FEFF}Notes"),
        ("soft hyphen", "No\u{AD}tes"),
        ("control character", "Notes\u{7}"),
        ("line separator", "Notes\u{2028}Pro"),
        ("private use", "Notes \u{E000}"),
    ] {
        let err = env.server.register_client(registration(name)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidClientMetadata, "{what}");
        assert!(
            err.description().contains("client_name"),
            "{what}: {}",
            err.description()
        );
        assert!(err.description().contains("U+"), "{what}: {}", err.description());
    }
}

#[tokio::test]
async fn registration_refuses_a_bidi_override_in_the_client_uri() {
    let env = env().await;
    let mut uri = registration("Notes Pro");
    uri.client_uri = Some("https://notes.example/\u{202E}lmth.xedni".into());
    let err = env.server.register_client(uri).await.unwrap_err();
    assert!(err.description().contains("client_uri"), "{}", err.description());
}

#[tokio::test]
async fn registration_accepts_letters_of_any_script_marks_and_emoji() {
    let env = env().await;
    for name in ["Notizen für Ärzte", "ノート", "Ma\u{301}rkdown", "Notes 📝", "دفتر"] {
        env.server.register_client(registration(name)).await.unwrap();
    }
}

#[tokio::test]
async fn operators_registrations_refuse_bidi_characters_too() {
    let env = env().await;
    let refused = env
        .server
        .register_app(NewApp::public("Notes\u{202E}", vec![REDIRECT.into()]))
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidClientMetadata);
}

#[tokio::test]
async fn open_registration_is_capped() {
    let env = env_with(|c| c.max_open_registrations = 2).await;
    assert!(env.server.authorization_server_metadata()["registration_endpoint"].is_string());
    env.server.register_client(registration("One")).await.unwrap();
    env.server.register_client(registration("Two")).await.unwrap();
    let err = env.server.register_client(registration("Three")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AccessDenied);
    assert_eq!(err.http_status(), 403);
    assert!(
        err.description().contains("no more app registrations"),
        "{}",
        err.description()
    );
}

#[tokio::test]
async fn open_registration_can_be_turned_off() {
    let env = env().await;
    let closed = env.server.clone().with_open_registration(false);
    let err = closed.register_client(registration("Four")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AccessDenied);
    assert!(
        err.description().contains("does not accept app registrations"),
        "{}",
        err.description()
    );
    assert!(
        closed
            .authorization_server_metadata()
            .get("registration_endpoint")
            .is_none()
    );
    // Operators still register apps.
    closed
        .register_app(NewApp::public("Operator's app", vec![REDIRECT.into()]))
        .await
        .unwrap();
}
