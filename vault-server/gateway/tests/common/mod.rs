//! What the gateway's test binaries share beyond `coffer-test-support`'s
//! [`World`] (the gateway in-process over a real engine, with real tokens):
//! listing rows and reading refusals.
#![allow(dead_code, unused_imports)]

use coffer_core::TableName;
use coffer_gateway::filter::ListQuery;
use coffer_gateway::{Caller, GatewayError, rows};
pub use coffer_test_support::gateway::World;
pub use coffer_test_support::{people, values};

pub fn query(pairs: &[(&str, &str)]) -> ListQuery {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    ListQuery::parse(&pairs).unwrap()
}

pub async fn all_rows(caller: &Caller, table: &TableName) -> Vec<rows::Row> {
    rows::list(caller, table, &query(&[("limit", "1000")]))
        .await
        .unwrap()
        .rows
}

/// Everything an error tells the caller: its code, its text and its fields.
pub fn told(e: &GatewayError) -> String {
    format!("{} {e} {e:?}", e.code())
}

/// Whether `e` says the request itself is malformed (a bad statement,
/// filter, column or body).
pub fn bad_request(e: &GatewayError) -> bool {
    matches!(
        e.code(),
        "invalid-sql" | "invalid-filter" | "unknown-column" | "invalid-body"
    )
}

/// Whether `e` refuses the request (the caller's doing), rather than the
/// server failing or the query being stopped.
pub fn refused(e: &GatewayError) -> bool {
    !matches!(e.code(), "server-error" | "query-timeout")
}
