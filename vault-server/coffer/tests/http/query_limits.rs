//! Requests built to stop the server (deep expressions, thousands of
//! filters, endless queries) get a problem answer, and the server goes on
//! answering everyone else.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

async fn app(server: &Server, scope: &str) -> Api {
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Hostile");
    let tokens = authorize_app(&user, &client_id, scope, None).await;
    server.api(&tokens.access)
}

#[tokio::test]
async fn deep_statements_and_floods_of_filters_are_refused_and_the_server_stays_up() {
    let server = Server::start();
    let api = app(&server, "notes.notes:read+create").await;
    api.post("/v1/tables/notes.notes/rows", &json!({"title": "kept"}))
        .await
        .expect(201);

    // ~60 KB of `+1`: a tree 30,000 levels deep.
    let deep = format!("SELECT 1{}", "+1".repeat(30_000));
    api.sql(&deep, &[]).await.expect_problem(422, "query-limit");
    let nested = format!("SELECT {}1{}", "(".repeat(20_000), ")".repeat(20_000));
    api.sql(&nested, &[]).await.expect(400);
    // As many filters as fit in a URL.
    let filters: Vec<(String, String)> = (0..5_000).map(|i| (format!("c{i}"), "eq.1".to_owned())).collect();
    let query: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    api.get(&rows_path("notes.notes", &query))
        .await
        .expect_problem(422, "query-limit");

    let reply = api.sql("SELECT title FROM notes.notes", &[]).await;
    reply.expect(200);
    assert_eq!(reply.body["rows"], json!([["kept"]]));
}

#[tokio::test]
async fn endless_queries_end_at_the_time_limit() {
    let server = Server::start_with(&[("COFFER_QUERY_TIMEOUT_SECS", "2")]);
    let api = app(&server, "notes.notes:read+create").await;
    let rows: Vec<Value> = (0..150).map(|i| json!({"title": format!("n{i}")})).collect();
    api.post("/v1/tables/notes.notes/rows", &json!(rows)).await.expect(201);
    for (statement, status, kind) in [
        (
            "SELECT * FROM generate_series(1, 9000000000000000000)",
            400,
            "invalid-sql",
        ),
        ("SELECT sum(value) FROM range(1000000000000)", 400, "invalid-sql"),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            400,
            "invalid-sql",
        ),
        ("SELECT repeat('x', 2000000000)", 422, "query-limit"),
        (
            "SELECT count(*) FROM notes.notes a, notes.notes b, notes.notes c, notes.notes d, notes.notes e",
            503,
            "query-timeout",
        ),
    ] {
        let started = Instant::now();
        api.sql(statement, &[]).await.expect_problem(status, kind);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{statement} took {:?}",
            started.elapsed()
        );
    }
    api.sql("SELECT count(*) FROM notes.notes", &[]).await.expect(200);
}
