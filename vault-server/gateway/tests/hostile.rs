//! What a hostile app tries against the gateway, each attempt with what it
//! must get: nothing of other apps' rows (in results, errors or counts), no
//! write wider than its statement, and no request that outgrows its limits.

mod common;

use std::time::{Duration, Instant};

use coffer_core::TableName;
use coffer_gateway::{Caller, GatewayError, QueryLimits, RequestLimits, rows, sql};
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "alice-secret@a.example";

fn notes() -> TableName {
    TableName::new("notes", "notes")
}

fn tasks() -> TableName {
    TableName::new("tasks", "items")
}

async fn run(caller: &Caller, text: &str, params: &[Value]) -> Result<sql::SqlResult, GatewayError> {
    sql::execute(caller, text, params).await
}

/// Inserts `n` notes titled `{title} {i}`.
async fn insert_notes(app: &Caller, n: usize, title: &str) {
    let notes_rows: Vec<_> = (0..n)
        .map(|i| values(json!({"id": format!("n{i:03}"), "title": format!("{title} {i}")})))
        .collect();
    rows::insert(app, &notes(), notes_rows).await.unwrap();
}

/// Neither the error nor its problem document carries `secret`.
fn assert_hides(e: &GatewayError, secret: &str) {
    let problem = told(e);
    assert!(
        !problem.contains(secret) && !e.to_string().contains(secret),
        "the error leaks `{secret}`: {problem}"
    );
}

/// App `alice` writes a person with a secret email; app `bob` may read and
/// change only its own people and writes one with a numeric email.
async fn two_apps(w: &World, flushed: bool) -> (Caller, Caller) {
    let alice = w.caller("alice", "contacts.people:read+create").await;
    rows::insert(
        &alice,
        &people(),
        vec![values(json!({"id": "a1", "display_name": "Alice", "email": SECRET}))],
    )
    .await
    .unwrap();
    let bob = w.caller("bob", "contacts.people:read+create+update+delete:own").await;
    rows::insert(
        &bob,
        &people(),
        vec![values(json!({"id": "b1", "display_name": "Bob", "email": "12345"}))],
    )
    .await
    .unwrap();
    if flushed {
        w.engine.flush_table(w.vault, &people()).await.unwrap();
    }
    (alice, bob)
}

#[tokio::test]
async fn own_scope_holds_before_any_caller_expression_runs() {
    for flushed in [false, true] {
        let w = World::new().await;
        let (alice, bob) = two_apps(&w, flushed).await;
        // The cast would fail on Alice's row; Bob's predicate never meets it.
        let cast = "SELECT id FROM contacts.people WHERE abs(CAST(email AS BIGINT)) >= 0";
        let got = run(&bob, cast, &[])
            .await
            .unwrap_or_else(|e| panic!("flushed={flushed}: {e}"));
        assert_eq!(got.rows, vec![json!(["b1"])], "flushed={flushed}");
        // A yes/no oracle: divide by zero when another row's email starts with `a`.
        let oracle = "SELECT id FROM contacts.people WHERE CASE WHEN email LIKE 'a%' THEN 1/0 ELSE 1 END = 1";
        let got = run(&bob, oracle, &[])
            .await
            .unwrap_or_else(|e| panic!("flushed={flushed}: {e}"));
        assert_eq!(got.rows, vec![json!(["b1"])], "flushed={flushed}");
        // The same conditions in writes reach Bob's row only.
        let update = "UPDATE contacts.people SET display_name = 'x' WHERE abs(CAST(email AS BIGINT)) >= 0";
        assert_eq!(run(&bob, update, &[]).await.unwrap().row_count, 1);
        let delete = "DELETE FROM contacts.people WHERE CASE WHEN email LIKE 'a%' THEN 1/0 ELSE 1 END = 1";
        assert_eq!(run(&bob, delete, &[]).await.unwrap().row_count, 1);
        let a1 = rows::get(&alice, &people(), "a1", None).await.unwrap();
        assert_eq!(a1["display_name"], "Alice");
        assert_eq!(a1["email"], SECRET);
        // An error on Bob's own rows says what failed, never the value.
        rows::insert(
            &bob,
            &people(),
            vec![values(
                json!({"id": "b2", "display_name": "B2", "email": "bob-private@b.example"}),
            )],
        )
        .await
        .unwrap();
        let e = run(&bob, cast, &[]).await.unwrap_err();
        assert!(bad_request(&e), "{e}");
        assert_hides(&e, "bob-private");
        assert_hides(&e, SECRET);
    }
}

#[tokio::test]
async fn rows_api_filters_run_only_over_visible_rows() {
    let w = World::new().await;
    let (_alice, bob) = two_apps(&w, true).await;
    let page = rows::list(&bob, &people(), &query(&[("email", "like.alice*")]))
        .await
        .unwrap();
    assert!(page.rows.is_empty());
    let page = rows::list(&bob, &people(), &query(&[("email", "gte.0")]))
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.rows[0]["id"], "b1");
}

#[tokio::test]
async fn a_where_that_folds_to_false_or_null_changes_nothing() {
    let w = World::new().await;
    let writer = w.caller("writer", "notes.notes:read+create+update+delete").await;
    for i in 0..3 {
        rows::insert(
            &writer,
            &notes(),
            vec![values(json!({"id": format!("n{i}"), "title": "t"}))],
        )
        .await
        .unwrap();
    }
    for (statement, params) in [
        ("DELETE FROM notes.notes WHERE false", vec![]),
        ("DELETE FROM notes.notes WHERE title LIKE $1", vec![Value::Null]),
        ("DELETE FROM notes.notes WHERE NULL", vec![]),
        ("DELETE FROM notes.notes WHERE 1 = 2 AND title = 't'", vec![]),
        ("UPDATE notes.notes SET title = 'gone' WHERE false", vec![]),
        (
            "UPDATE notes.notes SET title = 'gone' WHERE title = $1",
            vec![Value::Null],
        ),
    ] {
        let got = run(&writer, statement, &params).await.unwrap();
        assert_eq!(got.row_count, 0, "{statement}");
    }
    assert_eq!(all_rows(&writer, &notes()).await.len(), 3);
    assert!(all_rows(&writer, &notes()).await.iter().all(|r| r["title"] == "t"));
    // Subqueries of every form are refused in write conditions.
    for statement in [
        "DELETE FROM notes.notes WHERE id = ANY(SELECT id FROM notes.notes)",
        "DELETE FROM notes.notes WHERE id IN (SELECT id FROM notes.notes)",
        "DELETE FROM notes.notes WHERE EXISTS (SELECT 1 FROM notes.notes)",
        "DELETE FROM notes.notes WHERE title = (SELECT max(title) FROM notes.notes)",
        "UPDATE notes.notes SET title = (SELECT max(title) FROM notes.notes)",
    ] {
        let e = run(&writer, statement, &[]).await.unwrap_err();
        assert!(bad_request(&e), "{statement}: {e}");
    }
    assert_eq!(all_rows(&writer, &notes()).await.len(), 3);
    // A true condition, folded or not, is every row.
    assert_eq!(
        run(&writer, "UPDATE notes.notes SET title = 'u' WHERE true", &[])
            .await
            .unwrap()
            .row_count,
        3
    );
    assert_eq!(run(&writer, "DELETE FROM notes.notes", &[]).await.unwrap().row_count, 3);
}

#[tokio::test]
async fn writes_reach_and_answer_only_readable_rows() {
    let w = World::new().await;
    let owner = w.caller("owner", "tasks.items:read+create").await;
    rows::insert(
        &owner,
        &tasks(),
        vec![values(
            json!({"id": "t-other", "title": "another app's task", "notes": "private", "completed": false}),
        )],
    )
    .await
    .unwrap();
    let app = w
        .caller("app", "tasks.items:read+create:own tasks.items:update+delete")
        .await;
    rows::insert(
        &app,
        &tasks(),
        vec![values(json!({"id": "t-mine", "title": "a mine", "completed": false}))],
    )
    .await
    .unwrap();

    // PATCH {} on another app's row: as if it did not exist.
    let e = rows::update(&app, &tasks(), "t-other", values(json!({})), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "row-not-found");
    assert_hides(&e, "private");
    let e = rows::delete(&app, &tasks(), "t-other", None).await.unwrap_err();
    assert_eq!(e.code(), "row-not-found");
    let missing = rows::update(&app, &tasks(), "t-none", values(json!({})), None)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), e.code());

    // SQL conditions count only the rows the app may read.
    let got = run(&app, "UPDATE tasks.items SET notes = 'x' WHERE title LIKE 'a%'", &[])
        .await
        .unwrap();
    assert_eq!(got.row_count, 1);
    let got = run(&app, "DELETE FROM tasks.items WHERE title LIKE '%task'", &[])
        .await
        .unwrap();
    assert_eq!(got.row_count, 0);
    let other = rows::get(&owner, &tasks(), "t-other", None).await.unwrap();
    assert_eq!(other["notes"], "private");

    // An insert with a taken id answers the same, whoever holds the id, by
    // any route (one row, a batch, SQL): `id-in-use`, nothing of the row.
    let taken = |id: &str| values(json!({"id": id, "title": "x", "completed": false}));
    for id in ["t-other", "t-mine"] {
        let single = rows::insert(&app, &tasks(), vec![taken(id)]).await.unwrap_err();
        let batch = rows::insert(&app, &tasks(), vec![taken("t-fresh"), taken(id)])
            .await
            .unwrap_err();
        let sql_insert = run(
            &app,
            "INSERT INTO tasks.items (id, title, completed) VALUES ($1, 'x', false)",
            &[json!(id)],
        )
        .await
        .unwrap_err();
        let expected = GatewayError::IdInUse {
            table: "tasks.items".into(),
            id: id.into(),
        };
        assert_eq!(
            expected.to_string(),
            format!("tasks.items: the id `{id}` is already in use; choose another id or leave `id` out")
        );
        for (what, e) in [("single", &single), ("batch", &batch), ("sql", &sql_insert)] {
            assert_eq!(told(e), told(&expected), "{what} insert of `{id}`");
            assert_hides(e, "private");
            assert_hides(e, "another app");
        }
    }
    // Nothing of the refused batch was written.
    let e = rows::get(&owner, &tasks(), "t-fresh", None).await.unwrap_err();
    assert_eq!(e.code(), "row-not-found");
    let other = rows::get(&owner, &tasks(), "t-other", None).await.unwrap();
    assert_eq!(other["title"], "another app's task");
}

#[tokio::test]
async fn deep_expressions_and_many_filters_are_refused_not_fatal() {
    let w = World::new().await;
    let app = w.caller("app", "notes.notes:read+create").await;
    let deep = format!("SELECT 1{}", "+1".repeat(30_000));
    let e = run(&app, &deep, &[]).await.unwrap_err();
    assert_eq!(e.code(), "query-limit", "{e}");
    let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(bad_request(&run(&app, &nested, &[]).await.unwrap_err()));
    let pairs: Vec<(String, String)> = (0..50_000).map(|i| (format!("c{i}"), "eq.1".to_owned())).collect();
    let e = coffer_gateway::filter::ListQuery::parse(&pairs).unwrap_err();
    assert_eq!(e.code(), "query-limit");
    let list = format!("in.({})", vec!["x"; 5_000].join(","));
    let e = coffer_gateway::filter::ListQuery::parse(&[("title".into(), list)]).unwrap_err();
    assert!(bad_request(&e), "{e}");
    // The gateway still answers.
    assert_eq!(run(&app, "SELECT 1 + 1", &[]).await.unwrap().rows, vec![json!([2])]);
}

fn quick_limits() -> RequestLimits {
    RequestLimits {
        query_timeout: Duration::from_secs(2),
        queries_per_grant: 2,
        queries_total: 8,
        query: QueryLimits {
            memory_bytes: 32 * 1024 * 1024,
            ..QueryLimits::default()
        },
    }
}

#[tokio::test]
async fn runaway_queries_are_stopped_with_a_clear_problem() {
    let w = World::with_limits(quick_limits()).await;
    let nothing = w.caller("nothing", "notes.notebooks(name):create").await;
    let app = w.caller("app", "notes.notes:read+create").await;
    insert_notes(&app, 200, "title").await;
    for (caller, statement) in [
        (&nothing, "SELECT * FROM generate_series(1, 9000000000000000000)"),
        (&nothing, "SELECT sum(value) FROM range(1000000000000)"),
        (
            &nothing,
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        ),
        (&nothing, "SELECT repeat('x', 2000000000)"),
        (&nothing, "SELECT lpad('x', 2000000000)"),
        (&nothing, "SELECT replace(repeat('a', 60000), 'a', repeat('b', 60000))"),
        (&nothing, "SELECT levenshtein(repeat('a', 60000), repeat('b', 60000))"),
        (
            &app,
            "SELECT a.title, b.title, c.title, d.title FROM notes.notes a, notes.notes b, notes.notes c, \
             notes.notes d ORDER BY a.title, b.title, c.title, d.title LIMIT 5",
        ),
        (
            &app,
            "SELECT count(*) FROM notes.notes a, notes.notes b, notes.notes c, notes.notes d, notes.notes e",
        ),
    ] {
        let started = Instant::now();
        let e = run(caller, statement, &[]).await.unwrap_err();
        let took = started.elapsed();
        assert!(e.code() != "server-error", "{statement}: {e} ({})", e.code());
        assert!(took < Duration::from_secs(4), "{statement} took {took:?}");
        assert_ne!(e.code(), "server-error", "{statement}");
    }
}

#[tokio::test]
async fn one_grant_runs_a_bounded_number_of_queries_at_once() {
    let w = World::with_limits(quick_limits()).await;
    let app = w.caller("app", "notes.notes:read+create").await;
    insert_notes(&app, 100, "note").await;
    let slow = "SELECT count(*) FROM notes.notes a, notes.notes b, notes.notes c, notes.notes d";
    let runs = (0..4).map(|_| {
        let app = app.clone();
        async move { sql::execute(&app, slow, &[]).await }
    });
    let results = futures::future::join_all(runs).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == "too-many-requests"))
        .count();
    assert_eq!(busy, 2, "{results:?}");
    let e = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(e.code(), "too-many-requests");
    // Another app on the same vault is not held up by this one's limit.
    let other = w.caller("other", "notes.notes:read").await;
    assert_eq!(
        run(&other, "SELECT count(*) FROM notes.notes", &[]).await.unwrap().rows,
        vec![json!([100])]
    );
}

#[tokio::test]
async fn memory_and_result_size_have_limits_with_clear_problems() {
    let w = World::with_limits(RequestLimits {
        query: QueryLimits {
            memory_bytes: 4 * 1024 * 1024,
            ..QueryLimits::default()
        },
        ..RequestLimits::default()
    })
    .await;
    let app = w.caller("app", "notes.notes:read+create").await;
    insert_notes(&app, 300, "a title of some length, number").await;
    // 90,000 groups do not fit in 4 MiB; nothing spills to disk instead.
    let e = run(
        &app,
        "SELECT a.title, b.title, count(*) FROM notes.notes a, notes.notes b GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 3",
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "query-limit", "{e}");
    assert!(e.to_string().contains("more than one request may use"), "{e}");
    // Each value is within the function limit; all of them are not.
    let e = run(
        &app,
        "SELECT repeat('x', 200000) AS a, repeat('y', 200000) AS b FROM notes.notes",
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "query-limit", "{e}");
    assert!(e.to_string().contains("MiB"), "{e}");
}
