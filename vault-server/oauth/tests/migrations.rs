//! coffer-oauth's tables come from its own migrations folder, applied after
//! the storage engine's, both recorded in sqlx's one migrations table with
//! distinct versions (decision 0023). A control database made when every
//! migration was in one folder opens without running anything again.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use coffer_auth::{RevocationView, RootKeyPair};
use coffer_core::{UserId, VaultId};
use coffer_oauth::{OAuthConfig, OAuthServer};
use coffer_storage::control::ControlDb;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The storage engine's migrations folder.
fn storage_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite")
}

/// This crate's migrations folder.
fn oauth_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite/oauth")
}

/// The versions of both folders, in order.
async fn all_versions() -> Vec<i64> {
    let mut versions = Vec::new();
    for folder in [storage_folder(), oauth_folder()] {
        let migrator = Migrator::new(folder.as_path()).await.unwrap();
        versions.extend(migrator.iter().map(|m| m.version));
    }
    versions.sort();
    versions
}

/// A pool over the SQLite file at `path`, created if missing.
async fn pool_at(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// Each applied migration's version, description, checksum and install time.
async fn applied(pool: &SqlitePool) -> Vec<(i64, String, Vec<u8>, String)> {
    sqlx::query_as(
        "SELECT version, description, checksum, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Opens the control database as `coffer serve` does: the storage engine,
/// then coffer-oauth's migrations.
async fn open(path: &Path) -> ControlDb {
    let db = ControlDb::open_sqlite(path).await.unwrap();
    coffer_oauth::migrate(db.pool()).await.unwrap();
    db
}

#[tokio::test]
async fn a_database_made_from_one_folder_opens_without_running_anything() {
    let dir = tempfile::tempdir().unwrap();
    // The layout before: the three migrations of that time in one folder,
    // applied by one migrator.
    let one_folder = dir.path().join("sqlite");
    std::fs::create_dir(&one_folder).unwrap();
    for folder in [storage_folder(), oauth_folder()] {
        for file in std::fs::read_dir(folder).unwrap() {
            let file = file.unwrap().path();
            let version: Option<i64> = file
                .file_name()
                .and_then(|n| n.to_str()?.split('_').next()?.parse().ok());
            if !file.is_file() || version.is_none_or(|v| v > 3) {
                continue; // the oauth folder, or a migration added since
            }
            std::fs::copy(&file, one_folder.join(file.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.path().join("control.db");
    let pool = pool_at(&path).await;
    Migrator::new(one_folder.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let vault = VaultId::generate().to_string();
    sqlx::query("INSERT INTO vaults (id, created_at) VALUES (?, 1)")
        .bind(&vault)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, email_key, password_hash, vault_id, created_at) \
         VALUES (?, 'Ada@example.org', 'ada@example.org', 'x', ?, 2)",
    )
    .bind(UserId::generate().to_string())
    .bind(&vault)
    .execute(&pool)
    .await
    .unwrap();
    let before = applied(&pool).await;
    assert_eq!(
        before.iter().map(|m| m.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "the fixture holds every migration"
    );
    pool.close().await;

    let db = open(&path).await;
    let after = applied(db.pool()).await;
    assert_eq!(after[..3], before[..], "nothing of the old layout ran again");
    assert_eq!(
        after.iter().map(|m| m.0).collect::<Vec<_>>(),
        all_versions().await,
        "the migrations added since ran once"
    );
    let server = OAuthServer::new(
        db.pool().clone(),
        Arc::new(RootKeyPair::generate()),
        Arc::new(RevocationView::new()),
        Arc::new(|_: &str| None),
        OAuthConfig::new("https://vault.example"),
    )
    .unwrap();
    let users = server.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].email, "Ada@example.org");

    // And again, as every later start does.
    db.pool().close().await;
    let db = open(&path).await;
    assert_eq!(applied(db.pool()).await, after);
}

#[tokio::test]
async fn a_new_database_gets_both_folders_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    let db = open(&path).await;
    let first = applied(db.pool()).await;
    assert_eq!(first.iter().map(|m| m.0).collect::<Vec<_>>(), all_versions().await);
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('vaults', 'users')")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(tables, 2);
    db.pool().close().await;
    let db = open(&path).await;
    assert_eq!(applied(db.pool()).await, first);
}

#[tokio::test]
async fn the_folders_use_distinct_versions() {
    let storage = Migrator::new(storage_folder().as_path()).await.unwrap();
    let oauth = Migrator::new(oauth_folder().as_path()).await.unwrap();
    for m in oauth.iter() {
        assert!(
            !storage.version_exists(m.version),
            "version {} is in both folders: a version is the one number sqlx's shared migrations table knows a \
             migration by, so give the new one the next number neither folder uses",
            m.version
        );
    }
}
