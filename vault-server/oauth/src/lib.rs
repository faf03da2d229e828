//! Coffer accounts and the OAuth 2.1 authorization server: logic and
//! persistence, without HTTP routing or HTML.
//!
//! [`OAuthServer`] is the one entry point. It owns a SQLite pool (the control
//! database, its tables brought up to date by [`migrate`]), the root key
//! that signs capability tokens, and the shared [`RevocationView`] the
//! gateway's authorizer consults. Every method is meant to be called from one HTTP
//! handler and returns either a value to render or an [`Error`] that carries
//! its OAuth error code (see [`Error::to_json`]).
//!
//! | area | methods |
//! |---|---|
//! | accounts | [`sign_up`](OAuthServer::sign_up), [`sign_in`](OAuthServer::sign_in), [`create_session`](OAuthServer::create_session), [`session`](OAuthServer::session), [`sign_out`](OAuthServer::sign_out), [`list_users`](OAuthServer::list_users) |
//! | apps | [`register_app`](OAuthServer::register_app), [`register_client`](OAuthServer::register_client) (RFC 7591), [`app`](OAuthServer::app), [`authenticate_client`](OAuthServer::authenticate_client), [`redirect_origins`](OAuthServer::redirect_origins) and [`apps_version`](OAuthServer::apps_version) (the origins browser apps call from) |
//! | authorize | [`validate_authorize_request`](OAuthServer::validate_authorize_request), [`push_authorization_request`](OAuthServer::push_authorization_request) (RFC 9126), [`consent_needed`](OAuthServer::consent_needed), [`approve`](OAuthServer::approve), [`deny`](OAuthServer::deny) |
//! | token endpoint | [`token`](OAuthServer::token), [`exchange_code`](OAuthServer::exchange_code), [`refresh`](OAuthServer::refresh), [`poll_device`](OAuthServer::poll_device) |
//! | device flow (RFC 8628) | [`start_device_authorization`](OAuthServer::start_device_authorization), [`device_lookup`](OAuthServer::device_lookup), [`device_approve`](OAuthServer::device_approve), [`device_deny`](OAuthServer::device_deny) |
//! | tokens | [`revoke`](OAuthServer::revoke) (RFC 7009), [`introspect`](OAuthServer::introspect) (RFC 7662) |
//! | dashboard | [`grants_for_user`](OAuthServer::grants_for_user), [`revoke_grant`](OAuthServer::revoke_grant), [`narrow_grant`](OAuthServer::narrow_grant), [`touch_grant`](OAuthServer::touch_grant), [`load_revocation_view`](OAuthServer::load_revocation_view) |
//! | metadata | [`authorization_server_metadata`](OAuthServer::authorization_server_metadata) (RFC 8414) |
//!
//! Secrets (session tokens, codes, refresh tokens, device codes, client
//! secrets, PAR request URIs) are 256-bit values from the operating system's
//! RNG, base64url-encoded, and stored only as SHA-256 hashes. Passwords are
//! hashed with Argon2id. Design notes: `docs/decisions/0007-oauth-server.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accounts;
mod apps;
mod authorize;
mod device;
mod dpop;
mod error;
mod grants;
mod metadata;
mod store;
mod tokens;
mod util;

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use coffer_auth::{Authorizer, MAX_TOKEN_LIFETIME, RevocationView, RootKeyPair};
use coffer_core::schema::SchemaDef;
use sqlx::SqlitePool;

pub use accounts::{NewSession, Session, User, address_key};
pub use apps::{
    App, AppsVersion, ClientAuthForm, ClientCredentials, ClientKind, ClientMetadata, ClientRegistrationResponse,
    GrantType, NewApp, RedirectOrigins, RegisteredApp, TokenEndpointAuthMethod, redirect_origin,
};
pub use authorize::{
    AuthorizationResponse, AuthorizeError, AuthorizeParams, ConsentCheck, PendingAuthorization, PushedAuthorization,
};
pub use device::{DeviceAuthorization, DeviceRequest};
pub use dpop::DpopProof;
pub use error::{Error, ErrorCode};
pub use grants::{AppSummary, Grant, GrantWithApp};
pub use metadata::endpoints;
pub use store::migrate;
pub use tokens::{Confirmation, Introspection, TokenParams, TokenResponse};

/// Looks a schema up by name (the version new grants are resolved against).
/// Typically `Arc::new(move |name| registry.latest(name))`.
pub type SchemaLookup = Arc<dyn Fn(&str) -> Option<Arc<SchemaDef>> + Send + Sync>;

/// The time source. Production uses [`SystemClock`]; tests move a
/// [`ManualClock`] to reach expiries.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (for tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(now) }
    }

    /// Moves the clock forward (or back, with a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lifetimes, limits and the issuer of the authorization server.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// The issuer identifier: `https://host[:port][/path]`, no trailing
    /// slash, no query or fragment. Endpoint URLs are built from it.
    pub issuer: String,
    /// Access token lifetime; at most 15 minutes (default 10).
    pub access_token_lifetime: TimeDelta,
    /// Refresh token lifetime, renewed on every rotation (default 30 days).
    pub refresh_token_lifetime: TimeDelta,
    /// Authorization code lifetime (default 10 minutes).
    pub code_lifetime: TimeDelta,
    /// Lifetime of a pushed authorization request's `request_uri` (default 60 s).
    pub par_lifetime: TimeDelta,
    /// Device code lifetime (default 10 minutes).
    pub device_code_lifetime: TimeDelta,
    /// Initial device polling interval (default 5 s; `slow_down` adds 5 s).
    pub device_poll_interval: TimeDelta,
    /// Session lifetime from sign-in (default 24 hours).
    pub session_lifetime: TimeDelta,
    /// Failed sign-ins per email and client address before refusing (default 5).
    pub login_max_failures: u32,
    /// The window failed sign-ins are counted in, which is also how long a
    /// refusal lasts after the last counted failure (default 15 minutes).
    pub login_window: TimeDelta,
    /// How far a DPoP proof's `iat` may be from now (default 60 s).
    pub dpop_iat_window: TimeDelta,
    /// Listed as `scopes_supported` in the metadata (omitted when empty).
    pub scopes_supported: Vec<String>,
    /// Whether anyone may register an app at the registration endpoint
    /// (RFC 7591). When `false`, [`OAuthServer::register_client`] refuses
    /// and the metadata lists no `registration_endpoint`; operators still
    /// register apps with [`OAuthServer::register_app`] (default `true`).
    pub open_registration: bool,
    /// Most apps without a registering user the server keeps; past it,
    /// open registration refuses new apps (default 1000).
    pub max_open_registrations: u64,
}

impl OAuthConfig {
    /// The defaults for `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        OAuthConfig {
            issuer: issuer.into(),
            access_token_lifetime: TimeDelta::minutes(10),
            refresh_token_lifetime: TimeDelta::days(30),
            code_lifetime: TimeDelta::minutes(10),
            par_lifetime: TimeDelta::seconds(60),
            device_code_lifetime: TimeDelta::minutes(10),
            device_poll_interval: TimeDelta::seconds(5),
            session_lifetime: TimeDelta::hours(24),
            login_max_failures: 5,
            login_window: TimeDelta::minutes(15),
            dpop_iat_window: TimeDelta::seconds(60),
            scopes_supported: Vec::new(),
            open_registration: true,
            max_open_registrations: 1000,
        }
    }
}

/// The accounts store and OAuth 2.1 authorization server. Cheap to clone
/// (every field is shared).
#[derive(Clone)]
pub struct OAuthServer {
    pool: SqlitePool,
    root: Arc<RootKeyPair>,
    revocation: Arc<RevocationView>,
    authorizer: Authorizer,
    schemas: SchemaLookup,
    config: Arc<OAuthConfig>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthServer")
            .field("issuer", &self.config.issuer)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl OAuthServer {
    /// A server over `pool` (its tables made by [`migrate`]),
    /// signing tokens with `root` and keeping `revocation` current. Call
    /// [`OAuthServer::load_revocation_view`] once at startup. Refuses an
    /// issuer that is not an absolute http(s) URL without query or fragment,
    /// and an access token lifetime outside (0, 15 min].
    pub fn new(
        pool: SqlitePool,
        root: Arc<RootKeyPair>,
        revocation: Arc<RevocationView>,
        schemas: SchemaLookup,
        mut config: OAuthConfig,
    ) -> Result<Self, Error> {
        while config.issuer.ends_with('/') {
            config.issuer.pop();
        }
        let issuer = url::Url::parse(&config.issuer)
            .map_err(|e| Error::Config(format!("issuer `{}` is not a URL: {e}", config.issuer)))?;
        if !matches!(issuer.scheme(), "https" | "http") || issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(Error::Config(
                "the issuer must be an http(s) URL without query or fragment".into(),
            ));
        }
        if config.access_token_lifetime <= TimeDelta::zero() || config.access_token_lifetime > MAX_TOKEN_LIFETIME {
            return Err(Error::Config("the access token lifetime must be in (0, 15 min]".into()));
        }
        let authorizer = Authorizer::new(root.public_key(), revocation.clone());
        Ok(OAuthServer {
            pool,
            root,
            revocation,
            authorizer,
            schemas,
            config: Arc::new(config),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same server reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same server with open registration (RFC 7591) turned on or off.
    pub fn with_open_registration(mut self, open: bool) -> Self {
        Arc::make_mut(&mut self.config).open_registration = open;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The revocation view this server keeps current.
    pub fn revocation_view(&self) -> &Arc<RevocationView> {
        &self.revocation
    }

    /// An authorizer for this server's tokens (root public key + revocation view).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The control database pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The current time on this server's clock, in whole microseconds (the
    /// precision the database stores).
    pub fn now(&self) -> DateTime<Utc> {
        util::from_micros(util::micros(self.clock.now()))
    }

    /// Deletes expired short-lived rows (codes, PAR requests, device codes,
    /// sessions, old sign-in failures, DPoP replay entries, expired refresh
    /// tokens and access token records). Returns how many rows went. Run it
    /// now and then (e.g. hourly).
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let now = self.now();
        let login_cutoff = util::micros(now - self.config.login_window);
        Ok(store::purge_expired(&self.pool, util::micros(now), login_cutoff).await?)
    }
}
