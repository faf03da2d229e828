//! Schemathesis generates requests from `/v1/openapi.json` (valid ones and
//! deliberately broken ones) and checks every answer: no server error, a
//! status and content type the document declares, a body that matches its
//! schema. It runs against the real binary with a real token.
//!
//! `scripts/test.sh` installs schemathesis and sets `COFFER_SCHEMATHESIS`
//! to its `st` command; `COFFER_SCHEMATHESIS_EXAMPLES` sets how many
//! examples each operation gets (default 50; raise it for a longer run) and
//! `COFFER_SCHEMATHESIS_CHECKS` which checks run (default [`CHECKS`]).

use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// What every answer is checked for.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth";

#[tokio::test]
async fn the_data_api_holds_to_its_openapi_document_under_schemathesis() {
    let st = std::env::var("COFFER_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "COFFER_SCHEMATHESIS is not set: point it at schemathesis' `st` command \
             (scripts/test.sh installs it: python3 -m venv DIR && DIR/bin/pip install schemathesis)"
        )
    });
    let examples = std::env::var("COFFER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "50".into());
    let checks = std::env::var("COFFER_SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.into());
    let server = Server::start();
    let user = server.new_user("ada@example.org", 2).await;
    let client_id = server.app("Schemathesis");
    let scope = "notes.notes:read+create+update+delete tasks.items:read+create:own contacts.people(display_name):read";
    let tokens = authorize_app(&user, &client_id, scope, None).await;
    let api = server.api(&tokens.access);
    api.post("/v1/tables/notes.notes/rows", &serde_json::json!({"title": "seed"}))
        .await
        .expect(201);

    let url = server.url("/v1/openapi.json");
    let auth = format!("Authorization: Bearer {}", tokens.access);
    // Schemathesis keeps a cache in its working directory: not in the tree.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            .current_dir(&cwd)
            .args([
                "run",
                &url,
                "-H",
                &auth,
                "--max-examples",
                &examples,
                "--seed",
                "20261201",
            ])
            .args(["--request-timeout", "10", "--no-color"])
            .args(["--checks", &checks])
            // The live stream answers 200 and then never ends by itself, so
            // every valid request would run into the request timeout; its
            // refusals are the feed's, and `changes_stream.rs` tests it.
            .args(["--exclude-operation-id", "stream_changes"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finished within 10 minutes")
        .unwrap()
        .unwrap_or_else(|e| panic!("running {}: {e}", std::env::var("COFFER_SCHEMATHESIS").unwrap()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // It did test something.
    assert!(stdout.contains("passed") || stdout.contains("Passed"), "{stdout}");
}
