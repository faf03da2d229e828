//! The OAuth security checklist at the HTTP level, where the library's tests
//! do not already cover it: a redirect URI that does not match (or an
//! unknown client) never redirects; CSRF tokens on the consent and dashboard
//! forms (403, nothing changes); the security headers of every page and the
//! session cookie's attributes; PKCE required; sign-in throttling; OAuth
//! errors as RFC 6749 JSON with `WWW-Authenticate` on 401.

use crate::common::*;
use reqwest::StatusCode;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPE: &str = "contacts.people:read notes.notes:read+create";

fn assert_page_headers(page: &Page, what: &str) {
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp:?}");
    assert!(csp.contains("default-src 'none'"), "{what}: CSP {csp:?}");
    assert!(csp.contains("form-action 'self'"), "{what}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline"), "{what}: CSP {csp:?}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"), "{what}");
}

fn assert_not_cached(page: &Page, what: &str) {
    assert_eq!(page.header("cache-control"), Some("no-store"), "{what}");
}

/// Signs up a user on `browser` and returns the consent page for `scope`.
async fn consent_page(browser: &Browser, client_id: &str, scope: &str) -> (Page, String) {
    let (verifier, challenge) = pkce();
    let page = browser
        .visit(&authorize_path(client_id, REDIRECT, scope, Some(&challenge)))
        .await;
    (page, verifier)
}

#[tokio::test]
async fn redirect_uri_mismatch_and_unknown_client_show_an_error_page_and_never_redirect() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", "https://notes.example/callback");
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;
    let (_, challenge) = pkce();

    for (what, path) in [
        (
            "another redirect URI",
            authorize_path(&client_id, "https://evil.example/callback", SCOPE, Some(&challenge)),
        ),
        (
            "a prefix of the registered URI",
            authorize_path(
                &client_id,
                "https://notes.example/callback/more",
                SCOPE,
                Some(&challenge),
            ),
        ),
        (
            "unknown client",
            authorize_path(
                "01jzzzzzzzzzzzzzzzzzzzzzzz",
                "https://notes.example/callback",
                SCOPE,
                Some(&challenge),
            ),
        ),
        ("no client_id", "/oauth/authorize?response_type=code".to_owned()),
        (
            "a repeated redirect_uri",
            format!(
                "{}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
                authorize_path(&client_id, "https://notes.example/callback", SCOPE, Some(&challenge))
            ),
        ),
    ] {
        for signed_in in [true, false] {
            let b = if signed_in { &browser } else { &server.browser() };
            let page = b.get(&path).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{what}: {}", page.body);
            assert_eq!(page.location(), None, "{what}: must not redirect");
            assert!(!page.body.contains("evil.example"), "{what}: no link to the attacker");
            assert!(page.h1().contains("We did not send you back"), "{what}: {}", page.h1());
            assert_page_headers(&page, what);
        }
    }

    // The loopback exception: a registered http://127.0.0.1 URI matches any port.
    let loopback = server.public_app("CLI", "http://127.0.0.1/cb");
    let page = browser
        .get(&authorize_path(
            &loopback,
            "http://127.0.0.1:51234/cb",
            SCOPE,
            Some(&challenge),
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let page = browser
        .get(&authorize_path(
            &loopback,
            "http://127.0.0.2:51234/cb",
            SCOPE,
            Some(&challenge),
        ))
        .await;
    assert_eq!((page.status, page.location()), (StatusCode::BAD_REQUEST, None));
}

#[tokio::test]
async fn pkce_is_required_at_authorize_and_token() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;

    // No challenge: back to the app with invalid_request, never a code.
    let page = browser.get(&authorize_path(&client_id, REDIRECT, SCOPE, None)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let location = page.location().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(query_param(location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(location, "state").as_deref(), Some("s-123"));
    assert_eq!(query_param(location, "code"), None);

    // `plain` is refused too.
    let (verifier, _) = pkce();
    let plain = format!(
        "{}&code_challenge={verifier}&code_challenge_method=plain",
        authorize_path(&client_id, REDIRECT, SCOPE, None)
    );
    let page = browser.get(&plain).await;
    let location = page.location().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some("invalid_request"));
    assert!(query_param(location, "error_description").unwrap().contains("plain"));

    // A code, then the token request without the verifier.
    let (consent, _verifier) = consent_page(&browser, &client_id, SCOPE).await;
    let answer = allow(&browser, &consent, &[&consent.lines()[0]]).await;
    let code = query_param(answer.location().unwrap(), "code").unwrap();
    let http = client();
    let (status, headers, body) = oauth_post(
        &http,
        &server.url("/oauth/token"),
        &code_form(&code, REDIRECT, &client_id, None),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"].as_str().unwrap().contains("code_verifier"));
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    // A wrong verifier burns the code.
    let (wrong, _) = pkce();
    let (status, _, body) = oauth_post(
        &http,
        &server.url("/oauth/token"),
        &code_form(&code, REDIRECT, &client_id, Some(&wrong)),
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn csrf_is_refused_on_consent_and_dashboard_forms_and_nothing_changes() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;
    // Another user's valid CSRF token is as wrong as a made-up one.
    let mallory = server.browser();
    let mallory_dashboard = mallory.sign_up("mallory@example.org", None).await;
    let foreign = mallory_dashboard.hidden("csrf_token").unwrap();

    let (consent, verifier) = consent_page(&browser, &client_id, SCOPE).await;
    let request_id = consent.hidden("request_id").unwrap();
    let lines = consent.lines();
    for bad in [None, Some(""), Some("not-the-token"), Some(foreign.as_str())] {
        let mut form = vec![
            ("request_id", request_id.as_str()),
            ("line", lines[0].as_str()),
            ("decision", "allow"),
        ];
        if let Some(b) = bad {
            form.push(("csrf_token", b));
        }
        let page = browser.post("/oauth/authorize", &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{bad:?}");
        assert_eq!(page.location(), None);
        assert_page_headers(&page, "CSRF refusal");
    }
    // Nothing changed: no app is connected, and the request still works.
    let dashboard = browser.visit("/dashboard").await;
    assert!(dashboard.body.contains("No apps are connected"), "{}", dashboard.body);
    let answer = allow(&browser, &consent, &[&lines[0], &lines[1]]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let code = query_param(answer.location().unwrap(), "code").unwrap();
    let http = client();
    let (status, _, tokens) = oauth_post(
        &http,
        &server.url("/oauth/token"),
        &code_form(&code, REDIRECT, &client_id, Some(&verifier)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // The request id is single use.
    let again = allow(&browser, &consent, &[]).await;
    assert_eq!((again.status, again.location()), (StatusCode::BAD_REQUEST, None));

    // The dashboard's forms.
    let dashboard = browser.visit("/dashboard").await;
    let grant_id = dashboard.hidden("grant_id").unwrap();
    let before = dashboard.lines();
    assert_eq!(before, ["contacts.people:read", "notes.notes:read+create"]);
    for bad in ["", "not-the-token", foreign.as_str()] {
        let narrow = browser
            .post(
                "/dashboard/access",
                &[("csrf_token", bad), ("grant_id", &grant_id), ("line", &before[0])],
            )
            .await;
        assert_eq!(narrow.status, StatusCode::FORBIDDEN);
        let revoke = browser
            .post(
                "/dashboard/revoke",
                &[("csrf_token", bad), ("grant_id", &grant_id), ("confirm", "yes")],
            )
            .await;
        assert_eq!(revoke.status, StatusCode::FORBIDDEN);
        let sign_out = browser.post("/sign-out", &[("csrf_token", bad)]).await;
        assert_eq!(sign_out.status, StatusCode::FORBIDDEN);
    }
    // Another user cannot touch this grant even with their own valid token.
    let theirs = mallory
        .post(
            "/dashboard/revoke",
            &[("csrf_token", &foreign), ("grant_id", &grant_id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let after = browser.visit("/dashboard").await;
    assert_eq!(after.status, StatusCode::OK, "still signed in");
    assert_eq!(after.lines(), before, "the grant did not change");
    // And the refresh token still works.
    let (status, _) = refresh_tokens(&server.base, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn sign_in_and_sign_up_forms_refuse_a_forged_or_missing_csrf_token() {
    let server = Server::start();
    server.browser().sign_up("ada@example.org", None).await;
    // Sign-up and sign-in forms carry a token bound to a cookie.
    let fresh = server.browser();
    let form = fresh.get("/sign-in").await;
    assert!(form.hidden("csrf_token").is_some());
    let page = fresh
        .post(
            "/sign-in",
            &[
                ("csrf_token", "forged"),
                ("email", "ada@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = server
        .browser()
        .post(
            "/sign-up",
            &[
                ("email", "eve@example.org"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_send_security_headers_and_a_locked_down_form_cookie() {
    let server = Server::start();
    let browser = server.browser();
    for path in ["/sign-in", "/sign-up", "/no-such-page"] {
        let page = browser.get(path).await;
        assert_page_headers(&page, path);
        assert!(page.header("content-type").unwrap().starts_with("text/html"), "{path}");
    }
    // The form cookie is set once and reused by later forms.
    let sign_in = server.browser().get("/sign-in").await;
    let form_cookie = sign_in.header("set-cookie").unwrap();
    assert!(form_cookie.starts_with("coffer_form="), "{form_cookie}");
    assert!(
        form_cookie.contains("HttpOnly") && form_cookie.contains("SameSite=Lax"),
        "{form_cookie}"
    );
    let css = browser.get("/static/coffer.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn sign_up_starts_no_session_and_sign_in_sets_a_locked_down_session_cookie() {
    let server = Server::start();
    let browser = server.browser();
    // Sign up: the session cookie.
    let form = browser.get("/sign-up").await;
    let csrf = form.hidden("csrf_token").unwrap();
    let answer = browser
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "ada@example.org"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), Some("/sign-in?signed_up=1"));
    assert!(
        answer
            .headers
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("coffer_session=")),
        "sign-up starts no session"
    );
    // Sign in: the session cookie.
    let form = browser.get("/sign-in?signed_up=1").await;
    let csrf = form.hidden("csrf_token").unwrap();
    let answer = browser
        .post(
            "/sign-in",
            &[
                ("csrf_token", &csrf),
                ("email", "ada@example.org"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), Some("/dashboard"));
    let session = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("coffer_session="))
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    assert!(!session.contains("Secure"), "served over plain http: {session}");
}

#[tokio::test]
async fn signed_in_pages_and_json_endpoints_send_security_headers_and_are_never_cached() {
    let server = Server::start();
    let client_id = server.public_app("Notes Pro", REDIRECT);
    let browser = server.browser();
    browser.sign_up("ada@example.org", None).await;
    // Authenticated pages.
    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert_page_headers(&dashboard, "dashboard");
    assert_not_cached(&dashboard, "dashboard");
    let (consent, _) = consent_page(&browser, &client_id, SCOPE).await;
    assert_eq!(consent.status, StatusCode::OK);
    assert_page_headers(&consent, "consent");
    assert_not_cached(&consent, "consent");
    // The consent form's answer redirects to the app: its origin is allowed
    // as a form target, nothing else is.
    let csp = consent.header("content-security-policy").unwrap();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:*;"), "{csp}");
    // So does the sign-in page on the way to an authorization request (the
    // grant may cover it: then signing in ends at the app), and only then.
    let (_, challenge) = pkce();
    let next = authorize_path(&client_id, REDIRECT, SCOPE, Some(&challenge));
    let signed_out = server.browser();
    let page = signed_out.get(&next).await;
    let sign_in = signed_out.get(page.location().unwrap()).await;
    let csp = sign_in.header("content-security-policy").unwrap();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:*;"), "{csp}");
    let plain = signed_out.get("/sign-in?next=%2Fdashboard").await;
    let csp = plain.header("content-security-policy").unwrap();
    assert!(csp.contains("form-action 'self';"), "{csp}");
    let device = browser.get("/device").await;
    assert_page_headers(&device, "device");
    assert_not_cached(&device, "device");

    // JSON endpoints get the headers too, and are never cached.
    let meta = browser.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta.header("x-content-type-options"), Some("nosniff"));
    assert_not_cached(&meta, "metadata");
}

#[tokio::test]
async fn sign_up_refuses_a_short_password_and_does_not_reveal_a_taken_address() {
    let server = Server::start();
    server.browser().sign_up("ada@example.org", None).await;
    // Sign-up with a password that is too short or mistyped is refused.
    let other = server.browser();
    let form = other.get("/sign-up").await;
    let csrf = form.hidden("csrf_token").unwrap();
    let page = other
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "bob@example.org"),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("at least 8 characters"));
    let page = other
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "ADA@example.org"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    // A taken address is not revealed: the same answer as a new one.
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/sign-in?signed_up=1"));
    assert!(!page.body.contains("already"), "{}", page.body);
}

#[tokio::test]
async fn sign_in_is_throttled_and_sign_out_ends_the_session() {
    let server = Server::start();
    server.browser().sign_up("ada@example.org", None).await;

    let browser = server.browser();
    // Not signed in: the dashboard sends you to sign in and back.
    let page = browser.get("/dashboard").await;
    assert_eq!(page.location(), Some("/sign-in?next=%2Fdashboard"));

    for _ in 0..5 {
        let page = browser.sign_in("ada@example.org", "wrong password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.body.contains("don&#39;t match an account"), "{}", page.body);
    }
    // The sixth attempt is refused without checking the password.
    let page = browser.sign_in("ada@example.org", PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.header("retry-after").is_some());
    assert!(page.body.contains("Too many attempts"));
    // Case does not get around it.
    let page = browser.sign_in("ADA@example.org", PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);

    // Another account from the same address is not locked.
    server.browser().sign_up("bob@example.org", None).await;
    let bob = server.browser();
    let dashboard = bob.sign_in("bob@example.org", PASSWORD).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("bob@example.org"));

    // Sign out.
    let csrf = dashboard.hidden("csrf_token").unwrap();
    let page = bob.post("/sign-out", &[("csrf_token", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        page.headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("coffer_session=;") && c.to_str().unwrap().contains("Max-Age=0"))
    );
    let page = bob.get("/dashboard").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn oauth_errors_are_json_with_www_authenticate_on_401() {
    let server = Server::start();
    let app = server.register_app(
        "Server App",
        &[
            "--redirect-uri",
            "https://server.example/cb",
            "--auth-method",
            "client-secret-basic",
        ],
    );
    let client_id = app["client_id"].as_str().unwrap();
    assert!(app["client_secret"].as_str().unwrap().len() >= 43);
    let http = client();
    let token_url = server.url("/oauth/token");

    // Wrong secret in HTTP Basic.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:wrong"));
    let (status, headers, body) = oauth_post(
        &http,
        &token_url,
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        &[("authorization", &format!("Basic {basic}"))],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");

    // Unknown grant type, repeated parameter, missing grant type.
    let public = server.public_app("Public", "https://public.example/cb");
    let (status, _, body) = oauth_post(
        &http,
        &token_url,
        &[("grant_type", "password"), ("client_id", &public)],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, _, body) = oauth_post(
        &http,
        &token_url,
        &[
            ("grant_type", "refresh_token"),
            ("grant_type", "refresh_token"),
            ("client_id", &public),
        ],
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert!(body["error_description"].as_str().unwrap().contains("repeated"));

    // Revocation and introspection need client authentication first.
    for path in ["/oauth/revoke", "/oauth/introspect"] {
        let (status, headers, body) = oauth_post(&http, &server.url(path), &[("token", "x")], &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{path}"
        );
        assert!(headers.contains_key("www-authenticate"));
    }
    // Unknown tokens: revocation says OK, introspection says inactive.
    let (status, _, body) = oauth_post(
        &http,
        &server.url("/oauth/revoke"),
        &[("token", "unknown"), ("client_id", &public)],
        &[],
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::Value::Null));
    let (status, _, body) = oauth_post(
        &http,
        &server.url("/oauth/introspect"),
        &[("token", "unknown"), ("client_id", &public)],
        &[],
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({"active": false})));
}
