//! Who is asking: the gateway authenticates a request's token once (the
//! signature check is cached by token hash) and answers, per table and
//! action, what the token allows.
//!
//! A token bound to a DPoP key (RFC 9449) is accepted only with the `DPoP`
//! scheme and a proof of that key, verified per request by the control plane
//! (§7.1); the proven key's thumbprint is then passed to every check.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_auth::{Action, Authorized, Authorizer, DeniedKind, GrantSpec, Request, Revoked, RowScope, VerifiedToken};
use coffer_core::{AppId, GrantId, TableName, VaultId};
use coffer_storage::Engine;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::access_log::AccessLog;
use crate::error::GatewayError;
use crate::limits::{Limiter, RequestLimits};

/// Verified tokens kept in memory (each a few kilobytes).
const TOKEN_CACHE_ENTRIES: usize = 10_000;
/// How often a grant's "last used" time is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// What the gateway needs from the control plane (the OAuth server).
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// Loads grant `grant` into the revocation view from the control
    /// database; `false` if no such grant exists.
    async fn sync_grant(&self, grant: GrantId) -> bool;
    /// Records that the grant was just used (the dashboard's last access).
    async fn touch_grant(&self, grant: GrantId);
    /// What grant `grant` allows now, if it is active (`None`: revoked,
    /// unknown, or not to be read now). A reader that outlives its token
    /// (the live stream) tells the app what a changed grant takes away.
    async fn active_grant(&self, grant: GrantId) -> Option<GrantSpec>;
    /// Verifies the DPoP proof `proof_jwt` of a request `method url`
    /// presenting `access_token` (RFC 9449 §4.3 and §7.1: signature, `htm`,
    /// `htu`, `iat`, a `jti` not used before, `ath` = the token's hash).
    /// Returns the proof key's RFC 7638 thumbprint, or why the proof is
    /// refused.
    async fn verify_dpop(&self, proof_jwt: &str, method: &str, url: &str, access_token: &str)
    -> Result<String, String>;
}

/// How a request presented its access token (the `Authorization` scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP <token>` with a `DPoP` proof (RFC 9449 §7.1).
    Dpop,
}

/// A request's DPoP proof (the `DPoP` header) and the request it must match.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopHeader {
    /// The `DPoP` header value (a compact JWS).
    pub jwt: String,
    /// The request's HTTP method (`GET`).
    pub method: String,
    /// The request's URL as the client addressed it (the server's public
    /// URL and the path; a query is ignored).
    pub url: String,
}

impl std::fmt::Debug for DpopHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopHeader")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The credentials a request carried: its access token, the scheme it was
/// sent with and, for DPoP, the proof.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access token (empty if the request had none).
    pub token: String,
    /// How it was sent.
    pub scheme: Scheme,
    /// The DPoP proof, if the request carried one.
    pub proof: Option<DpopHeader>,
}

impl std::fmt::Debug for Credentials {
    // The token is a bearer credential: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("proof", &self.proof)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// A token sent as `Authorization: Bearer <token>`.
    pub fn bearer(token: impl Into<String>) -> Self {
        Credentials {
            token: token.into(),
            scheme: Scheme::Bearer,
            proof: None,
        }
    }

    /// A token sent as `Authorization: DPoP <token>` with `proof` (`None`
    /// when the request had no `DPoP` header, which is refused).
    pub fn dpop(token: impl Into<String>, proof: Option<DpopHeader>) -> Self {
        Credentials {
            token: token.into(),
            scheme: Scheme::Dpop,
            proof,
        }
    }
}

impl From<&str> for Credentials {
    /// A bearer token.
    fn from(token: &str) -> Self {
        Credentials::bearer(token)
    }
}

/// The problem code of a refused DPoP proof (RFC 9449 §7.1).
const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";

fn invalid_dpop(reason: impl Into<String>) -> GatewayError {
    GatewayError::InvalidToken {
        code: INVALID_DPOP_PROOF,
        reason: reason.into(),
    }
}

/// The query gateway: the storage engine, the token authorizer, the control
/// plane and the access log. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    authorizer: Authorizer,
    control: Arc<dyn ControlPlane>,
    access_log: AccessLog,
    tokens: Mutex<LruCache<[u8; 32], Arc<VerifiedToken>>>,
    touched: Mutex<HashMap<GrantId, Instant>>,
    limiter: Limiter,
}

impl Gateway {
    /// A gateway over `engine`, deciding with `authorizer`, with the default
    /// [`RequestLimits`].
    pub fn new(engine: Engine, authorizer: Authorizer, control: Arc<dyn ControlPlane>, access_log: AccessLog) -> Self {
        Self::with_limits(engine, authorizer, control, access_log, RequestLimits::default())
    }

    /// A gateway whose queries run within `limits`.
    pub fn with_limits(
        engine: Engine,
        authorizer: Authorizer,
        control: Arc<dyn ControlPlane>,
        access_log: AccessLog,
        limits: RequestLimits,
    ) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                engine,
                authorizer,
                control,
                access_log,
                tokens: Mutex::new(LruCache::new(NonZeroUsize::new(TOKEN_CACHE_ENTRIES).expect("non-zero"))),
                touched: Mutex::default(),
                limiter: Limiter::new(limits),
            }),
        }
    }

    /// The limits queries run within.
    pub fn limits(&self) -> &RequestLimits {
        self.inner.limiter.limits()
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The vaults' access log.
    pub fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    /// Authenticates a request's credentials: verifies the token's signature
    /// (once per token, then from the cache), and checks its expiry and
    /// revocation (every time). A grant this server has not loaded yet is
    /// read from the control database.
    ///
    /// A token bound to a DPoP key must come with the [`Scheme::Dpop`]
    /// scheme (else `dpop_required`). With that scheme the request's proof is
    /// verified by the control plane and its key must be the one the token is
    /// bound to (else `invalid_dpop_proof`); an unbound token with a valid
    /// proof is accepted too. The proven key is passed to every check.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Caller, GatewayError> {
        let token = credentials.token.trim();
        if token.is_empty() {
            return Err(GatewayError::InvalidToken {
                code: "missing",
                reason: "the request has no access token; send `Authorization: Bearer <token>` \
                    (or `Authorization: DPoP <token>` with a `DPoP` proof)"
                    .into(),
            });
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.inner.tokens.lock().expect("token cache").get(&key).cloned();
        let verified = match cached {
            Some(v) => v,
            None => {
                let v = Arc::new(
                    self.inner
                        .authorizer
                        .verify(token)
                        .map_err(|d| GatewayError::invalid_token(&d))?,
                );
                self.inner.tokens.lock().expect("token cache").put(key, v.clone());
                v
            }
        };
        if credentials.scheme == Scheme::Bearer && verified.dpop_jkt().is_some() {
            return Err(GatewayError::InvalidToken {
                code: "dpop_required",
                reason: "the access token is bound to a DPoP key (RFC 9449); send it as \
                    `Authorization: DPoP <token>` with a `DPoP` proof of that key"
                    .into(),
            });
        }
        let mut caller = Caller {
            gateway: self.clone(),
            token: verified,
            now: Utc::now(),
            dpop_jkt: None,
        };
        match caller.validate() {
            Err(Revoked::UnknownGrant) => {
                if self.inner.control.sync_grant(caller.token.grant_id()).await {
                    caller.validate().map_err(|e| caller.revoked(e))?;
                } else {
                    return Err(caller.revoked(Revoked::UnknownGrant));
                }
            }
            Err(e) => return Err(caller.revoked(e)),
            Ok(()) => {}
        }
        if caller.now >= caller.token.expires_at() {
            return Err(GatewayError::InvalidToken {
                code: "expired",
                reason: format!(
                    "the access token expired at {}; get a new one",
                    caller.token.expires_at().to_rfc3339()
                ),
            });
        }
        if credentials.scheme == Scheme::Dpop {
            let jkt = self.prove(credentials.proof.as_ref(), token, &caller.token).await?;
            caller.dpop_jkt = Some(jkt.into());
        }
        self.touch(caller.token.grant_id());
        Ok(caller)
    }

    /// Verifies the request's DPoP proof for `token` and that its key is the
    /// one the token is bound to (if it is bound); the key's thumbprint.
    async fn prove(
        &self,
        proof: Option<&DpopHeader>,
        token: &str,
        verified: &VerifiedToken,
    ) -> Result<String, GatewayError> {
        let proof =
            proof.ok_or_else(|| invalid_dpop("the request uses the DPoP scheme but has no `DPoP` proof header"))?;
        let jkt = self
            .inner
            .control
            .verify_dpop(&proof.jwt, &proof.method, &proof.url, token)
            .await
            .map_err(invalid_dpop)?;
        match verified.dpop_jkt() {
            Some(bound) if bound != jkt => Err(invalid_dpop(
                "the DPoP proof is signed with another key than the one the access token is bound to",
            )),
            _ => Ok(jkt),
        }
    }

    /// Writes the grant's last use, at most once a minute per grant, in the
    /// background.
    fn touch(&self, grant: GrantId) {
        let now = Instant::now();
        {
            let mut touched = self.inner.touched.lock().expect("touched");
            if touched
                .get(&grant)
                .is_some_and(|t| now.duration_since(*t) < TOUCH_EVERY)
            {
                return;
            }
            if touched.len() > TOKEN_CACHE_ENTRIES {
                touched.retain(|_, t| now.duration_since(*t) < TOUCH_EVERY);
            }
            touched.insert(grant, now);
        }
        let control = self.inner.control.clone();
        tokio::spawn(async move { control.touch_grant(grant).await });
    }
}

/// What a write may reach and answer.
#[derive(Debug)]
pub struct WriteAccess {
    /// The rows the write may reach: the action's scope narrowed by the read
    /// scope.
    pub scope: RowScope,
    /// What the token may read of the table (`None`: nothing).
    pub read: Option<Authorized>,
}

/// An authenticated request: the token's vault, app and grant. Cheap to clone.
#[derive(Clone)]
pub struct Caller {
    gateway: Gateway,
    token: Arc<VerifiedToken>,
    now: DateTime<Utc>,
    /// The thumbprint of the DPoP key the request proved possession of.
    dpop_jkt: Option<Arc<str>>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("vault", &self.vault())
            .field("app", self.app())
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The vault the token is for.
    pub fn vault(&self) -> VaultId {
        self.token.vault()
    }

    /// The app holding the token.
    pub fn app(&self) -> &AppId {
        self.token.app()
    }

    /// What the token allows, after its attenuations.
    pub fn grant(&self) -> &GrantSpec {
        self.token.grant()
    }

    /// What the token's grant allows now, read from the control plane
    /// (`None`: revoked or unknown). It may be more or less than the token
    /// carries when the user changed the grant since it was minted.
    pub async fn current_grant(&self) -> Option<GrantSpec> {
        self.gateway.inner.control.active_grant(self.token.grant_id()).await
    }

    /// The gateway this request came through.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// When the token stops being valid.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.token.expires_at()
    }

    /// The thumbprint of the DPoP key the request proved possession of, if
    /// it came with a valid DPoP proof.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }

    /// Whether the token names `table` at all (any action).
    pub fn names_table(&self, table: &TableName) -> bool {
        self.grant().tables().any(|t| t == table)
    }

    /// Decides `action` on `table` touching `columns` (user columns; system
    /// columns are always allowed). A table the token does not name is
    /// [`GatewayError::TableNotFound`]; a named table without this action is
    /// [`GatewayError::MissingRight`]; a column not granted is
    /// [`GatewayError::UnknownColumn`] for reads and a missing right for
    /// writes.
    pub fn check(&self, table: &TableName, action: Action, columns: &[&str]) -> Result<Authorized, GatewayError> {
        if !self.names_table(table) {
            return Err(GatewayError::TableNotFound(table.to_string()));
        }
        let mut request =
            Request::new(self.vault(), table.clone(), action, self.now).with_columns(columns.iter().copied());
        if let Some(jkt) = self.dpop_jkt.as_deref() {
            request = request.with_dpop_jkt(jkt);
        }
        self.gateway
            .inner
            .authorizer
            .check(&self.token, &request)
            .map_err(|denied| match denied.kind {
                DeniedKind::MissingRight { required } => GatewayError::MissingRight { required },
                DeniedKind::Restricted { .. } => GatewayError::MissingRight {
                    required: format!("{table}:{action}"),
                },
                DeniedKind::ColumnNotGranted { table, column } if action == Action::Read => {
                    GatewayError::UnknownColumn { table, column }
                }
                DeniedKind::ColumnNotGranted { table, column } => GatewayError::MissingRight {
                    required: format!("{table}({column}):{action}"),
                },
                _ => GatewayError::invalid_token(&denied),
            })
    }

    /// What the token may read of `table`, or `None` if it may not read it
    /// (the table may still be named for other actions).
    pub fn read_access(&self, table: &TableName) -> Result<Option<Authorized>, GatewayError> {
        match self.check(table, Action::Read, &[]) {
            Ok(a) => Ok(Some(a)),
            Err(GatewayError::MissingRight { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks `action` on `table` and narrows its row scope to the rows the
    /// token may also read: a write answers only what the caller may read,
    /// and its conditions run over rows the caller may both read and write.
    /// (A token that may not read the table at all keeps the action's
    /// scope; its writes answer no user column.)
    pub fn write_access(
        &self,
        table: &TableName,
        action: Action,
        columns: &[&str],
    ) -> Result<WriteAccess, GatewayError> {
        let authorized = self.check(table, action, columns)?;
        let read = self.read_access(table)?;
        let own =
            authorized.row_scope() == RowScope::Own || read.as_ref().is_some_and(|r| r.row_scope() == RowScope::Own);
        Ok(WriteAccess {
            scope: if own { RowScope::Own } else { RowScope::All },
            read,
        })
    }

    /// Runs a query of this caller within the gateway's limits: its grant's
    /// concurrent queries, the server's, and the time limit.
    pub async fn bounded<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        self.gateway.inner.limiter.run(self.token.grant_id(), query).await
    }

    fn validate(&self) -> Result<(), Revoked> {
        self.gateway.inner.authorizer.revocation().check(
            self.token.grant_id(),
            self.token.grant_version(),
            self.token.revocation_ids(),
        )
    }

    fn revoked(&self, e: Revoked) -> GatewayError {
        let code = match e {
            Revoked::UnknownGrant => "unknown_grant",
            Revoked::GrantVersionSuperseded { .. } => "grant_changed",
            Revoked::GrantRevoked | Revoked::TokenRevoked => "revoked",
        };
        GatewayError::InvalidToken {
            code,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use coffer_auth::{GrantStatus, RevocationView, RootKeyPair, ScopeSet, TokenClaims, mint};
    use coffer_core::schema::registry::SchemaRegistry;
    use coffer_storage::{Embedded, EngineOptions, open_embedded};

    /// Accepts the proof `proof-of:<jkt>` for `GET` with the access token
    /// `ath:<token>` appended (standing in for the real checks).
    struct StubControl;

    #[async_trait]
    impl ControlPlane for StubControl {
        async fn sync_grant(&self, _grant: GrantId) -> bool {
            false
        }
        async fn touch_grant(&self, _grant: GrantId) {}
        async fn active_grant(&self, _grant: GrantId) -> Option<GrantSpec> {
            None
        }
        async fn verify_dpop(
            &self,
            proof_jwt: &str,
            method: &str,
            _url: &str,
            access_token: &str,
        ) -> Result<String, String> {
            let rest = proof_jwt.strip_prefix("proof-of:").ok_or("not a proof")?;
            let (jkt, ath) = rest.split_once(":ath:").ok_or("no ath")?;
            if method != "GET" || ath != access_token {
                return Err("the proof does not match the request".into());
            }
            Ok(jkt.to_owned())
        }
    }

    async fn setup() -> (tempfile::TempDir, Gateway, String, TableName) {
        let dir = tempfile::tempdir().unwrap();
        let registry = SchemaRegistry::builtin().unwrap();
        let opts = EngineOptions {
            background: false,
            ..EngineOptions::default()
        };
        let Embedded { engine, .. } = open_embedded(dir.path(), registry.clone(), opts).await.unwrap();
        let vault = engine.create_vault().await.unwrap();
        let root = RootKeyPair::generate();
        let view = Arc::new(RevocationView::new());
        let grant = ScopeSet::parse("notes.notes:read")
            .unwrap()
            .resolve(|name| registry.latest(name))
            .unwrap();
        let id = GrantId::generate();
        view.set_grant(id, 1, GrantStatus::Active);
        let claims = TokenClaims::new(
            vault,
            AppId::new("app"),
            id,
            1,
            grant,
            Utc::now(),
            TimeDelta::minutes(5),
        );
        let token = mint(&root, &claims).unwrap();
        let gateway = Gateway::new(
            engine.clone(),
            Authorizer::new(root.public_key(), view),
            Arc::new(StubControl),
            AccessLog::start(engine),
        );
        (dir, gateway, token, TableName::new("notes", "notes"))
    }

    fn proof(jwt: String) -> Option<DpopHeader> {
        Some(DpopHeader {
            jwt,
            method: "GET".into(),
            url: "https://vault.example/v1/tables/notes.notes/rows".into(),
        })
    }

    fn code(result: Result<Caller, GatewayError>) -> &'static str {
        match result {
            Err(GatewayError::InvalidToken { code, .. }) => code,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unbound_token_may_come_with_a_dpop_proof() {
        let (_dir, gateway, token, notes) = setup().await;
        let bearer = gateway
            .authenticate(&Credentials::bearer(token.as_str()))
            .await
            .unwrap();
        assert_eq!(bearer.dpop_jkt(), None);

        let good = Credentials::dpop(token.as_str(), proof(format!("proof-of:key-1:ath:{token}")));
        let caller = gateway.authenticate(&good).await.unwrap();
        assert_eq!(caller.dpop_jkt(), Some("key-1"));
        caller.check(&notes, Action::Read, &[]).unwrap();
        // The cached token serves the next request, proof checked again.
        assert!(gateway.authenticate(&good).await.is_ok());

        // The DPoP scheme needs a proof, and a valid one.
        let none = Credentials::dpop(token.as_str(), None);
        assert_eq!(code(gateway.authenticate(&none).await), "invalid_dpop_proof");
        let other_token = Credentials::dpop(token.as_str(), proof("proof-of:key-1:ath:other".into()));
        assert_eq!(code(gateway.authenticate(&other_token).await), "invalid_dpop_proof");
        let garbage = Credentials::dpop(token.as_str(), proof("garbage".into()));
        match gateway.authenticate(&garbage).await {
            Err(GatewayError::InvalidToken { code, reason }) => {
                assert_eq!((code, reason.as_str()), ("invalid_dpop_proof", "not a proof"));
            }
            other => panic!("{other:?}"),
        }
        // No token at all.
        assert_eq!(code(gateway.authenticate(&Credentials::bearer("")).await), "missing");
    }
}
