//! `coffer serve`: opens the data directory, builds the OAuth server,
//! starts the periodic clean-up, and serves HTTP until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use coffer_storage::EngineOptions;

use crate::config::Config;
use crate::services::{self, ROOT_KEY_FILE, Services};
use crate::web::{self, AppState};

/// How often expired revocation entries are dropped from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often expired codes, sessions and the like are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs the server.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let base_url = config.base_url(addr);
    let options = EngineOptions {
        flush_interval: config.flush_interval,
        flush_rows: config.flush_rows,
        log_retention: config.log_retention,
        ..EngineOptions::default()
    };
    let (services, created) = services::open(&config.data_dir, &base_url, options).await?;
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
    if config.public_url.is_some() {
        println!("Public URL (OAuth issuer): {base_url}");
    }
    let engine = services.engine.clone();
    let access_log = services.access_log.clone();
    let app = web::router(AppState::new(services, &base_url).with_api_body_limit(config.api_body_limit));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    cleanup.abort();
    // The access log's last entries go to the engine before it stops.
    access_log.flush().await;
    engine.shutdown().await;
    Ok(())
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
