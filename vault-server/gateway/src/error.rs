//! What the gateway refuses or fails with: one variant per refusal kind, with
//! typed fields an app can act on (`required`, `column`, …) and a stable
//! code ([`GatewayError::code`]) that the access log stores. Each front end
//! maps the variants to its own answers (the HTTP API to a status and an
//! RFC 9457 problem whose `type` ends with the code).

use coffer_auth::Denied;
use coffer_storage::StorageError;
use serde_json::Value;

/// Everything a gateway request can end with other than success.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No usable token: missing, malformed, expired, badly signed, revoked,
    /// or minted for a grant version that changed since.
    #[error("{reason}")]
    InvalidToken {
        /// The refusal's short code (`expired`, `revoked`, …).
        code: &'static str,
        /// The same in plain words.
        reason: String,
    },
    /// The token names the table but not this action (or not these columns
    /// for a write).
    #[error("the token does not allow `{required}`")]
    MissingRight {
        /// The right the request needs, in scope syntax.
        required: String,
    },
    /// The table does not exist, or the token does not name it (the two are
    /// indistinguishable on purpose).
    #[error("table `{0}` does not exist")]
    TableNotFound(String),
    /// The row does not exist, or is outside the token's rows.
    #[error("row `{id}` of `{table}` does not exist")]
    RowNotFound {
        /// The table.
        table: String,
        /// The row id.
        id: String,
    },
    /// The column does not exist, or the token does not name it.
    #[error("column `{column}` does not exist in `{table}`")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A filter, order, limit or cursor that does not parse.
    #[error("parameter `{parameter}`: {reason}")]
    InvalidFilter {
        /// The query parameter.
        parameter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request body that is not the JSON asked for.
    #[error("{0}")]
    InvalidBody(String),
    /// A value of the wrong type, a missing required column, a bad id.
    #[error("{reason}")]
    InvalidRow {
        /// The offending column.
        column: String,
        /// What is wrong, with the table.
        reason: String,
    },
    /// `if_seq` did not match: the row changed or was deleted since.
    #[error("{reason}")]
    Conflict {
        /// What happened.
        reason: String,
        /// The row as it is now, limited to what the token may read (`null`
        /// when deleted or not readable).
        current: Value,
    },
    /// An insert named an id already in use. The answer is the same whoever
    /// holds the id (this app, another app, a row outside the token's grant)
    /// and carries nothing of that row.
    #[error("{table}: the id `{id}` is already in use; choose another id or leave `id` out")]
    IdInUse {
        /// The table written.
        table: String,
        /// The id the insert named.
        id: String,
    },
    /// The request body is larger than the server accepts.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// SQL that does not parse or plan, or is not allowed.
    #[error("{0}")]
    InvalidSql(String),
    /// The query needs more than one request may use (memory, result size,
    /// expression depth, number of filters, function output).
    #[error("{0}")]
    QueryLimit(String),
    /// The query ran past the time limit and was stopped; nothing was changed.
    #[error("the query ran longer than the limit of {seconds} s and was stopped; nothing was changed")]
    QueryTimeout {
        /// The limit in seconds.
        seconds: f64,
    },
    /// The grant already runs as many queries as it may at once.
    #[error("this app already runs {limit} queries on this vault at once; retry when one has finished")]
    TooManyRequests {
        /// Queries one grant may run at once.
        limit: usize,
    },
    /// A change feed cursor that cannot resume: older than the changes the
    /// vault keeps (decision 0025), or given when the grant read less than
    /// it reads now (the app lacks the rows it may now see). The app must
    /// load again from the start.
    #[error(
        "this cursor cannot resume: the vault no longer keeps the changes after it, or the grant now reads more than when it was given; load again without `since`"
    )]
    ResyncRequired,
    /// The server failed; nothing was changed.
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// The stable code of the refusal or failure, e.g. `missing-right`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidToken { .. } => "invalid-token",
            GatewayError::MissingRight { .. } => "missing-right",
            GatewayError::TableNotFound(_) => "table-not-found",
            GatewayError::RowNotFound { .. } => "row-not-found",
            GatewayError::UnknownColumn { .. } => "unknown-column",
            GatewayError::InvalidFilter { .. } => "invalid-filter",
            GatewayError::InvalidBody(_) => "invalid-body",
            GatewayError::InvalidRow { .. } => "invalid-row",
            GatewayError::Conflict { .. } => "conflict",
            GatewayError::IdInUse { .. } => "id-in-use",
            GatewayError::InvalidSql(_) => "invalid-sql",
            GatewayError::BodyTooLarge { .. } => "body-too-large",
            GatewayError::QueryLimit(_) => "query-limit",
            GatewayError::QueryTimeout { .. } => "query-timeout",
            GatewayError::TooManyRequests { .. } => "too-many-requests",
            GatewayError::ResyncRequired => "resync-required",
            GatewayError::Internal(_) => "server-error",
        }
    }

    pub(crate) fn invalid_token(denied: &Denied) -> Self {
        GatewayError::InvalidToken {
            code: denied.kind.code(),
            reason: denied.reason.clone(),
        }
    }

    pub(crate) fn filter(parameter: &str, reason: impl Into<String>) -> Self {
        GatewayError::InvalidFilter {
            parameter: parameter.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        GatewayError::Internal(e.to_string())
    }
}

impl From<StorageError> for GatewayError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidRow { table, column, reason } => GatewayError::InvalidRow {
                reason: format!("{table}: column `{column}`: {reason}"),
                column,
            },
            StorageError::RowNotFound { table, id } => GatewayError::RowNotFound {
                table: table.to_string(),
                id,
            },
            StorageError::TableNotFound(t) => GatewayError::TableNotFound(t.to_string()),
            // The same answer whether or not the caller may see the row that
            // holds the id, and nothing of that row.
            StorageError::RowExists { table, id } => GatewayError::IdInUse {
                table: table.to_string(),
                id,
            },
            e @ StorageError::Conflict { .. } => GatewayError::Conflict {
                reason: e.to_string(),
                current: Value::Null,
            },
            StorageError::VaultDeleted(_) | StorageError::VaultNotFound(_) => GatewayError::InvalidToken {
                code: "revoked",
                reason: "the vault no longer exists".into(),
            },
            other => GatewayError::Internal(other.to_string()),
        }
    }
}
