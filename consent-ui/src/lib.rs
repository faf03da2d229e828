//! Coffer's server-rendered pages: sign-up, sign-in, consent, device code,
//! dashboard, revoke confirmation, error and result pages.
//!
//! The pages need no build step and no JavaScript. Templates are embedded in
//! the binary ([`minijinja`], HTML auto-escaping on) and rendered from typed
//! contexts ([`views`]). They load nothing from other sites and carry no
//! inline scripts or styles, so they work under the strict content security
//! policy [`CONTENT_SECURITY_POLICY`]; the one stylesheet is served by the
//! server from [`stylesheet`].
//!
//! ```
//! use coffer_consent_ui::{Pages, ErrorPage};
//!
//! let pages = Pages::new();
//! let html = pages
//!     .error(&ErrorPage {
//!         title: "We did not send you back to the app".into(),
//!         detail: "This app's redirect address doesn't match its registration, \
//!                  so we did not send you back to it."
//!             .into(),
//!         hint: None,
//!         back: None,
//!     })
//!     .unwrap();
//! assert!(html.contains("<main"));
//! ```
#![forbid(unsafe_code)]

mod describe;
pub mod sample;
pub mod views;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value, escape_formatter};
use serde::Serialize;

pub use describe::describe_line;
pub use views::{
    AccessLogRow, AppChoice, AppView, ColumnView, ConnectedApp, ConsentLine, ConsentPage, DashboardActions,
    DashboardPage, DeleteAccountPage, DevicePage, DeviceState, DonePage, ErrorPage, Link, Outcome, RevokeConfirmPage,
    SignInPage, SignUpErrors, SignUpPage, TimeView, homepage_domain,
};

/// The content security policy the pages are written for. The server should
/// send it (as `Content-Security-Policy`) with every page.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'";

/// Where the pages link the stylesheet unless told otherwise
/// ([`Pages::with_stylesheet_href`]). Serve [`stylesheet`] there.
pub const STYLESHEET_PATH: &str = "/static/coffer.css";

const STYLESHEET: &str = include_str!("../static/coffer.css");

/// The pages' stylesheet: its content type and its bytes.
pub fn stylesheet() -> (&'static str, &'static [u8]) {
    ("text/css; charset=utf-8", STYLESHEET.as_bytes())
}

/// The names of the form fields the pages send, so the server's handlers and
/// the templates agree.
pub mod fields {
    /// The CSRF token, a hidden field of every POST form.
    pub const CSRF: &str = "csrf_token";
    /// Sign-up and sign-in: the email address.
    pub const EMAIL: &str = "email";
    /// Sign-up and sign-in: the password.
    pub const PASSWORD: &str = "password";
    /// Sign-up: the password typed again.
    pub const PASSWORD_CONFIRM: &str = "password_confirm";
    /// Sign-up and sign-in: where to continue afterwards (hidden, optional).
    pub const NEXT: &str = "next";
    /// Consent: the pending authorization request (hidden).
    pub const REQUEST_ID: &str = "request_id";
    /// Consent: the button pressed, `allow` or `deny`.
    pub const DECISION: &str = "decision";
    /// Consent and "Change access": one field per ticked line, its
    /// [`ConsentLine::id`](crate::ConsentLine::id). The field repeats, so
    /// decode the body with a decoder that keeps repeated keys.
    pub const LINE: &str = "line";
    /// Device: the code typed by the user.
    pub const USER_CODE: &str = "user_code";
    /// Dashboard and revoke confirmation: the grant (hidden).
    pub const GRANT_ID: &str = "grant_id";
    /// Revoke confirmation: `yes`.
    pub const CONFIRM: &str = "confirm";
    /// Access log filter (GET): the app to show, empty for all.
    pub const FILTER_APP: &str = "app";
}

/// A page could not be rendered. With the embedded templates and the typed
/// contexts this means a bug in this crate; the crate's tests render every
/// page.
#[derive(Debug, thiserror::Error)]
#[error("could not render page {page}: {source}")]
pub struct RenderError {
    /// The template that failed.
    pub page: &'static str,
    /// What went wrong.
    #[source]
    pub source: minijinja::Error,
}

const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("sign_up.html", include_str!("../templates/sign_up.html")),
    ("sign_in.html", include_str!("../templates/sign_in.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    ("device.html", include_str!("../templates/device.html")),
    ("dashboard.html", include_str!("../templates/dashboard.html")),
    ("revoke_confirm.html", include_str!("../templates/revoke_confirm.html")),
    ("delete_account.html", include_str!("../templates/delete_account.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("done.html", include_str!("../templates/done.html")),
];

/// The page renderer: the template environment, built once. It is cheap to
/// share (`Send + Sync`); keep one for the life of the server.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    /// The pages, linking the stylesheet at [`STYLESHEET_PATH`].
    ///
    /// # Panics
    ///
    /// If an embedded template does not parse, which the crate's tests rule out.
    pub fn new() -> Self {
        Self::with_stylesheet_href(STYLESHEET_PATH)
    }

    /// The pages, linking the stylesheet at `href` (for example a path with a
    /// version in it, or a relative file name for static previews).
    ///
    /// # Panics
    ///
    /// As [`Pages::new`].
    pub fn with_stylesheet_href(href: &str) -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        match SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build() {
            Ok(syntax) => env.set_syntax(syntax),
            Err(e) => panic!("template syntax settings: {e}"),
        }
        env.set_formatter(html_formatter);
        env.add_global("stylesheet_href", href.to_owned());
        env.add_filter("img_src", img_src);
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                panic!("embedded template {name} does not parse: {e}");
            }
        }
        Self { env }
    }

    fn render<T: Serialize>(&self, page: &'static str, ctx: &T) -> Result<String, RenderError> {
        self.env
            .get_template(page)
            .and_then(|t| t.render(Value::from(Serde(ctx))))
            .map_err(|source| RenderError { page, source })
    }

    /// The sign-up page.
    pub fn sign_up(&self, page: &SignUpPage) -> Result<String, RenderError> {
        self.render("sign_up.html", page)
    }

    /// The sign-in page.
    pub fn sign_in(&self, page: &SignInPage) -> Result<String, RenderError> {
        self.render("sign_in.html", page)
    }

    /// The consent page.
    pub fn consent(&self, page: &ConsentPage) -> Result<String, RenderError> {
        self.render("consent.html", page)
    }

    /// The device code page.
    pub fn device(&self, page: &DevicePage) -> Result<String, RenderError> {
        self.render("device.html", page)
    }

    /// The dashboard.
    pub fn dashboard(&self, page: &DashboardPage) -> Result<String, RenderError> {
        self.render("dashboard.html", page)
    }

    /// The page that confirms revoking an app's access.
    pub fn revoke_confirm(&self, page: &RevokeConfirmPage) -> Result<String, RenderError> {
        self.render("revoke_confirm.html", page)
    }

    /// The page that deletes the user's account.
    pub fn delete_account(&self, page: &DeleteAccountPage) -> Result<String, RenderError> {
        self.render("delete_account.html", page)
    }

    /// The error page.
    pub fn error(&self, page: &ErrorPage) -> Result<String, RenderError> {
        self.render("error.html", page)
    }

    /// The result page ("You can close this window").
    pub fn done(&self, page: &DonePage) -> Result<String, RenderError> {
        self.render("done.html", page)
    }
}

/// Writes a value into a page. In HTML it escapes `&`, `<`, `>`, `"` and `'`
/// (enough for text and for quoted attribute values; minijinja's own escaper
/// also escapes `/`, which makes every URL in the pages hard to read). Printing
/// `none` is an error rather than the word "none" on a page.
fn html_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_none() {
        return Err(Error::new(ErrorKind::InvalidOperation, "a template printed none"));
    }
    if value.is_safe() || *state.auto_escape() != AutoEscape::Html {
        return escape_formatter(out, state, value);
    }
    let text = value.to_string();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.write_str(&rest[..i])?;
        out.write_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        })?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)?;
    Ok(())
}

/// Template filter: the URL if an `<img>` may load it (an `https:` URL, a
/// site-relative path, or a `data:image/` URL), else none. (An SVG image in
/// `<img>` runs no scripts and loads nothing.)
fn img_src(url: Option<String>) -> Option<String> {
    let url = url?;
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let ok = lower.starts_with("https://")
        || (trimmed.starts_with('/') && !trimmed.starts_with("//") && !trimmed.starts_with("/\\"))
        || lower.starts_with("data:image/");
    let clean = !trimmed.chars().any(|c| c.is_control() || c.is_whitespace());
    (ok && clean).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn img_src_allows_only_safe_urls() {
        let ok = |u: &str| img_src(Some(u.into())).is_some();
        assert!(ok("https://notes.example/logo.png"));
        assert!(ok("/static/apps/1.png"));
        assert!(ok("data:image/png;base64,AAAA"));
        assert!(!ok("http://notes.example/logo.png"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("//evil.example/x.png"));
        assert!(!ok("data:text/html,hi"));
        assert!(ok("data:image/svg+xml,%3Csvg%3E"));
        assert!(!ok("https://a.example/x y.png"));
        assert!(img_src(None).is_none());
    }

    #[test]
    fn stylesheet_is_css() {
        let (ty, bytes) = stylesheet();
        assert_eq!(ty, "text/css; charset=utf-8");
        assert!(std::str::from_utf8(bytes).unwrap().contains(":focus-visible"));
    }

    #[test]
    fn homepage_domains() {
        assert_eq!(
            homepage_domain("https://Notes.Example.com:8443/app?x#y"),
            "notes.example.com"
        );
        assert_eq!(homepage_domain("https://user:pw@example.org"), "example.org");
        assert_eq!(homepage_domain("http://[::1]:8080/"), "[::1]");
        assert_eq!(homepage_domain("example.net/path"), "example.net");
        assert_eq!(homepage_domain("https://example.com./"), "example.com");
        assert_eq!(homepage_domain(""), "");
    }
}
