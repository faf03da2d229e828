//! The gateway's refusals as Postgres errors: each [`GatewayError`] variant
//! has its SQLSTATE, and the message is the gateway's own text (which never
//! carries a stored value the caller may not read). A server failure's text
//! is logged, not sent.
//!
//! | refusal | SQLSTATE |
//! |---|---|
//! | no usable token (at connect) | `28P01` invalid_password |
//! | token expired or revoked during a session | `28000` (FATAL: the session ends) |
//! | table not granted or missing | `42P01` undefined_table |
//! | column not granted or missing | `42703` undefined_column |
//! | grant lacks the right | `42501` insufficient_privilege |
//! | SQL that does not parse | `42601` syntax_error |
//! | a statement kind not allowed | `0A000` feature_not_supported |
//! | other SQL the planner refuses | `42000` |
//! | a value of the wrong type, or one that cannot be converted | `22P02` invalid_text_representation |
//! | a date or time parameter in no ISO form | `22007` invalid_datetime_format |
//! | division by zero, overflow while running | `22012`, `22003` |
//! | another value that failed while running | `22000` data_exception |
//! | an id already in use | `23505` unique_violation |
//! | a row changed meanwhile (`if_seq`) | `40001` serialization_failure |
//! | result, depth, memory or size limit | `54000` program_limit_exceeded |
//! | the query time limit | `57014` query_canceled |
//! | too many queries at once | `53300` too_many_connections |
//! | server failure | `XX000` internal_error |

use coffer_gateway::GatewayError;
use pgwire::error::{ErrorInfo, PgWireError};

/// `ERROR`: the statement failed, the session goes on.
pub const ERROR: &str = "ERROR";
/// `FATAL`: the session ends.
pub const FATAL: &str = "FATAL";

/// An error with `severity`, `code` and `message`.
pub fn info(severity: &str, code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(severity.to_owned(), code.to_owned(), message.into())
}

/// The same, as the error pgwire sends.
pub fn wire(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(info(severity, code, message)))
}

/// The SQLSTATE of a refusal.
pub fn sqlstate(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::InvalidToken { .. } => "28000",
        GatewayError::MissingRight { .. } => "42501",
        GatewayError::TableNotFound(_) => "42P01",
        GatewayError::RowNotFound { .. } => "P0002",
        GatewayError::UnknownColumn { .. } => "42703",
        GatewayError::InvalidFilter { .. } | GatewayError::InvalidBody(_) => "22023",
        GatewayError::InvalidRow { .. } => "22P02",
        GatewayError::Conflict { .. } => "40001",
        GatewayError::IdInUse { .. } => "23505",
        GatewayError::BodyTooLarge { .. } | GatewayError::QueryLimit(_) => "54000",
        GatewayError::QueryTimeout { .. } => "57014",
        GatewayError::TooManyRequests { .. } => "53300",
        // Only the change feed answers it; no statement does.
        GatewayError::ResyncRequired => "55000",
        GatewayError::InvalidSql(message) => sql_state_of(message),
        GatewayError::Internal(_) => "XX000",
    }
}

/// The SQLSTATE of SQL the gateway refused, by the kind of refusal its text
/// names (the gateway's `InvalidSql` covers parsing, planning and running).
fn sql_state_of(message: &str) -> &'static str {
    if message.starts_with("SQL error: ParserError") || message.starts_with("sql parser error") {
        "42601"
    } else if message.contains("No field named") {
        "42703"
    } else if message.starts_with("parameter $")
        || message.starts_with("Arrow error: Cast error")
        || message.starts_with("Arrow error: Parser error")
    {
        // A parameter, or a literal the planner cast, that its type cannot
        // be read from.
        "22P02"
    } else if message.starts_with("only SELECT, INSERT, UPDATE and DELETE")
        || message.contains("not supported")
        || message.starts_with("This feature is not implemented")
    {
        "0A000"
    } else if let Some(what) = message.strip_prefix("the statement failed while running: ") {
        if what.starts_with("a value could not be converted") {
            "22P02"
        } else if what.starts_with("division by zero") {
            "22012"
        } else if what.starts_with("arithmetic overflow") {
            "22003"
        } else {
            "22000"
        }
    } else if message.starts_with("the statement is longer than") {
        "54000"
    } else {
        "42000"
    }
}

/// A refused statement as the error sent to the client. An invalid token
/// ends the session (`FATAL`); every other refusal fails the statement.
pub fn statement_error(error: &GatewayError) -> ErrorInfo {
    match error {
        GatewayError::InvalidToken { reason, .. } => info(
            FATAL,
            "28000",
            format!("the session's access token is no longer valid ({reason}); connect again with a new token"),
        ),
        GatewayError::Internal(text) => {
            tracing::warn!(error = %text, "a pgwire statement failed on the server");
            info(
                ERROR,
                "XX000",
                "the server could not finish this statement; nothing was changed",
            )
        }
        other => {
            let mut e = info(ERROR, sqlstate(other), other.to_string());
            if let GatewayError::MissingRight { required } = other {
                e.hint = Some(format!("the grant needs `{required}`"));
            }
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_sqlstate() {
        assert_eq!(sqlstate(&GatewayError::TableNotFound("a.b".into())), "42P01");
        assert_eq!(
            sqlstate(&GatewayError::InvalidSql(
                "Schema error: No field named secret. Valid fields are a.".into()
            )),
            "42703"
        );
        assert_eq!(
            sqlstate(&GatewayError::InvalidSql("SQL error: ParserError(\"x\")".into())),
            "42601"
        );
        assert_eq!(sqlstate(&GatewayError::QueryTimeout { seconds: 5.0 }), "57014");
        assert_eq!(
            sqlstate(&GatewayError::InvalidSql(
                "Arrow error: Cast error: Cannot cast string 'x' to value of Date32 type".into()
            )),
            "22P02"
        );
        assert_eq!(
            sqlstate(&GatewayError::InvalidSql(
                "Error during planning: Insert-returning clause not supported".into()
            )),
            "0A000"
        );
        assert_eq!(
            sqlstate(&GatewayError::InvalidSql(
                "Arrow error: Cast error: Casting from Utf8 to Date32 not supported".into()
            )),
            "22P02"
        );
        for (what, code) in [
            ("a value could not be converted to the type asked for", "22P02"),
            ("division by zero", "22012"),
            ("arithmetic overflow", "22003"),
            ("a value could not be processed", "22000"),
        ] {
            let message = format!("the statement failed while running: {what} (the value is not shown)");
            assert_eq!(sqlstate(&GatewayError::InvalidSql(message)), code, "{what}");
        }
        let fatal = statement_error(&GatewayError::InvalidToken {
            code: "revoked",
            reason: "the grant was revoked".into(),
        });
        assert_eq!(fatal.severity, FATAL);
        let hidden = statement_error(&GatewayError::Internal("/secret/path".into()));
        assert!(!hidden.message.contains("secret"));
    }
}
