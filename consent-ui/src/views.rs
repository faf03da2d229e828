//! The typed contexts the pages render. Every struct here is plain data: the
//! server fills it in, and [`crate::Pages`] turns it into HTML. Every string is
//! escaped when it is rendered, so app names, descriptions and user input can
//! be passed as they are.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// An app (OAuth client) as the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppView {
    /// The name the app registered. Anyone can register any name, which is
    /// why the pages also show [`AppView::homepage_domain`].
    pub name: String,
    /// The app's homepage URL, as registered.
    pub homepage: String,
    /// The host name of the homepage, shown prominently so a user can spot an
    /// app that borrows another's name. Pass the ASCII (punycode) form of an
    /// internationalized name, so that look-alike letters show up as `xn--…`.
    pub homepage_domain: String,
    /// The app's logo. Only `https:` URLs, site-relative paths (`/…`) and
    /// `data:image/…` URLs are shown; anything else is left out and a
    /// placeholder with the name's first letter is shown instead.
    pub logo_url: Option<String>,
    /// The host the user's answer (the authorization code) is sent to: the
    /// redirect URI's. The consent page always shows it when there is one,
    /// because it, not the homepage, says who gets the access. `None` on the
    /// device flow, where the device polls for its token.
    pub redirect_domain: Option<String>,
    /// Whether the homepage is on the redirect host (the same host, or one
    /// differing only by a leading `www.`). The homepage is whatever the app
    /// registered, so the page marks one on another host as not verified.
    pub homepage_verified: bool,
}

impl AppView {
    /// An app view whose [`homepage_domain`](AppView::homepage_domain) is
    /// taken from `homepage` with [`homepage_domain`]. An empty `homepage`
    /// means the app gave none. Without a redirect URI
    /// ([`AppView::with_redirect_uri`]) the homepage is not verified.
    pub fn new(name: impl Into<String>, homepage: impl Into<String>, logo_url: Option<String>) -> Self {
        let homepage = homepage.into();
        Self {
            name: name.into(),
            homepage_domain: if homepage.trim().is_empty() {
                String::new()
            } else {
                homepage_domain(&homepage)
            },
            homepage,
            logo_url,
            redirect_domain: None,
            homepage_verified: false,
        }
    }

    /// The same app, answering to `redirect_uri`: sets
    /// [`redirect_domain`](AppView::redirect_domain) and whether the homepage
    /// is verified by it.
    pub fn with_redirect_uri(mut self, redirect_uri: &str) -> Self {
        let redirect = homepage_domain(redirect_uri);
        let bare = |host: &str| host.strip_prefix("www.").unwrap_or(host).to_owned();
        self.homepage_verified = !self.homepage_domain.is_empty() && bare(&self.homepage_domain) == bare(&redirect);
        self.redirect_domain = Some(redirect);
        self
    }
}

/// The host part of a URL, lower case, without scheme, user info, port, path,
/// query or fragment: `https://Notes.Example.com:8443/app?x` gives
/// `notes.example.com`. A bracketed IPv6 host keeps its brackets. Text that
/// has no host gives itself, trimmed, so the user still sees something.
pub fn homepage_domain(url: &str) -> String {
    let url = url.trim();
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url.strip_prefix("//").unwrap_or(url),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port, |i| &host_port[..=i])
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        url.to_owned()
    } else {
        host.to_lowercase()
    }
}

/// One column a consent line covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnView {
    /// The column's name in the schema, e.g. `birthday`.
    pub name: String,
    /// What the column holds, in plain words (from the schema file).
    pub description: String,
    /// The schema's `sensitive` label, e.g. `date of birth`; shown as
    /// "Sensitive: date of birth".
    pub sensitive: Option<String>,
}

/// One line of a grant in plain words: a table, the actions on it, the
/// columns and the rows. The consent page shows each new line as a checkbox;
/// the dashboard shows the same lines in its "Change access" form. Build one
/// with [`crate::describe_line`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentLine {
    /// What the form sends back for this line when its checkbox is ticked
    /// (field [`crate::fields::LINE`]). [`crate::describe_line`] uses the
    /// line's canonical scope token, e.g. `contacts.people:read+write:own`.
    pub id: String,
    /// The table, `schema.table`, e.g. `contacts.people`.
    pub table: String,
    /// The whole line as one sentence, e.g. "See and add the people in your
    /// address book". This is the checkbox's label.
    pub title: String,
    /// The actions alone, e.g. "See and add".
    pub actions_text: String,
    /// The columns the line covers, in schema order.
    pub columns: Vec<ColumnView>,
    /// Whether the line covers every column of the table (no column list).
    pub all_columns: bool,
    /// Whether the line covers only the rows this app creates (row scope `own`).
    pub own_rows_only: bool,
    /// Whether the checkbox starts ticked.
    pub checked: bool,
    /// Whether the user allowed this line before. The consent page lists such
    /// lines under "You already allowed" instead of as checkboxes.
    pub already_granted: bool,
    /// Who defined the table's schema when it is not one of Coffer's own,
    /// e.g. `Acme Recipes` (an app that published it) or `the operator of
    /// this server`; the page says so beside the table. `None`: built into
    /// Coffer.
    pub publisher: Option<String>,
}

/// The sign-up page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SignUpPage {
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// Where the form posts.
    pub form_action: String,
    /// The email address to fill in again after an error.
    pub email: String,
    /// Problems with the last attempt, if any.
    pub errors: SignUpErrors,
    /// The shortest password accepted, stated next to the password field.
    pub password_min_length: usize,
    /// The sign-in page, for people who already have an account.
    pub sign_in_href: String,
    /// Where to continue after signing up (e.g. back to a consent request),
    /// sent back as field [`crate::fields::NEXT`].
    pub next: Option<String>,
}

/// Problems found in a sign-up attempt, one message per field. Each message
/// is shown next to its field and repeated in a summary at the top.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SignUpErrors {
    /// A problem that belongs to no single field, e.g. "Something went wrong".
    pub form: Option<String>,
    /// A problem with the email address.
    pub email: Option<String>,
    /// A problem with the password.
    pub password: Option<String>,
    /// A problem with the password confirmation.
    pub confirm: Option<String>,
}

impl SignUpErrors {
    /// Whether there is any problem to show.
    pub fn any(&self) -> bool {
        self.form.is_some() || self.email.is_some() || self.password.is_some() || self.confirm.is_some()
    }
}

/// The sign-in page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SignInPage {
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// Where the form posts.
    pub form_action: String,
    /// The email address to fill in again after an error.
    pub email: String,
    /// Why the last attempt failed, e.g. "That email and password don't match
    /// an account."
    pub error: Option<String>,
    /// Shown when sign-in is throttled, e.g. "Too many attempts. Try again in
    /// 5 minutes."
    pub throttled: Option<String>,
    /// The sign-up page ("Create an account").
    pub sign_up_href: String,
    /// Where to continue after signing in, sent back as field
    /// [`crate::fields::NEXT`].
    pub next: Option<String>,
    /// A neutral message above the form, e.g. after a sign-up: "Now sign in
    /// with the email and password you chose."
    pub notice: Option<String>,
}

/// The consent page: an app asks for access to the user's vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentPage {
    /// The app that asks.
    pub app: AppView,
    /// What the app asks for. Lines with
    /// [`already_granted`](ConsentLine::already_granted) set are shown as
    /// already allowed; the others are checkboxes.
    pub lines: Vec<ConsentLine>,
    /// What the user already allowed this app, when the request adds to an
    /// existing grant. Shown as "You already allowed", without checkboxes.
    pub existing: Vec<ConsentLine>,
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// The pending authorization request, sent back as field
    /// [`crate::fields::REQUEST_ID`].
    pub request_id: String,
    /// Where the form posts. The pressed button is sent as field
    /// [`crate::fields::DECISION`]: `allow` or `deny`; each ticked line as
    /// field [`crate::fields::LINE`].
    pub form_action: String,
}

/// Which message the device page shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Ask for the code shown on the device.
    #[default]
    Enter,
    /// The user allowed the device's request.
    Approved,
    /// The user denied the device's request.
    Denied,
    /// The code is too old (or was already used).
    Expired,
}

/// The device page (OAuth device authorization, RFC 8628): the user types the
/// code shown by a CLI or another device, then sees the consent page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DevicePage {
    /// Which message to show.
    pub state: DeviceState,
    /// The code to fill in, e.g. from `verification_uri_complete`, or the
    /// code just typed after an error.
    pub code: String,
    /// Why the last code was not accepted, e.g. "We don't know that code."
    pub error: Option<String>,
    /// The app's name, for the approved / denied messages.
    pub app_name: Option<String>,
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// Where the code form posts; the code is sent as field
    /// [`crate::fields::USER_CODE`]. The expired message links here to start
    /// again.
    pub form_action: String,
}

/// A point in time: machine-readable for `<time datetime>`, and as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimeView {
    /// RFC 3339, e.g. `2025-11-23T11:49:00Z`.
    pub datetime: String,
    /// For people, e.g. `23 Nov 2025, 11:49 UTC`.
    pub text: String,
}

impl TimeView {
    /// A time with both forms given.
    pub fn new(datetime: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            datetime: datetime.into(),
            text: text.into(),
        }
    }

    /// A UTC time, written like `23 Nov 2025, 11:49 UTC`.
    pub fn from_utc(at: DateTime<Utc>) -> Self {
        Self {
            datetime: at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            text: at.format("%-d %b %Y, %H:%M UTC").to_string(),
        }
    }
}

/// An app the user allowed, on the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectedApp {
    /// The grant, sent back as field [`crate::fields::GRANT_ID`] by the
    /// "Change access" and "Revoke access" forms.
    pub grant_id: String,
    /// The app's name.
    pub name: String,
    /// The host name of the app's homepage.
    pub homepage_domain: String,
    /// When the user allowed the app.
    pub granted_at: TimeView,
    /// The app's last request to the vault; shown as "never" when `None`.
    pub last_access: Option<TimeView>,
    /// What the app may do. Each line is a ticked checkbox of the "Change
    /// access" form; unticking lines and saving narrows the grant.
    pub lines: Vec<ConsentLine>,
}

/// One entry of the vault's access log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessLogRow {
    /// When it happened.
    pub time: TimeView,
    /// The app's name.
    pub app: String,
    /// What the app did, in words, e.g. "Read 12 rows from contacts.people"
    /// or "Tried to add rows to notes.notes".
    pub summary: String,
    /// How it ended, e.g. "Allowed" or "Refused: not allowed".
    pub outcome: String,
    /// Whether it succeeded; a failure also gets a visible "Refused" style.
    pub ok: bool,
}

impl AccessLogRow {
    /// A logged request in plain words.
    ///
    /// `operation` is `read`, `insert`, `update`, `delete` or `describe`
    /// (listing the tables an app may use); any other word is shown as it
    /// is. `tables` are `schema.table` names, `rows` the rows returned (read)
    /// or written, `outcome` is `ok` or the request's problem code
    /// (`missing-right`, `table-not-found`, `server-error`, …). For example
    /// `read`, `[contacts.people]`, 12, `ok` reads "Read 12 rows from
    /// contacts.people", "Allowed"; the same refused with `missing-right`
    /// reads "Tried to read contacts.people", "Refused: not allowed".
    pub fn describe(
        time: TimeView,
        app: impl Into<String>,
        operation: &str,
        tables: &[String],
        rows: u64,
        outcome: &str,
    ) -> Self {
        let ok = outcome == "ok";
        let names = join_names(tables);
        let on = |word: &str| {
            if names.is_empty() {
                String::new()
            } else {
                format!(" {word} {names}")
            }
        };
        let count = match rows {
            1 => "1 row".to_owned(),
            n => format!("{n} rows"),
        };
        let summary = match (operation, ok) {
            ("read", true) => format!("Read {count}{}", on("from")),
            ("insert", true) => format!("Added {count}{}", on("to")),
            ("update", true) => format!("Changed {count}{}", on("in")),
            ("delete", true) => format!("Deleted {count}{}", on("from")),
            ("describe", true) => "Listed the tables it may use".to_owned(),
            ("read", false) if names.is_empty() => "Tried to read your data".to_owned(),
            ("read", false) => format!("Tried to read {names}"),
            ("insert", false) => format!("Tried to add rows{}", on("to")),
            ("update", false) => format!("Tried to change rows{}", on("in")),
            ("delete", false) => format!("Tried to delete rows{}", on("from")),
            ("describe", false) => "Tried to list the tables it may use".to_owned(),
            (other, true) if names.is_empty() => format!("Made a request (\"{other}\", {count})"),
            (other, true) => format!("Used {names} (\"{other}\", {count})"),
            (other, false) if names.is_empty() => format!("Tried a request (\"{other}\")"),
            (other, false) => format!("Tried to use {names} (\"{other}\")"),
        };
        Self {
            time,
            app: app.into(),
            summary,
            outcome: outcome_words(outcome),
            ok,
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A request's outcome in a few words: "Allowed", "Refused: …" or "Failed: …".
fn outcome_words(code: &str) -> String {
    let words = match code {
        "ok" => return "Allowed".to_owned(),
        "server-error" => return "Failed: server error".to_owned(),
        "missing-right" => "not allowed",
        "table-not-found" => "table not shared",
        "unknown-column" => "column not shared",
        "row-not-found" => "no such row",
        "invalid-token" => "access expired or revoked",
        "invalid-filter" | "invalid-body" | "invalid-sql" => "invalid request",
        "invalid-row" => "invalid data",
        "conflict" => "row had changed",
        "id-in-use" => "id already in use",
        "body-too-large" => "request too large",
        other => return format!("Refused: {}", other.replace(['-', '_'], " ")),
    };
    format!("Refused: {words}")
}

/// One entry of the access log's app filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppChoice {
    /// Sent as field [`crate::fields::FILTER_APP`] (e.g. the app id).
    pub value: String,
    /// Shown to the user (the app's name).
    pub label: String,
}

/// Where the dashboard's forms go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DashboardActions {
    /// "Change access" form (POST): [`crate::fields::GRANT_ID`] and the
    /// [`crate::fields::LINE`]s still ticked.
    pub change: String,
    /// "Revoke access" form (POST): [`crate::fields::GRANT_ID`]; the server
    /// answers with the revoke confirmation page.
    pub revoke: String,
    /// "Sign out" form (POST).
    pub sign_out: String,
    /// Access log filter form (GET): [`crate::fields::FILTER_APP`].
    pub filter: String,
    /// "Delete my account" link: the page that asks for the password.
    pub delete_account: String,
}

impl Default for DashboardActions {
    /// `/dashboard/access`, `/dashboard/revoke`, `/sign-out`,
    /// `/dashboard#access-log` (so the filtered page opens at the log) and
    /// `/dashboard/delete-account`.
    fn default() -> Self {
        Self {
            change: "/dashboard/access".into(),
            revoke: "/dashboard/revoke".into(),
            sign_out: "/sign-out".into(),
            filter: "/dashboard#access-log".into(),
            delete_account: "/dashboard/delete-account".into(),
        }
    }
}

/// The dashboard: connected apps, their access, and the access log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DashboardPage {
    /// The signed-in user's email, shown in the header.
    pub user_email: String,
    /// The connected apps; an empty list shows an empty state.
    pub apps: Vec<ConnectedApp>,
    /// The access log entries to show, newest first.
    pub access_log: Vec<AccessLogRow>,
    /// The access log could not be read: the page says so rather than
    /// showing an empty log.
    pub access_log_unavailable: bool,
    /// Requests to this vault that could not be written to its access log
    /// since the server started (too many at once); the page says so when
    /// it is not zero.
    pub access_log_dropped: u64,
    /// The app the log is filtered by (an [`AppChoice::value`]), if any.
    pub filter_app: Option<String>,
    /// The apps the log can be filtered by.
    pub app_choices: Vec<AppChoice>,
    /// The CSRF token, sent back as field [`crate::fields::CSRF`] by every
    /// POST form.
    pub csrf_token: String,
    /// Where the forms go.
    pub actions: DashboardActions,
    /// A confirmation of the last change, e.g. "Notes Plus can no longer use
    /// your data." Announced politely (`role="status"`).
    pub notice: Option<String>,
}

/// The page that confirms revoking an app's access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevokeConfirmPage {
    /// The grant to revoke, sent back as field [`crate::fields::GRANT_ID`].
    pub grant_id: String,
    /// The app's name.
    pub app_name: String,
    /// The host name of the app's homepage.
    pub homepage_domain: String,
    /// What the app may do now.
    pub lines: Vec<ConsentLine>,
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// Where the confirm form posts (with field [`crate::fields::CONFIRM`]
    /// set to `yes`).
    pub form_action: String,
    /// Where "Cancel" goes (the dashboard).
    pub cancel_href: String,
}

/// The page that deletes the user's account: what happens, in plain
/// words, and the password to confirm it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeleteAccountPage {
    /// The signed-in user's email.
    pub user_email: String,
    /// The names of the apps connected now (they all lose access).
    pub apps: Vec<String>,
    /// Why the last attempt was refused (a wrong password), if it was.
    pub error: Option<String>,
    /// Set when too many attempts were made: wait before trying again.
    pub throttled: Option<String>,
    /// The CSRF token, sent back as field [`crate::fields::CSRF`].
    pub csrf_token: String,
    /// Where the form posts (fields [`crate::fields::PASSWORD`] and
    /// [`crate::fields::CONFIRM`] set to `yes`).
    pub form_action: String,
    /// Where "Cancel" goes (the dashboard).
    pub cancel_href: String,
}

/// A link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The address.
    pub href: String,
    /// The link text.
    pub text: String,
}

/// A page that says what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorPage {
    /// The heading, e.g. "We did not send you back to the app".
    pub title: String,
    /// What happened, e.g. "This app's redirect address doesn't match its
    /// registration, so we did not send you back to it."
    pub detail: String,
    /// What the user can do now, if anything.
    pub hint: Option<String>,
    /// A way on, e.g. to the dashboard.
    pub back: Option<Link>,
}

/// How a [`DonePage`] ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    #[default]
    Success,
    /// The user said no; nothing was shared.
    Denied,
    /// Neither: just information.
    Info,
}

/// A result page, e.g. at the end of the device flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DonePage {
    /// The heading, e.g. "Your device is connected".
    pub title: String,
    /// The message, e.g. what the app may now do.
    pub message: String,
    /// How it ended (sets the style of the message box).
    pub outcome: Outcome,
    /// Whether to add "You can close this window."
    pub can_close: bool,
}
