//! The SDK against a real Coffer server: the server's router served in this
//! process on a loopback port over a temporary data directory (as the
//! benchmark serves it), apps registered through its OAuth server, and the
//! user's side (sign-in, consent, the dashboard) driven over HTTP like a
//! browser.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer::services::{self, Services};
use coffer::web::{self, AppState};
use coffer_oauth::{GrantType, NewApp};
use coffer_sdk::{ChangeEvent, Client, DpopKey, Error, Filter, OAuth, Op, Order, PurgeKind, RowChange, Tokens};
use futures::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;

#[allow(dead_code)]
#[path = "../../../vault-server/coffer/tests/http/codegen/schemas.rs"]
mod schemas;

use schemas::{ContactsPeople, ContactsPeopleInsert, ContactsPeoplePatch, TasksLists};

coffer_sdk::tables!(ContactsPeople, TasksLists);

const PEOPLE: &str = "contacts.people";
const PASSWORD: &str = "correct horse battery staple";
/// The redirect URI the desktop apps register: any port of the loopback
/// address is accepted for it.
const LOOPBACK_REDIRECT: &str = "http://127.0.0.1/callback";
/// How long one step of a test may wait for the stream.
const STEP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The server, its users and apps.

/// A Coffer server serving on a loopback port of this process.
struct Server {
    base: String,
    services: Services,
    http: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (services, _) = services::open(dir.path(), None, &base, Default::default(), Default::default())
            .await
            .unwrap();
        services.oauth.load_revocation_view().await.unwrap();
        let app = web::router(AppState::new(services.clone(), &base));
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Server {
            base,
            services,
            http,
            _dir: dir,
        }
    }

    /// Registers a public app; its client id.
    async fn app(&self, name: &str, grants: &[GrantType], redirects: &[&str]) -> String {
        let new = NewApp::public(name, redirects.iter().map(|r| (*r).to_owned()).collect())
            .with_grant_types(grants.iter().copied());
        let registered = self.services.oauth.register_app(new).await.unwrap();
        registered.app.client_id.as_str().to_owned()
    }

    /// A desktop app (authorization code with a loopback redirect, refresh).
    async fn desktop_app(&self, name: &str) -> String {
        self.app(
            name,
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            &[LOOPBACK_REDIRECT],
        )
        .await
    }

    /// A user with an account, signed in in a browser whose requests come
    /// from `127.0.0.n` (each user has its own sign-in budget).
    async fn user(&self, email: &str, n: u8) -> Browser {
        coffer::create_account(&self.services, email, PASSWORD).await.unwrap();
        let browser = Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .build()
                .unwrap(),
            base: self.base.clone(),
        };
        let form = browser.get("/sign-in").await;
        let csrf = form.hidden("csrf_token").expect("a CSRF token on the sign-in page");
        let answer = browser
            .post(
                "/sign-in",
                &[("csrf_token", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "sign-in: {}", answer.body);
        browser
    }
}

/// A page as received.
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The values of every `<input name="NAME" value="…">`.
    fn inputs(&self, name: &str) -> Vec<String> {
        inputs(&self.body, name)
    }

    fn hidden(&self, name: &str) -> Option<String> {
        self.inputs(name).into_iter().next()
    }
}

fn inputs(html: &str, name: &str) -> Vec<String> {
    let needle = format!("name=\"{name}\"");
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            if !tag.contains(&needle) {
                return None;
            }
            let v = tag.split("value=\"").nth(1)?;
            Some(coffer_test_support::html::unescape(&v[..v.find('"')?]))
        })
        .collect()
}

/// A signed-in user agent.
struct Browser {
    client: reqwest::Client,
    base: String,
}

impl Browser {
    async fn read(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: response.text().await.unwrap(),
        }
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    async fn get(&self, path_or_url: &str) -> Page {
        Self::read(self.client.get(self.absolute(path_or_url)).send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
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
        Self::read(response).await
    }

    /// Opens an authorization URL and allows every line on the consent
    /// page; the `Location` the server sends the browser back to.
    async fn consent(&self, authorize_url: &str) -> String {
        let page = self.get(authorize_url).await;
        if page.status == StatusCode::SEE_OTHER {
            // Everything asked for was allowed before: straight back.
            return page.location.expect("a redirect back to the app");
        }
        assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
        let csrf = page.hidden("csrf_token").expect("a CSRF token on the consent page");
        let request_id = page.hidden("request_id").expect("a request id on the consent page");
        let lines = page.inputs("line");
        assert!(!lines.is_empty(), "consent lines: {}", page.body);
        let mut form = vec![("csrf_token", csrf.as_str()), ("request_id", request_id.as_str())];
        form.extend(lines.iter().map(|l| ("line", l.as_str())));
        form.push(("decision", "allow"));
        let answer = self.post("/oauth/authorize", &form).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "consent answer: {}", answer.body);
        answer.location.expect("a redirect back to the app")
    }

    /// Allows a device flow's user code, as typed on the device page.
    async fn allow_device(&self, user_code: &str) {
        let link = format!("/device?user_code={}", user_code);
        let form_page = self.get(&link).await;
        assert_eq!(form_page.status, StatusCode::OK, "device page: {}", form_page.body);
        let csrf = form_page.hidden("csrf_token").unwrap();
        let consent = self
            .post("/device", &[("csrf_token", &csrf), ("user_code", user_code)])
            .await;
        assert_eq!(consent.status, StatusCode::OK, "device code: {}", consent.body);
        let request_id = consent.hidden("request_id").unwrap();
        let lines = consent.inputs("line");
        let mut form = vec![("csrf_token", csrf.as_str()), ("request_id", request_id.as_str())];
        form.extend(lines.iter().map(|l| ("line", l.as_str())));
        form.push(("decision", "allow"));
        let done = self.post("/device/decision", &form).await;
        assert_eq!(done.status, StatusCode::OK, "device decision: {}", done.body);
    }

    /// The dashboard's CSRF token and the grant id of the app `app_name`.
    async fn dashboard_grant(&self, app_name: &str) -> (String, String) {
        let dashboard = self.get("/dashboard").await;
        assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.body);
        let heading = format!(">{app_name}</h3>");
        let card = dashboard
            .body
            .split("<li class=\"app-card\">")
            .skip(1)
            .find(|card| card.contains(&heading))
            .unwrap_or_else(|| panic!("no dashboard card for {app_name}: {}", dashboard.body));
        let grant_id = inputs(card, "grant_id").into_iter().next().expect("a grant id");
        (dashboard.hidden("csrf_token").unwrap(), grant_id)
    }

    /// "Change access" on the dashboard: only `lines` stay.
    async fn narrow(&self, app_name: &str, lines: &[&str]) {
        let (csrf, grant_id) = self.dashboard_grant(app_name).await;
        let mut form = vec![("csrf_token", csrf.as_str()), ("grant_id", grant_id.as_str())];
        form.extend(lines.iter().map(|l| ("line", *l)));
        let answer = self.post("/dashboard/access", &form).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "change access: {}", answer.body);
    }

    /// "Revoke access" on the dashboard, confirmed.
    async fn revoke(&self, app_name: &str) {
        let (csrf, grant_id) = self.dashboard_grant(app_name).await;
        let answer = self
            .post(
                "/dashboard/revoke",
                &[("csrf_token", &csrf), ("grant_id", &grant_id), ("confirm", "yes")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "revoke: {}", answer.body);
    }
}

/// Runs the SDK's loopback flow for `client_id` with the user of `browser`
/// allowing `scope`: the SDK's listener receives the browser's redirect.
async fn loopback_tokens(oauth: &OAuth, browser: &Browser, scope: &str) -> Tokens {
    let flow = oauth.loopback(Some(scope)).await.unwrap();
    let location = browser.consent(flow.authorize_url()).await;
    assert!(
        location.starts_with(&format!("{}?", flow.redirect_uri())),
        "back to the loopback listener: {location}"
    );
    let waiting = tokio::spawn(flow.wait());
    // The browser follows the redirect to the app's listener.
    let landed = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&location)
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status(), StatusCode::OK);
    tokio::time::timeout(STEP, waiting).await.unwrap().unwrap().unwrap()
}

/// An app `name` allowed `scope` by the user of `browser`, as an SDK client
/// that can refresh, sending its requests to `via` (the server, or a proxy
/// in front of it).
async fn app_client(server: &Server, via: &str, browser: &Browser, name: &str, scope: &str) -> Client {
    let client_id = server.desktop_app(name).await;
    let tokens = loopback_tokens(&OAuth::new(&server.base, &client_id).unwrap(), browser, scope).await;
    Client::with_tokens(&OAuth::new(via, &client_id).unwrap(), tokens).unwrap()
}

// ---------------------------------------------------------------------------
// OAuth.

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_gives_tokens_and_a_refresh_token_works_once() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 11).await;
    let client_id = server
        .app("My script", &[GrantType::DeviceCode, GrantType::RefreshToken], &[])
        .await;
    let oauth = OAuth::new(&server.base, &client_id).unwrap();
    let device = oauth
        .device_authorization(Some("contacts.people:read+create"))
        .await
        .unwrap();
    assert!(
        device
            .verification_uri_complete()
            .starts_with(&format!("{}/device?user_code=", server.base)),
        "{device:?}"
    );
    let user_code = device.user_code().to_owned();
    let waiting = tokio::spawn(async move { device.wait().await });
    // The user allows the code in the browser while the SDK polls.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the device flow waits for the user");
    ada.allow_device(&user_code).await;
    let tokens = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the device flow ends once the code is allowed")
        .unwrap()
        .unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.scope.as_deref(), Some("contacts.people:read+create"));
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(600)));
    assert!(
        tokens.to_json()["authorization_details"].is_array(),
        "{:?}",
        tokens.to_json()
    );
    let first_refresh = tokens.refresh_token.clone().expect("a refresh token");

    // The token works on the data API.
    let client = Client::with_tokens(&oauth, tokens.clone()).unwrap();
    let people = client.table::<ContactsPeople>();
    people
        .insert(&ContactsPeopleInsert::new("Ada Lovelace".into()))
        .await
        .unwrap();

    // Refresh rotates: a new access token and a new refresh token; the
    // client holds them.
    let renewed = client.refresh().await.unwrap();
    assert_ne!(renewed.access_token, tokens.access_token);
    let second_refresh = renewed.refresh_token.clone().expect("a new refresh token");
    assert_ne!(second_refresh, first_refresh, "rotated");
    assert_eq!(
        client.tokens().await.refresh_token.as_deref(),
        Some(second_refresh.as_str())
    );
    assert_eq!(people.query().all().await.unwrap().len(), 1);

    // The new refresh token works once; the used ones are refused, and a
    // replay revokes the tokens issued after it too.
    let third = oauth.refresh(&second_refresh, None).await.unwrap();
    assert_eq!(third.scope.as_deref(), Some("contacts.people:read+create"));
    for used in [&first_refresh, &second_refresh, third.refresh_token.as_ref().unwrap()] {
        match oauth.refresh(used, None).await {
            Err(Error::OAuth { error, .. }) => assert_eq!(error, "invalid_grant"),
            other => panic!("a used (or revoked) refresh token must be refused: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_flow_with_pkce_gives_tokens_and_checks_the_state() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 12).await;
    let client_id = server.desktop_app("Desktop notes").await;
    let oauth = OAuth::new(&server.base, &client_id).unwrap();

    let flow = oauth.loopback(Some("contacts.people:read")).await.unwrap();
    let authorize = url::Url::parse(flow.authorize_url()).unwrap();
    let param = |name: &str| {
        authorize
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("code_challenge").is_some() && param("state").is_some());
    assert_eq!(param("redirect_uri").as_deref(), Some(flow.redirect_uri()));
    assert!(
        flow.redirect_uri().starts_with("http://127.0.0.1:"),
        "{}",
        flow.redirect_uri()
    );
    let tokens = loopback_tokens(&oauth, &ada, "contacts.people:read").await;
    assert_eq!(tokens.scope.as_deref(), Some("contacts.people:read"));
    assert!(tokens.refresh_token.is_some());
    let client = Client::with_tokens(&oauth, tokens).unwrap();
    assert!(client.table::<ContactsPeople>().query().all().await.unwrap().is_empty());

    // An answer whose state is not the request's is refused, and no code
    // is exchanged.
    let flow = oauth.loopback(Some("contacts.people:read")).await.unwrap();
    let location = ada.consent(flow.authorize_url()).await;
    let forged = location.replace("state=", "state=forged");
    let waiting = tokio::spawn(flow.wait());
    let landed = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status(), StatusCode::OK);
    match tokio::time::timeout(STEP, waiting).await.unwrap().unwrap() {
        Err(Error::StateMismatch) => {}
        other => panic!("a forged state must be refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_binds_the_tokens_to_the_apps_key() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 17).await;
    let client_id = server.desktop_app("Bound app").await;
    let key = DpopKey::generate();
    let oauth = OAuth::new(&server.base, &client_id).unwrap().with_dpop(key.clone());
    let tokens = loopback_tokens(&oauth, &ada, "contacts.people:read+create").await;
    assert_eq!(tokens.token_type, "DPoP");
    let client = Client::with_tokens(&oauth, tokens.clone()).unwrap();
    let people = client.table::<ContactsPeople>();
    people.insert(&person("ada", "Ada Lovelace", "Ada")).await.unwrap();
    assert_eq!(people.query().all().await.unwrap().len(), 1);

    // The same token without the key's proofs is refused.
    let copied = Client::new(&server.base, &tokens.access_token).unwrap();
    let refused = copied.table::<ContactsPeople>().query().page().await.unwrap_err();
    let problem = refused.problem().unwrap_or_else(|| panic!("{refused}"));
    assert_eq!(
        (problem.status, problem.reason.as_deref()),
        (401, Some("dpop_required"))
    );
    // Another key's proofs are refused too.
    let thief = OAuth::new(&server.base, &client_id)
        .unwrap()
        .with_dpop(DpopKey::generate());
    let stolen = Client::with_tokens(&thief, tokens.clone()).unwrap();
    let refused = stolen.table::<ContactsPeople>().get("ada").await.unwrap_err();
    assert_eq!(refused.problem().map(|p| p.status), Some(401), "{refused}");
    // A refresh token bound to the key cannot be used without it either.
    let refresh = tokens.refresh_token.clone().unwrap();
    match OAuth::new(&server.base, &client_id)
        .unwrap()
        .refresh(&refresh, None)
        .await
    {
        Err(Error::OAuth { error, .. }) => assert_eq!(error, "invalid_dpop_proof"),
        other => panic!("a bound refresh token needs a proof: {other:?}"),
    }

    // With the key: refresh stays bound, and the stream works.
    let renewed = client.refresh().await.unwrap();
    assert_eq!(renewed.token_type, "DPoP");
    let mut stream = client.changes().tables(&[PEOPLE]).stream();
    assert_eq!(
        changes_until_up_to_date(&mut stream).await,
        [(Op::Insert, "ada".to_owned())]
    );
    assert_eq!(
        DpopKey::from_secret_bytes(&key.secret_bytes()).unwrap().thumbprint(),
        key.thumbprint()
    );
}

// ---------------------------------------------------------------------------
// Typed tables and SQL.

/// `ContactsPeople` with only the columns a `select` asks for.
#[derive(Debug, Deserialize, PartialEq)]
struct NameOnly {
    id: String,
    display_name: String,
}

fn person(id: &str, display_name: &str, given_name: &str) -> ContactsPeopleInsert {
    let mut row = ContactsPeopleInsert::new(display_name.to_owned());
    row.id = Some(id.to_owned());
    row.given_name = Some(given_name.to_owned());
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_rows_query_insert_update_with_if_seq_and_sql() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 13).await;
    let client = app_client(
        &server,
        &server.base,
        &ada,
        "Address book",
        "contacts.people:read+create+update+delete",
    )
    .await;
    let people = client.table::<ContactsPeople>();

    // Insert one, then a batch; rows come back typed.
    let first = people.insert(&person("ada", "Ada Lovelace", "Ada")).await.unwrap();
    assert_eq!(
        (first.id.as_str(), first.display_name.as_str()),
        ("ada", "Ada Lovelace")
    );
    assert_eq!(first.given_name.as_deref(), Some("Ada"));
    let batch = people
        .insert_many(&[
            person("grace", "Grace Hopper", "Grace"),
            person("alan", "Alan Turing", "Alan"),
            person("jr", "Grace Jr", "Grace, Jr"),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 3);

    // Filters, order, limit and cursor pages.
    let query = people
        .query()
        .filter(
            "given_name",
            Filter::In(vec!["Ada".into(), "Grace".into(), "Grace, Jr".into()]),
        )
        .order("display_name", Order::Desc)
        .limit(2);
    let page = query.page().await.unwrap();
    let names: Vec<&str> = page.rows.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(names, ["Grace Jr", "Grace Hopper"]);
    let cursor = page.next_cursor.expect("a second page");
    let next = query.clone().cursor(&cursor).page().await.unwrap();
    let names: Vec<&str> = next.rows.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(names, ["Ada Lovelace"]);
    assert!(next.next_cursor.is_none());
    assert_eq!(query.all().await.unwrap().len(), 3, "all() follows the cursors");
    let not_a: Vec<String> = people
        .query()
        .filter("given_name", Filter::Like("A*".into()).negated())
        .order("id", Order::Asc)
        .all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(not_a, ["grace", "jr"]);
    let selected: Vec<NameOnly> = people
        .query()
        .eq("id", "alan")
        .select(&["display_name"])
        .all_as()
        .await
        .unwrap();
    assert_eq!(
        selected,
        [NameOnly {
            id: "alan".into(),
            display_name: "Alan Turing".into()
        }]
    );

    // Update with if_seq: the right version changes the row…
    let patch = ContactsPeoplePatch {
        family_name: Some(Some("Lovelace".into())),
        ..Default::default()
    };
    let updated = people.update_if_seq("ada", &patch, first._seq).await.unwrap();
    assert_eq!(updated.family_name.as_deref(), Some("Lovelace"));
    assert!(updated._seq > first._seq);
    // …a stale one is a 409 carrying the row as it is now.
    let stale = ContactsPeoplePatch {
        email: Some(Some("ada@example.org".into())),
        ..Default::default()
    };
    let refused = people.update_if_seq("ada", &stale, first._seq).await.unwrap_err();
    assert_eq!(refused.problem().map(|p| p.status), Some(409), "{refused}");
    let current: ContactsPeople = refused.conflict_row().unwrap().unwrap().expect("the current row");
    assert_eq!(current, updated);
    assert_eq!(people.get("ada").await.unwrap().email, None, "nothing written");

    // A batch update: all or nothing.
    let changed = people
        .update_many(&[
            RowChange::new(
                "ada",
                ContactsPeoplePatch {
                    nickname: Some(Some("Countess".into())),
                    ..Default::default()
                },
            )
            .if_seq(updated._seq),
            RowChange::new(
                "alan",
                ContactsPeoplePatch {
                    family_name: Some(Some("Turing".into())),
                    ..Default::default()
                },
            ),
        ])
        .await
        .unwrap();
    let ids: Vec<&str> = changed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ada", "alan"]);
    assert_eq!(changed[0].nickname.as_deref(), Some("Countess"));
    let stale_batch = people
        .update_many(&[RowChange::new("alan", json!({"nickname": "Prof"})).if_seq(1)])
        .await
        .unwrap_err();
    assert_eq!(
        stale_batch.conflict_current().map(|c| c.is_some()),
        Some(true),
        "{stale_batch}"
    );

    // Delete with a stale if_seq is refused, with the right one done.
    let alan = people.get("alan").await.unwrap();
    assert!(people.delete_if_seq("alan", alan._seq - 1).await.is_err());
    people.delete_if_seq("alan", alan._seq).await.unwrap();
    let gone = people.get("alan").await.unwrap_err();
    assert_eq!(gone.problem().and_then(|p| p.kind()), Some("row-not-found"), "{gone}");

    // SQL with parameters, read back as rows or as typed values.
    let answer = client
        .sql(
            "SELECT display_name, family_name FROM contacts.people WHERE given_name = $1 ORDER BY id",
            &[json!("Ada")],
        )
        .await
        .unwrap();
    let names: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["display_name", "family_name"]);
    assert_eq!(answer.rows, [[json!("Ada Lovelace"), json!("Lovelace")]]);
    #[derive(Deserialize)]
    struct Named {
        display_name: String,
    }
    let typed: Vec<Named> = answer.rows_as().unwrap();
    assert_eq!(typed[0].display_name, "Ada Lovelace");
    let write = client
        .sql(
            "UPDATE contacts.people SET email = $1 WHERE id = $2",
            &[json!("grace@navy.example"), json!("grace")],
        )
        .await
        .unwrap();
    assert_eq!(write.count(), Some(1));
    assert_eq!(
        people.get("grace").await.unwrap().email.as_deref(),
        Some("grace@navy.example")
    );
    let bad = client.sql("SELEC nothing", &[]).await.unwrap_err();
    assert_eq!(bad.problem().and_then(|p| p.kind()), Some("invalid-sql"), "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_names_the_missing_right_in_scope_syntax() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 14).await;
    let reader = app_client(&server, &server.base, &ada, "Reader", "contacts.people:read").await;
    let people = reader.table::<ContactsPeople>();
    let refused = people
        .insert(&ContactsPeopleInsert::new("Ada Lovelace".into()))
        .await
        .unwrap_err();
    let problem = refused.problem().unwrap_or_else(|| panic!("a problem: {refused}"));
    assert_eq!(problem.status, 403);
    assert_eq!(problem.type_uri, "urn:coffer:problem:missing-right");
    assert!(!problem.detail.is_empty());
    assert_eq!(refused.missing_right(), Some("contacts.people:create"));
    assert!(refused.to_string().contains("contacts.people:create"), "{refused}");

    // A table outside the grant does not exist for the token.
    let lists = reader.table::<TasksLists>().query().page().await.unwrap_err();
    assert_eq!(lists.problem().map(|p| p.status), Some(404));
    assert_eq!(lists.problem().and_then(|p| p.kind()), Some("table-not-found"));
    assert_eq!(lists.missing_right(), None);
}

// ---------------------------------------------------------------------------
// The change stream.

/// A TCP proxy in front of the server whose open connections can be cut.
struct Proxy {
    base: String,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let target: SocketAddr = target.trim_start_matches("http://").parse().unwrap();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let open = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock().unwrap().push(task);
            }
        });
        Proxy {
            base,
            connections,
            accept,
        }
    }

    /// Closes every connection open now (both sides).
    fn cut(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The next event of `stream` within [`STEP`].
async fn next_event(stream: &mut coffer_sdk::ChangeStream) -> ChangeEvent {
    tokio::time::timeout(STEP, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .unwrap_or_else(|e| panic!("a stream error: {e}"))
}

/// The changes of `stream` until the next `up-to-date`, as (op, id).
async fn changes_until_up_to_date(stream: &mut coffer_sdk::ChangeStream) -> Vec<(Op, String)> {
    let mut seen = Vec::new();
    loop {
        match next_event(stream).await {
            ChangeEvent::Change { change, .. } => seen.push((change.op, change.id)),
            ChangeEvent::UpToDate { .. } => return seen,
            other => panic!("unexpected event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_receives_another_apps_write_and_resumes_after_a_drop() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 15).await;
    let proxy = Proxy::start(&server.base).await;
    let follower = app_client(&server, &proxy.base, &ada, "Follower", "contacts.people:read").await;
    let writer = app_client(
        &server,
        &server.base,
        &ada,
        "Writer",
        "contacts.people:read+create+update",
    )
    .await;
    let writer_people = writer.table::<ContactsPeople>();
    writer_people
        .insert(&person("ada", "Ada Lovelace", "Ada"))
        .await
        .unwrap();

    // The load first, then up to date.
    let mut stream = follower.changes().tables(&[PEOPLE]).stream();
    assert_eq!(
        changes_until_up_to_date(&mut stream).await,
        [(Op::Insert, "ada".to_owned())]
    );

    // Another app's write arrives, typed.
    writer_people
        .insert(&person("grace", "Grace Hopper", "Grace"))
        .await
        .unwrap();
    let (change, after_grace) = match next_event(&mut stream).await {
        ChangeEvent::Change { change, cursor } => (change, cursor),
        other => panic!("expected grace's insert: {other:?}"),
    };
    let row: ContactsPeople = change.row_as().unwrap().expect("a row");
    assert_eq!((change.op, row.display_name.as_str()), (Op::Insert, "Grace Hopper"));
    assert_eq!(stream.cursor().as_deref(), Some(after_grace.as_str()));
    assert!(matches!(next_event(&mut stream).await, ChangeEvent::UpToDate { .. }));

    // The connection drops; writes made meanwhile come after the
    // reconnection, once each, and nothing sent before comes again.
    proxy.cut();
    writer_people
        .update("grace", &json!({"email": "grace@navy.example"}))
        .await
        .unwrap();
    writer_people
        .insert(&person("alan", "Alan Turing", "Alan"))
        .await
        .unwrap();
    assert_eq!(
        changes_until_up_to_date(&mut stream).await,
        [(Op::Update, "grace".to_owned()), (Op::Insert, "alan".to_owned())]
    );

    // A new stream from a stored cursor resumes there.
    drop(stream);
    let mut resumed = follower.changes().tables(&[PEOPLE]).since(&after_grace).stream();
    assert_eq!(
        changes_until_up_to_date(&mut resumed).await,
        [(Op::Update, "grace".to_owned()), (Op::Insert, "alan".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_refreshes_on_grant_changed_then_purges_and_ends_on_revocation() {
    let server = Server::start().await;
    let ada = server.user("ada@example.org", 16).await;
    let writer = app_client(
        &server,
        &server.base,
        &ada,
        "Writer",
        "contacts.people:read+create tasks.lists:read+create",
    )
    .await;
    writer
        .table::<ContactsPeople>()
        .insert(&person("ada", "Ada Lovelace", "Ada"))
        .await
        .unwrap();
    writer
        .table_named::<serde_json::Value>("tasks.lists")
        .insert(&json!({"id": "home", "name": "Home"}))
        .await
        .unwrap();
    let reader = app_client(
        &server,
        &server.base,
        &ada,
        "Reader",
        "contacts.people:read tasks.lists:read",
    )
    .await;
    let refresh_before = reader.tokens().await.refresh_token;
    let mut stream = reader.changes().stream();
    assert_eq!(changes_until_up_to_date(&mut stream).await.len(), 2);

    // The user narrows the grant: the stream says so, refreshes the token
    // and reconnects, and the server tells what to purge.
    ada.narrow("Reader", &["contacts.people:read"]).await;
    // A write wakes the stream, which checks its token again at once
    // (otherwise it would at the next heartbeat).
    writer
        .table::<ContactsPeople>()
        .insert(&person("alan", "Alan Turing", "Alan"))
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut stream).await, ChangeEvent::GrantChanged(_)),
        "grant-changed first"
    );
    assert!(matches!(next_event(&mut stream).await, ChangeEvent::TokenRefreshed));
    assert_ne!(reader.tokens().await.refresh_token, refresh_before, "rotated");
    match next_event(&mut stream).await {
        ChangeEvent::Purge(entries) => {
            assert_eq!(entries.len(), 1, "{entries:?}");
            assert_eq!(
                (entries[0].table.as_str(), entries[0].drop),
                ("tasks.lists", PurgeKind::Table)
            );
        }
        other => panic!("expected a purge: {other:?}"),
    }
    // The stream goes on with what is still granted.
    let mut up_to_date = false;
    while !up_to_date {
        match next_event(&mut stream).await {
            ChangeEvent::UpToDate { .. } => up_to_date = true,
            ChangeEvent::Change { change, .. } => assert_eq!(change.table, PEOPLE),
            other => panic!("unexpected event: {other:?}"),
        }
    }
    writer
        .table::<ContactsPeople>()
        .insert(&person("grace", "Grace Hopper", "Grace"))
        .await
        .unwrap();
    assert_eq!(
        changes_until_up_to_date(&mut stream).await,
        [(Op::Insert, "grace".to_owned())]
    );

    // Revoked: the stream says so and ends.
    ada.revoke("Reader").await;
    writer
        .table::<ContactsPeople>()
        .insert(&person("jr", "Grace Jr", "Grace"))
        .await
        .unwrap();
    assert!(matches!(next_event(&mut stream).await, ChangeEvent::GrantRevoked(_)));
    assert!(
        tokio::time::timeout(STEP, stream.next()).await.unwrap().is_none(),
        "the stream ends"
    );
}

// ---------------------------------------------------------------------------
// The stream's protocol against a scripted server: what a real one does
// only after ten minutes (an access token expiring) or never on demand.

/// What the scripted server saw: each stream request's `Authorization` and
/// `Last-Event-ID`, and each refresh token presented.
#[derive(Default)]
struct Seen {
    streams: Vec<(String, Option<String>)>,
    refreshes: Vec<String>,
}

/// A server whose first stream ends with `token-expired` after one change,
/// whose token endpoint rotates `r1` into `r2`, whose second stream (with
/// the new token) sends one more change, and which answers `410` for the
/// cursor `stale`.
async fn scripted_server(seen: Arc<Mutex<Seen>>) -> (String, JoinHandle<()>) {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    use std::collections::HashMap;

    let sse = |body: &str| ([("content-type", "text/event-stream")], body.to_owned()).into_response();
    let change = |id: &str, seq: i64| {
        format!(
            "data: {{\"op\":\"insert\",\"table\":\"contacts.people\",\"id\":\"{id}\",\"seq\":{seq},\"row\":{{\"id\":\"{id}\"}}}}\n"
        )
    };
    let streams = seen.clone();
    let stream = move |headers: HeaderMap| {
        let seen = streams.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let auth = header("authorization").unwrap_or_default();
            let last = header("last-event-id");
            seen.lock().unwrap().streams.push((auth.clone(), last.clone()));
            if last.as_deref() == Some("stale") {
                return (
                    StatusCode::GONE,
                    [("content-type", "application/problem+json")],
                    r#"{"type":"urn:coffer:problem:resync-required","title":"Resync required","status":410,"detail":"load again"}"#,
                )
                    .into_response();
            }
            match auth.as_str() {
                "Bearer first" => sse(&format!(
                    ": heartbeat\n\nevent: change\nid: c1\n{}\nevent: token-expired\nid: c1\ndata: {{\"reason\":\"expired\",\"detail\":\"refresh\"}}\n\n",
                    change("ada", 1)
                )),
                "Bearer second" => sse(&format!(
                    "event: change\nid: c2\n{}\nevent: up-to-date\nid: c2\ndata: {{}}\n\n",
                    change("grace", 2)
                )),
                _ => (StatusCode::UNAUTHORIZED, "{}").into_response(),
            }
        }
    };
    let refreshes = seen.clone();
    let token = move |axum::Form(form): axum::Form<HashMap<String, String>>| {
        let seen = refreshes.clone();
        async move {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            seen.lock().unwrap().refreshes.push(presented.clone());
            if presented == "r1" {
                (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    r#"{"access_token":"second","token_type":"Bearer","expires_in":600,"refresh_token":"r2"}"#,
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"error":"invalid_grant"}"#,
                )
            }
        }
    };
    let app = axum::Router::new()
        .route("/v1/changes/stream", axum::routing::get(stream))
        .route("/oauth/token", axum::routing::post(token));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_refreshes_on_token_expired_and_resumes_from_its_last_id() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (base, server) = scripted_server(seen.clone()).await;
    let oauth = OAuth::new(&base, "script").unwrap();
    let mut tokens = Tokens::from_access_token("first");
    tokens.refresh_token = Some("r1".into());
    let client = Client::with_tokens(&oauth, tokens).unwrap();

    let mut stream = client.changes().stream();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(match next_event(&mut stream).await {
            ChangeEvent::Change { change, cursor } => format!("change {} {cursor}", change.id),
            ChangeEvent::TokenRefreshed => "refreshed".to_owned(),
            ChangeEvent::UpToDate { cursor } => format!("up-to-date {}", cursor.unwrap_or_default()),
            other => panic!("unexpected event: {other:?}"),
        });
    }
    assert_eq!(
        events,
        ["change ada c1", "refreshed", "change grace c2", "up-to-date c2"]
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.streams,
            [
                ("Bearer first".to_owned(), None),
                ("Bearer second".to_owned(), Some("c1".to_owned()))
            ],
            "reconnected with the new token from the last id"
        );
        assert_eq!(seen.refreshes, ["r1"]);
    }
    assert_eq!(client.tokens().await.refresh_token.as_deref(), Some("r2"), "rotated");
    drop(stream);

    // A cursor the server no longer keeps: resync-required, and the end.
    let mut stale = client.changes().since("stale").stream();
    assert!(matches!(next_event(&mut stale).await, ChangeEvent::ResyncRequired(_)));
    assert!(tokio::time::timeout(STEP, stale.next()).await.unwrap().is_none());
    server.abort();
}
