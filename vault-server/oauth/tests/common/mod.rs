//! Shared setup: a temp-file SQLite control database with the server's
//! migrations, the built-in schemas, a manual clock, and helpers.
#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use coffer_auth::{Action, DeniedKind, GrantSpec, Request, RevocationView, RootKeyPair, ScopeSet};
use coffer_core::VaultId;
use coffer_core::schema::TableName;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_oauth::{
    App, AuthorizeError, AuthorizeParams, ClientCredentials, Clock, ConsentCheck, DpopProof, Error, Grant, ManualClock,
    NewApp, OAuthConfig, OAuthServer, PendingAuthorization, TokenParams, TokenResponse, User,
};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub const ISSUER: &str = "https://vault.example";
pub const REDIRECT: &str = "https://app.example/callback";
pub const IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub pool: SqlitePool,
    pub server: OAuthServer,
    pub clock: Arc<ManualClock>,
    pub view: Arc<RevocationView>,
    pub registry: Arc<SchemaRegistry>,
}

pub async fn env() -> Env {
    env_with(|_| {}).await
}

/// An env with a public app.
pub async fn with_app() -> (Env, App) {
    let env = env().await;
    let app = env.public_app().await;
    (env, app)
}

/// An env with a user and a public app: the start of most tests.
pub async fn with_user_and_app() -> (Env, User, App) {
    let (env, app) = with_app().await;
    let user = env.user("ada@example.org").await;
    (env, user, app)
}

pub async fn env_with(configure: impl FnOnce(&mut OAuthConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let mut storage = sqlx::migrate!("../../migrations/sqlite");
    storage.set_ignore_missing(true);
    storage.run(&pool).await.unwrap();
    coffer_oauth::migrate(&pool).await.unwrap();
    let registry = Arc::new(SchemaRegistry::builtin().unwrap());
    let lookup_registry = registry.clone();
    let view = Arc::new(RevocationView::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut config = OAuthConfig::new(ISSUER);
    configure(&mut config);
    let server = OAuthServer::new(
        pool.clone(),
        Arc::new(RootKeyPair::generate()),
        view.clone(),
        Arc::new(move |name| lookup_registry.latest(name)),
        config,
    )
    .unwrap()
    .with_clock(clock.clone());
    Env {
        _dir: dir,
        pool,
        server,
        clock,
        view,
        registry,
    }
}

impl Env {
    /// Creates a vault row, as the storage engine would.
    pub async fn vault(&self) -> VaultId {
        let vault = VaultId::generate();
        sqlx::query("INSERT INTO vaults (id, created_at) VALUES (?, ?)")
            .bind(vault.to_string())
            .bind(Utc::now().timestamp_micros())
            .execute(&self.pool)
            .await
            .unwrap();
        vault
    }

    /// Creates a vault and a user owning it.
    pub async fn user(&self, email: &str) -> User {
        let vault = self.vault().await;
        self.server
            .sign_up(email, "correct horse battery", vault)
            .await
            .unwrap()
    }

    pub async fn public_app(&self) -> App {
        self.server
            .register_app(NewApp::public("Notes Pro", vec![REDIRECT.into()]))
            .await
            .unwrap()
            .app
    }

    /// A confidential app and its credentials.
    pub async fn confidential_app(&self) -> (App, ClientCredentials) {
        let registered = self
            .server
            .register_app(NewApp::confidential("Server App", vec![REDIRECT.into()]))
            .await
            .unwrap();
        let client =
            ClientCredentials::with_secret(registered.app.client_id.as_str(), registered.client_secret.unwrap());
        (registered.app, client)
    }

    pub fn spec(&self, scope: &str) -> GrantSpec {
        ScopeSet::parse(scope)
            .unwrap()
            .resolve(|n: &str| self.registry.latest(n))
            .unwrap()
    }

    /// Validates an authorization request for `app` with a fresh PKCE pair.
    pub async fn pending(&self, app: &App, scope: &str) -> (PendingAuthorization, String) {
        let (verifier, challenge) = pkce();
        let params = authorize_params(app, scope, &challenge);
        let pending = self.server.validate_authorize_request(&params).await.unwrap();
        (pending, verifier)
    }

    /// The refusal of an authorization request.
    pub async fn authorize_err(&self, params: &AuthorizeParams) -> AuthorizeError {
        self.server.validate_authorize_request(params).await.unwrap_err()
    }

    /// What consent `user` still has to give `app` for `pending`.
    pub async fn consent(&self, user: &User, app: &App, pending: &PendingAuthorization) -> ConsentCheck {
        self.server
            .consent_needed(user.id, app.client_id.as_str(), &pending.requested)
            .await
            .unwrap()
    }

    /// Approves everything `pending` asks for; returns the code.
    pub async fn approve_all(&self, user: &User, pending: &PendingAuthorization) -> String {
        let response = self.server.approve(user.id, &pending.requested, pending).await.unwrap();
        query_param(&response.location, "code").unwrap()
    }

    /// Authorize + approve everything requested; returns (code, verifier).
    pub async fn code(&self, user: &User, app: &App, scope: &str) -> (String, String) {
        let (pending, verifier) = self.pending(app, scope).await;
        (self.approve_all(user, &pending).await, verifier)
    }

    /// Redeems `code` at the token endpoint with the registered redirect URI.
    pub async fn exchange(
        &self,
        client: &ClientCredentials,
        code: &str,
        verifier: &str,
        proof: Option<&DpopProof>,
    ) -> Result<TokenResponse, Error> {
        self.server
            .exchange_code(client, code, Some(REDIRECT), verifier, proof)
            .await
    }

    /// A full authorization for a public app: returns the token response.
    pub async fn tokens(&self, user: &User, app: &App, scope: &str) -> TokenResponse {
        let (code, verifier) = self.code(user, app, scope).await;
        self.exchange(&public_client(app), &code, &verifier, None)
            .await
            .unwrap()
    }

    /// Redeems `refresh` for the same scope, without a DPoP proof.
    pub async fn refresh(&self, client: &ClientCredentials, refresh: &str) -> Result<TokenResponse, Error> {
        self.server.refresh(client, refresh, None, None).await
    }

    /// Pushes `params` (PAR) and returns the request URI.
    pub async fn push(
        &self,
        client: &ClientCredentials,
        params: &AuthorizeParams,
        proof: Option<&DpopProof>,
    ) -> String {
        self.server
            .push_authorization_request(client, params.clone(), proof)
            .await
            .unwrap()
            .request_uri
    }

    /// Whether introspection by `client` calls `token` active.
    pub async fn active(&self, client: &ClientCredentials, token: &str) -> bool {
        self.server.introspect(client, token).await.unwrap().active
    }

    /// The user's first grant on the dashboard.
    pub async fn first_grant(&self, user: &User) -> Grant {
        self.server.grants_for_user(user.id).await.unwrap().remove(0).grant
    }

    /// Asks the gateway's authorizer whether `token` may do `action` on `table`.
    pub fn check(&self, user: &User, token: &str, table: &str, action: Action) -> Result<(), coffer_auth::Denied> {
        let request = Request::new(
            user.vault_id,
            TableName::from_str(table).unwrap(),
            action,
            self.clock.now(),
        );
        self.server.authorizer().authorize(token, &request).map(|_| ())
    }

    /// Panics unless the authorizer lets `token` do `action` on `table`.
    pub fn assert_allows(&self, user: &User, token: &str, table: &str, action: Action) {
        self.check(user, token, table, action).unwrap()
    }

    /// Why the authorizer refuses `token` to do `action` on `table`.
    pub fn denied(&self, user: &User, token: &str, table: &str, action: Action) -> DeniedKind {
        self.check(user, token, table, action).unwrap_err().kind
    }

    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }
}

pub fn authorize_params(app: &App, scope: &str, challenge: &str) -> AuthorizeParams {
    AuthorizeParams {
        response_type: Some("code".into()),
        client_id: Some(app.client_id.to_string()),
        redirect_uri: Some(REDIRECT.into()),
        scope: Some(scope.into()),
        state: Some("xyz".into()),
        code_challenge: Some(challenge.into()),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeParams::default()
    }
}

/// The parameters of a pushed request: no client ID, it comes with the credentials.
pub fn pushed_params(app: &App, scope: &str, challenge: &str) -> AuthorizeParams {
    AuthorizeParams {
        client_id: None,
        ..authorize_params(app, scope, challenge)
    }
}

/// An authorization request by reference to a pushed one.
pub fn by_reference(client_id: &str, request_uri: String) -> AuthorizeParams {
    AuthorizeParams {
        client_id: Some(client_id.into()),
        request_uri: Some(request_uri),
        ..AuthorizeParams::default()
    }
}

/// A token request of the authorization code grant.
pub fn code_grant(code: String, verifier: Option<String>) -> TokenParams {
    TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: verifier,
        ..TokenParams::default()
    }
}

pub fn public_client(app: &App) -> ClientCredentials {
    ClientCredentials::public(app.client_id.as_str())
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn query_param(location: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A DPoP key for tests: signs proofs.
pub struct DpopKey {
    pub alg: jsonwebtoken::Algorithm,
    pub key: jsonwebtoken::EncodingKey,
    pub jwk: jsonwebtoken::jwk::Jwk,
}

impl DpopKey {
    fn new(alg: jsonwebtoken::Algorithm, key: jsonwebtoken::EncodingKey) -> Self {
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap();
        DpopKey { alg, key, jwk }
    }

    pub fn es256() -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let secret = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        let der = secret.to_pkcs8_der().unwrap();
        Self::new(
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
        )
    }

    pub fn ed25519() -> Self {
        // RFC 8410 PKCS#8 v1 encoding of an Ed25519 seed.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend_from_slice(&rand::random::<[u8; 32]>());
        Self::new(
            jsonwebtoken::Algorithm::EdDSA,
            jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
    }

    /// A proof for `POST {ISSUER}{path}` at `iat`.
    pub fn proof_at(&self, path: &str, iat: i64) -> DpopProof {
        self.proof_for("POST", path, iat, None)
    }

    /// A proof for `method {ISSUER}{path}` at `iat`, with `ath` if given.
    pub fn proof_for(&self, method: &str, path: &str, iat: i64, ath: Option<&str>) -> DpopProof {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let mut claims = serde_json::json!({
            "htm": method,
            "htu": format!("{ISSUER}{path}"),
            "iat": iat,
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        });
        if let Some(ath) = ath {
            claims["ath"] = ath.into();
        }
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).unwrap();
        DpopProof::new(jwt, method, format!("{ISSUER}{path}"))
    }
}
