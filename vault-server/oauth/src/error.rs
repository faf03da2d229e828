//! The one error type of this crate, with the OAuth error code the HTTP layer
//! puts into RFC 6749 §5.2 error JSON (or an error redirect).

use std::fmt;

use serde::Serialize;

/// An OAuth 2.0 error code (RFC 6749 §4.1.2.1 and §5.2, RFC 8628 §3.5,
/// RFC 9449, RFC 9396, RFC 9126, RFC 7591), plus `server_error` and
/// `temporarily_unavailable` for failures that are not the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is missing a parameter, has an invalid one, or is malformed.
    InvalidRequest,
    /// Client authentication failed (HTTP 401).
    InvalidClient,
    /// The code, refresh token or device code is invalid, expired, revoked or
    /// was issued to another client.
    InvalidGrant,
    /// The client may not use this grant type or flow.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// The response type is not supported (only `code` is).
    UnsupportedResponseType,
    /// The scope is invalid, unknown or malformed.
    InvalidScope,
    /// The user (or the server) refused.
    AccessDenied,
    /// Device flow: the user has not answered yet.
    AuthorizationPending,
    /// Device flow: poll less often (the interval grew by 5 s).
    SlowDown,
    /// Device flow: the device code expired.
    ExpiredToken,
    /// The DPoP proof is missing, invalid, replayed or for another key.
    InvalidDpopProof,
    /// The `authorization_details` are invalid (RFC 9396).
    InvalidAuthorizationDetails,
    /// The `request_uri` is unknown, expired or used (RFC 9126).
    InvalidRequestUri,
    /// A redirect URI in a registration is not allowed (RFC 7591).
    InvalidRedirectUri,
    /// Some other registration metadata is not allowed (RFC 7591).
    InvalidClientMetadata,
    /// The server failed.
    ServerError,
    /// The server refuses for now (e.g. sign-in throttling); try later.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as it appears in the `error` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::InvalidAuthorizationDetails => "invalid_authorization_details",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status an error response with this code uses.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong. [`Error::code`] gives the OAuth error code
/// and [`Error::description`] a human sentence that is safe to show (it never
/// contains secrets or database details).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol error: the code and a description for `error_description`.
    #[error("{code}: {description}")]
    OAuth {
        /// The OAuth error code.
        code: ErrorCode,
        /// What is wrong, in plain words.
        description: String,
    },
    /// Sign-in failed: unknown email or wrong password (deliberately the same).
    #[error("the email address or the password is wrong")]
    InvalidCredentials,
    /// Too many failed sign-ins for this email from this address.
    #[error("too many failed sign-in attempts; try again in {} minute(s)", retry_after_secs.div_ceil(60).max(1))]
    Throttled {
        /// Seconds until a sign-in is accepted again.
        retry_after_secs: u64,
    },
    /// Sign-up: the email address already has an account.
    #[error("an account with this email address already exists")]
    EmailTaken,
    /// Sign-up: the email address is not valid.
    #[error("this is not a valid email address")]
    InvalidEmail,
    /// Sign-up: the password does not meet the rules.
    #[error("{0}")]
    InvalidPassword(String),
    /// No session, or it expired or was signed out.
    #[error("you are not signed in, or your session expired")]
    InvalidSession,
    /// The CSRF token of a form does not match the session's.
    #[error("the form expired or did not come from this site; reload the page and try again")]
    Csrf,
    /// A user, app, grant or code does not exist (or is not the caller's).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The server was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The control database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Something else failed inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A protocol error with `code`.
    pub fn oauth(code: ErrorCode, description: impl Into<String>) -> Self {
        Error::OAuth {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_scope`.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidScope, description)
    }

    /// `access_denied`.
    pub fn access_denied(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::AccessDenied, description)
    }

    /// `unauthorized_client`.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::UnauthorizedClient, description)
    }

    /// `invalid_dpop_proof`.
    pub fn invalid_dpop(description: impl Into<String>) -> Self {
        Self::oauth(ErrorCode::InvalidDpopProof, description)
    }

    /// The OAuth error code. Account errors map to the closest code:
    /// wrong credentials, bad session or CSRF → `access_denied`; throttling →
    /// `temporarily_unavailable`; sign-up problems and not-found →
    /// `invalid_request`; failures → `server_error`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::OAuth { code, .. } => *code,
            Error::InvalidCredentials | Error::InvalidSession | Error::Csrf => ErrorCode::AccessDenied,
            Error::Throttled { .. } => ErrorCode::TemporarilyUnavailable,
            Error::EmailTaken | Error::InvalidEmail | Error::InvalidPassword(_) | Error::NotFound(_) => {
                ErrorCode::InvalidRequest
            }
            Error::Config(_) | Error::Database(_) | Error::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// A description safe to show to users and clients (internal failures
    /// are not detailed; log the error itself for that).
    pub fn description(&self) -> String {
        match self {
            Error::OAuth { description, .. } => printable(description),
            Error::Config(_) | Error::Database(_) | Error::Internal(_) => "the server failed; try again later".into(),
            other => other.to_string(),
        }
    }

    /// The HTTP status to answer with: the code's, except 429 for throttling
    /// and 404 for not-found.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Throttled { .. } => 429,
            Error::NotFound(_) => 404,
            other => other.code().http_status(),
        }
    }

    /// The RFC 6749 §5.2 error body: `{"error": …, "error_description": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code().as_str(),
            "error_description": self.description(),
        })
    }
}

/// RFC 6749 allows only printable ASCII without `"` and `\` in
/// `error_description`; anything else is replaced.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}
