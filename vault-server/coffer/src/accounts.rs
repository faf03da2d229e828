//! Creating an account: the vault first (with every built-in schema
//! installed), then the user who owns it. Used by the sign-up page and by
//! `coffer user create`.

use coffer_oauth::{Error, User};

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
        let mut installed: Vec<&str> = Vec::new();
        for schema in services.registry.iter() {
            if installed.contains(&schema.name.as_str()) {
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
