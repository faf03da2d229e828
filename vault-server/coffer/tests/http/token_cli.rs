//! `coffer token` as a script runs it: a child process asking for a device
//! code, its standard error read for the link, the code allowed in a signed-in
//! browser, and the access token it prints used on `/v1`. Also denial,
//! `--json`, refresh with rotation, clear errors without a browser, and
//! `coffer app register --print client-id`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const PEOPLE: &str = "contacts.people";
const SCOPE: &str = "contacts.people:read+create";

/// How long a device flow may take in a test: the user answers right away,
/// so one or two polling intervals (5 s each).
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// A `coffer token` child process whose standard error is read line by line.
struct TokenRun {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// `coffer token ARGS` against `server`, with no `COFFER_*` variable of the
/// test's environment leaking in.
fn coffer_token(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
    command.arg("token").args(args).arg("--server").arg(&server.base);
    for name in [
        "COFFER_PUBLIC_URL",
        "COFFER_CLIENT_ID",
        "COFFER_SCOPE",
        "COFFER_REFRESH_TOKEN",
        "COFFER_DATA_DIR",
    ] {
        command.env_remove(name);
    }
    command.env("COFFER_LOG", "warn");
    command
}

impl TokenRun {
    fn start(server: &Server, args: &[&str]) -> TokenRun {
        let mut child = coffer_token(server, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run coffer token");
        let (send, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        TokenRun {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for the line naming the link to open; (the line, the link).
    fn link(&mut self) -> (String, String) {
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no link on standard error; it said {:?}", self.seen));
            self.seen.push(line.clone());
            if let Some(link) = line.split_whitespace().find(|w| w.contains("/device?user_code=")) {
                return (line.clone(), link.to_owned());
            }
        }
    }

    /// Waits for the process to end; its status, standard output and the
    /// rest of standard error.
    async fn finish(mut self) -> (Output, String) {
        let mut child = self.child;
        let output = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut stdout = Vec::new();
                    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
                    return Output {
                        status,
                        stdout,
                        stderr: Vec::new(),
                    };
                }
                if started.elapsed() > FLOW_TIMEOUT {
                    let _ = child.kill();
                    panic!("coffer token did not finish within {FLOW_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .unwrap();
        // The reader thread ends at the pipe's end, after the process.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (output, self.seen.join("\n"))
    }
}

/// Registers a public device-flow app (with `extra` grant types) with
/// `--print client-id`; checks the output is the id alone.
fn device_app(server: &Server, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["app", "register", "--name", name, "--grant-type", "device-code"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--print", "client-id"]);
    let out = server.cli(&args, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let client_id = stdout.strip_suffix('\n').unwrap_or_else(|| panic!("{stdout:?}"));
    assert!(
        !client_id.is_empty() && !client_id.contains(char::is_whitespace),
        "only the id: {stdout:?}"
    );
    client_id.to_owned()
}

/// Runs the device flow with `coffer token ARGS`, answering in `browser`
/// with `decision`; the process's output and its standard error.
async fn device_flow(server: &Server, browser: &Browser, args: &[&str], decision: &str) -> (Output, String) {
    let mut run = TokenRun::start(server, args);
    let (line, link) = run.link();
    assert!(
        link.starts_with(&server.url("/device?user_code=")),
        "the link is the server's device page: {line}"
    );
    let user_code = query_param(&link, "user_code").unwrap();
    assert!(
        line.contains(&format!("code {user_code}")),
        "the line shows the code too: {line}"
    );
    answer_device(browser, &user_code, decision).await;
    run.finish().await
}

/// The one line of standard output, without its newline.
fn one_line(output: &Output) -> String {
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let line = stdout.strip_suffix('\n').unwrap_or_else(|| panic!("{stdout:?}"));
    assert!(!line.contains('\n'), "one line only: {stdout:?}");
    line.to_owned()
}

/// `token` may read and create people, and nothing else.
async fn assert_people_read_create_only(server: &Server, token: &str) {
    let api = server.api(token);
    let created = api
        .post(&rows_path(PEOPLE, &[]), &json!({"display_name": "Ada Lovelace"}))
        .await;
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let listed = api.get(&rows_path(PEOPLE, &[])).await;
    listed.expect(200);
    assert_eq!(listed.ids(), std::slice::from_ref(&id));
    let tables = api.get("/v1/tables").await;
    tables.expect(200);
    let granted: Vec<(&str, Vec<&str>)> = tables.body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let mut actions: Vec<&str> = t["actions"].as_object().unwrap().keys().map(String::as_str).collect();
            actions.sort_unstable();
            (t["table"].as_str().unwrap(), actions)
        })
        .collect();
    assert_eq!(granted, [(PEOPLE, vec!["create", "read"])], "{}", tables.text);
    api.patch(&row_path(PEOPLE, &id, &[]), &json!({"nickname": "Ada"}))
        .await
        .expect_problem(403, "missing-right");
    api.delete(&row_path(PEOPLE, &id, &[]))
        .await
        .expect_problem(403, "missing-right");
    api.get(&rows_path("notes.notes", &[]))
        .await
        .expect_problem(404, "table-not-found");
}

#[tokio::test]
async fn coffer_token_prints_a_token_with_exactly_the_granted_scope() {
    let server = Server::start();
    let client_id = device_app(&server, "My script", &[]);
    let ada = server.new_user("ada@example.org", 21).await;
    let (output, stderr) = device_flow(&server, &ada, &["--client-id", &client_id, "--scope", SCOPE], "allow").await;
    assert!(output.status.success(), "coffer token failed: {stderr}");
    let token = one_line(&output);
    assert_people_read_create_only(&server, &token).await;
    assert_eq!(stderr.lines().count(), 1, "one line for the person: {stderr}");
}

#[tokio::test]
async fn coffer_token_fails_clearly_when_access_is_denied() {
    let server = Server::start();
    let client_id = device_app(&server, "My script", &[]);
    let ada = server.new_user("ada@example.org", 22).await;
    let (output, stderr) = device_flow(&server, &ada, &["--client-id", &client_id, "--scope", SCOPE], "deny").await;
    assert!(!output.status.success(), "a denial is a failure: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "no token: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("access was denied in the browser"), "{stderr}");
    assert!(stderr.contains("Run `coffer token` again"), "says what to do: {stderr}");
}

#[tokio::test]
async fn coffer_token_json_then_refresh_rotates_the_refresh_token() {
    let server = Server::start();
    let client_id = device_app(&server, "My script", &["--grant-type", "refresh-token"]);
    let ada = server.new_user("ada@example.org", 23).await;
    let (output, stderr) = device_flow(
        &server,
        &ada,
        &["--client-id", &client_id, "--scope", SCOPE, "--json"],
        "allow",
    )
    .await;
    assert!(output.status.success(), "coffer token --json failed: {stderr}");
    let tokens: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert_eq!(tokens["scope"], SCOPE, "{tokens}");
    assert_eq!(tokens["expires_in"], 600, "ten minutes: {tokens}");
    assert!(
        tokens["authorization_details"].is_array(),
        "the whole response: {tokens}"
    );
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();
    assert_people_read_create_only(&server, access).await;

    // Refresh: the new access token on the first line, the new refresh
    // token on the second.
    let refreshed = coffer_token(&server, &["--client-id", &client_id, "--refresh-token", &refresh])
        .output()
        .unwrap();
    assert!(
        refreshed.status.success(),
        "refresh failed: {}",
        String::from_utf8_lossy(&refreshed.stderr)
    );
    let stdout = String::from_utf8(refreshed.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout:?}");
    let (new_access, new_refresh) = (lines[0], lines[1]);
    assert_ne!(new_access, access);
    assert_ne!(new_refresh, refresh, "rotated");
    let people = server.api(new_access).get(&rows_path(PEOPLE, &[])).await;
    people.expect(200);
    assert_eq!(people.rows().len(), 1, "{}", people.text);

    // The new refresh token works with --json and COFFER_REFRESH_TOKEN.
    let again = coffer_token(&server, &["--client-id", &client_id, "--json"])
        .env("COFFER_REFRESH_TOKEN", new_refresh)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "refresh --json failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["scope"], SCOPE, "{again}");
    assert!(again["refresh_token"].is_string(), "{again}");

    // The used one is refused, with what to do.
    let reused = coffer_token(&server, &["--client-id", &client_id, "--refresh-token", &refresh])
        .output()
        .unwrap();
    assert!(!reused.status.success());
    assert!(reused.stdout.is_empty());
    let said = String::from_utf8_lossy(&reused.stderr);
    assert!(said.contains("the refresh token was refused"), "{said}");
    assert!(said.contains("coffer token --client-id"), "says what to do: {said}");
}

#[tokio::test]
async fn coffer_token_names_what_to_do_when_it_cannot_start() {
    let server = Server::start();
    // An unknown client id.
    let unknown = coffer_token(&server, &["--client-id", "no-such-app", "--scope", SCOPE])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no app with client id no-such-app"), "{said}");
    assert!(said.contains("--client-id"), "{said}");

    // An app registered without the device flow.
    let code_only = server.public_app("Web app", APP_REDIRECT);
    let refused = coffer_token(&server, &["--client-id", &code_only, "--scope", SCOPE])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--grant-type device-code"), "{said}");

    // No server there: the flag or variable to change.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["token", "--client-id", "x", "--server", &nowhere])
        .env("COFFER_LOG", "warn")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(said.contains(&format!("could not reach Coffer at {nowhere}")), "{said}");
    assert!(said.contains("--server or COFFER_PUBLIC_URL"), "{said}");
}

#[tokio::test]
async fn app_register_print_client_id_prints_only_the_id() {
    let server = Server::start();
    let client_id = device_app(&server, "My script", &[]);
    let apps = server.cli(&["app", "list", "--json"], "");
    assert!(apps.status.success());
    let apps: Value = serde_json::from_slice(&apps.stdout).unwrap();
    let listed: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [client_id.as_str()], "the printed id is the registered app's");
    // A confidential app's secret is shown once: --print refuses to hide it,
    // and registers nothing.
    let confidential = server.cli(
        &[
            "app",
            "register",
            "--name",
            "Backend",
            "--redirect-uri",
            "https://backend.example/callback",
            "--auth-method",
            "client-secret-basic",
            "--print",
            "client-id",
        ],
        "",
    );
    assert!(!confidential.status.success());
    assert!(confidential.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&confidential.stderr).contains("use --json"),
        "{}",
        String::from_utf8_lossy(&confidential.stderr)
    );
    let apps = server.cli(&["app", "list", "--json"], "");
    let apps: Value = serde_json::from_slice(&apps.stdout).unwrap();
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
}
