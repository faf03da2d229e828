//! Apps (OAuth clients): registration by a user or dynamically (RFC 7591),
//! redirect URI rules, client authentication.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use coffer_auth::ScopeSet;
use coffer_core::{AppId, UserId};
use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
use url::{Host, Url};

use crate::store::apps::{self as store, AppRow};
use crate::util::{ct_eq, echo, from_micros, hash, json_strings, new_secret};
use crate::{Error, ErrorCode, OAuthServer};

/// Most redirect URIs one app may register.
pub const MAX_REDIRECT_URIS: usize = 16;
/// Longest URL accepted (redirect URI, homepage, logo).
pub const MAX_URL_LEN: usize = 2000;
/// Longest app name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Whether a client can keep a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Browser, mobile or CLI app: no secret, PKCE only.
    Public,
    /// Server-side app with a client secret.
    Confidential,
}

impl ClientKind {
    /// `public` or `confidential`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Confidential => "confidential",
        }
    }
}

/// How a client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// Public client: no secret.
    None,
    /// Secret in HTTP Basic authentication.
    ClientSecretBasic,
    /// Secret in the form body.
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    /// The RFC 7591 name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::None => "none",
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }

    /// The kind of client this method implies.
    pub fn kind(self) -> ClientKind {
        match self {
            TokenEndpointAuthMethod::None => ClientKind::Public,
            _ => ClientKind::Confidential,
        }
    }
}

impl FromStr for TokenEndpointAuthMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Self::None),
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            other => Err(Error::oauth(
                ErrorCode::InvalidClientMetadata,
                format!(
                    "token_endpoint_auth_method `{}` is not supported (none, client_secret_basic, client_secret_post)",
                    echo(other)
                ),
            )),
        }
    }
}

/// A grant type a client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantType {
    /// `authorization_code` (with PKCE).
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    DeviceCode,
}

impl GrantType {
    /// Every supported grant type.
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::DeviceCode,
    ];

    /// The grant type's URI or name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }

    /// Parses a grant type name; `None` if unsupported.
    pub fn parse(s: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl Serialize for GrantType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A registered app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct App {
    /// The client id (also the app id written into rows the app creates).
    pub client_id: AppId,
    /// The name shown on the consent page.
    pub name: String,
    /// The app's homepage (https).
    pub homepage: Option<String>,
    /// The app's logo (https).
    pub logo_url: Option<String>,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// How the app authenticates at the token endpoint.
    pub auth_method: TokenEndpointAuthMethod,
    /// The grant types the app may use.
    pub grant_types: Vec<GrantType>,
    /// The scope asked for when a request names none ("" = none).
    pub default_scope: String,
    /// When the app was registered.
    pub created_at: DateTime<Utc>,
    /// Who registered it (`None`: dynamic registration).
    pub registered_by: Option<UserId>,
}

impl App {
    /// Public or confidential.
    pub fn kind(&self) -> ClientKind {
        self.auth_method.kind()
    }

    /// Whether the app may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Checks a requested redirect URI against the registered ones: an exact
    /// string match, or for a registered loopback URI (`http://127.0.0.1` or
    /// `http://[::1]`) the same URI with any port (RFC 8252 §7.3). Without a
    /// requested URI, the only registered one is used. Returns the URI to
    /// redirect to and whether it was given.
    pub fn match_redirect_uri(&self, requested: Option<&str>) -> Result<(String, bool), Error> {
        let Some(requested) = requested else {
            return match self.redirect_uris.as_slice() {
                [only] => Ok((only.clone(), false)),
                [] => Err(Error::invalid_request("this client has no redirect URI registered")),
                _ => Err(Error::invalid_request(
                    "redirect_uri is required: this client registered several",
                )),
            };
        };
        if self.redirect_uris.iter().any(|r| r == requested) {
            return Ok((requested.to_owned(), true));
        }
        if let Ok(req) = Url::parse(requested)
            && is_loopback_http(&req)
            && self
                .redirect_uris
                .iter()
                .filter_map(|r| Url::parse(r).ok())
                .any(|reg| is_loopback_http(&reg) && same_except_port(&reg, &req))
        {
            return Ok((requested.to_owned(), true));
        }
        Err(Error::invalid_request(
            "redirect_uri does not match any redirect URI registered for this client",
        ))
    }
}

/// Whether `c` may not appear in what the consent page shows of an app
/// (name, URLs): control and format characters (Unicode categories Cc, Cf:
/// bidirectional overrides and isolates such as U+202E and U+2066–U+2069,
/// zero-width spaces and joiners, soft hyphens, …), private-use, surrogate
/// and unassigned code points, and line and paragraph separators. Each can
/// make the text shown differ from the text stored, or hide part of it.
pub fn is_confusable_char(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Other
        || matches!(
            c.general_category(),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
        )
}

/// Refuses `text` when it holds a character of [`is_confusable_char`],
/// naming the first one by its code point (never echoing the text).
fn refuse_confusable(field: &str, text: &str) -> Result<(), Error> {
    match text.chars().find(|c| is_confusable_char(*c)) {
        Some(c) => Err(Error::oauth(
            ErrorCode::InvalidClientMetadata,
            format!(
                "{field} contains the invisible or control character U+{:04X}; use visible characters only",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

fn is_loopback_http(u: &Url) -> bool {
    u.scheme() == "http"
        && match u.host() {
            Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            _ => false,
        }
}

fn same_except_port(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && a.fragment().is_none()
        && b.fragment().is_none()
        && a.username().is_empty()
        && b.username().is_empty()
        && a.password().is_none()
        && b.password().is_none()
}

/// Checks one redirect URI: https with a host, or http on a loopback IP
/// literal (`127.0.0.1`, `[::1]`; not `localhost`, RFC 8252 §8.3); no
/// fragment, no user info, at most [`MAX_URL_LEN`] bytes.
pub(crate) fn validate_redirect_uri(uri: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::oauth(
            ErrorCode::InvalidRedirectUri,
            format!("redirect URI `{}` {why}", echo(uri)),
        )
    };
    if uri.len() > MAX_URL_LEN {
        return Err(bad("is too long"));
    }
    let u = Url::parse(uri).map_err(|_| bad("is not an absolute URL"))?;
    if u.fragment().is_some() || uri.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not contain user information"));
    }
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if is_loopback_http(&u) => Ok(()),
        "http" if matches!(u.host(), Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost")) => Err(bad(
            "uses `localhost`; use the loopback IP literal http://127.0.0.1 or http://[::1] instead",
        )),
        _ => Err(bad(
            "must use https, or http on the loopback address 127.0.0.1 or [::1]",
        )),
    }
}

/// Checks an optional https URL (homepage, logo).
fn validate_https_url(field: &str, url: &str) -> Result<(), Error> {
    let bad = || {
        Error::oauth(
            ErrorCode::InvalidClientMetadata,
            format!("{field} must be an https URL of at most {MAX_URL_LEN} bytes"),
        )
    };
    if url.len() > MAX_URL_LEN {
        return Err(bad());
    }
    let u = Url::parse(url).map_err(|_| bad())?;
    if u.scheme() != "https" || u.host().is_none() || !u.username().is_empty() || u.password().is_some() {
        return Err(bad());
    }
    Ok(())
}

/// What to register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApp {
    /// The name shown on the consent page (1–100 characters).
    pub name: String,
    /// The app's homepage (https).
    pub homepage: Option<String>,
    /// The app's logo (https).
    pub logo_url: Option<String>,
    /// Redirect URIs (see [`App::match_redirect_uri`]); required for the
    /// authorization code grant.
    pub redirect_uris: Vec<String>,
    /// How the app will authenticate; `None` makes a public client.
    pub auth_method: TokenEndpointAuthMethod,
    /// Grant types; empty means authorization code + refresh token.
    pub grant_types: Vec<GrantType>,
    /// Scope asked for when a request names none (syntax-checked).
    pub default_scope: String,
    /// The registering user, if any.
    pub registered_by: Option<UserId>,
}

impl NewApp {
    /// A public client (PKCE, no secret) using code + refresh grants.
    pub fn public(name: impl Into<String>, redirect_uris: Vec<String>) -> Self {
        NewApp {
            name: name.into(),
            homepage: None,
            logo_url: None,
            redirect_uris,
            auth_method: TokenEndpointAuthMethod::None,
            grant_types: Vec::new(),
            default_scope: String::new(),
            registered_by: None,
        }
    }

    /// A confidential client (secret by HTTP Basic or form body).
    pub fn confidential(name: impl Into<String>, redirect_uris: Vec<String>) -> Self {
        NewApp {
            auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
            ..NewApp::public(name, redirect_uris)
        }
    }

    /// The same app allowed these grant types.
    pub fn with_grant_types(mut self, grant_types: impl IntoIterator<Item = GrantType>) -> Self {
        self.grant_types = grant_types.into_iter().collect();
        self
    }

    fn validate(&mut self) -> Result<(), Error> {
        let meta = |d: String| Error::oauth(ErrorCode::InvalidClientMetadata, d);
        self.name = self.name.trim().to_owned();
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(meta(format!(
                "the client name must have 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        refuse_confusable("client_name", &self.name)?;
        if let Some(h) = &self.homepage {
            refuse_confusable("client_uri", h)?;
            validate_https_url("client_uri", h)?;
        }
        if let Some(l) = &self.logo_url {
            refuse_confusable("logo_uri", l)?;
            validate_https_url("logo_uri", l)?;
        }
        for uri in &self.redirect_uris {
            refuse_confusable("redirect_uri", uri)?;
        }
        if self.grant_types.is_empty() {
            self.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        }
        self.grant_types.sort();
        self.grant_types.dedup();
        if self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
            ));
        }
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri)?;
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err(Error::oauth(
                ErrorCode::InvalidRedirectUri,
                "the authorization_code grant needs at least one redirect URI",
            ));
        }
        ScopeSet::parse(&self.default_scope).map_err(|e| meta(format!("scope: {e}")))?;
        Ok(())
    }
}

/// A registered app, with its secret shown once (confidential clients).
#[derive(Clone)]
pub struct RegisteredApp {
    /// The app.
    pub app: App,
    /// The client secret; only its hash is stored, so show it now or never.
    pub client_secret: Option<String>,
}

impl fmt::Debug for RegisteredApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredApp")
            .field("app", &self.app)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An RFC 7591 client registration request (unknown fields are ignored, as
/// the RFC allows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_basic` (the default) or `client_secret_post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// Grant types (default `authorization_code`, `refresh_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// Response types: only `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    /// The name shown to users (required here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The app's homepage (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// The app's logo (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// Default scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The RFC 7591 §3.2.1 registration response.
#[derive(Clone, Serialize)]
pub struct ClientRegistrationResponse {
    /// The new client id.
    pub client_id: String,
    /// The secret (confidential clients only; shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Seconds since the epoch.
    pub client_id_issued_at: i64,
    /// 0: the secret does not expire (present with a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    /// The registered metadata, as stored.
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

impl fmt::Debug for ClientRegistrationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistrationResponse")
            .field("client_id", &self.client_id)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// How a client identified itself at the token, PAR, revocation or
/// introspection endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The secret, for confidential clients.
    pub client_secret: Option<String>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientCredentials {
    /// A public client: id only.
    pub fn public(client_id: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: None,
        }
    }

    /// A confidential client: id and secret.
    pub fn with_secret(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: Some(secret.into()),
        }
    }

    /// Reads client authentication from an HTTP request: the `Authorization`
    /// header (`Basic`, RFC 6749 §2.3.1, form-urlencoded id and secret) or
    /// the `client_id` / `client_secret` form fields. Using both methods at
    /// once, or none, is `invalid_client`.
    pub fn from_request(
        authorization: Option<&str>,
        form_client_id: Option<&str>,
        form_client_secret: Option<&str>,
    ) -> Result<Self, Error> {
        match authorization {
            Some(header) => {
                let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(Error::invalid_client("unsupported Authorization scheme"));
                }
                let bad = || Error::invalid_client("malformed Basic credentials");
                let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
                let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
                let id = form_decode(id).ok_or_else(bad)?;
                let secret = form_decode(secret).ok_or_else(bad)?;
                if form_client_secret.is_some() || form_client_id.is_some_and(|f| f != id) {
                    return Err(Error::invalid_client(
                        "use one client authentication method, not several",
                    ));
                }
                if id.is_empty() {
                    return Err(bad());
                }
                Ok(ClientCredentials {
                    client_id: id,
                    client_secret: Some(secret),
                })
            }
            None => {
                let id = form_client_id
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| Error::invalid_client("client authentication is missing (no client_id)"))?;
                Ok(ClientCredentials {
                    client_id: id.to_owned(),
                    client_secret: form_client_secret.map(str::to_owned),
                })
            }
        }
    }
}

/// The client authentication fields of a form body (PAR, revocation,
/// introspection, device authorization). Parse the same body into this and
/// into the endpoint's own parameters; unknown fields are ignored.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ClientAuthForm {
    /// The client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client secret (`client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl fmt::Debug for ClientAuthForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthForm")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientAuthForm {
    /// The credentials, from these fields and the `Authorization` header.
    pub fn credentials(&self, authorization: Option<&str>) -> Result<ClientCredentials, Error> {
        ClientCredentials::from_request(authorization, self.client_id.as_deref(), self.client_secret.as_deref())
    }
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Where the registered apps stand ([`OAuthServer::apps_version`]). Apps
/// are only ever added, so two equal versions mean the same apps, and a
/// registration by any process on the same database (`coffer app register`
/// while the server runs, or `/oauth/register`) changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppsVersion {
    apps: i64,
    newest: i64,
}

/// The origins of every registered app's redirect URIs
/// ([`OAuthServer::redirect_origins`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectOrigins {
    /// The apps these origins were read from.
    pub version: AppsVersion,
    /// Each origin once, as [`redirect_origin`] gives it.
    pub origins: BTreeSet<String>,
}

/// The origin of a redirect URI as a browser on that page sends it in the
/// `Origin` header (the URL standard's ASCII serialization,
/// `scheme://host[:port]`: lower-case host, no default port), or `None` for
/// a URI with no such origin. The origin is the URI's own: the any-port
/// rule for loopback redirect URIs (RFC 8252 §7.3) is for native apps
/// receiving a redirect, not for pages on other ports.
pub fn redirect_origin(uri: &str) -> Option<String> {
    let origin = Url::parse(uri).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

impl AppRow {
    /// The app, and the hash of its secret.
    fn into_app(self) -> Result<(App, Option<Vec<u8>>), Error> {
        let grant_types = json_strings(&self.grant_types)?
            .iter()
            .filter_map(|g| GrantType::parse(g))
            .collect();
        let app = App {
            client_id: AppId::new(self.client_id),
            name: self.name,
            homepage: self.homepage,
            logo_url: self.logo_url,
            redirect_uris: json_strings(&self.redirect_uris)?,
            auth_method: self
                .token_endpoint_auth_method
                .parse()
                .map_err(|_| Error::Internal("stored auth method is invalid".into()))?,
            grant_types,
            default_scope: self.default_scope,
            created_at: from_micros(self.created_at),
            registered_by: self.registered_by.and_then(|u| u.parse().ok()),
        };
        Ok((app, self.secret_hash))
    }
}

impl OAuthServer {
    /// Registers an app. The client id is a new lower-case ULID; a
    /// confidential app also gets a 256-bit secret, returned once and stored
    /// as its SHA-256.
    pub async fn register_app(&self, mut new: NewApp) -> Result<RegisteredApp, Error> {
        new.validate()?;
        let client_id = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let secret = match new.auth_method.kind() {
            ClientKind::Confidential => Some(new_secret()?),
            ClientKind::Public => None,
        };
        let app = App {
            client_id: AppId::new(client_id),
            name: new.name,
            homepage: new.homepage,
            logo_url: new.logo_url,
            redirect_uris: new.redirect_uris,
            auth_method: new.auth_method,
            grant_types: new.grant_types,
            default_scope: new.default_scope,
            created_at: self.now(),
            registered_by: new.registered_by,
        };
        store::insert(&self.pool, &app, secret.as_deref().map(hash).as_deref()).await?;
        Ok(RegisteredApp {
            app,
            client_secret: secret,
        })
    }

    /// RFC 7591 dynamic client registration: validates the metadata
    /// (`invalid_redirect_uri`, `invalid_client_metadata`) and registers the
    /// app with no registering user. Refused with `access_denied` (403) when
    /// open registration is off ([`crate::OAuthConfig::open_registration`])
    /// or when the server already keeps
    /// [`max_open_registrations`](crate::OAuthConfig::max_open_registrations)
    /// apps without a registering user.
    pub async fn register_client(&self, metadata: ClientMetadata) -> Result<ClientRegistrationResponse, Error> {
        if !self.config.open_registration {
            return Err(Error::oauth(
                ErrorCode::AccessDenied,
                "this server does not accept app registrations: ask its operator to register the app",
            ));
        }
        let stored = store::count_unowned(&self.pool).await?;
        if u64::try_from(stored).unwrap_or(u64::MAX) >= self.config.max_open_registrations {
            return Err(Error::oauth(
                ErrorCode::AccessDenied,
                "this server accepts no more app registrations: ask its operator to register the app",
            ));
        }
        let meta = |d: String| Error::oauth(ErrorCode::InvalidClientMetadata, d);
        let auth_method = match metadata.token_endpoint_auth_method.as_deref() {
            None => TokenEndpointAuthMethod::ClientSecretBasic,
            Some(m) => m.parse()?,
        };
        let grant_types = match &metadata.grant_types {
            None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            Some(list) => list
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| meta(format!("grant type `{}` is not supported", echo(g)))))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if grant_types.is_empty() {
            return Err(meta("grant_types must not be empty".into()));
        }
        match &metadata.response_types {
            None => {}
            Some(types) => {
                if types.iter().any(|t| t != "code") {
                    return Err(meta("the only response type supported is `code`".into()));
                }
                let wants_code = grant_types.contains(&GrantType::AuthorizationCode);
                if wants_code != types.iter().any(|t| t == "code") {
                    return Err(meta(
                        "response_types `code` goes with the authorization_code grant type".into(),
                    ));
                }
            }
        }
        let name = metadata
            .client_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| meta("client_name is required: users see it on the consent page".into()))?;
        let new = NewApp {
            name,
            homepage: metadata.client_uri.clone(),
            logo_url: metadata.logo_uri.clone(),
            redirect_uris: metadata.redirect_uris.clone(),
            auth_method,
            grant_types,
            default_scope: metadata.scope.clone().unwrap_or_default(),
            registered_by: None,
        };
        let registered = self.register_app(new).await?;
        let app = &registered.app;
        Ok(ClientRegistrationResponse {
            client_id: app.client_id.to_string(),
            client_id_issued_at: app.created_at.timestamp(),
            client_secret_expires_at: registered.client_secret.as_ref().map(|_| 0),
            client_secret: registered.client_secret.clone(),
            metadata: ClientMetadata {
                redirect_uris: app.redirect_uris.clone(),
                token_endpoint_auth_method: Some(app.auth_method.as_str().to_owned()),
                grant_types: Some(app.grant_types.iter().map(|g| g.as_str().to_owned()).collect()),
                response_types: Some(if app.allows(GrantType::AuthorizationCode) {
                    vec!["code".to_owned()]
                } else {
                    Vec::new()
                }),
                client_name: Some(app.name.clone()),
                client_uri: app.homepage.clone(),
                logo_uri: app.logo_url.clone(),
                scope: (!app.default_scope.is_empty()).then(|| app.default_scope.clone()),
            },
        })
    }

    /// One app by client id, and the hash of its secret.
    pub(crate) async fn find_app(&self, client_id: &str) -> Result<Option<(App, Option<Vec<u8>>)>, Error> {
        store::find(&self.pool, client_id)
            .await?
            .map(AppRow::into_app)
            .transpose()
    }

    /// One app by client id ([`Error::NotFound`] if unknown).
    pub async fn app(&self, client_id: &str) -> Result<App, Error> {
        Ok(self.find_app(client_id).await?.ok_or(Error::NotFound("app"))?.0)
    }

    /// Every app, oldest first.
    pub async fn list_apps(&self) -> Result<Vec<App>, Error> {
        store::list(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.into_app().map(|(a, _)| a))
            .collect()
    }

    /// Where the registered apps stand: one small aggregate query, cheap
    /// enough to run per request to learn whether what was read by
    /// [`redirect_origins`](Self::redirect_origins) is still current.
    pub async fn apps_version(&self) -> Result<AppsVersion, Error> {
        let mark = store::mark(&self.pool).await?;
        Ok(AppsVersion {
            apps: mark.apps,
            newest: mark.newest,
        })
    }

    /// The origins of every registered app's redirect URIs (see
    /// [`redirect_origin`]), with the version of the apps they were read
    /// from. At most [`MAX_REDIRECT_URIS`] per app.
    pub async fn redirect_origins(&self) -> Result<RedirectOrigins, Error> {
        let rows = store::all_redirect_uris(&self.pool).await?;
        let version = AppsVersion {
            apps: i64::try_from(rows.len()).unwrap_or(i64::MAX),
            newest: rows.iter().map(|r| r.rowid).max().unwrap_or(0),
        };
        let mut origins = BTreeSet::new();
        for row in rows {
            origins.extend(
                json_strings(&row.redirect_uris)?
                    .iter()
                    .filter_map(|u| redirect_origin(u)),
            );
        }
        Ok(RedirectOrigins { version, origins })
    }

    /// Authenticates a client registered for `grant` (`unauthorized_client`,
    /// naming the grant as `name`, if it is not).
    pub(crate) async fn client_for(
        &self,
        client: &ClientCredentials,
        grant: GrantType,
        name: &str,
    ) -> Result<App, Error> {
        let app = self.authenticate_client(client).await?;
        if !app.allows(grant) {
            return Err(Error::unauthorized_client(format!(
                "this client is not registered for the {name} grant"
            )));
        }
        Ok(app)
    }

    /// Authenticates a client: a public client must send no secret; a
    /// confidential one must send its secret (compared as SHA-256 hashes in
    /// constant time). Any failure is `invalid_client`.
    pub async fn authenticate_client(&self, credentials: &ClientCredentials) -> Result<App, Error> {
        let failed = || Error::invalid_client("client authentication failed");
        let (app, secret_hash) = self.find_app(&credentials.client_id).await?.ok_or_else(failed)?;
        match (app.kind(), &credentials.client_secret, secret_hash) {
            (ClientKind::Public, None, _) => Ok(app),
            (ClientKind::Public, Some(_), _) => Err(Error::invalid_client(
                "this is a public client: it has no client secret",
            )),
            (ClientKind::Confidential, Some(secret), Some(stored)) if ct_eq(&hash(secret), &stored) => Ok(app),
            _ => Err(failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redirect_origin;

    #[test]
    fn a_redirect_origin_is_what_a_browser_sends() {
        for (uri, origin) in [
            ("https://notes.example/callback", Some("https://notes.example")),
            ("https://Notes.Example:443/cb?x=1", Some("https://notes.example")),
            ("https://notes.example:8443/", Some("https://notes.example:8443")),
            ("http://127.0.0.1:5173/callback", Some("http://127.0.0.1:5173")),
            ("http://127.0.0.1/callback", Some("http://127.0.0.1")),
            ("http://[::1]:8080/cb", Some("http://[::1]:8080")),
            ("https://bücher.example/cb", Some("https://xn--bcher-kva.example")),
            ("com.example.app:/callback", None),
            ("not a url", None),
        ] {
            assert_eq!(redirect_origin(uri).as_deref(), origin, "{uri}");
        }
    }
}
