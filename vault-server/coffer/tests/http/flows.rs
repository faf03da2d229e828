//! Whole flows over HTTP against the running binary: incremental consent,
//! narrowing and revoking on the dashboard, the device flow, PAR with
//! dynamic registration, introspection and revocation, DPoP, and the
//! operator commands.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Exchanges a code for a public client.
async fn exchange(server: &Server, client_id: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    let (status, _, body) = oauth_post(
        &client(),
        &server.url("/oauth/token"),
        &code_form(code, REDIRECT, client_id, Some(verifier)),
        &[],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn consent_shows_only_what_is_new_and_the_dashboard_narrows_and_revokes() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;

    // First consent: two lines, one unticked.
    let (verifier, challenge) = pkce();
    let consent = browser
        .visit(&authorize_path(
            &client_id,
            REDIRECT,
            "contacts.people:read notes.notes:read+create",
            Some(&challenge),
        ))
        .await;
    assert_eq!(consent.lines(), ["contacts.people:read", "notes.notes:read+create"]);
    assert!(
        consent.body.contains("See the people in your address book"),
        "plain words"
    );
    assert!(consent.body.contains("notes.example"), "the app's domain is shown");
    let answer = allow(&browser, &consent, &["contacts.people:read"]).await;
    let (status, tokens) = exchange(
        &server,
        &client_id,
        &query_param(answer.location().unwrap(), "code").unwrap(),
        &verifier,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "contacts.people:read");

    // Asking for more shows only the new line, and what is already allowed.
    let (verifier, challenge) = pkce();
    let consent = browser
        .visit(&authorize_path(
            &client_id,
            REDIRECT,
            "contacts.people:read tasks.items:read",
            Some(&challenge),
        ))
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    assert_eq!(consent.lines(), ["tasks.items:read"]);
    assert!(consent.body.contains("You already allowed"));
    assert!(consent.body.contains("also asks to"));
    let answer = allow(&browser, &consent, &["tasks.items:read"]).await;
    let (_, tokens) = exchange(
        &server,
        &client_id,
        &query_param(answer.location().unwrap(), "code").unwrap(),
        &verifier,
    )
    .await;
    // The token covers the whole request: the new line and the one allowed before.
    assert_eq!(tokens["scope"], "contacts.people:read tasks.items:read");
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Deny sends the user back with access_denied.
    let (_, challenge) = pkce();
    let consent = browser
        .visit(&authorize_path(
            &client_id,
            REDIRECT,
            "journal.entries:read",
            Some(&challenge),
        ))
        .await;
    let deny = answer_consent(&browser, &consent, &[], "deny").await;
    let location = deny.location().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(location, "code"), None);

    // The dashboard: the app, its grant in plain words, when, last access.
    let dashboard = browser.visit("/dashboard").await;
    assert!(dashboard.body.contains("Notes Pro"));
    assert!(dashboard.body.contains("See the people in your address book"));
    assert!(
        dashboard.body.contains("See the tasks on your to-do lists"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("never"), "last access");
    assert_eq!(dashboard.lines(), ["contacts.people:read", "tasks.items:read"]);
    let csrf = dashboard.hidden("csrf_token").unwrap();
    let grant_id = dashboard.hidden("grant_id").unwrap();

    // Narrow: untick the tasks line.
    let narrowed = browser
        .post(
            "/dashboard/access",
            &[
                ("csrf_token", &csrf),
                ("grant_id", &grant_id),
                ("line", "contacts.people:read"),
            ],
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::SEE_OTHER);
    let dashboard = browser.follow(narrowed).await;
    assert_eq!(dashboard.lines(), ["contacts.people:read"]);
    assert!(
        dashboard
            .body
            .contains("Saved. Notes Pro may now do only what is ticked.")
    );
    // Refreshed tokens follow the narrowed grant.
    let (status, tokens) = refresh_tokens(&server.base, &client_id, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "contacts.people:read");
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Unticking everything asks to revoke instead.
    let page = browser
        .post("/dashboard/access", &[("csrf_token", &csrf), ("grant_id", &grant_id)])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.h1().contains("Revoke access for Notes Pro?"), "{}", page.h1());

    // Revoke: one click shows the confirmation, which says the data stays …
    let confirm = browser
        .post("/dashboard/revoke", &[("csrf_token", &csrf), ("grant_id", &grant_id)])
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("The data it wrote stays in your vault."));
    assert_eq!(confirm.hidden("confirm").as_deref(), Some("yes"));
    // … and confirming revokes.
    let revoked = browser
        .post(
            "/dashboard/revoke",
            &[("csrf_token", &csrf), ("grant_id", &grant_id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let dashboard = browser.follow(revoked).await;
    assert!(dashboard.body.contains("Notes Pro can no longer use your data."));
    assert!(dashboard.body.contains("No apps are connected"));
    let (status, body) = refresh_tokens(&server.base, &client_id, &refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // Consenting again makes a new grant: the consent page is shown again.
    let (_, challenge) = pkce();
    let consent = browser
        .visit(&authorize_path(
            &client_id,
            REDIRECT,
            "contacts.people:read",
            Some(&challenge),
        ))
        .await;
    assert_eq!(consent.lines(), ["contacts.people:read"]);
}

#[tokio::test]
async fn device_flow_through_the_verification_page() {
    let server = Server::start();
    let app = server.register_app(
        "Vault CLI",
        &["--grant-type", "device-code", "--grant-type", "refresh-token"],
    );
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let http = client();
    let start = |scope: &'static str| {
        let (http, url, client_id) = (http.clone(), server.url("/oauth/device"), client_id.clone());
        async move { oauth_post(&http, &url, &[("client_id", &client_id), ("scope", scope)], &[]).await }
    };
    let (status, _, device) = start("notes.notes:read tasks.items:read").await;
    assert_eq!(status, StatusCode::OK, "{device}");
    let user_code = device["user_code"].as_str().unwrap().to_owned();
    assert_eq!(device["verification_uri"], server.url("/device"));
    let poll = |device_code: String| {
        let (http, url, client_id) = (http.clone(), server.url("/oauth/token"), client_id.clone());
        async move {
            oauth_post(
                &http,
                &url,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &device_code),
                    ("client_id", &client_id),
                ],
                &[],
            )
            .await
        }
    };
    // A second request that nobody answers: pending.
    let (_, _, other) = start("notes.notes:read").await;
    let (status, _, body) = poll(other["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );

    // The user opens verification_uri_complete: sign in first, then the form.
    let browser = server.browser();
    let complete = device["verification_uri_complete"].as_str().unwrap();
    let first = browser.get(complete).await;
    assert!(
        first
            .location()
            .unwrap()
            .starts_with("/sign-in?next=%2Fdevice%3Fuser_code%3D")
    );
    let next = query_param(&server.url(first.location().unwrap()), "next").unwrap();
    let form = browser.sign_up("ada@example.org", Some(&next)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.hidden("csrf_token").is_some());
    assert!(form.body.contains(&format!("value=\"{user_code}\"")), "code filled in");
    let csrf = form.hidden("csrf_token").unwrap();

    // A wrong code, then the right one typed in lower case without the dash.
    let wrong = browser
        .post("/device", &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")])
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("We don&#39;t know that code"));
    let typed = user_code.replace('-', "").to_lowercase();
    let consent = browser
        .post("/device", &[("csrf_token", &csrf), ("user_code", &typed)])
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.h1().contains("Vault CLI wants to use your data"));
    assert_eq!(consent.lines(), ["notes.notes:read", "tasks.items:read"]);
    let done = browser
        .post(
            "/device/decision",
            &[
                ("csrf_token", &csrf),
                ("request_id", &consent.hidden("request_id").unwrap()),
                ("line", "tasks.items:read"),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.h1().contains("Your device is connected"), "{}", done.h1());

    let (status, _, tokens) = poll(device["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "tasks.items:read");
    assert!(tokens["refresh_token"].is_string());

    // Typing codes is limited per session.
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        last = browser
            .post("/device", &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")])
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn registration_par_introspection_and_revocation() {
    let server = Server::start();
    let http = client();

    // RFC 7591: bad metadata, then a public client.
    let register = |body: Value| {
        let (http, url) = (http.clone(), server.url("/oauth/register"));
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status();
            let cache = response.headers().get("cache-control").cloned();
            (
                status,
                cache,
                serde_json::from_str::<Value>(&response.text().await.unwrap()).unwrap(),
            )
        }
    };
    let (status, _, body) = register(json!({"client_name": "Bad", "redirect_uris": ["http://evil.example/cb"]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri"))
    );
    let (status, _, body) = register(json!({"redirect_uris": [REDIRECT]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client_metadata"))
    );
    let (status, cache, app) = register(json!({
        "client_name": "Journal",
        "client_uri": "https://journal.example",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(cache.unwrap(), "no-store");
    assert!(app.get("client_secret").is_none());
    let client_id = app["client_id"].as_str().unwrap().to_owned();

    // PAR: push the request, then send only client_id + request_uri.
    let (verifier, challenge) = pkce();
    let (status, _, pushed) = oauth_post(
        &http,
        &server.url("/oauth/par"),
        &[
            ("client_id", &client_id),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "journal.entries:read"),
            ("state", "par-state"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{pushed}");
    let request_uri = pushed["request_uri"].as_str().unwrap();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    let path = format!(
        "/oauth/authorize?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &client_id)
            .append_pair("request_uri", request_uri)
            .finish()
    );
    // Not signed in: the pushed request is not used up by the detour.
    let browser = server.browser();
    let first = browser.get(&path).await;
    let next = query_param(&server.url(first.location().unwrap()), "next").unwrap();
    let consent = browser.sign_up("ada@example.org", Some(&next)).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("journal.example"));
    let answer = allow(&browser, &consent, &["journal.entries:read"]).await;
    let location = answer.location().unwrap();
    assert_eq!(query_param(location, "state").as_deref(), Some("par-state"));
    let (status, tokens) = exchange(&server, &client_id, &query_param(location, "code").unwrap(), &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // The request_uri is single use.
    let again = browser.get(&path).await;
    assert_eq!((again.status, again.location()), (StatusCode::BAD_REQUEST, None));

    // Introspection of both tokens.
    let introspect = |token: String| {
        let (http, url, client_id) = (http.clone(), server.url("/oauth/introspect"), client_id.clone());
        async move {
            oauth_post(&http, &url, &[("token", &token), ("client_id", &client_id)], &[])
                .await
                .2
        }
    };
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let info = introspect(access.clone()).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["scope"], "journal.entries:read");
    assert_eq!(info["client_id"], client_id.as_str());
    assert_eq!(info["iss"], server.base.as_str());
    assert_eq!(introspect(refresh_token.clone()).await["active"], true);

    // Revoking the refresh token revokes the family, its access token too.
    let (status, _, _) = oauth_post(
        &http,
        &server.url("/oauth/revoke"),
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
            ("client_id", &client_id),
        ],
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(introspect(refresh_token).await, json!({"active": false}));
    assert_eq!(introspect(access).await, json!({"active": false}));
}

#[tokio::test]
async fn dpop_proofs_at_the_token_endpoint_bind_the_tokens() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;
    let token_url = server.url("/oauth/token");
    let key = DpopKey::new();

    let (verifier, challenge) = pkce();
    let consent = browser
        .visit(&authorize_path(
            &client_id,
            REDIRECT,
            "notes.notes:read",
            Some(&challenge),
        ))
        .await;
    let answer = allow(&browser, &consent, &["notes.notes:read"]).await;
    let code = query_param(answer.location().unwrap(), "code").unwrap();
    let form = code_form(&code, REDIRECT, &client_id, Some(&verifier));
    let http = client();
    // The token endpoint's status and answer to `form` with `proof` (a
    // `DPoP` header, none when empty).
    let token = async |form: &[(&str, &str)], proof: &str| {
        let dpop: &[(&str, &str)] = if proof.is_empty() { &[] } else { &[("dpop", proof)] };
        let (status, _, body) = oauth_post(&http, &token_url, form, dpop).await;
        (status, body)
    };
    let refused = (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof"));
    // A malformed proof is refused without burning the code.
    let (status, body) = token(&form, "not.a.jwt").await;
    assert_eq!((status, body["error"].as_str()), refused);
    // A proof for another URL neither.
    let (status, body) = token(&form, &key.proof("POST", &server.url("/oauth/par"), None)).await;
    assert_eq!((status, body["error"].as_str()), refused);

    let (status, tokens) = token(&form, &key.proof("POST", &token_url, None)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    // Refreshing needs a proof with the same key.
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id.as_str()),
    ];
    let (status, body) = token(&refresh_form, "").await;
    assert_eq!((status, body["error"].as_str()), refused);
    let other = DpopKey::new();
    let (status, _) = token(&refresh_form, &other.proof("POST", &token_url, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = token(&refresh_form, &key.proof("POST", &token_url, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    // A replayed proof is refused.
    let proof = key.proof("POST", &token_url, None);
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ("client_id", client_id.as_str()),
    ];
    let (status, _) = token(&refresh_form, &proof).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = token(&refresh_form, &proof).await;
    assert_eq!((status, body["error"].as_str()), refused);
}

#[tokio::test]
async fn operators_create_and_list_users_and_apps_from_the_command_line() {
    let server = Server::start();

    let out = server.cli(
        &["user", "create", "--email", "Op@Example.org", "--json"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], "Op@Example.org");
    assert!(user["vault_id"].is_string());

    // The same email (any case) is refused; so is a short password.
    let out = server.cli(
        &["user", "create", "--email", "op@example.org"],
        &format!("{PASSWORD}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = server.cli(&["user", "create", "--email", "x@example.org"], "short\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));

    let out = server.cli(&["user", "list"], "");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("Op@Example.org") && table.contains("EMAIL"), "{table}");
    assert!(!table.contains("x@example.org"));
    let out = server.cli(&["user", "list", "--json"], "");
    let users: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);

    // The running server knows the user at once: sign in works.
    let browser = server.browser();
    let dashboard = browser.sign_in("op@example.org", PASSWORD).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Op@Example.org"));

    // Apps: a confidential one shows its secret once; bad redirect URIs are refused.
    let out = server.cli(
        &[
            "app",
            "register",
            "--name",
            "Server App",
            "--redirect-uri",
            "https://server.example/cb",
            "--auth-method",
            "client-secret-post",
        ],
        "",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && text.contains("client_secret: "), "{text}");
    let out = server.cli(
        &[
            "app",
            "register",
            "--name",
            "Bad",
            "--redirect-uri",
            "http://localhost/cb",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost"));
    let out = server.cli(&["app", "list"], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Server App") && text.contains("confidential"), "{text}");
}
