//! Isolation under load: 50 vaults, 3 apps with a random grant in each, and
//! thousands of random operations from concurrent clients, every answer
//! checked against a model of what each token may see and do. Set
//! `COFFER_TEST_SEED` to replay a seed (it is printed on failure).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const VAULTS: usize = 50;
const APPS: usize = 3;
const OPERATIONS: usize = 5_000;
const CLIENTS: usize = 32;

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
    model: tokio::sync::Mutex<VaultModel>,
}

struct Ctx {
    apps: Vec<AppInfo>,
    vaults: Vec<VaultCtx>,
    /// Every row id ever written, with its vault (for probes across vaults).
    written: std::sync::Mutex<Vec<(usize, String)>>,
    all_columns: BTreeMap<String, Vec<String>>,
    failures: std::sync::Mutex<Failures>,
    stop: std::sync::atomic::AtomicBool,
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

/// Runs one random operation of `app` in `vault` and checks it.
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
    let visible = |model: &VaultModel, id: &str| -> Option<RowModel> {
        let row = model.tables.get(t)?.get(id)?;
        let p = perm?;
        (!p.own || row.created_by == app).then(|| row.clone())
    };
    let roll = rng.random_range(0..100);
    if roll < 30 {
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
    if roll < 45 {
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
    if roll < 65 {
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
    if roll < 80 {
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
    if roll < 88 {
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
        return Ok(what);
    }
    // SQL: a SELECT of some readable columns, maybe filtered, or a count.
    let readable: Vec<&ColSpec> = table
        .columns
        .iter()
        .filter(|c| perm.is_none_or(|p| p.allows_column(c.0)))
        .collect();
    let how_many = rng.random_range(1..=readable.len().max(1));
    let columns: Vec<&ColSpec> = readable.choose_multiple(rng, how_many).copied().collect();
    let filter = columns
        .iter()
        .find(|c| matches!(c.1, Kind::Text | Kind::Int))
        .filter(|_| rng.random_bool(0.4))
        .map(|c| (c.0, random_value(rng, c.1, vault, true)));
    let count = rng.random_bool(0.3);
    let mut sql = if count {
        format!("SELECT count(*) FROM {t}")
    } else {
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        format!("SELECT id, {} FROM {t}", names.join(", "))
    };
    let mut params = Vec::new();
    if let Some((c, value)) = &filter {
        sql.push_str(&format!(" WHERE {c} = $1"));
        params.push(value.clone());
    }
    if !count {
        sql.push_str(" ORDER BY id");
    }
    let what = format!("sql {sql} {params:?}");
    let expected = expect_right(grant, t, Action::Read).unwrap_or(Expected::Ok);
    let reply = api.sql(&sql, &params).await;
    check_markers(&reply.text, vault).map_err(|e| format!("{what}: {e}"))?;
    if !check_outcome(&reply, &expected, 200).map_err(|e| format!("{what}: {e}"))? {
        return Ok(what);
    }
    let perm = perm.unwrap();
    let mut expected_rows: Vec<(&String, &RowModel)> = model
        .tables
        .get(t)
        .map(|rows| {
            rows.iter()
                .filter(|(_, r)| !perm.own || r.created_by == app)
                .filter(|(_, r)| filter.as_ref().is_none_or(|(c, v)| r.value(c) == *v))
                .collect()
        })
        .unwrap_or_default();
    expected_rows.sort_by(|a, b| a.0.cmp(b.0));
    let rows = reply.body["rows"]
        .as_array()
        .ok_or_else(|| format!("{what}: {}", reply.text))?;
    if count {
        if reply.body["rows"] != json!([[expected_rows.len()]]) {
            return Err(format!("{what}: expected [[{}]]: {}", expected_rows.len(), reply.text));
        }
        return Ok(what);
    }
    let got_ids: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    let expected_ids: Vec<&str> = expected_rows.iter().map(|(id, _)| id.as_str()).collect();
    if got_ids != expected_ids {
        return Err(format!("{what}: ids {got_ids:?}, expected {expected_ids:?}"));
    }
    for (row, (_, model_row)) in rows.iter().zip(&expected_rows) {
        for (i, (name, kind, _)) in columns.iter().enumerate() {
            let expected = model_row.value(name);
            if !same_value(Some(*kind), &expected, &row[i + 1]) {
                return Err(format!(
                    "{what}: {name}: expected {expected}, got {}: {row}",
                    row[i + 1]
                ));
            }
        }
    }
    Ok(what)
}

/// The kind of operation a failure message is about: `list`, `get`,
/// `insert`, `patch`, `delete`, `sql select` or `sql count`.
fn op_kind(message: &str) -> String {
    match message.split_whitespace().next().unwrap_or_default() {
        "sql" if message.contains("count(*)") => "sql count".into(),
        "sql" => "sql select".into(),
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
    // three apps their random grants.
    let base = Api::new(&server.base, "");
    let mut setups = Vec::new();
    for (vault, vault_grants) in grants.iter().enumerate() {
        let browser = server.browser_from(u8::try_from(10 + vault).unwrap());
        let grants = vault_grants.clone();
        let client_ids: Vec<String> = apps.iter().map(|a| a.client_id.clone()).collect();
        let base = base.clone();
        setups.push(tokio::spawn(async move {
            let page = browser.sign_up(&format!("user{vault}@example.org"), None).await;
            assert_eq!(page.status, 200, "sign-up {vault}");
            let mut apis = Vec::new();
            for (grant, client_id) in grants.iter().zip(&client_ids) {
                let tokens = authorize_app(&browser, client_id, &scope_string(grant), None).await;
                apis.push(base.with_token(&tokens.access));
            }
            apis
        }));
    }
    let mut vaults = Vec::new();
    for (setup, grants) in setups.into_iter().zip(grants) {
        vaults.push(VaultCtx {
            grants,
            apis: setup.await.unwrap_or_else(|e| panic!("seed {seed}: setup failed: {e}")),
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
                if let Err(e) = operate(&ctx, &mut rng, vault, app).await {
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
    eprintln!(
        "{} operations in {elapsed:?} ({:.0}/s)",
        next.load(Ordering::SeqCst).min(OPERATIONS),
        OPERATIONS as f64 / elapsed.as_secs_f64().max(0.001)
    );

    // Finally every readable table of every vault, as each app sees it.
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
            }
        }
    }
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
