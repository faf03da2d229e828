//! The Coffer query gateway: the one code path through which every front end
//! (the HTTP `/v1` API, SQL, later pgwire and the change stream) reads and
//! writes a vault on behalf of an app.
//!
//! A front end hands each request to [`Gateway::run`] with its
//! [`Operation`]: the token is authenticated ([`Gateway::authenticate`]: the
//! signature is verified and cached), then every table it touches is checked
//! against the token ([`Caller`]), and reads go through a catalog built from
//! the grant: only granted tables exist, each exposes only granted columns,
//! `own` scope shows only the app's rows ([`catalog`]). Writes check the
//! action and columns, stamp the app and go through the storage engine's
//! durable commit. [`Gateway::run`] records every authenticated request in
//! the vault's access log ([`access_log`]); refusals are typed
//! ([`GatewayError`], each with a stable code) and each front end maps them
//! to its own answers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
mod caller;
pub mod catalog;
pub mod changes;
pub mod describe;
mod error;
pub mod filter;
mod limits;
mod request;
pub mod rows;
pub mod sql;
pub mod values;

pub use access_log::{AccessEntry, AccessLog};
pub use caller::{Caller, ControlPlane, Credentials, DpopHeader, Gateway, Scheme, WriteAccess};
pub use coffer_query::QueryLimits;
pub use error::GatewayError;
pub use limits::RequestLimits;
pub use request::{Logged, Operation, Served};
