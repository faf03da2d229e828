//! Shared helpers of the HTTP-level tests: start the real `coffer` binary
//! on a temporary data directory, run its operator commands, and act like a
//! browser (a cookie store; redirects followed by hand so every `Location`
//! can be checked).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_test_support::html::unescape;
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod contract;

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running `coffer serve`; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The pgwire listener's address (`127.0.0.1:PORT`).
    pub pgwire: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// What the server wrote to standard error, when started with
    /// [`Server::start_logging`].
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `coffer serve` on free HTTP and pgwire ports, ending in `--data-dir`
/// for the caller's path: parallel test servers never compete for a port.
pub const SERVE_ON_FREE_PORTS: [&str; 6] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--pgwire-listen",
    "127.0.0.1:0",
    "--data-dir",
];

impl Server {
    /// Starts a server on a new data directory and waits until it serves.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with these extra environment variables (e.g.
    /// `COFFER_API_BODY_LIMIT`).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::spawn(env, false)
    }

    /// Starts a server logging at `info`, its standard error kept in `log`.
    pub fn start_logging() -> Self {
        Self::spawn(&[("COFFER_LOG", "info")], true)
    }

    fn spawn(env: &[(&str, &str)], capture_log: bool) -> Self {
        Self::spawn_in(tempfile::tempdir().unwrap(), env, capture_log)
    }

    /// Stops the server and starts a new one on the same data directory
    /// (with no extra environment).
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        Self::spawn_in(dir, &[], false)
    }

    fn spawn_in(dir: tempfile::TempDir, env: &[(&str, &str)], capture_log: bool) -> Self {
        let data_dir = dir.path().join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_coffer"));
        command
            .args(SERVE_ON_FREE_PORTS)
            .arg(&data_dir)
            .env("COFFER_LOG", "warn")
            .env_remove("COFFER_PUBLIC_URL")
            .env_remove("COFFER_CONFIG")
            .env_remove("COFFER_API_BODY_LIMIT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        if capture_log {
            command.stderr(Stdio::piped());
        }
        let mut child = command.spawn().expect("start coffer");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        let pgwire = loop {
            let line = lines.next().expect("coffer exited before serving").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                base = Some(format!("http://{}", rest.split('/').next().unwrap()));
            } else if let Some(rest) = line.split("postgres://CLIENT_ID@").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        let base = base.expect("the HTTP URL is printed before the pgwire one");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base,
            pgwire,
            data_dir,
            log,
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
        // Sign-up answers the same for a new and a taken address: the
        // sign-in page, where the new account signs in.
        let sign_in = self.follow(answer).await;
        assert!(
            sign_in.url.contains("/sign-in?signed_up=1"),
            "sign-up leads to sign-in: {}",
            sign_in.url
        );
        let csrf = sign_in.hidden("csrf_token").expect("sign-in form has a CSRF token");
        let mut fields = vec![("csrf_token", csrf.as_str()), ("email", email), ("password", PASSWORD)];
        let next_field = sign_in.hidden("next");
        if let Some(n) = &next_field {
            fields.push(("next", n));
        }
        let answer = self.post("/sign-in", &fields).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "sign-in after sign-up failed: {}",
            answer.body
        );
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
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
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

/// The form of an authorization code exchange at the token endpoint, with
/// `code_verifier` when given.
pub fn code_form<'a>(
    code: &'a str,
    redirect: &'a str,
    client_id: &'a str,
    verifier: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", client_id),
    ];
    form.extend(verifier.map(|v| ("code_verifier", v)));
    form
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

// ---------------------------------------------------------------------------
// Apps, tokens and the data API (`/v1`).

/// The redirect URI of the test apps: a loopback address nobody listens on
/// (the tests read the `Location` header instead of following it).
pub const APP_REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A client that keeps cookies, never follows redirects and sends from the
/// loopback address `ip` (every 127.0.0.0/8 address reaches the server on
/// Linux), so each simulated user has their own sign-up and sign-in budget.
pub fn client_from(ip: std::net::IpAddr) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .no_proxy()
        .local_address(ip)
        .build()
        .unwrap()
}

/// `127.0.0.n`.
pub fn loopback(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n))
}

impl Server {
    /// A browser whose requests come from `127.0.0.n`.
    pub fn browser_from(&self, n: u8) -> Browser {
        Browser {
            client: client_from(loopback(n)),
            base: self.base.clone(),
        }
    }

    /// Signs up `email` from `127.0.0.n`; the returned browser is signed in.
    pub async fn new_user(&self, email: &str, n: u8) -> Browser {
        let browser = self.browser_from(n);
        let page = browser.sign_up(email, None).await;
        assert_eq!(page.status, StatusCode::OK, "sign-up of {email}: {}", page.body);
        browser
    }

    /// A public app named `name` with the test redirect URI; its client id.
    pub fn app(&self, name: &str) -> String {
        self.public_app(name, APP_REDIRECT)
    }

    /// An API client holding `token`.
    pub fn api(&self, token: &str) -> Api {
        Api::new(&self.base, token)
    }
}

/// What the token endpoint answered.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub scope: String,
}

impl Tokens {
    fn from_json(body: &Value) -> Tokens {
        Tokens {
            access: body["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
            refresh: body["refresh_token"].as_str().map(str::to_owned),
            scope: body["scope"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// Opens an authorization request (a path or URL) in the signed-in
/// `browser` and allows it on the consent page, ticking `tick` (every line
/// when `None`; no page when the server goes straight back because
/// everything was allowed before). Returns the redirect's `Location`.
pub async fn consent(browser: &Browser, authorize: &str, tick: Option<&[&str]>) -> String {
    let page = browser.visit(authorize).await;
    if page.status != StatusCode::OK {
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "authorize {authorize}: {}",
            page.body
        );
        return page.location().unwrap().to_owned();
    }
    let lines = page.lines();
    assert!(!lines.is_empty(), "no consent lines for {authorize}: {}", page.body);
    let ticked: Vec<String> = match tick {
        Some(t) => t.iter().map(|s| (*s).to_owned()).collect(),
        None => lines,
    };
    let csrf = page.hidden("csrf_token").expect("consent form has a CSRF token");
    let request_id = page.hidden("request_id").expect("consent form has a request id");
    let mut form = vec![("csrf_token", csrf.as_str()), ("request_id", request_id.as_str())];
    form.extend(ticked.iter().map(|l| ("line", l.as_str())));
    form.push(("decision", "allow"));
    let answer = browser.post("/oauth/authorize", &form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "consent answer: {}", answer.body);
    answer.location().unwrap().to_owned()
}

/// Answers a consent page with `decision` (`allow` or `deny`), the given
/// lines ticked; the answer, no redirect followed.
pub async fn answer_consent(browser: &Browser, consent: &Page, lines: &[&str], decision: &str) -> Page {
    let csrf = consent.hidden("csrf_token").unwrap();
    let request_id = consent.hidden("request_id").unwrap();
    let mut form = vec![("csrf_token", csrf.as_str()), ("request_id", request_id.as_str())];
    form.extend(lines.iter().map(|l| ("line", *l)));
    form.push(("decision", decision));
    browser.post("/oauth/authorize", &form).await
}

/// Answers a consent page: Allow with the given lines ticked.
pub async fn allow(browser: &Browser, consent: &Page, lines: &[&str]) -> Page {
    answer_consent(browser, consent, lines, "allow").await
}

/// Runs the authorization code flow for `client_id` and the signed-in user of
/// `browser`: authorize with PKCE S256, answer the consent page (ticking
/// `tick`, or every line when `None`; skipped when the server goes straight
/// back because everything was allowed before), read the code from the
/// redirect and exchange it at the token endpoint.
pub async fn authorize_app(browser: &Browser, client_id: &str, scope: &str, tick: Option<&[&str]>) -> Tokens {
    let (verifier, challenge) = pkce();
    let location = consent(
        browser,
        &authorize_path(client_id, APP_REDIRECT, scope, Some(&challenge)),
        tick,
    )
    .await;
    assert!(location.starts_with(APP_REDIRECT), "{location}");
    let code = query_param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"));
    let (status, _, body) = oauth_post(
        &browser.client,
        &format!("{}/oauth/token", browser.base),
        &code_form(&code, APP_REDIRECT, client_id, Some(&verifier)),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token exchange: {body}");
    Tokens::from_json(&body)
}

/// Exchanges a refresh token; the status and the JSON answer.
pub async fn refresh_tokens(base: &str, client_id: &str, refresh: &str) -> (StatusCode, Value) {
    let (status, _, body) = oauth_post(
        &client(),
        &format!("{base}/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", client_id),
        ],
        &[],
    )
    .await;
    (status, body)
}

/// Refreshes and expects new tokens.
pub async fn refreshed(base: &str, client_id: &str, refresh: &str) -> Tokens {
    let (status, body) = refresh_tokens(base, client_id, refresh).await;
    assert_eq!(status, StatusCode::OK, "refresh: {body}");
    Tokens::from_json(&body)
}

/// The dashboard card of the app named `app_name`: its grant id and lines.
pub fn dashboard_card(dashboard: &Page, app_name: &str) -> (String, Vec<String>) {
    let heading = format!(">{app_name}</h3>");
    let card = dashboard
        .body
        .split("<li class=\"app-card\">")
        .skip(1)
        .find(|card| card.contains(&heading))
        .unwrap_or_else(|| panic!("no dashboard card for {app_name}: {}", dashboard.body));
    let card = &card[..card.find("class=\"revoke-form\"").unwrap_or(card.len())];
    let grant_id = input_values(card, "grant_id").into_iter().next().expect("grant id");
    (grant_id, input_values(card, "line"))
}

/// "Change access" on the dashboard: keeps only `lines` ticked for `app_name`.
pub async fn narrow_on_dashboard(browser: &Browser, app_name: &str, lines: &[&str]) {
    let dashboard = browser.visit("/dashboard").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    let csrf = dashboard.hidden("csrf_token").unwrap();
    let (grant_id, _) = dashboard_card(&dashboard, app_name);
    let mut form = vec![("csrf_token", csrf.as_str()), ("grant_id", grant_id.as_str())];
    form.extend(lines.iter().map(|l| ("line", *l)));
    let answer = browser.post("/dashboard/access", &form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "change access: {}", answer.body);
}

/// "Revoke access" on the dashboard, confirmed.
pub async fn revoke_on_dashboard(browser: &Browser, app_name: &str) {
    let dashboard = browser.visit("/dashboard").await;
    let csrf = dashboard.hidden("csrf_token").unwrap();
    let (grant_id, _) = dashboard_card(&dashboard, app_name);
    let answer = browser
        .post(
            "/dashboard/revoke",
            &[("csrf_token", &csrf), ("grant_id", &grant_id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "revoke: {}", answer.body);
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&…`, every key and value percent-encoded.
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", pct(k), pct(v))).collect();
    format!("{path}?{}", q.join("&"))
}

/// `/v1/tables/{table}/rows` with a query.
pub fn rows_path(table: &str, query: &[(&str, &str)]) -> String {
    with_query(&format!("/v1/tables/{table}/rows"), query)
}

/// `/v1/tables/{table}/rows/{id}` with a query.
pub fn row_path(table: &str, id: &str, query: &[(&str, &str)]) -> String {
    with_query(&format!("/v1/tables/{table}/rows/{}", pct(id)), query)
}

/// One answer of the data API.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// The body as JSON (`Null` when empty or not JSON; see `text`).
    pub body: Value,
    pub headers: HeaderMap,
    /// The body as received.
    pub text: String,
}

impl Reply {
    /// An answer as received: its JSON body parsed from `text`.
    pub fn new(status: StatusCode, headers: HeaderMap, text: String) -> Reply {
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
            text,
        }
    }

    /// The problem `type` (empty when there is none).
    pub fn problem(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a status (printing the body when it differs).
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {}", self.text);
        self
    }

    /// Asserts an RFC 9457 problem answer: the status, `application/problem+json`,
    /// the problem type `urn:coffer:problem:{kind}`, and the members every
    /// problem has.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, kind: &str) -> &Self {
        assert_eq!(
            (self.status.as_u16(), self.problem()),
            (status, format!("urn:coffer:problem:{kind}").as_str()),
            "unexpected answer: {}",
            self.text
        );
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "problem content type, got {:?}: {}",
            self.content_type(),
            self.text
        );
        assert_eq!(self.body["status"], status, "`status` member: {}", self.text);
        assert!(self.body["title"].is_string(), "`title` member: {}", self.text);
        assert!(self.body["detail"].is_string(), "`detail` member: {}", self.text);
        self
    }

    /// The `rows` array of a list answer.
    #[track_caller]
    pub fn rows(&self) -> &Vec<Value> {
        self.body["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("no rows in {}", self.text))
    }

    /// The ids of the `rows` of a list answer, in order.
    #[track_caller]
    pub fn ids(&self) -> Vec<String> {
        self.rows()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A small client of the data API holding one bearer token.
#[derive(Clone)]
pub struct Api {
    pub client: Client,
    pub base: String,
    pub token: String,
}

impl Api {
    /// A client of the server at `base` sending `token`.
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            client: Client::builder().no_proxy().build().unwrap(),
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }

    /// Sends a request: `auth` is the whole `Authorization` header (none when
    /// `None`), `body` raw bytes with `content_type`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let method_name = method.clone();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let route = path.split('?').next().unwrap_or_default();
        if route.starts_with("/v1/") && route != contract::DOCUMENT_PATH {
            let content_type = headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            contract::of(&self.client, &self.base)
                .await
                .check(method_name.as_str(), route, status.as_u16(), content_type, &text)
                .unwrap_or_else(|e| panic!("the answer breaks the OpenAPI document: {e}"));
        }
        Reply::new(status, headers, text)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// A request with the bearer token and an optional JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|b| ("application/json", serde_json::to_vec(b).unwrap()));
        self.send(method, path, Some(&self.bearer()), body).await
    }

    /// A request with the bearer token and a raw body.
    pub async fn raw(&self, method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.send(method, path, Some(&self.bearer()), Some((content_type, body)))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `POST /v1/sql`.
    pub async fn sql(&self, sql: &str, params: &[Value]) -> Reply {
        self.post("/v1/sql", &serde_json::json!({"sql": sql, "params": params}))
            .await
    }

    /// Every row of `table` the token may read, following `next_cursor`
    /// (with the filters in `query`), checking no page repeats a row.
    pub async fn all_rows(&self, table: &str, query: &[(&str, &str)]) -> Vec<Value> {
        let mut rows: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = query.to_vec();
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let page = self.get(&rows_path(table, &q)).await;
            page.expect(200);
            for row in page.rows() {
                assert!(
                    !rows.iter().any(|r| r["id"] == row["id"]),
                    "row {} on two pages of {table}",
                    row["id"]
                );
                rows.push(row.clone());
            }
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => {
                    assert!(
                        page.body.get("next_cursor").is_some(),
                        "a page has `next_cursor` (null at the end): {}",
                        page.text
                    );
                    return rows;
                }
            }
        }
        panic!("paging through {table} never ended");
    }
}

/// One raw HTTP/1.1 request (`head`, sent as is) on a new connection; the
/// status and the body.
pub fn raw_request(addr: &str, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

// ---------------------------------------------------------------------------
// The device flow's verification page (`/device`).

/// Answers a device flow's user code in the signed-in `browser` as a person
/// would after opening the `verification_uri_complete` link: the device page
/// with the code filled in, the code posted, then the consent page answered
/// with `decision` (`allow` ticks every line asked for; anything else denies).
/// Returns the final page.
pub async fn answer_device(browser: &Browser, user_code: &str, decision: &str) -> Page {
    let link = format!(
        "/device?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("user_code", user_code)
            .finish()
    );
    let form_page = browser.visit(&link).await;
    assert_eq!(form_page.status, StatusCode::OK, "device page: {}", form_page.body);
    let csrf = form_page.hidden("csrf_token").expect("device page has a CSRF token");
    let typed = form_page.hidden("user_code").expect("device page has a code field");
    assert_eq!(typed, user_code, "the link fills the code in");
    let consent = browser
        .post("/device", &[("csrf_token", &csrf), ("user_code", &typed)])
        .await;
    assert_eq!(
        consent.status,
        StatusCode::OK,
        "device code {user_code}: {}",
        consent.body
    );
    let request_id = consent
        .hidden("request_id")
        .expect("device consent form has a request id");
    let lines = consent.lines();
    let mut form = vec![("csrf_token", csrf.as_str()), ("request_id", request_id.as_str())];
    // No lines when everything asked for was allowed before.
    if decision == "allow" {
        form.extend(lines.iter().map(|l| ("line", l.as_str())));
    }
    form.push(("decision", decision));
    let done = browser.post("/device/decision", &form).await;
    assert_eq!(done.status, StatusCode::OK, "device decision: {}", done.body);
    done
}

/// Allows a device flow's user code in the signed-in `browser`, granting
/// every line asked for.
pub async fn approve_device(browser: &Browser, user_code: &str) {
    let done = answer_device(browser, user_code, "allow").await;
    assert!(done.h1().contains("Your device is connected"), "{}", done.h1());
}

// ---------------------------------------------------------------------------
// DPoP (RFC 9449).

/// An Ed25519 DPoP key and proofs made with it.
pub struct DpopKey {
    key: jsonwebtoken::EncodingKey,
    jwk: jsonwebtoken::jwk::Jwk,
}

impl DpopKey {
    /// A new random key.
    pub fn new() -> Self {
        // RFC 8410 PKCS#8 v1 encoding of an Ed25519 seed.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend_from_slice(&rand::random::<[u8; 32]>());
        let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).unwrap();
        DpopKey { key, jwk }
    }

    /// A fresh proof for `method url`, with `ath` if given.
    pub fn proof(&self, method: &str, url: &str, ath: Option<&str>) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let mut claims = json!({
            "htm": method,
            "htu": url,
            "iat": chrono::Utc::now().timestamp(),
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
        });
        if let Some(ath) = ath {
            claims["ath"] = ath.into();
        }
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// The `ath` of an access token: base64url SHA-256 of it.
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}
