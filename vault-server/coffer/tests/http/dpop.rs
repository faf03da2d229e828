//! DPoP-bound access tokens (RFC 9449) on the data API over HTTP: a token
//! bound at the real token endpoint is accepted only with the `DPoP` scheme
//! and a fresh proof of its key for the request (`htm`, `htu`, `ath`).

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Runs the authorization code flow for `client_id` with a DPoP proof of
/// `key` at the token endpoint; the token endpoint's answer.
async fn bound_tokens(server: &Server, browser: &Browser, client_id: &str, scope: &str, key: &DpopKey) -> Value {
    let (verifier, challenge) = pkce();
    let page = browser
        .visit(&authorize_path(client_id, APP_REDIRECT, scope, Some(&challenge)))
        .await;
    assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
    let lines = page.lines();
    let answer = allow(browser, &page, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "consent answer: {}", answer.body);
    let code = query_param(answer.location().unwrap(), "code").unwrap();
    let token_url = server.url("/oauth/token");
    let (status, _, body) = oauth_post(
        &client(),
        &token_url,
        &code_form(&code, APP_REDIRECT, client_id, Some(&verifier)),
        &[("dpop", &key.proof("POST", &token_url, None))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token exchange: {body}");
    body
}

/// Sends `method path` with `Authorization: auth` and, if given, a `DPoP`
/// header and a JSON body.
async fn send(api: &Api, method: Method, path: &str, auth: &str, proof: Option<&str>, body: Option<&Value>) -> Reply {
    let mut request = api
        .client
        .request(method, format!("{}{path}", api.base))
        .header(reqwest::header::AUTHORIZATION, auth);
    if let Some(p) = proof {
        request = request.header("dpop", p);
    }
    if let Some(b) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(b).unwrap());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply::new(status, headers, text)
}

/// The `WWW-Authenticate` header of an answer.
fn challenge(reply: &Reply) -> &str {
    reply
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Asserts a 401 for a refused DPoP proof, with the RFC 9449 §7.1 challenge.
#[track_caller]
fn assert_invalid_proof(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.text);
    reply.expect_problem(401, "invalid-token");
    assert_eq!(reply.body["reason"], "invalid_dpop_proof", "{what}: {}", reply.text);
    assert!(
        challenge(reply).starts_with("DPoP ") && challenge(reply).contains("error=\"invalid_dpop_proof\""),
        "{what}: {}",
        challenge(reply)
    );
}

#[tokio::test]
async fn a_bound_token_needs_a_fresh_proof_of_its_key() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Notes Pro");
    let key = DpopKey::new();
    let tokens = bound_tokens(&server, &user, &client_id, "notes.notes:read", &key).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let token = tokens["access_token"].as_str().unwrap();
    let api = server.api(token);
    let path = rows_path("notes.notes", &[]);
    let url = server.url(&path);
    let dpop = format!("DPoP {token}");

    // As a bearer token: refused, and told to use DPoP.
    let reply = api.get(&path).await;
    reply.expect_problem(401, "invalid-token");
    assert_eq!(reply.body["reason"], "dpop_required", "{}", reply.text);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("DPoP"),
        "{}",
        reply.text
    );
    assert!(challenge(&reply).starts_with("DPoP "), "{}", challenge(&reply));
    // Even with a valid proof beside it.
    let proof = key.proof("GET", &url, Some(&ath(token)));
    let reply = send(&api, Method::GET, &path, &format!("Bearer {token}"), Some(&proof), None).await;
    assert_eq!(reply.body["reason"], "dpop_required", "{}", reply.text);

    // The DPoP scheme with a fresh proof (right htm, htu and ath): allowed.
    let proof = key.proof("GET", &url, Some(&ath(token)));
    let reply = send(&api, Method::GET, &path, &dpop, Some(&proof), None).await;
    reply.expect(200);
    assert_eq!(reply.rows().len(), 0);
    // The same proof again is a replay.
    let reply = send(&api, Method::GET, &path, &dpop, Some(&proof), None).await;
    assert_invalid_proof(&reply, "replayed proof");

    // The query is not part of `htu`.
    let listed = rows_path("notes.notes", &[("limit", "5")]);
    let proof = key.proof("GET", &url, Some(&ath(token)));
    send(&api, Method::GET, &listed, &dpop, Some(&proof), None)
        .await
        .expect(200);
    // Another route, another method: SQL over POST.
    let sql_url = server.url("/v1/sql");
    let proof = key.proof("POST", &sql_url, Some(&ath(token)));
    let body = json!({"sql": "SELECT count(*) AS n FROM notes.notes", "params": []});
    let reply = send(&api, Method::POST, "/v1/sql", &dpop, Some(&proof), Some(&body)).await;
    reply.expect(200);
    assert_eq!(reply.body["rows"], json!([[0]]), "{}", reply.text);

    // Refused: another key, no ath, a wrong ath, the wrong method or URL,
    // no proof at all, two proofs.
    let other = DpopKey::new();
    // Each refusal says why in `detail`.
    let refused = [
        (
            "another key",
            Some(other.proof("GET", &url, Some(&ath(token)))),
            "another key",
        ),
        ("no ath", Some(key.proof("GET", &url, None)), "no ath"),
        (
            "wrong ath",
            Some(key.proof("GET", &url, Some(&ath("another token")))),
            "ath does not match",
        ),
        ("wrong method", Some(key.proof("POST", &url, Some(&ath(token)))), "htm"),
        (
            "wrong URL",
            Some(key.proof("GET", &server.url("/v1/tables"), Some(&ath(token)))),
            "htu",
        ),
        ("not a JWT", Some("not.a.jwt".to_owned()), "DPoP proof"),
        ("no proof", None, "no `DPoP` proof header"),
    ];
    for (what, proof, why) in refused {
        let reply = send(&api, Method::GET, &path, &dpop, proof.as_deref(), None).await;
        assert_invalid_proof(&reply, what);
        let detail = reply.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{what}: {detail}");
    }
    let response = api
        .client
        .get(&url)
        .header("authorization", &dpop)
        .header("dpop", key.proof("GET", &url, Some(&ath(token))))
        .header("dpop", key.proof("GET", &url, Some(&ath(token))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The key still works afterwards (a refused proof burns nothing else).
    let proof = key.proof("GET", &url, Some(&ath(token)));
    send(&api, Method::GET, &path, &dpop, Some(&proof), None)
        .await
        .expect(200);
}

#[tokio::test]
async fn an_unbound_token_may_use_the_dpop_scheme() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Notes Pro");
    let tokens = authorize_app(&user, &client_id, "notes.notes:read", None).await;
    let token = tokens.access.as_str();
    let api = server.api(token);
    let path = rows_path("notes.notes", &[]);
    let url = server.url(&path);
    let dpop = format!("DPoP {token}");

    api.get(&path).await.expect(200);
    let key = DpopKey::new();
    let proof = key.proof("GET", &url, Some(&ath(token)));
    send(&api, Method::GET, &path, &dpop, Some(&proof), None)
        .await
        .expect(200);
    // With the DPoP scheme the proof is checked all the same.
    let reply = send(&api, Method::GET, &path, &dpop, Some(&proof), None).await;
    assert_invalid_proof(&reply, "replayed proof");
    let reply = send(&api, Method::GET, &path, &dpop, None, None).await;
    assert_invalid_proof(&reply, "no proof");
    // A bearer failure keeps the Bearer challenge.
    let reply = send(&api, Method::GET, &path, "Bearer not-a-token", None, None).await;
    reply.expect_problem(401, "invalid-token");
    assert!(challenge(&reply).starts_with("Bearer "), "{}", challenge(&reply));
}
