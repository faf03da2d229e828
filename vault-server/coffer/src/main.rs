//! `coffer`: the Coffer vault server.
#![forbid(unsafe_code)]

mod config;
mod server;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_storage::{EngineOptions, open_embedded};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ServeArgs};

/// Coffer: a user-owned personal data vault server.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded default: SQLite + local files in --data-dir).
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(Config::resolve(args)?).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = SchemaRegistry::builtin().context("loading built-in schemas")?;
    let options = EngineOptions {
        flush_interval: config.flush_interval,
        flush_rows: config.flush_rows,
        log_retention: config.log_retention,
        ..EngineOptions::default()
    };
    let opened = open_embedded(&config.data_dir, registry, options)
        .await
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    if opened.created_master_key {
        println!("Created master key {}", config.data_dir.join("master.key").display());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "Coffer is serving http://{addr}/ (data in {})",
        config.data_dir.display()
    );
    let engine = opened.engine.clone();
    axum::serve(listener, server::router(server::AppState { engine: engine.clone() }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    engine.shutdown().await;
    Ok(())
}
