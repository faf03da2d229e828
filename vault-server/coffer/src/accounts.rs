//! Creating an account: the vault first (with every built-in schema
//! installed), then the user who owns it. Used by the sign-up page and by
//! `coffer user create`. Deleting one (`coffer user delete`): the vault's
//! key is shredded, the account's OAuth rows removed, the vault's files and
//! rows purged, and the control database's log checkpointed, so that
//! nothing the vault held can be recovered from the data directory.

use std::collections::BTreeSet;

use anyhow::Context;
use coffer_auth::GrantSpec;
use coffer_core::VaultId;
use coffer_oauth::{Error, User};
use coffer_storage::Publisher;

use crate::services::Services;

/// Creates a user with a new vault. Checks the email and password before the
/// vault is created; if the account cannot be stored afterwards (e.g. the
/// same email signed up a moment earlier), the new vault is deleted again.
pub async fn create_account(services: &Services, email: &str, password: &str) -> Result<User, Error> {
    services.oauth.check_sign_up(email, password).await?;
    let engine = &services.engine;
    let vault = engine
        .create_vault()
        .await
        .map_err(|e| Error::Internal(format!("creating the vault: {e}")))?;
    let result = async {
        // The built-in and operator schemas; published ones come with the
        // first grant that names them (`install_granted_schemas`).
        let known = engine.schemas();
        let mut installed: Vec<&str> = Vec::new();
        for schema in known.registry().iter() {
            if installed.contains(&schema.name.as_str())
                || matches!(known.publisher(&schema.name), Some(Publisher::App(_)))
            {
                continue;
            }
            engine
                .install_schema(vault, &schema.name, None)
                .await
                .map_err(|e| Error::Internal(format!("installing schema {}: {e}", schema.name)))?;
            installed.push(&schema.name);
        }
        services.oauth.sign_up(email, password, vault).await
    }
    .await;
    if result.is_err()
        && let Err(e) = engine.delete_vault(vault).await
    {
        tracing::warn!(%vault, error = %e, "could not delete the vault of a failed sign-up");
    }
    result
}

/// Installs into `vault` every schema of which `spec` names a table the
/// vault does not have yet: a published schema's tables arrive with the
/// first grant that names any of them (and a table added to a version later
/// with the next grant that names it). Call before the grant is stored, so
/// the app's token never names a table its vault lacks.
pub async fn install_granted_schemas(services: &Services, vault: VaultId, spec: &GrantSpec) -> Result<(), Error> {
    let engine = &services.engine;
    let internal = |e: coffer_storage::StorageError| Error::Internal(format!("installing granted schemas: {e}"));
    let have: BTreeSet<_> = engine
        .tables(vault)
        .await
        .map_err(internal)?
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let missing: BTreeSet<&str> = spec
        .tables()
        .filter(|t| !have.contains(*t))
        .map(|t| t.schema.as_str())
        .collect();
    for schema in missing {
        engine.install_schema(vault, schema, None).await.map_err(internal)?;
    }
    Ok(())
}

/// Deletes `user`'s account and erases their vault (decision 0017):
///
/// 1. the vault's wrapped data key is deleted (the crypto-shred) and the
///    control database's write-ahead log checkpointed;
/// 2. the user, their grants, tokens, codes and sessions are deleted;
/// 3. every object under the vault's prefix, its commit log, manifests and
///    installed tables are deleted, and the log checkpointed again.
///
/// The control database runs with `secure_delete`, so deleted rows are
/// zeroed in the database file. Every step can be run again: an operator
/// repeats the command after a failure. A server running on the same data
/// directory stops serving the vault from its caches within one flush
/// interval.
pub async fn delete_account(services: &Services, user: &User) -> anyhow::Result<()> {
    let engine = &services.engine;
    let vault = user.vault_id;
    engine
        .delete_vault(vault)
        .await
        .with_context(|| format!("deleting vault {vault}"))?;
    match services.oauth.delete_account(user.id).await {
        Ok(_) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(anyhow::anyhow!("{e}")).context("deleting the account's grants and tokens"),
    }
    engine
        .purge_deleted()
        .await
        .with_context(|| format!("removing the files and rows of vault {vault}"))?;
    engine
        .control()
        .checkpoint()
        .await
        .context("checkpointing the control database")?;
    Ok(())
}
