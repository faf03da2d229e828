//! The authorization endpoint: request validation (PKCE S256, exact
//! redirect URIs, scope and `authorization_details`), pushed authorization
//! requests (RFC 9126), consent, and issuing codes.

use std::fmt;

use coffer_auth::{GrantSpec, ScopeSet};
use coffer_core::UserId;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::apps::App;
use crate::dpop::DpopProof;
use crate::grants::{Grant, spec_json};
use crate::store::codes::{self, NewCode};
use crate::store::families::{self, NewFamily};
use crate::store::par::{self, NewPushed};
use crate::util::{echo, hash, is_b64_256, micros, new_secret};
use crate::{ClientCredentials, Error, ErrorCode, GrantType, OAuthServer};

/// The prefix of every `request_uri` this server issues.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Longest `state` accepted, in bytes.
pub const MAX_STATE_LEN: usize = 1024;

/// The parameters of an authorization request (the query string of
/// `GET /oauth/authorize`, or the form of `POST /oauth/par`). Unknown
/// parameters are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_type: Option<String>,
    /// The client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Where to send the user back; optional only if the client registered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// Space-separated scope tokens (decision 0002).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Opaque client state, returned as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// PKCE: base64url(SHA-256(code_verifier)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// PKCE: must be `S256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<String>,
    /// RFC 9396 JSON array of `coffer_table` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<String>,
    /// RFC 9126: a `request_uri` from the PAR endpoint (then every other
    /// parameter but `client_id` is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uri: Option<String>,
    /// RFC 9449 §10: bind the code to this DPoP key thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// A valid authorization request waiting for the user's consent.
///
/// Keep it server-side between the consent page and its form post (or
/// validate the same parameters again on post). [`OAuthServer::approve`]
/// re-checks the client and redirect URI and only ever narrows what was
/// requested, so a tampered copy cannot widen anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The client.
    pub client_id: String,
    /// The app's name, for the consent page.
    pub app_name: String,
    /// The redirect URI the code will be sent to.
    pub redirect_uri: String,
    /// Whether the request named the redirect URI.
    pub redirect_uri_given: bool,
    /// The client's state.
    pub state: Option<String>,
    /// What the app asks for, resolved against the schemas.
    pub requested: GrantSpec,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The DPoP key the code must be redeemed with, if any.
    pub dpop_jkt: Option<String>,
}

impl PendingAuthorization {
    /// The canonical scope string of what is requested.
    pub fn scope(&self) -> String {
        self.requested.to_scope_string()
    }
}

/// Why an authorization request fails, and where to tell.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// Show the error to the user. Never redirect: the client or the
    /// redirect URI could not be trusted (unknown client, mismatched
    /// redirect URI, bad `request_uri`).
    #[error("{0}")]
    Display(Error),
    /// Send the user back to the client with the error.
    #[error("{error}")]
    Redirect {
        /// The full redirect URL, with `error`, `error_description`, `state`
        /// and `iss` in the query.
        location: String,
        /// The error.
        error: Error,
    },
}

impl AuthorizeError {
    /// The error.
    pub fn error(&self) -> &Error {
        match self {
            AuthorizeError::Display(e) | AuthorizeError::Redirect { error: e, .. } => e,
        }
    }

    /// Where to redirect, if redirecting is allowed.
    pub fn redirect_location(&self) -> Option<&str> {
        match self {
            AuthorizeError::Display(_) => None,
            AuthorizeError::Redirect { location, .. } => Some(location),
        }
    }

    /// The error, for endpoints that answer with JSON instead of redirecting.
    pub fn into_error(self) -> Error {
        match self {
            AuthorizeError::Display(e) | AuthorizeError::Redirect { error: e, .. } => e,
        }
    }
}

/// The response of a pushed authorization request (RFC 9126 §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PushedAuthorization {
    /// `urn:ietf:params:oauth:request_uri:…`; single use.
    pub request_uri: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// What consent is needed for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentCheck {
    /// The user's active grant for the app, if any.
    pub existing: Option<Grant>,
    /// The requested pairs the existing grant does not allow: the lines to
    /// show on the consent page.
    pub new: GrantSpec,
}

impl ConsentCheck {
    /// Whether the user must be asked (something new is requested).
    pub fn needed(&self) -> bool {
        !self.new.is_empty()
    }
}

/// Where to send the user after consent.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationResponse {
    /// The redirect URL: with `code`, `state` and `iss`, or with
    /// `error=access_denied` if nothing was approved.
    pub location: String,
    /// What was approved (empty if nothing).
    pub approved: GrantSpec,
}

impl fmt::Debug for AuthorizationResponse {
    // The location holds the code: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationResponse")
            .field("approved", &self.approved.to_scope_string())
            .finish_non_exhaustive()
    }
}

/// `uri` with `params` appended to its query.
pub(crate) fn with_query(uri: &str, params: &[(&str, &str)]) -> Result<String, Error> {
    let mut url = Url::parse(uri).map_err(|_| Error::invalid_request("the redirect URI is not a URL"))?;
    url.query_pairs_mut().extend_pairs(params);
    Ok(url.to_string())
}

impl OAuthServer {
    /// The error redirect for `error`, with `state` and `iss` (RFC 9207).
    fn error_location(&self, redirect_uri: &str, state: Option<&str>, error: &Error) -> Result<String, Error> {
        let code = error.code();
        let description = error.description();
        let mut params = vec![("error", code.as_str()), ("error_description", description.as_str())];
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", &self.config.issuer));
        with_query(redirect_uri, &params)
    }

    /// Resolves a scope string and/or `authorization_details` against the
    /// schemas; with neither, the app's default scope. Empty is
    /// `invalid_scope`.
    pub(crate) fn resolve_request(
        &self,
        scope: Option<&str>,
        details: Option<&str>,
        app: &App,
    ) -> Result<GrantSpec, Error> {
        let lookup = |name: &str| (self.schemas)(name);
        let scope = scope.filter(|s| !s.trim().is_empty());
        let details = details.filter(|d| !d.trim().is_empty());
        let scope = match (scope, details) {
            (None, None) => Some(app.default_scope.as_str()),
            (s, _) => s,
        };
        let mut spec = match scope {
            Some(s) => ScopeSet::parse(s)
                .map_err(|e| Error::invalid_scope(e.to_string()))?
                .resolve(lookup)
                .map_err(|e| Error::invalid_scope(e.to_string()))?,
            None => GrantSpec::new(),
        };
        if let Some(d) = details {
            let invalid = |e: String| Error::oauth(ErrorCode::InvalidAuthorizationDetails, e);
            let from_details = GrantSpec::from_authorization_details_json(d).map_err(|e| invalid(e.to_string()))?;
            from_details.check_against(lookup).map_err(|e| invalid(e.to_string()))?;
            for p in from_details.permissions() {
                spec.insert(p).map_err(|e| invalid(e.to_string()))?;
            }
        }
        if spec.is_empty() {
            return Err(Error::invalid_scope(
                "the request asks for nothing: give a scope or authorization_details",
            ));
        }
        Ok(spec)
    }

    /// Validates an authorization request. With `request_uri`, the pushed
    /// request is taken (once) instead of the parameters. Errors about the
    /// client or the redirect URI are [`AuthorizeError::Display`] and must
    /// never redirect; every later error is [`AuthorizeError::Redirect`].
    /// PKCE with `S256` is required (`plain` or none is `invalid_request`).
    pub async fn validate_authorize_request(
        &self,
        params: &AuthorizeParams,
    ) -> Result<PendingAuthorization, AuthorizeError> {
        match &params.request_uri {
            Some(request_uri) => {
                let client_id = params
                    .client_id
                    .as_deref()
                    .ok_or_else(|| AuthorizeError::Display(Error::invalid_request("client_id is missing")))?;
                let pushed = self
                    .take_pushed_request(client_id, request_uri)
                    .await
                    .map_err(AuthorizeError::Display)?;
                self.validate_params(&pushed).await
            }
            None => self.validate_params(params).await,
        }
    }

    async fn validate_params(&self, params: &AuthorizeParams) -> Result<PendingAuthorization, AuthorizeError> {
        let display = AuthorizeError::Display;
        let client_id = params
            .client_id
            .as_deref()
            .ok_or_else(|| display(Error::invalid_request("client_id is missing")))?;
        let app = match self.find_app(client_id).await {
            Ok(Some((app, _))) => app,
            Ok(None) => return Err(display(Error::invalid_client("unknown client_id"))),
            Err(e) => return Err(display(e)),
        };
        let (redirect_uri, redirect_uri_given) = app
            .match_redirect_uri(params.redirect_uri.as_deref())
            .map_err(display)?;

        // From here on the redirect URI is trusted: errors go back to the app.
        let state = params.state.as_deref().filter(|s| s.len() <= MAX_STATE_LEN);
        let redirect = |error: Error| match self.error_location(&redirect_uri, state, &error) {
            Ok(location) => AuthorizeError::Redirect { location, error },
            Err(e) => AuthorizeError::Display(e),
        };
        if params.state.as_deref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(redirect(Error::invalid_request(format!(
                "state is longer than {MAX_STATE_LEN} bytes"
            ))));
        }
        match params.response_type.as_deref() {
            Some("code") => {}
            None => return Err(redirect(Error::invalid_request("response_type is missing"))),
            Some(other) => {
                return Err(redirect(Error::oauth(
                    ErrorCode::UnsupportedResponseType,
                    format!("response_type `{}` is not supported; use `code`", echo(other)),
                )));
            }
        }
        if !app.allows(GrantType::AuthorizationCode) {
            return Err(redirect(Error::unauthorized_client(
                "this client is not registered for the authorization code grant",
            )));
        }
        match params.code_challenge_method.as_deref() {
            Some("S256") => {}
            Some("plain") => {
                return Err(redirect(Error::invalid_request(
                    "code_challenge_method `plain` is not allowed; use S256",
                )));
            }
            _ => {
                return Err(redirect(Error::invalid_request(
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                )));
            }
        }
        let code_challenge = match params.code_challenge.as_deref() {
            Some(c) if is_b64_256(c) => c.to_owned(),
            Some(_) => {
                return Err(redirect(Error::invalid_request(
                    "code_challenge must be base64url(SHA-256(code_verifier)), 43 characters",
                )));
            }
            None => return Err(redirect(Error::invalid_request("code_challenge is missing"))),
        };
        if let Some(jkt) = &params.dpop_jkt
            && !is_b64_256(jkt)
        {
            return Err(redirect(Error::invalid_request(
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
            )));
        }
        let requested = self
            .resolve_request(params.scope.as_deref(), params.authorization_details.as_deref(), &app)
            .map_err(redirect)?;
        Ok(PendingAuthorization {
            client_id: app.client_id.to_string(),
            app_name: app.name,
            redirect_uri,
            redirect_uri_given,
            state: state.map(str::to_owned),
            requested,
            code_challenge,
            dpop_jkt: params.dpop_jkt.clone(),
        })
    }

    /// RFC 9126: authenticates the client, validates the request as the
    /// authorization endpoint would (errors are returned, never redirected),
    /// and stores it under a single-use `request_uri` valid for
    /// `par_lifetime`. A DPoP proof on this request binds the code to its
    /// key (RFC 9449 §10.1).
    pub async fn push_authorization_request(
        &self,
        client: &ClientCredentials,
        mut params: AuthorizeParams,
        dpop: Option<&DpopProof>,
    ) -> Result<PushedAuthorization, Error> {
        let app = self.authenticate_client(client).await?;
        if params.request_uri.is_some() {
            return Err(Error::invalid_request("request_uri is not allowed in a pushed request"));
        }
        if params.client_id.as_deref().is_some_and(|c| c != app.client_id.as_str()) {
            return Err(Error::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
        params.client_id = Some(app.client_id.to_string());
        if let Some(proof) = dpop {
            let jkt = self.verify_dpop(proof).await?;
            if params.dpop_jkt.as_deref().is_some_and(|j| j != jkt) {
                return Err(Error::invalid_dpop("dpop_jkt does not match the DPoP proof's key"));
            }
            params.dpop_jkt = Some(jkt);
        }
        self.validate_params(&params)
            .await
            .map_err(AuthorizeError::into_error)?;
        let request_uri = format!("{REQUEST_URI_PREFIX}{}", new_secret()?);
        let now = self.now();
        let json = serde_json::to_string(&params).map_err(|e| Error::Internal(e.to_string()))?;
        par::insert(
            &self.pool,
            &NewPushed {
                request_hash: &hash(&request_uri),
                app_id: app.client_id.as_str(),
                params: &json,
                created_at: micros(now),
                expires_at: micros(now + self.config.par_lifetime),
            },
        )
        .await?;
        Ok(PushedAuthorization {
            request_uri,
            expires_in: self.config.par_lifetime.num_seconds(),
        })
    }

    /// Takes a pushed request: once, before it expires, for its client.
    async fn take_pushed_request(&self, client_id: &str, request_uri: &str) -> Result<AuthorizeParams, Error> {
        let invalid = || {
            Error::oauth(
                ErrorCode::InvalidRequestUri,
                "request_uri is unknown, expired, already used or for another client",
            )
        };
        if !request_uri.starts_with(REQUEST_URI_PREFIX) {
            return Err(invalid());
        }
        let now = micros(self.now());
        let params = par::take(&self.pool, &hash(request_uri), client_id, now)
            .await?
            .ok_or_else(invalid)?;
        serde_json::from_str(&params).map_err(|e| Error::Internal(format!("stored PAR request: {e}")))
    }

    /// What the user must still consent to: the requested pairs their
    /// active grant for the app does not already allow. A request inside the
    /// existing grant needs no consent (call [`OAuthServer::approve`] with
    /// the requested spec directly).
    pub async fn consent_needed(
        &self,
        user: UserId,
        client_id: &str,
        requested: &GrantSpec,
    ) -> Result<ConsentCheck, Error> {
        let existing = Self::active_grant(&self.pool, user, client_id).await?;
        let new = existing
            .as_ref()
            .map_or_else(|| requested.clone(), |g| requested.not_within(&g.spec));
        Ok(ConsentCheck { existing, new })
    }

    /// The user allows `approved` (what they left ticked; it is intersected
    /// with what was requested, so it can only narrow). Creates the grant or
    /// widens the active one (bumping its version), and issues a single-use
    /// code valid for `code_lifetime`, bound to the client, the redirect URI,
    /// the PKCE challenge and (if requested) a DPoP key. An empty approval
    /// is a denial: the location carries `error=access_denied`.
    pub async fn approve(
        &self,
        user: UserId,
        approved: &GrantSpec,
        pending: &PendingAuthorization,
    ) -> Result<AuthorizationResponse, Error> {
        let app = self.app(&pending.client_id).await?;
        let (redirect_uri, _) = app.match_redirect_uri(Some(&pending.redirect_uri))?;
        if !is_b64_256(&pending.code_challenge) {
            return Err(Error::invalid_request("invalid code_challenge"));
        }
        let effective = pending.requested.intersect(approved);
        if effective.is_empty() {
            return Ok(AuthorizationResponse {
                location: self.deny(pending).await?,
                approved: effective,
            });
        }
        let owner = self.user(user).await?;
        let code = new_secret()?;
        let now = self.now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let upserted = self
            .upsert_grant(&mut tx, user, owner.vault_id, &app.client_id, &effective)
            .await?;
        let family = self
            .create_family(&mut tx, &app.client_id, &upserted.grant, &effective)
            .await?;
        codes::insert(
            &mut *tx,
            &NewCode {
                code_hash: &hash(&code),
                app_id: app.client_id.as_str(),
                user_id: &user.to_string(),
                grant_id: &upserted.grant.id.to_string(),
                grant_version: crate::grants::version_i64(upserted.grant.version)?,
                redirect_uri: &redirect_uri,
                redirect_uri_given: pending.redirect_uri_given,
                code_challenge: &pending.code_challenge,
                dpop_jkt: pending.dpop_jkt.as_deref(),
                family_id: &family,
                created_at: micros(now),
                expires_at: micros(now + self.config.code_lifetime),
            },
        )
        .await?;
        tx.commit().await?;
        if upserted.changed {
            self.revocation
                .set_grant(upserted.grant.id, upserted.grant.version, upserted.grant.status);
        }
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &pending.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.config.issuer));
        Ok(AuthorizationResponse {
            location: with_query(&redirect_uri, &params)?,
            approved: effective,
        })
    }

    /// The user refuses: the redirect location with `error=access_denied`.
    /// The redirect URI is checked against the client again.
    pub async fn deny(&self, pending: &PendingAuthorization) -> Result<String, Error> {
        let app = self.app(&pending.client_id).await?;
        let (redirect_uri, _) = app.match_redirect_uri(Some(&pending.redirect_uri))?;
        self.error_location(
            &redirect_uri,
            pending.state.as_deref(),
            &Error::access_denied("the user did not allow access"),
        )
    }

    /// Starts a token family for an approval.
    pub(crate) async fn create_family(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        app: &coffer_core::AppId,
        grant: &Grant,
        spec: &GrantSpec,
    ) -> Result<String, Error> {
        let id = ulid::Ulid::new().to_string().to_ascii_lowercase();
        families::insert(
            &mut **tx,
            &NewFamily {
                id: &id,
                app_id: app.as_str(),
                grant_id: &grant.id.to_string(),
                user_id: &grant.user_id.to_string(),
                spec: &spec_json(spec)?,
                created_at: micros(self.now()),
            },
        )
        .await?;
        Ok(id)
    }
}
