//! Getting tokens from the vault's OAuth server: the device flow (for
//! command-line tools), the authorization code flow with PKCE and a loopback
//! redirect (for desktop apps), and refresh.

use std::fmt;
use std::time::{Duration, SystemTime};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, StandardErrorResponse, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::dpop::{DpopKey, OAuthHttp};
use crate::error::{Error, Result};

/// How long one HTTP request to the OAuth server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The OAuth server's paths, as the server serves them.
const AUTHORIZE_PATH: &str = "/oauth/authorize";
const TOKEN_PATH: &str = "/oauth/token";
const DEVICE_PATH: &str = "/oauth/device";

/// The longest request head the loopback listener reads.
const MAX_REDIRECT_HEAD: usize = 16 * 1024;

/// Members of the token response the `oauth2` crate does not model
/// (`authorization_details`, …), kept so [`Tokens::to_json`] has them.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct OtherMembers {
    #[serde(flatten)]
    members: Map<String, Value>,
}

impl ExtraTokenFields for OtherMembers {}

/// A token response as the server sends it.
type TokenAnswer = StandardTokenResponse<OtherMembers, BasicTokenType>;

/// An `oauth2` client with the authorization, device and token endpoints.
type OAuth2Client = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The tokens a flow or a refresh gave.
#[derive(Clone)]
pub struct Tokens {
    /// The access token (a capability token for the data API).
    pub access_token: String,
    /// `Bearer` (or `DPoP` for a bound token).
    pub token_type: String,
    /// How long the access token is valid from when it was received.
    pub expires_in: Option<Duration>,
    /// The refresh token, when the app may refresh. It works once: a refresh
    /// answers a new one, which replaces it.
    pub refresh_token: Option<String>,
    /// The scope granted, space-separated (may be narrower than asked).
    pub scope: Option<String>,
    /// Every other member of the token response (`authorization_details`, …).
    pub extra: Map<String, Value>,
    /// When the response was received.
    pub received_at: SystemTime,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"…")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens made of an access token alone (no refresh, no expiry known).
    pub fn from_access_token(access_token: impl Into<String>) -> Tokens {
        Tokens {
            access_token: access_token.into(),
            token_type: "Bearer".into(),
            expires_in: None,
            refresh_token: None,
            scope: None,
            extra: Map::new(),
            received_at: SystemTime::now(),
        }
    }

    /// When the access token expires, if the server said.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_in.map(|d| self.received_at + d)
    }

    /// The token response as JSON, in the server's own form
    /// (`access_token`, `token_type`, `expires_in`, `refresh_token`, `scope`,
    /// and every other member).
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("access_token".into(), json!(self.access_token));
        doc.insert("token_type".into(), json!(self.token_type));
        if let Some(expires_in) = self.expires_in {
            doc.insert("expires_in".into(), json!(expires_in.as_secs()));
        }
        if let Some(refresh) = &self.refresh_token {
            doc.insert("refresh_token".into(), json!(refresh));
        }
        if let Some(scope) = &self.scope {
            doc.insert("scope".into(), json!(scope));
        }
        for (name, value) in &self.extra {
            doc.entry(name.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(doc)
    }

    fn from_answer(answer: TokenAnswer) -> Tokens {
        let token_type = match answer.token_type() {
            BasicTokenType::Bearer => "Bearer".to_owned(),
            // The oauth2 crate reads the type in lower case; the server
            // says `DPoP`.
            other if other.as_ref().eq_ignore_ascii_case("dpop") => "DPoP".to_owned(),
            other => other.as_ref().to_owned(),
        };
        Tokens {
            access_token: answer.access_token().secret().clone(),
            token_type,
            expires_in: answer.expires_in(),
            refresh_token: answer.refresh_token().map(|r| r.secret().clone()),
            scope: answer
                .scopes()
                .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
            extra: answer.extra_fields().members.clone(),
            received_at: SystemTime::now(),
        }
    }
}

/// An OAuth client of one Coffer server: one app (its client id) asking
/// for tokens.
///
/// The app is registered beforehand (`coffer app register`): as a public
/// client with the `device-code` grant type for [`OAuth::device_authorization`],
/// with a loopback redirect URI (`http://127.0.0.1/callback`; any port is
/// accepted for a loopback address) for [`OAuth::loopback`], and with
/// `refresh-token` to [refresh](OAuth::refresh).
#[derive(Clone)]
pub struct OAuth {
    server: String,
    client_id: String,
    http: OAuthHttp,
    client: OAuth2Client,
}

impl fmt::Debug for OAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("server", &self.server)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// A client of the server at `server` (its public URL, e.g.
    /// `http://127.0.0.1:8484`) for the app `client_id`.
    pub fn new(server: &str, client_id: &str) -> Result<OAuth> {
        let server = crate::client::server_url(server)?;
        // No redirects: an OAuth client must not be led to send its
        // requests (and codes, verifiers, refresh tokens) somewhere else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let endpoint = |path: &str| format!("{server}{path}");
        let invalid = |e: url::ParseError| Error::InvalidArgument(format!("the server URL: {e}"));
        let client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_auth_uri(AuthUrl::new(endpoint(AUTHORIZE_PATH)).map_err(invalid)?)
            .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint(DEVICE_PATH)).map_err(invalid)?)
            .set_token_uri(TokenUrl::new(endpoint(TOKEN_PATH)).map_err(invalid)?);
        Ok(OAuth {
            server,
            client_id: client_id.to_owned(),
            http: OAuthHttp { http, dpop: None },
            client,
        })
    }

    /// The same client holding a DPoP key: every token request carries a
    /// proof of it, so the tokens are bound to the key (`token_type`
    /// `DPoP`), and a [`Client`](crate::Client) made with them sends a
    /// proof with every request. A bound refresh token needs proofs of the
    /// same key: keep it ([`DpopKey::secret_bytes`]).
    pub fn with_dpop(mut self, key: DpopKey) -> OAuth {
        self.http.dpop = Some(key);
        self
    }

    /// The DPoP key, if the client holds one.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.http.dpop.as_ref()
    }

    /// The server's URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Starts the device flow (RFC 8628): asks for a device code for
    /// `scope` (space-separated, e.g. `contacts.people:read+create`; `None`
    /// asks for the app's registered scope). Show the user
    /// [`DeviceAuthorization::verification_uri_complete`] (or the URI and the
    /// code), then [wait](DeviceAuthorization::wait) for the tokens.
    pub async fn device_authorization(&self, scope: Option<&str>) -> Result<DeviceAuthorization> {
        let details: StandardDeviceAuthorizationResponse = self
            .client
            .exchange_device_code()
            .add_scopes(scopes(scope))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(DeviceAuthorization {
            oauth: self.clone(),
            details,
        })
    }

    /// Exchanges `refresh_token` for new tokens, optionally for a narrower
    /// `scope`. The refresh token given is used up: keep the new one
    /// ([`Tokens::refresh_token`]); using it again is refused with
    /// `invalid_grant`.
    pub async fn refresh(&self, refresh_token: &str, scope: Option<&str>) -> Result<Tokens> {
        let refresh = RefreshToken::new(refresh_token.trim().to_owned());
        let answer = self
            .client
            .exchange_refresh_token(&refresh)
            .add_scopes(scopes(scope))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(Tokens::from_answer(answer))
    }

    /// Starts the authorization code flow with PKCE (S256) and a loopback
    /// redirect (RFC 8252): listens on `127.0.0.1` on a free port and builds
    /// the authorization URL, whose redirect URI is
    /// `http://127.0.0.1:PORT/callback`. Open (or print)
    /// [`LoopbackAuthorization::authorize_url`] in the user's browser, then
    /// [wait](LoopbackAuthorization::wait) for the answer.
    pub async fn loopback(&self, scope: Option<&str>) -> Result<LoopbackAuthorization> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}{LOOPBACK_PATH}");
        let redirect = RedirectUrl::new(redirect_uri.clone())
            .map_err(|e| Error::InvalidArgument(format!("the redirect URI: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes(scope))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect.clone()))
            .url();
        Ok(LoopbackAuthorization {
            oauth: self.clone(),
            listener,
            url: url.to_string(),
            state,
            verifier,
            redirect,
        })
    }
}

/// The path of the loopback redirect URI.
const LOOPBACK_PATH: &str = "/callback";

/// Scopes from a space-separated list.
fn scopes(scope: Option<&str>) -> Vec<Scope> {
    scope
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(|s| Scope::new(s.to_owned()))
        .collect()
}

/// An error of a token request of the `oauth2` crate as an [`Error`].
fn token_error<T>(error: RequestTokenError<oauth2::HttpClientError<reqwest::Error>, StandardErrorResponse<T>>) -> Error
where
    T: oauth2::ErrorResponseType + AsRef<str> + fmt::Display + Send + Sync + 'static,
{
    match error {
        RequestTokenError::ServerResponse(answer) => Error::OAuth {
            error: answer.error().as_ref().to_owned(),
            description: answer.error_description().cloned(),
        },
        RequestTokenError::Request(oauth2::HttpClientError::Reqwest(e)) => Error::Http(*e),
        RequestTokenError::Request(e) => Error::UnexpectedResponse(error_chain(&e)),
        RequestTokenError::Parse(e, _) => Error::UnexpectedResponse(e.to_string()),
        RequestTokenError::Other(e) => Error::UnexpectedResponse(e),
    }
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A device flow in progress: the code the user allows, and the polling
/// that follows.
pub struct DeviceAuthorization {
    oauth: OAuth,
    details: StandardDeviceAuthorizationResponse,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code())
            .field("verification_uri", &self.verification_uri())
            .finish_non_exhaustive()
    }
}

impl DeviceAuthorization {
    /// The code the user confirms in the browser.
    pub fn user_code(&self) -> &str {
        self.details.user_code().secret()
    }

    /// The page where the user types the code.
    pub fn verification_uri(&self) -> &str {
        self.details.verification_uri().as_str()
    }

    /// The page with the code filled in, when the server sends one (Coffer
    /// does); otherwise [`verification_uri`](Self::verification_uri).
    pub fn verification_uri_complete(&self) -> &str {
        match self.details.verification_uri_complete() {
            Some(complete) => complete.secret(),
            None => self.verification_uri(),
        }
    }

    /// How long the code is valid.
    pub fn expires_in(&self) -> Duration {
        self.details.expires_in()
    }

    /// Polls the token endpoint (at the server's interval, slower after
    /// `slow_down`, until the code expires) until the user allows or denies
    /// access. A denial is [`Error::OAuth`] with `access_denied`; an expired
    /// code `expired_token`.
    pub async fn wait(&self) -> Result<Tokens> {
        let answer = self
            .oauth
            .client
            .exchange_device_access_token(&self.details)
            .request_async(&self.oauth.http, tokio::time::sleep, None)
            .await
            .map_err(token_error)?;
        Ok(Tokens::from_answer(answer))
    }
}

/// An authorization code flow in progress: a loopback listener waiting for
/// the browser to come back with the code.
pub struct LoopbackAuthorization {
    oauth: OAuth,
    listener: TcpListener,
    url: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    redirect: RedirectUrl,
}

impl fmt::Debug for LoopbackAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopbackAuthorization")
            .field("authorize_url", &self.url)
            .field("redirect_uri", &self.redirect.as_str())
            .finish_non_exhaustive()
    }
}

impl LoopbackAuthorization {
    /// The URL to open in the user's browser (the authorization request,
    /// with the PKCE challenge, the `state` and the loopback redirect URI).
    pub fn authorize_url(&self) -> &str {
        &self.url
    }

    /// The redirect URI this flow listens on.
    pub fn redirect_uri(&self) -> &str {
        self.redirect.as_str()
    }

    /// Waits for the browser to come back to the loopback redirect URI,
    /// checks its `state`, and exchanges the code (with the PKCE verifier)
    /// for tokens. Requests to other paths are answered `404` and ignored.
    /// Wrap it in a timeout if the user may never come back.
    pub async fn wait(self) -> Result<Tokens> {
        let query = loop {
            let (mut socket, _) = self.listener.accept().await?;
            let Ok(target) = read_request_target(&mut socket).await else {
                continue;
            };
            let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
            if path != LOOPBACK_PATH {
                let _ = respond(&mut socket, "404 Not Found", "Not found.").await;
                continue;
            }
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let page = if pairs.iter().any(|(k, _)| k == "code") {
                "Access was allowed. You may close this window."
            } else {
                "Access was not allowed. You may close this window."
            };
            let _ = respond(&mut socket, "200 OK", page).await;
            break pairs;
        };
        let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if get("state").as_deref() != Some(self.state.secret().as_str()) {
            return Err(Error::StateMismatch);
        }
        if let Some(error) = get("error") {
            return Err(Error::AuthorizationRefused {
                error,
                description: get("error_description"),
            });
        }
        let code = get("code").ok_or_else(|| Error::UnexpectedResponse("the redirect carries no code".into()))?;
        let answer = self
            .oauth
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(self.verifier)
            .set_redirect_uri(std::borrow::Cow::Owned(self.redirect))
            .request_async(&self.oauth.http)
            .await
            .map_err(token_error)?;
        Ok(Tokens::from_answer(answer))
    }
}

/// Reads an HTTP request head from `socket`; its request target.
async fn read_request_target(socket: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
        if n == 0 || head.len() + n > MAX_REDIRECT_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no request head"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => Ok(target.to_owned()),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a GET")),
    }
}

/// Writes a small plain-text answer and closes.
async fn respond(socket: &mut tokio::net::TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{text}",
        text.len()
    );
    socket.write_all(answer.as_bytes()).await?;
    socket.shutdown().await
}
