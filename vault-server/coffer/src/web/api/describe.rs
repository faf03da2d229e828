//! `GET /v1/schemas` and `GET /v1/tables`: what the token can see.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use coffer_gateway::{Operation, describe};

use super::openapi::{Problem, SchemasDoc, TablesDoc};
use super::{ApiCredentials, Done, serve};
use crate::web::AppState;

/// With a token: the granted tables of each schema, with the columns the
/// token may use. Without one (no `Authorization` header): every schema
/// this server offers ([`super::schemas::list`]).
#[utoipa::path(
    get, path = "/v1/schemas", tag = "describe",
    responses(
        (status = 200, description = "With a token: the schemas, tables and columns it can see. Without one: every schema the server offers", body = SchemasDoc),
        (status = 401, description = "A token that is not valid", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = []), ("dpop" = []))
)]
pub async fn schemas(State(state): State<AppState>, headers: HeaderMap, credentials: ApiCredentials) -> Response {
    if !headers.contains_key(header::AUTHORIZATION) {
        return super::schemas::list(&state).await;
    }
    describe_grant(&state, &credentials, Described::Schemas).await
}

/// Each granted table with, per action, its columns and rows.
#[utoipa::path(
    get, path = "/v1/tables", tag = "describe",
    responses(
        (status = 200, description = "Granted tables and what each action may touch", body = TablesDoc),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("dpop" = []))
)]
pub async fn tables(State(state): State<AppState>, credentials: ApiCredentials) -> Response {
    describe_grant(&state, &credentials, Described::Tables).await
}

/// Which description of the grant to answer.
enum Described {
    Schemas,
    Tables,
}

/// Answers a description of the caller's grant.
async fn describe_grant(state: &AppState, credentials: &ApiCredentials, what: Described) -> Response {
    serve(
        state,
        credentials,
        Operation::Describe,
        Vec::new(),
        |caller| async move {
            let body = match what {
                Described::Schemas => describe::schemas(&caller).await?,
                Described::Tables => describe::tables(&caller).await?,
            };
            Ok(Done {
                status: StatusCode::OK,
                body: Some(body),
                rows: 0,
            })
        },
    )
    .await
}
