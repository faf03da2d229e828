//! CORS for browser apps on their own origin (`web/cors.rs`): the origins
//! of registered apps' redirect URIs get the CORS headers on the data API,
//! the token endpoints and the metadata, for preflights and for the requests
//! that follow; any other origin gets none (and never a server error); the
//! pages never get any; an app registered while the server runs works at
//! once; an absurd `Origin` header is just not allowed.
//!
//! Every `/v1` answer here is also checked against the OpenAPI document,
//! as the `Api` client does.

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

/// The origin of the browser app the tests register.
const SPA: &str = "https://spa.example";
/// Its redirect URI.
const SPA_REDIRECT: &str = "https://spa.example/callback";
const SCOPE: &str = "notes.notes:read+create";

/// An answer: status, headers, body text.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `access-control-*` headers the answer carries.
    fn cors_headers(&self) -> Vec<String> {
        self.headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    }

    /// Whether `Vary` names `Origin`.
    fn varies_by_origin(&self) -> bool {
        self.headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case("origin"))
    }

    /// The answer is the CORS answer for the allowed `origin`.
    #[track_caller]
    fn expect_allowed(&self, origin: &str, what: &str) {
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some(origin),
            "{what}: {:?}",
            self.headers
        );
        assert!(self.varies_by_origin(), "{what}: Vary {:?}", self.headers);
        assert!(
            self.header("access-control-allow-credentials").is_none(),
            "{what}: credentials are never allowed: {:?}",
            self.headers
        );
    }

    /// The answer carries no CORS header (the browser keeps it from the page).
    #[track_caller]
    fn expect_no_cors(&self, what: &str) {
        assert!(self.cors_headers().is_empty(), "{what}: {:?}", self.headers);
    }
}

/// Sends `method path` with `headers` (and a JSON body); the answer, checked
/// against the OpenAPI document when it is a `/v1` path.
async fn send(server: &Server, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let client = Client::builder().no_proxy().build().unwrap();
    let mut request = client.request(method.clone(), server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let answer = Answer {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap_or_default(),
    };
    let route = path.split('?').next().unwrap_or_default();
    if route.starts_with("/v1/") && route != contract::DOCUMENT_PATH {
        let content_type = answer.header("content-type").unwrap_or_default().to_owned();
        contract::of(&client, &server.base)
            .await
            .check(
                method.as_str(),
                route,
                answer.status.as_u16(),
                &content_type,
                &answer.text,
            )
            .unwrap_or_else(|e| panic!("the answer breaks the OpenAPI document: {e}"));
    }
    answer
}

/// A CORS preflight from `origin` for `method` with `request_headers`.
async fn preflight(server: &Server, path: &str, origin: &str, method: &str, request_headers: &str) -> Answer {
    send(
        server,
        Method::OPTIONS,
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", request_headers),
        ],
        None,
    )
    .await
}

/// A preflight an allowed origin gets: 204, no body, the methods and
/// headers the API takes, cached for 10 minutes.
#[track_caller]
fn expect_allowed_preflight(answer: &Answer, origin: &str, what: &str) {
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{what}: {}", answer.text);
    assert!(answer.text.is_empty(), "{what}: {}", answer.text);
    answer.expect_allowed(origin, what);
    let methods = answer.header("access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.split(',').any(|x| x.trim() == m), "{what}: methods {methods:?}");
    }
    let allowed = answer
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "content-type",
        "dpop",
        "last-event-id",
        "if-none-match",
    ] {
        assert!(allowed.split(',').any(|x| x.trim() == h), "{what}: headers {allowed:?}");
    }
    assert_eq!(answer.header("access-control-max-age"), Some("600"), "{what}");
}

/// A server, a signed-up user, and a public app whose redirect URIs are the
/// tests' usual one and one on [`SPA`]; its client id and tokens.
async fn spa_app(server: &Server) -> (String, Tokens) {
    let user = server.new_user("ada@example.org", 2).await;
    let app = server.register_app(
        "Notes SPA",
        &["--redirect-uri", APP_REDIRECT, "--redirect-uri", SPA_REDIRECT],
    );
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let tokens = authorize_app(&user, &client_id, SCOPE, None).await;
    (client_id, tokens)
}

#[tokio::test]
async fn a_registered_app_origin_gets_cors_on_the_api_preflight_and_request() {
    let server = Server::start();
    let (client_id, tokens) = spa_app(&server).await;
    let bearer = format!("Bearer {}", tokens.access);
    let rows = "/v1/tables/notes.notes/rows";

    // A JSON POST with a token needs a preflight.
    let answer = preflight(&server, rows, SPA, "POST", "authorization,content-type").await;
    expect_allowed_preflight(&answer, SPA, "preflight of POST rows");
    // PATCH and DELETE on a row, with a DPoP proof.
    let answer = preflight(
        &server,
        "/v1/tables/notes.notes/rows/01J0000000000000000000000",
        SPA,
        "PATCH",
        "authorization,content-type,dpop",
    )
    .await;
    expect_allowed_preflight(&answer, SPA, "preflight of PATCH a row");

    // The request itself: the app reads the answer and its headers.
    let inserted = send(
        &server,
        Method::POST,
        rows,
        &[("origin", SPA), ("authorization", &bearer)],
        Some(&json!({"title": "from the browser"})),
    )
    .await;
    assert_eq!(inserted.status, StatusCode::CREATED, "{}", inserted.text);
    inserted.expect_allowed(SPA, "POST rows");
    let exposed = inserted
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["www-authenticate", "retry-after", "etag"] {
        assert!(exposed.split(',').any(|x| x.trim() == h), "{exposed:?}");
    }
    let row: Value = serde_json::from_str(&inserted.text).unwrap();
    assert_eq!(row["_created_by"], client_id.as_str());

    let listed = send(
        &server,
        Method::GET,
        rows,
        &[("origin", SPA), ("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.expect_allowed(SPA, "GET rows");

    // A refusal is readable too, with its challenge: the app learns why.
    let refused = send(&server, Method::GET, rows, &[("origin", SPA)], None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    refused.expect_allowed(SPA, "401 on rows");
    assert!(refused.header("www-authenticate").is_some(), "{:?}", refused.headers);

    // And a table the token does not name (a problem, not a CORS error).
    let missing = send(
        &server,
        Method::GET,
        "/v1/tables/contacts.people/rows",
        &[("origin", SPA), ("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    missing.expect_allowed(SPA, "404 under /v1");

    // The OpenAPI document, for clients generated in the browser.
    let document = send(&server, Method::GET, "/v1/openapi.json", &[("origin", SPA)], None).await;
    assert_eq!(document.status, StatusCode::OK);
    document.expect_allowed(SPA, "openapi.json");

    // Without an Origin header (not a browser's cross-origin request): no
    // CORS header, but the answer still varies by origin.
    let plain = send(&server, Method::GET, rows, &[("authorization", &bearer)], None).await;
    assert_eq!(plain.status, StatusCode::OK);
    plain.expect_no_cors("no Origin");
    assert!(plain.varies_by_origin(), "{:?}", plain.headers);
}

#[tokio::test]
async fn a_registered_app_origin_gets_cors_on_the_token_endpoints_and_metadata() {
    let server = Server::start();
    let (client_id, tokens) = spa_app(&server).await;
    let refresh = tokens.refresh.clone().expect("a refresh token");

    // A DPoP-bound token request needs a preflight; a plain form post does not.
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/par"] {
        let answer = preflight(&server, path, SPA, "POST", "dpop").await;
        expect_allowed_preflight(&answer, SPA, &format!("preflight of {path}"));
    }
    let client = Client::builder().no_proxy().build().unwrap();
    let (status, headers, body) = oauth_post(
        &client,
        &server.url("/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client_id),
        ],
        &[("origin", SPA)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some(SPA),
        "{headers:?}"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());
    // An OAuth error is readable too.
    let (status, headers, body) = oauth_post(
        &client,
        &server.url("/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "nope"),
            ("client_id", &client_id),
        ],
        &[("origin", SPA)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some(SPA)
    );
    let revoked = oauth_post(
        &client,
        &server.url("/oauth/revoke"),
        &[("token", &refresh), ("client_id", &client_id)],
        &[("origin", SPA)],
    )
    .await;
    assert_eq!(
        revoked
            .1
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(SPA),
        "revoke: {} {:?}",
        revoked.0,
        revoked.1
    );

    let metadata = send(
        &server,
        Method::GET,
        "/.well-known/oauth-authorization-server",
        &[("origin", SPA)],
        None,
    )
    .await;
    assert_eq!(metadata.status, StatusCode::OK);
    metadata.expect_allowed(SPA, "metadata");
}

#[tokio::test]
async fn an_unregistered_origin_gets_no_cors_headers() {
    let server = Server::start();
    let (_, tokens) = spa_app(&server).await;
    let bearer = format!("Bearer {}", tokens.access);
    let rows = "/v1/tables/notes.notes/rows";
    for origin in [
        "https://evil.example",
        // Look-alikes of the registered origin.
        "https://spa.example.evil.example",
        "https://evil-spa.example",
        "http://spa.example",
        "https://spa.example:8443",
        // The tests' loopback redirect URI is http://127.0.0.1:9/callback:
        // its origin is allowed, another port is not.
        "http://127.0.0.1:8080",
        "http://127.0.0.1",
        "null",
    ] {
        for path in [rows, "/oauth/token"] {
            let answer = preflight(&server, path, origin, "POST", "authorization,content-type").await;
            assert_eq!(
                answer.status,
                StatusCode::NO_CONTENT,
                "{origin} {path}: {}",
                answer.text
            );
            answer.expect_no_cors(&format!("preflight from {origin} on {path}"));
            assert!(answer.varies_by_origin(), "{origin}: {:?}", answer.headers);
        }
        // The request is served (a non-browser client could send it anyway);
        // the browser keeps the answer from the page.
        let answer = send(
            &server,
            Method::GET,
            rows,
            &[("origin", origin), ("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{origin}: {}", answer.text);
        answer.expect_no_cors(&format!("GET from {origin}"));
        assert!(answer.varies_by_origin(), "{origin}: {:?}", answer.headers);
    }
    // The registered loopback origin, for contrast.
    let answer = preflight(&server, rows, "http://127.0.0.1:9", "POST", "authorization").await;
    expect_allowed_preflight(&answer, "http://127.0.0.1:9", "the loopback redirect URI's origin");
    // Two Origin headers are no origin.
    let answer = send(
        &server,
        Method::GET,
        rows,
        &[("origin", SPA), ("origin", SPA), ("authorization", &bearer)],
        None,
    )
    .await;
    answer.expect_no_cors("two Origin headers");
}

#[tokio::test]
async fn pages_never_get_cors_headers() {
    let server = Server::start();
    let (client_id, _) = spa_app(&server).await;
    let (_, challenge) = pkce();
    let authorize = authorize_path(&client_id, SPA_REDIRECT, SCOPE, Some(&challenge));
    for path in [
        "/",
        "/sign-in",
        "/sign-up",
        "/dashboard",
        "/device",
        authorize.as_str(),
        "/healthz",
    ] {
        let answer = send(&server, Method::GET, path, &[("origin", SPA)], None).await;
        assert!(answer.status.as_u16() < 500, "{path}: {}", answer.status);
        answer.expect_no_cors(&format!("GET {path}"));
        let answer = preflight(&server, path, SPA, "POST", "content-type").await;
        assert_ne!(
            answer.status,
            StatusCode::NO_CONTENT,
            "{path}: the pages answer no preflight"
        );
        answer.expect_no_cors(&format!("preflight of {path}"));
    }
    // Posting a page's form from the app's origin gets no CORS header either.
    let answer = send(
        &server,
        Method::POST,
        "/sign-in",
        &[("origin", SPA), ("content-type", "application/x-www-form-urlencoded")],
        None,
    )
    .await;
    answer.expect_no_cors("POST /sign-in");
    // Nor do the OAuth endpoints a browser app has no use for.
    for path in ["/oauth/register", "/oauth/device", "/oauth/introspect"] {
        let answer = preflight(&server, path, SPA, "POST", "content-type").await;
        answer.expect_no_cors(&format!("preflight of {path}"));
    }
}

#[tokio::test]
async fn an_app_registered_while_the_server_runs_works_at_once() {
    let server = Server::start();
    let (_, tokens) = spa_app(&server).await;
    let bearer = format!("Bearer {}", tokens.access);
    let rows = "/v1/tables/notes.notes/rows";
    let late = "https://late.example";
    // Not yet registered (and the server has read the origins once).
    let before = send(
        &server,
        Method::GET,
        rows,
        &[("origin", late), ("authorization", &bearer)],
        None,
    )
    .await;
    before.expect_no_cors("before registration");

    // Registered by the operator's command, another process.
    server.public_app("Late App", "https://late.example/callback");
    let answer = preflight(&server, rows, late, "POST", "authorization,content-type").await;
    expect_allowed_preflight(&answer, late, "right after `coffer app register`");
    let after = send(
        &server,
        Method::GET,
        rows,
        &[("origin", late), ("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::OK);
    after.expect_allowed(late, "GET after registration");

    // Registered at /oauth/register, in the server itself.
    let dynamic = "http://127.0.0.1:5173";
    let answer = preflight(&server, rows, dynamic, "POST", "authorization").await;
    answer.expect_no_cors("before dynamic registration");
    let registered = Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(server.url("/oauth/register"))
        .header("content-type", "application/json")
        .body(
            json!({
                "client_name": "Vite App",
                "redirect_uris": ["http://127.0.0.1:5173/callback"],
                "token_endpoint_auth_method": "none",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.status(),
        StatusCode::CREATED,
        "{}",
        registered.text().await.unwrap()
    );
    let answer = preflight(&server, rows, dynamic, "POST", "authorization").await;
    expect_allowed_preflight(&answer, dynamic, "right after /oauth/register");
    // The earlier origins still work.
    let answer = preflight(&server, rows, SPA, "POST", "authorization").await;
    expect_allowed_preflight(&answer, SPA, "the first app");
}

#[tokio::test]
async fn an_absurd_origin_header_is_not_allowed_and_breaks_nothing() {
    let server = Server::start();
    let (_, tokens) = spa_app(&server).await;
    let bearer = format!("Bearer {}", tokens.access);
    let rows = "/v1/tables/notes.notes/rows";
    let long = format!("https://{}.example", "a".repeat(10_000));
    // A registered origin with a long tail is still only a prefix match away.
    let padded = format!("{SPA}{}", "/".repeat(5_000));
    for origin in [long.as_str(), padded.as_str(), "*", "https://*.example"] {
        let what = &origin[..origin.len().min(40)];
        let answer = preflight(&server, rows, origin, "POST", "authorization").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{what}: {}", answer.text);
        answer.expect_no_cors(what);
        let answer = send(
            &server,
            Method::GET,
            rows,
            &[("origin", origin), ("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{what}: {}", answer.text);
        answer.expect_no_cors(what);
    }
    // Bytes that are not text.
    let client = Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(server.url(rows))
        .header(
            "origin",
            reqwest::header::HeaderValue::from_bytes(b"https://sp\xe4.example").unwrap(),
        )
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    // And the server still answers the registered origin.
    let answer = preflight(&server, rows, SPA, "POST", "authorization").await;
    expect_allowed_preflight(&answer, SPA, "after the absurd ones");
}
