//! Random SQL and random listings, run as random apps with random grants,
//! each checked against a model: the same SQL over tables that hold only
//! what the grant lets the app see. Nothing outside the grant comes back or
//! changes; every refusal is a 4xx (or the time limit's 503) whose text
//! names no value the app may not read; no request outlives the time limit.
//!
//! Bounded for CI: `COFFER_FUZZ_CASES` (default 2,000) statements, half as
//! many listings and a third as many writes, about ten seconds; seeded by
//! `COFFER_FUZZ_SEED` or the clock, and the seed is printed so a failure can
//! be replayed. For a longer run: `COFFER_FUZZ_CASES=200000 cargo test
//! --workspace --test fuzz -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::TableName;
use coffer_gateway::filter::ListQuery;
use coffer_gateway::{GatewayError, QueryLimits, RequestLimits, rows, sql};
use coffer_query::VaultQuery;
use common::*;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The fuzzed tables and their text columns.
const TABLES: [(&str, &str, [&str; 3]); 2] = [
    ("notes", "notes", ["title", "body", "color"]),
    ("tasks", "items", ["title", "notes", "recurrence"]),
];
const APPS: [&str; 3] = ["w0", "w1", "w2"];
const ROWS_PER_APP: usize = 6;
const TIMEOUT: Duration = Duration::from_secs(3);

/// The value of a cell: unique, recognisable inside any output.
fn cell(table: usize, column: &str, id: &str) -> String {
    format!("<{table}.{column}.{id}>")
}

/// What one random grant allows on one table.
#[derive(Clone, Debug)]
struct TableGrant {
    read: Option<(Vec<&'static str>, bool)>,
    update: bool,
    delete: bool,
}

#[derive(Clone, Debug)]
struct Grant {
    app: &'static str,
    tables: Vec<Option<TableGrant>>,
}

impl Grant {
    fn random(rng: &mut StdRng) -> Grant {
        let app = *APPS.choose(rng).unwrap();
        let tables = TABLES
            .iter()
            .map(|(_, _, columns)| {
                if rng.random_bool(0.2) {
                    return None;
                }
                let read = rng.random_bool(0.8).then(|| {
                    let cols: Vec<&'static str> = columns.iter().copied().filter(|_| rng.random_bool(0.6)).collect();
                    (cols, rng.random_bool(0.5))
                });
                Some(TableGrant {
                    read,
                    update: rng.random_bool(0.5),
                    delete: rng.random_bool(0.3),
                })
            })
            .collect::<Vec<_>>();
        Grant { app, tables }
    }

    fn scope(&self) -> String {
        let mut parts = Vec::new();
        for (i, g) in self.tables.iter().enumerate() {
            let Some(g) = g else { continue };
            let (schema, table, _) = TABLES[i];
            if let Some((cols, own)) = &g.read {
                // A column list is never empty: none chosen reads `title` only.
                let cols = if cols.is_empty() {
                    "(title)".to_owned()
                } else {
                    format!("({})", cols.join(","))
                };
                parts.push(format!("{schema}.{table}{cols}:read{}", if *own { ":own" } else { "" }));
            }
            let mut write = Vec::new();
            if g.update {
                write.push("update");
            }
            if g.delete {
                write.push("delete");
            }
            if !write.is_empty() || g.read.is_none() {
                if write.is_empty() {
                    write.push("create");
                }
                parts.push(format!("{schema}.{table}:{}", write.join("+")));
            }
        }
        if parts.is_empty() {
            parts.push("contacts.groups:create".into());
        }
        parts.join(" ")
    }

    /// Readable columns of table `i` (as granted, `title` when none listed).
    fn readable(&self, i: usize) -> Option<(Vec<&'static str>, bool)> {
        let (cols, own) = self.tables[i].as_ref()?.read.clone()?;
        Some((if cols.is_empty() { vec!["title"] } else { cols }, own))
    }
}

/// Every row of the world: table, id, creator.
struct Data {
    rows: Vec<(usize, String, &'static str)>,
}

async fn fill(w: &World) -> Data {
    let mut data = Data { rows: Vec::new() };
    for app in APPS {
        let writer = w
            .caller(
                app,
                "notes.notes:read+create+update+delete tasks.items:read+create+update+delete",
            )
            .await;
        for (t, (schema, table, columns)) in TABLES.iter().enumerate() {
            let name = TableName::new(*schema, *table);
            let batch = (0..ROWS_PER_APP)
                .map(|r| {
                    let id = format!("{app}{t}{r}");
                    let mut v = serde_json::Map::new();
                    v.insert("id".into(), json!(id));
                    if *table == "items" {
                        v.insert("completed".into(), json!(false));
                    }
                    for c in columns {
                        // A few nulls, so NULL semantics are exercised.
                        if r != 3 || *c == "title" {
                            v.insert((*c).into(), json!(cell(t, c, &id)));
                        }
                    }
                    data.rows.push((t, id, app));
                    v
                })
                .collect();
            rows::insert(&writer, &name, batch).await.unwrap();
        }
    }
    // Half the rows in Parquet files, half in the log tail.
    for (schema, table, _) in TABLES {
        w.engine
            .flush_table(w.vault, &TableName::new(schema, table))
            .await
            .unwrap();
    }
    data
}

/// Tokens of every cell `grant` may not read.
fn forbidden(data: &Data, grant: &Grant) -> Vec<String> {
    let mut out = Vec::new();
    for (t, id, creator) in &data.rows {
        for c in TABLES[*t].2 {
            let visible = grant
                .readable(*t)
                .is_some_and(|(cols, own)| cols.contains(&c) && (!own || *creator == grant.app));
            if !visible {
                out.push(cell(*t, c, id));
            }
        }
    }
    out
}

/// A DataFusion session holding, per granted table, exactly the rows and
/// columns the grant may read — taken from the engine without the gateway.
async fn model(w: &World, grant: &Grant) -> SessionContext {
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_default_catalog_and_schema("vault", "public")
            .with_create_default_catalog_and_schema(false),
    );
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let all = VaultQuery::new(w.engine.clone(), w.vault);
    for (i, (schema, table, _)) in TABLES.iter().enumerate() {
        let Some((cols, own)) = grant.readable(i) else { continue };
        let owner = if own {
            format!(" WHERE _created_by = '{}'", grant.app)
        } else {
            String::new()
        };
        let select = format!(
            "SELECT id, _seq, _created_by, _updated_by, _created_at, _updated_at, {} FROM {schema}.{table}{owner}",
            cols.join(", ")
        );
        let df = all.context().await.unwrap().sql(&select).await.unwrap();
        let schema_ref = Arc::new(df.schema().as_arrow().clone());
        let batches: Vec<RecordBatch> = df.collect().await.unwrap();
        let mem = MemTable::try_new(schema_ref, vec![batches]).unwrap();
        let provider = match catalog.schema(schema) {
            Some(p) => p,
            None => {
                let p: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(schema, p.clone()).unwrap();
                p
            }
        };
        provider.register_table((*table).into(), Arc::new(mem)).unwrap();
    }
    ctx.register_catalog("vault", catalog);
    ctx
}

/// A random SQL query over the fuzzed tables (granted or not).
struct Gen<'a> {
    rng: &'a mut StdRng,
}

impl Gen<'_> {
    fn table(&mut self) -> (usize, String) {
        let t = self.rng.random_range(0..TABLES.len());
        (t, format!("{}.{}", TABLES[t].0, TABLES[t].1))
    }

    fn column(&mut self, t: usize, alias: &str) -> String {
        let c = if self.rng.random_bool(0.15) {
            *["id", "_created_by"].choose(self.rng).unwrap()
        } else {
            *TABLES[t].2.choose(self.rng).unwrap()
        };
        format!("{alias}.{c}")
    }

    fn text(&mut self, t: usize, alias: &str, depth: u32) -> String {
        if depth > 2 {
            return self.column(t, alias);
        }
        match self.rng.random_range(0..9) {
            0 => format!("upper({})", self.text(t, alias, depth + 1)),
            1 => format!("substr({}, 2, 5)", self.text(t, alias, depth + 1)),
            2 => format!("coalesce({}, 'none')", self.column(t, alias)),
            3 => format!("{} || '!'", self.text(t, alias, depth + 1)),
            4 => format!(
                "CASE WHEN {} THEN {} ELSE 'no' END",
                self.cond(t, alias, depth + 1),
                self.column(t, alias)
            ),
            5 => format!("CAST(length({}) AS VARCHAR)", self.column(t, alias)),
            _ => self.column(t, alias),
        }
    }

    fn cond(&mut self, t: usize, alias: &str, depth: u32) -> String {
        if depth > 2 {
            return format!("{} IS NOT NULL", self.column(t, alias));
        }
        match self.rng.random_range(0..10) {
            0 => format!(
                "{} LIKE '%{}%'",
                self.text(t, alias, depth + 1),
                self.rng.random_range(0..6)
            ),
            1 => format!("{} = {}", self.column(t, alias), self.column(t, alias)),
            2 => format!(
                "({} AND {})",
                self.cond(t, alias, depth + 1),
                self.cond(t, alias, depth + 1)
            ),
            3 => format!(
                "({} OR NOT {})",
                self.cond(t, alias, depth + 1),
                self.cond(t, alias, depth + 1)
            ),
            4 => format!("{} IS NULL", self.column(t, alias)),
            5 => format!("CAST({} AS BIGINT) > 0", self.column(t, alias)),
            6 => format!(
                "length({}) / (length({}) - 12) > 0",
                self.column(t, alias),
                self.column(t, alias)
            ),
            7 => format!("{} > '<1'", self.text(t, alias, depth + 1)),
            8 => {
                let (u, name) = self.table();
                format!(
                    "{}.id IN (SELECT s.id FROM {name} s WHERE {})",
                    alias,
                    self.cond(u, "s", depth + 1)
                )
            }
            _ => format!("{} < {}", self.column(t, alias), self.text(t, alias, depth + 1)),
        }
    }

    fn query(&mut self) -> String {
        let (t, name) = self.table();
        match self.rng.random_range(0..8) {
            0 => {
                let (u, other) = self.table();
                format!(
                    "SELECT {}, {} FROM {name} a JOIN {other} b ON {} = {} WHERE {}",
                    self.column(t, "a"),
                    self.column(u, "b"),
                    self.column(t, "a"),
                    self.column(u, "b"),
                    self.cond(t, "a", 0)
                )
            }
            1 => format!(
                "SELECT {} AS v, count(*) AS n FROM {name} a GROUP BY 1",
                self.text(t, "a", 0)
            ),
            2 => {
                let (u, other) = self.table();
                format!(
                    "SELECT {} FROM {name} a WHERE {} UNION ALL SELECT {} FROM {other} a",
                    self.column(t, "a"),
                    self.cond(t, "a", 0),
                    self.column(u, "a")
                )
            }
            3 => format!(
                "SELECT a.id, row_number() OVER (PARTITION BY a._created_by ORDER BY a.id) AS r, {} FROM {name} a",
                self.text(t, "a", 0)
            ),
            4 => format!(
                "SELECT count(*), min({}), max({}) FROM {name} a WHERE {}",
                self.column(t, "a"),
                self.column(t, "a"),
                self.cond(t, "a", 0)
            ),
            5 => format!(
                "SELECT a.id, (SELECT max({}) FROM {name} b WHERE b.id <> a.id) AS m FROM {name} a",
                self.column(t, "b")
            ),
            _ => format!(
                "SELECT {}, {} FROM {name} a WHERE {}",
                self.column(t, "a"),
                self.text(t, "a", 0),
                self.cond(t, "a", 0)
            ),
        }
    }
}

fn sorted_rows(rows: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = rows.iter().map(Value::to_string).collect();
    out.sort();
    out
}

async fn model_rows(ctx: &SessionContext, text: &str) -> Option<Vec<String>> {
    let df = ctx.sql(text).await.ok()?;
    let batches = df.collect().await.ok()?;
    let mut rows = Vec::new();
    for b in &batches {
        coffer_gateway::values::batch_to_arrays(b, &mut rows);
    }
    Some(sorted_rows(&rows))
}

/// Whether `text` holds an expression that can fail on some values (so
/// that whether it fails depends on which rows it meets first).
fn fallible(text: &str) -> bool {
    text.contains("CAST(") && text.contains("AS BIGINT") || text.contains(" / ")
}

fn check_refusal(e: &GatewayError, secrets: &[String], what: &str) {
    assert!(e.code() != "server-error", "{what}: refused with {}: {e}", e.code());
    let text = told(e);
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what}: the error names {s}: {text}");
    }
}

fn cases() -> (u64, usize) {
    let seed = std::env::var("COFFER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let n = std::env::var("COFFER_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("fuzz seed {seed} ({n} cases; replay with COFFER_FUZZ_SEED={seed})");
    (seed, n)
}

fn limits() -> RequestLimits {
    RequestLimits {
        query_timeout: TIMEOUT,
        queries_per_grant: 4,
        queries_total: 8,
        query: QueryLimits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_sees_exactly_the_grant() {
    let (seed, n) = cases();
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::with_limits(limits()).await;
    let data = fill(&w).await;
    let (mut compared, mut refused) = (0, 0);
    for round in 0..n.div_ceil(20) {
        let grant = Grant::random(&mut rng);
        let caller = w.caller(grant.app, &grant.scope()).await;
        let secrets = forbidden(&data, &grant);
        let model = model(&w, &grant).await;
        for _ in 0..20 {
            let text = Gen { rng: &mut rng }.query();
            let what = format!("round {round}, grant `{}` as {}: {text}", grant.scope(), grant.app);
            let started = Instant::now();
            let got = sql::execute(&caller, &text, &[]).await;
            assert!(started.elapsed() < TIMEOUT + Duration::from_secs(2), "{what}: too slow");
            let expected = model_rows(&model, &text).await;
            match (got, expected) {
                (Ok(result), expected) => {
                    let out = Value::Array(result.rows.clone()).to_string();
                    for s in &secrets {
                        assert!(!out.contains(s.as_str()), "{what}: the result holds {s}");
                    }
                    match expected {
                        Some(expected) => assert_eq!(sorted_rows(&result.rows), expected, "{what}"),
                        // Evaluation order may decide whether a failing
                        // expression is reached at all.
                        None => assert!(fallible(&text), "{what}: ran, but fails over the model"),
                    }
                    compared += 1;
                }
                (Err(e), expected) => {
                    check_refusal(&e, &secrets, &what);
                    if expected.is_some() {
                        assert!(
                            matches!(e.code(), "query-limit" | "query-timeout")
                                || (fallible(&text) && e.to_string().contains("failed while running")),
                            "{what}: refused ({e}), but runs over the model"
                        );
                    }
                    refused += 1;
                }
            }
        }
    }
    println!("{compared} statements matched the model, {refused} refused with a 4xx");
    assert!(compared > n / 10, "too few statements ran ({compared}) to say anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_change_exactly_the_rows_the_model_names() {
    let (seed, n) = cases();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let w = World::with_limits(limits()).await;
    let data = fill(&w).await;
    let all = VaultQuery::new(w.engine.clone(), w.vault);
    let snapshot = |t: usize| {
        let all = all.clone();
        async move {
            let (schema, table, cols) = TABLES[t];
            let batches = all
                .sql(&format!("SELECT id, {} FROM {schema}.{table}", cols.join(", ")))
                .await
                .unwrap();
            let mut rows = Vec::new();
            for b in &batches {
                coffer_gateway::values::batch_to_arrays(b, &mut rows);
            }
            rows.into_iter()
                .map(|r| (r[0].as_str().unwrap().to_owned(), r.to_string()))
                .collect::<BTreeMap<String, String>>()
        }
    };
    let (mut writes, mut refused) = (0, 0);
    for round in 0..(n / 3).max(10) {
        let grant = Grant::random(&mut rng);
        let caller = w.caller(grant.app, &grant.scope()).await;
        let secrets = forbidden(&data, &grant);
        let mut g = Gen { rng: &mut rng };
        let (t, name) = g.table();
        let condition = g.cond(t, name.as_str(), 1);
        let delete = g.rng.random_bool(0.4);
        let text = if delete {
            format!("DELETE FROM {name} WHERE {condition}")
        } else {
            format!("UPDATE {name} SET title = 'changed {round}' WHERE {condition}")
        };
        let what = format!("round {round}, grant `{}` as {}: {text}", grant.scope(), grant.app);
        let before = snapshot(t).await;
        let model = model(&w, &grant).await;
        let expected: Option<BTreeSet<String>> = match grant.readable(t) {
            Some(_) => model_rows(&model, &format!("SELECT {name}.id FROM {name} WHERE {condition}"))
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            serde_json::from_str::<Value>(r).unwrap()[0]
                                .as_str()
                                .unwrap()
                                .to_owned()
                        })
                        .collect()
                }),
            None => None,
        };
        let got = sql::execute(&caller, &text, &[]).await;
        let after = snapshot(t).await;
        let changed: BTreeSet<String> = before
            .iter()
            .filter(|(id, row)| after.get(*id) != Some(*row))
            .map(|(id, _)| id.clone())
            .collect();
        match got {
            Ok(result) if expected.is_none() && fallible(&text) => {
                // The model failed on a value the gateway's plan never reached.
                let _ = result;
                writes += 1;
            }
            Ok(result) => {
                let allowed = grant.tables[t]
                    .as_ref()
                    .is_some_and(|g| if delete { g.delete } else { g.update });
                assert!(allowed, "{what}: a write without the right succeeded");
                let expected = expected.unwrap_or_else(|| panic!("{what}: a write without read succeeded"));
                assert_eq!(changed, expected, "{what}");
                assert_eq!(result.row_count as usize, expected.len(), "{what}");
                writes += 1;
            }
            Err(e) => {
                check_refusal(&e, &secrets, &what);
                assert!(changed.is_empty(), "{what}: refused ({e}) but changed {changed:?}");
                refused += 1;
            }
        }
    }
    println!("{writes} writes matched the model, {refused} refused with a 4xx");
    assert!(writes > 0, "no write ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_listings_return_only_readable_rows_and_columns() {
    let (seed, n) = cases();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1157);
    let w = World::with_limits(limits()).await;
    let data = fill(&w).await;
    let (mut listed, mut refused) = (0, 0);
    for round in 0..(n / 2) {
        let grant = Grant::random(&mut rng);
        let caller = w.caller(grant.app, &grant.scope()).await;
        let secrets = forbidden(&data, &grant);
        let t = rng.random_range(0..TABLES.len());
        let (schema, table, cols) = TABLES[t];
        let mut pairs: Vec<(String, String)> = vec![("limit".into(), "1000".into())];
        let mut model_filters: Vec<(String, String, String)> = Vec::new();
        for _ in 0..rng.random_range(0..3) {
            let column = (*cols.choose(&mut rng).unwrap()).to_owned();
            let (op, operand) = match rng.random_range(0..4) {
                0 => ("like", format!("*{}*", rng.random_range(0..6))),
                1 => ("gt", format!("<{t}.{column}.w1")),
                2 => ("is", "null".to_owned()),
                _ => ("neq", format!("<{t}.{column}.w00>")),
            };
            pairs.push((column.clone(), format!("{op}.{operand}")));
            model_filters.push((column, op.to_owned(), operand));
        }
        if rng.random_bool(0.5) {
            pairs.push(("select".into(), (*cols.choose(&mut rng).unwrap()).to_owned()));
        }
        let what = format!(
            "round {round}, grant `{}` as {}: {schema}.{table} {pairs:?}",
            grant.scope(),
            grant.app
        );
        let q = ListQuery::parse(&pairs).unwrap();
        let started = Instant::now();
        let got = rows::list(&caller, &TableName::new(schema, table), &q).await;
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(2), "{what}: too slow");
        match got {
            Ok(page) => {
                let (readable, own) = grant
                    .readable(t)
                    .unwrap_or_else(|| panic!("{what}: listed without read"));
                let out = serde_json::to_string(&page.rows).unwrap();
                for s in &secrets {
                    assert!(!out.contains(s.as_str()), "{what}: the page holds {s}");
                }
                let mut expected: BTreeSet<String> = BTreeSet::new();
                for (rt, id, creator) in &data.rows {
                    if *rt != t || (own && *creator != grant.app) {
                        continue;
                    }
                    let r: usize = id[id.len() - 1..].parse().unwrap();
                    let value = |c: &str| (r != 3 || c == "title").then(|| cell(t, c, id));
                    let keep = model_filters.iter().all(|(c, op, operand)| {
                        assert!(
                            readable.contains(&c.as_str()),
                            "{what}: filtered on an unreadable column"
                        );
                        let v = value(c);
                        match op.as_str() {
                            "like" => v.is_some_and(|v| v.contains(operand.trim_matches('*'))),
                            "gt" => v.is_some_and(|v| v.as_str() > operand.as_str()),
                            "is" => v.is_none(),
                            _ => v.is_some_and(|v| v != *operand),
                        }
                    });
                    if keep {
                        expected.insert(id.clone());
                    }
                }
                let ids: BTreeSet<String> = page.rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
                assert_eq!(ids, expected, "{what}");
                listed += 1;
            }
            Err(e) => {
                check_refusal(&e, &secrets, &what);
                refused += 1;
            }
        }
    }
    println!("{listed} listings matched the model, {refused} refused with a 4xx");
    assert!(listed > 0, "no listing ran");
}
