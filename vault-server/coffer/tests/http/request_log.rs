//! One log line per request: method, route template, status, latency and
//! the app; never ids from the path, the query, a body or a token.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn each_request_is_logged_once_without_values_or_tokens() {
    let server = Server::start_logging();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Logged");
    let tokens = authorize_app(&user, &client_id, "notes.notes:read+create", None).await;
    let api = server.api(&tokens.access);
    let reply = api
        .post("/v1/tables/notes.notes/rows", &json!({"title": "secret-title-7"}))
        .await;
    reply.expect(201);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    api.get(&row_path("notes.notes", &id, &[])).await.expect(200);
    api.get(&rows_path("notes.notes", &[("title", "eq.secret-title-7")]))
        .await
        .expect(200);
    // The log is written as responses go out; give the last line a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log.lock().unwrap().clone();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("coffer::request")).collect();
    let line = |route: &str, method: &str| {
        requests
            .iter()
            .find(|l| l.contains(&format!("route={route} ")) && l.contains(&format!("method={method}")))
            .unwrap_or_else(|| panic!("no {method} {route} line in:\n{log}"))
            .to_string()
    };
    let get_row = line("/v1/tables/{table}/rows/{id}", "GET");
    assert!(get_row.contains("status=200"), "{get_row}");
    assert!(get_row.contains(&format!("app={client_id}")), "{get_row}");
    assert!(get_row.contains("ms="), "{get_row}");
    line("/v1/tables/{table}/rows", "POST");
    let sign_up = line("/sign-up", "POST");
    assert!(sign_up.contains("app=-"), "{sign_up}");
    for secret in [
        "secret-title-7",
        id.as_str(),
        tokens.access.as_str(),
        "ada@example.org",
        PASSWORD,
    ] {
        assert!(!log.contains(secret), "the log holds `{secret}`:\n{log}");
    }
}
