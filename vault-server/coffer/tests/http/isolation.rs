//! Isolation under load: 50 vaults, 3 apps with a random grant in each, and
//! thousands of random operations from concurrent clients, every answer
//! checked against a model of what each token may see and do. Each
//! operation goes through a random front end: the rows API, `POST /v1/sql`
//! or the Postgres wire protocol (one session per app and vault, reused),
//! and the three must agree with the model alike. Each app also follows the
//! change feed (`/v1/changes`) from time to time, resuming from its cursor,
//! into a local copy that must end equal to what the model lets it see. Set
//! `COFFER_TEST_SEED` to replay a seed (it is printed on failure).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_postgres::types::{FromSql, ToSql, Type};

const VAULTS: usize = 50;
const APPS: usize = 3;
const OPERATIONS: usize = 5_000;
const CLIENTS: usize = 32;
/// The share of operations that are an app reading its change feed.
const FEED_POLLS: f64 = 0.04;

/// The system columns every row carries.
const SYSTEM: [&str; 6] = ["id", "_seq", "_created_by", "_updated_by", "_created_at", "_updated_at"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Text,
    Int,
    Bool,
    Timestamp,
}

/// A column the test writes: name, type, required (not nullable).
type ColSpec = (&'static str, Kind, bool);

struct TableSpec {
    name: &'static str,
    columns: &'static [ColSpec],
}

/// The tables of three schemas, with the columns the test writes.
const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "contacts.people",
        columns: &[
            ("display_name", Kind::Text, true),
            ("given_name", Kind::Text, false),
            ("email", Kind::Text, false),
            ("organization", Kind::Text, false),
            ("favorite", Kind::Bool, false),
        ],
    },
    TableSpec {
        name: "contacts.groups",
        columns: &[("name", Kind::Text, true), ("description", Kind::Text, false)],
    },
    TableSpec {
        name: "tasks.lists",
        columns: &[
            ("name", Kind::Text, true),
            ("color", Kind::Text, false),
            ("position", Kind::Int, false),
            ("archived", Kind::Bool, false),
        ],
    },
    TableSpec {
        name: "tasks.items",
        columns: &[
            ("title", Kind::Text, true),
            ("completed", Kind::Bool, true),
            ("priority", Kind::Int, false),
            ("due_at", Kind::Timestamp, false),
            ("notes", Kind::Text, false),
        ],
    },
    TableSpec {
        name: "notes.notebooks",
        columns: &[
            ("name", Kind::Text, true),
            ("color", Kind::Text, false),
            ("position", Kind::Int, false),
        ],
    },
    TableSpec {
        name: "notes.notes",
        columns: &[
            ("title", Kind::Text, false),
            ("body", Kind::Text, false),
            ("pinned", Kind::Bool, false),
            ("format", Kind::Text, false),
        ],
    },
];

fn spec(table: &str) -> &'static TableSpec {
    TABLES.iter().find(|t| t.name == table).unwrap()
}

/// Every column of each table, from the built-in schema files.
fn schema_columns() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for text in [
        include_str!("../../../../schemas/contacts.json"),
        include_str!("../../../../schemas/tasks.json"),
        include_str!("../../../../schemas/notes.json"),
    ] {
        let schema: Value = serde_json::from_str(text).unwrap();
        for table in schema["tables"].as_array().unwrap() {
            let name = format!(
                "{}.{}",
                schema["name"].as_str().unwrap(),
                table["name"].as_str().unwrap()
            );
            let columns = table["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect();
            out.insert(name, columns);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

    fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// What one app may do on one table.
#[derive(Clone, Debug)]
struct Perm {
    actions: BTreeSet<Action>,
    /// `None`: every column.
    columns: Option<BTreeSet<&'static str>>,
    own: bool,
}

impl Perm {
    fn scope_token(&self, table: &str) -> String {
        let columns = match &self.columns {
            Some(c) => format!("({})", c.iter().copied().collect::<Vec<_>>().join(",")),
            None => String::new(),
        };
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        let own = if self.own { ":own" } else { "" };
        format!("{table}{columns}:{}{own}", actions.join("+"))
    }

    fn allows_column(&self, column: &str) -> bool {
        self.columns.as_ref().is_none_or(|c| c.contains(column))
    }
}

/// An app's grant in one vault.
type Grant = BTreeMap<&'static str, Perm>;

/// A grant on tables of two or three random schemas.
fn random_grant(rng: &mut StdRng) -> Grant {
    let mut schemas = vec!["contacts", "tasks", "notes"];
    schemas.shuffle(rng);
    schemas.truncate(rng.random_range(2..=3));
    let candidates: Vec<&TableSpec> = TABLES
        .iter()
        .filter(|t| schemas.iter().any(|s| t.name.starts_with(&format!("{s}."))))
        .collect();
    let count = rng.random_range(2..=candidates.len().min(4));
    let mut grant = Grant::new();
    for table in candidates.choose_multiple(rng, count) {
        let mut actions: BTreeSet<Action> = Action::ALL.into_iter().filter(|_| rng.random_bool(0.6)).collect();
        if actions.is_empty() {
            actions.insert(*Action::ALL.choose(rng).unwrap());
        }
        let columns = if rng.random_bool(0.5) {
            None
        } else {
            let mut set: BTreeSet<&'static str> = table
                .columns
                .iter()
                .filter(|(_, _, required)| *required || rng.random_bool(0.5))
                .map(|(name, _, _)| *name)
                .collect();
            if set.is_empty() {
                set.insert(table.columns.choose(rng).unwrap().0);
            }
            Some(set)
        };
        grant.insert(
            table.name,
            Perm {
                actions,
                columns,
                own: rng.random_bool(0.35),
            },
        );
    }
    grant
}

fn scope_string(grant: &Grant) -> String {
    grant
        .iter()
        .map(|(t, p)| p.scope_token(t))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A row as the model knows it.
#[derive(Clone, Debug)]
struct RowModel {
    created_by: usize,
    updated_by: usize,
    values: BTreeMap<&'static str, Value>,
}

impl RowModel {
    fn value(&self, column: &str) -> Value {
        self.values.get(column).cloned().unwrap_or(Value::Null)
    }
}

/// One vault's rows, per table.
#[derive(Default)]
struct VaultModel {
    tables: BTreeMap<&'static str, BTreeMap<String, RowModel>>,
    deleted: Vec<String>,
}

struct AppInfo {
    client_id: String,
}

struct VaultCtx {
    grants: Vec<Grant>,
    apis: Vec<Api>,
    /// One pgwire session per app, reused by every operation.
    pg: Vec<tokio_postgres::Client>,
    /// Each app's copy of its tables, kept from the change feed.
    feeds: Vec<tokio::sync::Mutex<FeedCopy>>,
    model: tokio::sync::Mutex<VaultModel>,
}

/// What an app has read of the change feed: where to resume, and the rows
/// of each table as the changes so far leave them.
#[derive(Default)]
struct FeedCopy {
    cursor: Option<String>,
    tables: BTreeMap<String, BTreeMap<String, Value>>,
    /// Changes applied so far.
    changes: usize,
}

/// Most feed pages one poll reads (a poll during the run need not drain).
const FEED_PAGES_PER_POLL: usize = 50;

/// Reads `app`'s change feed in `vault` from its cursor and applies each
/// change to its copy, checking that every change is confined: a table the
/// app may read, only its columns, only its rows for `own`, nothing of
/// another vault. With `drain`, reads until the feed says there is no more.
async fn poll_feed(ctx: &Ctx, vault: usize, app: usize, drain: bool) -> Result<(), String> {
    let v = &ctx.vaults[vault];
    let grant = &v.grants[app];
    let mut copy = v.feeds[app].lock().await;
    for _ in 0..if drain { usize::MAX } else { FEED_PAGES_PER_POLL } {
        let mut query = vec![("limit", "200".to_owned())];
        if let Some(c) = &copy.cursor {
            query.push(("since", c.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = v.apis[app].get(&with_query("/v1/changes", &query)).await;
        if reply.status != 200 {
            return Err(format!("feed: {}: {}", reply.status, reply.text));
        }
        check_markers(&reply.text, vault).map_err(|e| format!("feed: {e}"))?;
        let changes = reply.body["changes"]
            .as_array()
            .ok_or_else(|| format!("feed: no changes in {}", reply.text))?;
        for change in changes {
            let table = change["table"].as_str().unwrap_or_default();
            let id = change["id"].as_str().unwrap_or_default().to_owned();
            let perm = grant
                .get(table)
                .filter(|p| p.actions.contains(&Action::Read))
                .ok_or_else(|| format!("feed: a change to {table}, which the app may not read: {change}"))?;
            let rows = copy.tables.entry(table.to_owned()).or_default();
            match change["op"].as_str() {
                Some("insert" | "update") => {
                    let row = change["row"]
                        .as_object()
                        .ok_or_else(|| format!("feed: no row: {change}"))?;
                    let visible = ctx.visible_columns(table, perm);
                    if let Some(key) = row
                        .keys()
                        .find(|k| !SYSTEM.contains(&k.as_str()) && !visible.contains(*k))
                    {
                        return Err(format!("feed: column `{key}` is not granted: {change}"));
                    }
                    if perm.own && row["_created_by"] != ctx.apps[app].client_id.as_str() {
                        return Err(format!("feed: another app's row under an own grant: {change}"));
                    }
                    if row["id"] != id.as_str() {
                        return Err(format!("feed: the row is not the change's id: {change}"));
                    }
                    rows.insert(id, Value::Object(row.clone()));
                }
                Some("delete") => {
                    rows.remove(&id);
                }
                _ => return Err(format!("feed: an unknown op: {change}")),
            }
            copy.changes += 1;
        }
        copy.cursor = reply.body["cursor"].as_str().map(str::to_owned).or(copy.cursor.take());
        if reply.body["more"] != true {
            return Ok(());
        }
    }
    Ok(())
}

/// Drains `app`'s feed in `vault` and compares its copy with what the model
/// lets the app read: the same rows, each with the model's values.
async fn check_feed(ctx: &Ctx, vault: usize, app: usize, model: &VaultModel) -> Result<(), String> {
    poll_feed(ctx, vault, app, true).await?;
    let copy = ctx.vaults[vault].feeds[app].lock().await;
    for (table, perm) in &ctx.vaults[vault].grants[app] {
        if !perm.actions.contains(&Action::Read) {
            continue;
        }
        let expected = expected_rows(model, table, perm, app, |_| true);
        let empty = BTreeMap::new();
        let got = copy.tables.get(*table).unwrap_or(&empty);
        let got_ids: Vec<&String> = got.keys().collect();
        let expected_ids: Vec<&String> = expected.iter().map(|(id, _)| id).collect();
        if got_ids != expected_ids {
            return Err(format!(
                "{table}: the feed leaves rows {got_ids:?}, the model has {expected_ids:?}"
            ));
        }
        for (id, row) in &expected {
            check_row(ctx, table, perm, &got[id], row).map_err(|e| format!("{table} via the feed: {e}"))?;
        }
    }
    Ok(())
}

struct Ctx {
    apps: Vec<AppInfo>,
    vaults: Vec<VaultCtx>,
    /// Every row id ever written, with its vault (for probes across vaults).
    written: std::sync::Mutex<Vec<(usize, String)>>,
    all_columns: BTreeMap<String, Vec<String>>,
    failures: std::sync::Mutex<Failures>,
    stop: std::sync::atomic::AtomicBool,
    /// Operations run through each front end (indexed by [`Front`]).
    fronts: [AtomicUsize; 3],
    /// Change feed reads during the operations.
    feed_polls: AtomicUsize,
    /// SQL statements by front end, kind and outcome (`pgwire UPDATE
    /// 42501`, `sql SELECT ok`): shows the refusals were exercised.
    outcomes: std::sync::Mutex<BTreeMap<String, usize>>,
}

impl Ctx {
    /// The user columns `perm` lets through.
    fn visible_columns(&self, table: &str, perm: &Perm) -> BTreeSet<String> {
        match &perm.columns {
            Some(c) => c.iter().map(|s| (*s).to_owned()).collect(),
            None => self.all_columns[table].iter().cloned().collect(),
        }
    }
}

/// A value for `kind`, marked with the vault when it is text.
fn random_value(rng: &mut StdRng, kind: Kind, vault: usize, required: bool) -> Value {
    if !required && rng.random_bool(0.15) {
        return Value::Null;
    }
    match kind {
        Kind::Text => json!(format!(
            "~v{vault:02}~{}",
            ["alpha", "beta", "gamma", "delta", "eps"].choose(rng).unwrap()
        )),
        Kind::Int => json!(rng.random_range(0..10)),
        Kind::Bool => json!(rng.random_bool(0.5)),
        Kind::Timestamp => json!(format!(
            "2024-03-{:02}T{:02}:{:02}:00Z",
            rng.random_range(1..=28),
            rng.random_range(0..24),
            rng.random_range(0..60)
        )),
    }
}

fn same_value(kind: Option<Kind>, expected: &Value, got: &Value) -> bool {
    match (kind, expected, got) {
        (Some(Kind::Timestamp), Value::String(e), Value::String(g)) => {
            match (
                chrono::DateTime::parse_from_rfc3339(e),
                chrono::DateTime::parse_from_rfc3339(g),
            ) {
                (Ok(e), Ok(g)) => e == g,
                _ => false,
            }
        }
        _ => expected == got,
    }
}

fn kind_of(table: &str, column: &str) -> Option<Kind> {
    spec(table).columns.iter().find(|c| c.0 == column).map(|c| c.1)
}

/// Checks that an answer holds no value of another vault.
fn check_markers(text: &str, vault: usize) -> Result<(), String> {
    let mine = format!("~v{vault:02}~");
    for (i, _) in text.match_indices("~v") {
        let marker = text.get(i..i + 5).unwrap_or_default();
        if marker.len() == 5 && marker.ends_with('~') && marker != mine {
            return Err(format!("another vault's value {marker} in vault {vault}'s answer"));
        }
    }
    Ok(())
}

/// A filter of a list and its meaning.
#[derive(Clone, Debug)]
enum Filter {
    Eq(&'static str, Value),
    Gte(&'static str, i64),
    Is(&'static str, bool),
    Lt(&'static str, String),
    IsNull(&'static str),
    NotNull(&'static str),
}

impl Filter {
    fn query(&self) -> (&'static str, String) {
        match self {
            Filter::Eq(c, v) => (
                c,
                format!("eq.{}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            ),
            Filter::Gte(c, n) => (c, format!("gte.{n}")),
            Filter::Is(c, b) => (c, format!("is.{b}")),
            Filter::Lt(c, t) => (c, format!("lt.{t}")),
            Filter::IsNull(c) => (c, "is.null".into()),
            Filter::NotNull(c) => (c, "not.is.null".into()),
        }
    }

    fn holds(&self, row: &RowModel) -> bool {
        match self {
            Filter::Eq(c, v) => row.value(c) == *v,
            Filter::Gte(c, n) => row.value(c).as_i64().is_some_and(|x| x >= *n),
            Filter::Is(c, b) => row.value(c) == Value::Bool(*b),
            Filter::Lt(c, t) => row.value(c).as_str().is_some_and(|x| {
                chrono::DateTime::parse_from_rfc3339(x).unwrap() < chrono::DateTime::parse_from_rfc3339(t).unwrap()
            }),
            Filter::IsNull(c) => row.value(c).is_null(),
            Filter::NotNull(c) => !row.value(c).is_null(),
        }
    }
}

/// A random filter on a column the app may read.
fn random_filter(rng: &mut StdRng, table: &'static TableSpec, perm: &Perm, vault: usize) -> Option<Filter> {
    let readable: Vec<&ColSpec> = table.columns.iter().filter(|c| perm.allows_column(c.0)).collect();
    let (name, kind, required) = **readable.choose(rng)?;
    if !required && rng.random_bool(0.25) {
        return Some(if rng.random_bool(0.5) {
            Filter::IsNull(name)
        } else {
            Filter::NotNull(name)
        });
    }
    Some(match kind {
        Kind::Text => Filter::Eq(name, random_value(rng, Kind::Text, vault, true)),
        Kind::Int => Filter::Gte(name, rng.random_range(0..10)),
        Kind::Bool => Filter::Is(name, rng.random_bool(0.5)),
        Kind::Timestamp => Filter::Lt(
            name,
            random_value(rng, Kind::Timestamp, vault, true).as_str()?.to_owned(),
        ),
    })
}

/// What an operation should get, given the grant and the row.
enum Expected {
    Ok,
    Problem(u16, &'static str),
}

fn expect_right(grant: &Grant, table: &str, action: Action) -> Option<Expected> {
    match grant.get(table) {
        None => Some(Expected::Problem(404, "table-not-found")),
        Some(p) if !p.actions.contains(&action) => Some(Expected::Problem(403, "missing-right")),
        Some(_) => None,
    }
}

/// Checks a status and problem type against what was expected. A mismatch
/// is reported as `<<expected …, got …>>: body` (the part between `<<` and
/// `>>` groups failures in the report).
fn check_outcome(reply: &Reply, expected: &Expected, ok_status: u16) -> Result<bool, String> {
    let got = format!("{} {}", reply.status.as_u16(), reply.problem());
    let body: String = reply.text.chars().take(600).collect();
    match expected {
        Expected::Ok if reply.status.as_u16() == ok_status => Ok(true),
        Expected::Ok => Err(format!("<<expected {ok_status}, got {got}>>: {body}")),
        Expected::Problem(status, kind) => {
            let want = format!("urn:coffer:problem:{kind}");
            if reply.status.as_u16() == *status && reply.problem() == want {
                Ok(false)
            } else {
                Err(format!("<<expected {status} {kind}, got {got}>>: {body}"))
            }
        }
    }
}

/// Failures grouped by operation and kind, with a few examples each.
#[derive(Default)]
struct Failures {
    groups: BTreeMap<String, (usize, Vec<String>)>,
    total: usize,
}

impl Failures {
    fn add(&mut self, what: &str, message: String) {
        let kind = match (message.find("<<"), message.find(">>")) {
            (Some(a), Some(b)) if a < b => &message[a + 2..b],
            _ => "wrong content",
        };
        let group = format!("{what} → {kind}");
        let entry = self.groups.entry(group).or_default();
        entry.0 += 1;
        if entry.1.len() < 3 {
            entry.1.push(message);
        }
        self.total += 1;
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for (group, (count, examples)) in &self.groups {
            out.push_str(&format!("\n== {count} × {group}\n"));
            for e in examples {
                out.push_str(&format!("   {e}\n"));
            }
        }
        out
    }
}

/// Checks one returned row against the model: only visible columns, the
/// model's values, the right app ids.
fn check_row(ctx: &Ctx, table: &str, perm: &Perm, got: &Value, model: &RowModel) -> Result<(), String> {
    let obj = got.as_object().ok_or_else(|| format!("not a row: {got}"))?;
    let visible = ctx.visible_columns(table, perm);
    for key in obj.keys() {
        if !SYSTEM.contains(&key.as_str()) && !visible.contains(key) {
            return Err(format!("column `{key}` is not granted ({table}, {perm:?}): {got}"));
        }
    }
    for column in &visible {
        let Some(value) = obj.get(column) else { continue };
        let expected = model.value(column);
        if !same_value(kind_of(table, column), &expected, value) {
            return Err(format!("{table}.{column}: expected {expected}, got {value}: {got}"));
        }
    }
    let app = |i: usize| ctx.apps[i].client_id.as_str();
    if obj.get("_created_by").and_then(Value::as_str) != Some(app(model.created_by)) {
        return Err(format!("_created_by: expected {}: {got}", app(model.created_by)));
    }
    if obj.get("_updated_by").and_then(Value::as_str) != Some(app(model.updated_by)) {
        return Err(format!("_updated_by: expected {}: {got}", app(model.updated_by)));
    }
    Ok(())
}

/// Picks a row id to act on: mostly a row of this vault's table (visible to
/// the app or not), sometimes a deleted one, one of another vault, or none.
fn pick_target(rng: &mut StdRng, ctx: &Ctx, model: &VaultModel, table: &str, vault: usize) -> String {
    let rows: Vec<&String> = model.tables.get(table).map(|t| t.keys().collect()).unwrap_or_default();
    let roll = rng.random_range(0..100);
    if roll < 70
        && let Some(id) = rows.choose(rng)
    {
        return (*id).clone();
    }
    if roll < 80
        && let Some(id) = model.deleted.choose(rng)
    {
        return id.clone();
    }
    if roll < 95 {
        let written = ctx.written.lock().unwrap();
        let others: Vec<&(usize, String)> = written.iter().filter(|(v, _)| *v != vault).collect();
        if let Some((_, id)) = others.choose(rng) {
            return id.clone();
        }
    }
    format!("no-such-row-{}", rng.random_range(0..1_000_000))
}

/// The row `id` of `table` if `app` may see it with `perm`.
fn visible_row(model: &VaultModel, table: &str, perm: Option<&Perm>, app: usize, id: &str) -> Option<RowModel> {
    let row = model.tables.get(table)?.get(id)?;
    let p = perm?;
    (!p.own || row.created_by == app).then(|| row.clone())
}

/// Runs one random operation of `app` in `vault`, through a random front
/// end, and checks it.
async fn operate(ctx: &Ctx, rng: &mut StdRng, vault: usize, app: usize) -> Result<String, String> {
    let v = &ctx.vaults[vault];
    let grant = &v.grants[app];
    let api = &v.apis[app];
    let mut model = v.model.lock().await;
    // Mostly tables the app names; sometimes any table.
    let table: &'static TableSpec = if rng.random_bool(0.8) {
        spec(grant.keys().copied().collect::<Vec<_>>().choose(rng).unwrap())
    } else {
        TABLES.choose(rng).unwrap()
    };
    let t = table.name;
    let perm = grant.get(t);
    let visible = |model: &VaultModel, id: &str| visible_row(model, t, perm, app, id);
    let front = *Front::ALL.choose(rng).unwrap();
    ctx.fronts[front as usize].fetch_add(1, Ordering::SeqCst);
    if front != Front::Rows {
        return operate_sql(ctx, rng, vault, app, front, &mut model, table).await;
    }
    let roll = rng.random_range(0..100);
    if roll < 34 {
        // List, maybe filtered, maybe in small pages.
        let filter = perm.and_then(|p| {
            if rng.random_bool(0.5) {
                random_filter(rng, table, p, vault)
            } else {
                None
            }
        });
        let limit = rng.random_bool(0.3).then(|| rng.random_range(2..8).to_string());
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(f) = &filter {
            let (k, val) = f.query();
            query.push((k, val));
        }
        if let Some(l) = &limit {
            query.push(("limit", l.clone()));
        }
        let what = format!("list {t} {query:?}");
        let expected = expect_right(grant, t, Action::Read).unwrap_or(Expected::Ok);
        let mut got: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let page = api.get(&rows_path(t, &q)).await;
            check_markers(&page.text, vault).map_err(|e| format!("{what}: {e}"))?;
            if !check_outcome(&page, &expected, 200).map_err(|e| format!("{what}: {e}"))? {
                return Ok(what);
            }
            let rows = page.body["rows"]
                .as_array()
                .ok_or_else(|| format!("{what}: {}", page.text))?;
            got.extend(rows.iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(c) if !rows.is_empty() && got.len() < 10_000 => cursor = Some(c.to_owned()),
                Some(_) => return Err(format!("{what}: a cursor after an empty page: {}", page.text)),
                None => break,
            }
        }
        let perm = perm.unwrap();
        let expected_rows: BTreeMap<&String, &RowModel> = model
            .tables
            .get(t)
            .map(|rows| {
                rows.iter()
                    .filter(|(_, r)| !perm.own || r.created_by == app)
                    .filter(|(_, r)| filter.as_ref().is_none_or(|f| f.holds(r)))
                    .collect()
            })
            .unwrap_or_default();
        let got_ids: Vec<&str> = got.iter().filter_map(|r| r["id"].as_str()).collect();
        let got_set: BTreeSet<&str> = got_ids.iter().copied().collect();
        let expected_set: BTreeSet<&str> = expected_rows.keys().map(|s| s.as_str()).collect();
        if got_set.len() != got_ids.len() {
            return Err(format!("{what}: a row on two pages: {got_ids:?}"));
        }
        if got_set != expected_set {
            let extra: Vec<&&str> = got_set.difference(&expected_set).collect();
            let missing: Vec<&&str> = expected_set.difference(&got_set).collect();
            return Err(format!(
                "{what}: rows beyond the model {extra:?}, rows missing {missing:?}"
            ));
        }
        for row in &got {
            let id = row["id"].as_str().unwrap();
            check_row(ctx, t, perm, row, expected_rows[&id.to_owned()]).map_err(|e| format!("{what}: {e}"))?;
        }
        return Ok(what);
    }
    if roll < 51 {
        // One row.
        let id = pick_target(rng, ctx, &model, t, vault);
        let what = format!("get {t}/{id}");
        let row = visible(&model, &id);
        let expected = expect_right(grant, t, Action::Read).unwrap_or(match &row {
            Some(_) => Expected::Ok,
            None => Expected::Problem(404, "row-not-found"),
        });
        let reply = api.get(&row_path(t, &id, &[])).await;
        check_markers(&reply.text, vault).map_err(|e| format!("{what}: {e}"))?;
        if check_outcome(&reply, &expected, 200).map_err(|e| format!("{what}: {e}"))? {
            check_row(ctx, t, perm.unwrap(), &reply.body, row.as_ref().unwrap()).map_err(|e| format!("{what}: {e}"))?;
        }
        return Ok(what);
    }
    if roll < 74 {
        // Insert one row or a batch.
        let n = if rng.random_bool(0.7) {
            1
        } else {
            rng.random_range(2..=3)
        };
        let mut ungranted = false;
        let mut bodies: Vec<BTreeMap<&'static str, Value>> = Vec::new();
        for _ in 0..n {
            let mut values = BTreeMap::new();
            for (name, kind, required) in table.columns {
                let granted = perm.is_none_or(|p| p.allows_column(name));
                if granted && (*required || rng.random_bool(0.6)) {
                    values.insert(*name, random_value(rng, *kind, vault, *required));
                } else if !granted && rng.random_bool(0.08) {
                    values.insert(*name, random_value(rng, *kind, vault, true));
                    ungranted = true;
                }
            }
            if values.is_empty() {
                let (name, kind, _) = table.columns[0];
                ungranted |= !perm.is_none_or(|p| p.allows_column(name));
                values.insert(name, random_value(rng, kind, vault, true));
            }
            bodies.push(values);
        }
        let body = if n == 1 {
            json!(bodies[0])
        } else {
            Value::Array(bodies.iter().map(|b| json!(b)).collect())
        };
        let what = format!("insert {t} {body}");
        let expected = expect_right(grant, t, Action::Create).unwrap_or(if ungranted {
            Expected::Problem(403, "missing-right")
        } else {
            Expected::Ok
        });
        let reply = api.post(&rows_path(t, &[]), &body).await;
        check_markers(&reply.text, vault).map_err(|e| format!("{what}: {e}"))?;
        if check_outcome(&reply, &expected, 201).map_err(|e| format!("{what}: {e}"))? {
            let rows: Vec<Value> = if n == 1 {
                vec![reply.body.clone()]
            } else {
                reply.body["rows"].as_array().cloned().unwrap_or_default()
            };
            if rows.len() != n {
                return Err(format!("{what}: {} rows answered: {}", rows.len(), reply.text));
            }
            let perm = perm.unwrap();
            for (values, row) in bodies.into_iter().zip(rows) {
                let id = row["id"]
                    .as_str()
                    .ok_or_else(|| format!("{what}: no id: {row}"))?
                    .to_owned();
                let model_row = RowModel {
                    created_by: app,
                    updated_by: app,
                    values,
                };
                check_row(ctx, t, perm, &row, &model_row).map_err(|e| format!("{what}: {e}"))?;
                model.tables.entry(t).or_default().insert(id.clone(), model_row);
                ctx.written.lock().unwrap().push((vault, id));
            }
        }
        return Ok(what);
    }
    if roll < 91 {
        // Change some columns of a row.
        let id = pick_target(rng, ctx, &model, t, vault);
        let row = visible(&model, &id);
        let mut patch = BTreeMap::new();
        let mut ungranted = false;
        let how_many = rng.random_range(1..=2);
        for (name, kind, required) in table.columns.choose_multiple(rng, how_many) {
            let granted = perm.is_none_or(|p| p.allows_column(name));
            if granted {
                patch.insert(*name, random_value(rng, *kind, vault, *required));
            } else if row.is_some() && rng.random_bool(0.3) {
                patch.insert(*name, random_value(rng, *kind, vault, *required));
                ungranted = true;
            }
        }
        if patch.is_empty() {
            let (name, kind, required) = table
                .columns
                .iter()
                .find(|c| perm.is_none_or(|p| p.allows_column(c.0)))
                .unwrap();
            patch.insert(*name, random_value(rng, *kind, vault, *required));
        }
        let what = format!("patch {t}/{id} {}", json!(patch));
        let expected = expect_right(grant, t, Action::Update).unwrap_or(match (&row, ungranted) {
            (None, _) => Expected::Problem(404, "row-not-found"),
            (Some(_), true) => Expected::Problem(403, "missing-right"),
            (Some(_), false) => Expected::Ok,
        });
        let reply = api.patch(&row_path(t, &id, &[]), &json!(patch)).await;
        check_markers(&reply.text, vault).map_err(|e| format!("{what}: {e}"))?;
        if check_outcome(&reply, &expected, 200).map_err(|e| format!("{what}: {e}"))? {
            let stored = model.tables.get_mut(t).unwrap().get_mut(&id).unwrap();
            stored.values.extend(patch);
            stored.updated_by = app;
            let stored = stored.clone();
            check_row(ctx, t, perm.unwrap(), &reply.body, &stored).map_err(|e| format!("{what}: {e}"))?;
        }
        return Ok(what);
    }
    // Delete a row.
    let id = pick_target(rng, ctx, &model, t, vault);
    let what = format!("delete {t}/{id}");
    let row = visible(&model, &id);
    let expected = expect_right(grant, t, Action::Delete).unwrap_or(match &row {
        Some(_) => Expected::Ok,
        None => Expected::Problem(404, "row-not-found"),
    });
    let reply = api.delete(&row_path(t, &id, &[])).await;
    check_markers(&reply.text, vault).map_err(|e| format!("{what}: {e}"))?;
    if check_outcome(&reply, &expected, 204).map_err(|e| format!("{what}: {e}"))? {
        model.tables.get_mut(t).unwrap().remove(&id);
        model.deleted.push(id);
    }
    Ok(what)
}

/// The front end an operation goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    /// The rows API (`/v1/tables/{table}/rows`).
    Rows,
    /// `POST /v1/sql`.
    Sql,
    /// The Postgres wire protocol, through tokio-postgres.
    Pg,
}

impl Front {
    const ALL: [Front; 3] = [Front::Rows, Front::Sql, Front::Pg];

    /// How operations through it are named (the first word of a failure).
    fn label(self) -> &'static str {
        match self {
            Front::Rows => "rows",
            Front::Sql => "sql",
            Front::Pg => "pgwire",
        }
    }
}

/// A statement parameter: a value for a column of `kind`.
#[derive(Clone, Debug)]
struct Param {
    kind: Kind,
    value: Value,
}

impl Param {
    fn new(kind: Kind, value: Value) -> Param {
        Param { kind, value }
    }

    /// The parameter's Postgres type and value, for a statement prepared
    /// with typed parameters.
    fn pg(&self) -> (Type, Box<dyn ToSql + Send + Sync>) {
        match self.kind {
            Kind::Text => (Type::TEXT, Box::new(self.value.as_str().map(str::to_owned))),
            Kind::Int => (Type::INT8, Box::new(self.value.as_i64())),
            Kind::Bool => (Type::BOOL, Box::new(self.value.as_bool())),
            Kind::Timestamp => (
                Type::TIMESTAMPTZ,
                Box::new(self.value.as_str().map(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .expect("the test writes RFC 3339 timestamps")
                        .with_timezone(&Utc)
                })),
            ),
        }
    }
}

/// What a SQL statement answered, whichever front end ran it.
#[derive(Debug)]
enum SqlAnswer {
    /// A query's columns (name and Coffer type) and rows, each in column
    /// order.
    Rows {
        columns: Vec<(String, String)>,
        rows: Vec<Vec<Value>>,
    },
    /// How many rows a write changed.
    Changed(u64),
}

/// A statement refused: its code (pgwire: the SQLSTATE; `/v1/sql`: the
/// status and problem type, as `404 table-not-found`) and its text.
#[derive(Debug)]
struct Refused {
    code: String,
    text: String,
}

/// A refusal the model predicts for a SQL statement.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// The grant does not name the table.
    Table,
    /// The grant names the table but lacks a right the statement needs.
    Right,
    /// The grant does not name a column the statement names.
    Column,
    /// An insert named an id a row of the table already has.
    IdInUse,
}

impl Refusal {
    /// How `front` answers it.
    fn code(self, front: Front) -> &'static str {
        match (front, self) {
            (Front::Pg, Refusal::Table) => "42P01",
            (Front::Pg, Refusal::Right) => "42501",
            (Front::Pg, Refusal::Column) => "42703",
            (Front::Pg, Refusal::IdInUse) => "23505",
            (_, Refusal::Table) => "404 table-not-found",
            (_, Refusal::Right) => "403 missing-right",
            (_, Refusal::Column) => "400 invalid-sql",
            (_, Refusal::IdInUse) => "409 id-in-use",
        }
    }
}

/// Runs `sql` with `params` as `app` in `vault` through `front`: `/v1/sql`,
/// or pgwire on the app's session (prepared with typed parameters). A
/// `write` answers the rows it changed. Fails when the answer cannot be
/// read or holds a value of another vault.
async fn run_sql(
    ctx: &Ctx,
    vault: usize,
    app: usize,
    front: Front,
    sql: &str,
    params: &[Param],
    write: bool,
) -> Result<Result<SqlAnswer, Refused>, String> {
    let v = &ctx.vaults[vault];
    let answer = match front {
        Front::Pg => run_pg(&v.pg[app], sql, params, write).await?,
        Front::Sql | Front::Rows => {
            let values: Vec<Value> = params.iter().map(|p| p.value.clone()).collect();
            let reply = v.apis[app].sql(sql, &values).await;
            http_answer(&reply, write)?
        }
    };
    let (outcome, text) = match &answer {
        Ok(SqlAnswer::Rows { rows, .. }) => ("ok", json!(rows).to_string()),
        Ok(SqlAnswer::Changed(_)) => ("ok", String::new()),
        Err(refused) => (refused.code.as_str(), refused.text.clone()),
    };
    let statement = sql.split_whitespace().next().unwrap_or_default();
    *ctx.outcomes
        .lock()
        .unwrap()
        .entry(format!("{} {statement} {outcome}", front.label()))
        .or_default() += 1;
    check_markers(&text, vault)?;
    Ok(answer)
}

/// A `/v1/sql` reply as a [`SqlAnswer`] or a [`Refused`].
fn http_answer(reply: &Reply, write: bool) -> Result<Result<SqlAnswer, Refused>, String> {
    if reply.status != 200 {
        return Ok(Err(Refused {
            code: format!(
                "{} {}",
                reply.status.as_u16(),
                reply.problem().trim_start_matches("urn:coffer:problem:")
            ),
            text: reply.text.chars().take(600).collect(),
        }));
    }
    let unreadable = || format!("an answer that is not a result: {}", reply.text);
    let columns: Vec<(String, String)> = reply.body["columns"]
        .as_array()
        .ok_or_else(unreadable)?
        .iter()
        .map(|c| Some((c["name"].as_str()?.to_owned(), c["type"].as_str()?.to_owned())))
        .collect::<Option<_>>()
        .ok_or_else(unreadable)?;
    let rows: Vec<Vec<Value>> = reply.body["rows"]
        .as_array()
        .ok_or_else(unreadable)?
        .iter()
        .map(|r| r.as_array().cloned())
        .collect::<Option<_>>()
        .ok_or_else(unreadable)?;
    if !write {
        return Ok(Ok(SqlAnswer::Rows { columns, rows }));
    }
    match (columns.as_slice(), rows.as_slice()) {
        ([(name, ty)], [row]) if name == "count" && ty == "integer" && row.len() == 1 && row[0].is_u64() => {
            Ok(Ok(SqlAnswer::Changed(row[0].as_u64().unwrap())))
        }
        _ => Err(format!("a write answered {}", reply.text)),
    }
}

/// Runs `sql` on a pgwire session: prepared with the parameters' types,
/// then executed (a `write`) or queried.
async fn run_pg(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[Param],
    write: bool,
) -> Result<Result<SqlAnswer, Refused>, String> {
    let (types, values): (Vec<Type>, Vec<Box<dyn ToSql + Send + Sync>>) = params.iter().map(Param::pg).unzip();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
    let refused = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => Ok(Err(Refused {
            code: db.code().code().to_owned(),
            text: format!("{} {}", db.severity(), db.message()),
        })),
        None => Err(format!("pgwire: {e}")),
    };
    let statement = match client.prepare_typed(sql, &types).await {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    if write {
        if !statement.columns().is_empty() {
            return Err(format!(
                "a write described with result columns: {:?}",
                statement.columns()
            ));
        }
        return match client.execute(&statement, &refs).await {
            Ok(n) => Ok(Ok(SqlAnswer::Changed(n))),
            Err(e) => refused(e),
        };
    }
    let rows = match client.query(&statement, &refs).await {
        Ok(rows) => rows,
        Err(e) => return refused(e),
    };
    let columns = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), coffer_type(c.type_())))
        .collect();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|i| pg_value(row, i)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<_, _>>()?;
    Ok(Ok(SqlAnswer::Rows { columns, rows }))
}

/// The Postgres types of Coffer's types (docs/guides/pgwire.md).
fn pg_types() -> [(Type, &'static str); 9] {
    [
        (Type::TEXT, "text"),
        (Type::INT8, "integer"),
        (Type::FLOAT8, "float"),
        (Type::BOOL, "boolean"),
        (Type::TIMESTAMPTZ, "timestamp"),
        (Type::DATE, "date"),
        (Type::JSONB, "json"),
        (Type::BYTEA, "bytes"),
        (Type::FLOAT4_ARRAY, "vector"),
    ]
}

/// The Coffer type a Postgres type stands for (or the Postgres name).
fn coffer_type(ty: &Type) -> String {
    pg_types()
        .iter()
        .find(|(t, _)| t == ty)
        .map_or_else(|| ty.name().to_owned(), |(_, name)| (*name).to_owned())
}

/// Any value as its bytes on the wire: for the columns the test never
/// writes, which must be null.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Value `i` of a pgwire row as the JSON `/v1/sql` would answer (a
/// timestamp as RFC 3339 text).
fn pg_value(row: &tokio_postgres::Row, i: usize) -> Result<Value, String> {
    let ty = row.columns()[i].type_();
    let value = if *ty == Type::TEXT {
        row.try_get::<_, Option<String>>(i).map(|v| json!(v))
    } else if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map(|v| json!(v))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i).map(|v| json!(v))
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i).map(|v| json!(v))
    } else if *ty == Type::TIMESTAMPTZ {
        row.try_get::<_, Option<DateTime<Utc>>>(i)
            .map(|v| json!(v.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))))
    } else if *ty == Type::JSONB {
        row.try_get::<_, Option<Value>>(i).map(|v| v.unwrap_or(Value::Null))
    } else {
        row.try_get::<_, Option<Raw>>(i)
            .map(|v| json!(v.map(|r| String::from_utf8_lossy(&r.0).into_owned())))
    };
    value.map_err(|e| format!("column {} ({ty}): {e}", row.columns()[i].name()))
}

/// Checks what a statement answered against the model's prediction
/// (`None`: it runs). A mismatch is reported as `<<expected …, got …>>:
/// text`; an answer is returned to be checked further.
fn check_sql(
    answer: &Result<SqlAnswer, Refused>,
    expected: Option<Refusal>,
    front: Front,
) -> Result<Option<&SqlAnswer>, String> {
    match (answer, expected) {
        (Ok(a), None) => Ok(Some(a)),
        (Err(r), Some(e)) if r.code == e.code(front) => Ok(None),
        (Ok(a), Some(e)) => {
            let shown: String = format!("{a:?}").chars().take(600).collect();
            Err(format!("<<expected {}, got an answer>>: {shown}", e.code(front)))
        }
        (Err(r), None) => Err(format!("<<expected an answer, got {}>>: {}", r.code, r.text)),
        (Err(r), Some(e)) => Err(format!("<<expected {}, got {}>>: {}", e.code(front), r.code, r.text)),
    }
}

/// The Coffer type the test knows a column of `table` has.
fn expected_type(table: &str, column: &str) -> Option<&'static str> {
    match column {
        "id" | "_created_by" | "_updated_by" => Some("text"),
        "_seq" => Some("integer"),
        "_created_at" | "_updated_at" => Some("timestamp"),
        _ => kind_of(table, column).map(|k| match k {
            Kind::Text => "text",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
            Kind::Timestamp => "timestamp",
        }),
    }
}

/// The rows of `table` that `app` sees with `perm` and that `keep`
/// accepts, in id order.
fn expected_rows(
    model: &VaultModel,
    table: &str,
    perm: &Perm,
    app: usize,
    keep: impl Fn(&RowModel) -> bool,
) -> Vec<(String, RowModel)> {
    model
        .tables
        .get(table)
        .map(|rows| {
            rows.iter()
                .filter(|(_, r)| (!perm.own || r.created_by == app) && keep(r))
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a query's answer against `expected` (the model's rows, in id
/// order): the same ids in the same order, and each row's visible values
/// and app ids. `asked`: the columns the statement named; `None` for
/// `SELECT *`, which must answer exactly the system columns and those the
/// grant lets the app read.
fn check_rows(
    ctx: &Ctx,
    table: &str,
    perm: &Perm,
    answer: &SqlAnswer,
    asked: Option<&[&str]>,
    expected: &[(String, RowModel)],
) -> Result<(), String> {
    let SqlAnswer::Rows { columns, rows } = answer else {
        return Err(format!("rows expected, got {answer:?}"));
    };
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    match asked {
        Some(asked) if names != asked => return Err(format!("columns {names:?}, asked for {asked:?}")),
        Some(_) => {}
        None => {
            let visible = ctx.visible_columns(table, perm);
            let want: BTreeSet<&str> = SYSTEM
                .iter()
                .copied()
                .chain(visible.iter().map(String::as_str))
                .collect();
            let got: BTreeSet<&str> = names.iter().copied().collect();
            if got != want || got.len() != names.len() {
                return Err(format!(
                    "SELECT * answers the columns {names:?}, the grant lets the app read {want:?}"
                ));
            }
        }
    }
    for (name, ty) in columns {
        if let Some(want) = expected_type(table, name)
            && ty != want
        {
            return Err(format!("column {name} is typed {ty}, expected {want}"));
        }
    }
    let mut objects = Vec::with_capacity(rows.len());
    for row in rows {
        if row.len() != names.len() {
            return Err(format!(
                "a row of {} values for {} columns: {row:?}",
                row.len(),
                names.len()
            ));
        }
        let object: serde_json::Map<String, Value> =
            names.iter().map(|n| (*n).to_owned()).zip(row.iter().cloned()).collect();
        objects.push(Value::Object(object));
    }
    let got_ids: Vec<&str> = objects.iter().map(|o| o["id"].as_str().unwrap_or_default()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    if got_ids != expected_ids {
        return Err(format!("ids {got_ids:?}, expected {expected_ids:?}"));
    }
    for (object, (_, model_row)) in objects.iter().zip(expected) {
        check_row(ctx, table, perm, object, model_row)?;
    }
    Ok(())
}

/// A new row id for a SQL insert.
fn fresh_id(rng: &mut StdRng) -> String {
    format!("q{:016x}", rng.random::<u64>())
}

/// Runs one random SQL statement of `app` in `vault` through `front`
/// (`/v1/sql` or pgwire) and checks it against the model: a query (some
/// columns, `*`, a count, a row by id), a probe of a column the grant does
/// not name, an insert, an update or a delete by id.
async fn operate_sql(
    ctx: &Ctx,
    rng: &mut StdRng,
    vault: usize,
    app: usize,
    front: Front,
    model: &mut VaultModel,
    table: &'static TableSpec,
) -> Result<String, String> {
    let grant = &ctx.vaults[vault].grants[app];
    let t = table.name;
    let perm = grant.get(t);
    let granted = |name: &str| perm.is_none_or(|p| p.allows_column(name));
    // A statement on `t` needing `rights`: refused for the table or a right.
    let lacks = |rights: &[Action]| match perm {
        None => Some(Refusal::Table),
        Some(p) if rights.iter().any(|a| !p.actions.contains(a)) => Some(Refusal::Right),
        Some(_) => None,
    };
    let label = front.label();
    let describe = |op: &str, sql: &str, params: &[Param]| {
        let values: Vec<&Value> = params.iter().map(|p| &p.value).collect();
        format!("{label} {op}: {sql} {}", json!(values))
    };
    let roll = rng.random_range(0..100);
    if roll < 30 {
        // Some readable columns, `*` or a count, maybe filtered.
        let readable: Vec<&ColSpec> = table.columns.iter().filter(|c| granted(c.0)).collect();
        let how_many = rng.random_range(1..=readable.len().max(1));
        let columns: Vec<&ColSpec> = readable.choose_multiple(rng, how_many).copied().collect();
        let filter = if rng.random_bool(0.4) {
            let candidates: Vec<&&ColSpec> = readable
                .iter()
                .filter(|c| matches!(c.1, Kind::Text | Kind::Int))
                .collect();
            candidates
                .choose(rng)
                .map(|c| (c.0, Param::new(c.1, random_value(rng, c.1, vault, true))))
        } else {
            None
        };
        let shape = rng.random_range(0..10);
        let (op, mut sql) = match shape {
            0..3 => ("count", format!("SELECT count(*) FROM {t}")),
            3..5 => ("select", format!("SELECT * FROM {t}")),
            _ => {
                let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
                (
                    "select",
                    format!("SELECT id, _created_by, _updated_by, {} FROM {t}", names.join(", ")),
                )
            }
        };
        if let Some((c, _)) = &filter {
            sql.push_str(&format!(" WHERE {c} = $1"));
        }
        if shape >= 3 {
            sql.push_str(" ORDER BY id");
        }
        let params: Vec<Param> = filter.iter().map(|(_, p)| p.clone()).collect();
        let what = describe(op, &sql, &params);
        let answer = run_sql(ctx, vault, app, front, &sql, &params, false)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let Some(answer) = check_sql(&answer, lacks(&[Action::Read]), front).map_err(|e| format!("{what}: {e}"))?
        else {
            return Ok(what);
        };
        let perm = perm.unwrap();
        let expected = expected_rows(model, t, perm, app, |r| {
            filter.as_ref().is_none_or(|(c, p)| r.value(c) == p.value)
        });
        if shape < 3 {
            let counted = matches!(answer, SqlAnswer::Rows { columns, rows }
                if columns.len() == 1 && columns[0].1 == "integer" && *rows == [vec![json!(expected.len())]]);
            if !counted {
                return Err(format!("{what}: expected [[{}]], got {answer:?}", expected.len()));
            }
        } else {
            let asked: Option<Vec<&str>> = (shape >= 5).then(|| {
                ["id", "_created_by", "_updated_by"]
                    .into_iter()
                    .chain(columns.iter().map(|c| c.0))
                    .collect()
            });
            check_rows(ctx, t, perm, answer, asked.as_deref(), &expected).map_err(|e| format!("{what}: {e}"))?;
        }
        return Ok(what);
    }
    if roll < 42 {
        // One row by id: of this vault (visible or not), deleted, of
        // another vault, or none.
        let id = pick_target(rng, ctx, model, t, vault);
        let sql = format!("SELECT * FROM {t} WHERE id = $1");
        let params = [Param::new(Kind::Text, json!(id))];
        let what = describe("get", &sql, &params);
        let answer = run_sql(ctx, vault, app, front, &sql, &params, false)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if let Some(answer) = check_sql(&answer, lacks(&[Action::Read]), front).map_err(|e| format!("{what}: {e}"))? {
            let expected: Vec<(String, RowModel)> = visible_row(model, t, perm, app, &id)
                .map(|r| (id.clone(), r))
                .into_iter()
                .collect();
            check_rows(ctx, t, perm.unwrap(), answer, None, &expected).map_err(|e| format!("{what}: {e}"))?;
        }
        return Ok(what);
    }
    if roll < 48 {
        // A column the grant does not name, selected or in a condition:
        // as if it did not exist.
        let ungranted: Vec<&String> = ctx.all_columns[t]
            .iter()
            .filter(|c| perm.is_none_or(|p| !p.allows_column(c)))
            .collect();
        let column = ungranted
            .choose(rng)
            .map_or_else(|| "no_such_column".to_owned(), |c| (*c).clone());
        let sql = if rng.random_bool(0.5) {
            format!("SELECT id, {column} FROM {t}")
        } else {
            format!("SELECT id FROM {t} WHERE {column} IS NOT NULL")
        };
        let what = describe("probe", &sql, &[]);
        let expected = Some(if perm.is_some() {
            Refusal::Column
        } else {
            Refusal::Table
        });
        let answer = run_sql(ctx, vault, app, front, &sql, &[], false)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        check_sql(&answer, expected, front).map_err(|e| format!("{what}: {e}"))?;
        return Ok(what);
    }
    if roll < 70 {
        // Insert one row or a few, each with its id: mostly new ones,
        // sometimes one a row of the table already has, or one another
        // vault uses (free in this one).
        let n = if rng.random_bool(0.7) {
            1
        } else {
            rng.random_range(2..=3)
        };
        let (mut ungranted, mut in_use) = (false, false);
        let mut rows: Vec<(String, BTreeMap<&'static str, Value>)> = Vec::new();
        for k in 0..n {
            let mut values = BTreeMap::new();
            for (name, kind, required) in table.columns {
                if granted(name) && (*required || rng.random_bool(0.6)) {
                    values.insert(*name, random_value(rng, *kind, vault, *required));
                } else if !granted(name) && rng.random_bool(0.08) {
                    values.insert(*name, random_value(rng, *kind, vault, true));
                    ungranted = true;
                }
            }
            if values.is_empty() {
                let (name, kind, _) = table.columns[0];
                ungranted |= !granted(name);
                values.insert(name, random_value(rng, kind, vault, true));
            }
            let roll = rng.random_range(0..100);
            let existing: Vec<&String> = model.tables.get(t).map(|r| r.keys().collect()).unwrap_or_default();
            let mut id = match existing.choose(rng) {
                Some(id) if k == 0 && roll < 8 => {
                    in_use = true;
                    (*id).clone()
                }
                _ if roll < 14 => {
                    let used_here = |id: &str| {
                        model.tables.values().any(|r| r.contains_key(id)) || model.deleted.iter().any(|d| d == id)
                    };
                    let written = ctx.written.lock().unwrap();
                    let others: Vec<&String> = written
                        .iter()
                        .filter(|(v, id)| *v != vault && !used_here(id))
                        .map(|(_, id)| id)
                        .collect();
                    others.choose(rng).map_or_else(|| fresh_id(rng), |id| (*id).clone())
                }
                _ => fresh_id(rng),
            };
            while rows.iter().any(|(other, _)| *other == id) {
                id = fresh_id(rng);
            }
            rows.push((id, values));
        }
        let names: Vec<&'static str> = table
            .columns
            .iter()
            .map(|c| c.0)
            .filter(|c| rows.iter().any(|(_, values)| values.contains_key(c)))
            .collect();
        let mut params = Vec::new();
        let mut tuples = Vec::new();
        for (id, values) in &rows {
            params.push(Param::new(Kind::Text, json!(id)));
            let mut slots = vec![format!("${}", params.len())];
            for c in &names {
                let value = values.get(c).cloned().unwrap_or(Value::Null);
                params.push(Param::new(kind_of(t, c).unwrap(), value));
                slots.push(format!("${}", params.len()));
            }
            tuples.push(format!("({})", slots.join(", ")));
        }
        let sql = format!(
            "INSERT INTO {t} (id{}) VALUES {}",
            names.iter().map(|c| format!(", {c}")).collect::<String>(),
            tuples.join(", ")
        );
        let what = describe("insert", &sql, &params);
        let expected = lacks(&[Action::Create])
            .or(ungranted.then_some(Refusal::Column))
            .or(in_use.then_some(Refusal::IdInUse));
        let answer = run_sql(ctx, vault, app, front, &sql, &params, true)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if let Some(answer) = check_sql(&answer, expected, front).map_err(|e| format!("{what}: {e}"))? {
            if !matches!(answer, SqlAnswer::Changed(c) if *c == n as u64) {
                return Err(format!("{what}: {n} rows inserted, the answer says {answer:?}"));
            }
            for (id, values) in rows {
                let row = RowModel {
                    created_by: app,
                    updated_by: app,
                    values,
                };
                model.tables.entry(t).or_default().insert(id.clone(), row);
                ctx.written.lock().unwrap().push((vault, id));
            }
        }
        return Ok(what);
    }
    if roll < 88 {
        // Change some columns of a row by id: only a row the app may both
        // read and update changes.
        let id = pick_target(rng, ctx, model, t, vault);
        let row = visible_row(model, t, perm, app, &id);
        let mut patch = BTreeMap::new();
        let mut ungranted = false;
        let how_many = rng.random_range(1..=2);
        for (name, kind, required) in table.columns.choose_multiple(rng, how_many) {
            if granted(name) {
                patch.insert(*name, random_value(rng, *kind, vault, *required));
            } else if rng.random_bool(0.3) {
                patch.insert(*name, random_value(rng, *kind, vault, *required));
                ungranted = true;
            }
        }
        if patch.is_empty() {
            let (name, kind, required) = table.columns.iter().find(|c| granted(c.0)).unwrap();
            patch.insert(*name, random_value(rng, *kind, vault, *required));
        }
        let mut params = Vec::new();
        let mut sets = Vec::new();
        for (name, value) in &patch {
            params.push(Param::new(kind_of(t, name).unwrap(), value.clone()));
            sets.push(format!("{name} = ${}", params.len()));
        }
        params.push(Param::new(Kind::Text, json!(id)));
        let sql = format!("UPDATE {t} SET {} WHERE id = ${}", sets.join(", "), params.len());
        let what = describe("update", &sql, &params);
        let expected = match perm {
            None => Some(Refusal::Table),
            Some(_) if ungranted => Some(Refusal::Column),
            Some(_) => lacks(&[Action::Read, Action::Update]),
        };
        let answer = run_sql(ctx, vault, app, front, &sql, &params, true)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if let Some(answer) = check_sql(&answer, expected, front).map_err(|e| format!("{what}: {e}"))? {
            let want = u64::from(row.is_some());
            if !matches!(answer, SqlAnswer::Changed(c) if *c == want) {
                return Err(format!("{what}: expected {want} rows changed, got {answer:?}"));
            }
            if row.is_some() {
                let stored = model.tables.get_mut(t).unwrap().get_mut(&id).unwrap();
                stored.values.extend(patch);
                stored.updated_by = app;
            }
        }
        return Ok(what);
    }
    // Delete a row by id: only a row the app may both read and delete goes.
    let id = pick_target(rng, ctx, model, t, vault);
    let row = visible_row(model, t, perm, app, &id);
    let sql = format!("DELETE FROM {t} WHERE id = $1");
    let params = [Param::new(Kind::Text, json!(id))];
    let what = describe("delete", &sql, &params);
    let answer = run_sql(ctx, vault, app, front, &sql, &params, true)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if let Some(answer) =
        check_sql(&answer, lacks(&[Action::Read, Action::Delete]), front).map_err(|e| format!("{what}: {e}"))?
    {
        let want = u64::from(row.is_some());
        if !matches!(answer, SqlAnswer::Changed(c) if *c == want) {
            return Err(format!("{what}: expected {want} rows deleted, got {answer:?}"));
        }
        if row.is_some() {
            model.tables.get_mut(t).unwrap().remove(&id);
            model.deleted.push(id);
        }
    }
    Ok(what)
}

/// Opens a pgwire session as `client_id` with `token` on the server's
/// listener at `addr` (`127.0.0.1:PORT`).
async fn connect_pg(addr: &str, client_id: &str, token: &str) -> tokio_postgres::Client {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().expect("a port"))
        .user(client_id)
        .password(token)
        .dbname("vault");
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("pgwire connect as {client_id}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
/// The kind of operation a failure message is about: `list`, `get`,
/// `insert`, `patch`, `delete` (the rows API), or the front end and the
/// statement (`sql select`, `pgwire insert`, …).
fn op_kind(message: &str) -> String {
    let mut words = message.split_whitespace();
    match words.next().unwrap_or_default() {
        front @ ("sql" | "pgwire") => format!("{front} {}", words.next().unwrap_or_default().trim_end_matches(':')),
        other => other.to_owned(),
    }
}

/// Checks `/v1/tables` against the grant the test asked for.
async fn check_granted_tables(ctx: &Ctx, vault: usize, app: usize) -> Result<(), String> {
    let v = &ctx.vaults[vault];
    let reply = v.apis[app].get("/v1/tables").await;
    if reply.status != 200 {
        return Err(format!("/v1/tables: {}", reply.text));
    }
    let grant = &v.grants[app];
    let entries = reply.body["tables"].as_array().cloned().unwrap_or_default();
    let named: BTreeSet<&str> = entries.iter().filter_map(|e| e["table"].as_str()).collect();
    let expected: BTreeSet<&str> = grant.keys().copied().collect();
    if named != expected {
        return Err(format!(
            "/v1/tables lists {named:?}, the grant {expected:?}: {}",
            reply.text
        ));
    }
    for entry in &entries {
        let table = entry["table"].as_str().unwrap();
        let perm = &grant[table];
        let actions: BTreeSet<&str> = entry["actions"]
            .as_object()
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want: BTreeSet<&str> = perm.actions.iter().map(|a| a.as_str()).collect();
        if actions != want {
            return Err(format!(
                "{table}: actions {actions:?}, granted {want:?}: {}",
                reply.text
            ));
        }
        for action in &want {
            let detail = &entry["actions"][action];
            let rows = if perm.own { "own" } else { "all" };
            if detail["rows"] != rows {
                return Err(format!("{table}:{action}: rows {}, granted {rows}", detail["rows"]));
            }
            if let (Some(columns), Some(listed)) = (&perm.columns, detail["columns"].as_array()) {
                let listed: BTreeSet<&str> = listed
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|c| !SYSTEM.contains(c))
                    .collect();
                let columns: BTreeSet<&str> = columns.iter().copied().collect();
                if listed != columns {
                    return Err(format!("{table}:{action}: columns {listed:?}, granted {columns:?}"));
                }
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_vaults_three_apps_random_grants_and_operations_stay_isolated() {
    let seed: u64 = std::env::var("COFFER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("isolation seed: {seed} (COFFER_TEST_SEED={seed} replays it)");
    let started = Instant::now();
    let server = Server::start();
    let app_names = ["Contact Sync", "Todo Board", "Note Taker"];
    let apps: Vec<AppInfo> = app_names
        .iter()
        .map(|n| AppInfo {
            client_id: server.app(n),
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let grants: Vec<Vec<Grant>> = (0..VAULTS)
        .map(|_| (0..APPS).map(|_| random_grant(&mut rng)).collect())
        .collect();

    // Users sign up, each from their own loopback address, and allow the
    // three apps their random grants; each app opens a pgwire session with
    // its token.
    let base = Api::new(&server.base, "");
    let mut setups = Vec::new();
    for (vault, vault_grants) in grants.iter().enumerate() {
        let browser = server.browser_from(u8::try_from(10 + vault).unwrap());
        let grants = vault_grants.clone();
        let client_ids: Vec<String> = apps.iter().map(|a| a.client_id.clone()).collect();
        let base = base.clone();
        let pg_addr = server.pgwire.clone();
        setups.push(tokio::spawn(async move {
            let page = browser.sign_up(&format!("user{vault}@example.org"), None).await;
            assert_eq!(page.status, 200, "sign-up {vault}");
            let (mut apis, mut pg) = (Vec::new(), Vec::new());
            for (grant, client_id) in grants.iter().zip(&client_ids) {
                let tokens = authorize_app(&browser, client_id, &scope_string(grant), None).await;
                apis.push(base.with_token(&tokens.access));
                pg.push(connect_pg(&pg_addr, client_id, &tokens.access).await);
            }
            (apis, pg)
        }));
    }
    let mut vaults = Vec::new();
    for (setup, grants) in setups.into_iter().zip(grants) {
        let (apis, pg) = setup.await.unwrap_or_else(|e| panic!("seed {seed}: setup failed: {e}"));
        vaults.push(VaultCtx {
            grants,
            apis,
            pg,
            feeds: (0..APPS).map(|_| Default::default()).collect(),
            model: tokio::sync::Mutex::new(VaultModel::default()),
        });
    }
    let ctx = Arc::new(Ctx {
        apps,
        vaults,
        written: std::sync::Mutex::new(Vec::new()),
        all_columns: schema_columns(),
        failures: std::sync::Mutex::new(Failures::default()),
        stop: std::sync::atomic::AtomicBool::new(false),
        fronts: Default::default(),
        feed_polls: AtomicUsize::new(0),
        outcomes: Default::default(),
    });
    for vault in 0..VAULTS {
        for app in 0..APPS {
            if let Err(e) = check_granted_tables(&ctx, vault, app).await {
                panic!(
                    "seed {seed}: vault {vault} app {app} ({}): {e}",
                    scope_string(&ctx.vaults[vault].grants[app])
                );
            }
        }
    }
    eprintln!("setup took {:?}", started.elapsed());

    // The operations, from concurrent clients.
    let next = Arc::new(AtomicUsize::new(0));
    let ops_started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (ctx, next) = (ctx.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= OPERATIONS || ctx.stop.load(Ordering::SeqCst) {
                    return;
                }
                let mut rng = StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let vault = rng.random_range(0..VAULTS);
                let app = rng.random_range(0..APPS);
                let outcome = if rng.random_bool(FEED_POLLS) {
                    ctx.feed_polls.fetch_add(1, Ordering::SeqCst);
                    poll_feed(&ctx, vault, app, false).await
                } else {
                    operate(&ctx, &mut rng, vault, app).await.map(|_| ())
                };
                if let Err(e) = outcome {
                    let grant = scope_string(&ctx.vaults[vault].grants[app]);
                    ctx.failures
                        .lock()
                        .unwrap()
                        .add(&op_kind(&e), format!("op {i}, vault {vault}, app {app} [{grant}]: {e}"));
                    if ctx.failures.lock().unwrap().total >= 2_000 {
                        ctx.stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await
            .unwrap_or_else(|e| panic!("seed {seed}: a client panicked: {e}"));
    }
    let elapsed = ops_started.elapsed();
    let through = |front: Front| ctx.fronts[front as usize].load(Ordering::SeqCst);
    eprintln!(
        "{} operations in {elapsed:?} ({:.0}/s): {} through the rows API, {} through /v1/sql, {} through pgwire",
        next.load(Ordering::SeqCst).min(OPERATIONS),
        OPERATIONS as f64 / elapsed.as_secs_f64().max(0.001),
        through(Front::Rows),
        through(Front::Sql),
        through(Front::Pg),
    );
    let outcomes = ctx.outcomes.lock().unwrap().clone();
    eprintln!("SQL statements by outcome: {outcomes:?}");

    // Finally every readable table of every vault, as each app sees it
    // through the rows API and through pgwire.
    for vault in 0..VAULTS {
        let v = &ctx.vaults[vault];
        let model = v.model.lock().await;
        for app in 0..APPS {
            for (table, perm) in &v.grants[app] {
                if !perm.actions.contains(&Action::Read) {
                    continue;
                }
                let reply = v.apis[app].get(&rows_path(table, &[("limit", "1000")])).await;
                let result = (|| {
                    check_markers(&reply.text, vault)?;
                    let rows = reply.body["rows"]
                        .as_array()
                        .ok_or_else(|| format!("{}: {}", reply.status, reply.text))?;
                    let expected: BTreeMap<&String, &RowModel> = model
                        .tables
                        .get(table)
                        .map(|r| r.iter().filter(|(_, r)| !perm.own || r.created_by == app).collect())
                        .unwrap_or_default();
                    if rows.len() != expected.len() {
                        return Err(format!("{} rows, the model has {}", rows.len(), expected.len()));
                    }
                    for row in rows {
                        let id = row["id"].as_str().unwrap_or_default().to_owned();
                        let m = expected
                            .get(&id)
                            .ok_or_else(|| format!("row {id} is not in the model"))?;
                        check_row(&ctx, table, perm, row, m)?;
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    ctx.failures.lock().unwrap().add(
                        "final list",
                        format!("final list of {table}, vault {vault}, app {app}: {e}"),
                    );
                }
                let sql = format!("SELECT * FROM {table} ORDER BY id");
                let expected = expected_rows(&model, table, perm, app, |_| true);
                let result = match run_sql(&ctx, vault, app, Front::Pg, &sql, &[], false).await {
                    Ok(answer) => check_sql(&answer, None, Front::Pg)
                        .and_then(|answer| check_rows(&ctx, table, perm, answer.unwrap(), None, &expected)),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    ctx.failures.lock().unwrap().add(
                        "final pgwire select",
                        format!("final {sql} over pgwire, vault {vault}, app {app}: {e}"),
                    );
                }
            }
        }
    }
    // And every app's change feed, followed from the start or from where
    // its last read during the run stopped, ends at what it may see.
    let mut followed = 0;
    for vault in 0..VAULTS {
        let model = ctx.vaults[vault].model.lock().await;
        for app in 0..APPS {
            if let Err(e) = check_feed(&ctx, vault, app, &model).await {
                let grant = scope_string(&ctx.vaults[vault].grants[app]);
                ctx.failures
                    .lock()
                    .unwrap()
                    .add("final feed", format!("vault {vault}, app {app} [{grant}]: {e}"));
            }
            followed += ctx.vaults[vault].feeds[app].lock().await.changes;
        }
    }
    eprintln!(
        "{} feed reads during the run; {followed} changes followed in all",
        ctx.feed_polls.load(Ordering::SeqCst)
    );
    assert!(followed > 200, "the feeds carried only {followed} changes");
    let failures = ctx.failures.lock().unwrap();
    assert!(
        failures.total == 0,
        "seed {seed}: {} failures (COFFER_TEST_SEED={seed} replays them):{}",
        failures.total,
        failures.report()
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the isolation test took {:?}",
        started.elapsed()
    );
}
