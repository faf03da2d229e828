//! The pgwire section: Coffer's PostgreSQL wire protocol listener, served in
//! this process beside the HTTP router (as in the HTTP section), driven by
//! concurrent tokio-postgres clients with prepared statements, beside
//! PostgreSQL with row-level security driven through the same client
//! library and the same statement shapes, each connection set to its tenant
//! once, as a multi-tenant app's connections are; then the memory of idle
//! sessions ([`idle`]).

pub mod idle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use coffer_core::VaultId;
use coffer_pgwire::PgwireLimits;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPool;
use tokio_postgres::{Client, NoTls, Statement};

use crate::http::{self, PG_ROLE, Person, SCOPE, TABLE, Worker, gather};
use crate::server::{self, AppToken, Server};
use crate::{Args, Report};

/// Coffer's insert: the id and the user columns; the vault and the system
/// columns come from the session's token.
const COFFER_INSERT: &str = "INSERT INTO contacts.people \
     (id, display_name, given_name, family_name, email, phone, organization, notes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Coffer's point read.
const COFFER_READ: &str = "SELECT * FROM contacts.people WHERE id = $1";
/// PostgreSQL's insert, with the same parameters: the tenant comes from the
/// session's setting (and the policy checks it), as the vault comes from
/// the token in Coffer.
const PG_INSERT: &str = "INSERT INTO bench_people \
     (id, vault_id, display_name, given_name, family_name, email, phone, organization, notes, created_by, updated_by) \
     VALUES ($1, current_setting('app.vault'), $2, $3, $4, $5, $6, $7, $8, 'bench', 'bench')";
/// PostgreSQL's point read (the policy adds the tenant condition).
const PG_READ: &str = "SELECT * FROM bench_people WHERE id = $1";
/// Sets the role and the tenant for the rest of the session, in one round
/// trip: `SET ROLE` and `SET app.vault`, with the values as parameters.
const SET_SESSION_TENANT: &str = "SELECT set_config('role', $1, false), set_config('app.vault', $2, false)";
/// Connections opened at once.
const CONNECTING_AT_ONCE: usize = 128;

/// Runs the pgwire section and adds its figures to `report`. Takes the pool
/// to create PostgreSQL's table and closes it: PostgreSQL's connection limit
/// (100 by default) must hold this section's own connections.
pub async fn run(args: &Args, pg: PgPool, report: &mut Report) -> anyhow::Result<()> {
    let clients = args.pgwire_clients.max(1);
    let limits = PgwireLimits::default();
    let server = Server::start(Some(limits)).await?;
    let addr = server.pgwire.context("the pgwire listener was not started")?;
    // One grant runs at most `queries_per_grant` statements at once and is
    // refused the next with 53300, so the clients are spread over apps of
    // one vault, as many apps of one user would be.
    let per_grant = server.services.gateway.limits().queries_per_grant.max(1);
    let per_app = per_grant.min(limits.sessions_per_app).max(1);
    let (user, _) = server::create_user(&server.services).await?;
    let apps = server::app_tokens(&server.services, user, SCOPE, clients.div_ceil(per_app)).await?;
    println!(
        "pgwire ({TABLE}; an in-process listener, {clients} tokio-postgres clients over {} apps of one vault: \
         the gateway runs at most {per_grant} statements per grant at once and refuses more with 53300; \
         an app may hold {} sessions per vault)",
        apps.len(),
        limits.sessions_per_app
    );
    let apps = &apps;
    let coffer = connect_all(clients, |n| async move {
        let client = connect(&coffer_config(addr, &apps[n % apps.len()])).await?;
        prepare(client, COFFER_INSERT, COFFER_READ).await
    })
    .await
    .context("connecting to Coffer's pgwire listener")?;

    http::setup_pg(&pg).await?;
    pg.close().await;
    let pg_config: tokio_postgres::Config = args.pg.parse().context("the PostgreSQL URL")?;
    let pg_vault = VaultId::generate().to_string();
    let postgres = connect_all(clients, |_| {
        let (config, vault) = (&pg_config, &pg_vault);
        async move { prepare(pg_tenant(config, vault).await?, PG_INSERT, PG_READ).await }
    })
    .await
    .context("connecting to PostgreSQL")?;

    println!("single-row inserts over pgwire (prepared), {clients} clients");
    let (c_rate, c_lat, c_ids) = inserts(&coffer, args.seconds).await?;
    let (p_rate, p_lat, p_ids) = inserts(&postgres, args.seconds).await?;
    check_rls(&pg_config, &postgres[0].client, &pg_vault).await?;
    let what = format!("pgwire inserts/s, {clients} clients (PG: RLS session)");
    report.add(&what, c_rate, p_rate, "rows/s", true);
    report.goal("≥ 2x PG", c_rate >= 2.0 * p_rate);
    report.latencies("pgwire insert", clients, &c_lat, &p_lat, None);

    println!("point reads by id over pgwire (prepared), {clients} clients");
    let (c_rate, c_lat) = reads(&coffer, Arc::new(c_ids), args.seconds).await?;
    let (p_rate, p_lat) = reads(&postgres, Arc::new(p_ids), args.seconds).await?;
    report.add(
        &format!("pgwire point reads/s, {clients} clients"),
        c_rate,
        p_rate,
        "rows/s",
        true,
    );
    report.latencies("pgwire point read", clients, &c_lat, &p_lat, Some(2.0));
    drop((coffer, postgres));
    server.stop().await?;

    idle::run(args, &pg_config, report).await
}

/// A connection with its two prepared statements.
struct Prepared {
    /// The connection.
    client: Client,
    /// The single-row insert (the same parameters on both sides).
    insert: Statement,
    /// The point read by id.
    read: Statement,
}

/// The tokio-postgres configuration of `app` on Coffer's listener at
/// `addr`: user = client id, password = access token, database `vault`.
pub(crate) fn coffer_config(addr: SocketAddr, app: &AppToken) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(&app.client_id)
        .password(&app.token)
        .dbname(coffer_pgwire::DATABASE)
        .connect_timeout(Duration::from_secs(30));
    config
}

/// Connects, and drives the connection in its own task until the client is
/// dropped.
pub(crate) async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A PostgreSQL connection set to `vault` for its whole session, under the
/// role row-level security applies to.
pub(crate) async fn pg_tenant(config: &tokio_postgres::Config, vault: &str) -> anyhow::Result<Client> {
    let client = connect(config).await?;
    client
        .query_one(SET_SESSION_TENANT, &[&PG_ROLE, &vault])
        .await
        .map_err(pg_error)?;
    Ok(client)
}

/// Prepares `insert` and `read` on `client`.
async fn prepare(client: Client, insert: &str, read: &str) -> anyhow::Result<Arc<Prepared>> {
    let insert = client.prepare(insert).await.map_err(pg_error)?;
    let read = client.prepare(read).await.map_err(pg_error)?;
    Ok(Arc::new(Prepared { client, insert, read }))
}

/// `n` connections made by `connect(i)`, at most [`CONNECTING_AT_ONCE`] at
/// once, in the order of `i`.
pub(crate) async fn connect_all<T, F, Fut>(n: usize, connect: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..n)
        .map(connect)
        .buffered(CONNECTING_AT_ONCE)
        .try_collect()
        .await
}

/// A tokio-postgres error with its SQLSTATE and message, when the server
/// sent one.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow!("{} {}", db.code().code(), db.message()),
        None => anyhow::Error::new(e),
    }
}

/// Inserts for `seconds` from every connection, each one prepared insert of
/// one contact. Returns rows/s, the sorted latencies and the new ids.
async fn inserts(side: &[Arc<Prepared>], seconds: u64) -> anyhow::Result<(f64, Vec<Duration>, Vec<String>)> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<Worker> = side
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let c = c.clone();
            tokio::spawn(async move {
                let (mut lat, mut ids) = (Vec::new(), Vec::new());
                let mut i = 0;
                while Instant::now() < deadline {
                    let p = Person::new(n, i);
                    let id = coffer_storage::new_row_id();
                    let t = Instant::now();
                    let written = c
                        .client
                        .execute(
                            &c.insert,
                            &[
                                &id,
                                &p.display_name,
                                &p.given_name,
                                &p.family_name,
                                &p.email,
                                &p.phone,
                                &p.organization,
                                &p.notes,
                            ],
                        )
                        .await
                        .map_err(pg_error)?;
                    lat.push(t.elapsed());
                    ensure!(written == 1, "an insert wrote {written} rows");
                    ids.push(id);
                    i += 1;
                }
                anyhow::Ok((lat, ids))
            })
        })
        .collect();
    gather(tasks, start).await
}

/// Point reads for `seconds` from every connection, of random ids among
/// `ids`, each one prepared `SELECT * … WHERE id = $1`. Returns reads/s and
/// the sorted latencies.
async fn reads(side: &[Arc<Prepared>], ids: Arc<Vec<String>>, seconds: u64) -> anyhow::Result<(f64, Vec<Duration>)> {
    ensure!(!ids.is_empty(), "no rows were inserted");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<Worker> = side
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let (c, ids) = (c.clone(), ids.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let id = &ids[rng.random_range(0..ids.len())];
                    let t = Instant::now();
                    let row = c.client.query_opt(&c.read, &[id]).await.map_err(pg_error)?;
                    lat.push(t.elapsed());
                    ensure!(row.is_some(), "row {id} missing");
                }
                anyhow::Ok((lat, Vec::new()))
            })
        })
        .collect();
    let (rate, lat, _) = gather(tasks, start).await?;
    Ok((rate, lat))
}

/// Checks that the policy is in force: the tenant sees its rows through
/// `own`, a session set to another tenant sees none.
async fn check_rls(config: &tokio_postgres::Config, own: &Client, vault: &str) -> anyhow::Result<()> {
    const COUNT: &str = "SELECT count(*) FROM bench_people";
    let mine: i64 = own.query_one(COUNT, &[]).await.map_err(pg_error)?.get(0);
    ensure!(mine > 0, "the tenant {vault} sees none of its rows");
    let other = pg_tenant(config, &VaultId::generate().to_string()).await?;
    let theirs: i64 = other.query_one(COUNT, &[]).await.map_err(pg_error)?.get(0);
    ensure!(
        theirs == 0,
        "row-level security is not in force: another tenant sees {theirs} rows"
    );
    Ok(())
}
