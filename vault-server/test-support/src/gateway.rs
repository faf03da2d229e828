//! The gateway in-process: a throwaway engine with a vault holding the
//! `contacts`, `notes` and `tasks` schemas, a gateway over it with a
//! control-plane stub, and real tokens minted with the world's own root key.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use coffer_auth::{Authorizer, GrantStatus, RevocationView, RootKeyPair, ScopeSet, TokenClaims, mint};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, GrantId, TableName, VaultId};
use coffer_gateway::{AccessLog, Caller, ControlPlane, Credentials, Gateway, RequestLimits};
use coffer_storage::Engine;
use tempfile::TempDir;

use crate::engine::{throwaway, vault_with};

/// A control plane with nothing behind it: no grant is ever synced from a
/// database, touching a grant does nothing, and every DPoP proof is refused
/// (the gateway tests use bearer tokens only).
pub struct NoControl;

#[async_trait]
impl ControlPlane for NoControl {
    async fn sync_grant(&self, _grant: GrantId) -> bool {
        false
    }
    async fn touch_grant(&self, _grant: GrantId) {}
    async fn active_grant(&self, _grant: GrantId) -> Option<coffer_auth::GrantSpec> {
        None
    }
    async fn verify_dpop(&self, _proof: &str, _method: &str, _url: &str, _token: &str) -> Result<String, String> {
        Err("no DPoP in these tests".into())
    }
}

/// The schemas installed in a [`World`]'s vault.
pub const WORLD_SCHEMAS: [&str; 3] = ["contacts", "notes", "tasks"];

/// A gateway over a throwaway engine, and what it takes to mint tokens it
/// accepts.
pub struct World {
    /// The data directory, deleted when the world is dropped.
    pub dir: TempDir,
    /// The engine (no background worker).
    pub engine: Engine,
    /// The gateway, with [`NoControl`] and the world's access log.
    pub gateway: Gateway,
    /// The key the world's tokens are signed with.
    pub root: RootKeyPair,
    /// The revocation view the gateway checks; [`World::token`] marks each
    /// token's grant active in it.
    pub view: Arc<RevocationView>,
    /// The built-in schemas, to resolve scopes against.
    pub registry: SchemaRegistry,
    /// A vault with [`WORLD_SCHEMAS`] installed.
    pub vault: VaultId,
}

impl World {
    /// The newest (at most ten) access log entries of `app` in the world's
    /// vault, after a flush, as (operation, tables, rows, outcome).
    pub async fn logged(&self, app: &str) -> Vec<(String, Vec<TableName>, u64, String)> {
        self.gateway.access_log().flush().await;
        self.gateway
            .access_log()
            .recent(self.vault, Some(&AppId::new(app)), 10)
            .await
            .expect("reading the access log")
            .into_iter()
            .map(|e| (e.operation, e.tables, e.rows, e.outcome))
            .collect()
    }

    /// A world whose gateway runs queries within the default limits.
    pub async fn new() -> World {
        World::with_limits(RequestLimits::default()).await
    }

    /// A world whose gateway runs queries within `limits`.
    pub async fn with_limits(limits: RequestLimits) -> World {
        World::with_schemas(limits, &WORLD_SCHEMAS).await
    }

    /// A world whose vault holds the built-in `schemas` (rather than
    /// [`WORLD_SCHEMAS`]) and whose gateway runs queries within `limits`.
    pub async fn with_schemas(limits: RequestLimits, schemas: &[&str]) -> World {
        let (dir, engine) = throwaway().await;
        let registry = SchemaRegistry::builtin().unwrap();
        let vault = vault_with(&engine, schemas).await;
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
        World {
            dir,
            engine,
            gateway,
            root,
            view,
            registry,
            vault,
        }
    }

    /// A caller for `app` holding `scope` on the world's vault.
    pub async fn caller(&self, app: &str, scope: &str) -> Caller {
        self.caller_in(self.vault, app, scope).await
    }

    /// A caller for `app` holding `scope` on `vault`.
    pub async fn caller_in(&self, vault: VaultId, app: &str, scope: &str) -> Caller {
        let token = self.token(vault, app, scope);
        self.gateway.authenticate(&Credentials::bearer(token)).await.unwrap()
    }

    /// A token for `app` holding `scope` on `vault`, valid for five minutes,
    /// its grant active in the revocation view.
    pub fn token(&self, vault: VaultId, app: &str, scope: &str) -> String {
        self.token_with(vault, app, scope, TimeDelta::minutes(5)).0
    }

    /// A token for `app` holding `scope` on `vault`, valid for `lifetime`,
    /// and the grant it was minted for (active in the revocation view).
    pub fn token_with(&self, vault: VaultId, app: &str, scope: &str, lifetime: TimeDelta) -> (String, GrantId) {
        let grant = ScopeSet::parse(scope)
            .unwrap()
            .resolve(|name| self.registry.latest(name))
            .unwrap();
        let id = GrantId::generate();
        self.view.set_grant(id, 1, GrantStatus::Active);
        let claims = TokenClaims::new(vault, AppId::new(app), id, 1, grant, Utc::now(), lifetime);
        (mint(&self.root, &claims).unwrap(), id)
    }

    /// Marks `grant` revoked in the revocation view: its tokens are refused
    /// from the next request on.
    pub fn revoke(&self, grant: GrantId) {
        self.view.set_grant(grant, 1, GrantStatus::Revoked);
    }
}
