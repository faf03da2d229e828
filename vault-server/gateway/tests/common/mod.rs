//! The gateway in-process, shared by the test binaries: a real storage
//! engine with the built-in schemas, real tokens, and helpers.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use coffer_auth::{Authorizer, GrantStatus, RevocationView, RootKeyPair, ScopeSet, TokenClaims, mint};
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, GrantId, TableName, VaultId};
use coffer_gateway::filter::ListQuery;
use coffer_gateway::{AccessLog, Caller, ControlPlane, Credentials, Gateway, GatewayError, RequestLimits, rows};
use coffer_storage::{Embedded, Engine, EngineOptions, Values, open_embedded};
use serde_json::Value;

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

pub struct World {
    pub _dir: tempfile::TempDir,
    pub engine: Engine,
    pub gateway: Gateway,
    pub root: RootKeyPair,
    pub view: Arc<RevocationView>,
    pub registry: SchemaRegistry,
    pub vault: VaultId,
}

impl World {
    pub async fn new() -> World {
        World::with_limits(RequestLimits::default()).await
    }

    /// A world whose gateway runs queries within `limits`.
    pub async fn with_limits(limits: RequestLimits) -> World {
        let dir = tempfile::tempdir().unwrap();
        let registry = SchemaRegistry::builtin().unwrap();
        let opts = EngineOptions {
            background: false,
            ..EngineOptions::default()
        };
        let Embedded { engine, .. } = open_embedded(dir.path(), registry.clone(), opts).await.unwrap();
        let vault = engine.create_vault().await.unwrap();
        for schema in ["contacts", "notes", "tasks"] {
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
        World {
            _dir: dir,
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

    pub async fn caller_in(&self, vault: VaultId, app: &str, scope: &str) -> Caller {
        let token = self.token(vault, app, scope);
        self.gateway.authenticate(&Credentials::bearer(token)).await.unwrap()
    }

    /// A token for `app` holding `scope` on `vault`.
    pub fn token(&self, vault: VaultId, app: &str, scope: &str) -> String {
        let grant = ScopeSet::parse(scope)
            .unwrap()
            .resolve(|name| self.registry.latest(name))
            .unwrap();
        let id = GrantId::generate();
        self.view.set_grant(id, 1, GrantStatus::Active);
        let claims = TokenClaims::new(vault, AppId::new(app), id, 1, grant, Utc::now(), TimeDelta::minutes(5));
        mint(&self.root, &claims).unwrap()
    }
}

pub fn people() -> TableName {
    TableName::new("contacts", "people")
}

pub fn values(v: Value) -> Values {
    v.as_object().unwrap().clone()
}

pub fn query(pairs: &[(&str, &str)]) -> ListQuery {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    ListQuery::parse(&pairs).unwrap()
}

pub async fn all_rows(caller: &Caller, table: &TableName) -> Vec<rows::Row> {
    rows::list(caller, table, &query(&[("limit", "1000")]))
        .await
        .unwrap()
        .rows
}

/// Everything an error tells the caller: its code, its text and its fields.
pub fn told(e: &GatewayError) -> String {
    format!("{} {e} {e:?}", e.code())
}

/// Whether `e` says the request itself is malformed (a bad statement,
/// filter, column or body).
pub fn bad_request(e: &GatewayError) -> bool {
    matches!(
        e.code(),
        "invalid-sql" | "invalid-filter" | "unknown-column" | "invalid-body"
    )
}

/// Whether `e` refuses the request (the caller's doing), rather than the
/// server failing or the query being stopped.
pub fn refused(e: &GatewayError) -> bool {
    !matches!(e.code(), "server-error" | "query-timeout")
}
