//! The HTTP section: the real Coffer server, served in this process on a
//! loopback port, driven through the `/v1` data API by concurrent clients
//! with keep-alive connections, beside PostgreSQL with row-level security
//! driven the way a multi-tenant API drives it (each operation a transaction
//! that sets the tenant, then one statement); then the cost of checking a
//! token, uncached and through the gateway's cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use chrono::Utc;
use coffer::services::Services;
use coffer_auth::{Action, Request};
use coffer_core::{TableName, VaultId};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use sqlx::postgres::PgPool;
use tokio::task::JoinHandle;

use crate::server::{self, Server};
use crate::{Args, Report, percentile};

/// The table written and read.
pub(crate) const TABLE: &str = "contacts.people";
/// What the benchmark app asks for.
pub(crate) const SCOPE: &str = "contacts.people:read+create";
/// The user columns an insert writes.
const COLUMNS: [&str; 7] = [
    "display_name",
    "given_name",
    "family_name",
    "email",
    "phone",
    "organization",
    "notes",
];
/// The role PostgreSQL transactions switch to so that row-level security
/// applies (the connecting superuser would bypass it).
pub(crate) const PG_ROLE: &str = "coffer_bench_rls";
/// Token checks timed per variant.
const TOKEN_CHECKS: usize = 5_000;

/// Runs the HTTP section and adds its figures to `report`.
pub async fn run(args: &Args, pg: &PgPool, report: &mut Report) -> anyhow::Result<()> {
    let clients = args.http_clients.max(1);
    let server = Server::start(None).await?;
    let (vault, token) = access_token(&server.services).await?;
    let api = Arc::new(Api {
        rows_url: format!("{}/v1/tables/{TABLE}/rows", server.base_url),
        auth: HeaderValue::from_str(&format!("Bearer {token}")).context("the access token as a header")?,
    });
    let http = connect_clients(&server.base_url, &api, clients).await?;
    setup_pg(pg).await?;
    warm_pg(pg, clients).await?;
    let pg_vault: Arc<str> = Arc::from(VaultId::generate().to_string());

    println!("single-row inserts over HTTP ({TABLE}), {clients} clients");
    let (c_rate, c_lat, c_ids) = http_inserts(&api, &http, args.seconds).await?;
    let (p_rate, p_lat, p_ids) = pg_inserts(pg, &pg_vault, clients, args.seconds).await?;
    check_rls(pg, &pg_vault).await?;
    let what = format!("HTTP inserts/s, {clients} clients (PG: RLS transaction)");
    report.add(&what, c_rate, p_rate, "rows/s", true);
    report.latencies("HTTP insert", clients, &c_lat, &p_lat, None);

    println!("point reads over HTTP by id, {clients} clients");
    let (c_rate, c_lat) = http_reads(&api, &http, Arc::new(c_ids), args.reads).await?;
    let (p_rate, p_lat) = pg_reads(pg, &pg_vault, Arc::new(p_ids), clients, args.reads).await?;
    report.add(
        &format!("HTTP point reads/s, {clients} clients"),
        c_rate,
        p_rate,
        "rows/s",
        true,
    );
    report.latencies("HTTP point read", clients, &c_lat, &p_lat, None);
    drop(http);

    println!("token check per request ({TOKEN_CHECKS} checks each)");
    let uncached = uncached_checks(&server.services, &token, vault)?;
    report.single(
        "token check p50, uncached (verify + check)",
        percentile(&uncached, 0.5),
        "µs",
        "signature and facts read every time",
    );
    let cached = gateway_checks(&server.services, &token).await?;
    report.single(
        "token check p50, gateway (cached authenticate + check)",
        percentile(&cached, 0.5),
        "µs",
        "target: tens of µs",
    );

    server.stop().await
}

/// Creates a user with a vault and one app authorized for [`SCOPE`].
/// Returns the vault and the app's access token.
async fn access_token(services: &Services) -> anyhow::Result<(VaultId, String)> {
    let (user, vault) = server::create_user(services).await?;
    let app = server::app_token(services, user, "Coffer bench", SCOPE).await?;
    Ok((vault, app.token))
}

/// Where the clients send their requests, and the header they authenticate
/// with.
struct Api {
    /// `{base}/v1/tables/contacts.people/rows`.
    rows_url: String,
    /// `Bearer {access token}`.
    auth: HeaderValue,
}

/// One HTTP client per simulated app instance, each keeping one keep-alive
/// connection. Each makes one authenticated request first (`GET /v1/tables`),
/// so connections are open and the token verified before timing starts.
async fn connect_clients(base_url: &str, api: &Api, n: usize) -> anyhow::Result<Vec<reqwest::Client>> {
    let clients = (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
                .context("building an HTTP client")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = format!("{base_url}/v1/tables");
    futures::future::try_join_all(clients.iter().map(|c| async {
        let response = c.get(&url).header(AUTHORIZATION, api.auth.clone()).send().await?;
        expect(response, StatusCode::OK, "GET /v1/tables").await?;
        anyhow::Ok(())
    }))
    .await?;
    Ok(clients)
}

/// `response` if it has `status`; otherwise an error with its body.
async fn expect(response: reqwest::Response, status: StatusCode, what: &str) -> anyhow::Result<reqwest::Response> {
    if response.status() == status {
        return Ok(response);
    }
    let got = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(anyhow!("{what}: expected {status}, got {got}: {body}"))
}

/// A contact as an app would write it.
#[derive(Serialize)]
pub(crate) struct Person {
    /// `Given Family N`.
    pub display_name: String,
    /// A given name.
    pub given_name: &'static str,
    /// A family name.
    pub family_name: &'static str,
    /// A unique address.
    pub email: String,
    /// A phone number.
    pub phone: String,
    /// An employer.
    pub organization: &'static str,
    /// A sentence.
    pub notes: &'static str,
}

/// Given names the contacts cycle through.
const GIVEN: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
/// Family names the contacts cycle through.
const FAMILY: [&str; 8] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
];
/// Employers the contacts cycle through.
const ORGANIZATIONS: [&str; 4] = ["Analytical Engines Ltd", "Navy", "Bell Labs", "Stanford"];

impl Person {
    /// The `i`th contact of client `client`.
    pub fn new(client: usize, i: usize) -> Self {
        let (given, family) = (GIVEN[i % GIVEN.len()], FAMILY[(i / GIVEN.len()) % FAMILY.len()]);
        Person {
            display_name: format!("{given} {family} {client}-{i}"),
            given_name: given,
            family_name: family,
            email: format!(
                "{}.{}.{client}.{i}@example.org",
                given.to_lowercase(),
                family.to_lowercase()
            ),
            phone: format!("+44 20 7946 {:04}", (client * 7919 + i) % 10_000),
            organization: ORGANIZATIONS[i % ORGANIZATIONS.len()],
            notes: "Met at the conference; prefers email, follow up about the draft in spring.",
        }
    }
}

/// Inserts for `seconds` from every client: `POST /v1/tables/contacts.people/rows`
/// with one row, `201` with the row back. Returns rows/s, the sorted
/// latencies and the new ids.
async fn http_inserts(
    api: &Arc<Api>,
    clients: &[reqwest::Client],
    seconds: u64,
) -> anyhow::Result<(f64, Vec<Duration>, Vec<String>)> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let (api, client) = (api.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut ids) = (Vec::new(), Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let person = Person::new(n, i);
                let t = Instant::now();
                let response = client
                    .post(&api.rows_url)
                    .header(AUTHORIZATION, api.auth.clone())
                    .json(&person)
                    .send()
                    .await?;
                let row: serde_json::Value = expect(response, StatusCode::CREATED, "POST rows").await?.json().await?;
                lat.push(t.elapsed());
                let id = row["id"].as_str().context("the inserted row has no id")?;
                ids.push(id.to_owned());
                i += 1;
            }
            anyhow::Ok((lat, ids))
        }));
    }
    gather(tasks, start).await
}

/// `reads` point reads spread over the clients, of random ids among `ids`:
/// `GET /v1/tables/contacts.people/rows/{id}`, `200` with the row. Returns
/// reads/s and the sorted latencies.
async fn http_reads(
    api: &Arc<Api>,
    clients: &[reqwest::Client],
    ids: Arc<Vec<String>>,
    reads: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    ensure!(!ids.is_empty(), "no rows were inserted over HTTP");
    let per_client = reads.div_ceil(clients.len()).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (n, client) in clients.iter().enumerate() {
        let (api, client, ids) = (api.clone(), client.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let id = &ids[rng.random_range(0..ids.len())];
                let url = format!("{}/{id}", api.rows_url);
                let t = Instant::now();
                let response = client.get(&url).header(AUTHORIZATION, api.auth.clone()).send().await?;
                expect(response, StatusCode::OK, "GET row").await?.bytes().await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok((lat, Vec::new()))
        }));
    }
    let (rate, lat, _) = gather(tasks, start).await?;
    Ok((rate, lat))
}

/// A client's task: its latencies and the ids it wrote (none for reads).
pub(crate) type Worker = JoinHandle<anyhow::Result<(Vec<Duration>, Vec<String>)>>;

/// Joins the workers: operations per second since `start`, the sorted
/// latencies and every id the workers returned.
pub(crate) async fn gather(tasks: Vec<Worker>, start: Instant) -> anyhow::Result<(f64, Vec<Duration>, Vec<String>)> {
    let (mut lat, mut ids) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, i) = task.await??;
        lat.extend(l);
        ids.extend(i);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    ensure!(!lat.is_empty(), "no operation completed");
    Ok((lat.len() as f64 / elapsed, lat, ids))
}

/// Creates the PostgreSQL side: a table shaped like `contacts.people` (with
/// the tenant column and the system columns Coffer keeps), row-level
/// security on the tenant in `app.vault` (set per transaction here, per
/// session by the pgwire section), and a role without superuser rights the
/// connections switch to, so the policy applies.
pub(crate) async fn setup_pg(pg: &PgPool) -> anyhow::Result<()> {
    // The statements name the role [`PG_ROLE`] literally: sqlx takes only
    // static SQL text.
    for sql in [
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'coffer_bench_rls') THEN \
         CREATE ROLE coffer_bench_rls NOLOGIN; END IF; END $$",
        "DROP TABLE IF EXISTS bench_people",
        "CREATE TABLE bench_people (id text PRIMARY KEY, vault_id text NOT NULL, display_name text NOT NULL, \
         given_name text, family_name text, email text, phone text, organization text, notes text, \
         created_by text NOT NULL, updated_by text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), \
         updated_at timestamptz NOT NULL DEFAULT now())",
        "ALTER TABLE bench_people ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE bench_people FORCE ROW LEVEL SECURITY",
        "CREATE POLICY vault_rows ON bench_people \
         USING (vault_id = current_setting('app.vault', true)) \
         WITH CHECK (vault_id = current_setting('app.vault', true))",
        "GRANT SELECT, INSERT ON bench_people TO coffer_bench_rls",
    ] {
        sqlx::query(sql).execute(pg).await.with_context(|| sql.to_owned())?;
    }
    Ok(())
}

/// Opens `n` connections, as the HTTP clients opened theirs.
async fn warm_pg(pg: &PgPool, n: usize) -> anyhow::Result<()> {
    let connections = futures::future::try_join_all((0..n).map(|_| pg.acquire())).await?;
    drop(connections);
    Ok(())
}

/// Sets the role and the tenant for the rest of the transaction, in one
/// round trip (as PostgREST does).
const SET_TENANT: &str = "SELECT set_config('role', $1, true), set_config('app.vault', $2, true)";

/// Starts a transaction for `vault`.
async fn tenant_tx(pg: &PgPool, vault: &str) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pg.begin().await?;
    sqlx::query(SET_TENANT)
        .bind(PG_ROLE)
        .bind(vault)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Inserts for `seconds` over `clients` connections, each insert a
/// transaction: set the tenant, `INSERT … RETURNING *`, commit. Returns
/// rows/s, the sorted latencies and the new ids.
async fn pg_inserts(
    pg: &PgPool,
    vault: &Arc<str>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(f64, Vec<Duration>, Vec<String>)> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (pg, vault) = (pg.clone(), vault.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut ids) = (Vec::new(), Vec::new());
            let mut i = 0;
            while Instant::now() < deadline {
                let p = Person::new(n, i);
                let id = coffer_storage::new_row_id();
                let t = Instant::now();
                let mut tx = tenant_tx(&pg, &vault).await?;
                sqlx::query(
                    "INSERT INTO bench_people (id, vault_id, display_name, given_name, family_name, email, phone, \
                     organization, notes, created_by, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING *",
                )
                .bind(&id)
                .bind(&*vault)
                .bind(&p.display_name)
                .bind(p.given_name)
                .bind(p.family_name)
                .bind(&p.email)
                .bind(&p.phone)
                .bind(p.organization)
                .bind(p.notes)
                .bind("bench")
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                lat.push(t.elapsed());
                ids.push(id);
                i += 1;
            }
            anyhow::Ok((lat, ids))
        }));
    }
    gather(tasks, start).await
}

/// `reads` point reads over `clients` connections, of random ids among
/// `ids`, each a transaction: set the tenant, `SELECT * … WHERE id = $1`,
/// commit. Returns reads/s and the sorted latencies.
async fn pg_reads(
    pg: &PgPool,
    vault: &Arc<str>,
    ids: Arc<Vec<String>>,
    clients: usize,
    reads: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    ensure!(!ids.is_empty(), "no rows were inserted into PostgreSQL");
    let per_client = reads.div_ceil(clients).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (pg, vault, ids) = (pg.clone(), vault.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let id = &ids[rng.random_range(0..ids.len())];
                let t = Instant::now();
                let mut tx = tenant_tx(&pg, &vault).await?;
                let row = sqlx::query("SELECT * FROM bench_people WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                lat.push(t.elapsed());
                ensure!(row.is_some(), "PG row {id} missing");
            }
            anyhow::Ok((lat, Vec::new()))
        }));
    }
    let (rate, lat, _) = gather(tasks, start).await?;
    Ok((rate, lat))
}

/// Checks that the policy is in force: another tenant sees none of the rows.
async fn check_rls(pg: &PgPool, vault: &str) -> anyhow::Result<()> {
    let count = |vault: String| async move {
        let mut tx = tenant_tx(pg, &vault).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_people")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        anyhow::Ok(n)
    };
    ensure!(count(vault.to_owned()).await? > 0, "the tenant sees none of its rows");
    let other = count(VaultId::generate().to_string()).await?;
    ensure!(
        other == 0,
        "row-level security is not in force: another tenant sees {other} rows"
    );
    Ok(())
}

/// Times the authorizer without a cache, as if every request brought a token
/// never seen: verify the signature and read the facts, then decide an
/// insert into `contacts.people` writing [`COLUMNS`].
fn uncached_checks(services: &Services, token: &str, vault: VaultId) -> anyhow::Result<Vec<Duration>> {
    let authorizer = services.oauth.authorizer();
    let table: TableName = TABLE.parse().map_err(|e| anyhow!("{TABLE}: {e}"))?;
    let mut lat = Vec::with_capacity(TOKEN_CHECKS);
    for _ in 0..TOKEN_CHECKS {
        let t = Instant::now();
        let verified = authorizer.verify(token)?;
        let request = Request::new(vault, table.clone(), Action::Create, Utc::now()).with_columns(COLUMNS);
        authorizer.check(&verified, &request)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok(lat)
}

/// Times the gateway's per-request work: authenticate the token (verified
/// once, then from the cache; expiry and revocation every time), then check
/// an insert into `contacts.people` writing [`COLUMNS`].
async fn gateway_checks(services: &Services, token: &str) -> anyhow::Result<Vec<Duration>> {
    let gateway = &services.gateway;
    let table: TableName = TABLE.parse().map_err(|e| anyhow!("{TABLE}: {e}"))?;
    // The HTTP requests already verified this (bearer) token; make sure it
    // is cached.
    let credentials = token.into();
    gateway.authenticate(&credentials).await?;
    let mut lat = Vec::with_capacity(TOKEN_CHECKS);
    for _ in 0..TOKEN_CHECKS {
        let t = Instant::now();
        let caller = gateway.authenticate(&credentials).await?;
        caller.check(&table, Action::Create, &COLUMNS)?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok(lat)
}
