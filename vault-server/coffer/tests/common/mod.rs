//! Shared helpers of the HTTP-level tests: start the real `coffer` binary
//! on a temporary data directory, run its operator commands, and act like a
//! browser (a cookie store; redirects followed by hand so every `Location`
//! can be checked).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running `coffer serve`; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data directory.
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server on a new data directory and waits until it serves.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_PUBLIC_URL")
            .env_remove("COFFER_CONFIG")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start coffer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("coffer exited before serving").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break format!("http://{}", rest.split('/').next().unwrap());
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base,
            data_dir,
            _dir: dir,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs `coffer ARGS --data-dir DATA` with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("COFFER_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run coffer");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Registers an app with `coffer app register … --json`; returns its JSON.
    pub fn register_app(&self, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["app", "register", "--name", name, "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A public app with `redirect` (authorization code + refresh); its client id.
    pub fn public_app(&self, name: &str, redirect: &str) -> String {
        let app = self.register_app(
            name,
            &["--redirect-uri", redirect, "--homepage", "https://notes.example"],
        );
        app["client_id"].as_str().unwrap().to_owned()
    }

    /// A new cookie-keeping client.
    pub fn browser(&self) -> Browser {
        Browser {
            client: client(),
            base: self.base.clone(),
        }
    }
}

/// An HTTP client that keeps cookies and never follows redirects.
pub fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// A page as received.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub url: String,
    pub body: String,
}

impl Page {
    pub async fn read(response: Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            url: response.url().to_string(),
            body: response.text().await.unwrap(),
        }
    }

    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the hidden input `name`.
    pub fn hidden(&self, name: &str) -> Option<String> {
        input_values(&self.body, name).into_iter().next()
    }

    /// The values of the checkboxes named `line`.
    pub fn lines(&self) -> Vec<String> {
        input_values(&self.body, "line")
    }

    /// The page's `<h1>` text.
    pub fn h1(&self) -> String {
        let start = self.body.find("<h1").map(|i| i + self.body[i..].find('>').unwrap() + 1);
        match start {
            Some(s) => strip_tags(&self.body[s..s + self.body[s..].find("</h1>").unwrap()]),
            None => String::new(),
        }
    }
}

/// The `value` of every `<input … name="NAME" … value="…">`.
pub fn input_values(html: &str, name: &str) -> Vec<String> {
    let needle = format!("name=\"{name}\"");
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            if !tag.contains(&needle) {
                return None;
            }
            let v = tag.split("value=\"").nth(1)?;
            Some(unescape(&v[..v.find('"')?]))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(out.trim())
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A user agent on one server: cookies, and redirects followed only on the
/// server's own origin.
pub struct Browser {
    pub client: Client,
    pub base: String,
}

impl Browser {
    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// One GET, no redirect followed.
    pub async fn get(&self, path_or_url: &str) -> Page {
        Page::read(self.client.get(self.absolute(path_or_url)).send().await.unwrap()).await
    }

    /// One form POST, no redirect followed.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .client
            .post(self.absolute(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Page::read(response).await
    }

    /// Follows redirects on this server's origin; stops at a page or at a
    /// redirect elsewhere (returned as is).
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            match page.location() {
                Some(loc) if page.status.is_redirection() && (loc.starts_with('/') || loc.starts_with(&self.base)) => {
                    let next = loc.to_owned();
                    page = self.get(&next).await;
                }
                _ => return page,
            }
        }
        panic!("too many redirects");
    }

    /// GET and follow.
    pub async fn visit(&self, path_or_url: &str) -> Page {
        let page = self.get(path_or_url).await;
        self.follow(page).await
    }

    /// Signs up on the sign-up page (with `next`), following the redirects
    /// that come after.
    pub async fn sign_up(&self, email: &str, next: Option<&str>) -> Page {
        let path = match next {
            Some(n) => format!(
                "/sign-up?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", n)
                    .finish()
            ),
            None => "/sign-up".to_owned(),
        };
        let form_page = self.get(&path).await;
        assert_eq!(form_page.status, StatusCode::OK);
        let csrf = form_page.hidden("csrf_token").expect("sign-up form has a CSRF token");
        let mut fields = vec![
            ("csrf_token", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ];
        let next_field = form_page.hidden("next");
        if let Some(n) = &next_field {
            fields.push(("next", n));
        }
        let answer = self.post("/sign-up", &fields).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "sign-up failed: {}", answer.body);
        self.follow(answer).await
    }

    /// Signs in (no `next`), following redirects.
    pub async fn sign_in(&self, email: &str, password: &str) -> Page {
        let form_page = self.get("/sign-in").await;
        let csrf = form_page.hidden("csrf_token").unwrap();
        let answer = self
            .post(
                "/sign-in",
                &[("csrf_token", &csrf), ("email", email), ("password", password)],
            )
            .await;
        self.follow(answer).await
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization request URL path for a public client.
pub fn authorize_path(client_id: &str, redirect: &str, scope: &str, challenge: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("state", "s-123");
    if let Some(c) = challenge {
        query
            .append_pair("code_challenge", c)
            .append_pair("code_challenge_method", "S256");
    }
    format!("/oauth/authorize?{}", query.finish())
}

/// POSTs a form to an OAuth endpoint; returns status, headers and JSON.
pub async fn oauth_post(
    client: &Client,
    url: &str,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, headers, json)
}
