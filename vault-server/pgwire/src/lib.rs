//! Coffer's PostgreSQL wire protocol front end.
//!
//! Apps, BI tools and scripts that speak Postgres reach a vault through this
//! listener with exactly the rights of their grant: the user name is the
//! app's client id, the password is an access token (the same biscuit the
//! HTTP API takes), and the database is `vault` ([`DATABASE`]). Every
//! statement goes through [`coffer_gateway::Gateway::run`], so the catalog is
//! the grant-confined one `/v1/sql` uses, the refusals are the gateway's
//! (mapped to SQLSTATEs in [`errors`]) and each statement is recorded in the
//! vault's access log. This crate only translates: credentials in, rows and
//! SQLSTATEs out.
//!
//! What a session may do: the simple query protocol (several statements in
//! one query, each atomic on its own), the extended protocol (parse, bind,
//! describe, execute, typed parameters, text and binary formats for the
//! types in [`types`]), and the probes drivers send at connect time
//! (`SELECT version()`, `SHOW`, `SET`, `BEGIN`/`COMMIT`/`ROLLBACK`; see
//! [`statements`]), and `COPY … TO STDOUT` / `COPY … FROM STDIN` in the
//! text format or CSV. psql's `\dt`, `\d table`, `\dn` and `\l` read a
//! `pg_catalog` and `information_schema` built from the confined catalog
//! ([`catalog`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
pub mod catalog;
mod column_names;
mod connection;
mod copy_in;
pub mod errors;
mod handlers;
mod server;
pub mod statements;
mod tls;
pub mod types;

pub use server::{Listener, PgwireError, PgwireLimits, serve};
pub use tls::{PgwireTls, TlsError};

/// The only database name a session may ask for.
pub const DATABASE: &str = "vault";

/// The server version reported to clients (`server_version`, `SHOW
/// server_version`, `SELECT version()`): the PostgreSQL protocol and
/// behaviour this front end follows.
pub const SERVER_VERSION: &str = "16.6";
