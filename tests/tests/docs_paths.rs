//! The docs name only files and folders the project has: every path in
//! backticks in `docs/**/*.md` and `README.md` that looks like a project
//! path (it has a `/` and a known extension or names a known top-level
//! folder) exists.

use std::path::{Path, PathBuf};

/// The project's root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// Spans between backticks on each line.
fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("```")) {
        let parts: Vec<&str> = line.split('`').collect();
        spans.extend(parts.iter().skip(1).step_by(2).map(|s| (*s).to_owned()));
    }
    spans
}

const TOP: [&str; 9] = [
    "vault-server/",
    "sdk/",
    "consent-ui/",
    "schemas/",
    "migrations/",
    "tests/",
    "docs/",
    "scripts/",
    ".ci/",
];
const EXTENSIONS: [&str; 8] = [".rs", ".md", ".json", ".sql", ".sh", ".js", ".toml", ".html"];

/// Whether a code span is meant as a path of this project.
fn is_project_path(span: &str) -> bool {
    !span.contains(' ')
        && !span.starts_with('/')
        && !span.contains('{')
        && !span.contains('*')
        && !span.contains("://")
        && (TOP.iter().any(|t| span.starts_with(t))
            || (span.contains('/') && EXTENSIONS.iter().any(|e| span.ends_with(e))))
}

#[test]
fn docs_name_only_paths_that_exist() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut checked = 0;
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for span in code_spans(&text).iter().filter(|s| is_project_path(s)) {
            let path = span.trim_end_matches('/');
            // A path relative to a crate or its `src` (`web/…`,
            // `tests/http/…`) is looked up under every crate as well.
            let found = root.join(path).exists()
                || [
                    "vault-server/coffer",
                    "vault-server/gateway",
                    "vault-server/query",
                    "vault-server/storage",
                    "vault-server/oauth",
                    "vault-server/auth",
                    "vault-server/core",
                    "vault-server/bench",
                    "vault-server",
                    "consent-ui",
                    "tests",
                ]
                .iter()
                .any(|c| root.join(c).join(path).exists() || root.join(c).join("src").join(path).exists());
            checked += 1;
            if !found {
                missing.push(format!("{}: `{span}`", file.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} paths found in the docs: is the parser right?"
    );
    assert!(
        missing.is_empty(),
        "the docs name paths that do not exist:\n{}",
        missing.join("\n")
    );
}
