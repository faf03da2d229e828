//! The Coffer server as a library: the `coffer` binary's command line, its
//! configuration, the opened services and the HTTP router. The benchmark
//! program serves the same router in-process.
#![forbid(unsafe_code)]

mod accounts;
pub mod cli;
pub mod config;
pub mod server;
pub mod services;
mod unreadable_requests;
pub mod web;

pub use accounts::create_account;
