//! Renders every page with sample contexts and checks the HTML: CSRF fields,
//! labels, escaping, no scripts or inline styles, and the consent page's
//! content.

use std::collections::{HashMap, HashSet};

use coffer_consent_ui::sample::{self, CSRF_TOKEN};
use coffer_consent_ui::{
    AccessLogRow, AppChoice, AppView, ColumnView, ConnectedApp, ConsentLine, ConsentPage, DashboardActions,
    DashboardPage, DeleteAccountPage, DevicePage, DeviceState, DonePage, ErrorPage, Link, Outcome, Pages,
    RevokeConfirmPage, SignInPage, SignUpErrors, SignUpPage, TimeView, fields,
};
use coffer_test_support::html::unescape;

/// One start tag: its name and attributes (value `None` for a bare attribute).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: Vec<(String, Option<String>)>,
    start: usize,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }
}

/// The start tags of `html`, in order. Enough for the well-formed HTML the
/// templates produce (quoted attribute values, no comments).
fn tags(html: &str) -> Vec<Tag> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        i = start + 1;
        if i >= b.len() || !b[i].is_ascii_alphabetic() {
            continue;
        }
        let name_end = i + html[i..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(html.len() - i);
        let name = html[i..name_end].to_ascii_lowercase();
        let mut j = name_end;
        let mut attrs = Vec::new();
        loop {
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= b.len() || b[j] == b'>' || b[j] == b'/' {
                break;
            }
            let an_start = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'=' && b[j] != b'>' {
                j += 1;
            }
            let an = html[an_start..j].to_ascii_lowercase();
            if j < b.len() && b[j] == b'=' {
                j += 1;
                let quote = b[j];
                assert!(quote == b'"', "unquoted attribute {an} in <{name}> at {start}");
                let v_start = j + 1;
                let v_end = v_start + html[v_start..].find('"').expect("closing quote");
                attrs.push((an, Some(unescape(&html[v_start..v_end]))));
                j = v_end + 1;
            } else {
                attrs.push((an, None));
            }
        }
        out.push(Tag { name, attrs, start });
        i = j;
    }
    out
}

/// The forms of `html`: the `<form>` tag and the tags inside it.
fn forms(html: &str) -> Vec<(Tag, Vec<Tag>)> {
    let mut out = Vec::new();
    for tag in tags(html).into_iter().filter(|t| t.name == "form") {
        let end = tag.start + html[tag.start..].find("</form>").expect("form is closed");
        let inner_start = tag.start + html[tag.start..].find('>').unwrap() + 1;
        out.push((tag, tags(&html[inner_start..end])));
    }
    out
}

fn all_pages() -> Vec<(&'static str, String)> {
    sample::render_all(&Pages::with_stylesheet_href("coffer.css"))
}

#[test]
fn every_page_renders_with_the_base_layout() {
    for (name, html) in all_pages() {
        assert!(html.starts_with("<!doctype html>"), "{name}");
        assert!(html.contains(r#"<html lang="en">"#), "{name}");
        assert!(
            html.contains(r##"<a class="skip-link" href="#main">"##),
            "{name}: skip link"
        );
        assert!(html.contains(r#"<main id="main""#), "{name}: main landmark");
        assert!(html.contains(r#"<header class="site-header">"#), "{name}: header");
        assert!(html.contains(r#"<p class="brand">Coffer</p>"#), "{name}: Coffer name");
        assert!(html.contains(r#"<link rel="stylesheet" href="coffer.css">"#), "{name}");
        assert_eq!(html.matches("<h1").count(), 1, "{name}: one h1");
        let title = &html[html.find("<title>").unwrap() + 7..html.find("</title>").unwrap()];
        assert!(
            title.ends_with(" · Coffer") && title.len() > " · Coffer".len(),
            "{name}: title {title:?}"
        );
    }
}

#[test]
fn default_stylesheet_path() {
    let html = Pages::new().done(&sample::done()).unwrap();
    assert!(html.contains(r#"href="/static/coffer.css""#));
}

#[test]
fn no_scripts_inline_styles_or_external_resources() {
    for (name, html) in all_pages() {
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{name}: script");
        assert!(!lower.contains("<style"), "{name}: style element");
        assert!(!lower.contains("javascript:"), "{name}: javascript URL");
        for tag in tags(&html) {
            for (attr, _) in &tag.attrs {
                assert_ne!(attr, "style", "{name}: style= on <{}>", tag.name);
                assert!(
                    !attr.starts_with("on"),
                    "{name}: event handler {attr} on <{}>",
                    tag.name
                );
            }
            if tag.name == "link" || tag.name == "iframe" || tag.name == "object" || tag.name == "embed" {
                let href = tag.attr("href").or(tag.attr("src")).unwrap_or("");
                assert!(!href.contains("//"), "{name}: external <{}> {href}", tag.name);
            }
        }
    }
}

#[test]
fn every_post_form_has_the_csrf_field_and_get_forms_do_not() {
    let mut posts = 0;
    for (name, html) in all_pages() {
        for (form, inner) in forms(&html) {
            let method = form.attr("method").unwrap_or("get");
            let csrf: Vec<&Tag> = inner
                .iter()
                .filter(|t| t.name == "input" && t.attr("name") == Some(fields::CSRF))
                .collect();
            if method == "post" {
                posts += 1;
                assert_eq!(
                    csrf.len(),
                    1,
                    "{name}: POST form to {:?} needs one CSRF field",
                    form.attr("action")
                );
                assert_eq!(csrf[0].attr("type"), Some("hidden"), "{name}");
                assert_eq!(csrf[0].attr("value"), Some(CSRF_TOKEN), "{name}");
            } else {
                assert_eq!(method, "get", "{name}");
                // A GET form would put the token in the URL (history, logs, Referer).
                assert!(csrf.is_empty(), "{name}: CSRF token in a GET form");
            }
            assert!(
                form.attr("action").is_some_and(|a| !a.is_empty()),
                "{name}: form action"
            );
        }
    }
    assert!(posts >= 10, "only {posts} POST forms checked");
}

#[test]
fn every_control_has_a_label_and_ids_are_unique() {
    for (name, html) in all_pages() {
        let all = tags(&html);
        let mut ids = HashSet::new();
        for tag in &all {
            if let Some(id) = tag.attr("id") {
                assert!(ids.insert(id.to_owned()), "{name}: duplicate id {id}");
                assert!(
                    !id.is_empty() && !id.contains(char::is_whitespace),
                    "{name}: bad id {id:?}"
                );
            }
        }
        let label_for: HashSet<&str> = all
            .iter()
            .filter(|t| t.name == "label")
            .filter_map(|t| t.attr("for"))
            .collect();
        for l in &label_for {
            assert!(ids.contains(*l), "{name}: <label for={l}> points at nothing");
        }
        for tag in &all {
            let control = match tag.name.as_str() {
                "input" => !matches!(tag.attr("type"), Some("hidden" | "submit")),
                "select" | "textarea" => true,
                _ => false,
            };
            if control {
                let id = tag
                    .attr("id")
                    .unwrap_or_else(|| panic!("{name}: <{}> without id", tag.name));
                assert!(
                    label_for.contains(id),
                    "{name}: <{} id={id}> has no <label for>",
                    tag.name
                );
                assert!(tag.attr("name").is_some(), "{name}: <{} id={id}> has no name", tag.name);
            }
            for attr in ["aria-describedby", "aria-labelledby"] {
                if let Some(refs) = tag.attr(attr) {
                    for r in refs.split_whitespace() {
                        assert!(ids.contains(r), "{name}: {attr}={r} points at nothing");
                    }
                }
            }
            if tag.name == "img" {
                assert!(
                    tag.attr("alt").is_some_and(|a| !a.is_empty()),
                    "{name}: img without alt"
                );
            }
            if tag.name == "button" {
                assert!(tag.attr("type").is_some(), "{name}: button without type");
            }
        }
    }
}

#[test]
fn consent_page_marks_a_website_off_the_redirect_host_as_not_verified() {
    let pages = Pages::new();
    let mut page = sample::consent();
    // A registration that borrows another site's homepage: the code goes
    // to the attacker's host, which the page names; the homepage is marked.
    page.app = AppView::new("Birthday Reminders", "https://birthdays.example.com", None)
        .with_redirect_uri("https://evil.example.net/cb");
    let html = pages.consent(&page).unwrap();
    assert!(
        html.contains(r#"Your answer goes to: <strong class="domain">evil.example.net</strong>"#),
        "{html}"
    );
    assert!(html.contains("(not verified: not where your answer goes)"), "{html}");
    assert!(
        html.contains(r#"Allow only if <strong class="domain">evil.example.net</strong>"#),
        "{html}"
    );

    // `www.` on either side is the same site.
    let same = AppView::new("A", "https://www.notes.example/about", None).with_redirect_uri("https://notes.example/cb");
    assert!(same.homepage_verified);
    // A look-alike or a parent domain is not.
    for redirect in [
        "https://notes.example.evil.net/cb",
        "https://example/cb",
        "http://127.0.0.1:9/cb",
    ] {
        let view = AppView::new("A", "https://notes.example", None).with_redirect_uri(redirect);
        assert!(!view.homepage_verified, "{redirect}");
    }
    // No homepage: nothing to verify, the redirect host is still shown.
    page.app = AppView::new("A", "", None).with_redirect_uri("https://a.example/cb");
    let html = pages.consent(&page).unwrap();
    assert!(!html.contains("Website:"), "{html}");
    assert!(html.contains(r#"Your answer goes to: <strong class="domain">a.example</strong>"#));
    // The device flow has no redirect: the homepage is shown as not verified.
    page.app = AppView::new("A", "https://a.example", None);
    let html = pages.consent(&page).unwrap();
    assert!(html.contains("(not verified)"), "{html}");
    assert!(!html.contains("Your answer goes to"), "{html}");
}

#[test]
fn consent_page_lists_lines_with_labels_and_sensitive_columns() {
    let page = sample::consent();
    let html = Pages::new().consent(&page).unwrap();
    let all = tags(&html);

    // The app, its logo and its domain.
    assert!(html.contains("Birthday Reminders</span> wants to use your data"));
    let img = all.iter().find(|t| t.name == "img").expect("logo");
    assert_eq!(img.attr("src"), Some(sample::SAMPLE_LOGO));
    assert_eq!(img.attr("alt"), Some("Logo of Birthday Reminders"));
    assert!(html.contains(r#"<strong class="domain">birthdays.example.com</strong>"#));
    // Where the answer goes is shown; a homepage on that host is verified.
    assert!(html.contains("Your answer goes to:"), "{html}");
    assert!(!html.contains("not verified"), "{html}");

    // One ticked checkbox per line, each with a matching <label for>.
    let boxes: Vec<&Tag> = all
        .iter()
        .filter(|t| t.name == "input" && t.attr("type") == Some("checkbox"))
        .collect();
    assert_eq!(boxes.len(), page.lines.len());
    for (b, line) in boxes.iter().zip(&page.lines) {
        let id = b.attr("id").unwrap();
        assert_eq!(b.attr("name"), Some(fields::LINE));
        assert_eq!(b.attr("value"), Some(line.id.as_str()));
        assert!(b.has("checked"));
        let label = format!(r#"<label for="{id}">{}</label>"#, line.title);
        assert!(html.contains(&label), "missing {label}");
    }
    assert!(html.contains("See the people in your address book"));
    assert!(html.contains("See, add and change the events in your calendars"));

    // Sensitive columns carry a visible text label, in the summary line that
    // is always shown and next to the column itself.
    let meta_start = html.find(r#"id="line-1-meta""#).unwrap();
    let meta = &html[meta_start..meta_start + html[meta_start..].find("</p>").unwrap()];
    assert!(
        meta.contains(r#"<span class="badge-sensitive">Sensitive: date of birth</span>"#),
        "{meta}"
    );
    assert!(html.contains("The person&#39;s birthday."));
    let col = html.find(r#"<code class="col-name">birthday</code>"#).unwrap();
    assert!(html[col..col + 200].contains("Sensitive: date of birth"));
    assert!(html.contains("Sensitive: location"));
    assert!(html.contains("Only rows this app creates"));
    assert!(html.contains("Only these 4 details"));

    // Allow is the form's first (default) submit button; Deny a second one.
    let (form, inner) = forms(&html).into_iter().next().unwrap();
    assert_eq!(form.attr("method"), Some("post"));
    assert_eq!(form.attr("action"), Some("/oauth/authorize/decision"));
    let buttons: Vec<&Tag> = inner.iter().filter(|t| t.name == "button").collect();
    assert_eq!(buttons.len(), 2);
    assert_eq!(buttons[0].attr("name"), Some(fields::DECISION));
    assert_eq!(buttons[0].attr("value"), Some("allow"));
    assert_eq!(buttons[1].attr("value"), Some("deny"));
    let request = inner
        .iter()
        .find(|t| t.attr("name") == Some(fields::REQUEST_ID))
        .expect("request id field");
    assert_eq!(request.attr("type"), Some("hidden"));
    assert_eq!(request.attr("value"), Some("req_01jdq8z4k2"));
    assert!(!html.contains("You already allowed"));
}

#[test]
fn incremental_consent_shows_existing_access_as_text() {
    let page = sample::consent_incremental();
    let html = Pages::new().consent(&page).unwrap();
    assert!(html.contains("You already allowed"));
    assert!(html.contains("See your to-do lists"));
    assert!(html.contains("See the tasks on your to-do lists"));
    let boxes: Vec<Tag> = tags(&html)
        .into_iter()
        .filter(|t| t.name == "input" && t.attr("type") == Some("checkbox"))
        .collect();
    assert_eq!(boxes.len(), 1, "only the new line is a checkbox");
    assert_eq!(boxes[0].attr("value"), Some("tasks.items:create+update:own"));
    assert!(html.contains(r#"<label for="line-1">Add and change the tasks on your to-do lists</label>"#));
    // No logo: a placeholder initial, hidden from screen readers.
    assert!(!html.contains("<img"));
    assert!(html.contains(r#"aria-hidden="true">F</span>"#));
}

#[test]
fn sign_up_errors_are_next_to_fields_and_summarized() {
    let html = Pages::new().sign_up(&sample::sign_up()).unwrap();
    assert!(html.contains("<title>Error: Create your account · Coffer</title>"));
    let summary = html.find(r#"role="alert""#).expect("error summary");
    let form = html.find("<form").unwrap();
    assert!(summary < form, "summary at the top");
    assert!(html.contains(r##"<a href="#password">Use at least 12 characters.</a>"##));
    assert!(html.contains(r##"<a href="#password_confirm">The two passwords are not the same.</a>"##));
    let password = tags(&html)
        .into_iter()
        .find(|t| t.attr("id") == Some("password"))
        .unwrap();
    assert_eq!(password.attr("aria-invalid"), Some("true"));
    assert_eq!(password.attr("aria-describedby"), Some("password-hint password-error"));
    assert_eq!(password.attr("autocomplete"), Some("new-password"));
    assert!(html.contains("At least 12 characters."));
    assert!(html.contains(r#"name="next" value="/oauth/authorize/continue?request=req_01jd""#));
    for field in [fields::EMAIL, fields::PASSWORD, fields::PASSWORD_CONFIRM] {
        assert!(html.contains(&format!(r#"name="{field}""#)), "{field}");
    }

    let clean = Pages::new()
        .sign_up(&SignUpPage {
            errors: SignUpErrors::default(),
            next: None,
            ..sample::sign_up()
        })
        .unwrap();
    assert!(!clean.contains("role=\"alert\""));
    assert!(!clean.contains("aria-invalid"));
    assert!(clean.contains("<title>Create your account · Coffer</title>"));
}

#[test]
fn sign_in_has_throttle_message_and_sign_up_link() {
    let html = Pages::new().sign_in(&sample::sign_in()).unwrap();
    assert!(html.contains("Too many attempts. Try again in 5 minutes."));
    assert!(html.contains(r#"<a href="/sign-up">Create an account</a>"#));
    assert!(html.contains(r#"autocomplete="current-password""#));
    let quiet = Pages::new()
        .sign_in(&SignInPage {
            error: None,
            throttled: None,
            ..sample::sign_in()
        })
        .unwrap();
    assert!(!quiet.contains("role=\"alert\""));
    let after_sign_up = Pages::new()
        .sign_in(&SignInPage {
            error: None,
            throttled: None,
            notice: Some("Now sign in with the email and password you chose.".into()),
            ..sample::sign_in()
        })
        .unwrap();
    assert!(after_sign_up.contains("Now sign in with the email and password you chose."));
}

#[test]
fn device_page_states() {
    let pages = Pages::new();
    let html = pages.device(&sample::device()).unwrap();
    let input = tags(&html)
        .into_iter()
        .find(|t| t.attr("id") == Some("user_code"))
        .unwrap();
    assert_eq!(input.attr("autocomplete"), Some("one-time-code"));
    assert_eq!(input.attr("inputmode"), Some("text"));
    assert_eq!(input.attr("name"), Some(fields::USER_CODE));
    assert_eq!(input.attr("value"), Some("WDJB-MJH"));
    assert!(html.contains("We don&#39;t know that code."));

    let approved = pages.device(&sample::device_in(DeviceState::Approved)).unwrap();
    assert!(approved.contains("Your device is connected") && approved.contains("You can close this window."));
    assert!(!approved.contains("<form"));
    let denied = pages.device(&sample::device_in(DeviceState::Denied)).unwrap();
    assert!(denied.contains("You denied the request") && denied.contains("coffer-cli got nothing"));
    let expired = pages.device(&sample::device_in(DeviceState::Expired)).unwrap();
    assert!(expired.contains("This code has expired") && expired.contains(r#"<a href="/device">"#));
    let blank = pages.device(&DevicePage::default()).unwrap();
    assert!(blank.contains("Connect a device") && !blank.contains("role=\"alert\""));
}

#[test]
fn dashboard_lists_the_connected_apps() {
    let html = Pages::new().dashboard(&sample::dashboard()).unwrap();
    assert!(html.contains("<h2 id=\"apps-title\">Connected apps</h2>"));
    assert!(html.contains("Signed in as <strong>ada@example.org</strong>"));
    assert!(html.contains(">Sign out</button>"));
    assert!(html.contains(r#"<dd class="domain">birthdays.example.com</dd>"#));
    assert!(html.contains(r#"<time datetime="2025-11-20T09:14:00Z">20 Nov 2025, 09:14 UTC</time>"#));
    assert!(html.contains("<dd>never</dd>"), "Quick Notes never accessed");
    assert!(html.contains("See, add, change and delete your notes"));
    assert!(html.contains(r#"role="status""#));
}

#[test]
fn dashboard_has_a_change_and_a_revoke_form_per_app() {
    let page = sample::dashboard();
    let html = Pages::new().dashboard(&page).unwrap();
    // One change form and one revoke form per app, each naming its grant.
    let forms = forms(&html);
    for app in &page.apps {
        for action in ["/dashboard/access", "/dashboard/revoke"] {
            let found = forms.iter().any(|(f, inner)| {
                f.attr("action") == Some(action)
                    && inner
                        .iter()
                        .any(|t| t.attr("name") == Some(fields::GRANT_ID) && t.attr("value") == Some(&*app.grant_id))
            });
            assert!(found, "{action} form for {}", app.name);
        }
    }
    let checkboxes = tags(&html)
        .into_iter()
        .filter(|t| t.attr("type") == Some("checkbox"))
        .count();
    assert_eq!(checkboxes, page.apps.iter().map(|a| a.lines.len()).sum::<usize>());
    assert!(html.contains("Revoke access<span class=\"visually-hidden\"> for Quick Notes</span>"));
}

#[test]
fn dashboard_shows_the_access_log_in_plain_words_newest_first() {
    let html = Pages::new().dashboard(&sample::dashboard()).unwrap();
    // The log: a table with a caption and column headers.
    assert!(html.contains("<caption id=\"log-caption\">Requests from all apps, newest first</caption>"));
    for th in ["Time", "App", "What it did", "Outcome"] {
        assert!(html.contains(&format!(">{th}</th>")), "{th}");
    }
    // In plain words, newest first, refusals marked.
    let read = html
        .find("<td>Read 214 rows from contacts.people</td>")
        .expect("read entry");
    let added = html
        .find("<td>Added 1 row to calendar.events</td>")
        .expect("insert entry");
    let refused = html
        .find("<td>Tried to read contacts.people and health.measurements</td>")
        .expect("refused entry");
    assert!(read < added && added < refused, "in the order given");
    assert!(html.contains(r#"<span class="outcome outcome-refused">Refused: not allowed</span>"#));
    assert_eq!(
        html.matches(r#"<span class="outcome outcome-ok">Allowed</span>"#)
            .count(),
        2
    );
    assert!(!html.contains("could not be read"));
}

#[test]
fn dashboard_filters_the_access_log_by_app() {
    let html = Pages::new().dashboard(&sample::dashboard()).unwrap();
    // A GET form with a select of the apps.
    let forms = forms(&html);
    let (filter, inner) = forms.iter().find(|(f, _)| f.attr("method") == Some("get")).unwrap();
    assert_eq!(filter.attr("action"), Some("/dashboard#access-log"));
    let select = inner.iter().find(|t| t.name == "select").unwrap();
    assert_eq!(select.attr("name"), Some(fields::FILTER_APP));

    let filtered = Pages::new()
        .dashboard(&DashboardPage {
            filter_app: Some("app_quicknotes".into()),
            access_log: Vec::new(),
            ..sample::dashboard()
        })
        .unwrap();
    assert!(filtered.contains(r#"<option value="app_quicknotes" selected>Quick Notes</option>"#));
    assert!(filtered.contains("Quick Notes has not used your vault yet."));
}

#[test]
fn dashboard_says_when_the_access_log_could_not_be_read() {
    // A log that could not be read says so, rather than "not used yet".
    let unavailable = Pages::new()
        .dashboard(&DashboardPage {
            access_log: Vec::new(),
            access_log_unavailable: true,
            ..sample::dashboard()
        })
        .unwrap();
    assert!(unavailable.contains("The access log could not be read just now."));
    assert!(!unavailable.contains("used your vault yet") && !unavailable.contains("<table"));
}

#[test]
fn dashboard_counts_log_entries_that_could_not_be_written() {
    // Entries the server could not write are counted, never hidden.
    assert!(
        !Pages::new()
            .dashboard(&sample::dashboard())
            .unwrap()
            .contains("could not be written")
    );
    let dropped = Pages::new()
        .dashboard(&DashboardPage {
            access_log_dropped: 12,
            ..sample::dashboard()
        })
        .unwrap();
    assert!(
        dropped.contains("12 requests to your vault could not be written to this log"),
        "{dropped}"
    );
}

#[test]
fn access_log_rows_in_plain_words() {
    let t = || TimeView::new("2025-11-23T08:02:00Z", "23 Nov 2025, 08:02 UTC");
    let people = ["contacts.people".to_owned()];
    let two = ["contacts.people".to_owned(), "notes.notes".to_owned()];
    let three = [two[0].clone(), two[1].clone(), "tasks.items".to_owned()];
    let row = |op: &str, tables: &[String], rows: u64, outcome: &str| {
        let r = AccessLogRow::describe(t(), "Quick Notes", op, tables, rows, outcome);
        assert_eq!(r.app, "Quick Notes");
        assert_eq!(r.ok, outcome == "ok");
        (r.summary, r.outcome)
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        row("read", &people, 12, "ok"),
        s("Read 12 rows from contacts.people", "Allowed")
    );
    assert_eq!(
        row("read", &two, 1, "ok").0,
        "Read 1 row from contacts.people and notes.notes"
    );
    assert_eq!(
        row("read", &three, 0, "ok").0,
        "Read 0 rows from contacts.people, notes.notes and tasks.items"
    );
    assert_eq!(row("insert", &people, 1, "ok").0, "Added 1 row to contacts.people");
    assert_eq!(row("update", &people, 3, "ok").0, "Changed 3 rows in contacts.people");
    assert_eq!(row("delete", &people, 1, "ok").0, "Deleted 1 row from contacts.people");
    assert_eq!(row("describe", &[], 0, "ok").0, "Listed the tables it may use");
    assert_eq!(
        row("read", &people, 0, "missing-right"),
        s("Tried to read contacts.people", "Refused: not allowed")
    );
    assert_eq!(
        row("insert", &people, 0, "table-not-found"),
        s("Tried to add rows to contacts.people", "Refused: table not shared")
    );
    assert_eq!(
        row("update", &people, 0, "conflict"),
        s("Tried to change rows in contacts.people", "Refused: row had changed")
    );
    assert_eq!(
        row("insert", &people, 0, "id-in-use"),
        s("Tried to add rows to contacts.people", "Refused: id already in use")
    );
    assert_eq!(
        row("delete", &people, 0, "server-error"),
        s("Tried to delete rows from contacts.people", "Failed: server error")
    );
    assert_eq!(
        row("read", &[], 0, "invalid-filter"),
        s("Tried to read your data", "Refused: invalid request")
    );
    // Nothing an app did is hidden: unknown words are shown as they are.
    assert_eq!(
        row("export", &people, 5, "ok").0,
        "Used contacts.people (\"export\", 5 rows)"
    );
    assert_eq!(
        row("export", &people, 0, "quota-exceeded"),
        s("Tried to use contacts.people (\"export\")", "Refused: quota exceeded")
    );
    assert_eq!(row("export", &[], 2, "ok").0, "Made a request (\"export\", 2 rows)");
}

#[test]
fn dashboard_empty_state() {
    let html = Pages::new().dashboard(&sample::dashboard_empty()).unwrap();
    assert!(html.contains("No apps are connected to your vault."));
    assert!(html.contains("No app has used your vault yet."));
    assert!(!html.contains("<table"));
    assert!(html.contains(">Sign out</button>"));
}

#[test]
fn revoke_confirmation_says_what_happens() {
    let html = Pages::new().revoke_confirm(&sample::revoke_confirm()).unwrap();
    assert!(html.contains("Revoke access for Birthday Reminders?"));
    assert!(html.contains("will stop at once"));
    assert!(html.contains("The data it wrote stays in your vault."));
    assert!(html.contains(r#"name="confirm" value="yes""#));
    assert!(html.contains(r#"<a class="button button-secondary" href="/dashboard">Cancel, keep access</a>"#));
    assert!(!html.contains("type=\"checkbox\""));
}

#[test]
fn account_deletion_says_what_happens_and_asks_for_the_password() {
    let pages = Pages::new();
    let html = pages.delete_account(&sample::delete_account()).unwrap();
    assert!(html.contains("<h1>Delete your account?</h1>"));
    assert!(html.contains("Everything in your vault is erased, for good."));
    assert!(
        html.contains("Every app you connected stops at once:</strong> Birthday Reminders"),
        "{html}"
    );
    assert!(html.contains("as a new, empty account"));
    assert!(html.contains(r#"name="confirm" value="yes""#));
    assert!(html.contains(r#"type="password" autocomplete="current-password""#));
    assert!(html.contains(r#"<a class="button button-secondary" href="/dashboard">Cancel, keep my account</a>"#));
    assert!(!html.contains("error-summary"));
    let html = pages
        .delete_account(&DeleteAccountPage {
            apps: Vec::new(),
            error: Some("That password is not right. Nothing was deleted.".into()),
            ..sample::delete_account()
        })
        .unwrap();
    assert!(html.contains("Your account was not deleted"));
    assert!(html.contains(r#"aria-invalid="true""#));
    assert!(!html.contains("stops at once"));
    let dashboard = pages.dashboard(&sample::dashboard()).unwrap();
    assert!(dashboard.contains(r#"href="/dashboard/delete-account">Delete my account"#));
}

#[test]
fn error_and_done_pages() {
    let pages = Pages::new();
    let html = pages.error(&sample::error()).unwrap();
    assert!(html.contains("<h1>We did not send you back to the app</h1>"));
    assert!(html.contains("This app&#39;s redirect address doesn&#39;t match its registration"));
    assert!(html.contains(r#"<a href="/dashboard">Go to your vault</a>"#));
    let html = pages.done(&sample::done()).unwrap();
    assert!(html.contains("You can close this window."));
    assert!(html.contains(r#"class="result result-success""#));
    let html = pages
        .done(&DonePage {
            outcome: Outcome::Denied,
            can_close: false,
            ..sample::done()
        })
        .unwrap();
    assert!(html.contains("result-denied") && !html.contains("You can close"));
}

const EVIL: &str = r#"<script>alert("x")</script>' onmouseover='1"#;

fn evil_line() -> ConsentLine {
    ConsentLine {
        id: EVIL.into(),
        table: EVIL.into(),
        title: EVIL.into(),
        actions_text: EVIL.into(),
        columns: vec![ColumnView {
            name: EVIL.into(),
            description: EVIL.into(),
            sensitive: Some(EVIL.into()),
        }],
        all_columns: false,
        own_rows_only: true,
        checked: true,
        already_granted: false,
        publisher: None,
    }
}

fn evil_time() -> TimeView {
    TimeView::new(EVIL, EVIL)
}

/// Every page with every string field set to markup.
fn evil_pages(pages: &Pages) -> Vec<(&'static str, String)> {
    let s = || EVIL.to_owned();
    let app = AppView {
        name: s(),
        homepage: s(),
        homepage_domain: s(),
        logo_url: Some(format!("https://x.example/{EVIL}")),
        redirect_domain: Some(s()),
        homepage_verified: false,
    };
    let mut granted = evil_line();
    granted.already_granted = true;
    let connected = ConnectedApp {
        grant_id: s(),
        name: s(),
        homepage_domain: s(),
        granted_at: evil_time(),
        last_access: Some(evil_time()),
        lines: vec![evil_line()],
    };
    vec![
        (
            "sign_up",
            pages
                .sign_up(&SignUpPage {
                    csrf_token: s(),
                    form_action: s(),
                    email: s(),
                    errors: SignUpErrors {
                        form: Some(s()),
                        email: Some(s()),
                        password: Some(s()),
                        confirm: Some(s()),
                    },
                    password_min_length: 12,
                    sign_in_href: s(),
                    next: Some(s()),
                })
                .unwrap(),
        ),
        (
            "sign_in",
            pages
                .sign_in(&SignInPage {
                    csrf_token: s(),
                    form_action: s(),
                    email: s(),
                    error: Some(s()),
                    throttled: Some(s()),
                    sign_up_href: s(),
                    next: Some(s()),
                    notice: Some(s()),
                })
                .unwrap(),
        ),
        (
            "consent",
            pages
                .consent(&ConsentPage {
                    app: app.clone(),
                    lines: vec![evil_line(), granted.clone()],
                    existing: vec![granted],
                    csrf_token: s(),
                    request_id: s(),
                    form_action: s(),
                })
                .unwrap(),
        ),
        (
            "device",
            pages
                .device(&DevicePage {
                    state: DeviceState::Enter,
                    code: s(),
                    error: Some(s()),
                    app_name: Some(s()),
                    csrf_token: s(),
                    form_action: s(),
                })
                .unwrap(),
        ),
        (
            "device_approved",
            pages
                .device(&DevicePage {
                    state: DeviceState::Approved,
                    app_name: Some(s()),
                    ..DevicePage::default()
                })
                .unwrap(),
        ),
        (
            "dashboard",
            pages
                .dashboard(&DashboardPage {
                    user_email: s(),
                    apps: vec![connected],
                    access_log: vec![AccessLogRow {
                        time: evil_time(),
                        app: s(),
                        summary: s(),
                        outcome: s(),
                        ok: false,
                    }],
                    access_log_unavailable: false,
                    access_log_dropped: 3,
                    filter_app: Some(s()),
                    app_choices: vec![AppChoice { value: s(), label: s() }],
                    csrf_token: s(),
                    actions: DashboardActions {
                        change: s(),
                        revoke: s(),
                        sign_out: s(),
                        filter: s(),
                        delete_account: s(),
                    },
                    notice: Some(s()),
                })
                .unwrap(),
        ),
        (
            "revoke_confirm",
            pages
                .revoke_confirm(&RevokeConfirmPage {
                    grant_id: s(),
                    app_name: s(),
                    homepage_domain: s(),
                    lines: vec![evil_line()],
                    csrf_token: s(),
                    form_action: s(),
                    cancel_href: s(),
                })
                .unwrap(),
        ),
        (
            "delete_account",
            pages
                .delete_account(&DeleteAccountPage {
                    user_email: s(),
                    apps: vec![s(), s()],
                    error: Some(s()),
                    throttled: Some(s()),
                    csrf_token: s(),
                    form_action: s(),
                    cancel_href: s(),
                })
                .unwrap(),
        ),
        (
            "error",
            pages
                .error(&ErrorPage {
                    title: s(),
                    detail: s(),
                    hint: Some(s()),
                    back: Some(Link { href: s(), text: s() }),
                })
                .unwrap(),
        ),
        (
            "done",
            pages
                .done(&DonePage {
                    title: s(),
                    message: s(),
                    outcome: Outcome::Info,
                    can_close: true,
                })
                .unwrap(),
        ),
    ]
}

#[test]
fn user_strings_are_escaped_everywhere() {
    let pages = Pages::new();
    for (name, html) in evil_pages(&pages) {
        assert!(
            !html.to_ascii_lowercase().contains("<script"),
            "{name}: unescaped script"
        );
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
            "{name}: escaped text"
        );
        for tag in tags(&html) {
            for (attr, _) in &tag.attrs {
                assert!(!attr.starts_with("on"), "{name}: attribute {attr} escaped its quotes");
            }
        }
        // The title shows the markup as text.
        let title = &html[html.find("<title>").unwrap()..html.find("</title>").unwrap()];
        assert!(!title.contains("<script"), "{name}");
    }
}

#[test]
fn unsafe_logo_urls_are_left_out() {
    let mut page = sample::consent();
    page.app.logo_url = Some("javascript:alert(1)".into());
    let html = Pages::new().consent(&page).unwrap();
    assert!(!html.contains("<img") && !html.contains("javascript:"));
    page.app.logo_url = Some("http://insecure.example/logo.png".into());
    assert!(!Pages::new().consent(&page).unwrap().contains("<img"));
}

#[test]
fn field_names_match_the_templates() {
    let pages = all_pages();
    let text: String = pages.iter().map(|(_, h)| h.as_str()).collect();
    let names: HashMap<&str, &str> = [
        ("CSRF", fields::CSRF),
        ("EMAIL", fields::EMAIL),
        ("PASSWORD", fields::PASSWORD),
        ("PASSWORD_CONFIRM", fields::PASSWORD_CONFIRM),
        ("NEXT", fields::NEXT),
        ("REQUEST_ID", fields::REQUEST_ID),
        ("DECISION", fields::DECISION),
        ("LINE", fields::LINE),
        ("USER_CODE", fields::USER_CODE),
        ("GRANT_ID", fields::GRANT_ID),
        ("CONFIRM", fields::CONFIRM),
        ("FILTER_APP", fields::FILTER_APP),
    ]
    .into_iter()
    .collect();
    for (konst, field) in names {
        assert!(
            text.contains(&format!(r#"name="{field}""#)),
            "fields::{konst} = {field} is not used"
        );
    }
    let used: HashSet<String> = tags(&text)
        .into_iter()
        .filter_map(|t| t.attr("name").map(str::to_owned))
        .filter(|n| !["viewport", "color-scheme", "referrer"].contains(&n.as_str()))
        .collect();
    let known = [
        fields::CSRF,
        fields::EMAIL,
        fields::PASSWORD,
        fields::PASSWORD_CONFIRM,
        fields::NEXT,
        fields::REQUEST_ID,
        fields::DECISION,
        fields::LINE,
        fields::USER_CODE,
        fields::GRANT_ID,
        fields::CONFIRM,
        fields::FILTER_APP,
    ];
    for name in used {
        assert!(known.contains(&name.as_str()), "field {name} has no constant in fields");
    }
}

/// The preview (every sample page and the stylesheet, as the `preview`
/// example writes it) renders into a folder, each page linking the
/// stylesheet written beside it.
#[test]
fn the_preview_writes_every_page_and_the_stylesheet() {
    let dir = std::env::temp_dir().join(format!("coffer-consent-preview-{}", std::process::id()));
    let written = sample::write_preview(&dir).unwrap();
    assert_eq!(written.len(), all_pages().len() + 1, "{written:?}");
    for name in &written {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        if name.ends_with(".html") {
            assert!(text.starts_with("<!doctype html>"), "{name}");
            assert!(
                text.contains(r#"href="coffer.css""#),
                "{name} does not link the stylesheet"
            );
        } else {
            assert_eq!(text.as_bytes(), coffer_consent_ui::stylesheet().1, "{name}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
