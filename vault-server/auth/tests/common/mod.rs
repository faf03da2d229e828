//! Shared fixtures: a few schemas, a key, a revocation view and tokens.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use coffer_auth::{Authorizer, GrantSpec, GrantStatus, RevocationView, RootKeyPair, ScopeSet, TokenClaims, mint};
use coffer_core::schema::{SchemaDef, TableName};
use coffer_core::{AppId, GrantId, VaultId};

/// The test schemas, by name.
pub fn schemas() -> HashMap<String, SchemaDef> {
    let defs = serde_json::json!([
        {"name": "contacts", "version": 1, "description": "People you know", "tables": [
            {"name": "people", "description": "A person", "columns": [
                {"name": "name", "type": "text", "description": "Full name"},
                {"name": "email", "type": "text", "description": "E-mail address"},
                {"name": "phone", "type": "text", "description": "Phone number"}
            ]}
        ]},
        {"name": "notes", "version": 1, "description": "Notes", "tables": [
            {"name": "notes", "description": "A note", "columns": [
                {"name": "title", "type": "text", "description": "Title"},
                {"name": "body", "type": "text", "description": "Text"}
            ]},
            {"name": "folders", "description": "A folder of notes", "columns": [
                {"name": "name", "type": "text", "description": "Folder name"}
            ]}
        ]},
        {"name": "tasks", "version": 1, "description": "To-dos", "tables": [
            {"name": "items", "description": "A task", "columns": [
                {"name": "title", "type": "text", "description": "What to do"},
                {"name": "done", "type": "boolean", "description": "Whether it is done"}
            ]}
        ]},
        {"name": "empty", "version": 1, "description": "No tables", "tables": []}
    ]);
    let defs: Vec<SchemaDef> = serde_json::from_value(defs).expect("test schemas");
    defs.into_iter().map(|d| (d.name.clone(), d)).collect()
}

/// Parses and resolves a scope string against [`schemas`].
pub fn grant(scope: &str) -> GrantSpec {
    let schemas = schemas();
    ScopeSet::parse(scope)
        .expect("scope parses")
        .resolve(|name| schemas.get(name))
        .expect("scope resolves")
}

/// `schema.table`.
pub fn t(s: &str) -> TableName {
    s.parse().expect("table name")
}

/// A server: root key, revocation view, authorizer.
pub struct Server {
    pub root: RootKeyPair,
    pub view: Arc<RevocationView>,
    pub authz: Authorizer,
}

impl Server {
    pub fn new() -> Self {
        let root = RootKeyPair::generate();
        let view = Arc::new(RevocationView::new());
        let authz = Authorizer::new(root.public_key(), view.clone());
        Server { root, view, authz }
    }

    /// Claims for an active grant (version 1) of `scope`, issued `now`, 10 minutes.
    pub fn claims(&self, scope: &str, now: DateTime<Utc>) -> TokenClaims {
        let claims = TokenClaims::new(
            VaultId::generate(),
            AppId::new("com.example.app"),
            GrantId::generate(),
            1,
            grant(scope),
            now,
            TimeDelta::minutes(10),
        );
        self.view
            .set_grant(claims.grant_id, claims.grant_version, GrantStatus::Active);
        claims
    }

    /// A token for an active grant of `scope`, plus its claims.
    pub fn token(&self, scope: &str, now: DateTime<Utc>) -> (String, TokenClaims) {
        let claims = self.claims(scope, now);
        (mint(&self.root, &claims).expect("mint"), claims)
    }
}
