//! A real OAuth client (the `oauth2` crate) against the running server:
//! authorize with PKCE S256 → sign up → consent with one line unticked →
//! code → token → the access token allows what was granted and nothing else
//! → refresh, with rotation (a used refresh token is refused and revokes the
//! family).

use std::str::FromStr;
use std::sync::Arc;

use crate::common::*;
use coffer_auth::{Action, Authorizer, DeniedKind, GrantStatus, Request, RevocationView, RootPublicKey};
use coffer_core::schema::TableName;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::StatusCode;

/// The app's redirect URI: a loopback address nobody listens on (the test
/// reads the `Location` header instead of following it).
const REDIRECT: &str = "http://127.0.0.1:9/callback";

#[tokio::test]
async fn oauth2_crate_completes_authorize_consent_token_refresh_with_pkce() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);

    // Discover the endpoints and the root public key (RFC 8414).
    let browser = server.browser();
    let meta: serde_json::Value = browser
        .client
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(meta["issuer"], server.base.as_str());
    assert_eq!(meta["code_challenge_methods_supported"], serde_json::json!(["S256"]));

    let oauth = BasicClient::new(ClientId::new(client_id.clone()))
        .set_auth_uri(AuthUrl::new(meta["authorization_endpoint"].as_str().unwrap().into()).unwrap())
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, state) = oauth
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("contacts.people:read+create".into()))
        .add_scope(Scope::new("notes.notes:read".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The user is not signed in: the server asks them to, keeping the request.
    let first = browser.get(authorize_url.as_str()).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let sign_in = first.location().unwrap().to_owned();
    assert!(sign_in.starts_with("/sign-in?next="), "{sign_in}");
    let next = query_param(&server.url(&sign_in), "next").unwrap();
    assert!(next.starts_with("/oauth/authorize?"), "{next}");

    // They create an account instead, and land on the consent page.
    let consent = browser.sign_up("ada@example.org", Some(&next)).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(
        consent.h1().contains("Notes Pro wants to use your data"),
        "{}",
        consent.h1()
    );
    let lines = consent.lines();
    assert_eq!(lines, ["contacts.people:read+create", "notes.notes:read"]);

    // Untick "notes.notes:read" and allow.
    let answer = allow(&browser, &consent, &[&lines[0]]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let location = answer.location().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(location, "state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(query_param(location, "iss").as_deref(), Some(server.base.as_str()));
    let code = query_param(location, "code").unwrap();

    // Exchange the code with the oauth2 crate (PKCE verifier).
    let http = client();
    let tokens = oauth
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let granted: Vec<&str> = tokens.scopes().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(granted, ["contacts.people:read+create"]);
    assert!(tokens.expires_in().unwrap().as_secs() <= 15 * 60);
    let refresh = tokens.refresh_token().unwrap().clone();

    // The access token, checked as the query gateway will: a granted right
    // passes, the unticked one and an ungranted one do not.
    let root = RootPublicKey::from_str(meta["coffer_biscuit_public_key"].as_str().unwrap()).unwrap();
    let view = Arc::new(RevocationView::new());
    let authorizer = Authorizer::new(root, view.clone());
    let access = tokens.access_token().secret();
    let verified = authorizer.verify(access).unwrap();
    assert_eq!(verified.app().as_str(), client_id);
    // The gateway loads an unknown grant from the control database
    // (`OAuthServer::sync_grant`); here the token's own claims stand in.
    view.set_grant(verified.grant_id(), verified.grant_version(), GrantStatus::Active);
    let vault = verified.vault();
    let ask = |table: &str, action: Action| {
        authorizer.authorize(
            access,
            &Request::new(vault, TableName::from_str(table).unwrap(), action, chrono::Utc::now()),
        )
    };
    ask("contacts.people", Action::Read).unwrap();
    ask("contacts.people", Action::Create).unwrap();
    let denied = ask("notes.notes", Action::Read).unwrap_err();
    assert!(matches!(denied.kind, DeniedKind::MissingRight { .. }), "{denied:?}");
    let denied = ask("contacts.people", Action::Delete).unwrap_err();
    assert!(matches!(denied.kind, DeniedKind::MissingRight { .. }), "{denied:?}");

    // Refresh: the refresh token rotates, the scope stays what was granted,
    // and the new access token works.
    let rotated = oauth
        .exchange_refresh_token(&refresh)
        .request_async(&http)
        .await
        .unwrap();
    let new_refresh = rotated.refresh_token().unwrap().clone();
    assert_ne!(new_refresh.secret(), refresh.secret(), "refresh tokens rotate");
    let granted: Vec<&str> = rotated.scopes().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(granted, ["contacts.people:read+create"]);
    authorizer
        .authorize(
            rotated.access_token().secret(),
            &Request::new(
                vault,
                TableName::from_str("contacts.people").unwrap(),
                Action::Create,
                chrono::Utc::now(),
            ),
        )
        .unwrap();

    // The old refresh token is refused after use …
    let reused = oauth.exchange_refresh_token(&refresh).request_async(&http).await;
    assert!(
        matches!(&reused, Err(RequestTokenError::ServerResponse(r)) if *r.error() == BasicErrorResponseType::InvalidGrant),
        "{reused:?}"
    );
    // … and its reuse revoked the whole family: the new one is refused too.
    let after_reuse = oauth.exchange_refresh_token(&new_refresh).request_async(&http).await;
    assert!(
        matches!(&after_reuse, Err(RequestTokenError::ServerResponse(r)) if *r.error() == BasicErrorResponseType::InvalidGrant),
        "{after_reuse:?}"
    );

    // A code is single use too.
    let (status, _, body) = oauth_post(
        &http,
        &server.url("/oauth/token"),
        &code_form(&code, REDIRECT, &client_id, Some(&"x".repeat(43))),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Authorizing again inside the grant skips the consent page.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, _) = oauth
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("contacts.people:read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let skipped = browser.get(authorize_url.as_str()).await;
    assert_eq!(skipped.status, StatusCode::SEE_OTHER, "{}", skipped.body);
    let code = query_param(skipped.location().unwrap(), "code").expect("straight back with a code");
    let tokens = oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(tokens.scopes().unwrap()[0].as_str(), "contacts.people:read");
}
