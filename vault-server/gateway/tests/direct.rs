//! Point reads by id and value inserts run without the query planner. Each
//! test here runs a statement of such a shape beside the same statement
//! with one pair of redundant parentheses, which the direct path does not
//! take, and requires the same answer (rows, columns and types, or the same
//! refusal) under every kind of grant.

mod common;

use coffer_core::TableName;
use coffer_gateway::{Caller, GatewayError, rows, sql};
use common::*;
use datafusion::common::ScalarValue;
use serde_json::{Value, json};

/// What a statement answered: its columns (name and type) and rows, or its
/// refusal's code.
fn answer(result: Result<sql::SqlResult, GatewayError>) -> Value {
    match result {
        Ok(r) => json!({
            "kind": format!("{:?}", r.kind),
            "tables": r.tables.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "columns": r.columns.iter().map(|c| json!([c.name, c.ty])).collect::<Vec<_>>(),
            "rows": r.rows,
            "count": r.row_count,
        }),
        Err(e) => json!({ "refused": e.code(), "detail": e.to_string() }),
    }
}

/// `sql` and `planned` (the same statement the direct path does not take)
/// answer alike for `caller`; returns the answer.
async fn same(caller: &Caller, sql: &str, planned: &str, params: &[Value]) -> Value {
    assert!(sql::runs_directly(sql), "{sql}");
    assert!(!sql::runs_directly(planned), "{planned}");
    let direct = answer(sql::execute(caller, sql, params).await);
    let via_planner = answer(sql::execute(caller, planned, params).await);
    assert_eq!(direct, via_planner, "{sql} with {params:?}");
    direct
}

/// A vault with people written by two apps, some flushed to a data file,
/// one updated since, one deleted.
async fn vault_of_people(w: &World) {
    let a = w.caller("app-a", "contacts.people:read+create+update+delete").await;
    let b = w.caller("app-b", "contacts.people:read+create").await;
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        rows::insert(
            app,
            &people(),
            vec![values(json!({
                "id": format!("p{i}"),
                "display_name": format!("Person {i}"),
                "email": format!("p{i}@example.org"),
                "favorite": i % 3 == 0,
                "birthday": format!("1990-01-0{}", i + 1),
                "emails": [format!("p{i}@example.org")],
            }))],
        )
        .await
        .unwrap();
        if i == 2 {
            w.engine.flush_table(w.vault, &people()).await.unwrap();
        }
    }
    rows::update(&a, &people(), "p0", values(json!({"display_name": "Renamed"})), None)
        .await
        .unwrap();
    rows::delete(&a, &people(), "p2", None).await.unwrap();
}

#[tokio::test]
async fn point_reads_answer_as_the_planner_does_under_every_grant() {
    let w = World::new().await;
    vault_of_people(&w).await;
    let ids = [
        "p0", "p1", "p2", "p3", "p4", "p5", "nobody", "", "'", "p0 ", "P0", "\u{0}", "é",
    ];
    let scopes = [
        "contacts.people:read",
        "contacts.people(display_name,favorite):read",
        "contacts.people:read:own",
        "contacts.people(email):read:own notes.notes:read",
        "contacts.people:create",
    ];
    let mut found = 0;
    for (n, scope) in scopes.iter().enumerate() {
        let caller = w.caller(if n == 2 { "app-b" } else { "app-a" }, scope).await;
        for id in ids {
            let p = [json!(id)];
            for (sql, planned) in [
                (
                    "SELECT * FROM contacts.people WHERE id = $1",
                    "SELECT * FROM contacts.people WHERE (id = $1)",
                ),
                (
                    "SELECT display_name, p.id AS \"Key\", favorite FROM Contacts.People AS p WHERE $1 = P.Id",
                    "SELECT display_name, p.id AS \"Key\", favorite FROM Contacts.People AS p WHERE ($1 = P.Id)",
                ),
                (
                    "SELECT email, birthday, emails, _seq, _created_by FROM vault.contacts.people WHERE id = $1",
                    "SELECT email, birthday, emails, _seq, _created_by FROM vault.contacts.people WHERE (id = $1)",
                ),
            ] {
                let got = same(&caller, sql, planned, &p).await;
                found += got["count"].as_u64().unwrap_or(0);
            }
        }
        // A literal key, and keys of other types than the id's.
        same(
            &caller,
            "SELECT * FROM contacts.people WHERE id = 'p1'",
            "SELECT * FROM contacts.people WHERE (id = 'p1')",
            &[],
        )
        .await;
        for p in [json!(1), json!(null), json!(true), json!(["p1"])] {
            same(
                &caller,
                "SELECT id FROM contacts.people WHERE id = $1",
                "SELECT id FROM contacts.people WHERE (id = $1)",
                &[p],
            )
            .await;
        }
        // No parameter given.
        same(
            &caller,
            "SELECT id FROM contacts.people WHERE id = $1",
            "SELECT id FROM contacts.people WHERE (id = $1)",
            &[],
        )
        .await;
    }
    // The comparison saw rows, not only empty answers and refusals.
    assert!(found > 20, "{found} rows found");
}

#[tokio::test]
async fn a_table_or_column_outside_the_grant_is_refused_as_the_planner_refuses_it() {
    let w = World::new().await;
    vault_of_people(&w).await;
    let caller = w
        .caller("app-a", "contacts.people(display_name):read notes.notes:read")
        .await;
    let p = [json!("p1")];
    for (sql, planned) in [
        (
            "SELECT email FROM contacts.people WHERE id = $1",
            "SELECT email FROM contacts.people WHERE (id = $1)",
        ),
        (
            "SELECT * FROM contacts.groups WHERE id = $1",
            "SELECT * FROM contacts.groups WHERE (id = $1)",
        ),
        (
            "SELECT * FROM tasks.items WHERE id = $1",
            "SELECT * FROM tasks.items WHERE (id = $1)",
        ),
        (
            "SELECT nothing FROM contacts.people WHERE id = $1",
            "SELECT nothing FROM contacts.people WHERE (id = $1)",
        ),
    ] {
        let got = same(&caller, sql, planned, &p).await;
        assert!(got.get("refused").is_some(), "{sql}: {got}");
    }
}

/// Every user column of `table`'s row `id`, as the rows API reads it.
async fn stored(w: &World, table: &TableName, id: &str) -> Value {
    let reader = w.caller("reader", &format!("{table}:read")).await;
    let mut row = rows::get(&reader, table, id, None).await.unwrap();
    for system in ["id", "_seq", "_created_at", "_updated_at"] {
        row.remove(system);
    }
    Value::Object(row)
}

#[tokio::test]
async fn value_inserts_store_what_the_planner_stores() {
    let w = World::new().await;
    let app = w.caller("app-a", "tasks.items:read+create").await;
    // (`title` and `completed` are the table's required columns.)
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "(id, title, priority, completed, tags, due_date) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                json!("ID"),
                json!("Buy milk"),
                json!(3),
                json!(true),
                json!("[\"home\"]"),
                json!("2026-12-24"),
            ],
        ),
        (
            "(id, title, priority, completed, notes) VALUES ($1, 'Literal', 7, false, NULL)",
            vec![json!("ID")],
        ),
        (
            "(id, title, priority, completed) VALUES ($1, $2, $3, $4)",
            vec![json!("ID"), json!("Nulls"), json!(null), json!(false)],
        ),
        (
            "(id, title, priority, completed) VALUES ($1, 'x', $2, true)",
            vec![json!("ID"), json!("12")],
        ),
        (
            "(id, title, completed) VALUES ($1, $2, true)",
            vec![json!("ID"), json!(42)],
        ),
        (
            "(id, title, estimate_minutes, completed) VALUES ($1, 'x', 1.5, true)",
            vec![json!("ID")],
        ),
        (
            "(ID, \"title\", completed) VALUES ($1, 'Quoted', false)",
            vec![json!("ID")],
        ),
        ("(id, title) VALUES ($1, 'Not completed')", vec![json!("ID")]),
    ];
    let mut stored_alike = 0;
    for (n, (rest, params)) in cases.iter().enumerate() {
        let direct_id = format!("d{n}");
        let planned_id = format!("q{n}");
        let with_id = |id: &str| -> Vec<Value> {
            let mut p = params.clone();
            p[0] = json!(id);
            p
        };
        let direct = answer(sql::execute(&app, &format!("INSERT INTO tasks.items {rest}"), &with_id(&direct_id)).await);
        // Parentheses around the first value keep the planner's path.
        let planned_sql = format!("INSERT INTO tasks.items {rest}").replacen("VALUES ($1", "VALUES (($1)", 1);
        assert!(sql::runs_directly(&format!("INSERT INTO tasks.items {rest}")), "{rest}");
        assert!(!sql::runs_directly(&planned_sql), "{planned_sql}");
        let planned = answer(sql::execute(&app, &planned_sql, &with_id(&planned_id)).await);
        assert_eq!(direct, planned, "{rest} {params:?}");
        if direct.get("refused").is_none() {
            assert_eq!(
                stored(&w, &TableName::new("tasks", "items"), &direct_id).await,
                stored(&w, &TableName::new("tasks", "items"), &planned_id).await,
                "{rest} {params:?}"
            );
            stored_alike += 1;
        }
    }
    // Most cases insert (the comparison is of stored rows, not only of
    // refusals).
    assert!(
        stored_alike >= 7,
        "{stored_alike} of {} cases stored a row",
        cases.len()
    );
}

#[tokio::test]
async fn value_inserts_are_refused_as_the_planner_refuses_them() {
    let w = World::new().await;
    let narrow = w
        .caller("app-a", "tasks.items(title,completed):create tasks.items:read")
        .await;
    let reader = w.caller("app-b", "tasks.items:read").await;
    for (caller, rest) in [
        (&narrow, "(title, priority, completed) VALUES ($1, 3, true)"),
        (&narrow, "(title, _created_by) VALUES ($1, 'someone')"),
        (&narrow, "(title, nothing) VALUES ($1, 'x')"),
        (&reader, "(title, completed) VALUES ($1, true)"),
        (&narrow, "(title) VALUES ($1)"),
    ] {
        let sql = format!("INSERT INTO tasks.items {rest}");
        let planned = sql.replacen("VALUES ($1", "VALUES (($1)", 1);
        assert!(sql::runs_directly(&sql) && !sql::runs_directly(&planned), "{sql}");
        let direct = answer(sql::execute(caller, &sql, &[json!("t")]).await);
        assert_eq!(
            direct,
            answer(sql::execute(caller, &planned, &[json!("t")]).await),
            "{sql}"
        );
        assert!(direct.get("refused").is_some(), "{sql}: {direct}");
    }
    // Nothing of the refused statements was written.
    let all = sql::execute(&reader, "SELECT count(*) FROM tasks.items", &[])
        .await
        .unwrap();
    assert_eq!(all.rows, vec![json!([0])]);
}

#[tokio::test]
async fn a_typed_vector_parameter_inserts_and_reads_back_directly() {
    let w = World::new().await;
    let app = w.caller("app-a", "notes.notes:read+create").await;
    let embedding: Vec<f32> = (0..384).map(|i| i as f32 / 384.0).collect();
    let vector = ScalarValue::List(ScalarValue::new_list_nullable(
        &embedding
            .iter()
            .map(|f| ScalarValue::Float32(Some(*f)))
            .collect::<Vec<_>>(),
        &datafusion::arrow::datatypes::DataType::Float32,
    ));
    // Whatever type the parameter arrives in, the answer is the planner's.
    for (id, sql) in [
        (
            "direct",
            "INSERT INTO notes.notes (id, title, embedding) VALUES ($1, $2, $3)",
        ),
        (
            "planned",
            "INSERT INTO notes.notes (id, title, embedding) VALUES (($1), $2, $3)",
        ),
    ] {
        let params = [
            ScalarValue::Utf8(Some(id.into())),
            ScalarValue::Utf8(Some("v".into())),
            vector.clone(),
        ];
        sql::execute_batches(&app, sql, &params).await.unwrap();
    }
    let read = |id: &'static str| {
        let app = app.clone();
        async move {
            let r = sql::execute(
                &app,
                "SELECT title, embedding FROM notes.notes WHERE id = $1",
                &[json!(id)],
            )
            .await
            .unwrap();
            (r.columns.iter().map(|c| c.ty.clone()).collect::<Vec<_>>(), r.rows)
        }
    };
    let (direct, planned) = (read("direct").await, read("planned").await);
    assert_eq!(direct, planned);
    assert_eq!(direct.1.len(), 1);
}
