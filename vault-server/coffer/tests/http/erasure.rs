//! The data directory is private to the server's user, and deleting a
//! user's vault (`coffer user delete`, or the user's own "Delete my
//! account" on the dashboard) leaves nothing in it from which the vault's
//! data key or data could be recovered.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coffer_test_support::files_containing;
use serde_json::{Value, json};

use crate::changes_stream::Stream;
use crate::common::{Browser, PASSWORD, Server, authorize_app, rows_path};

const EMAIL: &str = "erin@example.org";

/// Every file and directory under `dir` (not `dir` itself).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

/// A server (flushing every second, streams checking their token five
/// times a second) with one user whose app wrote a note titled `title`,
/// flushed to a data file; the app's API client and the user's browser.
async fn server_with_a_note(title: &str) -> (Server, crate::common::Api, Browser) {
    let server = Server::start_with(&[
        ("COFFER_FLUSH_INTERVAL_SECS", "1"),
        ("COFFER_STREAM_HEARTBEAT_SECS", "0.2"),
    ]);
    let user = server.new_user(EMAIL, 7).await;
    let client_id = server.app("Notebook");
    let tokens = authorize_app(&user, &client_id, "notes.notes:read+create", None).await;
    let api = server.api(&tokens.access);
    api.post(&rows_path("notes.notes", &[]), &json!({"title": title, "body": title}))
        .await
        .expect(201);
    // Wait for the flush: a data file appears under objects/.
    let started = Instant::now();
    while !walk(&server.data_dir.join("objects"))
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no data file was flushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, api, user)
}

/// The vault id of the only user, and its wrapped data key as stored.
async fn vault_and_wrapped_key(server: &Server) -> (String, Vec<u8>) {
    let users: Value = serde_json::from_slice(&server.cli(&["user", "list", "--json"], "").stdout).unwrap();
    // Vault ids are stored (and named in object keys) in lower case.
    let vault = users[0]["vault_id"].as_str().unwrap().to_ascii_lowercase();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.data_dir.join("control.db"))
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped_dek FROM vault_keys WHERE vault_id = ?")
        .bind(&vault)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(wrapped.len() >= 32, "{} bytes", wrapped.len());
    assert!(
        !files_containing(&server.data_dir, &wrapped).is_empty(),
        "the search does not find the key even before the deletion"
    );
    (vault, wrapped)
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private_to_the_servers_user() {
    use std::os::unix::fs::PermissionsExt;
    let (server, _api, _user) = server_with_a_note("private note").await;
    let mut entries = walk(&server.data_dir);
    entries.push(server.data_dir.clone());
    for name in [
        "control.db",
        "control.db-wal",
        "control.db-shm",
        "master.key",
        "root.key",
        "objects",
    ] {
        assert!(entries.contains(&server.data_dir.join(name)), "{name} missing");
    }
    let open: Vec<String> = entries
        .iter()
        .filter_map(|p| {
            let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o777;
            let expected = if p.is_dir() { 0o700 } else { 0o600 };
            (mode != expected).then(|| format!("{} is {mode:o}", p.display()))
        })
        .collect();
    assert!(open.is_empty(), "not private: {open:#?}");
}

#[tokio::test]
async fn deleting_a_user_leaves_nothing_of_their_vault_on_disk() {
    let marker = format!("plaintext-marker-{}", std::process::id());
    let (server, api, _user) = server_with_a_note(&marker).await;
    let (vault, wrapped) = vault_and_wrapped_key(&server).await;
    let vault_dir = server.data_dir.join("objects/vaults").join(&vault);
    assert!(vault_dir.is_dir());

    // A refusal without --yes changes nothing.
    let refused = server.cli(&["user", "delete", "--email", EMAIL], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    // The operator deletes the user while the server runs.
    let out = server.cli(&["user", "delete", "--email", EMAIL, "--yes"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&vault));

    let with_key = files_containing(&server.data_dir, &wrapped);
    assert!(with_key.is_empty(), "the wrapped data key is still in {with_key:?}");
    let with_text = files_containing(&server.data_dir, marker.as_bytes());
    assert!(with_text.is_empty(), "the note's text is in {with_text:?}");
    assert!(!vault_dir.exists(), "the vault's objects are still there");

    // Nothing of the account is left in the control database.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.data_dir.join("control.db"))
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    for (table, column) in [
        ("commit_log", "vault_id"),
        ("manifests", "vault_id"),
        ("vault_tables", "vault_id"),
        ("vault_keys", "vault_id"),
        ("grants", "vault_id"),
        ("users", "vault_id"),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {column} = ?"
        )))
        .bind(&vault)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} still has rows of the vault");
    }
    for table in [
        "token_families",
        "refresh_tokens",
        "access_tokens",
        "authorization_codes",
        "sessions",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} still has rows");
    }
    pool.close().await;

    // The running server stops serving the vault (it notices the deletion
    // on its next maintenance tick).
    let started = Instant::now();
    loop {
        let reply = api.get(&rows_path("notes.notes", &[])).await;
        if reply.status != 200 {
            assert!(!reply.text.contains(&marker), "{}", reply.text);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the deleted vault is still served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the user is gone.
    let users: Value = serde_json::from_slice(&server.cli(&["user", "list", "--json"], "").stdout).unwrap();
    assert_eq!(users, json!([]));
}

#[tokio::test]
async fn a_user_deletes_their_account_from_the_dashboard() {
    let marker = format!("dashboard-marker-{}", std::process::id());
    let (server, api, user) = server_with_a_note(&marker).await;
    let (vault, wrapped) = vault_and_wrapped_key(&server).await;
    let vault_dir = server.data_dir.join("objects/vaults").join(&vault);
    assert!(vault_dir.is_dir());
    let mut stream = Stream::open(&server.base, &api.token, &[], None).await;
    stream.expect("change").await;

    // The dashboard links to a page that says what happens and names the
    // app that will stop.
    let dashboard = user.visit("/dashboard").await;
    assert!(
        dashboard.body.contains(r#"href="/dashboard/delete-account""#),
        "{}",
        dashboard.body
    );
    let page = user.visit("/dashboard/delete-account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Everything in your vault is erased, for good."));
    assert!(page.body.contains("stops at once:</strong> Notebook"), "{}", page.body);
    let csrf = page.hidden("csrf_token").unwrap();

    // A wrong password, a missing confirmation or a forged form deletes
    // nothing.
    let wrong = user
        .post(
            "/dashboard/delete-account",
            &[
                ("csrf_token", &csrf),
                ("confirm", "yes"),
                ("password", "not my password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("That password is not right. Nothing was deleted."));
    let unconfirmed = user
        .post(
            "/dashboard/delete-account",
            &[("csrf_token", &csrf), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(unconfirmed.status, 200);
    let forged = user
        .post(
            "/dashboard/delete-account",
            &[("csrf_token", "forged"), ("confirm", "yes"), ("password", PASSWORD)],
        )
        .await;
    assert_ne!(forged.status, 303, "{}", forged.body);
    api.get(&rows_path("notes.notes", &[])).await.expect(200);

    // The right password: the account goes, the session cookie is cleared.
    let deleted = user
        .post(
            "/dashboard/delete-account",
            &[("csrf_token", &csrf), ("confirm", "yes"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert_eq!(deleted.location(), Some("/sign-in?deleted=1"));
    assert!(
        deleted.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")),
        "the session cookie is cleared: {:?}",
        deleted.header("set-cookie")
    );
    let sign_in = user.visit("/sign-in?deleted=1").await;
    assert!(sign_in.body.contains("Your account was deleted"), "{}", sign_in.body);
    assert_eq!(user.get("/dashboard").await.status, 303, "signed out");

    // The app's token is refused at once, and its open stream ends.
    let refused = api.get(&rows_path("notes.notes", &[])).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(!refused.text.contains(&marker));
    let ended = Instant::now();
    loop {
        match stream.next_any().await {
            None => break,
            Some(event) if event.event == "grant-revoked" => {
                assert!(
                    stream.next_any().await.is_none(),
                    "the stream ends after `grant-revoked`"
                );
                break;
            }
            Some(event) => assert!(!event.data.contains(&marker), "{event:?}"),
        }
    }
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "the stream ended {:?} later",
        ended.elapsed()
    );

    // Nothing of the vault is left on disk.
    let with_key = files_containing(&server.data_dir, &wrapped);
    assert!(with_key.is_empty(), "the wrapped data key is still in {with_key:?}");
    let with_text = files_containing(&server.data_dir, marker.as_bytes());
    assert!(with_text.is_empty(), "the note's text is in {with_text:?}");
    assert!(!vault_dir.exists(), "the vault's objects are still there");

    // The address can sign up again, as a new and empty account.
    let again = server.new_user(EMAIL, 8).await;
    let client_id = server.app("Notebook Again");
    let tokens = authorize_app(&again, &client_id, "notes.notes:read", None).await;
    let rows = server.api(&tokens.access).all_rows("notes.notes", &[]).await;
    assert!(rows.is_empty(), "the new account's vault is empty: {rows:?}");
}
