//! Idle sessions: what an authenticated pgwire session that sends nothing
//! costs the server in memory.
//!
//! The server runs in a child process (this binary with
//! `--pgwire-idle-server`: the same in-process server as the other
//! sections, with a listener whose connection limit holds every session),
//! so that its resident memory is the server's alone; the clients are
//! tokio-postgres connections in this process. The child's RSS is read
//! once one session per app is open (each token verified and cached, each
//! app's session count made) and again once the others are open; the
//! growth over those others is the figure. Beside it, PostgreSQL's: the
//! private memory of idle backends, each set to its tenant.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use coffer_core::VaultId;
use coffer_pgwire::PgwireLimits;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use super::{coffer_config, connect, connect_all, pg_error, pg_tenant};
use crate::http::SCOPE;
use crate::server::{self, AppToken, ChildServer, Server, raise_fd_limit, rss_kib};
use crate::{Args, Report};

/// The flag that runs this binary as the idle sessions' server.
pub const SERVER_FLAG: &str = "--pgwire-idle-server";
/// Idle PostgreSQL backends measured (PostgreSQL allows 100 connections by
/// default).
const PG_IDLE: usize = 32;
/// How long the server process may take to start and authorize its apps.
const STARTING: Duration = Duration::from_secs(300);
/// How long opening the sessions may take.
const OPENING: Duration = Duration::from_secs(300);
/// How long the server process lives at most, waiting for this one.
const SERVING: Duration = Duration::from_secs(15 * 60);
/// Pause before memory is read, for the last sessions to settle.
const SETTLE: Duration = Duration::from_secs(2);

/// What the server process tells this one on its first line of output.
#[derive(Serialize, Deserialize)]
struct Ready {
    /// The pgwire listener.
    addr: SocketAddr,
    /// Its limits.
    max_connections: usize,
    /// Sessions one app may hold on one vault.
    sessions_per_app: usize,
    /// The apps to connect as, each authorized on the same vault.
    apps: Vec<AppToken>,
}

/// Opens `--idle-connections` idle sessions on a server in a child process,
/// and adds the server's memory per session to `report`, beside
/// PostgreSQL's per idle backend.
pub async fn run(args: &Args, pg_config: &tokio_postgres::Config, report: &mut Report) -> anyhow::Result<()> {
    let n = args.idle_connections;
    if n == 0 {
        return Ok(());
    }
    raise_fd_limit(n as u64 + 1024)?;
    let (server, ready): (ChildServer, Ready) =
        ChildServer::start(&[SERVER_FLAG, "--idle-connections", &n.to_string()], &[], STARTING).await?;
    let pid = server.pid;
    let apps = &ready.apps;
    ensure!(!apps.is_empty(), "the server process authorized no app");
    let warm = apps.len();
    ensure!(
        n > warm,
        "--idle-connections {n} leaves nothing to measure beyond the first session of each of {warm} apps"
    );
    println!(
        "idle pgwire sessions: {n} authenticated tokio-postgres connections, {} per app on one vault at most \
         (the listener's sessions_per_app), so {warm} apps; server in a child process (this binary in server \
         mode, max_connections {}; the default is {})",
        ready.sessions_per_app,
        ready.max_connections,
        PgwireLimits::default().max_connections
    );
    let open = |i: usize| {
        let config = coffer_config(ready.addr, &apps[i % warm]);
        async move { connect(&config).await }
    };
    let mut clients = connect_all(warm, open)
        .await
        .context("opening the first session of each app")?;
    tokio::time::sleep(SETTLE).await;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let rest = timeout(OPENING, connect_all(n - warm, |i| open(warm + i)))
        .await
        .context("the sessions were not open in time")?
        .context("opening the idle sessions")?;
    let opening = started.elapsed().as_secs_f64();
    clients.extend(rest);
    tokio::time::sleep(SETTLE).await;
    let after = rss_kib(pid)?;
    let closed = clients.iter().filter(|c| c.is_closed()).count();
    ensure!(
        closed == 0,
        "{closed} of the {n} idle sessions were closed by the server"
    );
    let measured = n - warm;
    let per_session = after.saturating_sub(before) as f64 / measured as f64;
    println!(
        "  opened {measured} sessions in {opening:.1} s; server RSS {before} KiB with one session per app, \
         {after} KiB with all {n}: {per_session:.1} KiB per session (VmRSS of the server process; kernel \
         socket buffers are not in it; the clients' memory is this process's, not the server's)"
    );
    drop(clients);
    server.stop().await?;

    let what = format!(
        "pgwire RSS per idle session ({n} sessions, {} per app)",
        ready.sessions_per_app
    );
    match pg_backend_kib(pg_config).await? {
        Some(pg) => {
            println!(
                "  PostgreSQL: {pg:.1} KiB private memory per idle backend ({PG_IDLE} backends set to a tenant; \
                 Private_Clean + Private_Dirty of /proc/PID/smaps_rollup)"
            );
            report.add(
                &format!("{what} (PG: private memory per idle backend)"),
                per_session,
                pg,
                "KiB",
                false,
            );
        }
        None => report.single(&what, per_session, "KiB", "PG backends' memory not readable here"),
    }
    report.goal("≤ 64 KiB", per_session <= 64.0);
    Ok(())
}

/// The server process: serves pgwire within limits that hold
/// `--idle-connections` sessions, authorizes as many apps of one vault as
/// those sessions need at the default sessions per app, prints [`Ready`]
/// as one line, and serves until its standard input is closed.
pub async fn serve(args: &Args) -> anyhow::Result<()> {
    let n = args.idle_connections.max(1);
    let defaults = PgwireLimits::default();
    let limits = PgwireLimits {
        max_connections: n + 16,
        ..defaults
    };
    raise_fd_limit(limits.max_connections as u64 + 256)?;
    let server = Server::start(Some(limits)).await?;
    let addr = server.pgwire.context("the pgwire listener was not started")?;
    let (user, _) = server::create_user(&server.services).await?;
    let apps = server::app_tokens(&server.services, user, SCOPE, n.div_ceil(limits.sessions_per_app)).await?;
    let ready = Ready {
        addr,
        max_connections: limits.max_connections,
        sessions_per_app: limits.sessions_per_app,
        apps,
    };
    println!("{}", serde_json::to_string(&ready)?);
    // Standard input is read on a thread of its own, which does not keep the
    // process alive once the server has stopped.
    let (eof, closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = eof.send(());
    });
    let _ = timeout(SERVING, closed).await;
    server.stop().await
}

/// The mean private memory of [`PG_IDLE`] idle PostgreSQL backends, each
/// set to a tenant, in KiB; `None` when PostgreSQL is not on this machine
/// or its processes cannot be read.
async fn pg_backend_kib(config: &tokio_postgres::Config) -> anyhow::Result<Option<f64>> {
    let local = config.get_hosts().iter().all(|host| match host {
        tokio_postgres::config::Host::Tcp(h) => matches!(h.as_str(), "127.0.0.1" | "localhost" | "::1"),
        tokio_postgres::config::Host::Unix(_) => true,
    });
    if !local {
        return Ok(None);
    }
    let vault = VaultId::generate().to_string();
    let vault = &vault;
    let clients = connect_all(PG_IDLE, |_| async move { pg_tenant(config, vault).await })
        .await
        .context("opening idle PostgreSQL connections")?;
    let mut pids = Vec::with_capacity(clients.len());
    for client in &clients {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        pids.push(pid);
    }
    tokio::time::sleep(SETTLE).await;
    let mut total = 0;
    for pid in pids {
        match private_kib(pid) {
            Some(kib) => total += kib,
            None => return Ok(None),
        }
    }
    Ok(Some(total as f64 / PG_IDLE as f64))
}

/// Private_Clean + Private_Dirty of PostgreSQL backend `pid`, in KiB.
fn private_kib(pid: i32) -> Option<u64> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.trim().starts_with("postgres") {
        return None;
    }
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("Private_Clean:")? + field("Private_Dirty:")?)
}
