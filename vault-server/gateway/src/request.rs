//! One request of a front end, from its credentials to its access log
//! entry: [`Gateway::run`] authenticates, runs the operation as the
//! [`Caller`] and records what it did in the vault's access log, so that no
//! front end names operations or writes the log itself.

use chrono::Utc;
use coffer_core::{AppId, TableName};

use crate::access_log::AccessEntry;
use crate::caller::{Caller, Credentials, Gateway};
use crate::error::GatewayError;

/// What a request does, as the vault's access log stores it and the user's
/// dashboard shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Reading rows (the rows API or a `SELECT`).
    Read,
    /// Adding rows.
    Insert,
    /// Changing rows.
    Update,
    /// Deleting rows.
    Delete,
    /// Listing the schemas and tables the token may use.
    Describe,
}

impl Operation {
    /// The name the access log stores: `read`, `insert`, `update`,
    /// `delete` or `describe`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Describe => "describe",
        }
    }
}

/// What an operation's result tells the access log.
pub trait Logged {
    /// Rows returned or written.
    fn rows(&self) -> u64;

    /// The operation and tables the result turned out to be about, when it
    /// learned them while running (SQL); `None` keeps those the request
    /// named.
    fn learned(&self) -> Option<(Operation, &[TableName])> {
        None
    }
}

/// How a request ended, and who made it.
#[derive(Debug)]
pub struct Served<T> {
    /// The app the token was for; `None` when the credentials were refused
    /// (nothing is recorded then: a refused token names no vault).
    pub app: Option<AppId>,
    /// The operation's result, or why the request was refused or failed.
    pub result: Result<T, GatewayError>,
}

impl Gateway {
    /// Runs one request: authenticates `credentials`, runs `op` as the
    /// caller, and records the request in the vault's access log with
    /// `operation`, `tables`, the rows the result counts and its outcome
    /// (`ok` or the refusal's [`GatewayError::code`]).
    pub async fn run<T, F, Fut>(
        &self,
        credentials: &Credentials,
        operation: Operation,
        tables: Vec<TableName>,
        op: F,
    ) -> Served<T>
    where
        T: Logged,
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let caller = match self.authenticate(credentials).await {
            Ok(caller) => caller,
            Err(e) => {
                return Served {
                    app: None,
                    result: Err(e),
                };
            }
        };
        let result = op(caller.clone()).await;
        let (operation, tables, rows, outcome) = match &result {
            Ok(done) => match done.learned() {
                Some((operation, tables)) => (operation, tables.to_vec(), done.rows(), "ok"),
                None => (operation, tables, done.rows(), "ok"),
            },
            Err(e) => (operation, tables, 0, e.code()),
        };
        self.access_log().record(
            caller.vault(),
            AccessEntry {
                at: Utc::now(),
                app: caller.app().clone(),
                operation: operation.as_str().to_owned(),
                tables,
                rows,
                outcome: outcome.to_owned(),
            },
        );
        Served {
            app: Some(caller.app().clone()),
            result,
        }
    }
}
