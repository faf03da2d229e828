//! Device authorization (RFC 8628) and DPoP binding (RFC 9449).

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use coffer_auth::{Action, DeniedKind};
use coffer_oauth::{ClientCredentials, ErrorCode, GrantType, NewApp, TokenParams, endpoints};
use common::*;
use sha2::{Digest, Sha256};

async fn device_app(env: &Env) -> ClientCredentials {
    let app = env
        .server
        .register_app(
            NewApp::public("coffer-cli", vec![]).with_grant_types([GrantType::DeviceCode, GrantType::RefreshToken]),
        )
        .await
        .unwrap()
        .app;
    ClientCredentials::public(app.client_id.as_str())
}

fn device_params(device_code: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("urn:ietf:params:oauth:grant-type:device_code".into()),
        device_code: Some(device_code.into()),
        ..TokenParams::default()
    }
}

#[tokio::test]
async fn device_flow_pending_slow_down_approved_token() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let client = device_app(&env).await;
    let start = env
        .server
        .start_device_authorization(&client, Some("notes.notes:read tasks.items:read"), None)
        .await
        .unwrap();
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

    let params = device_params(&start.device_code);
    let poll = || env.server.token(&client, &params, None);
    assert_eq!(poll().await.unwrap_err().code(), ErrorCode::AuthorizationPending);
    // Too fast: slow_down, and the interval grows to 10 s.
    env.advance(TimeDelta::seconds(2));
    let err = poll().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::SlowDown);
    assert!(err.description().contains("10 seconds"));
    env.advance(TimeDelta::seconds(6));
    assert_eq!(poll().await.unwrap_err().code(), ErrorCode::SlowDown);
    // Each slow_down adds 5 s: now 15 s.
    env.advance(TimeDelta::seconds(15));
    assert_eq!(poll().await.unwrap_err().code(), ErrorCode::AuthorizationPending);

    // The user types the code in any case, with or without the dash.
    let typed = start.user_code.replace('-', "").to_lowercase();
    let request = env.server.device_lookup(&typed).await.unwrap();
    assert_eq!(request.app_name, "coffer-cli");
    assert_eq!(request.user_code, start.user_code);
    assert_eq!(request.requested.to_scope_string(), "notes.notes:read tasks.items:read");
    // …and unticks tasks.
    let approved = env
        .server
        .device_approve(user.id, &start.user_code, &env.spec("notes.notes:read"))
        .await
        .unwrap();
    assert_eq!(approved.to_scope_string(), "notes.notes:read");
    assert!(env.server.device_lookup(&start.user_code).await.is_err());

    env.advance(TimeDelta::seconds(15));
    let tokens = poll().await.unwrap();
    assert_eq!(tokens.scope, "notes.notes:read");
    env.check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap();
    assert!(
        env.check(&user, &tokens.access_token, "tasks.items", Action::Read)
            .is_err()
    );
    assert!(tokens.refresh_token.is_some());
    // Once only.
    env.advance(TimeDelta::seconds(15));
    assert_eq!(poll().await.unwrap_err().code(), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn device_flow_denied_expired_and_unauthorized() {
    let env = env().await;
    let client = device_app(&env).await;
    let start = env
        .server
        .start_device_authorization(&client, Some("notes.notes:read"), None)
        .await
        .unwrap();
    env.server.device_deny(&start.user_code).await.unwrap();
    let err = env
        .server
        .poll_device(&client, &start.device_code, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AccessDenied);

    let start = env
        .server
        .start_device_authorization(&client, Some("notes.notes:read"), None)
        .await
        .unwrap();
    env.advance(TimeDelta::minutes(10) + TimeDelta::seconds(1));
    let err = env
        .server
        .poll_device(&client, &start.device_code, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ExpiredToken);
    assert!(env.server.device_lookup(&start.user_code).await.is_err());

    // Unknown device code, another client's device code, bad scope.
    assert_eq!(
        env.server.poll_device(&client, "nope", None).await.unwrap_err().code(),
        ErrorCode::InvalidGrant
    );
    let start = env
        .server
        .start_device_authorization(&client, Some("notes.notes:read"), None)
        .await
        .unwrap();
    let other = device_app(&env).await;
    assert_eq!(
        env.server
            .poll_device(&other, &start.device_code, None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidGrant
    );
    assert_eq!(
        env.server
            .start_device_authorization(&client, Some("nope.nope:read"), None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidScope
    );
    // A client not registered for the device grant.
    let web = env.public_app().await;
    let err = env
        .server
        .start_device_authorization(
            &ClientCredentials::public(web.client_id.as_str()),
            Some("notes.notes:read"),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnauthorizedClient);
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
    let now = std::time::SystemTime::from(env.clock_now());
    authorizer!(r#"time({now}); dpop_jkt({jkt}); allow if true;"#)
        .build(&biscuit)
        .and_then(|mut a| a.authorize())
        .is_ok()
}

trait ClockNow {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
}
impl ClockNow for Env {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.server.now()
    }
}

#[tokio::test]
async fn dpop_binds_tokens_and_refresh_needs_the_same_key() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let key = DpopKey::es256();
    let now = env.server.now().timestamp();

    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let proof = key.proof_at(endpoints::TOKEN, now);
    let tokens = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, Some(&proof))
        .await
        .unwrap();
    assert_eq!(tokens.token_type, "DPoP");
    let jkt = thumbprint(&key);

    // Checked without a proof of its key (as a bearer token): refused.
    let denied = env
        .check(&user, &tokens.access_token, "notes.notes", Action::Read)
        .unwrap_err();
    assert_eq!(denied.kind, DeniedKind::DpopRequired, "{denied:?}");
    // With a proof of the right key it passes; of another key it does not.
    assert!(accepts_with_proof_of(&env, &tokens.access_token, &jkt));
    assert!(!accepts_with_proof_of(
        &env,
        &tokens.access_token,
        &thumbprint(&DpopKey::es256())
    ));
    // The authority still carries the grant, and introspection reports cnf.jkt.
    let verified = env.server.authorizer().verify(&tokens.access_token).unwrap();
    assert_eq!(verified.grant().to_scope_string(), "notes.notes:read");
    let info = env.server.introspect(&client, &tokens.access_token).await.unwrap();
    assert!(info.active);
    assert_eq!(info.token_type.as_deref(), Some("DPoP"));
    assert_eq!(info.cnf.as_ref().map(|c| c.jkt.as_str()), Some(jkt.as_str()));
    let info = env
        .server
        .introspect(&client, tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(info.cnf.map(|c| c.jkt), Some(jkt.clone()));

    // Refresh: no proof, or another key's proof, is refused (and burns nothing).
    let refresh = tokens.refresh_token.unwrap();
    let err = env.server.refresh(&client, &refresh, None, None).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidDpopProof);
    let other = DpopKey::es256().proof_at(endpoints::TOKEN, now);
    let err = env
        .server
        .refresh(&client, &refresh, None, Some(&other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidDpopProof);
    let rotated = env
        .server
        .refresh(&client, &refresh, None, Some(&key.proof_at(endpoints::TOKEN, now)))
        .await
        .unwrap();
    assert_eq!(rotated.token_type, "DPoP");
    assert!(accepts_with_proof_of(&env, &rotated.access_token, &jkt));
}

#[tokio::test]
async fn resource_proofs_carry_the_access_token_hash() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let key = DpopKey::ed25519();
    let now = env.server.now().timestamp();
    let (code, verifier) = env.code(&user, &app, "notes.notes:read").await;
    let tokens = env
        .server
        .exchange_code(
            &client,
            &code,
            Some(REDIRECT),
            &verifier,
            Some(&key.proof_at(endpoints::TOKEN, now)),
        )
        .await
        .unwrap();
    let access = tokens.access_token.as_str();
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(access.as_bytes()));
    let path = "/v1/tables/notes.notes/rows";
    let check = |proof: coffer_oauth::DpopProof| {
        let server = env.server.clone();
        async move { server.verify_dpop_for_resource(&proof, access).await }
    };

    // A fresh proof with the right htm, htu and ath: the key's thumbprint,
    // which the authorizer accepts as the proven key.
    let good = key.proof_for("GET", path, now, Some(&ath));
    let jkt = check(good.clone()).await.unwrap();
    assert_eq!(jkt, thumbprint(&key));
    let verified = env.server.authorizer().verify(access).unwrap();
    assert_eq!(verified.dpop_jkt(), Some(jkt.as_str()));
    let request = coffer_auth::Request::new(
        user.vault_id,
        "notes.notes".parse().unwrap(),
        Action::Read,
        env.server.now(),
    );
    assert!(
        env.server
            .authorizer()
            .check(&verified, &request.clone().with_dpop_jkt(&jkt))
            .is_ok()
    );
    assert_eq!(
        env.server.authorizer().check(&verified, &request).unwrap_err().kind,
        DeniedKind::DpopRequired
    );

    // Replayed.
    assert_eq!(check(good).await.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    // No ath, the hash of another token, not a hash at all.
    let other = URL_SAFE_NO_PAD.encode(Sha256::digest(b"another token"));
    for ath in [None, Some(other.as_str()), Some("not-a-hash")] {
        let err = check(key.proof_for("GET", path, now, ath)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidDpopProof, "{ath:?}");
        assert!(err.description().contains("ath"), "{}", err.description());
    }
    // The other checks still apply: method, URL, iat.
    let mut p = key.proof_for("GET", path, now, Some(&ath));
    p.method = "POST".into();
    assert_eq!(check(p).await.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    let p = key.proof_for("GET", "/v1/tables/tasks.items/rows", now, Some(&ath));
    let p = coffer_oauth::DpopProof::new(p.jwt, "GET", format!("{ISSUER}{path}"));
    assert_eq!(check(p).await.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    let p = key.proof_for("GET", path, now - 120, Some(&ath));
    assert_eq!(check(p).await.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    // A proof refused for its ath is not burnt: the token endpoint's check
    // (which does not look at ath) still accepts it once.
    let p = key.proof_for("POST", endpoints::TOKEN, now, Some(&other));
    assert_eq!(check(p.clone()).await.unwrap_err().code(), ErrorCode::InvalidDpopProof);
    assert_eq!(env.server.verify_dpop(&p).await.unwrap(), jkt);
}

#[tokio::test]
async fn dpop_proofs_are_checked() {
    let env = env().await;
    let now = env.server.now().timestamp();
    let key = DpopKey::ed25519();
    let good = key.proof_at(endpoints::TOKEN, now);
    assert_eq!(env.server.verify_dpop(&good).await.unwrap(), thumbprint(&key));
    // Replay of the same jti.
    assert_eq!(
        env.server.verify_dpop(&good).await.unwrap_err().code(),
        ErrorCode::InvalidDpopProof
    );

    let check = |proof: coffer_oauth::DpopProof| {
        let server = env.server.clone();
        async move { server.verify_dpop(&proof).await.unwrap_err().code() }
    };
    // Wrong method and URL.
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.method = "GET".into();
    assert_eq!(check(p).await, ErrorCode::InvalidDpopProof);
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.url = format!("{ISSUER}{}", endpoints::PAR);
    assert_eq!(check(p).await, ErrorCode::InvalidDpopProof);
    // A query string on the request URL is ignored.
    let mut p = key.proof_at(endpoints::TOKEN, now);
    p.url.push_str("?x=1");
    assert!(env.server.verify_dpop(&p).await.is_ok());
    // Too old, too new.
    assert_eq!(
        check(key.proof_at(endpoints::TOKEN, now - 120)).await,
        ErrorCode::InvalidDpopProof
    );
    assert_eq!(
        check(key.proof_at(endpoints::TOKEN, now + 120)).await,
        ErrorCode::InvalidDpopProof
    );
    // Tampered signature.
    let mut p = key.proof_at(endpoints::TOKEN, now);
    let last = p.jwt.pop().unwrap();
    p.jwt.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(check(p).await, ErrorCode::InvalidDpopProof);

    // Wrong typ, HMAC, private key in the header, no jwk.
    let claims = serde_json::json!({"htm": "POST", "htu": format!("{ISSUER}/oauth/token"), "iat": now, "jti": "j1"});
    let sign = |header: &jsonwebtoken::Header, k: &jsonwebtoken::EncodingKey| {
        coffer_oauth::DpopProof::new(
            jsonwebtoken::encode(header, &claims, k).unwrap(),
            "POST",
            format!("{ISSUER}/oauth/token"),
        )
    };
    let mut h = jsonwebtoken::Header::new(key.alg);
    h.jwk = Some(key.jwk.clone());
    assert_eq!(check(sign(&h, &key.key)).await, ErrorCode::InvalidDpopProof, "typ JWT");
    h.typ = Some("dpop+jwt".into());
    h.jwk = None;
    assert_eq!(check(sign(&h, &key.key)).await, ErrorCode::InvalidDpopProof, "no jwk");
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(key.jwk.clone());
    assert_eq!(
        check(sign(&h, &jsonwebtoken::EncodingKey::from_secret(b"secret"))).await,
        ErrorCode::InvalidDpopProof,
        "HS256"
    );
    // A header with a private member `d`.
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "AAAA"}});
    let jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(
        check(coffer_oauth::DpopProof::new(
            jwt,
            "POST",
            format!("{ISSUER}/oauth/token")
        ))
        .await,
        ErrorCode::InvalidDpopProof
    );
    // A short Ed25519 key is refused (and must not panic the verifier).
    let header =
        serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}});
    let jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    assert_eq!(
        check(coffer_oauth::DpopProof::new(
            jwt,
            "POST",
            format!("{ISSUER}/oauth/token")
        ))
        .await,
        ErrorCode::InvalidDpopProof
    );
    // ES256 header with an Ed25519 key.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(DpopKey::es256().jwk);
    assert_eq!(check(sign(&h, &key.key)).await, ErrorCode::InvalidDpopProof);
}

#[tokio::test]
async fn dpop_jkt_binds_the_code() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let app = env.public_app().await;
    let client = ClientCredentials::public(app.client_id.as_str());
    let key = DpopKey::es256();
    let now = env.server.now().timestamp();
    let (verifier, challenge) = pkce();
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.dpop_jkt = Some(thumbprint(&key));
    let pending = env.server.validate_authorize_request(&params).await.unwrap();
    let location = env
        .server
        .approve(user.id, &pending.requested, &pending)
        .await
        .unwrap()
        .location;
    let code = query_param(&location, "code").unwrap();
    let err = env
        .server
        .exchange_code(&client, &code, Some(REDIRECT), &verifier, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidDpopProof);

    // A fresh code with the right key works.
    let (verifier, challenge) = pkce();
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.dpop_jkt = Some(thumbprint(&key));
    let pending = env.server.validate_authorize_request(&params).await.unwrap();
    let location = env
        .server
        .approve(user.id, &pending.requested, &pending)
        .await
        .unwrap()
        .location;
    let code = query_param(&location, "code").unwrap();
    let tokens = env
        .server
        .exchange_code(
            &client,
            &code,
            Some(REDIRECT),
            &verifier,
            Some(&key.proof_at(endpoints::TOKEN, now)),
        )
        .await
        .unwrap();
    assert_eq!(tokens.token_type, "DPoP");

    // PAR with a DPoP proof binds the code the same way.
    let (_, challenge) = pkce();
    let mut params = authorize_params(&app, "notes.notes:read", &challenge);
    params.client_id = None;
    let pushed = env
        .server
        .push_authorization_request(&client, params, Some(&key.proof_at(endpoints::PAR, now)))
        .await
        .unwrap();
    let pending = env
        .server
        .validate_authorize_request(&coffer_oauth::AuthorizeParams {
            client_id: Some(app.client_id.to_string()),
            request_uri: Some(pushed.request_uri),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.dpop_jkt, Some(thumbprint(&key)));
}
