//! What can go wrong: [`Error`], and the problem JSON of a refused request
//! ([`Problem`]).

use serde::Deserialize;
use serde_json::{Map, Value};

/// The result of the SDK's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of a call to the vault or its OAuth server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data API refused the request; the server's problem JSON says why.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// The OAuth server refused a request with an OAuth error (RFC 6749
    /// section 5.2 or RFC 8628 section 3.5), e.g. `invalid_grant` for a
    /// refresh token that was already used.
    #[error("the OAuth server refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        /// The OAuth error code (`access_denied`, `invalid_grant`, …).
        error: String,
        /// The server's `error_description`, if it sent one.
        description: Option<String>,
    },
    /// The server could not be reached, or the connection failed.
    #[error("could not reach the server: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered something that is not what the API describes
    /// (not JSON, or JSON of another shape).
    #[error("unexpected answer from the server: {0}")]
    UnexpectedResponse(String),
    /// A redirect came back to the loopback listener with another `state`
    /// than the authorization request sent: not this request's answer.
    #[error("the authorization answer's state does not match the request's")]
    StateMismatch,
    /// The authorization answer on the loopback redirect carried an error
    /// (e.g. `access_denied` when the user chose Deny).
    #[error("the authorization was refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationRefused {
        /// The OAuth error code from the redirect.
        error: String,
        /// The `error_description` from the redirect, if any.
        description: Option<String>,
    },
    /// The loopback listener for the authorization redirect failed.
    #[error("the loopback redirect listener failed: {0}")]
    Loopback(#[from] std::io::Error),
    /// A value given to the SDK is not valid (a server URL, a table name).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The call needs a refresh token and the client holds none.
    #[error("no refresh token: the access token cannot be renewed")]
    NoRefreshToken,
    /// A JSON value could not be turned into the requested type, or a value
    /// into JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The problem JSON when the data API refused the request.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Problem(p) => Some(p),
            _ => None,
        }
    }

    /// The row as it is now when a write with `if_seq` was refused with
    /// `409 conflict` (`Some(None)` when the row was deleted meanwhile).
    pub fn conflict_current(&self) -> Option<Option<&Value>> {
        let problem = self.problem()?;
        (problem.kind() == Some("conflict")).then(|| problem.current.as_ref().filter(|v| !v.is_null()))
    }

    /// The row as it is now, read as `R`, when a write with `if_seq` was
    /// refused with `409 conflict`: `Some(Ok(None))` when it was deleted,
    /// `None` for any other error.
    pub fn conflict_row<R: serde::de::DeserializeOwned>(&self) -> Option<Result<Option<R>>> {
        let current = self.conflict_current()?;
        Some(
            current
                .map(|row| serde_json::from_value(row.clone()))
                .transpose()
                .map_err(Error::from),
        )
    }

    /// For `403 missing-right`: the right the token lacks, in scope syntax
    /// (e.g. `contacts.people(email):update`): ask for it in a new
    /// authorization.
    pub fn missing_right(&self) -> Option<&str> {
        self.problem()?.required.as_deref()
    }
}

/// An RFC 9457 problem document, as the data API sends with every refusal.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    /// The HTTP status of the answer.
    #[serde(default)]
    pub status: u16,
    /// The problem type, e.g. `urn:coffer:problem:missing-right`.
    #[serde(rename = "type", default)]
    pub type_uri: String,
    /// A short summary of the problem type.
    #[serde(default)]
    pub title: String,
    /// What happened, in plain words.
    #[serde(default)]
    pub detail: String,
    /// For `403 missing-right`: the right to ask for, in scope syntax
    /// (e.g. `contacts.people:create` or `contacts.people(email):update`).
    #[serde(default)]
    pub required: Option<String>,
    /// For `401 invalid-token`: why (`expired`, `revoked`, `grant_changed`, …).
    #[serde(default)]
    pub reason: Option<String>,
    /// For `409 conflict`: the row as it is now (`null` when deleted).
    #[serde(default)]
    pub current: Option<Value>,
    /// Every other member (`table`, `column`, `parameter`, `limit`, …).
    #[serde(flatten)]
    pub members: Map<String, Value>,
    /// The `Retry-After` header of a `429`, in seconds.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// The last part of a `urn:coffer:problem:` type (`missing-right`,
    /// `conflict`, …).
    pub fn kind(&self) -> Option<&str> {
        self.type_uri.strip_prefix("urn:coffer:problem:")
    }

    /// A problem for an answer that carried no problem JSON.
    pub(crate) fn from_status(status: u16, body: &str) -> Problem {
        Problem {
            status,
            type_uri: String::new(),
            title: String::new(),
            detail: body.chars().take(500).collect(),
            required: None,
            reason: None,
            current: None,
            members: Map::new(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.kind().unwrap_or(&self.type_uri))?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(required) = &self.required {
            write!(f, " (required: {required})")?;
        }
        Ok(())
    }
}
