//! The pgwire front end with real clients: tokio-postgres (simple and
//! extended protocol, binary types) and psql, against a listener over a
//! throwaway engine and gateway.

mod common;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use coffer_auth::{RootKeyPair, ScopeSet, TokenClaims, bind_to_key, mint};
use coffer_core::{AppId, GrantId};
use coffer_gateway::RequestLimits;
use coffer_pgwire::PgwireLimits;
use common::{World, code, told};
use serde_json::json;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::{FromSql, Type};

const PEOPLE: &str = "contacts.people:read+create+update+delete";

/// The rows' first column of a simple query's results, as text.
fn texts(messages: &[SimpleQueryMessage]) -> Vec<Option<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

/// Inserts `n` people (`n0`, `n1`, …) in one statement: enough rows for a
/// cross join to run long.
async fn insert_people(client: &tokio_postgres::Client, n: usize) {
    let values: Vec<String> = (0..n).map(|i| format!("('n{i}')")).collect();
    client
        .simple_query(&format!(
            "INSERT INTO contacts.people (display_name) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
}

/// Runs `sql` as one simple query and checks that it is refused with
/// SQLSTATE `expected`.
async fn refused(client: &tokio_postgres::Client, sql: &str, expected: &str) {
    let e = client.simple_query(sql).await.unwrap_err();
    assert_eq!(code(&e), expected, "{sql}: {}", told(&e));
}

fn completions(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn connects_with_a_token_and_runs_statements_in_one_simple_query() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    let out = client
        .simple_query(
            "INSERT INTO contacts.people (id, display_name) VALUES ('p1', 'Ada'), ('p2', 'Grace'); \
             UPDATE contacts.people SET given_name = 'G' WHERE id = 'p2'; \
             SELECT display_name FROM contacts.people ORDER BY display_name; \
             DELETE FROM contacts.people WHERE id = 'p1'; \
             SELECT count(*) FROM contacts.people",
        )
        .await
        .unwrap();
    assert_eq!(completions(&out), vec![2, 1, 2, 1, 1]);
    assert_eq!(
        texts(&out),
        vec![Some("Ada".into()), Some("Grace".into()), Some("1".into())]
    );
    // A failing statement stops the query; the ones before it stay done.
    refused(&client, "INSERT INTO contacts.people (id, display_name) VALUES ('p3', 'Lin'); SELECT nope FROM contacts.people; DELETE FROM contacts.people", "42703").await;
    let left = client
        .simple_query("SELECT id FROM contacts.people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(texts(&left), vec![Some("p2".into()), Some("p3".into())]);
}

#[tokio::test]
async fn wrong_credentials_are_refused_at_connect() {
    let world = World::new().await;
    let good = world.token("app-a", PEOPLE);
    // Garbage, empty, another root key, another client, expired, revoked.
    let other_root = RootKeyPair::generate();
    let grant = ScopeSet::parse(PEOPLE)
        .unwrap()
        .resolve(|name| world.registry.latest(name))
        .unwrap();
    let claims = TokenClaims::new(
        world.vault,
        AppId::new("app-a"),
        GrantId::generate(),
        1,
        grant.clone(),
        Utc::now(),
        TimeDelta::minutes(5),
    );
    let forged = mint(&other_root, &claims).unwrap();
    let expired = {
        let id = GrantId::generate();
        world.view.set_grant(id, 1, coffer_auth::GrantStatus::Active);
        let claims = TokenClaims::new(
            world.vault,
            AppId::new("app-a"),
            id,
            1,
            grant,
            Utc::now() - TimeDelta::minutes(10),
            TimeDelta::minutes(5),
        );
        mint(&world.root, &claims).unwrap()
    };
    let revoked = world.token("app-a", PEOPLE);
    world.revoke(revoked.grant);
    let bound = bind_to_key(&world.token("app-a", PEOPLE).token, "jkt-of-some-key").unwrap();
    for (what, user, password) in [
        ("garbage", "app-a", "not-a-token".to_owned()),
        ("forged", "app-a", forged),
        ("other client", "app-b", good.token.clone()),
        ("expired", "app-a", expired),
        ("revoked", "app-a", revoked.token),
        ("DPoP-bound", "app-a", bound),
        ("token with a space", "app-a", format!("{} x", good.token)),
    ] {
        let e = world.connect(user, &password).await.unwrap_err();
        assert_eq!(code(&e), "28P01", "{what}: {}", told(&e));
    }
    let e = world.connect("app-a", "").await.unwrap_err();
    assert!(
        e.as_db_error().is_some_and(|d| d.code().code().starts_with("28")),
        "{e}"
    );
    // Another database.
    let mut config = world.config("app-a", &good.token);
    config.dbname("postgres");
    let Err(e) = config.connect(tokio_postgres::NoTls).await else {
        panic!("another database was accepted");
    };
    assert_eq!(code(&e), "3D000", "{}", told(&e));
    // The right token still works.
    world.connect("app-a", &good.token).await.unwrap();
}

#[tokio::test]
async fn a_token_revoked_or_expired_during_a_session_ends_it_at_the_next_statement() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    world.revoke(t.grant);
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "28000", "{}", told(&e));
    assert!(told(&e).contains("no longer valid"), "{}", told(&e));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.is_closed(), "the session ends");

    // The same for a token that expires, and for statements this front end
    // answers itself.
    let short = world.token_for("app-a", PEOPLE, TimeDelta::seconds(1));
    let client = world.connect("app-a", &short.token).await.unwrap();
    client.simple_query("SHOW TimeZone").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(&client, "SHOW TimeZone", "28000").await;
}

#[tokio::test]
async fn ungranted_tables_and_columns_look_exactly_like_missing_ones() {
    let world = World::new().await;
    let t = world.token("app-a", "contacts.people(display_name):read");
    let client = world.connect("app-a", &t.token).await.unwrap();
    let ungranted = client.simple_query("SELECT * FROM notes.notes").await.unwrap_err();
    let missing = client.simple_query("SELECT * FROM notes.nope").await.unwrap_err();
    assert_eq!(code(&ungranted), "42P01");
    assert_eq!(code(&missing), "42P01");
    assert_eq!(
        told(&ungranted).replace("notes.notes", "T"),
        told(&missing).replace("notes.nope", "T")
    );
    let ungranted = client
        .simple_query("SELECT email FROM contacts.people")
        .await
        .unwrap_err();
    let missing = client
        .simple_query("SELECT emale FROM contacts.people")
        .await
        .unwrap_err();
    assert_eq!(code(&ungranted), "42703", "{}", told(&ungranted));
    assert_eq!(code(&missing), "42703", "{}", told(&missing));
    assert_eq!(
        told(&ungranted).replace("email", "C"),
        told(&missing).replace("emale", "C")
    );
    // The extended protocol says the same.
    let e = client.prepare("SELECT email FROM contacts.people").await.unwrap_err();
    assert_eq!(code(&e), "42703");
    let e = client
        .prepare("SELECT * FROM notes.notes WHERE id = $1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    // A right the grant lacks is 42501 and names it in scope syntax.
    let e = client
        .simple_query("INSERT INTO contacts.people (display_name) VALUES ('x')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{}", told(&e));
    assert!(told(&e).contains("contacts.people"), "{}", told(&e));
    refused(&client, "SELEC 1", "42601").await;
    refused(&client, "DROP TABLE contacts.people", "0A000").await;
}

#[tokio::test]
async fn error_text_never_carries_a_value_the_caller_may_not_read() {
    let world = World::new().await;
    let writer = world.token("app-w", PEOPLE);
    let w = world.connect("app-w", &writer.token).await.unwrap();
    w.simple_query("INSERT INTO contacts.people (id, display_name, email) VALUES ('s1', 'secret-name', 'secret@mail')")
        .await
        .unwrap();
    // Another app, own rows only, one column: the other app's row does not
    // exist for it, whatever the statement does with it.
    let reader = world.token("app-r", "contacts.people(display_name):read+create+update:own");
    let r = world.connect("app-r", &reader.token).await.unwrap();
    for statement in [
        "SELECT CAST(display_name AS BIGINT) FROM contacts.people",
        "SELECT 1 / (length(display_name) - 11) FROM contacts.people",
        "UPDATE contacts.people SET display_name = 'x' WHERE CAST(display_name AS BIGINT) = 1",
        "SELECT email FROM contacts.people",
        "INSERT INTO contacts.people (id, display_name) VALUES ('s1', 'mine')",
    ] {
        match r.simple_query(statement).await {
            Ok(out) => assert!(texts(&out).is_empty(), "{statement}: {out:?}"),
            Err(e) => {
                let said = told(&e);
                assert!(!said.contains("secret"), "{statement}: {said}");
            }
        }
    }
    // Its own value failing a cast is reported by kind, not by value.
    r.simple_query("INSERT INTO contacts.people (id, display_name) VALUES ('m1', 'my-own-value')")
        .await
        .unwrap();
    let e = r
        .simple_query("SELECT CAST(display_name AS BIGINT) FROM contacts.people")
        .await
        .unwrap_err();
    assert!(!told(&e).contains("my-own-value"), "{}", told(&e));
    // A parameter of the wrong type is named, its value is not repeated.
    let e = r
        .query(
            "SELECT display_name FROM contacts.people WHERE _seq = $1",
            &[&"secret-param"],
        )
        .await
        .unwrap_err();
    assert!(!told(&e).contains("secret-param"), "{}", told(&e));
}

#[tokio::test]
async fn huge_queries_and_too_many_parameters_are_bounded() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    // One statement past the gateway's length.
    let long = format!("SELECT '{}'", "x".repeat(70 * 1024));
    refused(&client, &long, "54000").await;
    // A whole query past the front end's length.
    let huge = "SELECT 1;".repeat(coffer_pgwire::statements::MAX_QUERY_LEN / 9 + 1);
    refused(&client, &huge, "54000").await;
    // Too many statements.
    let many = "SELECT 1;".repeat(coffer_pgwire::statements::MAX_STATEMENTS + 1);
    refused(&client, &many, "54000").await;
    // Too many parameters.
    let n = coffer_pgwire::statements::MAX_PARAMETERS + 1;
    let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT id FROM contacts.people WHERE id IN ({})", list.join(","));
    let e = client.prepare_typed(&sql, &vec![Type::TEXT; n]).await.unwrap_err();
    assert_eq!(code(&e), "54000", "{}", told(&e));
    let e = client.prepare(&sql).await.unwrap_err();
    assert_eq!(code(&e), "54000", "{}", told(&e));
    // Deep nesting.
    let deep = format!("SELECT 1{}", "+1".repeat(300));
    refused(&client, &deep, "54000").await;
    // The session goes on.
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_time_or_memory_limit_is_57014_or_54000() {
    let limits = RequestLimits {
        query_timeout: Duration::from_secs(1),
        ..RequestLimits::default()
    };
    let world = World::with(limits, PgwireLimits::default()).await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    insert_people(&client, 400).await;
    // Too much memory.
    refused(
        &client,
        "SELECT a.display_name, b.display_name, c.display_name, d.display_name \
             FROM contacts.people a, contacts.people b, contacts.people c, contacts.people d \
             ORDER BY a.display_name, b.display_name, c.display_name, d.display_name LIMIT 5",
        "54000",
    )
    .await;
    // Too much time.
    let started = std::time::Instant::now();
    refused(
        &client,
        "SELECT a.display_name, b.display_name, c.display_name \
             FROM contacts.people a, contacts.people b, contacts.people c \
             ORDER BY a.display_name, b.display_name, c.display_name LIMIT 5",
        "57014",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn sessions_per_app_are_bounded() {
    let pgwire = PgwireLimits {
        sessions_per_app: 2,
        ..PgwireLimits::default()
    };
    let world = World::with(RequestLimits::default(), pgwire).await;
    let t = world.token("app-a", PEOPLE);
    let first = world.connect("app-a", &t.token).await.unwrap();
    let _second = world
        .connect("app-a", &world.token("app-a", PEOPLE).token)
        .await
        .unwrap();
    let e = world.connect("app-a", &t.token).await.unwrap_err();
    assert_eq!(code(&e), "53300", "{}", told(&e));
    // Another app has its own sessions.
    world
        .connect("app-b", &world.token("app-b", PEOPLE).token)
        .await
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    world.connect("app-a", &t.token).await.unwrap();
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let pgwire = PgwireLimits {
        idle_timeout: Duration::from_millis(300),
        ..PgwireLimits::default()
    };
    let world = World::with(RequestLimits::default(), pgwire).await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(client.is_closed() || client.simple_query("SELECT 1").await.is_err());
}

/// A uuid read in the binary format (16 bytes), as text.
#[derive(Debug, PartialEq)]
struct Uuid(String);

impl<'a> FromSql<'a> for Uuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Uuid(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
}

#[tokio::test]
async fn prepared_statements_round_trip_every_mapped_type_in_binary() {
    let world = World::new().await;
    let t = world.token(
        "app-a",
        "journal.entries:read+create journal.photos:read+create health.measurements:read+create",
    );
    let client = world.connect("app-a", &t.token).await.unwrap();
    let day = NaiveDate::from_ymd_opt(2025, 1, 31).unwrap();
    let at: DateTime<Utc> = "2025-01-31T08:30:00.123456Z".parse().unwrap();
    let tags = json!(["a", {"b": [1, 2.5, null]}]);
    let insert = client
        .prepare(
            "INSERT INTO journal.entries (id, written_on, written_at, title, mood, tags, latitude, favorite) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .unwrap();
    assert_eq!(
        insert.params(),
        &[
            Type::TEXT,
            Type::DATE,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::FLOAT8,
            Type::BOOL
        ]
    );
    let n = client
        .execute(
            &insert,
            &[
                &"e1",
                &day,
                &at,
                &"Dear diary",
                &3i64,
                &tags.to_string(),
                &51.5f64,
                &true,
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows = client
        .query(
            "SELECT written_on, written_at, title, mood, tags, latitude, favorite, embedding \
             FROM journal.entries WHERE id = $1",
            &[&"e1"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::DATE,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::INT8,
            Type::JSONB,
            Type::FLOAT8,
            Type::BOOL,
            Type::FLOAT4_ARRAY
        ]
    );
    assert_eq!(row.get::<_, NaiveDate>(0), day);
    assert_eq!(row.get::<_, DateTime<Utc>>(1), at);
    assert_eq!(row.get::<_, String>(2), "Dear diary");
    assert_eq!(row.get::<_, i64>(3), 3);
    assert_eq!(row.get::<_, serde_json::Value>(4), tags);
    assert_eq!(row.get::<_, f64>(5), 51.5);
    assert!(row.get::<_, bool>(6));
    assert_eq!(row.get::<_, Option<Vec<f32>>>(7), None);

    // bytea and uuid.
    let photo = vec![0u8, 1, 2, 255];
    client
        .execute(
            "INSERT INTO journal.photos (id, entry_id, image) VALUES ($1, $2, $3)",
            &[&"ph1", &"e1", &photo],
        )
        .await
        .unwrap();
    let got: Vec<u8> = client
        .query_one("SELECT image FROM journal.photos WHERE id = 'ph1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, photo);
    let sample = "6fa459ea-ee8a-3ca4-894e-db77e160355e";
    client
        .execute(
            "INSERT INTO health.measurements (kind, value, unit, measured_at, sample_id) VALUES ('steps', $1, 'count', $2, $3)",
            &[&1234.5f64, &at, &sample],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT sample_id, value, measured_at FROM health.measurements", &[])
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::UUID);
    assert_eq!(row.get::<_, Uuid>(0), Uuid(sample.into()));
    assert_eq!(row.get::<_, f64>(1), 1234.5);
    assert_eq!(row.get::<_, DateTime<Utc>>(2), at);

    // Typed parameters given by the client, and NULLs.
    let select = client
        .prepare_typed(
            "SELECT title FROM journal.entries WHERE mood = $1 AND written_on = $2",
            &[Type::INT4, Type::DATE],
        )
        .await
        .unwrap();
    let rows = client.query(&select, &[&3i32, &day]).await.unwrap();
    assert_eq!(rows.len(), 1);
    let none: Option<i64> = None;
    let rows = client
        .query("SELECT title FROM journal.entries WHERE mood = $1", &[&none])
        .await
        .unwrap();
    assert!(rows.is_empty());
    // The same statement prepared once runs many times.
    for _ in 0..3 {
        assert_eq!(client.query(&select, &[&3i32, &day]).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn driver_probes_and_transaction_control_are_accepted() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let mut client = world.connect("app-a", &t.token).await.unwrap();
    let version: String = client.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(version.starts_with("PostgreSQL 16"), "{version}");
    let out = client.simple_query("SELECT version()").await.unwrap();
    assert!(texts(&out)[0].as_deref().unwrap().contains("Coffer"));
    let out = client
        .simple_query(
            "SET application_name = 'report'; SHOW application_name; SHOW TimeZone; SET extra_float_digits = 3",
        )
        .await
        .unwrap();
    assert_eq!(texts(&out), vec![Some("report".into()), Some("UTC".into())]);
    let e = client.simple_query("SHOW no_such_setting").await.unwrap_err();
    assert_eq!(code(&e), "42704");
    // A transaction block: each statement is committed when it runs.
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO contacts.people (id, display_name) VALUES ('t1', 'In a block')",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO contacts.people (id, display_name) VALUES ('t2', 'Rolled back?')",
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let out = client
        .simple_query("SELECT id FROM contacts.people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(texts(&out), vec![Some("t1".into()), Some("t2".into())]);
    // After a failure inside a block, statements are refused until its end.
    let out = client.simple_query("BEGIN").await.unwrap();
    assert_eq!(out.len(), 1);
    client
        .simple_query("SELECT nope FROM contacts.people")
        .await
        .unwrap_err();
    let e = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "25P02");
    client.simple_query("ROLLBACK").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn psql_connects_and_runs_statements() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let (ok, out, err) = world
        .psql(
            "app-a",
            &t.token,
            &[
                "INSERT INTO contacts.people (id, display_name, favorite) VALUES ('p1', 'Ada', true)",
                "SELECT id, display_name, favorite, _created_by FROM contacts.people",
            ],
        )
        .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("INSERT 0 1"), "{out}");
    assert!(out.contains(" p1 | Ada          | t        | app-a"), "{out}");
    let (ok, _, err) = world.psql("app-a", "wrong", &["SELECT 1"]).await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    let (ok, _, err) = world.psql("app-a", &t.token, &["SELECT * FROM notes.notes"]).await;
    assert!(!ok);
    assert!(err.contains("table `notes.notes` does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_running_query() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    insert_people(&client, 400).await;
    let cancel = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let e = client
        .simple_query(
            "SELECT a.display_name, b.display_name, c.display_name \
             FROM contacts.people a, contacts.people b, contacts.people c \
             ORDER BY a.display_name, b.display_name, c.display_name LIMIT 5",
        )
        .await
        .unwrap_err();
    canceller.await.unwrap().unwrap();
    assert_eq!(code(&e), "57014", "{}", told(&e));
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn psql_without_sslmode_falls_back_to_a_plain_connection() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let out = tokio::process::Command::new("psql")
        .arg("-X")
        .arg(format!("postgres://app-a@{}/vault", world.addr))
        .arg("-tAc")
        .arg("SHOW server_version")
        .env("PGPASSWORD", &t.token)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        coffer_pgwire::SERVER_VERSION
    );
}

#[tokio::test]
async fn psql_copies_query_results_out_and_copy_to_or_from_a_file_is_refused() {
    let world = World::new().await;
    let t = world.token("app-a", "contacts.people(display_name,email):read+create");
    let client = world.connect("app-a", &t.token).await.unwrap();
    client
        .simple_query(
            "INSERT INTO contacts.people (id, display_name, email) VALUES \
             ('p1', 'Ada, Countess', 'ada@example.org'), ('p2', 'Grace', NULL)",
        )
        .await
        .unwrap();
    let (ok, out, err) = world
        .psql(
            "app-a",
            &t.token,
            &["\\copy (SELECT id, display_name, email FROM contacts.people ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "id,display_name,email\np1,\"Ada, Countess\",ada@example.org\np2,Grace,\n"
    );
    let (ok, out, err) = world
        .psql("app-a", &t.token, &["COPY contacts.people (id, email) TO STDOUT"])
        .await;
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["p1\tada@example.org", "p2\t\\N"]);
    // The grant still decides: an ungranted column is 42703, and COPY FROM
    // or to a file is refused.
    let (ok, _, err) = world
        .psql(
            "app-a",
            &t.token,
            &["COPY (SELECT phone FROM contacts.people) TO STDOUT"],
        )
        .await;
    assert!(!ok && err.contains("phone"), "{err}");
    refused(&client, "COPY contacts.people FROM '/etc/passwd'", "0A000").await;
    // COPY FROM STDIN of every column needs the create right on each.
    refused(&client, "COPY contacts.people FROM STDIN", "42501").await;
    refused(&client, "COPY contacts.people TO '/tmp/out'", "0A000").await;
}

#[tokio::test]
async fn psql_copies_rows_in_as_one_atomic_insert_within_the_grant() {
    let world = World::new().await;
    let t = world.token(
        "app-a",
        "journal.entries(written_on,title,mood,tags,favorite):read+create",
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("entries.csv");
    std::fs::write(
        &csv,
        "written_on,title,mood,tags,favorite\n2025-01-31,\"Snow, at last\",3,\"[\"\"winter\"\"]\",t\n2025-02-01,,,,f\n",
    )
    .unwrap();
    let copy = format!(
        "\\copy journal.entries (written_on, title, mood, tags, favorite) FROM '{}' WITH (FORMAT csv, HEADER)",
        csv.display()
    );
    let (ok, out, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("COPY 2"), "{out}");
    let client = world.connect("app-a", &t.token).await.unwrap();
    let rows = client
        .query(
            "SELECT title, mood, tags, favorite FROM journal.entries ORDER BY written_on",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, Option<String>>(0).as_deref(), Some("Snow, at last"));
    assert_eq!(rows[0].get::<_, Option<i64>>(1), Some(3));
    assert_eq!(rows[0].get::<_, serde_json::Value>(2), json!(["winter"]));
    assert_eq!(rows[1].get::<_, Option<String>>(0), None);
    assert!(!rows[1].get::<_, bool>(3));

    // The text format, from a pipe.
    let text = dir.path().join("entries.txt");
    std::fs::write(&text, "2025-03-01\tTabs\\tinside\t\\N\n").unwrap();
    let copy = format!(
        "\\copy journal.entries (written_on, title, mood) FROM '{}'",
        text.display()
    );
    let (ok, out, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(ok && out.contains("COPY 1"), "{out}\n{err}");
    let title: String = client
        .query_one("SELECT title FROM journal.entries WHERE written_on = '2025-03-01'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "Tabs\tinside");

    // One bad line: nothing of the COPY is written, and the line is named.
    std::fs::write(&text, "2025-04-01\tfine\t1\n2025-04-02\tbad\tnot-a-number\n").unwrap();
    let (ok, _, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(!ok && err.contains("line 2") && err.contains("mood"), "{err}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM journal.entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // A column the grant does not allow creating, and a table it does not name.
    let copy = format!("\\copy journal.entries (written_on, place) FROM '{}'", text.display());
    let (ok, _, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(!ok && err.contains("journal.entries(place):create"), "{err}");
    let copy = format!("\\copy notes.notes (title) FROM '{}'", text.display());
    let (ok, _, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(!ok && err.contains("does not exist"), "{err}");
    // More data than one COPY may send: refused, nothing kept.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "2025-05-01\tx\n".repeat(17 * 1024 * 1024 / 13 + 1)).unwrap();
    let copy = format!("\\copy journal.entries (written_on, title) FROM '{}'", big.display());
    let (ok, _, err) = world.psql("app-a", &t.token, &[&copy]).await;
    assert!(!ok && err.contains("at most 16777216 bytes"), "{err}");
    // The session goes on after a failed COPY.
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn every_statement_is_recorded_in_the_vaults_access_log() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    client
        .simple_query("INSERT INTO contacts.people (display_name) VALUES ('a'), ('b'); SELECT * FROM contacts.people")
        .await
        .unwrap();
    client.simple_query("SELECT * FROM notes.notes").await.unwrap_err();
    world.gateway.access_log().flush().await;
    let log = world
        .gateway
        .access_log()
        .recent(world.vault, Some(&AppId::new("app-a")), 10)
        .await
        .unwrap();
    let seen: Vec<(String, u64, String)> = log
        .iter()
        .rev()
        .map(|e| (e.operation.clone(), e.rows, e.outcome.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("insert".into(), 2, "ok".into()),
            ("read".into(), 2, "ok".into()),
            ("read".into(), 0, "table-not-found".into()),
        ]
    );
    assert!(log.iter().all(|e| e.app.as_str() == "app-a"));
}

#[tokio::test]
async fn a_prepared_statement_fails_once_the_token_is_revoked() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    let select = client
        .prepare("SELECT display_name FROM contacts.people WHERE id = $1")
        .await
        .unwrap();
    client.query(&select, &[&"x"]).await.unwrap();
    world.revoke(t.grant);
    let e = client.query(&select, &[&"x"]).await.unwrap_err();
    assert_eq!(code(&e), "28000", "{}", told(&e));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.is_closed());
}

/// A narrowed token: two columns of `contacts.people`, and `notes.notes`.
const NARROW: &str = "contacts.people(display_name,email):read notes.notes:read";

/// The columns of `contacts.people` SQL shows with [`NARROW`]: the system
/// columns and the two granted ones.
fn narrow_people_columns() -> Vec<&'static str> {
    let mut columns = coffer_core::schema::VISIBLE_SYSTEM_COLUMNS.to_vec();
    columns.extend(["display_name", "email"]);
    columns
}

/// Every value of every row of a simple query.
fn values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            for i in 0..row.len() {
                out.extend(row.get(i).map(str::to_owned));
            }
        }
    }
    out
}

#[tokio::test]
async fn psql_lists_and_describes_exactly_the_granted_tables_and_columns() {
    let world = World::new().await;
    let t = world.token("app-a", NARROW);
    let (ok, out, err) = world.psql("app-a", &t.token, &["\\dt"]).await;
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" | table | ")).collect();
    assert_eq!(
        rows,
        vec![
            " contacts | people | table | vault",
            " notes    | notes  | table | vault"
        ],
        "{out}"
    );
    assert!(out.contains("(2 rows)"), "{out}");

    let (ok, out, err) = world.psql("app-a", &t.token, &["\\d contacts.people"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Table \"contacts.people\""), "{out}");
    let columns: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" | "))
        .skip(1)
        .map(|l| l.split('|').next().unwrap().trim())
        .collect();
    assert_eq!(columns, narrow_people_columns(), "{out}");
    assert!(out.contains("timestamp with time zone"), "{out}");
    // An ungranted table is as missing as one that never existed.
    for name in ["journal.entries", "contacts.nope"] {
        let (ok, out, err) = world.psql("app-a", &t.token, &[&format!("\\d {name}")]).await;
        assert!(!ok || out.is_empty(), "{name}: {out}");
        assert!(
            err.contains(&format!("Did not find any relation named \"{name}\"")),
            "{name}: {err}"
        );
    }

    // Patterns, and the verbose forms.
    let (ok, out, err) = world
        .psql(
            "app-a",
            &t.token,
            &["\\dt contacts.*", "\\dt journal.*", "\\d+ contacts.people"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains(" contacts | people | table | vault\n(1 row)"), "{out}");
    assert!(
        err.contains("Did not find any relation named \"journal.*\""),
        "{out}\n{err}"
    );
    assert!(out.contains("The person's main email address."), "{out}");
    assert!(!out.contains("given_name") && !out.contains("phone"), "{out}");
    let (ok, out, err) = world.psql("app-a", &t.token, &["\\dn", "\\l", "\\conninfo"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(" contacts | vault\n notes    | vault\n(2 rows)"), "{out}");
    assert!(out.contains(" vault | vault | UTF8"), "{out}");
    assert!(
        out.contains("connected to database \"vault\" as user \"app-a\""),
        "{out}"
    );
    for ungranted in ["journal", "health", "entries", "phone", "given_name"] {
        assert!(!out.contains(ungranted), "{ungranted}: {out}");
    }
}

#[tokio::test]
async fn an_ungranted_table_or_column_is_in_no_catalog_view() {
    let world = World::new().await;
    let t = world.token("app-a", NARROW);
    let client = world.connect("app-a", &t.token).await.unwrap();
    let oid: String = client
        .query_one(
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(people)$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut seen = Vec::new();
    for query in [
        "SELECT n.nspname, n.oid FROM pg_catalog.pg_namespace n".to_owned(),
        "SELECT c.relname, c.relkind, c.oid FROM pg_catalog.pg_class c".to_owned(),
        format!(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a WHERE a.attrelid = '{oid}'"
        ),
        "SELECT d.datname FROM pg_catalog.pg_database d".to_owned(),
        "SELECT schema_name FROM information_schema.schemata".to_owned(),
        "SELECT table_schema, table_name, table_type FROM information_schema.tables".to_owned(),
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns".to_owned(),
        "SELECT * FROM pg_catalog.pg_index".to_owned(),
        "SELECT * FROM pg_catalog.pg_class".to_owned(),
        "SELECT c.* FROM information_schema.columns c".to_owned(),
    ] {
        seen.extend(values(&client.simple_query(&query).await.unwrap()));
    }
    for granted in ["contacts", "people", "display_name", "email", "notes", "vault"] {
        assert!(seen.iter().any(|v| v == granted), "{granted}: {seen:?}");
    }
    for ungranted in [
        "journal",
        "health",
        "entries",
        "measurements",
        "phone",
        "given_name",
        "tasks",
    ] {
        assert!(!seen.iter().any(|v| v.contains(ungranted)), "{ungranted}: {seen:?}");
    }
    // Columns by table: exactly those SQL shows, and an ungranted table has
    // none, as a missing one.
    let columns = |table: &str| {
        format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'contacts' AND table_name = '{table}'"
        )
    };
    let people = values(&client.simple_query(&columns("people")).await.unwrap());
    assert_eq!(people, narrow_people_columns());
    for other in ["organizations", "nope"] {
        assert!(
            values(&client.simple_query(&columns(other)).await.unwrap()).is_empty(),
            "{other}"
        );
    }
    // A name compared with `=`: the granted table, and nothing for an
    // ungranted one.
    let by_name = |name: &str| format!("SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname = '{name}'");
    assert_eq!(
        values(&client.simple_query(&by_name("people")).await.unwrap()),
        vec!["people"]
    );
    assert!(values(&client.simple_query(&by_name("entries")).await.unwrap()).is_empty());
    // `*` is the relation's columns.
    let rows = client
        .query("SELECT * FROM information_schema.tables", &[])
        .await
        .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["table_catalog", "table_schema", "table_name", "table_type"]);
    let tables: Vec<(String, String)> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
    assert_eq!(
        tables,
        vec![("contacts".into(), "people".into()), ("notes".into(), "notes".into())]
    );
    // The extended protocol reads the same views, as text.
    let rows = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'notes'",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["notes"]);
    // Bounded: its length, and its conditions.
    let long = format!(
        "SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname <> '{}'",
        "x".repeat(70 * 1024)
    );
    refused(&client, &long, "54000").await;
    let many = vec!["n.nspname ~ 'a'"; coffer_pgwire::catalog::MAX_CONDITIONS + 1].join(" AND ");
    refused(
        &client,
        &format!("SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {many}"),
        "54000",
    )
    .await;
    // A catalog query is a statement like any other: a revoked token ends
    // the session.
    world.revoke(t.grant);
    refused(&client, "SELECT n.nspname FROM pg_catalog.pg_namespace n", "28000").await;
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written to
/// `dir` as `cert.pem` and `key.pem`; the listener's TLS from them.
fn self_signed(dir: &std::path::Path, required: bool) -> coffer_pgwire::PgwireTls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    coffer_pgwire::PgwireTls::from_pem_files(&dir.join("cert.pem"), &dir.join("key.pem"), required).unwrap()
}

/// The first message the server answers a cleartext startup for `user`
/// with: its type byte (`R` an authentication request, `E` an error) and
/// its text.
async fn answer_to_cleartext_startup(addr: std::net::SocketAddr, user: &str) -> (u8, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut body = 196_608_i32.to_be_bytes().to_vec(); // protocol 3.0
    for part in ["user", user, "database", "vault", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(&(body.len() as i32 + 4).to_be_bytes()).await.unwrap();
    socket.write_all(&body).await.unwrap();
    let kind = socket.read_u8().await.unwrap();
    let len = socket.read_i32().await.unwrap() as usize;
    let mut rest = vec![0; len - 4];
    socket.read_exact(&mut rest).await.unwrap();
    (kind, String::from_utf8_lossy(&rest).into_owned())
}

#[tokio::test]
async fn required_tls_refuses_a_cleartext_client_before_it_sends_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::with_tls(self_signed(dir.path(), true)).await;
    let t = world.token("app-a", PEOPLE);
    // The server never asks a cleartext client for its password.
    let (kind, text) = answer_to_cleartext_startup(world.addr, "app-a").await;
    assert_eq!(kind, b'E', "{text}");
    assert!(text.contains("28000") && text.contains("sslmode=require"), "{text}");
    let (ok, _, err) = world
        .psql_with("app-a", &t.token, "sslmode=disable", &["SELECT 1"])
        .await;
    assert!(!ok);
    assert!(err.contains("only over TLS"), "{err}");
    let e = world.connect("app-a", &t.token).await.unwrap_err();
    assert_eq!(code(&e), "28000", "{}", told(&e));
}

#[tokio::test]
async fn psql_connects_over_tls_with_sslmode_require_and_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::with_tls(self_signed(dir.path(), true)).await;
    let t = world.token("app-a", PEOPLE);
    let (ok, out, err) = world
        .psql_with(
            "app-a",
            &t.token,
            "sslmode=require",
            &[
                "INSERT INTO contacts.people (display_name) VALUES ('over TLS')",
                "SELECT display_name FROM contacts.people",
                "\\conninfo",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("over TLS"), "{out}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    // The certificate checks out against itself as the root, host included.
    let root = dir.path().join("cert.pem");
    let (ok, out, err) = world
        .psql_with(
            "app-a",
            &t.token,
            &format!("sslmode=verify-full sslrootcert={}", root.display()),
            &["SELECT count(*) FROM contacts.people"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains('1'), "{out}");
    // A wrong token over TLS is still refused as over cleartext.
    let (ok, _, err) = world
        .psql_with("app-a", "not-a-token", "sslmode=require", &["SELECT 1"])
        .await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
async fn optional_tls_serves_both_tls_and_cleartext_clients() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::with_tls(self_signed(dir.path(), false)).await;
    let t = world.token("app-a", PEOPLE);
    for mode in ["sslmode=require", "sslmode=disable"] {
        let (ok, out, err) = world.psql_with("app-a", &t.token, mode, &["\\conninfo"]).await;
        assert!(ok, "{mode}: {err}");
        assert_eq!(
            out.contains("SSL connection"),
            mode == "sslmode=require",
            "{mode}: {out}"
        );
    }
    let (kind, text) = answer_to_cleartext_startup(world.addr, "app-a").await;
    assert_eq!(kind, b'R', "{text}");
}

#[tokio::test]
async fn a_vector_round_trips_as_float4_array_in_binary_and_text() {
    let world = World::new().await;
    let t = world.token("app-a", "journal.entries:read+create+update");
    let client = world.connect("app-a", &t.token).await.unwrap();
    let embedding: Vec<f32> = (0..384).map(|i| i as f32 / 8.0 - 3.0).collect();
    let insert = client
        .prepare("INSERT INTO journal.entries (id, written_on, embedding) VALUES ($1, '2025-02-01', $2)")
        .await
        .unwrap();
    assert_eq!(insert.params(), &[Type::TEXT, Type::FLOAT4_ARRAY]);
    // Binary, as tokio-postgres sends a Vec<f32>.
    client.execute(&insert, &[&"v1", &embedding]).await.unwrap();
    let got: Vec<f32> = client
        .query_one("SELECT embedding FROM journal.entries WHERE id = $1", &[&"v1"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, embedding);
    // The same vector again, compared in SQL.
    client.execute(&insert, &[&"v2", &embedding]).await.unwrap();
    let (ok, out, err) = world
        .psql(
            "app-a",
            &t.token,
            &["SELECT embedding = (SELECT embedding FROM journal.entries WHERE id = 'v1') FROM journal.entries WHERE id = 'v2'"],
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains(" t"), "{out}");
    // A wrong length, a NULL element and a non-finite number are 22P02
    // (the value itself is not repeated).
    for bad in [vec![Some(1.0f32); 3], vec![None; 384], vec![Some(f32::NAN); 384]] {
        let e = client.execute(&insert, &[&"v3", &bad]).await.unwrap_err();
        assert_eq!(code(&e), "22P02", "{}", told(&e));
        assert!(!told(&e).contains("NaN"), "{}", told(&e));
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM journal.entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn bad_values_and_taken_ids_have_their_sqlstates_and_change_nothing() {
    let world = World::new().await;
    let t = world.token("app-a", "contacts.people:read+create journal.entries:read+create");
    let client = world.connect("app-a", &t.token).await.unwrap();
    client
        .simple_query("INSERT INTO contacts.people (id, display_name) VALUES ('p1', 'Ada')")
        .await
        .unwrap();
    refused(
        &client,
        "INSERT INTO contacts.people (id, display_name) VALUES ('p1', 'Again')",
        "23505",
    )
    .await;
    refused(
        &client,
        "INSERT INTO journal.entries (written_on) VALUES ('the day after tomorrow')",
        "22P02",
    )
    .await;
    refused(&client, "SELECT 1 / (count(*) - 1) FROM contacts.people", "22012").await;
    // A text parameter a date column cannot be cast from.
    let e = client
        .query_typed(
            "INSERT INTO journal.entries (id, written_on) VALUES ('e1', $1)",
            &[(&"31/01/2025", Type::TEXT)],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22P02", "{}", told(&e));
    assert!(!told(&e).contains("31/01"), "{}", told(&e));
    let names = client
        .simple_query("SELECT display_name FROM contacts.people")
        .await
        .unwrap();
    assert_eq!(texts(&names), vec![Some("Ada".into())]);
    let entries = client
        .simple_query("SELECT count(*) FROM journal.entries")
        .await
        .unwrap();
    assert_eq!(texts(&entries), vec![Some("0".into())]);
}

#[tokio::test]
async fn computed_columns_are_named_as_postgres_names_them() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    client
        .simple_query("INSERT INTO contacts.people (display_name) VALUES ('Ada')")
        .await
        .unwrap();
    let sql = "SELECT count(*), 1, display_name, count(*) AS n, max(display_name)::text, upper(display_name) \
               FROM contacts.people GROUP BY display_name";
    let expected = ["count", "?column?", "display_name", "n", "max", "upper"];
    // Prepared (the names come from Describe) and simple (from the rows).
    let row = client.query_one(sql, &[]).await.unwrap();
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, expected);
    let messages = client.simple_query(sql).await.unwrap();
    let Some(SimpleQueryMessage::RowDescription(columns)) = messages.first() else {
        panic!("no row description first: {messages:?}");
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, expected);
    // What the planner does not support is 0A000.
    refused(
        &client,
        "INSERT INTO contacts.people (display_name) VALUES ('Lin') RETURNING id",
        "0A000",
    )
    .await;
}

#[tokio::test]
async fn limit_and_offset_parameters_are_bigint_and_may_come_as_text() {
    let world = World::new().await;
    let t = world.token("app-a", PEOPLE);
    let client = world.connect("app-a", &t.token).await.unwrap();
    insert_people(&client, 5).await;
    let sql = "SELECT display_name FROM contacts.people ORDER BY display_name LIMIT $1 OFFSET $2";
    let statement = client.prepare(sql).await.unwrap();
    assert_eq!(statement.params(), [Type::INT8, Type::INT8]);
    let rows = client.query(&statement, &[&2i64, &1i64]).await.unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["n1", "n2"]);
    // Sent as text, as node `pg` sends every parameter: read as a number.
    let text = client.prepare_typed(sql, &[Type::TEXT, Type::TEXT]).await.unwrap();
    let rows = client.query(&text, &[&"3", &"0"]).await.unwrap();
    assert_eq!(rows.len(), 3);
    let e = client.query(&text, &[&"three", &"0"]).await.unwrap_err();
    assert_eq!(code(&e), "22P02", "{}", told(&e));
}
