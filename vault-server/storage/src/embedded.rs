//! The embedded default: everything in one data directory.
//!
//! ```text
//! {data_dir}/master.key      age identity, mode 0600
//! {data_dir}/control.db      SQLite control database (+ WAL)
//! {data_dir}/objects/        local-filesystem object store (vaults/{id}/…)
//! ```
//!
//! Every directory in it is mode 0700 and every file 0600 ([`crate::private`]).

use std::path::Path;
use std::sync::Arc;

use coffer_core::schema::registry::SchemaRegistry;
use object_store::local::LocalFileSystem;

use crate::control::ControlDb;
use crate::crypto::MasterKey;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::options::EngineOptions;
use crate::private::create_private_dir;

/// What opening the embedded engine found or created.
pub struct Embedded {
    /// The engine.
    pub engine: Engine,
    /// True when this start created the master key (a new data directory).
    pub created_master_key: bool,
}

/// Opens (creating on first start) the embedded engine in `data_dir`.
pub async fn open_embedded(
    data_dir: &Path,
    registry: SchemaRegistry,
    options: EngineOptions,
) -> Result<Embedded, StorageError> {
    create_private_dir(data_dir)?;
    let objects_dir = data_dir.join("objects");
    create_private_dir(&objects_dir)?;
    let (master, created_master_key) = MasterKey::load_or_create(&data_dir.join("master.key"))?;
    let db = ControlDb::open_sqlite(&data_dir.join("control.db")).await?;
    let store = Arc::new(LocalFileSystem::new_with_prefix(&objects_dir)?);
    let engine = Engine::open(db, store, Some(objects_dir), master, registry, options).await?;
    Ok(Embedded {
        engine,
        created_master_key,
    })
}
