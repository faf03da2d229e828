//! SQL over merge-on-read tables: the newest version of each row across the
//! tail and several data files, deleted rows hidden, filters and projections
//! pushed down.

use std::collections::BTreeMap;

use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, TableName};
use coffer_query::VaultQuery;
use coffer_storage::{Embedded, EngineOptions, Mutation, Op, open_embedded};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rand::{Rng, SeedableRng};
use serde_json::json;

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(col).as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn sql_sees_exactly_the_newest_live_versions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        background: false,
        ..EngineOptions::default()
    };
    let Embedded { engine, .. } = open_embedded(dir.path(), SchemaRegistry::builtin().unwrap(), opts)
        .await
        .unwrap();
    let vault = engine.create_vault().await.unwrap();
    engine.install_schema(vault, "tasks", None).await.unwrap();
    let items = TableName::new("tasks", "items");
    let app = AppId::new("planner");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // id -> (title, priority)
    let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for step in 0..2000 {
        let id = format!("t{:04}", rng.random_range(0..400));
        let title = format!("task {step}");
        let priority = rng.random_range(1..=5);
        let op = match model.get(&id) {
            Some(_) if rng.random_bool(0.25) => {
                model.remove(&id);
                Op::Delete { id, if_seq: None }
            }
            Some(_) => {
                model.insert(id.clone(), (title.clone(), priority));
                Op::Update {
                    id,
                    patch: json!({"title": title, "priority": priority})
                        .as_object()
                        .unwrap()
                        .clone(),
                    if_seq: None,
                }
            }
            None => {
                model.insert(id.clone(), (title.clone(), priority));
                Op::Insert {
                    values: json!({"id": id, "title": title, "priority": priority, "completed": false})
                        .as_object()
                        .unwrap()
                        .clone(),
                }
            }
        };
        engine
            .write(
                vault,
                &app,
                vec![Mutation {
                    table: items.clone(),
                    op,
                }],
            )
            .await
            .unwrap();
        if step % 450 == 449 {
            engine.flush_table(vault, &items).await.unwrap();
        }
    }
    let snapshot = engine.snapshot(vault, &items).await.unwrap();
    assert!(snapshot.manifest.files.len() >= 4, "several overlapping files");
    assert!(snapshot.tail.num_rows() > 0, "and an unflushed tail");

    let q = VaultQuery::new(engine.clone(), vault);
    let check = |batches: Vec<RecordBatch>, expect: Vec<String>| {
        assert_eq!(strings(&batches, 0), expect);
    };
    // Every live row, once, with its newest title.
    let all = q.sql("SELECT id, title FROM tasks.items ORDER BY id").await.unwrap();
    check(all.clone(), model.keys().cloned().collect());
    assert_eq!(
        strings(&all, 1),
        model.values().map(|(t, _)| t.clone()).collect::<Vec<_>>()
    );
    // Filters on a non-key column are correct across versions.
    let high = q
        .sql("SELECT id FROM tasks.items WHERE priority >= 4 ORDER BY id")
        .await
        .unwrap();
    check(
        high,
        model
            .iter()
            .filter(|(_, (_, p))| *p >= 4)
            .map(|(k, _)| k.clone())
            .collect(),
    );
    // A point filter on id.
    let some = model.keys().nth(17).unwrap().clone();
    let one = q
        .sql(&format!("SELECT id FROM tasks.items WHERE id = '{some}'"))
        .await
        .unwrap();
    check(one, vec![some]);
    // Aggregates.
    let counts = q
        .sql("SELECT priority, count(*) AS n FROM tasks.items GROUP BY priority ORDER BY priority")
        .await
        .unwrap();
    let mut expect: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, p) in model.values() {
        *expect.entry(*p).or_default() += 1;
    }
    let mut got = BTreeMap::new();
    for b in &counts {
        for i in 0..b.num_rows() {
            got.insert(
                b.column(0).as_primitive::<Int64Type>().value(i),
                b.column(1).as_primitive::<Int64Type>().value(i),
            );
        }
    }
    assert_eq!(got, expect);

    // The same after compaction into one base file.
    engine.flush_table(vault, &items).await.unwrap();
    engine.compact_table(vault, &items).await.unwrap();
    let all = q.sql("SELECT id FROM tasks.items ORDER BY id").await.unwrap();
    check(all, model.keys().cloned().collect());

    // `_deleted` is not a visible column; system columns are.
    assert!(q.sql("SELECT _deleted FROM tasks.items").await.is_err());
    let sys = q.sql("SELECT _created_by FROM tasks.items LIMIT 1").await.unwrap();
    assert_eq!(strings(&sys, 0), vec!["planner".to_owned()]);
    engine.shutdown().await;
}

#[tokio::test]
async fn queries_reach_only_the_vault_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        background: false,
        ..EngineOptions::default()
    };
    let Embedded { engine, .. } = open_embedded(dir.path(), SchemaRegistry::builtin().unwrap(), opts)
        .await
        .unwrap();
    let vault = engine.create_vault().await.unwrap();
    let other = engine.create_vault().await.unwrap();
    engine.install_schema(vault, "notes", None).await.unwrap();
    engine.install_schema(other, "contacts", None).await.unwrap();
    let q = VaultQuery::new(engine.clone(), vault);
    for sql in [
        "SELECT * FROM contacts.people", // installed in another vault only
        "SELECT * FROM information_schema.tables",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "SELECT * FROM '/etc/passwd'",
        "INSERT INTO notes.notes (title) VALUES ('x')",
    ] {
        assert!(q.sql(sql).await.is_err(), "{sql} should be refused");
    }
    let empty = q.sql("SELECT count(*) FROM notes.notes").await.unwrap();
    assert_eq!(empty[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn orphan_files_under_the_prefix_are_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        background: false,
        ..EngineOptions::default()
    };
    let Embedded { engine, .. } = open_embedded(dir.path(), SchemaRegistry::builtin().unwrap(), opts)
        .await
        .unwrap();
    let vault = engine.create_vault().await.unwrap();
    engine.install_schema(vault, "notes", None).await.unwrap();
    let notes = TableName::new("notes", "notes");
    let app = AppId::new("writer");
    for i in 0..10 {
        let values = json!({"id": format!("n{i}"), "title": "kept"})
            .as_object()
            .unwrap()
            .clone();
        engine
            .write(
                vault,
                &app,
                vec![Mutation {
                    table: notes.clone(),
                    op: Op::Insert { values },
                }],
            )
            .await
            .unwrap();
    }
    engine.flush_table(vault, &notes).await.unwrap();
    // Copy the real file under a new name next to it: a well-formed file
    // with the right key, just not listed in the manifest.
    let listed = engine.snapshot(vault, &notes).await.unwrap().manifest.files[0]
        .key
        .clone();
    let src = dir.path().join("objects").join(&listed);
    let orphan = src.with_file_name("01orphan0000000000000000000.parquet");
    std::fs::copy(&src, &orphan).unwrap();
    let q = VaultQuery::new(engine.clone(), vault);
    let n = q.sql("SELECT count(*) FROM notes.notes").await.unwrap();
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 10);
    assert_eq!(engine.snapshot(vault, &notes).await.unwrap().manifest.files.len(), 1);
    assert!(orphan.exists());
    engine.shutdown().await;
}
