//! Integration tests of the storage engine on the embedded default.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use coffer_core::{AppId, Seq, VaultId};
use coffer_storage::files::PAGE_ROWS;
use coffer_storage::{Engine, EngineOptions, Mutation, Op, RowVersion, StorageError, Values};
use coffer_test_support::engine::{open, options, throwaway, throwaway_with, vault_with};
use coffer_test_support::{files_containing, people, values};
use serde_json::{Value, json};
use tempfile::TempDir;

fn app() -> AppId {
    AppId::new("test-app")
}

/// A throwaway engine with one vault holding the `contacts` schema.
async fn contacts_vault() -> (TempDir, Engine, VaultId) {
    contacts_vault_with(options()).await
}

/// The same, the engine opened with `options`.
async fn contacts_vault_with(options: EngineOptions) -> (TempDir, Engine, VaultId) {
    let (dir, engine) = throwaway_with(options).await;
    let vault = vault_with(&engine, &["contacts"]).await;
    (dir, engine, vault)
}

/// Inserts `values` into `contacts.people`.
fn insert(values: Values) -> Mutation {
    Mutation {
        table: people(),
        op: Op::Insert { values },
    }
}

/// Updates row `id` of `contacts.people` with `patch`.
fn update(id: &str, patch: Value, if_seq: Option<Seq>) -> Mutation {
    Mutation {
        table: people(),
        op: Op::Update {
            id: id.into(),
            patch: values(patch),
            if_seq,
        },
    }
}

/// Deletes row `id` of `contacts.people`.
fn delete(id: &str) -> Mutation {
    Mutation {
        table: people(),
        op: Op::Delete {
            id: id.into(),
            if_seq: None,
        },
    }
}

/// `ada` and `bob` inserted by `test-app` and flushed, then `ada` updated by
/// `other-app` with `if_seq` her first version.
struct Updated {
    _dir: TempDir,
    engine: Engine,
    vault: VaultId,
    ada: RowVersion,
    bob: RowVersion,
    updated: RowVersion,
}

fn other() -> AppId {
    AppId::new("other-app")
}

async fn ada_updated_after_a_flush() -> Updated {
    let (dir, engine, vault) = contacts_vault().await;
    let t = people();
    let ada = engine
        .insert(vault, &app(), &t, values(json!({"display_name": "Ada", "id": "ada"})))
        .await
        .unwrap();
    let bob = engine
        .insert(vault, &app(), &t, values(json!({"display_name": "Bob"})))
        .await
        .unwrap();
    engine.flush_table(vault, &t).await.unwrap();
    let mut rows = engine
        .write(
            vault,
            &other(),
            vec![update("ada", json!({"family_name": "Lovelace"}), Some(ada.seq))],
        )
        .await
        .unwrap();
    Updated {
        _dir: dir,
        engine,
        vault,
        ada,
        bob,
        updated: rows.remove(0),
    }
}

#[tokio::test]
async fn an_update_of_a_flushed_row_merges_with_it() {
    let w = ada_updated_after_a_flush().await;
    assert_eq!(w.ada.id, "ada");
    assert_eq!(w.ada.created_by, "test-app");
    assert!(w.bob.seq > w.ada.seq);
    assert_eq!(w.updated.values["display_name"], json!("Ada"));
    assert_eq!(w.updated.updated_by, "other-app");
    assert_eq!(w.updated.created_by, "test-app");
    w.engine.shutdown().await;
}

#[tokio::test]
async fn a_stale_if_seq_conflicts() {
    let w = ada_updated_after_a_flush().await;
    let err = w
        .engine
        .write(
            w.vault,
            &other(),
            vec![update("ada", json!({"family_name": "X"}), Some(w.ada.seq))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict { current, .. } if current == w.updated.seq),
        "{err:?}"
    );
    w.engine.shutdown().await;
}

#[tokio::test]
async fn deletes_and_updates_read_back_across_flushes_and_compaction() {
    let Updated {
        _dir,
        engine,
        vault,
        bob,
        ..
    } = ada_updated_after_a_flush().await;
    let t = people();
    engine.flush_table(vault, &t).await.unwrap();
    engine.write(vault, &app(), vec![delete(&bob.id)]).await.unwrap();
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
    let err = engine.write(vault, &app(), vec![delete(&bob.id)]).await.unwrap_err();
    assert!(matches!(err, StorageError::RowNotFound { .. }), "{err:?}");
    // Inserting an existing id is an error.
    let err = engine
        .insert(vault, &app(), &t, values(json!({"display_name": "Again", "id": "ada"})))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::RowExists { .. }), "{err:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_bad_row_refuses_the_whole_batch() {
    let (_dir, engine, vault) = contacts_vault().await;
    let batch = vec![
        insert(values(json!({"id": "good", "display_name": "Good"}))),
        insert(values(json!({"id": "bad", "display_name": 42}))),
    ];
    match engine.write(vault, &app(), batch).await {
        Err(StorageError::InvalidRow { column, reason, .. }) => {
            assert_eq!(column, "display_name");
            assert!(reason.contains("string"), "{reason}");
        }
        other => panic!("expected InvalidRow, got {other:?}"),
    }
    assert!(
        engine.get(vault, &people(), "good").await.unwrap().is_none(),
        "nothing of the batch applied"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_conflict_inside_a_batch_refuses_all_of_it() {
    let (_dir, engine, vault) = contacts_vault().await;
    let batch = vec![
        insert(values(json!({"id": "x", "display_name": "X"}))),
        delete("missing"),
    ];
    assert!(engine.write(vault, &app(), batch).await.is_err());
    assert!(engine.get(vault, &people(), "x").await.unwrap().is_none());
    engine.shutdown().await;
}

#[tokio::test]
async fn unknown_tables_are_refused() {
    let (_dir, engine, vault) = contacts_vault().await;
    let err = engine
        .insert(
            vault,
            &app(),
            &coffer_core::TableName::new("notes", "notes"),
            values(json!({})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TableNotFound(_)), "{err:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn nothing_is_stored_in_plaintext() {
    let (dir, engine, vault) = contacts_vault().await;
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
            .insert(vault, &app(), &t, values(json!({"id": id, "display_name": name})))
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
            values(json!({"display_name": format!("{secret_name}-tail")})),
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
    let (_dir, engine, vault) = contacts_vault().await;
    let keep = vault_with(&engine, &["contacts"]).await;
    let t = people();
    for v in [vault, keep] {
        engine
            .insert(v, &app(), &t, values(json!({"id": "r", "display_name": "R"})))
            .await
            .unwrap();
        engine.flush_table(v, &t).await.unwrap();
    }
    assert!(engine.vault_bytes(vault).await.unwrap() > 0);
    engine.delete_vault(vault).await.unwrap();
    for err in [
        engine.get(vault, &t, "r").await.unwrap_err(),
        engine
            .insert(vault, &app(), &t, values(json!({"display_name": "x"})))
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
    engine.shutdown().await;
}

#[tokio::test]
async fn deleting_an_unknown_vault_is_a_clear_error() {
    let (_dir, engine) = throwaway().await;
    assert!(matches!(
        engine.delete_vault(VaultId::generate()).await.unwrap_err(),
        StorageError::VaultNotFound(_)
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn restart_finds_files_manifests_and_unflushed_log_rows() {
    let (dir, engine, vault) = contacts_vault().await;
    let t = people();
    let rows = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| {
                insert(values(
                    json!({"id": format!("{prefix}{i}"), "display_name": prefix.to_uppercase()}),
                ))
            })
            .collect::<Vec<_>>()
    };
    for m in rows("a", 50) {
        engine.write(vault, &app(), vec![m]).await.unwrap();
    }
    engine.flush_table(vault, &t).await.unwrap();
    for m in rows("b", 20) {
        engine.write(vault, &app(), vec![m]).await.unwrap();
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
        .insert(vault, &app(), &t, values(json!({"display_name": "C"})))
        .await
        .unwrap();
    assert_eq!(next.seq, Seq(71));
    engine.shutdown().await;
}

/// 40 000 rows written, flushed and compacted into one base file, with no
/// sync window: flushed rows leave the log, so lookups go to the file.
async fn compacted_base() -> (TempDir, Engine, VaultId) {
    let (dir, engine, vault) = contacts_vault_with(EngineOptions {
        log_retention: Duration::ZERO,
        ..options()
    })
    .await;
    let t = people();
    let mutations: Vec<Mutation> = (0..BASE_ROWS)
        .map(|i| {
            insert(values(
                json!({"id": format!("row-{i:06}"), "display_name": format!("name {i}")}),
            ))
        })
        .collect();
    engine.write(vault, &app(), mutations).await.unwrap();
    engine.flush_table(vault, &t).await.unwrap();
    engine.compact_table(vault, &t).await.unwrap();
    (dir, engine, vault)
}

const BASE_ROWS: usize = 40_000;

#[tokio::test]
async fn a_point_lookup_reads_one_page_not_the_table() {
    let (_dir, engine, vault) = compacted_base().await;
    let stats = engine.lookup_stats();
    let before = stats.rows_decoded.load(Ordering::Relaxed);
    let row = engine.get(vault, &people(), "row-031234").await.unwrap().unwrap();
    assert_eq!(row.values["display_name"], json!("name 31234"));
    let decoded = stats.rows_decoded.load(Ordering::Relaxed) - before;
    assert!(
        decoded > 0 && decoded <= PAGE_ROWS as u64,
        "decoded {decoded} rows of {BASE_ROWS} for one lookup"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn an_absent_id_costs_the_base_at_most_one_page_per_lookup() {
    let (_dir, engine, vault) = compacted_base().await;
    let stats = engine.lookup_stats();
    for i in 0..20 {
        let before = stats.rows_decoded.load(Ordering::Relaxed);
        assert!(
            engine
                .get(vault, &people(), &format!("row-0{i}x"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(stats.rows_decoded.load(Ordering::Relaxed) - before <= PAGE_ROWS as u64);
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn a_delta_file_is_skipped_for_ids_its_bloom_filter_lacks() {
    let (_dir, engine, vault) = compacted_base().await;
    let t = people();
    let stats = engine.lookup_stats();
    let delta: Vec<Mutation> = (0..500)
        .map(|i| insert(values(json!({"id": format!("row-{i:06}z"), "display_name": "delta"}))))
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
    let (_dir, engine, vault) = contacts_vault().await;
    let mut handles = Vec::new();
    for w in 0..32 {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let row = engine
                    .insert(
                        vault,
                        &AppId::new("w"),
                        &people(),
                        values(json!({"id": format!("w{w}-{i}"), "display_name": "x"})),
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
    let (_dir, engine, vault) = contacts_vault().await;
    let t = people();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model: HashMap<String, String> = HashMap::new();
    for step in 0..1500 {
        let id = format!("k{}", rng.random_range(0..200));
        let name = format!("v{step}");
        let m = if model.contains_key(&id) {
            if rng.random_bool(0.3) {
                model.remove(&id);
                delete(&id)
            } else {
                model.insert(id.clone(), name.clone());
                update(&id, json!({"display_name": name}), None)
            }
        } else {
            model.insert(id.clone(), name.clone());
            insert(values(json!({"id": id, "display_name": name})))
        };
        engine.write(vault, &app(), vec![m]).await.unwrap();
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
    let (_dir, engine, vault) = contacts_vault_with(EngineOptions {
        flush_rows: 100,
        flush_interval: Duration::from_millis(200),
        ..EngineOptions::default()
    })
    .await;
    let t = people();
    for i in 0..150 {
        engine
            .insert(
                vault,
                &app(),
                &t,
                values(json!({"id": format!("r{i}"), "display_name": "x"})),
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
    // An existing vault with a schema, and one with nothing installed.
    let (_dir, engine, vault) = contacts_vault().await;
    let bare = engine.create_vault().await.unwrap();
    let log = access_log_table();
    let system = AppId::new(SYSTEM_APP);
    let entry = |i: i64| {
        values(json!({
            "at": "2025-11-23T08:02:00.000001Z",
            "app": format!("app-{i}"),
            "operation": "read",
            "tables": ["contacts.people"],
            "rows": i,
            "outcome": "ok",
        }))
    };
    for v in [vault, bare] {
        let names: Vec<_> = engine.tables(v).await.unwrap().iter().map(|t| t.name.clone()).collect();
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
    engine.shutdown().await;
}

#[tokio::test]
async fn no_other_name_starting_with_an_underscore_is_a_table() {
    let (_dir, engine, vault) = contacts_vault().await;
    assert!(matches!(
        engine.table(vault, &coffer_core::TableName::new("_other", "t")).await,
        Err(StorageError::TableNotFound(_))
    ));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_commit_watch_wakes_once_the_change_is_in_the_log_and_goes_with_its_last_follower() {
    use coffer_storage::changes::{LogRead, last_seq, read_log};
    let (_dir, engine, vault) = contacts_vault().await;
    let other_vault = vault_with(&engine, &["contacts"]).await;
    assert_eq!(engine.followed_vaults(), 0);
    let mut watch = engine.watch_commits(vault);
    let second = engine.watch_commits(vault);
    assert_eq!(engine.followed_vaults(), 1, "one channel per followed vault");
    watch.mark_seen();

    // Woken by the commit itself, maybe before the writer has its answer:
    // the change is already readable from the log then.
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .write(
                    vault,
                    &app(),
                    vec![insert(values(json!({"id": "ada", "display_name": "Ada"})))],
                )
                .await
        })
    };
    let seq = tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("the commit wakes the watch");
    assert!(last_seq(&engine, vault).await.unwrap() >= seq);
    match read_log(&engine, vault, &[people()], 0, seq, 10).await.unwrap() {
        LogRead::Page { changes, .. } => {
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert_eq!(changes[0].version.id, "ada");
            assert_eq!(changes[0].version.seq.0, seq);
        }
        LogRead::Trimmed => panic!("nothing was trimmed"),
    }
    let written = writer.await.unwrap().unwrap();
    assert_eq!(written[0].seq.0, seq);

    // Another vault's commit does not wake it, nor one to the engine's own
    // access log; a burst of commits while nobody waits wakes it once, with
    // the last seq.
    engine
        .write(
            other_vault,
            &app(),
            vec![insert(values(json!({"display_name": "Bob"})))],
        )
        .await
        .unwrap();
    let entry = json!({"at": "2026-01-01T00:00:00Z", "app": "a", "operation": "read",
        "tables": ["contacts.people"], "rows": 1, "outcome": "ok"});
    engine
        .write(
            vault,
            &AppId::new(coffer_storage::system::SYSTEM_APP),
            vec![Mutation {
                table: coffer_storage::system::access_log_table(),
                op: Op::Insert { values: values(entry) },
            }],
        )
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.changed())
            .await
            .is_err(),
        "neither another vault's commit nor the access log's wakes it"
    );
    let mut last = 0;
    for name in ["Cy", "Di", "Ed"] {
        last = engine
            .write(vault, &app(), vec![insert(values(json!({"display_name": name})))])
            .await
            .unwrap()[0]
            .seq
            .0;
    }
    let woken = tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("woken");
    assert_eq!(woken, last);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.changed())
            .await
            .is_err(),
        "one wake-up for the burst"
    );

    // The channel goes with the last follower.
    drop(watch);
    assert_eq!(engine.followed_vaults(), 1);
    drop(second);
    assert_eq!(engine.followed_vaults(), 0);
    engine.shutdown().await;
}
