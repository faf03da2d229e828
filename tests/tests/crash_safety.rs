//! Crash safety: a writer process is killed with SIGKILL at random moments
//! while it writes and flushes; after each restart every acknowledged row is
//! present exactly once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffer_core::TableName;
use coffer_test_support::engine::{open, vault_with};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use rand::Rng;

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_row_survives_sigkill() {
    let dir = tempfile_dir();
    let vault = {
        let engine = open(&dir).await;
        let vault = vault_with(&engine, &["notes"]).await;
        engine.shutdown().await;
        vault
    };
    let mut acked: Vec<String> = Vec::new();
    let mut rng = rand::rng();
    for round in 0..12 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&dir)
            .arg(vault.to_string())
            .arg(format!("r{round}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start crash-writer");
        let stdout = child.stdout.take().unwrap();
        let kill_after = Duration::from_millis(rng.random_range(150..900));
        let reader = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ") {
                    ids.push(id.to_owned());
                }
            }
            ids
        });
        let start = Instant::now();
        while start.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL: no chance to flush or clean up.
        child.kill().expect("kill");
        child.wait().unwrap();
        let ids = reader.join().unwrap();
        acked.extend(ids);
    }
    assert!(acked.len() > 100, "the writer acknowledged only {} rows", acked.len());

    let engine = open(&dir).await;
    let table = TableName::new("notes", "notes");
    // Every acknowledged row is readable.
    for id in &acked {
        assert!(
            engine.get(vault, &table, id).await.unwrap().is_some(),
            "acknowledged row {id} is missing after a crash"
        );
    }
    // Exactly once: one row per id, and every row a distinct committed change.
    let q = coffer_query::VaultQuery::new(engine.clone(), vault);
    let batches = q
        .sql("SELECT count(*), count(DISTINCT id), count(DISTINCT _seq) FROM notes.notes")
        .await
        .unwrap();
    let col = |i: usize| batches[0].column(i).as_primitive::<Int64Type>().value(0);
    let (rows, ids, seqs) = (col(0), col(1), col(2));
    assert_eq!(rows, ids, "an id appears more than once");
    assert_eq!(rows, seqs, "a change was applied twice");
    assert!(
        rows as usize >= acked.len(),
        "{rows} rows for {} acknowledged writes",
        acked.len()
    );
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "no id was acknowledged twice");
    engine.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coffer-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
