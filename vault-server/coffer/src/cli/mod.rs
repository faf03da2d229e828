//! The operator commands: `coffer user …`, `coffer app …` and
//! `coffer schema …`. They open the
//! same data directory as `coffer serve` (without its background work), so
//! they may run while the server runs. `coffer token` is the exception: an
//! OAuth client of a running server, over HTTP, and `coffer codegen` opens
//! nothing: it writes types from the built-in schemas.

pub mod apps;
pub mod codegen;
pub mod schemas;
pub mod token;
pub mod users;

use clap::Args;
use coffer_storage::EngineOptions;

use crate::config::{Config, DataArgs};
use crate::services::{self, Services};

/// Options of the `list` commands (`coffer user list`, `coffer app list`).
#[derive(Args)]
pub struct ListArgs {
    /// Print JSON (an array) instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Opens the data directory for an operator command, runs `f`, then shuts
/// the engine down.
pub async fn with_services<T, F>(args: DataArgs, f: impl FnOnce(Services) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let config = Config::resolve_data(args)?;
    let issuer = config.base_url(config.listen);
    let options = EngineOptions {
        background: false,
        ..EngineOptions::default()
    };
    let (services, created) = services::open(
        &config.data_dir,
        config.schemas_dir.as_deref(),
        &issuer,
        options,
        config.query_limits,
    )
    .await?;
    if created.master_key {
        eprintln!("Created master key {}", config.data_dir.join("master.key").display());
    }
    let engine = services.engine.clone();
    let result = f(services).await;
    engine.shutdown().await;
    result
}
