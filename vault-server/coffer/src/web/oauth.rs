//! The OAuth endpoints that answer in JSON: RFC 8414 metadata, the token
//! endpoint (authorization code, refresh token, device code), PAR
//! (RFC 9126), device authorization (RFC 8628), revocation (RFC 7009),
//! introspection (RFC 7662) and dynamic registration (RFC 7591). Requests are
//! forms (no parameter may repeat), registration is JSON; errors are RFC 6749
//! §5.2 JSON with the status `coffer-oauth` gives.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_oauth::{ClientAuthForm, ClientCredentials, ClientMetadata, DpopProof, Error, ErrorCode, endpoints};
use serde::Deserialize;

use super::AppState;
use super::forms::oauth_params;
use super::respond::{json, oauth_error};

/// `GET /.well-known/oauth-authorization-server`, with the capability
/// tokens' root public key as `coffer_biscuit_public_key`.
pub async fn metadata(State(state): State<AppState>) -> Response {
    json(StatusCode::OK, &state.services.oauth.authorization_server_metadata())
}

fn authorization(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Error::invalid_request("send one Authorization header"));
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid_client("malformed Authorization header"))
        })
        .transpose()
}

/// The client's credentials: HTTP Basic or the form's fields.
fn credentials(headers: &HeaderMap, form: &ClientAuthForm) -> Result<ClientCredentials, Error> {
    form.credentials(authorization(headers)?)
}

/// The request's DPoP proof (RFC 9449), for `POST {issuer}{path}`. More than
/// one `DPoP` header is an invalid proof.
fn dpop(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Option<DpopProof>, Error> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::invalid_dpop("send one DPoP header"));
    }
    let jwt = first
        .to_str()
        .map_err(|_| Error::invalid_dpop("the DPoP header is not a JWT"))?;
    Ok(Some(DpopProof::new(jwt, "POST", format!("{}{path}", state.base_url))))
}

/// `POST /oauth/token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let params: coffer_oauth::TokenParams = oauth_params(&body)?;
        let client = ClientCredentials::from_request(
            authorization(&headers)?,
            params.client_id.as_deref(),
            params.client_secret.as_deref(),
        )?;
        let proof = dpop(&state, &headers, endpoints::TOKEN)?;
        state.services.oauth.token(&client, &params, proof.as_ref()).await
    }
    .await;
    match result {
        Ok(tokens) => json(StatusCode::OK, &tokens),
        Err(e) => oauth_error(&e),
    }
}

/// `POST /oauth/par`: 201 with the `request_uri`.
pub async fn par(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let auth: ClientAuthForm = oauth_params(&body)?;
        let params: coffer_oauth::AuthorizeParams = oauth_params(&body)?;
        let client = credentials(&headers, &auth)?;
        let proof = dpop(&state, &headers, endpoints::PAR)?;
        state
            .services
            .oauth
            .push_authorization_request(&client, params, proof.as_ref())
            .await
    }
    .await;
    match result {
        Ok(pushed) => json(StatusCode::CREATED, &pushed),
        Err(e) => oauth_error(&e),
    }
}

/// The scope fields of a device authorization request.
#[derive(Deserialize)]
struct DeviceParams {
    scope: Option<String>,
    authorization_details: Option<String>,
}

/// `POST /oauth/device`: a device code and the user code to type at `/device`.
pub async fn device_authorization(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let auth: ClientAuthForm = oauth_params(&body)?;
        let params: DeviceParams = oauth_params(&body)?;
        let client = credentials(&headers, &auth)?;
        state
            .services
            .oauth
            .start_device_authorization(
                &client,
                params.scope.as_deref(),
                params.authorization_details.as_deref(),
            )
            .await
    }
    .await;
    match result {
        Ok(device) => json(StatusCode::OK, &device),
        Err(e) => oauth_error(&e),
    }
}

/// The token field of revocation and introspection requests.
#[derive(Deserialize)]
struct TokenField {
    token: Option<String>,
}

async fn token_request(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ClientCredentials, String), Error> {
    let auth: ClientAuthForm = oauth_params(body)?;
    let field: TokenField = oauth_params(body)?;
    let client = credentials(headers, &auth)?;
    // Authenticate before saying anything about the request.
    state.services.oauth.authenticate_client(&client).await?;
    let token = field
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid_request("token is missing"))?;
    Ok((client, token))
}

/// `POST /oauth/revoke`: 200 with an empty body, whether or not the token
/// was known (RFC 7009 §2.2).
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let (client, token) = token_request(&state, &headers, &body).await?;
        state.services.oauth.revoke(&client, &token).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(&e),
    }
}

/// `POST /oauth/introspect`.
pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let (client, token) = token_request(&state, &headers, &body).await?;
        state.services.oauth.introspect(&client, &token).await
    }
    .await;
    match result {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(e) => oauth_error(&e),
    }
}

/// `POST /oauth/register` (RFC 7591): JSON in, 201 and the client's
/// information out (the secret, for a confidential client, only here).
/// Throttled per client address ([`super::REGISTRATIONS_PER_HOUR`]); when
/// the operator turned open registration off, 403 `access_denied`.
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if state.services.oauth.config().open_registration
        && let Err(wait) = state.register_limit.hit(&coffer_oauth::address_key(peer.ip()))
    {
        let secs = wait.as_secs().max(1);
        let error = Error::oauth(
            ErrorCode::TemporarilyUnavailable,
            format!(
                "too many app registrations from this address; try again in {} minute(s)",
                secs.div_ceil(60)
            ),
        );
        let mut response = json(StatusCode::TOO_MANY_REQUESTS, &error.to_json());
        super::respond::set_retry_after(&mut response, secs);
        return response;
    }
    let result = async {
        if !state.services.oauth.config().open_registration {
            // Refused before anything else is looked at.
            return state.services.oauth.register_client(ClientMetadata::default()).await;
        }
        if !is_json {
            return Err(Error::invalid_request("send the client metadata as application/json"));
        }
        let metadata: ClientMetadata = serde_json::from_slice(&body).map_err(|e| {
            Error::oauth(
                ErrorCode::InvalidClientMetadata,
                format!("the client metadata is not valid JSON of the right shape: {e}"),
            )
        })?;
        state.services.oauth.register_client(metadata).await
    }
    .await;
    match result {
        Ok(registered) => json(StatusCode::CREATED, &registered),
        Err(e) => oauth_error(&e),
    }
}
