//! `coffer serve` on the embedded default: first start creates the master
//! key (mode 0600) and prints the URL; health and readiness answer.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    crate::common::raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

fn start(data_dir: &std::path::Path) -> (Server, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(crate::common::SERVE_ON_FREE_PORTS)
        .arg(data_dir)
        .env("COFFER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start coffer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = loop {
        let line = lines.next().expect("coffer exited before serving").unwrap();
        printed.push(line.clone());
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // The next steps follow; the backup warning is the last line.
    loop {
        let line = lines.next().expect("coffer exited while starting").unwrap();
        printed.push(line.clone());
        if line.starts_with("Back up ") {
            break;
        }
    }
    // Keep draining stdout so the server never writes to a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), addr, printed)
}

#[test]
fn serve_creates_its_data_directory_and_answers_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, addr, printed) = start(&data);
    assert!(printed.iter().any(|l| l.contains("Created master key")), "{printed:?}");
    assert!(
        printed.iter().any(|l| l.contains("Created capability token root key")),
        "{printed:?}"
    );
    // It says what to do next, and to back up the master key.
    for expected in [
        format!("http://{addr}/sign-up"),
        "coffer app register".to_owned(),
        format!("http://{addr}/v1/openapi.json"),
        "losing it loses every vault".to_owned(),
    ] {
        assert!(
            printed.iter().any(|l| l.contains(&expected)),
            "no `{expected}` in {printed:?}"
        );
    }
    assert_eq!(get(&addr, "/healthz"), (200, "ok".to_owned()));
    // The metadata publishes the root public key and names this server.
    let (status, metadata) = get(&addr, "/.well-known/oauth-authorization-server");
    assert_eq!(status, 200);
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["issuer"], format!("http://{addr}"));
    let public_key = metadata["coffer_biscuit_public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("ed25519/"), "{public_key}");
    assert_eq!(get(&addr, "/readyz").0, 200);
    assert_eq!(get(&addr, "/nope").0, 404);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["master.key", "root.key"] {
            let mode = std::fs::metadata(data.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
    }
    assert!(data.join("control.db").exists());
    drop(server);
    // A second start reuses the key.
    let (_server, addr, printed) = start(&data);
    assert!(!printed.iter().any(|l| l.contains("Created")), "{printed:?}");
    assert_eq!(get(&addr, "/readyz").0, 200);
    // … and the root key: the same public key.
    let metadata: serde_json::Value =
        serde_json::from_str(&get(&addr, "/.well-known/oauth-authorization-server").1).unwrap();
    assert_eq!(metadata["coffer_biscuit_public_key"], public_key.as_str());
}

#[test]
fn startup_errors_name_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let serve = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("serve")
            .args(args)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_CONFIG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8(out.stderr).unwrap()
    };
    let listen = std::ffi::OsStr::new("--listen");
    let any_port = std::ffi::OsStr::new("127.0.0.1:0");
    let data = std::ffi::OsStr::new("--data-dir");
    for path in [file.clone(), file.join("below")] {
        let err = serve(&[listen, any_port, data, path.as_os_str()]);
        assert!(
            err.contains(&file.display().to_string()) && err.contains("is a file") && err.contains("--data-dir"),
            "{err}"
        );
        assert_eq!(err.matches("is a file").count(), 1, "printed once: {err}");
        assert!(!err.contains("backtrace"), "{err}");
    }
    let err = serve(&[listen, std::ffi::OsStr::new("18485")]);
    assert!(err.contains("IP:port") && err.contains("127.0.0.1:18485"), "{err}");
}

#[test]
fn help_explains_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--listen",
        "--config",
        "--flush-interval-secs",
        "--flush-rows",
        "--log-retention-hours",
        "--public-url",
        "--api-body-limit",
        "--header-read-timeout-secs",
        "--request-timeout-secs",
        "--max-connections",
        "--open-registration",
        "--query-timeout-secs",
        "--query-memory-mib",
        "--queries-per-app",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(
        text.contains("COFFER_DATA_DIR") && text.contains("COFFER_PUBLIC_URL"),
        "--help names the environment variables"
    );
    for command in [
        &["user", "create"][..],
        &["user", "list"],
        &["app", "register"],
        &["app", "list"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(
            String::from_utf8(out.stdout).unwrap().contains("--data-dir"),
            "{command:?}"
        );
    }
}
