//! A Rust client of a Coffer vault.
//!
//! - [`OAuth`]: tokens for an app through the device flow
//!   ([`OAuth::device_authorization`], for command-line tools), the
//!   authorization code flow with PKCE and a loopback redirect
//!   ([`OAuth::loopback`], for desktop apps), and refresh
//!   ([`OAuth::refresh`]; a refresh token works once). Optionally DPoP
//!   ([`OAuth::with_dpop`], [`DpopKey`]): tokens bound to a key the app
//!   holds, each request carrying a proof.
//! - [`Client`]: the data API with those tokens. Tables are typed by the row
//!   types `coffer codegen --lang rust` writes ([`Table`], [`tables!`]):
//!   [`Client::table`] lists them with the rows API's filters, `select`,
//!   `order`, `limit` and cursor pages ([`Query`]), inserts, updates (with
//!   `if_seq`; a `409 conflict` carries the current row), batch updates and
//!   deletes; [`Client::sql`] runs a statement with parameters.
//! - [`ChangeStream`]: the live change stream as a [`futures::Stream`] that
//!   reconnects and resumes from its last event id.
//! - [`Error`]: a refused request carries the server's problem JSON
//!   ([`Problem`]), with the missing right for a `403`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod changes;
mod client;
mod dpop;
mod error;
mod table;

pub use auth::{DeviceAuthorization, LoopbackAuthorization, OAuth, Tokens};
pub use changes::{Change, ChangeEvent, ChangeStream, ChangesRequest, Notice, Op, PurgeEntry, PurgeKind};
pub use client::{Client, SqlColumn, SqlResult};
pub use dpop::DpopKey;
pub use error::{Error, Problem, Result};
pub use table::{Filter, JsonRow, Order, Page, Query, RowChange, Table, TableClient};
