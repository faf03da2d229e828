//! The authorizer: decides, for every request, whether a token allows it.
//!
//! [`Authorizer::verify`] checks the token's signature against the root
//! public key and reads its facts into a [`VerifiedToken`] (done once per
//! token; the gateway caches it by token hash). [`Authorizer::check`] then
//! decides a request against it:
//!
//! 1. expiry (the earliest of the token's and its attenuations' expiries);
//! 2. the [`RevocationView`]: grant status and version, revoked token ids;
//! 3. the vault, the `(table, action)` right and each user column, against
//!    the authority facts narrowed by the attenuation blocks' `limit_*` facts,
//!    which gives the precise denial kind;
//! 4. biscuit's own authorizer over the token, with the request as facts
//!    (`request_vault`, `operation`, `table`, `column`, `time`, and
//!    `dpop_jkt` when the request proved possession of a DPoP key): the
//!    authority facts must allow the request and every block's checks must
//!    pass. This is the authoritative decision; facts added by attenuation
//!    blocks are invisible to its policies, so no block can widen a token.
//!
//! A token bound to a DPoP key (RFC 9449) carries `cnf_jkt("<thumbprint>")`
//! and `check if dpop_jkt("<thumbprint>")` in a block appended by
//! [`bind_to_key`](crate::bind_to_key); [`VerifiedToken::dpop_jkt`] reports the thumbprint, and a request
//! that did not prove that key ([`Request::with_dpop_jkt`]) is refused
//! ([`DeniedKind::DpopRequired`]).
//!
//! Steps 1–2 run on every check, cached or not, so a revocation or an expiry
//! takes effect on the very next request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use biscuit_auth::builder::{AuthorizerBuilder, Fact, Rule, Term};
use biscuit_auth::error::{FailedAuthorizerCheck, FailedBlockCheck, FailedCheck, Logic};
use biscuit_auth::macros::{authorizer, authorizer_merge, rule};
use biscuit_auth::{AuthorizerLimits, Biscuit};
use chrono::{DateTime, Utc};
use coffer_core::schema::TableName;
use coffer_core::{AppId, GrantId, VaultId};
use serde::Serialize;

use crate::grant::is_system_column;
use crate::grant::{Access, Action, ColumnSet, GrantSpec, RowScope, TablePermission};
use crate::keys::RootPublicKey;
use crate::revocation::{RevocationView, Revoked};
use crate::token::{MAX_TOKEN_BLOCKS, MAX_TOKEN_LEN, MAX_TOKEN_LIFETIME, date_term};

/// One request to decide: which vault, table, action and columns, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The vault the request addresses.
    pub vault: VaultId,
    /// The table it touches.
    pub table: TableName,
    /// What it does.
    pub action: Action,
    /// The columns it reads or writes. System columns (`id`, `_seq`, …) may
    /// be included; they are always allowed.
    pub columns: Vec<String>,
    /// The current time (the server clock).
    pub now: DateTime<Utc>,
    /// The RFC 7638 thumbprint of the DPoP key the request proved possession
    /// of (RFC 9449), if it carried a valid proof.
    pub dpop_jkt: Option<String>,
}

impl Request {
    /// A request touching no user column (add them with [`Request::with_columns`]).
    pub fn new(vault: VaultId, table: TableName, action: Action, now: DateTime<Utc>) -> Self {
        Request {
            vault,
            table,
            action,
            columns: Vec::new(),
            now,
            dpop_jkt: None,
        }
    }

    /// The same request touching `columns`.
    pub fn with_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The same request, made with a valid DPoP proof of the key with
    /// thumbprint `jkt` (verified by the caller).
    pub fn with_dpop_jkt(mut self, jkt: impl Into<String>) -> Self {
        self.dpop_jkt = Some(jkt.into());
        self
    }

    fn user_columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(String::as_str).filter(|c| !is_system_column(c))
    }

    fn required(&self) -> String {
        format!("{}:{}", self.table, self.action)
    }
}

/// Why a request is refused, machine-readable. Serializes as
/// `{"kind": "missing_right", "required": "contacts.people:update"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeniedKind {
    /// Not a capability token, or not one this server minted the way it does.
    Malformed,
    /// The signature does not verify with the root public key.
    InvalidSignature,
    /// The token (or one of its attenuations) has expired.
    Expired,
    /// The token is for another vault.
    WrongVault,
    /// The token does not allow this action on this table.
    MissingRight {
        /// The missing right, `table:action`.
        required: String,
    },
    /// The token does not allow this column for this action.
    ColumnNotGranted {
        /// The table.
        table: String,
        /// The first column not granted.
        column: String,
    },
    /// The grant or the token was revoked.
    Revoked,
    /// The grant changed (e.g. narrowed) after the token was minted; a new
    /// token reflects the current grant.
    GrantChanged {
        /// The grant's current version.
        current_version: u64,
    },
    /// The revocation view does not know the token's grant; the caller may
    /// load it from the control database and check again.
    UnknownGrant,
    /// The token is bound to a DPoP key (RFC 9449) and the request did not
    /// prove possession of that key.
    DpopRequired,
    /// A check appended by a holder (in a form this server does not
    /// recognise) refuses the request.
    Restricted {
        /// The failing check, as Datalog.
        check: String,
    },
}

impl DeniedKind {
    /// The kind as a short code (`expired`, `missing_right`, …).
    pub fn code(&self) -> &'static str {
        match self {
            DeniedKind::Malformed => "malformed",
            DeniedKind::InvalidSignature => "invalid_signature",
            DeniedKind::Expired => "expired",
            DeniedKind::WrongVault => "wrong_vault",
            DeniedKind::MissingRight { .. } => "missing_right",
            DeniedKind::ColumnNotGranted { .. } => "column_not_granted",
            DeniedKind::Revoked => "revoked",
            DeniedKind::GrantChanged { .. } => "grant_changed",
            DeniedKind::UnknownGrant => "unknown_grant",
            DeniedKind::DpopRequired => "dpop_required",
            DeniedKind::Restricted { .. } => "restricted",
        }
    }
}

/// A refused request: a machine-readable kind and a human reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    /// What went wrong.
    #[serde(flatten)]
    pub kind: DeniedKind,
    /// The same in plain words.
    pub reason: String,
}

impl Denied {
    fn new(kind: DeniedKind, reason: impl Into<String>) -> Self {
        Denied {
            kind,
            reason: reason.into(),
        }
    }

    fn malformed(detail: impl fmt::Display) -> Self {
        Denied::new(
            DeniedKind::Malformed,
            format!("the access token is malformed: {detail}"),
        )
    }

    fn expired(at: DateTime<Utc>) -> Self {
        Denied::new(
            DeniedKind::Expired,
            format!("the access token expired at {}; get a new one", at.to_rfc3339()),
        )
    }

    fn dpop_required() -> Self {
        Denied::new(
            DeniedKind::DpopRequired,
            "the access token is bound to a DPoP key; the request must carry a DPoP proof of that key",
        )
    }

    fn missing_right(req: &Request) -> Self {
        let required = req.required();
        Denied::new(
            DeniedKind::MissingRight {
                required: required.clone(),
            },
            format!("the token does not allow `{required}`"),
        )
    }

    fn column(req: &Request, column: &str) -> Self {
        Denied::new(
            DeniedKind::ColumnNotGranted {
                table: req.table.to_string(),
                column: column.to_owned(),
            },
            format!(
                "the token does not allow column `{column}` of `{}` for {}",
                req.table, req.action
            ),
        )
    }
}

/// What an allowed request may do, for the gateway to build its catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The vault.
    pub vault: VaultId,
    /// The app holding the token (written into `_created_by`/`_updated_by`,
    /// and the owner for `own` row scope).
    pub app: AppId,
    /// The grant.
    pub grant_id: GrantId,
    /// The grant version the token was minted for.
    pub grant_version: u64,
    /// The table requested.
    pub table: TableName,
    /// The action requested.
    pub action: Action,
    /// Columns and rows the requested action may touch (after attenuations).
    pub access: Access,
    /// Columns and rows the token may read in this table (after
    /// attenuations); `None` if it may not read it.
    pub read: Option<Access>,
    /// When the token stops being valid (e.g. to end a live stream).
    pub expires_at: DateTime<Utc>,
}

impl Authorized {
    /// The rows the requested action may touch.
    pub fn row_scope(&self) -> RowScope {
        self.access.row_scope
    }

    /// The columns the token may read in this table, if it may read it.
    pub fn readable_columns(&self) -> Option<&ColumnSet> {
        self.read.as_ref().map(|a| &a.columns)
    }
}

/// A token whose signature has been verified and whose facts have been read.
/// Cache it (keyed by a hash of the token text) and pass it to
/// [`Authorizer::check`] for each request: the signature is not verified
/// again, but expiry and revocation are checked every time.
#[derive(Clone)]
pub struct VerifiedToken {
    biscuit: Biscuit,
    vault: VaultId,
    app: AppId,
    grant_id: GrantId,
    grant_version: u64,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    authority_expires_at: DateTime<Utc>,
    authority: GrantSpec,
    effective: GrantSpec,
    revocation_ids: Vec<Vec<u8>>,
    dpop_jkt: Option<String>,
}

impl fmt::Debug for VerifiedToken {
    // The biscuit itself is a bearer credential: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("vault", &self.vault)
            .field("app", &self.app)
            .field("grant_id", &self.grant_id)
            .field("grant_version", &self.grant_version)
            .field("expires_at", &self.expires_at)
            .field("grant", &self.effective.to_scope_string())
            .field("blocks", &self.biscuit.block_count())
            .field("dpop_jkt", &self.dpop_jkt)
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// The vault the token is for.
    pub fn vault(&self) -> VaultId {
        self.vault
    }

    /// The app holding the token.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The grant the token encodes.
    pub fn grant_id(&self) -> GrantId {
        self.grant_id
    }

    /// The grant version the token was minted for.
    pub fn grant_version(&self) -> u64 {
        self.grant_version
    }

    /// When the token was issued.
    pub fn issued_at(&self) -> DateTime<Utc> {
        self.issued_at
    }

    /// When the token expires: the earliest of its own and its attenuations'
    /// expiries.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// When the token it was attenuated from expires: the authority block's
    /// own expiry, ignoring attenuations. Every token sharing the authority
    /// block's revocation id (the first of
    /// [`revocation_ids`](VerifiedToken::revocation_ids)) is dead by then, so
    /// a revocation of that id must be kept until this time, not just until
    /// [`expires_at`](VerifiedToken::expires_at).
    pub fn authority_expires_at(&self) -> DateTime<Utc> {
        self.authority_expires_at
    }

    /// What the token allows after its attenuations (those in the form
    /// [`crate::token::attenuate`] writes; other checks are enforced per
    /// request but cannot be reflected here). Use it to build the catalog.
    pub fn grant(&self) -> &GrantSpec {
        &self.effective
    }

    /// What the authority block allows, before attenuations.
    pub fn authority_grant(&self) -> &GrantSpec {
        &self.authority
    }

    /// The biscuit revocation ids of the token's blocks, authority first.
    /// Revoking the first one revokes the token and every attenuation of it.
    pub fn revocation_ids(&self) -> &[Vec<u8>] {
        &self.revocation_ids
    }

    /// How many blocks the token has (1 = not attenuated).
    pub fn block_count(&self) -> usize {
        self.biscuit.block_count()
    }

    /// The RFC 7638 thumbprint of the DPoP key the token is bound to (its
    /// `cnf_jkt`), if it is bound. Every request with a bound token must
    /// prove possession of that key ([`Request::with_dpop_jkt`]).
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }
}

/// Decides requests: holds the root public key and the revocation view.
#[derive(Clone, Debug)]
pub struct Authorizer {
    root: RootPublicKey,
    revocation: Arc<RevocationView>,
    limits: AuthorizerLimits,
    policies: AuthorizerBuilder,
}

/// Datalog evaluation limits per token: a holder-written block cannot make
/// a check expensive.
fn default_limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: Duration::from_millis(50),
    }
}

impl Authorizer {
    /// An authorizer for tokens signed by `root`, consulting `revocation`.
    pub fn new(root: RootPublicKey, revocation: Arc<RevocationView>) -> Self {
        Self::with_limits(root, revocation, default_limits())
    }

    /// The same with explicit Datalog evaluation limits.
    pub fn with_limits(root: RootPublicKey, revocation: Arc<RevocationView>, limits: AuthorizerLimits) -> Self {
        // Authorizer checks and policies trust only the authority block and
        // the request facts. Check 0 is the vault, check 1 the columns.
        let policies = authorizer!(
            r#"
            check if vault($v), request_vault($v);
            reject if table($t), operation($op), column($c), columns($t, $op, $cols), !$cols.contains($c);
            allow if table($t), operation($op), right($t, $op), all_columns($t, $op);
            allow if table($t), operation($op), right($t, $op), columns($t, $op, $cols);
            deny if true;
            "#
        )
        .set_limits(limits.clone());
        Authorizer {
            root,
            revocation,
            limits,
            policies,
        }
    }

    /// The revocation view this authorizer consults.
    pub fn revocation(&self) -> &Arc<RevocationView> {
        &self.revocation
    }

    /// The root public key tokens must be signed with.
    pub fn root_public_key(&self) -> RootPublicKey {
        self.root
    }

    /// Verifies, reads and decides in one step (no caching).
    pub fn authorize(&self, token: &str, request: &Request) -> Result<Authorized, Denied> {
        let verified = self.verify(token)?;
        self.check(&verified, request)
    }

    /// Verifies the token's signature and reads its facts. Does not look at
    /// expiry or revocation (every [`Authorizer::check`] does).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, Denied> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denied::malformed("too long"));
        }
        let biscuit = Biscuit::from_base64(token, self.root.0).map_err(verify_error)?;
        if biscuit.block_count() > MAX_TOKEN_BLOCKS {
            return Err(Denied::malformed("too many blocks"));
        }
        read_token(biscuit, self.limits.clone())
    }

    /// Decides `request` against a verified (possibly cached) token.
    pub fn check(&self, token: &VerifiedToken, request: &Request) -> Result<Authorized, Denied> {
        if request.now >= token.expires_at {
            return Err(Denied::expired(token.expires_at));
        }
        self.revocation
            .check(token.grant_id, token.grant_version, &token.revocation_ids)
            .map_err(|e| {
                let kind = match &e {
                    Revoked::UnknownGrant => DeniedKind::UnknownGrant,
                    Revoked::GrantVersionSuperseded { current_version, .. } => DeniedKind::GrantChanged {
                        current_version: *current_version,
                    },
                    Revoked::GrantRevoked | Revoked::TokenRevoked => DeniedKind::Revoked,
                };
                Denied::new(kind, e.to_string())
            })?;
        if request.vault != token.vault {
            return Err(Denied::new(
                DeniedKind::WrongVault,
                "the access token is for another vault",
            ));
        }
        if let Some(bound) = token.dpop_jkt.as_deref()
            && request.dpop_jkt.as_deref() != Some(bound)
        {
            return Err(Denied::dpop_required());
        }
        let access = token
            .effective
            .access(&request.table, request.action)
            .ok_or_else(|| Denied::missing_right(request))?;
        if let Some(col) = request.user_columns().find(|c| !access.columns.contains(c)) {
            return Err(Denied::column(request, col));
        }
        // A token of one block is what `mint` wrote, signed with the root
        // key: its facts are in `effective` and its one check (expiry) was
        // checked above, so Datalog would decide the same. Only appended
        // blocks (attenuations, a DPoP binding) need the Datalog run (it
        // costs tens of µs).
        if token.biscuit.block_count() > 1 {
            self.run_datalog(&token.biscuit, request)
                .map_err(|e| classify(e, request))?;
        }
        Ok(Authorized {
            vault: token.vault,
            app: token.app.clone(),
            grant_id: token.grant_id,
            grant_version: token.grant_version,
            table: request.table.clone(),
            action: request.action,
            access: access.clone(),
            read: token.effective.access(&request.table, Action::Read).cloned(),
            expires_at: token.expires_at,
        })
    }

    /// Runs biscuit's authorizer: request facts + the token's blocks + the
    /// policies. `Ok` only if the authority allows the request and every
    /// block's checks pass.
    fn run_datalog(&self, biscuit: &Biscuit, req: &Request) -> Result<(), biscuit_auth::error::Token> {
        let vault = req.vault.to_string();
        let op = req.action.as_str();
        let table = req.table.to_string();
        let now = date_term(req.now);
        let mut builder = authorizer_merge!(
            self.policies.clone(),
            r#"request_vault({vault}); operation({op}); table({table}); time({now});"#
        );
        for c in req.user_columns() {
            builder = authorizer_merge!(builder, r#"column({c});"#);
        }
        if let Some(jkt) = req.dpop_jkt.as_deref() {
            builder = authorizer_merge!(builder, r#"dpop_jkt({jkt});"#);
        }
        builder.build(biscuit)?.authorize().map(|_| ())
    }
}

fn verify_error(e: biscuit_auth::error::Token) -> Denied {
    use biscuit_auth::error::{Format, Token};
    match e {
        Token::Format(
            Format::Signature(_)
            | Format::SealedSignature
            | Format::UnknownPublicKey
            | Format::InvalidSignatureSize(_)
            | Format::SignatureDeserializationError(_)
            | Format::BlockSignatureDeserializationError(_),
        ) => Denied::new(
            DeniedKind::InvalidSignature,
            "the access token's signature is not valid for this server",
        ),
        other => Denied::malformed(other),
    }
}

/// Maps a Datalog refusal to a denial kind. The Rust checks before it catch
/// every refusal in the forms this crate writes, so this mostly names checks
/// appended by other tools.
fn classify(e: biscuit_auth::error::Token, req: &Request) -> Denied {
    use biscuit_auth::error::Token;
    let checks = match e {
        Token::FailedLogic(Logic::Unauthorized { checks, .. })
        | Token::FailedLogic(Logic::NoMatchingPolicy { checks }) => checks,
        Token::RunLimit(limit) => {
            return Denied::malformed(format_args!("evaluating it exceeded a limit ({limit})"));
        }
        other => return Denied::malformed(other),
    };
    let first_column = || req.user_columns().next().unwrap_or("?").to_owned();
    match checks.first() {
        None => Denied::missing_right(req),
        Some(FailedCheck::Authorizer(FailedAuthorizerCheck { check_id: 0, .. })) => {
            Denied::new(DeniedKind::WrongVault, "the access token is for another vault")
        }
        Some(FailedCheck::Authorizer(_)) => Denied::column(req, &first_column()),
        Some(FailedCheck::Block(FailedBlockCheck { block_id: 0, .. })) => {
            Denied::new(DeniedKind::Expired, "the access token has expired; get a new one")
        }
        Some(FailedCheck::Block(FailedBlockCheck { rule, .. })) => {
            if rule.contains("dpop_jkt(") {
                Denied::dpop_required()
            } else if rule.contains("limit_columns") {
                Denied::column(req, &first_column())
            } else if rule.contains("limit_expires_at") || rule.contains("time(") {
                Denied::new(DeniedKind::Expired, "the access token has expired; get a new one")
            } else if rule.contains("limit_") {
                Denied::missing_right(req)
            } else {
                Denied::new(
                    DeniedKind::Restricted { check: rule.clone() },
                    format!("a restriction added to the token refuses the request: {rule}"),
                )
            }
        }
    }
}

/// The terms of the facts a query returns.
fn query(authorizer: &mut biscuit_auth::Authorizer, rule: Rule, all_blocks: bool) -> Result<Vec<Vec<Term>>, Denied> {
    let facts: Vec<Fact> = if all_blocks {
        authorizer.query_all(rule)
    } else {
        authorizer.query(rule)
    }
    .map_err(Denied::malformed)?;
    Ok(facts.into_iter().map(|f| f.predicate.terms).collect())
}

fn one<T>(mut values: Vec<T>, what: &str) -> Result<T, Denied> {
    if values.len() != 1 {
        return Err(Denied::malformed(format_args!(
            "expected one `{what}` fact, found {}",
            values.len()
        )));
    }
    values.pop().ok_or_else(|| Denied::malformed(what))
}

fn string(term: &Term, what: &str) -> Result<String, Denied> {
    match term {
        Term::Str(s) => Ok(s.clone()),
        _ => Err(Denied::malformed(format_args!("`{what}` is not a string"))),
    }
}

fn date(term: &Term, what: &str) -> Result<DateTime<Utc>, Denied> {
    match term {
        Term::Date(secs) => i64::try_from(*secs)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(|| Denied::malformed(format_args!("`{what}` is out of range"))),
        _ => Err(Denied::malformed(format_args!("`{what}` is not a date"))),
    }
}

fn string_set(term: &Term, what: &str) -> Result<BTreeSet<String>, Denied> {
    match term {
        Term::Set(items) => items.iter().map(|t| string(t, what)).collect(),
        _ => Err(Denied::malformed(format_args!("`{what}` is not a set"))),
    }
}

/// Unary facts `pred(x)` as their single terms.
fn unary(terms: Vec<Vec<Term>>) -> Vec<Term> {
    terms.into_iter().filter_map(|t| t.into_iter().next()).collect()
}

fn pair<'a>(terms: &'a [Term], what: &str) -> Result<(&'a Term, &'a Term), Denied> {
    match terms {
        [a, b] => Ok((a, b)),
        _ => Err(Denied::malformed(what)),
    }
}

fn triple<'a>(terms: &'a [Term], what: &str) -> Result<(&'a Term, &'a Term, &'a Term), Denied> {
    match terms {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(Denied::malformed(what)),
    }
}

fn table_action(t: &Term, a: &Term) -> Result<(TableName, Action), Denied> {
    let table = string(t, "table")?.parse::<TableName>().map_err(Denied::malformed)?;
    let action = string(a, "action")?.parse::<Action>().map_err(Denied::malformed)?;
    Ok((table, action))
}

/// Reads a verified token's authority facts and attenuation limits.
fn read_token(biscuit: Biscuit, limits: AuthorizerLimits) -> Result<VerifiedToken, Denied> {
    let mut a = AuthorizerBuilder::new()
        .set_limits(limits)
        .build(&biscuit)
        .map_err(Denied::malformed)?;

    // Authority facts: `query` trusts only the authority block (and the
    // empty authorizer), never an attenuation block.
    let vault = string(
        &one(unary(query(&mut a, rule!("data($v) <- vault($v)"), false)?), "vault")?,
        "vault",
    )?
    .parse::<VaultId>()
    .map_err(Denied::malformed)?;
    let app = AppId::new(string(
        &one(unary(query(&mut a, rule!("data($v) <- app($v)"), false)?), "app")?,
        "app",
    )?);
    let grant_id = string(
        &one(unary(query(&mut a, rule!("data($v) <- grant($v)"), false)?), "grant")?,
        "grant",
    )?
    .parse::<GrantId>()
    .map_err(Denied::malformed)?;
    let grant_version = match one(
        unary(query(&mut a, rule!("data($v) <- grant_version($v)"), false)?),
        "grant_version",
    )? {
        Term::Integer(v) => u64::try_from(v).map_err(Denied::malformed)?,
        _ => return Err(Denied::malformed("`grant_version` is not an integer")),
    };
    let issued_at = date(
        &one(
            unary(query(&mut a, rule!("data($v) <- issued_at($v)"), false)?),
            "issued_at",
        )?,
        "issued_at",
    )?;
    let token_expires_at = date(
        &one(
            unary(query(&mut a, rule!("data($v) <- expires_at($v)"), false)?),
            "expires_at",
        )?,
        "expires_at",
    )?;
    if token_expires_at <= issued_at || token_expires_at - issued_at > MAX_TOKEN_LIFETIME {
        return Err(Denied::malformed("its lifetime exceeds 15 minutes"));
    }

    let mut only_columns: BTreeMap<(TableName, Action), ColumnSet> = BTreeMap::new();
    let mut all_columns: BTreeSet<(TableName, Action)> = BTreeSet::new();
    let mut rows: BTreeMap<(TableName, Action), Vec<RowScope>> = BTreeMap::new();
    for terms in query(&mut a, rule!("data($t, $a, $c) <- columns($t, $a, $c)"), false)? {
        let (t, ac, c) = triple(&terms, "columns")?;
        let key = table_action(t, ac)?;
        let set = ColumnSet::Only(string_set(c, "columns")?);
        let merged = match only_columns.remove(&key) {
            Some(old) => old.intersect(&set),
            None => set,
        };
        only_columns.insert(key, merged);
    }
    for terms in query(&mut a, rule!("data($t, $a) <- all_columns($t, $a)"), false)? {
        let (t, ac) = pair(&terms, "all_columns")?;
        all_columns.insert(table_action(t, ac)?);
    }
    for terms in query(&mut a, rule!("data($t, $a, $r) <- rows($t, $a, $r)"), false)? {
        let (t, ac, r) = triple(&terms, "rows")?;
        let scope = string(r, "rows")?.parse::<RowScope>().map_err(Denied::malformed)?;
        rows.entry(table_action(t, ac)?).or_default().push(scope);
    }
    let mut authority = GrantSpec::new();
    for terms in query(&mut a, rule!("data($t, $a) <- right($t, $a)"), false)? {
        let (t, ac) = pair(&terms, "right")?;
        let key = table_action(t, ac)?;
        // A `columns` fact narrows even when `all_columns` is present, as the
        // Datalog `reject` does.
        let columns = match (only_columns.get(&key), all_columns.contains(&key)) {
            (Some(set), _) => set.clone(),
            (None, true) => ColumnSet::All,
            (None, false) => {
                return Err(Denied::malformed(format_args!(
                    "no column list for `{}:{}`",
                    key.0, key.1
                )));
            }
        };
        let row_scope = match rows.get(&key).map(Vec::as_slice) {
            Some([scope]) => *scope,
            _ => {
                return Err(Denied::malformed(format_args!(
                    "expected one row scope for `{}:{}`",
                    key.0, key.1
                )));
            }
        };
        authority
            .insert(TablePermission {
                table: key.0,
                actions: BTreeSet::from([key.1]),
                columns,
                row_scope,
            })
            .map_err(Denied::malformed)?;
    }

    // Attenuation limits, from any block: they can only narrow, and each
    // block's own checks enforce them (these facts drive the catalog and
    // the precise denial kinds).
    let limit_actions = unary(query(&mut a, rule!("data($s) <- limit_actions($s)"), true)?)
        .iter()
        .map(|t| string_set(t, "limit_actions"))
        .collect::<Result<Vec<_>, _>>()?;
    let limit_tables = unary(query(&mut a, rule!("data($s) <- limit_tables($s)"), true)?)
        .iter()
        .map(|t| string_set(t, "limit_tables"))
        .collect::<Result<Vec<_>, _>>()?;
    let limit_table_actions = query(&mut a, rule!("data($t, $s) <- limit_table_actions($t, $s)"), true)?
        .iter()
        .map(|terms| {
            let (t, s) = pair(terms, "limit_table_actions")?;
            Ok((string(t, "limit_table_actions")?, string_set(s, "limit_table_actions")?))
        })
        .collect::<Result<Vec<_>, Denied>>()?;
    let limit_columns = query(&mut a, rule!("data($t, $s) <- limit_columns($t, $s)"), true)?
        .iter()
        .map(|terms| {
            let (t, s) = pair(terms, "limit_columns")?;
            Ok((string(t, "limit_columns")?, string_set(s, "limit_columns")?))
        })
        .collect::<Result<Vec<_>, Denied>>()?;
    let mut expires_at = token_expires_at;
    for t in unary(query(&mut a, rule!("data($d) <- limit_expires_at($d)"), true)?) {
        expires_at = expires_at.min(date(&t, "limit_expires_at")?);
    }

    let mut effective = GrantSpec::new();
    for (table, action, access) in authority.pairs() {
        let name = table.to_string();
        let op = action.as_str();
        if limit_actions.iter().any(|s| !s.contains(op))
            || limit_tables.iter().any(|s| !s.contains(&name))
            || limit_table_actions.iter().any(|(t, s)| *t == name && !s.contains(op))
        {
            continue;
        }
        let mut columns = access.columns.clone();
        for (_, set) in limit_columns.iter().filter(|(t, _)| *t == name) {
            columns = columns.intersect(&ColumnSet::Only(set.clone()));
        }
        if columns.is_empty() {
            continue;
        }
        effective
            .insert(TablePermission {
                table: table.clone(),
                actions: BTreeSet::from([action]),
                columns,
                row_scope: access.row_scope,
            })
            .map_err(Denied::malformed)?;
    }

    // The DPoP binding (RFC 9449 `cnf.jkt`), from any block: a block can
    // only bind an unbound token (which only restricts it), never unbind one.
    let mut bound = BTreeSet::new();
    for t in unary(query(&mut a, rule!("data($j) <- cnf_jkt($j)"), true)?) {
        bound.insert(string(&t, "cnf_jkt")?);
    }
    if bound.len() > 1 {
        return Err(Denied::malformed("it is bound to two different DPoP keys"));
    }
    let dpop_jkt = bound.pop_first();

    let revocation_ids = biscuit.revocation_identifiers();
    Ok(VerifiedToken {
        biscuit,
        vault,
        app,
        grant_id,
        grant_version,
        issued_at,
        expires_at,
        authority_expires_at: token_expires_at,
        authority,
        effective,
        revocation_ids,
        dpop_jkt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKeyPair;
    use crate::revocation::GrantStatus;
    use crate::token::{TokenClaims, mint};
    use biscuit_auth::macros::block;
    use chrono::TimeDelta;

    fn t(s: &str) -> TableName {
        s.parse().unwrap()
    }

    fn setup() -> (RootKeyPair, Authorizer, TokenClaims) {
        let root = RootKeyPair::generate();
        let view = Arc::new(RevocationView::new());
        let grant = GrantSpec::from_permissions([
            TablePermission::new(t("contacts.people"), [Action::Read]).with_columns(ColumnSet::only(["name"]))
        ])
        .unwrap();
        let claims = TokenClaims::new(
            VaultId::generate(),
            AppId::new("app"),
            GrantId::generate(),
            1,
            grant,
            Utc::now(),
            TimeDelta::minutes(5),
        );
        view.set_grant(claims.grant_id, 1, GrantStatus::Active);
        let authz = Authorizer::new(root.public_key(), view);
        (root, authz, claims)
    }

    /// The Datalog layer on its own (without the Rust pre-checks) refuses a
    /// right or a column added by an attenuation block.
    #[test]
    fn datalog_alone_ignores_facts_from_attenuation_blocks() {
        let (root, authz, claims) = setup();
        let token = mint(&root, &claims).unwrap();
        let biscuit = Biscuit::from_base64(&token, authz.root.0).unwrap();
        let widened = biscuit
            .append(block!(
                r#"
                right("contacts.people", "update");
                all_columns("contacts.people", "update");
                all_columns("contacts.people", "read");
                vault("someone-else");
                "#
            ))
            .unwrap();
        let read = Request::new(claims.vault, t("contacts.people"), Action::Read, Utc::now());
        assert!(authz.run_datalog(&widened, &read).is_ok());
        let update = Request::new(claims.vault, t("contacts.people"), Action::Update, Utc::now());
        assert!(authz.run_datalog(&widened, &update).is_err());
        let phone = read.clone().with_columns(["phone"]);
        assert!(authz.run_datalog(&widened, &phone).is_err());
        let other_vault = Request::new(VaultId::generate(), t("contacts.people"), Action::Read, Utc::now());
        assert!(authz.run_datalog(&widened, &other_vault).is_err());
        // And the facts read for the catalog ignore them too.
        let v = authz.verify(&widened.to_base64().unwrap()).unwrap();
        assert_eq!(v.grant(), v.authority_grant());
        assert!(!v.grant().allows(&t("contacts.people"), Action::Update));
    }

    /// The Datalog layer on its own enforces expiry and the column list.
    #[test]
    fn datalog_alone_enforces_expiry_and_columns() {
        let (root, authz, claims) = setup();
        let token = mint(&root, &claims).unwrap();
        let biscuit = Biscuit::from_base64(&token, authz.root.0).unwrap();
        let late = Request::new(
            claims.vault,
            t("contacts.people"),
            Action::Read,
            claims.expires_at + TimeDelta::seconds(1),
        );
        assert!(authz.run_datalog(&biscuit, &late).is_err());
        let name = Request::new(claims.vault, t("contacts.people"), Action::Read, Utc::now())
            .with_columns(["name", "id", "_seq"]);
        assert!(authz.run_datalog(&biscuit, &name).is_ok());
        let email = name.clone().with_columns(["name", "email"]);
        assert!(authz.run_datalog(&biscuit, &email).is_err());
    }

    #[test]
    fn classify_names_foreign_checks() {
        let (root, authz, claims) = setup();
        let token = mint(&root, &claims).unwrap();
        let biscuit = Biscuit::from_base64(&token, authz.root.0).unwrap();
        let restricted = biscuit
            .append(block!(r#"check if operation("delete");"#))
            .unwrap()
            .to_base64()
            .unwrap();
        let req = Request::new(claims.vault, t("contacts.people"), Action::Read, Utc::now());
        let denied = authz.authorize(&restricted, &req).unwrap_err();
        assert!(
            matches!(&denied.kind, DeniedKind::Restricted { check } if check.contains("operation(\"delete\")")),
            "{denied:?}"
        );
    }

    /// A token bound the way the OAuth server binds one: an appended block
    /// with the key's thumbprint and a check for the proven one.
    fn bind(token: &str, root: &RootKeyPair, jkt: &str) -> String {
        Biscuit::from_base64(token, root.public_key().0)
            .unwrap()
            .append(block!(r#"cnf_jkt({jkt}); check if dpop_jkt({jkt});"#))
            .unwrap()
            .to_base64()
            .unwrap()
    }

    #[test]
    fn bound_tokens_need_a_proof_of_their_key() {
        let (root, authz, claims) = setup();
        let token = bind(&mint(&root, &claims).unwrap(), &root, "key-1");
        let verified = authz.verify(&token).unwrap();
        assert_eq!(verified.dpop_jkt(), Some("key-1"));
        assert_eq!(verified.block_count(), 2);
        let read = Request::new(claims.vault, t("contacts.people"), Action::Read, Utc::now()).with_columns(["name"]);

        let allowed = authz.check(&verified, &read.clone().with_dpop_jkt("key-1")).unwrap();
        assert_eq!(allowed.app, claims.app);
        for request in [read.clone(), read.clone().with_dpop_jkt("key-2")] {
            let denied = authz.check(&verified, &request).unwrap_err();
            assert_eq!(denied.kind, DeniedKind::DpopRequired, "{denied:?}");
            assert_eq!(denied.kind.code(), "dpop_required");
        }

        // The Datalog layer on its own enforces the binding too.
        let biscuit = Biscuit::from_base64(&token, authz.root.0).unwrap();
        assert!(
            authz
                .run_datalog(&biscuit, &read.clone().with_dpop_jkt("key-1"))
                .is_ok()
        );
        assert!(authz.run_datalog(&biscuit, &read).is_err());
        let err = authz
            .run_datalog(&biscuit, &read.clone().with_dpop_jkt("key-2"))
            .unwrap_err();
        assert_eq!(classify(err, &read).kind, DeniedKind::DpopRequired);
    }

    #[test]
    fn unbound_tokens_ignore_a_proven_key() {
        let (root, authz, claims) = setup();
        let verified = authz.verify(&mint(&root, &claims).unwrap()).unwrap();
        assert_eq!(verified.dpop_jkt(), None);
        let read = Request::new(claims.vault, t("contacts.people"), Action::Read, Utc::now()).with_dpop_jkt("key-1");
        assert!(authz.check(&verified, &read).is_ok());
    }

    #[test]
    fn a_token_bound_to_two_keys_is_malformed() {
        let (root, authz, claims) = setup();
        let once = bind(&mint(&root, &claims).unwrap(), &root, "key-1");
        // The same key twice is still one binding.
        let same = bind(&once, &root, "key-1");
        assert_eq!(authz.verify(&same).unwrap().dpop_jkt(), Some("key-1"));
        let twice = bind(&once, &root, "key-2");
        assert_eq!(authz.verify(&twice).unwrap_err().kind, DeniedKind::Malformed);
    }

    #[test]
    fn denied_serializes_with_kind_fields() {
        let d = Denied::new(
            DeniedKind::MissingRight {
                required: "contacts.people:update".into(),
            },
            "nope",
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "missing_right", "required": "contacts.people:update", "reason": "nope"})
        );
        assert_eq!(d.kind.code(), "missing_right");
    }
}
