//! DPoP (RFC 9449): a key the app holds, and the proofs it signs, so that
//! its tokens are bound to the key and useless to anyone who copies them.
//!
//! The proof is a compact JWS with `typ` `dpop+jwt`, signed with ES256,
//! carrying the public key as `jwk`, and the claims `htm` (the method),
//! `htu` (the URL without query), `iat`, a fresh `jti`, and for the data
//! API `ath` (the base64url SHA-256 of the access token), as the server's
//! verifier expects.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;
use sha2::{Digest, Sha256};

/// An ES256 (P-256) key for DPoP proofs. Cheap to clone; clones share the
/// key.
#[derive(Clone)]
pub struct DpopKey {
    signing: Arc<SigningKey>,
    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    jwk: serde_json::Value,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("jwk", &self.jwk)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> DpopKey {
        let signing = loop {
            if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        Self::from_signing_key(signing)
    }

    /// The key of a 32-byte P-256 secret scalar (to keep one key across
    /// runs: a bound refresh token needs proofs of the same key).
    pub fn from_secret_bytes(secret: &[u8]) -> crate::Result<DpopKey> {
        let signing = SigningKey::from_slice(secret)
            .map_err(|_| crate::Error::InvalidArgument("not a P-256 secret key".into()))?;
        Ok(Self::from_signing_key(signing))
    }

    /// The secret scalar, to store the key.
    pub fn secret_bytes(&self) -> Vec<u8> {
        self.signing.to_bytes().to_vec()
    }

    fn from_signing_key(signing: SigningKey) -> DpopKey {
        let point = signing.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().map(|x| x.as_slice()).unwrap_or_default()),
            "y": URL_SAFE_NO_PAD.encode(point.y().map(|y| y.as_slice()).unwrap_or_default()),
        });
        DpopKey {
            signing: Arc::new(signing),
            jwk,
        }
    }

    /// The key's JWK thumbprint (RFC 7638, SHA-256, base64url): the `jkt`
    /// a bound token names.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap_or_default(),
            self.jwk["y"].as_str().unwrap_or_default()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A proof for `method` on `url` (its query and fragment are left
    /// out), with `ath` for `access_token` when given.
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut claims = json!({
            "htm": method,
            "htu": htu,
            "iat": iat,
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>()),
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())));
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// The HTTP client of the `oauth2` crate's requests: reqwest, adding a
/// DPoP proof to each request when the app holds a key.
#[derive(Clone)]
pub(crate) struct OAuthHttp {
    pub(crate) http: reqwest::Client,
    pub(crate) dpop: Option<DpopKey>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = oauth2::HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, mut request: oauth2::HttpRequest) -> Self::Future {
        if let Some(key) = &self.dpop {
            let proof = key.proof(request.method().as_str(), &request.uri().to_string(), None);
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&proof) {
                request.headers_mut().insert("dpop", value);
            }
        }
        self.http.call(request)
    }
}
