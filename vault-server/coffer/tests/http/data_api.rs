//! The data API (`/v1`) over HTTP against the running binary, with tokens
//! from the real OAuth flow: apps sharing a table, narrowing and revoking on
//! the dashboard, the rows API (filters, columns, order, keyset pages,
//! conditional writes), column and `own` row grants, SQL, bad input, and the
//! OpenAPI description.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use serde_json::{Value, json};

const PEOPLE: &str = "contacts.people";
const ITEMS: &str = "tasks.items";
const LISTS: &str = "tasks.lists";

/// The system columns every row carries.
const SYSTEM: [&str; 6] = ["id", "_seq", "_created_by", "_updated_by", "_created_at", "_updated_at"];

/// Starts a server with one signed-up user.
async fn server_and_user() -> (Server, Browser) {
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    (server, user)
}

/// Registers an app and runs the flow for `scope`; the app's client id and an API client.
async fn connect(server: &Server, user: &Browser, name: &str, scope: &str) -> (String, Api, Tokens) {
    let client_id = server.app(name);
    let tokens = authorize_app(user, &client_id, scope, None).await;
    (client_id, server.api(&tokens.access), tokens)
}

/// Asserts a row has the system columns with the right app ids.
#[track_caller]
fn assert_system_columns(row: &Value, created_by: &str, updated_by: &str) {
    assert!(row["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {row}");
    assert!(row["_seq"].is_u64() || row["_seq"].is_i64(), "_seq: {row}");
    assert_eq!(row["_created_by"], created_by, "{row}");
    assert_eq!(row["_updated_by"], updated_by, "{row}");
    for ts in ["_created_at", "_updated_at"] {
        let text = row[ts].as_str().unwrap_or_else(|| panic!("{ts}: {row}"));
        chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{ts} is not RFC 3339 ({e}): {row}"));
    }
}

/// The ids of some rows as a set.
fn id_set(rows: &[Value]) -> BTreeSet<String> {
    rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

// ---------------------------------------------------------------------------
// 1. Two apps share a table; narrowing and revoking on the dashboard.

#[tokio::test]
async fn two_apps_share_a_table_and_the_dashboard_narrows_and_revokes_one() {
    let (server, user) = server_and_user().await;
    let (a_id, a, a_tokens) = connect(&server, &user, "Alpha CRM", "contacts.people:read+create+update+delete").await;
    assert_eq!(a_tokens.scope, "contacts.people:read+write");
    let (b_id, b, _) = connect(&server, &user, "Beta Mail", "contacts.people:read").await;

    // A inserts one person, then a batch.
    let one = a
        .post(
            &rows_path(PEOPLE, &[]),
            &json!({"display_name": "Ada Lovelace", "email": "ada@analytical.example"}),
        )
        .await;
    one.expect(201);
    assert_eq!(one.body["display_name"], "Ada Lovelace");
    assert_eq!(one.body["email"], "ada@analytical.example");
    assert_system_columns(&one.body, &a_id, &a_id);
    let batch = a
        .post(
            &rows_path(PEOPLE, &[]),
            &json!([
                {"display_name": "Charles Babbage", "organization": "Difference Engines"},
                {"display_name": "Grace Hopper", "favorite": true},
                {"display_name": "Alan Turing", "birthday": "1912-06-23"},
            ]),
        )
        .await;
    batch.expect(201);
    let batch_rows = batch.rows();
    assert_eq!(batch_rows.len(), 3, "{}", batch.text);
    for row in batch_rows {
        assert_system_columns(row, &a_id, &a_id);
    }
    assert_eq!(batch_rows[2]["birthday"], "1912-06-23");
    let mut written = id_set(batch_rows);
    written.insert(one.body["id"].as_str().unwrap().to_owned());
    assert_eq!(written.len(), 4, "generated ids are distinct");

    // B sees A's rows, stamped with A's client id.
    let seen = b.get(&rows_path(PEOPLE, &[])).await;
    seen.expect(200);
    assert_eq!(id_set(seen.rows()), written);
    for row in seen.rows() {
        assert_eq!(row["_created_by"], a_id.as_str(), "{row}");
    }
    assert!(seen.body["next_cursor"].is_null(), "{}", seen.text);

    // B may not write.
    let refused = b
        .post(&rows_path(PEOPLE, &[]), &json!({"display_name": "Mallory"}))
        .await;
    refused.expect_problem(403, "missing-right");
    assert_eq!(refused.body["required"], "contacts.people:create", "{}", refused.text);
    let id = one.body["id"].as_str().unwrap();
    b.patch(&row_path(PEOPLE, id, &[]), &json!({"nickname": "x"}))
        .await
        .expect_problem(403, "missing-right");
    b.delete(&row_path(PEOPLE, id, &[]))
        .await
        .expect_problem(403, "missing-right");
    assert_eq!(b.all_rows(PEOPLE, &[]).await.len(), 4);

    // The user narrows A to reading on the dashboard. The token minted
    // before the change is refused (the grant changed since it was minted);
    // a refreshed token carries the narrowed grant, and writing with it is
    // a missing right.
    narrow_on_dashboard(&user, "Alpha CRM", &["contacts.people:read"]).await;
    let stale = a
        .post(&rows_path(PEOPLE, &[]), &json!({"display_name": "After narrowing"}))
        .await;
    assert!(
        stale.status == 401 || stale.status == 403,
        "a write after narrowing is refused: {}",
        stale.text
    );
    if stale.status == 401 {
        stale.expect_problem(401, "invalid-token");
        assert_eq!(stale.body["reason"], "grant_changed", "{}", stale.text);
    } else {
        stale.expect_problem(403, "missing-right");
    }
    let narrowed = refreshed(&server.base, &a_id, a_tokens.refresh.as_deref().unwrap()).await;
    assert_eq!(narrowed.scope, "contacts.people:read");
    let a = a.with_token(&narrowed.access);
    let refused = a
        .post(&rows_path(PEOPLE, &[]), &json!({"display_name": "After narrowing"}))
        .await;
    refused.expect_problem(403, "missing-right");
    assert_eq!(refused.body["required"], "contacts.people:create", "{}", refused.text);
    let refused = a.patch(&row_path(PEOPLE, id, &[]), &json!({"nickname": "x"})).await;
    refused.expect_problem(403, "missing-right");
    assert!(
        refused.body["required"]
            .as_str()
            .is_some_and(|r| r.starts_with("contacts.people") && r.ends_with(":update")),
        "{}",
        refused.text
    );
    a.delete(&row_path(PEOPLE, id, &[]))
        .await
        .expect_problem(403, "missing-right");
    a.sql("DELETE FROM contacts.people", &[])
        .await
        .expect_problem(403, "missing-right");
    assert_eq!(id_set(&a.all_rows(PEOPLE, &[]).await), written, "A still reads");

    // The user revokes A: its token stops at once.
    revoke_on_dashboard(&user, "Alpha CRM").await;
    let gone = a.get(&rows_path(PEOPLE, &[])).await;
    gone.expect_problem(401, "invalid-token");
    assert_eq!(gone.body["reason"], "revoked", "{}", gone.text);
    a.sql("SELECT display_name FROM contacts.people", &[])
        .await
        .expect_problem(401, "invalid-token");
    let (status, _) = refresh_tokens(&server.base, &a_id, narrowed.refresh.as_deref().unwrap()).await;
    assert_eq!(status, 400, "a revoked grant's refresh token is refused");

    // Everything A wrote stays, and B still reads all of it.
    let after = b.all_rows(PEOPLE, &[]).await;
    assert_eq!(id_set(&after), written);
    let by_id: BTreeMap<&str, &Value> = after.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    assert_eq!(by_id[id]["email"], "ada@analytical.example");
    assert!(after.iter().all(|r| r["_created_by"] == a_id.as_str()));
    assert!(after.iter().all(|r| r["_updated_by"] == a_id.as_str()));
    let counted = b.sql("SELECT count(*) AS n FROM contacts.people", &[]).await;
    counted.expect(200);
    assert_eq!(counted.body["rows"][0][0], 4, "{}", counted.text);
    assert_ne!(a_id, b_id);
}

// ---------------------------------------------------------------------------
// 2. Rows API semantics.

/// Parses an RFC 3339 timestamp.
fn ts(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The tasks the semantics test works on: title (unique), priority, due_at,
/// completed, notes.
fn sample_items() -> Vec<Value> {
    let mut items = vec![
        json!({"title": "Buy milk", "priority": 1, "due_at": "2024-03-01T09:00:00Z", "completed": false}),
        json!({"title": "Buy bread", "priority": 2, "due_at": "2024-03-02T09:00:00Z", "completed": true, "notes": "wholemeal"}),
        json!({"title": "Call Bob, Alice", "priority": 3, "completed": false, "notes": "about the trip"}),
        json!({"title": "Write report", "priority": 0, "due_at": "2024-03-05T17:30:00Z", "completed": false}),
        json!({"title": "buy MILK again", "due_at": "2024-04-01T08:00:00Z", "completed": true}),
        json!({"title": "File taxes (late)", "priority": 3, "due_at": "2024-04-15T23:59:00Z", "completed": false, "notes": "before the deadline"}),
        json!({"title": "Bake", "priority": 2, "completed": false}),
        json!({"title": "Bike", "priority": 1, "due_at": "2024-02-28T12:00:00Z", "completed": true, "notes": "tyres"}),
    ];
    for i in 0..15 {
        let mut item = json!({
            "title": format!("Task {i:02}"),
            "due_at": format!("2024-05-{:02}T10:00:00Z", i + 1),
            "completed": i % 2 == 0,
        });
        if i % 5 != 0 {
            item["priority"] = json!(i % 4);
        }
        if i % 3 == 0 {
            item["notes"] = json!(format!("note {i}"));
        }
        items.push(item);
    }
    items
}

/// Inserts `items` as one batch; returns the rows the server answered.
async fn insert_batch(api: &Api, table: &str, items: &[Value]) -> Vec<Value> {
    let answer = api.post(&rows_path(table, &[]), &Value::Array(items.to_vec())).await;
    answer.expect(201);
    let rows = answer.rows().clone();
    assert_eq!(rows.len(), items.len(), "{}", answer.text);
    rows
}

/// A predicate on a row as the test wrote it (absent keys are null).
type Pred = fn(&Value) -> bool;

fn priority(v: &Value) -> Option<i64> {
    v["priority"].as_i64()
}

fn title(v: &Value) -> &str {
    v["title"].as_str().unwrap()
}

fn like(pattern: &str, text: &str, fold: bool) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*' | '%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let (p, t) = if fold {
        (pattern.to_lowercase(), text.to_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    go(&p.chars().collect::<Vec<_>>(), &t.chars().collect::<Vec<_>>())
}

fn due(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v["due_at"].as_str().map(ts)
}

/// A server whose user connected `Taskr` (`tasks.items:read+write`), which
/// wrote the sample items in one batch.
struct Taskr {
    _server: Server,
    app_id: String,
    api: Api,
    items: Vec<Value>,
    /// The rows the batch insert answered, in batch order.
    rows: Vec<Value>,
    /// Each sample title's row id.
    id_of: BTreeMap<String, String>,
    /// Each row's id and the item written, in batch order.
    written: Vec<(String, Value)>,
}

async fn taskr() -> Taskr {
    let (server, user) = server_and_user().await;
    let (app_id, api, _) = connect(&server, &user, "Taskr", "tasks.items:read+write").await;
    let items = sample_items();
    let rows = insert_batch(&api, ITEMS, &items).await;
    let written: Vec<(String, Value)> = items
        .iter()
        .zip(&rows)
        .map(|(item, row)| (row["id"].as_str().unwrap().to_owned(), item.clone()))
        .collect();
    let id_of = written
        .iter()
        .map(|(id, item)| (title(item).to_owned(), id.clone()))
        .collect();
    Taskr {
        _server: server,
        app_id,
        api,
        items,
        rows,
        id_of,
        written,
    }
}

/// The ids of `written` by priority, highest first and nulls last, `id`
/// breaking ties.
fn by_priority_desc(written: &[(String, Value)]) -> Vec<String> {
    let key = |v: &Value| priority(v).map(|p| -p).unwrap_or(i64::MAX);
    ids_sorted_by(written, |a, b| key(a).cmp(&key(b)))
}

/// The ids of `written` sorted by `cmp` on the items, `id` breaking ties.
fn ids_sorted_by(written: &[(String, Value)], cmp: impl Fn(&Value, &Value) -> std::cmp::Ordering) -> Vec<String> {
    let mut expected = written.to_vec();
    expected.sort_by(|a, b| cmp(&a.1, &b.1).then(a.0.cmp(&b.0)));
    expected.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn a_batch_insert_answers_in_batch_order_with_the_values_written() {
    let Taskr {
        _server,
        app_id,
        items,
        rows,
        ..
    } = taskr().await;
    for (item, row) in items.iter().zip(&rows) {
        assert_eq!(row["title"], item["title"], "{row}");
        assert_eq!(
            row["priority"],
            item.get("priority").cloned().unwrap_or(Value::Null),
            "{row}"
        );
        assert_eq!(row["completed"], item["completed"], "{row}");
        match item["due_at"].as_str() {
            Some(d) => assert_eq!(ts(row["due_at"].as_str().unwrap()), ts(d), "{row}"),
            None => assert!(row["due_at"].is_null(), "{row}"),
        }
        assert_system_columns(row, &app_id, &app_id);
    }
}

#[tokio::test]
async fn each_filter_answers_what_the_same_predicate_selects() {
    let Taskr {
        _server, api, written, ..
    } = taskr().await;
    // Each filter against the same predicate evaluated here.
    let cases: Vec<(Vec<(&str, &str)>, Pred)> = vec![
        (vec![("title", "eq.Bake")], |v| title(v) == "Bake"),
        (vec![("title", "neq.Bake")], |v| title(v) != "Bake"),
        (vec![("priority", "eq.3")], |v| priority(v) == Some(3)),
        (vec![("priority", "gt.1")], |v| priority(v).is_some_and(|p| p > 1)),
        (vec![("priority", "gte.2")], |v| priority(v).is_some_and(|p| p >= 2)),
        (vec![("priority", "lt.1")], |v| priority(v).is_some_and(|p| p < 1)),
        (vec![("priority", "lte.1")], |v| priority(v).is_some_and(|p| p <= 1)),
        (vec![("priority", "gte.1"), ("priority", "lt.3")], |v| {
            priority(v).is_some_and(|p| (1..3).contains(&p))
        }),
        (vec![("due_at", "gte.2024-03-02T09:00:00Z")], |v| {
            due(v).is_some_and(|d| d >= ts("2024-03-02T09:00:00Z"))
        }),
        (vec![("due_at", "lt.2024-04-01T00:00:00Z")], |v| {
            due(v).is_some_and(|d| d < ts("2024-04-01T00:00:00Z"))
        }),
        // The same instant written with an offset: strictly after 09:00Z.
        (vec![("due_at", "gt.2024-03-01T10:00:00+01:00")], |v| {
            due(v).is_some_and(|d| d > ts("2024-03-01T09:00:00Z"))
        }),
        (
            vec![
                ("due_at", "gte.2024-03-01T00:00:00Z"),
                ("due_at", "lte.2024-03-31T23:59:59Z"),
            ],
            |v| due(v).is_some_and(|d| d >= ts("2024-03-01T00:00:00Z") && d <= ts("2024-03-31T23:59:59Z")),
        ),
        (vec![("title", "like.Buy*")], |v| like("Buy*", title(v), false)),
        (vec![("title", "like.Buy%")], |v| like("Buy%", title(v), false)),
        (vec![("title", "like.B_ke")], |v| like("B_ke", title(v), false)),
        (vec![("title", "ilike.*milk*")], |v| like("*milk*", title(v), true)),
        (vec![("title", "not.like.Buy*")], |v| !like("Buy*", title(v), false)),
        (vec![("title", "in.(Bake,Bike,\"Call Bob, Alice\")")], |v| {
            ["Bake", "Bike", "Call Bob, Alice"].contains(&title(v))
        }),
        (vec![("title", "in.(\"File taxes (late)\",Bake)")], |v| {
            ["File taxes (late)", "Bake"].contains(&title(v))
        }),
        (vec![("title", "not.in.(Bake,Bike)")], |v| {
            !["Bake", "Bike"].contains(&title(v))
        }),
        (vec![("priority", "in.(0,3)")], |v| matches!(priority(v), Some(0 | 3))),
        (vec![("priority", "is.null")], |v| priority(v).is_none()),
        (vec![("priority", "not.is.null")], |v| priority(v).is_some()),
        (vec![("notes", "is.null")], |v| v["notes"].is_null()),
        (vec![("completed", "is.true")], |v| v["completed"] == true),
        (vec![("completed", "is.false")], |v| v["completed"] == false),
        (vec![("completed", "not.is.true")], |v| v["completed"] != true),
        (vec![("completed", "eq.true"), ("priority", "gte.1")], |v| {
            v["completed"] == true && priority(v).is_some_and(|p| p >= 1)
        }),
    ];
    for (query, pred) in &cases {
        let expected: BTreeSet<String> = written
            .iter()
            .filter(|(_, v)| pred(v))
            .map(|(id, _)| id.clone())
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < written.len(),
            "{query:?} discriminates"
        );
        let got = api.all_rows(ITEMS, query).await;
        let titles = |ids: &BTreeSet<String>| -> Vec<String> {
            written
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(_, v)| title(v).to_owned())
                .collect()
        };
        assert_eq!(
            titles(&id_set(&got)),
            titles(&expected),
            "filter {query:?} (got vs expected titles)"
        );
    }
}

#[tokio::test]
async fn select_answers_only_the_named_columns_and_id() {
    let Taskr {
        _server, api, written, ..
    } = taskr().await;
    // select: only the named columns, and id.
    let narrow = api.get(&rows_path(ITEMS, &[("select", "title,priority")])).await;
    narrow.expect(200);
    assert_eq!(narrow.rows().len(), written.len());
    for row in narrow.rows() {
        let obj = row.as_object().unwrap();
        assert!(
            obj.contains_key("id") && obj.contains_key("title") && obj.contains_key("priority"),
            "{row}"
        );
        let user_columns: Vec<&String> = obj
            .keys()
            .filter(|k| !SYSTEM.contains(&k.as_str()) && *k != "title" && *k != "priority")
            .collect();
        assert!(
            user_columns.is_empty(),
            "select=title,priority returned {user_columns:?}: {row}"
        );
    }
}

#[tokio::test]
async fn order_sorts_as_asked_with_id_breaking_ties() {
    let Taskr {
        _server, api, written, ..
    } = taskr().await;
    // order: the sort asked for, `id` breaking ties.
    let expected_ids = by_priority_desc(&written);
    let got = api
        .get(&rows_path(ITEMS, &[("order", "priority.desc.nullslast")]))
        .await;
    got.expect(200);
    assert_eq!(got.ids(), expected_ids, "order=priority.desc.nullslast");

    // nulls first, then ascending
    let expected = ids_sorted_by(&written, |a, b| due(a).cmp(&due(b)));
    let got = api.get(&rows_path(ITEMS, &[("order", "due_at.asc.nullsfirst")])).await;
    got.expect(200);
    assert_eq!(got.ids(), expected, "order=due_at.asc.nullsfirst");

    let done = |v: &Value| v["completed"] == true;
    let expected = ids_sorted_by(&written, |a, b| done(b).cmp(&done(a)).then(title(a).cmp(title(b))));
    let got = api.get(&rows_path(ITEMS, &[("order", "completed.desc,title")])).await;
    got.expect(200);
    assert_eq!(got.ids(), expected, "order=completed.desc,title");
}

#[tokio::test]
async fn pages_follow_the_order_and_rows_written_between_pages_neither_repeat_nor_shift() {
    let Taskr {
        _server, api, written, ..
    } = taskr().await;
    let expected_ids = by_priority_desc(&written);
    // limit + cursor through every row, in order, with filters kept.
    let mut paged: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("order", "priority.desc.nullslast"), ("limit", "4")];
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let page = api.get(&rows_path(ITEMS, &q)).await;
        page.expect(200);
        assert!(page.rows().len() <= 4, "{}", page.text);
        paged.extend(page.ids());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(paged.len() <= written.len(), "paging goes past the end");
    }
    assert_eq!(paged, expected_ids, "pages of 4 in priority order");
    let filtered = api.all_rows(ITEMS, &[("completed", "is.true"), ("limit", "2")]).await;
    assert_eq!(
        id_set(&filtered),
        written
            .iter()
            .filter(|(_, v)| v["completed"] == true)
            .map(|(id, _)| id.clone())
            .collect(),
        "pages of 2 of the completed tasks"
    );

    // Rows written between two pages neither repeat nor shift the next
    // page: one sorting before the cursor (not seen), one after (seen).
    let first = api
        .get(&rows_path(
            ITEMS,
            &[("order", "priority.desc.nullslast"), ("limit", "5")],
        ))
        .await;
    first.expect(200);
    assert_eq!(first.ids(), expected_ids[..5]);
    let mut cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let early = api
        .post(
            &rows_path(ITEMS, &[]),
            &json!({"title": "Urgent", "priority": 10, "completed": false}),
        )
        .await;
    early.expect(201);
    let late = api
        .post(
            &rows_path(ITEMS, &[]),
            &json!({"title": "Someday", "priority": -5, "completed": false}),
        )
        .await;
    late.expect(201);
    let mut rest: Vec<String> = Vec::new();
    loop {
        let page = api
            .get(&rows_path(
                ITEMS,
                &[
                    ("order", "priority.desc.nullslast"),
                    ("limit", "5"),
                    ("cursor", &cursor),
                ],
            ))
            .await;
        page.expect(200);
        rest.extend(page.ids());
        // More rows arrive while paging; they sort last but one.
        if rest.len() == 5 {
            api.post(
                &rows_path(ITEMS, &[]),
                &json!({"title": "Later", "priority": -6, "completed": true}),
            )
            .await
            .expect(201);
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let mut all: Vec<String> = first.ids();
    all.extend(rest.iter().cloned());
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no row on two pages");
    let early_id = early.body["id"].as_str().unwrap().to_owned();
    let late_id = late.body["id"].as_str().unwrap().to_owned();
    assert!(
        !all.contains(&early_id),
        "a row written before the cursor is not on a later page"
    );
    assert!(
        all.contains(&late_id),
        "a row written after the cursor is on a later page"
    );
    for id in &expected_ids {
        assert!(all.contains(id), "row {id} missed while paging");
    }
    assert_eq!(
        all.len(),
        expected_ids.len() + 2,
        "every old row, `Someday` and `Later`"
    );

    // More than a page: the default limit is 100.
    let many: Vec<Value> = (0..110)
        .map(|i| json!({"title": format!("Bulk {i:03}"), "completed": false, "priority": 0}))
        .collect();
    insert_batch(&api, ITEMS, &many).await;
    let page = api.get(&rows_path(ITEMS, &[])).await;
    page.expect(200);
    assert_eq!(page.rows().len(), 100, "default page size");
    assert!(page.body["next_cursor"].is_string(), "{}", page.text);
    let total = written.len() + 3 + 110;
    assert_eq!(api.all_rows(ITEMS, &[]).await.len(), total);
    assert_eq!(api.all_rows(ITEMS, &[("limit", "1000")]).await.len(), total);
}

#[tokio::test]
async fn one_row_reads_patches_conditional_writes_and_deletes() {
    let Taskr {
        _server,
        app_id,
        api,
        id_of,
        written,
        ..
    } = taskr().await;
    let total = written.len();
    // One row.
    let bake = &id_of["Bake"];
    let one = api.get(&row_path(ITEMS, bake, &[])).await;
    one.expect(200);
    assert_eq!(one.body["title"], "Bake");
    assert_eq!(one.body["id"], bake.as_str());
    assert_system_columns(&one.body, &app_id, &app_id);
    let missing = api.get(&row_path(ITEMS, "01J0000000000000000000NOPE", &[])).await;
    missing.expect_problem(404, "row-not-found");
    assert_eq!(missing.body["id"], "01J0000000000000000000NOPE");

    // PATCH changes only what it names; null clears.
    let seq0 = one.body["_seq"].as_i64().unwrap();
    let patched = api
        .patch(
            &row_path(ITEMS, bake, &[]),
            &json!({"notes": "sourdough", "priority": 3}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.body["notes"], "sourdough");
    assert_eq!(patched.body["priority"], 3);
    assert_eq!(patched.body["title"], "Bake");
    assert_eq!(patched.body["completed"], false);
    assert_eq!(patched.body["_created_at"], one.body["_created_at"]);
    let seq1 = patched.body["_seq"].as_i64().unwrap();
    assert!(seq1 > seq0, "_seq grows: {seq0} -> {seq1}");
    let cleared = api.patch(&row_path(ITEMS, bake, &[]), &json!({"notes": null})).await;
    cleared.expect(200);
    assert!(cleared.body["notes"].is_null(), "{}", cleared.text);
    assert_eq!(cleared.body["priority"], 3);
    let seq2 = cleared.body["_seq"].as_i64().unwrap();
    let reread = api.get(&row_path(ITEMS, bake, &[])).await;
    assert_eq!(reread.body, cleared.body, "GET gives what PATCH answered");

    // if_seq: a stale seq is a conflict carrying the current row.
    let stale = api
        .patch(
            &row_path(ITEMS, bake, &[("if_seq", &seq1.to_string())]),
            &json!({"title": "Bake bread"}),
        )
        .await;
    stale.expect_problem(409, "conflict");
    assert_eq!(stale.body["current"]["_seq"], seq2, "{}", stale.text);
    assert_eq!(stale.body["current"]["title"], "Bake");
    let stale = api
        .delete(&row_path(ITEMS, bake, &[("if_seq", &seq0.to_string())]))
        .await;
    stale.expect_problem(409, "conflict");
    assert_eq!(stale.body["current"]["id"], bake.as_str());
    assert_eq!(
        api.get(&row_path(ITEMS, bake, &[])).await.body["title"],
        "Bake",
        "unchanged"
    );
    let ok = api
        .patch(
            &row_path(ITEMS, bake, &[("if_seq", &seq2.to_string())]),
            &json!({"title": "Bake bread"}),
        )
        .await;
    ok.expect(200);
    assert_eq!(ok.body["title"], "Bake bread");
    let seq3 = ok.body["_seq"].as_i64().unwrap();

    // DELETE, with the right seq; then the row is gone everywhere.
    api.delete(&row_path(ITEMS, bake, &[("if_seq", &seq3.to_string())]))
        .await
        .expect(204);
    api.get(&row_path(ITEMS, bake, &[]))
        .await
        .expect_problem(404, "row-not-found");
    api.delete(&row_path(ITEMS, bake, &[]))
        .await
        .expect_problem(404, "row-not-found");
    api.patch(&row_path(ITEMS, bake, &[]), &json!({"notes": "x"}))
        .await
        .expect_problem(404, "row-not-found");
    let bike = &id_of["Bike"];
    api.delete(&row_path(ITEMS, bike, &[])).await.expect(204);
    let remaining = api.all_rows(ITEMS, &[]).await;
    assert_eq!(remaining.len(), total - 2);
    assert!(!id_set(&remaining).contains(bake) && !id_set(&remaining).contains(bike));

    // An insert naming an existing id: the id is in use (not a conflict,
    // whose `current: null` would say the row was deleted).
    let dup = api
        .post(
            &rows_path(ITEMS, &[]),
            &json!({"id": id_of["Buy milk"], "title": "dup", "completed": false}),
        )
        .await;
    dup.expect_problem(409, "id-in-use");
    assert!(dup.body.get("current").is_none(), "{}", dup.text);
    assert_eq!(
        api.get(&row_path(ITEMS, &id_of["Buy milk"], &[])).await.body["title"],
        "Buy milk"
    );

    // A conditional change of a deleted row: a conflict with `current: null`.
    let after_delete = api
        .patch(
            &row_path(ITEMS, bake, &[("if_seq", &seq3.to_string())]),
            &json!({"notes": "x"}),
        )
        .await;
    let delete_after_delete = api
        .delete(&row_path(ITEMS, bake, &[("if_seq", &seq3.to_string())]))
        .await;
    after_delete.expect_problem(409, "conflict");
    assert!(after_delete.body["current"].is_null(), "{}", after_delete.text);
    delete_after_delete.expect_problem(409, "conflict");
    assert!(
        delete_after_delete.body["current"].is_null(),
        "{}",
        delete_after_delete.text
    );
}

// ---------------------------------------------------------------------------
// 3. A column grant never lets a hidden column out.

/// Asserts none of `secrets` appears anywhere in the answer.
#[track_caller]
fn assert_no_secret(reply: &Reply, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(
            !reply.text.contains(s),
            "{what}: the answer holds `{s}`: {}",
            reply.text
        );
    }
}

/// Asserts the user columns of a row are within `allowed`.
#[track_caller]
fn assert_columns_within(row: &Value, allowed: &[&str]) {
    for key in row.as_object().unwrap_or_else(|| panic!("not a row: {row}")).keys() {
        assert!(
            SYSTEM.contains(&key.as_str()) || allowed.contains(&key.as_str()),
            "column `{key}` is not granted: {row}"
        );
    }
}

#[tokio::test]
async fn a_column_grant_never_returns_other_columns() {
    let (server, user) = server_and_user().await;
    let (_, a, _) = connect(&server, &user, "Alpha CRM", "contacts.people:read+write").await;
    let (_, b, tokens) = connect(&server, &user, "Name Badge", "contacts.people(display_name):read").await;
    assert_eq!(tokens.scope, "contacts.people(display_name):read");
    let secrets = [
        "hidden-ada@secret.example",
        "hidden-bob@secret.example",
        "secret.example",
    ];
    let rows = insert_batch(
        &a,
        PEOPLE,
        &[
            json!({"display_name": "Ada", "email": secrets[0], "phone": "+44 1"}),
            json!({"display_name": "Bob", "email": secrets[1]}),
            json!({"display_name": "Cy"}),
        ],
    )
    .await;
    let ada = rows[0]["id"].as_str().unwrap();

    // What the token can see: one table, one column.
    let schemas = b.get("/v1/schemas").await;
    schemas.expect(200);
    assert_no_secret(&schemas, &["\"email\"", "\"phone\""], "schemas");
    let listed = schemas.body["schemas"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", schemas.text);
    assert_eq!(listed[0]["name"], "contacts");
    let tables = listed[0]["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 1, "only granted tables: {}", schemas.text);
    assert_eq!(tables[0]["name"], "people");
    let columns: Vec<&str> = tables[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .filter(|c| !SYSTEM.contains(c))
        .collect();
    assert_eq!(columns, ["display_name"]);
    let granted = b.get("/v1/tables").await;
    granted.expect(200);
    let entries = granted.body["tables"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", granted.text);
    assert_eq!(entries[0]["table"], "contacts.people");
    let actions: Vec<&String> = entries[0]["actions"].as_object().unwrap().keys().collect();
    assert_eq!(actions, ["read"], "{}", granted.text);
    assert_eq!(entries[0]["actions"]["read"]["columns"], json!(["display_name"]));
    assert_eq!(entries[0]["actions"]["read"]["rows"], "all");

    // The rows API.
    let list = b.get(&rows_path(PEOPLE, &[])).await;
    list.expect(200);
    assert_no_secret(&list, &secrets, "list");
    assert_eq!(list.rows().len(), 3);
    for row in list.rows() {
        assert_columns_within(row, &["display_name"]);
        assert!(row["display_name"].is_string());
    }
    let one = b.get(&row_path(PEOPLE, ada, &[])).await;
    one.expect(200);
    assert_no_secret(&one, &secrets, "get");
    assert_columns_within(&one.body, &["display_name"]);
    for (query, column) in [
        (vec![("select", "email")], "email"),
        (vec![("select", "display_name,email")], "email"),
        (vec![("select", "phone")], "phone"),
        (vec![("email", "eq.hidden-ada@secret.example")], "email"),
        (vec![("email", "like.*secret*")], "email"),
        (vec![("email", "is.null")], "email"),
        (vec![("email", "not.is.null")], "email"),
        (vec![("order", "email")], "email"),
        (vec![("order", "email.desc")], "email"),
    ] {
        let refused = b.get(&rows_path(PEOPLE, &query)).await;
        refused.expect_problem(400, "unknown-column");
        assert_eq!(refused.body["column"], column, "{query:?}: {}", refused.text);
        assert_no_secret(&refused, &secrets, &format!("{query:?}"));
        let refused = b.get(&row_path(PEOPLE, ada, &query)).await;
        if query[0].0 == "select" {
            refused.expect_problem(400, "unknown-column");
        }
        assert_no_secret(&refused, &secrets, &format!("one row, {query:?}"));
    }

    // SQL: what the token may read works and holds no hidden column …
    let star = b.sql("SELECT * FROM contacts.people", &[]).await;
    star.expect(200);
    assert_no_secret(&star, &secrets, "SELECT *");
    let names: Vec<&str> = star.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .filter(|c| !SYSTEM.contains(c))
        .collect();
    assert_eq!(names, ["display_name"], "{}", star.text);
    assert_eq!(star.body["row_count"], 3);
    let aliased = b
        .sql("SELECT p.* FROM contacts.people AS p ORDER BY p.display_name", &[])
        .await;
    aliased.expect(200);
    assert_no_secret(&aliased, &secrets, "SELECT p.*");
    // … and every way of naming the hidden column is an unknown column.
    for sql in [
        "SELECT email FROM contacts.people",
        "SELECT EMAIL FROM contacts.people",
        "SELECT \"email\" FROM contacts.people",
        "SELECT p.email FROM contacts.people p",
        "SELECT a.display_name, b.email FROM contacts.people a JOIN contacts.people b ON a.id = b.id",
        "SELECT display_name FROM contacts.people WHERE id IN (SELECT id FROM contacts.people WHERE email LIKE '%secret%')",
        "SELECT display_name FROM contacts.people WHERE email = 'hidden-ada@secret.example'",
        "SELECT count(*) FROM contacts.people WHERE email IS NOT NULL",
        "SELECT display_name FROM contacts.people ORDER BY email",
        "SELECT display_name FROM contacts.people UNION SELECT email FROM contacts.people",
        "WITH x AS (SELECT * FROM contacts.people) SELECT x.email FROM x",
        "SELECT (SELECT max(email) FROM contacts.people) AS m",
        "SELECT display_name, length(email) FROM contacts.people",
        "SELECT display_name FROM contacts.people WHERE starts_with(email, 'hidden-a')",
        "SELECT count(DISTINCT phone) FROM contacts.people",
    ] {
        let refused = b.sql(sql, &[]).await;
        assert_no_secret(&refused, &secrets, sql);
        assert_eq!(refused.status, 400, "{sql}: {}", refused.text);
        assert!(
            ["urn:coffer:problem:unknown-column", "urn:coffer:problem:invalid-sql"].contains(&refused.problem()),
            "{sql}: {}",
            refused.text
        );
    }
    let param = b
        .sql(
            "SELECT display_name FROM contacts.people WHERE email = $1",
            &[json!(secrets[0])],
        )
        .await;
    assert_eq!(param.status, 400, "{}", param.text);

    // Writing a column the grant does not cover is a missing right.
    let (_, c, _) = connect(
        &server,
        &user,
        "Name Writer",
        "contacts.people(display_name):read+create",
    )
    .await;
    let refused = c
        .post(
            &rows_path(PEOPLE, &[]),
            &json!({"display_name": "Eve", "email": "eve@x.example"}),
        )
        .await;
    refused.expect_problem(403, "missing-right");
    assert_eq!(
        refused.body["required"], "contacts.people(email):create",
        "{}",
        refused.text
    );
    c.post(&rows_path(PEOPLE, &[]), &json!({"display_name": "Eve"}))
        .await
        .expect(201);
    assert_eq!(a.all_rows(PEOPLE, &[]).await.len(), 4);
}

// ---------------------------------------------------------------------------
// 4. `own` rows.

#[tokio::test]
async fn own_scope_shows_and_changes_only_the_apps_rows() {
    let (server, user) = server_and_user().await;
    let (a_id, a, _) = connect(&server, &user, "Alpha CRM", "contacts.people:read+write").await;
    let (c_id, c, tokens) = connect(&server, &user, "Card Scanner", "contacts.people:read+write:own").await;
    assert_eq!(tokens.scope, "contacts.people:read+write:own");
    let (_, d, _) = connect(&server, &user, "Reader", "contacts.people:read+create:own").await;

    let a_rows = insert_batch(
        &a,
        PEOPLE,
        &[
            json!({"display_name": "Alpha One"}),
            json!({"display_name": "Alpha Two"}),
        ],
    )
    .await;
    let c_rows = insert_batch(
        &c,
        PEOPLE,
        &[json!({"display_name": "Card One"}), json!({"display_name": "Card Two"})],
    )
    .await;
    let alpha_one = a_rows[0]["id"].as_str().unwrap();
    let c_ids = id_set(&c_rows);
    for row in &c_rows {
        assert_eq!(row["_created_by"], c_id.as_str());
    }

    let granted = c.get("/v1/tables").await;
    granted.expect(200);
    assert_eq!(
        granted.body["tables"][0]["actions"]["read"]["rows"], "own",
        "{}",
        granted.text
    );

    // C sees only its rows, by every route.
    assert_eq!(id_set(&c.all_rows(PEOPLE, &[]).await), c_ids);
    assert_eq!(
        id_set(&c.all_rows(PEOPLE, &[("display_name", "like.*One")]).await).len(),
        1
    );
    assert_eq!(id_set(&c.all_rows(PEOPLE, &[("limit", "1")]).await), c_ids);
    let hidden = c.get(&row_path(PEOPLE, alpha_one, &[])).await;
    hidden.expect_problem(404, "row-not-found");
    assert_no_secret(&hidden, &["Alpha"], "another app's row");
    let selected = c
        .sql(
            "SELECT id, display_name FROM contacts.people ORDER BY display_name",
            &[],
        )
        .await;
    selected.expect(200);
    assert_eq!(
        selected.body["rows"],
        json!([[c_rows[0]["id"], "Card One"], [c_rows[1]["id"], "Card Two"]])
    );
    let counted = c.sql("SELECT count(*) FROM contacts.people", &[]).await;
    assert_eq!(counted.body["rows"], json!([[2]]), "{}", counted.text);
    let joined = c
        .sql(
            "SELECT count(*) FROM contacts.people x JOIN contacts.people y ON x.display_name <> y.display_name",
            &[],
        )
        .await;
    assert_eq!(joined.body["rows"], json!([[2]]), "{}", joined.text);
    let probe = c
        .sql(
            "SELECT count(*) FROM contacts.people WHERE display_name LIKE 'Alpha%'",
            &[],
        )
        .await;
    assert_eq!(probe.body["rows"], json!([[0]]), "{}", probe.text);

    // C cannot change A's rows: they do not exist for it.
    c.patch(&row_path(PEOPLE, alpha_one, &[]), &json!({"nickname": "mine"}))
        .await
        .expect_problem(404, "row-not-found");
    c.delete(&row_path(PEOPLE, alpha_one, &[]))
        .await
        .expect_problem(404, "row-not-found");
    let taken = c
        .post(
            &rows_path(PEOPLE, &[]),
            &json!({"id": alpha_one, "display_name": "Overwrite"}),
        )
        .await;
    taken.expect_problem(409, "id-in-use");
    assert_no_secret(&taken, &["Alpha One"], "insert with another app's id");
    let updated = c.sql("UPDATE contacts.people SET nickname = 'scanned'", &[]).await;
    updated.expect(200);
    assert_eq!(updated.body["rows"], json!([[2]]), "{}", updated.text);
    let deleted = c
        .sql(
            "DELETE FROM contacts.people WHERE display_name = $1",
            &[json!("Alpha Two")],
        )
        .await;
    deleted.expect(200);
    assert_eq!(deleted.body["rows"], json!([[0]]), "{}", deleted.text);

    // C cannot pass its rows off as A's.
    let spoof = c
        .post(
            &rows_path(PEOPLE, &[]),
            &json!({"display_name": "Spoofed", "_created_by": a_id}),
        )
        .await;
    if spoof.status == 201 {
        assert_eq!(spoof.body["_created_by"], c_id.as_str(), "{}", spoof.text);
        c.delete(&row_path(PEOPLE, spoof.body["id"].as_str().unwrap(), &[]))
            .await
            .expect(204);
    } else {
        assert!(spoof.status.is_client_error(), "{}", spoof.text);
    }
    let card_one = c_rows[0]["id"].as_str().unwrap();
    let spoof = c
        .patch(&row_path(PEOPLE, card_one, &[]), &json!({"_created_by": a_id}))
        .await;
    assert!(spoof.status.is_client_error() || spoof.status == 200, "{}", spoof.text);
    assert_eq!(
        c.get(&row_path(PEOPLE, card_one, &[])).await.body["_created_by"],
        c_id.as_str()
    );

    // A sees everything, with only C's rows changed.
    let all = a.all_rows(PEOPLE, &[]).await;
    assert_eq!(all.len(), 4);
    for row in &all {
        let mine = row["_created_by"] == c_id.as_str();
        assert_eq!(row["nickname"] == "scanned", mine, "{row}");
    }

    // D has created nothing: it sees nothing, and cannot update.
    assert!(d.all_rows(PEOPLE, &[]).await.is_empty());
    assert_eq!(
        d.sql("SELECT count(*) FROM contacts.people", &[]).await.body["rows"],
        json!([[0]])
    );
    let refused = d
        .patch(&row_path(PEOPLE, card_one, &[]), &json!({"nickname": "d"}))
        .await;
    refused.expect_problem(403, "missing-right");
}

/// A problem answer with `id` replaced by a placeholder, to compare the
/// answers about two ids.
fn with_id_hidden(reply: &Reply, id: &str) -> Value {
    serde_json::from_str(&reply.text.replace(id, "<ID>")).unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text))
}

#[tokio::test]
async fn a_taken_id_is_id_in_use_by_every_route_whoever_holds_it() {
    let (server, user) = server_and_user().await;
    let (_, a, _) = connect(&server, &user, "Alpha CRM", "contacts.people:read+create").await;
    let (_, c, _) = connect(&server, &user, "Card Scanner", "contacts.people:read+create:own").await;
    let theirs = a
        .post(
            &rows_path(PEOPLE, &[]),
            &json!({"id": "p-alpha", "display_name": "Alpha Secret"}),
        )
        .await;
    theirs.expect(201);
    c.post(
        &rows_path(PEOPLE, &[]),
        &json!({"id": "p-card", "display_name": "Card"}),
    )
    .await
    .expect(201);
    // The other app's row does not exist for C.
    c.get(&row_path(PEOPLE, "p-alpha", &[]))
        .await
        .expect_problem(404, "row-not-found");

    let mut answers = Vec::new();
    for id in ["p-alpha", "p-card"] {
        let single = c
            .post(&rows_path(PEOPLE, &[]), &json!({"id": id, "display_name": "New"}))
            .await;
        let batch = c
            .post(
                &rows_path(PEOPLE, &[]),
                &json!([{"id": "p-fresh", "display_name": "Fresh"}, {"id": id, "display_name": "New"}]),
            )
            .await;
        let sql = c
            .sql(
                "INSERT INTO contacts.people (id, display_name) VALUES ($1, 'New')",
                &[json!(id)],
            )
            .await;
        for (what, reply) in [("single", &single), ("batch", &batch), ("sql", &sql)] {
            reply.expect_problem(409, "id-in-use");
            assert!(reply.body.get("current").is_none(), "{what}: {}", reply.text);
            assert_eq!(reply.body["id"], id, "{what}: {}", reply.text);
            assert_eq!(reply.body["table"], PEOPLE, "{what}: {}", reply.text);
            assert_no_secret(reply, &["Alpha", "Secret"], "insert with a taken id");
            answers.push((format!("{what} {id}"), with_id_hidden(reply, id)));
        }
    }
    // One answer, whoever holds the id and whichever route.
    for (what, answer) in &answers[1..] {
        assert_eq!(answer, &answers[0].1, "{what} differs from {}", answers[0].0);
    }
    // Nothing was written: not the batch's first row, not the taken rows.
    let all = a.all_rows(PEOPLE, &[]).await;
    assert_eq!(
        id_set(&all),
        BTreeSet::from(["p-alpha".to_owned(), "p-card".to_owned()])
    );
    assert!(all.iter().all(|r| r["display_name"] != "New"), "{all:?}");
}

// ---------------------------------------------------------------------------
// 5. SQL.

/// A problem body with `name` replaced by a placeholder (and the
/// per-occurrence `instance` left out), to compare two answers about
/// different tables.
fn without_name(reply: &Reply, name: &str) -> Value {
    let mut body: Value = serde_json::from_str(&reply.text.replace(name, "<TABLE>"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text));
    if let Some(obj) = body.as_object_mut() {
        obj.remove("instance");
    }
    body
}

/// A server whose user connected `Planner` (lists and items read+write,
/// people read), which wrote two lists (`Home`, `Work`) and six items, five
/// of them on a list.
struct Planner {
    server: Server,
    app_id: String,
    api: Api,
    /// The id of the list `Home`.
    home: Value,
}

async fn planner() -> Planner {
    let (server, user) = server_and_user().await;
    let (app_id, api, _) = connect(
        &server,
        &user,
        "Planner",
        "tasks.lists:read+write tasks.items:read+write contacts.people:read",
    )
    .await;
    let lists = insert_batch(&api, LISTS, &[json!({"name": "Home"}), json!({"name": "Work"})]).await;
    let (home, work) = (lists[0]["id"].clone(), lists[1]["id"].clone());
    insert_batch(
        &api,
        ITEMS,
        &[
            json!({"list_id": home, "title": "Wash car", "priority": 1, "completed": false}),
            json!({"list_id": home, "title": "Water plants", "priority": 2, "completed": true}),
            json!({"list_id": home, "title": "Sweep", "priority": 3, "completed": false}),
            json!({"list_id": work, "title": "Write memo", "priority": 2, "completed": false}),
            json!({"list_id": work, "title": "Review", "completed": true}),
            json!({"title": "Loose end", "priority": 5, "completed": false}),
        ],
    )
    .await;
    Planner {
        server,
        app_id,
        api,
        home,
    }
}

#[tokio::test]
async fn sql_answers_joins_aggregates_and_subqueries() {
    let Planner {
        server: _server,
        api,
        home,
        ..
    } = planner().await;
    // A join with aggregates; the answer's shape.
    let joined = api
        .sql(
            "SELECT l.name, count(i.id) AS n, sum(i.priority) AS p \
             FROM tasks.lists l JOIN tasks.items i ON i.list_id = l.id \
             GROUP BY l.name ORDER BY l.name",
            &[],
        )
        .await;
    joined.expect(200);
    let names: Vec<&str> = joined.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["type"].is_string(), "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["name", "n", "p"]);
    assert_eq!(
        joined.body["rows"],
        json!([["Home", 3, 6], ["Work", 2, 2]]),
        "{}",
        joined.text
    );
    assert_eq!(joined.body["row_count"], 2);
    // Two columns may share a name.
    let both = api
        .sql(
            "SELECT l.id, i.id FROM tasks.lists l JOIN tasks.items i ON i.list_id = l.id WHERE i.title = 'Sweep'",
            &[],
        )
        .await;
    both.expect(200);
    assert_eq!(both.body["columns"].as_array().unwrap().len(), 2);
    assert_eq!(both.body["columns"][0]["name"], "id");
    assert_eq!(both.body["columns"][1]["name"], "id");
    assert_eq!(both.body["rows"][0][0], home);
    // A subquery across both tables.
    let sub = api
        .sql(
            "SELECT name FROM tasks.lists WHERE id IN (SELECT list_id FROM tasks.items WHERE completed) ORDER BY name",
            &[],
        )
        .await;
    sub.expect(200);
    assert_eq!(sub.body["rows"], json!([["Home"], ["Work"]]));
}

#[tokio::test]
async fn sql_parameters_are_bound_never_spliced() {
    let Planner {
        server: _server, api, ..
    } = planner().await;
    // Parameters are bound, never spliced.
    let bound = api
        .sql(
            "SELECT title FROM tasks.items WHERE priority >= $1 AND title LIKE $2 ORDER BY title",
            &[json!(2), json!("W%")],
        )
        .await;
    bound.expect(200);
    assert_eq!(
        bound.body["rows"],
        json!([["Water plants"], ["Write memo"]]),
        "{}",
        bound.text
    );
    let injected = api
        .sql(
            "SELECT count(*) FROM tasks.items WHERE title = $1",
            &[json!("x' OR '1'='1")],
        )
        .await;
    injected.expect(200);
    assert_eq!(injected.body["rows"], json!([[0]]));
}

#[tokio::test]
async fn sql_writes_are_stamped_with_the_app() {
    let Planner {
        server: _server,
        app_id,
        api,
        ..
    } = planner().await;
    // Writes through SQL, stamped with the app.
    let inserted = api
        .sql(
            "INSERT INTO tasks.items (title, completed, priority) VALUES ($1, false, 4)",
            &[json!("From SQL")],
        )
        .await;
    inserted.expect(200);
    assert_eq!(inserted.body["columns"][0]["name"], "count", "{}", inserted.text);
    assert_eq!(inserted.body["rows"], json!([[1]]));
    let row = api.all_rows(ITEMS, &[("title", "eq.From SQL")]).await;
    assert_eq!(row.len(), 1);
    assert_system_columns(&row[0], &app_id, &app_id);
    assert_eq!(row[0]["priority"], 4);
    let updated = api
        .sql(
            "UPDATE tasks.items SET priority = 9 WHERE title LIKE $1",
            &[json!("W%")],
        )
        .await;
    updated.expect(200);
    assert_eq!(updated.body["rows"], json!([[3]]), "{}", updated.text);
    assert_eq!(api.all_rows(ITEMS, &[("priority", "eq.9")]).await.len(), 3);
    let deleted = api
        .sql(
            "DELETE FROM tasks.items WHERE title = $1 OR completed",
            &[json!("From SQL")],
        )
        .await;
    deleted.expect(200);
    assert_eq!(deleted.body["rows"], json!([[3]]), "{}", deleted.text);
    assert_eq!(api.all_rows(ITEMS, &[]).await.len(), 4);
}

#[tokio::test]
async fn sql_writing_a_table_granted_for_reading_is_a_missing_right() {
    let Planner {
        server: _server, api, ..
    } = planner().await;
    // Writing a table granted for reading only is a missing right.
    for (sql, required) in [
        (
            "INSERT INTO contacts.people (display_name) VALUES ('Nope')",
            "contacts.people:create",
        ),
        ("UPDATE contacts.people SET nickname = 'x'", "contacts.people:update"),
        ("DELETE FROM contacts.people", "contacts.people:delete"),
        (
            "INSERT INTO contacts.people (display_name) SELECT title FROM tasks.items",
            "contacts.people:create",
        ),
    ] {
        let refused = api.sql(sql, &[]).await;
        refused.expect_problem(403, "missing-right");
        let got = refused.body["required"].as_str().unwrap_or_default();
        assert!(
            got == required || (got.starts_with("contacts.people(") && got.ends_with(&required[15..])),
            "{sql}: required {got}, expected {required}"
        );
    }
    let people = api.sql("SELECT count(*) FROM contacts.people", &[]).await;
    assert_eq!(people.body["rows"], json!([[0]]), "nothing written: {}", people.text);
}

#[tokio::test]
async fn a_table_not_granted_is_answered_like_one_that_does_not_exist() {
    let Planner {
        server: _server, api, ..
    } = planner().await;
    // A table not granted is answered exactly like one that does not exist.
    let mut first: Option<Value> = None;
    for table in [
        "notes.notes",
        "nosuch.things",
        "notes.nothing",
        "contacts.groups",
        "contacts.nothing",
    ] {
        for sql in [
            format!("SELECT * FROM {table}"),
            format!("SELECT count(*) FROM tasks.items i JOIN {table} x ON x.id = i.id"),
        ] {
            let answer = api.sql(&sql, &[]).await;
            answer.expect_problem(404, "table-not-found");
            assert_eq!(answer.body["table"], table, "{sql}: {}", answer.text);
            let shape = without_name(&answer, table);
            match &first {
                None => first = Some(shape),
                Some(f) if sql.starts_with("SELECT *") => {
                    assert_eq!(&shape, f, "{sql}: answers differ for a hidden and a missing table")
                }
                Some(_) => {}
            }
        }
        let via_rows = api.get(&rows_path(table, &[])).await;
        via_rows.expect_problem(404, "table-not-found");
        assert_eq!(via_rows.body["table"], table);
    }
    let hidden = without_name(&api.get(&rows_path("notes.notes", &[])).await, "notes.notes");
    let missing = without_name(&api.get(&rows_path("nosuch.things", &[])).await, "nosuch.things");
    assert_eq!(hidden, missing, "rows API: hidden vs missing table");
    let hidden = api.post(&rows_path("notes.notes", &[]), &json!({"title": "x"})).await;
    let missing = api.post(&rows_path("nosuch.things", &[]), &json!({"title": "x"})).await;
    hidden.expect_problem(404, "table-not-found");
    assert_eq!(
        without_name(&hidden, "notes.notes"),
        without_name(&missing, "nosuch.things")
    );
    let hidden = api.sql("INSERT INTO notes.notes (title) VALUES ('x')", &[]).await;
    let missing = api.sql("INSERT INTO nosuch.things (title) VALUES ('x')", &[]).await;
    hidden.expect_problem(404, "table-not-found");
    assert_eq!(
        without_name(&hidden, "notes.notes"),
        without_name(&missing, "nosuch.things")
    );
}

#[tokio::test]
async fn sql_has_no_catalog_views_table_functions_reading_files_or_ddl() {
    let Planner { server, api, .. } = planner().await;
    // No catalog views, no table functions reading files, no DDL.
    let data_dir = server.data_dir.display().to_string();
    for sql in [
        "SELECT table_schema, table_name FROM information_schema.tables".to_owned(),
        "SELECT * FROM information_schema.columns".to_owned(),
        "SHOW TABLES".to_owned(),
        "SHOW COLUMNS FROM tasks.items".to_owned(),
        "SELECT * FROM read_parquet('/etc/passwd')".to_owned(),
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        "SELECT * FROM read_json('/etc/passwd')".to_owned(),
        format!("SELECT * FROM read_parquet('{data_dir}/**/*.parquet')"),
        "SELECT * FROM '/etc/passwd'".to_owned(),
        "SELECT * FROM 'file:///etc/passwd'".to_owned(),
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "CREATE TABLE copy AS SELECT * FROM tasks.items".to_owned(),
        "CREATE VIEW v AS SELECT * FROM tasks.items".to_owned(),
        "DROP TABLE tasks.items".to_owned(),
        "COPY tasks.items TO '/tmp/coffer-leak.csv'".to_owned(),
        "COPY (SELECT 1) TO '/tmp/coffer-leak.csv'".to_owned(),
        "SET datafusion.catalog.information_schema = true".to_owned(),
        "EXPLAIN SELECT * FROM tasks.items".to_owned(),
    ] {
        let refused = api.sql(&sql, &[]).await;
        assert!(refused.status.is_client_error(), "{sql}: {}", refused.text);
        assert!(
            refused.content_type().starts_with("application/problem+json"),
            "{sql}: {}",
            refused.text
        );
        assert_no_secret(&refused, &["root:", "notes.notes", "journal.", &data_dir], &sql);
    }
    assert!(
        !std::path::Path::new("/tmp/coffer-leak.csv").exists(),
        "COPY wrote a file"
    );
    api.sql("SELECT * FROM leak", &[])
        .await
        .expect_problem(404, "table-not-found");
    let still = api.sql("SELECT count(*) FROM tasks.items", &[]).await;
    assert_eq!(still.body["rows"], json!([[6]]), "{}", still.text);
    // information_schema stays off for later requests too.
    let again = api.sql("SELECT * FROM information_schema.tables", &[]).await;
    assert!(again.status.is_client_error(), "{}", again.text);
}

// ---------------------------------------------------------------------------
// 6. Bad input.

/// Everything both apps can read, to compare before and after.
async fn snapshot(api: &Api) -> (Vec<Value>, Vec<Value>) {
    (api.all_rows(ITEMS, &[]).await, api.all_rows(PEOPLE, &[]).await)
}

/// At most 400 characters of an answer, for messages.
fn short(text: &str) -> String {
    match text.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Checks a refusal: a 4xx problem (never a 500), of the given status and
/// kind when given.
fn refusal(reply: &Reply, what: &str, expected: Option<(u16, &str)>) -> Result<(), String> {
    let text = short(&reply.text);
    if !reply.status.is_client_error() {
        return Err(format!("{what}: expected a 4xx, got {}: {text}", reply.status));
    }
    if !reply.content_type().starts_with("application/problem+json") {
        return Err(format!("{what}: problem JSON, got {:?}: {text}", reply.content_type()));
    }
    if !reply.problem().starts_with("urn:coffer:problem:") || reply.body["status"] != reply.status.as_u16() {
        return Err(format!("{what}: problem type and status: {text}"));
    }
    if let Some((status, kind)) = expected
        && (reply.status.as_u16(), reply.problem()) != (status, format!("urn:coffer:problem:{kind}").as_str())
    {
        return Err(format!(
            "{what}: expected {status} {kind}, got {}: {text}",
            reply.status
        ));
    }
    Ok(())
}

/// Failures collected so that one run reports every one of them.
#[derive(Default)]
struct Soft(std::cell::RefCell<Vec<String>>);

impl Soft {
    fn check(&self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.borrow_mut().push(message());
        }
    }

    fn refused(&self, reply: &Reply, what: &str, expected: Option<(u16, &str)>) {
        if let Err(e) = refusal(reply, what, expected) {
            self.0.borrow_mut().push(e);
        }
    }

    /// A member of the problem.
    fn member(&self, reply: &Reply, what: &str, key: &str, value: &str) {
        if reply.status.is_client_error() && reply.body[key] != value {
            self.0
                .borrow_mut()
                .push(format!("{what}: `{key}` should be {value:?}: {}", short(&reply.text)));
        }
    }

    #[track_caller]
    fn finish(self) {
        let failures = self.0.into_inner();
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    use reqwest::Method;
    /// The body limit this server is configured with.
    const LIMIT: usize = 200_000;
    let server = Server::start_with(&[("COFFER_API_BODY_LIMIT", &LIMIT.to_string())]);
    let user = server.new_user("ada@example.org", 2).await;
    let (client_id, api, tokens) = connect(
        &server,
        &user,
        "Taskr",
        "tasks.items:read+write contacts.people:read+write",
    )
    .await;
    insert_batch(&api, ITEMS, &sample_items()).await;
    insert_batch(
        &api,
        PEOPLE,
        &[json!({"display_name": "Ada"}), json!({"display_name": "Bob"})],
    )
    .await;
    let item = api.all_rows(ITEMS, &[("title", "eq.Bake")]).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = snapshot(&api).await;
    let soft = Soft::default();
    let rows = rows_path(ITEMS, &[]);
    let one = row_path(ITEMS, &item, &[]);

    // Filters, columns, order, limit and cursor.
    for (query, expected, member) in [
        (
            vec![("title", "zz.x")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("title", "eq")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("title", "not.")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("priority", "gt.")],
            (400, "invalid-filter"),
            Some(("parameter", "priority")),
        ),
        (
            vec![("priority", "gt.abc")],
            (400, "invalid-filter"),
            Some(("parameter", "priority")),
        ),
        (
            vec![("priority", "eq.1.5")],
            (400, "invalid-filter"),
            Some(("parameter", "priority")),
        ),
        (
            vec![("due_at", "gt.yesterday")],
            (400, "invalid-filter"),
            Some(("parameter", "due_at")),
        ),
        (
            vec![("completed", "is.maybe")],
            (400, "invalid-filter"),
            Some(("parameter", "completed")),
        ),
        (
            vec![("title", "in.(a")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("title", "in.a,b")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("title", "in.(\"a,b)")],
            (400, "invalid-filter"),
            Some(("parameter", "title")),
        ),
        (
            vec![("priority", "in.(1,x)")],
            (400, "invalid-filter"),
            Some(("parameter", "priority")),
        ),
        (
            vec![("nosuch", "eq.1")],
            (400, "unknown-column"),
            Some(("column", "nosuch")),
        ),
        (
            vec![("select", "nosuch")],
            (400, "unknown-column"),
            Some(("column", "nosuch")),
        ),
        (
            vec![("select", "title,nosuch")],
            (400, "unknown-column"),
            Some(("column", "nosuch")),
        ),
        (
            vec![("order", "nosuch")],
            (400, "unknown-column"),
            Some(("column", "nosuch")),
        ),
        (
            vec![("order", "title.sideways")],
            (400, "invalid-filter"),
            Some(("parameter", "order")),
        ),
        (
            vec![("order", "title.asc.desc")],
            (400, "invalid-filter"),
            Some(("parameter", "order")),
        ),
        (
            vec![("limit", "abc")],
            (400, "invalid-filter"),
            Some(("parameter", "limit")),
        ),
        (
            vec![("limit", "-1")],
            (400, "invalid-filter"),
            Some(("parameter", "limit")),
        ),
        (
            vec![("cursor", "garbage")],
            (400, "invalid-filter"),
            Some(("parameter", "cursor")),
        ),
        (
            vec![("cursor", "%%%")],
            (400, "invalid-filter"),
            Some(("parameter", "cursor")),
        ),
    ] {
        let what = format!("GET {query:?}");
        let reply = api.get(&rows_path(ITEMS, &query)).await;
        soft.refused(&reply, &what, Some(expected));
        if let Some((key, value)) = member {
            soft.member(&reply, &what, key, value);
        }
    }
    let long_cursor = "A".repeat(10_000);
    soft.refused(
        &api.get(&rows_path(ITEMS, &[("cursor", &long_cursor)])).await,
        "long cursor",
        Some((400, "invalid-filter")),
    );
    // A cursor of another table is no key of this one.
    let page = api.get(&rows_path(PEOPLE, &[("limit", "1")])).await;
    if let Some(c) = page.body["next_cursor"].as_str() {
        let reply = api
            .get(&rows_path(ITEMS, &[("cursor", c), ("order", "priority.desc")]))
            .await;
        soft.check(reply.status != 500, || {
            format!("cursor of another query: {}", short(&reply.text))
        });
    }

    // Bodies: unknown columns, wrong types, missing required values.
    // `task(extra)`: a valid task (`title`, `completed`) with `extra` added.
    let task = |extra: Value| {
        let mut body = json!({"title": "x", "completed": false});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    const INVALID: (u16, &str) = (422, "invalid-row");
    for (body, expected, column) in [
        (task(json!({"nosuch": 1})), (400, "unknown-column"), "nosuch"),
        (task(json!({"priority": "high"})), INVALID, "priority"),
        (task(json!({"priority": 1.5})), INVALID, "priority"),
        (task(json!({"priority": true})), INVALID, "priority"),
        (task(json!({"due_at": "yesterday"})), INVALID, "due_at"),
        (task(json!({"due_at": "2024-13-45T99:00:00Z"})), INVALID, "due_at"),
        (task(json!({"due_at": 1700000000})), INVALID, "due_at"),
        (task(json!({"due_date": "2024-02-30"})), INVALID, "due_date"),
        (json!({"title": "x", "completed": "yes"}), INVALID, "completed"),
        (json!({"title": 42, "completed": false}), INVALID, "title"),
        (json!({"priority": 1, "completed": false}), INVALID, "title"),
        (json!({"title": null, "completed": false}), INVALID, "title"),
        (json!({"title": "x"}), INVALID, "completed"),
    ] {
        let what = format!("POST {body}");
        let reply = api.post(&rows, &body).await;
        soft.refused(&reply, &what, Some(expected));
        soft.member(&reply, &what, "column", column);
        // The same in a batch after a valid row: nothing is written.
        let batch = json!([{"title": "valid but not written", "completed": false}, body]);
        soft.refused(
            &api.post(&rows, &batch).await,
            &format!("batch {batch}"),
            Some(expected),
        );
        // And as a change of an existing row, where it applies.
        let mut patch = body.clone();
        let obj = patch.as_object_mut().unwrap();
        obj.retain(|k, _| k == column);
        if !obj.is_empty() {
            let reply = api.patch(&one, &patch).await;
            soft.refused(&reply, &format!("PATCH {patch}"), Some(expected));
            soft.member(&reply, &format!("PATCH {patch}"), "column", column);
        }
    }
    for (body, what) in [
        (json!({"id": "other-id"}), "PATCH id"),
        (json!({"_seq": 1}), "PATCH _seq"),
        (json!({"_created_by": "someone"}), "PATCH _created_by"),
        (json!({"_updated_at": "2020-01-01T00:00:00Z"}), "PATCH _updated_at"),
    ] {
        // System columns are not the app's to write.
        soft.refused(&api.patch(&one, &body).await, what, None);
    }

    // Bodies that are not the JSON asked for.
    for (method, path, body) in [
        (Method::POST, rows.as_str(), "{\"title\":"),
        (Method::POST, rows.as_str(), "\"just a string\""),
        (Method::POST, rows.as_str(), "42"),
        (Method::POST, rows.as_str(), "[1, 2]"),
        (Method::POST, rows.as_str(), "null"),
        (Method::POST, rows.as_str(), ""),
        (
            Method::POST,
            rows.as_str(),
            "{\"title\": \"x\", \"completed\": false} trailing",
        ),
        (Method::PATCH, one.as_str(), "{"),
        (Method::PATCH, one.as_str(), "[]"),
        (Method::PATCH, one.as_str(), "\"x\""),
        (Method::POST, "/v1/sql", "{\"sql\":"),
        (Method::POST, "/v1/sql", "{}"),
        (Method::POST, "/v1/sql", "{\"sql\": 5}"),
        (Method::POST, "/v1/sql", "{\"sql\": \"SELECT 1\", \"params\": 5}"),
        (Method::POST, "/v1/sql", "[\"SELECT 1\"]"),
    ] {
        let what = format!("{method} {path} {body:?}");
        let reply = api
            .raw(method.clone(), path, "application/json", body.as_bytes().to_vec())
            .await;
        soft.refused(&reply, &what, Some((400, "invalid-body")));
    }
    let reply = api
        .raw(Method::POST, &rows, "application/json", vec![0xff, 0xfe, b'{', b'}'])
        .await;
    soft.refused(&reply, "POST invalid UTF-8", Some((400, "invalid-body")));

    // SQL that does not parse or plan, or is more than one statement.
    for (sql, params, expected) in [
        ("SELEC 1", vec![], Some((400, "invalid-sql"))),
        ("", vec![], Some((400, "invalid-sql"))),
        ("SELECT * FROM tasks.items WHERE", vec![], Some((400, "invalid-sql"))),
        ("SELECT 1; SELECT 2", vec![], Some((400, "invalid-sql"))),
        ("DELETE FROM tasks.items; SELECT 1", vec![], Some((400, "invalid-sql"))),
        ("SELECT 1; DELETE FROM tasks.items", vec![], Some((400, "invalid-sql"))),
        (
            "UPDATE tasks.items SET priority = 0; UPDATE contacts.people SET nickname = 'x'",
            vec![],
            Some((400, "invalid-sql")),
        ),
        ("SELECT title FROM tasks.items WHERE priority = $1", vec![], None),
        (
            "SELECT title FROM tasks.items WHERE priority = $2",
            vec![json!(1)],
            None,
        ),
        ("SELECT nosuch FROM tasks.items", vec![], None),
        ("SELECT * FROM notes.notes", vec![], Some((404, "table-not-found"))),
        (
            "SELECT i.title FROM tasks.items i JOIN journal.entries j ON j.id = i.id",
            vec![],
            Some((404, "table-not-found")),
        ),
        ("DELETE FROM notes.notes", vec![], Some((404, "table-not-found"))),
        (
            "INSERT INTO tasks.items (title, completed, priority) VALUES ('x', false, 'high')",
            vec![],
            None,
        ),
        (
            "INSERT INTO tasks.items (title) VALUES ('no completed value')",
            vec![],
            None,
        ),
        (
            "INSERT INTO tasks.items (title, completed, nosuch) VALUES ('x', false, 1)",
            vec![],
            None,
        ),
        ("UPDATE tasks.items SET title = NULL", vec![], None),
        ("UPDATE tasks.items SET due_at = 'not a time'", vec![], None),
        ("UPDATE tasks.items SET _created_by = 'someone'", vec![], None),
        ("UPDATE tasks.items SET id = 'same'", vec![], None),
    ] {
        let reply = api.sql(sql, &params).await;
        soft.refused(&reply, sql, expected);
    }

    // Tokens: none, malformed, tampered, the wrong kind.
    let mut tampered = tokens.access.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let auths: Vec<(Option<String>, &str)> = vec![
        (None, "no Authorization"),
        (Some("Bearer".into()), "empty bearer"),
        (Some("Bearer ".into()), "blank bearer"),
        (Some("Bearer garbage".into()), "garbage"),
        (Some("Bearer a.b.c".into()), "dots"),
        (Some(format!("Bearer {tampered}")), "tampered"),
        (Some(format!("Bearer {}x", tokens.access)), "extra character"),
        (Some(format!("Basic {}", tokens.access)), "Basic scheme"),
        (Some(tokens.access.clone()), "no scheme"),
        (
            Some(format!("Bearer {}", tokens.refresh.clone().unwrap())),
            "refresh token",
        ),
    ];
    for (auth, what) in &auths {
        for (method, path, body) in [
            (Method::GET, rows.clone(), None),
            (Method::GET, one.clone(), None),
            (Method::DELETE, one.clone(), None),
            (
                Method::POST,
                rows.clone(),
                Some(json!({"title": "sneaky", "completed": false})),
            ),
            (Method::PATCH, one.clone(), Some(json!({"title": "sneaky"}))),
            (
                Method::POST,
                "/v1/sql".into(),
                Some(json!({"sql": "DELETE FROM tasks.items"})),
            ),
            (Method::GET, "/v1/tables".into(), None),
            (Method::GET, "/v1/schemas".into(), None),
        ] {
            let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
            let reply = api.send(method.clone(), &path, auth.as_deref(), body).await;
            if auth.is_none() && path == "/v1/schemas" {
                // Without a token this is the server's public schema
                // listing: nothing of any vault or grant.
                soft.check(
                    reply.status == 200 && reply.body.get("system_columns").is_none(),
                    || format!("GET /v1/schemas without a token: {}", reply.text),
                );
                continue;
            }
            soft.refused(
                &reply,
                &format!("{what}: {method} {path}"),
                Some((401, "invalid-token")),
            );
        }
    }

    // Nothing above changed anything.
    soft.check(snapshot(&api).await == before, || {
        "data changed by refused requests".into()
    });

    // A body over the configured limit: 413 with the limit. Grow an
    // unterminated JSON string until the server stops reading it (under the
    // limit it is an invalid body, so nothing can be written either way).
    let mut limit = None;
    for size in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 40 << 20] {
        let mut body = b"{\"title\": \"".to_vec();
        body.resize(size, b'x');
        let reply = api.raw(Method::POST, &rows, "application/json", body).await;
        if reply.status == 413 {
            soft.refused(&reply, "oversized body", Some((413, "body-too-large")));
            limit = Some(
                reply.body["limit"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("`limit`: {}", reply.text)),
            );
            break;
        }
        soft.refused(&reply, "large invalid body", Some((400, "invalid-body")));
    }
    let limit = usize::try_from(limit.expect("no body up to 40 MiB was refused as too large")).unwrap();
    soft.check(limit == LIMIT, || {
        format!("413 says the limit is {limit}, configured {LIMIT}")
    });
    let padded = |size: usize, json: &str| {
        let mut body = json.as_bytes().to_vec();
        body.resize(size, b' ');
        body
    };
    let over = padded(limit + 1, r#"{"title": "one byte too many", "completed": false}"#);
    soft.refused(
        &api.raw(Method::POST, &rows, "application/json", over.clone()).await,
        "limit + 1",
        Some((413, "body-too-large")),
    );
    soft.refused(
        &api.raw(
            Method::PATCH,
            &one,
            "application/json",
            padded(limit + 1, r#"{"notes": "big"}"#),
        )
        .await,
        "PATCH limit + 1",
        Some((413, "body-too-large")),
    );
    soft.refused(
        &api.raw(
            Method::POST,
            "/v1/sql",
            "application/json",
            padded(limit + 1, r#"{"sql": "DELETE FROM tasks.items"}"#),
        )
        .await,
        "SQL limit + 1",
        Some((413, "body-too-large")),
    );
    soft.check(snapshot(&api).await == before, || {
        "data changed by oversized requests".into()
    });
    let at_limit = padded(limit, r#"{"title": "exactly at the limit", "completed": false}"#);
    let reply = api.raw(Method::POST, &rows, "application/json", at_limit).await;
    soft.check(
        reply.status == 201 && reply.body["_created_by"] == client_id.as_str(),
        || format!("a body of exactly the limit: {} {}", reply.status, short(&reply.text)),
    );
    soft.finish();
}

// ---------------------------------------------------------------------------
// 7. The OpenAPI description.

#[tokio::test]
async fn openapi_describes_every_route() {
    let (server, user) = server_and_user().await;
    let (_, api, _) = connect(&server, &user, "Taskr", "tasks.items:read").await;
    let mut doc = api.send(reqwest::Method::GET, "/v1/openapi.json", None, None).await;
    if doc.status == 401 {
        doc = api.get("/v1/openapi.json").await;
    }
    doc.expect(200);
    assert!(
        doc.content_type().starts_with("application/json"),
        "{}",
        doc.content_type()
    );
    let version = doc.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");
    assert!(doc.body["info"]["title"].is_string() && doc.body["info"]["version"].is_string());
    let paths = doc.body["paths"].as_object().expect("paths");
    // Paths may be written relative to a server URL ending in /v1.
    let prefix = match doc.body["servers"][0]["url"].as_str() {
        Some(url) if url.trim_end_matches('/').ends_with("/v1") => "/v1",
        _ => "",
    };
    let normalize = |p: &str| -> String {
        let full = format!("{prefix}{p}");
        let mut out = String::new();
        let mut in_param = false;
        for c in full.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    };
    let documented: BTreeMap<String, &Value> = paths.iter().map(|(k, v)| (normalize(k), v)).collect();
    let routes = [
        ("/v1/schemas", &["get", "post"][..]),
        ("/v1/schemas/{}", &["get"]),
        ("/v1/schemas/{}/{}", &["get"]),
        ("/v1/tables", &["get"]),
        ("/v1/tables/{}/rows", &["get", "post", "patch"]),
        ("/v1/tables/{}/rows/{}", &["get", "patch", "delete"]),
        ("/v1/sql", &["post"]),
        ("/v1/changes", &["get"]),
        ("/v1/changes/stream", &["get"]),
    ];
    for (path, methods) in routes {
        let item = documented
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not described; paths: {:?}", documented.keys()));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} is not described");
        }
    }
    // Every member a problem may carry is declared; `params` is optional.
    let schemas = &doc.body["components"]["schemas"];
    for member in [
        "type",
        "title",
        "status",
        "detail",
        "required",
        "reason",
        "table",
        "id",
        "column",
        "parameter",
        "current",
        "limit",
        "limit_seconds",
    ] {
        assert!(
            schemas["Problem"]["properties"].get(member).is_some(),
            "Problem lacks `{member}`: {}",
            schemas["Problem"]
        );
    }
    let required: Vec<&str> = schemas["SqlRequest"]["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(required, ["sql"], "{}", schemas["SqlRequest"]);
    // The statuses the server answers are declared.
    for (path, method, status) in [
        ("/v1/sql", "post", "413"),
        ("/v1/sql", "post", "429"),
        ("/v1/sql", "post", "503"),
        ("/v1/tables/{}/rows/{}", "patch", "413"),
        ("/v1/tables/{}/rows/{}", "delete", "400"),
        ("/v1/tables/{}/rows/{}", "get", "400"),
        ("/v1/tables/{}/rows", "get", "422"),
        ("/v1/changes", "get", "410"),
        ("/v1/changes/stream", "get", "410"),
        ("/v1/changes/stream", "get", "429"),
    ] {
        assert!(
            documented[path][method]["responses"].get(status).is_some(),
            "{method} {path} does not declare {status}"
        );
    }
    // Two security schemes, a bearer token and a DPoP-bound one, and every
    // operation takes either.
    let schemes = doc.body["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let scheme_named = |scheme: &str| -> String {
        let found: Vec<&String> = schemes
            .iter()
            .filter(|(_, v)| {
                v["type"] == "http" && v["scheme"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            })
            .map(|(name, _)| name)
            .collect();
        assert_eq!(found.len(), 1, "one `{scheme}` HTTP scheme: {schemes:?}");
        found[0].clone()
    };
    let bearer = scheme_named("bearer");
    let dpop = scheme_named("DPoP");
    let dpop_text = schemes[&dpop]["description"].as_str().unwrap_or_default();
    assert!(
        dpop_text.contains("`DPoP` header") && dpop_text.contains("RFC 9449"),
        "the DPoP scheme says how the proof is sent: {dpop_text:?}"
    );
    let client = scheme_named("basic");
    let either = json!([{ bearer.as_str(): [] }, { dpop.as_str(): [] }]);
    let mut operations = 0;
    for (path, item) in &documented {
        for (method, op) in item.as_object().unwrap() {
            // The schema registry is public (its listing and files need no
            // token, the listing takes one to describe what the token sees);
            // publishing is done as an app, with its client secret.
            let expected = match (method.as_str(), path.as_str()) {
                ("get", "/v1/schemas") => json!([{}, { bearer.as_str(): [] }, { dpop.as_str(): [] }]),
                ("post", "/v1/schemas") => json!([{ client.as_str(): [] }]),
                ("get", p) if p.starts_with("/v1/schemas/") => Value::Null,
                _ => either.clone(),
            };
            assert_eq!(op["security"], expected, "{method} {path}: its security");
            operations += 1;
        }
    }
    let routed: usize = routes.iter().map(|(_, methods)| methods.len()).sum();
    assert_eq!(
        operations, routed,
        "every operation was checked, and no other is described"
    );

    // List filters: one free-form object exploded into `col=op.value`
    // parameters (a list repeats the column), beside the named parameters.
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").expect("a local $ref");
                schemas[name].clone()
            }
            None => schema.clone(),
        }
    };
    let params = documented["/v1/tables/{}/rows"]["get"]["parameters"]
        .as_array()
        .expect("list parameters");
    let param = |name: &str| -> &Value {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` parameter: {params:?}"))
    };
    for name in ["select", "order", "cursor"] {
        assert_eq!(param(name)["in"], "query");
        assert_eq!(param(name)["schema"]["type"], "string", "{name}");
    }
    let limit = &param("limit")["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(1000)),
        "{limit}"
    );
    let free_form: Vec<&Value> = params.iter().filter(|p| p["schema"]["type"] == "object").collect();
    assert_eq!(free_form.len(), 1, "one filters object: {params:?}");
    let filters = free_form[0];
    assert_eq!(
        (&filters["in"], &filters["style"], &filters["explode"]),
        (&json!("query"), &json!("form"), &json!(true)),
        "{filters}"
    );
    let text = filters["description"].as_str().unwrap_or_default();
    for needle in [
        "given_name=eq.Ada&priority=gte.1&priority=lt.4",
        "in.(",
        "is.null",
        "not.",
    ] {
        assert!(
            text.contains(needle),
            "the filters' description shows `{needle}`: {text}"
        );
    }
    let value = resolve(&filters["schema"]["additionalProperties"]);
    let alternatives: Vec<Value> = value["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("a string or a list of strings: {value}"))
        .iter()
        .map(|v| {
            let mut v = resolve(v);
            if let Some(o) = v.as_object_mut() {
                o.remove("description");
            }
            v
        })
        .collect();
    assert_eq!(
        alternatives,
        [
            json!({"type": "string"}),
            json!({"type": "array", "items": {"type": "string"}})
        ],
        "{value}"
    );
    // An insert takes one row or an array of rows.
    let body =
        resolve(&documented["/v1/tables/{}/rows"]["post"]["requestBody"]["content"]["application/json"]["schema"]);
    let kinds: BTreeSet<&str> = body["oneOf"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, BTreeSet::from(["array", "object"]), "{body}");
    // The 409 of an insert is `id-in-use`, of a conditional write `conflict`.
    let described = |path: &str, method: &str| documented[path][method]["responses"]["409"]["description"].to_string();
    assert!(described("/v1/tables/{}/rows", "post").contains("id-in-use"));
    assert!(described("/v1/sql", "post").contains("id-in-use"));
    for method in ["patch", "delete"] {
        assert!(
            described("/v1/tables/{}/rows/{}", method).contains("conflict"),
            "{method}"
        );
    }
}

#[tokio::test]
async fn an_unknown_api_route_or_method_is_a_problem_and_pages_keep_their_own_answers() {
    let server = Server::start();
    let api = Api::new(&server.base, "no-token-needed");
    for path in ["/v1/no-such-thing", "/v1/tables/contacts.people/rows/p1/more"] {
        api.get(path).await.expect_problem(404, "no-such-route");
    }
    let wrong = api.call(reqwest::Method::PUT, "/v1/sql", None).await;
    wrong.expect_problem(405, "method-not-allowed");
    assert_eq!(wrong.headers.get("allow").map(|v| v.to_str().unwrap()), Some("POST"));
    api.call(reqwest::Method::DELETE, "/v1/tables", None)
        .await
        .expect_problem(405, "method-not-allowed");
    // Outside the data API, an unknown page is the HTML error page.
    let page = client().get(server.url("/no-such-page")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers()
    );
}
