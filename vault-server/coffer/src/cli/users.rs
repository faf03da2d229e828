//! `coffer user create`, `coffer user list` and `coffer user delete`.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::ListArgs;
use super::with_services;
use crate::accounts::{create_account, delete_account};
use crate::config::DataArgs;

/// `coffer user …`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user and their vault. The password is asked for on the
    /// terminal, or read from the first line of standard input when it is
    /// not a terminal (e.g. `printf '%s\n' "$PW" | coffer user create …`).
    Create(CreateArgs),
    /// List every user: id, email, vault, creation time.
    List(ListArgs),
    /// Delete a user and erase their vault: its data key is shredded, its
    /// files, rows, grants and tokens deleted. Cannot be undone.
    Delete(DeleteArgs),
}

/// Options of `coffer user delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The user's email address (ignoring case).
    #[arg(long)]
    pub email: String,
    /// Confirm: the vault and everything in it is erased for good.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Options of `coffer user create`.
#[derive(Args)]
pub struct CreateArgs {
    /// The user's email address (unique, ignoring case).
    #[arg(long)]
    pub email: String,
    /// Print the new user as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Runs a `coffer user` command.
pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create(args) => create(args).await,
        UserCommand::List(args) => list(args).await,
        UserCommand::Delete(args) => delete(args).await,
    }
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Password again: ").context("reading the password")?;
        if password != again {
            bail!("the two passwords are not the same");
        }
        Ok(password)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let password = read_password()?;
    let email = args.email;
    let as_json = args.json;
    with_services(args.data, |services| async move {
        let user = create_account(&services, &email, &password)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.description()))
            .context("creating the user")?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&user)?);
        } else {
            println!("Created user {} (id {}, vault {})", user.email, user.id, user.vault_id);
        }
        Ok(())
    })
    .await
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let as_json = args.json;
    with_services(args.data, |services| async move {
        let users = services.oauth.list_users().await.context("listing users")?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&json!(users))?);
            return Ok(());
        }
        if users.is_empty() {
            println!("No users yet. Create one with `coffer user create --email …` or on the sign-up page.");
            return Ok(());
        }
        let width = users.iter().map(|u| u.email.len()).max().unwrap_or(5).max(5);
        println!("{:<26}  {:<width$}  {:<26}  CREATED", "ID", "EMAIL", "VAULT");
        for u in users {
            println!(
                "{:<26}  {:<width$}  {:<26}  {}",
                u.id,
                u.email,
                u.vault_id,
                u.created_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        Ok(())
    })
    .await
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    if !args.yes {
        bail!(
            "deleting {} erases their vault for good; run again with --yes to confirm",
            args.email
        );
    }
    let email = args.email;
    with_services(args.data, |services| async move {
        let key = email.trim().to_lowercase();
        let users = services.oauth.list_users().await.context("listing users")?;
        let Some(user) = users.into_iter().find(|u| u.email.trim().to_lowercase() == key) else {
            bail!("there is no user with the email {email}");
        };
        delete_account(&services, &user).await?;
        println!(
            "Deleted user {} (id {}) and erased vault {}",
            user.email, user.id, user.vault_id
        );
        Ok(())
    })
    .await
}
