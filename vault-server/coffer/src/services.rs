//! The parts of a running Coffer, built the same way for `coffer serve` and
//! for the operator commands: the storage engine, the capability-token root
//! key, the revocation view and the OAuth server over the control database.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use coffer_auth::{GrantSpec, RevocationView, RootKeyPair};
use coffer_core::GrantId;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_gateway::{AccessLog, ControlPlane, Gateway, RequestLimits};
use coffer_oauth::{DpopProof, ErrorCode, OAuthConfig, OAuthServer, SchemaLookup};
use coffer_storage::{Engine, EngineOptions, open_embedded};

/// The root key's file in the data directory, beside `master.key`.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The storage master key's file in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// An opened data directory.
#[derive(Clone)]
pub struct Services {
    /// The storage engine.
    pub engine: Engine,
    /// Accounts, apps, grants and the OAuth endpoints' logic.
    pub oauth: OAuthServer,
    /// The vaults' access log (also reachable through the gateway).
    pub access_log: AccessLog,
    /// The query gateway the data API goes through.
    pub gateway: Gateway,
}

/// The OAuth server as the gateway's control plane: grants the revocation
/// view does not know yet are loaded from the control database, each
/// grant's last use is recorded for the dashboard, and DPoP proofs of data
/// API requests are verified (their `jti`s share the token endpoint's replay
/// store).
struct OAuthControl(OAuthServer);

#[async_trait]
impl ControlPlane for OAuthControl {
    async fn sync_grant(&self, grant: GrantId) -> bool {
        match self.0.sync_grant(grant).await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(%grant, error = %e, "loading a grant into the revocation view failed");
                false
            }
        }
    }

    async fn touch_grant(&self, grant: GrantId) {
        if let Err(e) = self.0.touch_grant(grant).await {
            tracing::warn!(%grant, error = %e, "recording a grant's last use failed");
        }
    }

    async fn active_grant(&self, grant: GrantId) -> Option<GrantSpec> {
        match self.0.active_spec(grant).await {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(%grant, error = %e, "reading a grant's current access failed");
                None
            }
        }
    }

    async fn verify_dpop(
        &self,
        proof_jwt: &str,
        method: &str,
        url: &str,
        access_token: &str,
    ) -> Result<String, String> {
        let proof = DpopProof::new(proof_jwt, method, url);
        self.0
            .verify_dpop_for_resource(&proof, access_token)
            .await
            .map_err(|e| {
                if e.code() == ErrorCode::ServerError {
                    tracing::warn!(error = %e, "verifying a DPoP proof failed");
                }
                e.description()
            })
    }
}

impl Services {
    /// The schemas grants are resolved against, as known now (built-in,
    /// operator and published schemas).
    pub fn registry(&self) -> Arc<SchemaRegistry> {
        self.engine.registry()
    }
}

/// What opening created (first start of a data directory).
pub struct Created {
    /// The master key was created.
    pub master_key: bool,
    /// The capability-token root key was created.
    pub root_key: bool,
}

/// Refuses a data directory that cannot be one, naming the path and the fix:
/// a file in its place (or in place of a parent), or one this user may not
/// write. A missing directory is fine (it is created, parents too).
fn check_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    let fix = "pass --data-dir (or COFFER_DATA_DIR) with a directory this user may write; it is created if missing";
    let mut existing = data_dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => anyhow::bail!(
                "the data directory {} cannot be created: {} is a file, not a directory; {fix}",
                data_dir.display(),
                existing.display()
            ),
            Err(_) => match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                _ => return Ok(()),
            },
        }
    }
    // Writable? A probe file, removed at once.
    let probe = existing.join(".coffer-write-probe");
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "the data directory {} is not writable ({} : {e}); {fix}",
            data_dir.display(),
            existing.display()
        ),
    }
}

/// Opens the embedded engine in `data_dir` and builds the OAuth server with
/// `issuer` on its control database. Creates the master key and the root key
/// (both mode 0600) on first start, and refuses either when users other than
/// its owner may read or write it. The data API's queries run within `limits`.
/// The schemas offered are the built-in ones and those of `schemas_dir`
/// (an operator's files), besides the published ones.
pub async fn open(
    data_dir: &Path,
    schemas_dir: Option<&Path>,
    issuer: &str,
    options: EngineOptions,
    limits: RequestLimits,
) -> anyhow::Result<(Services, Created)> {
    check_data_dir(data_dir)?;
    let registry = base_schemas(schemas_dir)?;
    // The master key unwraps every vault's data key: refuse it, as the root
    // key, when other users may read or write it (the same check).
    let master_path = data_dir.join(MASTER_KEY_FILE);
    coffer_auth::keys::check_private_file(&master_path)
        .with_context(|| format!("loading the master key {}", master_path.display()))?;
    let opened = open_embedded(data_dir, registry, options)
        .await
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
    let root_path = data_dir.join(ROOT_KEY_FILE);
    let root_existed = root_path.exists();
    let root = RootKeyPair::load_or_generate(&root_path)
        .with_context(|| format!("loading the capability token root key {}", root_path.display()))?;
    let engine = opened.engine;
    let lookup_engine = engine.clone();
    let lookup: SchemaLookup = Arc::new(move |name: &str| lookup_engine.registry().latest(name));
    // Scopes are a grammar over the schemas (decision 0002), not a fixed
    // list, so `scopes_supported` stays empty (omitted from the metadata).
    let config = OAuthConfig::new(issuer);
    coffer_oauth::migrate(engine.control().pool())
        .await
        .context("migrating the accounts and OAuth tables")?;
    let oauth = OAuthServer::new(
        engine.control().pool().clone(),
        Arc::new(root),
        Arc::new(RevocationView::new()),
        lookup,
        config,
    )
    .context("setting up the OAuth server")?;
    let access_log = AccessLog::start(engine.clone());
    let gateway = Gateway::with_limits(
        engine.clone(),
        oauth.authorizer().clone(),
        Arc::new(OAuthControl(oauth.clone())),
        access_log.clone(),
        limits,
    );
    Ok((
        Services {
            engine,
            oauth,
            access_log,
            gateway,
        },
        Created {
            master_key: opened.created_master_key,
            root_key: !root_existed,
        },
    ))
}

/// The built-in schemas and, when given, every `*.json` file of
/// `schemas_dir`: an operator's file may add a schema, or a version of a
/// built-in one that loads beside it (a redefined version must be
/// additive, as everywhere).
pub fn base_schemas(schemas_dir: Option<&Path>) -> anyhow::Result<SchemaRegistry> {
    let mut registry = SchemaRegistry::builtin().context("loading built-in schemas")?;
    if let Some(dir) = schemas_dir {
        let extra =
            SchemaRegistry::from_dir(dir).with_context(|| format!("loading the schema files of {}", dir.display()))?;
        for def in extra.iter() {
            anyhow::ensure!(
                def.version == 1,
                "{}: schema {} version {}: versions above 1 are not served yet (the gateway does not \
                 yet translate shared rows between versions)",
                dir.display(),
                def.name,
                def.version
            );
            let source = format!("{}: schema {} version {}", dir.display(), def.name, def.version);
            registry.insert((**def).clone(), &source)?;
        }
    }
    Ok(registry)
}
