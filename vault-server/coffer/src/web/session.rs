//! Cookies, the signed-in session, CSRF checks and the `next` address.
//!
//! - `coffer_session`: the session token (HttpOnly, SameSite=Lax, Path=/,
//!   Secure when the public URL is https). Forms of a signed-in user carry
//!   the session's CSRF token.
//! - `coffer_form`: a random token for the sign-up and sign-in forms, which
//!   have no session yet (double-submit: the form must carry the cookie's
//!   value, which another site can neither read nor set).
//!
//! When the public URL is https both names carry the `__Host-` prefix
//! (`__Host-coffer_session`): browsers then accept the cookie only with
//! `Secure`, `Path=/` and no `Domain`, so neither a plain-http page of the
//! same host nor a sibling subdomain can set or overwrite it (cookie
//! tossing). Over plain http (development on loopback) browsers refuse
//! such cookies, so the plain names are used there.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_consent_ui::fields;
use coffer_oauth::{Error, Session};

use super::AppState;
use super::forms::FormPairs;
use super::respond;

/// The session cookie (over plain http).
pub const SESSION_COOKIE: &str = "coffer_session";
/// The sign-up / sign-in form cookie (over plain http).
pub const FORM_COOKIE: &str = "coffer_form";
/// The session cookie when the public URL is https.
pub const SECURE_SESSION_COOKIE: &str = "__Host-coffer_session";
/// The sign-up / sign-in form cookie when the public URL is https.
pub const SECURE_FORM_COOKIE: &str = "__Host-coffer_form";

/// The session cookie's name on this server.
pub fn session_cookie(state: &AppState) -> &'static str {
    if state.secure_cookies {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The form cookie's name on this server.
pub fn form_cookie(state: &AppState) -> &'static str {
    if state.secure_cookies {
        SECURE_FORM_COOKIE
    } else {
        FORM_COOKIE
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https;
/// a session cookie without `max_age_secs`, deleted with `Some(0)`.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_secs {
        cookie.push_str(&format!("; Max-Age={}", age.max(0)));
    }
    if state.secure_cookies {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A new random token (256 bits, base64url).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `s` looks like one of our tokens (43 base64url characters).
pub fn is_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Equality that takes the same time wherever the inputs differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in user's session.
pub struct SignedIn {
    /// The session token (from the cookie).
    pub token: String,
    /// The session.
    pub session: Session,
}

impl SignedIn {
    /// Checks a form's CSRF token.
    pub fn check_csrf(&self, submitted: Option<&str>) -> bool {
        self.session.check_csrf(submitted.unwrap_or("")).is_ok()
    }
}

/// The request's live session, if any. A database failure is a 500 page.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, Response> {
    let Some(token) = cookie(headers, session_cookie(state)).filter(|t| is_token(t)) else {
        return Ok(None);
    };
    match state.services.oauth.session(&token).await {
        Ok(session) => Ok(Some(SignedIn { token, session })),
        Err(Error::InvalidSession) => Ok(None),
        Err(e) => Err(respond::server_error(state, &e)),
    }
}

/// A form posted by a signed-in user: the session and the form's fields,
/// after the CSRF check. Refused with the "signed out" page when there is
/// no session, and with the "form has expired" page (linking back to
/// `back`) when the CSRF token does not match.
pub async fn signed_in_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    back: &str,
) -> Result<(SignedIn, FormPairs), Response> {
    let form = FormPairs::parse(body);
    let Some(signed_in) = signed_in(state, headers).await? else {
        return Err(respond::signed_out(state));
    };
    if !signed_in.check_csrf(form.get(fields::CSRF)) {
        return Err(respond::csrf_refused(state, back));
    }
    Ok((signed_in, form))
}

/// `next` if it is a path on this site (`/…`, not `//…` or `/\…`, no
/// control characters, at most 8 KiB); otherwise `None`.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 8192
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| next.to_owned())
}

/// `path` with `next` as its query, if any.
pub fn with_next(path: &str, next: Option<&str>) -> String {
    match next {
        Some(n) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", n)
                .finish();
            format!("{path}?{query}")
        }
        None => path.to_owned(),
    }
}

/// Sends a visitor who is not signed in to the sign-in page, to come back
/// to `next` afterwards.
pub fn to_sign_in(next: &str) -> Response {
    respond::see_other(&with_next("/sign-in", safe_next(Some(next)).as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(safe_next(Some("/dashboard")).as_deref(), Some("/dashboard"));
        assert_eq!(
            safe_next(Some("/oauth/authorize?client_id=x&scope=a+b")).as_deref(),
            Some("/oauth/authorize?client_id=x&scope=a+b")
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "dashboard",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(
            with_next("/sign-in", Some("/a?b=c&d")),
            "/sign-in?next=%2Fa%3Fb%3Dc%26d"
        );
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; coffer_form=x"));
        headers.append(header::COOKIE, HeaderValue::from_static("coffer_session=abc"));
        assert_eq!(cookie(&headers, "coffer_form").as_deref(), Some("x"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "b"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
