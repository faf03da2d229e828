//! `coffer serve`: opens the data directory, builds the OAuth server,
//! starts the periodic clean-up, and serves HTTP and the PostgreSQL wire
//! protocol (`coffer-pgwire`) until Ctrl-C or SIGTERM.
//!
//! The HTTP listener is hyper's HTTP/1 connection builder rather than
//! `axum::serve`, for the limits `axum::serve` does not expose (decision
//! 0015): a header read timeout, a whole-request timeout, a cap on open
//! connections, and problem JSON for requests hyper cannot read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_storage::EngineOptions;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::services::{self, ROOT_KEY_FILE, Services};
use crate::unreadable_requests::ProblemForUnreadable;
use crate::web::{self, AppState};

/// How often expired revocation entries are dropped from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often expired codes, sessions and the like are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// What a person who just started the server does next, and the one file
/// whose loss loses every vault.
fn print_next_steps(config: &Config, base_url: &str) {
    let data_dir = config.data_dir.display();
    println!("Next:");
    println!("  sign up (one vault per account):  {base_url}/sign-up");
    println!(
        "  register an app:                  coffer app register --data-dir {data_dir} --name NAME --redirect-uri URI"
    );
    println!("  data API: docs/guides/data-api.md, OpenAPI document at {base_url}/v1/openapi.json");
    println!(
        "Back up {}: every vault's data key is wrapped with it; losing it loses every vault.",
        config.data_dir.join("master.key").display()
    );
}

/// Runs the server.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let pgwire_tls = config
        .pgwire_tls
        .as_ref()
        .map(|files| coffer_pgwire::PgwireTls::from_pem_files(&files.cert, &files.key, files.required))
        .transpose()
        .context("the PostgreSQL wire protocol's TLS")?;
    let pgwire = match coffer_pgwire::Listener::bind(config.pgwire_listen).await {
        Ok(pgwire) => Some(match pgwire_tls {
            Some(tls) => pgwire.with_tls(tls),
            None => pgwire,
        }),
        Err(e) if !config.pgwire_listen_configured => {
            eprintln!(
                "warning: {e}; the PostgreSQL wire protocol is not served (choose an address with --pgwire-listen)"
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    let base_url = config.base_url(addr);
    let options = EngineOptions {
        flush_interval: config.flush_interval,
        flush_rows: config.flush_rows,
        log_retention: config.log_retention,
        ..EngineOptions::default()
    };
    let (services, created) = services::open(
        &config.data_dir,
        config.schemas_dir.as_deref(),
        &base_url,
        options,
        config.query_limits,
    )
    .await?;
    if created.master_key {
        println!("Created master key {}", config.data_dir.join("master.key").display());
    }
    if created.root_key {
        println!(
            "Created capability token root key {}",
            config.data_dir.join(ROOT_KEY_FILE).display()
        );
    }
    let grants = services
        .oauth
        .load_revocation_view()
        .await
        .context("loading grants into the revocation view")?;
    tracing::debug!(grants, "revocation view loaded");
    let cleanup = tokio::spawn(clean_up(services.clone()));

    println!(
        "Coffer is serving http://{addr}/ (data in {})",
        config.data_dir.display()
    );
    if let Some(pgwire) = &pgwire {
        println!(
            "PostgreSQL wire protocol: {} (user = the app's client id, password = an access token)",
            pgwire.url()
        );
    }
    if config.public_url.is_some() {
        println!("Public URL (OAuth issuer): {base_url}");
    }
    print_next_steps(&config, &base_url);
    let engine = services.engine.clone();
    let access_log = services.access_log.clone();
    let (stop_pgwire, pgwire_stopped) = tokio::sync::oneshot::channel::<()>();
    let pgwire = pgwire.map(|pgwire| {
        tokio::spawn(coffer_pgwire::serve(
            pgwire,
            services.gateway.clone(),
            config.pgwire_limits,
            async move {
                let _ = pgwire_stopped.await;
            },
        ))
    });
    let app = web::router(
        AppState::new(services, &base_url)
            .with_api_body_limit(config.api_body_limit)
            .with_open_registration(config.open_registration)
            .with_app_schema_publishing(config.app_schema_publishing),
    );
    let limits = HttpLimits {
        header_read_timeout: config.header_read_timeout,
        request_timeout: config.request_timeout,
        max_connections: config.max_connections,
    };
    serve_http(listener, app, limits, shutdown_signal()).await;
    let _ = stop_pgwire.send(());
    if let Some(pgwire) = pgwire {
        let _ = pgwire.await;
    }
    cleanup.abort();
    // The access log's last entries go to the engine before it stops.
    access_log.flush().await;
    engine.shutdown().await;
    Ok(())
}

/// The limits the HTTP listener puts on clients.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// A connection whose client has not sent a complete request head this
    /// long after the server started waiting for it (a new connection, or
    /// an idle keep-alive one) is closed (hyper's `header_read_timeout`).
    pub header_read_timeout: Duration,
    /// A request not answered within this time gets a 503 problem
    /// (tower-http's `TimeoutLayer`; covers reading the body and the handler).
    pub request_timeout: Duration,
    /// At most this many connections are served at once; the next client
    /// waits in the listen backlog until one closes.
    pub max_connections: usize,
}

/// Serves `app` on `listener` over HTTP/1.1 with `limits` until `shutdown`
/// completes, then stops accepting, lets the requests in flight finish and
/// closes idle connections. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let secs = limits.request_timeout.as_secs();
    let app = app
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(move |response: Response| async move {
            timeout_problem(secs, response)
        }));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Graceful shutdown of every connection: each task holds a receiver
    // and drops it when its connection has ended. (hyper-util's
    // `GracefulShutdown` does not take connections that may be upgraded.)
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: at the limit, connections wait in the backlog
        // rather than being accepted and left unserved.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (reset before accept) and
                    // resource exhaustion (EMFILE): log, pause, go on.
                    tracing::debug!(error = %e, "accepting a connection failed");
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(Body::new)
        });
        let connection = builder
            .serve_connection(
                TokioIo::new(ProblemForUnreadable::new(stream)),
                TowerToHyperService::new(service),
            )
            // The change stream's WebSocket takes the connection over.
            .with_upgrades();
        let mut stopping = stopping_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // Until the server stops; then the connection finishes the
            // request it serves and closes (an upgraded one is no longer the
            // connection's: the change stream ends it).
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(stopping);
            drop(permit);
        });
    }
    drop(listener);
    // Open change streams end now, or the graceful shutdown would wait for them.
    crate::web::close_change_streams();
    drop(stopping_rx);
    let _ = stopping_tx.send(true);
    stopping_tx.closed().await;
}

/// Gives `TimeoutLayer`'s empty 503 a problem body. 503 rather than 408:
/// the time is mostly the server's (a handler or query), and clients repeat
/// a 408 on their own, which would run the same slow request again.
/// Only an empty 503 without a content type is taken for the timeout's.
fn timeout_problem(secs: u64, response: Response) -> Response {
    let empty =
        response.headers().get(header::CONTENT_TYPE).is_none() && response.body().size_hint().exact() == Some(0);
    if response.status() != StatusCode::SERVICE_UNAVAILABLE || !empty {
        return response;
    }
    let body = serde_json::json!({
        "type": "urn:coffer:problem:request-timeout",
        "title": "Request took too long",
        "status": 503,
        "detail": format!("the server stopped this request after {secs} s; try a smaller request"),
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Errors of one connection that do not affect accepting the next.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Drops expired revoked token ids from the revocation view every minute,
/// and deletes expired rows (codes, PAR requests, device codes, sessions,
/// sign-in failures, DPoP proofs, tokens) every hour, starting now.
async fn clean_up(services: Services) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    let mut since_purge = PURGE_EVERY;
    loop {
        tick.tick().await;
        let oauth = &services.oauth;
        oauth.revocation_view().prune(oauth.now());
        if since_purge >= PURGE_EVERY {
            since_purge = Duration::ZERO;
            match oauth.purge_expired().await {
                Ok(rows) => tracing::debug!(rows, "purged expired OAuth rows"),
                Err(e) => tracing::warn!(error = %e, "purging expired OAuth rows failed"),
            }
        }
        since_purge += PRUNE_EVERY;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
