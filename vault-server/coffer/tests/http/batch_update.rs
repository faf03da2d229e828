//! `PATCH /v1/tables/{table}/rows`: several rows changed atomically, each
//! optionally conditional on its `_seq`; a conflict writes nothing and
//! carries the conflicting row as the caller may read it.

use crate::common::*;
use serde_json::{Value, json};

const ITEMS: &str = "tasks.items";

async fn seq_of(api: &Api, id: &str) -> i64 {
    api.get(&row_path(ITEMS, id, &[])).await.body["_seq"].as_i64().unwrap()
}

#[tokio::test]
async fn a_batch_update_applies_every_change_or_none() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Planner");
    let tokens = authorize_app(&user, &client_id, "tasks.items:read+create+update", None).await;
    let api = server.api(&tokens.access);
    let created = api
        .post(
            &rows_path(ITEMS, &[]),
            &json!([
                {"id": "a", "title": "A", "priority": 1, "completed": false},
                {"id": "b", "title": "B", "priority": 2, "completed": false},
                {"id": "c", "title": "C", "priority": 3, "completed": false},
            ]),
        )
        .await;
    created.expect(201);
    let (a0, b0) = (seq_of(&api, "a").await, seq_of(&api, "b").await);

    // Two changes, one conditional: both apply, answered in request order.
    let done = api
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([
                {"id": "b", "set": {"title": "B2", "notes": "n"}, "if_seq": b0},
                {"id": "a", "set": {"priority": null}},
            ]),
        )
        .await;
    done.expect(200);
    assert_eq!(done.ids(), ["b", "a"]);
    assert_eq!(done.rows()[0]["title"], "B2");
    assert_eq!(done.rows()[0]["priority"], 2, "unnamed columns stay");
    assert!(done.rows()[1]["priority"].is_null(), "null clears: {}", done.text);
    let b1 = done.rows()[0]["_seq"].as_i64().unwrap();
    assert!(b1 > b0);
    assert_eq!(seq_of(&api, "b").await, b1, "what the answer said is what is stored");

    // One stale seq: nothing is written, and the conflict carries that row.
    let stale = api
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([
                {"id": "c", "set": {"title": "C2"}},
                {"id": "b", "set": {"title": "B3"}, "if_seq": b0},
            ]),
        )
        .await;
    stale.expect_problem(409, "conflict");
    assert_eq!(stale.body["current"]["id"], "b", "{}", stale.text);
    assert_eq!(stale.body["current"]["_seq"], b1, "{}", stale.text);
    assert_eq!(stale.body["current"]["title"], "B2");
    assert_eq!(api.get(&row_path(ITEMS, "c", &[])).await.body["title"], "C", "atomic");

    // A missing row: 404 and nothing written; with an if_seq it is a conflict.
    let missing = api
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([{"id": "c", "set": {"title": "C2"}}, {"id": "zz", "set": {"title": "Z"}}]),
        )
        .await;
    missing.expect_problem(404, "row-not-found");
    let missing = api
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([{"id": "zz", "set": {"title": "Z"}, "if_seq": a0}]),
        )
        .await;
    missing.expect_problem(409, "conflict");
    assert!(missing.body["current"].is_null(), "{}", missing.text);
    assert_eq!(api.get(&row_path(ITEMS, "c", &[])).await.body["title"], "C");

    // Bad bodies name what is wrong.
    for (body, says) in [
        (json!({"id": "a", "set": {}}), "array"),
        (json!([]), "no changes"),
        (json!([{"set": {"title": "x"}}]), "change 0: `id`"),
        (json!([{"id": "a"}]), "change 0: `set`"),
        (json!([{"id": "a", "set": {"title": "x"}, "if_seq": "1"}]), "`if_seq`"),
        (
            json!([{"id": "a", "set": {"title": "x"}, "patch": {}}]),
            "unknown field `patch`",
        ),
        (
            json!([{"id": "a", "set": {"title": "x"}}, {"id": "a", "set": {"title": "y"}}]),
            "more than once",
        ),
        (json!([{"id": "a", "set": {"id": "b"}}]), "id cannot change"),
    ] {
        let reply = api.patch(&rows_path(ITEMS, &[]), &body).await;
        assert!(matches!(reply.status.as_u16(), 400 | 422), "{body}: {}", reply.text);
        assert!(
            reply.body["detail"].as_str().unwrap_or_default().contains(says),
            "{body}: {}",
            reply.text
        );
    }
    let unknown = api
        .patch(&rows_path(ITEMS, &[]), &json!([{"id": "a", "set": {"nothing": 1}}]))
        .await;
    unknown.expect_problem(400, "unknown-column");
    let typed = api
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([{"id": "a", "set": {"priority": "high"}}]),
        )
        .await;
    assert_eq!(typed.status.as_u16(), 422, "{}", typed.text);
    // None of the refused batches changed row `a`.
    let a = api.get(&row_path(ITEMS, "a", &[])).await;
    assert_eq!(
        (a.body["title"].clone(), a.body["priority"].clone()),
        (json!("A"), Value::Null)
    );
    assert_eq!(a.body["_seq"], done.rows()[1]["_seq"]);
}

#[tokio::test]
async fn a_batch_update_stays_within_the_grant() {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let owner_id = server.app("Owner");
    let owner = server.api(
        &authorize_app(&user, &owner_id, "tasks.items:read+create+update", None)
            .await
            .access,
    );
    let narrow_id = server.app("Narrow");
    let narrow = server.api(
        &authorize_app(
            &user,
            &narrow_id,
            "tasks.items(title,completed):read+create+update:own",
            None,
        )
        .await
        .access,
    );
    owner
        .post(
            &rows_path(ITEMS, &[]),
            &json!({"id": "theirs", "title": "T", "notes": "secret", "completed": false}),
        )
        .await
        .expect(201);
    narrow
        .post(
            &rows_path(ITEMS, &[]),
            &json!({"id": "mine", "title": "M", "completed": true}),
        )
        .await
        .expect(201);

    // Another app's row does not exist for an `own` grant, and nothing of
    // the batch is written.
    let reply = narrow
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([{"id": "mine", "set": {"title": "M2"}}, {"id": "theirs", "set": {"title": "T2"}}]),
        )
        .await;
    reply.expect_problem(404, "row-not-found");
    assert_eq!(narrow.get(&row_path(ITEMS, "mine", &[])).await.body["title"], "M");
    assert_eq!(owner.get(&row_path(ITEMS, "theirs", &[])).await.body["title"], "T");
    // An ungranted column is refused; the answer holds only granted columns.
    let reply = narrow
        .patch(&rows_path(ITEMS, &[]), &json!([{"id": "mine", "set": {"notes": "x"}}]))
        .await;
    reply.expect_problem(403, "missing-right");
    let ok = narrow
        .patch(&rows_path(ITEMS, &[]), &json!([{"id": "mine", "set": {"title": "M2"}}]))
        .await;
    ok.expect(200);
    assert_eq!(ok.rows()[0]["title"], "M2");
    assert!(ok.rows()[0].get("notes").is_none(), "{}", ok.text);
    // A stale seq on its own row: the conflict shows only granted columns.
    let stale = narrow
        .patch(
            &rows_path(ITEMS, &[]),
            &json!([{"id": "mine", "set": {"title": "M3"}, "if_seq": 1}]),
        )
        .await;
    stale.expect_problem(409, "conflict");
    assert_eq!(stale.body["current"]["title"], "M2");
    assert!(stale.body["current"].get("notes").is_none(), "{}", stale.text);
    // A read-only app may not update at all.
    let reader_id = server.app("Reader");
    let reader = server.api(&authorize_app(&user, &reader_id, "tasks.items:read", None).await.access);
    reader
        .patch(&rows_path(ITEMS, &[]), &json!([{"id": "mine", "set": {"title": "R"}}]))
        .await
        .expect_problem(403, "missing-right");
}
