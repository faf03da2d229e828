//! Form bodies and query strings as (key, value) pairs: the consent and
//! "change access" forms repeat the `line` field, and OAuth requests must
//! not repeat any parameter (RFC 6749 §3.1), so both need every pair.

use std::collections::HashSet;

use serde::de::DeserializeOwned;

/// Most parameters an OAuth request may carry. The largest real request (an
/// authorization request with PKCE, DPoP, `authorization_details` and client
/// authentication) has about fifteen; anything past this is refused before
/// it is looked at further, so a request with thousands of keys costs no more
/// than reading it once.
pub const MAX_OAUTH_PARAMS: usize = 64;

/// The decoded pairs of an `application/x-www-form-urlencoded` body or query.
#[derive(Debug, Default)]
pub struct FormPairs(Vec<(String, String)>);

impl FormPairs {
    /// Decodes `bytes`; undecodable input is an empty form (every field
    /// missing), which each handler refuses in its own words.
    pub fn parse(bytes: &[u8]) -> Self {
        FormPairs(serde_urlencoded::from_bytes(bytes).unwrap_or_default())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A key given more than once, if any (one pass over the pairs).
    pub fn repeated(&self) -> Option<&str> {
        let mut seen = HashSet::with_capacity(self.0.len());
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
    }
}

/// Decodes an OAuth request (form body or query) into `T`, refusing more
/// than [`MAX_OAUTH_PARAMS`] parameters, a repeated parameter and an
/// undecodable body with `invalid_request`. Linear in the size of the input.
pub fn oauth_params<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, coffer_oauth::Error> {
    // Count before decoding anything: `&` separates pairs (empty pieces are
    // skipped by the decoder, so they are not counted either).
    let count = bytes.split(|b| *b == b'&').filter(|piece| !piece.is_empty()).count();
    if count > MAX_OAUTH_PARAMS {
        return Err(coffer_oauth::Error::invalid_request(format!(
            "too many parameters ({count}); an OAuth request has at most {MAX_OAUTH_PARAMS}"
        )));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|_| coffer_oauth::Error::invalid_request("the request body is not form-encoded"))?;
    if let Some(key) = FormPairs(pairs).repeated() {
        return Err(coffer_oauth::Error::invalid_request(format!(
            "parameter `{}` is repeated",
            key.chars()
                .take(40)
                .filter(|c| (' '..='~').contains(c))
                .collect::<String>()
        )));
    }
    serde_urlencoded::from_bytes(bytes)
        .map_err(|_| coffer_oauth::Error::invalid_request("a parameter has an invalid value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_are_kept_and_repeats_found() {
        let form = FormPairs::parse(b"csrf_token=a&line=contacts.people%3Aread&line=notes.notes%3Aread&x=");
        assert_eq!(form.get("csrf_token"), Some("a"));
        assert_eq!(form.all("line"), ["contacts.people:read", "notes.notes:read"]);
        assert_eq!(form.get("x"), Some(""));
        assert_eq!(form.repeated(), Some("line"));
        assert_eq!(FormPairs::parse(b"a=1&b=2").repeated(), None);
        assert!(FormPairs::parse(b"\xff=%zz").get("a").is_none());

        #[derive(serde::Deserialize)]
        struct P {
            a: Option<String>,
        }
        assert_eq!(oauth_params::<P>(b"a=1&b=2").unwrap().a.as_deref(), Some("1"));
        let err = oauth_params::<P>(b"a=1&a=2").err().unwrap();
        assert_eq!(err.code(), coffer_oauth::ErrorCode::InvalidRequest);
        assert!(err.description().contains("`a` is repeated"));
    }

    #[test]
    fn many_parameters_are_refused_quickly() {
        #[derive(serde::Deserialize)]
        struct P {
            #[allow(dead_code)]
            a: Option<String>,
        }
        let at_limit: Vec<String> = (0..MAX_OAUTH_PARAMS).map(|i| format!("k{i}=v")).collect();
        assert!(oauth_params::<P>(at_limit.join("&").as_bytes()).is_ok());
        let many: Vec<String> = (0..50_000).map(|i| format!("k{i}=v")).collect();
        let started = std::time::Instant::now();
        let err = oauth_params::<P>(many.join("&").as_bytes()).err().unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        assert_eq!(err.code(), coffer_oauth::ErrorCode::InvalidRequest);
        assert!(
            err.description().contains("too many parameters (50000)"),
            "{}",
            err.description()
        );
        // The repeat check is linear too: 50,000 distinct keys in one form.
        let started = std::time::Instant::now();
        assert_eq!(FormPairs::parse(many.join("&").as_bytes()).repeated(), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
