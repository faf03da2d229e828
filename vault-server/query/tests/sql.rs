//! SQL over merge-on-read tables: the newest version of each row across the
//! tail and several data files, deleted rows hidden, filters and projections
//! pushed down.

use std::collections::BTreeMap;

use coffer_core::{AppId, TableName};
use coffer_query::VaultQuery;
use coffer_storage::{Engine, Mutation, Op};
use coffer_test_support::engine::{throwaway, vault_with};
use coffer_test_support::values;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tempfile::TempDir;

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(col).as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

/// The one number a `SELECT count(*) …` answers.
fn count(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Writes one change to `table` as `app`.
async fn write(engine: &Engine, vault: coffer_core::VaultId, app: &AppId, table: &TableName, op: Op) {
    engine
        .write(
            vault,
            app,
            vec![Mutation {
                table: table.clone(),
                op,
            }],
        )
        .await
        .unwrap();
}

/// `tasks.items` after 2000 random inserts, updates and deletes by
/// `planner`, flushed now and then into several overlapping files with an
/// unflushed tail; the query layer over it, and what each live id's newest
/// (title, priority) is.
struct Tasks {
    _dir: TempDir,
    engine: Engine,
    vault: coffer_core::VaultId,
    items: TableName,
    q: VaultQuery,
    model: BTreeMap<String, (String, i64)>,
}

async fn tasks() -> Tasks {
    let (dir, engine) = throwaway().await;
    let vault = vault_with(&engine, &["tasks"]).await;
    let items = TableName::new("tasks", "items");
    let app = AppId::new("planner");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
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
                    patch: values(json!({"title": title, "priority": priority})),
                    if_seq: None,
                }
            }
            None => {
                model.insert(id.clone(), (title.clone(), priority));
                Op::Insert {
                    values: values(json!({"id": id, "title": title, "priority": priority, "completed": false})),
                }
            }
        };
        write(&engine, vault, &app, &items, op).await;
        if step % 450 == 449 {
            engine.flush_table(vault, &items).await.unwrap();
        }
    }
    let snapshot = engine.snapshot(vault, &items).await.unwrap();
    assert!(snapshot.manifest.files.len() >= 4, "several overlapping files");
    assert!(snapshot.tail.num_rows() > 0, "and an unflushed tail");
    let q = VaultQuery::new(engine.clone(), vault);
    Tasks {
        _dir: dir,
        engine,
        vault,
        items,
        q,
        model,
    }
}

#[tokio::test]
async fn sql_sees_every_live_row_once_with_its_newest_title() {
    let Tasks {
        _dir, engine, q, model, ..
    } = tasks().await;
    let all = q.sql("SELECT id, title FROM tasks.items ORDER BY id").await.unwrap();
    assert_eq!(strings(&all, 0), model.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        strings(&all, 1),
        model.values().map(|(t, _)| t.clone()).collect::<Vec<_>>()
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn filters_on_a_non_key_column_are_correct_across_versions() {
    let Tasks {
        _dir, engine, q, model, ..
    } = tasks().await;
    let high = q
        .sql("SELECT id FROM tasks.items WHERE priority >= 4 ORDER BY id")
        .await
        .unwrap();
    let expect: Vec<String> = model
        .iter()
        .filter(|(_, (_, p))| *p >= 4)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(strings(&high, 0), expect);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_point_filter_on_id_finds_the_row() {
    let Tasks {
        _dir, engine, q, model, ..
    } = tasks().await;
    let some = model.keys().nth(17).unwrap().clone();
    let one = q
        .sql(&format!("SELECT id FROM tasks.items WHERE id = '{some}'"))
        .await
        .unwrap();
    assert_eq!(strings(&one, 0), vec![some]);
    engine.shutdown().await;
}

#[tokio::test]
async fn aggregates_count_the_newest_live_versions() {
    let Tasks {
        _dir, engine, q, model, ..
    } = tasks().await;
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
    engine.shutdown().await;
}

#[tokio::test]
async fn compaction_into_one_base_file_changes_no_answer() {
    let Tasks {
        _dir,
        engine,
        vault,
        items,
        q,
        model,
    } = tasks().await;
    engine.flush_table(vault, &items).await.unwrap();
    engine.compact_table(vault, &items).await.unwrap();
    let all = q.sql("SELECT id FROM tasks.items ORDER BY id").await.unwrap();
    assert_eq!(strings(&all, 0), model.keys().cloned().collect::<Vec<_>>());
    engine.shutdown().await;
}

#[tokio::test]
async fn deleted_is_not_a_visible_column_but_system_columns_are() {
    let Tasks { _dir, engine, q, .. } = tasks().await;
    assert!(q.sql("SELECT _deleted FROM tasks.items").await.is_err());
    let sys = q.sql("SELECT _created_by FROM tasks.items LIMIT 1").await.unwrap();
    assert_eq!(strings(&sys, 0), vec!["planner".to_owned()]);
    engine.shutdown().await;
}

#[tokio::test]
async fn queries_reach_only_the_vault_catalog() {
    let (_dir, engine) = throwaway().await;
    let vault = vault_with(&engine, &["notes"]).await;
    vault_with(&engine, &["contacts"]).await;
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
    assert_eq!(count(&empty), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn orphan_files_under_the_prefix_are_never_read() {
    let (dir, engine) = throwaway().await;
    let vault = vault_with(&engine, &["notes"]).await;
    let notes = TableName::new("notes", "notes");
    let app = AppId::new("writer");
    for i in 0..10 {
        let values = values(json!({"id": format!("n{i}"), "title": "kept"}));
        write(&engine, vault, &app, &notes, Op::Insert { values }).await;
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
    assert_eq!(count(&n), 10);
    assert_eq!(engine.snapshot(vault, &notes).await.unwrap().manifest.files.len(), 1);
    assert!(orphan.exists());
    engine.shutdown().await;
}
