//! What the HTTP and pgwire sections share: a Coffer server served in this
//! process on loopback ports (the real router, and optionally the real
//! pgwire listener), and access tokens got through the OAuth server's own
//! API, as after a real sign-up and consent.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer::services::{self, Services};
use coffer::web::{self, AppState};
use coffer_core::{UserId, VaultId};
use coffer_oauth::{AuthorizeParams, ClientCredentials, NewApp};
use coffer_pgwire::PgwireLimits;
use coffer_storage::EngineOptions;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The apps' redirect URI. Never visited: the code is taken from the
/// location the approval redirects to.
const REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// A Coffer server serving its router on a loopback port of this process,
/// on a temporary data directory; with a pgwire listener too when asked.
pub struct Server {
    /// `http://127.0.0.1:{port}`, also the OAuth issuer.
    pub base_url: String,
    /// Where the pgwire listener listens, if one was started.
    pub pgwire: Option<SocketAddr>,
    /// The server's engine, OAuth server, gateway and access log.
    pub services: Services,
    /// Starts the graceful shutdown of every listener.
    stop: watch::Sender<bool>,
    /// The HTTP serving task.
    http: JoinHandle<std::io::Result<()>>,
    /// The pgwire serving task.
    pgwire_task: Option<JoinHandle<()>>,
    /// The data directory, deleted when dropped.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Opens a new data directory and serves it as `coffer serve` does:
    /// HTTP, and the PostgreSQL wire protocol within `pgwire` when given.
    pub async fn start(pgwire: Option<PgwireLimits>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (services, _) = services::open(
            dir.path(),
            None,
            &base_url,
            EngineOptions::default(),
            Default::default(),
        )
        .await?;
        services
            .oauth
            .load_revocation_view()
            .await
            .context("loading grants into the revocation view")?;
        let (stop, stopped) = watch::channel(false);
        let (pgwire, pgwire_task) = match pgwire {
            Some(limits) => {
                let listener = coffer_pgwire::Listener::bind((Ipv4Addr::LOCALHOST, 0).into()).await?;
                let addr = listener.local_addr();
                let mut stopped = stopped.clone();
                let task = tokio::spawn(coffer_pgwire::serve(
                    listener,
                    services.gateway.clone(),
                    limits,
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                ));
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        let app = web::router(AppState::new(services.clone(), &base_url));
        let mut stopped = stopped;
        let http = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Server {
            base_url,
            pgwire,
            services,
            stop,
            http,
            pgwire_task,
            _dir: dir,
        })
    }

    /// Stops serving, writes the access log's last entries and shuts the
    /// engine down, as `coffer serve` does.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.http)
            .await
            .context("the HTTP server did not stop within 10 s")???;
        if let Some(task) = self.pgwire_task {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .context("the pgwire listener did not stop within 10 s")??;
        }
        self.services.access_log.flush().await;
        self.services.engine.shutdown().await;
        Ok(())
    }
}

/// Creates a user and the vault it owns, as the sign-up page does. Returns
/// the user and the vault.
pub async fn create_user(services: &Services) -> anyhow::Result<(UserId, VaultId)> {
    let user = coffer::create_account(services, "bench@example.org", "correct horse battery staple")
        .await
        .context("creating the user")?;
    Ok((user.id, user.vault_id))
}

/// An app and an access token it holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct AppToken {
    /// The app's client id (the pgwire user name).
    pub client_id: String,
    /// An access token for the app on the user's vault.
    pub token: String,
}

/// Registers a public app named `name` and runs the authorization code flow
/// with PKCE through the OAuth server's API, `user` approving everything
/// `scope` asks: the grant is stored in the control database and known to
/// the revocation view, as after a real consent.
pub async fn app_token(services: &Services, user: UserId, name: &str, scope: &str) -> anyhow::Result<AppToken> {
    let oauth = &services.oauth;
    let app = oauth
        .register_app(NewApp::public(name, vec![REDIRECT_URI.to_owned()]))
        .await
        .context("registering the app")?
        .app;
    let verifier: String = rand::rng().sample_iter(Alphanumeric).take(64).map(char::from).collect();
    let params = AuthorizeParams {
        response_type: Some("code".to_owned()),
        client_id: Some(app.client_id.as_str().to_owned()),
        redirect_uri: Some(REDIRECT_URI.to_owned()),
        scope: Some(scope.to_owned()),
        code_challenge: Some(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))),
        code_challenge_method: Some("S256".to_owned()),
        ..AuthorizeParams::default()
    };
    let pending = oauth
        .validate_authorize_request(&params)
        .await
        .map_err(|e| anyhow!("the authorization request was refused: {e}"))?;
    let approved = oauth
        .approve(user, &pending.requested, &pending)
        .await
        .context("approving the authorization request")?;
    let code = query_param(&approved.location, "code")?;
    let tokens = oauth
        .exchange_code(
            &ClientCredentials::public(app.client_id.as_str()),
            &code,
            Some(REDIRECT_URI),
            &verifier,
            None,
        )
        .await
        .context("exchanging the authorization code")?;
    Ok(AppToken {
        client_id: app.client_id.as_str().to_owned(),
        token: tokens.access_token,
    })
}

/// `n` apps of `user`, each authorized for `scope`.
pub async fn app_tokens(services: &Services, user: UserId, scope: &str, n: usize) -> anyhow::Result<Vec<AppToken>> {
    let mut apps = Vec::with_capacity(n);
    for i in 0..n {
        apps.push(app_token(services, user, &format!("Coffer bench {i}"), scope).await?);
    }
    Ok(apps)
}

/// The value of query parameter `name` in `url`; only values that need no
/// percent-decoding (the server's codes are base64url) are accepted.
fn query_param(url: &str, name: &str) -> anyhow::Result<String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no `{name}` in the redirect location"))
}

/// Raises the soft limit on open files to at least `wanted`, within the
/// hard limit.
pub fn raise_fd_limit(wanted: u64) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|current| current >= wanted) {
        return Ok(());
    }
    if let Some(max) = limit.maximum
        && max < wanted
    {
        anyhow::bail!(
            "{wanted} open files are needed and the hard limit is {max}: raise it (ulimit -n) or ask for fewer"
        );
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(wanted),
            maximum: limit.maximum,
        },
    )
    .context("raising the limit on open files")
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's memory")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .context("no VmRSS in the server's status")
}

/// A server in a child process: this binary started again in its server
/// mode, so that its resident memory is the server's alone.
pub struct ChildServer {
    child: tokio::process::Child,
    /// Its process id (for [`rss_kib`]).
    pub pid: u32,
}

impl ChildServer {
    /// Starts this binary with `args` and `envs` and waits up to `starting`
    /// for the first line of its output that is a JSON object: what the
    /// server tells this process once it is ready.
    pub async fn start<R: serde::de::DeserializeOwned>(
        args: &[&str],
        envs: &[(&str, &str)],
        starting: Duration,
    ) -> anyhow::Result<(ChildServer, R)> {
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = tokio::process::Command::new(std::env::current_exe().context("this binary's path")?)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id().context("the server process has no id")?;
        let mut lines = BufReader::new(child.stdout.take().context("the server process's output")?).lines();
        let ready = tokio::time::timeout(starting, async {
            loop {
                let line = lines
                    .next_line()
                    .await?
                    .context("the server process ended before it was ready")?;
                if line.starts_with('{') {
                    break serde_json::from_str(&line).context("the server process's first line");
                }
            }
        })
        .await
        .context("the server process was not ready in time")??;
        Ok((ChildServer { child, pid }, ready))
    }

    /// Closes the server's standard input, which tells it to stop, and
    /// waits up to 30 s for it to exit successfully.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => anyhow::ensure!(status?.success(), "the server process failed"),
            Err(_) => {
                self.child.start_kill()?;
                anyhow::bail!("the server process did not stop within 30 s");
            }
        }
        Ok(())
    }
}
