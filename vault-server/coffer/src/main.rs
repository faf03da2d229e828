//! `coffer`: the Coffer vault server, and the operator commands that manage
//! its users and apps.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use coffer::cli::apps::AppCommand;
use coffer::cli::users::UserCommand;
use coffer::config::{Config, ServeArgs};
use coffer::{cli, server};

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
    /// Manage users: `create`, `list`.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage apps (OAuth clients): `register`, `list`.
    #[command(subcommand)]
    App(AppCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => server::serve(Config::resolve(args)?).await,
        Command::User(command) => cli::users::run(command).await,
        Command::App(command) => cli::apps::run(command).await,
    }
}
