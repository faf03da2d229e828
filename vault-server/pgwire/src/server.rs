//! The listener: accepts connections within [`PgwireLimits`], serves each
//! with the wire protocol, and closes idle ones.

use std::net::SocketAddr;
use std::time::Duration;

use coffer_gateway::Gateway;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::DATABASE;
use crate::connection::{Connection, Shared};
use crate::handlers::Handlers;
use crate::tls::PgwireTls;

/// What the listener refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum PgwireError {
    /// The address could not be listened on.
    #[error("listening for pgwire on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The limits the pgwire listener puts on clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgwireLimits {
    /// Connections served at once; the next client waits in the listen
    /// backlog until one closes.
    pub max_connections: usize,
    /// Sessions one app may hold on one vault at once; the next is refused
    /// with `53300`.
    pub sessions_per_app: usize,
    /// A session that sends nothing for this long is closed. (A client that
    /// has not finished its startup within 60 s is closed too.)
    pub idle_timeout: Duration,
}

impl Default for PgwireLimits {
    fn default() -> Self {
        PgwireLimits {
            max_connections: 1024,
            sessions_per_app: 64,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// A bound pgwire listener.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    addr: SocketAddr,
    tls: Option<PgwireTls>,
}

impl Listener {
    /// Listens on `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Listener, PgwireError> {
        let inner = TcpListener::bind(addr)
            .await
            .map_err(|source| PgwireError::Bind { addr, source })?;
        let addr = inner
            .local_addr()
            .map_err(|source| PgwireError::Bind { addr, source })?;
        Ok(Listener { inner, addr, tls: None })
    }

    /// Serves TLS with `tls` (and, when it is required, refuses clients
    /// that do not negotiate it).
    pub fn with_tls(mut self, tls: PgwireTls) -> Listener {
        self.tls = Some(tls);
        self
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection URL a client uses, with `CLIENT_ID` where the app's
    /// client id goes: `postgres://CLIENT_ID@127.0.0.1:6432/vault`, with
    /// `?sslmode=require` when TLS is required.
    pub fn url(&self) -> String {
        let mode = match &self.tls {
            Some(tls) if tls.required => "?sslmode=require",
            _ => "",
        };
        format!("postgres://CLIENT_ID@{}/{DATABASE}{mode}", self.addr)
    }
}

/// Serves the wire protocol on `listener` over `gateway` within `limits`
/// until `shutdown` completes; then stops accepting and closes the open
/// sessions.
pub async fn serve(
    listener: Listener,
    gateway: Gateway,
    limits: PgwireLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let tls_required = listener.tls.as_ref().is_some_and(|tls| tls.required);
    let acceptor = listener.tls.as_ref().map(|tls| tls.acceptor.clone());
    let shared = Shared::new(gateway, limits, tls_required);
    let permits = std::sync::Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.inner.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a pgwire connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection::new(shared.clone());
        let handlers = Handlers {
            connection: connection.clone(),
        };
        let mut stopped = stopped.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = pgwire::tokio::process_socket(socket, acceptor, handlers) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "pgwire connection ended with an error");
                    }
                }
                () = idle(&connection) => tracing::debug!(%peer, "closing an idle pgwire session"),
                _ = stopped.wait_for(|stop| *stop) => {}
            }
        });
    }
    let _ = stop.send(true);
}

/// Completes when `connection` has been idle for its idle timeout.
async fn idle(connection: &Connection) {
    loop {
        let deadline = connection.idle_deadline();
        tokio::time::sleep_until(deadline).await;
        if connection.idle_deadline() <= tokio::time::Instant::now() {
            return;
        }
    }
}
