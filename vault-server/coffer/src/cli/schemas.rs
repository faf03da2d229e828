//! `coffer schema publish` and `coffer schema list`: the operator's side of
//! the schema registry (decision 0031).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_storage::Publisher;
use serde_json::json;

use super::{ListArgs, with_services};
use crate::config::DataArgs;

/// `coffer schema …`
#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Publish a schema file (the format of docs/schemas.md), checked as the
    /// built-in files are. With `--app` the schema's name is held by that
    /// app, as if the app had published it; without, by the operator.
    Publish(PublishArgs),
    /// List every schema the server offers, with its versions and publisher.
    List(ListArgs),
}

/// Options of `coffer schema publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// The schema file.
    pub file: PathBuf,
    /// Publish on behalf of this app (its client id).
    #[arg(long)]
    pub app: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Runs a `coffer schema` command.
pub async fn run(command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Publish(args) => publish(args).await,
        SchemaCommand::List(args) => list(args).await,
    }
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let source = args.file.display().to_string();
    let def = SchemaRegistry::parse(&text, &source)?;
    with_services(args.data, |services| async move {
        let publisher = match &args.app {
            Some(client_id) => {
                let app = services
                    .oauth
                    .app(client_id)
                    .await
                    .with_context(|| format!("no app has the client id {client_id}"))?;
                Publisher::App(app.client_id.to_string())
            }
            None => Publisher::Operator,
        };
        let published = services
            .engine
            .publish_schema(def, &publisher)
            .await
            .with_context(|| format!("publishing {source}"))?;
        let verb = if published.created { "Published" } else { "Updated" };
        println!("{verb} schema {} version {}", published.name, published.version);
        Ok(())
    })
    .await
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    with_services(args.data, |services| async move {
        let known = services.engine.schemas();
        let rows: Vec<(&str, u32, String, Vec<&str>)> = known
            .registry()
            .iter()
            .map(|def| {
                let publisher = match known.publisher(&def.name) {
                    Some(Publisher::Coffer) | None => "coffer".to_owned(),
                    Some(Publisher::Operator) => "operator".to_owned(),
                    Some(Publisher::App(client_id)) => format!("app {client_id}"),
                };
                let tables = def.tables.iter().map(|t| t.name.as_str()).collect();
                (def.name.as_str(), def.version, publisher, tables)
            })
            .collect();
        if args.json {
            let list: Vec<_> = rows
                .iter()
                .map(|(name, version, publisher, tables)| {
                    json!({ "name": name, "version": version, "publisher": publisher, "tables": tables })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            println!("{:<24} {:>7}  {:<36} TABLES", "NAME", "VERSION", "PUBLISHER");
            for (name, version, publisher, tables) in rows {
                println!("{name:<24} {version:>7}  {publisher:<36} {}", tables.join(","));
            }
        }
        Ok(())
    })
    .await
}
