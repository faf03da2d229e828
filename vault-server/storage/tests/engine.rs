//! Integration tests of the storage engine on the embedded default.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, Seq, TableName, VaultId};
use coffer_storage::files::PAGE_ROWS;
use coffer_storage::{Embedded, Engine, EngineOptions, Mutation, Op, StorageError, Values, open_embedded};
use serde_json::{Value, json};

fn options() -> EngineOptions {
    EngineOptions {
        background: false,
        ..EngineOptions::default()
    }
}

async fn open(dir: &Path) -> Engine {
    let Embedded { engine, .. } = open_embedded(dir, SchemaRegistry::builtin().unwrap(), options())
        .await
        .unwrap();
    engine
}

fn people() -> TableName {
    TableName::new("contacts", "people")
}

fn obj(v: Value) -> Values {
    v.as_object().unwrap().clone()
}

fn app() -> AppId {
    AppId::new("test-app")
}

async fn vault_with_contacts(engine: &Engine) -> VaultId {
    let vault = engine.create_vault().await.unwrap();
    engine.install_schema(vault, "contacts", None).await.unwrap();
    vault
}

#[tokio::test]
async fn insert_update_delete_and_read_back_across_flushes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();

    let ada = engine
        .insert(vault, &app(), &t, obj(json!({"display_name": "Ada", "id": "ada"})))
        .await
        .unwrap();
    assert_eq!(ada.id, "ada");
    assert_eq!(ada.created_by, "test-app");
    let bob = engine
        .insert(vault, &app(), &t, obj(json!({"display_name": "Bob"})))
        .await
        .unwrap();
    assert!(bob.seq > ada.seq);
    engine.flush_table(vault, &t).await.unwrap();

    // Update a flushed row: the patch merges with the flushed version.
    let other = AppId::new("other-app");
    let rows = engine
        .write(
            vault,
            &other,
            vec![Mutation {
                table: t.clone(),
                op: Op::Update {
                    id: "ada".into(),
                    patch: obj(json!({"family_name": "Lovelace"})),
                    if_seq: Some(ada.seq),
                },
            }],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].values["display_name"], json!("Ada"));
    assert_eq!(rows[0].updated_by, "other-app");
    assert_eq!(rows[0].created_by, "test-app");

    // A stale if_seq conflicts.
    let err = engine
        .write(
            vault,
            &other,
            vec![Mutation {
                table: t.clone(),
                op: Op::Update {
                    id: "ada".into(),
                    patch: obj(json!({"family_name": "X"})),
                    if_seq: Some(ada.seq),
                },
            }],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict { current, .. } if current == rows[0].seq),
        "{err:?}"
    );

    engine.flush_table(vault, &t).await.unwrap();
    engine
        .write(
            vault,
            &app(),
            vec![Mutation {
                table: t.clone(),
                op: Op::Delete {
                    id: bob.id.clone(),
                    if_seq: None,
                },
            }],
        )
        .await
        .unwrap();
    // Deleted row is gone (from the tail), updated row is current (from a file).
    assert!(engine.get(vault, &t, &bob.id).await.unwrap().is_none());
    let got = engine.get(vault, &t, "ada").await.unwrap().unwrap();
    assert_eq!(got.values["family_name"], json!("Lovelace"));

    engine.flush_table(vault, &t).await.unwrap();
    let snap = engine.snapshot(vault, &t).await.unwrap();
    assert_eq!(snap.manifest.files.len(), 3);
    assert_eq!(snap.tail.num_rows(), 0);
    engine.compact_table(vault, &t).await.unwrap();
    let snap = engine.snapshot(vault, &t).await.unwrap();
    assert_eq!(snap.manifest.files.len(), 1, "compaction leaves one base file");
    assert!(snap.manifest.files[0].base);
    assert_eq!(snap.manifest.files[0].rows, 1, "one version per id, tombstone dropped");
    assert!(engine.get(vault, &t, &bob.id).await.unwrap().is_none());
    assert_eq!(
        engine.get(vault, &t, "ada").await.unwrap().unwrap().values["family_name"],
        json!("Lovelace")
    );

    // Updating or deleting a missing row is an error.
    let err = engine
        .write(
            vault,
            &app(),
            vec![Mutation {
                table: t.clone(),
                op: Op::Delete {
                    id: bob.id.clone(),
                    if_seq: None,
                },
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::RowNotFound { .. }), "{err:?}");
    // Inserting an existing id is an error.
    let err = engine
        .insert(vault, &app(), &t, obj(json!({"display_name": "Again", "id": "ada"})))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::RowExists { .. }), "{err:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_row_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    let batch = vec![
        Mutation {
            table: t.clone(),
            op: Op::Insert {
                values: obj(json!({"id": "good", "display_name": "Good"})),
            },
        },
        Mutation {
            table: t.clone(),
            op: Op::Insert {
                values: obj(json!({"id": "bad", "display_name": 42})),
            },
        },
    ];
    match engine.write(vault, &app(), batch).await {
        Err(StorageError::InvalidRow { column, reason, .. }) => {
            assert_eq!(column, "display_name");
            assert!(reason.contains("string"), "{reason}");
        }
        other => panic!("expected InvalidRow, got {other:?}"),
    }
    assert!(
        engine.get(vault, &t, "good").await.unwrap().is_none(),
        "nothing of the batch applied"
    );
    // A conflict inside a batch also refuses all of it.
    let batch = vec![
        Mutation {
            table: t.clone(),
            op: Op::Insert {
                values: obj(json!({"id": "x", "display_name": "X"})),
            },
        },
        Mutation {
            table: t.clone(),
            op: Op::Delete {
                id: "missing".into(),
                if_seq: None,
            },
        },
    ];
    assert!(engine.write(vault, &app(), batch).await.is_err());
    assert!(engine.get(vault, &t, "x").await.unwrap().is_none());
    // Unknown tables are refused.
    let err = engine
        .insert(vault, &app(), &TableName::new("notes", "notes"), obj(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TableNotFound(_)), "{err:?}");
    engine.shutdown().await;
}

/// Every regular file below `dir`, searched for `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[tokio::test]
async fn nothing_is_stored_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    let secret_name = "Zebulon-Quixotic-Plaintext-Marker";
    let secret_id = "id-Marmalade-Unmistakable";
    for i in 0..3000 {
        let name = if i == 1500 {
            secret_name.to_owned()
        } else {
            format!("person {i}")
        };
        let id = if i == 1500 {
            secret_id.to_owned()
        } else {
            format!("p{i:05}")
        };
        engine
            .insert(vault, &app(), &t, obj(json!({"id": id, "display_name": name})))
            .await
            .unwrap();
    }
    // Half flushed to Parquet, then more in the log only.
    engine.flush_table(vault, &t).await.unwrap();
    engine
        .insert(
            vault,
            &app(),
            &t,
            obj(json!({"display_name": format!("{secret_name}-tail")})),
        )
        .await
        .unwrap();
    assert_eq!(
        engine.get(vault, &t, secret_id).await.unwrap().unwrap().values["display_name"],
        json!(secret_name)
    );
    engine.shutdown().await;
    assert!(
        files_containing(dir.path(), b"person 17").is_empty(),
        "a value is in the clear"
    );
    for needle in [secret_name.as_bytes(), secret_id.as_bytes(), b"Zebulon"] {
        let hits = files_containing(dir.path(), needle);
        assert!(hits.is_empty(), "{} found in {hits:?}", String::from_utf8_lossy(needle));
    }
    // The test can fail: the engine really wrote files with that data.
    assert!(
        !files_containing(&dir.path().join("objects"), b"PARE").is_empty(),
        "expected encrypted Parquet files"
    );
}

#[tokio::test]
async fn deleting_a_vault_shreds_its_key_then_purges_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let keep = vault_with_contacts(&engine).await;
    let t = people();
    for v in [vault, keep] {
        engine
            .insert(v, &app(), &t, obj(json!({"id": "r", "display_name": "R"})))
            .await
            .unwrap();
        engine.flush_table(v, &t).await.unwrap();
    }
    assert!(engine.vault_bytes(vault).await.unwrap() > 0);
    engine.delete_vault(vault).await.unwrap();
    for err in [
        engine.get(vault, &t, "r").await.unwrap_err(),
        engine
            .insert(vault, &app(), &t, obj(json!({"display_name": "x"})))
            .await
            .unwrap_err(),
        engine.snapshot(vault, &t).await.err().unwrap(),
    ] {
        assert!(matches!(err, StorageError::VaultDeleted(v) if v == vault), "{err:?}");
        assert!(err.to_string().contains("deleted"));
    }
    engine.purge_deleted().await.unwrap();
    assert_eq!(engine.vault_bytes(vault).await.unwrap(), 0);
    assert!(
        engine.get(keep, &t, "r").await.unwrap().is_some(),
        "other vaults are untouched"
    );
    // Deleting twice or an unknown vault is a clear error.
    assert!(matches!(
        engine.delete_vault(VaultId::generate()).await.unwrap_err(),
        StorageError::VaultNotFound(_)
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn restart_finds_files_manifests_and_unflushed_log_rows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    for i in 0..50 {
        engine
            .insert(
                vault,
                &app(),
                &t,
                obj(json!({"id": format!("a{i}"), "display_name": "A"})),
            )
            .await
            .unwrap();
    }
    engine.flush_table(vault, &t).await.unwrap();
    for i in 0..20 {
        engine
            .insert(
                vault,
                &app(),
                &t,
                obj(json!({"id": format!("b{i}"), "display_name": "B"})),
            )
            .await
            .unwrap();
    }
    engine.shutdown().await;
    drop(engine);

    let engine = open(dir.path()).await;
    let snap = engine.snapshot(vault, &t).await.unwrap();
    assert_eq!(snap.manifest.rows(), 50);
    assert_eq!(snap.tail.num_rows(), 20);
    assert!(engine.get(vault, &t, "a7").await.unwrap().is_some());
    assert!(engine.get(vault, &t, "b7").await.unwrap().is_some());
    // The sequence continues where it stopped.
    let next = engine
        .insert(vault, &app(), &t, obj(json!({"display_name": "C"})))
        .await
        .unwrap();
    assert_eq!(next.seq, Seq(71));
    engine.shutdown().await;
}

#[tokio::test]
async fn point_lookups_read_one_page_not_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // No sync window: flushed rows leave the log, so lookups go to the file.
    let opts = EngineOptions {
        log_retention: Duration::ZERO,
        ..options()
    };
    let Embedded { engine, .. } = open_embedded(dir.path(), SchemaRegistry::builtin().unwrap(), opts)
        .await
        .unwrap();
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    let n = 40_000;
    let mutations: Vec<Mutation> = (0..n)
        .map(|i| Mutation {
            table: t.clone(),
            op: Op::Insert {
                values: obj(json!({"id": format!("row-{i:06}"), "display_name": format!("name {i}")})),
            },
        })
        .collect();
    engine.write(vault, &app(), mutations).await.unwrap();
    engine.flush_table(vault, &t).await.unwrap();
    engine.compact_table(vault, &t).await.unwrap();
    let stats = engine.lookup_stats();
    let before = stats.rows_decoded.load(Ordering::Relaxed);
    let row = engine.get(vault, &t, "row-031234").await.unwrap().unwrap();
    assert_eq!(row.values["display_name"], json!("name 31234"));
    let decoded = stats.rows_decoded.load(Ordering::Relaxed) - before;
    assert!(
        decoded > 0 && decoded <= PAGE_ROWS as u64,
        "decoded {decoded} rows of {n} for one lookup"
    );
    // An absent id costs the base at most one page per lookup.
    for i in 0..20 {
        let before = stats.rows_decoded.load(Ordering::Relaxed);
        assert!(engine.get(vault, &t, &format!("row-0{i}x")).await.unwrap().is_none());
        assert!(stats.rows_decoded.load(Ordering::Relaxed) - before <= PAGE_ROWS as u64);
    }
    // A delta file (with a keyed bloom filter) is skipped for ids it lacks.
    let delta: Vec<Mutation> = (0..500)
        .map(|i| Mutation {
            table: t.clone(),
            op: Op::Insert {
                values: obj(json!({"id": format!("row-{i:06}z"), "display_name": "delta"})),
            },
        })
        .collect();
    engine.write(vault, &app(), delta).await.unwrap();
    engine.flush_table(vault, &t).await.unwrap();
    assert_eq!(engine.snapshot(vault, &t).await.unwrap().manifest.files.len(), 2);
    let skips = stats.bloom_skips.load(Ordering::Relaxed);
    assert!(engine.get(vault, &t, "row-000100").await.unwrap().is_some());
    assert!(
        stats.bloom_skips.load(Ordering::Relaxed) > skips,
        "the delta's bloom filter ruled the id out"
    );
    assert_eq!(
        engine.get(vault, &t, "row-000100z").await.unwrap().unwrap().values["display_name"],
        json!("delta")
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_are_group_committed_with_dense_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    let mut handles = Vec::new();
    for w in 0..32 {
        let engine = engine.clone();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let row = engine
                    .insert(
                        vault,
                        &AppId::new("w"),
                        &t,
                        obj(json!({"id": format!("w{w}-{i}"), "display_name": "x"})),
                    )
                    .await
                    .unwrap();
                seqs.push(row.seq.0);
            }
            seqs
        }));
    }
    let mut all: Vec<i64> = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=640).collect::<Vec<_>>(),
        "every change has its own seq, none skipped"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn random_operations_match_a_model_through_flushes_and_compactions() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model: HashMap<String, String> = HashMap::new();
    for step in 0..1500 {
        let id = format!("k{}", rng.random_range(0..200));
        let name = format!("v{step}");
        let op = if model.contains_key(&id) {
            if rng.random_bool(0.3) {
                model.remove(&id);
                Op::Delete {
                    id: id.clone(),
                    if_seq: None,
                }
            } else {
                model.insert(id.clone(), name.clone());
                Op::Update {
                    id: id.clone(),
                    patch: obj(json!({"display_name": name})),
                    if_seq: None,
                }
            }
        } else {
            model.insert(id.clone(), name.clone());
            Op::Insert {
                values: obj(json!({"id": id, "display_name": name})),
            }
        };
        engine
            .write(vault, &app(), vec![Mutation { table: t.clone(), op }])
            .await
            .unwrap();
        if step % 97 == 0 {
            engine.flush_table(vault, &t).await.unwrap();
        }
        if step % 401 == 0 {
            engine.compact_table(vault, &t).await.unwrap();
        }
    }
    for i in 0..200 {
        let id = format!("k{i}");
        let got = engine
            .get(vault, &t, &id)
            .await
            .unwrap()
            .map(|r| r.values["display_name"].as_str().unwrap().to_owned());
        assert_eq!(got.as_ref(), model.get(&id), "row {id}");
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn background_worker_flushes_when_the_tail_grows() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        flush_rows: 100,
        flush_interval: Duration::from_millis(200),
        ..EngineOptions::default()
    };
    let Embedded { engine, .. } = open_embedded(dir.path(), SchemaRegistry::builtin().unwrap(), opts)
        .await
        .unwrap();
    let vault = vault_with_contacts(&engine).await;
    let t = people();
    for i in 0..150 {
        engine
            .insert(
                vault,
                &app(),
                &t,
                obj(json!({"id": format!("r{i}"), "display_name": "x"})),
            )
            .await
            .unwrap();
    }
    let mut flushed = 0;
    for _ in 0..50 {
        flushed = engine.snapshot(vault, &t).await.unwrap().manifest.rows();
        if flushed == 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flushed, 150, "the background flusher wrote every row to a file");
    engine.shutdown().await;
}

#[tokio::test]
async fn system_tables_are_in_every_vault_but_not_listed() {
    use coffer_storage::system::{SYSTEM_APP, access_log_table};
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    // An existing vault with a schema, and one with nothing installed.
    let vault = vault_with_contacts(&engine).await;
    let bare = engine.create_vault().await.unwrap();
    let log = access_log_table();
    let system = AppId::new(SYSTEM_APP);
    let entry = |i: i64| {
        obj(json!({
            "at": "2025-11-23T08:02:00.000001Z",
            "app": format!("app-{i}"),
            "operation": "read",
            "tables": ["contacts.people"],
            "rows": i,
            "outcome": "ok",
        }))
    };
    for v in [vault, bare] {
        let names: Vec<TableName> = engine.tables(v).await.unwrap().iter().map(|t| t.name.clone()).collect();
        assert!(!names.contains(&log), "{names:?}");
        assert_eq!(engine.table(v, &log).await.unwrap().name, log);
        // Written, flushed, compacted and read back like any table.
        for round in 0..3 {
            let row = engine.insert(v, &system, &log, entry(round)).await.unwrap();
            assert_eq!(row.created_by, SYSTEM_APP);
            engine.flush_table(v, &log).await.unwrap();
        }
        engine.compact_table(v, &log).await.unwrap();
        let last = engine.insert(v, &system, &log, entry(3)).await.unwrap();
        let snapshot = engine.snapshot(v, &log).await.unwrap();
        assert_eq!(snapshot.manifest.files.len(), 1);
        assert_eq!(snapshot.manifest.files[0].rows, 3);
        assert_eq!(snapshot.tail.num_rows(), 1);
        assert_eq!(
            engine.get(v, &log, &last.id).await.unwrap().unwrap().values["app"],
            json!("app-3")
        );
        // Its data files sit under the vault's prefix like every other table's.
        assert!(engine.table_bytes(v, &log).await.unwrap() > 0);
    }
    // No other name starting with `_` is a table.
    assert!(matches!(
        engine.table(vault, &TableName::new("_other", "t")).await,
        Err(StorageError::TableNotFound(_))
    ));
    engine.shutdown().await;
}
