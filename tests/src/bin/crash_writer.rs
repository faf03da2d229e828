//! A writer for the crash-safety test: opens the embedded engine in the
//! given data directory and inserts rows `{prefix}-{n}` one at a time (a few
//! concurrent writers), printing `ack {id}` after each write is acknowledged.
//! The test kills it with SIGKILL at random moments.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, TableName, VaultId};
use coffer_storage::{EngineOptions, open_embedded};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("data dir"));
    let vault: VaultId = args.next().expect("vault id").parse()?;
    let prefix = args.next().expect("row id prefix");
    let options = EngineOptions {
        flush_rows: 50,
        flush_interval: Duration::from_millis(30),
        ..EngineOptions::default()
    };
    let opened = open_embedded(&dir, SchemaRegistry::builtin()?, options).await?;
    let engine = opened.engine;
    let table = TableName::new("notes", "notes");
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    println!("ready");
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (engine, table, prefix, stdout) = (engine.clone(), table.clone(), prefix.clone(), stdout.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let id = format!("{prefix}-{w}-{n}");
                let values = serde_json::json!({"id": id, "title": "crash test", "body": "x".repeat(n % 300)});
                let values = values.as_object().expect("object").clone();
                engine
                    .insert(vault, &AppId::new("crash"), &table, values)
                    .await
                    .expect("insert");
                let mut out = stdout.lock().expect("stdout");
                writeln!(out, "ack {id}").expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}
