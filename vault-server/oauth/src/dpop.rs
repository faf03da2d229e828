//! DPoP (RFC 9449): verifying proofs at the token and PAR endpoints and at
//! the data API (the resource server), and binding capability tokens to the
//! proof key.
//!
//! # How an access token is bound
//!
//! Right after minting, this server binds the token to the proof key with
//! `coffer_auth::bind_to_key`, which appends one more block (like any
//! attenuation, it can only restrict, and a holder cannot remove it):
//!
//! ```text
//! cnf_jkt("<thumbprint>");
//! check if dpop_jkt("<thumbprint>");
//! ```
//!
//! The check passes only if the verifier supplies the fact
//! `dpop_jkt("<thumbprint>")`, which a resource server does after verifying
//! the DPoP proof of the request ([`OAuthServer::verify_dpop_for_resource`],
//! which also checks `ath`, the hash of the access token): the gateway
//! passes the proven thumbprint to `coffer_auth::Request::with_dpop_jkt`.
//! A bound token without a proof of its key is refused. The thumbprint is
//! also recorded in `access_tokens.dpop_jkt` and reported by introspection as
//! `cnf.jkt`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use url::Url;

use crate::store;
use crate::util::{micros, sha256_b64};
use crate::{Error, OAuthServer};

/// Longest DPoP proof accepted, in bytes.
pub const MAX_DPOP_PROOF_LEN: usize = 8 * 1024;
/// Longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// A DPoP proof as received: the `DPoP` header and the request it came with.
#[derive(Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// The `DPoP` header value (a compact JWS).
    pub jwt: String,
    /// The HTTP method of the request (`POST`).
    pub method: String,
    /// The full URL of the endpoint as the client addressed it, e.g.
    /// `https://vault.example/oauth/token` (query and fragment are ignored).
    pub url: String,
}

impl fmt::Debug for DpopProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopProof")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl DpopProof {
    /// A proof received with `method url`.
    pub fn new(jwt: impl Into<String>, method: impl Into<String>, url: impl Into<String>) -> Self {
        DpopProof {
            jwt: jwt.into(),
            method: method.into(),
            url: url.into(),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    htm: String,
    htu: String,
    iat: i64,
    jti: String,
    /// base64url SHA-256 of the access token; required at a resource server.
    #[serde(default)]
    ath: Option<String>,
}

/// The URL without query and fragment, normalized by the URL parser
/// (scheme and host case, default port).
fn htu_form(s: &str) -> Option<String> {
    let mut u = Url::parse(s).ok()?;
    u.set_query(None);
    u.set_fragment(None);
    Some(u.to_string())
}

/// Whether `s` is base64url (no padding) of exactly `len` bytes.
fn is_b64url_of(s: &str, len: usize) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD.decode(s).is_ok_and(|bytes| bytes.len() == len)
}

/// Checks the JOSE header as raw JSON: `typ`, `alg`, and a public `jwk`
/// without private members.
fn check_raw_header(jwt: &str) -> Result<Algorithm, Error> {
    let bad = Error::invalid_dpop;
    let header = jwt
        .split('.')
        .next()
        .ok_or_else(|| bad("the DPoP proof is not a JWS"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| bad("the DPoP proof header is not base64url"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("the DPoP proof header is not JSON"))?;
    if value.get("typ").and_then(|t| t.as_str()) != Some("dpop+jwt") {
        return Err(bad("the DPoP proof must have typ `dpop+jwt`"));
    }
    let alg = match value.get("alg").and_then(|a| a.as_str()) {
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        _ => return Err(bad("the DPoP proof must be signed with ES256 or EdDSA")),
    };
    let jwk = value
        .get("jwk")
        .and_then(|j| j.as_object())
        .ok_or_else(|| bad("the DPoP proof header must carry the public key as `jwk`"))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err(bad("the DPoP proof's jwk must not contain a private key"));
    }
    Ok(alg)
}

/// Checks that the JWK's key type and curve fit the algorithm and that its
/// coordinates are base64url of the right length (32 bytes each). The length
/// check matters: `jsonwebtoken`'s EdDSA verifier slices the key to 32 bytes
/// and would panic on a shorter one.
fn check_jwk(alg: Algorithm, jwk: &Jwk) -> Result<(), Error> {
    let ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256 && is_b64url_of(&ec.x, 32) && is_b64url_of(&ec.y, 32)
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519 && is_b64url_of(&okp.x, 32)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_dpop(
            "the DPoP key does not fit the algorithm (ES256 needs an EC P-256 key, EdDSA an Ed25519 key)",
        ))
    }
}

impl OAuthServer {
    /// Verifies a DPoP proof for a request to this server's token or PAR
    /// endpoint: header `typ` `dpop+jwt`, `alg` ES256 or EdDSA, a public
    /// `jwk`; the signature; `htm` and `htu` equal to the request's; `iat`
    /// within `dpop_iat_window` of now; a `jti` not seen before (kept in the
    /// database until the proof is too old). Returns the key's RFC 7638
    /// SHA-256 thumbprint. Any failure is `invalid_dpop_proof`.
    pub async fn verify_dpop(&self, proof: &DpopProof) -> Result<String, Error> {
        self.check_dpop(proof, None).await
    }

    /// Verifies a DPoP proof that came with a request to a protected resource
    /// (the data API) presenting `access_token` (RFC 9449 §4.3 and §7.1):
    /// everything [`OAuthServer::verify_dpop`] checks, and the `ath` claim,
    /// which must be the base64url SHA-256 of `access_token`. Returns the
    /// key's thumbprint, which the caller compares with the token's binding.
    /// Any failure is `invalid_dpop_proof`.
    pub async fn verify_dpop_for_resource(&self, proof: &DpopProof, access_token: &str) -> Result<String, Error> {
        self.check_dpop(proof, Some(access_token)).await
    }

    /// The checks of both: `access_token` is the token the proof must be
    /// bound to through `ath` (resource requests only). The `jti` is recorded
    /// last, so a proof refused for any other reason is not burnt.
    async fn check_dpop(&self, proof: &DpopProof, access_token: Option<&str>) -> Result<String, Error> {
        let bad = Error::invalid_dpop;
        if proof.jwt.len() > MAX_DPOP_PROOF_LEN {
            return Err(bad("the DPoP proof is too long"));
        }
        let alg = check_raw_header(&proof.jwt)?;
        let header = jsonwebtoken::decode_header(&proof.jwt).map_err(|_| bad("the DPoP proof header is invalid"))?;
        if header.alg != alg {
            return Err(bad("the DPoP proof header is invalid"));
        }
        let jwk = header.jwk.ok_or_else(|| bad("the DPoP proof has no jwk"))?;
        check_jwk(alg, &jwk)?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("the DPoP proof's jwk is not a usable key"))?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(&proof.jwt, &key, &validation)
            .map_err(|e| Error::invalid_dpop(format!("the DPoP proof does not verify: {e}")))?
            .claims;
        if claims.htm != proof.method {
            return Err(bad("the DPoP proof's htm does not match the request method"));
        }
        match (htu_form(&claims.htu), htu_form(&proof.url)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Err(bad("the DPoP proof's htu does not match the request URL")),
        }
        let now = self.now();
        let window = self.config.dpop_iat_window;
        let iat =
            chrono::DateTime::from_timestamp(claims.iat, 0).ok_or_else(|| bad("the DPoP proof's iat is invalid"))?;
        if iat < now - window || iat > now + window {
            return Err(bad("the DPoP proof's iat is too far from the server's time"));
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(bad("the DPoP proof needs a jti of 1 to 256 bytes"));
        }
        if let Some(token) = access_token {
            match claims.ath {
                None => return Err(bad("the DPoP proof has no ath (the hash of the access token)")),
                Some(ath) if ath != sha256_b64(token.as_bytes()) => {
                    return Err(bad("the DPoP proof's ath does not match the access token"));
                }
                Some(_) => {}
            }
        }
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| bad("the DPoP key has no thumbprint"))?;
        let jti_hash = crate::util::hash(&format!("{jkt}:{}", claims.jti));
        if !store::dpop::record_proof(&self.pool, &jti_hash, micros(iat + window + window)).await? {
            return Err(bad("the DPoP proof was already used (replayed jti)"));
        }
        Ok(jkt)
    }
}
