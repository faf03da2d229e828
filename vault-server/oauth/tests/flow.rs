//! Authorization code flow, tokens, grants, PAR, registration and
//! introspection: the happy path and the security checklist.

mod common;

use chrono::TimeDelta;
use coffer_auth::{Action, DeniedKind, GrantStatus};
use coffer_core::schema::TableName;
use coffer_oauth::{
    AuthorizeError, AuthorizeParams, ClientCredentials, ClientMetadata, ErrorCode, NewApp, TokenParams,
};
use common::*;

fn code_of(e: &coffer_oauth::Error) -> ErrorCode {
    e.code()
}

#[tokio::test]
async fn happy_path_with_unticked_line_refresh_and_rotation() {
    let env = env().await;
    let user = env.user("Ada@Example.org").await;
    let app = env.public_app().await;

    let (verifier, challenge) = pkce();
    let params = authorize_params(&app, "contacts.people:read+create notes.notes:read", &challenge);
    let pending = env.server.validate_authorize_request(&params).await.unwrap();
    assert_eq!(pending.scope(), "contacts.people:read+create notes.notes:read");
    assert_eq!(pending.app_name, "Notes Pro");

    // First time: everything needs consent.
    let consent = env
        .server
        .consent_needed(user.id, app.client_id.as_str(), &pending.requested)
        .await
        .unwrap();
    assert!(consent.needed());
    assert!(consent.existing.is_none());
    assert_eq!(consent.new, pending.requested);

    // The user unticks "read notes".
    let mut approved = pending.requested.clone();
    assert!(approved.remove(&"notes.notes".parse::<TableName>().unwrap(), Action::Read));
    let response = env.server.approve(user.id, &approved, &pending).await.unwrap();
    assert!(response.location.starts_with(REDIRECT));
    assert_eq!(query_param(&response.location, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&response.location, "iss").as_deref(), Some(ISSUER));
    let code = query_param(&response.location, "code").unwrap();

    let client = ClientCredentials::public(app.client_id.as_str());
    let params = TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(verifier),
        ..TokenParams::default()
    };
    let tokens = env.server.token(&client, &params, None).await.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.scope, "contacts.people:read+create");
    assert!(tokens.expires_in > 0 && tokens.expires_in <= 15 * 60);
    let refresh = tokens.refresh_token.clone().unwrap();

    // The gateway's authorizer sees only the approved rights.
    env.check(&user, &tokens.access_token, "contacts.people", Action::Read)
        .unwrap();
    env.check(&user, &tokens.access_token, "contacts.people", Action::Create)
        .unwrap();
    let denied = env
        .check(&user, &tokens.access_token, "contacts.people", Action::Delete)
        .unwrap_err();
    assert!(matches!(denied.kind, DeniedKind::MissingRight { .. }));
    let denied = env
        .check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap_err();
    assert!(matches!(denied.kind, DeniedKind::MissingRight { .. }));

    // The grant is listed on the dashboard.
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].app.name, "Notes Pro");
    assert_eq!(grants[0].grant.scope(), "contacts.people:read+create");
    assert_eq!(grants[0].grant.version, 1);
    env.server.touch_grant(grants[0].grant.id).await.unwrap();
    let g = env.server.grant(user.id, grants[0].grant.id).await.unwrap();
    assert!(g.last_access_at.is_some());

    // Refresh rotates: a new refresh token and a working access token.
    env.advance(TimeDelta::minutes(20));
    assert!(
        env.check(&user, &tokens.access_token, "contacts.people", Action::Read)
            .is_err()
    );
    let rotated = env.server.refresh(&client, &refresh, None, None).await.unwrap();
    let new_refresh = rotated.refresh_token.clone().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(rotated.scope, "contacts.people:read+create");
    env.check(&user, &rotated.access_token, "contacts.people", Action::Read)
        .unwrap();
    // And again with the new one.
    let again = env.server.refresh(&client, &new_refresh, None, None).await.unwrap();
    env.check(&user, &again.access_token, "contacts.people", Action::Create)
        .unwrap();

    // A repeat request inside the grant needs no consent.
    let (pending, _) = env.pending(&app, "contacts.people:read").await;
    let consent = env
        .server
        .consent_needed(user.id, app.client_id.as_str(), &pending.requested)
        .await
        .unwrap();
    assert!(!consent.needed());
    // Asking for more shows only the new line.
    let (pending, _) = env.pending(&app, "contacts.people:read notes.notes:read").await;
    let consent = env
        .server
        .consent_needed(user.id, app.client_id.as_str(), &pending.requested)
        .await
        .unwrap();
    assert_eq!(consent.new.to_scope_string(), "notes.notes:read");
    // Approving it widens the grant and bumps its version.
    env.server.approve(user.id, &pending.requested, &pending).await.unwrap();
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants[0].grant.version, 2);
    assert_eq!(grants[0].grant.scope(), "contacts.people:read+create notes.notes:read");
}

#[tokio::test]
async fn pkce_missing_plain_and_wrong_verifier_are_refused() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let (_, challenge) = pkce();

    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.code_challenge = None;
    params.code_challenge_method = None;
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
    let location = err.redirect_location().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));

    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.code_challenge_method = Some("plain".into());
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    assert_eq!(err.error().code(), ErrorCode::InvalidRequest);
    assert!(err.error().description().contains("plain"));

    // Method given but no challenge, and a malformed challenge.
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.code_challenge = None;
    assert_eq!(
        env.server
            .validate_authorize_request(&params)
            .await
            .unwrap_err()
            .error()
            .code(),
        ErrorCode::InvalidRequest
    );
    let params = authorize_params(&app, "notes.notes:read", "too-short");
    assert_eq!(
        env.server
            .validate_authorize_request(&params)
            .await
            .unwrap_err()
            .error()
            .code(),
        ErrorCode::InvalidRequest
    );

    // Wrong verifier at the token endpoint.
    let (code, _verifier) = env.code(&user, &app, "notes.notes:read").await;
    let (other_verifier, _) = pkce();
    let client = ClientCredentials::public(app.client_id.as_str());
    let err = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &other_verifier, None)
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), ErrorCode::InvalidGrant);
    // Missing verifier through the endpoint dispatcher.
    let (code, _) = env.code(&user, &app, "notes.notes:read").await;
    let params = TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(REDIRECT.into()),
        ..TokenParams::default()
    };
    assert_eq!(
        env.server.token(&client, &params, None).await.unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn redirect_mismatch_never_redirects_and_loopback_port_is_free() {
    let env = env().await;
    let app = env.public_app().await;
    let (_, challenge) = pkce();

    for bad in [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://evil.example/callback",
        "http://app.example/callback",
        "https://APP.example/callback",
    ] {
        let mut params = authorize_params(&app, "notes.notes:read", &challenge);
        params.redirect_uri = Some(bad.into());
        let err = env.server.validate_authorize_request(&params).await.unwrap_err();
        assert!(matches!(err, AuthorizeError::Display(_)), "{bad} must not redirect");
        assert!(err.redirect_location().is_none());
    }
    // Even with other errors in the request, a bad redirect URI wins.
    let mut params = authorize_params(&app, "no_such.table:read", &challenge);
    params.redirect_uri = Some("https://evil.example/".into());
    params.response_type = Some("token".into());
    assert!(matches!(
        env.server.validate_authorize_request(&params).await.unwrap_err(),
        AuthorizeError::Display(_)
    ));

    // Loopback: registered without a port, any port matches; path must match.
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
        let mut params = authorize_params(&cli, "notes.notes:read", &challenge);
        params.redirect_uri = Some(ok.into());
        let pending = env.server.validate_authorize_request(&params).await.unwrap();
        assert_eq!(pending.redirect_uri, ok);
    }
    for bad in [
        "http://127.0.0.1:53123/other",
        "http://localhost:53123/cb",
        "https://127.0.0.1:53123/cb",
    ] {
        let mut params = authorize_params(&cli, "notes.notes:read", &challenge);
        params.redirect_uri = Some(bad.into());
        assert!(matches!(
            env.server.validate_authorize_request(&params).await.unwrap_err(),
            AuthorizeError::Display(_)
        ));
    }

    // The token request must repeat the redirect URI exactly.
    let user = env.user("b@example.org").await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let err = env
        .server
        .exchange_code(
            &ClientCredentials::public(app.client_id.as_str()),
            &code,
            Some("https://app.example/other"),
            &verifier,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn unknown_client_never_redirects() {
    let env = env().await;
    let (_, challenge) = pkce();
    let params = AuthorizeParams {
        response_type: Some("code".into()),
        client_id: Some("01hzzzzzzzzzzzzzzzzzzzzzzz".into()),
        redirect_uri: Some(REDIRECT.into()),
        scope: Some("notes.notes:read".into()),
        code_challenge: Some(challenge),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeParams::default()
    };
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    assert!(matches!(err, AuthorizeError::Display(_)));
    assert_eq!(err.error().code(), ErrorCode::InvalidClient);
    let params = AuthorizeParams {
        client_id: None,
        ..params
    };
    assert!(matches!(
        env.server.validate_authorize_request(&params).await.unwrap_err(),
        AuthorizeError::Display(_)
    ));
}

#[tokio::test]
async fn redirectable_errors_carry_state_and_iss() {
    let env = env().await;
    let app = env.public_app().await;
    let (_, challenge) = pkce();
    let mut params = authorize_params(&app, "contacts.people:read", &challenge);
    params.response_type = Some("token".into());
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    let location = err.redirect_location().unwrap();
    assert!(location.starts_with(REDIRECT));
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(query_param(location, "iss").as_deref(), Some(ISSUER));

    let params = authorize_params(&app, "nosuch.table:read", &challenge);
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    assert_eq!(
        query_param(err.redirect_location().unwrap(), "error").as_deref(),
        Some("invalid_scope")
    );

    let mut params = authorize_params(&app, "", &challenge);
    params.scope = None;
    params.authorization_details =
        Some(r#"[{"type":"coffer_table","table":"contacts.people","actions":["read"],"columns":["nope"]}]"#.into());
    let err = env.server.validate_authorize_request(&params).await.unwrap_err();
    assert_eq!(err.error().code(), ErrorCode::InvalidAuthorizationDetails);

    // authorization_details as an addition to scope.
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.authorization_details = Some(
        r#"[{"type":"coffer_table","table":"contacts.people","actions":["read"],"columns":["display_name"],"rows":"own"}]"#
            .into(),
    );
    let pending = env.server.validate_authorize_request(&params).await.unwrap();
    assert_eq!(
        pending.scope(),
        "contacts.people(display_name):read:own notes.notes:read"
    );

    // Denial redirects with access_denied.
    let location = env.server.deny(&pending).await.unwrap();
    assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    // So does approving nothing.
    let user = env.user("c@example.org").await;
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
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let tokens = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap();
    env.check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap();

    let err = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    // The refresh token and the access token issued from the code are dead.
    let err = env
        .server
        .refresh(&client, tokens.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    let denied = env
        .check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap_err();
    assert_eq!(denied.kind, DeniedKind::Revoked);

    // Another client cannot redeem someone else's code (and does not burn it).
    let other = env.public_app().await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let err = env
        .server
        .exchange_code(
            &ClientCredentials::public(other.client_id.as_str()),
            &code,
            Some(REDIRECT),
            &verifier,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    env.server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let first = env.tokens(&user, &app, "tasks.items:read").await;
    let r1 = first.refresh_token.unwrap();
    let second = env.server.refresh(&client, &r1, None, None).await.unwrap();
    let r2 = second.refresh_token.unwrap();

    // An attacker replays r1: refused, and the whole family dies.
    let err = env.server.refresh(&client, &r1, None, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    let err = env.server.refresh(&client, &r2, None, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert_eq!(
        env.check(&user, &second.access_token, "tasks.items", Action::Read)
            .unwrap_err()
            .kind,
        DeniedKind::Revoked
    );
    // Other families of the same grant are unaffected.
    let other = env.tokens(&user, &app, "tasks.items:read").await;
    env.server
        .refresh(&client, other.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_redemptions_of_one_refresh_token_let_one_win_and_kill_the_family() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let first = env.tokens(&user, &app, "tasks.items:read").await;
    let r1 = first.refresh_token.unwrap();
    let (a, b) = tokio::join!(
        env.server.refresh(&client, &r1, None, None),
        env.server.refresh(&client, &r1, None, None)
    );
    let winner = match (a, b) {
        (Ok(t), Err(e)) | (Err(e), Ok(t)) => {
            assert_eq!(e.code(), ErrorCode::InvalidGrant);
            t
        }
        other => panic!("exactly one redemption must win: {other:?}"),
    };
    // The loser looked like a replay, so the winner's tokens are revoked too.
    let err = env
        .server
        .refresh(&client, winner.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);

    // Same for a code.
    let (code, verifier) = env.code(&user, &app, "tasks.items:read").await;
    let (a, b) = tokio::join!(
        env.server
            .exchange_code(&client, &code, Some(REDIRECT), &verifier, None),
        env.server
            .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
    );
    assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
}

#[tokio::test]
async fn refresh_can_narrow_scope_but_not_widen() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let first = env.tokens(&user, &app, "tasks.items:read+create").await;
    let narrowed = env
        .server
        .refresh(
            &client,
            first.refresh_token.as_deref().unwrap(),
            Some("tasks.items:read"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(narrowed.scope, "tasks.items:read");
    let err = env
        .server
        .refresh(
            &client,
            narrowed.refresh_token.as_deref().unwrap(),
            Some("tasks.items:delete"),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn expired_code_is_refused() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    env.advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    let err = env
        .server
        .exchange_code(
            &ClientCredentials::public(app.client_id.as_str()),
            &code,
            Some(REDIRECT),
            &verifier,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    assert!(err.description().contains("expired"));
}

#[tokio::test]
async fn confidential_client_needs_its_secret() {
    let env = env().await;
    let user = env.user("a@example.org").await;
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
        let err = env
            .server
            .exchange_code(&creds, &code, Some(REDIRECT), &verifier, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidClient);
        assert_eq!(err.http_status(), 401);
    }
    // Failed authentication did not burn the code.
    let tokens = env
        .server
        .exchange_code(
            &ClientCredentials::with_secret(id, &secret),
            &code,
            Some(REDIRECT),
            &verifier,
            None,
        )
        .await
        .unwrap();
    env.check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap();

    // HTTP Basic, form-urlencoded.
    use base64::Engine;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let creds = ClientCredentials::from_request(Some(&header), None, None).unwrap();
    assert_eq!(creds, ClientCredentials::with_secret(id, &secret));
    env.server.authenticate_client(&creds).await.unwrap();
    assert_eq!(
        ClientCredentials::from_request(Some(&header), None, Some("also"))
            .unwrap_err()
            .code(),
        ErrorCode::InvalidClient
    );
    // A public client sending a secret is refused.
    let public = env.public_app().await;
    let err = env
        .server
        .authenticate_client(&ClientCredentials::with_secret(public.client_id.as_str(), "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn revoked_grant_fails_on_the_next_check() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let tokens = env.tokens(&user, &app, "contacts.people:read").await;
    env.check(&user, &tokens.access_token, "contacts.people", Action::Read)
        .unwrap();

    let grant = env.server.grants_for_user(user.id).await.unwrap().remove(0).grant;
    let revoked = env.server.revoke_grant(user.id, grant.id).await.unwrap();
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(revoked.version, 2);
    assert_eq!(
        env.check(&user, &tokens.access_token, "contacts.people", Action::Read)
            .unwrap_err()
            .kind,
        DeniedKind::Revoked
    );
    let err = env
        .server
        .refresh(&client, tokens.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidGrant);
    // Revoking again is a no-op; another user cannot touch it.
    env.server.revoke_grant(user.id, grant.id).await.unwrap();
    let mallory = env.user("m@example.org").await;
    assert!(matches!(
        env.server.revoke_grant(mallory.id, grant.id).await.unwrap_err(),
        coffer_oauth::Error::NotFound(_)
    ));

    // A fresh view loaded from the database agrees.
    let fresh = std::sync::Arc::new(coffer_auth::RevocationView::new());
    let env2_view = fresh.clone();
    let server2 = coffer_oauth::OAuthServer::new(
        env.pool.clone(),
        std::sync::Arc::new(coffer_auth::RootKeyPair::generate()),
        env2_view,
        std::sync::Arc::new(|_: &str| None),
        coffer_oauth::OAuthConfig::new(ISSUER),
    )
    .unwrap();
    assert_eq!(server2.load_revocation_view().await.unwrap(), 1);
    assert_eq!(
        fresh.grant(grant.id).map(|s| (s.version, s.status)),
        Some((2, GrantStatus::Revoked))
    );

    // Consenting again makes a new grant; the old one stays revoked.
    let again = env.tokens(&user, &app, "contacts.people:read").await;
    env.check(&user, &again.access_token, "contacts.people", Action::Read)
        .unwrap();
    let grants = env.server.grants_for_user(user.id).await.unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants[0].grant.is_active() && !grants[1].grant.is_active());
}

#[tokio::test]
async fn narrowing_bumps_the_version_and_old_tokens_fail() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let tokens = env.tokens(&user, &app, "contacts.people:read+create").await;
    let grant = env.server.grants_for_user(user.id).await.unwrap().remove(0).grant;

    // Widening through narrow is refused; so is narrowing to nothing.
    let wider = env.spec("contacts.people:read+create+delete");
    assert_eq!(
        env.server
            .narrow_grant(user.id, grant.id, &wider)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidScope
    );
    assert_eq!(
        env.server
            .narrow_grant(user.id, grant.id, &coffer_auth::GrantSpec::new())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidScope
    );

    let narrowed = env
        .server
        .narrow_grant(user.id, grant.id, &env.spec("contacts.people:read"))
        .await
        .unwrap();
    assert_eq!(narrowed.version, 2);
    let denied = env
        .check(&user, &tokens.access_token, "contacts.people", Action::Read)
        .unwrap_err();
    assert_eq!(denied.kind, DeniedKind::GrantChanged { current_version: 2 });

    // The refresh token still works and mints for the narrowed grant.
    let fresh = env
        .server
        .refresh(&client, tokens.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap();
    assert_eq!(fresh.scope, "contacts.people:read");
    env.check(&user, &fresh.access_token, "contacts.people", Action::Read)
        .unwrap();
    assert!(matches!(
        env.check(&user, &fresh.access_token, "contacts.people", Action::Create)
            .unwrap_err()
            .kind,
        DeniedKind::MissingRight { .. }
    ));
}

#[tokio::test]
async fn par_request_uri_is_single_use_and_expires() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let registered = env
        .server
        .register_app(NewApp::confidential("Server App", vec![REDIRECT.into()]))
        .await
        .unwrap();
    let app = registered.app;
    let client = ClientCredentials::with_secret(app.client_id.as_str(), registered.client_secret.unwrap());
    let (verifier, challenge) = pkce();
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.client_id = None;

    let pushed = env
        .server
        .push_authorization_request(&client, params.clone(), None)
        .await
        .unwrap();
    assert!(pushed.request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed.expires_in, 60);
    let by_reference = AuthorizeParams {
        client_id: Some(app.client_id.to_string()),
        request_uri: Some(pushed.request_uri.clone()),
        ..AuthorizeParams::default()
    };
    let pending = env.server.validate_authorize_request(&by_reference).await.unwrap();
    assert_eq!(pending.scope(), "notes.notes:read");
    assert_eq!(pending.state.as_deref(), Some("xyz"));
    // Second use refused, without redirect.
    let err = env.server.validate_authorize_request(&by_reference).await.unwrap_err();
    assert!(matches!(err, AuthorizeError::Display(_)));
    assert_eq!(err.error().code(), ErrorCode::InvalidRequestUri);
    // The code works.
    let response = env.server.approve(user.id, &pending.requested, &pending).await.unwrap();
    let code = query_param(&response.location, "code").unwrap();
    env.server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap();

    // Expiry after 60 s.
    let pushed = env
        .server
        .push_authorization_request(&client, params.clone(), None)
        .await
        .unwrap();
    env.advance(TimeDelta::seconds(61));
    let by_reference = AuthorizeParams {
        client_id: Some(app.client_id.to_string()),
        request_uri: Some(pushed.request_uri),
        ..AuthorizeParams::default()
    };
    assert_eq!(
        env.server
            .validate_authorize_request(&by_reference)
            .await
            .unwrap_err()
            .error()
            .code(),
        ErrorCode::InvalidRequestUri
    );

    // Another client cannot use the request_uri.
    let pushed = env
        .server
        .push_authorization_request(&client, params.clone(), None)
        .await
        .unwrap();
    let other = env.public_app().await;
    let stolen = AuthorizeParams {
        client_id: Some(other.client_id.to_string()),
        request_uri: Some(pushed.request_uri),
        ..AuthorizeParams::default()
    };
    assert!(matches!(
        env.server.validate_authorize_request(&stolen).await.unwrap_err(),
        AuthorizeError::Display(_)
    ));

    // PAR validates like the authorization endpoint, but answers directly.
    let mut bad = params.clone();
    bad.code_challenge_method = Some("plain".into());
    assert_eq!(
        env.server
            .push_authorization_request(&client, bad, None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest
    );
    let mut bad = params.clone();
    bad.redirect_uri = Some("https://evil.example/".into());
    assert_eq!(
        env.server
            .push_authorization_request(&client, bad, None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        env.server
            .push_authorization_request(
                &ClientCredentials::with_secret(app.client_id.as_str(), "nope"),
                params,
                None
            )
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidClient
    );
}

#[tokio::test]
async fn dynamic_registration_is_validated() {
    let env = env().await;
    let meta = |uris: &[&str]| ClientMetadata {
        redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
        client_name: Some("Agent".into()),
        token_endpoint_auth_method: Some("none".into()),
        ..ClientMetadata::default()
    };
    // Accepted: https, loopback IP literals.
    let ok = env
        .server
        .register_client(meta(&[
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

    // Redirect URIs refused.
    for bad in [
        "http://agent.example/cb",
        "http://localhost:8080/cb",
        "https://agent.example/cb#frag",
        "https://user:pw@agent.example/cb",
        "com.example.app:/cb",
        "javascript:alert(1)",
        "/relative",
    ] {
        let err = env.server.register_client(meta(&[bad])).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRedirectUri, "{bad}");
    }
    // The code grant needs a redirect URI.
    assert_eq!(
        env.server.register_client(meta(&[])).await.unwrap_err().code(),
        ErrorCode::InvalidRedirectUri
    );
    // Metadata refused.
    let mut m = meta(&["https://agent.example/cb"]);
    m.token_endpoint_auth_method = Some("private_key_jwt".into());
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );
    let mut m = meta(&["https://agent.example/cb"]);
    m.grant_types = Some(vec!["implicit".into()]);
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );
    let mut m = meta(&["https://agent.example/cb"]);
    m.response_types = Some(vec!["token".into()]);
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );
    let mut m = meta(&["https://agent.example/cb"]);
    m.client_name = None;
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );
    let mut m = meta(&["https://agent.example/cb"]);
    m.logo_uri = Some("http://agent.example/logo.png".into());
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );
    let mut m = meta(&["https://agent.example/cb"]);
    m.scope = Some("Contacts.People:READ".into());
    assert_eq!(
        env.server.register_client(m).await.unwrap_err().code(),
        ErrorCode::InvalidClientMetadata
    );

    // Confidential by default, with a secret shown once; device-only clients need no redirect URI.
    let mut m = meta(&["https://agent.example/cb"]);
    m.token_endpoint_auth_method = None;
    let conf = env.server.register_client(m).await.unwrap();
    let secret = conf.client_secret.clone().unwrap();
    assert_eq!(serde_json::to_value(&conf).unwrap()["client_secret_expires_at"], 0);
    env.server
        .authenticate_client(&ClientCredentials::with_secret(&conf.client_id, secret))
        .await
        .unwrap();
    let mut m = meta(&[]);
    m.grant_types = Some(vec![
        "urn:ietf:params:oauth:grant-type:device_code".into(),
        "refresh_token".into(),
    ]);
    m.response_types = Some(vec![]);
    env.server.register_client(m).await.unwrap();
}

#[tokio::test]
async fn introspection_of_active_and_revoked_tokens() {
    let env = env().await;
    let user = env.user("a@example.org").await;
    let registered = env
        .server
        .register_app(NewApp::confidential("Server App", vec![REDIRECT.into()]))
        .await
        .unwrap();
    let app = registered.app;
    let client = ClientCredentials::with_secret(app.client_id.as_str(), registered.client_secret.unwrap());
    let (code, verifier) = env.code(&user, &app, "calendar.events:read").await;
    let tokens = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap();
    let refresh = tokens.refresh_token.clone().unwrap();

    let info = env.server.introspect(&client, &tokens.access_token).await.unwrap();
    assert!(info.active);
    assert_eq!(info.scope.as_deref(), Some("calendar.events:read"));
    assert_eq!(info.client_id.as_deref(), Some(app.client_id.as_str()));
    assert_eq!(info.sub, Some(user.id.to_string()));
    assert_eq!(info.token_type.as_deref(), Some("Bearer"));
    assert_eq!(info.vault_id, Some(user.vault_id.to_string()));
    assert!(info.exp.unwrap() > info.iat.unwrap());
    let info = env.server.introspect(&client, &refresh).await.unwrap();
    assert!(info.active);
    assert_eq!(info.token_type.as_deref(), Some("refresh_token"));

    // Another client learns nothing; garbage is inactive.
    let other = env.public_app().await;
    let other_client = ClientCredentials::public(other.client_id.as_str());
    assert!(
        !env.server
            .introspect(&other_client, &tokens.access_token)
            .await
            .unwrap()
            .active
    );
    assert!(!env.server.introspect(&client, "not-a-token").await.unwrap().active);
    assert_eq!(
        serde_json::to_value(env.server.introspect(&client, "x").await.unwrap()).unwrap(),
        serde_json::json!({"active": false})
    );
    // Another client's revocation request is ignored.
    env.server.revoke(&other_client, &tokens.access_token).await.unwrap();
    assert!(
        env.server
            .introspect(&client, &tokens.access_token)
            .await
            .unwrap()
            .active
    );

    // RFC 7009: revoking the access token.
    env.server.revoke(&client, &tokens.access_token).await.unwrap();
    assert!(
        !env.server
            .introspect(&client, &tokens.access_token)
            .await
            .unwrap()
            .active
    );
    assert_eq!(
        env.check(&user, &tokens.access_token, "calendar.events", Action::Read)
            .unwrap_err()
            .kind,
        DeniedKind::Revoked
    );
    assert!(env.server.introspect(&client, &refresh).await.unwrap().active);
    // Revoking the refresh token kills the family.
    let rotated = env.server.refresh(&client, &refresh, None, None).await.unwrap();
    assert!(
        !env.server.introspect(&client, &refresh).await.unwrap().active,
        "a used refresh token is inactive"
    );
    env.server
        .revoke(&client, rotated.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        !env.server
            .introspect(&client, rotated.refresh_token.as_deref().unwrap())
            .await
            .unwrap()
            .active
    );
    assert!(
        !env.server
            .introspect(&client, &rotated.access_token)
            .await
            .unwrap()
            .active
    );
    // Unknown tokens revoke fine.
    env.server.revoke(&client, "unknown").await.unwrap();

    // Expired access token.
    let (code, verifier) = env.code(&user, &app, "calendar.events:read").await;
    let tokens = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap();
    env.advance(TimeDelta::minutes(16));
    assert!(
        !env.server
            .introspect(&client, &tokens.access_token)
            .await
            .unwrap()
            .active
    );
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
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let app = env.public_app().await;
    let parent = env.tokens(&user, &app, "notes.notes:read").await.access_token;
    // The holder hands out a copy that lives one minute; the parent lives ten.
    let child = coffer_auth::attenuate(
        &parent,
        &coffer_auth::Attenuation::new().expires_at(env.server.now() + TimeDelta::minutes(1)),
    )
    .unwrap();
    env.check(&user, &child, "notes.notes", Action::Read).unwrap();

    let client = ClientCredentials::public(app.client_id.as_str());
    env.server.revoke(&client, &child).await.unwrap();
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

fn registration(name: &str) -> ClientMetadata {
    ClientMetadata {
        redirect_uris: vec![REDIRECT.into()],
        token_endpoint_auth_method: Some("none".into()),
        client_name: Some(name.into()),
        ..ClientMetadata::default()
    }
}

#[tokio::test]
async fn registration_refuses_invisible_and_bidi_characters() {
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
    let mut uri = registration("Notes Pro");
    uri.client_uri = Some("https://notes.example/\u{202E}lmth.xedni".into());
    let err = env.server.register_client(uri).await.unwrap_err();
    assert!(err.description().contains("client_uri"), "{}", err.description());
    // Letters of any script, marks and emoji are fine.
    for name in ["Notizen für Ärzte", "ノート", "Ma\u{301}rkdown", "Notes 📝", "دفتر"] {
        env.server.register_client(registration(name)).await.unwrap();
    }
    // Operators' registrations follow the same rule.
    let err = env
        .server
        .register_app(NewApp::public("Notes\u{202E}", vec![REDIRECT.into()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidClientMetadata);
}

#[tokio::test]
async fn open_registration_can_be_turned_off_and_is_capped() {
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
