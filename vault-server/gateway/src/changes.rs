//! The change feed (`GET /v1/changes`): the changes after a cursor to the
//! tables the token may read, oldest first, each confined like a read —
//! only the readable columns, and for `own` scope only the app's rows.
//!
//! A feed runs in two phases, both in sequence order (sequence numbers are
//! per vault, so one position orders every table):
//!
//! 1. **Load** (no `since`): the rows as they are now whose newest version
//!    is at or before the vault's last sequence number when the load began
//!    (`hw`), read through the confined catalog, each as an `insert`.
//! 2. **Log**: every version after `hw` (then after the last one
//!    delivered), from the commit log ([`coffer_storage::changes`]). A
//!    row changed during the load is shadowed from phase 1 and arrives here,
//!    so nothing is missed and nothing comes twice.
//!
//! `own` scope in the log phase: a row's `_created_by` never changes while
//! it lives (updates keep it, a tombstone keeps it), so a row enters an
//! app's scope only by an insert and leaves it only by a delete, and both
//! versions carry the owner. Showing exactly the versions the app owns is
//! therefore the whole rule: an id deleted and inserted again by another app
//! shows the app its delete and nothing after.
//!
//! Subsets ("shapes": per-table filters and column selections) are in
//! [`shape`].
//!
//! The cursor is opaque: a body (phase, position, `hw`, the app, the
//! tables asked and a digest of the subsets) and a tag over it keyed with
//! the vault's keys, which stay in the engine
//! ([`coffer_storage::changes::cursor_tag`]). The vault comes from the
//! token; a cursor from another vault or app, or altered, does not verify
//! and is refused without saying more.
//!
//! The live stream (`GET /v1/changes/stream`) reads the same pages
//! ([`stream_step`]), each change with the cursor just after it, so a client
//! resumes after any change it received; it is woken by the engine's commit
//! notifications and carries no rows of its own. [`recheck`] is what it
//! checks again each time it wakes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_auth::{Action, ColumnSet, RowScope};
use coffer_core::TableName;
use coffer_core::schema::VISIBLE_SYSTEM_COLUMNS;
use coffer_query::base_context;
use coffer_storage::changes::{
    LogChange, LogRead, cursor_tag, last_seq, log_holds_after, log_trimmed_upto, log_upto, read_log, tables_version,
};
use coffer_storage::{InstalledTable, RowVersion};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, col, lit};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::caller::Caller;
use crate::catalog::{ConfinedTable, Use};
use crate::error::GatewayError;
use crate::request::{Logged, Operation};
use crate::rows::{Row, plan_error};
use crate::sql::collect_bounded;
use crate::values::batch_to_objects;

mod shape;
pub use shape::Shape;

/// Changes a page holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// Most changes a page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Most tables one `tables=` may name.
pub const MAX_TABLES: usize = 64;

/// A parsed feed request.
#[derive(Clone, Debug)]
pub struct ChangesQuery {
    /// `since=`: the previous page's cursor (`None`: start with the load).
    pub since: Option<String>,
    /// `tables=`: the tables asked for (`None`: every table the token may read).
    pub tables: Option<Vec<TableName>>,
    /// Changes per page.
    pub limit: usize,
    /// `filter[table]=` and `select[table]=`: the subsets followed of some
    /// tables (the others are followed whole).
    pub shapes: BTreeMap<TableName, Shape>,
}

impl ChangesQuery {
    /// Parses `since`, `tables` (comma-separated `schema.table`), `limit`,
    /// and the subsets `filter[schema.table]` (repeatable) and
    /// `select[schema.table]`; any other parameter, or one given twice, is
    /// refused by name.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, GatewayError> {
        let mut query = ChangesQuery {
            since: None,
            tables: None,
            limit: DEFAULT_LIMIT,
            shapes: BTreeMap::new(),
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            if shape::parse_param(k, v, &mut query.shapes)? {
                continue;
            }
            if seen.contains(&k.as_str()) {
                return Err(GatewayError::filter(k, "given more than once"));
            }
            match k.as_str() {
                "since" => query.since = Some(v.clone()),
                "limit" => {
                    query.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| GatewayError::filter("limit", format!("must be 1 to {MAX_LIMIT}")))?;
                }
                "tables" => {
                    let names: Vec<&str> = v.split(',').map(str::trim).collect();
                    if names.len() > MAX_TABLES {
                        return Err(GatewayError::filter("tables", format!("at most {MAX_TABLES} tables")));
                    }
                    let mut tables = Vec::with_capacity(names.len());
                    for name in names {
                        let table: TableName =
                            name.parse().map_err(|_| GatewayError::TableNotFound(name.to_owned()))?;
                        if !tables.contains(&table) {
                            tables.push(table);
                        }
                    }
                    query.tables = Some(tables);
                }
                other => {
                    return Err(GatewayError::filter(
                        other,
                        "the change feed takes `since`, `tables`, `limit`, `filter[schema.table]` and `select[schema.table]`",
                    ));
                }
            }
            seen.push(k);
        }
        if let Some(tables) = &query.tables
            && let Some(table) = query.shapes.keys().find(|t| !tables.contains(t))
        {
            return Err(GatewayError::filter(
                &format!("filter[{table}]"),
                "names a table that `tables` does not",
            ));
        }
        Ok(query)
    }

    /// The tables asked, as a cursor records them (`*`: every readable one).
    fn tables_key(&self) -> String {
        match &self.tables {
            None => "*".to_owned(),
            Some(asked) => asked.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        }
    }
}

/// What a change did, as the app sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// The row appeared (created, or first seen in the load).
    Insert,
    /// The row changed.
    Update,
    /// The row is gone.
    Delete,
}

/// One change of the feed.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// What happened.
    pub op: ChangeOp,
    /// `schema.table`.
    pub table: String,
    /// The row id.
    pub id: String,
    /// The change's sequence number (the row's `_seq` after it).
    pub seq: i64,
    /// The row after the change with the readable columns (`null` for a
    /// delete).
    pub row: Option<Row>,
}

/// What the app must remove from its copy before applying a page: the
/// token now reads less than when the cursor was given.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Purge {
    /// `schema.table`.
    pub table: String,
    /// `table`: every row of the table; `columns`: these columns of every
    /// row; `rows`: the rows other apps created (only the app's own remain).
    pub drop: PurgeKind,
    /// The columns to drop (for `columns`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// What a [`Purge`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeKind {
    /// The whole table.
    Table,
    /// Some columns of every row.
    Columns,
    /// The rows whose `_created_by` is another app.
    Rows,
}

/// One page of the feed.
#[derive(Debug)]
pub struct ChangePage {
    /// What to remove from the app's copy first (empty unless the grant
    /// narrowed since the cursor was given).
    pub purge: Vec<Purge>,
    /// The changes, oldest first.
    pub changes: Vec<Change>,
    /// Where the next request resumes (`since=`).
    pub cursor: String,
    /// Whether more changes may wait right now (ask again at once).
    pub more: bool,
    /// The tables the page followed (what the access log records).
    pub tables: Vec<TableName>,
}

impl Logged for ChangePage {
    fn rows(&self) -> u64 {
        self.changes.len() as u64
    }

    fn learned(&self) -> Option<(Operation, &[TableName])> {
        Some((Operation::Read, &self.tables))
    }
}

/// Where a feed stands, as its cursor carries it.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, Serialize)]
struct Position {
    /// `load` or `log`.
    phase: String,
    /// The last sequence number delivered (or skipped over).
    after: i64,
    /// The vault's last sequence number when the load began.
    hw: i64,
    /// The app the cursor was given to.
    app: String,
    /// The tables asked (`*`: every readable table).
    tables: String,
    /// What the token read of each table when the cursor was given
    /// ([`TableView`]), to tell what to purge when it reads less.
    #[serde(default)]
    seen: BTreeMap<String, String>,
    /// The cursor's form: 1 records `seen`; 0 (a cursor from before) does
    /// not, and resumes without purging.
    #[serde(default)]
    form: u8,
    /// A digest of the subsets followed ([`shape`]; empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    shape: String,
}

/// The cursor form this server writes.
const CURSOR_FORM: u8 = 1;

/// What a token reads of one table, as a cursor records it: the readable
/// user columns as a hexadecimal bit mask over the table's columns in
/// definition order (compact, so a cursor stays short for wide grants),
/// and the row scope.
struct TableView {
    columns: Vec<bool>,
    own: bool,
}

impl TableView {
    fn of(table: &FeedTable) -> TableView {
        TableView {
            columns: table
                .installed
                .def
                .columns
                .iter()
                .map(|c| table.columns.contains(&c.name))
                .collect(),
            own: table.scope == RowScope::Own,
        }
    }

    fn encode(&self) -> String {
        let mut hex = String::new();
        for chunk in self.columns.chunks(4) {
            let nibble = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << i));
            hex.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
        format!("{hex}:{}", if self.own { "own" } else { "all" })
    }

    fn decode(text: &str) -> Option<TableView> {
        let (hex, scope) = text.split_once(':')?;
        let mut columns = Vec::with_capacity(hex.len() * 4);
        for c in hex.chars() {
            let nibble = c.to_digit(16)?;
            columns.extend((0..4).map(|i| nibble & (1 << i) != 0));
        }
        let own = match scope {
            "own" => true,
            "all" => false,
            _ => return None,
        };
        Some(TableView { columns, own })
    }
}

/// What to purge, now that the token reads `now` of the tables it read
/// `then` (`gone`: tables it read then and no longer may); `None` when it
/// now reads more somewhere (the cursor cannot resume: the app lacks rows
/// or columns it may now see).
fn purge_between(then: &BTreeMap<String, String>, now: &[FeedTable], gone: &[TableName]) -> Option<Vec<Purge>> {
    let mut purge = Vec::new();
    for name in gone {
        if then.contains_key(&name.to_string()) {
            purge.push(Purge {
                table: name.to_string(),
                drop: PurgeKind::Table,
                columns: Vec::new(),
            });
        }
    }
    for table in now {
        let name = table.installed.name.to_string();
        let current = TableView::of(table);
        // A table the cursor never read (the token reads it only now, or
        // the cursor predates views): only a load gives its rows.
        let before = then.get(&name).and_then(|v| TableView::decode(v))?;
        let mut dropped = Vec::new();
        for (i, column) in table.installed.def.columns.iter().enumerate() {
            match (before.columns.get(i).copied().unwrap_or(false), current.columns[i]) {
                (true, false) => dropped.push(column.name.clone()),
                (false, true) => return None,
                _ => {}
            }
        }
        if before.own && !current.own {
            return None;
        }
        if !dropped.is_empty() {
            purge.push(Purge {
                table: name.clone(),
                drop: PurgeKind::Columns,
                columns: dropped,
            });
        }
        if !before.own && current.own {
            purge.push(Purge {
                table: name,
                drop: PurgeKind::Rows,
                columns: Vec::new(),
            });
        }
    }
    Some(purge)
}

/// One table of the feed and what the token may read of it.
struct FeedTable {
    installed: Arc<InstalledTable>,
    columns: ColumnSet,
    scope: RowScope,
    /// The subset followed (`None`: the whole table).
    shape: Option<shape::Compiled>,
}

/// The changes after `query.since` within the token's grant, within the
/// gateway's limits.
pub async fn changes(caller: &Caller, query: &ChangesQuery) -> Result<ChangePage, GatewayError> {
    caller
        .bounded(async {
            let page = read_page(caller, query).await?;
            Ok(ChangePage {
                purge: page.purge,
                changes: page.changes.into_iter().map(|(c, _)| c).collect(),
                cursor: seal(caller, &page.next).await?,
                more: page.more,
                tables: page.tables,
            })
        })
        .await
}

/// An entity tag for the feed's answer to `query` now: it changes when a
/// followed table is written, when the log of one is trimmed, and when the
/// token reads more or less of them; otherwise the answer a client already
/// holds for the same request is still a right one (a load from it goes on
/// from its own cursor), so `If-None-Match` can be answered `304` without
/// reading the vault. Bound to the vault's keys and the app.
pub async fn etag(caller: &Caller, query: &ChangesQuery) -> Result<String, GatewayError> {
    let engine = caller.gateway().engine();
    let vault = caller.vault();
    let (tables, _) = feed_tables(caller, query).await?;
    let names: Vec<TableName> = tables.iter().map(|t| t.installed.name.clone()).collect();
    let views: Vec<String> = tables.iter().map(|t| TableView::of(t).encode()).collect();
    let version = tables_version(engine, vault, &names).await?;
    let trimmed = log_trimmed_upto(engine, vault, &names).await?;
    let text = format!(
        "etag\0{CURSOR_FORM}\0{}\0{}\0{}\0{}\0{}\0{version}\0{trimmed}",
        query.since.as_deref().unwrap_or(""),
        query.tables_key(),
        shape::key(&query.shapes),
        query.limit,
        views.join(","),
    );
    let tag = cursor_tag(engine, vault, caller.app().as_str(), &text).await?;
    Ok(format!("\"{}\"", URL_SAFE_NO_PAD.encode(tag)))
}

/// Changes a live stream reads at once: it sends them before it reads
/// more, so a stream never holds more than this many.
pub const STREAM_PAGE: usize = 100;

/// One change of a live stream and the cursor just after it: a client that
/// stored this cursor resumes with the next change.
#[derive(Clone, Debug)]
pub struct StreamChange {
    /// The change, as the feed gives it.
    pub change: Change,
    /// Where a stream or feed resumes after it (`since=`, `Last-Event-ID`).
    pub cursor: String,
}

/// One read of a live stream: the feed's next page, each change with its
/// own cursor.
#[derive(Debug)]
pub struct StreamStep {
    /// What to remove from the app's copy first (the grant narrowed since
    /// the cursor was given).
    pub purge: Vec<Purge>,
    /// The changes, oldest first.
    pub changes: Vec<StreamChange>,
    /// Where the next read resumes: after the last change, or further,
    /// past changes the token does not see.
    pub cursor: String,
    /// Whether more changes may wait right now (read again at once).
    pub more: bool,
    /// The tables the stream follows.
    pub tables: Vec<TableName>,
}

impl Logged for StreamStep {
    fn rows(&self) -> u64 {
        self.changes.len() as u64
    }

    fn learned(&self) -> Option<(Operation, &[TableName])> {
        Some((Operation::Read, &self.tables))
    }
}

/// Parses a live stream's query: `since`, `tables` and the subsets as the
/// feed takes them (a stream reads [`STREAM_PAGE`] changes at a time; it
/// takes no `limit`).
pub fn parse_stream_query(pairs: &[(String, String)]) -> Result<ChangesQuery, GatewayError> {
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k == "limit") {
        return Err(GatewayError::filter(
            k,
            "the change stream takes `since`, `tables`, `filter[schema.table]` and `select[schema.table]`",
        ));
    }
    Ok(ChangesQuery {
        limit: STREAM_PAGE,
        ..ChangesQuery::parse(pairs)?
    })
}

/// The next changes of a live stream after `query.since` (the feed's
/// [`changes`], with the same confinement and the same refusals), each with
/// the cursor after it, within the gateway's limits.
pub async fn stream_step(caller: &Caller, query: &ChangesQuery) -> Result<StreamStep, GatewayError> {
    caller
        .bounded(async {
            let page = read_page(caller, query).await?;
            let ends_at_next = page.changes.last().is_some_and(|(_, p)| *p == page.next);
            let mut changes = Vec::with_capacity(page.changes.len());
            for (change, position) in page.changes {
                let cursor = seal(caller, &position).await?;
                changes.push(StreamChange { change, cursor });
            }
            let cursor = match changes.last() {
                Some(last) if ends_at_next => last.cursor.clone(),
                _ => seal(caller, &page.next).await?,
            };
            Ok(StreamStep {
                purge: page.purge,
                changes,
                cursor,
                more: page.more,
                tables: page.tables,
            })
        })
        .await
}

/// Checks again, now, what authenticating the request checked once: that
/// the token has not expired, and that neither it nor its grant has been
/// revoked or changed since (the revocation view). A reader that outlives
/// its request (the live stream) calls it on every wake-up; the refusal is
/// the [`GatewayError::InvalidToken`] a new request would get (`expired`,
/// `revoked`, `grant_changed`, `unknown_grant`).
pub fn recheck(caller: &Caller) -> Result<(), GatewayError> {
    let expires_at = caller.expires_at();
    if chrono::Utc::now() >= expires_at {
        return Err(GatewayError::InvalidToken {
            code: "expired",
            reason: format!("the access token expired at {}; get a new one", expires_at.to_rfc3339()),
        });
    }
    // The authorizer checks the revocation view before the right asked, so
    // any named table will do; only a token refusal matters here.
    let Some(table) = caller.grant().tables().next() else {
        return Ok(());
    };
    match caller.check(table, Action::Read, &[]) {
        Err(e @ GatewayError::InvalidToken { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// What the app must purge from its copy now that the user changed its
/// grant, for a reader whose token the change made stale (the live stream
/// ending with `grant-changed`): what the grant reads now against what the
/// reader's cursor (`query.since`) recorded. Empty without a cursor, or when
/// the grant reads no less; `None` when it reads more somewhere, or is
/// gone (the app loads again, or stops).
pub async fn purge_for_changed_grant(
    caller: &Caller,
    query: &ChangesQuery,
) -> Result<Option<Vec<Purge>>, GatewayError> {
    let Some(cursor) = &query.since else {
        return Ok(Some(Vec::new()));
    };
    let Some(spec) = caller.current_grant().await else {
        return Ok(None);
    };
    let position = verify_cursor(caller, cursor).await?;
    let engine = caller.gateway().engine();
    let mut now = Vec::new();
    let mut gone = Vec::new();
    for name in position.seen.keys().filter_map(|t| t.parse::<TableName>().ok()) {
        let access = spec.access(&name, Action::Read);
        let installed = match access {
            Some(_) => engine.table(caller.vault(), &name).await.ok(),
            None => None,
        };
        match (installed, access) {
            (Some(installed), Some(access)) => now.push(FeedTable {
                installed,
                columns: access.columns.clone(),
                scope: access.row_scope,
                shape: None,
            }),
            _ => gone.push(name),
        }
    }
    Ok(purge_between(&position.seen, &now, &gone))
}

/// A page of the feed before its cursors are sealed.
struct RawPage {
    purge: Vec<Purge>,
    /// Each change with the position just after it.
    changes: Vec<(Change, Position)>,
    /// Where the next page resumes.
    next: Position,
    more: bool,
    tables: Vec<TableName>,
}

async fn read_page(caller: &Caller, query: &ChangesQuery) -> Result<RawPage, GatewayError> {
    let engine = caller.gateway().engine();
    let vault = caller.vault();
    let (tables, unreadable) = feed_tables(caller, query).await?;
    let names: Vec<TableName> = tables.iter().map(|t| t.installed.name.clone()).collect();
    let tables_key = query.tables_key();
    let shape_key = shape::key(&query.shapes);
    let app = caller.app().as_str().to_owned();
    let seen: BTreeMap<String, String> = tables
        .iter()
        .map(|t| (t.installed.name.to_string(), TableView::of(t).encode()))
        .collect();
    let (position, purge) = match &query.since {
        None => {
            if let Some((_, refusal)) = unreadable.into_iter().next() {
                return Err(refusal);
            }
            let position = Position {
                phase: "load".into(),
                after: 0,
                hw: last_seq(engine, vault).await?,
                app: app.clone(),
                tables: tables_key.clone(),
                seen,
                form: CURSOR_FORM,
                shape: shape_key,
            };
            (position, Vec::new())
        }
        Some(cursor) => {
            let position = verify_cursor(caller, cursor).await?;
            if position.app != app || !resumes_with(&position.tables, &tables_key) || position.shape != shape_key {
                return Err(bad_cursor());
            }
            // A table asked that the token no longer reads is purged if the
            // cursor read it, and refused as before otherwise.
            let mut gone = Vec::new();
            for (table, refusal) in unreadable {
                if !position.seen.contains_key(&table.to_string()) {
                    return Err(refusal);
                }
                gone.push(table);
            }
            if query.tables.is_none() {
                gone.extend(
                    position
                        .seen
                        .keys()
                        .filter(|t| !seen.contains_key(*t))
                        .filter_map(|t| t.parse().ok()),
                );
            }
            let purge = if position.form < CURSOR_FORM {
                Vec::new()
            } else {
                purge_between(&position.seen, &tables, &gone).ok_or(GatewayError::ResyncRequired)?
            };
            let position = Position {
                seen,
                form: CURSOR_FORM,
                tables: tables_key.clone(),
                ..position
            };
            (position, purge)
        }
    };
    match position.phase.as_str() {
        "load" => {
            // The log must still hold what the load leaves to it.
            if !log_holds_after(engine, vault, &names, position.hw).await? {
                return Err(GatewayError::ResyncRequired);
            }
            let mut changes = Vec::new();
            for table in &tables {
                changes.extend(load_page(caller, table, position.after, position.hw, query.limit).await?);
            }
            changes.sort_by_key(|c| c.seq);
            let loaded = changes.len() <= query.limit;
            changes.truncate(query.limit);
            let at = |after: i64| Position {
                after,
                ..position.clone()
            };
            let next = if loaded {
                Position {
                    phase: "log".into(),
                    after: position.hw,
                    ..position.clone()
                }
            } else {
                at(changes.last().map_or(position.after, |c| c.seq))
            };
            let n = changes.len();
            let changes = changes
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let after = if i + 1 == n { next.clone() } else { at(c.seq) };
                    (c, after)
                })
                .collect();
            Ok(RawPage {
                purge,
                changes,
                next,
                more: true,
                tables: names,
            })
        }
        "log" => {
            let upto = log_upto(engine, vault).await?;
            let read = read_log(engine, vault, &names, position.after, upto, query.limit).await?;
            let LogRead::Page { changes, through } = read else {
                return Err(GatewayError::ResyncRequired);
            };
            let matched = match_subsets(&tables, &changes)?;
            let changes: Vec<(Change, Position)> = changes
                .iter()
                .zip(matched)
                .filter_map(|(c, matched)| {
                    let table = tables.iter().find(|t| t.installed.name == c.table)?;
                    let change = confine(caller, table, &c.version, matched)?;
                    let after = Position {
                        after: change.seq,
                        ..position.clone()
                    };
                    Some((change, after))
                })
                .collect();
            let next = Position {
                after: through,
                ..position
            };
            Ok(RawPage {
                purge,
                changes,
                next,
                more: through < upto,
                tables: names,
            })
        }
        _ => Err(bad_cursor()),
    }
}

/// The tables of the feed: those asked that the token may read, or every
/// table it may read, each with its subset; and the tables asked that it
/// may not, each with its refusal (as the rows API refuses it). A subset of
/// a table the token does not read is refused the same way.
async fn feed_tables(
    caller: &Caller,
    query: &ChangesQuery,
) -> Result<(Vec<FeedTable>, Vec<(TableName, GatewayError)>), GatewayError> {
    let asked = query.tables.as_deref();
    let engine = caller.gateway().engine();
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    let candidates: Vec<TableName> = match asked {
        Some(tables) => tables.to_vec(),
        None => {
            let mut all: Vec<TableName> = caller.grant().tables().cloned().collect();
            all.sort();
            all.dedup();
            all
        }
    };
    for table in candidates {
        let read = if asked.is_some() {
            match caller.check(&table, Action::Read, &[]) {
                Ok(read) => Some(read),
                Err(e @ (GatewayError::TableNotFound(_) | GatewayError::MissingRight { .. })) => {
                    unreadable.push((table, e));
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            caller.read_access(&table)?
        };
        let Some(read) = read else { continue };
        let installed = match engine.table(caller.vault(), &table).await {
            Ok(t) => t,
            Err(coffer_storage::StorageError::TableNotFound(_)) if asked.is_none() => continue,
            Err(e) => return Err(e.into()),
        };
        let shape = match query.shapes.get(&table) {
            Some(shape) => {
                let confined = ConfinedTable::open(caller, &table, Use::Read).await?;
                let readable = datafusion::catalog::TableProvider::schema(&confined);
                Some(shape::Compiled::new(shape, &readable, &table)?)
            }
            None => None,
        };
        out.push(FeedTable {
            installed,
            columns: read.access.columns.clone(),
            scope: read.row_scope(),
            shape,
        });
    }
    out.sort_by(|a, b| a.installed.name.cmp(&b.installed.name));
    if let Some(table) = query
        .shapes
        .keys()
        .find(|t| !out.iter().any(|f| &f.installed.name == *t))
    {
        // Asked in `tables` but unreadable: refused there (or purged).
        if !unreadable.iter().any(|(u, _)| u == table) {
            return Err(GatewayError::TableNotFound(table.to_string()));
        }
    }
    Ok((out, unreadable))
}

/// Up to `limit + 1` rows of `table` as they are now, with
/// `after < _seq <= hw`, oldest first, as the token may read them.
async fn load_page(
    caller: &Caller,
    table: &FeedTable,
    after: i64,
    hw: i64,
    limit: usize,
) -> Result<Vec<Change>, GatewayError> {
    let name = &table.installed.name;
    let confined = ConfinedTable::open(caller, name, Use::Read).await?;
    let columns: Vec<Expr> = datafusion::catalog::TableProvider::schema(&confined)
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::new_unqualified(f.name())))
        .collect();
    let ctx =
        base_context(caller.gateway().engine(), &caller.gateway().limits().query).map_err(GatewayError::internal)?;
    let mut condition = col("_seq").gt(lit(after)).and(col("_seq").lt_eq(lit(hw)));
    if let Some(predicate) = table.shape.as_ref().and_then(|s| s.predicate.clone()) {
        condition = condition.and(predicate);
    }
    let df = ctx
        .read_table(Arc::new(confined))
        .map_err(plan_error)?
        .filter(condition)
        .map_err(plan_error)?
        .select(columns)
        .map_err(plan_error)?
        .sort(vec![col("_seq").sort(true, false)])
        .map_err(plan_error)?
        .limit(0, Some(limit + 1))
        .map_err(plan_error)?;
    let mut rows = Vec::new();
    for b in &collect_bounded(df, limit + 1).await? {
        batch_to_objects(b, &mut rows);
    }
    Ok(rows
        .into_iter()
        .filter_map(|mut row| {
            let id = row.get("id")?.as_str()?.to_owned();
            let seq = row.get("_seq")?.as_i64()?;
            if let Some(shape) = &table.shape {
                shape.project(&mut row);
            }
            Some(Change {
                op: ChangeOp::Insert,
                table: name.to_string(),
                id,
                seq,
                row: Some(row),
            })
        })
        .collect())
}

/// Whether each change of a log page matches its table's subset (`true`
/// for tombstones and for tables followed whole).
fn match_subsets(tables: &[FeedTable], changes: &[Arc<LogChange>]) -> Result<Vec<bool>, GatewayError> {
    let mut matched = vec![true; changes.len()];
    for table in tables {
        let Some(shape) = &table.shape else { continue };
        let (at, versions): (Vec<usize>, Vec<RowVersion>) = changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.table == table.installed.name && !c.version.deleted)
            .map(|(i, c)| (i, c.version.clone()))
            .unzip();
        let result = shape.matching(&table.installed.def, &table.installed.arrow, &versions)?;
        for (i, m) in at.into_iter().zip(result) {
            matched[i] = m;
        }
    }
    Ok(matched)
}

/// A version from the log as the token may see it, or `None` when it is
/// outside the token's rows or, created outside the table's subset, never
/// was in it (`matched`: whether it matches the subset).
fn confine(caller: &Caller, table: &FeedTable, version: &RowVersion, matched: bool) -> Option<Change> {
    if table.scope == RowScope::Own && version.created_by != caller.app().as_str() {
        return None;
    }
    let created = version.created_at == version.updated_at && version.created_by == version.updated_by;
    let op = if version.deleted || !matched {
        if !version.deleted && created {
            return None;
        }
        // Deleted, or left the subset (see `shape`).
        ChangeOp::Delete
    } else if created {
        ChangeOp::Insert
    } else {
        ChangeOp::Update
    };
    let row = (op != ChangeOp::Delete).then(|| {
        let mut row: Map<String, Value> = version.to_api_json(&table.installed.def);
        row.retain(|k, _| VISIBLE_SYSTEM_COLUMNS.contains(&k.as_str()) || table.columns.contains(k));
        if let Some(shape) = &table.shape {
            shape.project(&mut row);
        }
        row
    });
    Some(Change {
        op,
        table: table.installed.name.to_string(),
        id: version.id.clone(),
        seq: version.seq.0,
        row,
    })
}

/// Whether a cursor given for the tables `given` (as [`ChangesQuery`]
/// records them) resumes a request for `asked`: the same tables, or fewer
/// of those named (an app stops following a table, as after its purge).
/// A table not followed before cannot be added: its history is missing.
fn resumes_with(given: &str, asked: &str) -> bool {
    given == asked || (given != "*" && asked != "*" && asked.split(',').all(|t| given.split(',').any(|g| g == t)))
}

fn bad_cursor() -> GatewayError {
    GatewayError::filter("since", "not a cursor of this feed; start again without `since`")
}

/// A cursor for `position`: its body, a dot, and the body's tag.
async fn seal(caller: &Caller, position: &Position) -> Result<String, GatewayError> {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).map_err(GatewayError::internal)?);
    let tag = cursor_tag(caller.gateway().engine(), caller.vault(), caller.app().as_str(), &body).await?;
    Ok(format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// The position a cursor holds, if its tag verifies with the caller's
/// vault's keys for the caller's app.
async fn verify_cursor(caller: &Caller, cursor: &str) -> Result<Position, GatewayError> {
    if cursor.len() > 4096 {
        return Err(bad_cursor());
    }
    let (body, tag) = cursor.split_once('.').ok_or_else(bad_cursor)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad_cursor())?;
    let expected = cursor_tag(caller.gateway().engine(), caller.vault(), caller.app().as_str(), body).await?;
    // Compared in constant time.
    if tag.len() != expected.len() || tag.iter().zip(expected.iter()).fold(0u8, |d, (a, b)| d | (a ^ b)) != 0 {
        return Err(bad_cursor());
    }
    let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad_cursor())?;
    serde_json::from_slice(&body).map_err(|_| bad_cursor())
}
