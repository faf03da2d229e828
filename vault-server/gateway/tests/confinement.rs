//! The gateway in-process: a real storage engine, real tokens, and every
//! operation checked against what the token may see.

mod common;

use coffer_core::{Seq, TableName};
use coffer_gateway::{GatewayError, rows, sql};
use coffer_storage::Values;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn column_grant_never_returns_other_columns() {
    let w = World::new().await;
    let writer = w.caller("writer", "contacts.people:read+create").await;
    let secret = "ada-secret@example.org";
    rows::insert(
        &writer,
        &people(),
        vec![values(json!({"id": "p1", "display_name": "Ada", "email": secret}))],
    )
    .await
    .unwrap();
    let reader = w.caller("reader", "contacts.people(display_name):read").await;

    let listed = all_rows(&reader, &people()).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["display_name"], "Ada");
    let got = rows::get(&reader, &people(), "p1", None).await.unwrap();
    let mut outputs = vec![
        Value::Array(listed.into_iter().map(Value::Object).collect()),
        Value::Object(got),
    ];

    let select = rows::list(&reader, &people(), &query(&[("select", "email")]))
        .await
        .unwrap_err();
    assert_eq!(select.code(), "unknown-column");
    let filter = rows::list(&reader, &people(), &query(&[("email", "eq.x")]))
        .await
        .unwrap_err();
    assert_eq!(filter.code(), "unknown-column");
    let order = rows::list(&reader, &people(), &query(&[("order", "email")]))
        .await
        .unwrap_err();
    assert_eq!(order.code(), "unknown-column");

    for statement in [
        "SELECT * FROM contacts.people",
        "SELECT a.*, b.* FROM contacts.people a JOIN contacts.people b ON a.id = b.id",
        "SELECT * FROM (SELECT * FROM contacts.people) s",
        "SELECT (SELECT max(display_name) FROM contacts.people) AS x",
    ] {
        let result = sql::execute(&reader, statement, &[]).await.unwrap();
        assert!(result.columns.iter().all(|c| c.name != "email"), "{statement}");
        outputs.push(Value::Array(result.rows));
    }
    for statement in [
        "SELECT email FROM contacts.people",
        "SELECT id FROM contacts.people WHERE email = 'x'",
        "SELECT count(*) FROM contacts.people WHERE email LIKE 'ada%'",
    ] {
        let e = sql::execute(&reader, statement, &[]).await.unwrap_err();
        assert!(bad_request(&e), "{statement}: {e}");
        outputs.push(Value::String(told(&e)));
    }
    let all = serde_json::to_string(&outputs).unwrap();
    assert!(!all.contains(secret), "the email leaked: {all}");
    assert!(all.contains("Ada"), "the granted column is there");
}

#[tokio::test]
async fn own_scope_sees_and_changes_only_own_rows() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create+update+delete").await;
    let b = w.caller("app-b", "contacts.people:read+create+update+delete:own").await;
    rows::insert(&a, &people(), vec![values(json!({"id": "a1", "display_name": "A"}))])
        .await
        .unwrap();
    rows::insert(&b, &people(), vec![values(json!({"id": "b1", "display_name": "B"}))])
        .await
        .unwrap();

    let seen: Vec<String> = all_rows(&b, &people())
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["b1"]);
    assert_eq!(all_rows(&a, &people()).await.len(), 2);
    let got = rows::get(&b, &people(), "a1", None).await.unwrap_err();
    assert_eq!(got.code(), "row-not-found");
    let patch = rows::update(&b, &people(), "a1", values(json!({"display_name": "X"})), None)
        .await
        .unwrap_err();
    assert_eq!(patch.code(), "row-not-found");
    let del = rows::delete(&b, &people(), "a1", None).await.unwrap_err();
    assert_eq!(del.code(), "row-not-found");

    let count = sql::execute(&b, "SELECT count(*) FROM contacts.people", &[])
        .await
        .unwrap();
    assert_eq!(count.rows, vec![json!([1])]);
    let upd = sql::execute(&b, "UPDATE contacts.people SET display_name = 'Z'", &[])
        .await
        .unwrap();
    assert_eq!(upd.row_count, 1);
    let del = sql::execute(&b, "DELETE FROM contacts.people", &[]).await.unwrap();
    assert_eq!(del.row_count, 1);
    let left = all_rows(&a, &people()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], "a1");
    assert_eq!(left[0]["display_name"], "A", "app-b's UPDATE did not reach app-a's row");
}

#[tokio::test]
async fn ungranted_table_is_indistinguishable_from_a_missing_one() {
    let w = World::new().await;
    let c = w.caller("app", "contacts.people:read").await;
    let ungranted = rows::list(&c, &TableName::new("notes", "notes"), &query(&[]))
        .await
        .unwrap_err();
    let missing = rows::list(&c, &TableName::new("notes", "nope"), &query(&[]))
        .await
        .unwrap_err();
    assert_eq!(ungranted.code(), "table-not-found");
    assert_eq!(missing.code(), "table-not-found");
    let a = sql::execute(&c, "SELECT * FROM notes.notes", &[]).await.unwrap_err();
    let b = sql::execute(&c, "SELECT * FROM notes.nope", &[]).await.unwrap_err();
    assert_eq!(a.code(), "table-not-found", "{a}");
    assert_eq!(
        a.to_string().replace("notes.notes", "T"),
        b.to_string().replace("notes.nope", "T")
    );
    for statement in [
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM read_parquet('x.parquet')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM vault.public.anything",
    ] {
        let e = sql::execute(&c, statement, &[]).await.unwrap_err();
        assert!(refused(&e), "{statement}: {e}");
    }
    // A missing table is named as the statement resolves it; a table
    // function is not a table (and there are none); a CTE is not looked up.
    for (statement, expected) in [
        (
            "SELECT * FROM information_schema.tables",
            "table-not-found information_schema.tables",
        ),
        ("SELECT * FROM vault.public.anything", "table-not-found public.anything"),
        ("SELECT * FROM \"Notes\".NOPE", "table-not-found Notes.nope"),
        ("SELECT * FROM other.notes.notes", "table-not-found other.notes.notes"),
        (
            "SELECT p.id FROM contacts.people p WHERE p.id IN (SELECT id FROM tasks.items)",
            "table-not-found tasks.items",
        ),
        (
            "INSERT INTO notes.nope (title) VALUES ('x')",
            "table-not-found notes.nope",
        ),
        ("DELETE FROM notes.notes", "table-not-found notes.notes"),
        ("SELECT * FROM read_parquet('x.parquet')", "invalid-sql"),
    ] {
        let e = sql::execute(&c, statement, &[]).await.unwrap_err();
        let got = match &e {
            GatewayError::TableNotFound(name) => format!("{} {name}", e.code()),
            other => other.code().to_owned(),
        };
        assert_eq!(got, expected, "{statement}: {e}");
    }
    let cte = "WITH people AS (SELECT 1 AS n) SELECT n FROM people";
    assert_eq!(sql::execute(&c, cte, &[]).await.unwrap().row_count, 1);
}

#[tokio::test]
async fn another_vault_is_out_of_reach() {
    let w = World::new().await;
    let other = w.engine.create_vault().await.unwrap();
    w.engine.install_schema(other, "contacts", None).await.unwrap();
    let there = w.caller_in(other, "app", "contacts.people:read+create").await;
    rows::insert(&there, &people(), vec![values(json!({"display_name": "Elsewhere"}))])
        .await
        .unwrap();
    let here = w.caller("app", "contacts.people:read+create").await;
    assert!(all_rows(&here, &people()).await.is_empty());
    let r = sql::execute(&here, "SELECT count(*) FROM contacts.people", &[])
        .await
        .unwrap();
    assert_eq!(r.rows, vec![json!([0])]);
}

#[tokio::test]
async fn writes_check_action_and_columns() {
    let w = World::new().await;
    let reader = w.caller("reader", "contacts.people:read").await;
    let e = rows::insert(&reader, &people(), vec![values(json!({"display_name": "X"}))])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GatewayError::MissingRight { required } if required == "contacts.people:create"),
        "{e:?}"
    );
    let e = sql::execute(&reader, "INSERT INTO contacts.people (display_name) VALUES ('X')", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GatewayError::MissingRight { required } if required == "contacts.people:create"),
        "{e:?}"
    );
    let limited = w
        .caller(
            "limited",
            "contacts.people:read contacts.people(display_name):create+update",
        )
        .await;
    let e = rows::insert(
        &limited,
        &people(),
        vec![values(json!({"display_name": "X", "email": "x@example.org"}))],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, GatewayError::MissingRight { required } if required == "contacts.people(email):create"),
        "{e:?}"
    );
    let row = rows::insert(&limited, &people(), vec![values(json!({"display_name": "X"}))])
        .await
        .unwrap()
        .pop()
        .unwrap();
    let id = row["id"].as_str().unwrap();
    assert_eq!(row["_created_by"], "limited");
    let e = rows::update(&limited, &people(), id, values(json!({"email": "e@x"})), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GatewayError::MissingRight { required } if required == "contacts.people(email):update"),
        "{e:?}"
    );
    let e = sql::execute(&limited, "UPDATE contacts.people SET email = 'e@x'", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "missing-right", "{e}");
    assert!(all_rows(&limited, &people()).await.iter().all(|r| r["email"].is_null()));
}

#[tokio::test]
async fn sql_binds_parameters_and_writes() {
    let w = World::new().await;
    let app = w.caller("app", "contacts.people:read+create+update+delete").await;
    let r = sql::execute(
        &app,
        "INSERT INTO contacts.people (id, display_name, birthday, favorite) VALUES ($1, $2, $3, $4), ('p2', 'Bob', NULL, false)",
        &[json!("p1"), json!("Ada"), json!("1815-12-10"), json!(true)],
    )
    .await
    .unwrap();
    assert_eq!(r.row_count, 2);
    let r = sql::execute(
        &app,
        "SELECT display_name, birthday, favorite FROM contacts.people WHERE display_name = $1",
        &[json!("Ada")],
    )
    .await
    .unwrap();
    assert_eq!(r.rows, vec![json!(["Ada", "1815-12-10", true])]);
    let types: Vec<&str> = r.columns.iter().map(|c| c.ty.as_str()).collect();
    assert_eq!(types, ["text", "date", "boolean"]);
    let injected = sql::execute(
        &app,
        "SELECT count(*) FROM contacts.people WHERE display_name = $1",
        &[json!("x' OR '1'='1")],
    )
    .await
    .unwrap();
    assert_eq!(injected.rows, vec![json!([0])]);
    let r = sql::execute(
        &app,
        "UPDATE contacts.people SET display_name = display_name || '!' WHERE favorite = false",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.row_count, 1);
    assert_eq!(
        rows::get(&app, &people(), "p2", None).await.unwrap()["display_name"],
        "Bob!"
    );
    let refused = sql::execute(
        &app,
        "DELETE FROM contacts.people WHERE id IN (SELECT id FROM contacts.people WHERE favorite)",
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), "invalid-sql");
    let r = sql::execute(&app, "DELETE FROM contacts.people WHERE id = $1", &[json!("p1")])
        .await
        .unwrap();
    assert_eq!(r.row_count, 1);
    assert_eq!(all_rows(&app, &people()).await.len(), 1);
}

#[tokio::test]
async fn pages_follow_the_order_without_gaps_or_repeats() {
    let w = World::new().await;
    let app = w.caller("app", "tasks.items:read+create").await;
    let items = TableName::new("tasks", "items");
    let batch: Vec<Values> = (0..57)
        .map(|i| values(json!({"id": format!("t{i:02}"), "title": format!("task {}", i % 7), "priority": i % 5, "completed": false})))
        .collect();
    rows::insert(&app, &items, batch).await.unwrap();
    for order in ["priority.desc", "title,priority.desc", "id.desc"] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut last_priority = i64::MAX;
        loop {
            let mut pairs = vec![("order", order), ("limit", "10")];
            if let Some(c) = &cursor {
                pairs.push(("cursor", c));
            }
            let page = rows::list(&app, &items, &query(&pairs)).await.unwrap();
            for r in &page.rows {
                if order == "priority.desc" {
                    let p = r["priority"].as_i64().unwrap();
                    assert!(p <= last_priority, "{order}: order broken");
                    last_priority = p;
                }
                seen.push(r["id"].as_str().unwrap().to_owned());
            }
            if page.rows.len() == 5 {
                // A row written between pages neither repeats nor shifts them.
                let _ = rows::insert(
                    &app,
                    &items,
                    vec![values(json!({"title": "late", "priority": 9, "completed": true}))],
                )
                .await;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{order}: repeats");
        assert!(seen.len() >= 57, "{order}: {} rows", seen.len());
    }
    let e = rows::list(
        &app,
        &items,
        &query(&[("order", "title"), ("cursor", "bm90IGEgY3Vyc29y")]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "invalid-filter");
}

#[tokio::test]
async fn filters_match_the_grammar() {
    let w = World::new().await;
    let app = w.caller("app", "tasks.items:read+create").await;
    let items = TableName::new("tasks", "items");
    let batch: Vec<Values> = (0..20)
        .map(|i| {
            values(
                json!({"id": format!("t{i:02}"), "title": format!("Task {i}"), "priority": i, "completed": i % 2 == 0}),
            )
        })
        .collect();
    rows::insert(&app, &items, batch).await.unwrap();
    let ids =
        |rows: Vec<rows::Row>| -> Vec<String> { rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect() };
    let cases: Vec<(Vec<(&str, &str)>, usize)> = vec![
        (vec![("priority", "gte.5"), ("priority", "lt.8")], 3),
        (vec![("priority", "eq.3")], 1),
        (vec![("priority", "neq.3")], 19),
        (vec![("priority", "not.gt.10")], 11),
        (vec![("title", "like.Task 1*")], 11),
        (vec![("title", "ilike.task 1_")], 10),
        (vec![("priority", "in.(1,2,99)")], 2),
        (vec![("priority", "not.in.(1,2)")], 18),
        (vec![("due_date", "is.null")], 20),
        (vec![("completed", "is.true")], 10),
        (vec![("completed", "not.is.true")], 10),
        (vec![("title", r#"in.("Task 1","Task, 2")"#)], 1),
    ];
    for (pairs, expected) in cases {
        let got = ids(rows::list(&app, &items, &query(&pairs)).await.unwrap().rows);
        assert_eq!(got.len(), expected, "{pairs:?}: {got:?}");
    }
    for pairs in [
        vec![("priority", "gt.high")],
        vec![("nope", "eq.1")],
        vec![("priority", "like.1*")],
        vec![("title", "is.true")],
    ] {
        let e = rows::list(&app, &items, &query(&pairs)).await.unwrap_err();
        assert!(refused(&e), "{pairs:?}: {e}");
    }
}

#[tokio::test]
async fn conditional_writes_report_the_current_row() {
    let w = World::new().await;
    let app = w.caller("app", "notes.notes:read+create+update+delete").await;
    let notes = TableName::new("notes", "notes");
    let row = rows::insert(&app, &notes, vec![values(json!({"id": "n1", "title": "one"}))])
        .await
        .unwrap()
        .pop()
        .unwrap();
    let seq = Seq(row["_seq"].as_i64().unwrap());
    let updated = rows::update(&app, &notes, "n1", values(json!({"title": "two"})), Some(seq))
        .await
        .unwrap();
    assert_eq!(updated["title"], "two");
    let e = rows::update(&app, &notes, "n1", values(json!({"title": "three"})), Some(seq))
        .await
        .unwrap_err();
    match e {
        GatewayError::Conflict { current, .. } => assert_eq!(current["title"], "two"),
        other => panic!("{other:?}"),
    }
    let e = rows::delete(&app, &notes, "n1", Some(seq)).await.unwrap_err();
    assert_eq!(e.code(), "conflict");
    rows::delete(&app, &notes, "n1", Some(Seq(updated["_seq"].as_i64().unwrap())))
        .await
        .unwrap();
    assert_eq!(
        rows::get(&app, &notes, "n1", None).await.unwrap_err().code(),
        "row-not-found"
    );
}

#[tokio::test]
async fn sql_nulls_come_back_as_json_null() {
    let w = World::new().await;
    let app = w.caller("app", "notes.notes:read").await;
    let untyped = sql::execute(&app, "SELECT NULL AS z", &[]).await.unwrap();
    assert_eq!(untyped.rows, vec![json!([null])]);
    let bound = sql::execute(&app, "SELECT $1 AS v", &[Value::Null]).await.unwrap();
    assert_eq!(bound.rows, vec![json!([null])]);
}
