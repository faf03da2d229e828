//! Hardening of the OAuth server and the account pages (issue 9, items 7
//! to 10): the authorization endpoint's parameter limit, the device flow's
//! decision bound to the session that typed the code and the shared limit
//! on failed look-ups, what the consent page says about who gets the
//! answer, registration limits and the operator's switch, sign-up that does
//! not reveal taken addresses, `__Host-` cookies and HSTS on https, and a
//! master key other users can read.

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCOPE: &str = "notes.notes:read";

/// Registers an app at `/oauth/register` from `client`; status and JSON.
async fn register(
    client: &reqwest::Client,
    server: &Server,
    metadata: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = client
        .post(server.url("/oauth/register"))
        .header("content-type", "application/json")
        .body(metadata.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_authorization_request_with_thousands_of_parameters_is_refused_at_once() {
    let server = Server::start();
    let client_id = server.app("Notes Pro");
    let (_, challenge) = pkce();
    let mut path = authorize_path(&client_id, APP_REDIRECT, SCOPE, Some(&challenge));
    // As many as fit in a URI (the unit test of `oauth_params` takes 50,000).
    for i in 0..6_000 {
        path.push_str(&format!("&k{i}=v"));
    }
    let browser = server.browser();
    let started = Instant::now();
    let page = browser.get(&path).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("too many parameters (6007)"), "{}", page.body);
    assert!(page.location().is_none(), "never redirected");
    // The same request within the limit is served.
    let ok = browser
        .get(&authorize_path(&client_id, APP_REDIRECT, SCOPE, Some(&challenge)))
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "to sign in");
    // The JSON endpoints refuse it the same way.
    let mut form: Vec<(String, String)> = (0..100).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    form.push(("grant_type".into(), "refresh_token".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _, body) = oauth_post(&client(), &server.url("/oauth/token"), &form, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too many parameters"),
        "{body}"
    );
}

/// Starts a device flow of `client_id`; (user code, device code).
async fn start_device(server: &Server, client_id: &str) -> (String, String) {
    let (status, _, device) = oauth_post(
        &client(),
        &server.url("/oauth/device"),
        &[("client_id", client_id), ("scope", SCOPE)],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    (
        device["user_code"].as_str().unwrap().to_owned(),
        device["device_code"].as_str().unwrap().to_owned(),
    )
}

async fn poll(server: &Server, client_id: &str, device_code: &str) -> (StatusCode, Value) {
    let (status, _, body) = oauth_post(
        &client(),
        &server.url("/oauth/token"),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", client_id),
        ],
        &[],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn a_device_decision_answers_only_the_code_this_session_typed() {
    let server = Server::start();
    let app = server.register_app("Vault CLI", &["--grant-type", "device-code"]);
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let (victim_code, victim_device) = start_device(&server, &client_id).await;

    // Mallory knows (or guessed) the victim's code and posts a decision for
    // it straight away, as the form used to carry the code itself.
    let mallory = server.new_user("mallory@example.org", 2).await;
    let csrf = mallory.get("/device").await.hidden("csrf_token").unwrap();
    for decision in ["allow", "deny"] {
        let answer = mallory
            .post(
                "/device/decision",
                &[
                    ("csrf_token", &csrf),
                    ("request_id", &victim_code),
                    ("line", SCOPE),
                    ("decision", decision),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{decision}: {}", answer.body);
    }
    let (status, body) = poll(&server, &client_id, &victim_device).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );

    // Ada types her own code: her consent form's id works once, for her
    // session only.
    let ada = server.new_user("ada@example.org", 3).await;
    let csrf_ada = ada.get("/device").await.hidden("csrf_token").unwrap();
    let consent = ada
        .post("/device", &[("csrf_token", &csrf_ada), ("user_code", &victim_code)])
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let request_id = consent.hidden("request_id").unwrap();
    assert_ne!(request_id, victim_code, "the form carries no user code");
    assert!(!consent.body.contains(&victim_code), "nor shows it in the form");
    let stolen = mallory
        .post(
            "/device/decision",
            &[("csrf_token", &csrf), ("request_id", &request_id), ("decision", "deny")],
        )
        .await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "another session's id");
    let done = ada
        .post(
            "/device/decision",
            &[
                ("csrf_token", &csrf_ada),
                ("request_id", &request_id),
                ("line", SCOPE),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.h1().contains("Your device is connected"), "{}", done.h1());
    // The device polls again, a polling interval later, and gets its tokens.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, tokens) = poll(&server, &client_id, &victim_device).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
}

#[tokio::test]
async fn failed_device_code_look_ups_are_limited_across_sessions() {
    let server = Server::start();
    let app = server.register_app("Vault CLI", &["--grant-type", "device-code"]);
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    // One attacker, many sessions: each session may type 10 codes, but the
    // failures of all sessions together stop at 100 per 10 minutes.
    let attacker = server.new_user("mallory@example.org", 4).await;
    let mut refused_at = None;
    'sessions: for session in 0..12 {
        let browser = server.browser_from(4);
        let page = browser.sign_in("mallory@example.org", PASSWORD).await;
        assert_eq!(page.status, StatusCode::OK, "session {session}");
        let csrf = browser.get("/device").await.hidden("csrf_token").unwrap();
        for guess in 0..10 {
            let answer = browser
                .post("/device", &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")])
                .await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                refused_at = Some(session * 10 + guess);
                break 'sessions;
            }
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        }
    }
    assert_eq!(refused_at, Some(100), "the 101st failure of any session is refused");
    // A person with a real code is refused too while the limit holds (the
    // price of a shared limit), with a clear message.
    let (user_code, _) = start_device(&server, &client_id).await;
    let ada = server.new_user("ada@example.org", 5).await;
    let csrf = ada.get("/device").await.hidden("csrf_token").unwrap();
    let answer = ada
        .post("/device", &[("csrf_token", &csrf), ("user_code", &user_code)])
        .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.body.contains("Too many codes were typed"), "{}", answer.body);
    drop(attacker);
}

#[tokio::test]
async fn the_consent_page_names_where_the_answer_goes_and_flags_a_borrowed_website() {
    let server = Server::start();
    let http = client();
    // A stranger registers an app under a well-known name and website, with
    // their own redirect URI.
    let (status, _, registered) = register(
        &http,
        &server,
        &json!({
            "client_name": "Notes Pro",
            "client_uri": "https://notes.example",
            "redirect_uris": ["https://evil.example.net/callback"],
            "token_endpoint_auth_method": "none",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let client_id = registered["client_id"].as_str().unwrap();
    let browser = server.new_user("ada@example.org", 6).await;
    let (_, challenge) = pkce();
    let page = browser
        .visit(&authorize_path(
            client_id,
            "https://evil.example.net/callback",
            SCOPE,
            Some(&challenge),
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(r#"Your answer goes to: <strong class="domain">evil.example.net</strong>"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("(not verified: not where your answer goes)"),
        "{}",
        page.body
    );

    // A bidirectional override in the name is refused at registration.
    let (status, _, body) = register(
        &http,
        &server,
        &json!({"client_name": "Notes \u{202E}orP", "redirect_uris": ["https://a.example/cb"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata");
    assert!(body["error_description"].as_str().unwrap().contains("U+202E"), "{body}");
}

#[tokio::test]
async fn registration_is_throttled_per_address_and_can_be_turned_off() {
    let server = Server::start();
    let from = |n| client_from(loopback(n));
    let metadata =
        json!({"client_name": "App", "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"});
    let busy = from(7);
    for i in 0..20 {
        let (status, _, body) = register(&busy, &server, &metadata).await;
        assert_eq!(status, StatusCode::CREATED, "registration {i}: {body}");
    }
    let (status, headers, body) = register(&busy, &server, &metadata).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(headers.get("retry-after").is_some());
    // Another address is not affected.
    let (status, _, _) = register(&from(8), &server, &metadata).await;
    assert_eq!(status, StatusCode::CREATED);

    // The operator's switch (flag, environment or file).
    let closed = Server::start_with(&[("COFFER_OPEN_REGISTRATION", "false")]);
    let (status, _, body) = register(&client(), &closed, &metadata).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert!(
        body["error_description"].as_str().unwrap().contains("ask its operator"),
        "{body}"
    );
    let meta: Value = serde_json::from_str(
        &client()
            .get(closed.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(meta.get("registration_endpoint").is_none(), "{meta}");
    assert!(meta["token_endpoint"].is_string());
}

/// The answer to a sign-up form, from a fresh browser at `127.0.0.n`.
async fn sign_up_answer(server: &Server, n: u8, email: &str, password: &str) -> (Page, Duration) {
    let browser = server.browser_from(n);
    let form = browser.get("/sign-up").await;
    let csrf = form.hidden("csrf_token").unwrap();
    let started = Instant::now();
    let answer = browser
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await;
    (answer, started.elapsed())
}

#[tokio::test]
async fn sign_up_does_not_reveal_whether_an_address_is_taken() {
    let server = Server::start();
    server.new_user("ada@example.org", 9).await;
    let (new, new_time) = sign_up_answer(&server, 10, "bob@example.org", PASSWORD).await;
    let (taken, taken_time) = sign_up_answer(&server, 11, "ADA@example.org", "another password").await;
    for (what, page) in [("new", &new), ("taken", &taken)] {
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}: {}", page.body);
        assert_eq!(page.location(), Some("/sign-in?signed_up=1"), "{what}");
    }
    assert_eq!(new.body, taken.body);
    let cookies = |p: &Page| -> Vec<String> {
        p.headers
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split('=').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(cookies(&new), cookies(&taken), "no session for either");
    // Both take the same fixed minimum time.
    for t in [new_time, taken_time] {
        assert!(t >= Duration::from_millis(1400), "{t:?}");
    }
    let diff = new_time.abs_diff(taken_time);
    assert!(diff < Duration::from_millis(500), "{new_time:?} vs {taken_time:?}");
    // The sign-in page that follows says the same to both.
    let notice = server.browser().get("/sign-in?signed_up=1").await;
    assert!(
        notice
            .body
            .contains("Now sign in with the email address and password you chose.")
    );
    // Ada's password was not changed by the second sign-up.
    let ada = server.browser_from(12);
    assert_eq!(ada.sign_in("ada@example.org", PASSWORD).await.status, StatusCode::OK);
    let bob = server.browser_from(13);
    let dashboard = bob.sign_in("bob@example.org", PASSWORD).await;
    assert!(dashboard.url.ends_with("/dashboard"), "{}", dashboard.url);
}

#[tokio::test]
async fn on_https_cookies_are_host_prefixed_and_hsts_is_sent() {
    let server = Server::start_with(&[("COFFER_PUBLIC_URL", "https://vault.example")]);
    let browser = server.browser();
    let form = browser.get("/sign-in").await;
    assert_eq!(form.header("strict-transport-security"), Some("max-age=31536000"));
    let cookie = form.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("__Host-coffer_form="), "{cookie}");
    for attribute in ["Secure", "Path=/", "HttpOnly"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");

    // The prefixed cookies are the ones read: sign up and sign in by hand
    // (the test client does not send Secure cookies over plain http).
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let csrf = form.hidden("csrf_token").unwrap();
    let created = server.cli(
        &["user", "create", "--email", "ada@example.org"],
        &format!("{PASSWORD}\n"),
    );
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let plain = client();
    let answer = plain
        .post(server.url("/sign-in"))
        .header("cookie", format!("__Host-coffer_form={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("csrf_token", csrf.as_str()),
                    ("email", "ada@example.org"),
                    ("password", PASSWORD),
                ])
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let session = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-coffer_session="))
        .expect("a __Host- session cookie");
    assert!(session.contains("Secure") && session.contains("Path=/"), "{session}");
    let session_token = session.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let dashboard = plain
        .get(server.url("/dashboard"))
        .header("cookie", format!("__Host-coffer_session={session_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.headers().get("strict-transport-security").is_some());

    // Over plain http: no prefix, no HSTS.
    let plain_server = Server::start();
    let form = plain_server.browser().get("/sign-in").await;
    assert!(form.header("strict-transport-security").is_none());
    assert!(form.header("set-cookie").unwrap().starts_with("coffer_form="));
}

#[test]
fn a_master_key_other_users_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["user", "list", "--data-dir"])
            .arg(&data)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_CONFIG")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let key = data.join("master.key");
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let refused = run();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "mode {mode:o} accepted");
        assert!(
            stderr.contains("master.key") && stderr.contains("other users"),
            "{stderr}"
        );
        // `coffer serve` refuses it too, before listening.
        let serve = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(SERVE_ON_FREE_PORTS)
            .arg(&data)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_CONFIG")
            .output()
            .unwrap();
        assert!(!serve.status.success());
        assert!(String::from_utf8_lossy(&serve.stderr).contains("other users"));
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(run().status.success());
}
