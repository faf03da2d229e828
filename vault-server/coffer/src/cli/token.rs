//! `coffer token`: an access token for scripts and command-line tools, through the
//! device authorization flow (RFC 8628) or a refresh token.
//!
//! Unlike the other operator commands it never opens the data directory: it
//! is an OAuth client of a running server, over HTTP. Standard output carries
//! only what was asked for (the access token, or the token response as JSON),
//! so `TOKEN=$(coffer token …)` works; everything meant for the person
//! running it goes to standard error.

use anyhow::anyhow;
use clap::Args;
use coffer_sdk::{Error, OAuth, Tokens};

/// The server `coffer token` talks to when neither `--server` nor
/// `COFFER_PUBLIC_URL` names one (`coffer serve`'s default address).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8484";

/// Options of `coffer token`.
#[derive(Args)]
#[command(after_help = "\
Device flow (the default): prints one line on standard error with the link to
open in a browser signed in to Coffer, waits until access is allowed there,
then prints the access token on standard output:

  TOKEN=$(coffer token --client-id \"$CLIENT_ID\" --scope 'contacts.people:read+create')

Refresh: prints the new access token and, on a second line, the new refresh
token (a refresh token works once; keep the new one):

  coffer token --client-id \"$CLIENT_ID\" --refresh-token \"$REFRESH\"

Register the app first, as a device-flow client that may refresh:

  CLIENT_ID=$(coffer app register --name 'My script' --grant-type device-code \\
      --grant-type refresh-token --print client-id)")]
pub struct TokenArgs {
    /// The app's client id (from `coffer app register`; the app needs the
    /// `device-code` grant type, and `refresh-token` to refresh).
    #[arg(long, env = "COFFER_CLIENT_ID")]
    pub client_id: String,
    /// The access to ask for, e.g. `contacts.people:read+create`; several
    /// separated by spaces [default: the app's registered scope]. With
    /// `--refresh-token`: a narrower scope for the new access token.
    #[arg(long, env = "COFFER_SCOPE")]
    pub scope: Option<String>,
    /// Refresh instead of asking the user: exchange this refresh token for
    /// new tokens. The one given is used up.
    #[arg(long, env = "COFFER_REFRESH_TOKEN", hide_env_values = true)]
    pub refresh_token: Option<String>,
    /// The server's public URL (as `coffer serve --public-url`).
    #[arg(long, env = "COFFER_PUBLIC_URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print the whole token response as JSON (`access_token`, `token_type`,
    /// `expires_in`, `refresh_token`, `scope`, …) instead of the access token.
    #[arg(long)]
    pub json: bool,
}

/// Runs `coffer token`.
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let server = args.server.trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&server).map_err(|e| {
        anyhow!("--server {server:?} is not a URL ({e}); give the server's public URL, e.g. {DEFAULT_SERVER}")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!(
            "--server {server:?} is not an http or https URL; give the server's public URL, e.g. {DEFAULT_SERVER}"
        );
    }
    let oauth = OAuth::new(&server, &args.client_id).map_err(|e| anyhow!("setting up the OAuth client: {e}"))?;
    let scope = args.scope.as_deref();
    let context = Failure {
        server: &server,
        client_id: &args.client_id,
    };
    let tokens = match &args.refresh_token {
        Some(refresh) => oauth
            .refresh(refresh, scope)
            .await
            .map_err(|e| context.explain(e, Step::Refresh))?,
        None => device_flow(&oauth, scope, &context).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tokens.to_json())?);
    } else {
        println!("{}", tokens.access_token);
        if args.refresh_token.is_some()
            && let Some(refresh) = &tokens.refresh_token
        {
            println!("{refresh}");
        }
    }
    Ok(())
}

/// Asks for a device code, tells the user where to allow access, and polls
/// the token endpoint (at the server's `interval`, slower after
/// `slow_down`, until `expires_in`) for the tokens.
async fn device_flow(oauth: &OAuth, scope: Option<&str>, context: &Failure<'_>) -> anyhow::Result<Tokens> {
    let device = oauth
        .device_authorization(scope)
        .await
        .map_err(|e| context.explain(e, Step::DeviceCode))?;
    let code = device.user_code();
    let link = device.verification_uri_complete();
    let minutes = device.expires_in().as_secs().div_ceil(60).max(1);
    eprintln!(
        "Open {link} in a browser signed in to Coffer to allow access (code {code}, valid {minutes} minute{}).",
        if minutes == 1 { "" } else { "s" }
    );
    device
        .wait()
        .await
        .map_err(|e| context.explain(e, Step::Poll { minutes }))
}

/// Which request failed.
#[derive(Clone, Copy)]
enum Step {
    /// `POST /oauth/device`.
    DeviceCode,
    /// Polling the token endpoint with the device code.
    Poll { minutes: u64 },
    /// The refresh token grant.
    Refresh,
}

/// What an error message needs to say what to do.
struct Failure<'a> {
    server: &'a str,
    client_id: &'a str,
}

impl Failure<'_> {
    /// An error of the SDK as a message naming what to do.
    fn explain(&self, error: Error, step: Step) -> anyhow::Error {
        let server = self.server;
        match error {
            Error::OAuth { error, description } => {
                let said = description.map(|d| format!(" ({d})")).unwrap_or_default();
                self.refusal(&error, &said, step)
            }
            Error::Http(e) => {
                // The error and its sources, as one line.
                let cause = anyhow::Error::from(e);
                anyhow!(
                    "could not reach Coffer at {server}: {cause:#}. Is `coffer serve` running there? Name the server with --server or COFFER_PUBLIC_URL."
                )
            }
            Error::UnexpectedResponse(e) => anyhow!(
                "{server} did not answer like a Coffer server ({e}). Check --server: it is the server's public URL, e.g. {DEFAULT_SERVER}."
            ),
            other => anyhow!("talking to {server}: {other}"),
        }
    }

    /// An OAuth error answer as a message naming what to do.
    fn refusal(&self, code: &str, said: &str, step: Step) -> anyhow::Error {
        let client_id = self.client_id;
        match (code, step) {
            ("access_denied", _) => anyhow!(
                "access was denied in the browser{said}; no token was issued. Run `coffer token` again to ask again."
            ),
            ("expired_token", Step::Poll { minutes }) => anyhow!(
                "the code expired before access was allowed{said}: it is valid {minutes} minutes. Run `coffer token` again and open the new link in time."
            ),
            ("invalid_client", _) => anyhow!(
                "the server knows no app with client id {client_id}{said}. Check --client-id (`coffer app list` shows the registered apps) and --server."
            ),
            ("unauthorized_client", Step::Refresh) => {
                anyhow!("this app may not refresh tokens{said}. Register it with `--grant-type refresh-token` too.")
            }
            ("unauthorized_client", _) => anyhow!(
                "this app may not use the device flow{said}. Register it with `coffer app register --grant-type device-code`."
            ),
            ("invalid_scope", _) => anyhow!(
                "the scope was refused{said}. Ask for tables as `schema.table:action+action`, e.g. --scope 'contacts.people:read+create'."
            ),
            ("invalid_grant", Step::Refresh) => anyhow!(
                "the refresh token was refused{said}: it expired, was revoked, or was already used (each works once). Get new tokens with `coffer token --client-id {client_id} --scope …`."
            ),
            ("slow_down" | "authorization_pending", _) => {
                anyhow!("the server kept asking to wait{said}. Run `coffer token` again.")
            }
            (code, _) => anyhow!("the server refused: {code}{said}"),
        }
    }
}
