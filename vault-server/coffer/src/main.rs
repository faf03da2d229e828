//! `coffer`: the Coffer vault server, and the operator commands that manage
//! its users and apps.
#![forbid(unsafe_code)]

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use coffer::cli::apps::AppCommand;
use coffer::cli::codegen::CodegenArgs;
use coffer::cli::schemas::SchemaCommand;
use coffer::cli::token::TokenArgs;
use coffer::cli::users::UserCommand;
use coffer::config::{Config, ServeArgs};
use coffer::{cli, server};

/// mimalloc rather than the system allocator: per-thread free lists suit
/// many small concurrent requests (decision 0028).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Coffer: a user-owned personal data vault server.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// What to log on standard error: `info` (one line per request and
    /// what the server does), `warn`, `error`, or a tracing filter such as
    /// `warn,coffer::request=info` [default: info].
    #[arg(long, global = true, env = "COFFER_LOG")]
    log_level: Option<String>,
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
    /// Manage schemas: `publish`, `list`.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Get an access token from a running server, for scripts
    /// (device flow, or a refresh token).
    Token(TokenArgs),
    /// Write TypeScript or Rust types for the tables of the built-in schemas
    /// (or of a running server's, with --server).
    Codegen(CodegenArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Everything this process creates is private to its user from the
    // first byte: no window between creating a file and narrowing its mode
    // (decision 0016).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(cli.log_level.as_deref().unwrap_or("info"))
        .map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => server::serve(Config::resolve(args)?).await,
        Command::User(command) => cli::users::run(command).await,
        Command::App(command) => cli::apps::run(command).await,
        Command::Schema(command) => cli::schemas::run(command).await,
        Command::Token(args) => cli::token::run(args).await,
        Command::Codegen(args) => cli::codegen::run(args).await,
    }
}
