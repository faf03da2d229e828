//! Secrets, hashes, constant-time comparison and time conversion.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;

/// `N` random bytes from the operating system's RNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| Error::Internal(format!("the OS random number generator failed: {e}")))?;
    Ok(buf)
}

/// A new 256-bit secret, base64url without padding (43 characters).
pub(crate) fn new_secret() -> Result<String, Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// SHA-256 of a secret's text: what the database stores and looks up.
/// Secrets are 256-bit random values, so a fast hash is enough (no salt, no
/// stretching); a lookup by hash leaks nothing useful through timing.
pub(crate) fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// base64url (no padding) of SHA-256 of `data`: PKCE S256 and thumbprints.
pub(crate) fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// Constant-time equality of two byte strings (the length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether `s` is exactly 43 base64url characters (a 256-bit value).
pub(crate) fn is_b64_256(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Microseconds since the epoch, as stored in the control database.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The time of a stored microsecond count (out of range → the epoch).
pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// A JSON array of strings as stored in a TEXT column.
pub(crate) fn json_strings(text: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored JSON list is invalid: {e}")))
}

/// Text that is safe to echo in an error description: printable ASCII, cut
/// to 100 characters.
pub(crate) fn echo(s: &str) -> String {
    let mut out: String = s.chars().take(100).filter(|c| (' '..='~').contains(c)).collect();
    if s.chars().count() > 100 {
        out.push_str("...");
    }
    out
}
