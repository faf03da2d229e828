//! The Coffer query gateway: the one code path through which every front end
//! (the HTTP `/v1` API, SQL, later pgwire and the change stream) reads and
//! writes a vault on behalf of an app.
//!
//! A request is authenticated once ([`Gateway::authenticate`]: the token's
//! signature is verified and cached), then every table it touches is checked
//! against the token ([`Caller`]), and reads go through a catalog built from
//! the grant: only granted tables exist, each exposes only granted columns,
//! `own` scope shows only the app's rows ([`catalog`]). Writes check the
//! action and columns, stamp the app and go through the storage engine's
//! durable commit. Every request is recorded in the vault's access log
//! ([`access_log`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
mod caller;
pub mod catalog;
pub mod describe;
mod error;
pub mod filter;
mod limits;
pub mod rows;
pub mod sql;
pub mod values;

pub use access_log::{AccessEntry, AccessLog};
pub use caller::{Caller, ControlPlane, Credentials, DpopHeader, Gateway, Scheme, WriteAccess};
pub use coffer_query::QueryLimits;
pub use error::GatewayError;
pub use limits::RequestLimits;
