//! Device authorization (RFC 8628) and DPoP binding (RFC 9449).

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use coffer_auth::{Action, DeniedKind};
use coffer_oauth::{
    App, AuthorizeParams, ClientCredentials, DeviceAuthorization, DpopProof, ErrorCode, GrantType, NewApp, TokenParams,
    TokenResponse, User, endpoints,
};
use common::*;
use sha2::{Digest, Sha256};

/// A public app registered for the device grant only.
async fn device_app(env: &Env) -> ClientCredentials {
    let app = NewApp::public("coffer-cli", vec![]).with_grant_types([GrantType::DeviceCode, GrantType::RefreshToken]);
    public_client(&env.server.register_app(app).await.unwrap().app)
}

/// A device app and its started request for reading notes and tasks.
async fn started() -> (Env, ClientCredentials, DeviceAuthorization) {
    let env = env().await;
    let client = device_app(&env).await;
    let scope = Some("notes.notes:read tasks.items:read");
    let start = env
        .server
        .start_device_authorization(&client, scope, None)
        .await
        .unwrap();
    (env, client, start)
}

/// Polls the token endpoint for the device code of `start`.
async fn poll(
    env: &Env,
    client: &ClientCredentials,
    start: &DeviceAuthorization,
) -> Result<TokenResponse, coffer_oauth::Error> {
    let params = TokenParams {
        grant_type: Some("urn:ietf:params:oauth:grant-type:device_code".into()),
        device_code: Some(start.device_code.clone()),
        ..TokenParams::default()
    };
    env.server.token(client, &params, None).await
}

/// Why polling for `device_code` directly fails.
async fn poll_refused(env: &Env, client: &ClientCredentials, device_code: &str) -> ErrorCode {
    let err = env.server.poll_device(client, device_code, None).await.unwrap_err();
    err.code()
}

#[tokio::test]
async fn device_authorization_starts_with_a_short_user_code() {
    let (_env, _, start) = started().await;
    assert_eq!(start.verification_uri, format!("{ISSUER}/device"));
    assert_eq!(start.interval, 5);
    assert_eq!(start.expires_in, 600);
    let (a, b) = start.user_code.split_once('-').unwrap();
    assert_eq!((a.len(), b.len()), (4, 4));
    assert!(
        start
            .user_code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(
        query_param(&start.verification_uri_complete, "user_code").as_deref(),
        Some(start.user_code.as_str())
    );
    assert_eq!(start.device_code.len(), 43);
}

#[tokio::test]
async fn polling_too_fast_slows_down() {
    let (env, client, start) = started().await;
    assert_eq!(
        poll(&env, &client, &start).await.unwrap_err().code(),
        ErrorCode::AuthorizationPending
    );
    // Too fast: slow_down, and the interval grows to 10 s.
    env.advance(TimeDelta::seconds(2));
    let err = poll(&env, &client, &start).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::SlowDown);
    assert!(err.description().contains("10 seconds"));
    env.advance(TimeDelta::seconds(6));
    assert_eq!(
        poll(&env, &client, &start).await.unwrap_err().code(),
        ErrorCode::SlowDown
    );
    // Each slow_down adds 5 s: now 15 s.
    env.advance(TimeDelta::seconds(15));
    assert_eq!(
        poll(&env, &client, &start).await.unwrap_err().code(),
        ErrorCode::AuthorizationPending
    );
}

/// The user approves reading notes only (unticking tasks).
async fn approve_notes_only(env: &Env, user: &User, start: &DeviceAuthorization) -> coffer_auth::GrantSpec {
    env.server
        .device_approve(user.id, &start.user_code, &env.spec("notes.notes:read"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_user_types_the_code_in_any_case_and_approves_some_lines() {
    let (env, _, start) = started().await;
    let user = env.user("ada@example.org").await;
    // With or without the dash.
    let typed = start.user_code.replace('-', "").to_lowercase();
    let request = env.server.device_lookup(&typed).await.unwrap();
    assert_eq!(request.app_name, "coffer-cli");
    assert_eq!(request.user_code, start.user_code);
    assert_eq!(request.requested.to_scope_string(), "notes.notes:read tasks.items:read");
    let approved = approve_notes_only(&env, &user, &start).await;
    assert_eq!(approved.to_scope_string(), "notes.notes:read");
    assert!(env.server.device_lookup(&start.user_code).await.is_err());
}

#[tokio::test]
async fn an_approved_device_gets_tokens_for_the_approved_lines_once() {
    let (env, client, start) = started().await;
    let user = env.user("ada@example.org").await;
    approve_notes_only(&env, &user, &start).await;
    env.advance(TimeDelta::seconds(15));
    let tokens = poll(&env, &client, &start).await.unwrap();
    assert_eq!(tokens.scope, "notes.notes:read");
    env.assert_allows(&user, &tokens.access_token, "notes.notes", Action::Read);
    assert!(
        env.check(&user, &tokens.access_token, "tasks.items", Action::Read)
            .is_err()
    );
    assert!(tokens.refresh_token.is_some());
    // Once only.
    env.advance(TimeDelta::seconds(15));
    assert_eq!(
        poll(&env, &client, &start).await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn a_denied_device_request_polls_access_denied() {
    let (env, client, start) = started().await;
    env.server.device_deny(&start.user_code).await.unwrap();
    assert_eq!(
        poll_refused(&env, &client, &start.device_code).await,
        ErrorCode::AccessDenied
    );
}

#[tokio::test]
async fn an_expired_device_code_polls_expired_token() {
    let (env, client, start) = started().await;
    env.advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    assert_eq!(
        poll_refused(&env, &client, &start.device_code).await,
        ErrorCode::ExpiredToken
    );
    assert!(env.server.device_lookup(&start.user_code).await.is_err());
}

#[tokio::test]
async fn unknown_and_other_clients_device_codes_are_invalid_grants() {
    let (env, client, start) = started().await;
    assert_eq!(poll_refused(&env, &client, "nope").await, ErrorCode::InvalidGrant);
    let other = device_app(&env).await;
    assert_eq!(
        poll_refused(&env, &other, &start.device_code).await,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn device_authorization_refuses_an_unknown_scope() {
    let env = env().await;
    let client = device_app(&env).await;
    let refused = env
        .server
        .start_device_authorization(&client, Some("nope.nope:read"), None)
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn device_authorization_needs_a_client_registered_for_the_grant() {
    let (env, web) = with_app().await;
    let refused = env
        .server
        .start_device_authorization(&public_client(&web), Some("notes.notes:read"), None)
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::UnauthorizedClient);
}

#[tokio::test]
async fn unknown_and_malformed_user_codes_are_not_found() {
    let env = env().await;
    assert!(env.server.device_lookup("BCDF-GHJ").await.is_err());
    assert!(env.server.device_lookup("AEIO-UAEI").await.is_err());
}

/// RFC 7638 thumbprint computed here from the JWK's members.
fn thumbprint(key: &DpopKey) -> String {
    let json = serde_json::to_value(&key.jwk).unwrap();
    let canonical = match json["kty"].as_str().unwrap() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            json["crv"].as_str().unwrap(),
            json["x"].as_str().unwrap(),
            json["y"].as_str().unwrap()
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            json["crv"].as_str().unwrap(),
            json["x"].as_str().unwrap()
        ),
        other => panic!("{other}"),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Runs a biscuit authorizer that supplies `dpop_jkt(jkt)` as a resource
/// server would after verifying the request's proof.
fn accepts_with_proof_of(env: &Env, token: &str, jkt: &str) -> bool {
    use biscuit_auth::macros::authorizer;
    let root: biscuit_auth::PublicKey = env.server.authorizer().root_public_key().to_hex().parse().unwrap();
    let biscuit = biscuit_auth::Biscuit::from_base64(token, root).unwrap();
    let now = std::time::SystemTime::from(env.server.now());
    authorizer!(r#"time({now}); dpop_jkt({jkt}); allow if true;"#)
        .build(&biscuit)
        .and_then(|mut a| a.authorize())
        .is_ok()
}

/// A token endpoint proof of `key`, made now.
fn token_proof(env: &Env, key: &DpopKey) -> DpopProof {
    key.proof_at(endpoints::TOKEN, env.server.now().timestamp())
}

/// Tokens for reading notes bound to `key`: the env, the user, the app's
/// credentials and the tokens.
async fn dpop_tokens(key: &DpopKey) -> (Env, User, ClientCredentials, TokenResponse) {
    let (env, user, app) = with_user_and_app().await;
    let client = public_client(&app);
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let proof = token_proof(&env, key);
    let tokens = env.exchange(&client, &code, &verifier, Some(&proof)).await.unwrap();
    (env, user, client, tokens)
}

#[tokio::test]
async fn dpop_bound_tokens_need_a_proof_of_their_key() {
    let key = DpopKey::es256();
    let (env, user, _, tokens) = dpop_tokens(&key).await;
    assert_eq!(tokens.token_type, "DPoP");
    // Checked without a proof of its key (as a bearer token): refused.
    let denied = env.denied(&user, &tokens.access_token, "notes.notes", Action::Read);
    assert_eq!(denied, DeniedKind::DpopRequired, "{denied:?}");
    // With a proof of the right key it passes; of another key it does not.
    assert!(accepts_with_proof_of(&env, &tokens.access_token, &thumbprint(&key)));
    assert!(!accepts_with_proof_of(
        &env,
        &tokens.access_token,
        &thumbprint(&DpopKey::es256())
    ));
    // The authority still carries the grant.
    let verified = env.server.authorizer().verify(&tokens.access_token).unwrap();
    assert_eq!(verified.grant().to_scope_string(), "notes.notes:read");
}

#[tokio::test]
async fn introspection_reports_the_bound_key() {
    let key = DpopKey::es256();
    let (env, _, client, tokens) = dpop_tokens(&key).await;
    let jkt = thumbprint(&key);
    let info = env.server.introspect(&client, &tokens.access_token).await.unwrap();
    assert!(info.active);
    assert_eq!(info.token_type.as_deref(), Some("DPoP"));
    assert_eq!(info.cnf.as_ref().map(|c| c.jkt.as_str()), Some(jkt.as_str()));
    let info = env
        .server
        .introspect(&client, tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(info.cnf.map(|c| c.jkt), Some(jkt));
}

#[tokio::test]
async fn refreshing_bound_tokens_needs_a_proof_of_the_same_key() {
    let key = DpopKey::es256();
    let (env, _, client, tokens) = dpop_tokens(&key).await;
    // No proof, or another key's proof, is refused (and burns nothing).
    let refresh = tokens.refresh_token.unwrap();
    let err = env.refresh(&client, &refresh).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidDpopProof);
    let other = token_proof(&env, &DpopKey::es256());
    let refused = env.server.refresh(&client, &refresh, None, Some(&other)).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    let rotated = env
        .server
        .refresh(&client, &refresh, None, Some(&token_proof(&env, &key)))
        .await
        .unwrap();
    assert_eq!(rotated.token_type, "DPoP");
    assert!(accepts_with_proof_of(&env, &rotated.access_token, &thumbprint(&key)));
}

const ROWS: &str = "/v1/tables/notes.notes/rows";

/// An access token bound to an Ed25519 key, for proofs to a resource server.
struct Resource {
    env: Env,
    user: User,
    key: DpopKey,
    access: String,
    /// The hash of `access`, as proofs carry it.
    ath: String,
    now: i64,
}

impl Resource {
    async fn new() -> Resource {
        let key = DpopKey::ed25519();
        let (env, user, _, tokens) = dpop_tokens(&key).await;
        let access = tokens.access_token;
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(access.as_bytes()));
        let now = env.server.now().timestamp();
        Resource {
            env,
            user,
            key,
            access,
            ath,
            now,
        }
    }

    /// A proof for `GET {ROWS}` with `ath`.
    fn proof(&self, ath: Option<&str>) -> DpopProof {
        self.key.proof_for("GET", ROWS, self.now, ath)
    }

    /// Verifies `proof` as a resource server does, for the access token.
    async fn check(&self, proof: DpopProof) -> Result<String, coffer_oauth::Error> {
        self.env.server.verify_dpop_for_resource(&proof, &self.access).await
    }

    /// Why `proof` is refused.
    async fn refused(&self, proof: DpopProof) -> ErrorCode {
        self.check(proof).await.unwrap_err().code()
    }
}

#[tokio::test]
async fn a_resource_proof_with_the_access_token_hash_proves_the_key() {
    let r = Resource::new().await;
    // A fresh proof with the right htm, htu and ath: the key's thumbprint,
    // which the authorizer accepts as the proven key.
    let jkt = r.check(r.proof(Some(&r.ath))).await.unwrap();
    assert_eq!(jkt, thumbprint(&r.key));
    let authorizer = r.env.server.authorizer();
    let verified = authorizer.verify(&r.access).unwrap();
    assert_eq!(verified.dpop_jkt(), Some(jkt.as_str()));
    let request = coffer_auth::Request::new(
        r.user.vault_id,
        "notes.notes".parse().unwrap(),
        Action::Read,
        r.env.server.now(),
    );
    assert!(
        authorizer
            .check(&verified, &request.clone().with_dpop_jkt(&jkt))
            .is_ok()
    );
    assert_eq!(
        authorizer.check(&verified, &request).unwrap_err().kind,
        DeniedKind::DpopRequired
    );
}

#[tokio::test]
async fn a_replayed_resource_proof_is_refused() {
    let r = Resource::new().await;
    let good = r.proof(Some(&r.ath));
    r.check(good.clone()).await.unwrap();
    assert_eq!(r.refused(good).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn resource_proofs_without_the_access_token_hash_are_refused() {
    let r = Resource::new().await;
    // No ath, the hash of another token, not a hash at all.
    let other = URL_SAFE_NO_PAD.encode(Sha256::digest(b"another token"));
    for ath in [None, Some(other.as_str()), Some("not-a-hash")] {
        let err = r.check(r.proof(ath)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidDpopProof, "{ath:?}");
        assert!(err.description().contains("ath"), "{}", err.description());
    }
}

#[tokio::test]
async fn resource_proofs_are_checked_for_method_url_and_iat() {
    let r = Resource::new().await;
    let mut p = r.proof(Some(&r.ath));
    p.method = "POST".into();
    assert_eq!(r.refused(p).await, ErrorCode::InvalidDpopProof);
    let p = r
        .key
        .proof_for("GET", "/v1/tables/tasks.items/rows", r.now, Some(&r.ath));
    let p = DpopProof::new(p.jwt, "GET", format!("{ISSUER}{ROWS}"));
    assert_eq!(r.refused(p).await, ErrorCode::InvalidDpopProof);
    let p = r.key.proof_for("GET", ROWS, r.now - 120, Some(&r.ath));
    assert_eq!(r.refused(p).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn a_proof_refused_for_its_access_token_hash_is_not_burnt() {
    let r = Resource::new().await;
    // The token endpoint's check (which does not look at ath) still accepts
    // it once.
    let other = URL_SAFE_NO_PAD.encode(Sha256::digest(b"another token"));
    let p = r.key.proof_for("POST", endpoints::TOKEN, r.now, Some(&other));
    assert_eq!(r.refused(p.clone()).await, ErrorCode::InvalidDpopProof);
    assert_eq!(r.env.server.verify_dpop(&p).await.unwrap(), thumbprint(&r.key));
}

/// An env, an Ed25519 key and the time now, for token endpoint proofs.
async fn proofs() -> (Env, DpopKey, i64) {
    let env = env().await;
    let now = env.server.now().timestamp();
    (env, DpopKey::ed25519(), now)
}

/// Why the token endpoint refuses `proof`.
async fn refused(env: &Env, proof: &DpopProof) -> ErrorCode {
    env.server.verify_dpop(proof).await.unwrap_err().code()
}

#[tokio::test]
async fn a_token_endpoint_proof_is_accepted_once() {
    let (env, key, now) = proofs().await;
    let good = key.proof_at(endpoints::TOKEN, now);
    assert_eq!(env.server.verify_dpop(&good).await.unwrap(), thumbprint(&key));
    // Replay of the same jti.
    assert_eq!(refused(&env, &good).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn proofs_for_another_method_or_url_are_refused() {
    let (env, key, now) = proofs().await;
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.method = "GET".into();
    assert_eq!(refused(&env, &p).await, ErrorCode::InvalidDpopProof);
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.url = format!("{ISSUER}{}", endpoints::PAR);
    assert_eq!(refused(&env, &p).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn a_query_string_on_the_request_url_is_ignored() {
    let (env, key, now) = proofs().await;
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.url.push_str("?x=1");
    assert!(env.server.verify_dpop(&p).await.is_ok());
}

#[tokio::test]
async fn proofs_too_old_or_too_new_are_refused() {
    let (env, key, now) = proofs().await;
    for iat in [now - 120, now + 120] {
        let p = key.proof_at(endpoints::TOKEN, iat);
        assert_eq!(refused(&env, &p).await, ErrorCode::InvalidDpopProof, "{}", iat - now);
    }
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let (env, key, now) = proofs().await;
    let mut p = key.proof_at(endpoints::TOKEN, now);
    let last = p.jwt.pop().unwrap();
    p.jwt.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(refused(&env, &p).await, ErrorCode::InvalidDpopProof);
}

/// A token endpoint proof at `now` with `header`, signed by `key`.
fn signed(header: &jsonwebtoken::Header, key: &jsonwebtoken::EncodingKey, now: i64) -> DpopProof {
    let jwt = jsonwebtoken::encode(header, &claims(now), key).unwrap();
    DpopProof::new(jwt, "POST", format!("{ISSUER}/oauth/token"))
}

/// A token endpoint proof at `now` with the JSON `header` and a zero
/// signature.
fn unsigned(header: serde_json::Value, now: i64) -> DpopProof {
    let jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims(now).to_string()),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    DpopProof::new(jwt, "POST", format!("{ISSUER}/oauth/token"))
}

fn claims(now: i64) -> serde_json::Value {
    serde_json::json!({"htm": "POST", "htu": format!("{ISSUER}/oauth/token"), "iat": now, "jti": "j1"})
}

#[tokio::test]
async fn proofs_of_another_type_without_a_key_or_with_hmac_are_refused() {
    let (env, key, now) = proofs().await;
    let mut h = jsonwebtoken::Header::new(key.alg);
    h.jwk = Some(key.jwk.clone());
    assert_eq!(
        refused(&env, &signed(&h, &key.key, now)).await,
        ErrorCode::InvalidDpopProof,
        "typ JWT"
    );
    h.typ = Some("dpop+jwt".into());
    h.jwk = None;
    assert_eq!(
        refused(&env, &signed(&h, &key.key, now)).await,
        ErrorCode::InvalidDpopProof,
        "no jwk"
    );
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(key.jwk.clone());
    let hmac = jsonwebtoken::EncodingKey::from_secret(b"secret");
    assert_eq!(
        refused(&env, &signed(&h, &hmac, now)).await,
        ErrorCode::InvalidDpopProof,
        "HS256"
    );
}

#[tokio::test]
async fn proofs_with_a_private_short_or_mismatched_key_are_refused() {
    let (env, key, now) = proofs().await;
    // A header with a private member `d`.
    let private = unsigned(
        serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "AAAA"}}),
        now,
    );
    assert_eq!(refused(&env, &private).await, ErrorCode::InvalidDpopProof);
    // A short Ed25519 key is refused (and must not panic the verifier).
    let short = unsigned(
        serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}),
        now,
    );
    assert_eq!(refused(&env, &short).await, ErrorCode::InvalidDpopProof);
    // ES256 header with an Ed25519 key.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(DpopKey::es256().jwk);
    assert_eq!(
        refused(&env, &signed(&h, &key.key, now)).await,
        ErrorCode::InvalidDpopProof
    );
}

/// A code for reading notes whose request named `key`'s thumbprint
/// (`dpop_jkt`): the code and its PKCE verifier.
async fn bound_code(env: &Env, user: &User, app: &App, key: &DpopKey) -> (String, String) {
    let (verifier, challenge) = pkce();
    let params = AuthorizeParams {
        dpop_jkt: Some(thumbprint(key)),
        ..authorize_params(app, "notes.notes:read", &challenge)
    };
    let pending = env.server.validate_authorize_request(&params).await.unwrap();
    (env.approve_all(user, &pending).await, verifier)
}

#[tokio::test]
async fn a_code_bound_to_a_key_needs_its_proof() {
    let (env, user, app) = with_user_and_app().await;
    let (code, verifier) = bound_code(&env, &user, &app, &DpopKey::es256()).await;
    let refused = env.exchange(&public_client(&app), &code, &verifier, None).await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn a_code_bound_to_a_key_is_redeemed_with_its_proof() {
    let (env, user, app) = with_user_and_app().await;
    let key = DpopKey::es256();
    let (code, verifier) = bound_code(&env, &user, &app, &key).await;
    let proof = token_proof(&env, &key);
    let tokens = env
        .exchange(&public_client(&app), &code, &verifier, Some(&proof))
        .await
        .unwrap();
    assert_eq!(tokens.token_type, "DPoP");
}

#[tokio::test]
async fn par_with_a_dpop_proof_binds_the_code() {
    let (env, app) = with_app().await;
    let key = DpopKey::es256();
    let params = pushed_params(&app, "notes.notes:read", &pkce().1);
    let proof = key.proof_at(endpoints::PAR, env.server.now().timestamp());
    let request_uri = env.push(&public_client(&app), &params, Some(&proof)).await;
    let pending = env
        .server
        .validate_authorize_request(&by_reference(app.client_id.as_str(), request_uri))
        .await
        .unwrap();
    assert_eq!(pending.dpop_jkt, Some(thumbprint(&key)));
}
