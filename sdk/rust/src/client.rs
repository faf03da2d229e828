//! [`Client`]: the data API of one vault, with the tokens of one app.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::auth::{OAuth, Tokens};
use crate::changes::ChangesRequest;
use crate::dpop::DpopKey;
use crate::error::{Error, Problem, Result};
use crate::table::{Table, TableClient};

/// How long one data API request may take unless set otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The server URL without a trailing `/`, checked to be http(s).
pub(crate) fn server_url(server: &str) -> Result<String> {
    let server = server.trim().trim_end_matches('/').to_owned();
    let parsed =
        url::Url::parse(&server).map_err(|e| Error::InvalidArgument(format!("{server:?} is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::InvalidArgument(format!(
            "{server:?} is not an http or https URL"
        )));
    }
    Ok(server)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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
pub(crate) fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", pct(k), pct(v))).collect();
    format!("{path}?{}", q.join("&"))
}

/// A client of a vault's data API (`/v1`) holding one app's tokens.
///
/// Cheap to clone: clones share the tokens, so a refresh by one (after a
/// `401 expired`, or a stream's `token-expired`) serves all. With a refresh
/// token and an [`OAuth`] client, an expired access token is refreshed and
/// the request sent again, once; read the rotated tokens with
/// [`Client::tokens`] to store them.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    tokens: Mutex<Tokens>,
    oauth: Option<OAuth>,
    dpop: Option<DpopKey>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `server` sending `access_token` (no
    /// refresh: when it expires, requests fail with `401`).
    pub fn new(server: &str, access_token: &str) -> Result<Client> {
        Self::build(server, Tokens::from_access_token(access_token), None)
    }

    /// A client holding `tokens` from `oauth` (a flow or a refresh): it
    /// refreshes the access token when the server says it expired, if
    /// `tokens` has a refresh token.
    pub fn with_tokens(oauth: &OAuth, tokens: Tokens) -> Result<Client> {
        Self::build(oauth.server(), tokens, Some(oauth.clone()))
    }

    fn build(server: &str, tokens: Tokens, oauth: Option<OAuth>) -> Result<Client> {
        let base = server_url(server)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let dpop = oauth.as_ref().and_then(|o| o.dpop_key().cloned());
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                tokens: Mutex::new(tokens),
                oauth,
                dpop,
            }),
        })
    }

    /// The server's URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// The tokens held now (after any refresh: store the new refresh
    /// token, the old one is used up).
    pub async fn tokens(&self) -> Tokens {
        self.inner.tokens.lock().await.clone()
    }

    /// The access token held now.
    pub async fn access_token(&self) -> String {
        self.inner.tokens.lock().await.access_token.clone()
    }

    /// Whether this client can refresh its access token.
    pub async fn can_refresh(&self) -> bool {
        self.inner.oauth.is_some() && self.inner.tokens.lock().await.refresh_token.is_some()
    }

    /// Refreshes the access token now with the refresh token held (which
    /// is used up and replaced by the new one). Returns the new tokens.
    pub async fn refresh(&self) -> Result<Tokens> {
        let mut tokens = self.inner.tokens.lock().await;
        self.refresh_locked(&mut tokens).await
    }

    async fn refresh_locked(&self, tokens: &mut Tokens) -> Result<Tokens> {
        let oauth = self.inner.oauth.as_ref().ok_or(Error::NoRefreshToken)?;
        let refresh = tokens.refresh_token.clone().ok_or(Error::NoRefreshToken)?;
        let mut new = oauth.refresh(&refresh, None).await?;
        // A server may keep the refresh token as it is (Coffer rotates it).
        if new.refresh_token.is_none() {
            new.refresh_token = Some(refresh);
        }
        *tokens = new.clone();
        Ok(new)
    }

    /// Refreshes unless another request already replaced `stale` (the
    /// access token that was refused). `Ok(false)` when no refresh is
    /// possible.
    pub(crate) async fn refresh_if_stale(&self, stale: &str) -> Result<bool> {
        let mut tokens = self.inner.tokens.lock().await;
        if tokens.access_token != stale {
            return Ok(true);
        }
        if self.inner.oauth.is_none() || tokens.refresh_token.is_none() {
            return Ok(false);
        }
        self.refresh_locked(&mut tokens).await?;
        Ok(true)
    }

    /// The `Authorization` header (and the `DPoP` proof, for a token bound
    /// to the client's key) of a request `method` to `url` with `tokens`.
    pub(crate) fn credentials(&self, method: &Method, url: &str, tokens: &Tokens) -> Vec<(&'static str, String)> {
        match &self.inner.dpop {
            Some(key) if tokens.token_type.eq_ignore_ascii_case("DPoP") => vec![
                ("authorization", format!("DPoP {}", tokens.access_token)),
                ("dpop", key.proof(method.as_str(), url, Some(&tokens.access_token))),
            ],
            _ => vec![("authorization", format!("Bearer {}", tokens.access_token))],
        }
    }

    /// Sends one request to the data API (`path` with its query) with the
    /// access token; refreshes and sends again once when the token expired
    /// or the grant changed. The status and body of a successful answer.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, Vec<u8>)> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let mut refreshed = false;
        loop {
            let tokens = self.tokens().await;
            let token = tokens.access_token.clone();
            let url = format!("{}{path}", self.inner.base);
            let mut request = self.inner.http.request(method.clone(), &url);
            for (name, value) in self.credentials(&method, &url, &tokens) {
                request = request.header(name, value);
            }
            if let Some(bytes) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let response = request.send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok((status, response.bytes().await?.to_vec()));
            }
            let problem = read_problem(response).await;
            let renewable = matches!(problem.reason.as_deref(), Some("expired" | "grant_changed"));
            if status == StatusCode::UNAUTHORIZED && renewable && !refreshed && self.refresh_if_stale(&token).await? {
                refreshed = true;
                continue;
            }
            return Err(Error::Problem(Box::new(problem)));
        }
    }

    /// Sends a request and reads the answer's JSON as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let (_, bytes) = self.send(method, path, body).await?;
        decode(&bytes)
    }

    /// The rows API of the table `T` (a generated row type, see [`Table`]).
    pub fn table<T: Table>(&self) -> TableClient<T> {
        TableClient::new(self.clone(), T::NAME)
    }

    /// The rows API of the table named `name` (`schema.table`), its rows
    /// read as `R` (any serde type, e.g. [`serde_json::Value`]).
    pub fn table_named<R: DeserializeOwned>(&self, name: &str) -> TableClient<R> {
        TableClient::new(self.clone(), name)
    }

    /// Runs one SQL statement on `/v1/sql`; `$1`, `$2`, … are bound from
    /// `params` (never spliced into the text).
    pub async fn sql(&self, text: &str, params: &[Value]) -> Result<SqlResult> {
        self.call(
            Method::POST,
            "/v1/sql",
            Some(&serde_json::json!({"sql": text, "params": params})),
        )
        .await
    }

    /// What the token may do: `GET /v1/tables` as JSON.
    pub async fn granted_tables(&self) -> Result<Value> {
        self.call(Method::GET, "/v1/tables", None).await
    }

    /// The change stream (`GET /v1/changes/stream`), to be configured and
    /// opened with [`ChangesRequest::stream`].
    pub fn changes(&self) -> ChangesRequest {
        ChangesRequest::new(self.clone())
    }
}

/// JSON `bytes` as `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::UnexpectedResponse(format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ))
    })
}

/// The problem JSON of a refused answer (or one made from its status and
/// text when it is not problem JSON).
pub(crate) async fn read_problem(response: reqwest::Response) -> Problem {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let text = response.text().await.unwrap_or_default();
    let mut problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| Problem::from_status(status, &text));
    if problem.status == 0 {
        problem.status = status;
    }
    problem.retry_after = retry_after;
    problem
}

/// The answer of `/v1/sql`.
#[derive(Debug, Clone, Deserialize)]
pub struct SqlResult {
    /// The result's columns, in order.
    pub columns: Vec<SqlColumn>,
    /// The rows, each an array in column order (a write answers one column
    /// `count`).
    pub rows: Vec<Vec<Value>>,
    /// How many rows.
    pub row_count: u64,
}

/// A column of a [`SqlResult`].
#[derive(Debug, Clone, Deserialize)]
pub struct SqlColumn {
    /// The column's name (two may share one in a join).
    pub name: String,
    /// Its type (`text`, `integer`, …).
    #[serde(rename = "type")]
    pub type_name: String,
}

impl SqlResult {
    /// The rows as `T`, each read from an object of column name to value
    /// (a later column of the same name wins).
    pub fn rows_as<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.rows
            .iter()
            .map(|row| {
                let object: serde_json::Map<String, Value> = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.name.clone(), v.clone()))
                    .collect();
                Ok(serde_json::from_value(Value::Object(object))?)
            })
            .collect()
    }

    /// For a write: how many rows it changed (the `count` column).
    pub fn count(&self) -> Option<u64> {
        match (self.columns.as_slice(), self.rows.as_slice()) {
            ([c], [row]) if c.name == "count" => row.first().and_then(Value::as_u64),
            _ => None,
        }
    }
}
