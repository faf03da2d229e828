//! The change feed (`GET /v1/changes`) through the running server, with
//! tokens from the real OAuth flow: two apps with different grants on one
//! vault, one without the table, a cursor from another user's vault, and
//! the parameters' bounds. Every answer is checked against the OpenAPI
//! document by the `Api` client.

use crate::common::*;
use serde_json::{Value, json};

/// `/v1/changes` with `query` encoded.
fn changes_path(query: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(k, v);
    }
    format!("/v1/changes?{}", q.finish())
}

/// Every change from `since` until `more` is false, `limit` per page, and
/// the last cursor.
async fn drain(api: &Api, since: Option<String>, limit: &str) -> (Vec<Value>, String) {
    drain_query(api, &[("limit", limit)], since).await
}

/// Every change of the feed with `query` from `since` until `more` is
/// false, and the last cursor; no page holds more than its `limit`.
pub(crate) async fn drain_query(api: &Api, query: &[(&str, &str)], since: Option<String>) -> (Vec<Value>, String) {
    let limit: usize = query
        .iter()
        .find(|(k, _)| *k == "limit")
        .map_or(100, |(_, v)| v.parse().unwrap());
    let mut since = since;
    let mut out = Vec::new();
    for _ in 0..1000 {
        let mut q = query.to_vec();
        if let Some(s) = &since {
            q.push(("since", s));
        }
        let page = api.get(&with_query("/v1/changes", &q)).await;
        page.expect(200);
        let changes = page.body["changes"].as_array().unwrap();
        assert!(changes.len() <= limit);
        out.extend(changes.iter().cloned());
        since = Some(page.body["cursor"].as_str().unwrap().to_owned());
        if page.body["more"] == json!(false) {
            return (out, since.unwrap());
        }
    }
    panic!("the feed never ended");
}

pub(crate) fn ops(changes: &[Value]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn pair(op: &str, id: &str) -> (String, String) {
    (op.to_owned(), id.to_owned())
}

#[tokio::test]
async fn the_feed_shows_each_app_its_grant_and_nothing_else() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(
        &authorize_app(
            &user,
            &server.app("Alpha"),
            "contacts.people:read+create+update+delete",
            None,
        )
        .await
        .access,
    );
    let b = server.api(
        &authorize_app(&user, &server.app("Beta"), "contacts.people(display_name):read", None)
            .await
            .access,
    );
    let c = server.api(
        &authorize_app(&user, &server.app("Gamma"), "notes.notes:read", None)
            .await
            .access,
    );

    let (loaded, b0) = drain(&b, None, "10").await;
    assert!(loaded.is_empty());
    a.post(
        "/v1/tables/contacts.people/rows",
        &json!([
            {"id": "p1", "display_name": "Ada", "email": "ada@example.org"},
            {"id": "p2", "display_name": "Al", "email": "al@example.org"},
        ]),
    )
    .await
    .expect(201);
    a.patch("/v1/tables/contacts.people/rows/p1", &json!({"display_name": "Ada L"}))
        .await
        .expect(200);
    a.delete("/v1/tables/contacts.people/rows/p2").await.expect(204);

    let (seen, b1) = drain(&b, Some(b0), "1").await;
    assert_eq!(
        ops(&seen),
        [
            pair("insert", "p1"),
            pair("insert", "p2"),
            pair("update", "p1"),
            pair("delete", "p2")
        ]
    );
    assert_eq!(seen[2]["row"]["display_name"], "Ada L");
    assert_eq!(seen[3]["row"], Value::Null);
    assert!(
        !serde_json::to_string(&seen).unwrap().contains("example.org"),
        "{seen:?}"
    );
    let seqs: Vec<i64> = seen.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A load from the start shows the table as it is now.
    let (loaded, _) = drain(&b, None, "10").await;
    assert_eq!(ops(&loaded), [pair("insert", "p1")]);
    assert_eq!(loaded[0]["row"]["display_name"], "Ada L");

    // Nothing more since the last cursor.
    let (nothing, _) = drain(&b, Some(b1), "10").await;
    assert!(nothing.is_empty(), "{nothing:?}");

    // C reads no contacts: none in its feed, and naming the table is the
    // same answer as naming one that does not exist.
    let (seen, _) = drain(&c, None, "10").await;
    assert!(seen.is_empty(), "{seen:?}");
    let ungranted = c.get(&changes_path(&[("tables", "contacts.people")])).await;
    ungranted.expect_problem(404, "table-not-found");
    let missing = c.get(&changes_path(&[("tables", "contacts.nothing")])).await;
    missing.expect_problem(404, "table-not-found");
    assert_eq!(
        ungranted.text.replace("contacts.people", "T"),
        missing.text.replace("contacts.nothing", "T")
    );
}

#[tokio::test]
async fn cursors_from_elsewhere_and_bad_parameters_are_refused() {
    let server = Server::start();
    let ada = server.new_user("ada@example.org", 2).await;
    let bob = server.new_user("bob@example.org", 3).await;
    let client_id = server.app("Alpha");
    let scope = "contacts.people:read+create";
    let at_ada = server.api(&authorize_app(&ada, &client_id, scope, None).await.access);
    let at_bob = server.api(&authorize_app(&bob, &client_id, scope, None).await.access);
    for api in [&at_ada, &at_bob] {
        api.post("/v1/tables/contacts.people/rows", &json!({"display_name": "X"}))
            .await
            .expect(201);
    }
    let (_, bobs) = drain(&at_bob, None, "10").await;
    let refused = at_ada.get(&changes_path(&[("since", &bobs)])).await;
    refused.expect_problem(400, "invalid-filter");
    assert_eq!(refused.body["parameter"], "since");
    assert!(!refused.text.contains("bob"), "{}", refused.text);
    let (_, adas) = drain(&at_ada, None, "10").await;
    at_ada.get(&changes_path(&[("since", &adas)])).await.expect(200);
    at_ada
        .get(&changes_path(&[("since", "made-up")]))
        .await
        .expect_problem(400, "invalid-filter");

    for (query, parameter) in [
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "1001")], "limit"),
        (vec![("limit", "x")], "limit"),
        (vec![("order", "id")], "order"),
        (vec![("limit", "1"), ("limit", "2")], "limit"),
    ] {
        let r = at_ada.get(&changes_path(&query)).await;
        r.expect_problem(400, "invalid-filter");
        assert_eq!(r.body["parameter"], parameter, "{}", r.text);
    }
    let page = at_ada.get(&changes_path(&[("limit", "1000")])).await;
    page.expect(200);
    assert_eq!(page.body["changes"].as_array().unwrap().len(), 1);
    at_ada
        .with_token("nope")
        .get("/v1/changes")
        .await
        .expect_problem(401, "invalid-token");
}

#[tokio::test]
async fn a_cursor_past_the_trimmed_log_is_410_resync_required() {
    // Flushed entries leave the log at the next flush.
    let server = Server::start_with(&[("COFFER_LOG_RETENTION_HOURS", "0"), ("COFFER_FLUSH_INTERVAL_SECS", "1")]);
    let user = server.new_user("ada@example.org", 2).await;
    let api = server.api(
        &authorize_app(&user, &server.app("Alpha"), "contacts.people:read+create", None)
            .await
            .access,
    );
    let (_, cursor) = drain(&api, None, "10").await;
    api.post(
        "/v1/tables/contacts.people/rows",
        &json!({"id": "p1", "display_name": "Ada"}),
    )
    .await
    .expect(201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let gone = loop {
        let r = api.get(&changes_path(&[("since", &cursor)])).await;
        if r.status.as_u16() == 410 {
            break r;
        }
        r.expect(200);
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never trimmed: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    gone.expect_problem(410, "resync-required");
    // Loading again gives the row as it is now, and a cursor that works.
    let (loaded, fresh) = drain(&api, None, "10").await;
    assert_eq!(ops(&loaded), [pair("insert", "p1")]);
    api.get(&changes_path(&[("since", &fresh)])).await.expect(200);
}

#[tokio::test]
async fn narrowing_on_the_dashboard_tells_the_app_what_to_purge_on_its_next_read() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let writer_id = server.app("Writer");
    let writer = server.api(
        &authorize_app(
            &user,
            &writer_id,
            "contacts.people:read+create tasks.lists:read+create",
            None,
        )
        .await
        .access,
    );
    writer
        .post(&rows_path("contacts.people", &[]), &json!({"display_name": "Ada"}))
        .await
        .expect(201);
    writer
        .post(&rows_path("tasks.lists", &[]), &json!({"name": "Home"}))
        .await
        .expect(201);
    let reader_id = server.app("Reader");
    let tokens = authorize_app(&user, &reader_id, "contacts.people:read tasks.lists:read", None).await;
    let reader = server.api(&tokens.access);
    let (loaded, cursor) = drain(&reader, None, "100").await;
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    // The same, following the two tables by name; and one of them alone,
    // whose cursor cannot be used to follow both (the other's history is
    // not in it).
    let both = "contacts.people,tasks.lists";
    let (_, both_cursor) = drain_query(&reader, &[("tables", both)], None).await;
    let (_, people_cursor) = drain_query(&reader, &[("tables", "contacts.people")], None).await;
    reader
        .get(&changes_path(&[("tables", both), ("since", &people_cursor)]))
        .await
        .expect_problem(400, "invalid-filter");

    narrow_on_dashboard(&user, "Reader", &["contacts.people:read"]).await;
    let narrowed = refreshed(&server.base, &reader_id, tokens.refresh.as_deref().unwrap()).await;
    let reader = reader.with_token(&narrowed.access);
    let page = reader.get(&changes_path(&[("since", &cursor)])).await;
    page.expect(200);
    assert_eq!(
        page.body["purge"],
        json!([{"table": "tasks.lists", "drop": "table"}]),
        "{}",
        page.text
    );
    // The next page does not repeat it, and the feed goes on.
    writer
        .post(&rows_path("contacts.people", &[]), &json!({"display_name": "Grace"}))
        .await
        .expect(201);
    writer
        .post(&rows_path("tasks.lists", &[]), &json!({"name": "Work"}))
        .await
        .expect(201);
    let next = reader
        .get(&changes_path(&[("since", page.body["cursor"].as_str().unwrap())]))
        .await;
    next.expect(200);
    assert!(next.body.get("purge").is_none(), "{}", next.text);
    let tables: Vec<&str> = next.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["contacts.people"], "{}", next.text);

    // Following the tables by name: the purge, then the purged table is
    // refused, and the cursor goes on without it.
    let page = reader
        .get(&changes_path(&[("tables", both), ("since", &both_cursor)]))
        .await;
    page.expect(200);
    assert_eq!(
        page.body["purge"],
        json!([{"table": "tasks.lists", "drop": "table"}]),
        "{}",
        page.text
    );
    let cursor = page.body["cursor"].as_str().unwrap();
    reader
        .get(&changes_path(&[("tables", both), ("since", cursor)]))
        .await
        .expect_problem(404, "table-not-found");
    writer
        .post(
            &rows_path("contacts.people", &[]),
            &json!({"id": "hedy", "display_name": "Hedy"}),
        )
        .await
        .expect(201);
    let went_on = reader
        .get(&changes_path(&[("tables", "contacts.people"), ("since", cursor)]))
        .await;
    went_on.expect(200);
    assert_eq!(went_on.body["changes"][0]["id"], "hedy", "{}", went_on.text);
    assert!(went_on.body.get("purge").is_none(), "{}", went_on.text);
    assert!(
        went_on.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["table"] == "contacts.people"),
        "{}",
        went_on.text
    );
}
