//! HTTP-level tests against the real `coffer` binary, one module per area,
//! in one test binary (one link instead of one per file).

mod batch_update;
mod changes;
mod changes_stream;
mod changes_subsets;
mod codegen;
#[allow(dead_code)]
mod common;
mod cors;
mod data_api;
mod dpop;
mod erasure;
mod flows;
mod guides;
mod hardening;
mod isolation;
mod oauth_client;
mod pg_clients;
mod published_schemas;
mod query_limits;
mod request_log;
mod schemathesis;
mod security;
mod serve;
mod timeouts;
mod token_cli;
mod unreadable_requests;
