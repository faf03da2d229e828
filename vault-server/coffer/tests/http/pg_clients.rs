//! The Postgres wire protocol from two more real drivers, as apps use them:
//! node-postgres (`pg`) and psycopg 3 run the scripts of `tests/pg-clients/`
//! against the real binary, with a token from the OAuth flow whose grant
//! leaves out a table, a column and a right. Each script asserts as it goes
//! and prints one JSON line; the rows it leaves are then read back through
//! the HTTP API.
//!
//! `scripts/test.sh` installs both: `npm ci` in `tests/pg-clients`, and
//! psycopg in a virtualenv whose python it names in
//! `COFFER_PSYCOPG_PYTHON`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// The grant the scripts expect: four columns of `contacts.people` to read
/// and write (not `email`), `tasks.lists` to read only, nothing of
/// `contacts.groups`.
const SCOPE: &str = "contacts.people(birthday,display_name,favorite,given_name):read+write tasks.lists:read";

/// `tests/pg-clients` of the repository.
fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/pg-clients")
}

/// A server, a user, and an app holding a token for [`SCOPE`].
struct Vault {
    server: Server,
    client_id: String,
    token: String,
}

impl Vault {
    async fn new(app_name: &str) -> Vault {
        let server = Server::start();
        let user = server.new_user("ada@example.org", 2).await;
        let client_id = server.app(app_name);
        let tokens = authorize_app(&user, &client_id, SCOPE, None).await;
        assert_eq!(
            tokens.scope,
            "contacts.people(birthday,display_name,favorite,given_name):read+write tasks.lists:read"
        );
        Vault {
            server,
            client_id,
            token: tokens.access,
        }
    }

    /// Runs `program args` in `tests/pg-clients` with the connection in the
    /// libpq environment variables (and no other `PG…` variable); asserts
    /// it succeeded and returns the JSON line it printed last.
    async fn run(&self, program: &str, args: &[&str]) -> Value {
        let (host, port) = self.server.pgwire.rsplit_once(':').unwrap();
        let mut command = Command::new(program);
        command.current_dir(clients_dir()).args(args).stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(&name);
            }
        }
        command
            .env("PGHOST", host)
            .env("PGPORT", port)
            .env("PGUSER", &self.client_id)
            .env("PGPASSWORD", &self.token)
            .env("PGDATABASE", "vault")
            .env("PGSSLMODE", "disable");
        let shown = format!("{program} {}", args.join(" "));
        let run = tokio::task::spawn_blocking(move || command.output());
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .unwrap_or_else(|_| panic!("{shown} finished within 2 minutes"))
            .unwrap()
            .unwrap_or_else(|e| panic!("running {shown}: {e} (scripts/test.sh installs what it needs)"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{shown} failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        let line = stdout.lines().last().unwrap_or_default();
        println!("{shown}: {line}");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{shown} printed no JSON line ({e}):\n{stdout}\n{stderr}"))
    }

    /// Every row of `contacts.people` through the HTTP API, by display name.
    async fn people(&self) -> BTreeMap<String, Value> {
        let rows = self.server.api(&self.token).all_rows("contacts.people", &[]).await;
        rows.into_iter()
            .map(|row| {
                assert_eq!(row["_created_by"], self.client_id.as_str(), "{row}");
                (row["display_name"].as_str().unwrap().to_owned(), row)
            })
            .collect()
    }
}

/// What both scripts report of the driver probe and the refusals.
#[track_caller]
fn assert_probe_and_refusals(seen: &Value) {
    let version = seen["version"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("PostgreSQL 16") && version.contains("Coffer"),
        "{seen}"
    );
    assert_eq!(
        seen["refused"],
        json!({"table": "42P01", "column": "42703", "right": "42501"}),
        "{seen}"
    );
}

#[tokio::test]
async fn node_postgres_selects_and_writes_with_parameters_within_the_grant() {
    let pg = clients_dir().join("node_modules/pg/package.json");
    assert!(
        pg.exists(),
        "{} is missing: run scripts/test.sh (it runs `npm ci` in tests/pg-clients)",
        pg.display()
    );
    let vault = Vault::new("Node Contacts").await;
    let seen = vault.run("node", &["node-pg.mjs"]).await;
    assert_eq!(seen["driver"], "pg 8.23.1", "{seen}");
    assert_probe_and_refusals(&seen);
    assert_eq!(
        seen["types"],
        json!({"id": "string", "display_name": "string", "given_name": "string", "favorite": "boolean", "birthday": "Date", "_seq": "string", "n": "number"}),
        "{seen}"
    );

    // What the script left: Ada, updated; Charles was deleted.
    let people = vault.people().await;
    assert_eq!(people.keys().collect::<Vec<_>>(), ["Ada Lovelace"], "{people:?}");
    let ada = &people["Ada Lovelace"];
    assert_eq!(ada["id"], seen["id"], "{ada}");
    assert_eq!(ada["given_name"], "Augusta Ada", "{ada}");
    assert_eq!(ada["favorite"], false, "{ada}");
    assert_eq!(ada["birthday"], "1815-12-10", "{ada}");
    assert_eq!(ada["_updated_by"], vault.client_id.as_str(), "{ada}");
}

#[tokio::test]
async fn psycopg_prepares_copies_and_writes_with_parameters_within_the_grant() {
    let python = std::env::var("COFFER_PSYCOPG_PYTHON").unwrap_or_else(|_| {
        panic!(
            "COFFER_PSYCOPG_PYTHON is not set: point it at a python with psycopg installed \
             (run scripts/test.sh: it installs psycopg[binary] in its virtualenv and sets it)"
        )
    });
    let vault = Vault::new("Python Contacts").await;
    let seen = vault.run(&python, &["psycopg_client.py"]).await;
    assert!(
        seen["driver"].as_str().is_some_and(|d| d.starts_with("psycopg 3.")),
        "{seen}"
    );
    assert_probe_and_refusals(&seen);
    assert_eq!(
        seen["types"],
        json!({"id": "str", "display_name": "str", "given_name": "str", "favorite": "bool", "birthday": "date", "_seq": "int"}),
        "{seen}"
    );
    assert_eq!(seen["copied"], 5, "{seen}");

    // What the script left: three inserted (one deleted, one updated) and
    // three copied in.
    let people = vault.people().await;
    assert_eq!(
        people.keys().collect::<Vec<_>>(),
        [
            "Barbara Liskov",
            "Edsger Dijkstra",
            "Frances Allen",
            "Grace Hopper",
            "Margaret Hamilton"
        ],
        "{people:?}"
    );
    let grace = &people["Grace Hopper"];
    assert_eq!(grace["id"], seen["id"], "{grace}");
    assert_eq!(grace["given_name"], "Grace Brewster", "{grace}");
    assert_eq!(grace["favorite"], true, "{grace}");
    assert_eq!(grace["birthday"], "1906-12-09", "{grace}");
    let copied = &people["Frances Allen"];
    assert!(
        copied["given_name"].is_null() && copied["favorite"].is_null(),
        "{copied}"
    );
}
