//! Who is asking: the gateway authenticates a request's token once (the
//! signature check is cached by token hash) and answers, per table and
//! action, what the token allows.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_auth::{Action, Authorized, Authorizer, DeniedKind, GrantSpec, Request, Revoked, VerifiedToken};
use coffer_core::{AppId, GrantId, TableName, VaultId};
use coffer_storage::Engine;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::access_log::AccessLog;
use crate::error::GatewayError;

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
}

impl Gateway {
    /// A gateway over `engine`, deciding with `authorizer`.
    pub fn new(engine: Engine, authorizer: Authorizer, control: Arc<dyn ControlPlane>, access_log: AccessLog) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                engine,
                authorizer,
                control,
                access_log,
                tokens: Mutex::new(LruCache::new(NonZeroUsize::new(TOKEN_CACHE_ENTRIES).expect("non-zero"))),
                touched: Mutex::default(),
            }),
        }
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The vaults' access log.
    pub fn access_log(&self) -> &AccessLog {
        &self.inner.access_log
    }

    /// Authenticates a bearer token: verifies its signature (once per token,
    /// then from the cache), and checks its expiry and revocation (every
    /// time). A grant this server has not loaded yet is read from the control
    /// database.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, GatewayError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(GatewayError::InvalidToken {
                code: "missing",
                reason: "the request has no access token; send `Authorization: Bearer <token>`".into(),
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
        let caller = Caller {
            gateway: self.clone(),
            token: verified,
            now: Utc::now(),
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
        self.touch(caller.token.grant_id());
        Ok(caller)
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

/// An authenticated request: the token's vault, app and grant. Cheap to clone.
#[derive(Clone)]
pub struct Caller {
    gateway: Gateway,
    token: Arc<VerifiedToken>,
    now: DateTime<Utc>,
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

    /// The gateway this request came through.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// When the token stops being valid.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.token.expires_at()
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
        let request = Request::new(self.vault(), table.clone(), action, self.now).with_columns(columns.iter().copied());
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
