//! A pgwire listener in-process over a throwaway engine and gateway, real
//! tokens, and real clients (tokio-postgres, psql).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use coffer_auth::{Authorizer, GrantStatus, RevocationView, RootKeyPair, ScopeSet, TokenClaims, mint};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, GrantId, VaultId};
use coffer_gateway::{AccessLog, ControlPlane, Gateway, RequestLimits};
use coffer_pgwire::{Listener, PgwireLimits};
use coffer_storage::{Embedded, Engine, EngineOptions, open_embedded};

pub struct NoControl;

#[async_trait]
impl ControlPlane for NoControl {
    async fn sync_grant(&self, _grant: GrantId) -> bool {
        false
    }
    async fn touch_grant(&self, _grant: GrantId) {}
    async fn verify_dpop(&self, _proof: &str, _method: &str, _url: &str, _token: &str) -> Result<String, String> {
        Err("no DPoP in these tests".into())
    }
}

/// A token and the grant it was minted for.
pub struct Token {
    pub token: String,
    pub grant: GrantId,
}

pub struct World {
    pub _dir: tempfile::TempDir,
    pub engine: Engine,
    pub gateway: Gateway,
    pub root: RootKeyPair,
    pub view: Arc<RevocationView>,
    pub registry: SchemaRegistry,
    pub vault: VaultId,
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl World {
    pub async fn new() -> World {
        World::with(RequestLimits::default(), PgwireLimits::default()).await
    }

    /// A world whose gateway and listener run within these limits.
    pub async fn with(limits: RequestLimits, pgwire: PgwireLimits) -> World {
        let dir = tempfile::tempdir().unwrap();
        let registry = SchemaRegistry::builtin().unwrap();
        let opts = EngineOptions {
            background: false,
            ..EngineOptions::default()
        };
        let Embedded { engine, .. } = open_embedded(dir.path(), registry.clone(), opts).await.unwrap();
        let vault = engine.create_vault().await.unwrap();
        for schema in ["contacts", "notes", "journal", "health"] {
            engine.install_schema(vault, schema, None).await.unwrap();
        }
        let root = RootKeyPair::generate();
        let view = Arc::new(RevocationView::new());
        let authorizer = Authorizer::new(root.public_key(), view.clone());
        let gateway = Gateway::with_limits(
            engine.clone(),
            authorizer,
            Arc::new(NoControl),
            AccessLog::start(engine.clone()),
            limits,
        );
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(coffer_pgwire::serve(listener, gateway.clone(), pgwire, async move {
            let _ = stopped.await;
        }));
        World {
            _dir: dir,
            engine,
            gateway,
            root,
            view,
            registry,
            vault,
            addr,
            _stop: stop,
        }
    }

    /// A token for `app` holding `scope` on the world's vault, valid for
    /// `lifetime`.
    pub fn token_for(&self, app: &str, scope: &str, lifetime: TimeDelta) -> Token {
        let grant = ScopeSet::parse(scope)
            .unwrap()
            .resolve(|name| self.registry.latest(name))
            .unwrap();
        let id = GrantId::generate();
        self.view.set_grant(id, 1, GrantStatus::Active);
        let claims = TokenClaims::new(self.vault, AppId::new(app), id, 1, grant, Utc::now(), lifetime);
        Token {
            token: mint(&self.root, &claims).unwrap(),
            grant: id,
        }
    }

    pub fn token(&self, app: &str, scope: &str) -> Token {
        self.token_for(app, scope, TimeDelta::minutes(5))
    }

    pub fn revoke(&self, grant: GrantId) {
        self.view.set_grant(grant, 1, GrantStatus::Revoked);
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
        let mut cmd = tokio::process::Command::new("psql");
        cmd.arg("-X")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg(format!(
                "host={} port={} user={app} dbname=vault sslmode=disable",
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
