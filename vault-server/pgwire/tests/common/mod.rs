//! A pgwire listener in-process over a throwaway engine and gateway, real
//! tokens, and real clients (tokio-postgres, psql).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Deref;

use chrono::TimeDelta;
use coffer_core::GrantId;
use coffer_gateway::RequestLimits;
use coffer_pgwire::{Listener, PgwireLimits, PgwireTls};

/// The schemas installed in the world's vault.
pub const SCHEMAS: [&str; 4] = ["contacts", "notes", "journal", "health"];

/// A token and the grant it was minted for.
pub struct Token {
    pub token: String,
    pub grant: GrantId,
}

/// The shared gateway world with a pgwire listener in front of it.
pub struct World {
    pub world: coffer_test_support::gateway::World,
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Deref for World {
    type Target = coffer_test_support::gateway::World;

    fn deref(&self) -> &Self::Target {
        &self.world
    }
}

impl World {
    pub async fn new() -> World {
        World::with(RequestLimits::default(), PgwireLimits::default()).await
    }

    /// A world whose gateway and listener run within these limits.
    pub async fn with(limits: RequestLimits, pgwire: PgwireLimits) -> World {
        World::build(limits, pgwire, None).await
    }

    /// A world whose listener serves TLS with `tls`.
    pub async fn with_tls(tls: PgwireTls) -> World {
        World::build(RequestLimits::default(), PgwireLimits::default(), Some(tls)).await
    }

    async fn build(limits: RequestLimits, pgwire: PgwireLimits, tls: Option<PgwireTls>) -> World {
        let world = coffer_test_support::gateway::World::with_schemas(limits, &SCHEMAS).await;
        let mut listener = Listener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        if let Some(tls) = tls {
            listener = listener.with_tls(tls);
        }
        let addr = listener.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(coffer_pgwire::serve(
            listener,
            world.gateway.clone(),
            pgwire,
            async move {
                let _ = stopped.await;
            },
        ));
        World {
            world,
            addr,
            _stop: stop,
        }
    }

    /// A token for `app` holding `scope` on the world's vault, valid for
    /// `lifetime`.
    pub fn token_for(&self, app: &str, scope: &str, lifetime: TimeDelta) -> Token {
        let (token, grant) = self.world.token_with(self.vault, app, scope, lifetime);
        Token { token, grant }
    }

    pub fn token(&self, app: &str, scope: &str) -> Token {
        self.token_for(app, scope, TimeDelta::minutes(5))
    }

    /// The connection string for `app` with `password`.
    pub fn config(&self, app: &str, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.addr.ip().to_string())
            .port(self.addr.port())
            .user(app)
            .password(password)
            .dbname("vault");
        config
    }

    /// A tokio-postgres client for `app` with `token`.
    pub async fn connect(&self, app: &str, token: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config(app, token).connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// `psql` running `commands` (each a `-c`) as `app` with `token`:
    /// its status, standard output and standard error.
    pub async fn psql(&self, app: &str, token: &str, commands: &[&str]) -> (bool, String, String) {
        self.psql_with(app, token, "sslmode=disable", commands).await
    }

    /// The same with `options` added to the connection string (e.g.
    /// `sslmode=require`).
    pub async fn psql_with(&self, app: &str, token: &str, options: &str, commands: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg("-X")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg(format!(
                "host={} port={} user={app} dbname=vault {options}",
                self.addr.ip(),
                self.addr.port()
            ))
            .env("PGPASSWORD", token)
            .env_remove("PGSERVICE")
            .stdin(std::process::Stdio::null());
        for c in commands {
            cmd.arg("-c").arg(c);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
            .await
            .expect("psql finished in time")
            .expect("psql runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The SQLSTATE of a tokio-postgres error.
pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Everything an error tells the client.
pub fn told(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} {} {:?} {:?}",
            db.code().code(),
            db.message(),
            db.detail(),
            db.hint()
        ),
        None => e.to_string(),
    }
}
