//! RFC 8414 authorization server metadata and the endpoint paths.

use serde_json::{Value, json};

use crate::{GrantType, OAuthServer};

/// The paths of the endpoints, relative to the issuer. The HTTP layer mounts
/// its routes at these paths so the metadata stays true.
pub mod endpoints {
    /// Authorization endpoint (GET: consent page; POST: consent answer).
    pub const AUTHORIZE: &str = "/oauth/authorize";
    /// Token endpoint.
    pub const TOKEN: &str = "/oauth/token";
    /// Pushed authorization request endpoint (RFC 9126).
    pub const PAR: &str = "/oauth/par";
    /// Revocation endpoint (RFC 7009).
    pub const REVOKE: &str = "/oauth/revoke";
    /// Introspection endpoint (RFC 7662).
    pub const INTROSPECT: &str = "/oauth/introspect";
    /// Dynamic client registration endpoint (RFC 7591).
    pub const REGISTER: &str = "/oauth/register";
    /// Device authorization endpoint (RFC 8628 §3.1), where devices POST.
    pub const DEVICE_AUTHORIZATION: &str = "/oauth/device";
    /// The page where users type a device's user code (short, as users
    /// type it).
    pub const DEVICE_VERIFICATION: &str = "/device";
    /// Where this metadata is served (RFC 8414 §3).
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
}

impl OAuthServer {
    /// The RFC 8414 metadata document, with the biscuit root public key under
    /// `coffer_biscuit_public_key` (biscuit's `ed25519/<hex>` form).
    pub fn authorization_server_metadata(&self) -> Value {
        let issuer = &self.config.issuer;
        let url = |path: &str| format!("{issuer}{path}");
        let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
        let mut doc = json!({
            "issuer": issuer,
            "authorization_endpoint": url(endpoints::AUTHORIZE),
            "token_endpoint": url(endpoints::TOKEN),
            "pushed_authorization_request_endpoint": url(endpoints::PAR),
            "revocation_endpoint": url(endpoints::REVOKE),
            "introspection_endpoint": url(endpoints::INTROSPECT),
            "registration_endpoint": url(endpoints::REGISTER),
            "device_authorization_endpoint": url(endpoints::DEVICE_AUTHORIZATION),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GrantType::ALL.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "authorization_details_types_supported": [coffer_auth::grant::AUTHORIZATION_DETAILS_TYPE],
            "authorization_response_iss_parameter_supported": true,
            "require_pushed_authorization_requests": false,
            "coffer_biscuit_public_key": self.root.public_key().to_hex(),
        });
        if !self.config.open_registration
            && let Some(map) = doc.as_object_mut()
        {
            map.remove("registration_endpoint");
        }
        if !self.config.scopes_supported.is_empty()
            && let Some(map) = doc.as_object_mut()
        {
            map.insert("scopes_supported".into(), json!(self.config.scopes_supported));
        }
        doc
    }
}
