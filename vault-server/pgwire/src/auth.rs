//! Startup: user = the app's client id, password = an access token (sent as
//! a cleartext password message), database = `vault`. The token is
//! authenticated by the gateway exactly as a bearer token of the HTTP API;
//! a token bound to a DPoP key is refused (the wire protocol cannot prove
//! possession of the key). Every refusal is `28P01` (or `3D000` for another
//! database, `53300` past the sessions an app may hold) and names no value.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use coffer_gateway::{Credentials, Gateway, GatewayError};
use futures::Sink;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthState};
use pgwire::api::auth::{
    AuthOutcome, DefaultServerParameterProvider, ServerParameterProvider, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_APPLICATION_NAME, METADATA_DATABASE, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::connection::Connection;
use crate::errors::{FATAL, info, wire};
use crate::{DATABASE, SERVER_VERSION};

/// A token the gateway accepted for the app that connected.
pub(crate) struct Verified {
    credentials: Credentials,
    caller: coffer_gateway::Caller,
}

/// The parameters sent at startup (`ParameterStatus`).
pub(crate) struct Parameters {
    inner: DefaultServerParameterProvider,
}

impl Default for Parameters {
    fn default() -> Self {
        let mut inner = DefaultServerParameterProvider::default();
        inner.server_version = SERVER_VERSION.to_owned();
        inner.is_superuser = false;
        inner.search_path = "\"$user\", public".to_owned();
        Parameters { inner }
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        self.inner.server_parameters(client)
    }
}

/// The access token sent as a password, checked by the gateway.
struct TokenPassword {
    gateway: Gateway,
}

fn refused(user: &str, why: &str) -> PgWireError {
    wire(
        FATAL,
        "28P01",
        format!("password authentication failed for user \"{user}\": {why}"),
    )
}

#[async_trait]
impl AuthMechanism<Verified> for TokenPassword {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState<Verified>> {
        Ok(AuthState::InProgress(Authentication::CleartextPassword))
    }

    async fn next(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState<Verified>> {
        let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        let Ok(password) = message.into_password() else {
            return Ok(AuthState::Failed(refused(
                &user,
                "send the access token as a cleartext password",
            )));
        };
        let credentials = Credentials::bearer(password.password);
        let caller = match self.gateway.authenticate(&credentials).await {
            Ok(caller) => caller,
            Err(GatewayError::InvalidToken {
                code: "dpop_required", ..
            }) => {
                return Ok(AuthState::Failed(refused(
                    &user,
                    "the access token is bound to a DPoP key, which this protocol cannot prove; \
                     use a token that is not DPoP-bound",
                )));
            }
            Err(GatewayError::InvalidToken { reason, .. }) => {
                return Ok(AuthState::Failed(refused(&user, &reason)));
            }
            Err(other) => {
                tracing::warn!(error = %other, "authenticating a pgwire session failed");
                return Ok(AuthState::Failed(wire(
                    FATAL,
                    "XX000",
                    "the server could not check the access token; try again",
                )));
            }
        };
        if caller.app().as_str() != user {
            return Ok(AuthState::Failed(refused(
                &user,
                "the access token was issued to another app; the user name is the app's client id",
            )));
        }
        Ok(AuthState::Ok {
            final_message: None,
            identity: Some(Verified { credentials, caller }),
        })
    }
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let driver = &self.shared.driver;
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.shared.tls_required && !client.is_secure() {
                    // Refused before the password is asked for, so the
                    // token is never sent in cleartext.
                    return Err(wire(
                        FATAL,
                        "28000",
                        "this server accepts connections only over TLS: connect with sslmode=require",
                    ));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                if user.is_empty() {
                    return Err(wire(
                        FATAL,
                        "28000",
                        "the user name is required: use the app's client id",
                    ));
                }
                let database = client.metadata().get(METADATA_DATABASE).cloned().unwrap_or_default();
                if database != DATABASE {
                    return Err(PgWireError::UserError(Box::new(database_error(&database))));
                }
                let gateway = self.gateway().clone();
                driver
                    .begin_authentication(client, Box::new(TokenPassword { gateway }))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                match driver.advance_authentication(client, message).await? {
                    AuthOutcome::Authenticated {
                        identity: Some(verified),
                        final_message,
                    } => {
                        let Verified { credentials, caller } = verified;
                        let Some(slot) = self.shared.take_slot(caller.vault(), caller.app().clone()) else {
                            return Err(wire(
                                FATAL,
                                "53300",
                                format!(
                                    "this app already holds {} sessions on this vault; close one and connect again",
                                    self.shared.limits.sessions_per_app
                                ),
                            ));
                        };
                        let application_name = client
                            .metadata()
                            .get(METADATA_APPLICATION_NAME)
                            .cloned()
                            .unwrap_or_default();
                        self.start_session(credentials, application_name, slot);
                        driver.complete_authentication(client, final_message).await
                    }
                    AuthOutcome::Authenticated { identity: None, .. } => {
                        Err(wire(FATAL, "28P01", "password authentication failed"))
                    }
                    AuthOutcome::InProgress => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

fn database_error(database: &str) -> ErrorInfo {
    info(
        FATAL,
        "3D000",
        format!("database \"{database}\" does not exist; connect to database \"{DATABASE}\""),
    )
}
