//! `coffer-bench`: runs the same workloads against Coffer's storage engine
//! and against PostgreSQL (a table with a `vault_id` column, primary-key
//! index and row-level security), in one run, and prints both figures with
//! their ratio. The HTTP section ([`http`]) does the same through the whole
//! server: the `/v1` data API over HTTP beside PostgreSQL row-level security
//! over its wire protocol. The pgwire section ([`pgwire`]) drives Coffer's
//! own PostgreSQL wire protocol listener and PostgreSQL through the same
//! client library, and measures the memory of idle sessions.
#![forbid(unsafe_code)]

mod http;
mod pgwire;
mod server;
mod sync;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use coffer_core::schema::SchemaDef;
use coffer_core::schema::registry::SchemaRegistry;
use coffer_core::{AppId, TableName, VaultId};
use coffer_query::VaultQuery;
use coffer_storage::{Engine, EngineOptions, Mutation, Op, Values, open_embedded};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The allocator the `coffer` binary uses, so the in-process server is
/// measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks Coffer's storage engine beside PostgreSQL.
#[derive(Parser)]
struct Args {
    /// PostgreSQL to compare with.
    #[arg(
        long,
        env = "COFFER_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pg: String,
    /// Rows in the bulk-load, point-read and aggregate workloads.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Seconds each write-throughput workload runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Run only the provisioning and write workloads.
    #[arg(long, conflicts_with_all = ["http_only", "pgwire"])]
    writes_only: bool,
    /// Run only the HTTP section: the `/v1` data API of an in-process server
    /// beside PostgreSQL with row-level security, and the token-check cost.
    #[arg(long, conflicts_with = "pgwire")]
    http_only: bool,
    /// Run only the pgwire section: point reads and inserts over Coffer's
    /// PostgreSQL wire protocol beside PostgreSQL with row-level security
    /// (both through tokio-postgres), and the memory of idle sessions.
    #[arg(long)]
    pgwire: bool,
    /// Concurrent clients in the pgwire section (one connection each, on
    /// both sides).
    #[arg(long, default_value_t = 64)]
    pgwire_clients: usize,
    /// Idle sessions opened in the pgwire section (0: none).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Serve the idle sessions of the pgwire section (the server process
    /// the section starts; not for use by hand).
    #[arg(long = "pgwire-idle-server", hide = true)]
    pgwire_idle_server: bool,
    /// Concurrent clients in the HTTP section (one keep-alive connection
    /// each; as many PostgreSQL connections).
    #[arg(long, default_value_t = 64)]
    http_clients: usize,
    /// Point reads measured.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Run only the sync section: write-to-live-stream latency with 1, 100
    /// and 1,000 open change streams, and the memory of an idle stream.
    #[arg(long, conflicts_with_all = ["writes_only", "http_only", "pgwire"])]
    sync: bool,
}

/// The figures of a run: one row per workload, printed as a table at the end.
struct Report {
    /// Workload, Coffer's figure, PostgreSQL's figure, the comparison.
    rows: Vec<(String, String, String, String)>,
}

impl Report {
    /// Records a figure measured on both sides and prints it.
    fn add(&mut self, what: &str, coffer: f64, pg: f64, unit: &str, higher_is_better: bool) {
        let ratio = if higher_is_better { coffer / pg } else { pg / coffer };
        self.rows.push((
            what.to_owned(),
            format!("{} {unit}", fmt(coffer)),
            format!("{} {unit}", fmt(pg)),
            format!("{ratio:.2}x {}", if ratio >= 1.0 { "better" } else { "worse" }),
        ));
        println!("  {what}: coffer {} {unit}, postgres {} {unit}", fmt(coffer), fmt(pg));
    }

    /// Records a figure that has no PostgreSQL counterpart and prints it;
    /// `note` fills the comparison column.
    fn single(&mut self, what: &str, coffer: f64, unit: &str, note: &str) {
        self.rows.push((
            what.to_owned(),
            format!("{} {unit}", fmt(coffer)),
            "-".to_owned(),
            note.to_owned(),
        ));
        println!("  {what}: coffer {} {unit}", fmt(coffer));
    }

    /// Records the p50 and p99 of two sorted latency samples as
    /// `{what} p50, {clients} clients` and the p99 likewise; with
    /// `p50_within`, the goal that Coffer's p50 is at most that many times
    /// PostgreSQL's.
    fn latencies(&mut self, what: &str, clients: usize, coffer: &[Duration], pg: &[Duration], p50_within: Option<f64>) {
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let (c, g) = (percentile(coffer, p), percentile(pg, p));
            self.add(&format!("{what} {name}, {clients} clients"), c, g, "µs", false);
            if let (Some(k), "p50") = (p50_within, name) {
                self.goal(&format!("≤ {k}x PG"), c <= k * g);
            }
        }
    }

    /// Notes the goal of the last figure, and whether it is met, in its
    /// comparison column.
    fn goal(&mut self, goal: &str, met: bool) {
        let verdict = if met { "met" } else { "not met" };
        if let Some(row) = self.rows.last_mut() {
            row.3.push_str(&format!("; goal {goal}: {verdict}"));
        }
        println!("    goal {goal}: {verdict}");
    }

    /// Prints the table.
    fn print(&self) {
        println!("\n| workload | Coffer | PostgreSQL | Coffer vs PG |");
        println!("|---|---|---|---|");
        for (a, b, c, d) in &self.rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
}

/// A figure with two decimals below 100, none from 100.
fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn audit_schema() -> SchemaDef {
    serde_json::from_value(json!({
        "name": "bench", "version": 1, "description": "Benchmark data",
        "tables": [{"name": "audit", "description": "Audit log entries", "columns": [
            {"name": "ts", "type": "timestamp", "nullable": false, "description": "When"},
            {"name": "actor", "type": "text", "nullable": false, "description": "Who"},
            {"name": "action", "type": "text", "nullable": false, "description": "What"},
            {"name": "resource", "type": "text", "nullable": false, "description": "On what"},
            {"name": "ip", "type": "text", "description": "From where"},
            {"name": "user_agent", "type": "text", "description": "With what"},
            {"name": "details", "type": "json", "description": "Details"}
        ]}]
    }))
    .expect("bench schema")
}

const ACTIONS: [&str; 12] = [
    "login", "logout", "read", "update", "create", "delete", "share", "export", "invite", "grant", "revoke", "download",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "coffer-cli/0.3.1 (linux; x86_64)",
    "okhttp/4.12.0",
];

/// Generates a realistic audit log. Audit logs are bursty: a session (one
/// actor, one address, one client) performs a run of actions, mostly on a
/// few resources it keeps returning to, and popular resources are popular
/// across sessions (Zipf-like). Timestamps advance by a few milliseconds with
/// jitter; details carry a status, a payload size and a latency.
struct AuditLog<R: Rng> {
    rng: R,
    ts: i64,
    left_in_session: u32,
    actor: String,
    ip: String,
    agent: &'static str,
    working_set: Vec<String>,
}

impl<R: Rng> AuditLog<R> {
    fn new(rng: R, base_ts: i64) -> Self {
        Self {
            rng,
            ts: base_ts,
            left_in_session: 0,
            actor: String::new(),
            ip: String::new(),
            agent: AGENTS[0],
            working_set: Vec::new(),
        }
    }

    /// A number in 0..n, small numbers far more likely (roughly Zipf).
    fn skewed(&mut self, n: u32) -> u32 {
        let u: f64 = self.rng.random_range(0.0..1.0);
        ((n as f64).powf(u) - 1.0) as u32
    }

    fn resource(&mut self) -> String {
        let (vault, table, row) = (self.skewed(2_000), self.skewed(12), self.skewed(50_000));
        format!("/vaults/v{vault}/tables/t{table}/rows/{row}")
    }

    fn next_row(&mut self) -> serde_json::Map<String, serde_json::Value> {
        if self.left_in_session == 0 {
            self.left_in_session = self.rng.random_range(3..60);
            let user = self.skewed(20_000);
            self.actor = format!("user{user}@example.org");
            self.ip = format!("10.{}.{}.{}", user % 4, (user / 4) % 64, 1 + user % 250);
            self.agent = AGENTS[(user as usize + self.rng.random_range(0..2)) % AGENTS.len()];
            self.working_set = (0..self.rng.random_range(1..6)).map(|_| self.resource()).collect();
        }
        self.left_in_session -= 1;
        self.ts += self.rng.random_range(100..20_000);
        let action = ACTIONS[self.skewed(ACTIONS.len() as u32) as usize];
        let resource = if self.rng.random_bool(0.9) {
            self.working_set[self.rng.random_range(0..self.working_set.len())].clone()
        } else {
            self.resource()
        };
        let status = if self.rng.random_bool(0.97) {
            200
        } else {
            [401, 403, 404, 409, 500][self.rng.random_range(0..5)]
        };
        let bytes = if action == "read" || action == "download" {
            self.skewed(1 << 20)
        } else {
            0
        };
        let details = json!({"status": status, "bytes": bytes, "latency_ms": 1 + self.skewed(2_000)});
        let t = chrono::DateTime::from_timestamp_micros(self.ts)
            .expect("ts")
            .to_rfc3339();
        json!({"ts": t, "actor": self.actor, "action": action, "resource": resource, "ip": self.ip,
               "user_agent": self.agent, "details": details})
        .as_object()
        .expect("object")
        .clone()
    }
}

/// The `p` quantile of sorted latencies, in µs.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.pgwire_idle_server {
        return pgwire::idle::serve(&args).await;
    }
    if args.sync {
        return sync::run(&args).await;
    }
    let pg = PgPoolOptions::new()
        .max_connections(70.max(args.http_clients as u32 + 1))
        .connect(&args.pg)
        .await
        .with_context(|| {
            format!(
                "connecting to PostgreSQL at {} (start it, or set COFFER_BENCH_PG)",
                args.pg
            )
        })?;
    let mut report = Report { rows: Vec::new() };
    if !args.http_only && !args.pgwire {
        storage_workloads(&args, &pg, &mut report).await?;
    }
    if !args.writes_only && !args.pgwire {
        println!("HTTP data API (an in-process server, {} clients)", args.http_clients);
        http::run(&args, &pg, &mut report).await?;
    }
    if !args.writes_only && !args.http_only {
        pgwire::run(&args, pg, &mut report).await?;
    }
    report.print();
    Ok(())
}

/// The storage engine's workloads beside PostgreSQL's: vault provisioning,
/// single-row writes, then (unless `--writes-only`) bulk load, bytes on
/// disk, point reads and an aggregate.
async fn storage_workloads(args: &Args, pg: &PgPool, report: &mut Report) -> anyhow::Result<()> {
    let pg = pg.clone();
    let dir = tempfile::tempdir()?;
    let mut registry = SchemaRegistry::builtin()?;
    registry.insert(audit_schema(), "bench")?;
    // A page cache large enough for the whole audit table once decoded, as
    // PostgreSQL gets the OS page cache for its table and index.
    let options = EngineOptions {
        flush_rows: 65_536,
        page_cache_bytes: 1 << 30,
        ..EngineOptions::default()
    };
    let engine = open_embedded(dir.path(), registry, options).await?.engine;
    let vault = engine.create_vault().await?;
    engine.install_schema(vault, "bench", None).await?;
    engine.install_schema(vault, "notes", None).await?;
    setup_pg(&pg).await?;
    let pg_vault = VaultId::generate().to_string();

    println!("vault provisioning");
    let mut c_lat = Vec::new();
    let mut p_lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        engine.create_vault().await?;
        c_lat.push(t.elapsed());
        let t = Instant::now();
        sqlx::query("INSERT INTO bench_vaults (id) VALUES ($1)")
            .bind(VaultId::generate().to_string())
            .execute(&pg)
            .await?;
        p_lat.push(t.elapsed());
    }
    c_lat.sort();
    p_lat.sort();
    report.add(
        "create vault p50 (PG: insert a tenant row)",
        percentile(&c_lat, 0.5),
        percentile(&p_lat, 0.5),
        "µs",
        false,
    );

    println!("single-row durable writes");
    for writers in [1usize, 64] {
        let (c_rate, c_lat) = coffer_writes(&engine, vault, writers, args.seconds).await?;
        let (p_rate, p_lat) = pg_writes(&pg, &pg_vault, writers, args.seconds).await?;
        report.add(
            &format!("single-row writes/s, {writers} writer(s)"),
            c_rate,
            p_rate,
            "rows/s",
            true,
        );
        report.add(
            &format!("write ack p50, {writers} writer(s)"),
            percentile(&c_lat, 0.5),
            percentile(&p_lat, 0.5),
            "µs",
            false,
        );
        report.add(
            &format!("write ack p99, {writers} writer(s)"),
            percentile(&c_lat, 0.99),
            percentile(&p_lat, 0.99),
            "µs",
            false,
        );
    }

    if args.writes_only {
        engine.shutdown().await;
        return Ok(());
    }

    println!("bulk load of {} audit rows", args.rows);
    let table = TableName::new("bench", "audit");
    let t0 = Instant::now();
    let base_ts = 1_735_689_600_000_000i64;
    let mut log = AuditLog::new(rand::rngs::StdRng::seed_from_u64(42), base_ts);
    let mut ids = Vec::with_capacity(args.rows);
    let chunk = 20_000;
    for start in (0..args.rows).step_by(chunk) {
        let mutations: Vec<Mutation> = (start..(start + chunk).min(args.rows))
            .map(|_| Mutation {
                table: table.clone(),
                op: Op::Insert { values: log.next_row() },
            })
            .collect();
        for row in engine.write(vault, &AppId::new("bench"), mutations).await? {
            ids.push(row.id);
        }
    }
    let written = t0.elapsed().as_secs_f64();
    engine.flush_table(vault, &table).await?;
    engine.compact_table(vault, &table).await?;
    let coffer_load = t0.elapsed().as_secs_f64();
    println!(
        "    coffer: {written:.1} s to commit, {:.1} s to flush and compact",
        coffer_load - written
    );
    let t0 = Instant::now();
    let mut log = AuditLog::new(rand::rngs::StdRng::seed_from_u64(42), base_ts);
    pg_bulk_load(&pg, &pg_vault, args.rows, &mut log).await?;
    let pg_load = t0.elapsed().as_secs_f64();
    report.add("bulk load (durable, flushed)", coffer_load, pg_load, "s", false);
    let coffer_bytes = engine.table_bytes(vault, &table).await? as f64 / 1_048_576.0;
    for (column, bytes) in engine.column_bytes(vault, &table).await? {
        println!("    {column}: {:.1} bytes/row", bytes as f64 / args.rows as f64);
    }
    let pg_bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('bench_audit')")
        .fetch_one(&pg)
        .await?;
    report.add(
        "bytes on disk for the audit rows",
        coffer_bytes,
        pg_bytes as f64 / 1_048_576.0,
        "MiB",
        false,
    );

    println!("point reads by id");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..1000 {
        engine.get(vault, &table, &ids[rng.random_range(0..ids.len())]).await?; // warm caches, as PG's buffers are
    }
    let mut c_lat = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let id = &ids[rng.random_range(0..ids.len())];
        let t = Instant::now();
        let row = engine.get(vault, &table, id).await?;
        c_lat.push(t.elapsed());
        anyhow::ensure!(row.is_some(), "row {id} missing");
    }
    c_lat.sort();
    let pg_ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM bench_audit WHERE vault_id = $1 ORDER BY random() LIMIT 5000")
            .bind(&pg_vault)
            .fetch_all(&pg)
            .await?;
    let p_idx = pg_point_reads(&pg, &pg_vault, &pg_ids, args.reads, true).await?;
    let p_noidx = pg_point_reads(&pg, &pg_vault, &pg_ids, 20, false).await?;
    report.add(
        "point read p50 (PG with index)",
        percentile(&c_lat, 0.5),
        percentile(&p_idx, 0.5),
        "µs",
        false,
    );
    report.add(
        "point read p99 (PG with index)",
        percentile(&c_lat, 0.99),
        percentile(&p_idx, 0.99),
        "µs",
        false,
    );
    report.add(
        "point read p50 (PG without index)",
        percentile(&c_lat, 0.5),
        percentile(&p_noidx, 0.5),
        "µs",
        false,
    );

    println!("aggregate: count by action");
    let q = VaultQuery::new(engine.clone(), vault);
    let mut c_times = Vec::new();
    let mut p_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        q.sql("SELECT action, count(*) FROM bench.audit GROUP BY action")
            .await?;
        c_times.push(t.elapsed());
        let t = Instant::now();
        sqlx::query("SELECT action, count(*) FROM bench_audit WHERE vault_id = $1 GROUP BY action")
            .bind(&pg_vault)
            .fetch_all(&pg)
            .await?;
        p_times.push(t.elapsed());
    }
    c_times.sort();
    p_times.sort();
    report.add(
        "count by action (median of 5)",
        percentile(&c_times, 0.5) / 1000.0,
        percentile(&p_times, 0.5) / 1000.0,
        "ms",
        false,
    );

    engine.shutdown().await;
    Ok(())
}

async fn setup_pg(pg: &PgPool) -> anyhow::Result<()> {
    for sql in [
        "DROP TABLE IF EXISTS bench_vaults",
        "CREATE TABLE bench_vaults (id text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())",
        "DROP TABLE IF EXISTS bench_notes",
        "DROP TABLE IF EXISTS bench_audit",
        "CREATE TABLE bench_notes (vault_id text NOT NULL, id text NOT NULL, title text NOT NULL, body text, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (vault_id, id))",
        "CREATE TABLE bench_audit (vault_id text NOT NULL, id text NOT NULL, ts timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, resource text NOT NULL, ip text, user_agent text, details jsonb, PRIMARY KEY (vault_id, id))",
        "ALTER TABLE bench_notes ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE bench_audit ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE bench_notes FORCE ROW LEVEL SECURITY",
        "ALTER TABLE bench_audit FORCE ROW LEVEL SECURITY",
        "DROP POLICY IF EXISTS vault_rows ON bench_notes",
        "DROP POLICY IF EXISTS vault_rows ON bench_audit",
        "CREATE POLICY vault_rows ON bench_notes USING (true)",
        "CREATE POLICY vault_rows ON bench_audit USING (true)",
    ] {
        sqlx::query(sql).execute(pg).await.with_context(|| sql.to_owned())?;
    }
    Ok(())
}

fn note(i: usize) -> Values {
    json!({"title": format!("note {i}"), "body": "Remember to buy milk, call the bank and water the plants."})
        .as_object()
        .expect("object")
        .clone()
}

async fn coffer_writes(
    engine: &Engine,
    vault: VaultId,
    writers: usize,
    seconds: u64,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let table = TableName::new("notes", "notes");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (engine, table) = (engine.clone(), table.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                engine.insert(vault, &AppId::new("bench"), &table, note(i)).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    collect(tasks, seconds).await
}

async fn pg_writes(pg: &PgPool, vault: &str, writers: usize, seconds: u64) -> anyhow::Result<(f64, Vec<Duration>)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let vault = Arc::new(vault.to_owned());
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (pg, vault) = (pg.clone(), vault.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let body = note(i);
                sqlx::query("INSERT INTO bench_notes (vault_id, id, title, body) VALUES ($1, $2, $3, $4)")
                    .bind(vault.as_str())
                    .bind(coffer_storage::new_row_id())
                    .bind(body["title"].as_str())
                    .bind(body["body"].as_str())
                    .execute(&pg)
                    .await?;
                lat.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    collect(tasks, seconds).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
    seconds: u64,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((all.len() as f64 / seconds as f64, all))
}

async fn pg_bulk_load(pg: &PgPool, vault: &str, rows: usize, log: &mut AuditLog<impl Rng>) -> anyhow::Result<()> {
    let mut i = 0;
    while i < rows {
        let n = 5_000.min(rows - i);
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO bench_audit (vault_id, id, ts, actor, action, resource, ip, user_agent, details) \
             SELECT a, b, c::timestamptz, d, e, f, g, h, i::jsonb FROM (",
        );
        let batch: Vec<_> = (0..n).map(|_| log.next_row()).collect();
        qb.push_values(batch, |mut b, r| {
            b.push_bind(vault)
                .push_bind(coffer_storage::new_row_id())
                .push_bind(r["ts"].as_str().map(str::to_owned))
                .push_bind(r["actor"].as_str().map(str::to_owned))
                .push_bind(r["action"].as_str().map(str::to_owned))
                .push_bind(r["resource"].as_str().map(str::to_owned))
                .push_bind(r["ip"].as_str().map(str::to_owned))
                .push_bind(r["user_agent"].as_str().map(str::to_owned))
                .push_bind(r["details"].to_string());
        });
        qb.push(") AS v(a, b, c, d, e, f, g, h, i)");
        qb.build().execute(pg).await?;
        i += n;
    }
    sqlx::query("VACUUM ANALYZE bench_audit").execute(pg).await?;
    Ok(())
}

async fn pg_point_reads(
    pg: &PgPool,
    vault: &str,
    ids: &[String],
    n: usize,
    index: bool,
) -> anyhow::Result<Vec<Duration>> {
    let mut conn = pg.acquire().await?;
    if !index {
        sqlx::query("SET enable_indexscan = off").execute(&mut *conn).await?;
        sqlx::query("SET enable_bitmapscan = off").execute(&mut *conn).await?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let id = &ids[rng.random_range(0..ids.len())];
        let t = Instant::now();
        let row = sqlx::query("SELECT * FROM bench_audit WHERE vault_id = $1 AND id = $2")
            .bind(vault)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        lat.push(t.elapsed());
        anyhow::ensure!(row.is_some(), "PG row {id} missing");
    }
    sqlx::query("RESET ALL").execute(&mut *conn).await?;
    lat.sort();
    Ok(lat)
}
