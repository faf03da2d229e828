//! The HTTP section: the real Coffer server, served in this process on a
//! loopback port, driven through the `/v1` data API by concurrent clients
//! with keep-alive connections, beside PostgreSQL with row-level security
//! driven the way a multi-tenant API drives it (each operation a transaction
//! that sets the tenant, then one statement); then the cost of checking a
//! token, uncached and through the gateway's cache.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use coffer::services::{self, Services};
use coffer::web::{self, AppState};
use coffer_auth::{Action, Request};
use coffer_core::{TableName, VaultId};
use coffer_oauth::{AuthorizeParams, ClientCredentials, NewApp};
use coffer_storage::EngineOptions;
use rand::distr::Alphanumeric;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Args, Report, percentile};

/// The table written and read.
const TABLE: &str = "contacts.people";
/// What the benchmark app asks for.
const SCOPE: &str = "contacts.people:read+create";
/// The app's redirect URI. Never visited: the code is taken from the
/// location the approval redirects to.
const REDIRECT_URI: &str = "http://127.0.0.1/callback";
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
const PG_ROLE: &str = "coffer_bench_rls";
/// Token checks timed per variant.
const TOKEN_CHECKS: usize = 5_000;

/// Runs the HTTP section and adds its figures to `report`.
pub async fn run(args: &Args, pg: &PgPool, report: &mut Report) -> anyhow::Result<()> {
    let clients = args.http_clients.max(1);
    let server = Server::start().await?;
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
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        report.add(
            &format!("HTTP insert {name}, {clients} clients"),
            percentile(&c_lat, p),
            percentile(&p_lat, p),
            "µs",
            false,
        );
    }

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
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        report.add(
            &format!("HTTP point read {name}, {clients} clients"),
            percentile(&c_lat, p),
            percentile(&p_lat, p),
            "µs",
            false,
        );
    }
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

/// A Coffer server serving its router on a loopback port of this process,
/// on a temporary data directory.
struct Server {
    /// `http://127.0.0.1:{port}`, also the OAuth issuer.
    base_url: String,
    /// The server's engine, OAuth server, gateway and access log.
    services: Services,
    /// Starts the graceful shutdown.
    stop: oneshot::Sender<()>,
    /// The serving task.
    task: JoinHandle<std::io::Result<()>>,
    /// The data directory, deleted when dropped.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Opens a new data directory and serves it as `coffer serve` does.
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (services, _) = services::open(dir.path(), &base_url, EngineOptions::default(), Default::default()).await?;
        services
            .oauth
            .load_revocation_view()
            .await
            .context("loading grants into the revocation view")?;
        let app = web::router(AppState::new(services.clone(), &base_url));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            base_url,
            services,
            stop,
            task,
            _dir: dir,
        })
    }

    /// Stops serving, writes the access log's last entries and shuts the
    /// engine down, as `coffer serve` does.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("the server did not stop within 10 s")???;
        self.services.access_log.flush().await;
        self.services.engine.shutdown().await;
        Ok(())
    }
}

/// Creates a user with a vault, registers a public app and runs the
/// authorization code flow with PKCE through the OAuth server's API (the
/// user approves everything asked): the grant is stored in the control
/// database and known to the revocation view, as after a real consent.
/// Returns the vault and the access token.
async fn access_token(services: &Services) -> anyhow::Result<(VaultId, String)> {
    let oauth = &services.oauth;
    let user = coffer::create_account(services, "bench@example.org", "correct horse battery staple")
        .await
        .context("creating the user")?;
    let app = oauth
        .register_app(NewApp::public("Coffer bench", vec![REDIRECT_URI.to_owned()]))
        .await
        .context("registering the app")?
        .app;
    let verifier: String = rand::rng().sample_iter(Alphanumeric).take(64).map(char::from).collect();
    let params = AuthorizeParams {
        response_type: Some("code".to_owned()),
        client_id: Some(app.client_id.as_str().to_owned()),
        redirect_uri: Some(REDIRECT_URI.to_owned()),
        scope: Some(SCOPE.to_owned()),
        code_challenge: Some(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))),
        code_challenge_method: Some("S256".to_owned()),
        ..AuthorizeParams::default()
    };
    let pending = oauth
        .validate_authorize_request(&params)
        .await
        .map_err(|e| anyhow!("the authorization request was refused: {e}"))?;
    let approved = oauth
        .approve(user.id, &pending.requested, &pending)
        .await
        .context("approving the authorization request")?;
    let code = query_param(&approved.location, "code")?;
    let tokens = oauth
        .exchange_code(
            &ClientCredentials::public(app.client_id.as_str()),
            &code,
            Some(REDIRECT_URI),
            &verifier,
            None,
        )
        .await
        .context("exchanging the authorization code")?;
    Ok((user.vault_id, tokens.access_token))
}

/// The value of query parameter `name` in `url`; only values that need no
/// percent-decoding (the server's codes are base64url) are accepted.
fn query_param(url: &str, name: &str) -> anyhow::Result<String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no `{name}` in the redirect location"))
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
struct Person {
    /// `Given Family N`.
    display_name: String,
    /// A given name.
    given_name: &'static str,
    /// A family name.
    family_name: &'static str,
    /// A unique address.
    email: String,
    /// A phone number.
    phone: String,
    /// An employer.
    organization: &'static str,
    /// A sentence.
    notes: &'static str,
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
    fn new(client: usize, i: usize) -> Self {
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
type Worker = JoinHandle<anyhow::Result<(Vec<Duration>, Vec<String>)>>;

/// Joins the workers: operations per second since `start`, the sorted
/// latencies and every id the workers returned.
async fn gather(tasks: Vec<Worker>, start: Instant) -> anyhow::Result<(f64, Vec<Duration>, Vec<String>)> {
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
/// security on the tenant set per transaction in `app.vault`, and a role
/// without superuser rights the transactions switch to, so the policy
/// applies.
async fn setup_pg(pg: &PgPool) -> anyhow::Result<()> {
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
