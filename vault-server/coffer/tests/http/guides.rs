//! The guides in `docs/guides` run as written. Each guide's ```sh blocks
//! are typed, in order, into one bash session (as a reader types them into
//! one terminal) against a fresh server, with `coffer` on the `PATH` and
//! `COFFER_DATA_DIR` naming the server's data directory. What a block prints
//! must equal the ```json or ```text fence that follows it (ids, times,
//! tokens and codes compared by shape; `…` stands for any run of
//! characters); a block with no answer fence must
//! succeed. While a block runs, a device code it offers on standard error
//! (`…/device?user_code=…`) is approved by a signed-in user, and a
//! `<!-- guide-test: consent VAR -->` line after a block opens the last
//! authorization URL it printed, allows it, and sets `VAR` to the code of
//! the redirect. `COFFER_GUIDE_SHOW=1` prints what every block printed
//! (with `--nocapture`), for writing a guide's answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::common::{Browser, Server, approve_device, consent, query_param};

/// The server URL the guides are written for; replaced by the test server's.
const GUIDE_SERVER: &str = "http://127.0.0.1:8484";

/// How long one block may run (a `coffer token` waits for its approval).
const BLOCK_TIME_LIMIT: Duration = Duration::from_secs(60);

/// One step of a guide.
#[derive(Debug, PartialEq)]
enum Step {
    /// A shell block, the answer fence after it (language, text), and the
    /// line it starts on.
    Run {
        line: usize,
        code: String,
        answer: Option<(String, String)>,
    },
    /// Consent to the last authorization URL printed; the code goes to the
    /// shell variable.
    Consent { line: usize, variable: String },
}

/// The steps of a guide's Markdown.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    // Whether the next fence may be the answer of the last shell block.
    let mut answer_may_follow = false;
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("<!-- guide-test:") {
            let words: Vec<&str> = rest.trim_end_matches("-->").split_whitespace().collect();
            match words.as_slice() {
                ["consent", variable] => steps.push(Step::Consent {
                    line: n + 1,
                    variable: (*variable).to_owned(),
                }),
                other => panic!("line {}: unknown guide-test step {other:?}", n + 1),
            }
            answer_may_follow = false;
            continue;
        }
        let Some(language) = line.strip_prefix("```") else {
            continue;
        };
        let language = language.trim().to_owned();
        let is_shell = language == "sh";
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim_end() != "```")
            .collect();
        let body = body.join("\n");
        match (language.as_str(), steps.last_mut()) {
            ("sh", _) => steps.push(Step::Run {
                line: n + 1,
                code: body,
                answer: None,
            }),
            ("json" | "text", Some(Step::Run { answer, .. })) if answer_may_follow => {
                *answer = Some((language, body));
            }
            _ => {}
        }
        answer_may_follow = is_shell;
    }
    steps
}

/// A bash session: blocks go to its standard input; what they print is read
/// back up to an end marker carrying the exit status.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// Everything written to standard error so far, for failure messages.
    errors: String,
}

const END: &str = "\u{1e}coffer-guide-block-end";

impl Shell {
    fn start(server: &Server, home: &Path) -> Shell {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_coffer"));
        let path = format!(
            "{}:{}",
            binary.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(home)
            .env_clear()
            .env("PATH", path)
            .env("HOME", home)
            .env("LANG", "C.UTF-8")
            .env("COFFER_DATA_DIR", &server.data_dir)
            .env("COFFER_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bash");
        let stdin = child.stdin.take().unwrap();
        let lines = |reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let (send, receive) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            receive
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Shell {
            child,
            stdin,
            stdout,
            stderr,
            errors: String::new(),
        }
    }

    /// Types `code` and returns what it printed and its exit status,
    /// approving each device code it offers meanwhile.
    async fn run(&mut self, code: &str, user: &Browser) -> (String, i32) {
        let typed = format!("{code}\nprintf '\\n{END} %d\\n' \"$?\"\n");
        self.stdin.write_all(typed.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let mut printed: Vec<String> = Vec::new();
        let deadline = tokio::time::Instant::now() + BLOCK_TIME_LIMIT;
        loop {
            tokio::select! {
                line = self.stdout.recv() => {
                    let line = line.unwrap_or_else(|| panic!("bash ended; it wrote:\n{}", self.errors));
                    if let Some(status) = line.strip_prefix(END) {
                        // The marker's own leading newline ends the block's
                        // last line.
                        if printed.last().is_some_and(String::is_empty) {
                            printed.pop();
                        }
                        return (printed.join("\n"), status.trim().parse().unwrap());
                    }
                    printed.push(line);
                }
                line = self.stderr.recv() => {
                    let Some(line) = line else { continue };
                    self.errors.push_str(&line);
                    self.errors.push('\n');
                    if let Some(code) = offered_device_code(&line) {
                        approve_device(user, &code).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    panic!("the block ran past {BLOCK_TIME_LIMIT:?}:\n{code}\nit printed:\n{}\nand on standard error:\n{}", printed.join("\n"), self.errors);
                }
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The user code of a `…/device?user_code=XXXX-XXXX` URL in `line`.
fn offered_device_code(line: &str) -> Option<String> {
    let url = line.split_whitespace().find(|w| w.contains("/device?user_code="))?;
    query_param(url, "user_code")
}

/// The last authorization URL in `printed`.
fn authorization_url(printed: &str) -> Option<&str> {
    printed.split_whitespace().rfind(|w| w.contains("/oauth/authorize?"))
}

/// Object members whose value differs from run to run: compared by JSON
/// type only.
const VARYING: &[&str] = &[
    "_seq",
    "_created_at",
    "_updated_at",
    "_created_by",
    "_updated_by",
    "next_cursor",
    "access_token",
    "refresh_token",
    "device_code",
    "user_code",
    "verification_uri_complete",
    "client_id",
    "code",
    "at",
];

/// Whether `actual` is what the guide shows as `expected`: equal, or equal
/// but for values that differ from run to run (see [`VARYING`]; strings that
/// are both RFC 3339 times or both ULIDs; `"…"` for anything, and `…`
/// inside a string for any run of characters).
fn same_answer(expected: &Value, actual: &Value, member: Option<&str>) -> bool {
    if member.is_some_and(|m| VARYING.contains(&m)) {
        return std::mem::discriminant(expected) == std::mem::discriminant(actual);
    }
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => true,
        (Value::String(e), Value::String(a)) => {
            same_line(e, a)
                || (chrono::DateTime::parse_from_rfc3339(e).is_ok() && chrono::DateTime::parse_from_rfc3339(a).is_ok())
                || (is_ulid(e) && is_ulid(a))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same_answer(e, a, None))
        }
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|w| same_answer(v, w, Some(k))))
        }
        _ => expected == actual,
    }
}

/// A ULID's shape: 26 characters of Crockford's base 32, in either case
/// (Coffer shows ids in lower case).
fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b.to_ascii_uppercase()))
}

/// Whether printed text matches the guide's ```text answer, line by line.
fn same_text(expected: &str, actual: &str) -> bool {
    let (expected, actual): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    expected.len() == actual.len() && expected.iter().zip(&actual).all(|(e, a)| same_line(e, a))
}

/// Whether `actual` is `expected` with each `…` standing for any run of
/// characters.
fn same_line(expected: &str, actual: &str) -> bool {
    let mut parts = expected.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Runs one guide against a fresh server; returns how many blocks ran.
async fn run_guide(guide: &Path) -> usize {
    let name = guide.file_name().unwrap().to_string_lossy().into_owned();
    let steps = steps(&std::fs::read_to_string(guide).unwrap());
    if steps.is_empty() {
        return 0;
    }
    let server = Server::start();
    let markdown_base = |s: &str| s.replace(GUIDE_SERVER, &server.base);
    let user = server.new_user("reader@example.com", 51).await;
    let home = tempfile::tempdir().unwrap();
    let mut shell = Shell::start(&server, home.path());
    let mut last_printed = String::new();
    let mut ran = 0;
    for step in steps {
        match step {
            Step::Run { line, code, answer } => {
                let code = markdown_base(&code);
                let (printed, status) = shell.run(&code, &user).await;
                ran += 1;
                let at = format!("{name}, the block at line {line}:\n{code}\n");
                if std::env::var_os("COFFER_GUIDE_SHOW").is_some() {
                    eprintln!("{at}printed:\n{printed}\n");
                }
                assert_eq!(
                    status, 0,
                    "{at}exited with {status}; it printed:\n{printed}\nstandard error so far:\n{}",
                    shell.errors
                );
                match answer {
                    None => {}
                    Some((language, shown)) => {
                        let shown = markdown_base(&shown);
                        let same = if language == "json" {
                            let expected: Value = serde_json::from_str(&shown)
                                .unwrap_or_else(|e| panic!("{at}its answer in the guide is not JSON ({e}):\n{shown}"));
                            serde_json::from_str::<Value>(&printed)
                                .is_ok_and(|actual| same_answer(&expected, &actual, None))
                        } else {
                            same_text(&shown, &printed)
                        };
                        assert!(
                            same,
                            "{at}printed\n{printed}\nbut the guide shows\n{shown}\nstandard error:\n{}",
                            shell.errors
                        );
                    }
                }
                last_printed = printed;
            }
            Step::Consent { line, variable } => {
                let url = authorization_url(&last_printed)
                    .unwrap_or_else(|| panic!("{name}, line {line}: the block before printed no authorization URL"));
                let location = consent(&user, url, None).await;
                let code = query_param(&location, "code")
                    .unwrap_or_else(|| panic!("{name}, line {line}: no code in the redirect {location}"));
                let (_, status) = shell.run(&format!("{variable}='{code}'"), &user).await;
                assert_eq!(status, 0);
            }
        }
    }
    ran
}

/// Every guide in `docs/guides`.
fn guides() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guides");
    let mut guides: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    guides.sort();
    guides
}

#[tokio::test]
async fn every_shell_example_in_the_guides_prints_what_the_guide_shows() {
    let mut total = 0;
    for guide in guides() {
        let ran = run_guide(&guide).await;
        eprintln!(
            "docs/guides/{}: {ran} blocks ran as shown",
            guide.file_name().unwrap().to_string_lossy()
        );
        total += ran;
    }
    assert!(total >= 10, "only {total} shell examples in docs/guides");
}

#[test]
fn guide_steps_and_answers_are_read_and_compared() {
    let markdown = "Intro\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\n```sh\ncurl x\n```\n<!-- guide-test: consent CODE -->\n```json\n{}\n```\n";
    assert_eq!(
        steps(markdown),
        vec![
            Step::Run {
                line: 3,
                code: "echo hi".into(),
                answer: Some(("text".into(), "hi".into()))
            },
            Step::Run {
                line: 11,
                code: "curl x".into(),
                answer: None
            },
            Step::Consent {
                line: 14,
                variable: "CODE".into()
            },
        ]
    );
    let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    let row =
        json(r#"{"id": "01JEX3W4G5H6J7K8M9N0P1Q2R3", "_seq": 4, "title": "a", "_created_at": "2026-01-01T00:00:00Z"}"#);
    let same = json(
        r#"{"id": "01JF00000000000000000000AB", "_seq": 9, "title": "a", "_created_at": "2026-12-04T10:11:12.5Z"}"#,
    );
    assert!(same_answer(&row, &same, None));
    for other in [
        r#"{"id": "01JF00000000000000000000AB", "_seq": 9, "title": "b", "_created_at": "2026-12-04T10:11:12Z"}"#,
        r#"{"id": "ada", "_seq": 9, "title": "a", "_created_at": "2026-12-04T10:11:12Z"}"#,
        r#"{"id": "01JF00000000000000000000AB", "_seq": "9", "title": "a", "_created_at": "2026-12-04T10:11:12Z"}"#,
        r#"{"id": "01JF00000000000000000000AB", "_seq": 9, "title": "a", "_created_at": "2026-12-04T10:11:12Z", "x": 1}"#,
    ] {
        assert!(!same_answer(&row, &json(other), None), "{other}");
    }
    assert!(same_text("token: …\nbye", "token: abc\nbye"));
    assert!(same_text("a…c…e", "abcde"));
    assert!(!same_text("a…c", "abd"));
    assert!(!same_text("hi", "hi\nthere"));
}
