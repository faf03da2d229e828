//! A throwaway storage engine: a new data directory (created with its own
//! master key on first open), the built-in schemas, and options for tests.

use std::path::Path;

use coffer_core::VaultId;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_storage::{Embedded, Engine, EngineOptions, open_embedded};
use tempfile::TempDir;

/// The engine options of the tests: the defaults without the background
/// worker, so flushes and compactions happen only when a test asks.
pub fn options() -> EngineOptions {
    EngineOptions {
        background: false,
        ..EngineOptions::default()
    }
}

/// Opens (creating on first open) the embedded engine in `dir` with
/// [`options`] and the built-in schemas.
pub async fn open(dir: &Path) -> Engine {
    open_with(dir, options()).await
}

/// Opens (creating on first open) the embedded engine in `dir` with
/// `options` and the built-in schemas.
pub async fn open_with(dir: &Path, options: EngineOptions) -> Engine {
    let registry = SchemaRegistry::builtin().expect("the built-in schemas load");
    let Embedded { engine, .. } = open_embedded(dir, registry, options).await.unwrap();
    engine
}

/// A new engine with [`options`] in a new temporary directory, deleted when
/// the returned [`TempDir`] is dropped.
pub async fn throwaway() -> (TempDir, Engine) {
    throwaway_with(options()).await
}

/// A new engine with `options` in a new temporary directory, deleted when
/// the returned [`TempDir`] is dropped.
pub async fn throwaway_with(options: EngineOptions) -> (TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with(dir.path(), options).await;
    (dir, engine)
}

/// A new vault of `engine` with the built-in schemas named in `schemas`
/// installed (their latest versions).
pub async fn vault_with(engine: &Engine, schemas: &[&str]) -> VaultId {
    let vault = engine.create_vault().await.unwrap();
    for schema in schemas {
        engine.install_schema(vault, schema, None).await.unwrap();
    }
    vault
}
