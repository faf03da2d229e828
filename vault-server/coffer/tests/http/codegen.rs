//! `coffer codegen` checked against what the server answers. A row with
//! every column set and one with only the required columns are written to
//! every table of every built-in schema and read back through the rows API;
//! then:
//!
//! - TypeScript: the module `coffer codegen --lang ts` writes, those rows
//!   and the inserts that made them (as typed constants), and the
//!   hand-written `tests/codegen/check.ts` are type-checked by the real
//!   compiler (`tsc --noEmit --strict`, pinned in `tests/codegen`, which
//!   `scripts/test.sh` installs);
//! - Rust: the module `coffer codegen --lang rust` writes is committed as
//!   `codegen/schemas.rs` and compiled into this test binary; the rows
//!   deserialize into its structs and serialize back to the same JSON, and
//!   its inserts and patches are sent to the server. Another test keeps the
//!   committed module equal to what the command prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, NaiveDate, Utc};
use coffer_core::schema::ColumnType;
use coffer_core::schema::registry::SchemaRegistry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::common::*;

/// What `coffer codegen --lang rust` printed when it was last committed.
#[allow(dead_code)]
mod schemas;

/// The committed Rust module, relative to the repository.
const RUST_MODULE: &str = "vault-server/coffer/tests/http/codegen/schemas.rs";

/// `tests/codegen` of the repository: the pinned TypeScript and `check.ts`.
fn ts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/codegen")
}

/// The repository.
fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `coffer codegen ARGS`.
fn codegen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("codegen")
        .args(args)
        .env("COFFER_LOG", "warn")
        .output()
        .expect("run coffer codegen")
}

/// What `coffer codegen ARGS` printed; it must succeed.
fn generated(args: &[&str]) -> String {
    let out = codegen(args);
    assert!(
        out.status.success(),
        "coffer codegen {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A value of type `ty` for a row with every column set. Vectors hold
/// numbers a 32-bit float holds exactly, so they read back as written.
fn sample(ty: ColumnType) -> Value {
    match ty {
        ColumnType::Text => json!("some text"),
        ColumnType::Integer => json!(42),
        ColumnType::Float => json!(1.5),
        ColumnType::Boolean => json!(true),
        ColumnType::Timestamp => json!("2025-01-31T08:30:00.123456Z"),
        ColumnType::Date => json!("2025-01-31"),
        ColumnType::Json => json!({"list": [1, "two", null], "flag": false}),
        ColumnType::Bytes => json!("aGk="),
        ColumnType::Uuid => json!("0b5e6a2c-3f4d-4e5f-8a9b-0c1d2e3f4a5b"),
        ColumnType::Vector(n) => json!(vec![0.5; n as usize]),
    }
}

/// Every table's rows and the inserts that made them.
struct Written {
    /// The inserts sent, by table.
    inserts: BTreeMap<String, Vec<Value>>,
    /// The rows the listing answered, by table, sorted by id.
    rows: BTreeMap<String, Vec<Value>>,
}

/// Every built-in table as `schema.table`, sorted.
fn every_table() -> Vec<String> {
    let registry = SchemaRegistry::builtin().unwrap();
    let mut tables: Vec<String> = registry
        .iter()
        .flat_map(|s| {
            s.tables
                .iter()
                .map(|t| format!("{}.{}", s.name, t.name))
                .collect::<Vec<_>>()
        })
        .collect();
    tables.sort();
    tables
}

/// A token of an app that may read and write every table of every built-in schema.
async fn token(server: &Server) -> String {
    let registry = SchemaRegistry::builtin().unwrap();
    let mut names: Vec<&str> = registry.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    let scope: Vec<String> = names.iter().map(|n| format!("{n}.*:read+write")).collect();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Typed App");
    authorize_app(&user, &client_id, &scope.join(" "), None).await.access
}

/// Writes `full` (every column set) and `bare` (only the required columns)
/// to every built-in table, and reads every table back with the rows API.
async fn write_every_table(api: &Api) -> Written {
    let registry = SchemaRegistry::builtin().unwrap();
    let mut written = Written {
        inserts: BTreeMap::new(),
        rows: BTreeMap::new(),
    };
    for schema in registry.iter() {
        for table in &schema.tables {
            let name = format!("{}.{}", schema.name, table.name);
            let mut full = Map::from_iter([("id".to_owned(), json!("full"))]);
            let mut bare = Map::from_iter([("id".to_owned(), json!("bare"))]);
            for column in &table.columns {
                full.insert(column.name.clone(), sample(column.ty));
                if !column.nullable {
                    bare.insert(column.name.clone(), sample(column.ty));
                }
            }
            let inserts = vec![Value::Object(full), Value::Object(bare)];
            api.post(&rows_path(&name, &[]), &Value::Array(inserts.clone()))
                .await
                .expect(201);
            let mut rows = api.all_rows(&name, &[]).await;
            rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            assert_eq!(rows.len(), 2, "{name}: {rows:?}");
            written.inserts.insert(name.clone(), inserts);
            written.rows.insert(name, rows);
        }
    }
    written
}

/// `rows.ts`: the rows and inserts as constants typed by the generated module.
fn rows_ts(written: &Written) -> String {
    format!(
        "// Rows the server answered, and the inserts that made them.\n\
         import type {{ Tables }} from \"./schemas\";\n\n\
         export const rows: {{ [T in keyof Tables]: Tables[T][\"row\"][] }} = {};\n\n\
         export const inserts: {{ [T in keyof Tables]: Tables[T][\"insert\"][] }} = {};\n",
        serde_json::to_string_pretty(&written.rows).unwrap(),
        serde_json::to_string_pretty(&written.inserts).unwrap(),
    )
}

/// The pinned `tsc`; a test without it fails, saying how to install it.
fn tsc_path() -> PathBuf {
    let tsc = ts_dir().join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: run scripts/test.sh (it runs `npm ci` in tests/codegen)",
        tsc.display()
    );
    tsc
}

/// Runs the pinned `tsc --noEmit --strict` on `files` in `dir`.
fn tsc(dir: &Path, files: &[&str]) -> Output {
    let tsc = tsc_path();
    Command::new(&tsc)
        .current_dir(dir)
        .args([
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
        ])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tsc.display()))
}

#[tokio::test]
async fn typescript_types_fit_the_rows_the_server_answers() {
    tsc_path();
    let server = Server::start();
    let api = server.api(&token(&server).await);
    let written = write_every_table(&api).await;
    assert_eq!(written.rows.keys().cloned().collect::<Vec<_>>(), every_table());

    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("schemas.ts");
    let out = codegen(&["--lang", "ts", "--out", module.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "--out prints nothing");
    assert_eq!(std::fs::read_to_string(&module).unwrap(), generated(&["--lang", "ts"]));
    std::fs::write(dir.path().join("rows.ts"), rows_ts(&written)).unwrap();
    std::fs::copy(ts_dir().join("check.ts"), dir.path().join("check.ts")).unwrap();

    let out = tsc(dir.path(), &["schemas.ts", "rows.ts", "check.ts"]);
    assert!(
        out.status.success(),
        "tsc refused the generated types:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same check refuses a row of the wrong shape: a `_seq` as text, a
    // required column missing, a column the table does not have.
    let mut wrong = written;
    let people = wrong.rows.get_mut("contacts.people").unwrap();
    people[0]["_seq"] = json!("1");
    people[1].as_object_mut().unwrap().remove("display_name");
    wrong.rows.get_mut("tasks.items").unwrap()[0]["colour"] = json!("red");
    std::fs::write(dir.path().join("rows.ts"), rows_ts(&wrong)).unwrap();
    let out = tsc(dir.path(), &["schemas.ts", "rows.ts"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "tsc let wrong rows through");
    for error in [
        "Type 'string' is not assignable to type 'number'",
        "Property 'display_name' is missing",
        "'\"colour\"' does not exist in type 'TasksItems'",
    ] {
        assert!(said.contains(error), "no `{error}` in:\n{said}");
    }
}

#[tokio::test]
async fn typescript_output_is_limited_by_schema_and_names_unknown_ones() {
    let tasks = generated(&["--lang", "ts", "--schema", "tasks"]);
    assert!(tasks.contains("export interface TasksItems {"), "{tasks}");
    assert!(tasks.contains("  tasks: 1,"), "{tasks}");
    assert!(!tasks.contains("Contacts"), "{tasks}");
    assert_eq!(
        generated(&["--lang", "ts", "--schema", "tasks", "--schema", "contacts"]),
        generated(&["--lang", "ts", "--schema", "contacts", "--schema", "tasks"]),
        "the order of --schema does not matter"
    );

    let out = codegen(&["--lang", "rust", "--schema", "tasks", "--schema", "contact"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "unknown schema `contact`; the known schemas are bookmarks, calendar, contacts, health, journal, notes, tasks"
        ),
        "{said}"
    );
}

#[test]
fn the_committed_rust_module_is_what_codegen_prints() {
    let now = generated(&["--lang", "rust"]);
    let committed = std::fs::read_to_string(repository().join(RUST_MODULE)).unwrap();
    assert!(
        now == committed,
        "{RUST_MODULE} is not what `coffer codegen --lang rust` prints now; from the repository, run\n  \
         target/debug/coffer codegen --lang rust --out {RUST_MODULE}\nand run the tests again"
    );
}

/// `a` and `b` are the same JSON, timestamps compared as instants (chrono
/// leaves out a fraction of zero that the server writes).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if x != y => {
            match (DateTime::parse_from_rfc3339(x), DateTime::parse_from_rfc3339(y)) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w)),
        _ => a == b,
    }
}

/// Reads `table`'s rows into `T` and writes them back: the same JSON.
/// Returns the table's name.
fn round_trip<T: DeserializeOwned + Serialize>(table: &'static str, written: &Written) -> &'static str {
    for row in &written.rows[table] {
        let typed: T = serde_json::from_value(row.clone()).unwrap_or_else(|e| panic!("{table}: {e}\n{row}"));
        let back = serde_json::to_value(&typed).unwrap();
        assert!(same_json(row, &back), "{table}: read\n{row}\nwrote back\n{back}");
    }
    table
}

#[tokio::test]
async fn rust_structs_fit_the_rows_the_server_answers() {
    use schemas::*;

    let server = Server::start();
    let api = server.api(&token(&server).await);
    let written = write_every_table(&api).await;
    let mut checked = vec![
        round_trip::<BookmarksBookmarks>(BookmarksBookmarks::TABLE, &written),
        round_trip::<BookmarksFolders>(BookmarksFolders::TABLE, &written),
        round_trip::<CalendarCalendars>(CalendarCalendars::TABLE, &written),
        round_trip::<CalendarEvents>(CalendarEvents::TABLE, &written),
        round_trip::<ContactsGroups>(ContactsGroups::TABLE, &written),
        round_trip::<ContactsMemberships>(ContactsMemberships::TABLE, &written),
        round_trip::<ContactsPeople>(ContactsPeople::TABLE, &written),
        round_trip::<HealthMeasurements>(HealthMeasurements::TABLE, &written),
        round_trip::<HealthMedications>(HealthMedications::TABLE, &written),
        round_trip::<HealthWorkouts>(HealthWorkouts::TABLE, &written),
        round_trip::<JournalEntries>(JournalEntries::TABLE, &written),
        round_trip::<JournalPhotos>(JournalPhotos::TABLE, &written),
        round_trip::<NotesAttachments>(NotesAttachments::TABLE, &written),
        round_trip::<NotesNotebooks>(NotesNotebooks::TABLE, &written),
        round_trip::<NotesNotes>(NotesNotes::TABLE, &written),
        round_trip::<TasksItems>(TasksItems::TABLE, &written),
        round_trip::<TasksLists>(TasksLists::TABLE, &written),
    ];
    checked.sort();
    assert_eq!(
        checked,
        every_table(),
        "every built-in table is read into its struct (add a new one to this test)"
    );

    // The columns are the ones rows show.
    let people: ContactsPeople = serde_json::from_value(written.rows["contacts.people"][1].clone()).unwrap();
    let keys: Vec<&String> = written.rows["contacts.people"][1].as_object().unwrap().keys().collect();
    let mut columns: Vec<&str> = ContactsPeople::COLUMNS.to_vec();
    columns.sort();
    assert_eq!(keys, columns);
    assert_eq!(people.id, "full");
    assert_eq!(people.birthday, Some(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap()));
    let bare: ContactsPeople = serde_json::from_value(written.rows["contacts.people"][0].clone()).unwrap();
    assert_eq!((bare.id.as_str(), bare.email, bare.birthday), ("bare", None, None));

    // An insert and a patch, as an app sends them.
    let mut ada = ContactsPeopleInsert::new("Ada Lovelace".into());
    ada.birthday = Some(NaiveDate::from_ymd_opt(1815, 12, 10).unwrap());
    assert_eq!(
        serde_json::to_value(&ada).unwrap(),
        json!({"display_name": "Ada Lovelace", "birthday": "1815-12-10"}),
        "an insert leaves out the columns it does not set"
    );
    let reply = api
        .post(
            &rows_path(ContactsPeople::TABLE, &[]),
            &serde_json::to_value(&ada).unwrap(),
        )
        .await;
    reply.expect(201);
    let stored: ContactsPeople = serde_json::from_value(reply.body.clone()).unwrap();
    assert_eq!(stored.display_name, "Ada Lovelace");
    assert_eq!(stored.birthday, ada.birthday);
    assert_eq!(stored.email, None);
    assert!(stored._seq > 0 && !stored._created_by.is_empty(), "{stored:?}");
    assert!(stored._created_at <= Utc::now() && stored._created_at == stored._updated_at);

    let mut task = TasksItemsInsert::new("Write the report".into(), false);
    task.id = Some("report".into());
    task.notes = Some("Two pages.".into());
    task.tags = Some(json!(["work"]));
    let reply = api
        .post(
            &rows_path(TasksItems::TABLE, &[]),
            &serde_json::to_value(&task).unwrap(),
        )
        .await;
    reply.expect(201);
    let created: TasksItems = serde_json::from_value(reply.body.clone()).unwrap();
    assert_eq!((created.title.as_str(), created.completed), ("Write the report", false));

    // A patch sends `null` to clear a column, and leaves out the others.
    let patch = TasksItemsPatch {
        completed: Some(true),
        notes: Some(None),
        ..TasksItemsPatch::default()
    };
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!({"completed": true, "notes": null})
    );
    let reply = api
        .patch(
            &row_path(TasksItems::TABLE, "report", &[]),
            &serde_json::to_value(&patch).unwrap(),
        )
        .await;
    reply.expect(200);
    let patched: TasksItems = serde_json::from_value(reply.body.clone()).unwrap();
    assert_eq!((patched.completed, patched.notes), (true, None));
    assert_eq!(patched.tags, Some(json!(["work"])));
    assert!(patched._seq > created._seq);
}
