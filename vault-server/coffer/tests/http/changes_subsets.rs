//! Subsets of the change feed (`filter[table]`, `select[table]`) and its
//! `ETag`s, through the running server with tokens from the real OAuth
//! flow: an app follows only the rows its filter matches, with the columns
//! it selected, and sees a row that leaves the subset as a delete; a reload
//! of an unchanged feed is `304 Not Modified` without a read of the vault.

use crate::changes::{drain_query as drain, ops, pair};
use crate::common::*;
use serde_json::{Value, json};

const PEOPLE: &str = "contacts.people";
const FAVORITES: (&str, &str) = ("filter[contacts.people]", "favorite=is.true");
const NAMES: (&str, &str) = ("select[contacts.people]", "display_name");

#[tokio::test]
async fn a_subset_follows_only_its_rows_and_columns_and_sees_rows_leave_it() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(
        &authorize_app(&user, &server.app("Alpha"), "contacts.people:read+write", None)
            .await
            .access,
    );
    let b = server.api(
        &authorize_app(
            &user,
            &server.app("Beta"),
            "contacts.people(display_name,favorite,given_name):read",
            None,
        )
        .await
        .access,
    );
    a.post(
        &format!("/v1/tables/{PEOPLE}/rows"),
        &json!([
            {"id": "p1", "display_name": "Ada", "favorite": true, "given_name": "Ada", "email": "ada@example.org"},
            {"id": "p2", "display_name": "Bob", "favorite": false, "given_name": "Bob"},
        ]),
    )
    .await
    .expect(201);

    // The load holds the matching rows, with the selected columns only.
    let shape = [("tables", PEOPLE), FAVORITES, NAMES];
    let (loaded, cursor) = drain(&b, &shape, None).await;
    assert_eq!(ops(&loaded), [pair("insert", "p1")]);
    assert_eq!(loaded[0]["row"], json!({"id": "p1", "display_name": "Ada"}));

    let path = |id: &str| format!("/v1/tables/{PEOPLE}/rows/{id}");
    // Created outside the subset: never in it, so not sent.
    a.post(
        &format!("/v1/tables/{PEOPLE}/rows"),
        &json!({"id": "p3", "display_name": "Cy", "favorite": false}),
    )
    .await
    .expect(201);
    // Enters the subset.
    a.patch(&path("p2"), &json!({"favorite": true})).await.expect(200);
    // Leaves it.
    a.patch(&path("p1"), &json!({"favorite": false})).await.expect(200);
    // Changed while outside it: sent as a delete (the log cannot tell
    // whether it was inside before).
    a.patch(&path("p3"), &json!({"display_name": "Cyd"})).await.expect(200);
    // Changed inside it.
    a.patch(&path("p2"), &json!({"display_name": "Bobby"}))
        .await
        .expect(200);
    a.delete(&path("p2")).await.expect(204);

    let (seen, _) = drain(&b, &shape, Some(cursor.clone())).await;
    assert_eq!(
        ops(&seen),
        [
            pair("update", "p2"),
            pair("delete", "p1"),
            pair("delete", "p3"),
            pair("update", "p2"),
            pair("delete", "p2"),
        ]
    );
    assert_eq!(seen[0]["row"], json!({"id": "p2", "display_name": "Bob"}));
    assert_eq!(seen[3]["row"], json!({"id": "p2", "display_name": "Bobby"}));
    for delete in [&seen[1], &seen[2], &seen[4]] {
        assert_eq!(delete["row"], Value::Null);
    }

    // Without a selection the subset sends every readable column.
    let (loaded, _) = drain(&b, &[FAVORITES], None).await;
    assert!(loaded.is_empty(), "{loaded:?}");
    a.patch(&path("p3"), &json!({"favorite": true})).await.expect(200);
    let (loaded, _) = drain(&b, &[FAVORITES], None).await;
    assert_eq!(ops(&loaded), [pair("insert", "p3")]);
    assert_eq!(loaded[0]["row"]["given_name"], Value::Null);
    assert_eq!(loaded[0]["row"]["favorite"], true);
    assert!(loaded[0]["row"].get("email").is_none(), "{loaded:?}");

    // The cursor is bound to its subset.
    let other = b
        .get(&with_query(
            "/v1/changes",
            &[
                ("tables", PEOPLE),
                ("filter[contacts.people]", "favorite=is.false"),
                NAMES,
                ("since", &cursor),
            ],
        ))
        .await;
    other.expect_problem(400, "invalid-filter");
    assert_eq!(other.body["parameter"], "since");
    let unshaped = b
        .get(&with_query("/v1/changes", &[("tables", PEOPLE), ("since", &cursor)]))
        .await;
    unshaped.expect_problem(400, "invalid-filter");
}

#[tokio::test]
async fn a_subset_may_name_only_what_the_token_reads() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let b = server.api(
        &authorize_app(&user, &server.app("Beta"), "contacts.people(display_name):read", None)
            .await
            .access,
    );
    // A column the token does not read is refused as the rows API refuses
    // it, in a filter and in a selection alike.
    let rows = b.get(&rows_path(PEOPLE, &[("email", "eq.x")])).await;
    rows.expect_problem(400, "unknown-column");
    for query in [
        vec![("filter[contacts.people]", "email=eq.x")],
        vec![("select[contacts.people]", "display_name,email")],
    ] {
        let r = b.get(&with_query("/v1/changes", &query)).await;
        r.expect_problem(400, "unknown-column");
        assert_eq!(r.body["detail"], rows.body["detail"], "{}", r.text);
    }
    // A table the token does not read: the same answer as one that does not exist.
    let ungranted = b
        .get(&with_query("/v1/changes", &[("filter[notes.notes]", "title=eq.x")]))
        .await;
    ungranted.expect_problem(404, "table-not-found");
    let missing = b
        .get(&with_query("/v1/changes", &[("filter[notes.nothing]", "title=eq.x")]))
        .await;
    missing.expect_problem(404, "table-not-found");
    assert_eq!(
        ungranted.text.replace("notes.notes", "T"),
        missing.text.replace("notes.nothing", "T")
    );
    for (query, parameter) in [
        (vec![("filter[contacts.people]", "favorite")], "filter[contacts.people]"),
        (vec![("filter[contacts.people]", "display_name=zz.x")], "display_name"),
        (
            vec![("tables", "contacts.people"), ("filter[contacts.groups]", "name=eq.x")],
            "filter[contacts.groups]",
        ),
        (
            vec![
                ("select[contacts.people]", "display_name"),
                ("select[contacts.people]", "id"),
            ],
            "select[contacts.people]",
        ),
        (vec![("select[contacts.people]", " , ")], "select[contacts.people]"),
    ] {
        let r = b.get(&with_query("/v1/changes", &query)).await;
        r.expect_problem(400, "invalid-filter");
        assert_eq!(r.body["parameter"], parameter, "{}", r.text);
    }
}

/// A `GET` of the feed with `If-None-Match: etag` (when given): its status,
/// `ETag` and body.
async fn conditional(api: &Api, query: &[(&str, &str)], etag: Option<&str>) -> (u16, String, String) {
    let mut request = api
        .client
        .get(format!("{}{}", api.base, with_query("/v1/changes", query)))
        .bearer_auth(&api.token);
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status == 200 {
        assert_eq!(
            response.headers().get("cache-control").and_then(|v| v.to_str().ok()),
            Some("private, no-cache")
        );
    }
    (status, etag, response.text().await.unwrap())
}

#[tokio::test]
async fn an_unchanged_feed_is_304_not_modified_until_a_followed_table_changes() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let a = server.api(
        &authorize_app(
            &user,
            &server.app("Alpha"),
            "contacts.people:read+write notes.notes:create",
            None,
        )
        .await
        .access,
    );
    let b = server.api(
        &authorize_app(
            &user,
            &server.app("Beta"),
            "contacts.people(display_name,favorite):read",
            None,
        )
        .await
        .access,
    );
    a.post(
        &format!("/v1/tables/{PEOPLE}/rows"),
        &json!({"id": "p1", "display_name": "Ada", "favorite": true}),
    )
    .await
    .expect(201);

    let shape = [("tables", PEOPLE), FAVORITES, NAMES];
    let (status, etag, body) = conditional(&b, &shape, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert!(body.contains("\"p1\""), "{body}");

    // The same request with its tag: nothing to send, and nothing read.
    let (status, again, body) = conditional(&b, &shape, Some(&etag)).await;
    assert_eq!((status, again.as_str(), body.as_str()), (304, etag.as_str(), ""));
    // Another tag, another subset, or a write to a table the feed does not
    // follow: the same as before.
    assert_eq!(conditional(&b, &shape, Some("\"other\"")).await.0, 200);
    let (status, other_etag, _) = conditional(&b, &[("tables", PEOPLE), NAMES], Some(&etag)).await;
    assert_eq!(status, 200);
    assert_ne!(other_etag, etag);
    a.post("/v1/tables/notes.notes/rows", &json!({"title": "T", "body": "x"}))
        .await
        .expect(201);
    assert_eq!(conditional(&b, &shape, Some(&etag)).await.0, 304);

    // A write to the followed table makes a new answer with a new tag.
    a.patch(
        &format!("/v1/tables/{PEOPLE}/rows/p1"),
        &json!({"display_name": "Ada L"}),
    )
    .await
    .expect(200);
    let (status, new_etag, body) = conditional(&b, &shape, Some(&etag)).await;
    assert_eq!(status, 200);
    assert_ne!(new_etag, etag);
    assert!(body.contains("Ada L"), "{body}");

    // A page read from a cursor is tagged the same way.
    let page: Value = serde_json::from_str(&body).unwrap();
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let mut from_cursor = shape.to_vec();
    from_cursor.push(("since", &cursor));
    let (status, log_etag, _) = conditional(&b, &from_cursor, None).await;
    assert_eq!(status, 200);
    assert_eq!(conditional(&b, &from_cursor, Some(&log_etag)).await.0, 304);

    // Another app's tag for the same request is not this app's.
    let c = server.api(
        &authorize_app(
            &user,
            &server.app("Gamma"),
            "contacts.people(display_name,favorite):read",
            None,
        )
        .await
        .access,
    );
    assert_eq!(conditional(&c, &shape, Some(&new_etag)).await.0, 200);
}
