//! Sample contexts for every page, built from the built-in schemas. The
//! crate's tests render them, the `preview` example writes them (into
//! `target/consent-preview/` by default) with [`write_preview`], and the
//! server's tests may use them too.

use coffer_auth::{ScopeToken, TablePermission};
use coffer_core::TableName;
use coffer_core::schema::registry::SchemaRegistry;

use crate::describe::describe_line;
use crate::views::*;

/// A small logo (a balloon), as a `data:` URL so previews need no network.
pub const SAMPLE_LOGO: &str = concat!(
    "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2064%2064'%3E",
    "%3Crect%20width='64'%20height='64'%20rx='14'%20fill='%23b4361a'/%3E",
    "%3Ccircle%20cx='32'%20cy='25'%20r='12'%20fill='%23fff'/%3E",
    "%3Cpath%20d='M32%2037v15'%20stroke='%23fff'%20stroke-width='3'%20stroke-linecap='round'/%3E",
    "%3Cpath%20d='M29%2037h6l-3%204z'%20fill='%23fff'/%3E%3C/svg%3E"
);

/// A CSRF token for samples.
pub const CSRF_TOKEN: &str = "sample-csrf-token-3f9a1c";

/// The plain-words line for `table` (`schema.table`) of the built-in schemas,
/// with the action words of the scope grammar (`write` included).
///
/// # Panics
///
/// If the built-in schemas don't load or have no such table, or the words
/// do not make a scope token.
pub fn line(table: &str, actions: &[&str], columns: Option<&[&str]>, own_rows_only: bool) -> ConsentLine {
    let columns = columns.map(|c| format!("({})", c.join(","))).unwrap_or_default();
    let rows = if own_rows_only { ":own" } else { "" };
    let token: ScopeToken = format!("{table}{columns}:{}{rows}", actions.join("+"))
        .parse()
        .expect("a scope token");
    let table: TableName = table.parse().expect("schema.table");
    let registry = SchemaRegistry::builtin().expect("built-in schemas load");
    let (_, def) = registry.table(&table).expect("built-in table exists");
    let permission = TablePermission::new(table, token.actions)
        .with_columns(token.columns)
        .with_rows(token.row_scope);
    describe_line(def, &permission)
}

/// A sign-up page with errors on two fields.
pub fn sign_up() -> SignUpPage {
    SignUpPage {
        csrf_token: CSRF_TOKEN.into(),
        form_action: "/sign-up".into(),
        email: "ada@example.org".into(),
        errors: SignUpErrors {
            form: None,
            email: None,
            password: Some("Use at least 12 characters.".into()),
            confirm: Some("The two passwords are not the same.".into()),
        },
        password_min_length: 12,
        sign_in_href: "/sign-in".into(),
        next: Some("/oauth/authorize/continue?request=req_01jd".into()),
    }
}

/// A sign-in page that shows the throttling message.
pub fn sign_in() -> SignInPage {
    SignInPage {
        csrf_token: CSRF_TOKEN.into(),
        form_action: "/sign-in".into(),
        email: "ada@example.org".into(),
        error: Some("That email and password don't match an account.".into()),
        throttled: Some("Too many attempts. Try again in 5 minutes.".into()),
        sign_up_href: "/sign-up".into(),
        next: None,
        notice: None,
    }
}

/// A consent page: a new app asks for contacts and calendar events, with
/// sensitive columns and an own-rows line.
pub fn consent() -> ConsentPage {
    ConsentPage {
        app: AppView::new(
            "Birthday Reminders",
            "https://birthdays.example.com/about",
            Some(SAMPLE_LOGO.into()),
        )
        .with_redirect_uri("https://birthdays.example.com/oauth/callback"),
        lines: vec![
            line(
                "contacts.people",
                &["read"],
                Some(&["display_name", "given_name", "birthday", "photo"]),
                false,
            ),
            line("calendar.events", &["read", "create", "update"], None, true),
        ],
        existing: Vec::new(),
        csrf_token: CSRF_TOKEN.into(),
        request_id: "req_01jdq8z4k2".into(),
        form_action: "/oauth/authorize/decision".into(),
    }
}

/// A consent page where the request adds to an existing grant.
pub fn consent_incremental() -> ConsentPage {
    let mut already = line("tasks.items", &["read"], None, false);
    already.already_granted = true;
    ConsentPage {
        app: AppView::new("Focus Timer", "https://focus.example.net", None)
            .with_redirect_uri("https://focus-timer.example.org/callback"),
        lines: vec![already, line("tasks.items", &["create", "update"], None, true)],
        existing: vec![line("tasks.lists", &["read"], None, false)],
        csrf_token: CSRF_TOKEN.into(),
        request_id: "req_01jdq9a7xm".into(),
        form_action: "/oauth/authorize/decision".into(),
    }
}

/// The device page asking for a code, after a wrong one.
pub fn device() -> DevicePage {
    DevicePage {
        state: DeviceState::Enter,
        code: "WDJB-MJH".into(),
        error: Some("We don't know that code. Check it on your device and type it again.".into()),
        app_name: None,
        csrf_token: CSRF_TOKEN.into(),
        form_action: "/device".into(),
    }
}

/// The device page in `state`.
pub fn device_in(state: DeviceState) -> DevicePage {
    DevicePage {
        state,
        error: None,
        code: String::new(),
        app_name: Some("coffer-cli".into()),
        ..device()
    }
}

/// A dashboard with two apps, a narrowed grant and a short access log.
pub fn dashboard() -> DashboardPage {
    let notes = line("notes.notes", &["read", "create", "update", "delete"], None, true);
    DashboardPage {
        user_email: "ada@example.org".into(),
        apps: vec![
            ConnectedApp {
                grant_id: "01jdq8z4k2r7w3v9m5x1c6b0ta".into(),
                name: "Birthday Reminders".into(),
                homepage_domain: "birthdays.example.com".into(),
                granted_at: TimeView::new("2025-11-20T09:14:00Z", "20 Nov 2025, 09:14 UTC"),
                last_access: Some(TimeView::new("2025-11-23T08:02:00Z", "23 Nov 2025, 08:02 UTC")),
                lines: vec![
                    line(
                        "contacts.people",
                        &["read"],
                        Some(&["display_name", "given_name", "birthday"]),
                        false,
                    ),
                    line("calendar.events", &["read", "create", "update"], None, true),
                ],
            },
            ConnectedApp {
                grant_id: "01jdqb1n3h8c2k7p4s6d9f0gzy".into(),
                name: "Quick Notes".into(),
                homepage_domain: "quicknotes.example".into(),
                granted_at: TimeView::new("2025-11-22T17:40:00Z", "22 Nov 2025, 17:40 UTC"),
                last_access: None,
                lines: vec![notes],
            },
        ],
        access_log: vec![
            AccessLogRow::describe(
                TimeView::new("2025-11-23T08:02:00Z", "23 Nov 2025, 08:02 UTC"),
                "Birthday Reminders",
                "read",
                &["contacts.people".into()],
                214,
                "ok",
            ),
            AccessLogRow::describe(
                TimeView::new("2025-11-23T08:01:00Z", "23 Nov 2025, 08:01 UTC"),
                "Birthday Reminders",
                "insert",
                &["calendar.events".into()],
                1,
                "ok",
            ),
            AccessLogRow::describe(
                TimeView::new("2025-11-22T21:37:00Z", "22 Nov 2025, 21:37 UTC"),
                "Birthday Reminders",
                "read",
                &["contacts.people".into(), "health.measurements".into()],
                0,
                "missing-right",
            ),
        ],
        access_log_unavailable: false,
        access_log_dropped: 0,
        filter_app: None,
        app_choices: vec![
            AppChoice {
                value: "app_birthdays".into(),
                label: "Birthday Reminders".into(),
            },
            AppChoice {
                value: "app_quicknotes".into(),
                label: "Quick Notes".into(),
            },
        ],
        csrf_token: CSRF_TOKEN.into(),
        actions: DashboardActions::default(),
        notice: Some("Your changes for Birthday Reminders are saved.".into()),
    }
}

/// A dashboard with no connected apps and an empty log.
pub fn dashboard_empty() -> DashboardPage {
    DashboardPage {
        apps: Vec::new(),
        access_log: Vec::new(),
        app_choices: Vec::new(),
        notice: None,
        ..dashboard()
    }
}

/// The revoke confirmation for the first app of [`dashboard`].
pub fn revoke_confirm() -> RevokeConfirmPage {
    let app = dashboard().apps.remove(0);
    RevokeConfirmPage {
        grant_id: app.grant_id,
        app_name: app.name,
        homepage_domain: app.homepage_domain,
        lines: app.lines,
        csrf_token: CSRF_TOKEN.into(),
        form_action: "/dashboard/revoke/confirm".into(),
        cancel_href: "/dashboard".into(),
    }
}

/// The "Delete your account?" page of the user of [`dashboard`].
pub fn delete_account() -> DeleteAccountPage {
    let dashboard = dashboard();
    DeleteAccountPage {
        user_email: dashboard.user_email,
        apps: dashboard.apps.into_iter().map(|a| a.name).collect(),
        error: None,
        throttled: None,
        csrf_token: CSRF_TOKEN.into(),
        form_action: "/dashboard/delete-account".into(),
        cancel_href: "/dashboard".into(),
    }
}

/// The error page for a redirect URI that doesn't match the registration.
pub fn error() -> ErrorPage {
    ErrorPage {
        title: "We did not send you back to the app".into(),
        detail: "This app's redirect address doesn't match its registration, so we did not send you back to it.".into(),
        hint: Some(
            "Nothing from your vault was shared. If you trust the app, tell its makers about this error.".into(),
        ),
        back: Some(Link {
            href: "/dashboard".into(),
            text: "Go to your vault".into(),
        }),
    }
}

/// The result page at the end of the device flow.
pub fn done() -> DonePage {
    DonePage {
        title: "You're all set".into(),
        message: "coffer-cli can now use what you allowed. Go back to your terminal to carry on.".into(),
        outcome: Outcome::Success,
        can_close: true,
    }
}

/// Every sample page, rendered: `(file name, HTML)`.
///
/// # Panics
///
/// If a page does not render, which the crate's tests rule out.
pub fn render_all(pages: &crate::Pages) -> Vec<(&'static str, String)> {
    let ok = |r: Result<String, crate::RenderError>| r.expect("sample page renders");
    vec![
        ("sign_up.html", ok(pages.sign_up(&sign_up()))),
        ("sign_in.html", ok(pages.sign_in(&sign_in()))),
        ("consent.html", ok(pages.consent(&consent()))),
        ("consent_incremental.html", ok(pages.consent(&consent_incremental()))),
        ("device.html", ok(pages.device(&device()))),
        (
            "device_approved.html",
            ok(pages.device(&device_in(DeviceState::Approved))),
        ),
        ("device_denied.html", ok(pages.device(&device_in(DeviceState::Denied)))),
        (
            "device_expired.html",
            ok(pages.device(&device_in(DeviceState::Expired))),
        ),
        ("dashboard.html", ok(pages.dashboard(&dashboard()))),
        ("dashboard_empty.html", ok(pages.dashboard(&dashboard_empty()))),
        ("revoke_confirm.html", ok(pages.revoke_confirm(&revoke_confirm()))),
        ("delete_account.html", ok(pages.delete_account(&delete_account()))),
        ("error.html", ok(pages.error(&error()))),
        ("done.html", ok(pages.done(&done()))),
    ]
}

/// Writes every sample page and the stylesheet into `dir` (created if
/// missing), for review and screenshots; returns the file names written.
pub fn write_preview(dir: &std::path::Path) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(dir)?;
    let pages = crate::Pages::with_stylesheet_href("coffer.css");
    let mut written = Vec::new();
    for (name, html) in render_all(&pages) {
        std::fs::write(dir.join(name), html)?;
        written.push(name);
    }
    std::fs::write(dir.join("coffer.css"), crate::stylesheet().1)?;
    written.push("coffer.css");
    Ok(written)
}
