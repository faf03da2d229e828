//! `coffer app register` and `coffer app list`.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use coffer_oauth::{App, GrantType, NewApp, TokenEndpointAuthMethod};
use serde_json::json;

use super::ListArgs;
use super::with_services;
use crate::config::DataArgs;

/// `coffer app …`
#[derive(Subcommand)]
pub enum AppCommand {
    /// Register an app (an OAuth client). Prints its client id, and for a
    /// confidential app its secret, once. `--print client-id` prints only
    /// the id, for `CLIENT_ID=$(coffer app register … --print client-id)`.
    Register(RegisterArgs),
    /// List every registered app.
    List(ListArgs),
}

/// How the app authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuthMethod {
    /// Public client (browser, mobile, CLI): no secret, PKCE only.
    None,
    /// Confidential: secret in HTTP Basic authentication.
    ClientSecretBasic,
    /// Confidential: secret in the form body.
    ClientSecretPost,
}

/// A grant type the app may use.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GrantArg {
    /// Authorization code with PKCE.
    AuthorizationCode,
    /// Refresh tokens.
    RefreshToken,
    /// Device authorization (RFC 8628), for CLIs and devices without a browser.
    DeviceCode,
}

/// One value of a registration `coffer app register --print` prints alone.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RegisteredValue {
    /// The client id (a public app only: a confidential app's secret is
    /// shown once, so it needs `--json` or the full output).
    ClientId,
}

/// Options of `coffer app register`.
#[derive(Args)]
pub struct RegisterArgs {
    /// The name users see on the consent page.
    #[arg(long)]
    pub name: String,
    /// A redirect URI: https, or http on 127.0.0.1 / [::1] (any port matches).
    /// Repeat for several.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// How the app authenticates at the token endpoint.
    #[arg(long, value_enum, default_value = "none")]
    pub auth_method: AuthMethod,
    /// Grant types [default: authorization-code and refresh-token]. Repeat for several.
    #[arg(long = "grant-type", value_enum)]
    pub grant_types: Vec<GrantArg>,
    /// The app's homepage (https), shown on the consent page.
    #[arg(long)]
    pub homepage: Option<String>,
    /// The app's logo (https).
    #[arg(long)]
    pub logo_url: Option<String>,
    /// The scope asked for when a request names none.
    #[arg(long, default_value = "")]
    pub scope: String,
    /// Print the registration as JSON.
    #[arg(long, conflicts_with = "print")]
    pub json: bool,
    /// Print only this value and a newline, e.g. `--print client-id` for
    /// `CLIENT_ID=$(coffer app register --name … --print client-id)`.
    #[arg(long, value_enum, value_name = "VALUE")]
    pub print: Option<RegisteredValue>,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Runs a `coffer app` command.
pub async fn run(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Register(args) => register(args).await,
        AppCommand::List(args) => list(args).await,
    }
}

fn grant_types(app: &App) -> Vec<&'static str> {
    app.grant_types.iter().map(|g| g.as_str()).collect()
}

async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    if args.print.is_some() && !matches!(args.auth_method, AuthMethod::None) {
        // Checked before registering: the secret is shown only once.
        anyhow::bail!(
            "--print client-id would not show the secret of a confidential app, which is shown only once; \
             use --json, or leave out --print"
        );
    }
    let new = NewApp {
        name: args.name,
        homepage: args.homepage,
        logo_url: args.logo_url,
        redirect_uris: args.redirect_uris,
        auth_method: match args.auth_method {
            AuthMethod::None => TokenEndpointAuthMethod::None,
            AuthMethod::ClientSecretBasic => TokenEndpointAuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost => TokenEndpointAuthMethod::ClientSecretPost,
        },
        grant_types: args
            .grant_types
            .iter()
            .map(|g| match g {
                GrantArg::AuthorizationCode => GrantType::AuthorizationCode,
                GrantArg::RefreshToken => GrantType::RefreshToken,
                GrantArg::DeviceCode => GrantType::DeviceCode,
            })
            .collect(),
        default_scope: args.scope,
        registered_by: None,
    };
    let as_json = args.json;
    let print = args.print;
    with_services(args.data, |services| async move {
        let registered = services
            .oauth
            .register_app(new)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.description()))
            .context("registering the app")?;
        let app = &registered.app;
        if let Some(RegisteredValue::ClientId) = print {
            println!("{}", app.client_id);
            return Ok(());
        }
        if as_json {
            let mut value = json!(app);
            value["client_secret"] = json!(registered.client_secret);
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        println!("Registered app \"{}\"", app.name);
        println!("client_id:     {}", app.client_id);
        if let Some(secret) = &registered.client_secret {
            println!("client_secret: {secret}");
            println!("               (shown only now: store it safely)");
        }
        println!("kind:          {} ({})", app.kind().as_str(), app.auth_method.as_str());
        println!("grant types:   {}", grant_types(app).join(", "));
        for uri in &app.redirect_uris {
            println!("redirect URI:  {uri}");
        }
        Ok(())
    })
    .await
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let as_json = args.json;
    with_services(args.data, |services| async move {
        let apps = services.oauth.list_apps().await.context("listing apps")?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&json!(apps))?);
            return Ok(());
        }
        if apps.is_empty() {
            println!("No apps yet. Register one with `coffer app register --name … --redirect-uri …`.");
            return Ok(());
        }
        println!("{:<26}  {:<12}  NAME", "CLIENT ID", "KIND");
        for app in apps {
            println!("{:<26}  {:<12}  {}", app.client_id, app.kind().as_str(), app.name);
        }
        Ok(())
    })
    .await
}
