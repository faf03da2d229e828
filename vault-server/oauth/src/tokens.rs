//! The token endpoint (code exchange with PKCE, refresh with rotation and
//! reuse detection), token issuance, revocation (RFC 7009) and
//! introspection (RFC 7662).

use std::fmt;

use chrono::{DateTime, Utc};
use coffer_auth::{GrantSpec, ScopeSet, TokenClaims, authority_revocation_id, bind_to_key, mint};
use serde::{Deserialize, Serialize};
use sqlx::{Sqlite, Transaction};

use crate::apps::App;
use crate::dpop::DpopProof;
use crate::grants::{Grant, parse_spec};
use crate::store::access::NewAccessToken;
use crate::store::families::FamilyRow;
use crate::store::refresh::NewRefreshToken;
use crate::store::{access, codes, families, refresh};
use crate::util::{ct_eq, from_micros, hash, micros, new_secret, sha256_b64};
use crate::{ClientCredentials, Error, ErrorCode, GrantType, OAuthServer};

/// The parameters of a token request (the form of `POST /oauth/token`,
/// without client authentication, which goes into [`ClientCredentials`]).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenParams {
    /// `authorization_code`, `refresh_token` or
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// The authorization code.
    #[serde(default)]
    pub code: Option<String>,
    /// The redirect URI of the authorization request.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The PKCE verifier.
    #[serde(default)]
    pub code_verifier: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The device code.
    #[serde(default)]
    pub device_code: Option<String>,
    /// Refresh only: a narrower scope for the new access token.
    #[serde(default)]
    pub scope: Option<String>,
    /// `client_secret_post` / public clients: the client id from the form
    /// (pass it to [`ClientCredentials::from_request`]).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `client_secret_post`: the client secret from the form.
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParams")
            .field("grant_type", &self.grant_type)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Serialize)]
pub struct TokenResponse {
    /// The capability token (biscuit, base64url).
    pub access_token: String,
    /// `Bearer`, or `DPoP` when bound to a DPoP key.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The new refresh token (if the client may refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// What the access token allows, as a canonical scope string.
    pub scope: String,
    /// The same as RFC 9396 `authorization_details`.
    pub authorization_details: serde_json::Value,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// `cnf` of an introspection response: the DPoP key thumbprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the key.
    pub jkt: String,
}

/// An RFC 7662 introspection response. Inactive tokens have only
/// `active: false`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Introspection {
    /// Whether the token is valid now.
    pub active: bool,
    /// What it allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user (resource owner) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `Bearer` or `DPoP` (access tokens), `refresh_token` (refresh tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The DPoP binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// What it allows, as RFC 9396 `authorization_details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    /// Coffer: the vault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    /// Coffer: the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
}

/// A PKCE verifier: 43–128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// What a family issues tokens for: the family, its grant (in force) and
/// the spec the tokens get (the family's, narrowed to the grant's).
pub(crate) struct Issuing {
    /// The token family.
    pub family: FamilyRow,
    /// Its grant.
    pub grant: Grant,
    /// What the tokens allow.
    pub spec: GrantSpec,
}

/// Whether an error is the database's (then the transaction must not be
/// committed) rather than a refusal (then a burned code stays burned).
fn is_failure(e: &Error) -> bool {
    matches!(e, Error::Database(_) | Error::Internal(_))
}

/// Ends a first issue (code exchange, device poll): a database or internal
/// failure rolls back; anything else (tokens or a refusal) is committed, so
/// a burned code or device code stays burned.
pub(crate) async fn settle_issue(
    tx: Transaction<'static, Sqlite>,
    issued: Result<TokenResponse, Error>,
) -> Result<TokenResponse, Error> {
    match issued {
        Err(e) if is_failure(&e) => Err(e),
        other => {
            tx.commit().await?;
            other
        }
    }
}

impl OAuthServer {
    /// The token endpoint: dispatches on `grant_type`.
    pub async fn token(
        &self,
        client: &ClientCredentials,
        params: &TokenParams,
        dpop: Option<&DpopProof>,
    ) -> Result<TokenResponse, Error> {
        let missing = |p: &str| Error::invalid_request(format!("{p} is missing"));
        match params.grant_type.as_deref() {
            None => Err(missing("grant_type")),
            Some("authorization_code") => {
                let code = params.code.as_deref().ok_or_else(|| missing("code"))?;
                let verifier = params
                    .code_verifier
                    .as_deref()
                    .ok_or_else(|| missing("code_verifier"))?;
                self.exchange_code(client, code, params.redirect_uri.as_deref(), verifier, dpop)
                    .await
            }
            Some("refresh_token") => {
                let token = params
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| missing("refresh_token"))?;
                self.refresh(client, token, params.scope.as_deref(), dpop).await
            }
            Some(g) if g == GrantType::DeviceCode.as_str() => {
                let code = params.device_code.as_deref().ok_or_else(|| missing("device_code"))?;
                self.poll_device(client, code, dpop).await
            }
            Some(other) => Err(Error::oauth(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type `{}` is not supported", crate::util::echo(other)),
            )),
        }
    }

    /// Exchanges an authorization code (PKCE S256) for an access token and
    /// a refresh token. The code is burned by its client's first attempt,
    /// whatever the outcome; presenting it again is `invalid_grant` and
    /// revokes every token issued from it.
    pub async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: &str,
        dpop: Option<&DpopProof>,
    ) -> Result<TokenResponse, Error> {
        let app = self
            .client_for(client, GrantType::AuthorizationCode, "authorization code")
            .await?;
        let jkt = self.proven_key(dpop).await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = codes::find(&mut *tx, &hash(code)).await? else {
            return Err(Error::invalid_grant("the authorization code is invalid"));
        };
        if row.app_id != app.client_id.as_str() {
            return Err(Error::invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if row.used_at.is_some() {
            let ids = self.revoke_family_in(&mut tx, &row.family_id).await?;
            tx.commit().await?;
            self.publish_revoked_ids(ids);
            return Err(Error::invalid_grant(
                "the authorization code was already used; the tokens issued for it are revoked",
            ));
        }
        let now = self.now();
        codes::mark_used(&mut *tx, &hash(code), micros(now)).await?;
        let checked = async {
            if now >= from_micros(row.expires_at) {
                return Err(Error::invalid_grant("the authorization code expired"));
            }
            let redirect_ok = match redirect_uri {
                Some(r) => r == row.redirect_uri,
                None => !row.redirect_uri_given,
            };
            if !redirect_ok {
                return Err(Error::invalid_grant(
                    "redirect_uri does not match the one of the authorization request",
                ));
            }
            if !is_valid_verifier(code_verifier)
                || !ct_eq(
                    sha256_b64(code_verifier.as_bytes()).as_bytes(),
                    row.code_challenge.as_bytes(),
                )
            {
                return Err(Error::invalid_grant("code_verifier does not match the code_challenge"));
            }
            if let Some(bound) = &row.dpop_jkt
                && jkt.as_deref() != Some(bound.as_str())
            {
                return Err(Error::invalid_dpop(
                    "the code is bound to a DPoP key: send a DPoP proof made with that key",
                ));
            }
            self.issue_first(&mut tx, &app, &row.family_id, &row.grant_id, jkt.as_deref())
                .await
        }
        .await;
        settle_issue(tx, checked).await
    }

    /// The proven DPoP key thumbprint of a request, if it sent a proof.
    pub(crate) async fn proven_key(&self, dpop: Option<&DpopProof>) -> Result<Option<String>, Error> {
        match dpop {
            Some(p) => Ok(Some(self.verify_dpop(p).await?)),
            None => Ok(None),
        }
    }

    /// The step both first issues (code exchange, device poll) end with:
    /// loads the family and its grant, binds the family to the proven DPoP
    /// key (if any) and issues the first tokens.
    pub(crate) async fn issue_first(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        app: &App,
        family: &str,
        grant_id: &str,
        jkt: Option<&str>,
    ) -> Result<TokenResponse, Error> {
        let issuing = self.family_and_grant(tx, family, grant_id).await?;
        if let Some(j) = jkt {
            families::bind_key(&mut **tx, family, j).await?;
        }
        self.issue_in(tx, app, &issuing, jkt, None).await
    }

    /// Loads a family and its grant for issuing: both must be in force, and
    /// the tokens get the family's spec narrowed to the grant's current one.
    pub(crate) async fn family_and_grant(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        family: &str,
        grant_id: &str,
    ) -> Result<Issuing, Error> {
        let family_row = families::find(&mut **tx, family)
            .await?
            .ok_or_else(|| Error::invalid_grant("the authorization is unknown"))?;
        if family_row.revoked_at.is_some() {
            return Err(Error::invalid_grant("the authorization was revoked"));
        }
        let grant = Self::load_grant(&mut **tx, grant_id)
            .await?
            .filter(Grant::is_active)
            .ok_or_else(|| Error::invalid_grant("the user revoked this app's access"))?;
        let spec = parse_spec(&family_row.spec)?.intersect(&grant.spec);
        if spec.is_empty() {
            return Err(Error::invalid_grant(
                "the grant no longer allows anything this authorization did",
            ));
        }
        Ok(Issuing {
            family: family_row,
            grant,
            spec,
        })
    }

    /// Mints an access token (and, if the client may refresh, a refresh
    /// token) for a family, recording both.
    pub(crate) async fn issue_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        app: &App,
        issuing: &Issuing,
        jkt: Option<&str>,
        parent: Option<&[u8]>,
    ) -> Result<TokenResponse, Error> {
        let Issuing { family, grant, spec } = issuing;
        let now = self.now();
        let lifetime = self.config.access_token_lifetime;
        let claims = TokenClaims::new(
            grant.vault_id,
            app.client_id.clone(),
            grant.id,
            grant.version,
            spec.clone(),
            now,
            lifetime,
        );
        let mut access_token = mint(&self.root, &claims).map_err(|e| Error::Internal(format!("minting: {e}")))?;
        if let Some(j) = jkt {
            access_token = bind_to_key(&access_token, j)
                .map_err(|e| Error::Internal(format!("binding the token to the DPoP key: {e}")))?;
        }
        let revocation_id = authority_revocation_id(&access_token)
            .map_err(|e| Error::Internal(format!("reading the minted token: {e}")))?;
        // The grant row is locked by this transaction, so this is its current
        // state; a view that did not know it (e.g. another node's grant)
        // accepts the token at once. Updates are monotonic.
        self.revocation.set_grant(grant.id, grant.version, grant.status);
        let grant_id = grant.id.to_string();
        access::insert(
            &mut **tx,
            &NewAccessToken {
                revocation_id: &revocation_id,
                family_id: &family.id,
                app_id: app.client_id.as_str(),
                grant_id: &grant_id,
                user_id: &family.user_id,
                dpop_jkt: jkt,
                issued_at: micros(now),
                expires_at: micros(claims.expires_at),
            },
        )
        .await?;
        let refresh_token = if app.allows(GrantType::RefreshToken) {
            let token = new_secret()?;
            refresh::insert(
                &mut **tx,
                &NewRefreshToken {
                    token_hash: &hash(&token),
                    family_id: &family.id,
                    app_id: app.client_id.as_str(),
                    grant_id: &grant_id,
                    parent_hash: parent,
                    created_at: micros(now),
                    expires_at: micros(now + self.config.refresh_token_lifetime),
                },
            )
            .await?;
            Some(token)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: if jkt.is_some() { "DPoP" } else { "Bearer" }.to_owned(),
            expires_in: lifetime.num_seconds(),
            refresh_token,
            scope: spec.to_scope_string(),
            authorization_details: spec.to_authorization_details_json(),
        })
    }

    /// Rotates a refresh token: the old one is used up, a new one and a new
    /// access token (for the grant's current version and spec) are issued.
    /// Presenting a used refresh token revokes its whole family. A family
    /// bound to a DPoP key needs a proof made with that key. `scope` may
    /// narrow the new access token (not the family).
    pub async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &str,
        scope: Option<&str>,
        dpop: Option<&DpopProof>,
    ) -> Result<TokenResponse, Error> {
        let app = self
            .client_for(client, GrantType::RefreshToken, "refresh_token")
            .await?;
        let jkt = self.proven_key(dpop).await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = refresh::find(&mut *tx, &hash(refresh_token)).await? else {
            return Err(Error::invalid_grant("the refresh token is invalid"));
        };
        if row.app_id != app.client_id.as_str() {
            return Err(Error::invalid_grant("the refresh token was issued to another client"));
        }
        if row.revoked_at.is_some() {
            return Err(Error::invalid_grant("the refresh token was revoked"));
        }
        if row.used_at.is_some() {
            let ids = self.revoke_family_in(&mut tx, &row.family_id).await?;
            tx.commit().await?;
            self.publish_revoked_ids(ids);
            return Err(Error::invalid_grant(
                "the refresh token was already used; every token of this authorization is now revoked",
            ));
        }
        if self.now() >= from_micros(row.expires_at) {
            return Err(Error::invalid_grant("the refresh token expired"));
        }
        let mut issuing = self.family_and_grant(&mut tx, &row.family_id, &row.grant_id).await?;
        if let Some(bound) = &issuing.family.dpop_jkt
            && jkt.as_deref() != Some(bound.as_str())
        {
            return Err(Error::invalid_dpop(
                "this refresh token is bound to a DPoP key: send a DPoP proof made with that key",
            ));
        }
        if let Some(s) = scope.filter(|s| !s.trim().is_empty()) {
            let requested = ScopeSet::parse(s)
                .map_err(|e| Error::invalid_scope(e.to_string()))?
                .resolve(|name: &str| (self.schemas)(name))
                .map_err(|e| Error::invalid_scope(e.to_string()))?;
            if !requested.is_subset_of(&issuing.spec) {
                return Err(Error::invalid_scope("a refresh can only narrow the scope"));
            }
            issuing.spec = requested.intersect(&issuing.spec);
        }
        refresh::mark_used(&mut *tx, &hash(refresh_token), micros(self.now())).await?;
        let bound = jkt.or(issuing.family.dpop_jkt.clone());
        let response = self
            .issue_in(&mut tx, &app, &issuing, bound.as_deref(), Some(&hash(refresh_token)))
            .await?;
        tx.commit().await?;
        Ok(response)
    }

    /// RFC 7009: revokes a refresh token (with its whole family and the
    /// family's access tokens) or an access token. Revoking an access token
    /// attenuated by its holder revokes the token it was attenuated from
    /// too (they share the authority block's revocation id), until that
    /// token's own expiry. Tokens that are unknown,
    /// malformed or issued to another client are ignored (the answer is the
    /// same, so nothing leaks).
    pub async fn revoke(&self, client: &ClientCredentials, token: &str) -> Result<(), Error> {
        let app = self.authenticate_client(client).await?;
        if let Some(owner) = refresh::find_owner(&self.pool, &hash(token)).await? {
            if owner.app_id == app.client_id.as_str() {
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                let ids = self.revoke_family_in(&mut tx, &owner.family_id).await?;
                tx.commit().await?;
                self.publish_revoked_ids(ids);
            }
            return Ok(());
        }
        if let Ok(verified) = self.authorizer.verify(token)
            && verified.app() == &app.client_id
            && let Some(id) = verified.revocation_ids().first()
        {
            access::revoke(&self.pool, id, micros(self.now())).await?;
            // The id is the authority block's: it covers the token this one
            // was attenuated from (and every other attenuation of it), which
            // may live longer than this token. Keep the revocation until the
            // authority block's own expiry, or the parent comes back to life
            // when the attenuated token's (earlier) expiry prunes the id.
            self.publish_revoked_ids(vec![(id.clone(), verified.authority_expires_at())]);
        }
        Ok(())
    }

    /// RFC 7662: whether a token (refresh or access) is active, and what it
    /// allows. A client only learns about its own tokens; anything else is
    /// `{"active": false}`.
    pub async fn introspect(&self, client: &ClientCredentials, token: &str) -> Result<Introspection, Error> {
        let app = self.authenticate_client(client).await?;
        let now = self.now();
        let inactive = Introspection::default();
        if let Some(r) = refresh::find_with_family(&self.pool, &hash(token)).await? {
            if r.app_id != app.client_id.as_str()
                || r.used_at.is_some()
                || r.revoked_at.is_some()
                || r.family_revoked_at.is_some()
                || now >= from_micros(r.expires_at)
            {
                return Ok(inactive);
            }
            let Some(grant) = Self::load_grant(&self.pool, &r.grant_id)
                .await?
                .filter(Grant::is_active)
            else {
                return Ok(inactive);
            };
            let spec = parse_spec(&r.spec)?.intersect(&grant.spec);
            if spec.is_empty() {
                return Ok(inactive);
            }
            return Ok(Introspection {
                active: true,
                scope: Some(spec.to_scope_string()),
                client_id: Some(r.app_id),
                sub: Some(r.user_id),
                exp: Some(from_micros(r.expires_at).timestamp()),
                iat: Some(from_micros(r.created_at).timestamp()),
                iss: Some(self.config.issuer.clone()),
                token_type: Some("refresh_token".into()),
                cnf: r.dpop_jkt.map(|jkt| Confirmation { jkt }),
                authorization_details: Some(spec.to_authorization_details_json()),
                vault_id: Some(grant.vault_id.to_string()),
                grant_id: Some(r.grant_id),
            });
        }
        let Ok(verified) = self.authorizer.verify(token) else {
            return Ok(inactive);
        };
        if verified.app() != &app.client_id || now >= verified.expires_at() {
            return Ok(inactive);
        }
        let Some(grant) = Self::load_grant(&self.pool, &verified.grant_id().to_string()).await? else {
            return Ok(inactive);
        };
        if !grant.is_active() || verified.grant_version() < grant.version {
            return Ok(inactive);
        }
        let Some(id) = verified.revocation_ids().first() else {
            return Ok(inactive);
        };
        if verified
            .revocation_ids()
            .iter()
            .any(|i| self.revocation.is_token_id_revoked(i))
        {
            return Ok(inactive);
        }
        let Some(record) = access::find(&self.pool, id).await?.filter(|r| r.revoked_at.is_none()) else {
            return Ok(inactive);
        };
        Ok(Introspection {
            active: true,
            scope: Some(verified.grant().to_scope_string()),
            client_id: Some(verified.app().to_string()),
            sub: Some(record.user_id),
            exp: Some(verified.expires_at().timestamp()),
            iat: Some(verified.issued_at().timestamp()),
            iss: Some(self.config.issuer.clone()),
            token_type: Some(if record.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }.into()),
            cnf: record.dpop_jkt.map(|jkt| Confirmation { jkt }),
            authorization_details: Some(verified.grant().to_authorization_details_json()),
            vault_id: Some(verified.vault().to_string()),
            grant_id: Some(verified.grant_id().to_string()),
        })
    }
}

/// Seconds from `now` to `t` (0 if past).
pub(crate) fn seconds_until(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (t - now).num_seconds().max(0)
}
